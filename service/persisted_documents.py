"""Where automatic persisted queries' documents are kept, for every process: Redis when
the service has one, else the database (table `persisted_documents`).

Keys are the lower-case hex SHA-256 of the document text, so processes, and test runs
sharing a Redis, can only ever agree on a key's value.
"""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as redis

from eventstore.pool import Pool
from service.settings import Settings

REDIS_PREFIX = "eventgraph:apq:"


class DocumentStore(Protocol):
    async def get(self, sha256_hash: str) -> str | None: ...

    async def put(self, sha256_hash: str, document: str) -> None: ...

    async def close(self) -> None: ...


class RedisDocuments:
    """One string key per document. With a `ttl`, a key lives that long after it was last
    stored or read here: documents in use stay, abandoned ones go (a client whose document
    expired re-registers it on the next miss, as Apollo's link does by itself)."""

    def __init__(self, client: redis.Redis, ttl: float | None) -> None:
        self._client = client
        self._ttl = int(ttl) if ttl and ttl >= 1 else None

    async def get(self, sha256_hash: str) -> str | None:
        key = REDIS_PREFIX + sha256_hash
        value = await (
            self._client.getex(key, ex=self._ttl) if self._ttl else self._client.get(key)
        )
        return value.decode() if isinstance(value, bytes) else value

    async def put(self, sha256_hash: str, document: str) -> None:
        await self._client.set(REDIS_PREFIX + sha256_hash, document, ex=self._ttl)

    async def close(self) -> None:
        await self._client.aclose()


class DatabaseDocuments:
    """A row per document, kept until deleted (no expiry: see the README)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def get(self, sha256_hash: str) -> str | None:
        document: str | None = await self._pool.fetchval(
            "SELECT document FROM persisted_documents WHERE sha256_hash = $1", sha256_hash
        )
        return document

    async def put(self, sha256_hash: str, document: str) -> None:
        await self._pool.execute(
            "INSERT INTO persisted_documents (sha256_hash, document) VALUES ($1, $2)"
            " ON CONFLICT (sha256_hash) DO NOTHING",
            sha256_hash,
            document,
        )

    async def close(self) -> None:
        pass  # the pool is the service's


def document_store(settings: Settings, pool: Pool) -> DocumentStore:
    if settings.redis_url:
        # short timeouts: a lookup sits on a request's path, and a failed one is only a miss
        client = redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        return RedisDocuments(client, settings.apq_ttl)
    return DatabaseDocuments(pool)
