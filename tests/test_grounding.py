"""Tests of the sim's language grounding (sim.parse, sim.grounding) and its sentence encoder."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from bench.grounding import ground_case, load_cases, run
from sim.grounding import Grounder, Grounding, Refusal
from sim.objects import SceneObject
from sim.parse import parse
from coaching.text_encoder import default_encoder

TABLE = [
    SceneObject("red_cup", "cup", "red"),
    SceneObject("blue_bowl", "bowl", "blue"),
    SceneObject("green_can", "can", "green"),
    SceneObject("yellow_wrapper", "wrapper", "yellow"),
]
PLACES = ["tub", "trash_bin"]


@pytest.fixture(scope="module")
def grounder() -> Grounder:
    return Grounder(default_encoder())


def ground(grounder: Grounder, text: str, objects=TABLE, places=PLACES, held=None):
    return grounder.ground(text, objects, places, held)


def assert_grounded(result, skill, obj=None, target=None, direction=None) -> None:
    assert isinstance(result, Grounding), result
    assert (result.skill, result.object, result.target, result.direction) == (skill, obj, target, direction)
    assert 0.0 <= result.score <= 1.0


def assert_refused(result) -> str:
    assert isinstance(result, Refusal), result
    assert result.reason.strip() and result.reason.rstrip()[-1] in ".?", result.reason
    return result.reason


def test_paraphrase_set_accuracy(grounder: Grounder) -> None:
    figures = run(grounder)
    assert figures["cases"] >= 95
    assert figures["accuracy"] >= 0.95, figures["failures"]


def test_every_refusal_case_is_refused_with_a_reason(grounder: Grounder) -> None:
    refusals = [c for c in load_cases() if c["expect"].get("refused")]
    assert len(refusals) >= 15
    for case in refusals:
        result = ground_case(grounder, case)
        assert isinstance(result, Refusal), (case["text"], result)
        assert_refused(result)


def test_paraphrase_set_covers_every_skill() -> None:
    skills = {c["expect"].get("skill") for c in load_cases() if not c["expect"].get("refused")}
    assert skills == {"pick", "place", "put", "open", "close", "push", "home", "stop"}


@pytest.mark.parametrize(
    ("text", "held", "expected"),
    [
        ("try again: pick up the red cup", None, ("pick", "red_cup", None)),
        ("no, the blue one \u2014 grab the blue bowl", None, ("pick", "blue_bowl", None)),
        ("that missed, pick up the green can again", None, ("pick", "green_can", None)),
        ("oops, put it in the trash instead", "green_can", ("place", "green_can", "trash_bin")),
    ],
)
def test_corrections_still_ground(grounder: Grounder, text, held, expected) -> None:
    skill, obj, target = expected
    assert_grounded(ground(grounder, text, held=held), skill, obj, target)


def test_put_versus_place_follows_what_is_held(grounder: Grounder) -> None:
    assert_grounded(ground(grounder, "put the red cup in the tub"), "put", "red_cup", "tub")
    assert_grounded(ground(grounder, "put the red cup in the tub", held="red_cup"), "place", "red_cup", "tub")
    assert_grounded(ground(grounder, "drop it into the tub", held="blue_bowl"), "place", "blue_bowl", "tub")


def test_place_with_nothing_held_is_refused(grounder: Grounder) -> None:
    reason = assert_refused(ground(grounder, "put it in the tub"))
    assert "not holding" in reason


def test_a_refusals_example_puts_a_matching_item_on_a_pad() -> None:
    """The example a refusal offers is one a coach could send: 'on' a pad, an item of the pad's colour."""
    blocks = [SceneObject("red_block", "block", "red"), SceneObject("green_block", "block", "green")]
    reason = assert_refused(Grounder(default_encoder()).ground("put it on the green pad", blocks,
                                                               ["red_pad", "green_pad"], None))
    assert "'put the green block on the green pad'" in reason, reason


def test_unknown_object_is_refused_naming_it(grounder: Grounder) -> None:
    reason = assert_refused(ground(grounder, "pick up the thing"))
    assert "the thing" in reason
    assert "red cup" in reason  # tells the coach what there is


def test_colourless_noun_with_two_cups_is_ambiguous(grounder: Grounder) -> None:
    cups = [SceneObject("red_cup", "cup", "red"), SceneObject("blue_cup", "cup", "blue")]
    reason = assert_refused(ground(grounder, "pick up the cup", objects=cups))
    assert "red cup" in reason and "blue cup" in reason
    assert_grounded(ground(grounder, "pick up the blue cup", objects=cups), "pick", "blue_cup")


