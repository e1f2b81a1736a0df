"""Typed failures of the event store."""

from __future__ import annotations

from collections.abc import Mapping

from eventstore.records import StoredOutcome


class EventStoreError(Exception):
    pass


class ConcurrencyConflict(EventStoreError):
    def __init__(self, stream_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual_version}, expected {expected_version}"
        )
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class DuplicateRequest(EventStoreError):
    """An idempotency key of the request was already used: nothing was appended."""

    def __init__(self, outcomes: Mapping[tuple[str, str], StoredOutcome]) -> None:
        super().__init__(f"idempotency keys already used: {sorted(outcomes)}")
        self.outcomes = dict(outcomes)


class AlreadyProcessed(EventStoreError):
    """The tracked message was processed before: nothing was appended."""

    def __init__(self, consumer: str, message_id: str) -> None:
        super().__init__(f"{consumer} already processed {message_id}")
        self.consumer = consumer
        self.message_id = message_id


class StoreUnavailable(EventStoreError):
    """The database is out of reach: refused or dropped the connection, is restarting, or no
    pooled connection freed up in time. Nothing was written, or (a connection cut during a
    commit) it may have been: retrying with the same idempotency key is safe."""


class UnstorableData(EventStoreError):
    """PostgreSQL refused a request's data (a data exception, SQLSTATE class 22, such as a
    NUL character in JSON text): nothing of that request was appended."""
