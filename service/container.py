"""The composition root's parts: one place that wires store, reader and handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.upcasters import UPCASTERS
from eventstore import NOTIFY_CHANNEL, Appender, EventReader, UpcasterRegistry
from eventstore.listener import EventHub
from eventstore.pool import Pool, create_pool
from eventstore.replicas import ReadPools
from eventstore.snapshots import SnapshotStore
from readmodels.read_models import ReadModels
from service.aggregates import Aggregates
from service.context import RequestContext
from service.events import EventQueries
from service.handlers import CommandHandlers
from service.live import LiveQueries
from service.module import Modules, load_modules
from service.orders import OrderHistory
from service.persisted_documents import DocumentStore, document_store
from service.settings import Settings
from service.snapshots import Snapshots
from service.stream_commands import CommandResult, StreamCommands


def build_upcasters() -> UpcasterRegistry:
    registry = UpcasterRegistry()
    for from_type, to_type, upcast in UPCASTERS:
        registry.register(from_type, to_type, upcast)
    return registry


@dataclass
class Services:
    settings: Settings
    modules: Modules  # the app's contexts: their handlers, events, projections, reactions
    dsn: str
    pool: Pool
    reads: ReadPools  # read-only queries: replicas within the lag bound, else `pool`
    reader: EventReader  # commands' reads: always the primary
    appender: Appender
    commands: StreamCommands
    handlers: CommandHandlers  # `execute`: every command, by its type
    orders: OrderHistory
    events: EventQueries
    read_models: ReadModels
    live: LiveQueries
    snapshots: Snapshots
    documents: DocumentStore  # automatic persisted queries' documents

    @classmethod
    async def start(cls, settings: Settings, dsn: str) -> Services:
        pool = await create_pool(dsn, max_size=settings.pool_size, acquire_timeout=settings.pool_timeout)
        reads = await ReadPools.open(
            pool, dsn, settings.read_urls, pool_size=settings.read_pool_size, max_lag=settings.replica_max_lag
        )
        modules = load_modules(settings.modules)
        if modules.tables:
            async with pool.acquire() as conn:
                await modules.create_tables(conn)
        upcasters = build_upcasters()
        reader = EventReader(pool, upcasters)
        query_reader = EventReader(reads, upcasters)
        appender = Appender(pool)
        snapshots = Snapshots(SnapshotStore(pool))
        commands = StreamCommands(appender, reader, snapshots, events=modules.event_types)
        read_models = ReadModels(pool, dsn, reads, [cls.name for cls in modules.projections])
        notices = read_models.notices  # the process's one LISTEN connection
        # The primary's notification says how far the log is: a replica read must reach it.
        notices.on(NOTIFY_CHANNEL, query_reader.notified)
        hub = EventHub(
            query_reader,
            lambda: notices.next(NOTIFY_CHANNEL),
            poll_interval=settings.subscription_poll_interval,
            buffer=settings.subscription_buffer,
        )
        return cls(
            settings=settings,
            modules=modules,
            dsn=dsn,
            pool=pool,
            reads=reads,
            reader=reader,
            appender=appender,
            commands=commands,
            handlers=CommandHandlers(commands, modules.handlers),
            orders=OrderHistory(Aggregates(query_reader, snapshots, events=modules.event_types)),
            events=EventQueries(query_reader),
            read_models=read_models,
            live=LiveQueries(hub, reader, read_models),
            snapshots=snapshots,
            documents=document_store(settings, pool),
        )

    async def execute(self, ctx: RequestContext, command: Any) -> CommandResult[Any]:
        """Run a command (domain/commands.py) through the handler registered for its type."""
        return await self.handlers.execute(ctx, command)

    async def close(self) -> None:
        await self.live.hub.close()
        await self.read_models.close()
        await self.appender.close()
        await self.snapshots.close()
        await self.documents.close()
        await self.reads.close()
        await self.pool.close()
