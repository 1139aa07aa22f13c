"""The distilled high-level policy behind the `HighLevelPolicy` seam (`coaching.high_level`), and
its checkpoint format.

`LearnedHighLevelPolicy.load(DIR)` reads a checkpoint written by `coachlab distill` (directory
layout in `distill/checkpoint.py`). Each `decide` takes the detections into the episode memory
(`distill/memory.py`), builds the network's inputs (`distill/features.py`), and turns its two
heads into one ranking: P(go on with the active subtask) = 1 - f and P(c) = f * P_next(c) for
every candidate c, f the finished head's probability; c the active subtask itself is a retry (its
attempt ended without doing it: try it afresh). A candidate is a subtask group said with its most logged
template, filled with a tracked item's label where the group names an item ("grab the {obj}" ->
"grab the purple bottle"), so it can name items no coached episode named.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from coaching.detector import Detection
from coaching.high_level import DONE, Decision, HighLevelPolicy
from coaching.robot import Observation
from distill.checkpoint import Checkpoint, load_model
from distill.dataset import DistillError, normalize_subtask
from distill.features import MAX_TRACKS, Featurizer, Vocabulary
from distill.memory import issued
from distill.model import HighLevelNet, ModelConfig
from distill.phrasing import compose

FORMAT = "coachlab-high-level-v2"
COMMAND = "coachlab distill"  # the command that writes these checkpoints, named in every load error
TOP = 5  # choices kept for the page


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """The high-level policy's network (eval mode) with its config and training record, or a
    one-sentence DistillError for a missing, corrupt or mismatched checkpoint directory."""
    return load_model(directory, FORMAT, lambda raw: HighLevelNet(ModelConfig.from_dict(raw)), COMMAND)


class LearnedHighLevelPolicy(HighLevelPolicy):
    """The distilled policy: `decide` returns the best subtask, its probability and the runners-up;
    `view` is what it saw and thought at the last decision (for the Autonomous tab)."""

    def __init__(self, model: HighLevelNet, checkpoint_id: int | None = None, tasks: Sequence[str] = (),
                 detector: str | None = None):
        self.model = model.eval()
        self.cfg = model.cfg
        self.vocabulary = Vocabulary.from_dict(self.cfg.vocabulary)
        self.featurizer = Featurizer(self.vocabulary)
        self.checkpoint_id = checkpoint_id
        self.tasks = list(tasks)  # the task texts it learned from (for a clear error on others)
        self.detector = detector  # the identity of the detector it learned through
        self.memory = self.featurizer.memory()
        self.view: dict[str, Any] = {}
        self._slotted = [g for g, s in enumerate(self.vocabulary.groups.slotted) if s]
        self._done = [g for g, texts in enumerate(self.vocabulary.groups.groups) if texts == [DONE]]

    @classmethod
    def load(cls, directory: str) -> LearnedHighLevelPolicy:
        """The policy in a `coachlab distill` checkpoint directory; a one-sentence DistillError when it is unusable."""
        ckpt = load_checkpoint(directory)
        try:
            vocabulary = Vocabulary.from_dict(ckpt.model.cfg.vocabulary)
            if len(vocabulary.groups.groups) != ckpt.model.cfg.groups:
                raise ValueError("groups")
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DistillError(f"The checkpoint at {directory} has no usable vocabulary in its config.json: run "
                               f"`{COMMAND}` again.") from None
        return cls(ckpt.model, checkpoint_id=ckpt.policy_id, tasks=ckpt.training.get("tasks", []),
                   detector=ckpt.training.get("detector"))

    def reset(self) -> None:
        """A new episode: forget what was seen and done."""
        self.memory.reset()
        self.view = {}

    def check_task(self, task: str) -> None:
        """A one-sentence DistillError when the policy never saw this task text (nothing when unknown)."""
        if self.tasks and task not in self.tasks:
            raise DistillError(f"This policy was distilled from episodes of {'; '.join(repr(t) for t in self.tasks)} "
                               f"and never saw the task {task!r}: choose one of those or distill on its episodes.")

    def same_subtask(self, a: str, b: str) -> bool:
        """Two phrasings are one subtask when they fall in one subtask group and name the same item."""
        if a == b:
            return True
        if DONE in (a, b):
            return False
        ia, ib = self.memory.ground(normalize_subtask(a)), self.memory.ground(normalize_subtask(b))
        ga, gb = self.featurizer.group(ia.template), self.featurizer.group(ib.template)
        return ga is not None and ga == gb and ia.label == ib.label

    # ------------------------------------------------------------------------- deciding

    def decide(self, observation: Observation, detections: list[Detection], task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> Decision:
        """The subtask to run now (see the module docstring). `observation.state` is the proprio vector
        (D,) it was trained on, `observation.timestamp` the robot's clock in seconds; the images are
        seen through `detections`. When the active subtask wins, its own text is returned, so the
        driver keeps going instead of re-prompting a paraphrase."""
        state = np.nan_to_num(np.asarray(observation.state, dtype=np.float32).reshape(-1))
        if state.shape[0] != len(self.vocabulary.state_mean):
            raise DistillError(f"The policy takes a {len(self.vocabulary.state_mean)}-d proprio state but the robot "
                               f"gave {state.shape[0]}: run it on the robot it was trained on.")
        missing = [c for c in self.vocabulary.cameras if c not in observation.images]
        if missing:
            raise DistillError(f"The policy sees through the camera(s) {', '.join(missing)} but the robot gave "
                               f"{', '.join(sorted(observation.images)) or 'none'}: run it on the robot it was trained on.")
        sizes = {c: img.shape[:2] for c, img in observation.images.items()}
        hist = issued(history)
        self.memory.observe(float(observation.timestamp), state, detections, sizes, hist)
        n = len(hist)
        f = self.featurizer.features(self.memory, n, task, metadata)
        put_away = {l for l in f.track_labels if self.memory.put_away(l, n, self.featurizer.release_distance)}
        missed = [l for l in f.track_labels if self.memory.missed(l, n)]
        ranked, finished = self._rank(f, hist[-1] if hist else None, put_away, not missed)
        self.view = {"detections": [d.label for d in detections], **self.memory.summary(n),
                     "active": hist[-1] if hist else None, "finished": round(finished, 3), "missed": missed,
                     "choices": [(f"{t} (again)" if again else t, round(p, 3)) for t, p, again in ranked[:TOP]]}
        (best, p, again), rest = ranked[0], [(t, q) for t, q, again in ranked[1:] if not again]
        return Decision(best, p, rest[:2 * TOP], retry=again)

    def _rank(self, f, active: str | None, put_away: set[str] = frozenset(), may_end: bool = True
              ) -> tuple[list[tuple[str, float, bool]], float]:
        """Every candidate's (text, probability, whether it is the active subtask tried again), best
        first, and the finished head's probability. The active subtask is two candidates: going on
        (1 - f) and, when the next head picks it once finished, a fresh attempt (a retry). Items in
        `put_away` are named by no candidate: the network alone, trained on logs where a put-away item
        is never picked again, still gave such items up to 0.7 once its first choice was excluded, and
        each re-pick from the bin cost a pick, a place and the item's handled mark (bussing traces).
        Unless `may_end`, `done` is no candidate: an item whose grasp missed is in view (sort_blocks
        traces: a block missed, its place run empty-handed, then `done` at 0.86-1.0 with it on the table)."""
        cfg, groups = self.cfg, self.vocabulary.groups
        k = len(f.track_labels)
        tracks = np.zeros((1, MAX_TRACKS, cfg.track_dim), np.float32)
        labels = np.zeros((1, MAX_TRACKS, cfg.text_dim), np.float32)
        mask = np.zeros((1, MAX_TRACKS), bool)
        if k:
            tracks[0, :k], labels[0, :k], mask[0, :k] = f.tracks, self.featurizer.embed(f.track_labels), True
        with torch.no_grad():
            next_logits, finished = self.model(
                torch.from_numpy(f.context[None]), torch.from_numpy(f.held[None]), torch.from_numpy(f.groups[None]),
                torch.from_numpy(tracks), torch.from_numpy(labels), torch.from_numpy(mask),
                torch.from_numpy(f.active[None]))
        for s, label in enumerate(f.track_labels):
            if label in put_away:  # every slotted group filled with this item
                slots = cfg.groups + np.arange(len(self._slotted)) * MAX_TRACKS + s
                next_logits[0, torch.from_numpy(slots)] = -torch.inf
        if not may_end:
            next_logits[0, self._done] = -torch.inf
        p_next = torch.softmax(next_logits[0], 0).numpy()
        fin = float(torch.sigmoid(finished[0])) if active is not None else 1.0
        G = cfg.groups
        # the active subtask as a candidate: its group and item
        own = None
        if active is not None:
            item = self.memory.items[-1] if self.memory.items else self.memory.ground(active)
            g = self.featurizer.group(item.template)
            if g is not None and not groups.slotted[g]:
                own = int(g)
            elif g is not None and item.label in f.track_labels:
                own = G + self._slotted.index(g) * MAX_TRACKS + f.track_labels.index(item.label)
        probs: dict[tuple[str, bool], float] = {(active, False): 1.0 - fin} if active is not None else {}
        # the likely ones, and always a few runners-up however unlikely: a driver that excludes a
        # subtask the VLA got stuck on needs something else to run
        keep = np.argsort(-p_next)[:max(int((p_next > 1e-6).sum()), 2 * TOP + 2)]
        for i in keep[p_next[keep] > 0]:  # never a put-away item
            if i == own:
                text = active
            elif i < G:
                text = DONE if groups.groups[i] == [DONE] else groups.canonical(int(i))
            else:
                k, s = divmod(int(i) - G, MAX_TRACKS)
                text = compose(groups.canonical(self._slotted[k]), f.track_labels[s])
            key = (text, text == active)
            probs[key] = probs.get(key, 0.0) + fin * float(p_next[i])
        return sorted(((t, p, again) for (t, again), p in probs.items()), key=lambda c: -c[1]), fin
