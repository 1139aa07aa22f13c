"""The high-level policy seam: `(observation, task, subtask history, metadata) -> next subtask | done`.

The autonomous driver (`distill/autonomous.py`) asks a `HighLevelPolicy` what to do next about
once a second and re-prompts the low-level VLA when a new answer has won a few decisions in a row
(`Hysteresis`); so does the app's runner (`coaching/autonomous_runner.py`). Both keep what the VLA
refused or got stuck on out of the choices (`Exclusions`, `Stillness`, `without_refused`), so the
two drive alike. Implementations: the learned policy distilled from coaching logs
(`distill/model.py`); anything else a lab trains can plug in by implementing `decide`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DONE = "done"
# A subtask still active after this long counts as stuck (an item it cannot reach, a grasp that
# misses the same way every time), so the policy's next choice runs instead. Of 567 coached
# segments that succeeded (60 expert episodes) the median took 2.5 s, the 99th percentile 4.3 s.
# A real robot is slower: set it from your own logs.
SUBTASK_TIMEOUT_S = 10.0
# The robot has not moved for this long on an active subtask: the VLA is stuck on it (a missed grasp,
# an item it cannot get at). A finished subtask is switched within ~2 s (hysteresis), well before.
STILL_S = 5.0
# How long a subtask refused on its first reply (the object is not there) or stuck on stays out of
# the policy's choices, whatever runs meanwhile; long enough to try the rest of its list.
EXCLUSION_S = 30.0
# `done` ends the episode for good while a wrong subtask costs seconds, so `done` must be this sure.
DONE_CONFIDENCE = 0.7


@dataclass
class Decision:
    subtask: str  # the next subtask text, or DONE
    confidence: float  # the policy's probability for it, 0..1
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # the runners-up, best first

    @property
    def done(self) -> bool:
        return self.subtask == DONE


@dataclass
class Hysteresis:
    """Whether a decision should replace the active subtask: a different subtask must win `needed`
    decisions in a row (the first subtask of an episode is taken at once). Shared by `coachlab play`
    (`distill/autonomous.py`) and the app's runner (`coaching/autonomous_runner.py`), so both switch alike."""

    needed: int = 2
    candidate: str | None = None
    streak: int = 0

    def switch(self, decision: Decision, active: str | None) -> bool:
        if decision.subtask == active:
            self.reset()
            return False
        self.streak = self.streak + 1 if decision.subtask == self.candidate else 1
        self.candidate = decision.subtask
        if self.streak >= self.needed or active is None:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self.candidate, self.streak = None, 0


def without_refused(decision: Decision, refused: set[str], policy: "HighLevelPolicy | None" = None,
                    done_confidence: float = 0.0) -> Decision:
    """The decision, or else its best runner-up that is no phrasing of a subtask the low-level policy
    refused or got stuck on (see `Exclusions`), and is not a `done` said with less than `done_confidence`
    (`done` ends the episode for good, while a wrong subtask costs seconds).

    A VLA that reports a refusal (`info["refused"]`, e.g. the object named is not in the scene)
    tells the driver more than the cameras at 64 pixels do; the high-level policy's next choice is
    tried instead of holding on to an instruction that will never run."""
    same = policy.same_subtask if policy is not None else (lambda a, b: a == b)
    ranked = [(decision.subtask, decision.confidence), *decision.alternatives]
    may_end = [(t, p) for t, p in ranked if not (t == DONE and p < done_confidence)]
    allowed = [(t, p) for t, p in may_end if not any(same(t, r) for r in refused)]
    # Everything left is excluded: the best one again (a retry), never a `done` that was held back.
    allowed = allowed or may_end[:1]
    if not allowed or allowed[0][0] == decision.subtask:
        return decision
    return Decision(allowed[0][0], allowed[0][1], allowed[1:])


class Stillness:
    """How long the robot's proprio state has stayed within `tolerance` of where it last moved to:
    a VLA stuck on a subtask holds still, one at work does not. Uses the state vector only, so it
    works on any robot."""

    def __init__(self, tolerance: float = 2e-3):
        self.tolerance = tolerance
        self._anchor: np.ndarray | None = None
        self._since = 0.0

    def update(self, state: np.ndarray, now: float) -> float:
        state = np.nan_to_num(np.asarray(state, dtype=np.float64))
        if self._anchor is None or self._anchor.shape != state.shape or \
                np.max(np.abs(state - self._anchor), initial=0.0) > self.tolerance:
            self._anchor, self._since = state, now
        return now - self._since


class StuckWatch:
    """Whether the active subtask is stuck: still active after `timeout_s`, or the robot still
    (`Stillness`) for `still_s` since it began. Shared by `coachlab play` and the app's runner."""

    def __init__(self, timeout_s: float = SUBTASK_TIMEOUT_S, still_s: float = STILL_S):
        self.timeout_s, self.still_s = timeout_s, still_s
        self._stillness = Stillness()

    def stuck(self, state: np.ndarray, now: float, started_at: float) -> bool:
        active_s = now - started_at
        return active_s > self.timeout_s or min(self._stillness.update(state, now), active_s) > self.still_s


class Exclusions:
    """The subtasks the policy may not choose now, from what the low-level VLA did with them.

    - refused on its first reply (an object that is not there): out for `memory_s`, whatever runs
      meanwhile, so the policy goes down its list instead of circling back to it;
    - refused after it ran (a place, once the hand is empty): out until another subtask runs, since
      such refusals depend on the moment;
    - stuck on (`StuckWatch`: active past the subtask timeout, or the robot still): out for `memory_s`.
    Shared by `coachlab play` and the app's runner, so both choose alike."""

    def __init__(self, memory_s: float = EXCLUSION_S):
        self.memory_s = memory_s
        self._until: dict[str, float] = {}
        self._momentary: set[str] = set()

    def refused(self, text: str, now: float, ran: bool) -> None:
        if ran:
            self._momentary.add(text)
        else:
            self._until[text] = now + self.memory_s

    def stuck(self, text: str, now: float) -> None:
        self._until[text] = now + self.memory_s

    def running(self) -> None:
        """A subtask runs: refusals of the moment are over."""
        self._momentary.clear()

    def current(self, now: float) -> set[str]:
        return self._momentary | {t for t, until in self._until.items() if until > now}


class HighLevelPolicy(abc.ABC):
    checkpoint_id: int | None = None  # the storage id of the checkpoint, where it is registered

    def reset(self) -> None:
        """Called at the start of every episode (by `play` and the app's runner); by default nothing."""

    def same_subtask(self, a: str, b: str) -> bool:
        """Whether two phrasings name the same subtask to this policy (by default: the same text)."""
        return a == b

    @abc.abstractmethod
    def decide(self, images: dict[str, np.ndarray], state: np.ndarray, task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> Decision:
        """The subtask to run now given the cameras, proprio state, task text and the subtasks so far."""
