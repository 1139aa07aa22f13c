"""A LeRobot policy served by the shipped adapter (`policy_client/lerobot_policy.py`, issue 23 item 4),
end to end: a small randomly initialised ACT, saved with LeRobot's own pre- and post-processors in
LeRobot's environment (bench/lerobot_env.py, built by install.sh), serves coachlab's ZMQ wire; the
app on the embedded sim drives a subtask with it. A request the policy cannot take gets its one
sentence back, and the server keeps serving."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from bench.lerobot_policy import served_act

    with served_act(Path(tmp_path_factory.mktemp("act"))) as s:
        yield s


def test_the_app_drives_the_sim_with_a_lerobot_policy(served, tmp_path):
    from bench.lerobot_policy import CHUNK, drive

    result = drive(served["address"], tmp_path / "coach.db", seconds=4.0)
    assert result["ok"], result
    assert result["steps_logged"] > 2 * CHUNK  # more than one chunk: the policy was asked again and again
    assert result["vla_rtt_ms_median"] is not None


def test_the_adapter_refuses_what_the_policy_was_not_trained_on_in_one_sentence(served):
    from policy_client import PolicyServerError, connect
    from sim.mujoco_robot import STATE_NAMES

    client = connect(served["address"])
    try:
        assert client.metadata["policy"] == "lerobot:act" and client.metadata["cameras"] == ["base", "wrist"]
        image = np.zeros((224, 224, 3), np.uint8)
        with pytest.raises(PolicyServerError, match="trained with camera 'wrist'.*rename the cameras"):
            client.infer({"images": {"base": image}, "state": np.zeros(len(STATE_NAMES))}, {"subtask": "pick up the cup"})
        with pytest.raises(PolicyServerError, match=f"{len(STATE_NAMES)}-value state; this robot sends 3"):
            client.infer({"images": {"base": image, "wrist": image}, "state": np.zeros(3)}, {"subtask": "pick up the cup"})
        reply = client.infer({"images": {"base": image, "wrist": image}, "state": np.zeros(len(STATE_NAMES))},
                             {"subtask": "pick up the cup"})
        assert reply["actions"].shape == (20, 6) and np.isfinite(reply["actions"]).all()  # still serving
    finally:
        client.close()


def test_the_adapter_command_says_one_sentence_for_a_wrong_folder_and_a_taken_port(served, tmp_path):
    from bench.lerobot_env import ensure
    from bench.lerobot_policy import ROOT

    py = ensure()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for folder, said in ((tmp_path, "holds no LeRobot policy (no config.json)"),
                             (served["policy_dir"], f"Cannot listen on tcp://127.0.0.1:{port}")):
            r = subprocess.run([str(py), str(ROOT / "bench" / "lerobot_serve.py"), str(ROOT), str(folder),
                                "--port", str(port)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 1 and said in r.stderr and "Traceback" not in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
