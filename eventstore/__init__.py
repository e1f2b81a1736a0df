"""The event store: rows, streams, positions and notifications. Knows nothing of orders."""

from eventstore.appender import Appender
from eventstore.errors import (
    AlreadyProcessed,
    ConcurrencyConflict,
    DuplicateRequest,
    EventStoreError,
    StoreUnavailable,
    UnstorableData,
)
from eventstore.reader import EventReader
from eventstore.records import (
    ANY_VERSION,
    NO_STREAM,
    NOTIFY_CHANNEL,
    AppendRequest,
    AppendResult,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    StoredOutcome,
    StreamWrite,
    Tracking,
)
from eventstore.upcasting import UpcasterRegistry

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "NOTIFY_CHANNEL",
    "AlreadyProcessed",
    "AppendRequest",
    "AppendResult",
    "Appender",
    "ConcurrencyConflict",
    "DuplicateRequest",
    "EventReader",
    "EventStoreError",
    "IdempotencyRecord",
    "NewEvent",
    "RecordedEvent",
    "StoreUnavailable",
    "StoredOutcome",
    "StreamWrite",
    "Tracking",
    "UnstorableData",
    "UpcasterRegistry",
]
