"""Waiting for an event with a timeout, in a way a cancellation always ends, and
honouring a cancellation that a library turned into an error.

Not `asyncio.wait_for`: on Python 3.11 it returns the inner result and drops the
cancellation when the awaited thing completes in the same loop turn as the cancel.
A background loop waiting so (the event hub between polls) then ran on after its
`close()` had cancelled it, and `close()` waited for it forever: the test suite's
teardown hang, about one run in fifteen. `asyncio.timeout` counts cancellations and
never drops one.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """Until `event` is set (True) or `seconds` pass (False)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


def honour_cancellation() -> None:
    """Raise CancelledError if this task was cancelled. Call it in a retry loop's `except
    Exception`: redis-py and asyncpg sometimes turn a cancellation that lands in a blocking
    call into an error or an empty reply, and a loop that retried on it would outlive its
    own shutdown (a killed saga consumer kept on in 4 of 150 cancellations measured)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Gathering:
    """How long a log follower (a projection, the relay) waits after a batch before the
    next, so that the events committed meanwhile share one batch.

    `least` after a quiet spell: when nothing committed while the batch was under way, the
    next event is not kept waiting long. Under load (something committed while it was
    under way) the pause doubles, batch after batch, up to `most`: a batch's fixed cost
    (its round trips, and downstream the consumers' reads) is shared by more events,
    for at most `most` of extra latency."""

    def __init__(self, least: float, most: float) -> None:
        self.least = least
        self.most = max(most, least)
        self.pause = least

    def after_batch(self, busy: bool) -> float:
        """The pause before the next batch; `busy`: something committed during this one."""
        self.pause = min(self.pause * 2, self.most) if busy else self.least
        return self.pause
