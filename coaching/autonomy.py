"""The autonomy driver: a `HighLevelPolicy` as the subtask source of the one control loop.

Every `1 / decide_hz` seconds the policy looks at the observation, what the detector sees, the
task and the subtasks so far and names the next subtask; a *different* subtask must win
`hysteresis` decisions in a row before it is sent, so a policy torn between two answers does not
flap. A subtask the VLA refuses (`info["refused"]`), or is stuck on (still active after
`subtask_timeout_s`, or the robot still for `still_s`), is replaced by the policy's next choice at
once and kept out of the choices as `Exclusions` says. A retry (`Decision.retry`: the active
subtask's attempt ended without doing it) is sent again as a fresh segment, at most `MAX_RETRIES`
times in a row; a subtask left before the robot moved for it leaves the history. Refusals count only with `use_refusals`: a
VLA such as pi0 never refuses, so by default a stuck robot is noticed from its proprio state. The
episode ends on a `done` the policy is at least `done_confidence` sure of (less sure, it waits):
a success if the robot reports the task done in `Observation.task_progress`, a failure if it
reports otherwise, the policy's word if it cannot tell; or at the time limit. While a person drives (taken over) it waits, and goes on from the
person's subtasks once handed back. It never looks at which robot it drives.

The same driver runs everywhere: stepped every tick by `coachlab play`, the benches and the
Distill tab's Evaluate (`coaching/episode.py`), and from the app's runner thread at `decide_hz`
(`coaching/autonomous_runner.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coaching.detector import NO_DETECTOR, Detector
from coaching.high_level import Decision, HighLevelPolicy
from coaching.robot import Observation
from coaching.subtask_source import SubtaskCommand, SubtaskSource

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
# `done` ends the episode for good, so the driver waits (sends nothing new) until the policy is this
# sure; running the runner-up instead undid finished work (a placed block picked up again).
DONE_CONFIDENCE = 0.7
# Motion this soon after a subtask is sent may be the last one's: it does not show the VLA acted on
# the new one. Short, because a place can be quick: an item lifted out of the bin is released over
# it within 0.4 s (bussing traces); with 1 s such places counted as never acted on, left the
# history, and the item they put away was picked again and again.
SETTLE_S = 0.2
# Fresh attempts at one subtask in a row (a missed grasp is retried as the coach does) before it
# counts as stuck: an item the arm cannot get at is not tried forever.
MAX_RETRIES = 2
# A subtask left this many times in a row before the robot moved for it is kept out like a stuck one:
# two never-acted-on choices taking turns every two decisions were never still for `STILL_S` (a
# drawer episode spent 90 s on them). Not at the first time: a place after a missed grasp is left
# that way once, and keeping every phrasing of its destination out for 30 s took bussing seeds
# 1000-1009 from 0.8 to 0.4.
NEVER_MOVED_TWICE = 2


@dataclass
class Hysteresis:
    """Whether a decision should replace the active subtask: a different subtask (or a retry of the
    active one) must win `needed` decisions in a row (the first subtask of an episode is taken at once)."""

    needed: int = 2
    candidate: tuple[str, bool] | None = None  # (subtask, retry) that won the last decision
    streak: int = 0

    def switch(self, decision: Decision, active: str | None) -> bool:
        if decision.subtask == active and not decision.retry:
            self.reset()
            return False
        key = (decision.subtask, decision.retry)
        self.streak = self.streak + 1 if key == self.candidate else 1
        self.candidate = key
        if self.streak >= self.needed or active is None:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self.candidate, self.streak = None, 0


def without_refused(decision: Decision, refused: set[str], policy: "HighLevelPolicy | None" = None
                    ) -> Decision | None:
    """The decision, or else its best runner-up that is no phrasing of a subtask the VLA refused or
    got stuck on (see `Exclusions`), with probabilities renormalised over what is left (so a stuck
    subtask the policy still holds on to does not keep `done` below its bar). None when everything
    is excluded: the driver waits for an exclusion to run out (sending the best again would retry,
    get stuck and retry again, in a loop that filled whole episodes)."""
    same = policy.same_subtask if policy is not None else (lambda a, b: a == b)
    ranked = [(decision.subtask, decision.confidence), *decision.alternatives]
    out = {t for t, _ in ranked if any(same(t, r) for r in refused)}
    if not out:
        return decision
    left = max(1.0 - sum(p for t, p in ranked if t in out), 1e-9)
    allowed = [(t, min(1.0, p / left)) for t, p in ranked if t not in out]
    if not allowed:
        return None
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
    (`Stillness`) for `still_s` since it began."""

    def __init__(self, timeout_s: float = SUBTASK_TIMEOUT_S, still_s: float = STILL_S):
        self.timeout_s, self.still_s = timeout_s, still_s
        self._stillness = Stillness()
        self.still_for = 0.0

    def stuck(self, state: np.ndarray, now: float, started_at: float) -> bool:
        active_s = now - started_at
        self.still_for = self._stillness.update(state, now)
        return active_s > self.timeout_s or min(self.still_for, active_s) > self.still_s

    def never_moved(self, now: float, started_at: float, settle_s: float = SETTLE_S) -> bool:
        """The robot has not moved since `settle_s` after the subtask began (as of the last `stuck` call;
        a robot may still be settling from what came before): the VLA never acted on it, as when it
        names an item that is not there."""
        return self.still_for >= now - started_at - settle_s


