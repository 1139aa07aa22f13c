"""What the high-level network sees at one decision, as arrays: the one place they are built.

`Featurizer.features(memory, n, task, metadata)` turns the episode memory (`distill/memory.py`)
with the first n history items issued into a `Features`: the context vector, per-subtask-group
features and per-track features. Training (`distill/situations.py`) and the policy
(`distill/learned_policy.py`) both call it, so what the network learns from is what it gets.

Text goes through the frozen all-MiniLM-L6-v2 sentence encoder (`coaching.text_encoder`): the task,
the metadata prompt, each history item's template, each item label, each subtask group (the mean
of its templates). The `Vocabulary` is what a checkpoint keeps of its logs to do this: the subtask
groups, the lexicon, the state normalisation and where each group's successful segments ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from coaching.high_level import DONE
from coaching.text_encoder import DIM as TEXT_DIM
from distill.memory import EpisodeMemory, track_features_dim
from distill.phrasing import Lexicon, SubtaskGroups, readable

# Context: task, metadata, the newest history item, the label picked last, the mean and the max of
# the history items (6 texts); then the state, and 4 scalars: motion over the last second, seconds
# held still / 3, seconds since the newest item was issued / 10, whether there is a history. (No
# counts of the history or the items: with them `done` learnt "six subtasks in, done" and ended an
# episode whose retry had made the history longer with an item still out.)
CONTEXT_TEXTS = 6
CONTEXT_SCALARS = 4
MAX_TRACKS = 16  # labels scored at one decision; the most recently seen first
RELEASE_STATES = 64  # end states kept per subtask group for the release check


def metadata_prompt(metadata: dict[str, Any] | None) -> str:
    """The metadata prompt, e.g. "speed normal, quality 5, no mistakes"; "" when absent."""
    if not metadata:
        return ""
    parts = []
    if metadata.get("speed") is not None:
        parts.append(f"speed {metadata['speed']}")
    if metadata.get("quality") is not None:
        parts.append(f"quality {metadata['quality']}")
    if metadata.get("mistake") is not None:
        parts.append("with mistakes" if metadata["mistake"] else "no mistakes")
    return ", ".join(parts)


@dataclass
class Vocabulary:
    """What a checkpoint keeps of its logs besides weights (JSON-ready)."""

    groups: SubtaskGroups  # the subtasks, `done` last
    lexicon: Lexicon
    cameras: list[str]
    state_mean: list[float]
    state_std: list[float]
    release: dict[str, list[list[float]]] = field(default_factory=dict)  # group -> z-scored end states

    def to_dict(self) -> dict[str, Any]:
        return {"groups": self.groups.to_dict(), "lexicon": self.lexicon.to_dict(), "cameras": self.cameras,
                "state_mean": self.state_mean, "state_std": self.state_std, "release": self.release}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Vocabulary":
        return cls(SubtaskGroups.from_dict(d["groups"]), Lexicon.from_dict(d["lexicon"]), list(d["cameras"]),
                   list(d["state_mean"]), list(d["state_std"]), {k: v for k, v in d.get("release", {}).items()})


@dataclass
class Features:
    """One decision's inputs. G groups, S <= MAX_TRACKS tracks, F track features."""

    context: np.ndarray  # (C,) float32
    held: np.ndarray  # (384,) the embedding of the label picked last (zeros if none)
    groups: np.ndarray  # (G, 2): times issued / 3, is the newest history item's group
    tracks: np.ndarray  # (S, F)
    track_labels: list[str]  # (S,)
    active: np.ndarray  # (F,) the newest item's track features (zeros when it names no tracked item)


