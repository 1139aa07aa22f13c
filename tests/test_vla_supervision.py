"""Issue 22, fault 5: a dead VLA must not look alive. A VLA child the app started is killed for real
(SIGKILL): no failed request is dropped silently (the light turns red within the request timeout,
even while the coach keeps pressing Try again), and the app restarts the child and says so."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from policy_client import ActionChunker, ChunkingConfig, PolicyError
from policy_client.local_server import LocalPolicyServer
from policy_client.zmq_client import ZmqPolicyClient
from support import wait_until

ECHO = "policy_client.echo_policy:from_options"


def _observation() -> dict:
    return {"images": {}, "state": np.zeros(6, np.float32), "timestamp": 0.0}


def test_a_failed_request_for_a_replaced_subtask_is_not_dropped():
    """Try again every 0.6 s with a 1 s timeout: each failing request is superseded before it fails.
    The failure still shows within the timeout (it used to be dropped, so the light stayed green)."""
    server = LocalPolicyServer(ECHO, {"action_dim": 6, "chunk_length": 10}, supervise=False)
    client = ZmqPolicyClient(server.address, timeout_s=1.0)
    chunker = ActionChunker(client, ChunkingConfig(prefetch=True))
    try:
        assert wait_until(lambda: chunker.step(_observation(), {"subtask": "a"}) is not None, 5), chunker.last_error
        chunker.new_subtask()
        chunker.step(_observation(), {"subtask": "slow", "delay_s": 0.3})  # a request now in flight
        os.kill(server.process.pid, signal.SIGKILL)
        killed = last_press = time.monotonic()
        while chunker.last_error is None and time.monotonic() - killed < 4.0:
            if time.monotonic() - last_press > 0.6:
                chunker.new_subtask()  # the coach presses Try again
                last_press = time.monotonic()
            assert chunker.step(_observation(), {"subtask": "again"}) is None  # nothing to run: hold
            time.sleep(0.02)
        assert isinstance(chunker.last_error, PolicyError)
        assert time.monotonic() - killed < 1.0 + 0.3  # the request timeout and a little
    finally:
        chunker.close()
        client.close()
        server.close()


def test_the_vla_the_app_started_is_restarted_and_says_so(monkeypatch):
    from coaching.vla import connect_vla

    monkeypatch.delenv("COACHLAB_VLA", raising=False)
    with connect_vla(None, ECHO, {"action_dim": 6, "chunk_length": 10}, timeout_s=1.0) as client:
        supervisor = client.supervisor
        address = supervisor.address
        assert supervisor.up and supervisor.restarts == 0 and supervisor.note is None
        for n in (1, 2):
            old_pid = supervisor.process.pid
            os.kill(old_pid, signal.SIGKILL)
            try:  # while it is down the client's error says the app restarts it, not "start one"
                client.infer(_observation(), {"subtask": "during"})
            except PolicyError as e:
                assert "coachlab vla-server" not in str(e) and "restarts it" in str(e), e
            assert wait_until(lambda: supervisor.restarts == n and supervisor.up, 30), supervisor.note
            assert supervisor.process.pid != old_pid and supervisor.address == address
            assert "killed by SIGKILL" in supervisor.note and f"restarted it (restart {n})" in supervisor.note
            assert wait_until(lambda: _answers(client), 10)  # the same client reconnects by itself
    assert not supervisor.up and supervisor.process.poll() is not None  # closing ends it for good


def _answers(client) -> bool:
    try:
        return client.infer(_observation(), {"subtask": "after"})["info"]["subtask"] == "after"
    except PolicyError:
        return False


def test_a_killed_vla_turns_the_light_red_and_the_next_episode_works(tmp_path, coaching_session):
    """In the app's session (real sim robot, the sim skill policy in its supervised child, SQLite):
    kill the VLA mid-episode and keep pressing Try again."""
    from coaching.session import EpisodeSettings

    with coaching_session(tmp_path / "vla.db") as session:
        supervisor = session.vla.supervisor
        session.start_episode(EpisodeSettings(task="Sort the blocks.", task_family="sort_blocks", seed=0), user="ana")
        seg = session.send_subtask("pick up the red block", user="ana")
        assert wait_until(lambda: seg.first_action_wall is not None, 60), session.status()
        os.kill(supervisor.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        red = wait_until(lambda: session.status()["vla_error"] is not None, session.vla.timeout_s + 1.0)
        assert red and time.monotonic() - killed < session.vla.timeout_s + 1.0
        assert wait_until(lambda: session.status()["vla_restarts"] == 1, 90), session.status()["vla_process_note"]
        assert "the app restarted it" in session.status()["vla_process_note"]
        end = time.monotonic() + 60
        while session.status()["vla_error"] is not None and time.monotonic() < end:
            session.try_again(user="ana")  # every failure shows until a reply comes back
            time.sleep(2.0)
        assert session.status()["vla_error"] is None
        session.end_episode("failure", user="ana")
        session.start_episode(EpisodeSettings(task="Sort the blocks.", task_family="sort_blocks", seed=1), user="ana")
        seg = session.send_subtask("pick up the blue block", user="ana")
        assert wait_until(lambda: seg.first_action_wall is not None, 30), session.status()
        session.end_episode("success", user="ana")
