"""Random sim renders with perfect labels: the training and test data of the learned detector.

It owns the scene randomisation. Half the scenes are a task family's own (its fixtures and items),
half a random subset of every family's fixtures with up to `max_items` items of any kind and colour
(no two alike). Every item is then posed on the table, in the tub, in the
bin, in the drawer (open or closed), on a pad or in the gripper; a random reachable arm pose;
jittered lights. Items are posed directly (no physics: a render needs no settling). Images go
through the same JPEG round trip stored frames do, and the labels come from the segmentation
oracle (`sim.segmentation`), so an item hidden by the arm, a wall or a closed drawer is not
labelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import mujoco
import numpy as np

from sim.mujoco_robot import MujocoRobot, SimRobotConfig
from sim.objects import COLOURS, KINDS, SceneObject
from sim.scene import CABINET, GRIPPER_MAX_OPENING, PAD_HALF, PADS, TRASH_BIN, TUB, Placement, SceneSpec
from sim.segmentation import ItemView, item_labels, render_items
from sim.tasks import FAMILIES, get_family

FIXTURES = ("tub", "trash_bin", "cabinet", "pads")


@dataclass(frozen=True)
class SyntheticConfig:
    image_size: tuple[int, int] = (224, 224)
    cameras: tuple[str, ...] = ("base", "wrist")
    max_items: int = 9
    poses_per_scene: int = 6  # renders per compiled scene (a new model costs more than a new pose)
    jpeg_quality: int = 90  # as the recorder stores frames (storage.recorder.RecorderConfig)
    family: str | None = None  # a task family's fixtures and items (its `sample_scene`) rather than any mix
    # without `family`: the share of scenes that are some family's scene, the rest random mixes. The
    # families' own layouts hold what mixes rarely do: a block on the pad of its colour, a stack in the tub
    family_share: float = 0.5


@dataclass
class SyntheticFrame:
    images: dict[str, np.ndarray]  # {camera: HxWx3 uint8}, after the JPEG round trip
    views: list[ItemView]  # every item each camera sees, with its visible fraction


def synthetic_frames(n: int, seed: int, config: SyntheticConfig | None = None) -> Iterator[SyntheticFrame]:
    """`n` random labelled frames (deterministic in `seed`)."""
    config = config or SyntheticConfig()
    rng = np.random.default_rng(seed)
    robot = MujocoRobot(SimRobotConfig(cameras=config.cameras, image_size=config.image_size))
    base_light = None
    done = 0
    try:
        while done < n:
            spec = _spec(rng, config)
            robot.load(spec)
            base_light = robot.model.light_diffuse.copy()
            items = {p.obj.name: p.obj.label for p in spec.items}
            geom_item = item_labels(robot.model, items)
            for _ in range(min(config.poses_per_scene, n - done)):
                _pose(robot, spec, rng)
                robot.model.light_diffuse[:] = base_light * rng.uniform(0.6, 1.4)
                robot.model.vis.headlight.ambient[:] = rng.uniform(0.3, 0.6)
                robot.model.vis.headlight.diffuse[:] = rng.uniform(0.35, 0.65)
                images, views = {}, []
                for cam in config.cameras:
                    image = robot.render(cam)
                    images[cam] = jpeg_round_trip(image, config.jpeg_quality)
                    views += render_items(robot.renderer, robot.data, cam, geom_item, items)
                yield SyntheticFrame(images, views)
                done += 1
    finally:
        robot.close()


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image as a stored frame decodes: OpenCV's JPEG at `quality`, as `storage.frames` encodes
    (the sim does not depend on storage, so the two calls are repeated here)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _spec(rng: np.random.Generator, config: SyntheticConfig) -> SceneSpec:
    """The scene to render next: the configured family's, or some family's, or a random mix."""
    if config.family:
        return get_family(config.family).sample_scene(rng)
    if rng.random() < config.family_share:
        return get_family(str(rng.choice(sorted(FAMILIES)))).sample_scene(rng)
    return _random_spec(rng, config.max_items)


def _random_spec(rng: np.random.Generator, max_items: int) -> SceneSpec:
    fixtures = tuple(f for f in FIXTURES if rng.random() < 0.6)
    pairs = [(k, c) for k in KINDS for c in COLOURS]
    chosen = rng.choice(len(pairs), int(rng.integers(1, max_items + 1)), replace=False)
    objs = [SceneObject(f"{c}_{k}", k, c) for k, c in (pairs[i] for i in chosen)]
    return SceneSpec(fixtures, [Placement(o, (0.3 + 0.1 * i, -0.5), 0.0) for i, o in enumerate(objs)])


def _places(spec: SceneSpec, drawer_open: float) -> list[tuple[str, tuple[float, float], tuple[float, float], float]]:
    """(name, centre xy, half extents xy, floor z) of every surface an item can stand on in this scene."""
    out = [("table", (0.375, 0.0), (0.175, 0.28), 0.0)]  # the free table between the fixtures
    if "tub" in spec.fixtures:
        out.append(("tub", TUB["pos"], (TUB["half"][0] - 0.03, TUB["half"][1] - 0.03), 0.008))
    if "trash_bin" in spec.fixtures:
        out.append(("trash_bin", TRASH_BIN["pos"], (TRASH_BIN["half"][0] - 0.03, TRASH_BIN["half"][1] - 0.03), 0.008))
    if "pads" in spec.fixtures:
        out += [(name, xy, (PAD_HALF - 0.02, PAD_HALF - 0.02), 0.002) for name, xy in PADS.items()]
    if "cabinet" in spec.fixtures:
        hx, hy, _ = CABINET["half"]
        cx, cy = CABINET["pos"]
        out.append(("drawer", (cx - drawer_open, cy), (hx - 0.05, hy - 0.05), 0.016))
    return out


def _pose(robot: MujocoRobot, spec: SceneSpec, rng: np.random.Generator) -> None:
    """Move the arm, the drawer and every item to a new random pose, then update kinematics."""
    m, d = robot.model, robot.data
    drawer_open = 0.0
    if "cabinet" in spec.fixtures:
        drawer_open = float(rng.choice([0.0, rng.uniform(0.0, CABINET["drawer_travel"]), CABINET["drawer_travel"]]))
        d.joint("drawer_slide").qpos[0] = drawer_open
    places = _places(spec, drawer_open)
    # the arm: a reachable gripper pose over the workspace, jaws at a random opening
    target = np.array([rng.uniform(0.18, 0.62), rng.uniform(-0.42, 0.42), rng.uniform(0.06, 0.38)])
    q = robot.ik.solve(d.qpos[robot.ik.qpos_idx], target, float(rng.uniform(-np.pi, np.pi)),
                       float(rng.uniform(-0.3, 0.3)))
    d.qpos[robot.ik.qpos_idx] = q
    mujoco.mj_kinematics(m, d)
    held = rng.random() < 0.25 and spec.items
    occupied: list[tuple[float, float]] = []
    for k, p in enumerate(spec.items):
        hx, hy, hz = KINDS[p.obj.kind].half_size
        adr = m.joint(p.obj.name).qposadr[0]
        yaw = float(rng.uniform(-np.pi, np.pi))
        quat = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        if held and k == 0:  # the first item in the hand: jaws closed on it, as after a grasp
            pos = d.site("grip").xpos.copy()
            hand = d.site("grip").xmat.reshape(3, 3)
            quat = np.empty(4)
            mujoco.mju_mat2Quat(quat, hand.ravel())
            width = 2 * min(hx, hy)
            d.qpos[robot.finger_qpos] = min(width, GRIPPER_MAX_OPENING) / 2
        else:
            pos = _free_spot(rng, places, occupied, max(hx, hy), hz)
            occupied.append(tuple(pos[:2]))
        d.qpos[adr:adr + 3] = pos
        d.qpos[adr + 3:adr + 7] = quat
    if not held:
        d.qpos[robot.finger_qpos] = rng.uniform(0.0, GRIPPER_MAX_OPENING / 2)
    mujoco.mj_forward(m, d)


def _free_spot(rng, places, occupied, radius: float, hz: float) -> np.ndarray:
    """An xy on a random surface clear of the items placed so far (best effort after 30 tries)."""
    for _ in range(30):
        name, (cx, cy), (hx, hy), floor = places[int(rng.integers(len(places)))]
        x, y = cx + rng.uniform(-hx, hx), cy + rng.uniform(-hy, hy)
        if all(np.hypot(x - ox, y - oy) > 2 * radius + 0.01 for ox, oy in occupied):
            break
    return np.array([x, y, floor + hz + 0.001])
