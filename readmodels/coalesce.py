"""Lookups by key from concurrent requests, merged into shared statements.

A point read costs the process ~150 µs of CPU here, most of it the round trip (a
`SELECT 1` costs ~100 µs), whatever the number of keys: eight keys in one statement
cost ~70 µs each. Under load many requests look up rows at the same time, so while
`in_flight` statements are under way, further lookups wait and go out together in the
next one. A lone lookup goes out at once, in its caller's task.

Each caller still gets only its own keys, read by a statement that started after it
asked (so no older than a statement of its own would have been), and the error of the
statement that served it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Fetch = Callable[[list[K]], Awaitable[dict[K, V]]]


class CoalescedLookup(Generic[K, V]):
    def __init__(self, fetch: Fetch[K, V], *, in_flight: int = 2, max_keys: int = 500) -> None:
        self._fetch = fetch
        self._in_flight = in_flight
        self._max_keys = max_keys
        self._busy = 0
        self._queue: deque[tuple[Sequence[K], asyncio.Future[dict[K, V]]]] = deque()
        self._batches: set[asyncio.Task[None]] = set()  # kept referenced while they run

    async def get(self, keys: Sequence[K]) -> dict[K, V]:
        """The rows found for `keys` (missing keys are absent)."""
        if self._busy < self._in_flight and not self._queue:
            self._busy += 1
            try:
                return await self._fetch(list(keys))
            finally:
                self._busy -= 1
                self._start_next()
        future: asyncio.Future[dict[K, V]] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, future))
        return await future

    def _start_next(self) -> None:
        if not self._queue or self._busy >= self._in_flight:
            return
        batch = [self._queue.popleft()]
        count = len(batch[0][0])
        while self._queue and count + len(self._queue[0][0]) <= self._max_keys:
            keys, future = self._queue.popleft()
            batch.append((keys, future))
            count += len(keys)
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run(self, batch: list[tuple[Sequence[K], asyncio.Future[dict[K, V]]]]) -> None:
        try:
            waiting = [(keys, future) for keys, future in batch if not future.done()]  # not given up
            if not waiting:
                return
            try:
                found = await self._fetch(list(dict.fromkeys(k for keys, _ in waiting for k in keys)))
            except BaseException as error:  # each waiter gets it, as from a statement of its own
                for _, future in waiting:
                    if not future.done():
                        if isinstance(error, asyncio.CancelledError):
                            future.cancel()
                        else:
                            future.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                return
            for keys, future in waiting:
                if not future.done():
                    future.set_result({k: found[k] for k in keys if k in found})
        finally:
            self._busy -= 1
            self._start_next()
