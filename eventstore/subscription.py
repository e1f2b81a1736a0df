"""Catch-up then live: every matching event after a position, each exactly once, in order.

A subscription opens its tap on the hub first (so nothing committed after that
moment can slip past), then reads the table from its own position until a
short page says it has reached the head, then takes the hub's batches. Its
position counts the positions it has *considered*, matching or not, so a
batch that starts beyond it is a gap (an overflowed queue, a restarted tail)
and sends it back to the table; a batch it has already covered is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from eventstore.listener import DATABASE_DOWN, EventFilter, EventHub
from eventstore.records import RecordedEvent
from eventstore.waiting import honour_cancellation

log = logging.getLogger(__name__)

RETRY_DELAY = 1.0  # after a failed table read (the database restarting)


class Subscription:
    """Iterate it for the events; iterating it again resumes after the last one yielded."""

    def __init__(self, hub: EventHub, after: int, only: EventFilter, *, page_size: int = 500) -> None:
        self._hub = hub
        self.position = after  # every position up to here has been considered
        self._only = only
        self._page_size = page_size
        self.table_reads = 0  # catch-up pages read (for tests and metrics)

    async def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        tap = self._hub.open(self._only)
        try:
            behind = True
            while True:
                if behind:
                    events, covered, behind = await self._read_table()
                    for event in events:
                        if self._only(event):  # the query filtered already; `types=[]` did not
                            self.position = event.position
                            yield event
                    self.position = covered
                    continue
                batch = tap.take()
                if batch is None:
                    head = self._hub.position
                    if head is not None and head > self.position:
                        behind = True  # batches were refused while its queue was full
                    else:
                        await tap.ready.wait()
                    continue
                if batch.after <= self.position:
                    continue  # read from the table already
                if batch.before > self.position:
                    behind = True  # a gap: fill it from the table
                    continue
                for event in batch.events:
                    if event.position > self.position and self._only(event):
                        # advance before yielding: a consumer that stops here has seen it
                        self.position = event.position
                        yield event
                self.position = batch.after
        finally:
            self._hub.close_tap(tap)

    async def _read_table(self) -> tuple[list[RecordedEvent], int, bool]:
        """One page from the table, the position it covers, and whether more pages follow."""
        only = self._only
        while True:
            try:
                events, covered = await self._hub.reader.read_scanned(
                    self.position,
                    self._page_size,
                    types=sorted(only.types) if only.types is not None else None,
                    stream_id=only.stream_id,
                    owner=only.owner,
                )
                break
            except DATABASE_DOWN as error:
                honour_cancellation()
                log.warning("subscription at %d: read failed (%r); retrying", self.position, error)
                await asyncio.sleep(RETRY_DELAY)
        self.table_reads += 1
        return events, covered, len(events) == self._page_size


def subscribe(
    hub: EventHub,
    after: int = 0,
    *,
    types: Sequence[str] | None = None,
    stream_id: str | None = None,
    owner: str | None = None,
) -> Subscription:
    only = EventFilter(frozenset(types) if types is not None else None, stream_id, owner)
    return Subscription(hub, after, only)
