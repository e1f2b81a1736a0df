"""Stored snapshots: some stream's state at a version, written by whoever folded it.

The store knows rows, not aggregates: the state is JSON the caller made, labelled with
the aggregate's type and the revision of its state's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventstore.pool import Pool, dumps


@dataclass(frozen=True)
class Snapshot:
    stream_id: str
    version: int
    aggregate_type: str
    revision: int
    state: dict[str, Any]
    recorded_at: datetime | None  # when the event at `version` was recorded


@dataclass(frozen=True)
class SnapshotStatus:
    aggregate_type: str
    revision: int
    snapshots: int
    streams: int
    newest: datetime | None


_LATEST = """
SELECT version, state, recorded_at FROM snapshots
WHERE stream_id = $1 AND aggregate_type = $2 AND revision = $3
  AND ($4::int IS NULL OR version <= $4)
  AND ($5::timestamptz IS NULL OR recorded_at <= $5)
ORDER BY version DESC LIMIT 1
"""

_SAVE = """
INSERT INTO snapshots (stream_id, version, aggregate_type, revision, state, recorded_at)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::text[]::jsonb[], $6::timestamptz[])
ON CONFLICT (stream_id, version) DO NOTHING
"""

_STATUS = """
SELECT aggregate_type, revision, count(*) AS snapshots, count(DISTINCT stream_id) AS streams,
       max(taken_at) AS newest
FROM snapshots GROUP BY aggregate_type, revision ORDER BY aggregate_type, revision
"""

_PRUNE = """
DELETE FROM snapshots s USING (
    SELECT stream_id, version,
           row_number() OVER (PARTITION BY stream_id ORDER BY version DESC) AS newer
    FROM snapshots
) ranked
WHERE s.stream_id = ranked.stream_id AND s.version = ranked.version AND ranked.newer > $1
"""


class SnapshotStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def latest(
        self,
        stream_id: str,
        aggregate_type: str,
        revision: int,
        *,
        to_version: int | None = None,
        until: datetime | None = None,
    ) -> Snapshot | None:
        """The newest snapshot of this type and revision, at or before a version or instant."""
        row = await self._pool.fetchrow(_LATEST, stream_id, aggregate_type, revision, to_version, until)
        if row is None:
            return None
        return Snapshot(stream_id, row["version"], aggregate_type, revision, row["state"], row["recorded_at"])

    async def save(self, snapshots: Sequence[Snapshot]) -> None:
        """Add these; one already stored at the same stream and version stays as it is."""
        if not snapshots:
            return
        await self._pool.execute(
            _SAVE,
            [s.stream_id for s in snapshots],
            [s.version for s in snapshots],
            [s.aggregate_type for s in snapshots],
            [s.revision for s in snapshots],
            [dumps(s.state) for s in snapshots],
            [s.recorded_at for s in snapshots],
        )

    async def status(self) -> list[SnapshotStatus]:
        rows = await self._pool.fetch(_STATUS)
        return [
            SnapshotStatus(r["aggregate_type"], r["revision"], r["snapshots"], r["streams"], r["newest"])
            for r in rows
        ]

    async def prune(self, keep: int) -> int:
        """Keep the `keep` newest snapshots of each stream; how many were deleted."""
        if keep < 0:
            raise ValueError("keep must be >= 0")
        result = await self._pool.execute(_PRUNE, keep)
        return int(result.split()[-1])
