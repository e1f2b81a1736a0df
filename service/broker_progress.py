"""How far the broker stream's consumer groups have got: what a Redis that lost its data
must be given again.

Every group has acknowledged each entry before its first pending one, and before the
first entry after its last delivered one. The stream is in position order (the relay
publishes in order), so the lowest such entry's position, less one, bounds what the
groups still need. A group created later starts at the stream's beginning (the saga's
consumers create theirs at id 0), so with no group the first entry bounds it.
"""

from __future__ import annotations

import orjson
import redis.asyncio as redis
from redis.exceptions import ResponseError

from service import broker

Entry = tuple[bytes, dict[bytes, bytes]]


async def needed_after(client: redis.Redis, stream_key: str, published_through: int) -> int | None:
    """The position after which some consumer group may still need entries
    (`published_through` when none does); None when an entry is not one of our events."""
    try:
        groups = await client.xinfo_groups(stream_key)
    except ResponseError:  # no stream (yet): nothing in it is needed
        return published_through
    if groups:
        firsts = [await _first_unacknowledged(client, stream_key, group) for group in groups]
    else:
        firsts = [await _first(client, stream_key, "-")]
    try:
        positions = [_position(entry) for entry in firsts if entry is not None]
    except (ValueError, KeyError, TypeError):
        return None
    return min(positions) - 1 if positions else published_through


async def _first_unacknowledged(client: redis.Redis, stream_key: str, group: dict[str, object]) -> Entry | None:
    if group["pending"]:
        summary = await client.xpending(stream_key, group["name"])  # type: ignore[arg-type]
        return await _first(client, stream_key, summary["min"])
    return await _first(client, stream_key, b"(" + group["last-delivered-id"])  # type: ignore[operator]


async def _first(client: redis.Redis, stream_key: str, start: bytes | str) -> Entry | None:
    entries = await client.xrange(stream_key, min=start, count=1)
    return entries[0] if entries else None  # type: ignore[return-value]


def _position(entry: Entry) -> int:
    return int(orjson.loads(entry[1][broker.FIELD.encode()])["position"])
