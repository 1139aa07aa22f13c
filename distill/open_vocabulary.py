"""An open-vocabulary detector from transformers behind the `Detector` seam, for labs.

It owns loading a zero-shot object detection model (OWLv2, OWL-ViT, Grounding DINO: whatever
`AutoModelForZeroShotObjectDetection` builds) and its processor from a local folder (nothing is
fetched from a hub), asking it for a label vocabulary, and turning its boxes into detections: the
best box per label per camera. The vocabulary defaults to the object phrases of the logged
subtasks (`vocabulary_from_subtasks`), so the detector looks for what coaches have named.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from coaching.detector import Detection
from distill.dataset import DistillError
from distill.learned_detector import check_images

_ARTICLES = {"the", "a", "an"}
_STOP = {"in", "into", "on", "onto", "to", "from", "of", "with", "and", "then", "it", "that", "over", "next",
         "left", "right", "back", "up", "down", "out", "off", "inside", "under", "near", "by", "at"}


def vocabulary_from_subtasks(texts: Iterable[str], limit: int = 64) -> list[str]:
    """The object phrases of subtask texts, most frequent first: the words after "the / a / an" up to
    a preposition ("pick up the red cup" -> "red cup", "put it in the bussing tub" -> "bussing tub")."""
    counts: dict[str, int] = {}
    for text in texts:
        tokens = re.findall(r"[a-z]+", text.lower())
        for i, token in enumerate(tokens):
            if token not in _ARTICLES:
                continue
            words = []
            for w in tokens[i + 1:i + 4]:  # an object phrase is at most three words here
                if w in _STOP or w in _ARTICLES:
                    break
                words.append(w)
            if words:
                phrase = " ".join(words)
                counts[phrase] = counts.get(phrase, 0) + 1
    return [p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]


class OpenVocabularyDetector:
    """`detect({camera: HxWx3 uint8})` with a transformers zero-shot detector and a label vocabulary."""

    def __init__(self, model, processor, labels: Sequence[str], threshold: float = 0.2, directory: str = ""):
        if not labels:
            raise DistillError("The open-vocabulary detector needs at least one label to look for.")
        self.model, self.processor = model, processor
        self.labels = list(labels)
        self.threshold = threshold
        self.directory = directory

    @classmethod
    def load(cls, directory: str | os.PathLike, labels: Sequence[str], threshold: float = 0.2) -> "OpenVocabularyDetector":
        """The model and processor saved (`save_pretrained`) in `directory`; a DistillError with one sentence
        when the folder is missing or holds no zero-shot object detection model."""
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        d = Path(directory)
        if not (d / "config.json").is_file():
            raise DistillError(f"There is no transformers model in {d}: point --detector owl:DIR at a folder written by "
                               "save_pretrained (config.json, weights and the processor files).")
        try:
            model = AutoModelForZeroShotObjectDetection.from_pretrained(str(d), local_files_only=True).eval()
        except (ValueError, KeyError) as err:
            raise DistillError(f"The model in {d} is not a zero-shot object detector ({str(err).splitlines()[0][:120]}): "
                               "use an OWLv2, OWL-ViT or Grounding DINO folder.") from None
        except OSError as err:
            raise DistillError(f"The model in {d} cannot be read ({str(err).splitlines()[0][:120]}): copy the whole "
                               "folder again.") from None
        try:
            processor = AutoProcessor.from_pretrained(str(d), local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise DistillError(f"The folder {d} has no usable processor ({str(err).splitlines()[0][:120]}): save the "
                               "processor with the model (processor.save_pretrained).") from None
        return cls(model, processor, labels, threshold, str(d))

    def detect(self, images: dict[str, np.ndarray]) -> list[Detection]:
        """The best box per label per camera scoring at least `threshold`, best score first."""
        import torch

        check_images(images)
        out = []
        for cam, image in images.items():
            h, w = image.shape[:2]
            inputs = self.processor(text=[self.labels], images=image, return_tensors="pt", padding=True, truncation=True)
            with torch.inference_mode():
                outputs = self.model(**inputs)
            # OWLv2 pads every image to a square before resizing, and its boxes are relative to that square
            side = (max(h, w),) * 2 if self.model.config.model_type == "owlv2" else (h, w)
            result = self.processor.post_process_grounded_object_detection(
                outputs, threshold=self.threshold, target_sizes=[side], text_labels=[self.labels])[0]
            best: dict[str, Detection] = {}
            for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), result["text_labels"]):
                x0, y0, x1, y1 = (float(np.clip(v, 0, lim)) for v, lim in zip(box, (w, h, w, h)))
                if x1 <= x0 or y1 <= y0 or (label in best and best[label].score >= score):
                    continue
                best[label] = Detection(label, cam, (x0, y0, x1, y1), float(score))
            out += best.values()
        return sorted(out, key=lambda d: -d.score)
