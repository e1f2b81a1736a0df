"""Consumers' processed-message records (written by the append with a `Tracking`): retention.

A record absorbs a redelivery of its message (a crash between the commit and the
acknowledgement, a relay that published twice). Redeliveries come within seconds
to minutes; a record older than the retention has no message left to absorb, and
a message redelivered later than that would be processed again.
"""

from __future__ import annotations

import asyncpg

_PURGE = """
DELETE FROM processed_messages WHERE (consumer, message_id) IN (
    SELECT consumer, message_id FROM processed_messages
    WHERE processed_at < now() - make_interval(secs => $1)
    LIMIT $2
)
"""


async def purge_processed(conn: asyncpg.Connection, older_than_seconds: float, limit: int = 10_000) -> int:
    """Delete up to `limit` records older than the retention; how many went."""
    status = await conn.execute(_PURGE, older_than_seconds, limit)
    return int(status.split()[-1])
