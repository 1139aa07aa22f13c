"""Finding the words of `sim.vocabulary` in a subtask's text, as character spans.

It owns the text-level pieces the parser is built from: normalising the text, splitting it into
clauses, finding verb cues, finding mentions (`Span`: a catalog noun, a place, or a colour that
stands for an object), deciding compound nouns ("trash can": a place after "in", a can
otherwise), reading the noun phrase after a verb (`Phrase`), the contexts a position sits in
(after a preposition, after a negation), and masking mentions so that a sentence embedding
compares verbs, not nouns. Everything here is text only: no scene, no encoder. All positions are
character offsets into the normalised text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from sim.objects import COLOURS, PLACES
from sim.vocabulary import (
    ANY_PAD,
    COLOUR_RE,
    DET,
    DETERMINERS,
    DIRECTIONAL_PREP,
    GENERIC_NOUNS,
    NOUNS,
    PHRASE_END,
    PRONOUNS,
    TARGET_PREP,
    VERB_CUES,
    kind_of_word,
)

# A position right after a preposition (and a determiner and one adjective): a place goes here.
TARGET_CONTEXT = re.compile(rf"\b{TARGET_PREP}\s+(?:{DET}\s+)?(?:[a-z]+\s+)?$")
DIRECTIONAL_CONTEXT = re.compile(rf"\b{DIRECTIONAL_PREP}\s+(?:{DET}\s+)?(?:[a-z]+\s+)?$")
# The words after a preposition, whatever they are: a destination the catalog may not know.
UNKNOWN_DESTINATION = re.compile(rf"\b{TARGET_PREP}\s+(?:{DET}\s+)?([a-z'-]+(?:\s+[a-z'-]+)?)")
NEGATED_CONTEXT = re.compile(r"(?:\bnot|n't|\bnever|\binstead of|\brather than|\bexcept)\s+(?:[a-z']+\s+){0,2}$")
NEGATED_CLAUSE = re.compile(r"^(?:(?:and|but|so|just|please|oh)\s+)*(?:don'?t|do not|never|not)\b")
CLAUSE_BREAK = re.compile(r"\s*(?:[,;:.!?()]+|\s-+\s)\s*")
_MODAL_CAN = re.compile(r"^(?:'t|\s+not\b|\s+(?:you|u|i|we|it|he|she|they|the robot)\b)")
_MODAL_CAN_BEFORE = re.compile(r"\b(?:you|i|we|they|who|robot|it)\s+$")
_WORD = re.compile(r"[a-z0-9'-]+")


@dataclass(frozen=True)
class Span:
    """A mention in the text: an object kind (kind=None: only a colour was said) or a place."""

    start: int
    end: int
    is_place: bool
    value: str | None  # kind name, place name, ANY_PAD, or None
    colour: str | None
    text: str

    def said(self) -> str:
        """The mention as the coach said it, with its colour: "blue bowl", "trash can"."""
        if self.colour and not self.text.startswith(self.colour):
            return f"{self.colour} {self.text}"
        return self.text


@dataclass(frozen=True)
class Cue:
    """A verb cue: the characters of a verb and the family it names (one of `VERB_CUES`)."""

    start: int
    end: int
    family: str


@dataclass(frozen=True)
class Phrase:
    """The words right after the verb: what the coach called the object, if anything."""

    text: str  # as typed, e.g. "the red banana"
    colour: str | None
    head: str  # without determiners and colour, e.g. "banana"
    pronoun: bool
    start: int
    end: int


NO_PHRASE = Phrase("", None, "", False, 0, 0)


def normalise(text: str) -> str:
    """Lower case, plain quotes, dashes and hyphens as spaces, single spaces, stripped."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[\u2014\u2013]", " - ", text)
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)  # "pick-up the red-cup"
    text = re.sub(r"[\"\u201c\u201d]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def clauses(s: str) -> list[tuple[int, int]]:
    """Character ranges of the clauses of `s`, split at punctuation and dashes."""
    ranges, start = [], 0
    for m in CLAUSE_BREAK.finditer(s):
        if m.start() > start:
            ranges.append((start, m.start()))
        start = m.end()
    if start < len(s):
        ranges.append((start, len(s)))
    return ranges


def inside(pos: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether `pos` lies in one of the half-open character `ranges`."""
    return any(a <= pos < b for a, b in ranges)


def find_cues(s: str, negated: list[tuple[int, int]]) -> list[Cue]:
    """All verb cues in `s` outside the `negated` ranges, in text order.

    Where cues overlap the longest wins ("get rid of" over "get").
    """
    found: list[Cue] = []
    candidates = [
        Cue(m.start(), m.end(), family) for family, pattern in VERB_CUES for m in pattern.finditer(s)
    ]
    for cue in sorted(candidates, key=lambda c: (-(c.end - c.start), c.start)):
        if inside(cue.start, negated):
            continue
        if any(cue.start < other.end and other.start < cue.end for other in found):
            continue
        found.append(cue)
    return sorted(found, key=lambda c: c.start)


def _is_modal_can(s: str, start: int, end: int) -> bool:
    # "can you pick up ...": the verb, not the soda can.
    return bool(_MODAL_CAN.match(s[end:]) or _MODAL_CAN_BEFORE.search(s[:start]))


def _colour_before(s: str, start: int) -> str | None:
    m = re.search(rf"\b({COLOUR_RE})\s+(?:[a-z'-]+\s+)?$", s[:start])
    return m.group(1) if m else None


def scan_nouns(s: str) -> list[Span]:
    """Object and place mentions by catalog nouns (whole words, plurals), without overlaps.

    Returns the spans in text order; a compound such as "trash can" is still two spans here
    (see `resolve_compounds`).
    """
    spans: list[Span] = []
    for noun, is_place, value in NOUNS:
        for m in re.finditer(rf"\b{re.escape(noun)}(?:e?s)?\b", s):
            if any(m.start() < o.end and o.start < m.end() for o in spans):
                continue
            if noun == "can" and _is_modal_can(s, m.start(), m.end()):
                continue
            start, colour, place_value = m.start(), None, value
            said_colour = re.search(rf"\b({COLOUR_RE})\s+$", s[: m.start()])
            if value == ANY_PAD and said_colour:  # "the yellow pad": a pad this catalog lacks
                start, colour = said_colour.start(), said_colour.group(1)
                place_value = f"{colour}_pad" if f"{colour}_pad" in PLACES else None
            spans.append(Span(start, m.end(), is_place, place_value, colour, s[start : m.end()]))
    return sorted(spans, key=lambda sp: sp.start)


def _gap_is_blank(s: str, a: int, b: int) -> bool:
    return a <= b and not s[a:b].strip()


def resolve_compounds(s: str, spans: list[Span]) -> list[Span]:
    """Decide nouns that are both object and place words ("trash can", "garbage can").

    After "in/into/to/on..." they name the place; elsewhere ("pick up the trash can") they are
    the object, with the place word as an adjective. Adjacent object nouns ("glass bottle") are
    one object. Object spans get the colour said before them. `spans` must be in text order.
    """
    spans, out = list(spans), []
    i = 0
    while i < len(spans):
        span = spans[i]
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        if span.is_place:
            in_target = bool(TARGET_CONTEXT.search(s[: span.start]))
            last_word = span.text.split()[-1]
            if nxt and not nxt.is_place and _gap_is_blank(s, span.end, nxt.start):
                if in_target:  # "in the garbage can": the place swallows the noun
                    out.append(Span(span.start, nxt.end, True, span.value, span.colour, s[span.start : nxt.end]))
                else:  # "the square block": an adjective
                    out.append(nxt)
                i += 2
                continue
            kind = kind_of_word(last_word)
            if not in_target and kind is not None:  # "pick up the trash can"
                start = span.end - len(last_word)
                out.append(Span(start, span.end, False, kind, _colour_before(s, span.start), last_word))
                i += 1
                continue
            out.append(span)
            i += 1
            continue
        # Adjacent object nouns ("glass bottle", "tin can") are one thing named by the last noun.
        if nxt and not nxt.is_place and _gap_is_blank(s, span.end, nxt.start):
            spans[i + 1] = Span(span.start, nxt.end, False, nxt.value, nxt.colour, s[span.start : nxt.end])
            i += 1
            continue
        out.append(span)
        i += 1
    return [_with_colour(s, sp) for sp in out]


def _with_colour(s: str, span: Span) -> Span:
    if span.is_place or span.colour:
        return span
    colour = _colour_before(s, span.start)
    return Span(span.start, span.end, False, span.value, colour, span.text) if colour else span


def colour_only_mentions(s: str, spans: list[Span]) -> list[Span]:
    """ "the blue one", "the red thing", "grab the green": a colour standing for an object.

    `spans` are the noun mentions already found; a colour inside one, or right before a named
    object ("the red (plastic) cup"), is not a mention of its own. Returns spans with value None.
    """
    out = []
    for m in re.finditer(rf"\b({COLOUR_RE})\b", s):
        if any(sp.start <= m.start() < sp.end for sp in spans):
            continue
        if any(not sp.is_place and sp.start >= m.end() and len(s[m.end() : sp.start].split()) <= 1
               for sp in spans):
            continue  # the adjective of a named object: "the red (plastic) cup"
        rest = re.match(r"\s*([a-z']+)?", s[m.end() :])
        word = rest.group(1) if rest else None
        if word in GENERIC_NOUNS:
            end = m.end() + rest.end()
        elif word is None or word in PHRASE_END:
            end = m.end()
        else:
            continue  # "the red banana": a noun the catalog does not know, handled by the phrase
        out.append(Span(m.start(), end, False, None, m.group(1), s[m.start() : end]))
    return out


def mentions(s: str) -> list[Span]:
    """Every mention in `s` in text order: catalog nouns (compounds decided) and colour-only ones."""
    nouns = resolve_compounds(s, scan_nouns(s))
    return sorted(nouns + colour_only_mentions(s, nouns), key=lambda sp: sp.start)


def phrase_after(s: str, pos: int) -> Phrase:
    """The noun phrase starting at `pos` (right after a verb), up to a preposition, particle or
    clause end, at most five words; an empty `Phrase` at `pos` when there is none."""
    clause_end = CLAUSE_BREAK.search(s, pos)
    words = list(_WORD.finditer(s, pos, clause_end.start() if clause_end else len(s)))
    while words and words[0].group() in ("up", "down", "out"):
        words = words[1:]
    taken: list[re.Match[str]] = []
    for word in words:
        if word.group() in PHRASE_END or len(taken) >= 5:
            break
        taken.append(word)
    said = [w.group() for w in taken]
    content = [w for w in said if w not in DETERMINERS]
    colours = [w for w in content if w in COLOURS]
    head = [w for w in content if w not in COLOURS]
    pronoun = bool(said) and all(w in PRONOUNS or w in DETERMINERS for w in said)
    start, end = (taken[0].start(), taken[-1].end()) if taken else (pos, pos)
    return Phrase(" ".join(said), colours[0] if colours else None, " ".join(head), pronoun, start, end)


def mask(s: str, spans: Sequence[Span]) -> str:
    """Replace mentions by "object"/"place" so the embedding compares verbs, not nouns.

    Where spans overlap the first in text order wins (ties: the first in `spans`).
    """
    out, pos = [], 0
    for sp in sorted(spans, key=lambda x: x.start):
        if sp.start < pos:
            continue
        out.append(s[pos : sp.start])
        # The drawer as a thing to open stays "drawer"; as a destination it is a place like any.
        as_object = sp.value == "drawer" and not TARGET_CONTEXT.search(s[: sp.start])
        out.append("drawer" if as_object else "place" if sp.is_place else "object")
        pos = sp.end
    out.append(s[pos:])
    masked = "".join(out)
    # Modifiers the catalog does not know ("the coke can", "the chip packet") are noun, not verb.
    masked = re.sub(rf"\b({DET})\s+(?:[a-z'-]+\s+){{1,2}}?(object|place)\b", r"\1 \2", masked)
    return masked
