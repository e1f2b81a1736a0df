"""The steps every command takes, for one stream or several: load, decide, append, commit.

Stream commands (service/stream_commands.py: many commands, one stream) and saga
reactions (service/saga/tracked.py: one message, several streams) are both built from
these. A kept aggregate is the committed state of its stream and is never changed in
place: a decision runs on a copy, and the kept one is replaced only by the state an
append committed (or by a fresh read). A decision that fails, even after emitting,
thus leaves the kept aggregate exactly as it was.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from domain.aggregate import Aggregate, DomainEvent
from domain.events import EVENT_TYPES, EventTypes
from eventstore import AppendResult, EventReader, NewEvent
from service.aggregates import Aggregates
from service.metrics import COMMAND_RETRIES
from service.snapshots import Snapshots

A = TypeVar("A", bound=Aggregate)


class CommandRunner:
    def __init__(
        self, reader: EventReader, snapshots: Snapshots | None = None, *, events: EventTypes = EVENT_TYPES
    ) -> None:
        self.aggregates = Aggregates(reader, snapshots, events=events)  # also for reads: `aggregates.load`

    async def committed_state(
        self, stream_id: str, new_aggregate: Callable[[], A], *, verify: bool
    ) -> tuple[A, bool]:
        """The stream's committed state, to decide on copies of (never to change): the kept
        one without a read (the append's version check guards it) unless `verify`, else
        caught up from the store; and whether it was read just now."""
        kept = self.aggregates.kept(stream_id)
        if kept is not None and not verify:
            return kept, False  # type: ignore[return-value]
        state = new_aggregate() if kept is None else kept.snapshot()
        await self.aggregates.catch_up(state, stream_id)
        self.aggregates.keep(stream_id, state)
        return state, True  # type: ignore[return-value]

    @staticmethod
    def decide(state: A, decision: Callable[[A], Any]) -> tuple[A, list[DomainEvent]]:
        """The state `decision` leads to from `state` (a copy) and the events it emitted.
        `state` is left as it was, also when `decision` raises."""
        working = state.snapshot()
        decision(working)
        return working, working.take_changes()

    async def retry_later(self, attempt: int) -> None:
        """Another process wrote: pause a jittered moment. The caller decides again on the
        state caught up with `verify`: what is kept of the streams stays, a committed state
        that lacks only the newer events (reading the whole stream again instead cost a
        process behind a load balancer a snapshot lookup and a full fold per command)."""
        COMMAND_RETRIES.inc()
        await asyncio.sleep(random.uniform(0, 0.002 * attempt))

    def commit(self, result: AppendResult, states: Mapping[str, tuple[Aggregate, int]]) -> None:
        """Keep each stream's new state (with the version it was decided from) as committed by
        `result`, and offer it to the snapshots."""
        recorded_at = result.events[-1].recorded_at
        for stream_id, (state, version_before) in states.items():
            state.mark_recorded(recorded_at)
            self.aggregates.keep(stream_id, state)
            self.aggregates.committed(stream_id, state, version_before)


def new_event(event: DomainEvent, metadata: dict[str, Any]) -> NewEvent:
    return NewEvent(type=event.TYPE, data=event.to_data(), metadata=metadata)
