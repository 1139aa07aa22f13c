"""The scripted coach drives real episodes over the wire: expert succeeds, sloppy makes and corrects mistakes."""

from __future__ import annotations

from coaching.scripted_episode import run_episode
from sim.coach import CoachConfig, ScriptedCoach
from sim.tasks import get_family


def test_expert_finishes_the_drawer_task(robot, served_policy):
    coach = ScriptedCoach(get_family("drawer"), CoachConfig(profile="expert"), seed=4)
    report = run_episode(robot, served_policy, coach, "drawer", 4)
    assert report.success, [(s.text, s.outcome) for s in report.segments]
    texts = [s.text for s in report.segments]
    assert "drawer" in texts[0] and "drawer" in texts[-1]  # open first, close last
    assert report.subtasks_completed >= 6 and report.metadata["quality"] == 5
    assert all(s.outcome == "success" for s in report.segments)
    assert report.duration_s < 900


def test_sloppy_coach_makes_a_mistake_then_corrects_it(robot, served_policy):
    coach = ScriptedCoach(get_family("bussing"), CoachConfig(profile="sloppy", mistake_rate=1.0), seed=5)
    report = run_episode(robot, served_policy, coach, "bussing", 5)
    mistakes = [s for s in report.segments if s.mistake]
    assert mistakes, "a sloppy coach with mistake_rate=1 must send something to the wrong place"
    assert report.corrections >= 1
    assert report.metadata["quality"] <= 2 and report.metadata["mistake"]
    # the first mistaken item is later put right by a correction
    wrong = mistakes[0]
    later = report.segments[wrong.index + 1:]
    assert any(s.source == "correction" and s.outcome == "success" and s.interpretation.get("object")
               == wrong.interpretation["object"] and s.interpretation.get("skill") == "place" for s in later)


def test_failed_grasp_is_corrected(robot):
    from coaching.low_level import low_level_policy

    coach = ScriptedCoach(get_family("sort_blocks"), CoachConfig(profile="expert"), seed=0)
    with low_level_policy(sim_options={"noise": 1.0, "miss_probability": 0.5, "seed": 1}) as noisy:
        report = run_episode(robot, noisy, coach, "sort_blocks", 0)
    failed = [s for s in report.segments if s.outcome == "failure"]
    assert failed and report.corrections >= len(failed)
    corrections = [s for s in report.segments if s.source == "correction"]
    assert all(s.text.split(":")[0] in s.text for s in corrections)
