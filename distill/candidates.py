"""The high-level policy's candidates: the subtask strings it chooses from (the bank) and which of
them are phrasings of one subtask (paraphrase groups).

The bank a policy is trained on is every distinct normalized target of its training samples plus
`done` (`training_bank`); at run time it may be extended with more strings (`candidate_texts`
normalizes and deduplicates them). A `CandidateBank` holds the strings with their frozen sentence
embeddings, their learned vectors in the network's query space and their groups, and pools the
policy's probabilities per group, so a subtask said ten ways does not lose to a wrong one said one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from coaching.high_level import DONE
from distill.dataset import normalize_subtask

if TYPE_CHECKING:
    from distill.model import SubtaskScorer
    from distill.text_table import TextTable

SAME_SUBTASK = 0.9  # cosine of learned candidate vectors above which two phrasings are one subtask
# ... when their sentence embeddings are this alike too: a policy trained on a few episodes has its
# candidate vectors all close together (3 episodes: every pair above 0.77), and its groups chained
# picks and places into one subtask, so a refused place kept every pick out too.
READ_ALIKE = 0.7


def training_bank(targets: Iterable[str]) -> list[str]:
    """The bank a policy trains on: the distinct (already normalized) targets, sorted, then `done`."""
    return sorted(set(targets) - {DONE}) + [DONE]


def candidate_texts(texts: Sequence[str]) -> list[str]:
    """`texts` normalized (`normalize_subtask`), empty ones dropped, deduplicated in order, `done`
    appended unless it is among them."""
    return list(dict.fromkeys([normalize_subtask(t) for t in texts if normalize_subtask(t)] + [DONE]))


def same_subtask_groups(cand: torch.Tensor, bank: Sequence[str], text: torch.Tensor | None = None,
                        threshold: float = SAME_SUBTASK, read_alike: float = READ_ALIKE) -> np.ndarray:
    """A group id per candidate (C,): phrasings the trained policy cannot tell apart are one subtask to it.

    `cand` (C, K) are the candidates' unit learned vectors, `bank` their C strings, `text` (C, E)
    optionally their sentence embeddings. Training pulls the learned vectors of strings used in the
    same situations together ("grab the red cube", "lift the red block") and keeps those of
    different situations apart, which raw sentence embeddings do not ("open the drawer" and "close
    the drawer" are 0.9 alike in MiniLM). Groups are the connected components of
    `cosine >= threshold` between learned vectors and, where `text` is given, `cosine >= read_alike`
    between those (on the bench's 60 episodes that splits 179 groups of 230 strings into 180);
    `done` is always its own group.
    """
    from scipy.sparse.csgraph import connected_components

    linked = (cand @ cand.T).numpy() >= threshold
    if text is not None:
        unit = F.normalize(text, dim=-1)
        linked &= (unit @ unit.T).numpy() >= read_alike
    done = [i for i, t in enumerate(bank) if t == DONE]
    linked[done, :] = linked[:, done] = False
    np.fill_diagonal(linked, True)
    return connected_components(linked, directed=False)[1]


@dataclass
class CandidateBank:
    """The strings a policy chooses from, with what scoring and pooling them needs."""

    texts: list[str]  # C normalized strings, `done` among them
    text_emb: torch.Tensor  # (C, E) frozen sentence embeddings
    vectors: torch.Tensor  # (C, K) unit learned vectors (the network's `candidates`)
    group: np.ndarray  # (C,) paraphrase group ids (`same_subtask_groups`)

    @classmethod
    def build(cls, texts: Sequence[str], model: SubtaskScorer, table: TextTable) -> CandidateBank:
        """The bank of `texts` (normalized and deduplicated by `candidate_texts`) for `model`."""
        bank = candidate_texts(texts)
        emb = table.embed(bank)
        with torch.no_grad():
            vectors = model.candidates(emb)
        return cls(bank, emb, vectors, same_subtask_groups(vectors, bank, emb))

    def __contains__(self, text: object) -> bool:
        return text in self.texts

    def group_of(self, text: str | None) -> int | None:
        """The group of a (normalized) string, None when it is not a candidate."""
        return int(self.group[self.texts.index(text)]) if text in self.texts else None

    def same_subtask(self, a: str, b: str) -> bool:
        """Whether two strings are one subtask to the policy: equal once normalized, or one group."""
        a, b = normalize_subtask(a), normalize_subtask(b)
        if a == b:
            return True
        if a not in self.texts or b not in self.texts:
            return False
        return self.group_of(a) == self.group_of(b)

    def pooled(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities per candidate (C,) -> per group (G,), summed over its phrasings, at most 1."""
        return np.minimum(np.bincount(self.group, weights=probs), 1.0)  # float sums may pass 1 by 1e-8

    def phrasing(self, group: int, probs: np.ndarray, active: str | None = None) -> str:
        """The string that says `group`: `active` (normalized) when it belongs to the group, so a driver
        keeps going instead of re-prompting a paraphrase; else the group's most probable member."""
        if group == self.group_of(active):
            return active  # type: ignore[return-value]  # group_of(None) is None
        members = np.flatnonzero(self.group == group)
        return self.texts[int(members[np.argmax(probs[members])])]
