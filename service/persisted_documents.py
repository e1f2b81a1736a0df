"""Where automatic persisted queries' documents are kept, for every process: Redis when
the service has one, else the database (table `persisted_documents`).

Keys are the lower-case hex SHA-256 of the document text, so processes, and test runs
sharing a Redis, can only ever agree on a key's value.
"""

from __future__ import annotations

import time
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
    """A row per document. With a `ttl`, a lookup marks its row used, and rows unused
    that long are deleted (by a registration, at most every `PRUNE_INTERVAL` seconds)."""

    PRUNE_INTERVAL = 600.0

    def __init__(self, pool: Pool, ttl: float | None) -> None:
        self._pool = pool
        self._ttl = ttl if ttl and ttl > 0 else None
        self._pruned_at = -self.PRUNE_INTERVAL

    async def get(self, sha256_hash: str) -> str | None:
        if self._ttl is None:
            sql = "SELECT document FROM persisted_documents WHERE sha256_hash = $1"
        else:  # one round trip; an unknown hash updates nothing
            sql = "UPDATE persisted_documents SET used_at = now() WHERE sha256_hash = $1 RETURNING document"
        document: str | None = await self._pool.fetchval(sql, sha256_hash)
        return document

    async def put(self, sha256_hash: str, document: str) -> None:
        await self._pool.execute(
            "INSERT INTO persisted_documents (sha256_hash, document) VALUES ($1, $2)"
            " ON CONFLICT (sha256_hash) DO UPDATE SET used_at = now()",
            sha256_hash,
            document,
        )
        now = time.monotonic()
        if self._ttl is not None and now - self._pruned_at >= self.PRUNE_INTERVAL:
            self._pruned_at = now
            await self._pool.execute(
                "DELETE FROM persisted_documents WHERE used_at < now() - make_interval(secs => $1)",
                self._ttl,
            )

    async def close(self) -> None:
        pass  # the pool is the service's


def document_store(settings: Settings, pool: Pool) -> DocumentStore:
    if settings.redis_url:
        # short timeouts: a lookup sits on a request's path, and a failed one is only a miss
        client = redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        return RedisDocuments(client, settings.apq_ttl)
    return DatabaseDocuments(pool, settings.apq_ttl)
