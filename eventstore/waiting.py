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
