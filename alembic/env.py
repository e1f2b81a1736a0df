"""Alembic environment: async SQLAlchemy engine on asyncpg.

The URL comes from the caller (`service.database.migrate`), else DATABASE_URL,
else the embedded PostgreSQL under EVENTGRAPH_DATA_DIR (./.eventgraph).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from service.database import resolve_database_url, sqlalchemy_url
from service.settings import Settings

config = context.config
if config.config_file_name is not None and not config.attributes.get("database_url"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return sqlalchemy_url(url)
    settings = Settings.from_env()
    return sqlalchemy_url(resolve_database_url(settings.database_url, Path(settings.data_dir)))


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
