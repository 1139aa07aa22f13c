"""End to end on a small scale: coach episodes into a real SQLite database, build the dataset,
distill a few epochs (also under torchrun with 2 gloo processes), save, load and decide."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distill.dataset import DatasetConfig, DistillError, build_samples, normalize_subtask
from distill.run import HIGH_LEVEL_KIND, PLOT
from coaching.high_level import DONE
from coaching.robot import Observation

ROOT = Path(__file__).resolve().parents[1]


def _seen(images: dict, state: np.ndarray) -> Observation:
    """What the robot gives the policy: its cameras and proprio state (no privileged env_state)."""
    return Observation(images, state, timestamp=0.0)


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def coached_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('distill')}/coach.db"
    for extra in (["--episodes", "12", "--seed", "0"], ["--episodes", "2", "--seed", "100", "--profile", "sloppy"]):
        r = _run(["-m", "app.cli", "coach", "--task", "sort_blocks", "--db", url, "--json", *extra])
        assert r.returncode == 0, r.stderr[-2000:]
    return url


@pytest.fixture(scope="module")
def trained(coached_db, tmp_path_factory) -> tuple[str, dict]:
    from distill.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "policy"
    metrics = train(coached_db, str(out), TrainConfig(epochs=8, progress=False))
    return str(out), metrics


def test_dataset_labels_and_split(coached_db):
    from storage import list_episodes, load_episode, open_database

    db = open_database(coached_db)
    train, val, info = build_samples(db, DatasetConfig(), progress=False)
    assert set(info.train_episode_ids).isdisjoint(info.val_episode_ids)
    assert {s.episode_id for s in train} <= set(info.train_episode_ids)
    assert {s.episode_id for s in val} <= set(info.val_episode_ids) and val
    assert info.cameras == ["base", "wrist"]
    s = train[0]
    assert s.images["base"].shape == (64, 64, 3) and s.images["base"].dtype == np.uint8
    assert s.state.dtype == np.float32 and s.metadata["quality"] in (2, 5)
    samples = train + val
    assert all(t.target == normalize_subtask(t.target) and not t.target.startswith("try again") for t in samples)
    assert all(len(t.history) <= DatasetConfig().history for t in samples)  # the history cap
    # Every successful episode ends in `done`.
    done_eps = {t.episode_id for t in samples if t.target == DONE}
    assert done_eps == set(info.train_episode_ids) | set(info.val_episode_ids)
    # Mistake segments are never targets, but stay in the history of what follows.
    sloppy = [e.id for e in list_episodes(db, limit=None) if e.quality == 2]
    mistakes = [(eid, g) for eid in sloppy for g in load_episode(db, eid).segments if g.mistake]
    assert mistakes, "the sloppy coach made no mistake on these seeds"
    assert info.skipped.get("mistake", 0) > 0
    for eid, g in mistakes:
        inside = [t for t in samples if t.episode_id == eid and g.first_step <= t.step_index <= g.last_step]
        assert not inside
        assert any(t.episode_id == eid and normalize_subtask(g.text) in t.history for t in samples)
    assert normalize_subtask("Try again:  Pick up the  RED block") == "pick up the red block"
    db.close()


def test_empty_selection_is_one_sentence(coached_db):
    from storage import open_database

    db = open_database(coached_db)
    with pytest.raises(DistillError) as err:
        build_samples(db, DatasetConfig(tasks=["drawer"]), progress=False)
    db.close()
    msg = str(err.value)
    assert msg.count(". ") == 0 and msg.endswith(".") and "\n" not in msg
    r = _run(["-m", "distill.train", "--db", coached_db, "--out", "/nonexistent/x", "--tasks", "drawer"])
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_training_beats_chance_and_registers(trained, coached_db):
    from storage import list_policies, open_database

    out, m = trained
    print(json.dumps({k: v for k, v in m.items() if k != "history"}, indent=1))
    assert len(m["history"]) == 8
    assert m["val_accuracy"] > 4 * m["chance"], m
    assert m["val_semantic_accuracy"] >= m["val_accuracy"]
    assert m["val_finished_accuracy"] > 0.75, m  # is the active subtask done: half and half by construction
    for name in ("model.safetensors", "config.json", "training.json", PLOT):
        assert (Path(out) / name).is_file()
    assert (Path(out) / PLOT).read_bytes()[:4] == b"\x89PNG"
    db = open_database(coached_db)
    [policy] = [p for p in list_policies(db, kind=HIGH_LEVEL_KIND) if p.id == m["policy_id"]]
    db.close()
    training = json.loads((Path(out) / "training.json").read_text())
    assert sorted(policy.training_episode_ids) == sorted(training["episode_ids"] + training["val_episode_ids"])
    assert training["policy_id"] == m["policy_id"]


def test_checkpoint_round_trip_same_decisions(trained, coached_db):
    from distill.learned_policy import LearnedHighLevelPolicy
    from storage import open_database

    out, _ = trained
    a = LearnedHighLevelPolicy.load(out)
    b = LearnedHighLevelPolicy.load(out)
    assert a.checkpoint_id is not None and a.candidates[-1] == DONE
    db = open_database(coached_db)
    _, val, _ = build_samples(db, DatasetConfig(), progress=False)
    db.close()
    from storage import load_episode

    db = open_database(coached_db)
    ep = load_episode(db, val[0].episode_id)
    full = {c: ep.frame(c, val[0].step_index) for c in ("base", "wrist")}  # a full-size frame, resized inside
    db.close()
    for s in val[::7]:
        da = a.decide(_seen(s.images, s.state), [], s.task, s.history, s.metadata)
        db_ = b.decide(_seen(s.images, s.state), [], s.task, s.history, None)  # metadata may be left out
        assert da.subtask in a.candidates and 0 < da.confidence <= 1
        assert da == a.decide(_seen(s.images, s.state), [], s.task, s.history, s.metadata)
        assert db_.subtask in b.candidates
    d = a.decide(_seen(full, val[0].state), [], val[0].task, ["try again: " + x for x in val[0].history], val[0].metadata)
    assert d == a.decide(_seen(full, val[0].state), [], val[0].task, val[0].history, val[0].metadata)
    a.check_task(val[0].task)
    with pytest.raises(DistillError):
        a.check_task("Open the drawer, put the items on the table in it, then close the drawer.")
    a.add_candidates(["Pick up the purple block"])
    assert "pick up the purple block" in a.candidates
    # a person typed a subtask the policy never saw, then handed back: keeping it is among the choices
    typed = a.decide(_seen(val[0].images, val[0].state), [], val[0].task, val[0].history + ["nudge the red block a bit"])
    assert "nudge the red block a bit" in a.candidates and 0 < typed.confidence <= 1
    # ... for that episode only: the next starts from the strings the policy was trained on
    a.reset()
    fresh = LearnedHighLevelPolicy.load(out)
    first = _seen(full, val[0].state)
    assert a.candidates == fresh.candidates and a.decide(first, [], val[0].task, val[0].history[:1]) == \
        fresh.decide(first, [], val[0].task, val[0].history[:1])


def test_ddp_two_gloo_processes(coached_db, tmp_path):
    out = tmp_path / "ddp"
    r = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "distill.train",
              "--db", coached_db, "--out", str(out), "--epochs", "1", "--json", "--no-progress"], timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout[r.stdout.index("{"):])
    assert m["world_size"] == 2 and (out / "model.safetensors").is_file()
    from distill.learned_policy import LearnedHighLevelPolicy

    assert LearnedHighLevelPolicy.load(str(out)).checkpoint_id == m["policy_id"]


def test_play_issues_sensible_subtasks_and_logs_them(trained, tmp_path):
    from sim.grounding import Grounder, Grounding
    from sim.objects import SceneObject
    from storage import list_episodes, load_episode, open_database

    ckpt, _ = trained
    db = str(tmp_path / "play.db")
    r = _run(["-m", "app.cli", "play", "--policy", ckpt, "--task", "sort_blocks", "--episodes", "1", "--seed", "50",
              "--intervene", "scripted", "--noise", "0", "--db", db, "--json"])
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert set(out["policy_figures"]) >= {"success_rate", "mean_subtasks_completed", "mean_episode_s", "corrections"}
    assert out["scripted_coach_figures"]["episodes"] == 1
    [episode] = out["episodes"]
    assert episode["success"]  # the policy, corrected by the scripted coach where it went wrong, finishes
    policy_texts = [t.split(": ", 1)[1] for t in episode["subtasks"] if t.startswith("policy: ")]
    assert policy_texts, "the policy must issue subtasks of its own"
    blocks = [SceneObject(f"{c}_block", "block", c) for c in ("red", "green", "blue")]
    grounder = Grounder()
    sensible = [isinstance(grounder.ground(t, blocks, ["red_pad", "green_pad", "blue_pad"], None), Grounding)
                or t.startswith(("put", "place", "set")) for t in policy_texts]
    assert all(sensible), policy_texts  # every subtask is one the low-level policy can act on

    with open_database(db) as database:
        [summary] = list_episodes(database)
        record = load_episode(database, summary.id)
    assert summary.mode in ("autonomous", "mixed") and summary.policy_checkpoint_id is not None
    assert {s.source for s in record.segments} <= {"policy", "correction"}
    assert record.segments[0].source == "policy"


def test_play_bad_input_is_one_sentence(trained, tmp_path):
    ckpt, _ = trained
    for args, needle in ((["--policy", str(tmp_path / "nothing"), "--task", "sort_blocks"], "nothing"),
                         (["--policy", ckpt, "--task", "bussing"], "never saw the task")):
        r = _run(["-m", "app.cli", "play", *args, "--no-baseline"])
        assert r.returncode == 2, r.stderr[-2000:]
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
