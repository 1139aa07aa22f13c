"""The learned subgoal generator behind the app's preview seam (`--subgoals learned:DIR`).

It needs nothing but what a real robot gives (its cameras) and the subtask text, so it is the
preview a robot without a simulator uses. Each camera's frame is shrunk to the model's size,
all cameras go through the model in one batch, and the predictions are scaled back to each
camera's own size, so they can travel to the low-level policy as the prompt's subgoal images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from distill.dataset import DistillError, resize_image

FORMAT = "coachlab-subgoal-unet-v1"
COMMAND = "coachlab distill-subgoals"


@dataclass
class GeneratedSubgoals:
    images: dict[str, np.ndarray]
    refused: str | None = None


def load_subgoal_model(directory: str) -> Any:
    """The checkpoint (model in eval mode, config, training record) or a one-sentence DistillError."""
    from distill.checkpoint import load_model
    from distill.subgoal_model import SubgoalModelConfig, SubgoalUNet

    return load_model(directory, FORMAT, lambda raw: SubgoalUNet(SubgoalModelConfig.from_dict(raw)), COMMAND)


def predict(model: Any, images: dict[str, np.ndarray], text_embedding: np.ndarray) -> dict[str, np.ndarray]:
    """Every camera's predicted end frame at the model's size: (S, S, 3) uint8 each."""
    import torch

    cams = model.cfg.cameras
    size = model.cfg.image_size
    current = np.stack([resize_image(images[c], size) for c in cams])
    x = torch.from_numpy(current).permute(0, 3, 1, 2).float() / 255.0
    text = torch.from_numpy(np.asarray(text_embedding, np.float32)).expand(len(cams), -1)
    with torch.inference_mode():
        y = model(x, text, torch.arange(len(cams)))
    out = (y.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    return dict(zip(cams, out))


class LearnedSubgoals:
    """`generate(observation, subtask)` -> each camera's predicted frame once the subtask is done."""

    def __init__(self, checkpoint: Any, encoder: Any | None = None):
        from coaching.text_encoder import default_encoder

        self.model = checkpoint.model
        self.directory = checkpoint.directory
        self.encoder = encoder or default_encoder()

    @classmethod
    def load(cls, directory: str) -> "LearnedSubgoals":
        return cls(load_subgoal_model(directory))

    def check_cameras(self, cameras: Any) -> None:
        missing = [c for c in self.model.cfg.cameras if c not in cameras]
        if missing:
            raise DistillError(f"The subgoal model in {self.directory} was trained on cameras "
                               f"{', '.join(self.model.cfg.cameras)} but this robot has no {', '.join(missing)}: "
                               "train one on this robot's episodes.")

    def generate(self, observation: Any, subtask: str, task: str = "", control_mode: str = "ee") -> GeneratedSubgoals:
        import cv2

        from distill.dataset import normalize_subtask

        self.check_cameras(observation.images)
        text = normalize_subtask(subtask)
        if not text:
            return GeneratedSubgoals({}, refused="Type a subtask to preview.")
        small = predict(self.model, observation.images, self.encoder.encode([text])[0])
        images = {}
        for cam, img in small.items():
            h, w = observation.images[cam].shape[:2]
            images[cam] = img if (h, w) == img.shape[:2] else cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
        return GeneratedSubgoals(images)
