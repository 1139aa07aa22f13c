"""Training situations for the high-level policy, replayed from coaching logs.

It owns turning logged episodes into what the network learns from, through storage's query API
and the `Detector` seam only (never the sim's `env_state`):

1. `read_episode`: per episode, the subtasks (normalized text, time issued, time ended, outcome,
   mistake flag), the proprio states and the detections of every sampled step (the detector runs
   on the stored frames, cached by `distill.detections`).
2. `fit_vocabulary`: from all training episodes, the lexicon (which label a phrase names), the
   templates of every subtask, the subtask groups by where their successful segments ended, the
   state normalisation and the release states (`distill/phrasing.py`, `distill/features.py`).
3. `replay`: each episode is replayed through the same `EpisodeMemory` the policy keeps at run
   time, at `sample_hz`. Around each subtask's issue it makes *switch* situations (the history
   before it, the previous subtask taken as finished, the target this subtask); inside a subtask
   *continue* situations (the history up to it, not finished); after each subtask *waiting*
   situations (the robot holding still, then the next subtask); at the final state of a successful
   episode `done` situations. The history is kept as the policy keeps it at run time (`issued`). Labelling rules are in docs/distill.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from coaching.detector import Detection, Detector
from coaching.high_level import DONE
from distill.dataset import DistillError, normalize_subtask, step_period
from distill.features import RELEASE_STATES, Features, Featurizer, Vocabulary, done_last
from distill.memory import EpisodeMemory, issued
from distill.phrasing import Lexicon, SubtaskGroups, ground, object_phrase, words


WAITS = 4  # situations of the robot holding still after a subtask finished, 0.5 s apart (see `_waiting`)
# After a failed attempt the robot may hold still until the driver retries (up to ~5 s); and failed
# attempts are rare in expert logs (7% of grasps miss), so they get more such situations. Any outcome
# but success counts here, so a policy run's logged segments ("superseded", "taken over") get them too.
WAITS_AFTER_FAILURE = 12


@dataclass
class LoggedSubtask:
    text: str  # normalized
    issued_t: float
    ended_t: float  # when the next one was issued, or the episode ended
    outcome: str | None
    mistake: bool
    end_row: int  # the step row it ended at


@dataclass
class LoggedEpisode:
    id: int
    task: str
    success: bool
    metadata: dict[str, Any]
    subtasks: list[LoggedSubtask]
    rows: np.ndarray  # the sampled step rows
    t: np.ndarray  # (N,) time of every step, s
    state: np.ndarray  # (N, D)
    detections: dict[int, list[Detection]]  # sampled row -> detections
    image_sizes: dict[str, tuple[int, int]]

    def labels(self, min_seen: int = 2) -> list[str]:
        """The labels the detector reported on at least `min_seen` sampled steps of the episode."""
        counts: dict[str, int] = {}
        for dets in self.detections.values():
            for label in {d.label for d in dets}:
                counts[label] = counts.get(label, 0) + 1
        return sorted(l for l, c in counts.items() if c >= min_seen)


@dataclass
class Situation:
    features: Features
    target: int | None  # index into the network's next logits, None: no next target
    finished: float | None  # 1: the active subtask is finished, 0: not, None: no active subtask
    kind: str  # switch | continue | waiting | done
    episode_id: int
    target_text: str = ""


@dataclass
class ReplayStats:
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def read_episode(episode: Any, detector: Detector, cache_dir: str | None, sample_hz: float) -> LoggedEpisode | None:
    """One loaded episode (`storage.episodes.EpisodeRecord`) as a `LoggedEpisode`; None when it has
    no steps or subtasks."""
    from distill.detections import episode_detections

    steps = episode.steps()
    segments = sorted(episode.segments, key=lambda g: g.ordinal)
    if len(steps) == 0 or not segments or steps.state.dtype == object:
        return None
    dt = step_period(steps.t)
    stride = max(1, int(round(1.0 / (sample_hz * (dt if dt > 0 else 0.1)))))
    detections_by_index = episode_detections(episode, detector, cache_dir, every=stride)
    row_of = {int(i): j for j, i in enumerate(steps.index)}
    detections = {row_of[i]: d for i, d in detections_by_index.items() if i in row_of}
    last = len(steps) - 1
    if detections and last not in detections:  # the final state is where `done` is learnt
        detections[last] = detections[max(detections)]
    rows = np.array(sorted(detections), dtype=np.int64)
    t = np.asarray(steps.t, dtype=np.float64)
    subtasks = []
    for i, g in enumerate(segments):
        nxt = segments[i + 1].issued_at if i + 1 < len(segments) else float(t[-1])
        end_row = row_of.get(int(g.last_step), int(np.searchsorted(t, nxt))) if g.last_step is not None \
            else int(np.searchsorted(t, nxt))
        subtasks.append(LoggedSubtask(normalize_subtask(g.text), float(g.issued_at), float(nxt), g.outcome,
                                      bool(g.mistake), min(end_row, len(t) - 1)))
    h, w = (episode.robot.get("image_size") or (224, 224))[:2]
    cameras = sorted(c for c, k in episode.cameras().items() if k > 0)
    return LoggedEpisode(episode.id, episode.summary.task, episode.summary.status == "success",
                         {"speed": episode.metadata.get("speed"), "quality": episode.metadata.get("quality"),
                          "mistake": bool(episode.metadata.get("mistake", False))},
                         subtasks, rows, t, np.nan_to_num(np.asarray(steps.state, dtype=np.float32)), detections,
                         {c: (int(h), int(w)) for c in cameras})


def fit_vocabulary(episodes: Sequence[LoggedEpisode], cameras: list[str]) -> Vocabulary:
    """The lexicon, subtask groups, state normalisation and release states of the training episodes."""
    phrases = []
    for ep in episodes:
        labels = ep.labels()
        for s in ep.subtasks:
            span = object_phrase(s.text)
            if span is not None:
                phrases.append((" ".join(words(s.text)[span[0]:span[1]]), labels))
    lexicon = Lexicon.fit(phrases)
    states = np.concatenate([ep.state[ep.rows] for ep in episodes])
    mean, std = states.mean(0), np.maximum(states.std(0), 1e-3)
    counts: dict[str, int] = {}
    ends: dict[str, list[np.ndarray]] = {}
    for ep in episodes:
        labels = ep.labels()
        for s in ep.subtasks:
            if not s.text or s.mistake:
                continue
            tpl, _ = ground(s.text, labels, lexicon)
            counts[tpl] = counts.get(tpl, 0) + 1
            if s.outcome == "success":
                ends.setdefault(tpl, []).append((ep.state[s.end_row] - mean) / std)
    if not counts:
        raise DistillError("The selected episodes have no subtasks to learn from: coach a few episodes first.")
    groups = done_last(SubtaskGroups.fit(ends, counts))
    release: dict[str, list[list[float]]] = {}
    rng = np.random.default_rng(0)
    for g, members in enumerate(groups.groups):
        pts = [p for tpl in members for p in ends.get(tpl, [])]
        if pts:
            keep = rng.permutation(len(pts))[:RELEASE_STATES]
            release[str(g)] = [np.round(pts[i], 4).tolist() for i in keep]
    return Vocabulary(groups, lexicon, cameras, mean.tolist(), std.tolist(), release)


def replay(ep: LoggedEpisode, featurizer: Featurizer, stats: ReplayStats,
           switch_window: tuple[float, float] = (0.6, 1.6)) -> list[Situation]:
    """The situations of one logged episode (see the module docstring)."""
    from distill.features import MAX_TRACKS

    memory: EpisodeMemory = featurizer.memory()
    labels = ep.labels()
    G = len(featurizer.vocab.groups.groups)
    subtasks = ep.subtasks
    issued_t = np.array([s.issued_t for s in subtasks])
    last_row = int(ep.rows[-1]) if len(ep.rows) else -1
    out: list[Situation] = []
    waited = 0  # subtasks whose end has been replayed with the robot waiting
    texts = [s.text for s in subtasks]
    # the history as the policy keeps it at run time (`issued`): how long it is with subtasks 0..j-1 issued
    length = [len(issued(texts[:j])) for j in range(len(subtasks) + 1)]
    for row in ep.rows:
        t = float(ep.t[row])
        k = int(np.searchsorted(issued_t, t + 1e-6)) - 1  # the active subtask (-1: none yet)
        while waited < len(subtasks) - 1 and subtasks[waited].ended_t <= t:
            out += _waiting(ep, featurizer, memory, waited, labels, G, length)
            waited += 1
        memory.observe(t, ep.state[row], ep.detections.get(int(row), []), ep.image_sizes, issued(texts[:k + 1]),
                       labels)
        # done: the final state of a successful episode, and the robot waiting after it
        if ep.success and int(row) == last_row:
            f = featurizer.features(memory, length[k + 1], ep.task, ep.metadata)
            out.append(Situation(f, featurizer.done_group(), 1.0, "done", ep.id, DONE))
            out += _waiting(ep, featurizer, memory, len(subtasks) - 1, labels, G, length)
            continue
        # switch: just before or after subtask j's issue, with the history before it
        nxt = k + 1 if k + 1 < len(subtasks) and issued_t[k + 1] - t <= switch_window[0] else None
        j = nxt if nxt is not None else (k if k >= 0 and t - issued_t[k] <= switch_window[1] else None)
        if j is not None and not subtasks[j].mistake and subtasks[j].text and length[j + 1] > length[j]:
            f = featurizer.features(memory, length[j], ep.task, ep.metadata)
            target = _target(featurizer, memory, subtasks[j].text, f, MAX_TRACKS, G, labels)
            if target is None:
                stats.skip("names an item not seen yet")
            out.append(Situation(f, target, 1.0 if length[j] > 0 else None, "switch", ep.id, subtasks[j].text))
        # continue: inside subtask k, not finished yet (and not about to switch: that row is a switch)
        if k >= 0 and nxt is None and t - issued_t[k] >= 0.5 and subtasks[k].ended_t - t >= 0.3 \
                and subtasks[k].outcome != "failure":
            f = featurizer.features(memory, length[k + 1], ep.task, ep.metadata)
            out.append(Situation(f, None, 0.0, "continue", ep.id))
    return out


def _waiting(ep: LoggedEpisode, featurizer: Featurizer, memory: EpisodeMemory, j: int, labels: list[str],
             G: int, length: list[int]) -> list[Situation]:
    """Subtask j finished and the robot holds still while the next decision comes: `WAITS` switch
    situations (or `done` after the last subtask of a successful episode) 0.5 s apart.

    A coach switches the moment a subtask is done, so the logs never show the robot waiting after
    one; the driver decides once a second and switches after two agreeing decisions, so at run time
    the robot always waits. Without these, the finished head had never seen a closed drawer with the
    arm at rest and kept the last subtask running. After a failed attempt (a missed grasp, a slip)
    there are `WAITS_AFTER_FAILURE`: the policy learns what a failed attempt looks like at rest, and
    what the coach did next (mostly the same subtask again; keeping them only for such retries did
    worse in closed loop: sort_blocks 4/6 and bussing 1/6 against 6/6 and 3/6). Replayed on a copy
    of the memory."""
    from distill.features import MAX_TRACKS

    s = ep.subtasks[j]
    last = j == len(ep.subtasks) - 1
    if last and (s.outcome != "success" or not ep.success):
        return []
    nxt = None if last else ep.subtasks[j + 1]
    if nxt is not None and (nxt.mistake or not nxt.text):
        return []
    mem = memory.copy()
    seen = [r for r in ep.rows if r <= s.end_row]
    detections = ep.detections.get(int(seen[-1]), []) if seen else []
    out = []
    for wait in range(1, (WAITS if s.outcome == "success" else WAITS_AFTER_FAILURE) + 1):
        mem.observe(s.ended_t + 0.5 * wait, ep.state[s.end_row], detections, ep.image_sizes,
                    issued([x.text for x in ep.subtasks[:j + 1]]), labels)
        f = featurizer.features(mem, length[j + 1], ep.task, ep.metadata)
        if last:
            out.append(Situation(f, featurizer.done_group(), 1.0, "done", ep.id, DONE))
        else:
            out.append(Situation(f, _target(featurizer, mem, nxt.text, f, MAX_TRACKS, G, labels), 1.0, "waiting",
                                 ep.id, nxt.text))
    return out


def _target(featurizer: Featurizer, memory: EpisodeMemory, text: str, f: Features, max_tracks: int, G: int,
            labels: list[str]) -> int | None:
    """The index of `text` among the next logits of `f`: its group, and its item's track."""
    item = memory.ground(text, labels=labels)
    g = featurizer.group(item.template)
    if g is None:
        return None
    if not featurizer.vocab.groups.slotted[g]:
        return g
    if item.label is None or item.label not in f.track_labels:
        return None
    k = sum(featurizer.vocab.groups.slotted[:g])  # its rank among the slotted groups
    return G + k * max_tracks + f.track_labels.index(item.label)