class Featurizer:
    def __init__(self, vocabulary: Vocabulary, encoder=None):
        from coaching.text_encoder import default_encoder

        self.vocab = vocabulary
        self.encoder = encoder or default_encoder()
        self.mean = np.asarray(vocabulary.state_mean, dtype=np.float32)
        self.std = np.asarray(vocabulary.state_std, dtype=np.float32)
        groups = vocabulary.groups
        self.group_of = groups.index()
        self.group_emb = self._normalise(np.stack([self.embed([readable(t) for t in g]).mean(0) for g in groups.groups]))
        self.release = {int(g): np.asarray(v, dtype=np.float32) for g, v in vocabulary.release.items()}

    @staticmethod
    def _normalise(x: np.ndarray) -> np.ndarray:
        return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) unit vectors; an empty text is the zero vector."""
        out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
        keep = [i for i, t in enumerate(texts) if t]
        if keep:
            out[keep] = self.encoder.encode([texts[i] for i in keep])
        return out

    def similarity(self, phrase: str, labels: list[str]) -> np.ndarray:
        """Sentence-encoder cosines of a phrase with each label (the lexicon's tie-break)."""
        v = self.embed([phrase, *labels])
        return v[1:] @ v[0]

    def memory(self) -> EpisodeMemory:
        return EpisodeMemory(self.vocab.cameras, self.vocab.lexicon, self.similarity)

    def zscore(self, state: np.ndarray) -> np.ndarray:
        return np.nan_to_num((np.asarray(state, dtype=np.float32) - self.mean) / self.std)

    def group(self, template: str) -> int | None:
        """The subtask group of a template: its own, else the nearest group of the same kind (with or
        without an object) whose embedding is at least 0.8 alike, else None."""
        if template in self.group_of:
            return self.group_of[template]
        v = self.embed([readable(template)])[0]
        slotted = "{obj}" in template
        sims = [(float(self.group_emb[g] @ v), g) for g, s in enumerate(self.vocab.groups.slotted) if s == slotted]
        best = max(sims, default=(0.0, None))
        return best[1] if best[0] >= 0.8 else None

    def release_distance(self, template: str, state: np.ndarray) -> float:
        """How far (z-scored Euclidean) `state` lies from the nearest logged end state of the
        template's group; 0 when the group has none."""
        g = self.group(template)
        ends = self.release.get(g) if g is not None else None
        if ends is None or not len(ends):
            return 0.0
        return float(np.min(np.linalg.norm(ends - self.zscore(state), axis=1)))

    def features(self, memory: EpisodeMemory, n: int, task: str, metadata: dict[str, Any] | None) -> Features:
        """The inputs with the first `n` history items issued (the newest, item n-1, taken as the active one)."""
        items = memory.items[:n]
        newest = items[-1] if items else None
        held = memory.picked_last(n)
        texts = self.embed([task, metadata_prompt(metadata), readable(newest.template) if newest else "",
                            held or ""])
        hist = self.embed([readable(i.template) for i in items]) if items else np.zeros((1, TEXT_DIM), np.float32)
        labels = sorted(memory.tracks, key=lambda l: -memory.tracks[l].last_seen)[:MAX_TRACKS]
        state = memory.state if memory.state is not None else self.mean
        scalars = [np.tanh(memory.motion() / max(float(self.std.mean()), 1e-3)), memory.still_for() / 3,
                   min(memory.t - newest.issued_t, 60.0) / 10 if newest else 0.0, float(n > 0)]
        context = np.concatenate([texts.reshape(-1), hist.mean(0), hist.max(0), self.zscore(state),
                                  np.asarray(scalars, dtype=np.float32)]).astype(np.float32)
        G = len(self.vocab.groups.groups)
        groups = np.zeros((G, 2), dtype=np.float32)
        for i, item in enumerate(items):
            g = self.group(item.template)
            if g is not None:
                groups[g, 0] += 1 / 3
                groups[g, 1] = float(i == n - 1)
        groups[:, 0] = np.minimum(groups[:, 0], 1.0)
        dim = track_features_dim(len(self.vocab.cameras))
        tracks = np.stack([memory.track_features(l, n, self.release_distance) for l in labels]) if labels \
            else np.zeros((0, dim), np.float32)
        active = np.zeros(dim, np.float32)
        if newest is not None and newest.label in memory.tracks:
            active = memory.track_features(newest.label, n, self.release_distance)
        return Features(context, texts[3], groups, tracks, labels, active)

    def context_dim(self, state_dim: int) -> int:
        return (CONTEXT_TEXTS * TEXT_DIM) + state_dim + CONTEXT_SCALARS

    def done_group(self) -> int:
        return len(self.vocab.groups.groups) - 1


def done_last(groups: SubtaskGroups) -> SubtaskGroups:
    """The groups with `done` as the last, slotless group."""
    kept = [g for g in groups.groups if g != [DONE]]
    return SubtaskGroups([*kept, [DONE]], [*("{obj}" in g[0] for g in kept), False])
