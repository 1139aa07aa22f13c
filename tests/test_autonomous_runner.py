"""The autonomous runner without a browser: a distilled policy drives a real `CoachingSession` (the
sim robot at 20 Hz, the sim policy served over ZMQ by a child process, SQLite), and a person
takes over, stops, or lets it run to its end."""

from __future__ import annotations

import time

import numpy as np
import pytest

from coaching.autonomous_runner import AutonomousRunner, RunnerConfig
from coaching.autonomy import AutonomyConfig, verdict
from coaching.session import EpisodeSettings, SessionError
from coaching.high_level import Decision, HighLevelPolicy
from sim.tasks import get_family
from support import wait_until

TASK = get_family("sort_blocks").description


@pytest.fixture(scope="module")
def session(tmp_path_factory, coaching_session):
    with coaching_session(tmp_path_factory.mktemp("db") / "runner.db") as s:
        yield s


@pytest.fixture(scope="module")
def detector():
    """The embedded default detector, as the app hands it to the runner (the policy names what it sees)."""
    from app import embedded

    return embedded.detector("learned")


@pytest.fixture
def runners(session, detector):
    """`runners(policy, config)` starts an `AutonomousRunner` with the app's detector; any still running
    when the test ends (a failed assertion) is stopped, so the next test finds the robot free."""
    started = []

    def start(policy, config):
        started.append(AutonomousRunner(session, policy, config, detector=detector).start())
        return started[-1]

    yield start
    for runner in started:
        if runner.running:
            runner.stop("cleanup")
    if session.status()["episode_id"] is not None:
        session.end_episode("aborted", "cleanup")


@pytest.fixture(scope="module")
def policy(tiny_policy, session):
    from app.policy_registry import policy_id_in
    from distill.learned_policy import LearnedHighLevelPolicy

    _, folder = tiny_policy
    p = LearnedHighLevelPolicy.load(folder)
    p.checkpoint_id = policy_id_in(session.recorder.db, folder)  # registered in this database too
    return p


class SaysDone(HighLevelPolicy):
    """A high-level policy that thinks every task is finished from the start."""

    def decide(self, observation, detections, task, history, metadata=None) -> Decision:
        assert set(observation.images) == {"base", "wrist"} and np.asarray(observation.state).ndim == 1
        return Decision("done", 0.9)


def _policy_subtask(session) -> bool:
    st = session.status()
    return st["subtask"] is not None and st["source"] == "policy"


def test_the_policy_drives_an_episode_to_its_time_limit(session, policy, runners):
    from storage import load_episode

    runner = runners(policy, RunnerConfig("sort_blocks", TASK, first_seed=500,
                                          autonomy=AutonomyConfig(decide_hz=2, max_episode_s=6)))
    assert wait_until(lambda: session.status()["mode"] == "autonomous")
    assert wait_until(lambda: _policy_subtask(session))
    assert 0 < session.status()["confidence"] <= 1
    assert runner.wait(60)
    st = runner.status()
    assert st["error"] is None and (st["runs"], st["successes"]) == (1, 0)
    assert session.status()["episode_id"] is None
    record = load_episode(session.recorder.db, st["episode_id"])
    s = record.summary
    assert (s.mode, s.status, s.seed, s.policy_checkpoint_id) == ("autonomous", "failure", 500, policy.checkpoint_id)
    assert "time limit" in s.notes and s.num_steps > 80  # ~6 s at 20 Hz, every step recorded
    assert record.segments and all(g.source == "policy" and g.user == "autonomous" for g in record.segments)
    assert all(0 < g.info["confidence"] <= 1 for g in record.segments)


def test_take_over_turns_the_same_episode_into_coaching(session, policy, runners):
    from storage import load_episode

    runner = runners(policy, RunnerConfig("sort_blocks", TASK, first_seed=501, episodes=None,
                                          autonomy=AutonomyConfig(max_episode_s=120)))
    assert wait_until(lambda: _policy_subtask(session))
    episode_id = runner.take_over("ana")
    assert not runner.running and runner.status()["taken_over"]
    st = session.status()
    assert (st["episode_id"], st["mode"], st["subtask"]) == (episode_id, "mixed", None)
    with pytest.raises(SessionError, match="taken over"):
        session.send_subtask("pick up the red block", "autonomous", source="policy")
    assert session.send_subtask("pick up the red block", "ana").source == "correction"
    time.sleep(1.0)
    session.end_episode("failure", "ana")
    record = load_episode(session.recorder.db, episode_id)
    assert record.summary.mode == "mixed" and runner.status()["runs"] == 0
    sources = [g.source for g in record.segments]
    assert sources[-1] == "correction" and set(sources[:-1]) == {"policy"}
    assert record.segments[-2].outcome == "taken over" and record.segments[-1].user == "ana"
    assert "takeover" in {e.kind for e in record.events}


def test_a_person_typing_during_a_run_takes_over(session, policy, runners):
    runner = runners(policy, RunnerConfig("sort_blocks", TASK, first_seed=502,
                                          autonomy=AutonomyConfig(max_episode_s=120)))
    assert wait_until(lambda: _policy_subtask(session))
    assert session.send_subtask("pick up the blue block", "ben").source == "correction"
    assert runner.wait(10), "the runner steps aside by itself"
    assert session.status()["mode"] == "mixed"
    session.end_episode("aborted", "ben")


def test_stop_ends_the_run_as_aborted(session, policy, runners):
    from storage import load_episode

    runner = runners(policy, RunnerConfig("sort_blocks", TASK, first_seed=503, episodes=None,
                                          autonomy=AutonomyConfig(max_episode_s=120)))
    assert wait_until(lambda: _policy_subtask(session))
    episode_id = session.status()["episode_id"]
    runner.stop("ana")
    assert not runner.running and session.status()["episode_id"] is None
    assert load_episode(session.recorder.db, episode_id).summary.status == "aborted"


def test_done_ends_each_run_with_the_robots_verdict_and_loops_with_new_seeds(session, runners):
    from storage import list_episodes

    runner = runners(SaysDone(), RunnerConfig("sort_blocks", TASK, first_seed=7, episodes=2))
    assert runner.wait(60)
    st = runner.status()
    assert st["error"] is None and (st["runs"], st["successes"]) == (2, 0)  # the blocks start unsorted
    ran = [e for e in list_episodes(session.recorder.db, mode="autonomous", limit=None) if e.seed in (7, 8)]
    assert sorted(e.seed for e in ran) == [7, 8] and {e.status for e in ran} == {"failure"}
    assert all("too early" in e.notes for e in ran)
    assert verdict({"success": True, "steps_left": 0}) == ("success", None)
    assert verdict(None)[0] == "success"  # a robot that cannot tell: the policy's word, with a note


def test_bad_input_is_one_sentence(session, policy, runners):
    with pytest.raises(SessionError, match="0.1 and 10"):
        AutonomousRunner(session, policy, RunnerConfig("sort_blocks", TASK, autonomy=AutonomyConfig(decide_hz=50)))
    runner = runners(policy, RunnerConfig("no_such_task_family", TASK))
    assert runner.wait(30)
    assert "Cannot start the episode" in runner.status()["error"] and session.status()["episode_id"] is None
    session.start_episode(EpisodeSettings(TASK, "sort_blocks"), "ana")  # a coached one
    with pytest.raises(SessionError, match="Only a running autonomous episode"):
        session.take_over("ana")
    session.end_episode("aborted", "ana")
