"""The orders projection: one row per order in `order_views`, its lines as JSON on the
row (`lines`), so that reading a page needs no join and applying a batch no second table.

A batch is applied in two statements whatever its size: load the touched orders with
only the lines of the skus the batch names, fold the events onto them in memory, and
upsert the orders, their total and line count kept by adding what each event changes
(domain.order.line_total of the line before and after: summing 30 lines per event was
the largest part of the per-event cost of `serve` with its workers under addItem load),
their JSON lines by replacing and removing only the changed skus' keys. A separate
`order_lines` table was kept until migration 0008: its DELETE and INSERT per batch were
a third of the database's work for each addItem.
An event whose stream version the row already reflects
is skipped: that makes a replayed batch a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import asyncpg

from domain.order import (
    ORDER_EVENTS,
    ORDER_STREAM_PREFIX,
    ItemAdded,
    ItemRemoved,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    line_total,
)
from readmodels.projection import LogEvent, Projection


@dataclass(slots=True)
class _Line:
    seq: int  # position of the event that put the sku on the order
    quantity: int
    unit_price: Decimal
    discount: Decimal


@dataclass(slots=True)
class _Order:
    id: str
    seq: int
    customer_id: str
    currency: str
    created_at: datetime
    status: str = OrderStatus.DRAFT.value
    version: int = 0
    cancellation_reason: str | None = None
    updated_at: datetime | None = None
    total: Decimal = Decimal(0)  # of all its lines
    line_count: int = 0
    lines: dict[str, _Line] = field(default_factory=dict)  # of the skus the batch names
    stored: bool = False  # it has a row already
    changed_skus: set[str] = field(default_factory=set)  # lines added, changed or removed


# The status each event leaves an order in (the row folds the stored data directly: a
# rebuild is decoding-bound, and tests compare this fold with Order.apply).
_FINAL_STATUS = {
    OrderSubmitted.TYPE: OrderStatus.SUBMITTED.value,
    OrderCompleted.TYPE: OrderStatus.COMPLETED.value,
    OrderRejected.TYPE: OrderStatus.REJECTED.value,
    OrderCancelled.TYPE: OrderStatus.CANCELLED.value,
}


def _fold(order: _Order, event: LogEvent) -> None:
    """One event's effect on the row; mirrors domain.order.Order.apply (tests compare them)."""
    data = event.data
    kind = event.type
    if kind == ItemAdded.TYPE:
        sku = data["item_id"]
        line = order.lines.get(sku)
        if line is None:
            line = order.lines[sku] = _Line(event.position, 0, Decimal(data["price"]), Decimal(0))
            order.line_count += 1
        order.total -= _total(line)
        line.quantity += int(data["quantity"])
        line.discount += Decimal(data["discount"])
        order.total += _total(line)
        order.changed_skus.add(sku)
    elif kind == ItemRemoved.TYPE:
        removed = order.lines.pop(data["item_id"], None)
        if removed is not None:
            order.total -= _total(removed)
            order.line_count -= 1
        order.changed_skus.add(data["item_id"])
    elif kind in _FINAL_STATUS:
        order.status = _FINAL_STATUS[kind]
        if kind == OrderCancelled.TYPE:
            order.cancellation_reason = data["reason"]
    order.version = event.version
    order.updated_at = event.recorded_at


def _total(line: _Line) -> Decimal:
    return line_total(line.quantity, line.unit_price, line.discount)


