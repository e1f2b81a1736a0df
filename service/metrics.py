"""The application layer's Prometheus series, the gauges of shared state, and the
exposition (CONTRACT.md 7.7).

Counters and histograms count in the process that did the work. With `serve --workers N`
they live in files under PROMETHEUS_MULTIPROC_DIR and any worker's scrape sums them all.
Gauges of shared state (head, projections, outbox, saga) are read from PostgreSQL and
Redis at scrape time, so every process answers the same; each read is an indexed lookup
or a small table, and the whole scrape is bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from eventstore.outbox import backlog as outbox_backlog
from eventstore.pool import Pool

log = logging.getLogger(__name__)

COMMAND_RETRIES = Counter(
    "eventgraph_command_retries_total", "Command batches decided again after a concurrency conflict"
)
EVENTS_REPLAYED = Histogram(
    "eventgraph_aggregate_events_replayed",
    "Events folded per aggregate load",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 5_000, 10_000, 100_000),
)
OUTBOX_PUBLISHED = Counter("eventgraph_outbox_published_total", "Events the relay published to the broker")
SAGA_MESSAGES = Counter(
    "eventgraph_saga_messages_total",
    "Broker messages handled by the saga's consumer groups, by outcome",
    ["group", "outcome"],  # outcome: processed | duplicate | failed | dead_lettered
)

SCRAPE_TIMEOUT = 2.0  # seconds for the shared-state reads of one scrape
UNREAD_COUNT_LIMIT = 10_000  # entries counted per group on a Redis without XINFO's `lag`

_HEAD = "SELECT coalesce(max(position), 0) FROM events"
_PROJECTIONS = "SELECT name, position FROM projection_checkpoints"


async def shared_state(
    pool: Pool,
    projections: Sequence[str],
    broker: redis.Redis | None,
    stream_key: str,
) -> list[Metric]:
    """The gauges every process reports alike; a source that does not answer in time is
    left out of this scrape (its series go missing, which alerting sees) and logged."""
    families: list[Metric] = []
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT):
            families += await _database_state(pool, projections)
    except Exception as error:
        log.warning("metrics: the database's gauges are missing from this scrape: %r", error)
    if broker is not None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                families += await _broker_state(broker, stream_key)
        except Exception as error:
            log.warning("metrics: the broker's gauges are missing from this scrape: %r", error)
    return families


async def _database_state(pool: Pool, projections: Sequence[str]) -> list[Metric]:
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head = int(await conn.fetchval(_HEAD))
            checkpoints = {r["name"]: int(r["position"]) for r in await conn.fetch(_PROJECTIONS)}
            backlog = await outbox_backlog(conn)
    position = GaugeMetricFamily(
        "eventgraph_projection_position", "The last position a projection applied", labels=["projection"]
    )
    lag = GaugeMetricFamily("eventgraph_projection_lag", "Events a projection is behind the head", labels=["projection"])
    for name in projections:
        at = checkpoints.get(name, 0)
        position.add_metric([name], at)
        lag.add_metric([name], max(head - at, 0))
    return [
        GaugeMetricFamily("eventgraph_head_position", "The global position of the newest event", value=head),
        position,
        lag,
        GaugeMetricFamily("eventgraph_outbox_backlog", "Outbox rows not yet published", value=backlog),
    ]


async def _broker_state(broker: redis.Redis, stream_key: str) -> list[Metric]:
    pending = GaugeMetricFamily(
        "eventgraph_saga_pending",
        "Messages a saga consumer group has not acknowledged: delivered and pending, plus not yet read",
        labels=["group"],
    )
    groups: list[dict[str, Any]] = []
    if await broker.exists(stream_key):
        groups = await broker.xinfo_groups(stream_key)
    for group in groups:
        name = group["name"].decode() if isinstance(group["name"], bytes) else str(group["name"])
        pending.add_metric([name], int(group.get("pending") or 0) + await _unread(broker, stream_key, group))
    parked = int(await broker.xlen(f"{stream_key}:dead-letter"))
    dead = GaugeMetricFamily(
        "eventgraph_saga_dead_letters", "Messages parked in the saga's dead-letter stream", value=parked
    )
    return [pending, dead]


async def _unread(broker: redis.Redis, stream_key: str, group: dict[str, Any]) -> int:
    """Entries the group has not read yet: Redis 7 says (`lag`); before it, they are counted
    (up to UNREAD_COUNT_LIMIT, past which the figure says "at least")."""
    lag = group.get("lag")
    if lag is not None:
        return int(lag)
    last = group["last-delivered-id"]
    last = last.decode() if isinstance(last, bytes) else str(last)
    entries = await broker.xrange(stream_key, min=f"({last}", max="+", count=UNREAD_COUNT_LIMIT)
    return len(entries or ())


def pool_state(pools: Iterable[Pool]) -> list[Metric]:
    """This process's connections by state, and the requests waiting for one (gauges of
    the answering process)."""
    family = GaugeMetricFamily(
        "eventgraph_db_pool_connections", "Pooled database connections of this process", labels=["state"]
    )
    idle = busy = waiting = 0
    for pool in pools:
        idle += pool.idle
        busy += pool.busy
        waiting += pool.waiting
    family.add_metric(["idle"], idle)
    family.add_metric(["busy"], busy)
    waiters = GaugeMetricFamily(
        "eventgraph_db_pool_waiters", "Requests of this process waiting for a pooled connection", value=waiting
    )
    return [family, waiters]


def replica_state(lags: Mapping[str, float]) -> list[Metric]:
    """Each replica's lag as this process measures it (+Inf: unreachable); none without replicas."""
    if not lags:
        return []
    family = GaugeMetricFamily(
        "eventgraph_replica_lag_seconds", "How far a read replica is behind the primary", labels=["replica"]
    )
    for name, lag in lags.items():
        family.add_metric([name], lag)
    return [family]


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _process_registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # every worker's counters, summed
    return registry


def exposition(families: list[Metric]) -> bytes:
    """The text format: this process's (or all workers') series, then `families`."""
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(_Families(families))
    return generate_latest(_process_registry()) + generate_latest(scraped)


def process_stopped() -> None:
    """A worker's live gauges leave the multiprocess sums when it stops."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(os.getpid())
