"""The orders projection: one row per order in `order_views`, its lines as JSON on the
row (`lines`), so that reading a page needs no join and applying a batch no second table.

A batch is applied in two statements whatever its size: load the touched orders with
only the lines of the skus the batch names (none needed for the orders it remembers,
below: then one statement), fold the events onto them in memory, and
upsert the orders, their total and line count kept by adding what each event changes
(domain.order.line_total of the line before and after: summing 30 lines per event was
the largest part of the per-event cost of `serve` with its workers under addItem load),
their JSON lines by replacing and removing only the changed skus' keys. A separate
`order_lines` table was kept until migration 0008: its DELETE and INSERT per batch were
a third of the database's work for each addItem.
An event whose stream version the row already reflects
is skipped: that makes a replayed batch a no-op.

REMEMBERED ORDERS. Under load nearly every batch touches orders the projection wrote a
moment ago, and loading them again was a third of its database work per event (issue 18).
So once a batch has committed, the projection remembers the rows it wrote, whole (every
line, as stored), up to `remember_lines` lines in all, the least recently written
forgotten first (about 250 bytes of memory a line); a row in a final status is not
remembered. A remembered row stands in for
loading only when the batch's first event of that order is the very next version: the
row was then current when the checkpoint was, since the checkpoint and the row move in
one transaction. Any other case (a replay, a gap, a row another process or a rebuild
wrote since) loads the row as before. What a batch writes is remembered only once its
transaction commits (`committed`); the runner makes it forget everything when a batch
fails, the checkpoint moved under it, or the lease is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from domain.order import (
    FINAL_STATUSES,
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


# A line as the row's JSON holds it: [seq, quantity, "unit price", "discount"].
StoredLine = list[Any]


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
    # Its lines as stored, before the batch: every one when `complete`, else (loaded for
    # one batch) those of the skus the batch names. Shared with the remembered row until
    # the batch commits (see _as_written).
    stored_lines: dict[str, StoredLine] = field(default_factory=dict)
    complete: bool = True
    stored: bool = False  # it has a row already
    # The lines the batch added, changed (parsed) or removed (None): what it writes.
    changed: dict[str, _Line | None] = field(default_factory=dict)


# The status each event leaves an order in (the row folds the stored data directly: a
# rebuild is decoding-bound, and tests compare this fold with Order.apply).
_FINAL_STATUS = {
    OrderSubmitted.TYPE: OrderStatus.SUBMITTED.value,
    OrderCompleted.TYPE: OrderStatus.COMPLETED.value,
    OrderRejected.TYPE: OrderStatus.REJECTED.value,
    OrderCancelled.TYPE: OrderStatus.CANCELLED.value,
}


_FINAL_STATUS_VALUES = frozenset(status.value for status in FINAL_STATUSES)


def _fold(order: _Order, event: LogEvent) -> None:
    """One event's effect on the row; mirrors domain.order.Order.apply (tests compare them)."""
    data = event.data
    kind = event.type
    if kind == ItemAdded.TYPE:
        sku = data["item_id"]
        line = _line(order, sku)
        if line is None:
            line = order.changed[sku] = _Line(event.position, 0, Decimal(data["price"]), Decimal(0))
            order.line_count += 1
        order.total -= _total(line)
        line.quantity += int(data["quantity"])
        line.discount += Decimal(data["discount"])
        order.total += _total(line)
    elif kind == ItemRemoved.TYPE:
        sku = data["item_id"]
        removed = _line(order, sku)
        if removed is not None:
            order.total -= _total(removed)
            order.line_count -= 1
        order.changed[sku] = None
    elif kind in _FINAL_STATUS:
        order.status = _FINAL_STATUS[kind]
        if kind == OrderCancelled.TYPE:
            order.cancellation_reason = data["reason"]
    order.version = event.version
    order.updated_at = event.recorded_at


def _line(order: _Order, sku: str) -> _Line | None:
    """The order's line of `sku` as the batch has left it so far (parsed on first use, into
    `changed`: every line the batch touches, it changes)."""
    if sku not in order.changed:
        stored = order.stored_lines.get(sku)
        order.changed[sku] = None if stored is None else _parsed(stored)
    return order.changed[sku]


def _parsed(stored: StoredLine) -> _Line:
    seq, quantity, price, discount = stored
    return _Line(seq, quantity, Decimal(price), Decimal(discount))


def _stored(line: _Line) -> StoredLine:
    return [line.seq, line.quantity, f"{line.unit_price:f}", f"{line.discount:f}"]


def _total(line: _Line) -> Decimal:
    return line_total(line.quantity, line.unit_price, line.discount)


