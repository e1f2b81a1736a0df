"""The saga's consumer as a worker: inside `serve`, or `eventgraph saga`.

Every context's reactions share one consumer group, `saga` (service/saga/consumer.py):
the stream is read once for all of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis

from service import broker
from service.container import Services
from service.saga.consumer import StreamConsumer
from service.saga.reactions import Reactions
from service.saga.tracked import TrackedAppends

log = logging.getLogger(__name__)

CLAIM_IDLE = 30.0  # seconds a message may stay pending before another consumer takes it
SAGA_GROUP = "saga"


def saga_consumer(
    client: redis.Redis, reactions: Sequence[Reactions], stream_key: str, **options: Any
) -> StreamConsumer:
    """The saga's consumer: every context's reactions in the one group."""
    return StreamConsumer(client, reactions, group=SAGA_GROUP, stream_key=stream_key, **options)


async def saga_worker(services: Services, stop: asyncio.Event, claim_idle: float = CLAIM_IDLE) -> None:
    settings = services.settings
    if not settings.redis_url:
        log.warning("saga consumers off: no REDIS_URL and no embedded Redis")
        return
    client = broker.redis_client(settings.redis_url)
    tracked = TrackedAppends(services.appender, services.reader, services.snapshots, events=services.modules.event_types)
    reactions = [r(tracked) for r in services.modules.reactions]
    consumer = saga_consumer(client, reactions, settings.broker_stream, claim_idle=claim_idle)
    try:
        await consumer.run(stop)
    finally:
        await client.aclose()
