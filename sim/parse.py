"""Parsing a coach's subtask text into an `Intent`: the skill it asks for and what it names.

It owns reading the command out of the text (skipping a correction's preamble such as "no, the
blue one -" and negated clauses such as "not the bin"), choosing the skill from the verb cues
("stop", "go home", "pick", "put", "push", "open", ...; none when no cue fires and only the
sentence embedding can tell), and collecting, still as words of the text, the object, the
destination, the push direction and the drawer action it names. It knows nothing of the scene
or the encoder: matching an `Intent` against the table, and refusing, is `sim.grounding`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Sequence

from sim.spans import (
    DIRECTIONAL_CONTEXT,
    NEGATED_CLAUSE,
    NEGATED_CONTEXT,
    NO_PHRASE,
    TARGET_CONTEXT,
    UNKNOWN_DESTINATION,
    Cue,
    Phrase,
    Span,
    clauses,
    find_cues,
    inside,
    mask,
    mentions,
    normalise,
    phrase_after,
)
from sim.vocabulary import (
    DIRECTION_CUES,
    DRAWER_WAY,
    HOME_CUE,
    NOT_A_VERB,
    PHRASE_END,
    STOP_CUE,
    THROW_AWAY,
)


@dataclass(frozen=True)
class Intent:
    """What one subtask text asks for, as said: nothing of it is checked against a scene yet.

    `skill` is "stop", "home", "pick", "place" (put or place: the grounder decides from what is
    held), "push", "open" or "close", each named by a cue; or None when no cue names a skill and
    the sentence embedding of `masked()` must decide. Spans are character ranges of `text`.
    """

    text: str  # the command: normalised, without its preamble
    skill: str | None
    verb: str | None = None  # the family of the verb cue said ("move", "trash", ...); None if none
    verbless: bool = False  # skill None and the text only names things ("the blue bowl")
    mentions: tuple[Span, ...] = ()  # every mention, negated ones too (what `masked` hides)
    spans: tuple[Span, ...] = ()  # the mentions that are not negated ("not the bin")
    objects: tuple[Span, ...] = ()  # not negated, objects, not after a preposition
    targets: tuple[Span, ...] = ()  # not negated, places after a preposition ("in the tub")
    misplaced: tuple[Span, ...] = ()  # not negated, objects after a preposition ("on the cup")
    phrase: Phrase = NO_PHRASE  # the words after the verb: the object as called, if anything
    earlier: Span | None = None  # the last object named before the command ("the red cup - pick it up")
    trash: bool = False  # the verb implies the trash bin ("throw it away", "get rid of it")
    # When nothing names a place: the words after a preposition ("on the shelf"), value None.
    destination: Span | None = None
    direction: str | None = None  # the last way said (one of DIRECTIONS): "left, no, right" -> right
    not_drawer: Span | None = None  # open/close: another thing named ("open the tub"), unless the drawer is

    def masked(self, extra: Sequence[Span] = ()) -> str:
        """`text` with `mentions` and the `extra` spans (synonyms resolved later) masked."""
        return mask(self.text, [*self.mentions, *extra])


def parse(text: str) -> Intent:
    """Parse a non-empty subtask text (any case, any punctuation) into an `Intent`; never raises."""
    s = normalise(text)
    if STOP_CUE.search(s):
        return Intent(s, "stop")
    parts = clauses(s)
    negated = [(a, b) for a, b in parts if NEGATED_CLAUSE.match(s[a:b])]
    # The command starts at the first clause with a verb cue; what comes before is usually
    # a correction's preamble ("no, the blue one -", "that missed,", "try again:").
    start = 0
    for a, b in parts:
        if (a, b) not in negated and (find_cues(s[a:b], []) or HOME_CUE.search(s[a:b])):
            start = a
            break
    return _Command(s[start:], s[:start], [(a - start, b - start) for a, b in negated if a >= start]).intent()


class _Command:
    """The command part of one text: its cues and mentions, and the decision of its skill."""

    def __init__(self, s: str, prefix: str, negated: list[tuple[int, int]]) -> None:
        self.s = s
        self.prefix = prefix
        self.negated = negated
        self.cues = find_cues(s, negated)
        self.mentions = mentions(s)
        self.spans = [sp for sp in self.mentions if not self._negated(sp)]

    def _negated(self, span: Span) -> bool:
        return inside(span.start, self.negated) or bool(NEGATED_CONTEXT.search(self.s[: span.start]))

    def _after_preposition(self, span: Span, directional_only: bool = False) -> bool:
        context = DIRECTIONAL_CONTEXT if directional_only else TARGET_CONTEXT
        return bool(context.search(self.s[: span.start]))

    def _objects(self) -> list[Span]:
        return [sp for sp in self.spans if not sp.is_place and not self._after_preposition(sp)]

    def _targets(self, directional_only: bool = False) -> list[Span]:
        return [sp for sp in self.spans if sp.is_place and self._after_preposition(sp, directional_only)]

    def _drawer_as_object(self) -> bool:
        return any(sp.is_place and sp.value == "drawer" and not self._after_preposition(sp) for sp in self.spans)

    # -- the skill ---------------------------------------------------------------------------

    def intent(self) -> Intent:
        primary = self.cues[0] if self.cues else None
        if HOME_CUE.search(self.s) and not self._objects():
            return self._intent("home", primary)
        if primary is None and self._targets() and not self._objects():
            # "no, in the trash": a correction that only says where the held thing goes.
            return self._intent("place", None)
        if primary is None:
            # No cue: the embedding decides; the arguments follow the first word, read as the verb.
            first_word = re.match(r"\s*[a-z'-]+", self.s)
            return self._intent(None, None, after=first_word.end() if first_word else 0)
        family = primary.family
        if family in ("open", "close"):
            return self._intent(family, primary)
        if family in ("push", "pull", "move") and self._drawer_as_object():
            return self._intent(self._drawer_action(family), primary)
        if family == "pick":
            later_place = any(c.family in ("place", "trash") for c in self.cues[1:])
            if later_place or self._targets(directional_only=True):
                return self._intent("place", primary)
            return self._intent("pick", primary)
        if family in ("place", "trash"):
            return self._intent("place", primary)
        # push, pull and move: a named place makes it a put, a way makes it a push.
        if self._targets(directional_only=True) and family != "pull":
            return self._intent("place", primary)
        return self._intent("push", primary)

    def _drawer_action(self, family: str) -> str:
        m = DRAWER_WAY.search(self.s)
        if m:
            return "open" if m.group(1) == "open" else "close"
        if family == "pull" or re.search(r"\bout\b", self.s):
            return "open"
        return "close"

    # -- the arguments -------------------------------------------------------------------------

    def _intent(self, skill: str | None, verb: Cue | None, after: int | None = None) -> Intent:
        """The intent with every argument the text names, read after `verb` or from `after`."""
        if verb is not None:
            after = verb.end
        others = [sp for sp in self.spans if sp.value != "drawer" and not self._after_preposition(sp)]
        targets = self._targets()
        misplaced = [sp for sp in self.spans if not sp.is_place and self._after_preposition(sp)]
        trash = any(c.family == "trash" for c in self.cues) or bool(THROW_AWAY.search(self.s))
        named_place = targets or misplaced or trash
        return Intent(
            text=self.s,
            skill=skill,
            verb=verb.family if verb else None,
            verbless=skill is None and self._verbless(),
            mentions=tuple(self.mentions),
            spans=tuple(self.spans),
            objects=tuple(self._objects()),
            targets=tuple(targets),
            misplaced=tuple(misplaced),
            phrase=phrase_after(self.s, after) if after is not None else NO_PHRASE,
            earlier=self._earlier_object(),
            trash=trash,
            destination=None if named_place else self._destination(after or 0),
            direction=self._direction(),
            not_drawer=others[0] if others and not self._drawer_as_object() else None,
        )

    def _verbless(self) -> bool:
        """Only names are said ("the blue bowl"): acting on a guessed verb would surprise the coach."""
        return not set(re.findall(r"[a-z'-]+", mask(self.s, self.mentions))) - NOT_A_VERB - PHRASE_END

    def _earlier_object(self) -> Span | None:
        """The last object named before the command ("the red cup - pick it up")."""
        if not self.prefix:
            return None
        spans = [sp for sp in mentions(self.prefix)
                 if not sp.is_place and not NEGATED_CONTEXT.search(self.prefix[: sp.start])]
        return max(spans, key=lambda sp: sp.start) if spans else None

    def _destination(self, pos: int) -> Span | None:
        """The words after the first preposition from `pos` on: "in the wastebasket", "on the shelf"."""
        m = UNKNOWN_DESTINATION.search(self.s, pos)
        words = list(itertools.takewhile(lambda w: w not in PHRASE_END, m.group(1).split())) if m else []
        if not words:
            return None
        said = " ".join(words)
        return Span(m.start(1), m.start(1) + len(said), True, None, None, said)

    def _direction(self) -> str | None:
        hits = [(m.start(), name) for name, pattern in DIRECTION_CUES for m in pattern.finditer(self.s)]
        # The last one said wins: "push it left, no, right".
        return max(hits)[1] if hits else None
