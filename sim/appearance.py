"""What each kind of item looks like: its visual geoms, built from MuJoCo primitives.

It owns only the look. Every item still collides as the plain box `ObjectKind.half_size` gives
(class "item", invisible), so grasps and success checks do not depend on the visuals; the visuals
(class "visual", no contacts, no mass) stay about that box's size so the fingers meet what a
person sees. Each kind has a silhouette and a top a person tells apart at a glance in the 224 px
base view, in every colour: a cup is tall with an open top and a handle, a bowl wide, shallow and
open, a plate flat and wide with a well, a can has a metal lid with a tab and a band, a bottle a
shoulder, neck and cap, a wrapper is a flat packet with crimped ends, a block a cube.

Coordinates are in the item's body frame: the body origin is the collision box's centre, so the
item spans z in [-hz, hz].
"""

from __future__ import annotations

from collections.abc import Callable

from sim.objects import COLOURS, KINDS

METAL = "0.78 0.79 0.80 1"
LABEL = "0.96 0.96 0.93 1"
CAP_DARK, CAP_LIGHT = "0.12 0.12 0.14 1", "0.95 0.95 0.95 1"


def _rgba(rgb: tuple[float, float, float], scale: float = 1.0) -> str:
    r, g, b = (min(1.0, c * scale) for c in rgb)
    return f"{r:.3f} {g:.3f} {b:.3f} 1"


def _inside(rgb: tuple[float, float, float]) -> str:
    """The shaded inside of a vessel: darker than its colour, and lighter than black for a black one."""
    if max(rgb) < 0.2:
        return "0.42 0.42 0.44 1"
    return _rgba(rgb, 0.45)


def _geom(kind: str, size: str, pos: str | None, rgba: str, extra: str = "") -> str:
    at = f' pos="{pos}"' if pos is not None else ""
    return f'<geom type="{kind}" size="{size}"{at} rgba="{rgba}" class="visual"{extra}/>'


def _cup(h: tuple[float, float, float], rgb) -> list[str]:
    r, _, hz = h
    c = _rgba(rgb)
    hx = r + 0.011  # the handle's outer edge, past the body as a real mug's is
    return [
        _geom("cylinder", f"{r} {hz}", "0 0 0", c),
        _geom("cylinder", f"{r - 0.004} 0.0008", f"0 0 {hz - 0.0004:.4f}", _inside(rgb)),  # the open top
        _geom("capsule", f"0.0045 {hz * 0.45:.4f}", f"{hx} 0 {0.1 * hz:.4f}", c),  # the handle: a C of three capsules
        _geom("capsule", "0.0045", None, c, f' fromto="{r - 0.002} 0 {0.55 * hz:.4f} {hx} 0 {0.55 * hz:.4f}"'),
        _geom("capsule", "0.0045", None, c, f' fromto="{r - 0.002} 0 {-0.35 * hz:.4f} {hx} 0 {-0.35 * hz:.4f}"'),
    ]


def _bowl(h: tuple[float, float, float], rgb) -> list[str]:
    r, _, hz = h
    c = _rgba(rgb)
    return [
        _geom("cylinder", f"{0.5 * r:.4f} 0.003", f"0 0 {-hz + 0.003:.4f}", c),  # the foot
        _geom("ellipsoid", f"{r + 0.002:.4f} {r + 0.002:.4f} {hz - 0.003:.4f}", "0 0 0.003", c),  # the round belly
        _geom("cylinder", f"{r + 0.003:.4f} {hz * 0.25:.4f}", f"0 0 {hz * 0.75:.4f}", c),  # the rim band
        _geom("cylinder", f"{r - 0.003:.4f} 0.0008", f"0 0 {hz - 0.0004:.4f}", _inside(rgb)),  # wide open top
    ]


def _plate(h: tuple[float, float, float], rgb) -> list[str]:
    r, _, hz = h
    c = _rgba(rgb)
    rim = 0.004
    return [
        _geom("cylinder", f"{0.55 * r:.4f} {hz - rim:.4f}", f"0 0 {-rim:.4f}", _rgba(rgb, 0.8)),  # foot ring
        _geom("cylinder", f"{r + 0.006:.4f} {rim}", f"0 0 {hz - rim:.4f}", c),  # the wide flat plate
        _geom("cylinder", f"{0.62 * r:.4f} 0.0008", f"0 0 {hz:.4f}", _rgba(rgb, 0.72)),  # the well
    ]


