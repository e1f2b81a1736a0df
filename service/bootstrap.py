"""Turning configuration into running infrastructure: embedded servers, secrets, schema."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from pathlib import Path

from service.database import migrate, resolve_database_url
from service.settings import Settings

log = logging.getLogger(__name__)


def jwt_secret(settings: Settings) -> str:
    """The configured secret, else one generated once and kept in the data folder."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = Path(settings.data_dir) / "jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def redis_url(settings: Settings) -> str | None:
    if settings.redis_url:
        return settings.redis_url
    try:
        from service.embedded_redis import start_embedded_redis
    except ImportError:
        return None
    return start_embedded_redis(Path(settings.data_dir) / "redis")


def prepare(settings: Settings, *, migrate_schema: bool = True, with_redis: bool = True) -> Settings:
    """Settings with every URL and secret resolved (embedded servers started), schema migrated."""
    database_url = resolve_database_url(settings.database_url, Path(settings.data_dir))
    if migrate_schema:
        migrate(database_url)
    resolved = dataclasses.replace(
        settings,
        database_url=database_url,
        jwt_secret=jwt_secret(settings),
        redis_url=redis_url(settings) if with_redis else settings.redis_url,
    )
    if with_redis and not resolved.redis_url:
        log.warning("no REDIS_URL and no embedded Redis: the outbox relay stays off")
    return resolved


def embedded_servers(configured: Settings, resolved: Settings) -> list[str]:
    """One line per embedded server in use: where it runs and where its data is."""
    data_dir = Path(configured.data_dir).resolve()
    lines = []
    if not configured.database_url and resolved.database_url:
        lines.append(f"PostgreSQL (embedded): {resolved.database_url}  data: {data_dir / 'pg'}")
    if not configured.redis_url and resolved.redis_url:
        lines.append(f"Redis (embedded): {resolved.redis_url}  data: {data_dir / 'redis'}")
    return lines


def export(settings: Settings) -> None:
    """Put resolved settings in the environment, for uvicorn worker processes."""
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("REDIS_URL", settings.redis_url),
        ("EVENTGRAPH_JWT_SECRET", settings.jwt_secret),
        ("EVENTGRAPH_DATA_DIR", str(settings.data_dir)),
    ):
        if value:
            os.environ[name] = value
