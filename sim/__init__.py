"""The embedded default robot: a MuJoCo tabletop arm, its task suite, the sim skill policy (stand-in VLA) and the scripted coach."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco loads GL
