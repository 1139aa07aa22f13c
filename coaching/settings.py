"""What a coach chooses when starting an episode, checked once: the task, the task family and seed
the robot resets to, and the episode's metadata tags (speed, quality, control mode, notes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_SUBTASK_CHARS = 500
MAX_TASK_CHARS = 2000
SPEEDS = ("slow", "normal", "fast")


class SessionError(Exception):
    """Something a person asked for that cannot be done; the message says what to do instead."""


@dataclass
class EpisodeSettings:
    """What the coach chooses when starting an episode; the tags can be changed when it ends."""

    task: str  # the task text given to the VLA with every subtask
    task_family: str  # what the robot resets to: a sim task family, or a real robot's own name for it
    seed: int = 0
    speed: str = "normal"
    quality: int | None = None  # 1-5
    control_mode: str = "ee"
    notes: str = ""
    mistake: bool | None = None  # whether the coach made mistakes on purpose (the scripted sloppy coach)
    coach: str | None = None  # who coached, when not a person (e.g. "scripted-expert")

    def metadata(self) -> dict[str, Any]:
        """The episode's metadata tags, as stored and as sent in the VLA prompt (unset tags left out)."""
        tags = {"speed": self.speed, "quality": self.quality, "control_mode": self.control_mode, "notes": self.notes,
                "mistake": self.mistake, "coach": self.coach}
        return {k: v for k, v in tags.items() if v is not None}

    def checked(self, control_modes: tuple[str, ...]) -> "EpisodeSettings":
        """These settings with whitespace tidied; SessionError with one sentence if one cannot work."""
        task = " ".join(str(self.task or "").split())
        if not task:
            raise SessionError("Describe the task first, e.g. 'bus the table'.")
        if len(task) > MAX_TASK_CHARS:
            raise SessionError(f"Keep the task description under {MAX_TASK_CHARS} characters.")
        if self.speed not in SPEEDS:
            raise SessionError(f"Speed is one of {', '.join(SPEEDS)}.")
        if self.quality is not None and not 1 <= int(self.quality) <= 5:
            raise SessionError("Quality is a whole number from 1 to 5.")
        if self.control_mode not in control_modes:
            raise SessionError(f"This robot takes {', '.join(control_modes)} control, not {self.control_mode}.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SessionError("The seed is a whole number, zero or more.")
        return EpisodeSettings(task, self.task_family, self.seed, self.speed, self.quality, self.control_mode,
                               self.notes or "", self.mistake, self.coach)


def check_subtask(text: str) -> str:
    """The subtask with whitespace tidied; SessionError if it is empty or too long."""
    text = " ".join(str(text or "").split())
    if not text:
        raise SessionError("Type a subtask first, e.g. 'pick up the red cup'.")
    if len(text) > MAX_SUBTASK_CHARS:
        raise SessionError(f"That subtask is {len(text)} characters; keep it under {MAX_SUBTASK_CHARS}: "
                           "one short step at a time.")
    return text
