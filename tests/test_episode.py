"""One episode on the stepped loop, logged: every step is filed under the segment that produced it,
and the autonomy driver hands over to a person and back (the scripted intervener) in one episode."""

from __future__ import annotations

import numpy as np

from coaching.episode import drive_episode
from coaching.session import CoachingSession


def test_a_coached_episode_files_each_step_under_the_segment_that_produced_it(tmp_path, served_policy):
    from app import embedded
    from storage import Recorder, load_episode, open_database

    with open_database(str(tmp_path / "steps.db")) as db, Recorder(db) as recorder:
        session = CoachingSession(embedded.sim_robot(), served_policy, recorder, stepped=True).start()
        try:
            source = embedded.scripted_coach("sort_blocks", 2)
            report = drive_episode(session, source, source.settings())
        finally:
            session.close()
        recorder.flush()
        record = load_episode(db, report.episode_id)
    assert report.success and record.summary.task_family == "sort_blocks" and record.summary.status == "success"
    steps = record.steps()
    segments = sorted(record.segments, key=lambda s: s.ordinal)
    assert [s.text for s in segments] == [s["text"] for s in report.segments]
    # a segment's steps are those from its issue to the next one's: none filed under another
    starts = np.array([s.issued_at for s in segments])
    expected = np.array([segments[i].id for i in np.searchsorted(starts, steps.t, side="right") - 1])
    assert (steps.segment_id == expected).all()
    assert all((steps.segment_id == s.id).any() for s in segments)
    assert np.isfinite(steps.action).all(axis=1).mean() > 0.9  # the robot worked nearly every step


def test_the_intervener_takes_over_a_stalled_policy_and_hands_back(stepped_session):
    from app import embedded
    from coaching.autonomy import AutonomyConfig, AutonomyDriver
    from coaching.high_level import Decision, HighLevelPolicy
    from coaching.session import EpisodeSettings

    class Idle(HighLevelPolicy):
        """Asks for something the VLA cannot ground: the task never progresses."""

        def decide(self, observation, detections, task, history, metadata=None) -> Decision:
            return Decision("juggle the teapots", 0.9)

    task = embedded.task_families()["sort_blocks"]
    driver = AutonomyDriver(Idle(), task, AutonomyConfig(max_episode_s=40.0))
    source = embedded.scripted_intervention(driver, "sort_blocks", 4)
    report = drive_episode(stepped_session, source, EpisodeSettings(task, "sort_blocks", 4), mode="autonomous")
    sources = [s["source"] for s in report.segments]
    assert "correction" in sources and report.corrections >= 1 and report.subtasks_completed >= 1
    first_fix = sources.index("correction")
    assert "policy" in sources[first_fix:], "after a correction the policy drives again (handed back)"
