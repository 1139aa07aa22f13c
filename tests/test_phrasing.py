"""How the high-level policy reads logged subtasks and keeps its episode memory (no sim, no training)."""

from __future__ import annotations

import numpy as np

from coaching.detector import Detection
from distill.memory import EpisodeMemory
from distill.phrasing import Lexicon, SubtaskGroups, compose, ground, object_phrase, template, words


def _phrase(text: str) -> str | None:
    span = object_phrase(text)
    return None if span is None else " ".join(words(text)[span[0]:span[1]])


def test_the_object_phrase_is_what_follows_an_article_but_not_a_preposition():
    assert _phrase("grab the red mug") == "red mug"
    assert _phrase("Pick up the RED soda can, please") == "red soda can"
    assert _phrase("put it in the bussing tub") is None  # a destination, not an object
    assert _phrase("now put it on the red square") is None
    assert _phrase("go home") is None
    assert template("grab the red mug", object_phrase("grab the red mug")) == "grab the {obj}"
    assert compose("grab the {obj}", "purple can") == "grab the purple can"


def test_the_lexicon_learns_which_label_a_synonym_names_from_what_the_robot_saw():
    # "saucer" keeps appearing with a plate in view; with a bottle only sometimes
    examples = [("red saucer", ["red plate", "red bottle", "blue cup"]), ("blue saucer", ["blue plate", "green can"]),
                ("green saucer", ["green plate", "white bowl"]), ("black saucer", ["black plate", "black bottle"])]
    lexicon = Lexicon.fit(examples)
    assert lexicon.ground("red saucer", ["red bottle", "red plate", "blue cup"]) == "red plate"
    assert lexicon.ground("purple saucer", ["purple plate", "purple can"]) == "purple plate"  # a colour never logged
    assert lexicon.ground("red cup", ["red cup", "red bowl"]) == "red cup"  # the exact label wins
    assert lexicon.ground("the drawer", ["red cup"]) is None
    assert Lexicon.from_dict(lexicon.to_dict()).pairs == lexicon.pairs
    assert ground("open the drawer", ["red cup"], lexicon) == ("open the drawer", None)
    assert ground("take the red saucer", ["red plate", "red bottle"], lexicon) == ("take the {obj}", "red plate")


def test_templates_that_ended_in_the_same_place_are_one_subtask_and_others_are_not():
    rng = np.random.default_rng(0)
    tub, trash = np.array([2.0, 1.0, 0.0]), np.array([-2.0, 1.0, 0.0])
    ends = {"put it in the tub": list(tub + 0.3 * rng.standard_normal((6, 3))),
            "drop it into the dish bin": list(tub + 0.3 * rng.standard_normal((3, 3))),
            "put it in the trash bin": list(trash + 0.3 * rng.standard_normal((5, 3))),
            "grab the {obj}": list(0.8 * rng.standard_normal((9, 3))),
            "lift the {obj}": list(0.8 * rng.standard_normal((7, 3)))}
    counts = {t: len(v) for t, v in ends.items()} | {"wave hello": 1}  # never succeeded: stands alone
    groups = SubtaskGroups.fit(ends, counts)
    g = groups.index()
    assert g["put it in the tub"] == g["drop it into the dish bin"] != g["put it in the trash bin"]
    assert g["grab the {obj}"] == g["lift the {obj}"] and groups.slotted[g["grab the {obj}"]]
    assert groups.canonical(g["lift the {obj}"]) == "grab the {obj}"  # said the way coaches said it most
    assert [t for t in groups.groups if "wave hello" in t] == [["wave hello"]]


