"""Stored outcomes of idempotency keys."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from eventstore.pool import Pool
from eventstore.records import StoredOutcome

_SELECT = """
SELECT k.scope, k.key, k.result FROM idempotency_keys k
JOIN unnest($1::text[], $2::text[]) AS u(scope, key) ON k.scope = u.scope AND k.key = u.key
"""


async def fetch_outcomes(
    db: Pool | asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], StoredOutcome]:
    if not keys:
        return {}
    rows = await db.fetch(_SELECT, [scope for scope, _ in keys], [key for _, key in keys])
    return {(r["scope"], r["key"]): StoredOutcome.from_json(r["result"]) for r in rows}
