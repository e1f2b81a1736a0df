"""The orders projection: one row per order in `order_views`, its lines in `order_lines`.

A batch is applied in four statements whatever its size: load the touched
orders, fold the events onto them in memory with the domain's own `Order.apply`
(one source for every rule the row stores), upsert the orders with one
`INSERT ... SELECT unnest(...)`, and rewrite the lines of orders whose lines
changed. An event whose stream version the row already reflects is skipped:
that makes a replayed batch a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from domain.events import decode_event
from domain.order import (
    ORDER_EVENTS,
    ORDER_STREAM_PREFIX,
    ItemAdded,
    ItemRemoved,
    Order,
    OrderCreated,
    OrderLine,
    OrderStatus,
    order_id_of,
)
from readmodels.projection import LogEvent, Projection


@dataclass(slots=True)
class _Row:
    """An order's row and lines: the domain's own state, folded by `Order.apply`."""

    order: Order
    seq: int  # position of the order's creation
    line_seqs: dict[str, int] = field(default_factory=dict)  # sku -> position that put it on the order
    stored: bool = False  # it has a row already
    lines_changed: bool = False


def _fold(row: _Row, event: LogEvent) -> None:
    change = decode_event(event.type, event.data)
    row.order.replay(change, event.version, event.recorded_at)
    if isinstance(change, ItemAdded):
        row.line_seqs.setdefault(change.item_id, event.position)
        row.lines_changed = True
    elif isinstance(change, ItemRemoved):
        row.line_seqs.pop(change.item_id, None)
        row.lines_changed = True


class OrderProjection(Projection):
    name = "orders"
    event_types = tuple(event.TYPE for event in ORDER_EVENTS)
    tables = ("order_views", "order_lines")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        by_order: dict[str, list[LogEvent]] = {}
        for event in events:
            if event.stream_id.startswith(ORDER_STREAM_PREFIX):
                by_order.setdefault(order_id_of(event.stream_id), []).append(event)
        if not by_order:
            return
        orders = await self._load(conn, list(by_order))
        changed: list[_Row] = []
        for order_id, order_events in by_order.items():
            row = orders.get(order_id)
            for event in order_events:
                if row is not None and event.version <= row.order.version:
                    continue  # already applied
                if row is None:
                    row = _created(order_id, event)
                _fold(row, event)
                if not changed or changed[-1] is not row:
                    changed.append(row)
        await self._write(conn, changed)

    async def _load(self, conn: asyncpg.Connection, ids: list[str]) -> dict[str, _Row]:
        rows = await conn.fetch(
            f"""
            SELECT o.id, o.seq, o.customer_id, o.status, o.currency, o.version,
                   o.cancellation_reason, o.created_at, o.updated_at,
                   l.skus, l.seqs, l.quantities, l.prices, l.discounts
            FROM {self.table("order_views")} o
            LEFT JOIN LATERAL (
                SELECT array_agg(sku ORDER BY seq) AS skus, array_agg(seq ORDER BY seq) AS seqs,
                       array_agg(quantity ORDER BY seq) AS quantities,
                       array_agg(unit_price ORDER BY seq) AS prices,
                       array_agg(discount ORDER BY seq) AS discounts
                FROM {self.table("order_lines")} WHERE order_id = o.id
            ) l ON true
            WHERE o.id = ANY($1::text[])
            """,
            ids,
        )
        rows_by_id: dict[str, _Row] = {}
        for r in rows:
            order = Order(r["id"])
            order.customer_id = r["customer_id"]
            order.currency = r["currency"]
            order.status = OrderStatus(r["status"])
            order.version = r["version"]
            order.cancellation_reason = r["cancellation_reason"]
            order.created_at = r["created_at"]
            order.updated_at = r["updated_at"]
            row = rows_by_id[order.id] = _Row(order, r["seq"], stored=True)
            for sku, seq, quantity, price, discount in zip(
                r["skus"] or (), r["seqs"] or (), r["quantities"] or (), r["prices"] or (), r["discounts"] or (),
                strict=True,
            ):
                order.lines[sku] = OrderLine(sku, quantity, price, discount)
                row.line_seqs[sku] = seq
        return rows_by_id

    async def _write(self, conn: asyncpg.Connection, changed: list[_Row]) -> None:
        if not changed:
            return
        # One JSON parameter per statement: far cheaper to encode than a dozen arrays.
        await conn.execute(
            f"""
            INSERT INTO {self.table("order_views")} AS o (id, seq, customer_id, status, currency,
                total, line_count, version, cancellation_reason, created_at, updated_at)
            SELECT r.id, r.seq, r.customer_id, r.status, r.currency, r.total, r.line_count,
                   r.version, r.reason, r.created_at, r.updated_at
            FROM json_to_recordset($1::json) AS r(id text, seq bigint, customer_id text,
                status text, currency text, total numeric, line_count int, version int,
                reason text, created_at timestamptz, updated_at timestamptz)
            ON CONFLICT (id) DO UPDATE SET
                status = excluded.status, total = excluded.total, line_count = excluded.line_count,
                version = excluded.version, cancellation_reason = excluded.cancellation_reason,
                updated_at = excluded.updated_at
            """,
            [
                {
                    "id": o.id,
                    "seq": row.seq,
                    "customer_id": o.customer_id,
                    "status": o.status.value,
                    "currency": o.currency,
                    "total": str(o.total),
                    "line_count": len(o.lines),
                    "version": o.version,
                    "reason": o.cancellation_reason,
                    "created_at": o.created_at,
                    "updated_at": o.updated_at,
                }
                for row in changed
                for o in (row.order,)
            ],
        )
        relined = [row for row in changed if row.lines_changed]
        stale = [row.order.id for row in relined if row.stored]
        if stale:
            await conn.execute(
                f"DELETE FROM {self.table('order_lines')} WHERE order_id = ANY($1::text[])", stale
            )
        lines = [
            {
                "order_id": row.order.id,
                "sku": sku,
                "seq": row.line_seqs[sku],
                "quantity": line.quantity,
                "unit_price": str(line.unit_price),
                "discount": str(line.discount),
            }
            for row in relined
            for sku, line in row.order.lines.items()
        ]
        if lines:
            await conn.execute(
                f"""
                INSERT INTO {self.table("order_lines")}
                    (order_id, sku, seq, quantity, unit_price, discount)
                SELECT r.order_id, r.sku, r.seq, r.quantity, r.unit_price, r.discount
                FROM json_to_recordset($1::json) AS r(order_id text, sku text, seq bigint,
                    quantity int, unit_price numeric, discount numeric)
                """,
                lines,
            )


def _created(order_id: str, event: LogEvent) -> _Row:
    if event.type != OrderCreated.TYPE:
        raise ValueError(
            f"order {order_id}: {event.type} at position {event.position} precedes its creation"
        )
    return _Row(Order(order_id), seq=event.position)
