"""Grounding of a coach's free-form subtask to one skill of the sim skill policy.

It owns turning text such as "oops, put it in the trash instead" into a `Grounding` (skill,
object, target place, push direction) against the objects and places of the current scene, or
into a `Refusal` whose one sentence tells the coach what to type instead.

How: the skill comes from cheap keyword cues (verbs, "go home", "stop") checked against the
sentence embedding's similarity to prototype phrasings, and from the embedding alone when no cue
fires; objects and places come from the nouns of `sim.objects` (longest first, whole words,
plurals), with the embedding as a fallback for synonyms the catalog does not list ("tumbler").
Only the stand-in VLA uses this: a real VLA reads the subtask text itself.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sim.objects import COLOURS, KINDS, PLACES, SceneObject
from coaching.text_encoder import SentenceEncoder, default_encoder

SKILLS = ("pick", "place", "put", "open", "close", "push", "home", "stop")
DIRECTIONS = ("left", "right", "forward", "back")

MAX_CHARS = 500
# A skill is accepted when its confidence reaches SKILL_THRESHOLD. Confidence is the best cosine
# to the skill's prototype phrasings, combined with a keyword cue (when one names the skill) as
# two independent pieces of evidence: 1 - (1 - cosine) * (1 - CUE_WEIGHT). So a cued skill needs
# a cosine of 0.4 (a cue alone cannot carry nonsense), an uncued one a cosine of 0.7.
SKILL_THRESHOLD = 0.70
CUE_WEIGHT = 0.5
# Unseen noun synonyms: the best kind must be close enough and clearly ahead of the runner-up
# (single-word embeddings of unrelated things sit around 0.45-0.55 to every kind).
OBJECT_SYNONYM_MIN, OBJECT_SYNONYM_MARGIN = 0.58, 0.05
PLACE_SYNONYM_MIN, PLACE_SYNONYM_MARGIN = 0.70, 0.10

# Prototype phrasings per skill family; entity mentions in the coach's text are masked to
# "object"/"place" before embedding so that the verb, not the noun, decides the similarity.
# "place" covers both place and put: which one follows from what is held.
PROTOTYPES: dict[str, tuple[str, ...]] = {
    "pick": ("pick up the object", "grab the object", "take the object", "lift the object",
             "grasp the object", "get the object"),
    "place": ("put the object in the place", "put it in the place", "place it on the place",
              "drop it into the place", "set it down on the place", "throw the object in the place",
              "move the object to the place"),
    "push": ("push the object to the left", "slide the object right", "nudge the object forward",
             "shove the object away", "push the object back"),
    "open": ("open the drawer", "pull the drawer open", "pull out the drawer"),
    "close": ("close the drawer", "shut the drawer", "push the drawer closed"),
    "home": ("go home", "return to the start position", "go back to the rest pose",
             "move the arm back to its home position"),
    "stop": ("stop", "freeze", "halt", "hold still", "stop moving", "don't move"),
}

_COLOUR_RE = "|".join(COLOURS)
_DET = r"(?:the|a|an|this|that|these|those|your|my|its|their|our|some)"

# Stop beats everything wherever it appears: refusing or delaying a stop is never the safe choice.
_STOP_CUE = re.compile(
    r"(?<!n't )(?<!not )\b(?:stop|halt|freeze|abort|pause|cease|hold (?:still|on|it right there)"
    r"|stay (?:still|put)|stand still|(?:don'?t|do not) move|quit moving)\b"
)
_HOME_CUE = re.compile(
    r"\bhome\b|\breset (?:the |your )?arm\b|\bretract\b"
    r"|\b(?:rest|resting|start|starting|initial|neutral|ready|default)\s+(?:position|pose|posture|configuration)\b"
    r"|\bback to (?:the )?(?:rest|start|beginning)\b|\bto rest\b"
)
# Verb cues in the base (imperative) form, so "you dropped it" or "that missed" never fire.
# Families: pick, place (put/place), trash (place into the trash bin even without naming it),
# push, pull (a drawer, or a push towards the coach), move (put with a place, push with a way),
# open, close.
_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("trash", re.compile(r"\b(?:throw|toss|chuck) (?:away|out)\b|\bget rid of\b|\bdiscard\b|\bdispose(?: of)?\b"
                         r"|^(?:(?:please|now|ok|just) )*(?:bin|trash)(?= (?:it|that|this|the)\b)")),
    ("pick", re.compile(r"\bpick(?: up)?\b|\b(?:grab|take|lift|grasp|get|fetch|seize|snatch|collect"
                        r"|retrieve|hoist|pluck)\b")),
    ("place", re.compile(r"\blet go\b|\b(?:put|place|drop|throw|toss|set|dump|chuck|stick|stash|leave"
                         r"|deposit|insert|release|lay|store|return|bring|carry|transfer|pop)\b")),
    ("push", re.compile(r"\b(?:push|shove|nudge|slide|scoot|bump|poke)\b")),
    ("pull", re.compile(r"\b(?:pull|yank)\b")),
    ("move", re.compile(r"\b(?:move|shift)\b")),
    ("open", re.compile(r"(?<!the )(?<!an )\bopen\b")),
    ("close", re.compile(r"\b(?:close|shut)\b(?! to\b| by\b)")),
)

_DIRECTION_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("left", re.compile(r"\bleft(?:wards?)?\b")),
    ("right", re.compile(r"(?<!all )(?<!that's )\bright(?:wards?)?\b(?! (?:now|away|there|here|then)\b)")),
    ("forward", re.compile(r"\bforwards?\b|\bahead\b|\baway\b|\bfurther\b|\bfarther\b")),
    ("back", re.compile(r"\bback(?:wards?)?\b|\btowards? (?:me|us|the camera)\b|\bcloser\b|\bnearer\b")),
)

_TARGET_PREP = r"(?:on top of|in to|on to|into|inside|onto|in|on|to|at|over|towards?|within)"
# Directional prepositions say where something goes; "the cup in the tub" only says where it is.
_DIRECTIONAL_PREP = r"(?:in to|on to|into|onto|to|towards?)"
_TARGET_CONTEXT = re.compile(rf"\b{_TARGET_PREP}\s+(?:{_DET}\s+)?(?:[a-z]+\s+)?$")
_DIRECTIONAL_CONTEXT = re.compile(rf"\b{_DIRECTIONAL_PREP}\s+(?:{_DET}\s+)?(?:[a-z]+\s+)?$")
_UNKNOWN_DESTINATION = re.compile(rf"\b{_TARGET_PREP}\s+(?:{_DET}\s+)?([a-z'-]+(?:\s+[a-z'-]+)?)")
_NEGATED_CONTEXT = re.compile(r"(?:\bnot|n't|\bnever|\binstead of|\brather than|\bexcept)\s+(?:[a-z']+\s+){0,2}$")
_NEGATED_CLAUSE = re.compile(r"^(?:(?:and|but|so|just|please|oh)\s+)*(?:don'?t|do not|never|not)\b")
_CLAUSE_BREAK = re.compile(r"\s*(?:[,;:.!?()]+|\s-+\s)\s*")
_MODAL_CAN = re.compile(r"^(?:'t|\s+not\b|\s+(?:you|u|i|we|it|he|she|they|the robot)\b)")
_MODAL_CAN_BEFORE = re.compile(r"\b(?:you|i|we|they|who|robot|it)\s+$")

_GENERIC_NOUNS = frozenset({"one", "ones", "thing", "things", "object", "objects", "item", "items",
                            "stuff", "something", "anything", "everything"})
_PRONOUNS = frozenset({"it", "that", "this", "them", "these", "those", "one"})
_DETERMINERS = frozenset({"the", "a", "an", "this", "that", "these", "those", "your", "my", "its",
                          "their", "our", "some"})
# Words that end the noun phrase after a verb ("grab the tumbler [from] ...").
_PHRASE_END = frozenset({
    "in", "into", "inside", "on", "onto", "to", "toward", "towards", "at", "from", "off", "out", "over",
    "under", "next", "near", "with", "by", "for", "and", "then", "but", "so", "or", "up", "down",
    "away", "back", "please", "again", "instead", "now", "too", "there", "here", "left", "right",
    "forward", "forwards", "backward", "backwards", "ahead", "bit", "little", "carefully",
    "gently", "slowly", "quickly", "of",
})
_NOT_A_VERB = _DETERMINERS | {"object", "place", "drawer", "now", "ok", "okay", "please", "again", "and",
                               "then", "too", "just", "hey", "robot", "so", "next", "also", "instead",
                               "no", "not", "nope", "wrong", "one", "it", "yes", "yeah", "oops", "sorry"}
_PAD_NOUNS = ("pad", "square", "mat", "zone")
_WORD = re.compile(r"[a-z0-9'-]+")
_ANY_PAD = "*pad"  # a pad whose colour the text did not say


@dataclass(frozen=True)
class Grounding:
    """A subtask the sim skill policy can run."""

    skill: str  # one of SKILLS
    object: str | None  # SceneObject.name; "drawer" for open/close
    target: str | None  # Place.name (place/put only)
    direction: str | None  # push only: one of DIRECTIONS
    score: float  # skill confidence 0..1

    def to_info(self) -> dict:
        return {"skill": self.skill, "object": self.object, "target": self.target,
                "direction": self.direction, "score": round(float(self.score), 4)}


@dataclass(frozen=True)
class Refusal:
    """A subtask that cannot be grounded, with one sentence telling the coach what to say."""

    reason: str

    def to_info(self) -> dict:
        return {"refused": True, "reason": self.reason}


@dataclass(frozen=True)
class _Span:
    """A mention in the text: an object kind (kind=None: only a colour was said) or a place."""

    start: int
    end: int
    is_place: bool
    value: str | None  # kind name, place name, _ANY_PAD, or None
    colour: str | None
    text: str


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    family: str


@dataclass(frozen=True)
class _Phrase:
    """The words right after the verb: what the coach called the object, if anything."""

    text: str  # as typed, e.g. "the red banana"
    colour: str | None
    head: str  # without determiners and colour, e.g. "banana"
    pronoun: bool
    start: int
    end: int


class _Scene:
    """The scene as the grounder needs it, plus the sentences that list its contents."""

    def __init__(self, objects: Sequence[SceneObject], places: Sequence[str], held: str | None) -> None:
        self.objects = list(objects)
        self.places = list(places)
        self.held = held

    def object_list(self) -> str:
        return _join([o.label for o in self.objects], "and") if self.objects else "nothing"

    def place_list(self) -> str:
        return _join([_place_label(p) for p in self.places], "and") if self.places else "none"

    def held_object(self) -> SceneObject | None:
        for obj in self.objects:
            if obj.name == self.held:
                return obj
        return None


def _join(words: list[str], last: str) -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def _place_label(name: str) -> str:
    return name.replace("_", " ")


def _said(span: _Span) -> str:
    """A mention as the coach said it, with its colour: "blue bowl", "trash can"."""
    if span.colour and not span.text.startswith(span.colour):
        return f"{span.colour} {span.text}"
    return span.text


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[\u2014\u2013]", " - ", text)
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)  # "pick-up the red-cup"
    text = re.sub(r"[\"\u201c\u201d]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _clauses(s: str) -> list[tuple[int, int]]:
    """Character ranges of the clauses of `s`, split at punctuation and dashes."""
    ranges, start = [], 0
    for m in _CLAUSE_BREAK.finditer(s):
        if m.start() > start:
            ranges.append((start, m.start()))
        start = m.end()
    if start < len(s):
        ranges.append((start, len(s)))
    return ranges


def _find_cues(s: str, negated: list[tuple[int, int]]) -> list[_Cue]:
    """All verb cues in `s`, longest first where they overlap ("get rid of" over "get")."""
    found: list[_Cue] = []
    candidates = [
        _Cue(m.start(), m.end(), family) for family, pattern in _CUES for m in pattern.finditer(s)
    ]
    for cue in sorted(candidates, key=lambda c: (-(c.end - c.start), c.start)):
        if _inside(cue.start, negated):
            continue
        if any(cue.start < other.end and other.start < cue.end for other in found):
            continue
        found.append(cue)
    return sorted(found, key=lambda c: c.start)


def _inside(pos: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in ranges)


def _noun_table() -> list[tuple[str, bool, str]]:
    """(noun, is_place, kind or place name), longest first so "dish bin" wins over "dish"."""
    table = [(n, False, k.name) for k in KINDS.values() for n in k.nouns]
    table += [(n, True, p.name) for p in PLACES.values() for n in p.nouns]
    table += [(n, True, _ANY_PAD) for n in _PAD_NOUNS]
    return sorted(table, key=lambda row: (-len(row[0].split()), -len(row[0])))


_NOUNS = _noun_table()


def _is_modal_can(s: str, start: int, end: int) -> bool:
    # "can you pick up ...": the verb, not the soda can.
    return bool(_MODAL_CAN.match(s[end:]) or _MODAL_CAN_BEFORE.search(s[:start]))


def _colour_before(s: str, start: int) -> str | None:
    m = re.search(rf"\b({_COLOUR_RE})\s+(?:[a-z'-]+\s+)?$", s[:start])
    return m.group(1) if m else None


def _scan_nouns(s: str) -> list[_Span]:
    """Object and place mentions by catalog nouns (whole words, plurals), without overlaps."""
    spans: list[_Span] = []
    for noun, is_place, value in _NOUNS:
        for m in re.finditer(rf"\b{re.escape(noun)}(?:e?s)?\b", s):
            if any(m.start() < o.end and o.start < m.end() for o in spans):
                continue
            if noun == "can" and _is_modal_can(s, m.start(), m.end()):
                continue
            start, colour, place_value = m.start(), None, value
            said_colour = re.search(rf"\b({_COLOUR_RE})\s+$", s[: m.start()])
            if value == _ANY_PAD and said_colour:  # "the yellow pad": a pad this catalog lacks
                start, colour = said_colour.start(), said_colour.group(1)
                place_value = f"{colour}_pad" if f"{colour}_pad" in PLACES else None
            spans.append(_Span(start, m.end(), is_place, place_value, colour, s[start : m.end()]))
    return sorted(spans, key=lambda sp: sp.start)


def _gap_is_blank(s: str, a: int, b: int) -> bool:
    return a <= b and not s[a:b].strip()


def _resolve_compounds(s: str, spans: list[_Span]) -> list[_Span]:
    """Decide nouns that are both object and place words ("trash can", "garbage can").

    After "in/into/to/on..." they name the place; elsewhere ("pick up the trash can") they are
    the object, with the place word as an adjective.
    """
    spans, out = list(spans), []
    i = 0
    while i < len(spans):
        span = spans[i]
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        if span.is_place:
            in_target = bool(_TARGET_CONTEXT.search(s[: span.start]))
            last_word = span.text.split()[-1]
            if nxt and not nxt.is_place and _gap_is_blank(s, span.end, nxt.start):
                if in_target:  # "in the garbage can": the place swallows the noun
                    out.append(_Span(span.start, nxt.end, True, span.value, span.colour, s[span.start : nxt.end]))
                else:  # "the square block": an adjective
                    out.append(nxt)
                i += 2
                continue
            kind = _kind_of_word(last_word)
            if not in_target and kind is not None:  # "pick up the trash can"
                start = span.end - len(last_word)
                out.append(_Span(start, span.end, False, kind, _colour_before(s, span.start), last_word))
                i += 1
                continue
            out.append(span)
            i += 1
            continue
        # Adjacent object nouns ("glass bottle", "tin can") are one thing named by the last noun.
        if nxt and not nxt.is_place and _gap_is_blank(s, span.end, nxt.start):
            spans[i + 1] = _Span(span.start, nxt.end, False, nxt.value, nxt.colour, s[span.start : nxt.end])
            i += 1
            continue
        out.append(span)
        i += 1
    return [_with_colour(s, sp) for sp in out]


def _kind_of_word(word: str) -> str | None:
    for kind in KINDS.values():
        for noun in kind.nouns:
            if noun.split()[-1] in (word, re.sub(r"e?s$", "", word)):
                return kind.name
    return None


def _with_colour(s: str, span: _Span) -> _Span:
    if span.is_place or span.colour:
        return span
    colour = _colour_before(s, span.start)
    return _Span(span.start, span.end, False, span.value, colour, span.text) if colour else span


def _colour_only_mentions(s: str, spans: list[_Span]) -> list[_Span]:
    """ "the blue one", "the red thing", "grab the green": a colour standing for an object."""
    out = []
    for m in re.finditer(rf"\b({_COLOUR_RE})\b", s):
        if any(sp.start <= m.start() < sp.end for sp in spans):
            continue
        if any(not sp.is_place and sp.start >= m.end() and len(s[m.end() : sp.start].split()) <= 1
               for sp in spans):
            continue  # the adjective of a named object: "the red (plastic) cup"
        rest = re.match(r"\s*([a-z']+)?", s[m.end() :])
        word = rest.group(1) if rest else None
        if word in _GENERIC_NOUNS:
            end = m.end() + rest.end()
        elif word is None or word in _PHRASE_END:
            end = m.end()
        else:
            continue  # "the red banana": a noun the catalog does not know, handled by the phrase
        out.append(_Span(m.start(), end, False, None, m.group(1), s[m.start() : end]))
    return out


def _phrase_after(s: str, pos: int) -> _Phrase:
    """The noun phrase right after a verb, up to a preposition, particle or clause end."""
    clause_end = _CLAUSE_BREAK.search(s, pos)
    words = list(_WORD.finditer(s, pos, clause_end.start() if clause_end else len(s)))
    while words and words[0].group() in ("up", "down", "out"):
        words = words[1:]
    taken: list[re.Match[str]] = []
    for word in words:
        if word.group() in _PHRASE_END or len(taken) >= 5:
            break
        taken.append(word)
    said = [w.group() for w in taken]
    content = [w for w in said if w not in _DETERMINERS]
    colours = [w for w in content if w in COLOURS]
    head = [w for w in content if w not in COLOURS]
    pronoun = bool(said) and all(w in _PRONOUNS or w in _DETERMINERS for w in said)
    start, end = (taken[0].start(), taken[-1].end()) if taken else (pos, pos)
    return _Phrase(" ".join(said), colours[0] if colours else None, " ".join(head), pronoun, start, end)


class Grounder:
    """Grounds subtask text against a scene; one instance can be shared (it holds no episode state)."""

    def __init__(self, encoder: SentenceEncoder | None = None) -> None:
        self._encoder = encoder if encoder is not None else default_encoder()

    # -- the entry point ---------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the sentence encoder now rather than on the first subtask."""
        self._encoder.encode(["warm up"])

    def ground(
        self,
        text: str,
        objects: Sequence[SceneObject],
        places: Sequence[str],
        held: str | None,
    ) -> Grounding | Refusal:
        if not text or not text.strip():
            return Refusal("The subtask is empty; type what the robot should do, e.g. 'pick up the red cup'.")
        if len(text) > MAX_CHARS:
            return Refusal(
                f"The subtask is {len(text)} characters long; keep it to one short instruction "
                f"(under {MAX_CHARS} characters), e.g. 'put the red cup in the tub'."
            )
        s = _normalise(text)
        scene = _Scene(objects, places, held)
        if _STOP_CUE.search(s):
            # No embedding for a stop: it must be instant, and it is never refused.
            return Grounding("stop", None, None, None, 1.0)
        return _Parse(self, s, scene).ground()

    # -- embeddings --------------------------------------------------------------------------

    def skill_similarities(self, masked: str) -> dict[str, float]:
        """Best cosine of `masked` to each family's prototypes."""
        vec = self._encoder.encode([masked])[0]
        return {
            family: float(np.max(self._encoder.encode(list(protos)) @ vec))
            for family, protos in PROTOTYPES.items()
        }

    def skill_confidence(self, s: str, spans: list[_Span], family: str, cued: bool) -> float:
        sim = float(np.clip(self.skill_similarities(_mask(s, spans))[family], 0.0, 1.0))
        return 1.0 - (1.0 - sim) * (1.0 - CUE_WEIGHT) if cued else sim

    def nearest_kind(self, head: str) -> str | None:
        """The object kind an unseen noun names, if the embedding is clearly sure."""
        table = {k.name: [f"a {n}" for n in k.nouns] for k in KINDS.values()}
        return self._nearest(head, table, OBJECT_SYNONYM_MIN, OBJECT_SYNONYM_MARGIN)

    def nearest_place(self, head: str) -> str | None:
        """The place an unseen noun names ("wastebasket" -> trash_bin), if clearly sure."""
        table = {p.name: [f"a {n}" for n in p.nouns] for p in PLACES.values() if not p.name.endswith("_pad")}
        table[_ANY_PAD] = [f"a {n}" for n in _PAD_NOUNS]
        return self._nearest(head, table, PLACE_SYNONYM_MIN, PLACE_SYNONYM_MARGIN)

    def _nearest(self, head: str, table: dict[str, list[str]], low: float, margin: float) -> str | None:
        if not head:
            return None
        vec = self._encoder.encode([f"a {head}"])[0]
        scores = sorted(
            ((float(np.max(self._encoder.encode(phrases) @ vec)), name) for name, phrases in table.items()),
            reverse=True,
        )
        (best, name), (second, _) = scores[0], scores[1]
        return name if best >= low and best - second >= margin else None


