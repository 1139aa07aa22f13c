"""The registry of distilled checkpoints (the high-level policy, the subgoal model): register one
with the episodes it was trained on and its metrics, list them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage.database import Database
from storage.models import Policy, utcnow
from storage.rows import jsonable


@dataclass
class PolicyRecord:
    """A registered checkpoint (`kind` e.g. `high_level`, `subgoal_model`) and its provenance."""

    id: int
    kind: str
    checkpoint_path: str
    training_episode_ids: list[int]
    metrics: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


def register_policy(db: Database, kind: str, checkpoint_path: str, episode_ids: list[int],
                    metrics: dict[str, Any] | None = None) -> int:
    """Record a distilled policy checkpoint and the episodes it was trained on; returns its id."""
    with db.session() as s:
        policy = Policy(kind=kind, checkpoint_path=str(checkpoint_path),
                        training_episode_ids=[int(i) for i in episode_ids], metrics=jsonable(metrics or {}),
                        created_at=utcnow())
        s.add(policy)
        s.flush()
        return policy.id


def list_policies(db: Database, kind: str | None = None) -> list[PolicyRecord]:
    """Registered checkpoints, newest first, of one `kind` if given."""
    q = sa.select(Policy).order_by(Policy.id.desc())
    if kind:
        q = q.where(Policy.kind == kind)
    with db.session(readonly=True) as s:
        return [PolicyRecord(id=p.id, kind=p.kind, checkpoint_path=p.checkpoint_path,
                             training_episode_ids=list(p.training_episode_ids), metrics=p.metrics,
                             created_at=p.created_at) for p in s.scalars(q)]
