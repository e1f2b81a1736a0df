"""Live reads on a caller's behalf: the event log and order changes, with visibility rules.

A customer gets only the events of its own streams (the streams it owns:
its orders, its wallet) and only its own orders; staff and services get
everything. Another customer's stream or order is NOT_FOUND, as in queries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from domain.errors import InvalidInput
from domain.ids import check_id
from domain.order import order_stream
from eventstore import EventReader, RecordedEvent
from eventstore.listener import EventHub
from eventstore.subscription import subscribe
from readmodels.live import order_changes
from readmodels.read_models import ReadModels
from readmodels.views import OrderView
from service.context import Principal
from service.errors import NotFound
from service.events import parse_position, require_visible_stream


class LiveQueries:
    def __init__(self, hub: EventHub, reader: EventReader, read_models: ReadModels) -> None:
        self.hub = hub
        self._reader = reader
        self._read_models = read_models

    async def events(
        self,
        principal: Principal,
        after: str | None,
        types: Sequence[str] | None,
        stream_id: str | None,
    ) -> AsyncIterator[RecordedEvent]:
        """Every visible event after `after` (a position), catch-up then live, each once."""
        position = parse_position(after)
        if position > 0 and position > await self._reader.head_position():
            # positions are handed out gap-free: one past the head never came from this log
            raise InvalidInput(f"after {position} is past the log's head")
        owner = None if principal.privileged else principal.sub
        if stream_id is not None and owner is not None:
            # A stream that does not exist yet may be awaited; another customer's may not.
            _, stream_owner = await self._reader.stream_head(stream_id)
            if stream_owner is not None and stream_owner != owner:
                raise NotFound(f"stream {stream_id} not found")
        async for event in subscribe(
            self.hub, position, types=types, stream_id=stream_id, owner=owner
        ):
            yield event

    async def order_changes(self, principal: Principal, order_id: str) -> AsyncIterator[OrderView]:
        stream_id = order_stream(check_id(order_id, "id"))
        await require_visible_stream(self._reader, principal, stream_id, f"order {order_id}")
        async for view in order_changes(self.hub, self._read_models, order_id):
            yield view
