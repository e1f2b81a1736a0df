"""asyncpg pools with the store's JSON codec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson


def _default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=_encode, decoder=orjson.loads, schema="pg_catalog")


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """Released without asyncpg's reset round trip (advisory unlock, UNLISTEN, RESET ALL):
    pooled connections never hold session state here. LISTEN and session-level advisory
    locks use dedicated connections (`connect`). An open transaction is still rolled back."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        connection_class=PooledConnection,
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


def dumps(value: Any) -> str:
    return _encode(value)


# A pooled connection the server dropped (restart, terminate) fails its next use with one of these.
DROPPED = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
)


async def fetch_read(pool: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    """A read-only query, tried once more on a fresh connection when the pooled one was dead
    (asyncpg's pool does not check connections before handing them out)."""
    for attempt in range(2):
        async with pool.acquire() as conn:
            try:
                return await conn.fetch(sql, *args)  # type: ignore[no-any-return]
            except DROPPED:
                conn.terminate()
                pool.expire_connections()  # its siblings likely died with it (a restart)
                if attempt:
                    raise
    raise AssertionError("unreachable")
