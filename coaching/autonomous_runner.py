"""The autonomous runner: a high-level policy drives a `CoachingSession`, one episode after another.

It owns one thread. Every `1 / decide_hz` seconds it reads the session's latest observation, asks
the policy (`coaching.high_level.HighLevelPolicy`) for the next subtask, switches with the same
hysteresis as `coachlab play` (`coaching.high_level.Hysteresis`; a subtask the VLA refuses is
replaced by the policy's next choice at once, and so is one still active after `subtask_timeout_s`,
both kept out of the choices as `coaching.high_level.Exclusions` says; `done` must be
`done_confidence` sure) and sends the winner through the
session as a `policy` subtask, so the control loop, the recorder and the live view are the
coaching ones. An episode ends when the policy says `done` (a success if the robot reports the
task done in `Observation.task_progress`, a failure if it reports otherwise, the policy's word if
it cannot tell), at the time limit, or on `stop()`. `take_over()` steps the runner aside and the
same episode goes on as coaching (`mixed`, the person's subtasks logged as corrections). It never
looks at which robot it drives. No Gradio here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from coaching.session import CoachingSession, EpisodeSettings, SessionError
from coaching.high_level import (DONE_CONFIDENCE, EXCLUSION_S, STILL_S, SUBTASK_TIMEOUT_S, Exclusions, HighLevelPolicy,
                                Hysteresis, StuckWatch, without_refused)

RUNNER_USER = "autonomous"


@dataclass
class RunnerConfig:
    scene: str  # what the robot resets to (for the sim, a task family)
    task: str  # the task text the policy and the VLA are given
    first_seed: int = 0  # run k uses first_seed + k: a new scene every run
    episodes: int | None = 1  # None: run until stopped (a demo loop with resets)
    decide_hz: float = 1.0
    hysteresis: int = 2
    max_episode_s: float = 300.0
    subtask_timeout_s: float = SUBTASK_TIMEOUT_S  # one subtask active this long counts as stuck
    still_s: float = STILL_S  # the robot held still this long on an active subtask: dropped as stuck
    exclusion_s: float = EXCLUSION_S  # how long a subtask refused at once, or stuck on, stays out of the choices
    done_confidence: float = DONE_CONFIDENCE  # `done` below this is passed over for the runner-up
    control_mode: str = "ee"
    metadata: dict[str, Any] | None = None  # the prompt's metadata, None to leave it out


def verdict(progress: dict[str, Any] | None) -> tuple[str, str | None]:
    """The outcome of an episode the policy called done, from what the robot reports, and a note."""
    if progress is None or "success" not in progress:
        return "success", "the policy said done; this robot cannot tell whether the task succeeded"
    return ("success", None) if progress["success"] else ("failure", "the policy said done too early")


class AutonomousRunner:
    def __init__(self, session: CoachingSession, policy: HighLevelPolicy, config: RunnerConfig,
                 user: str = RUNNER_USER):
        if not 0.1 <= config.decide_hz <= 10:
            raise SessionError("Decide between 0.1 and 10 times a second.")
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
        episode = self._own_episode()
        if episode is not None:
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
        settings = EpisodeSettings(task=c.task, scene=c.scene, seed=seed, control_mode=c.control_mode)
        episode_id = self.session.start_episode(settings, self.user, mode="autonomous",
                                                policy_checkpoint_id=self.policy.checkpoint_id)
        with self._lock:
            self.episode_id, self.seed, self.decision = episode_id, seed, None
        self.policy.reset()
        ended = self._drive(episode_id)
        if ended is None:
            return False
        outcome, note = ended
        try:
            self.session.end_episode(outcome, self.user, notes=note)
        except SessionError:
            if self._own_episode() is not None:
                raise
            return False  # someone ended or took it over in the same instant
        self._finish(outcome, count=True)
        return True

    def _drive(self, episode_id: int) -> tuple[str, str | None] | None:
        """Decide and send subtasks until done or the time limit; None if stopped or taken over."""
        c, clock = self.config, self.session.clock
        hysteresis, active = Hysteresis(c.hysteresis), None
        exclusions = Exclusions(c.exclusion_s)  # what the VLA refused or got stuck on
        stuck_watch = StuckWatch(c.subtask_timeout_s, c.still_s)
        never_ran: set[int] = set()  # ids of segments refused at once
        sent_at = 0.0
        start = next_decision = clock.now()
        while not self._stop.is_set():
            status = self.session.status()
            if status["episode_id"] != episode_id or status["mode"] != "autonomous":
                return None  # taken over or ended from another tab
            if clock.now() - start > c.max_episode_s:
                return "failure", f"time limit of {c.max_episode_s:.0f} s reached"
            obs = self.session.latest_observation()
            if obs is not None:
                now = clock.now()
                running = active is not None and status["subtask"] == active
                stuck = stuck_watch.stuck(obs.state, now, sent_at)
                if running and status.get("vla_note") and active not in exclusions.current(now):
                    at_once = now - sent_at < 1.0  # the VLA cannot do it now: take the policy's next choice
                    exclusions.refused(active, now, ran=not at_once)
                    if at_once and status["segments"]:
                        never_ran.add(status["segments"][-1]["id"])  # refused at once: not history
                elif running and active not in exclusions.current(now) and stuck:
                    exclusions.stuck(active, now)  # let the policy's next choice run
                elif running and not status.get("vla_note") and now - sent_at > 1.0:
                    exclusions.running()
                history = [s["text"] for s in status["segments"] if s["id"] not in never_ran]
                refused = exclusions.current(now)
                decision = without_refused(self.policy.decide(obs.images, obs.state, c.task, history, c.metadata),
                                           refused, self.policy, c.done_confidence)
                with self._lock:
                    self.decision = {"subtask": decision.subtask, "confidence": round(decision.confidence, 3),
                                     "alternatives": [(t, round(p, 3)) for t, p in decision.alternatives[:3]]}
                if decision.subtask == active:
                    self.session.note_confidence(decision.confidence)
                if (active in refused and not decision.done) or hysteresis.switch(decision, active):
                    if decision.done:
                        return verdict(obs.task_progress)
                    try:
                        self.session.send_subtask(decision.subtask, self.user, source="policy",
                                                  confidence=decision.confidence)
                    except SessionError:
                        if self._own_episode() is None:
                            return None  # a person took over between the decision and the send
                        raise
                    active, sent_at = decision.subtask, clock.now()
            next_decision += 1.0 / c.decide_hz
            self._stop.wait(max(0.0, next_decision - clock.now()))
        return None

    # -- helpers ----------------------------------------------------------------------------
    def _halt(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)  # a decision in flight finishes first

    def _own_episode(self) -> int | None:
        """The running episode if it is this runner's and still autonomous."""
        status = self.session.status()
        ok = status["episode_id"] is not None and status["episode_id"] == self.episode_id \
            and status["mode"] == "autonomous"
        return status["episode_id"] if ok else None

    def _finish(self, outcome: str, count: bool = False) -> None:
        with self._lock:
            if count:
                self.runs += 1
                self.successes += outcome == "success"
            self.last_result = f"episode {self.episode_id} (seed {self.seed}): {outcome}"
