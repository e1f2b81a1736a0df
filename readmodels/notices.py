"""One LISTEN connection per process, fanned out in memory.

A notification is a hint that something committed, never the data: whoever
wakes re-reads the tables. Listeners subscribe before they read, so nothing
that commits between their read and their wait goes unnoticed; a wait also
times out (the polling fallback) and after a reconnect every waiter is woken
to read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import asyncpg

from eventstore.pool import connect
from eventstore.waiting import honour_cancellation

log = logging.getLogger(__name__)

RECONNECT_DELAY = 1.0


class Notices:
    def __init__(self, dsn: str, channels: Sequence[str]) -> None:
        self._dsn = dsn
        self._channels = tuple(channels)
        self._events = {channel: asyncio.Event() for channel in self._channels}
        self._callbacks: dict[str, list[Callable[[str], None]]] = {c: [] for c in self._channels}
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notices")

    def next(self, channel: str) -> asyncio.Event:
        """An event set by the next notification on `channel` (take it before reading)."""
        self.start()
        return self._events[channel]

    def on(self, channel: str, callback: Callable[[str], None]) -> None:
        """`callback(payload)` for each notification; `callback("")` after every (re)connect."""
        self._callbacks[channel].append(callback)

    def _wake(self, channel: str) -> None:
        current, self._events[channel] = self._events[channel], asyncio.Event()
        current.set()

    def _notified(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        for callback in self._callbacks.get(channel, ()):
            callback(payload)
        self._wake(channel)

    async def _run(self) -> None:
        while not self._closed.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self._channels:
                    await conn.add_listener(channel, self._notified)
                for channel in self._channels:
                    # whatever happened while we were away: read again ("": notices may be missing)
                    self._notified(conn, 0, channel, "")
                waiters = [asyncio.create_task(self._closed.wait()), asyncio.create_task(lost.wait())]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
            except Exception as error:  # unreachable server, restart, bad URL: retry
                honour_cancellation()
                log.warning("notification listener lost (%r); reconnecting", error)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):  # bounded: a dead peer never answers
                        await conn.close(timeout=2)
            if not self._closed.is_set():
                await asyncio.sleep(RECONNECT_DELAY)

    async def close(self) -> None:
        self._closed.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
