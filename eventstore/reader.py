"""Reading streams and the global log; every event comes out upcast."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from eventstore.idempotency import fetch_outcomes
from eventstore.pool import Pool, fetch_read
from eventstore.records import RecordedEvent, StoredOutcome
from eventstore.replicas import ReadPools, read_pools
from eventstore.upcasting import UpcasterRegistry

_COLUMNS = "position, event_id, stream_id, version, type, data, metadata, recorded_at, owner"
MAX_PAGE = 1000


def _scanned_sql(types: bool, stream: bool, owner: bool) -> str:
    """One text per filter combination, so each gets a plan on its own index."""
    conditions = ["position > $1"]
    filters = (("type = ANY(${}::text[])", types), ("stream_id = ${}", stream), ("owner = ${}", owner))
    for condition, used in filters:
        if used:
            conditions.append(condition.format(len(conditions) + 2))
    return (
        "WITH head AS (SELECT coalesce(max(position), 0) AS head FROM events)"
        f" SELECT head.head, e.* FROM head LEFT JOIN LATERAL (SELECT {_COLUMNS} FROM events"
        f" WHERE {' AND '.join(conditions)} ORDER BY position LIMIT $2) e ON true"
    )


_BOTH = (False, True)
_SCANNED = {(t, s, o): _scanned_sql(t, s, o) for t in _BOTH for s in _BOTH for o in _BOTH}


class EventReader:
    """Reads from `source`: a pool, or a primary with replicas (read-only queries).

    With replicas, reads that say how far they cover (the log's head, a scan's coverage)
    must reach `seen_head`, the highest position known committed (from notifications
    and earlier reads), or they go to the primary: so a reader that woke for a commit,
    or already handed out a position, never reads a replica that is behind it. While
    notifications may have been missed (at first, after the LISTEN connection was
    lost: `forget_head`), such reads go to the primary until one has seen the head.
    Positions commit in order and a replica replays commits in order, so any source
    shows a prefix of the log: switching sources neither skips nor repeats an event.
    """

    def __init__(self, source: Pool | ReadPools, upcasters: UpcasterRegistry) -> None:
        self._reads = read_pools(source)
        self._pool = self._reads.primary
        self._upcasters = upcasters
        self.seen_head = 0
        self._head_known = False
        self._forgotten = 0  # times forget_head was called

    def note_head(self, position: int) -> None:
        """A commit up to `position` is known to have happened (e.g. it was notified)."""
        self.seen_head = max(self.seen_head, position)

    def forget_head(self) -> None:
        """Commits may have happened unnoticed (notifications were lost)."""
        self._head_known = False
        self._forgotten += 1

    def notified(self, payload: str) -> None:
        """A notification on NOTIFY_CHANNEL: the position a commit reached, or "" when
        notifications may have been missed (the listener (re)connected)."""
        if payload.isdigit():
            self.note_head(int(payload))
        else:
            self.forget_head()

    async def _rows(
        self, sql: str, *args: object, enough: Callable[[list[asyncpg.Record]], bool] | None = None
    ) -> list[asyncpg.Record]:
        rows, _ = await self._reads.read(lambda pool: fetch_read(pool, sql, *args), enough=enough)
        return rows

    async def _covering(
        self, sql: str, *args: object, reaches: Callable[[list[asyncpg.Record], int], bool]
    ) -> list[asyncpg.Record]:
        """A read that tells how far the log goes: from a replica only if it reaches the head
        known to be committed; from the primary while that head is not known."""
        if self._head_known:
            seen = self.seen_head
            return await self._rows(sql, *args, enough=lambda rows: reaches(rows, seen))
        forgotten = self._forgotten
        rows, _ = await self._reads.read(lambda pool: fetch_read(pool, sql, *args), prefer=self._reads.primary)
        self._head_known = forgotten == self._forgotten
        return rows

    def _decode(self, row: asyncpg.Record) -> RecordedEvent:
        type_, data = self._upcasters.upcast(row["type"], row["data"])
        return RecordedEvent(
            position=row["position"],
            event_id=row["event_id"],
            stream_id=row["stream_id"],
            version=row["version"],
            type=type_,
            data=data,
            metadata=row["metadata"],
            recorded_at=row["recorded_at"],
            owner=row["owner"],
        )

    async def _fetch(self, sql: str, *args: object) -> list[RecordedEvent]:
        return [self._decode(row) for row in await self._rows(sql, *args)]

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = 1,
        *,
        to_version: int | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """A stream's events from `from_version`, optionally up to a version or an instant."""
        return await self._fetch(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2"
            " AND ($3::int IS NULL OR version <= $3)"
            " AND ($4::timestamptz IS NULL OR recorded_at <= $4)"
            " ORDER BY version LIMIT $5",
            stream_id,
            from_version,
            to_version,
            until,
            limit,
        )

    async def read_all(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        types: Sequence[str] | None = None,
        stream_id: str | None = None,
        owner: str | None = None,
    ) -> list[RecordedEvent]:
        """The global log after `after`, in position order; `types` name latest versions;
        `owner` keeps only the streams that owner may read."""
        stored_types = self.stored_types(types) if types else None
        limit = min(limit, MAX_PAGE)
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE position > $1"
            " AND ($2::text[] IS NULL OR type = ANY($2))"
            " AND ($3::text IS NULL OR stream_id = $3)"
            " AND ($4::text IS NULL OR owner = $4)"
            " ORDER BY position LIMIT $5"
        )
        args = (after, stored_types, stream_id, owner, limit)
        if types is not None or stream_id is not None or owner is not None:
            return [self._decode(row) for row in await self._rows(sql, *args)]

        def reaches(rows: list[asyncpg.Record], seen: int) -> bool:
            return len(rows) >= limit or (rows[-1]["position"] if rows else after) >= seen

        events = [self._decode(row) for row in await self._covering(sql, *args, reaches=reaches)]
        if events:
            self.note_head(events[-1].position)
        return events

    async def read_scanned(
        self,
        after: int,
        limit: int,
        *,
        types: Sequence[str] | None = None,
        stream_id: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[RecordedEvent], int]:
        """Like `read_all`, and the position the read has covered: the last event's on a full
        page, else the head in the same snapshot (positions are gap-free and commit-ordered,
        so nothing at or below it can commit later)."""
        limit = min(limit, MAX_PAGE)
        args: list[object] = [after, limit]
        if types:
            args.append(self.stored_types(types))
        if stream_id is not None:
            args.append(stream_id)
        if owner is not None:
            args.append(owner)
        sql = _SCANNED[(bool(types), stream_id is not None, owner is not None)]

        def reaches(rows: list[asyncpg.Record], seen: int) -> bool:
            return len(rows) >= limit or int(rows[0]["head"]) >= seen

        rows = await self._covering(sql, *args, reaches=reaches)
        events = [self._decode(row) for row in rows if row["position"] is not None]
        if len(events) == limit:
            return events, events[-1].position
        covered = max(after, int(rows[0]["head"]))
        self.note_head(covered)
        return events, covered

    async def read_positions(self, first: int, last: int) -> list[RecordedEvent]:
        return await self._fetch(
            f"SELECT {_COLUMNS} FROM events WHERE position BETWEEN $1 AND $2 ORDER BY position",
            first,
            last,
        )

    async def read_correlation(self, correlation_id: str, limit: int = MAX_PAGE) -> list[RecordedEvent]:
        return await self._fetch(
            f"SELECT {_COLUMNS} FROM events WHERE metadata->>'correlation_id' = $1"
            " ORDER BY position LIMIT $2",
            correlation_id,
            limit,
        )

    async def get_event(self, event_id: UUID) -> RecordedEvent | None:
        events = await self._fetch(f"SELECT {_COLUMNS} FROM events WHERE event_id = $1", event_id)
        return events[0] if events else None

    async def head_position(self) -> int:
        rows = await self._covering(
            "SELECT coalesce(max(position), 0) FROM events", reaches=lambda rows, seen: rows[0][0] >= seen
        )
        head = int(rows[0][0])
        self.note_head(head)
        return head

    async def stream_head(self, stream_id: str) -> tuple[int, str | None]:
        """The stream's version (0: no such stream) and its owner."""
        rows = await self._rows(
            "SELECT version, owner FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1",
            stream_id,
        )
        return (rows[0]["version"], rows[0]["owner"]) if rows else (0, None)

    async def stream_version(self, stream_id: str) -> int:
        return (await self.stream_head(stream_id))[0]

    async def idempotency_outcomes(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredOutcome]:
        return await fetch_outcomes(self._pool, keys)

    def stored_types(self, types: Sequence[str]) -> list[str]:
        return sorted({stored for t in types for stored in self._upcasters.stored_types(t)})
