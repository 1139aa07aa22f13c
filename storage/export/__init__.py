"""Export of recorded episodes as a LeRobotDataset (codebase v3.0), so a lab can fine-tune its VLA on
coached data with the subtask language (docs/export.md).

`plan.py` chooses the episodes and the one control mode and frame rate of a dataset, `timeline.py`
resamples an episode's steps to that rate (held steps filled and masked, subtasks per frame),
`language.py` writes the subtask language as LeRobot reads it, `video.py` encodes one mp4 stream per
camera, `layout.py` knows LeRobot's files (info.json, tasks, episodes, data, stats) and `lerobot.py`
runs it all with a progress bar. Nothing here imports LeRobot; it writes the format with pyarrow
and PyAV, and the test suite checks the result with LeRobot's own loader.
"""

from __future__ import annotations

from storage.export.plan import ExportConfig, ExportError

__all__ = ["ExportConfig", "ExportError", "export_lerobot"]


def export_lerobot(*args, **kwargs):  # noqa: D103 - documented where it lives
    from storage.export.lerobot import export_lerobot as run

    return run(*args, **kwargs)


export_lerobot.__doc__ = "See storage.export.lerobot.export_lerobot."
