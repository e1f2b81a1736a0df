"""Reacting to a message: load aggregates, decide, append them all with the message's tracking.

One append carries every changed stream (each with the version it was loaded
at) and the `Tracking(consumer, event_id)` record, in one transaction: the
reaction happens exactly once in effect. A concurrent write to any of the
streams is a ConcurrencyConflict: the reaction is decided again on fresh
state. A message processed before is AlreadyProcessed: nothing to do. The steps
are the ones stream commands take (service/command_runner.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain.aggregate import Aggregate, DomainEvent
from domain.events import EVENT_TYPES, EventTypes
from eventstore import (
    Appender,
    AppendRequest,
    AppendResult,
    ConcurrencyConflict,
    EventReader,
    RecordedEvent,
    StreamWrite,
    Tracking,
)
from eventstore.tracing import with_traceparent
from service.command_runner import CommandRunner, new_event
from service.errors import TooMuchContention
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
    def __init__(
        self, appender: Appender, reader: EventReader, snapshots: Snapshots | None = None, *,
        events: EventTypes = EVENT_TYPES,  # what stored events decode to
    ) -> None:
        self._appender = appender
        self._runner = CommandRunner(reader, snapshots, events=events)
        self.aggregates = self._runner.aggregates  # also for reads: `aggregates.load`
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
            loaded = await asyncio.gather(
                *(self._runner.committed_state(s, factory, verify=True) for s, factory in streams.items())
            )
            states = {s: state for s, (state, _) in zip(streams, loaded, strict=True)}
            # Decided on copies: the kept states stay as they are when `decide` raises.
            aggregates = {s: state.snapshot() for s, state in states.items()}
            extras = decide(aggregates)
            writes = [
                StreamWrite(s, [new_event(e, metadata) for e in changes], states[s].version, owner=a.owner)
                for s, a in aggregates.items()
                if (changes := a.take_changes())
            ]
            writes += [StreamWrite(x.stream_id, [new_event(x.event, metadata)], owner=x.owner) for x in extras]
            if not writes:
                return None
            try:
                result = await self._appender.append(AppendRequest(writes=writes, tracking=tracking))
            except ConcurrencyConflict:
                await self._runner.retry_later(attempt + 1)
                continue
            self._runner.commit(result, {s: (a, states[s].version) for s, a in aggregates.items()})
            return result
        raise TooMuchContention(f"could not append to {sorted(streams)}: too contended")
