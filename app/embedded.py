"""The embedded default: the one module of the app that names the sim.

Out of the box (no robot, no GPU) coachlab runs on the MuJoCo sim robot, the sim skill policy
served over ZMQ by a child process as the stand-in VLA, and, for previews, the sim's lookahead.
Everything else in `app/`, and all of `coaching/`, `distill/`, `storage/` and `policy_client/`,
reaches the sim only through the seams this module fills in (`Robot`, the VLA address,
`SubgoalGenerator`, `SubtaskSource`), exactly as a lab's robot, VLA and perception plug in.
The sim's scripted coach and its intervener are here too: they are person stand-ins that read
the sim's privileged state, so only the sim has them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from sim.tasks import FAMILIES, UnknownTask, get_family  # noqa: F401 (UnknownTask: for the CLI's error list)

if TYPE_CHECKING:  # the command line imports this module; the heavy parts load when used
    from coaching.autonomy import AutonomyDriver
    from coaching.episode import EpisodeReport
    from coaching.robot import Robot
    from coaching.session import CoachingSession
    from coaching.subgoals import SubgoalGenerator
    from coaching.subtask_source import SubtaskSource
    from policy_client import BasePolicy

SIM_VLA_FACTORY = "sim.skill_policy:from_options"
APP_CONTROL_HZ = 20  # the browser shows each camera at the loop's rate; 15 fps is the floor
EMBEDDED = "sim"  # the name of the embedded robot for --robot
SIM_NOISE = 1.0  # the sim skill policy's failure noise everywhere it is served (0: grasps never miss)
NOISE_HELP = "failure noise of the sim skill policy (0 = none)"


def task_families() -> dict[str, str]:
    """The sim's task families and the task text each implies."""
    return {name: family.description for name, family in FAMILIES.items()}


def check_task_family(name: str) -> str:
    """`name` if the sim has that task family; UnknownTask with the list otherwise."""
    return get_family(name).name


def sim_robot(control_hz: float | None = None) -> Robot:
    """The MuJoCo tabletop arm (both cameras); `control_hz` None keeps the sim's default rate."""
    from sim.mujoco_robot import MujocoRobot, SimRobotConfig

    return MujocoRobot(SimRobotConfig(control_hz=control_hz) if control_hz else None)


def check_sim_rendering() -> None:
    """Raise the graphics backend's own error now if the sim cannot render on this machine (a server
    that renders only at the first reset checks this before it announces itself)."""
    from sim.mujoco_robot import check_rendering

    check_rendering()


@contextmanager
def vla(address: str | None = None, server_key: str | None = None, **options: Any) -> Iterator[BasePolicy]:
    """The VLA at `address` (or $COACHLAB_VLA; its CURVE public key `server_key` or $COACHLAB_VLA_KEY),
    else the sim skill policy in a supervised child process with `options` (noise, seed, control_hz, ...)."""
    from coaching.vla import connect_vla

    with connect_vla(address, SIM_VLA_FACTORY, options, server_key=server_key) as client:
        yield client


def subgoal_generator(spec: str, vla_client: BasePolicy) -> SubgoalGenerator | None:
    """`sim` (lookahead in a copy of the sim with the same VLA), `none`, or `learned:DIR` (a subgoal
    model checkpoint, the only kind a real robot can use). ValueError for anything else; a bad
    checkpoint folder raises `distill.dataset.DistillError` with one sentence."""
    if spec == "none":
        return None
    if spec == "sim":
        from sim.lookahead import SimLookahead

        return SimLookahead(vla_client)
    if spec.startswith("learned:"):
        from distill.learned_subgoals import LearnedSubgoals

        directory = spec[len("learned:"):].strip()
        if not directory:
            raise ValueError("--subgoals learned: needs a directory, e.g. learned:runs/subgoals (the --out of "
                             "coachlab distill-subgoals).")
        return LearnedSubgoals.load(directory)
    raise ValueError(f"--subgoals {spec!r} is not understood; use sim, none or learned:DIR.")


def scripted_coaching(session: CoachingSession, task_families: list[str], episodes: int, seed: int = 0,
                      profile: str = "expert", progress: bool = True) -> dict[str, list[EpisodeReport]]:
    """The scripted coach coaching `episodes` seeded episodes of each task family on `session`."""
    from sim.scripted_runs import coach_episodes

    return coach_episodes(session, task_families, episodes, seed, profile, progress)


def scripted_coach(task_family: str, seed: int, profile: str = "expert") -> SubtaskSource:
    """The scripted coach for one episode (`.settings()` gives its episode settings)."""
    from sim.coach import CoachConfig
    from sim.coach_source import ScriptedCoachSource

    return ScriptedCoachSource(get_family(task_family), CoachConfig(profile=profile), seed)


def scripted_intervention(driver: AutonomyDriver, task_family: str, seed: int) -> SubtaskSource:
    """The autonomy driver with the scripted coach stepping in when it stalls or stops early."""
    from sim.intervention import ScriptedIntervention

    return ScriptedIntervention(driver, get_family(task_family), seed)


# -- perception ------------------------------------------------------------------------------
# The embedded default's detector ships with the project (`distill/detector/`, 0.9 MB, written by
# `coachlab train-detector --out distill/detector`): a first run must be up in two minutes, and
# training took about twenty here (docs/perception.md).


def shipped_detector_dir() -> str:
    """The folder of the detector weights that ship with coachlab."""
    from distill.learned_detector import SHIPPED

    return SHIPPED


def detector(spec: str | None = None, robot: Robot | None = None, vocabulary: list[str] | None = None) -> Any:
    """The `Detector` named by `spec`: None or "learned" (the shipped learned detector), "learned:DIR"
    (one `coachlab train-detector` wrote), "owl:DIR" (a transformers zero-shot detector saved in DIR,
    looking for `vocabulary`), "oracle" (the sim's segmentation; needs the sim `robot`; ablations
    only) or "none". Raises UserError (or DistillError for a bad folder) with one sentence."""
    from app.errors import UserError
    from coaching.detector import NO_DETECTOR

    kind, _, arg = (spec or "learned").partition(":")
    if kind == "none":
        return NO_DETECTOR
    if kind == "learned":
        from distill.learned_detector import LearnedDetector

        return LearnedDetector.load(arg or shipped_detector_dir())
    if kind == "oracle":
        from sim.mujoco_robot import MujocoRobot
        from sim.segmentation import SegmentationOracle

        if not isinstance(robot, MujocoRobot):
            raise UserError("The segmentation oracle reads the sim's state: use it with the embedded sim robot.")
        return SegmentationOracle(robot)
    if kind == "owl" and arg:
        from distill.open_vocabulary import OpenVocabularyDetector

        if not vocabulary:
            raise UserError("The open-vocabulary detector looks for the objects of logged subtasks, and there are "
                            "none yet: coach a few episodes first, or use --detector learned.")
        return OpenVocabularyDetector.load(arg, vocabulary)
    raise UserError(f"Unknown detector {spec!r}: use learned, learned:DIR, owl:DIR, oracle or none.")


def synthetic_frames(n: int, seed: int, **config: Any) -> Iterator[Any]:
    """`n` labelled random sim renders (`sim.synthetic_scenes`), the learned detector's training data."""
    from sim.synthetic_scenes import SyntheticConfig
    from sim.synthetic_scenes import synthetic_frames as frames

    return frames(n, seed, SyntheticConfig(**config))
