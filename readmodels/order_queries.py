"""Queries on the orders read tables: by id (batched) and keyset pages; views out."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from domain.errors import InvalidInput, quoted
from eventstore.pool import Pool
from eventstore.replicas import ReadPools, read_pools
from readmodels.coalesce import CoalescedLookup
from readmodels.kept import Kept
from readmodels.views import OrderLineView, OrderView

MAX_FIRST = 100

# An order's lines come from its row's JSON (see the projection), as text decoded with
# orjson directly rather than through the connection's json codec (a Python call per
# value): {sku: [seq, quantity, "price", "discount"]}, amounts as numeric's exact text.
# A page is one index scan, with no per-order subquery. The total comes as text too, so
# that a row's values say exactly what its view holds (numeric 1.0 and 1.00 are equal
# Decimals): rows are the keys of the kept views.
_SELECT = """
SELECT o.id, o.seq, o.customer_id, o.status, o.currency, o.total::text AS total, o.version,
       o.cancellation_reason, o.created_at, o.updated_at, o.lines::text AS lines
FROM order_views o
"""


def _page_sql(by_customer: bool, by_status: bool) -> str:
    """One statement text per filter combination, so each is planned on its own index."""
    conditions = [
        "o.seq < $1",
        "o.customer_id = $3" if by_customer else "$3::text IS NULL",
        "o.status = $4" if by_status else "$4::text IS NULL",
    ]
    return f"{_SELECT} WHERE {' AND '.join(conditions)} ORDER BY o.seq DESC LIMIT $2"


_PAGES = {(c, s): _page_sql(c, s) for c in (False, True) for s in (False, True)}

_CURSOR_PREFIX = "order:"


@functools.lru_cache(maxsize=4096)  # a page read again has the same cursors
def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    seq = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not seq.isdigit() or len(seq) > 18:
        raise InvalidInput(f"after: {quoted(cursor)} is not a cursor from this connection")
    return int(seq)


@dataclass(frozen=True)
class OrderPage:
    items: list[tuple[str, OrderView]]  # (cursor, order), newest first
    has_next: bool


def _by_seq(item: tuple[str, list[Any]]) -> int:
    """Lines in the order they were put on the order, like the aggregate's."""
    return item[1][0]


def _view(r: asyncpg.Record, kept: Kept[tuple[Any, ...], OrderView]) -> OrderView:
    """The row's view: the same object as last time for the same row (see `KEPT_VIEWS`)."""
    key = tuple(r)
    view = kept.get(key)
    if view is not None:
        return view
    lines = tuple(
        OrderLineView(sku, quantity, Decimal(price), Decimal(discount))
        for sku, (_, quantity, price, discount) in sorted(
            orjson.loads(r["lines"]).items(), key=_by_seq
        )
    )
    return kept.keep(key, OrderView(
        id=r["id"],
        customer_id=r["customer_id"],
        status=r["status"],
        currency=r["currency"],
        lines=lines,
        total=Decimal(r["total"]),
        version=r["version"],
        cancellation_reason=r["cancellation_reason"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    ))


# Views kept by their whole row: a view is a function of its row alone, so this holds
# whatever changes the rows (the projection's new versions, a rebuild repairing rows of
# the same version, a replica). A page read again (the newest orders, most of all)
# builds neither its lines nor its views again, for the cost of hashing its rows (~1 µs
# a row against ~10 µs), and callers may keep what they build from a view by the view's
# identity (api.readmodels).
KEPT_VIEWS = 4096


class OrderReadModel:
    def __init__(self, pool: Pool | ReadPools) -> None:
        self._reads = read_pools(pool)
        self._views: Kept[tuple[Any, ...], OrderView] = Kept(KEPT_VIEWS)
        self._by_ids: dict[Pool | None, CoalescedLookup[str, OrderView]] = {}  # by pinned source

    async def by_ids(self, ids: Sequence[str], source: Pool | None = None) -> dict[str, OrderView]:
        """Lookups made at the same time by concurrent requests share statements (those
        pinned to one source, by read-your-writes, share only with each other)."""
        lookup = self._by_ids.get(source)
        if lookup is None:
            lookup = self._by_ids[source] = CoalescedLookup(functools.partial(self._fetch_by_ids, source))
        return await lookup.get(ids)

    async def _fetch_by_ids(self, source: Pool | None, ids: list[str]) -> dict[str, OrderView]:
        rows = await self._reads.fetch(_SELECT + " WHERE o.id = ANY($1::text[])", ids, prefer=source)
        return {r["id"]: _view(r, self._views) for r in rows}

    async def page(
        self,
        *,
        customer_id: str | None,
        status: str | None,
        first: int,
        after: str | None,
        source: Pool | None = None,
    ) -> OrderPage:
        """Newest first, by the order's creation position: stable while orders change."""
        if not 1 <= first <= MAX_FIRST:
            raise InvalidInput(f"first must be between 1 and {MAX_FIRST}")
        before_seq = decode_cursor(after) if after else 2**62
        rows = await self._reads.fetch(
            _PAGES[(customer_id is not None, status is not None)],
            before_seq,
            first + 1,
            customer_id,
            status,
            prefer=source,
        )
        items = [(encode_cursor(r["seq"]), _view(r, self._views)) for r in rows[:first]]
        return OrderPage(items, has_next=len(rows) > first)
