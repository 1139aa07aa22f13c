"""The MuJoCo sim robot: the embedded default implementation of the `Robot` seam.

It owns the physics (one compiled model per episode, stepped at 500 Hz under a 10 Hz control
rate), rendering of the `base` and `wrist` cameras, ee / joint control, and the privileged
`env_state` the skill policy and success checks read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco loads GL

import mujoco
import numpy as np

from sim import tasks
from sim.ik import ARM_JOINTS, ArmIK, wrap_half_turn
from sim.objects import KINDS
from coaching.action_check import check_action
from coaching.robot import NotReset, Observation, Robot, RobotDescription
from sim.scene import ARM_CTRL_RANGE, CABINET, EE_WORKSPACE, GRIPPER_MAX_OPENING, HOME_EE, PAD_HALF, PADS, TRASH_BIN, TUB, SceneSpec, build_mjcf

STATE_NAMES = (*ARM_JOINTS, "gripper_opening", "ee_x", "ee_y", "ee_z", "ee_yaw")
EE_ACTION = ("x", "y", "z", "yaw", "pitch", "grip")
JOINT_ACTION = (*ARM_JOINTS, "grip")
# Action bounds per control mode: (low, high). Yaw is taken modulo a half turn, so two turns is ample.
ACTION_BOUNDS = {
    "ee": ((*EE_WORKSPACE[0], -2 * np.pi, -np.pi / 2, 0.0), (*EE_WORKSPACE[1], 2 * np.pi, np.pi / 2, 1.0)),
    "joint": ((*ARM_CTRL_RANGE[0], 0.0), (*ARM_CTRL_RANGE[1], 1.0)),
}
_HOME_SEED = np.array([0.0, 0.35, 1.55, 1.25, 0.0])  # elbow-up guess the IK refines into home


def check_rendering() -> None:
    """Render one tiny frame now, so a machine that cannot render (MUJOCO_GL, its library, no display)
    raises its graphics error at start, before a server announces itself, rather than at the first reset."""
    renderer = mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8)
    renderer.close()


@dataclass
class SimRobotConfig:
    cameras: tuple[str, ...] = ("base", "wrist")
    image_size: tuple[int, int] = (224, 224)
    control_hz: float = 10.0
    interpolation_stages: int = 5  # ctrl is ramped in this many steps inside one control period


class MujocoRobot(Robot):
    def __init__(self, config: SimRobotConfig | None = None):
        self.config = config or SimRobotConfig()
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self._renderer: mujoco.Renderer | None = None
        self.family: tasks.TaskFamily | None = None
        self.spec: SceneSpec | None = None
        self._description: RobotDescription | None = None
        self.seed: int | None = None  # with the family, names the scene: what `restore` rebuilds

    # -- Robot seam -------------------------------------------------------------------------
    def describe(self) -> RobotDescription:
        if self._description is None:  # built once: act() checks every action against it
            self._description = self._describe()
        return self._description

    def _describe(self) -> RobotDescription:
        return RobotDescription(
            name="coachlab-mujoco-arm",
            cameras=self.config.cameras,
            image_size=self.config.image_size,
            state_names=STATE_NAMES,
            action_names={"ee": EE_ACTION, "joint": JOINT_ACTION},
            control_hz=self.config.control_hz,
            # task families a coach can choose, with the task text each implies
            extra={"simulated": True, "task_families": {name: f.description for name, f in tasks.FAMILIES.items()}},
            action_bounds={mode: (tuple(map(float, lo)), tuple(map(float, hi))) for mode, (lo, hi) in ACTION_BOUNDS.items()},
        )

    def reset(self, task_family: str, seed: int) -> Observation:
        self.family = tasks.get_family(task_family)
        self.seed = int(seed)
        rng = np.random.default_rng(seed)
        self.spec = self.family.sample_scene(rng)
        self._load(self.spec)
        return self.observe()

    def observe(self) -> Observation:
        """What the cameras and joints say now; NotReset before the first `reset`."""
        self._require_task()
        images = {cam: self.render(cam) for cam in self.config.cameras}
        env = self.env_state()
        progress = {"success": self.family.success(env), "steps_left": len(self.family.remaining_steps(env))}
        return Observation(images=images, state=self.proprio(), timestamp=float(self.data.time), env_state=env,
                           task_progress=progress)

    def act(self, action: np.ndarray, mode: str = "ee") -> None:
        """Apply `action` for one control period; ActionRejected (the arm does not move) if it is
        non-finite, not 6 wide or out of ACTION_BOUNDS; NotReset before the first `reset`."""
        self._require_task()
        action = check_action(self.describe(), action, mode)
        if mode == "ee":
            q_target = self.ik.solve(self._ctrl_arm(), action[:3], action[3], action[4])
        elif mode == "joint":
            q_target = action[:5]
        else:
            raise ValueError(f"Unknown control mode {mode!r}; use 'ee' or 'joint'.")
        finger = float(np.clip(action[5], 0.0, 1.0)) * GRIPPER_MAX_OPENING / 2
        target = np.concatenate([q_target, [finger, finger]])
        start = self.data.ctrl.copy()
        stages = self.config.interpolation_stages
        for k in range(1, stages + 1):  # ramp the set-points: a 10 Hz step input would jolt the arm
            self.data.ctrl[:] = start + (target - start) * k / stages
            mujoco.mj_step(self.model, self.data, nstep=self._substeps // stages)

    def restore(self, sim_state: dict[str, Any]) -> Observation:
        """Put this robot into the state `env_state()["sim_state"]` recorded (on this or another
        MujocoRobot) and observe it.

        Why: the sim lookahead subgoal generator (`sim.lookahead`) previews a subtask by running
        it on a private copy of the sim, so the copy must start exactly where the real episode is.
        The scene is rebuilt only if it is not already loaded (same family and seed).
        """
        if self.family is None or self.family.name != sim_state["task"] or self.seed != sim_state["seed"]:
            self.reset(sim_state["task"], int(sim_state["seed"]))
        d = self.data
        d.qpos[:] = sim_state["qpos"]
        d.qvel[:] = sim_state["qvel"]
        d.ctrl[:] = sim_state["ctrl"]
        if self.model.na:
            d.act[:] = sim_state["act"]
        d.time = float(sim_state["time"])
        mujoco.mj_forward(self.model, d)  # positions, contacts and sensors for the new qpos
        return self.observe()

    def hold(self) -> None:
        """Keep the last set-points for one control period; NotReset before the first `reset`."""
        self._require_task()
        mujoco.mj_step(self.model, self.data, nstep=self._substeps)  # ctrl keeps the last set-points

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # -- sim internals ----------------------------------------------------------------------
    def _require_task(self) -> None:
        if self.family is None:  # no scene (or one `load`ed for renders): nothing to observe or move
            raise NotReset("The sim robot has no task yet: reset it with a task family and seed first "
                           "(the bridge's `reset` message, or pick a task in the app).")

    def render(self, camera: str) -> np.ndarray:
        """What `camera` sees now: HxWx3 uint8 at `config.image_size`."""
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render().copy()

    @property
    def renderer(self) -> mujoco.Renderer:
        """The renderer sized like the cameras' images (the segmentation oracle renders with it)."""
        return self._renderer

    @property
    def finger_qpos(self) -> list[int]:
        return self._finger_qpos

    def load(self, spec: SceneSpec) -> None:
        """Compile `spec` as a new scene with the arm at home and the items settled (no task family:
        for synthetic renders; `reset` is the episode entry point)."""
        self.spec = spec
        self._load(spec)

    def _load(self, spec: SceneSpec) -> None:
        self.close()
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(spec))
        self.data = mujoco.MjData(self.model)
        self.ik = ArmIK(self.model)
        self._substeps = int(round(1.0 / (self.config.control_hz * self.model.opt.timestep)))
        h, w = self.config.image_size
        self._renderer = mujoco.Renderer(self.model, h, w) if self.config.cameras else None
        self._arm_qpos = self.ik.qpos_idx
        self._finger_qpos = [self.model.joint(j).qposadr[0] for j in ("finger_left", "finger_right")]
        self._grip_site = self.model.site("grip").id
        finger_bodies = {self.model.body(b).id for b in ("finger_left", "finger_right")}
        self._finger_geoms = {g for g in range(self.model.ngeom) if self.model.geom_bodyid[g] in finger_bodies}
        self._item_by_geom = {self.model.geom(p.obj.name).id: p.obj.name for p in spec.items}
        home = self.ik.solve(_HOME_SEED, np.array(HOME_EE), 0.0)
        self.data.qpos[self._arm_qpos] = home
        self.data.qpos[self._finger_qpos] = GRIPPER_MAX_OPENING / 2
        self.data.ctrl[:] = np.concatenate([home, [GRIPPER_MAX_OPENING / 2] * 2])
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=200)  # let items settle on the table
        self.data.time = 0.0

    def _ctrl_arm(self) -> np.ndarray:
        return self.data.ctrl[:5].copy()

    def ee_pose(self) -> tuple[np.ndarray, float]:
        pos = self.data.site_xpos[self._grip_site].copy()
        xaxis = self.data.site_xmat[self._grip_site].reshape(3, 3)[:, 0]
        return pos, wrap_half_turn(float(np.arctan2(xaxis[1], xaxis[0])))

    def gripper_opening(self) -> float:
        return float(sum(self.data.qpos[self._finger_qpos]))

    def proprio(self) -> np.ndarray:
        pos, yaw = self.ee_pose()
        return np.concatenate([self.data.qpos[self._arm_qpos], [self.gripper_opening()], pos, [yaw]]).astype(np.float32)

    def held_object(self) -> str | None:
        """The item both fingers touch, if any: a grasp that holds by friction, not by magic."""
        touching: dict[str, set[int]] = {}
        for c in self.data.contact[: self.data.ncon]:
            for finger, other in ((c.geom1, c.geom2), (c.geom2, c.geom1)):
                if finger in self._finger_geoms and other in self._item_by_geom:
                    touching.setdefault(self._item_by_geom[other], set()).add(self.model.geom_bodyid[finger])
        held = [name for name, fingers in touching.items() if len(fingers) == 2]
        return held[0] if held else None

    def env_state(self) -> dict:
        objects = {}
        for p in self.spec.items:
            body = self.data.body(p.obj.name)
            rot = body.xmat.reshape(3, 3)
            objects[p.obj.name] = {
                "kind": p.obj.kind,
                "colour": p.obj.colour,
                "category": KINDS[p.obj.kind].category,
                "pos": body.xpos.tolist(),
                "yaw": float(np.arctan2(rot[1, 0], rot[0, 0])),
                "upright": bool(rot[2, 2] > 0.8),
                "half_size": list(KINDS[p.obj.kind].half_size),
            }
        places = {}
        if "tub" in self.spec.fixtures:
            places["tub"] = {"pos": list(TUB["pos"]), "half": list(TUB["half"]), "height": TUB["height"], "floor": 0.008}
        if "trash_bin" in self.spec.fixtures:
            places["trash_bin"] = {"pos": list(TRASH_BIN["pos"]), "half": list(TRASH_BIN["half"]),
                                   "height": TRASH_BIN["height"], "floor": 0.008}
        if "pads" in self.spec.fixtures:
            for name, xy in PADS.items():
                places[name] = {"pos": list(xy), "half": [PAD_HALF, PAD_HALF], "height": 0.0, "floor": 0.0}
        drawer = None
        if "cabinet" in self.spec.fixtures:
            opening = float(self.data.joint("drawer_slide").qpos[0])
            dx, dy = CABINET["pos"][0] - opening, CABINET["pos"][1]
            hx, hy, _ = CABINET["half"]
            places["drawer"] = {"pos": [dx, dy], "half": [hx - 0.02, hy - 0.02], "height": 0.07, "floor": 0.012,
                                # only the pulled-out part is reachable from above, and the hand must clear the top
                                "open_region_x": [dx - hx + 0.03, CABINET["pos"][0] - hx - 0.06]}
            drawer = {"opening": opening, "travel": CABINET["drawer_travel"],
                      "handle": self.data.site("handle").xpos.tolist()}
        pos, yaw = self.ee_pose()
        return {
            "family": self.family.name,
            "objects": objects,
            "places": places,
            "drawer": drawer,
            "gripper": {"pos": pos.tolist(), "yaw": yaw, "opening": self.gripper_opening(), "held": self.held_object()},
            "home": list(HOME_EE),
            "time": float(self.data.time),
            # plain lists (it travels as JSON to the policy server) from which `restore` rebuilds this moment
            "sim_state": {"task": self.family.name, "seed": self.seed, "qpos": self.data.qpos.tolist(),
                          "qvel": self.data.qvel.tolist(), "ctrl": self.data.ctrl.tolist(),
                          "act": self.data.act.tolist(), "time": float(self.data.time)},
        }
