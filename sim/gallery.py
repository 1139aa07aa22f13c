"""A picture of every item kind in every colour, as the base camera sees them: `docs/items.png`.

`python -m sim.gallery docs/items.png` renders one scene per kind with its eight colours on the
table, through the real base camera at the robot's 224 px, and tiles a crop around each item
(found by the segmentation oracle), enlarged, under its colour and beside its kind.
"""

from __future__ import annotations

import sys

import cv2
import mujoco
import numpy as np

from sim.objects import COLOURS, KINDS, SceneObject
from sim.scene import Placement, SceneSpec, build_mjcf
from sim.segmentation import item_labels, render_items

SPOTS = [(x, y) for x in (0.26, 0.50) for y in (-0.33, -0.11, 0.11, 0.33)]  # eight clear spots on the table
CROP = 36  # pixels of the 224 px base view around each item


def kind_tiles(kind: str, size: int = 224, zoom: int = 4) -> list[np.ndarray]:
    """One tile per colour: the base camera's 224 px view around that item, enlarged `zoom` times."""
    items = [Placement(SceneObject(f"{c}_{kind}", kind, c), xy, 2.6) for c, xy in zip(COLOURS, SPOTS)]
    model = mujoco.MjModel.from_xml_string(build_mjcf(SceneSpec(fixtures=(), items=items)))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    labels = {p.obj.name: p.obj.label for p in items}
    with mujoco.Renderer(model, size, size) as renderer:
        renderer.update_scene(data, camera="base")
        image = renderer.render().copy()
        views = {v.name: v for v in render_items(renderer, data, "base", item_labels(model, labels), labels)}
    tiles = []
    for p in items:
        x0, y0, x1, y1 = views[p.obj.name].box
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        left, top = np.clip(cx - CROP // 2, 0, size - CROP), np.clip(cy - CROP // 2, 0, size - CROP)
        tile = image[top:top + CROP, left:left + CROP]
        tiles.append(cv2.resize(tile, (CROP * zoom, CROP * zoom), interpolation=cv2.INTER_NEAREST))
    return tiles


def gallery(zoom: int = 4) -> np.ndarray:
    """Rows of kinds, columns of colours, each tile as the robot's base camera sees the item."""
    side = CROP * zoom
    header = np.full((28, 90 + side * len(COLOURS), 3), 255, np.uint8)
    for j, colour in enumerate(COLOURS):
        cv2.putText(header, colour, (90 + j * side + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [header]
    for kind in KINDS:
        label = np.full((side, 90, 3), 255, np.uint8)
        cv2.putText(label, kind, (6, side // 2 + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, *kind_tiles(kind, zoom=zoom)], axis=1))
    return np.concatenate(rows, axis=0)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/items.png"
    cv2.imwrite(out, cv2.cvtColor(gallery(), cv2.COLOR_RGB2BGR))
    print(out)
