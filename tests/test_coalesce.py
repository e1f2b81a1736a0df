"""Concurrent lookups share statements on a real PostgreSQL, and each caller gets only
its own keys, or the error of the statement that served it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from eventstore.pool import Pool, create_pool
from readmodels.coalesce import CoalescedLookup

# A key's value is twice the key; a key that is not a number fails the statement.
DOUBLED = "SELECT k, k::int * 2 AS v FROM unnest($1::text[]) AS k"


class Doubler:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.statements: list[list[str]] = []  # the keys each statement asked for

    async def fetch(self, keys: list[str]) -> dict[str, int]:
        self.statements.append(keys)
        return {r["k"]: r["v"] for r in await self.pool.fetch(DOUBLED, keys)}


@pytest.fixture
async def doubler(dsn: str) -> AsyncIterator[Doubler]:
    pool = await create_pool(dsn)
    try:
        yield Doubler(pool)
    finally:
        await pool.close()


async def test_concurrent_lookups_share_statements_and_each_gets_its_own_keys(doubler: Doubler) -> None:
    lookup = CoalescedLookup(doubler.fetch, in_flight=2)
    asked = [[str(i)] for i in range(40)] + [["3", "7", "3"], ["1000"], []]
    found = await asyncio.gather(*(lookup.get(keys) for keys in asked))
    assert found == [{k: int(k) * 2 for k in keys} for keys in asked]
    assert len(doubler.statements) < len(asked) / 4  # two went out alone, the rest together
    assert all(len(keys) == len(set(keys)) for keys in doubler.statements)  # each key asked once


async def test_a_lone_lookup_goes_out_at_once_with_its_own_keys(doubler: Doubler) -> None:
    lookup = CoalescedLookup(doubler.fetch)
    assert await lookup.get(["5", "6"]) == {"5": 10, "6": 12}
    assert doubler.statements == [["5", "6"]]


async def test_an_error_reaches_the_lookups_of_its_statement_only(doubler: Doubler) -> None:
    lookup = CoalescedLookup(doubler.fetch, in_flight=1)
    first = asyncio.create_task(lookup.get(["1"]))  # goes out at once
    await asyncio.sleep(0)
    queued = [asyncio.create_task(lookup.get(keys)) for keys in (["2"], ["x"])]  # wait, then go together
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert results[0] == {"1": 2}
    assert all(isinstance(r, asyncpg.DataError) for r in results[1:])
    assert doubler.statements == [["1"], ["2", "x"]]
    assert await lookup.get(["4"]) == {"4": 8}  # and the lookup goes on serving


async def test_a_lookup_given_up_does_not_disturb_the_others(doubler: Doubler) -> None:
    lookup = CoalescedLookup(doubler.fetch, in_flight=1)
    first = asyncio.create_task(lookup.get(["1"]))
    await asyncio.sleep(0)
    abandoned = asyncio.create_task(lookup.get(["2"]))
    kept = asyncio.create_task(lookup.get(["3"]))
    await asyncio.sleep(0)
    abandoned.cancel()  # its client went away while it waited
    assert await first == {"1": 2}
    assert await kept == {"3": 6}
    assert abandoned.cancelled()
    assert doubler.statements == [["1"], ["3"]]  # nobody waits for "2" any more: not asked for
