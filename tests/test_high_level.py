"""The decision helpers shared by `play` and the app's runner: paraphrase groups and refusals."""

from __future__ import annotations

import pytest
import torch

from distill.high_level import DONE, Decision, HighLevelPolicy, Hysteresis, without_refused
from distill.model import same_subtask_groups


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


def test_hysteresis_switches_after_two_wins_in_a_row():
    h = Hysteresis(2)
    assert h.switch(Decision("a", 0.9), None)  # the first subtask is taken at once
    assert not h.switch(Decision("b", 0.9), "a")
    assert not h.switch(Decision("a", 0.9), "a")  # the active one won again: the streak resets
    assert not h.switch(Decision("b", 0.9), "a")
    assert h.switch(Decision("b", 0.9), "a")


class AlwaysRed(HighLevelPolicy):
    """Ranks the same two subtasks whatever it sees: it never notices that the first one is finished."""

    def decide(self, images, state, task, history, metadata=None) -> Decision:
        return Decision("pick up the red block", 0.9, [("pick up the blue block", 0.1)])


@pytest.mark.parametrize("timeout_s", [4.0, 300.0])
def test_a_subtask_active_past_the_timeout_gives_way_to_the_next_choice(timeout_s):
    from coaching.low_level import low_level_policy
    from distill.autonomous import PlayConfig, play_episode
    from sim.mujoco_robot import MujocoRobot

    with low_level_policy(sim_options={"seed": 3}) as vla:
        report = play_episode(MujocoRobot(), vla, AlwaysRed(), "sort_blocks", 3,
                              PlayConfig(max_episode_s=7.0, subtask_timeout_s=timeout_s))
    texts = [(s.text, s.start_s) for s in report.segments]
    assert texts[0] == ("pick up the red block", 0.0)
    if timeout_s < 7.0:  # the red block is held long before; the policy would ask for it forever
        assert texts[1][0] == "pick up the blue block" and timeout_s <= texts[1][1] <= timeout_s + 1.5, texts
    else:
        assert len(texts) == 1, texts
