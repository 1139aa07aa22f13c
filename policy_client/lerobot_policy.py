"""A LeRobot policy as a coachlab VLA: loaded with its own pre- and post-processors, served over
coachlab's ZMQ wire.

Runs in the lab's LeRobot environment (LeRobot pins torch and hub versions this project has moved
past, so it cannot share coachlab's), with this `policy_client` package importable (it needs only
numpy and pyzmq):

    PYTHONPATH=/path/to/coachlab python -m policy_client.lerobot_policy PRETRAINED_DIR --port 5555

then `coachlab app --vla tcp://HOST:5555`. `PRETRAINED_DIR` is what LeRobot's training writes
(`config.json`, `model.safetensors`, and the `policy_preprocessor.json` / `policy_postprocessor.json`
pipelines with their normalisation stats). Those pipelines are LeRobot's own
(`lerobot.policies.factory.make_pre_post_processors`): normalisation, the device move, and for
language-conditioned policies (SmolVLA, pi0) the tokenisation of the `task` text, so a policy runs
here exactly as it ran in LeRobot's evaluation.

The mapping between the two conventions (the same one `coachlab export` writes datasets with):
camera `NAME` is `observation.images.NAME` (1x3xHxW float in 0..1), the proprio state is
`observation.state`, and the subtask the coach typed is LeRobot's `task` (the VLA executes
subtasks; the episode's task goes in only when no subtask is given). The reply is the policy's
whole action chunk (`predict_action_chunk`, H x A), which coachlab's chunker executes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from policy_client.base_policy import BasePolicy

IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"


class LeRobotPolicy(BasePolicy):
    """`infer(observation, prompt)` for a LeRobot policy saved with `save_pretrained` (its processors beside it).

    Raises ValueError in one sentence when the folder is not a LeRobot policy, and from `infer` when
    the robot's cameras or state do not match what the policy was trained on.
    """

    def __init__(self, pretrained_dir: str | Path, device: str = "cpu", control_mode: str = "ee"):
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        path = Path(pretrained_dir)
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} holds no LeRobot policy (no config.json); give the folder save_pretrained wrote.")
        self._torch = torch
        config = PreTrainedConfig.from_pretrained(str(path))
        config.device = device
        self.config = config
        self.policy = get_policy_class(config.type).from_pretrained(str(path), config=config)
        self.policy.eval()
        overrides = {"device_processor": {"device": device}}
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            config, pretrained_path=str(path), preprocessor_overrides=overrides)
        self.cameras = [k[len(IMAGE_PREFIX):] for k in config.input_features if k.startswith(IMAGE_PREFIX)]
        state = config.input_features.get(STATE_KEY)
        self.state_dim = int(state.shape[0]) if state is not None else None
        self.action_dim = int(config.output_features["action"].shape[0])
        self.control_mode = control_mode  # LeRobot's config does not say which space its actions are in
        images = [f.shape for k, f in config.input_features.items() if k.startswith(IMAGE_PREFIX)]
        self.image_size = list(images[0][1:]) if images else None  # C x H x W -> [H, W]

    @property
    def metadata(self) -> dict[str, Any]:
        return {"name": f"lerobot:{self.config.type}", "action_dim": self.action_dim,
                "chunk_length": int(getattr(self.config, "chunk_size", 1) or 1), "cameras": self.cameras,
                "image_size": self.image_size, "control_modes": [self.control_mode],
                "takes_subgoal_images": False, "takes_metadata": False}

    def reset(self, seed: int | None = None) -> None:
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()

    def infer(self, observation: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]:
        """observation {"images": {camera: HxWx3 uint8}, "state": (S,)}, prompt {"subtask", "task"} ->
        {"actions": H x A float32, "info": {}} in the robot's units (the postprocessor unnormalises)."""
        torch = self._torch
        batch = {STATE_KEY: self._state(observation), "task": str(prompt.get("subtask") or prompt.get("task") or "")}
        images = observation.get("images") or {}
        missing = [c for c in self.cameras if c not in images]
        if missing:
            raise ValueError(f"The policy was trained with camera {missing[0]!r}, which this robot does not send "
                             f"(it sends {', '.join(sorted(images)) or 'none'}); rename the cameras to match.")
        for cam in self.cameras:
            img = np.asarray(images[cam])
            batch[IMAGE_PREFIX + cam] = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            chunk = self.policy.predict_action_chunk(self.preprocessor(batch))  # 1 x H x A, normalised
            actions = self.postprocessor(chunk)
        return {"actions": np.asarray(actions[0].cpu().numpy(), dtype=np.float32), "info": {}}

    def _state(self, observation: dict[str, Any]):
        state = np.asarray(observation.get("state"), dtype=np.float32).reshape(-1)
        if self.state_dim is not None and state.shape[0] != self.state_dim:
            raise ValueError(f"The policy was trained on a {self.state_dim}-value state; this robot sends "
                             f"{state.shape[0]} values.")
        return self._torch.from_numpy(state)[None]


def main(argv: list[str] | None = None) -> None:
    """Serve a LeRobot policy folder over coachlab's ZMQ wire until Ctrl+C."""
    from policy_client.server import PolicyServer

    p = argparse.ArgumentParser(prog="python -m policy_client.lerobot_policy", description=main.__doc__)
    p.add_argument("pretrained_dir", help="the folder LeRobot's save_pretrained wrote (config, weights, processors)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5555)
    p.add_argument("--device", default="cpu")
    p.add_argument("--control-mode", choices=("ee", "joint"), default="ee",
                   help="the space of the policy's actions: end-effector pose or joint positions")
    args = p.parse_args(argv)
    try:
        policy = LeRobotPolicy(args.pretrained_dir, args.device, args.control_mode)
        server = PolicyServer(policy, f"tcp://{args.host}:{args.port}")  # AddressInUse, InsecureBind: one sentence
    except (ValueError, OSError) as e:
        sys.exit(str(e))
    print(f"serving LeRobot {policy.config.type} from {args.pretrained_dir} at tcp://{args.host}:{args.port} "
          f"(Ctrl+C stops)", file=sys.stderr, flush=True)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
