"""Reacting to a message: load aggregates, decide, append them all with the message's tracking.

One append carries every changed stream (each with the version it was loaded
at) and the `Tracking(consumer, event_id)` record, in one transaction: the
reaction happens exactly once in effect. A concurrent write to any of the
streams is a ConcurrencyConflict: the reaction is decided again on fresh
state. A message processed before is AlreadyProcessed: nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain.aggregate import Aggregate, DomainEvent
from eventstore import (
    Appender,
    AppendRequest,
    AppendResult,
    ConcurrencyConflict,
    EventReader,
    NewEvent,
    RecordedEvent,
    StreamWrite,
    Tracking,
)
from eventstore.tracing import with_traceparent
from service.aggregates import Aggregates
from service.errors import TooMuchContention
from service.metrics import COMMAND_RETRIES
from service.snapshots import Snapshots

MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class Extra:
    """An event for a stream no loaded aggregate owns (appended at any version)."""

    stream_id: str
    event: DomainEvent
    owner: str | None = None


Decide = Callable[[dict[str, Any]], Sequence[Extra]]


def reaction_metadata(cause: RecordedEvent, service: str) -> dict[str, Any]:
    """Same flow as the cause (its correlation id), caused by it (its event id)."""
    meta = cause.metadata
    return with_traceparent({  # the reaction's span: the flow's next hop continues the trace
        "correlation_id": meta.get("correlation_id") or str(cause.event_id),
        "causation_id": str(cause.event_id),
        "user_id": meta.get("user_id"),
        "service": service,
    })


class TrackedAppends:
    def __init__(self, appender: Appender, reader: EventReader, snapshots: Snapshots | None = None) -> None:
        self._appender = appender
        self.aggregates = Aggregates(reader, snapshots)  # also for reads: `aggregates.load`
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def react(
        self,
        tracking: Tracking,
        metadata: dict[str, Any],
        streams: Mapping[str, Callable[[], Aggregate]],
        decide: Decide,
    ) -> AppendResult | None:
        """Decide on the loaded aggregates and append; None when nothing was to be written.

        Raises AlreadyProcessed for a message processed before.
        """
        async with contextlib.AsyncExitStack() as held:
            for stream_id in sorted(streams):  # one order for everyone: no deadlock
                await held.enter_async_context(self._lock(stream_id))
            return await self._react(tracking, metadata, streams, decide)

    def _lock(self, stream_id: str) -> asyncio.Lock:
        """Reactions in this process touching a stream take turns: they never conflict
        with each other, only with other processes."""
        lock = self._locks.get(stream_id)
        if lock is None:
            lock = self._locks[stream_id] = asyncio.Lock()
        return lock

    async def _react(
        self,
        tracking: Tracking,
        metadata: dict[str, Any],
        streams: Mapping[str, Callable[[], Aggregate]],
        decide: Decide,
    ) -> AppendResult | None:
        for attempt in range(MAX_ATTEMPTS):
            loaded = await asyncio.gather(*(self._fresh(s, factory) for s, factory in streams.items()))
            aggregates = dict(zip(streams, loaded, strict=True))
            bases = {s: a.version for s, a in aggregates.items()}
            extras = decide(aggregates)
            writes = [
                StreamWrite(s, [_new(e, metadata) for e in changes], bases[s], owner=a.owner)
                for s, a in aggregates.items()
                if (changes := a.take_changes())
            ]
            writes += [StreamWrite(x.stream_id, [_new(x.event, metadata)], owner=x.owner) for x in extras]
            if not writes:
                return None
            try:
                result = await self._appender.append(AppendRequest(writes=writes, tracking=tracking))
            except ConcurrencyConflict:
                COMMAND_RETRIES.inc()
                for s in streams:
                    self.aggregates.forget(s)
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            recorded_at = result.events[-1].recorded_at
            for s, aggregate in aggregates.items():
                aggregate.mark_recorded(recorded_at)
                self.aggregates.keep(s, aggregate)
                self.aggregates.committed(s, aggregate, bases[s])
            return result
        raise TooMuchContention(f"could not append to {sorted(streams)}: too contended")

    async def _fresh(self, stream_id: str, new_aggregate: Callable[[], Aggregate]) -> Aggregate:
        """A private copy of the cached aggregate, caught up with the store."""
        kept = self.aggregates.kept(stream_id)
        aggregate = kept.snapshot() if kept is not None else new_aggregate()
        await self.aggregates.catch_up(aggregate, stream_id)
        return aggregate


def _new(event: DomainEvent, metadata: dict[str, Any]) -> NewEvent:
    return NewEvent(type=event.TYPE, data=event.to_data(), metadata=metadata)
