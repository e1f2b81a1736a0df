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
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from eventstore.reader import MAX_PAGE, EventReader
from eventstore.records import RecordedEvent

log = logging.getLogger(__name__)

# What a lost or restarting database raises; readers retry these after a pause.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


@dataclass(frozen=True)
class Batch:
    before: int  # the tail had read up to here
    after: int  # the last position in this batch: every position in (before, after] is in it
    events: Sequence[RecordedEvent]


class Tap:
    """One subscriber's bounded queue of batches; `ready` is set when one arrives."""

    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._batches: deque[Batch] = deque()
        self._held = 0  # events in the queue
        self.ready = asyncio.Event()
        self.dropped = 0  # batches refused because the queue was full

    def offer(self, batch: Batch) -> None:
        if self._batches and self._held + len(batch.events) > self._buffer:
            self.dropped += 1  # the subscriber will see the gap and read it from the table
        else:
            self._batches.append(batch)
            self._held += len(batch.events)
        self.ready.set()

    def take(self) -> Batch | None:
        if not self._batches:
            self.ready.clear()
            return None
        batch = self._batches.popleft()
        self._held -= len(batch.events)
        return batch


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
        self._page_size = page_size
        self._taps: set[Tap] = set()
        self._listened = asyncio.Event()  # set while there are taps
        self._task: asyncio.Task[None] | None = None
        self.position: int | None = None  # read up to here; None while nobody listens

    @property
    def subscribers(self) -> int:
        return len(self._taps)

    def open(self) -> Tap:
        tap = Tap(self._buffer)
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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._taps:
                self.position = None  # start again from the head when someone comes
                await self._listened.wait()
                continue
            wakeup = self._wakeup()  # taken before the read: a commit after it sets it
            try:
                full = await self._read_page()
            except Exception as error:  # the database is down or restarting: never die, retry
                log.warning("event hub: reading the log failed (%r); retrying", error)
                self.position = None
                await asyncio.sleep(self._poll_interval)
                continue
            if not full:
                try:
                    await asyncio.wait_for(wakeup.wait(), self._poll_interval)
                except TimeoutError:
                    pass  # the polling fallback

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
        for tap in self._taps:
            tap.offer(batch)
