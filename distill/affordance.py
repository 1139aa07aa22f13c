"""Asking the low-level VLA, before a subtask is sent, what it would do with it right now.

The high-level policy chooses among phrasings it learned from the logs, and two blind spots cost
autonomous episodes most: at 64 pixels it cannot tell which items are on the table, and its text
encoder cannot tell "lift the green bowl" from "lift the orange bowl" any better than from "get
the green bowl", so an item already put away comes back under another phrasing. The VLA knows
both: it refuses what it cannot do now, and two phrasings of one subtask make it do the same
thing. So, as SayCan checks an LLM's choices against what the skills can do, the driver probes
the VLA with the current observation (`infer`, no action taken) before it switches subtask:

- a choice the VLA refuses now is out at once, without spending robot time on it;
- a choice whose action chunk matches that of an earlier subtask of the episode (its
  *behavioural twin*, e.g. the same item by another name) is scored as that earlier phrasing,
  the one the policy's history remembers; if the policy still wants it, the earlier phrasing is
  sent, so the history stays literal.

Twins are chunks within `tolerance` (max absolute difference, in action units) of each other. The
default is measured on the sim skill policy: paraphrases differ by at most 0.06 (its grasp noise),
different items by at least 0.10. A lab measures its VLA the same way (one phrasing probed twice
against two items) and sets `--twin-tolerance`; a VLA that samples its chunks needs a wider one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from distill.high_level import DONE, Decision, Exclusions
from policy_client import BasePolicy

TWIN_TOLERANCE = 0.08


@dataclass
class AffordanceConfig:
    twin_tolerance: float = TWIN_TOLERANCE
    max_candidates: int = 8  # choices the VLA would do that are weighed per decision, best first
    max_refusals: int = 64  # choices it refuses, per decision (each is one cheap `infer`)
    min_probability: float = 0.02  # choices the policy gives less than this are not taken


class AffordanceCheck:
    """Probes `low_level` with one observation; each text is probed at most once."""

    def __init__(self, low_level: BasePolicy, observation: dict[str, Any], prompt: dict[str, Any],
                 config: AffordanceConfig | None = None):
        self.low_level, self.observation = low_level, observation
        # a question, no action taken: a stateful VLA must not remember it (docs/protocol.md)
        self.prompt = {**prompt, "segment": "probe", "probe": True}
        self.config = config or AffordanceConfig()
        self._chunks: dict[str, np.ndarray | None] = {}

    def chunk(self, text: str) -> np.ndarray | None:
        """The action chunk the VLA would start `text` with now; None when it refuses."""
        if text not in self._chunks:
            reply = self.low_level.infer(self.observation, {**self.prompt, "subtask": text})
            refused = bool((reply.get("info") or {}).get("refused"))
            self._chunks[text] = None if refused else np.asarray(reply["actions"], dtype=np.float32)
        return self._chunks[text]

    def twin(self, text: str, earlier: list[str]) -> str | None:
        """The most recent of `earlier` the VLA would treat as `text` (the same chunk), if any."""
        mine = self.chunk(text)
        if mine is None:
            return None
        if self._still(mine):  # holding still says nothing about what the text means
            return None
        for other in reversed(earlier):
            theirs = self.chunk(other) if other != text else None
            if theirs is not None and theirs.shape == mine.shape and \
                    float(np.max(np.abs(theirs - mine), initial=0.0)) < self.config.twin_tolerance:
                return other
        return None

    def _still(self, chunk: np.ndarray) -> bool:
        """A chunk that does not change over its horizon: the VLA holds (absolute or delta actions alike)."""
        return chunk.ndim != 2 or float(np.max(np.ptp(chunk, axis=0), initial=0.0)) <= self.config.twin_tolerance


def checked_decision(decision: Decision, history: list[str], check: AffordanceCheck,
                     same: Callable[[str, str], bool], active: str | None = None) -> tuple[Decision, list[str]]:
    """The decision after asking the VLA (see the module docstring), and the choices it refused.

    Walks the ranked choices best first: a refused one is dropped; one with a behavioural twin
    earlier in `history` counts with the twin's probability, and wins (as the twin's phrasing)
    only if that still beats the next choice. `done` is never probed. Choices the policy gives
    less than `min_probability` are not taken: when the likely ones are all refused (a place
    while the pick is still under way), the `active` subtask goes on if the VLA can still do it,
    rather than whatever unlikely subtask it can ("close the drawer" with items left). Else the
    decision stands as it was, and the driver's refusals go on down the list. (Holding instead
    was tried: the items really on the table were often among the unlikely choices, and drawer
    episodes stalled after "open the drawer".)"""
    cfg = check.config
    ranked = [(decision.subtask, decision.confidence), *decision.alternatives]
    earlier = list(dict.fromkeys(h for h in history if h != DONE))
    refused: list[str] = []
    weighed = 0
    for i, (text, p) in enumerate(ranked):
        if text == DONE:
            return _chosen(DONE, p, ranked, refused, decision.to_go), refused
        if weighed >= cfg.max_candidates or len(refused) >= cfg.max_refusals or p < cfg.min_probability:
            break
        if check.chunk(text) is None:
            refused.append(text)
            continue
        weighed += 1
        twin = check.twin(text, [h for h in earlier if not same(h, text)])
        if twin is None:
            return _chosen(text, p, ranked, refused, decision.to_go), refused
        twin_p = max((q for t, q in ranked if same(t, twin)), default=0.0)
        next_p = ranked[i + 1][1] if i + 1 < len(ranked) else 0.0
        if twin_p >= next_p:
            return _chosen(twin, twin_p, ranked, refused, decision.to_go), refused
    if active is not None and active != DONE and check.chunk(active) is not None:
        keep = max((q for t, q in ranked if same(t, active)), default=0.0)
        return _chosen(active, keep, ranked, refused, decision.to_go), refused
    return decision, refused


def ask_vla(decision: Decision, active: str | None, history: list[str], low_level: BasePolicy,
            observation: dict[str, Any], prompt: dict[str, Any], config: AffordanceConfig | None,
            same: Callable[[str, str], bool], exclusions: Exclusions, now: float) -> Decision:
    """`checked_decision` where the decision would switch subtask (nothing to ask otherwise, or with
    `config` None); what the VLA refuses is kept out of the choices as refused at once. Shared by
    `coachlab play` and the app's runner."""
    if config is None or decision.done or decision.subtask == active:
        return decision
    checked, refused = checked_decision(decision, history, AffordanceCheck(low_level, observation, prompt, config), same,
                                        active if active not in exclusions.current(now) else None)
    for text in refused:
        exclusions.refused(text, now, ran=False)
    return checked


def _chosen(text: str, p: float, ranked: list[tuple[str, float]], refused: list[str], to_go: float | None) -> Decision:
    return Decision(text, p, [(t, q) for t, q in ranked if t != text and t not in refused], to_go)