class OrderProjection(Projection):
    name = "orders"
    event_types = tuple(event.TYPE for event in ORDER_EVENTS)
    tables = ("order_views",)

    def __init__(self, *, shadow: bool = False, remember_lines: int = 100_000) -> None:
        super().__init__(shadow=shadow)
        self._remember_lines = remember_lines
        self._remembered: dict[str, _Order] = {}  # committed rows, least recently written first
        self._remembered_line_count = 0
        # Since the last commit: each row with the lines its batch changed (None: not to remember).
        self._written: dict[str, tuple[_Order, dict[str, StoredLine | None]] | None] = {}

    @property
    def remembered_lines(self) -> int:
        """Lines of the rows it remembers (at most `remember_lines` after a commit)."""
        return self._remembered_line_count

    def committed(self) -> None:
        for order_id, written in self._written.items():
            self._drop(order_id)
            if written is not None:
                order, changed_lines = written
                _as_written(order, changed_lines)
                self._remembered[order_id] = order
                self._remembered_line_count += len(order.stored_lines)
        self._written.clear()
        while self._remembered_line_count > self._remember_lines:
            self._drop(next(iter(self._remembered)))

    def forget(self) -> None:
        self._remembered.clear()
        self._remembered_line_count = 0
        self._written.clear()

    def _drop(self, order_id: str) -> None:
        dropped = self._remembered.pop(order_id, None)
        if dropped is not None:
            self._remembered_line_count -= len(dropped.stored_lines)

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
        orders: dict[str, _Order] = {}
        unknown: list[str] = []
        for order_id, order_events in by_order.items():
            known = self._remembered.get(order_id)
            if known is not None and order_events[0].version == known.version + 1:  # see REMEMBERED ORDERS
                orders[order_id] = _to_fold(known)
            else:
                unknown.append(order_id)
        if unknown:
            whole = self._remembered_line_count < self._remember_lines  # worth remembering
            orders.update(await self._load(conn, unknown, list(skus), whole))
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
        written = [(order, _changed_lines(order)) for order in changed]
        await self._write(conn, written)
        for order, lines in written:
            done_with = not order.complete or order.status in _FINAL_STATUS_VALUES
            self._written[order.id] = None if done_with else (order, lines)

    async def _load(
        self, conn: asyncpg.Connection, ids: list[str], skus: list[str], whole: bool
    ) -> dict[str, _Order]:
        """The orders' rows, with every line when `whole`, else only the lines of `skus`."""
        rows = await conn.fetch(
            f"""
            SELECT id, seq, customer_id, status, currency, version, cancellation_reason,
                   created_at, updated_at, total, line_count,
                   CASE WHEN $3 THEN lines ELSE
                       (SELECT jsonb_object_agg(key, value) FROM jsonb_each(lines)
                        WHERE key = ANY($2::text[])) END AS lines
            FROM {self.table("order_views")} WHERE id = ANY($1::text[])
            """,
            ids,
            skus,
            whole,
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
                stored_lines=r["lines"] or {},
                complete=whole,
                stored=True,
            )
            orders[order.id] = order
        return orders

    async def _write(self, conn: asyncpg.Connection, written: list[tuple[_Order, dict[str, StoredLine | None]]]) -> None:
        rows: tuple[list[dict[str, object]], list[dict[str, object]]] = ([], [])  # (merging, removing)
        for o, lines in written:
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


def _changed_lines(order: _Order) -> dict[str, StoredLine | None]:
    """The row's JSON lines to replace (and, as null, to remove): see the migration 0007."""
    changed: dict[str, StoredLine | None] = {}
    for sku, line in order.changed.items():
        if line is not None:
            changed[sku] = _stored(line)
        elif order.stored:
            changed[sku] = None
    return changed


def _as_written(order: _Order, changed_lines: dict[str, StoredLine | None]) -> None:
    """`order` made the row its committed batch wrote, with all its lines as stored.

    The lines change in place, without a copy (a copy per event grows with the order):
    the dict is fresh from a load, or the one of the row remembered until now, which this
    row replaces; a remembered row's lines never change before a batch on it commits."""
    lines = order.stored_lines
    for sku, line in changed_lines.items():
        if line is None:
            lines.pop(sku, None)
        else:
            lines[sku] = line
    order.changed, order.stored = {}, True


def _to_fold(row: _Order) -> _Order:
    """A remembered row's copy for a batch to fold onto (the row stays as committed).
    Not dataclasses.replace: its two calls for each order were a sixth of the projection's own CPU."""
    return _Order(
        id=row.id,
        seq=row.seq,
        customer_id=row.customer_id,
        currency=row.currency,
        created_at=row.created_at,
        status=row.status,
        version=row.version,
        cancellation_reason=row.cancellation_reason,
        updated_at=row.updated_at,
        total=row.total,
        line_count=row.line_count,
        stored_lines=row.stored_lines,
        complete=row.complete,
        stored=row.stored,
    )


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