class Exclusions:
    """The subtasks the policy may not choose now, from what the VLA did with them.

    - refused on its first reply (an object that is not there): out for `memory_s`, whatever runs
      meanwhile, so the policy goes down its list instead of circling back to it;
    - refused after it ran (a place, once the hand is empty): out until another subtask runs, since
      such refusals depend on the moment;
    - stuck on (`StuckWatch`: active past the subtask timeout, or the robot still), or left before the
      robot moved for it a second time in a row (`NEVER_MOVED_TWICE`): out for `memory_s`, or until
      the robot acts on another subtask (`acted`), whichever comes first: what the robot could not do
      then (a place with nothing in hand) it may do once the world changed (sort_blocks trace: the
      block's place, tried twice after a missed grasp, was still out after the re-pick, and the
      runner-up put the block on the wrong pad)."""

    def __init__(self, memory_s: float = EXCLUSION_S):
        self.memory_s = memory_s
        self._until: dict[str, float] = {}
        self._momentary: set[str] = set()
        self._until_acted: set[str] = set()  # out until the robot acts on another subtask

    def refused(self, text: str, now: float, ran: bool) -> None:
        if ran:
            self._momentary.add(text)
        else:
            self._until[text] = now + self.memory_s

    def stuck(self, text: str, now: float, never_moved: bool = False) -> None:
        self._until[text] = now + self.memory_s
        if never_moved:
            self._until_acted.add(text)

    def acted(self, text: str) -> None:
        """The robot acts on `text`: subtasks kept out only for never having moved it may be tried again."""
        for other in self._until_acted - {text}:
            self._until.pop(other, None)
        self._until_acted &= {text}

    def running(self) -> None:
        """A subtask runs: refusals of the moment are over."""
        self._momentary.clear()

    def current(self, now: float) -> set[str]:
        return self._momentary | {t for t, until in self._until.items() if until > now}


@dataclass
class AutonomyConfig:
    decide_hz: float = field(default=1.0, metadata={"help": "decisions a second, 0.1 to 10"})
    hysteresis: int = 2  # decisions in a row a new subtask must win before the VLA is re-prompted
    max_episode_s: float = field(default=300.0, metadata={"help": "an episode's time limit in seconds"})
    subtask_timeout_s: float = SUBTASK_TIMEOUT_S  # one subtask active this long counts as stuck
    still_s: float = STILL_S  # the robot held still this long on an active subtask: dropped as stuck
    exclusion_s: float = EXCLUSION_S  # how long a subtask refused at once, or stuck on, stays out of the choices
    done_confidence: float = DONE_CONFIDENCE  # `done` below this: wait for the next decision
    use_refusals: bool = field(default=False, metadata={
        "help": "take the VLA's refusals as a hint that a subtask cannot run now (pi0 and pi0.5 never refuse: "
                "without it a stuck robot is noticed from its proprio state alone)"})

    def check(self) -> None:
        if not 0.1 <= self.decide_hz <= 10:
            raise ValueError("Decide between 0.1 and 10 times a second.")
        if self.max_episode_s <= 0:
            raise ValueError("The time limit must be above zero seconds.")


