"""An order's read model each time the orders projection has applied a change to it.

The order's stream, followed through the event hub, says *that* the order
changed and at which position; the projection's checkpoint (its NOTIFY is
the hint) says *when* the read model reflects it; then the view is read from
the read model, so it always agrees with `order(id)`. Changes the projection
applied in one batch arrive as one view.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from domain.order import order_stream
from eventstore.listener import EventHub
from eventstore.pool import Pool
from eventstore.subscription import subscribe
from readmodels.orders import OrderProjection
from readmodels.read_models import ReadModels
from readmodels.views import OrderView

WAIT_SLICE = 30.0  # seconds per bounded wait on the projection; waits repeat until it applies


async def order_changes(
    hub: EventHub, read_models: ReadModels, order_id: str
) -> AsyncIterator[OrderView]:
    """The current view (when there is one), then one view per change the projection applies."""
    head = await hub.reader.head_position()
    changes = subscribe(hub, head, stream_id=order_stream(order_id))
    view = await _view(read_models, order_id, await _applied(read_models, head))
    sent = 0
    if view is not None:
        sent = view.version
        yield view
    async for event in changes:
        if event.version <= sent:
            continue  # an earlier view already showed it
        view = await _view(read_models, order_id, await _applied(read_models, event.position))
        if view is not None and view.version > sent:
            sent = view.version
            yield view


async def _applied(read_models: ReadModels, position: int) -> Pool | None:
    """Returns once the orders projection has applied `position`: where to read it."""
    if position == 0:
        return None
    while (wait := await read_models.consistent_with(OrderProjection.name, position, WAIT_SLICE)).stale:
        pass
    return wait.source


async def _view(read_models: ReadModels, order_id: str, source: Pool | None) -> OrderView | None:
    return (await read_models.orders.by_ids([order_id], source)).get(order_id)
