"""The VLA prompt: the one place its fields are put together (pi0.7's prompt, DESIGN.md's seams).

`task` and `subtask` are language; `control_mode` is `ee` or `joint`; `metadata` is the episode's
tags (speed, quality 1-5, mistake); `subgoal_images` are optional multi-view goal images
(`{camera: HxWx3 uint8}`). Two bookkeeping fields let a stateful VLA tell tries apart: `episode`
(the episode's id in this session) and `segment` (the subtask's number within the episode, from
0); a new segment is a new try even when its text repeats. A request whose answer is not
executed on the robot (a subgoal preview run in a copy of the sim) sets `probe`, so a VLA that
keeps memory between requests may leave it out.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def vla_prompt(task: str, subtask: str, control_mode: str, metadata: dict[str, Any] | None = None,
               episode: int | str | None = None, segment: int | None = None,
               subgoal_images: dict[str, np.ndarray] | None = None, probe: bool = False) -> dict[str, Any]:
    """The prompt dict sent with every `infer(observation, prompt)` request (docs/protocol.md)."""
    prompt: dict[str, Any] = {"task": task, "subtask": subtask, "control_mode": control_mode,
                              "episode": episode, "segment": segment}
    if metadata:
        prompt["metadata"] = metadata
    if subgoal_images:
        prompt["subgoal_images"] = subgoal_images
    if probe:
        prompt["probe"] = True
    return prompt
