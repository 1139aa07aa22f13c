"""The autonomy driver's decision helpers (exclusions, stillness, hysteresis) and the driver itself
stepping the one control loop: a stuck robot noticed without refusals, an unsure `done` that waits."""

from __future__ import annotations

import pytest
from coaching.autonomy import Exclusions, Hysteresis, Stillness, without_refused
from coaching.high_level import DONE, Decision, HighLevelPolicy


def test_a_refused_subtask_gives_way_to_the_next_choice_that_is_not_a_phrasing_of_it():
    decision = Decision("grab the red cube", 0.6, [("lift the red block", 0.2), ("lift the green block", 0.15),
                                                    (DONE, 0.05)])
    assert without_refused(decision, set()) is decision
    assert without_refused(decision, {"grab the red cube"}).subtask == "lift the red block"

    class Paraphrases:
        def same_subtask(self, a: str, b: str) -> bool:
            return {a, b} <= {"grab the red cube", "lift the red block"} or a == b

    chosen = without_refused(decision, {"grab the red cube"}, Paraphrases())
    # what is left is renormalised: 0.15 of the 0.2 not excluded
    assert chosen.subtask == "lift the green block" and chosen.confidence == pytest.approx(0.75)
    everything = {"grab the red cube", "lift the green block", DONE}
    assert without_refused(decision, everything, Paraphrases()) is None  # nothing left: wait, do not retry in a loop


def test_a_stuck_subtask_the_policy_holds_on_to_does_not_hide_a_sure_done():
    holding = Decision("close the drawer", 0.75, [(DONE, 0.24), ("open the drawer", 0.01)])
    assert without_refused(holding, {"close the drawer"}).subtask == DONE
    assert without_refused(holding, {"close the drawer"}).confidence == pytest.approx(0.96)


def test_a_subtask_refused_at_once_stays_out_while_others_run_but_one_refused_after_running_does_not():
    ex = Exclusions(memory_s=30.0)
    ex.refused("grab the red bowl", now=1.0, ran=False)  # not in the scene
    ex.refused("put it in the tub", now=1.0, ran=True)  # the hand is empty now
    ex.stuck("get the white plate", now=2.0)
    assert ex.current(2.0) == {"grab the red bowl", "put it in the tub", "get the white plate"}
    ex.running()  # another subtask runs
    assert ex.current(3.0) == {"grab the red bowl", "get the white plate"}
    assert ex.current(31.5) == {"get the white plate"}
    assert ex.current(32.5) == set()


def test_stillness_counts_from_the_last_move_and_ignores_jitter():
    still = Stillness(tolerance=2e-3)
    assert still.update([0.0, 0.5, 0.04], now=0.0) == 0.0
    assert still.update([0.001, 0.5, 0.04], now=1.0) == 1.0  # jitter below the tolerance
    assert still.update([0.001, 0.5, 0.04], now=3.0) == 3.0
    assert still.update([0.001, 0.5, 0.01], now=3.1) == 0.0  # the gripper closed: it moved
    for k in range(1, 30):  # a slow drift adds up to a move
        seconds = still.update([0.001 + 1e-4 * k, 0.5, 0.01], now=3.1 + 0.1 * k)
    assert seconds < 2.0


def test_hysteresis_switches_after_two_wins_in_a_row():
    h = Hysteresis(2)
    assert h.switch(Decision("a", 0.9), None)  # the first subtask is taken at once
    assert not h.switch(Decision("b", 0.9), "a")
    assert not h.switch(Decision("a", 0.9), "a")  # the active one won again: the streak resets
    assert not h.switch(Decision("b", 0.9), "a")
    assert h.switch(Decision("b", 0.9), "a")


class AlwaysRed(HighLevelPolicy):
    """Ranks the same two subtasks whatever it sees: it never notices that the first one is finished."""

    def decide(self, observation, detections, task, history, metadata=None) -> Decision:
        return Decision("pick up the red block", 0.9, [("pick up the blue block", 0.1)])


