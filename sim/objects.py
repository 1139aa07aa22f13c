"""The catalog of things that can stand on the sim's table: object kinds, colours and places.

It owns the vocabulary shared by the scene builder (sizes; the looks are `sim/appearance.py`), the task families (which
category goes where) and the grounding of language (which nouns name which kind).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectKind:
    """A kind of movable item: its nouns, its category and its collision box."""

    name: str
    category: str  # "dish" | "trash" | "block"
    nouns: tuple[str, ...]  # words a person uses for it, the first is canonical
    half_size: tuple[float, float, float]  # collision box half extents (m)
    mass: float  # kg


KINDS: dict[str, ObjectKind] = {
    k.name: k
    for k in (
        ObjectKind("cup", "dish", ("cup", "mug", "glass", "teacup"), (0.026, 0.026, 0.040), 0.08),
        ObjectKind("bowl", "dish", ("bowl", "dish bowl", "soup bowl"), (0.034, 0.034, 0.024), 0.10),
        ObjectKind("plate", "dish", ("plate", "saucer", "dish"), (0.037, 0.037, 0.013), 0.10),
        ObjectKind("can", "trash", ("can", "soda can", "tin", "soda"), (0.023, 0.023, 0.036), 0.05),
        ObjectKind("wrapper", "trash", ("wrapper", "packet", "chip bag", "wrapping"), (0.035, 0.020, 0.012), 0.03),
        ObjectKind("bottle", "trash", ("bottle", "water bottle", "plastic bottle"), (0.021, 0.021, 0.050), 0.06),
        ObjectKind("block", "block", ("block", "cube", "brick"), (0.020, 0.020, 0.020), 0.06),
    )
}

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.12),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "white": (0.92, 0.92, 0.90),
    "black": (0.10, 0.10, 0.10),
    "orange": (0.95, 0.50, 0.10),
    "purple": (0.55, 0.20, 0.75),
}


@dataclass(frozen=True)
class Place:
    """A fixed destination on the table (a container, a pad, the drawer)."""

    name: str  # e.g. "tub", "trash_bin", "drawer", "red_pad"
    nouns: tuple[str, ...]


PLACES: dict[str, Place] = {
    p.name: p
    for p in (
        Place("tub", ("bussing tub", "tub", "bus tub", "dish tub", "bussing bin", "basin", "dish bin")),
        Place("trash_bin", ("trash bin", "trash", "garbage", "bin", "rubbish", "waste basket", "trash can")),
        Place("drawer", ("drawer",)),
        *(Place(f"{c}_pad", (f"{c} pad", f"{c} square", f"{c} mat", f"{c} zone")) for c in ("red", "green", "blue")),
    )
}


@dataclass(frozen=True)
class SceneObject:
    """One item in one episode's scene: `name` is unique, e.g. "red_cup"."""

    name: str
    kind: str
    colour: str

    @property
    def category(self) -> str:
        return KINDS[self.kind].category

    @property
    def label(self) -> str:
        """How a person names it: "red cup"."""
        return f"{self.colour} {self.kind}"
