"""The command line as a user runs it: real subprocesses, JSON out, one clear sentence on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

from support import free_port


def coachlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=300)


def test_tasks_lists_the_suite():
    out = coachlab("tasks", "--json")
    assert out.returncode == 0, out.stderr
    tasks = {t["name"]: t for t in json.loads(out.stdout)["tasks"]}
    assert {"bussing", "reverse_bussing", "drawer", "sort_blocks"} <= set(tasks)
    for t in tasks.values():
        assert t["mean_subtasks"] >= 4 and t["description"]


def test_coach_reports_per_task_figures():
    out = coachlab("coach", "--task", "sort_blocks", "--episodes", "1", "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr
    fig = json.loads(out.stdout)["tasks"]["sort_blocks"]
    assert set(fig) >= {"success_rate", "mean_subtasks_completed", "mean_episode_s", "corrections"}
    assert fig["success_rate"] == 1.0
    assert fig["mean_subtasks_completed"] >= 6


@contextmanager
def _vla_server(*args: str) -> Iterator[int]:
    """`coachlab vla-server` in a subprocess on a free port, up and serving."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "vla-server", "--port", str(port), *args],
                              stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(50):  # model-loading progress may come first
            line = server.stderr.readline()
            if "serving" in line or not line:
                break
        assert "serving" in line, "the VLA server did not say it was serving"
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_coach_reaches_a_separately_started_vla_server():
    with _vla_server("--options", '{"noise": 0.0}') as port:
        out = coachlab("coach", "--task", "sort_blocks", "--episodes", "1", "--vla", f"zmq://127.0.0.1:{port}", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tasks"]["sort_blocks"]["success_rate"] == 1.0


def test_coach_refuses_a_vla_for_another_robot():
    with _vla_server("--policy", "policy_client.echo_policy:from_options", "--options", '{"action_dim": 14}') as port:
        out = coachlab("coach", "--task", "sort_blocks", "--vla", f"zmq://127.0.0.1:{port}")
    assert out.returncode == 2 and "outputs 14-d actions" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_input_gets_one_sentence():
    dead_port = free_port()
    for args, needle in ((["coach", "--task", "nosuch"], "Unknown task 'nosuch'"),
                         (["coach", "--task", "bussing", "--seed", "-1"], "--seed"),
                         (["coach", "--task", "bussing", "--episodes", "0"], "--episodes"),
                         (["coach", "--task", "bussing", "--vla", "gpu-box"], "zmq://host:port"),
                         (["coach", "--task", "bussing", "--vla", f"zmq://127.0.0.1:{dead_port}"], "No low-level policy server"),
                         (["vla-server", "--policy", "nosuch.module:thing"], "Cannot build the policy"),
                         (["vla-server", "--options", "{not json"], "--options must be a JSON object")):
        out = coachlab(*args)
        assert out.returncode == 2
        assert needle in out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_coach_logs_every_episode_and_episodes_lists_them(tmp_path):
    db = str(tmp_path / "coach.db")
    out = coachlab("coach", "--task", "sort_blocks", "--episodes", "1", "--seed", "2", "--db", db, "--json")
    assert out.returncode == 0, out.stderr
    [episode_id] = json.loads(out.stdout)["episode_ids"]
    listed = json.loads(coachlab("episodes", "--db", db, "--status", "success", "--json").stdout)
    assert [e["id"] for e in listed["episodes"]] == [episode_id]
    shown = json.loads(coachlab("episodes", "show", str(episode_id), "--db", db, "--json").stdout)
    assert shown["task_family"] == "sort_blocks" and shown["user"] == "scripted-coach"
    assert shown["num_steps"] > 50 and len(shown["segments"]) >= 6
    assert all(s["source"] in ("coach", "correction") and s["outcome"] for s in shown["segments"])
    assert shown["vla_hello"]["policy"] == "coachlab-sim-skill-policy"

    from storage import load_episode, open_database

    with open_database(db) as database:
        record = load_episode(database, episode_id)
        assert record.frame_count("base") == shown["num_steps"]
        assert record.frame("wrist", 10).shape == (224, 224, 3)
