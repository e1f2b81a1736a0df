"""GraphQL object types, built from read views and recorded events (contract section 4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import strawberry
from graphql import FloatValueNode, GraphQLError, IntValueNode, StringValueNode, ValueNode
from strawberry.scalars import JSON
from strawberry.schema.types.base_scalars import DateTimeDefinition, DecimalDefinition

from domain.errors import InvalidInput
from domain.money import parse_decimal, to_minor_units
from domain.order import OrderStatus
from eventstore import RecordedEvent
from readmodels.views import OrderLineView, OrderView


def decimal_input(value: Any) -> Decimal:
    """The `Decimal` scalar's input: strict text (CONTRACT 3, 7.1), or a JSON number."""
    try:
        return parse_decimal(value, field="Decimal")
    except InvalidInput as error:
        raise GraphQLError(str(error)) from None


def decimal_literal(node: ValueNode, _variables: Any = None) -> Decimal:
    """A literal as written in the document (`1e2` stays `1e2`, and is refused)."""
    if isinstance(node, StringValueNode | IntValueNode | FloatValueNode):
        return decimal_input(node.value)
    raise GraphQLError("Decimal: expected a decimal number as a string such as \"19.99\"")


# strawberry's Decimal with strict parsing: Python's Decimal() takes "1e1000000", "1_0",
# " 1", "NaN" and other scripts' digits.
STRICT_DECIMAL = dataclasses.replace(DecimalDefinition, parse_value=decimal_input, parse_literal=decimal_literal)


_parse_datetime = cast(Callable[[Any], datetime], DateTimeDefinition.parse_value)


def datetime_input(value: Any) -> datetime:
    """strawberry's DateTime input, refusing instants PostgreSQL cannot be asked about
    ("0001-01-01T00:00:00+14:00" is before year 1 in UTC: an OverflowError deep down)."""
    parsed = _parse_datetime(value)
    try:
        parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise GraphQLError("DateTime: the instant is outside the years 1 to 9999 in UTC") from None
    return parsed


# strawberry's DateTime, checked as above
BOUNDED_DATETIME = dataclasses.replace(DateTimeDefinition, parse_value=datetime_input)


@strawberry.interface
class Node:
    id: strawberry.ID


strawberry.enum(OrderStatus)  # the domain's own statuses are the schema's: one definition


@strawberry.type
class Money:
    amount: Decimal
    currency: str

    @classmethod
    def of(cls, amount: Decimal, currency: str) -> Money:
        """Exact, rendered with the currency's minor-unit digits ("7.50", JPY "5")."""
        return cls(amount=to_minor_units(amount, currency), currency=currency)


@strawberry.type
class OrderLine:
    sku: str
    quantity: int
    unit_price: Money
    discount: Money
    line_total: Money

    @classmethod
    def of(cls, line: OrderLineView, currency: str) -> OrderLine:
        return cls(
            sku=line.sku,
            quantity=line.quantity,
            unit_price=Money.of(line.unit_price, currency),
            discount=Money.of(line.discount, currency),
            line_total=Money.of(line.line_total, currency),
        )


def order_lines(root: Order) -> list[OrderLine]:
    # built when selected: a mutation's payload rarely asks for every line
    return [OrderLine.of(line, root.currency) for line in root.line_views]


@strawberry.type
class Order(Node):
    id: strawberry.ID
    customer_id: strawberry.ID
    status: OrderStatus
    currency: str
    lines: list[OrderLine] = strawberry.field(resolver=order_lines)
    line_views: strawberry.Private[tuple[OrderLineView, ...]]
    total: Money
    version: int
    cancellation_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: OrderView) -> Order:
        return cls(
            id=strawberry.ID(view.id),
            customer_id=strawberry.ID(view.customer_id),
            status=OrderStatus(view.status),
            currency=view.currency,
            line_views=view.lines,
            total=Money.of(view.total, view.currency),
            version=view.version,
            cancellation_reason=view.cancellation_reason,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


@strawberry.type
class EventMetadata:
    correlation_id: str
    causation_id: str | None
    user_id: str | None
    service: str


@strawberry.type
class Event(Node):
    id: strawberry.ID
    position: str
    stream_id: str
    version: int
    type: str
    data: JSON
    metadata: EventMetadata
    recorded_at: datetime

    @classmethod
    def of(cls, event: RecordedEvent) -> Event:
        meta = event.metadata
        return cls(
            id=strawberry.ID(str(event.event_id)),
            position=str(event.position),
            stream_id=event.stream_id,
            version=event.version,
            type=event.type,
            data=JSON(dict(event.data)),
            metadata=EventMetadata(
                correlation_id=str(meta.get("correlation_id", "")),
                causation_id=meta.get("causation_id"),
                user_id=meta.get("user_id"),
                service=str(meta.get("service", "")),
            ),
            recorded_at=event.recorded_at,
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class EventEdge:
    cursor: str
    node: Event


@strawberry.type
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo


def payload_events(root: OrderPayload) -> list[Event]:
    return [Event.of(event) for event in root.recorded]


@strawberry.type
class OrderPayload:
    order: Order
    stream_version: int
    position: str
    events: list[Event] = strawberry.field(resolver=payload_events)
    recorded: strawberry.Private[Sequence[RecordedEvent]]
