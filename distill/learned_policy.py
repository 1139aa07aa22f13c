"""The distilled high-level policy behind the `HighLevelPolicy` seam (`coaching.high_level`), and
its checkpoint format.

`LearnedHighLevelPolicy.load(DIR)` reads a checkpoint written by `coachlab distill` (see
`distill/checkpoint.py` for the directory layout) and answers `decide`: it turns one observation
(camera images, proprio state), the task, the subtasks issued so far and the episode metadata into
the network's inputs (`distill/model.py`, `distill/text_table.py`), scores its candidates
(`distill/candidates.py`) and returns the most probable subtask, its phrasings pooled.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from coaching.detector import Detection
from coaching.high_level import Decision, HighLevelPolicy
from coaching.robot import Observation
from distill.candidates import CandidateBank
from distill.checkpoint import Checkpoint, load_model
from distill.dataset import DistillError, history_items, metadata_prompt, normalize_subtask, resize_image
from distill.model import ModelConfig, SubtaskScorer
from distill.text_table import TextTable, history_tensor

FORMAT = "coachlab-high-level-v1"
COMMAND = "coachlab distill"  # the command that writes these checkpoints, named in every load error


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """The high-level policy's network (eval mode) with its config and training record, or a
    one-sentence DistillError for a missing, corrupt or mismatched checkpoint directory."""
    return load_model(directory, FORMAT, lambda raw: SubtaskScorer(ModelConfig.from_dict(raw)), COMMAND)


class LearnedHighLevelPolicy(HighLevelPolicy):
    """The distilled high-level policy behind the `HighLevelPolicy` seam.

    `history` is every subtask issued so far, the active one last (what the driver passes);
    `decide` returns the best candidate, its probability and the runners-up. It sees the
    observation's cameras and proprio state; the network takes no detections, so `decide` ignores them.
    """

    def __init__(self, model: SubtaskScorer, table: TextTable | None = None, extra_candidates: Sequence[str] = (),
                 checkpoint_id: int | None = None, tasks: Sequence[str] = ()):
        self.model = model.eval()
        self.cfg = model.cfg
        self.table = table or TextTable()
        self.checkpoint_id = checkpoint_id
        self.tasks = list(tasks)  # the task texts it learned from (for a clear error on others)
        self.set_candidates(list(self.cfg.bank) + list(extra_candidates))
        self._episode_start = self.candidates

    @classmethod
    def load(cls, directory: str, extra_candidates: Sequence[str] = ()) -> LearnedHighLevelPolicy:
        """The policy in a `coachlab distill` checkpoint directory; a one-sentence DistillError when it is unusable."""
        ckpt = load_checkpoint(directory)
        return cls(ckpt.model, extra_candidates=extra_candidates, checkpoint_id=ckpt.policy_id,
                   tasks=ckpt.training.get("tasks", []))

    def reset(self) -> None:
        """A new episode: drop the candidates the last one added (subtasks a person typed before handing
        back), which the model was never trained on; kept, 262 such strings from one round of
        `play --intervene scripted` took a policy from 2/2 to 0/2 on sort_blocks."""
        if self.bank.texts != self._episode_start:
            self.set_candidates(self._episode_start)

    def check_task(self, task: str) -> None:
        """A one-sentence DistillError when the policy never saw this task text (nothing when unknown)."""
        if self.tasks and task not in self.tasks:
            raise DistillError(f"This policy was distilled from episodes of {'; '.join(repr(t) for t in self.tasks)} "
                               f"and never saw the task {task!r}: choose one of those or distill on its episodes.")

    # ------------------------------------------------------------------------- candidates

    @property
    def candidates(self) -> list[str]:
        """The strings it chooses from, `done` among them."""
        return list(self.bank.texts)

    def set_candidates(self, texts: Sequence[str]) -> None:
        """The strings it chooses from: normalized, deduplicated, `done` always among them."""
        self.bank = CandidateBank.build(texts, self.model, self.table)

    def add_candidates(self, texts: Sequence[str]) -> None:
        """More strings to choose from until the next `reset` (`extra_candidates` at load time stay)."""
        self.set_candidates(self.bank.texts + list(texts))

    def same_subtask(self, a: str, b: str) -> bool:
        """Whether the policy takes two strings for one subtask (see `distill.candidates.same_subtask_groups`)."""
        return self.bank.same_subtask(a, b)

    # ------------------------------------------------------------------------- deciding

    def scores(self, images: dict[str, np.ndarray], state: np.ndarray, task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> np.ndarray:
        """Probabilities (C,) over `candidates` for one observation: `images` camera -> (H, W, 3) uint8
        of any size (resized inside), `state` the proprio vector (D,). A camera the policy needs and
        `images` lacks is a one-sentence DistillError. An active subtask (the last of `history`) that
        is not a candidate becomes one until the next `reset`."""
        cfg = self.cfg
        missing = [c for c in cfg.cameras if c not in images]
        if missing:
            raise DistillError(f"The policy needs the camera(s) {', '.join(missing)} but the robot gave "
                               f"{', '.join(sorted(images)) or 'none'}: run it on the robot it was trained on.")
        active = history_items(history, 1)
        if active and active[0] not in self.bank:  # typed by a person who handed back: keeping it must be a choice
            self.add_candidates(active)
        imgs = {c: torch.from_numpy(resize_image(images[c], cfg.image_size)).permute(2, 0, 1).unsqueeze(0)
                for c in cfg.cameras}
        st = torch.from_numpy(np.nan_to_num(np.asarray(state, dtype=np.float32))).reshape(1, -1)
        hist, mask = history_tensor([history_items(history, cfg.history)], cfg.history, self.table)
        text = self.table.embed([task, metadata_prompt(metadata)])
        with torch.no_grad():
            q = self.model.query(imgs, st, text[:1], hist, mask, text[1:])
            probs = torch.exp(self.model.scores(q, hist, mask, self.bank.vectors, self.bank.text_emb))[0]
        return probs.numpy()

    def decide(self, observation: Observation, detections: list[Detection], task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> Decision:
        """The most probable *subtask* for `observation` (its `images` and `state`, see `scores`), its
        phrasings pooled (see `same_subtask_groups`): a subtask said ten ways must not lose to a wrong
        one said one way. When it is the active one, the active phrasing is returned, so the driver
        keeps going instead of re-prompting a paraphrase. `detections` are not used."""
        probs = self.scores(observation.images, observation.state, task, history, metadata)
        bank = self.bank  # after `scores`, which may have added the active subtask
        pooled = bank.pooled(probs)
        order = np.argsort(-pooled)
        active = normalize_subtask(history[-1]) if history else None

        def say(group: int) -> tuple[str, float]:
            return bank.phrasing(group, probs, active), float(pooled[group])

        subtask, confidence = say(int(order[0]))
        return Decision(subtask=subtask, confidence=confidence, alternatives=[say(int(g)) for g in order[1:]])
