"""Grounding of a coach's free-form subtask to one skill of the sim skill policy.

It owns the `Grounder`: it matches the `Intent` that `sim.parse` reads from text such as "oops,
put it in the trash instead" against the objects and places of the current scene and answers a
`Grounding` (skill, object, target place, push direction, confidence), or a `Refusal` whose one
sentence tells the coach what to type instead (nothing named, two matches, no such place, ...).

How: the sentence encoder (`coaching.text_encoder`) scores the skill: a skill named by a verb
cue is checked against the embedding's similarity to prototype phrasings, and the embedding
alone chooses when no cue fires; nouns the catalog does not list ("tumbler", "wastebasket") are
matched to a kind or place by the embedding when it is clearly sure. The words are
`sim.vocabulary`, finding them in text is `sim.spans`. Only the stand-in VLA uses this: a real
VLA reads the subtask text itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from coaching.text_encoder import SentenceEncoder, default_encoder
from sim.objects import SceneObject
from sim.parse import Intent, parse
from sim.spans import Span, scan_nouns
from sim.vocabulary import ANY_PAD, DIRECTIONS, GENERIC_NOUNS, KIND_PHRASES, PLACE_PHRASES, PROTOTYPES, SKILLS

__all__ = ["DIRECTIONS", "SKILLS", "Grounder", "Grounding", "Refusal"]

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
        """Ground `text` against a scene: its `objects`, its place names and the object name held.

        Never raises for any text: empty, overlong (over MAX_CHARS), unclear or impossible
        subtasks come back as a `Refusal` with one sentence for the coach.
        """
        if not text or not text.strip():
            return Refusal("The subtask is empty; type what the robot should do, e.g. 'pick up the red cup'.")
        if len(text) > MAX_CHARS:
            return Refusal(
                f"The subtask is {len(text)} characters long; keep it to one short instruction "
                f"(under {MAX_CHARS} characters), e.g. 'put the red cup in the tub'."
            )
        return _Match(self, parse(text), _Scene(objects, places, held)).ground()

    # -- embeddings --------------------------------------------------------------------------

    def skill_similarities(self, masked: str) -> dict[str, float]:
        """Best cosine of `masked` (text with its mentions masked) to each family's prototypes."""
        vec = self._encoder.encode([masked])[0]
        return {
            family: float(np.max(self._encoder.encode(list(protos)) @ vec))
            for family, protos in PROTOTYPES.items()
        }

    def skill_confidence(self, masked: str, family: str, cued: bool) -> float:
        """Confidence 0..1 that `masked` asks for the prototype `family`, a verb cue counting if `cued`."""
        sim = float(np.clip(self.skill_similarities(masked)[family], 0.0, 1.0))
        return 1.0 - (1.0 - sim) * (1.0 - CUE_WEIGHT) if cued else sim

    def nearest_kind(self, head: str) -> str | None:
        """The object kind an unseen noun names, if the embedding is clearly sure."""
        return self._nearest(head, KIND_PHRASES, OBJECT_SYNONYM_MIN, OBJECT_SYNONYM_MARGIN)

    def nearest_place(self, head: str) -> str | None:
        """The place an unseen noun names ("wastebasket" -> trash_bin; any pad -> ANY_PAD), if clearly sure."""
        return self._nearest(head, PLACE_PHRASES, PLACE_SYNONYM_MIN, PLACE_SYNONYM_MARGIN)

    def _nearest(self, head: str, table: dict[str, tuple[str, ...]], low: float, margin: float) -> str | None:
        if not head:
            return None
        vec = self._encoder.encode([f"a {head}"])[0]
        scores = sorted(
            ((float(np.max(self._encoder.encode(phrases) @ vec)), name) for name, phrases in table.items()),
            reverse=True,
        )
        (best, name), (second, _) = scores[0], scores[1]
        return name if best >= low and best - second >= margin else None


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


def _into(name: str) -> str:
    """' on the red pad' / ' in the tub': a pad is a surface, the rest are containers."""
    return f" {'on' if name.endswith('_pad') else 'in'} the {_place_label(name)}"


