"""Aggregates loaded from the store, and kept between commands for the streams in use.

A kept aggregate saves re-reading its stream; the append's expected version guards
against it having gone stale (another process wrote): the caller then forgets it and
decides again on a fresh read. A load starts from the newest usable snapshot, when
snapshots are on (service/snapshots.py), and folds only the events after it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from domain.aggregate import Aggregate
from domain.events import EVENT_TYPES, EventTypes
from eventstore import EventReader
from eventstore.metrics import observing
from service.metrics import EVENTS_REPLAYED
from service.snapshots import Snapshots

A = TypeVar("A", bound=Aggregate)

CACHE_SIZE = 10_000  # aggregates kept; the least recently used go first


class Aggregates:
    def __init__(
        self,
        reader: EventReader,
        snapshots: Snapshots | None = None,
        size: int = CACHE_SIZE,
        *,
        events: EventTypes = EVENT_TYPES,  # what stored events decode to: the app's modules' types
    ) -> None:
        self._reader = reader
        self._decode = events.decode
        self.snapshots = snapshots
        self._size = size
        self._kept: OrderedDict[str, Aggregate] = OrderedDict()

    async def load(
        self,
        stream_id: str,
        new_aggregate: Callable[[], A],
        *,
        to_version: int | None = None,
        until: datetime | None = None,
    ) -> A:
        """The aggregate as the store has it now, at `to_version` or at an instant; not kept."""
        aggregate = new_aggregate()
        await self.catch_up(aggregate, stream_id, to_version=to_version, until=until)
        return aggregate

    async def catch_up(
        self,
        aggregate: Aggregate,
        stream_id: str,
        *,
        to_version: int | None = None,
        until: datetime | None = None,
    ) -> None:
        """Replay onto `aggregate` the stream's events after its version (a new one: after
        its newest usable snapshot)."""
        if self.snapshots is not None and aggregate.version == 0:
            await self.snapshots.restore_latest(aggregate, stream_id, to_version=to_version, until=until)
        events = await self._reader.read_stream(
            stream_id, aggregate.version + 1, to_version=to_version, until=until
        )
        for event in events:
            aggregate.replay(self._decode(event.type, event.data), event.version, event.recorded_at)
        if observing():
            EVENTS_REPLAYED.observe(len(events))
        if self.snapshots is not None and to_version is None and until is None:
            self.snapshots.loaded(aggregate, stream_id, len(events))

    def committed(self, stream_id: str, aggregate: Aggregate, version_before: int) -> None:
        """`aggregate` is the state an append just committed (from `version_before`)."""
        if self.snapshots is not None:
            self.snapshots.committed(aggregate, stream_id, version_before)

    def kept(self, stream_id: str) -> Aggregate | None:
        aggregate = self._kept.get(stream_id)
        if aggregate is not None:
            self._kept.move_to_end(stream_id)
        return aggregate

    def keep(self, stream_id: str, aggregate: Aggregate) -> None:
        self._kept[stream_id] = aggregate
        self._kept.move_to_end(stream_id)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        self._kept.pop(stream_id, None)
