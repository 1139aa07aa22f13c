"""Asking the VLA before a switch (`distill/affordance.py`): on the real sim and the sim skill
policy served over the wire, as `play` and the app's runner do."""

from __future__ import annotations

import numpy as np
import pytest

from distill.affordance import AffordanceCheck, AffordanceConfig, checked_decision
from distill.high_level import Decision

# bussing seed 1000: a green plate, a white bowl, a white plate, a blue wrapper and a green can
SCENE = ("bussing", 1000)


@pytest.fixture(scope="module")
def check(robot, served_policy):
    obs = robot.reset(*SCENE)

    def fresh(**config) -> AffordanceCheck:
        return AffordanceCheck(served_policy, obs.to_dict(), {"task": "bus the table", "control_mode": "ee",
                                                              "episode": "test"}, AffordanceConfig(**config))
    return fresh


def literal(a: str, b: str) -> bool:
    return a == b


def test_choices_the_vla_refuses_are_passed_over_at_once(check):
    decision = Decision("pick up the red cup", 0.5, [("grab the purple bottle", 0.3), ("grab the green can", 0.15),
                                                     ("pick up the red cup", 0.04), ("grab the white bowl", 0.01)])
    chosen, refused = checked_decision(decision, [], check(), literal)
    assert chosen.subtask == "grab the green can" and chosen.confidence == 0.15
    assert refused == ["pick up the red cup", "grab the purple bottle"]
    assert chosen.alternatives == [("grab the white bowl", 0.01)]  # nothing refused among the runners-up


def test_another_name_for_an_item_already_handled_counts_as_that_earlier_subtask(check):
    history = ["pick up the green plate", "put it in the tub"]
    # the policy forgot the plate under another name: the VLA shows it is the same plate
    forgot = Decision("lift the green saucer", 0.6, [("grab the green can", 0.3), ("pick up the green plate", 0.01)])
    chosen, _ = checked_decision(forgot, history, check(), literal)
    assert chosen.subtask == "grab the green can"
    # it wants the plate again (a retry) as much as anything else: the earlier phrasing is sent
    again = Decision("lift the green saucer", 0.5, [("pick up the green plate", 0.3), ("grab the green can", 0.2)])
    chosen, _ = checked_decision(again, history, check(), literal)
    assert (chosen.subtask, chosen.confidence) == ("pick up the green plate", 0.3)
    # a different item of the same colour is no twin
    other = Decision("take the green can", 0.6, [("grab the white bowl", 0.3)])
    assert checked_decision(other, history, check(), literal)[0].subtask == "take the green can"


def test_with_a_zero_tolerance_nothing_is_a_twin_and_a_still_chunk_never_is(check):
    history = ["pick up the green plate"]
    decision = Decision("lift the green saucer", 0.6, [("grab the green can", 0.3)])
    assert checked_decision(decision, history, check(twin_tolerance=0.0), literal)[0].subtask == "lift the green saucer"
    probe = check()
    assert probe.twin("lift the green saucer", history) == "pick up the green plate"
    hold = np.zeros((10, 6), np.float32)
    probe._chunks.update({"wait": hold, "stay": hold})  # the VLA holding still says nothing about meaning
    assert probe.twin("wait", ["stay"]) is None


def test_when_the_likely_choices_are_refused_the_active_subtask_goes_on_rather_than_an_unlikely_one(check):
    # the finished head thinks the pick is over; the VLA refuses the place (nothing in the hand yet)
    decision = Decision("put it in the tub", 0.8, [("drop it into the bus tub", 0.15), ("grab the green can", 0.01)])
    chosen, refused = checked_decision(decision, ["pick up the green plate"], check(), literal,
                                       active="pick up the green plate")
    assert chosen.subtask == "pick up the green plate"
    assert refused == ["put it in the tub", "drop it into the bus tub"]
    assert checked_decision(decision, [], check(), literal)[0] is decision  # nothing running: it stands
    everything_refused = Decision("put it in the tub", 0.8, [("pick up the red cup", 0.2)])
    assert checked_decision(everything_refused, [], check(), literal)[0] is everything_refused
