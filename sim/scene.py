"""The MuJoCo tabletop scene: one MJCF document built per episode from a `SceneSpec`.

It owns the geometry: the table, the 5-joint arm with its parallel-jaw gripper and wrist camera,
the over-the-shoulder camera, the fixtures a task family asks for (bussing tub, trash bin,
cabinet with a drawer, coloured pads) and the free items. Written as MJCF text rather than
MjSpec calls because the text is what a reader (and MuJoCo's own docs) speaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.appearance import visual_geoms
from sim.objects import COLOURS, KINDS, SceneObject

# Fixture geometry shared with the skills and success checks (metres, world frame, table top z=0).
TUB = {"pos": (0.30, 0.40), "half": (0.11, 0.095), "height": 0.055}
TRASH_BIN = {"pos": (0.30, -0.40), "half": (0.10, 0.09), "height": 0.07}
CABINET = {"pos": (0.66, 0.0), "half": (0.12, 0.13, 0.06), "drawer_travel": 0.17}
PAD_HALF = 0.055
PADS = {"red_pad": (0.42, 0.34), "green_pad": (0.58, 0.0), "blue_pad": (0.42, -0.34)}
GRIPPER_MAX_OPENING = 0.09
HOME_EE = (0.30, 0.0, 0.25)
# The arm joints' control ranges (radians), as the actuators below state them: the sim robot's
# joint-mode action bounds (a test checks the two agree).
ARM_CTRL_RANGE = ((-2.8, -0.6, -0.3, -2.4, -3.1), (2.8, 2.4, 2.8, 2.4, 3.1))
# Where the grip site can be (metres): the shoulder is 0.25 m up and the arm reaches about 0.83 m.
EE_WORKSPACE = ((-0.85, -0.85, -0.05), (0.85, 0.85, 1.1))


@dataclass
class Placement:
    """Where one item starts: its xy on the table and its yaw."""

    obj: SceneObject
    xy: tuple[float, float]
    yaw: float


@dataclass
class SceneSpec:
    """Everything that varies between episodes: fixtures and items."""

    fixtures: tuple[str, ...]  # subset of "tub", "trash_bin", "cabinet", "pads"
    items: list[Placement] = field(default_factory=list)


def _rgba(colour: str) -> str:
    r, g, b = COLOURS[colour]
    return f"{r} {g} {b} 1"


def _look_at_xyaxes(pos: np.ndarray, target: np.ndarray) -> str:
    """MuJoCo cameras look down their -z axis; give xyaxes so they face `target` with up = +z."""
    forward = target - pos
    forward /= np.linalg.norm(forward)
    x = np.cross(forward, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(x, forward)
    return " ".join(f"{v:.4f}" for v in (*x, *y))


def _open_box(name: str, pos: tuple[float, float], half: tuple[float, float], height: float, rgba: str) -> str:
    """A container: a floor and four walls, static."""
    hx, hy = half
    t = 0.006
    h = height / 2
    return f"""
    <body name="{name}" pos="{pos[0]} {pos[1]} 0">
      <geom type="box" size="{hx} {hy} 0.004" pos="0 0 0.004" rgba="{rgba}" class="fixture"/>
      <geom type="box" size="{hx} {t} {h}" pos="0 {hy} {h}" rgba="{rgba}" class="fixture"/>
      <geom type="box" size="{hx} {t} {h}" pos="0 {-hy} {h}" rgba="{rgba}" class="fixture"/>
      <geom type="box" size="{t} {hy} {h}" pos="{hx} 0 {h}" rgba="{rgba}" class="fixture"/>
      <geom type="box" size="{t} {hy} {h}" pos="{-hx} 0 {h}" rgba="{rgba}" class="fixture"/>
    </body>"""


def _cabinet() -> str:
    """A cabinet whose drawer slides out toward the robot (-x) on a slide joint."""
    cx, cy = CABINET["pos"]
    hx, hy, hz = CABINET["half"]
    travel = CABINET["drawer_travel"]
    wood = "0.55 0.38 0.22 1"
    front = "0.70 0.52 0.32 1"
    dhx, dhy, dhz = hx - 0.012, hy - 0.014, 0.035  # drawer box inside the carcass
    return f"""
    <body name="cabinet" pos="{cx} {cy} 0">
      <geom type="box" size="{hx} {hy} 0.006" pos="0 0 {2 * hz + 0.02}" rgba="{wood}" class="fixture"/>
      <geom type="box" size="{hx} 0.006 {hz + 0.013}" pos="0 {hy} {hz + 0.013}" rgba="{wood}" class="fixture"/>
      <geom type="box" size="{hx} 0.006 {hz + 0.013}" pos="0 {-hy} {hz + 0.013}" rgba="{wood}" class="fixture"/>
      <geom type="box" size="0.006 {hy} {hz + 0.013}" pos="{hx} 0 {hz + 0.013}" rgba="{wood}" class="fixture"/>
      <body name="drawer" pos="0 0 0.004">
        <joint name="drawer_slide" type="slide" axis="-1 0 0" range="0 {travel}" damping="4" frictionloss="0.3"/>
        <geom type="box" size="{dhx} {dhy} 0.004" pos="0 0 0.004" rgba="{wood}" class="fixture" mass="0.3"/>
        <geom type="box" size="{dhx} 0.005 {dhz}" pos="0 {dhy} {dhz}" rgba="{wood}" class="fixture" mass="0.05"/>
        <geom type="box" size="{dhx} 0.005 {dhz}" pos="0 {-dhy} {dhz}" rgba="{wood}" class="fixture" mass="0.05"/>
        <geom type="box" size="0.005 {dhy} {dhz}" pos="{dhx} 0 {dhz}" rgba="{wood}" class="fixture" mass="0.05"/>
        <geom name="drawer_front" type="box" size="0.008 {hy} {hz + 0.01}" pos="{-hx - 0.009} 0 {hz + 0.01}"
              rgba="{front}" class="fixture" mass="0.1"/>
        <geom type="box" size="0.031 0.006 0.005" pos="{-hx - 0.046} 0.045 0.06" rgba="0.2 0.2 0.2 1" class="fixture" mass="0.01"/>
        <geom type="box" size="0.031 0.006 0.005" pos="{-hx - 0.046} -0.045 0.06" rgba="0.2 0.2 0.2 1" class="fixture" mass="0.01"/>
        <geom name="handle" type="box" size="0.006 0.06 0.006" pos="{-hx - 0.075} 0 0.06" rgba="0.2 0.2 0.2 1"
              class="fixture" mass="0.02"/>
        <site name="handle" pos="{-hx - 0.075} 0 0.06" size="0.004"/>
      </body>
    </body>"""


def _pads() -> str:
    out = []
    for name, (x, y) in PADS.items():
        colour = name.split("_")[0]
        out.append(
            f'<geom name="{name}" type="box" size="{PAD_HALF} {PAD_HALF} 0.001" pos="{x} {y} 0.001" '
            f'rgba="{_rgba(colour)}" contype="0" conaffinity="0"/>'
        )
    return "\n    ".join(out)


def _item(p: Placement) -> str:
    kind = KINDS[p.obj.kind]
    hx, hy, hz = kind.half_size
    visual = visual_geoms(p.obj.kind, p.obj.colour)
    q = np.array([np.cos(p.yaw / 2), 0, 0, np.sin(p.yaw / 2)])
    return f"""
    <body name="{p.obj.name}" pos="{p.xy[0]} {p.xy[1]} {hz + 0.001}" quat="{q[0]:.5f} 0 0 {q[3]:.5f}">
      <freejoint name="{p.obj.name}"/>
      <geom name="{p.obj.name}" type="box" size="{hx} {hy} {hz}" mass="{kind.mass}" class="item"/>
      {visual}
    </body>"""


ARM = """
    <body name="base" pos="0 0 0">
      <geom type="cylinder" size="0.07 0.05" pos="0 0 0.05" rgba="0.25 0.25 0.28 1" class="fixture"/>
      <body name="link_yaw" pos="0 0 0.10" gravcomp="1">
        <joint name="j0_yaw" axis="0 0 1" range="-2.8 2.8"/>
        <geom type="cylinder" size="0.05 0.075" pos="0 0 0.075" rgba="0.85 0.85 0.88 1" class="arm"/>
        <body name="link_upper" pos="0 0 0.15" gravcomp="1">
          <joint name="j1_shoulder" axis="0 1 0" range="-0.6 2.4"/>
          <geom type="capsule" fromto="0 0 0 0 0 0.34" size="0.035" rgba="0.85 0.85 0.88 1" class="arm"/>
          <body name="link_fore" pos="0 0 0.34" gravcomp="1">
            <joint name="j2_elbow" axis="0 1 0" range="-0.3 2.8"/>
            <geom type="capsule" fromto="0 0 0 0 0 0.34" size="0.03" rgba="0.30 0.45 0.80 1" class="arm"/>
            <body name="link_wrist" pos="0 0 0.34" gravcomp="1">
              <joint name="j3_wrist_pitch" axis="0 1 0" range="-2.4 2.4"/>
              <geom type="cylinder" size="0.028 0.02" pos="0 0 0.02" rgba="0.25 0.25 0.28 1" class="arm"/>
              <body name="hand" pos="0 0 0.04" gravcomp="1">
                <joint name="j4_wrist_roll" axis="0 0 1" range="-3.1 3.1"/>
                <geom type="box" size="0.055 0.022 0.015" pos="0 0 0.02" rgba="0.2 0.2 0.22 1" class="arm"/>
                <camera name="wrist" pos="0 -0.055 0.02" xyaxes="1 0 0 0 -1 0" fovy="75"/>
                <site name="grip" pos="0 0 0.105" size="0.005" rgba="1 0 0 0"/>
                <body name="finger_left" pos="0 0 0.035" gravcomp="1">
                  <joint name="finger_left" type="slide" axis="1 0 0" range="0 0.045" damping="2"/>
                  <geom type="box" size="0.007 0.012 0.04" pos="0.007 0 0.04" rgba="0.1 0.1 0.1 1" class="finger"/>
                </body>
                <body name="finger_right" pos="0 0 0.035" gravcomp="1">
                  <joint name="finger_right" type="slide" axis="-1 0 0" range="0 0.045" damping="2"/>
                  <geom type="box" size="0.007 0.012 0.04" pos="-0.007 0 0.04" rgba="0.1 0.1 0.1 1" class="finger"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""

