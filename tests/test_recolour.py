"""Colour-swap augmentation: pixels and words move together, dull colours stay, samples stay true."""

from __future__ import annotations

import cv2
import numpy as np

from distill.dataset import Sample
from distill.recolour import HUES, augment, random_permutation, recolour_image, recolour_text

SWAP = {"red": "blue", "blue": "red", "orange": "orange", "yellow": "yellow", "green": "purple", "purple": "green"}


def _patch(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.full((4, 4, 3), rgb, np.uint8)


def _hue(image: np.ndarray) -> int:
    return int(cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[0, 0, 0])


def test_words_swap_whole_and_in_any_case():
    assert recolour_text("Put the red block on the blue pad", SWAP) == "Put the blue block on the red pad"
    assert recolour_text("grab the Green cup", SWAP) == "grab the purple cup"
    assert recolour_text("the reddish bin, the white mug", SWAP) == "the reddish bin, the white mug"


def test_vivid_pixels_take_the_new_hue_and_dull_ones_keep_theirs():
    red, table, white = _patch((217, 38, 31)), _patch((200, 180, 150)), _patch((235, 235, 230))
    image = np.concatenate([red, table, white], axis=1)
    out = recolour_image(image, SWAP)
    assert abs(_hue(out[:, :4]) - HUES["blue"]) <= 3  # the red patch is blue now
    np.testing.assert_array_equal(out[:, 4:], image[:, 4:])  # table and white untouched
    back = recolour_image(out, SWAP)  # this swap is its own inverse
    assert np.abs(back.astype(int) - image.astype(int)).max() <= 4


def test_augment_keeps_each_sample_true_to_its_words():
    sample = Sample(1, 0, {"base": np.concatenate([_patch((217, 38, 31)), _patch((38, 178, 51))], axis=1)},
                    np.zeros(3, np.float32), "sort the blocks", ["pick up the red block"], {},
                    "put it on the red pad", "current")
    out = augment([sample], copies=3, seed=0)
    assert len(out) == 4 and out[0] is sample
    for copy in out[1:]:
        colour = copy.history[0].split()[3]
        assert copy.target == f"put it on the {colour} pad"  # history and target swapped alike
        assert abs(_hue(copy.images["base"][:, :4]) - HUES[colour]) <= 3  # and so is the red patch
    rng = np.random.default_rng(0)
    assert sorted(random_permutation(rng).values()) == sorted(HUES)
