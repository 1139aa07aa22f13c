"""Issue 22's figures, bounded: each bench runs a few rounds of the real thing (SIGKILLed recording
processes, a killed and restarted VLA server, malformed messages at both servers) through the same
`coachlab bench ...` entry point, and its JSON is checked against the issue's right values."""

from __future__ import annotations

import json

from app.cli import main


def _bench(capsys, *args: str) -> dict:
    assert main(["bench", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_crash_keeps_every_episode_and_every_committed_step(capsys):
    out = _bench(capsys, "crash", "--runs", "2")
    assert out["runs"] == 2 and out["episodes_kept"] == 2 and out["db_opens_clean"] == 2, out
    assert out["committed_steps_lost"] == 0 and out["tail_s_max"] <= 0.5, out


def test_bench_options_belong_to_their_bench(capsys):
    assert main(["bench", "sim", "--runs", "3"]) == 2
    assert "takes no --runs" in capsys.readouterr().err
    assert main(["bench", "crash", "--runs", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_bench_vla_faults_holds_in_time_and_never_hangs(capsys):
    out = _bench(capsys, "vla-faults", "--kills", "2")
    assert out["kills"] == 2 and out["hung"] == 0, out
    assert out["holds_in_time"] == 2 and out["errors_in_time"] == 2, out
    assert out["max_tick_gap_s"] < 0.5, out  # the loop kept its rate through the outage


def test_bench_fuzz_leaves_both_servers_up_and_answering(capsys):
    out = _bench(capsys, "fuzz", "--messages", "1000")
    assert out["server_deaths"] == 0, out
    for name in ("vla_server", "robot_bridge"):
        server = out[name]
        assert server["sent"] == 1000 and server["by_hypothesis"] == 100 and server["oversized"] == 1, out
        assert server["probes_unanswered"] == 0 and server["answered_after"] and server["alive_after"], out