@pytest.mark.parametrize("timeout_s", [4.0, 300.0])
def test_a_subtask_active_past_the_timeout_gives_way_to_the_next_choice(timeout_s, stepped_session):
    from coaching.autonomy import AutonomyConfig, AutonomyDriver
    from coaching.episode import drive_episode
    from coaching.session import EpisodeSettings

    driver = AutonomyDriver(AlwaysRed(), "sort the blocks", AutonomyConfig(max_episode_s=7.0, subtask_timeout_s=timeout_s))
    report = drive_episode(stepped_session, driver, EpisodeSettings("sort the blocks", "sort_blocks", 3), mode="autonomous")
    assert report.outcome == "failure" and report.duration_s <= 7.1  # the time limit ends it
    texts = [(s["text"], s["issued_s"]) for s in report.segments]
    assert texts[0] == ("pick up the red block", 0.0)
    if timeout_s < 7.0:  # the red block is held long before; the policy would ask for it forever
        assert texts[1][0] == "pick up the blue block" and timeout_s <= texts[1][1] <= timeout_s + 1.5, texts
    else:
        assert len(texts) == 1, texts


class NeverMoves(HighLevelPolicy):
    """Asks for an item that is not on the table first; the sim's VLA will not move for it."""

    def decide(self, observation, detections, task, history, metadata=None) -> Decision:
        return Decision("pick up the purple block", 0.8, [("pick up the red block", 0.2)])


def test_a_robot_that_never_moves_is_noticed_without_refusals_and_the_subtask_leaves_the_history(stepped_session):
    from coaching.autonomy import STILL_S, AutonomyConfig, AutonomyDriver
    from coaching.episode import drive_episode
    from coaching.session import EpisodeSettings

    driver = AutonomyDriver(NeverMoves(), "sort the blocks", AutonomyConfig(max_episode_s=STILL_S + 4))
    assert not driver.config.use_refusals  # pi0 never refuses: the headline driver does not listen to refusals
    report = drive_episode(stepped_session, driver, EpisodeSettings("sort the blocks", "sort_blocks", 3), mode="autonomous")
    texts = [(s["text"], s["issued_s"]) for s in report.segments]
    assert texts[0] == ("pick up the purple block", 0.0)
    assert texts[1][0] == "pick up the red block" and STILL_S <= texts[1][1] <= STILL_S + 1.5, texts
    assert driver._never_ran  # the robot never acted on it: it is no part of the history the policy sees


class UnsureDone(HighLevelPolicy):
    def __init__(self):
        self.calls = 0

    def decide(self, observation, detections, task, history, metadata=None) -> Decision:
        self.calls += 1
        return Decision(DONE, 0.5 if self.calls < 4 else 0.9, [("pick up the red block", 0.5)])


def test_an_unsure_done_waits_rather_than_running_the_runner_up(stepped_session):
    from coaching.autonomy import AutonomyConfig, AutonomyDriver
    from coaching.episode import drive_episode
    from coaching.session import EpisodeSettings

    policy = UnsureDone()
    driver = AutonomyDriver(policy, "sort the blocks", AutonomyConfig(max_episode_s=20.0))
    report = drive_episode(stepped_session, driver, EpisodeSettings("sort the blocks", "sort_blocks", 3), mode="autonomous")
    assert report.segments == [] and policy.calls == 4  # nothing was sent; the fourth, sure `done` ended it
    assert report.duration_s < 5.0


def test_a_retry_of_the_active_subtask_also_waits_for_two_wins():
    h = Hysteresis(2)
    assert h.switch(Decision("a", 0.9), None)
    assert not h.switch(Decision("a", 0.9, retry=True), "a")
    assert not h.switch(Decision("a", 0.9), "a")  # going on with it: the streak resets
    assert not h.switch(Decision("a", 0.9, retry=True), "a")
    assert h.switch(Decision("a", 0.9, retry=True), "a")


