"""The task suite: long-horizon task families, their seeded scenes and their success checks.

Each family samples a scene, says where every item belongs, lists the subtasks still to do in a
good order (what the expert coach follows) and checks success per subtask and per task. The
checks read the sim's privileged `env_state` and nothing else.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from sim.objects import COLOURS, SceneObject
from sim.scene import Placement, SceneSpec

DRAWER_OPEN_FRACTION = 0.8
DRAWER_CLOSED_M = 0.015


@dataclass(frozen=True)
class Step:
    """One subtask in grounded form: what the coach means when it types a sentence."""

    skill: str  # pick | place | open | close | home
    object: str | None = None
    target: str | None = None


# -- checks on env_state -----------------------------------------------------------------------
def is_held(env: dict, obj: str) -> bool:
    o = env["objects"][obj]
    return env["gripper"]["held"] == obj and o["pos"][2] > o["half_size"][2] + 0.02


def is_in(env: dict, obj: str, place: str) -> bool:
    """The item rests inside `place` (container, drawer or pad) and is not in the gripper."""
    o, p = env["objects"][obj], env["places"][place]
    x, y, z = o["pos"]
    inside = abs(x - p["pos"][0]) < p["half"][0] and abs(y - p["pos"][1]) < p["half"][1]
    # inside a container an item may rest on another one; on a flat pad it must lie on the pad
    low = z < p["floor"] + p["height"] + 2 * o["half_size"][2] + (0.015 if p["height"] > 0 else -o["half_size"][2] + 0.01)
    return inside and low and env["gripper"]["held"] != obj


def drawer_open(env: dict) -> bool:
    d = env["drawer"]
    return d is not None and d["opening"] > DRAWER_OPEN_FRACTION * d["travel"]


def drawer_closed(env: dict) -> bool:
    d = env["drawer"]
    return d is not None and d["opening"] < DRAWER_CLOSED_M


def step_done(step: Step, env: dict) -> bool:
    if step.skill == "pick":
        return is_held(env, step.object)
    if step.skill == "place":
        return is_in(env, step.object, step.target)
    if step.skill == "open":  # done once the jaw has let go of the handle, not mid-pull
        return drawer_open(env) and env["gripper"]["pos"][2] > env["drawer"]["handle"][2] + 0.04
    if step.skill == "close":
        return drawer_closed(env)
    if step.skill == "home":
        return float(np.linalg.norm(np.subtract(env["gripper"]["pos"], env["home"]))) < 0.03
    raise ValueError(f"no success check for skill {step.skill!r}")


def _scatter(rng: np.random.Generator, n: int, x_range, y_ranges, min_dist: float) -> list[tuple[float, float]]:
    """Rejection-sample n xy positions at least `min_dist` apart inside the given boxes."""
    for _ in range(200):
        pts: list[tuple[float, float]] = []
        for _ in range(n * 50):
            y_lo, y_hi = y_ranges[rng.integers(len(y_ranges))]
            p = (float(rng.uniform(*x_range)), float(rng.uniform(y_lo, y_hi)))
            if all(np.hypot(p[0] - q[0], p[1] - q[1]) >= min_dist for q in pts):
                pts.append(p)
                if len(pts) == n:
                    return pts
    raise RuntimeError("could not place the items without overlap")


def _objects(rng: np.random.Generator, kinds: list[str], colours: tuple[str, ...]) -> list[SceneObject]:
    """Give each item a colour so that no two items share both colour and kind."""
    used: set[tuple[str, str]] = set()
    out = []
    for kind in kinds:
        free = [c for c in colours if (c, kind) not in used]
        colour = str(rng.choice(free))
        used.add((colour, kind))
        out.append(SceneObject(f"{colour}_{kind}", str(kind), colour))
    return out


class TaskFamily(abc.ABC):
    name: str
    description: str
    fixtures: tuple[str, ...]

    @abc.abstractmethod
    def sample_scene(self, rng: np.random.Generator) -> SceneSpec: ...

    @abc.abstractmethod
    def destination(self, env: dict, obj: str) -> str:
        """Where `obj` belongs when the task is done."""

    @property
    @abc.abstractmethod
    def mean_subtasks(self) -> float:
        """Expected number of subtasks an expert needs, over the scene distribution."""

    def task_text(self, env: dict) -> str:
        return self.description

    def remaining_steps(self, env: dict) -> list[Step]:
        """The subtasks still to do, in the order an expert would give them."""
        steps = []
        held = env["gripper"]["held"]
        todo = [o for o in env["objects"] if not is_in(env, o, self.destination(env, o))]
        if held in todo:  # finish what is in the hand first
            steps.append(Step("place", held, self.destination(env, held)))
            todo.remove(held)
        gx, gy = env["gripper"]["pos"][:2]
        todo.sort(key=lambda o: np.hypot(env["objects"][o]["pos"][0] - gx, env["objects"][o]["pos"][1] - gy))
        for o in todo:
            steps += [Step("pick", o), Step("place", o, self.destination(env, o))]
        return steps

    def success(self, env: dict) -> bool:
        return all(is_in(env, o, self.destination(env, o)) for o in env["objects"])


class Bussing(TaskFamily):
    name = "bussing"
    description = "Bus the table: put the dishes in the bussing tub and the trash in the trash bin."
    fixtures = ("tub", "trash_bin")
    dish_place, trash_place = "tub", "trash_bin"
    min_items, max_items = 4, 8

    def sample_scene(self, rng):
        n = int(rng.integers(self.min_items, self.max_items + 1))
        dishes, trash = ["cup", "bowl", "plate"], ["can", "wrapper", "bottle"]
        n_dish = int(rng.integers(1, n))  # at least one of each category
        kinds = list(rng.choice(dishes, n_dish)) + list(rng.choice(trash, n - n_dish))
        objs = _objects(rng, kinds, tuple(COLOURS))
        xy = _scatter(rng, n, (0.24, 0.56), [(-0.25, 0.25)], 0.095)
        return SceneSpec(self.fixtures, [Placement(o, p, float(rng.uniform(-np.pi, np.pi))) for o, p in zip(objs, xy)])

    def destination(self, env, obj):
        return self.dish_place if env["objects"][obj]["category"] == "dish" else self.trash_place

    @property
    def mean_subtasks(self):
        return 2 * (self.min_items + self.max_items) / 2


class ReverseBussing(Bussing):
    name = "reverse_bussing"
    description = "Reverse bussing: put the dishes in the trash bin and the trash in the bussing tub."
    dish_place, trash_place = "trash_bin", "tub"


class DrawerStow(TaskFamily):
    name = "drawer"
    description = "Open the drawer, put the items on the table in it, then close the drawer."
    fixtures = ("cabinet",)
    min_items, max_items = 2, 3

    def sample_scene(self, rng):
        n = int(rng.integers(self.min_items, self.max_items + 1))
        kinds = list(rng.choice(["block", "can", "wrapper", "bowl"], n))
        objs = _objects(rng, kinds, tuple(COLOURS))
        xy = _scatter(rng, n, (0.24, 0.48), [(-0.34, -0.2), (0.2, 0.34)], 0.095)
        return SceneSpec(self.fixtures, [Placement(o, p, float(rng.uniform(-np.pi, np.pi))) for o, p in zip(objs, xy)])

    def destination(self, env, obj):
        return "drawer"

    def remaining_steps(self, env):
        items = super().remaining_steps(env)
        holding = env["gripper"]["held"] is not None and env["drawer"]["opening"] > 0.5 * env["drawer"]["travel"]
        if items and not drawer_open(env) and not holding:
            return [Step("open", "drawer"), *items]
        if not items and not drawer_closed(env):
            return [Step("close", "drawer")]
        return items

    def success(self, env):
        return super().success(env) and drawer_closed(env)

    @property
    def mean_subtasks(self):
        return 2 * (self.min_items + self.max_items) / 2 + 2


class SortBlocks(TaskFamily):
    name = "sort_blocks"
    description = "Sort the blocks: put each coloured block on the pad of its own colour."
    fixtures = ("pads",)

    def sample_scene(self, rng):
        colours = ["red", "green", "blue"]
        objs = [SceneObject(f"{c}_block", "block", c) for c in colours]
        xy = _scatter(rng, len(objs), (0.24, 0.46), [(-0.2, 0.2)], 0.08)
        order = rng.permutation(len(objs))
        return SceneSpec(self.fixtures, [Placement(objs[i], xy[k], float(rng.uniform(-np.pi, np.pi)))
                                         for k, i in enumerate(order)])

    def destination(self, env, obj):
        return f"{env['objects'][obj]['colour']}_pad"

    @property
    def mean_subtasks(self):
        return 6.0


FAMILIES: dict[str, TaskFamily] = {f.name: f for f in (Bussing(), ReverseBussing(), DrawerStow(), SortBlocks())}


class UnknownTask(ValueError):
    pass


def get_family(name: str) -> TaskFamily:
    if name not in FAMILIES:
        raise UnknownTask(f"Unknown task {name!r}; choose one of: {', '.join(FAMILIES)} (see `coachlab tasks`).")
    return FAMILIES[name]
