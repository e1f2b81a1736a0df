"""Queries answered from the read models: order, orders, projections; and read-your-writes."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.extensions import SchemaExtension

from api.context import Context, Info
from api.types import Order, OrderStatus, PageInfo
from domain.ids import check_id
from readmodels.consistency import pinned_source
from readmodels.kept import Kept
from readmodels.order_queries import KEPT_VIEWS
from readmodels.orders import OrderProjection
from readmodels.views import OrderView
from service.errors import Forbidden, NotFound
from service.events import parse_position

ORDERS = OrderProjection.name


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo


@strawberry.type
class ProjectionStatus:
    name: str
    position: str
    lag: int
    state: str
    owner: str | None = strawberry.field(
        description='The process running it, as "<host>:<pid>"; null while none does.'
    )


# The GraphQL orders built from read views, by the view's identity (each entry holds its
# view, so the identity cannot be reused): the read model hands out one view per order
# row (readmodels.order_queries), so a page read again reuses its orders, with their
# lines and money already built (with the kept views: a 20-order page of 3 lines each
# costs ~0.5 ms of CPU here read again, ~1.6 ms with every row new).
_ORDERS: Kept[int, tuple[OrderView, Order]] = Kept(KEPT_VIEWS)


def order_of(view: OrderView) -> Order:
    kept = _ORDERS.get(id(view))
    if kept is not None and kept[0] is view:
        return kept[1]
    return _ORDERS.keep(id(view), (view, Order.of(view)))[1]


def orders_loader(context: Context) -> DataLoader[str, OrderView | None]:
    """Per request: every order looked up by id in one operation costs one statement."""
    loader = context.loaders.get("orders")
    if loader is None:
        read = context.services.read_models.orders

        async def load(ids: list[str]) -> list[OrderView | None]:
            found = await read.by_ids(ids, pinned_source(context.consistency, ORDERS))
            return [found.get(i) for i in ids]

        loader = context.loaders["orders"] = DataLoader(load_fn=load)
    return loader


async def read_your_writes(context: Context, consistent_with: str | None, projection: str = ORDERS) -> None:
    """Wait (bounded) until `projection` has applied `consistent_with` (a mutation's position)."""
    if consistent_with is None:
        return
    position = parse_position(consistent_with, "consistentWith")
    services = context.services
    outcome = await services.read_models.consistent_with(
        projection, position, services.settings.consistency_timeout
    )
    context.consistency.append(outcome)


async def order_node(info: Info, order_id: str) -> Order:
    """An order the caller may see, from the read model; anything else is NOT_FOUND."""
    principal = info.context.principal
    check_id(order_id, "id")
    view = await orders_loader(info.context).load(order_id)
    if view is None or not principal.can_see_customer(view.customer_id):
        raise NotFound(f"order {order_id} not found")
    return order_of(view)


@strawberry.type
class ReadModelQuery:
    @strawberry.field(description="An order from the read model; `consistentWith` waits for a write.")
    async def order(
        self, info: Info, id: strawberry.ID, consistent_with: str | None = None
    ) -> Order | None:
        info.context.principal  # noqa: B018 - authenticate before waiting
        await read_your_writes(info.context, consistent_with)
        return await order_node(info, id)

    @strawberry.field(description="Orders newest first; a customer sees only its own.")
    async def orders(
        self,
        info: Info,
        customer_id: strawberry.ID | None = None,
        status: OrderStatus | None = None,
        first: int | None = 20,
        after: str | None = None,
        consistent_with: str | None = None,
    ) -> OrderConnection:
        c = info.context
        principal = c.principal
        if not principal.privileged:
            if customer_id is not None and customer_id != principal.sub:
                raise Forbidden("a customer can only list its own orders")
            customer_id = strawberry.ID(principal.sub)
        await read_your_writes(c, consistent_with)
        page = await c.services.read_models.orders.page(
            customer_id=customer_id,
            status=status.value if status is not None else None,
            first=20 if first is None else first,
            after=after,
            source=pinned_source(c.consistency, ORDERS),
        )
        orders_loader(c).prime_many({view.id: view for _, view in page.items})
        edges = [OrderEdge(cursor=cursor, node=order_of(view)) for cursor, view in page.items]
        return OrderConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else after),
        )

    @strawberry.field(description="Each projection's checkpoint, lag and state (staff).")
    async def projections(self, info: Info) -> list[ProjectionStatus]:
        c = info.context
        c.principal.require_privileged("see projections")
        return [
            ProjectionStatus(
                name=s.name, position=str(s.position), lag=min(s.lag, 2**31 - 1), state=s.state, owner=s.owner
            )
            for s in await c.services.read_models.statuses()
        ]


def consistency_report(context: Context) -> dict[str, Any]:
    """The response's `extensions` when a `consistentWith` wait ran out of time."""
    stale = [w for w in context.consistency if w.stale]
    if not stale:
        return {}
    return {
        "stale": True,
        "consistency": [
            {"projection": w.projection, "requested": str(w.requested), "applied": str(w.applied)}
            for w in stale
        ],
    }


class ConsistencyReport(SchemaExtension):
    """`consistency_report` for strawberry's own execution path (WebSocket operations)."""

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        return consistency_report(context) if isinstance(context, Context) else {}