ACTUATORS = """
    <position name="a0_yaw" joint="j0_yaw" kp="600" dampratio="1" ctrlrange="-2.8 2.8"/>
    <position name="a1_shoulder" joint="j1_shoulder" kp="900" dampratio="1" ctrlrange="-0.6 2.4"/>
    <position name="a2_elbow" joint="j2_elbow" kp="700" dampratio="1" ctrlrange="-0.3 2.8"/>
    <position name="a3_wrist_pitch" joint="j3_wrist_pitch" kp="300" dampratio="1" ctrlrange="-2.4 2.4"/>
    <position name="a4_wrist_roll" joint="j4_wrist_roll" kp="200" dampratio="1" ctrlrange="-3.1 3.1"/>
    <position name="a_finger_left" joint="finger_left" kp="300" forcerange="-12 12" ctrlrange="0 0.045"/>
    <position name="a_finger_right" joint="finger_right" kp="300" forcerange="-12 12" ctrlrange="0 0.045"/>"""


def build_mjcf(spec: SceneSpec) -> str:
    """The whole scene as one MJCF string."""
    cam_pos = np.array([-0.08, -0.62, 0.78])
    cam_xy = _look_at_xyaxes(cam_pos, np.array([0.42, 0.02, 0.0]))
    fixtures = []
    if "tub" in spec.fixtures:
        fixtures.append(_open_box("tub", TUB["pos"], TUB["half"], TUB["height"], "0.30 0.55 0.75 1"))
    if "trash_bin" in spec.fixtures:
        fixtures.append(_open_box("trash_bin", TRASH_BIN["pos"], TRASH_BIN["half"], TRASH_BIN["height"], "0.35 0.35 0.35 1"))
    if "cabinet" in spec.fixtures:
        fixtures.append(_cabinet())
    if "pads" in spec.fixtures:
        fixtures.append(_pads())
    items = "".join(_item(p) for p in spec.items)
    return f"""
<mujoco model="coachlab_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <!-- numstacks 8 (MuJoCo's default 16): a camera render costs 6 instead of 11 ms on the CPU
         renderer (Mesa llvmpipe), `bench sim` 36.6 -> 45.2 steps/s; the curved surfaces'
         rings are not visible at 224 px (0.04% of pixels differ by more than 30 of 765) -->
    <quality shadowsize="0" offsamples="0" numstacks="8"/>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0.1 0.1 0.1"/>
  </visual>
  <default>
    <joint armature="0.05" damping="1"/>
    <geom friction="1.0 0.02 0.001" solref="0.004 1"/>
    <default class="fixture"><geom contype="1" conaffinity="1" condim="3"/></default>
    <default class="arm"><geom contype="2" conaffinity="1" condim="3" mass="0.4"/></default>
    <default class="finger"><geom contype="1" conaffinity="1" condim="4" friction="1.6 0.05 0.001" mass="0.05"/></default>
    <default class="item"><geom contype="1" conaffinity="1" condim="4" friction="1.2 0.02 0.001" group="3" rgba="0 0 0 0"/></default>
    <default class="visual"><geom contype="0" conaffinity="0" mass="0" group="2"/></default>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" width="256" height="256" rgb1="0.78 0.72 0.62" rgb2="0.74 0.68 0.58"/>
    <material name="tabletop" texture="grid" texrepeat="8 8"/>
  </asset>
  <worldbody>
    <light pos="0.3 0 1.5" dir="0 0 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" rgba="0.35 0.37 0.40 1" contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="0.55 0.62 0.02" pos="0.35 0 -0.02" material="tabletop" class="fixture"/>
    <camera name="base" pos="{cam_pos[0]} {cam_pos[1]} {cam_pos[2]}" xyaxes="{cam_xy}" fovy="58"/>
    {ARM}
    {"".join(fixtures)}
    {items}
  </worldbody>
  <contact>
    <exclude body1="finger_left" body2="finger_right"/>
    <exclude body1="hand" body2="finger_left"/>
    <exclude body1="hand" body2="finger_right"/>
    {'<exclude body1="cabinet" body2="drawer"/>' if "cabinet" in spec.fixtures else ""}
  </contact>
  <actuator>{ACTUATORS}
  </actuator>
</mujoco>"""