def _can(h: tuple[float, float, float], rgb) -> list[str]:
    r, _, hz = h
    c = _rgba(rgb)
    lid = 0.005
    return [
        _geom("cylinder", f"{r} {hz - lid:.4f}", f"0 0 {-lid:.4f}", c),
        _geom("cylinder", f"{r} {hz * 0.18:.4f}", f"0 0 {0.05 * hz:.4f}", LABEL),  # the band
        _geom("cylinder", f"{r - 0.002:.4f} {lid:.4f}", f"0 0 {hz - lid:.4f}", METAL),  # the lid, narrower: a rim
        _geom("box", "0.007 0.004 0.0008", f"0.008 0 {hz + 0.0006:.4f}", "0.55 0.56 0.58 1"),  # the tab
    ]


def _bottle(h: tuple[float, float, float], rgb) -> list[str]:
    r, _, hz = h
    c = _rgba(rgb)
    body_top = 0.2 * hz
    cap = CAP_DARK if max(rgb) > 0.5 else CAP_LIGHT
    return [
        _geom("cylinder", f"{r} {(body_top + hz) / 2:.4f}", f"0 0 {(body_top - hz) / 2:.4f}", c),
        _geom("ellipsoid", f"{r} {r} {0.35 * hz:.4f}", f"0 0 {body_top:.4f}", c),  # the shoulder
        _geom("cylinder", f"{0.38 * r:.4f} {0.2 * hz:.4f}", f"0 0 {0.62 * hz:.4f}", c),  # the neck
        _geom("cylinder", f"{0.5 * r:.4f} {0.12 * hz:.4f}", f"0 0 {0.88 * hz:.4f}", cap),  # the cap
    ]


def _wrapper(h: tuple[float, float, float], rgb) -> list[str]:
    hx, hy, hz = h
    c = _rgba(rgb)
    t = 0.45 * hz  # a flat packet lying on the table: thinner than its collision box
    out = [
        _geom("ellipsoid", f"{hx - 0.006:.4f} {hy:.4f} {t:.4f}", f"0 0 {-hz + t:.4f}", c),  # the puffed pillow
        _geom("box", f"0.006 {hy * 0.45:.4f} 0.0008", f"0 0 {-hz + 2 * t - 0.0003:.4f}", LABEL),  # a small logo
    ]
    for side in (-1, 1):  # the crimped seals at both ends: a row of small tilted teeth, a lighter shade
        x = side * (hx - 0.004)
        for k in range(5):
            y = -hy + (k + 0.5) * 2 * hy / 5
            tilt = 0.35 if k % 2 else -0.35
            out.append(_geom("box", f"0.004 {hy / 5:.4f} 0.0012", f"{x:.4f} {y:.4f} {-hz + t:.4f}", _rgba(rgb, 1.3),
                             f' euler="{tilt} 0 0"'))
    return out


def _block(h: tuple[float, float, float], rgb) -> list[str]:
    hx, hy, hz = h
    return [
        _geom("box", f"{hx} {hy} {hz}", "0 0 0", _rgba(rgb)),
        _geom("box", f"{hx * 0.8:.4f} {hy * 0.8:.4f} 0.0006", f"0 0 {hz:.4f}", _rgba(rgb, 1.25)),  # a lit top face
    ]


_BUILDERS: dict[str, Callable[..., list[str]]] = {
    "cup": _cup, "bowl": _bowl, "plate": _plate, "can": _can, "bottle": _bottle, "wrapper": _wrapper, "block": _block,
}


def visual_geoms(kind: str, colour: str) -> str:
    """The MJCF `<geom>` elements (class "visual") of one item of `kind` in `colour`, in its body frame.

    Raises KeyError for a kind or colour the catalog (`sim.objects`) does not have.
    """
    return "\n      ".join(_BUILDERS[kind](KINDS[kind].half_size, COLOURS[colour]))