class OrderProjection(Projection):
    name = "orders"
    event_types = tuple(event.TYPE for event in ORDER_EVENTS)
    tables = ("order_views",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        by_order: dict[str, list[LogEvent]] = {}
        skus: set[str] = set()
        for event in events:
            if event.stream_id.startswith(ORDER_STREAM_PREFIX):
                by_order.setdefault(event.stream_id[len(ORDER_STREAM_PREFIX) :], []).append(event)
                if "item_id" in event.data:
                    skus.add(event.data["item_id"])
        if not by_order:
            return
        orders = await self._load(conn, list(by_order), list(skus))
        changed: list[_Order] = []
        for order_id, order_events in by_order.items():
            order = orders.get(order_id)
            for event in order_events:
                if order is not None and event.version <= order.version:
                    continue  # already applied
                if order is None:
                    order = _created(order_id, event)
                _fold(order, event)
                if not changed or changed[-1] is not order:
                    changed.append(order)
        await self._write(conn, changed)

    async def _load(self, conn: asyncpg.Connection, ids: list[str], skus: list[str]) -> dict[str, _Order]:
        rows = await conn.fetch(
            f"""
            SELECT id, seq, customer_id, status, currency, version, cancellation_reason,
                   created_at, updated_at, total, line_count,
                   (SELECT jsonb_object_agg(key, value) FROM jsonb_each(lines)
                    WHERE key = ANY($2::text[])) AS lines
            FROM {self.table("order_views")} WHERE id = ANY($1::text[])
            """,
            ids,
            skus,
        )
        orders: dict[str, _Order] = {}
        for r in rows:
            order = _Order(
                id=r["id"],
                seq=r["seq"],
                customer_id=r["customer_id"],
                currency=r["currency"],
                created_at=r["created_at"],
                status=r["status"],
                version=r["version"],
                cancellation_reason=r["cancellation_reason"],
                updated_at=r["updated_at"],
                total=r["total"],
                line_count=r["line_count"],
                stored=True,
            )
            if r["lines"]:  # only the skus the batch names: see _changed_lines for the layout
                order.lines = {
                    sku: _Line(seq, quantity, Decimal(price), Decimal(discount))
                    for sku, (seq, quantity, price, discount) in r["lines"].items()
                }
            orders[order.id] = order
        return orders

    async def _write(self, conn: asyncpg.Connection, changed: list[_Order]) -> None:
        rows: tuple[list[dict[str, object]], list[dict[str, object]]] = ([], [])  # (merging, removing)
        for o in changed:
            lines = _changed_lines(o)
            rows[None in lines.values()].append(
                {
                    "id": o.id,
                    "seq": o.seq,
                    "customer_id": o.customer_id,
                    "status": o.status,
                    "currency": o.currency,
                    "total": str(o.total),
                    "line_count": o.line_count,
                    "version": o.version,
                    "reason": o.cancellation_reason,
                    "created_at": o.created_at,
                    "updated_at": o.updated_at,
                    "lines": lines,
                }
            )
        # The changed lines come as an object whose removed skus are null (only a stored
        # row has any to remove). Orders that lost none, nearly all, merge it onto the row's
        # lines; stripping the nulls walks the whole merged object again, about 13 % of a
        # batch's database work, so only orders that lost a line pay it.
        for merged, batch in zip(_MERGED_LINES, rows, strict=True):
            if batch:
                await self._upsert(conn, merged, batch)

    async def _upsert(self, conn: asyncpg.Connection, merged_lines: str, rows: list[dict[str, object]]) -> None:
        # One JSON parameter per statement: far cheaper to encode than a dozen arrays.
        await conn.execute(
            f"""
            INSERT INTO {self.table("order_views")} AS o (id, seq, customer_id, status, currency,
                total, line_count, version, cancellation_reason, created_at, updated_at, lines)
            SELECT r.id, r.seq, r.customer_id, r.status, r.currency, r.total, r.line_count,
                   r.version, r.reason, r.created_at, r.updated_at, r.lines
            FROM json_to_recordset($1::json) AS r(id text, seq bigint, customer_id text,
                status text, currency text, total numeric, line_count int, version int,
                reason text, created_at timestamptz, updated_at timestamptz, lines jsonb)
            ON CONFLICT (id) DO UPDATE SET
                status = excluded.status, total = excluded.total, line_count = excluded.line_count,
                version = excluded.version, cancellation_reason = excluded.cancellation_reason,
                updated_at = excluded.updated_at, lines = {merged_lines}
            """,
            rows,
        )


# The row's lines after an upsert: for orders that lost no line, and for those that did.
_MERGED_LINES = ("o.lines || excluded.lines", "jsonb_strip_nulls(o.lines || excluded.lines)")


def _changed_lines(order: _Order) -> dict[str, list[object] | None]:
    """The row's JSON lines to replace (and, as null, to remove): see the migration 0007."""
    changed: dict[str, list[object] | None] = {}
    for sku in order.changed_skus:
        line = order.lines.get(sku)
        if line is not None:
            changed[sku] = [line.seq, line.quantity, f"{line.unit_price:f}", f"{line.discount:f}"]
        elif order.stored:
            changed[sku] = None
    return changed


def _created(order_id: str, event: LogEvent) -> _Order:
    if event.type != OrderCreated.TYPE:
        raise ValueError(
            f"order {order_id}: {event.type} at position {event.position} precedes its creation"
        )
    return _Order(
        id=order_id,
        seq=event.position,
        customer_id=event.data["customer_id"],
        currency=event.data["currency"],
        created_at=event.recorded_at,
    )
