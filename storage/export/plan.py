"""What one export holds: the episodes a filter selects, checked against the dataset's single robot
shape, control mode and frame rate, and the output folder it may write.

A LeRobotDataset has one `action` feature of one width and meaning and one fps, so:
- control mode: `--control-mode`, else the mode most of the selected episodes were coached in (`ee`
  on a tie); episodes coached in another mode (or with none recorded) are left out and listed;
- robot: the first kept episode fixes cameras, image size, state and action names; an episode of
  another robot shape is left out and listed;
- fps: `--fps`, else the first kept episode's control rate (rounded; LeRobot stores fps as an int).
Episodes still being recorded (`running`) are left out unless asked for by `--status running`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.errors import StorageError

CONTROL_MODES = ("ee", "joint")
LANGUAGE_FORMS = ("columns", "index")


class ExportError(StorageError):
    """An export that cannot be made as asked; the message says what to do in one sentence."""


@dataclass
class ExportConfig:
    """How to export. `fps` None: the recording rate. `control_mode` None: the majority rule above.
    `language`: `columns` (LeRobot's `language_persistent`/`language_events` rows, what current
    LeRobot reads) or `index` (`subtask_index` with meta/subtasks.parquet, what LeRobot 0.4 reads).
    Video: `vcodec` (an FFmpeg encoder PyAV has), `crf` quality (lower is better), `gop` frames
    between keyframes (2, as LeRobot uses, keeps random access cheap)."""

    fps: int | None = None
    control_mode: str | None = None
    language: str = "columns"
    vcodec: str = "libx264"
    crf: int = 23
    gop: int = 2
    repo_id: str = "coachlab/export"

    def checked(self) -> "ExportConfig":
        if self.fps is not None and not 1 <= int(self.fps) <= 1000:
            raise ExportError(f"--fps must be a whole number from 1 to 1000, not {self.fps}.")
        if self.control_mode is not None and self.control_mode not in CONTROL_MODES:
            raise ExportError(f"Unknown control mode '{self.control_mode}': use one of {', '.join(CONTROL_MODES)}.")
        if self.language not in LANGUAGE_FORMS:
            raise ExportError(f"Unknown language form '{self.language}': use one of {', '.join(LANGUAGE_FORMS)}.")
        return self


@dataclass
class RobotShape:
    """What every episode of one dataset shares."""

    name: str
    cameras: list[str]
    image_size: tuple[int, int] | None  # (height, width)
    state_names: list[str]
    action_names: list[str]

    @classmethod
    def of(cls, robot: dict[str, Any], mode: str) -> "RobotShape":
        size = robot.get("image_size")
        return cls(name=str(robot.get("name") or "robot"), cameras=list(robot.get("cameras") or []),
                   image_size=None if size is None else (int(size[0]), int(size[1])),
                   state_names=list(robot.get("state_names") or []),
                   action_names=list((robot.get("action_names") or {}).get(mode) or []))


@dataclass
class Plan:
    """The episodes to export (oldest first), their shape, mode and rate, and who was left out why."""

    episode_ids: list[int]
    shape: RobotShape
    control_mode: str
    control_mode_rule: str
    fps: int
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"episode": id, "why": text}


def check_out_dir(out: Path) -> None:
    """ExportError unless `out` is new or an empty folder whose parent we can write to."""
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out} is a file: give --out a new or empty folder.")
        if any(out.iterdir()):
            raise ExportError(f"{out} already exists and is not empty: give --out a new or empty folder "
                              "(an export never overwrites one).")
    parent = out.parent if out.parent != Path("") else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:  # the nearest folder that exists decides
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK | os.X_OK)):
        raise ExportError(f"Cannot write to {out} (permission denied): choose a folder you can write to with --out.")


def make_plan(summaries: list[Any], robots: dict[int, dict[str, Any]], config: ExportConfig,
              asked_status: str | None) -> Plan:
    """The plan for `summaries` (EpisodeSummary, any order) with each episode's robot description.

    Raises ExportError when nothing is left to export, saying why the selected ones were left out.
    """
    skipped: list[dict[str, Any]] = []
    candidates = []
    for s in sorted(summaries, key=lambda s: (s.started_at, s.id)):
        if s.status == "running" and asked_status != "running":
            skipped.append({"episode": s.id, "why": "still being recorded (status running)"})
        elif s.num_steps == 0:
            skipped.append({"episode": s.id, "why": "no steps recorded"})
        else:
            candidates.append(s)
    if config.control_mode is not None:
        mode, rule = config.control_mode, "asked for with --control-mode"
    else:
        counts = Counter(s.control_mode for s in candidates if s.control_mode in CONTROL_MODES)
        mode = max(CONTROL_MODES, key=lambda m: (counts.get(m, 0), m == "ee"))
        rule = f"the mode most selected episodes were coached in ({dict(counts) or 'none recorded'}; ee on a tie)"
    kept: list[int] = []
    shape: RobotShape | None = None
    for s in candidates:
        if s.control_mode != mode:
            skipped.append({"episode": s.id, "why": f"coached in control mode {s.control_mode or 'unknown'}, "
                                                    f"this dataset holds {mode}"})
            continue
        this = RobotShape.of(robots[s.id], mode)
        if not this.action_names or not this.state_names:
            skipped.append({"episode": s.id, "why": f"its robot description names no state or no {mode} action"})
            continue
        if shape is None:
            shape = this
        elif this != shape:
            skipped.append({"episode": s.id, "why": f"recorded on another robot shape ({this.name}, cameras "
                                                    f"{this.cameras}, {len(this.state_names)}-d state)"})
            continue
        kept.append(s.id)
    if not kept or shape is None:
        why = "; ".join(f"episode {k['episode']} {k['why']}" for k in skipped[:3])
        raise ExportError(f"None of the {len(summaries)} selected episodes can be exported ({why}): "
                          "check the filters and --control-mode.")
    fps = config.fps or max(1, round(float(robots[kept[0]].get("control_hz") or 10.0)))
    return Plan(episode_ids=kept, shape=shape, control_mode=mode, control_mode_rule=rule, fps=int(fps),
                skipped=skipped)
