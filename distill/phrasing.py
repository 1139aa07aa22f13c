"""How coaches phrase subtasks, learned from the logs: object slots, templates and subtask groups.

It owns the language side of the high-level policy, so that the policy can name items no coached
episode named:

- `object_phrase`: the words of a subtask that name the item it acts on ("grab the red mug" ->
  "red mug"), found by English grammar: the words after an article, up to a preposition, and not
  after a preposition ("put it *in the* tub" names a destination, not an object).
- `Lexicon`: which detector label an object phrase means. A phrase shares words with the label
  ("red") and uses others for the rest ("mug" for "cup"); which word stands for which is counted
  over the logs (a word and a label word that keep appearing together in episodes, the label
  among those the detector saw in that episode), with the sentence encoder's similarity to break
  ties. So "red saucer" -> "red plate" even where MiniLM alone prefers "red bottle" (0.63 vs 0.60).
- templates: the subtask with its object phrase replaced by `{obj}` ("grab the {obj}"); filled
  with what the robot sees (`compose`), they make subtasks no coach typed.
- `SubtaskGroups`: which templates are one subtask said in different words, by what they did:
  two templates whose successful segments left the robot in the same proprio state (the same
  destination, the same drawer motion) are one subtask; "put it in the tub" and "drop it into the
  dish bin" end over the tub, "put it in the trash bin" does not. Text similarity cannot do this
  (MiniLM puts "open the drawer" and "close the drawer" at 0.9).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

SLOT = "{obj}"
ARTICLES = ("the", "a", "an")
# Words that end an object phrase, and (the first group) make the phrase after them a destination.
PREPOSITIONS = ("in", "into", "on", "onto", "to", "inside", "at", "under", "over", "near", "by", "from", "off",
                "next", "behind", "beside")
PHRASE_END = (*PREPOSITIONS, "and", "then", "with", "of", "it", "that", "please", "now", "left", "right", "up",
              "down", "out", "back", "away", "open", "closed", "shut")
MAX_PHRASE_WORDS = 4


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def object_phrase(text: str) -> tuple[int, int] | None:
    """The word span [start, end) of the object `text` names (indices into `words(text)`), or None
    when it names none: the first run of words after an article that does not follow a
    preposition, at most `MAX_PHRASE_WORDS` words, ending before a preposition or connective."""
    w = words(text)
    for i, token in enumerate(w):
        if token not in ARTICLES or (i > 0 and w[i - 1] in PREPOSITIONS):
            continue
        end = i + 1
        while end < len(w) and end - i - 1 < MAX_PHRASE_WORDS and w[end] not in PHRASE_END and w[end] not in ARTICLES:
            end += 1
        if end > i + 1:
            return i + 1, end
    return None


def template(text: str, span: tuple[int, int]) -> str:
    """`text` (as words) with the span replaced by `{obj}`: "grab the red mug" -> "grab the {obj}"."""
    w = words(text)
    return " ".join([*w[:span[0]], SLOT, *w[span[1]:]])


def ground(text: str, labels: Sequence[str], lexicon: "Lexicon", similarity=None) -> tuple[str, str | None]:
    """(template, label): the label among `labels` the text's object phrase names and the text with
    that phrase as `{obj}`; (the text's words, None) when it names none of them ("open the drawer")."""
    span = object_phrase(text)
    label = None
    if span is not None:
        label = lexicon.ground(" ".join(words(text)[span[0]:span[1]]), list(labels), similarity)
    if label is None:
        return " ".join(words(text)), None
    return template(text, span), label


def compose(template_text: str, label: str) -> str:
    """A template filled with a label: ("grab the {obj}", "red cup") -> "grab the red cup"."""
    return template_text.replace(SLOT, label)


def readable(template_text: str) -> str:
    """A template as a sentence the encoder can read ("grab the {obj}" -> "grab the object")."""
    return template_text.replace(SLOT, "object")


@dataclass
class Lexicon:
    """Which label an object phrase means: shared words, plus word associations counted in the logs."""

    pairs: dict[str, dict[str, float]] = field(default_factory=dict)  # phrase word -> label word -> P(label word | it)

    @classmethod
    def fit(cls, examples: Iterable[tuple[str, Sequence[str]]]) -> "Lexicon":
        """From (object phrase, labels the detector saw in that episode) pairs: among the labels that
        share the most words with the phrase (at least one), each phrase word not in the label counts
        for the label's other words, split over those labels; normalised per phrase word. ("red mug"
        with "red cup" and "red bowl" in view counts mug-cup and mug-bowl half each; over many
        episodes mug-cup wins.)"""
        counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for phrase, labels in examples:
            pw = set(words(phrase))
            shared = [len(pw & set(words(l))) for l in labels]
            most = max(shared, default=0)
            sharing = [set(words(l)) for l, k in zip(labels, shared) if k == most and most > 0]
            for lw in sharing:
                for u in pw - lw:
                    for v in lw - pw:
                        counts[u][v] += 1.0 / len(sharing)
        pairs = {u: {v: c / sum(row.values()) for v, c in row.items()} for u, row in counts.items()}
        return cls(pairs)

    def score(self, phrase: str, label: str) -> float:
        """2 per shared word plus, per other phrase word, its best association with the label's other words."""
        pw, lw = words(phrase), set(words(label))
        shared = sum(1 for u in pw if u in lw)
        rest = lw - set(pw)
        return 2.0 * shared + sum(max((self.pairs.get(u, {}).get(v, 0.0) for v in rest), default=0.0)
                                  for u in pw if u not in lw)

    def ground(self, phrase: str, labels: Sequence[str], similarity=None) -> str | None:
        """The label among `labels` that `phrase` names, or None when none shares a word with it or is
        associated with it. `similarity(phrase, labels) -> (L,)` (sentence-encoder cosines) breaks ties."""
        if not labels:
            return None
        scores = np.array([self.score(phrase, l) for l in labels], dtype=np.float64)
        if scores.max() <= 0.0:
            return None
        if similarity is not None:
            scores = scores + 0.1 * np.asarray(similarity(phrase, list(labels)), dtype=np.float64)
        return labels[int(np.argmax(scores))]

    def to_dict(self) -> dict:
        return {"pairs": self.pairs}

    @classmethod
    def from_dict(cls, d: dict) -> "Lexicon":
        return cls({u: dict(row) for u, row in d.get("pairs", {}).items()})


@dataclass
class SubtaskGroups:
    """Templates grouped into subtasks by their effect, each group said with its most logged template.

    `groups[g]` lists its templates, most logged first; `canonical(g)` is the first. A template
    never seen to succeed stands alone."""

    groups: list[list[str]]
    slotted: list[bool]  # whether group g's templates take an object

    @classmethod
    def fit(cls, end_states: dict[str, list[np.ndarray]], counts: dict[str, int], distance: float = 2.0
            ) -> "SubtaskGroups":
        """Group templates by where their successful segments left the robot.

        `end_states[t]`: the proprio states, z-scored, at the end of template t's successful segments;
        `counts[t]`: how often t was logged. Templates with an object slot and those without are grouped
        apart, each by average-linkage clustering (scipy) of their median end states, cut at `distance`
        z-units: on 60 coached episodes the phrasings of one destination lay at most ~1.6 apart and the
        nearest two destinations (the tub and the red pad, 13 cm apart) 2.5. Average linkage does not
        chain neighbours into one group the way single linkage does."""
        from scipy.cluster.hierarchy import fcluster, linkage

        groups: list[list[str]] = []
        for slotted in (True, False):
            temps = [t for t in counts if (SLOT in t) == slotted]
            known = [t for t in temps if len(end_states.get(t, []))]
            if len(known) > 1:
                centres = np.stack([np.median(np.asarray(end_states[t], dtype=np.float64), axis=0) for t in known])
                ids = fcluster(linkage(centres, method="average"), t=distance, criterion="distance")
            else:
                ids = np.ones(len(known), dtype=int)
            members: dict[int, list[str]] = defaultdict(list)
            for t, i in zip(known, ids):
                members[int(i)].append(t)
            groups += list(members.values()) + [[t] for t in temps if t not in known]
        groups = [sorted(g, key=lambda t: (-counts[t], t)) for g in groups]  # most logged first
        groups.sort(key=lambda g: (-sum(counts[t] for t in g), g[0]))
        return cls(groups, [SLOT in g[0] for g in groups])

    def canonical(self, g: int) -> str:
        return self.groups[g][0]

    def index(self) -> dict[str, int]:
        """template -> its group."""
        return {t: g for g, ts in enumerate(self.groups) for t in ts}

    def to_dict(self) -> dict:
        return {"groups": self.groups, "slotted": self.slotted}

    @classmethod
    def from_dict(cls, d: dict) -> "SubtaskGroups":
        return cls([list(g) for g in d["groups"]], [bool(s) for s in d["slotted"]])
