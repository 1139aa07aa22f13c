"""Checkpoint bad inputs: each gives one clear sentence (no data or training needed)."""

from __future__ import annotations

import json

import pytest

from distill.checkpoint import save_checkpoint
from distill.dataset import DistillError, normalize_subtask
from distill.features import metadata_prompt
from distill.learned_policy import FORMAT, issued, load_checkpoint
from distill.model import HighLevelNet, ModelConfig


def _one_sentence(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith(".") and msg.count(": ") <= 2, msg
    return msg


@pytest.fixture
def ckpt(tmp_path):
    cfg = ModelConfig(context_dim=40, track_dim=18, groups=3, slotted=[True, False, False], hidden=16)
    save_checkpoint(tmp_path / "ck", HighLevelNet(cfg), {"episode_ids": [1, 2]}, FORMAT)
    return tmp_path / "ck"


def test_round_trip_weights(ckpt):
    import torch

    a = load_checkpoint(ckpt)
    b = load_checkpoint(ckpt)
    assert a.episode_ids == [1, 2] and a.config.slotted == [True, False, False]
    for (k, v), (_, w) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(v, w), k


def test_missing_dir(tmp_path):
    with pytest.raises(DistillError) as err:
        load_checkpoint(tmp_path / "nope")
    assert "no checkpoint directory" in _one_sentence(err)


def test_corrupt_weights(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DistillError) as err:
        load_checkpoint(ckpt)
    assert "corrupt" in _one_sentence(err)


def test_missing_weights(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(DistillError) as err:
        load_checkpoint(ckpt)
    _one_sentence(err)


def test_corrupt_json(ckpt):
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(DistillError) as err:
        load_checkpoint(ckpt)
    assert "corrupt" in _one_sentence(err)


def test_mismatched_config(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["context_dim"] = 7
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DistillError) as err:
        load_checkpoint(ckpt)
    assert "do not match" in _one_sentence(err)
    cfg["unknown_field"] = 1
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DistillError) as err:
        load_checkpoint(ckpt)
    _one_sentence(err)


def test_text_helpers():
    assert normalize_subtask("  That didn't work, Put it on the RED pad. ") == "put it on the red pad"
    assert issued(["a", "try again: a", "b", "done", "c", "d"]) == ["a", "b", "c", "d"]
    assert metadata_prompt({"speed": "normal", "quality": 5, "mistake": False}) == "speed normal, quality 5, no mistakes"
    assert metadata_prompt(None) == ""


def test_a_checkpoint_of_another_format_is_one_sentence(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["format"] = "coachlab-high-level-v1"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DistillError) as err:
        load_checkpoint(ckpt)
    assert "not a coachlab-high-level-v2 checkpoint" in _one_sentence(err)
