"""The sim's segmentation oracle: which items each camera really sees, from MuJoCo's segmentation render.

It owns the ground truth of perception in the sim. For every camera it renders two segmentation
images: the whole scene (what is visible: the arm, a tub wall or a closed drawer hide what is
behind) and the items alone (each item's unoccluded silhouette; item visuals are geom group 2).
An item's visible fraction is the ratio of the two pixel counts (items hiding each other count as
visible in both renders, so only the arm and the fixtures lower it). It makes the labels the learned
detector trains on and is the upper bound in ablations; it reads the simulator's state, so it is
never behind a headline number.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from coaching.detector import Detection

ITEM_GROUP = 2  # sim.scene puts every item's visual geoms (class "visual") in this geom group
MIN_PIXELS = 12  # fewer visible pixels than this is not "seen" (a few stray pixels of a hidden item)


@dataclass(frozen=True)
class ItemView:
    """One item as one camera sees it."""

    name: str  # the scene's item name, e.g. "red_cup"
    label: str  # what a person calls it, e.g. "red cup"
    camera: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 (pixels) of the visible pixels
    mask: np.ndarray  # HxW bool: the visible pixels
    visible_fraction: float  # visible pixels / pixels of the item with nothing else in the way


def item_labels(model: mujoco.MjModel, items: dict[str, str]) -> np.ndarray:
    """Per geom id, the index (into `list(items)`) of the item body it belongs to, or -1.

    `items` maps item body names to labels, e.g. {"red_cup": "red cup"}.
    """
    index = {model.body(name).id: k for k, name in enumerate(items)}
    return np.array([index.get(int(b), -1) for b in model.geom_bodyid], dtype=np.int64)


def render_items(renderer: mujoco.Renderer, data: mujoco.MjData, camera: str, geom_item: np.ndarray,
                 items: dict[str, str]) -> list[ItemView]:
    """The items `camera` sees with at least `MIN_PIXELS` visible pixels, with their visible fraction.

    `renderer` must be sized like the camera's images; segmentation rendering is switched on for
    the two renders and off again.
    """
    renderer.enable_segmentation_rendering()
    try:
        renderer.update_scene(data, camera=camera)
        visible = _item_index(renderer.render(), geom_item)
        only_items = mujoco.MjvOption()
        only_items.geomgroup[:] = 0
        only_items.geomgroup[ITEM_GROUP] = 1
        renderer.update_scene(data, camera=camera, scene_option=only_items)
        alone = _item_index(renderer.render(), geom_item)
    finally:
        renderer.disable_segmentation_rendering()
    names = list(items)
    out = []
    for k in np.unique(visible[visible >= 0]):
        mask = visible == k
        n = int(mask.sum())
        if n < MIN_PIXELS:
            continue
        ys, xs = np.nonzero(mask)
        full = max(int((alone == k).sum()), n)
        out.append(ItemView(names[k], items[names[k]], camera,
                            (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                            mask, n / full))
    return out


def _item_index(seg: np.ndarray, geom_item: np.ndarray) -> np.ndarray:
    """HxW item index (-1 for anything else) from a segmentation render (HxWx2: object id, object type)."""
    ids, types = seg[..., 0], seg[..., 1]
    is_geom = (types == int(mujoco.mjtObj.mjOBJ_GEOM)) & (ids >= 0)
    out = np.full(ids.shape, -1, dtype=np.int64)
    out[is_geom] = geom_item[ids[is_geom]]
    return out


class SegmentationOracle:
    """The `Detector` seam answered from the simulator's own segmentation (ablations and labels only).

    `robot` is a `sim.mujoco_robot.MujocoRobot`; `detect` ignores the pixels it is given and renders
    the robot's current state for each named camera, so it sees exactly what those images show.
    """

    def __init__(self, robot):
        self.robot = robot

    def views(self, cameras) -> list[ItemView]:
        r = self.robot
        items = {p.obj.name: p.obj.label for p in r.spec.items}
        geom_item = item_labels(r.model, items)
        out = []
        for cam in cameras:
            out += render_items(r.renderer, r.data, cam, geom_item, items)
        return out

    def detect(self, images: dict[str, np.ndarray]) -> list[Detection]:
        """Every item each camera in `images` shows (`{camera: HxWx3 uint8}`), score 1."""
        unknown = set(images) - set(self.robot.config.cameras)
        if unknown:
            raise ValueError(f"The sim has no camera {sorted(unknown)}; it has {list(self.robot.config.cameras)}.")
        return [Detection(v.label, v.camera, v.box, 1.0, v.mask) for v in self.views(images)]
