"""The per-process tail of the global log, fanned out in memory to every subscriber.

One task per process reads each new page of the log once and hands it to
every subscriber's bounded queue (a `Tap`), so a thousand subscribers cost
one query per commit, not a thousand. What wakes the task is only a hint
(a NOTIFY on the process's one LISTEN connection, or the polling timeout);
what it hands out always comes from the table.

A batch says which positions it covers, `(before, after]`. A subscriber
whose own position is below `before` has a gap (its queue overflowed, it
joined late, the tail restarted) and fills it from the table itself before
taking batches again. So the tail never waits for anyone, a slow subscriber
holds at most `buffer` events, and nobody silently loses one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from eventstore.errors import StoreUnavailable
from eventstore.reader import MAX_PAGE, EventReader
from eventstore.records import RecordedEvent
from eventstore.waiting import honour_cancellation, wait_set

log = logging.getLogger(__name__)

# What a lost or restarting database raises; readers retry these after a pause.
# (InternalClientError: a pooled connection the server cut can fail this way once.)
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    StoreUnavailable,  # what the pool raises for all of the below
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


@dataclass(frozen=True)
class Batch:
    """Every event of the log in (before, after] that its subscriber wants: all positions
    in that range were considered, so the subscriber may move its position to `after`."""

    before: int
    after: int
    events: Sequence[RecordedEvent]


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber gets: latest type names, one stream, one owner's streams."""

    types: frozenset[str] | None = None
    stream_id: str | None = None
    owner: str | None = None

    def __call__(self, event: RecordedEvent) -> bool:
        return (
            (self.types is None or event.type in self.types)
            and (self.stream_id is None or event.stream_id == self.stream_id)
            and (self.owner is None or event.owner == self.owner)
        )

    @property
    def everything(self) -> bool:
        return self.types is None and self.stream_id is None and self.owner is None


class Tap:
    """One subscriber's bounded queue of batches, holding only the events it wants.

    A batch with nothing for it does not wake it: the range is added to what it will
    take next. Coverage is merged only across contiguous ranges; after a refused batch
    or a restarted tail the next batch starts past the subscriber's position, which it
    reads as a gap to fill from the table.
    """

    def __init__(self, only: EventFilter, buffer: int) -> None:
        self.only = only
        self._buffer = buffer
        self._batches: deque[Batch] = deque()
        self._held = 0  # events in the queue
        self._covered: int | None = None  # the end of the last range offered, if unbroken
        self._quiet_from: int | None = None  # start of an offered range with nothing in it
        self.ready = asyncio.Event()
        self.dropped = 0  # batches refused because the queue was full

    def offer(self, batch: Batch) -> None:
        contiguous = self._covered == batch.before
        self._covered = batch.after
        if contiguous and not batch.events:
            if self._batches:
                last = self._batches[-1]
                self._batches[-1] = Batch(last.before, batch.after, last.events)
            elif self._quiet_from is None:
                self._quiet_from = batch.before
            return
        if contiguous and self._quiet_from is not None:
            batch = Batch(self._quiet_from, batch.after, batch.events)
        self._quiet_from = None
        if self._batches and self._held + len(batch.events) > self._buffer:
            self.dropped += 1  # the subscriber will see the gap and read it from the table
            self._covered = None
        else:
            self._batches.append(batch)
            self._held += len(batch.events)
        self.ready.set()

    def take(self) -> Batch | None:
        if self._batches:
            batch = self._batches.popleft()
            self._held -= len(batch.events)
            return batch
        if self._quiet_from is not None and self._covered is not None:
            batch = Batch(self._quiet_from, self._covered, ())
            self._quiet_from = None
            return batch
        self.ready.clear()
        return None


class EventHub:
    """Tails the log while anyone listens; `wakeup()` gives an event set by the next notice."""

    def __init__(
        self,
        reader: EventReader,
        wakeup: Callable[[], asyncio.Event],
        *,
        poll_interval: float = 1.0,
        buffer: int = 1000,
        page_size: int = MAX_PAGE,
    ) -> None:
        self.reader = reader
        self._wakeup = wakeup
        self._poll_interval = poll_interval
        self._buffer = buffer
        # A page no larger than a tap's queue: a batch offered to an empty queue is always
        # taken whole, so a queue never holds more than `buffer` events.
        self._page_size = min(page_size, buffer)
        self._taps: set[Tap] = set()
        self._listened = asyncio.Event()  # set while there are taps
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.position: int | None = None  # read up to here; None while nobody listens

    @property
    def subscribers(self) -> int:
        return len(self._taps)

    def open(self, only: EventFilter) -> Tap:
        if self._closed:
            raise RuntimeError("the event hub is closed")
        tap = Tap(only, self._buffer)
        self._taps.add(tap)
        self._listened.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-hub")
        return tap

    def close_tap(self, tap: Tap) -> None:
        self._taps.discard(tap)
        if not self._taps:
            self._listened.clear()

    async def close(self) -> None:
        # The flag and the wakeup end the loop even if a library swallows the cancellation.
        self._closed = True
        self._listened.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while not self._closed:
            if not self._taps:
                self.position = None  # start again from the head when someone comes
                await self._listened.wait()
                continue
            wakeup = self._wakeup()  # taken before the read: a commit after it sets it
            try:
                full = await self._read_page()
            except Exception as error:  # the database is down or restarting: never die, retry
                honour_cancellation()
                log.warning("event hub: reading the log failed (%r); retrying", error)
                self.position = None
                await asyncio.sleep(self._poll_interval)
                continue
            if not full:
                await wait_set(wakeup, self._poll_interval)  # or poll: the fallback

    async def _read_page(self) -> bool:
        """Reads and hands out one page; True when it was full (more may follow at once)."""
        if self.position is None:
            # (Re)starting at the head: an empty batch tells everyone below it to read the
            # table up to there, even if no commit follows.
            self.position = await self.reader.head_position()
            self._offer(Batch(self.position, self.position, ()))
        events = await self.reader.read_all(self.position, self._page_size)
        if not events:
            return False
        batch = Batch(self.position, events[-1].position, events)
        self.position = batch.after
        self._offer(batch)
        return len(events) == self._page_size

    def _offer(self, batch: Batch) -> None:
        """Hands each tap the batch's events it wants (indexed by stream and owner)."""
        events = batch.events
        indexes: dict[str, dict[str | None, list[RecordedEvent]]] = {}
        for tap in self._taps:
            only = tap.only
            if only.everything:
                tap.offer(batch)
                continue
            candidates: Sequence[RecordedEvent]
            if only.stream_id is not None:
                candidates = _indexed(events, "stream_id", indexes).get(only.stream_id, ())
            elif only.owner is not None:
                candidates = _indexed(events, "owner", indexes).get(only.owner, ())
            else:
                candidates = events
            tap.offer(Batch(batch.before, batch.after, [e for e in candidates if only(e)]))


def _indexed(
    events: Sequence[RecordedEvent], attribute: str, indexes: dict[str, dict[str | None, list[RecordedEvent]]]
) -> dict[str | None, list[RecordedEvent]]:
    """A batch's events grouped by one attribute (stream id, owner): built once per batch,
    when the first tap that filters on it asks."""
    index = indexes.get(attribute)
    if index is None:
        index = indexes[attribute] = defaultdict(list)
        for event in events:
            index[getattr(event, attribute)].append(event)
    return index
