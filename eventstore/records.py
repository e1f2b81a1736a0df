"""What goes into the store and what comes out of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from random import getrandbits
from time import time_ns
from typing import Any
from uuid import UUID

ANY_VERSION: int | None = None  # append whatever the stream's version is
NO_STREAM = 0  # the stream must not exist yet

NOTIFY_CHANNEL = "eventgraph_events"  # payload: the last position a commit appended


def _uuid7() -> int:
    random_bits = getrandbits(74)
    return (
        (time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version 7
        | (random_bits >> 62) << 64
        | 0b10 << 62  # the RFC variant
        | random_bits & 0x3FFF_FFFF_FFFF_FFFF
    )


def time_ordered_id() -> UUID:
    """A UUIDv7 (RFC 9562): milliseconds since the epoch, then 74 random bits. Event ids
    written in time order land at the right edge of the unique index instead of on a
    random page of it (Marten's sequential Guids, for the same reason)."""
    return UUID(int=_uuid7())


def time_ordered_text() -> str:
    """`str(time_ordered_id())` without the UUID object (a third of the cost): request
    and correlation ids, one or two per request."""
    hex_digits = f"{_uuid7():032x}"
    return f"{hex_digits[:8]}-{hex_digits[8:12]}-{hex_digits[12:16]}-{hex_digits[16:20]}-{hex_digits[20:]}"


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    event_id: UUID = field(default_factory=time_ordered_id)


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    event_id: UUID
    stream_id: str
    version: int
    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    recorded_at: datetime
    owner: str | None = None  # the stream's owner, for read visibility


@dataclass(frozen=True)
class StreamWrite:
    stream_id: str
    events: Sequence[NewEvent]
    expected_version: int | None = ANY_VERSION
    owner: str | None = None  # recorded on each event: who may read it besides staff


@dataclass(frozen=True)
class IdempotencyRecord:
    """Stores the outcome of a request under (scope, key), in the append's transaction.

    It covers events[first:last] of the request (indexes into the request's
    events in write order), so one append can carry several commands' keys.
    """

    scope: str
    key: str
    first: int
    last: int


@dataclass(frozen=True)
class Tracking:
    """Marks a consumed message as processed, in the append's transaction."""

    consumer: str
    message_id: str


@dataclass(frozen=True)
class AppendRequest:
    writes: Sequence[StreamWrite]
    idempotency: Sequence[IdempotencyRecord] = ()
    tracking: Tracking | None = None

    def events(self) -> list[tuple[StreamWrite, NewEvent]]:
        return [(w, e) for w in self.writes for e in w.events]


@dataclass(frozen=True)
class AppendResult:
    events: Sequence[RecordedEvent]
    stream_versions: Mapping[str, int]

    @property
    def last_position(self) -> int:
        return self.events[-1].position if self.events else 0


@dataclass(frozen=True)
class StoredOutcome:
    """What an idempotency key recorded: the positions and stream versions it produced."""

    first_position: int
    last_position: int
    stream_versions: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "first_position": self.first_position,
            "last_position": self.last_position,
            "stream_versions": dict(self.stream_versions),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> StoredOutcome:
        return cls(
            first_position=int(value["first_position"]),
            last_position=int(value["last_position"]),
            stream_versions={k: int(v) for k, v in value["stream_versions"].items()},
        )
