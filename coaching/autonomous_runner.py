"""The app's autonomous runner: the autonomy driver on a live `CoachingSession`, one episode after another.

It owns one thread. Every `1 / decide_hz` seconds it hands the session's latest observation and
status to the `AutonomyDriver` (`coaching/autonomy.py`, the same driver `coachlab play` and the
benches step) and carries out what it says through the session, so the control loop, the
recorder and the live view are the coaching ones. The decisions run here, off the loop's thread,
so a slow high-level policy never slows the robot. An episode ends when the driver ends it
(`done`, or the time limit), when `max_stuck` subtasks in a row ended without the arm completing
them (refused, failed, or replaced while it had not finished: a policy going round absent items),
or on `stop()`; `take_over()` steps the runner aside and the same
episode goes on as coaching (`mixed`, the person's subtasks logged as corrections). No Gradio here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from coaching.autonomy import AutonomyConfig, AutonomyDriver
from coaching.detector import NO_DETECTOR, Detector
from coaching.high_level import HighLevelPolicy
from coaching.session import CoachingSession, EpisodeSettings, SessionError

RUNNER_USER = AutonomyDriver.user


@dataclass
class RunnerConfig:
    task_family: str  # what the robot resets to
    task: str  # the task text the policy and the VLA are given
    first_seed: int = 0  # run k uses first_seed + k: a new scene every run
    episodes: int | None = 1  # None: run until stopped (a demo loop with resets)
    control_mode: str = "ee"
    metadata: dict[str, Any] | None = None  # the prompt's metadata, None to leave it out
    autonomy: AutonomyConfig = field(default_factory=AutonomyConfig)
    max_stuck: int | None = 8  # end the episode as a failure after this many subtasks in a row not completed


class AutonomousRunner:
    def __init__(self, session: CoachingSession, policy: HighLevelPolicy, config: RunnerConfig,
                 user: str = RUNNER_USER, detector: Detector = NO_DETECTOR):
        try:
            self.driver = AutonomyDriver(policy, config.task, config.autonomy, detector, config.metadata)
        except ValueError as e:
            raise SessionError(str(e)) from None
        self.session, self.policy, self.config, self.user = session, policy, config, user
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards the figures below, read by the page
        self.runs = self.successes = 0
        self.episode_id: int | None = None
        self.seed: int | None = None
        self.decision: dict[str, Any] | None = None  # the latest: subtask, confidence, runners-up
        self.last_result: str | None = None
        self.error: str | None = None
        self.taken_over = False
        self._thread = threading.Thread(target=self._run, name="autonomous-runner", daemon=True)

    # -- what the page calls --------------------------------------------------------------
    def start(self) -> "AutonomousRunner":
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout_s: float | None = None) -> bool:
        """True once the runner has finished."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self, user: str) -> None:
        """Stop deciding at once and end the running episode as aborted (the robot holds)."""
        self._halt()
        if self._own_episode() is not None:
            self.session.end_episode("aborted", user, notes="stopped during the autonomous run")
            self._finish("stopped")

    def take_over(self, user: str) -> int:
        """Stop deciding and hand the same episode to a person; returns its id."""
        self._halt()
        episode = self._own_episode()
        if episode is None:
            raise SessionError("The policy is not running an episode to take over.")
        self.session.take_over(user)
        with self._lock:
            self.taken_over, self.last_result = True, f"episode {episode} taken over"
        return episode

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"running": self.running, "runs": self.runs, "successes": self.successes,
                    "episode_id": self.episode_id, "seed": self.seed, "decision": self.decision,
                    "view": dict(getattr(self.driver.policy, "view", None) or {}),
                    "last_result": self.last_result, "error": self.error, "taken_over": self.taken_over}

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        k = 0
        try:
            while not self._stop.is_set() and (self.config.episodes is None or k < self.config.episodes):
                if not self._episode(self.config.first_seed + k):
                    return  # stopped or taken over: the episode is not ours to end
                k += 1
        except Exception as e:  # a refused reset, a policy that failed: say so, keep nothing running
            with self._lock:
                self.error = str(e) if isinstance(e, SessionError) else f"The policy failed: {type(e).__name__}: {e}"
            if self._own_episode() is not None:
                try:
                    self.session.end_episode("aborted", self.user, notes=self.error)
                except SessionError:
                    pass

    def _episode(self, seed: int) -> bool:
        """Run one episode; False if it was stopped or taken over before it ended."""
        c = self.config
        settings = EpisodeSettings(task=c.task, task_family=c.task_family, seed=seed, control_mode=c.control_mode)
        self.driver.reset()
        episode_id = self.session.start_episode(settings, self.user, mode="autonomous",
                                                policy_checkpoint_id=self.policy.checkpoint_id)
        with self._lock:
            self.episode_id, self.seed, self.decision = episode_id, seed, None
        period = 1.0 / c.autonomy.decide_hz
        while not self._stop.is_set():
            status = self.session.status()
            if status["episode_id"] != episode_id or status["driver"] != "policy":
                return False  # taken over or ended from another tab
            obs = self.session.latest_observation()
            command = self.driver.next(obs, status) if obs is not None else None
            self._show(self.driver.decision, status["subtask"])
            stuck = stuck_in_a_row(status["segments"])
            if command is not None and command.kind == "subtask" and c.max_stuck and stuck >= c.max_stuck:
                self.session.end_episode("failure", self.user, closes_as="failure",
                                         notes=f"stopped after {stuck} subtasks in a row the robot did not complete")
                self._finish(f"failure, stopped after {stuck} subtasks in a row not completed", count=True)
                return True
            if command is not None:
                try:
                    self.session.apply(command, self.user)
                except SessionError:
                    if self._own_episode() is None:
                        return False  # a person took over or ended it between the decision and the command
                    raise
                if command.kind == "end":
                    self._finish(command.outcome, count=True)
                    return True
            self._stop.wait(period)
        return False

    # -- helpers ----------------------------------------------------------------------------
    def _show(self, decision: Any, active: str | None) -> None:
        if decision is None:
            return
        with self._lock:
            self.decision = {"subtask": decision.subtask, "confidence": round(decision.confidence, 3),
                             "alternatives": [(t, round(p, 3)) for t, p in decision.alternatives[:3]]}
        if decision.subtask == active:
            self.session.note_confidence(decision.confidence)

    def _halt(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)  # a decision in flight finishes first

    def _own_episode(self) -> int | None:
        """The running episode if it is this runner's and the policy still drives it."""
        status = self.session.status()
        ok = status["episode_id"] is not None and status["episode_id"] == self.episode_id \
            and status["driver"] == "policy"
        return status["episode_id"] if ok else None

    def _finish(self, outcome: str, count: bool = False) -> None:
        with self._lock:
            if count:
                self.runs += 1
                self.successes += outcome == "success"
            self.last_result = f"episode {self.episode_id} (seed {self.seed}): {outcome}"


def stuck_in_a_row(segments: list[dict[str, Any]]) -> int:
    """How many of the latest ended segments in a row the robot did not complete (`coaching/activity.py`'s
    outcomes: anything but completed or success)."""
    n = 0
    for seg in reversed([s for s in segments if s["end_s"] is not None]):
        if seg["outcome"] in ("completed", "success"):
            break
        n += 1
    return n