def verdict(progress: dict[str, Any] | None) -> tuple[str, str | None]:
    """The outcome of an episode the policy called done, from what the robot reports, and a note."""
    if progress is None or "success" not in progress:
        return "success", "the policy said done; this robot cannot tell whether the task succeeded"
    return ("success", None) if progress["success"] else ("failure", "the policy said done too early")


class AutonomyDriver(SubtaskSource):
    user = "autonomous"

    def __init__(self, policy: HighLevelPolicy, task: str, config: AutonomyConfig | None = None,
                 detector: Detector = NO_DETECTOR, metadata: dict[str, Any] | None = None):
        self.policy, self.task, self.detector, self.metadata = policy, task, detector, metadata
        self.config = config or AutonomyConfig()
        self.config.check()
        self.reset()

    def reset(self) -> None:
        c = self.config
        self.policy.reset()
        self.decision: Decision | None = None  # the latest, for the page
        self._hysteresis = Hysteresis(c.hysteresis)
        self._exclusions = Exclusions(c.exclusion_s)  # what the VLA refused or got stuck on
        self._stuck = StuckWatch(c.subtask_timeout_s, c.still_s)
        self._active: str | None = None  # the subtask this driver sent last
        self._active_id: int | None = None  # its segment id, once the session has it
        self._sent_at = 0.0
        self._ran = False  # the VLA has answered it without refusing
        self._never_ran: set[int] = set()  # segments refused at once, or never acted on: not part of the history
        self._retries = 0  # fresh attempts at the active subtask in a row
        self._next_decision = 0.0
        self._unmoved: dict[str, int] = {}  # subtask -> times in a row it was left before the robot moved for it
        self._last_person_segment: int | None = None  # the newest segment a person (or the intervener) sent

    def next(self, observation: Observation, status: dict[str, Any]) -> SubtaskCommand | None:
        now = status["episode_time_s"]
        if status["driver"] != "policy":  # a person drives: watch, and start afresh from what they did
            self._active, self._active_id = None, None
            self._hysteresis.reset()
            self._next_decision = now
            return None
        if status["paused"]:
            return None  # a person paused the robot: no new subtask, and holding still is not being stuck
        if now >= self.config.max_episode_s:  # the robot may still report the task done
            done = bool((observation.task_progress or {}).get("success"))
            return SubtaskCommand("end", outcome="success" if done else "failure",
                                  note=f"time limit of {self.config.max_episode_s:.0f} s reached")
        self._after_correction(status)
        self._adopt_handed_back(status)
        self._watch_vla(observation, status, now)
        if now < self._next_decision:
            return None
        self._next_decision = now + 1.0 / self.config.decide_hz
        history = [s["text"] for s in status["segments"] if s["id"] not in self._never_ran]
        excluded = self._exclusions.current(now)
        detections = self.detector.detect(observation.images)
        proposed = self.policy.decide(observation, detections, self.task, history, self.metadata)
        decision = without_refused(proposed, excluded, self.policy)
        self.decision = decision or proposed
        if decision is None:
            return None  # every choice was refused or got stuck lately: wait until one may be tried again
        if decision.done and decision.confidence < self.config.done_confidence:
            return None  # `done` ends the episode for good: wait until the policy is sure, do nothing rash
        if not ((self._active in excluded and not decision.done) or self._hysteresis.switch(decision, self._active)):
            return None
        if decision.done:
            outcome, note = verdict(observation.task_progress)
            return SubtaskCommand("end", outcome=outcome, note=note)
        again = decision.subtask == self._active
        if self._active is not None and not again and self._active_id is not None \
                and self._stuck.never_moved(now, self._sent_at):
            # switched from before the robot acted on it: not done, and out of the choices as if stuck
            # (two such subtasks taking turns every two decisions never stayed still_s on one, and
            # filled a drawer episode for 90 s)
            self._never_ran.add(self._active_id)
            self._unmoved[self._active] = self._unmoved.get(self._active, 0) + 1
            if self._unmoved[self._active] >= NEVER_MOVED_TWICE:
                self._exclusions.stuck(self._active, now, never_moved=True)
        self._retries = self._retries + 1 if again else 0
        if self._retries > MAX_RETRIES:
            self._exclusions.stuck(decision.subtask, now)
            self._retries = 0
            return None
        self._active, self._active_id, self._sent_at, self._ran = decision.subtask, None, now, False
        return SubtaskCommand("subtask", decision.subtask, source="policy", confidence=decision.confidence)

    def _after_correction(self, status: dict[str, Any]) -> None:
        """A person (or the scripted intervener) sent a subtask: it is the active one (`_adopt_handed_back`),
        and the world has changed since the robot got stuck, so every exclusion and retry count starts
        afresh (else a policy whose choices were all out would wait them out instead of going on from
        the correction)."""
        mine = [s["id"] for s in status["segments"] if s["source"] != "policy"]
        if mine and mine[-1] != self._last_person_segment:
            self._last_person_segment = mine[-1]
            self._exclusions = Exclusions(self.config.exclusion_s)
            self._retries, self._unmoved = 0, {}
            self._active, self._active_id = None, None  # the person's subtask is the active one now
            self._hysteresis.reset()

    def _adopt_handed_back(self, status: dict[str, Any]) -> None:
        """After a person handed the episode back, their last subtask is the active one: the policy
        goes on from it (kept if it still wins, watched for refusals and stillness like its own)."""
        segments = status["segments"]
        if self._active is not None or not segments or segments[-1]["source"] == "policy" \
                or segments[-1]["end_s"] is not None:
            return
        last = segments[-1]
        self._active, self._active_id, self._sent_at, self._ran = last["text"], last["id"], last["issued_s"], True
        self._hysteresis.reset()

    def _watch_vla(self, observation: Observation, status: dict[str, Any], now: float) -> None:
        """Note what the VLA did with the active subtask: refused it, runs it, or is stuck on it."""
        segments = status["segments"]
        if self._active is None or not segments:
            return
        last = segments[-1]
        if self._active_id is None and last["text"] == self._active and last["source"] == "policy":
            self._active_id = last["id"]
        if last["id"] != self._active_id or last["end_s"] is not None:
            return  # the active subtask is not (or no longer) the one running
        excluded = self._exclusions.current(now)
        if status.get("vla_segment") == self._active_id:
            if status.get("vla_refused") and self.config.use_refusals:
                if self._active not in excluded:  # the VLA cannot do it now: take the policy's next choice
                    self._exclusions.refused(self._active, now, ran=self._ran)
                    if not self._ran:
                        self._never_ran.add(self._active_id)
                    self._next_decision = now
            elif status.get("vla_replied"):
                self._ran = True  # it runs: a subtask that ran stays in the history even if refused later
                self._exclusions.running()
        stuck = self._stuck.stuck(observation.state, now, self._sent_at)
        never_moved = self._stuck.never_moved(now, self._sent_at)
        if not never_moved:
            self._unmoved.pop(self._active, None)  # the robot acts on it: its count starts again
            self._exclusions.acted(self._active)
        if stuck and self._active not in self._exclusions.current(now):
            self._exclusions.stuck(self._active, now, never_moved)  # let the policy's next choice run
            if never_moved:  # never acted on: like a refusal, not part of the history
                self._never_ran.add(self._active_id)
            self._next_decision = now
