"""The saga's three consumer groups as one worker: inside `serve`, or `eventgraph saga`."""

from __future__ import annotations

import asyncio
import logging

from service import broker
from service.container import Services
from service.saga.consumer import StreamConsumer
from service.saga.tracked import TrackedAppends

log = logging.getLogger(__name__)

CLAIM_IDLE = 30.0  # seconds a message may stay pending before another consumer takes it


async def saga_worker(services: Services, stop: asyncio.Event, claim_idle: float = CLAIM_IDLE) -> None:
    settings = services.settings
    if not settings.redis_url:
        log.warning("saga consumers off: no REDIS_URL and no embedded Redis")
        return
    client = broker.redis_client(settings.redis_url)
    tracked = TrackedAppends(services.appender, services.reader, services.snapshots, events=services.modules.event_types)
    consumers = [
        StreamConsumer(client, r(tracked), stream_key=settings.broker_stream, claim_idle=claim_idle)
        for r in services.modules.reactions
    ]
    try:
        await asyncio.gather(*(c.run(stop) for c in consumers))
    finally:
        await client.aclose()
