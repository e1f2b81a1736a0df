"""Where each projection stands: checkpoint, lag behind the head, and what it is doing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eventstore.pool import Pool
from readmodels.checkpoints import LEASE_NAMESPACE
from readmodels.projection import SHADOW_SUFFIX

_STATUS = """
SELECT c.name, c.position, c.error,
       EXISTS (SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.classid = $1::int::oid AND l.objid = hashtext(c.name)::oid) AS leased
FROM projection_checkpoints c
"""


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    lag: int
    state: str  # live | catching_up | stopped | failed | rebuilding
    error: str | None = None


def _state(name: str, lag: int, error: str | None, leased: bool) -> str:
    if error:
        return "failed"
    if name.endswith(SHADOW_SUFFIX):
        return "rebuilding" if leased else "stopped"
    if not leased:
        return "stopped"
    return "live" if lag == 0 else "catching_up"


async def projection_statuses(pool: Pool, names: Sequence[str]) -> list[ProjectionStatus]:
    """The registered projections in order (never started: position 0), then running rebuilds."""
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
            rows = {r["name"]: r for r in await conn.fetch(_STATUS, LEASE_NAMESPACE)}
    wanted = list(names) + [n + SHADOW_SUFFIX for n in names if n + SHADOW_SUFFIX in rows]
    statuses = []
    for name in wanted:
        row = rows.get(name)
        position = int(row["position"]) if row else 0
        error = row["error"] if row else None
        leased = bool(row["leased"]) if row else False
        lag = max(head - position, 0)
        statuses.append(ProjectionStatus(name, position, lag, _state(name, lag, error, leased), error))
    return statuses

