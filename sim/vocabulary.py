"""The words of a coach's subtask language, as the sim's grounding reads them.

It owns what words mean: the skill and direction names, the prototype phrasings per skill that
the sentence encoder compares a command with, the verb cues (stop, home, pick, place, push, ...)
and direction cues, the function words (determiners, pronouns, prepositions, words that end a
noun phrase), the noun table that maps the nouns, colours and places of the catalog
(`sim.objects`) to what they name, and the phrasings an unseen synonym ("tumbler",
"wastebasket") is matched against. It holds words and patterns only: finding them in a text is
`sim.spans`, using them is `sim.parse` and `sim.grounding`.
"""

from __future__ import annotations

import re

from sim.objects import COLOURS, KINDS, PLACES

SKILLS = ("pick", "place", "put", "open", "close", "push", "home", "stop")
DIRECTIONS = ("left", "right", "forward", "back")

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

COLOUR_RE = "|".join(COLOURS)  # a regex alternative of the catalog's colour words
DET = r"(?:the|a|an|this|that|these|those|your|my|its|their|our|some)"

# Stop beats everything wherever it appears: refusing or delaying a stop is never the safe choice.
STOP_CUE = re.compile(
    r"(?<!n't )(?<!not )\b(?:stop|halt|freeze|abort|pause|cease|hold (?:still|on|it right there)"
    r"|stay (?:still|put)|stand still|(?:don'?t|do not) move|quit moving)\b"
)
HOME_CUE = re.compile(
    r"\bhome\b|\breset (?:the |your )?arm\b|\bretract\b"
    r"|\b(?:rest|resting|start|starting|initial|neutral|ready|default)\s+(?:position|pose|posture|configuration)\b"
    r"|\bback to (?:the )?(?:rest|start|beginning)\b|\bto rest\b"
)
# Verb cues in the base (imperative) form, so "you dropped it" or "that missed" never fire.
# Families: pick, place (put/place), trash (place into the trash bin even without naming it),
# push, pull (a drawer, or a push towards the coach), move (put with a place, push with a way),
# open, close.
VERB_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
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
# "throw the red cup away": the trash bin, even with the object between verb and particle.
THROW_AWAY = re.compile(r"\b(?:throw|toss|chuck)\b(?:\s+[a-z'-]+){0,4}?\s+(?:away|out)\b")

DIRECTION_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("left", re.compile(r"\bleft(?:wards?)?\b")),
    ("right", re.compile(r"(?<!all )(?<!that's )\bright(?:wards?)?\b(?! (?:now|away|there|here|then)\b)")),
    ("forward", re.compile(r"\bforwards?\b|\bahead\b|\baway\b|\bfurther\b|\bfarther\b")),
    ("back", re.compile(r"\bback(?:wards?)?\b|\btowards? (?:me|us|the camera)\b|\bcloser\b|\bnearer\b")),
)
# Words that say which way a drawer goes when it is pushed, pulled or moved.
DRAWER_WAY = re.compile(r"\b(open|close|closed|shut)\b")

TARGET_PREP = r"(?:on top of|in to|on to|into|inside|onto|in|on|to|at|over|towards?|within)"
# Directional prepositions say where something goes; "the cup in the tub" only says where it is.
DIRECTIONAL_PREP = r"(?:in to|on to|into|onto|to|towards?)"

GENERIC_NOUNS = frozenset({"one", "ones", "thing", "things", "object", "objects", "item", "items",
                           "stuff", "something", "anything", "everything"})
PRONOUNS = frozenset({"it", "that", "this", "them", "these", "those", "one"})
DETERMINERS = frozenset({"the", "a", "an", "this", "that", "these", "those", "your", "my", "its",
                         "their", "our", "some"})
# Words that end the noun phrase after a verb ("grab the tumbler [from] ...").
PHRASE_END = frozenset({
    "in", "into", "inside", "on", "onto", "to", "toward", "towards", "at", "from", "off", "out", "over",
    "under", "next", "near", "with", "by", "for", "and", "then", "but", "so", "or", "up", "down",
    "away", "back", "please", "again", "instead", "now", "too", "there", "here", "left", "right",
    "forward", "forwards", "backward", "backwards", "ahead", "bit", "little", "carefully",
    "gently", "slowly", "quickly", "of",
})
# Words that are never the verb of a command (what is left of "no, the blue one" once masked).
NOT_A_VERB = DETERMINERS | {"object", "place", "drawer", "now", "ok", "okay", "please", "again", "and",
                            "then", "too", "just", "hey", "robot", "so", "next", "also", "instead",
                            "no", "not", "nope", "wrong", "one", "it", "yes", "yeah", "oops", "sorry"}
PAD_NOUNS = ("pad", "square", "mat", "zone")
ANY_PAD = "*pad"  # a pad whose colour the text did not say


def _noun_table() -> list[tuple[str, bool, str]]:
    """(noun, is_place, kind or place name), longest first so "dish bin" wins over "dish"."""
    table = [(n, False, k.name) for k in KINDS.values() for n in k.nouns]
    table += [(n, True, p.name) for p in PLACES.values() for n in p.nouns]
    table += [(n, True, ANY_PAD) for n in PAD_NOUNS]
    return sorted(table, key=lambda row: (-len(row[0].split()), -len(row[0])))


NOUNS: tuple[tuple[str, bool, str], ...] = tuple(_noun_table())

# What an unseen noun is compared with: "a mug" for the kind cup, "a bin" for the trash bin. The
# coloured pads share one entry (ANY_PAD): their nouns differ only by a colour word.
KIND_PHRASES: dict[str, tuple[str, ...]] = {k.name: tuple(f"a {n}" for n in k.nouns) for k in KINDS.values()}
PLACE_PHRASES: dict[str, tuple[str, ...]] = {
    **{p.name: tuple(f"a {n}" for n in p.nouns) for p in PLACES.values() if not p.name.endswith("_pad")},
    ANY_PAD: tuple(f"a {n}" for n in PAD_NOUNS),
}


def kind_of_word(word: str) -> str | None:
    """The object kind whose noun ends in `word` (singular or plural: "can", "cans"), else None."""
    for kind in KINDS.values():
        for noun in kind.nouns:
            if noun.split()[-1] in (word, re.sub(r"e?s$", "", word)):
                return kind.name
    return None
