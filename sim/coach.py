"""The scripted coach: plays the human coach for tests, benchmarks and demo data.

It watches the sim's success checks, types the next subtask in varied phrasing, waits for it to
finish, stall or time out, corrects after failures and ends the episode with an outcome. The
`expert` profile follows a good order without mistakes; `sloppy` takes a random order, now and
then sends an item to the wrong place (then corrects it) and repeats itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim import tasks
from sim.objects import KINDS, PLACES
from sim.tasks import Step, TaskFamily

PROFILES = ("expert", "sloppy")

_TEMPLATES = {
    "pick": ("pick up the {obj}", "grab the {obj}", "take the {obj}", "lift the {obj}", "get the {obj}"),
    "place": ("put it in the {place}", "drop it into the {place}", "place it in the {place}",
              "put that in the {place}", "now put it in the {place}"),
    "open": ("open the drawer", "pull the drawer open", "open the drawer please"),
    "close": ("close the drawer", "shut the drawer", "push the drawer closed"),
    "home": ("go home", "return to the home position"),
}
_PAD_TEMPLATES = ("put it on the {place}", "place it on the {place}", "set it down on the {place}")
_CORRECTION_PREFIXES = ("try again: ", "that didn't work, ", "again, ", "no, ")


@dataclass(frozen=True)
class CoachCommand:
    """What the coach does now: send a subtask, or end the episode."""

    kind: str  # "subtask" | "end"
    text: str = ""
    source: str = "coach"  # coach | correction
    mistake: bool = False
    step: Step | None = None
    outcome: str | None = None  # for "end": success | failure


@dataclass
class CoachConfig:
    profile: str = "expert"
    subtask_timeout_s: float = 25.0
    stall_s: float = 3.0  # the robot sat still this long on an unfinished subtask: it failed
    max_episode_s: float = 900.0
    max_failures: int = 12
    mistake_rate: float = 0.2  # sloppy only
    redundant_rate: float = 0.1  # sloppy only


class ScriptedCoach:
    def __init__(self, family: TaskFamily, config: CoachConfig, seed: int):
        if config.profile not in PROFILES:
            raise ValueError(f"Unknown coach profile {config.profile!r}; use one of: {', '.join(PROFILES)}.")
        self.family, self.config = family, config
        self.rng = np.random.default_rng([seed, 7])
        self.current: CoachCommand | None = None
        self.issued_at = 0.0
        self.failures = 0
        self._fixing: set[str] = set()  # items a mistake sent astray: their next steps are corrections
        self._last_pos: np.ndarray | None = None
        self._repeated = False
        self._last_move_t = 0.0
        self.outcomes: list[tuple[CoachCommand, str]] = []

    def decide(self, env: dict, now: float) -> CoachCommand | None:
        """Called every control step; returns a command when the coach acts, else None."""
        self._track_motion(env, now)
        cur = self.current
        if cur is not None and cur.step is not None:
            if tasks.step_done(cur.step, env):
                self._close("success")
            elif self._failed(now):
                self.failures += 1
                self._close("failure")
                return self._next(env, now, after_failure=True)
            elif self._repeat_due(now):
                return self._repeat()
            else:
                return None
        if self.family.success(env):
            return CoachCommand("end", outcome="success")
        return self._next(env, now)

    def _next(self, env: dict, now: float, after_failure: bool = False) -> CoachCommand:
        if now > self.config.max_episode_s or self.failures > self.config.max_failures:
            return CoachCommand("end", outcome="failure")
        steps = self.family.remaining_steps(env)
        if not steps:  # nothing planned yet not a success: something is off the table
            return CoachCommand("end", outcome="failure")
        step, mistake = self._choose(steps, env)
        source = "correction" if after_failure or step.object in self._fixing else "coach"
        if mistake:
            self._fixing.add(step.object)
        elif step.skill == "place" and step.object in self._fixing:
            self._fixing.discard(step.object)
        text = self.phrase(step)
        if after_failure:
            text = str(self.rng.choice(_CORRECTION_PREFIXES)) + text
        self.current = CoachCommand("subtask", text, source, mistake, step)
        self._repeated = False
        self.issued_at = now
        self._last_move_t = now
        return self.current

    def _choose(self, steps: list[Step], env: dict) -> tuple[Step, bool]:
        step = steps[0]
        if self.config.profile != "sloppy":
            return step, False
        picks = [s for s in steps if s.skill == "pick"]
        if step.skill == "pick" and len(picks) > 1:
            step = picks[int(self.rng.integers(len(picks)))]  # any order will do for a sloppy coach
        if step.skill == "place" and step.object not in self._fixing and self.rng.random() < self.config.mistake_rate:
            wrong = [p for p in env["places"] if p != step.target and p != "drawer"]
            if wrong:
                return Step("place", step.object, str(self.rng.choice(wrong))), True
        return step, False

    def phrase(self, step: Step) -> str:
        """Say a step the way a person would, varying verbs and nouns."""
        if step.skill == "place" and step.target.endswith("_pad"):
            template = str(self.rng.choice(_PAD_TEMPLATES))
        else:
            template = str(self.rng.choice(_TEMPLATES[step.skill]))
        obj = place = ""
        if step.object and step.object != "drawer":
            colour, kind = step.object.split("_", 1)
            obj = f"{colour} {self.rng.choice(KINDS[kind].nouns[:2])}"
        if step.target:
            place = str(self.rng.choice(PLACES[step.target].nouns[:3]))
        return template.format(obj=obj, place=place)

    def _repeat_due(self, now: float) -> bool:
        """A sloppy coach sometimes says the same thing again while the robot is still on it."""
        if self.config.profile != "sloppy" or self._repeated or now - self.issued_at < 1.0:
            return False
        self._repeated = True
        return bool(self.rng.random() < self.config.redundant_rate)

    def _repeat(self) -> CoachCommand:
        self._close("redundant")
        cmd = self.outcomes[-1][0]
        self.current = CoachCommand("subtask", self.phrase(cmd.step), cmd.source, cmd.mistake, cmd.step)
        self._repeated = True
        return self.current

    def _track_motion(self, env: dict, now: float) -> None:
        pos = np.asarray(env["gripper"]["pos"])
        if self._last_pos is None or np.linalg.norm(pos - self._last_pos) > 0.004:
            self._last_pos, self._last_move_t = pos, now

    def _failed(self, now: float) -> bool:
        elapsed = now - self.issued_at
        stalled = elapsed > self.config.stall_s and now - self._last_move_t > self.config.stall_s
        return stalled or elapsed > self.config.subtask_timeout_s

    def _close(self, outcome: str) -> None:
        self.outcomes.append((self.current, outcome))
        self.current = None
