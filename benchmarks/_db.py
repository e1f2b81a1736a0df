"""A scratch database for a benchmark run: DATABASE_URL's server, else the embedded one."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service.database import asyncpg_dsn, embedded_postgres_url, migrate


def scratch_database() -> tuple[str, str]:
    """(url of a fresh migrated database, its name); drop it with drop_database()."""
    server = os.environ.get("DATABASE_URL") or embedded_postgres_url(
        Path(os.environ.get("EVENTGRAPH_DATA_DIR", ".eventgraph")), database="postgres"
    )
    name = f"eventgraph_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(asyncpg_dsn(server))
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    migrate(url)
    return url, server


def drop_database(server: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(server: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
