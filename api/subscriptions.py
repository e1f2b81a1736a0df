"""Subscriptions: the event log and order changes, live (graphql-transport-ws, api/websocket.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from api.context import Info
from api.types import Event, Order


@strawberry.type
class LiveSubscription:
    @strawberry.subscription(
        description="Catch-up then live: every event after `after` (or from the start), in"
        " strictly increasing position, none skipped, none twice; resume with the last"
        " position seen."
    )
    async def events(
        self,
        info: Info,
        after: str | None = None,
        types: list[str] | None = None,
        stream_id: str | None = None,
    ) -> AsyncGenerator[Event, None]:
        c = info.context
        async for event in c.services.live.events(c.principal, after, types, stream_id):
            yield Event.of(event)

    @strawberry.subscription(
        description="The order's read model now, then each time the projection applies a change."
    )
    async def order_changed(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Order, None]:
        c = info.context
        async for view in c.services.live.order_changes(c.principal, id):
            yield Order.of(view)
