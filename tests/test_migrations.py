"""`alembic upgrade head` then `alembic downgrade base` on an empty database, as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest

from service.database import asyncpg_dsn
from tests.conftest import lines_compression

ROOT = Path(__file__).resolve().parent.parent

Alembic = Callable[..., None]


@pytest.fixture
async def scratch(database_url: str) -> AsyncIterator[tuple[str, Alembic]]:
    """A database of its own, and alembic run against it."""
    name = f"eventgraph_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(asyncpg_dsn(database_url))
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    env = {**os.environ, "DATABASE_URL": url}

    def alembic(*args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "alembic", *args], cwd=ROOT, env=env, check=True, capture_output=True
        )

    try:
        yield url, alembic
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_upgrade_and_downgrade_on_an_empty_database(scratch: tuple[str, Alembic]) -> None:
    url, alembic = scratch

    async def tables() -> set[str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {r[0] for r in rows} - {"alembic_version"}
        finally:
            await conn.close()

    alembic("upgrade", "head")
    assert {"events", "outbox", "idempotency_keys", "processed_messages"} <= await tables()
    alembic("downgrade", "base")
    assert await tables() == set()
    alembic("upgrade", "head")
    assert "events" in await tables()


async def test_order_lines_json_is_backfilled_from_order_lines(scratch: tuple[str, Alembic]) -> None:
    url, alembic = scratch
    alembic("upgrade", "0006_snapshots")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO order_views (id, seq, customer_id, status, currency, total, line_count, version,"
            " created_at, updated_at) VALUES ('o1', 1, 'c', 'DRAFT', 'EUR', 20.50, 2, 3, now(), now()),"
            " ('o2', 2, 'c', 'DRAFT', 'EUR', 0, 0, 1, now(), now())"
        )
        await conn.execute(
            "INSERT INTO order_lines (order_id, sku, seq, quantity, unit_price, discount) VALUES"
            " ('o1', 'b', 7, 1, 10.50, 0.00), ('o1', 'a', 9, 2, 5.00, 0)"
        )
        alembic("upgrade", "head")
        rows = await conn.fetch("SELECT id, lines::text FROM order_views ORDER BY id")
    finally:
        await conn.close()
    assert [(r[0], orjson.loads(r[1])) for r in rows] == [
        ("o1", {"b": [7, 1, "10.50", "0.00"], "a": [9, 2, "5.00", "0"]}),
        ("o2", {}),
    ]


async def test_order_lines_move_onto_the_row_and_back(scratch: tuple[str, Alembic]) -> None:
    """0008 drops `order_lines` (the row's JSON holds the lines since 0007) and leaves room
    for in-place updates; its downgrade rebuilds the table from the JSON, exactly."""
    url, alembic = scratch
    alembic("upgrade", "0007_order_lines_json")
    conn = await asyncpg.connect(url)

    async def fillfactor() -> list[str] | None:
        return await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'order_views'::regclass")

    try:
        await conn.execute(
            "INSERT INTO order_views (id, seq, customer_id, status, currency, total, line_count, version,"
            " created_at, updated_at, lines) VALUES ('o1', 1, 'c', 'DRAFT', 'EUR', 20.50, 2, 3, now(), now(),"
            """ '{"b": [7, 1, "10.50", "0.00"], "a": [9, 2, "5.00", "0"]}')"""
        )
        alembic("upgrade", "head")
        assert await conn.fetchval("SELECT to_regclass('order_lines')") is None
        assert await fillfactor() == ["fillfactor=70"]
        alembic("downgrade", "0007_order_lines_json")
        lines = await conn.fetch("SELECT order_id, sku, seq, quantity, unit_price::text, discount::text"
                                 " FROM order_lines ORDER BY seq")
        assert await fillfactor() is None
    finally:
        await conn.close()
    assert [tuple(r) for r in lines] == [("o1", "b", 7, 1, "10.50", "0.00"), ("o1", "a", 9, 2, "5.00", "0")]


async def test_order_lines_are_compressed_with_lz4_where_the_server_has_it(scratch: tuple[str, Alembic]) -> None:
    """0009: a large order's lines are compressed with lz4 when the server is built with it
    (pglz, the default, otherwise: the embedded server has no lz4); the downgrade goes back."""
    url, alembic = scratch
    alembic("upgrade", "head")
    conn = await asyncpg.connect(url)
    try:
        expected = "l" if await lz4_built_in(conn) else ""
        assert await lines_compression(conn) == expected
        alembic("downgrade", "0008_order_lines_from_row")
        assert await lines_compression(conn) == ""
    finally:
        await conn.close()


async def lz4_built_in(conn: asyncpg.Connection) -> bool:
    try:
        await conn.execute("CREATE TEMP TABLE lz4_probe (t text COMPRESSION lz4)")
    except asyncpg.FeatureNotSupportedError:
        return False
    await conn.execute("DROP TABLE lz4_probe")
    return True


async def test_published_outbox_rows_become_one_mark_per_batch_and_back(scratch: tuple[str, Alembic]) -> None:
    """0010: the rows each batch marked published (one time per batch) become one row per
    batch in `outbox_published`; the downgrade marks every row up to the last one again."""
    url, alembic = scratch
    alembic("upgrade", "0009_order_lines_lz4")
    conn = await asyncpg.connect(url, server_settings={"TimeZone": "UTC"})
    try:
        await conn.execute(
            "INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, recorded_at)"
            " SELECT n, gen_random_uuid(), 's', n, 't', '{}', '{}', now() FROM generate_series(1, 6) n"
        )
        await conn.execute(  # two batches published (1-3 and 4-5), 6 not yet
            "INSERT INTO outbox (position, published_at) VALUES (1, '2026-12-01T10:00Z'), (2, '2026-12-01T10:00Z'),"
            " (3, '2026-12-01T10:00Z'), (4, '2026-12-02T10:00Z'), (5, '2026-12-02T10:00Z'), (6, NULL)"
        )
        alembic("upgrade", "head")
        marks = await conn.fetch("SELECT through, published_at::text FROM outbox_published ORDER BY 1")
        assert [tuple(m) for m in marks] == [(3, "2026-12-01 10:00:00+00"), (5, "2026-12-02 10:00:00+00")]
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 6
        alembic("downgrade", "0009_order_lines_lz4")
        rows = await conn.fetch("SELECT position, published_at::text FROM outbox ORDER BY 1")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        (1, "2026-12-01 10:00:00+00"), (2, "2026-12-01 10:00:00+00"), (3, "2026-12-01 10:00:00+00"),
        (4, "2026-12-02 10:00:00+00"), (5, "2026-12-02 10:00:00+00"), (6, None),
    ]
