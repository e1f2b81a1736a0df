"""The broker's message format (contract section 6): one Redis Streams entry per event,
field `event` holding the Event as JSON with snake_case keys, and field `event_type`
holding its type again, so a consumer skips types it does not handle without decoding
the JSON (entries published before that field existed lack it: they are decoded)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import orjson
import redis.asyncio as redis

from eventstore import RecordedEvent, UpcasterRegistry
from eventstore.outbox import OutboxEntry
from eventstore.waiting import honour_cancellation as honour_cancellation  # used as broker.*

STREAM_KEY = "eventgraph:events"
FIELD = "event"
TYPE_FIELD = "event_type"  # the type as its own field: read without decoding `event`


def redis_client(url: str) -> redis.Redis:
    # socket_timeout above the consumers' 1 s blocking reads
    return redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=10)


def encode(entry: OutboxEntry, upcasters: UpcasterRegistry) -> tuple[bytes | str, str]:
    """The entry's JSON and its (latest) type: the stored event's JSON as the database
    wrote it (eventstore/outbox.py), re-encoded only when an upcaster applies."""
    if upcasters.latest(entry.type) == entry.type:
        return entry.payload, entry.type
    value = orjson.loads(entry.payload)
    type_, data = upcasters.upcast(entry.type, value["data"])
    value["event_type"], value["data"] = type_, dict(data)
    return orjson.dumps(value), type_


def decode(payload: bytes | str) -> RecordedEvent:
    value = orjson.loads(payload)
    return RecordedEvent(
        position=int(value["position"]),
        event_id=UUID(value["event_id"]),
        stream_id=value["stream_id"],
        version=int(value["version"]),
        type=value["event_type"],
        data=value["data"],
        metadata=value["metadata"],
        recorded_at=datetime.fromisoformat(value["recorded_at"]),
    )
