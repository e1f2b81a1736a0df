"""GraphQL object types, built from read views and recorded events (contract section 4)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast, overload

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
        return _money(amount, amount.is_signed(), currency)


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


@functools.lru_cache(maxsize=4096)
def _money(amount: Decimal, _signed: bool, currency: str) -> Money:
    # Values repeat (prices, totals): a list page shares them. Equal amounts render alike,
    # but for the sign of a zero (-0 == 0): hence the key's sign.
    return Money(amount=to_minor_units(amount, currency), currency=currency)


class OrderLines(Sequence[OrderLine]):
    """An order's lines, built when read: a mutation's payload rarely asks for every line,
    and a plain attribute costs a list page no resolver call per order."""

    __slots__ = ("_views", "_currency", "_built")

    def __init__(self, views: tuple[OrderLineView, ...], currency: str) -> None:
        self._views, self._currency = views, currency
        self._built: list[OrderLine] | None = None

    def _lines(self) -> list[OrderLine]:
        if self._built is None:
            self._built = [OrderLine.of(line, self._currency) for line in self._views]
        return self._built

    def __len__(self) -> int:
        return len(self._views)

    @overload
    def __getitem__(self, index: int) -> OrderLine: ...
    @overload
    def __getitem__(self, index: slice) -> list[OrderLine]: ...
    def __getitem__(self, index: int | slice) -> OrderLine | list[OrderLine]:
        return self._lines()[index]

    def __iter__(self) -> Iterator[OrderLine]:
        return iter(self._lines())


@strawberry.type
class Order(Node):
    id: strawberry.ID
    customer_id: strawberry.ID
    status: OrderStatus
    currency: str
    lines: Sequence[OrderLine]
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
            lines=OrderLines(view.lines, view.currency),
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
