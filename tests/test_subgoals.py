"""The learned subgoal image model end to end on a small scale: scripted coaching into a real SQLite
database, `coachlab distill-subgoals`, the checkpoint behind the app's preview seam on a live sim,
the images riding along with the subtask, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distill.dataset import DistillError
from distill.run import PLOT, SUBGOALS_KIND

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def coached_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('subgoals')}/coach.db"
    r = _run(["coach", "--task", "sort_blocks", "--episodes", "4", "--seed", "0", "--noise", "0", "--db", url, "--json"])
    assert r.returncode == 0, r.stderr[-2000:]
    return url


@pytest.fixture(scope="module")
def trained(coached_db, tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("run") / "subgoals"
    r = _run(["distill-subgoals", "--db", coached_db, "--out", str(out), "--epochs", "8", "--no-progress", "--json"])
    assert r.returncode == 0, r.stderr[-2000:]
    return str(out), json.loads(r.stdout)


def test_metrics_score_a_perfect_prediction_above_copying():
    from distill.subgoal_metrics import changed_mask, compare_to_copy

    rng = np.random.default_rng(0)
    current = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    end = current.copy()
    end[8:16, 8:16] = 255 - end[8:16, 8:16]  # something moved here
    mask = changed_mask(current, end)
    assert mask[8:16, 8:16].mean() > 0.9 and mask.sum() < 80
    half = ((current.astype(int) + end) // 2).astype(np.uint8)
    scores = compare_to_copy([("base", current, end, end), ("wrist", current, half, end)])
    assert scores["base"]["psnr_gain_changed_db"] > 50  # perfect against copying
    assert 3 < scores["wrist"]["psnr_gain_changed_db"] < 10  # halfway there: about 6 dB
    assert scores["base"]["ssim_all"] == pytest.approx(1.0) and scores["base"]["copy_ssim_changed"] < 0.9


def test_training_writes_a_registered_checkpoint_that_learned(trained, coached_db):
    from storage import list_policies, open_database

    out, metrics = trained
    for name in ("model.safetensors", "config.json", "training.json", PLOT, "samples_base.png",
                 "samples_wrist.png"):
        assert (Path(out) / name).is_file(), name
    assert metrics["cameras"] == ["base", "wrist"] and metrics["image_size"] == 96
    assert metrics["val_pairs"] > 0 and metrics["train_pairs"] > metrics["val_pairs"]
    history = json.loads((Path(out) / "training.json").read_text())["metrics"]["history"]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]  # it learns
    assert metrics["psnr_gain_changed_db"]["base"] > 0.5, metrics["val"]  # already beats copying on held-out
    with open_database(coached_db) as db:
        (record,) = list_policies(db, kind=SUBGOALS_KIND)
    assert record.checkpoint_path == str(Path(out).resolve()) and record.id == metrics["policy_id"]


def test_learned_previews_drive_a_coached_episode(trained, tmp_path, coaching_session):
    """The app's seam with `learned:DIR`: preview on the live sim, send with subgoals, all logged."""
    from coaching.session import EpisodeSettings
    from storage import load_episode

    out, _ = trained
    with coaching_session(tmp_path / "app.db", subgoals=f"learned:{out}") as session:
        episode_id = session.start_episode(EpisodeSettings(task="Sort the blocks.", task_family="sort_blocks", seed=3),
                                           user="ana")
        frame = session.wait_frame(0)
        preview = session.preview("pick up the red block")
        assert set(preview.images) == {"base", "wrist"}
        assert preview.images["base"].shape == frame.images["base"].shape
        assert preview.images["base"].dtype == np.uint8
        # a prediction, not a copy of the live frame, and still a picture of the scene
        diff = np.abs(preview.images["base"].astype(int) - frame.images["base"]).mean()
        assert 0.5 < diff < 60
        seg = session.send_subtask("pick up the red block", user="ana", with_subgoals=True)
        assert seg.with_subgoals
        session.end_episode("failure", user="ana")
        record = load_episode(session.recorder.db, episode_id)
        assert record.segments[0].subgoal_sent and record.segments[0].subgoal_cameras == ["base", "wrist"]
        assert record.subgoal_image(record.segments[0].id, "base").shape == frame.images["base"].shape


def test_bad_checkpoints_and_selections_get_one_sentence(trained, tmp_path, coached_db):
    import shutil

    from app.embedded import subgoal_generator
    from distill.learned_subgoals import LearnedSubgoals

    out, _ = trained
    with pytest.raises(DistillError, match="no checkpoint directory"):
        subgoal_generator(f"learned:{tmp_path / 'nowhere'}", None)
    with pytest.raises(ValueError, match="needs a directory"):
        subgoal_generator("learned:", None)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(DistillError, match="corrupt"):
        LearnedSubgoals.load(str(broken))
    (broken / "config.json").write_text(json.dumps({"format": "coachlab-high-level-v1"}))
    with pytest.raises(DistillError, match="not a coachlab-subgoal-unet-v1 checkpoint"):
        LearnedSubgoals.load(str(broken))
    model = LearnedSubgoals.load(out)
    with pytest.raises(DistillError, match="has no wrist"):
        model.check_cameras(["base", "left_wrist"])

    r = _run(["distill-subgoals", "--db", coached_db, "--out", str(tmp_path / "x"), "--tasks", "drawer", "--json"])
    assert r.returncode == 2 and "No logged episodes" in r.stderr and "Traceback" not in r.stderr
    r = _run(["distill-subgoals", "--db", coached_db, "--out", str(tmp_path / "x"), "--image-size", "50"])
    assert r.returncode == 2 and "multiple of 16" in r.stderr
