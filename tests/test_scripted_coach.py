"""The scripted coach drives real episodes over the wire, as a subtask source of the one control loop
(stepped on the sim's clock): expert succeeds, sloppy makes and corrects mistakes."""

from __future__ import annotations

from coaching.episode import drive_episode
from sim.coach import CoachConfig
from sim.coach_source import ScriptedCoachSource
from sim.tasks import get_family


def _coach(family: str, seed: int, **config) -> ScriptedCoachSource:
    return ScriptedCoachSource(get_family(family), CoachConfig(**config), seed)


def test_expert_finishes_the_drawer_task(stepped_session):
    source = _coach("drawer", 4, profile="expert")
    report = drive_episode(stepped_session, source, source.settings())
    assert report.success and report.outcome == "success", report.segments
    texts = [s["text"] for s in report.segments]
    assert "drawer" in texts[0] and "drawer" in texts[-1]  # open first, close last
    assert report.subtasks_completed >= 6 and source.settings().quality == 5
    assert all(s["outcome"] == "success" for s in report.segments)
    assert [s["number"] for s in report.segments] == list(range(len(report.segments)))
    assert report.duration_s < 900


def test_sloppy_coach_makes_a_mistake_then_corrects_it(stepped_session):
    source = _coach("bussing", 5, profile="sloppy", mistake_rate=1.0)
    report = drive_episode(stepped_session, source, source.settings())
    mistakes = [s for s in report.segments if s["mistake"]]
    assert mistakes, "a sloppy coach with mistake_rate=1 must send something to the wrong place"
    assert report.corrections >= 1
    assert source.settings().quality <= 2 and source.settings().mistake
    # the first mistaken item is later put right by a correction that succeeds
    judged = source.coach.outcomes
    first = next(i for i, (cmd, _) in enumerate(judged) if cmd.mistake)
    item = judged[first][0].step.object
    assert any(cmd.source == "correction" and outcome == "success" and cmd.step.object == item
               and cmd.step.skill == "place" for cmd, outcome in judged[first + 1:])


def test_failed_grasp_is_corrected():
    from app import embedded
    from coaching.session import CoachingSession

    source = _coach("sort_blocks", 0, profile="expert")
    with embedded.vla(noise=1.0, miss_probability=0.5, seed=1) as noisy:
        session = CoachingSession(embedded.sim_robot(), noisy, stepped=True).start()
        try:
            report = drive_episode(session, source, source.settings())
        finally:
            session.close()
    failed = [s for s in report.segments if s["outcome"] == "failure"]
    assert failed and report.corrections >= len(failed)
    corrections = [s for s in report.segments if s["source"] == "correction"]
    assert all(s["text"].split(":")[0] in s["text"] for s in corrections)