def test_single_instance_needs_no_colour(grounder: Grounder) -> None:
    assert_grounded(ground(grounder, "grab the mug"), "pick", "red_cup")


def test_empty_and_overlong_text_are_refused(grounder: Grounder) -> None:
    assert "empty" in assert_refused(ground(grounder, ""))
    assert "empty" in assert_refused(ground(grounder, "  \n\t "))
    assert "short" in assert_refused(ground(grounder, "pick up the red cup " * 500))


def test_unknown_skill_is_refused_saying_what_the_robot_can_do(grounder: Grounder) -> None:
    reason = assert_refused(ground(grounder, "dance"))
    assert "pick up" in reason and "stop" in reason


def test_place_missing_from_scene_is_refused(grounder: Grounder) -> None:
    reason = assert_refused(ground(grounder, "put it in the drawer", held="red_cup"))
    assert "drawer" in reason


def test_trash_can_is_a_place_after_a_preposition_and_a_can_otherwise(grounder: Grounder) -> None:
    assert_grounded(ground(grounder, "put the cup in the trash can"), "put", "red_cup", "trash_bin")
    assert_grounded(ground(grounder, "pick up the trash can"), "pick", "green_can")


def test_drawer_push_pull_and_push_directions(grounder: Grounder) -> None:
    places = ["tub", "drawer"]
    assert_grounded(ground(grounder, "push the drawer in", places=places), "close", "drawer")
    assert_grounded(ground(grounder, "pull the drawer out", places=places), "open", "drawer")
    assert_grounded(ground(grounder, "push the can towards me"), "push", "green_can", direction="back")
    assert_grounded(ground(grounder, "push the can away"), "push", "green_can", direction="forward")


def test_a_correction_that_only_names_a_place_moves_the_held_object(grounder: Grounder) -> None:
    assert_grounded(ground(grounder, "no, in the trash", held="red_cup"), "place", "red_cup", "trash_bin")
    assert "not holding" in assert_refused(ground(grounder, "no, in the trash"))


@pytest.mark.parametrize(
    "text",
    ["the blue bowl", "put the cup in the bowl", "open the tub", "put it on the shelf", "stack the cup on the bowl"],
)
def test_no_guessing(grounder: Grounder, text: str) -> None:
    assert_refused(ground(grounder, text, held="green_can"))


def test_stop_wins_and_never_waits_for_the_model(grounder: Grounder) -> None:
    assert_grounded(ground(grounder, "no no, stop!", held="red_cup"), "stop")
    assert ground(grounder, "freeze").score == 1.0


def test_parse_reads_the_command_without_a_scene() -> None:
    intent = parse("oops, put it in the trash instead")
    assert (intent.skill, intent.verb, intent.text) == ("place", "place", "put it in the trash instead")
    assert [sp.value for sp in intent.targets] == ["trash_bin"] and intent.phrase.pronoun
    intent = parse("the red cup - pick it up")
    assert intent.skill == "pick" and (intent.earlier.value, intent.earlier.colour) == ("cup", "red")
    assert parse("slide the can left, no, right").direction == "right"
    assert parse("no no, stop!").skill == "stop"
    # No cue: the embedding decides; only names said is "verbless".
    assert parse("the blue bowl").skill is None and parse("the blue bowl").verbless
    assert parse("grab the tumbler").phrase.head == "tumbler"
    assert parse("put it in the wastebasket").destination.text == "wastebasket"


def test_to_info_is_json_able(grounder: Grounder) -> None:
    import json

    info = ground(grounder, "pick up the red cup").to_info()
    assert set(info) == {"skill", "object", "target", "direction", "score"}
    json.dumps(info)
    assert json.loads(json.dumps(ground(grounder, "").to_info()))["refused"] is True


def test_encoder_returns_unit_384_vectors_and_paraphrases_are_closer() -> None:
    encoder = default_encoder()
    vecs = encoder.encode(["pick up the red cup", "grab the red mug", "what's the weather like today"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    # Cached texts give the same rows, and an empty batch has the right shape.
    assert np.array_equal(encoder.encode(["grab the red mug"])[0], vecs[1])
    assert encoder.encode([]).shape == (0, 384)
