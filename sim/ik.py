"""Inverse kinematics for the sim arm: end-effector targets (ee mode) to joint targets.

Damped least squares on MuJoCo's own Jacobians, on a scratch MjData so the physics state is
never touched. Written here rather than taken from a library (mink, dm_control) because it is
twenty lines and those bring solver or framework dependencies the sim does not otherwise need.
"""

from __future__ import annotations

import mujoco
import numpy as np

ARM_JOINTS = ("j0_yaw", "j1_shoulder", "j2_elbow", "j3_wrist_pitch", "j4_wrist_roll")
_DOWN = np.diag([-1.0, 1.0, -1.0])  # hand pointing at the table as the arm folds it: z down, x back


def wrap_half_turn(angle: float) -> float:
    """The jaw is symmetric under a half turn: fold any yaw into [-pi/2, pi/2)."""
    return (angle + np.pi / 2) % np.pi - np.pi / 2


def target_rotation(yaw: float, pitch: float) -> np.ndarray:
    """Gripper orientation: pointing down, tilted by `pitch` about world y, turned by `yaw` about z."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    return rz @ ry @ _DOWN


class ArmIK:
    """Solves for the five arm joints that put the `grip` site at a pose."""

    def __init__(self, model: mujoco.MjModel, site: str = "grip", damping: float = 1e-2):
        self.model = model
        self.data = mujoco.MjData(model)
        self.site_id = model.site(site).id
        self.qpos_idx = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.dof_idx = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.lower = model.jnt_range[[model.joint(j).id for j in ARM_JOINTS], 0]
        self.upper = model.jnt_range[[model.joint(j).id for j in ARM_JOINTS], 1]
        self.damping = damping
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def solve(self, q_start: np.ndarray, pos: np.ndarray, yaw: float, pitch: float = 0.0,
              iters: int = 60, tol: float = 1e-5) -> np.ndarray:
        # The jaw is symmetric under a half turn, so aim the yaw within 90 degrees of the arm's
        # plane: the wrist then never needs to spin around its limit.
        plane = np.arctan2(pos[1], pos[0])
        yaw = plane + wrap_half_turn(yaw - plane)
        rot_target = target_rotation(yaw, pitch)
        quat_target = np.empty(4)
        mujoco.mju_mat2Quat(quat_target, rot_target.ravel())
        q = np.clip(np.asarray(q_start, dtype=float).copy(), self.lower, self.upper)
        # The base joint alone turns the arm's plane toward the target; seeding it analytically keeps
        # damped least squares out of the local minima that big turns otherwise fall into.
        q[0] = plane
        q[4] = plane - yaw  # the wrist roll turns the jaw against the base (hand z points down)
        quat, err_rot = np.empty(4), np.empty(3)
        for _ in range(iters):
            self.data.qpos[self.qpos_idx] = q
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            err_pos = pos - self.data.site_xpos[self.site_id]
            mujoco.mju_mat2Quat(quat, self.data.site_xmat[self.site_id])
            mujoco.mju_subQuat(err_rot, quat_target, quat)
            err_rot = self.data.site_xmat[self.site_id].reshape(3, 3) @ err_rot  # local -> world, as jacr
            err = np.concatenate([err_pos, 0.3 * err_rot])  # metres and radians weighed
            if np.linalg.norm(err) < tol:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
            jac = np.vstack([self._jacp[:, self.dof_idx], 0.3 * self._jacr[:, self.dof_idx]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self.damping**2 * np.eye(6), err)
            q = np.clip(q + np.clip(dq, -0.3, 0.3), self.lower, self.upper)
        return q
