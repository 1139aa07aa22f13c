"""The open-vocabulary detector for labs (`distill/open_vocabulary.py`) on a tiny randomly initialised
OWLv2 saved to a folder, as a lab's real one would be: the code path, the shapes, the vocabulary from
logged subtasks and the errors. (Its boxes are random: only real weights detect anything.)"""

from __future__ import annotations

import numpy as np
import pytest

from distill.dataset import DistillError


def _tiny_owlv2(folder):
    """Save a 1-layer OWLv2 with a 64 px vision tower and a byte-level CLIP tokenizer to `folder`."""
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    chars = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = Owlv2Config(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16,
                     "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
                     "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 16},
        projection_dim=32)
    import torch

    torch.manual_seed(0)  # random weights, but the same ones every run: the boxes checked below are fixed
    Owlv2ForObjectDetection(config).save_pretrained(folder)
    image_processor = Owlv2ImageProcessorPil(size={"height": 64, "width": 64})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_vocabulary_comes_from_the_objects_coaches_named():
    from distill.open_vocabulary import vocabulary_from_subtasks

    texts = ["pick up the red cup", "put it in the bussing tub", "grab the red cup", "put the can into the trash bin",
             "open the drawer", "", "x" * 10_000]
    assert vocabulary_from_subtasks(texts) == ["red cup", "bussing tub", "can", "drawer", "trash bin"]


def test_a_tiny_owlv2_runs_behind_the_seam(tmp_path):
    from app import embedded
    from distill.open_vocabulary import OpenVocabularyDetector

    folder = _tiny_owlv2(tmp_path / "owl")
    detector = embedded.detector(f"owl:{folder}", vocabulary=["red cup", "blue plate"])
    assert isinstance(detector, OpenVocabularyDetector)
    detector.threshold = 0.0  # random weights score low: take every box so the shapes are checked
    images = {"base": np.random.default_rng(0).integers(0, 255, (224, 224, 3), np.uint8),
              "wrist": np.zeros((120, 160, 3), np.uint8)}
    found = detector.detect(images)
    assert any(d.camera == "base" for d in found) and {d.camera for d in found} <= {"base", "wrist"}
    for d in found:
        assert d.label in ("red cup", "blue plate")
        h, w = images[d.camera].shape[:2]
        assert 0 <= d.box[0] < d.box[2] <= w and 0 <= d.box[1] < d.box[3] <= h
    assert len([d for d in found if d.camera == "base"]) <= 2  # the best box per label
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        detector.detect({"base": np.zeros((224, 224), np.uint8)})


def test_bad_open_vocabulary_folders_get_one_sentence(tmp_path, tiny_policy):
    from app import embedded
    from app.errors import UserError
    from distill.open_vocabulary import OpenVocabularyDetector

    with pytest.raises(DistillError, match="no transformers model"):
        OpenVocabularyDetector.load(tmp_path / "missing", ["cup"])
    with pytest.raises(DistillError, match="not a zero-shot object detector"):  # a coachlab checkpoint is not one
        OpenVocabularyDetector.load(tiny_policy[1], ["cup"])
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
              ).save_pretrained(tmp_path / "bert")
    with pytest.raises(DistillError, match="not a zero-shot object detector"):
        OpenVocabularyDetector.load(tmp_path / "bert", ["cup"])
    with pytest.raises(UserError, match="coach a few episodes first"):
        embedded.detector(f"owl:{tmp_path}", vocabulary=[])