def _mask(s: str, spans: list[_Span]) -> str:
    """Replace mentions by "object"/"place" so the embedding compares verbs, not nouns."""
    out, pos = [], 0
    for sp in sorted(spans, key=lambda x: x.start):
        if sp.start < pos:
            continue
        out.append(s[pos : sp.start])
        # The drawer as a thing to open stays "drawer"; as a destination it is a place like any.
        as_object = sp.value == "drawer" and not _TARGET_CONTEXT.search(s[: sp.start])
        out.append("drawer" if as_object else "place" if sp.is_place else "object")
        pos = sp.end
    out.append(s[pos:])
    masked = "".join(out)
    # Modifiers the catalog does not know ("the coke can", "the chip packet") are noun, not verb.
    masked = re.sub(rf"\b({_DET})\s+(?:[a-z'-]+\s+){{1,2}}?(object|place)\b", r"\1 \2", masked)
    return masked


class _Parse:
    """One grounding of one text: finds the command, its mentions, and builds the answer."""

    def __init__(self, grounder: Grounder, s: str, scene: _Scene) -> None:
        self.g = grounder
        self.scene = scene
        clauses = _clauses(s)
        negated = [(a, b) for a, b in clauses if _NEGATED_CLAUSE.match(s[a:b])]
        # The command starts at the first clause with a verb cue; what comes before is usually
        # a correction's preamble ("no, the blue one -", "that missed,", "try again:").
        start = 0
        for a, b in clauses:
            if (a, b) not in negated and (_find_cues(s[a:b], []) or _HOME_CUE.search(s[a:b])):
                start = a
                break
        self.s = s[start:]
        self.prefix = s[:start]
        self.negated = [(a - start, b - start) for a, b in negated if a >= start]
        self.cues = _find_cues(self.s, self.negated)
        nouns = _resolve_compounds(self.s, _scan_nouns(self.s))
        # Every mention, for masking; `spans` drops the negated ones ("not the bin").
        self.all_spans = sorted(nouns + _colour_only_mentions(self.s, nouns), key=lambda sp: sp.start)
        self.spans = [sp for sp in self.all_spans if not self._negated(sp)]

    def _negated(self, span: _Span) -> bool:
        return _inside(span.start, self.negated) or bool(_NEGATED_CONTEXT.search(self.s[: span.start]))

    # -- mentions ------------------------------------------------------------------------------

    def _before(self, span: _Span) -> str:
        return self.s[: span.start]

    def _object_spans(self) -> list[_Span]:
        return [sp for sp in self.spans if not sp.is_place and not _TARGET_CONTEXT.search(self._before(sp))]

    def _target_spans(self, directional_only: bool = False) -> list[_Span]:
        context = _DIRECTIONAL_CONTEXT if directional_only else _TARGET_CONTEXT
        return [sp for sp in self.spans if sp.is_place and context.search(self._before(sp))]

    def _drawer_as_object(self) -> bool:
        return any(sp.is_place and sp.value == "drawer" and not _TARGET_CONTEXT.search(self._before(sp))
                   for sp in self.spans)

    # -- the decision ----------------------------------------------------------------------------

    def ground(self) -> Grounding | Refusal:
        primary = self.cues[0] if self.cues else None
        if _HOME_CUE.search(self.s) and not self._object_spans():
            return self._finish("home", cued=True)
        if primary is None and self._target_spans() and not self._object_spans():
            # "no, in the trash": a correction that only says where the held thing goes.
            return self._place(None)
        if primary is None:
            return self._ground_by_embedding()
        family = primary.family
        if family in ("open", "close"):
            return self._drawer(family)
        if family in ("push", "pull", "move") and self._drawer_as_object():
            return self._drawer(self._drawer_action(family))
        if family == "pick":
            later_place = any(c.family in ("place", "trash") for c in self.cues[1:])
            if later_place or self._target_spans(directional_only=True):
                return self._place(primary)
            return self._pick(primary)
        if family in ("place", "trash"):
            return self._place(primary)
        # push, pull and move: a named place makes it a put, a way makes it a push.
        if self._target_spans(directional_only=True) and family != "pull":
            return self._place(primary)
        return self._push(primary)

    def _ground_by_embedding(self) -> Grounding | Refusal:
        masked = _mask(self.s, self.all_spans)
        if not set(re.findall(r"[a-z'-]+", masked)) - _NOT_A_VERB - _PHRASE_END:
            # Only names ("the blue bowl"): acting on a guessed verb would surprise the coach.
            return self._no_verb()
        sims = self.g.skill_similarities(masked)
        family = max(sims, key=sims.get)
        if sims[family] < SKILL_THRESHOLD:
            return self._unknown_skill()
        first_word = re.match(r"\s*[a-z'-]+", self.s)
        verb = _Cue(0, first_word.end() if first_word else 0, family)
        if family == "home" or family == "stop":
            return Grounding(family, None, None, None, sims[family])
        if family in ("open", "close"):
            return self._drawer(family, cued=False)
        if family == "pick":
            return self._pick(verb, cued=False)
        if family == "place":
            return self._place(verb, cued=False)
        return self._push(verb, cued=False)

    def _finish(self, family: str, cued: bool, **fields) -> Grounding | Refusal:
        """Build the Grounding once the arguments are known, or refuse a nonsense skill."""
        embed_family = "place" if family in ("put", "place") else family
        score = self.g.skill_confidence(self.s, self.all_spans, embed_family, cued)
        if score < SKILL_THRESHOLD:
            return self._unknown_skill()
        return Grounding(family, fields.get("object"), fields.get("target"), fields.get("direction"), score)

    def _no_verb(self) -> Refusal:
        if not self.spans:
            return self._unknown_skill()
        said = _said(self.spans[0])
        return Refusal(f"Say what to do with the {said}, e.g. 'pick up the {said}' or 'put the {said} in the "
                       f"{_place_label(self.scene.places[0]) if self.scene.places else 'tub'}'.")

    def _unknown_skill(self) -> Refusal:
        quoted = self.s if len(self.s) <= 40 else self.s[:37] + "..."
        return Refusal(
            f"I don't know how to '{quoted}'; I can pick up, put or place, push, open or close the "
            "drawer, go home, or stop, e.g. 'put the red cup in the tub'."
        )

    # -- skills ----------------------------------------------------------------------------------

    def _pick(self, verb: _Cue, cued: bool = True) -> Grounding | Refusal:
        obj = self._object(verb, "pick up", use_held=False)
        if isinstance(obj, Refusal):
            return obj
        return self._finish("pick", cued, object=obj.name)

    def _place(self, verb: _Cue | None, cued: bool = True) -> Grounding | Refusal:
        target = self._target(verb)
        where = f" in the {_place_label(target)}" if isinstance(target, str) else ""
        obj = self._object(verb, "put", use_held=True, where=where)
        if isinstance(obj, Refusal):
            return obj
        if isinstance(target, Refusal):
            return target
        if target is None:
            return Refusal(f"Say where to put the {obj.label}; places here: {self.scene.place_list()}.")
        skill = "place" if obj.name == self.scene.held else "put"
        return self._finish(skill, cued, object=obj.name, target=target)

    def _push(self, verb: _Cue, cued: bool = True) -> Grounding | Refusal:
        obj = self._object(verb, "push", use_held=False)
        if isinstance(obj, Refusal):
            return obj
        direction = self._direction()
        if direction is None:
            if verb.family == "move":
                return Refusal(
                    f"Say where to move the {obj.label}: into a place ({self.scene.place_list()}) "
                    "or left, right, forward or back."
                )
            return Refusal(f"Say which way to push the {obj.label}: left, right, forward or back.")
        return self._finish("push", cued, object=obj.name, direction=direction)

    def _drawer(self, action: str, cued: bool = True) -> Grounding | Refusal:
        if "drawer" not in self.scene.places:
            return Refusal(f"There's no drawer on this table, so I can't {action} it; places here: "
                           f"{self.scene.place_list()}.")
        others = [sp for sp in self.spans if sp.value != "drawer" and not _TARGET_CONTEXT.search(self._before(sp))]
        if others and not self._drawer_as_object():
            return Refusal(f"I can only {action} the drawer, not the {_said(others[0])}.")
        return self._finish(action, cued, object="drawer")

    def _drawer_action(self, family: str) -> str:
        m = re.search(r"\b(open|close|closed|shut)\b", self.s)
        if m:
            return "open" if m.group(1) == "open" else "close"
        if family == "pull" or re.search(r"\bout\b", self.s):
            return "open"
        return "close"

    def _direction(self) -> str | None:
        hits = [(m.start(), name) for name, pattern in _DIRECTION_CUES for m in pattern.finditer(self.s)]
        # The last one said wins: "push it left, no, right".
        return max(hits)[1] if hits else None

    # -- arguments ---------------------------------------------------------------------------------

    def _object(self, verb: _Cue | None, action: str, use_held: bool, where: str = "") -> SceneObject | Refusal:
        """The object the command is about, from a named mention, a synonym, or "it"."""
        spans = self._object_spans()
        if spans:
            return self._resolve(spans[0])
        phrase = _phrase_after(self.s, verb.end) if verb else _Phrase("", None, "", False, 0, 0)
        if phrase.head and not phrase.pronoun:
            return self._resolve_phrase(phrase)
        if phrase.colour:
            return self._resolve(_Span(0, 0, False, None, phrase.colour, phrase.text))
        # Nothing named: "it"/"that" or no object at all.
        if use_held:
            held = self.scene.held_object()
            if held is not None:
                return held
        earlier = self._prefix_object()
        if earlier is not None:
            return earlier
        if use_held and self.scene.held is None:
            return Refusal(f"I'm not holding anything; say which object to {action}{where}, "
                           f"e.g. '{action} the {self._example()}{where}'.")
        return Refusal(f"Say which object to {action}{where}; I can see {self.scene.object_list()}.")

    def _example(self) -> str:
        return self.scene.objects[0].label if self.scene.objects else "red cup"

    def _prefix_object(self) -> SceneObject | None:
        """An object named before the command ("the red cup - pick it up")."""
        if not self.prefix:
            return None
        nouns = _resolve_compounds(self.prefix, _scan_nouns(self.prefix))
        spans = [sp for sp in nouns + _colour_only_mentions(self.prefix, nouns)
                 if not sp.is_place and not _NEGATED_CONTEXT.search(self.prefix[: sp.start])]
        if not spans:
            return None
        found = self._resolve(max(spans, key=lambda sp: sp.start))
        return found if isinstance(found, SceneObject) else None

    def _resolve_phrase(self, phrase: _Phrase) -> SceneObject | Refusal:
        if phrase.head in _GENERIC_NOUNS or not phrase.head:
            if phrase.colour:
                return self._resolve(_Span(0, 0, False, None, phrase.colour, phrase.text))
            return self._unknown_object(phrase.text)
        # A place named where an object belongs: "pick up the tub".
        place = next((sp for sp in _scan_nouns(phrase.head) if sp.is_place), None)
        if place is not None:
            return Refusal(f"The {place.text} is a fixed place, not something I can move; "
                           f"I can see {self.scene.object_list()}.")
        kind = self.g.nearest_kind(phrase.head)
        if kind is None:
            return self._unknown_object(phrase.text)
        span = _Span(phrase.start, phrase.end, False, kind, phrase.colour, phrase.text)
        self.all_spans.append(span)  # so the skill's embedding sees "object", not "tumbler"
        return self._resolve(span)

    def _unknown_object(self, text: str) -> Refusal:
        return Refusal(f"I don't know which object '{text}' is; name one of: {self.scene.object_list()}.")

    def _resolve(self, span: _Span) -> SceneObject | Refusal:
        """Match a mention (kind and/or colour) to exactly one object of the scene."""
        found = [o for o in self.scene.objects
                 if (span.value is None or o.kind == span.value) and (span.colour is None or o.colour == span.colour)]
        if len(found) == 1:
            return found[0]
        said = " ".join(w for w in (span.colour, span.value) if w) or span.text
        if not found:
            if span.value is None:
                return Refusal(f"There's nothing {span.colour} on the table; I can see {self.scene.object_list()}.")
            return Refusal(f"There's no {said} on the table; I can see {self.scene.object_list()}.")
        options = _join([f"the {o.label}" for o in found], "or")
        return Refusal(f"Which {span.value or 'one'} do you mean: {options}?")

    def _target(self, verb: _Cue | None) -> str | Refusal | None:
        """The place to put something: a named place, an implied trash bin, a synonym, or None."""
        spans = self._target_spans()
        if spans:
            return self._resolve_place(spans[0])
        if any(c.family == "trash" for c in self.cues) or re.search(
            r"\b(?:throw|toss|chuck)\b(?:\s+[a-z'-]+){0,4}?\s+(?:away|out)\b", self.s
        ):
            return self._check_place("trash_bin", "trash bin")
        misplaced = [sp for sp in self.spans if not sp.is_place and _TARGET_CONTEXT.search(self._before(sp))]
        if misplaced:
            return Refusal(f"I can only put things in or on a place ({self.scene.place_list()}), "
                           f"not by the {_said(misplaced[0])}.")
        # A destination the catalog does not name: "in the wastebasket", "on the shelf".
        m = _UNKNOWN_DESTINATION.search(self.s, verb.end if verb else 0)
        words = list(itertools.takewhile(lambda w: w not in _PHRASE_END, m.group(1).split())) if m else []
        if not words:
            return None
        said = " ".join(words)
        name = self.g.nearest_place(said)
        if name is None:
            return Refusal(f"I don't know the place '{said}'; places here: {self.scene.place_list()}.")
        span = _Span(m.start(1), m.start(1) + len(said), True, name, None, said)
        self.all_spans.append(span)  # so the skill's embedding sees "place", not "wastebasket"
        return self._resolve_place(span)

    def _resolve_place(self, span: _Span) -> str | Refusal:
        if span.value is None:
            return Refusal(f"There's no {span.text} here; places here: {self.scene.place_list()}.")
        if span.value == _ANY_PAD:
            pads = [p for p in self.scene.places if p.endswith("_pad")]
            if len(pads) == 1:
                return pads[0]
            if not pads:
                return Refusal(f"There's no pad on this table; places here: {self.scene.place_list()}.")
            return Refusal(f"Which pad do you mean: {_join([_place_label(p) for p in pads], 'or')}?")
        return self._check_place(span.value, span.text)

    def _check_place(self, name: str, said: str) -> str | Refusal:
        if name in self.scene.places:
            return name
        return Refusal(f"There's no {said} on this table; places here: {self.scene.place_list()}.")
