"""The sim skill policy: the stand-in low-level VLA of the embedded default.

`infer(observation, prompt)` grounds the free-form subtask to a skill (through `sim.grounding`),
plans it against the privileged `env_state` (through `sim.skills`) and returns an ee action chunk
with an `info` dict saying how it understood the text, or why it refused. Like a real VLA it
never says when a subtask is finished: it keeps acting on the current one and holds still when
there is nothing left to do.

Besides the DESIGN prompt fields it reads two optional ones, `episode` and `segment`: a new
segment is a new try at an instruction (fresh noise, fresh memory) even when its text repeats.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sim import skills, tasks
from sim.grounding import Grounder, Grounding, Refusal
from sim.objects import SceneObject


@dataclass
class SkillPolicyConfig:
    noise: float = 1.0  # 0 = a perfect robot; 1 = the default failure rate
    horizon: int = 10  # actions per chunk
    control_hz: float = 10.0
    seed: int = 0
    miss_probability: float = 0.07  # per grasp at noise 1: the aim is off by a finger's width
    slip_probability: float = 0.05  # per carry at noise 1: the jaw lets go halfway


class SimSkillPolicy:
    """Serves `infer(observation, prompt) -> {"actions": H x 6, "info": {...}}` for the sim robot."""

    name = "coachlab-sim-skill-policy"

    def __init__(self, config: SkillPolicyConfig | None = None, grounder: Grounder | None = None):
        self.config = config or SkillPolicyConfig()
        # One thread: the encoder runs a 6-layer model on one sentence at a time, and torch's
        # default thread pool fights the physics and renderer for the same cores (40x slower).
        torch.set_num_threads(1)
        self.grounder = grounder or Grounder()
        self._attempts: OrderedDict[tuple, skills.Attempt] = OrderedDict()
        self._seed = self.config.seed

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action_dim": 6,
            "chunk_length": self.config.horizon,
            "control_modes": ["ee"],
            "needs_env_state": True,
            "takes_subgoal_images": False,
            "takes_metadata": False,
        }

    def reset(self, seed: int | None = None) -> None:
        self._attempts.clear()
        if seed is not None:
            self._seed = seed

    def infer(self, observation: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]:
        env = observation.get("env_state")
        if env is None:
            raise ValueError("The sim skill policy needs the sim's env_state; point a real robot at a real VLA.")
        if prompt.get("control_mode", "ee") != "ee":
            return self._hold(env, {"refused": True, "reason": "The sim skill policy acts in ee mode only; switch the control mode to ee."})
        text = str(prompt.get("subtask") or "")
        objects = [SceneObject(n, o["kind"], o["colour"]) for n, o in env["objects"].items()]
        grounding = self.grounder.ground(text, objects, list(env["places"]), env["gripper"]["held"])
        if isinstance(grounding, Refusal):
            return self._hold(env, grounding.to_info())
        attempt = self._attempt(prompt, text, env)
        frames, phase = self._plan(grounding, env, attempt)
        actions = skills.rollout(env, frames, self.config.horizon, self.config.control_hz)
        return {"actions": actions, "info": {**grounding.to_info(), "phase": phase}}

    # -- internals --------------------------------------------------------------------------
    def _hold(self, env: dict, info: dict) -> dict[str, Any]:
        actions = skills.rollout(env, skills.hold(env), self.config.horizon, self.config.control_hz)
        return {"actions": actions, "info": {**info, "phase": "holding still"}}

    def _attempt(self, prompt: dict, text: str, env: dict) -> skills.Attempt:
        """One instruction's memory; a new segment (or new text) is a fresh try with fresh noise."""
        key = (prompt.get("episode"), prompt.get("segment"), text)
        if key not in self._attempts:
            digest = hashlib.sha256(repr((self._seed, key)).encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            noise = self.config.noise
            miss = rng.random() < self.config.miss_probability * noise
            offset = rng.normal(0, 0.004 * noise, 2)
            if miss:  # off by more than the jaw can forgive
                angle = rng.uniform(0, 2 * np.pi)
                offset = 0.035 * np.array([np.cos(angle), np.sin(angle)])
            slip = float(rng.uniform(0.3, 0.7)) if rng.random() < self.config.slip_probability * noise else None
            self._attempts[key] = skills.Attempt(offset, slip, start_xy=np.asarray(env["gripper"]["pos"][:2], float))
            while len(self._attempts) > 256:
                self._attempts.popitem(last=False)
        return self._attempts[key]

    def _plan(self, g: Grounding, env: dict, attempt: skills.Attempt) -> tuple[list[skills.Keyframe], str]:
        if g.skill == "pick":
            return skills.pick(env, g.object, attempt)
        if g.skill in ("place", "put"):
            obj = g.object or env["gripper"]["held"]
            if obj is None:
                return skills.hold(env), "not holding anything"
            inside = tasks.is_in(env, obj, g.target)
            if g.skill == "put" and env["gripper"]["held"] != obj and not inside:
                return skills.pick(env, obj, attempt)
            return skills.place(env, obj, g.target, attempt, inside)
        if g.skill in ("open", "close"):
            if env.get("drawer") is None:
                return skills.hold(env), "there is no drawer here"
            return skills.open_drawer(env) if g.skill == "open" else skills.close_drawer(env)
        if g.skill == "push":
            return skills.push(env, g.object, g.direction or "forward", attempt)
        if g.skill == "home":
            return skills.go_home(env)
        return skills.hold(env), "stopped"


def from_options(**options: Any) -> SimSkillPolicy:
    """Factory for serving the sim skill policy from a JSON config (`coachlab vla-server`, child servers).

    The sentence encoder is loaded here, before the server says it is ready, so the first
    subtask a coach types is not the one that waits seconds for the model to load.
    """
    policy = SimSkillPolicy(SkillPolicyConfig(**options))
    policy.grounder.warm_up()
    return policy
