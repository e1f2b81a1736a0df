"""Where each projection stands: checkpoint, lag behind the head, and what it is doing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eventstore.pool import Pool
from readmodels.checkpoints import LEASE_NAMESPACE
from readmodels.leases import owner_of
from readmodels.projection import SHADOW_SUFFIX

# Each checkpoint, and the session holding its lease (if any), named by its process.
_STATUS = """
SELECT c.name, c.position, c.error, h.pid IS NOT NULL AS leased, h.application_name AS holder
FROM projection_checkpoints c
LEFT JOIN LATERAL (
    SELECT l.pid, a.application_name
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = $1::int::oid AND l.objid = hashtext(c.name)::oid
    LIMIT 1
) h ON true
"""


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    lag: int
    state: str  # live | catching_up | stopped | failed | rebuilding
    error: str | None = None
    owner: str | None = None  # "<host>:<pid>" of the process running it; None while none does


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
        owner = owner_of(row["holder"]) if row else None
        lag = max(head - position, 0)
        statuses.append(ProjectionStatus(name, position, lag, _state(name, lag, error, leased), error, owner))
    return statuses