class _Match:
    """One grounding of one intent against one scene: resolves what it names, or refuses."""

    def __init__(self, grounder: Grounder, intent: Intent, scene: _Scene) -> None:
        self.g = grounder
        self.intent = intent
        self.scene = scene
        # Mentions resolved by synonym ("tumbler"), so the skill's embedding sees "object" there.
        self.synonyms: list[Span] = []

    # -- the decision ----------------------------------------------------------------------------

    def ground(self) -> Grounding | Refusal:
        if self.intent.skill == "stop":
            # No embedding for a stop: it must be instant, and it is never refused.
            return Grounding("stop", None, None, None, 1.0)
        if self.intent.skill is None:
            return self._ground_by_embedding()
        return self._skill(self.intent.skill, cued=True)

    def _ground_by_embedding(self) -> Grounding | Refusal:
        if self.intent.verbless:
            return self._no_verb()
        sims = self.g.skill_similarities(self.intent.masked())
        family = max(sims, key=sims.get)
        if sims[family] < SKILL_THRESHOLD:
            return self._unknown_skill()
        if family == "home" or family == "stop":
            return Grounding(family, None, None, None, sims[family])
        return self._skill(family, cued=False)

    def _skill(self, family: str, cued: bool) -> Grounding | Refusal:
        if family == "home":
            return self._finish("home", cued)
        if family in ("open", "close"):
            return self._drawer(family, cued)
        if family == "pick":
            return self._pick(cued)
        if family == "place":
            return self._place(cued)
        return self._push(cued)

    def _finish(self, family: str, cued: bool, **fields) -> Grounding | Refusal:
        """Build the Grounding once the arguments are known, or refuse a nonsense skill."""
        embed_family = "place" if family in ("put", "place") else family
        score = self.g.skill_confidence(self.intent.masked(self.synonyms), embed_family, cued)
        if score < SKILL_THRESHOLD:
            return self._unknown_skill()
        return Grounding(family, fields.get("object"), fields.get("target"), fields.get("direction"), score)

    def _no_verb(self) -> Refusal:
        if not self.intent.spans:
            return self._unknown_skill()
        said = self.intent.spans[0].said()
        return Refusal(f"Say what to do with the {said}, e.g. 'pick up the {said}' or 'put the {said} in the "
                       f"{_place_label(self.scene.places[0]) if self.scene.places else 'tub'}'.")

    def _unknown_skill(self) -> Refusal:
        s = self.intent.text
        quoted = s if len(s) <= 40 else s[:37] + "..."
        return Refusal(
            f"I don't know how to '{quoted}'; I can pick up, put or place, push, open or close the "
            "drawer, go home, or stop, e.g. 'put the red cup in the tub'."
        )

    # -- skills ----------------------------------------------------------------------------------

    def _pick(self, cued: bool) -> Grounding | Refusal:
        obj = self._object("pick up", use_held=False)
        if isinstance(obj, Refusal):
            return obj
        return self._finish("pick", cued, object=obj.name)

    def _place(self, cued: bool) -> Grounding | Refusal:
        target = self._target()
        where = _into(target) if isinstance(target, str) else ""
        obj = self._object("put", use_held=True, where=where, place=target if isinstance(target, str) else None)
        if isinstance(obj, Refusal):
            return obj
        if isinstance(target, Refusal):
            return target
        if target is None:
            return Refusal(f"Say where to put the {obj.label}; places here: {self.scene.place_list()}.")
        skill = "place" if obj.name == self.scene.held else "put"
        return self._finish(skill, cued, object=obj.name, target=target)

    def _push(self, cued: bool) -> Grounding | Refusal:
        obj = self._object("push", use_held=False)
        if isinstance(obj, Refusal):
            return obj
        direction = self.intent.direction
        if direction is None:
            if self.intent.verb == "move":
                return Refusal(
                    f"Say where to move the {obj.label}: into a place ({self.scene.place_list()}) "
                    "or left, right, forward or back."
                )
            return Refusal(f"Say which way to push the {obj.label}: left, right, forward or back.")
        return self._finish("push", cued, object=obj.name, direction=direction)

    def _drawer(self, action: str, cued: bool) -> Grounding | Refusal:
        if "drawer" not in self.scene.places:
            return Refusal(f"There's no drawer on this table, so I can't {action} it; places here: "
                           f"{self.scene.place_list()}.")
        if self.intent.not_drawer is not None:
            return Refusal(f"I can only {action} the drawer, not the {self.intent.not_drawer.said()}.")
        return self._finish(action, cued, object="drawer")

    # -- arguments ---------------------------------------------------------------------------------

    def _object(self, action: str, use_held: bool, where: str = "", place: str | None = None) -> SceneObject | Refusal:
        """The object the command is about, from a named mention, a synonym, or "it"."""
        if self.intent.objects:
            return self._resolve(self.intent.objects[0])
        phrase = self.intent.phrase
        if phrase.head and not phrase.pronoun:
            return self._resolve_phrase()
        if phrase.colour:
            return self._resolve(Span(0, 0, False, None, phrase.colour, phrase.text))
        # Nothing named: "it"/"that" or no object at all.
        if use_held:
            held = self.scene.held_object()
            if held is not None:
                return held
        if self.intent.earlier is not None:
            earlier = self._resolve(self.intent.earlier)
            if isinstance(earlier, SceneObject):
                return earlier
        if use_held and self.scene.held is None:
            return Refusal(f"I'm not holding anything; say which object to {action}{where}, "
                           f"e.g. '{action} the {self._example(place)}{where}'.")
        return Refusal(f"Say which object to {action}{where}; I can see {self.scene.object_list()}.")

    def _example(self, place: str | None = None) -> str:
        """An item of the scene to show in an example: for a coloured pad, one of the pad's colour."""
        matching = [o for o in self.scene.objects if place and place.startswith(o.colour + "_")]
        return (matching or self.scene.objects)[0].label if self.scene.objects else "red cup"

    def _resolve_phrase(self) -> SceneObject | Refusal:
        """The object the words after the verb name when no catalog noun did ("the tumbler")."""
        phrase = self.intent.phrase
        if phrase.head in GENERIC_NOUNS or not phrase.head:
            if phrase.colour:
                return self._resolve(Span(0, 0, False, None, phrase.colour, phrase.text))
            return self._unknown_object(phrase.text)
        # A place named where an object belongs: "pick up the tub".
        place = next((sp for sp in scan_nouns(phrase.head) if sp.is_place), None)
        if place is not None:
            return Refusal(f"The {place.text} is a fixed place, not something I can move; "
                           f"I can see {self.scene.object_list()}.")
        kind = self.g.nearest_kind(phrase.head)
        if kind is None:
            return self._unknown_object(phrase.text)
        span = Span(phrase.start, phrase.end, False, kind, phrase.colour, phrase.text)
        self.synonyms.append(span)
        return self._resolve(span)

    def _unknown_object(self, text: str) -> Refusal:
        return Refusal(f"I don't know which object '{text}' is; name one of: {self.scene.object_list()}.")

    def _resolve(self, span: Span) -> SceneObject | Refusal:
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

    def _target(self) -> str | Refusal | None:
        """The place to put something: a named place, an implied trash bin, a synonym, or None."""
        if self.intent.targets:
            return self._resolve_place(self.intent.targets[0])
        if self.intent.trash:
            return self._check_place("trash_bin", "trash bin")
        if self.intent.misplaced:
            return Refusal(f"I can only put things in or on a place ({self.scene.place_list()}), "
                           f"not by the {self.intent.misplaced[0].said()}.")
        # A destination the catalog does not name: "in the wastebasket", "on the shelf".
        destination = self.intent.destination
        if destination is None:
            return None
        name = self.g.nearest_place(destination.text)
        if name is None:
            return Refusal(f"I don't know the place '{destination.text}'; places here: {self.scene.place_list()}.")
        span = dataclasses.replace(destination, value=name)
        self.synonyms.append(span)
        return self._resolve_place(span)

    def _resolve_place(self, span: Span) -> str | Refusal:
        if span.value is None:
            return Refusal(f"There's no {span.text} here; places here: {self.scene.place_list()}.")
        if span.value == ANY_PAD:
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
