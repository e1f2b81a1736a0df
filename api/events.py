"""Queries straight from the event store: streams, the global log, traces, nodes."""

from __future__ import annotations

import strawberry

from api.context import Info
from api.inventory import product_node
from api.readmodels import order_node
from api.types import Event, EventConnection, EventEdge, Node, PageInfo


@strawberry.type
class EventQuery:
    @strawberry.field(description="The global log's last position (\"0\" when empty).")
    async def head_position(self, info: Info) -> str:
        info.context.principal  # noqa: B018 - needs a token like every non-meta field
        return str(await info.context.services.events.head_position())

    @strawberry.field
    async def stream(
        self, info: Info, stream_id: str, from_version: int | None = 1, first: int | None = 100
    ) -> list[Event]:
        c = info.context
        # nullable with defaults, as the contract prints them; an explicit null means the default
        events = await c.services.events.stream(
            c.principal,
            stream_id,
            1 if from_version is None else from_version,
            100 if first is None else first,
        )
        return [Event.of(e) for e in events]

    @strawberry.field(description="The global log; the cursor is the position.")
    async def events(
        self,
        info: Info,
        after: str | None = None,
        first: int | None = 100,
        types: list[str] | None = None,
    ) -> EventConnection:
        c = info.context
        events, more = await c.services.events.page(
            c.principal, after, 100 if first is None else first, types
        )
        edges = [EventEdge(cursor=str(e.position), node=Event.of(e)) for e in events]
        return EventConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=more, end_cursor=edges[-1].cursor if edges else after),
        )

    @strawberry.field(description="Every event of one business flow, in causal order.")
    async def trace(self, info: Info, correlation_id: str) -> list[Event]:
        c = info.context
        return [Event.of(e) for e in await c.services.events.trace(c.principal, correlation_id)]

    @strawberry.field
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        c = info.context
        if _looks_like_uuid(id):
            return Event.of(await c.services.events.event(c.principal, id))
        product = await product_node(info, id)
        if product is not None:
            return product
        return await order_node(info, id)  # orders come from the read model


def _looks_like_uuid(value: str) -> bool:
    return len(value) == 36 and value.count("-") == 4
