"""Client-side action chunking: run a chunk open-loop for a while, then re-plan; optionally prefetch.

Each control tick the loop calls `step(observation, prompt)` and gets the action to execute, or
None, meaning hold still. A chunk is executed for `replan_after` steps, then a new one is asked
for. Synchronous mode asks and waits in the loop (right for a loop on a simulated clock, which
simply does not advance while it waits). Prefetch mode asks `prefetch_lead` steps early on a
worker thread, so a real-time robot never waits for a round trip (as LeRobot's async inference
does); the fresh chunk then replaces the rest of the old one, skipping the steps that ran while it
was in flight (actions actually executed, not ticks spent holding), since its first action
belongs to the observation it was computed from.
`new_subtask()` discards the queue and any reply in flight at once; an empty queue is never
refilled with stale actions: the robot holds. A failed request is never dropped: its error is
`last_error` even when the subtask it was for has been replaced. Every reply is checked (`chunk_check.check_chunk`)
against the action names `step` is given, so a chunk of the wrong width is never queued.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from policy_client.base_policy import BasePolicy
from policy_client.chunk_check import check_chunk
from policy_client.errors import PolicyError


@dataclass
class ChunkingConfig:
    replan_after: int = 5  # steps of a chunk executed open-loop before asking for the next
    prefetch: bool = False  # ask on a worker thread, ahead of time, instead of waiting in the loop
    prefetch_lead: int = 2  # in prefetch mode, ask this many steps before `replan_after` is reached


class ActionChunker:
    def __init__(self, policy: BasePolicy, config: ChunkingConfig | None = None):
        self.policy = policy
        self.config = config or ChunkingConfig()
        self._queue: deque[np.ndarray] = deque()
        self._served = 0  # actions popped since the current chunk was loaded
        self._generation = 0  # bumped on every subtask change; older replies are discarded
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-prefetch") if self.config.prefetch else None
        self._pending: Future | None = None
        self._pending_generation = -1
        self._pending_step = 0
        self._popped = 0  # actions executed so far, to know how far the robot moved while a request flew
        self.last_error: Exception | None = None
        self.last_info: dict[str, Any] = {}
        self.last_round_trip_ms: float | None = None
        self.chunks_received = 0
        self._expect: tuple[Sequence[str] | None, str | None] = (None, None)  # (action names, mode) replies must fit

    def new_subtask(self) -> None:
        """Drop every action meant for the previous subtask, including a reply still in flight."""
        self._queue.clear()
        self._served = 0
        self._generation += 1
        self.last_info = {}

    def step(self, observation: dict[str, Any], prompt: dict[str, Any], action_names: Sequence[str] | None = None,
             mode: str | None = None) -> np.ndarray | None:
        """The action to execute this tick (shape (A,)), or None to hold. `action_names` (the robot's,
        in control mode `mode`) is what every reply's chunk must be as wide as; a reply that is not
        is refused (`last_error`, code bad_chunk) and nothing of it runs."""
        self._expect = (action_names, mode)
        self._collect_prefetched()
        if self.config.prefetch:
            if self._pending is None and self._wants_chunk(lead=self.config.prefetch_lead):
                self._pending = self._pool.submit(self._request, observation, prompt)
                self._pending_generation, self._pending_step = self._generation, self._popped
        elif self._wants_chunk(lead=0):
            try:
                self._load(self._request(observation, prompt), skip=0)
            except (PolicyError, ValueError) as e:
                self.last_error = e
        if not self._queue:
            return None
        self._served += 1
        self._popped += 1
        return self._queue.popleft()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    # -- internals --------------------------------------------------------------------------
    def _wants_chunk(self, lead: int) -> bool:
        return len(self._queue) <= lead or self._served >= self.config.replan_after - lead

    def _request(self, observation: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        reply = self.policy.infer(observation, prompt)
        self.last_round_trip_ms = (time.perf_counter() - start) * 1e3
        return reply

    def _collect_prefetched(self) -> None:
        if self._pending is None or not self._pending.done():
            return
        future, self._pending = self._pending, None
        error = future.exception()
        if error is not None:
            # Shown even when the request was for an earlier subtask: a dead VLA fails every request,
            # and dropping the failures of superseded ones kept its light green (issue 22, fault 5).
            self.last_error = error
            return
        if self._pending_generation != self._generation:
            return  # a good reply, but for an earlier subtask
        try:
            self._load(future.result(), skip=self._popped - self._pending_step)
        except Exception as e:  # whatever went wrong over there, the loop holds and shows it
            self.last_error = e

    def _load(self, reply: dict[str, Any], skip: int) -> None:
        chunk = check_chunk(reply.get("actions"), *self._expect)
        self._queue = deque(chunk[skip:])
        self._served = 0
        self.last_info = reply.get("info", {})
        self.last_error = None
        self.chunks_received += 1
