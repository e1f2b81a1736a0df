"""`alembic upgrade head` then `alembic downgrade base` on an empty database, as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service.database import asyncpg_dsn

ROOT = Path(__file__).resolve().parent.parent


async def test_upgrade_and_downgrade_on_an_empty_database(database_url: str) -> None:
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

    async def tables() -> set[str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {r[0] for r in rows} - {"alembic_version"}
        finally:
            await conn.close()

    try:
        alembic("upgrade", "head")
        assert {"events", "outbox", "idempotency_keys", "processed_messages"} <= await tables()
        alembic("downgrade", "base")
        assert await tables() == set()
        alembic("upgrade", "head")
        assert "events" in await tables()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