def test_the_memory_tracks_items_and_knows_what_was_put_away():
    lexicon = Lexicon.fit([("red mug", ["red cup", "blue bowl"])])
    memory = EpisodeMemory(["base", "wrist"], lexicon)
    sizes = {"base": (224, 224), "wrist": (224, 224)}
    cup = Detection("red cup", "base", (10, 20, 30, 60), 0.9)
    bowl = Detection("blue bowl", "base", (100, 100, 140, 130), 0.8)
    state = np.zeros(4, np.float32)
    memory.observe(0.0, state, [cup, bowl], sizes, [])
    memory.observe(1.0, state + 0.1, [bowl], sizes, ["grab the red mug"])  # the arm hides the cup: still known
    assert set(memory.tracks) == {"red cup", "blue bowl"}
    assert memory.items[0].label == "red cup" and memory.items[0].template == "grab the {obj}"
    memory.observe(2.0, state + 0.2, [bowl], sizes, ["grab the red mug", "put it in the tub"])
    assert memory.handled("red cup", 2) == 1 and memory.handled("red cup", 1) is None
    assert memory.handled("blue bowl", 2) is None
    f = memory.track_features("red cup", 2, lambda template, s: 1.0)
    assert f[0] == 0.0 and f[1] == (10 + 30) / 2 / 224  # not in view now; where base last saw it
    assert memory.summary(2)["handled"] == ["red cup"] and memory.summary(2)["in_view"] == ["blue bowl"]
    # the driver dropped a subtask the robot never acted on: the memory follows the history it is given
    memory.observe(3.0, state + 0.2, [bowl], sizes, ["grab the red mug", "open the drawer"])
    assert [i.text for i in memory.items] == ["grab the red mug", "open the drawer"]
    copy = memory.copy()
    copy.observe(4.0, state, [], sizes, ["grab the red mug"])
    assert len(memory.items) == 2 and len(copy.items) == 1
    assert memory.still_for() == 1.0 and copy.still_for() == 0.0  # the same state at 2 s and 3 s; then a move


def test_put_away_needs_a_place_where_logged_places_ended_and_an_item_that_moved():
    memory = EpisodeMemory(["base", "wrist"], Lexicon.fit([]))
    sizes = {"base": (224, 224), "wrist": (224, 224)}
    state = np.zeros(4, np.float32)
    near = lambda template, s: 0.5  # the place ended where logged places of its kind ended
    far = lambda template, s: 3.0
    cup = Detection("red cup", "base", (10, 20, 30, 60), 0.9)
    memory.observe(0.0, state, [cup], sizes, [])
    memory.observe(1.0, state, [cup], sizes, ["lift the red cup"])
    # the grasp missed: after the place the cup is still seen where it was picked
    memory.observe(2.0, state, [cup], sizes, ["lift the red cup", "put it in the tub"])
    assert memory.handled("red cup", 2) == 1
    assert memory.unmoved("red cup", 0) and not memory.put_away("red cup", 2, near)
    # it was carried off: seen in the tub, or not seen at all (hidden in a drawer)
    in_tub = Detection("red cup", "base", (150, 150, 170, 190), 0.9)
    memory.observe(3.0, state, [in_tub], sizes, ["lift the red cup", "put it in the tub"])
    assert memory.put_away("red cup", 2, near) and not memory.put_away("red cup", 2, far)
    memory.observe(4.0, state, [], sizes, ["lift the red cup", "put it in the tub"])
    assert memory.put_away("red cup", 2, near)


def test_a_second_name_for_an_item_put_away_is_not_a_new_item():
    """Drawer traces: an orange block in the drawer was also reported as an "orange wrapper" beside its
    own box; the policy picked that phantom until the time limit. An item not yet handled that lies
    elsewhere, or near an item not handled, stays an item."""
    memory = EpisodeMemory(["base", "wrist"], Lexicon.fit([]))
    sizes = {"base": (224, 224), "wrist": (224, 224)}
    state = np.zeros(4, np.float32)
    block = Detection("orange block", "base", (142, 120, 156, 136), 0.4)
    can = Detection("white can", "base", (40, 150, 56, 170), 0.4)
    history = ["lift the orange block", "put it in the drawer"]
    memory.observe(0.0, state, [block, can], sizes, [])
    memory.observe(1.0, state, [block, can], sizes, history[:1])
    in_drawer = Detection("orange block", "base", (110, 94, 120, 104), 0.3)
    phantom = Detection("orange wrapper", "base", (116, 104, 126, 114), 0.27)
    beside_can = Detection("blue cup", "base", (44, 160, 56, 176), 0.5)  # near an item still to do: real
    memory.observe(2.0, state, [in_drawer, can], sizes, history)
    memory.observe(3.0, state, [in_drawer, phantom, can, beside_can], sizes, history)
    assert "orange wrapper" not in memory.tracks
    assert {"white can", "blue cup", "orange block"} <= set(memory.tracks)
    relabelled = Detection("orange bottle", "base", (108, 92, 120, 108), 0.2)  # the block under another name
    memory.observe(4.0, state, [relabelled, can], sizes, history)
    assert "orange bottle" not in memory.tracks
    elsewhere = Detection("orange cup", "base", (180, 40, 196, 60), 0.5)  # another item, far from the drawer
    memory.observe(5.0, state, [elsewhere, can], sizes, history)
    assert "orange cup" in memory.tracks
