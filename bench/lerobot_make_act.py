"""Run inside LeRobot's environment (bench/lerobot_env.py), never imported by coachlab: build a small,
randomly initialised ACT policy for a robot and save it as LeRobot's training would, weights, config
and the pre- and post-processor pipelines with their normalisation stats.

Usage: python lerobot_make_act.py SPEC.json OUT_DIR
SPEC: {"cameras": [...], "image_size": [H, W], "state_dim": S, "action_dim": A, "chunk_size": H,
       "stats": {"observation.state": {"mean": [...], "std": [...]}, "action": {...}}}
Prints {"parameters": N} on its last line.
"""

import json
import sys

import numpy as np
import torch

import torchvision_shim  # noqa: F401  (before lerobot: see its docstring)
from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies.act.configuration_act import ACTConfig  # noqa: E402
from lerobot.policies.act.modeling_act import ACTPolicy  # noqa: E402
from lerobot.policies.factory import make_pre_post_processors  # noqa: E402

IMAGENET = {"mean": np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1), "std": np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)}


def main(spec_path: str, out: str) -> None:
    spec = json.load(open(spec_path))
    h, w = spec["image_size"]
    images = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, h, w)) for c in spec["cameras"]}
    config = ACTConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (spec["state_dim"],)), **images},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (spec["action_dim"],))},
        chunk_size=spec["chunk_size"], n_action_steps=spec["chunk_size"],
        dim_model=256, dim_feedforward=1024, n_heads=4,  # small: a CPU serves a chunk in well under a second
        pretrained_backbone_weights=None,  # random init; nothing is downloaded
        device="cpu")
    torch.manual_seed(0)
    policy = ACTPolicy(config)
    stats = {key: {k: np.asarray(v, dtype=np.float32) for k, v in s.items()} for key, s in spec["stats"].items()}
    stats.update({key: IMAGENET for key in images})
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    policy.save_pretrained(out)
    preprocessor.save_pretrained(out)
    postprocessor.save_pretrained(out)
    print(json.dumps({"parameters": sum(p.numel() for p in policy.parameters())}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
