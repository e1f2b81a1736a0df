"""What `/healthz` reports: the database, which the service cannot work without, and the
broker, which only the background work (outbox relay, saga) needs."""

from __future__ import annotations

import asyncio

from eventstore.outage import Outage
from eventstore.pool import Pool
from service.broker import redis_client

OK, UNAVAILABLE, ABSENT = "ok", "unavailable", "absent"
DATABASE_TIMEOUT = 2.0  # seconds; a load balancer's check gives up soon after
BROKER_TIMEOUT = 1.0


async def database_status(pool: Pool) -> str:
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT):
            await pool.fetchval("SELECT 1")
    except Exception as error:  # any failure to answer in time means unavailable
        pool.outage.started(f"health check failed: {error!r}")
        return UNAVAILABLE
    return OK


class BrokerProbe:
    """Pings Redis on a connection of its own per check (checks are seconds apart)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.outage = Outage("broker")

    async def status(self) -> str:
        if not self.url:
            return ABSENT
        client = redis_client(self.url)
        try:
            async with asyncio.timeout(BROKER_TIMEOUT):
                await client.ping()
        except Exception as error:
            self.outage.started(repr(error))
            return UNAVAILABLE
        finally:
            await client.aclose()
        self.outage.ended()
        return OK


async def health(pool: Pool, broker: BrokerProbe) -> tuple[int, dict[str, str]]:
    """The status code and body: 503 only when the database does not answer (contract: 200
    when the database is reachable); a broker outage is reported but delays only the
    relay and saga, which catch up when it is back."""
    database, broker_state = await asyncio.gather(database_status(pool), broker.status())
    body = {"status": OK if database == OK else UNAVAILABLE, "database": database, "broker": broker_state}
    return (200 if database == OK else 503), body