class AlwaysRetries(HighLevelPolicy):
    """Wants the red block tried afresh at every decision, as a policy would after a missed grasp."""

    def decide(self, observation, detections, task, history, metadata=None) -> Decision:
        return Decision("pick up the red block", 0.9, [("pick up the blue block", 0.1)], retry=bool(history))


def test_a_retry_is_sent_as_a_fresh_segment_a_few_times_then_the_next_choice_runs(stepped_session):
    from coaching.autonomy import MAX_RETRIES, AutonomyConfig, AutonomyDriver
    from coaching.episode import drive_episode
    from coaching.session import EpisodeSettings

    driver = AutonomyDriver(AlwaysRetries(), "sort the blocks", AutonomyConfig(max_episode_s=12.0))
    report = drive_episode(stepped_session, driver, EpisodeSettings("sort the blocks", "sort_blocks", 3), mode="autonomous")
    texts = [s["text"] for s in report.segments]
    assert texts[:MAX_RETRIES + 1] == ["pick up the red block"] * (MAX_RETRIES + 1), texts  # the first try and the retries
    assert texts[MAX_RETRIES + 1] == "pick up the blue block", texts  # then it counts as stuck
    times = [s["issued_s"] for s in report.segments]
    assert all(b - a >= 1.5 for a, b in zip(times, times[1:MAX_RETRIES + 1])), times  # two decisions each


class TakesTurns(HighLevelPolicy):
    """Names two things the robot will not move for, each first when the other is the newest in the
    history: left to itself it would switch between them every two decisions for ever."""

    def decide(self, observation, detections, task, history, metadata=None) -> Decision:
        a, b = "pick up the purple block", "pick up the unicorn"
        first, second = (b, a) if history and history[-1] == a else (a, b)
        return Decision(first, 0.6, [(second, 0.35), ("pick up the red block", 0.05)])


def test_subtasks_left_before_the_robot_moved_for_them_stay_out_so_the_next_choice_runs(stepped_session):
    from coaching.autonomy import AutonomyConfig, AutonomyDriver
    from coaching.episode import drive_episode
    from coaching.session import EpisodeSettings

    driver = AutonomyDriver(TakesTurns(), "sort the blocks", AutonomyConfig(max_episode_s=16.0))
    report = drive_episode(stepped_session, driver, EpisodeSettings("sort the blocks", "sort_blocks", 3), mode="autonomous")
    texts = [s["text"] for s in report.segments]
    assert "pick up the red block" in texts, texts  # the old driver sent purple, unicorn, purple, ... for 16 s
    before = texts[:texts.index("pick up the red block")]
    assert before.count("pick up the purple block") <= 2 and before.count("pick up the unicorn") <= 2, texts
    # once the robot acted on the red block the world has changed: each may be tried again, once
    after = texts[texts.index("pick up the red block") + 1:]
    assert after.count("pick up the purple block") <= 1 and after.count("pick up the unicorn") <= 1, texts


def test_what_never_moved_the_robot_may_be_tried_again_once_it_acts_on_something_else():
    """A place tried with nothing in hand never moves the robot; after the re-pick it must be allowed
    (a sort_blocks trace put the block on the wrong pad instead). A subtask the robot got stuck on
    while moving stays out for its time."""
    from coaching.autonomy import Exclusions

    ex = Exclusions(memory_s=30.0)
    ex.stuck("put it on the green pad", 10.0, never_moved=True)
    ex.stuck("open the drawer", 10.0)  # moved, then stuck
    ex.acted("put it on the green pad")  # itself: no news
    assert ex.current(11.0) == {"put it on the green pad", "open the drawer"}
    ex.acted("pick up the green block")
    assert ex.current(12.0) == {"open the drawer"}
    assert ex.current(41.0) == set()
