"""The autonomy driver's decision helpers (paraphrase groups, refusals, stillness, hysteresis) and the
driver itself stepping the one control loop."""

from __future__ import annotations

import pytest
import torch

from coaching.autonomy import Exclusions, Hysteresis, Stillness, without_refused
from coaching.high_level import DONE, Decision, HighLevelPolicy
from distill.candidates import same_subtask_groups


def test_phrasings_with_near_vectors_are_one_subtask_and_done_stays_alone():
    bank = ["lift the red block", "grab the red cube", "lift the green block", "close the drawer", DONE]
    v = torch.nn.functional.normalize(torch.tensor([
        [1.0, 0.0, 0.0], [0.98, 0.2, 0.0],  # two phrasings of one subtask
        [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
        [0.99, 0.1, 0.0],  # `done` close to a subtask must still not join it
    ]), dim=1)
    group = same_subtask_groups(v, bank)
    assert group[0] == group[1]
    assert len({group[0], group[2], group[3], group[4]}) == 4


def test_phrasings_that_do_not_read_alike_stay_apart_when_every_learned_vector_is_close():
    from distill.text_table import TextTable

    bank = ["lift the red block", "lift the red cube", "place it on the red square", "put it on the red square", DONE]
    close = torch.nn.functional.normalize(torch.ones(5, 3) + 0.01 * torch.eye(5, 3), dim=1)  # a few-episode policy
    assert len(set(same_subtask_groups(close, bank).tolist())) == 2  # learned vectors alone: one chain
    group = same_subtask_groups(close, bank, TextTable().embed(bank))
    assert group[0] == group[1] and group[2] == group[3] and group[0] != group[2]


def test_a_refused_subtask_gives_way_to_the_next_choice_that_is_not_a_phrasing_of_it():
    decision = Decision("grab the red cube", 0.6, [("lift the red block", 0.2), ("lift the green block", 0.15),
                                                    (DONE, 0.05)])
    assert without_refused(decision, set()) is decision
    assert without_refused(decision, {"grab the red cube"}).subtask == "lift the red block"

    class Paraphrases:
        def same_subtask(self, a: str, b: str) -> bool:
            return {a, b} <= {"grab the red cube", "lift the red block"} or a == b

    chosen = without_refused(decision, {"grab the red cube"}, Paraphrases())
    assert (chosen.subtask, chosen.confidence) == ("lift the green block", 0.15)
    everything = {"grab the red cube", "lift the green block", DONE}
    assert without_refused(decision, everything, Paraphrases()) is decision  # nothing left: keep the best


def test_an_unsure_done_gives_way_to_the_runner_up():
    unsure = Decision(DONE, 0.49, [("pick up the black can", 0.06), ("take the white packet", 0.05)])
    assert without_refused(unsure, set(), done_confidence=0.7).subtask == "pick up the black can"
    assert without_refused(unsure, {"pick up the black can"}, done_confidence=0.7).subtask == "take the white packet"
    assert without_refused(unsure, set()) is unsure  # no bar: done stands
    # Every runner-up excluded: retry the best of them, never the done that was held back.
    everything = {"pick up the black can", "take the white packet"}
    assert without_refused(unsure, everything, done_confidence=0.7).subtask == "pick up the black can"
    sure = Decision(DONE, 0.9, [("pick up the black can", 0.06)])
    assert without_refused(sure, set(), done_confidence=0.7) is sure


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
