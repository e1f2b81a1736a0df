"""A new aggregate through the seams: the counter module (tests/counter/) registered once,
in Settings.modules, and a command and a query over real HTTP against the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest

from api.app import create_app
from service.container import Services
from service.projections import run_projections
from service.serving import in_process
from service.settings import Settings
from tests.conftest import Api

COUNTER_MODULE = "tests.counter.api:COUNTER"  # the one registration

INCREMENT = """mutation($id: ID!, $by: Int) {
  incrementCounter(input: {counterId: $id, by: $by}) { counter { id value version } position }
}"""
RESET = "mutation($id: ID!) { resetCounter(input: {counterId: $id}) { counter { value version } position } }"
READ = "query($id: ID!, $after: String) { counter(id: $id, consistentWith: $after) { id value version } }"
STAFF = ("staff_1", "staff")


@pytest.fixture
async def counter_api(dsn: str, settings: Settings) -> AsyncIterator[Api]:
    with_counter = replace(settings, modules=(*settings.modules, COUNTER_MODULE))
    services = await Services.start(with_counter, dsn)
    stop = asyncio.Event()
    projections = asyncio.create_task(run_projections(services, stop))
    try:
        async with in_process(create_app(with_counter, services)) as port:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                yield Api(http, with_counter.jwt_secret or "", port)
    finally:
        stop.set()
        await projections
        await services.close()
        conn = await asyncpg.connect(dsn)
        await conn.execute("DROP TABLE IF EXISTS counter_views")  # the module's own, not the migrations'
        await conn.close()


async def test_a_counter_counts_over_http_and_its_projection_answers_the_query(counter_api: Api) -> None:
    first = await counter_api.gql(INCREMENT, {"id": "c1", "by": 2})
    assert first["data"]["incrementCounter"]["counter"] == {"id": "c1", "value": 2, "version": 1}
    second = (await counter_api.gql(INCREMENT, {"id": "c1"}))["data"]["incrementCounter"]
    assert second["counter"] == {"id": "c1", "value": 3, "version": 2}
    read = await counter_api.gql(READ, {"id": "c1", "after": second["position"]})
    assert read == {"data": {"counter": {"id": "c1", "value": 3, "version": 2}}}
    assert (await counter_api.gql(READ, {"id": "c2"}))["data"]["counter"] is None


async def test_the_counters_rules_and_errors_come_through_as_for_any_aggregate(counter_api: Api) -> None:
    never = await counter_api.gql(RESET, {"id": "c1"}, as_=STAFF)
    assert never["errors"][0]["extensions"]["code"] == "RULE_VIOLATION"
    too_many = await counter_api.gql(INCREMENT, {"id": "c1", "by": 5000})
    assert too_many["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await counter_api.gql(INCREMENT, {"id": "c1", "by": 4})
    refused = await counter_api.gql(RESET, {"id": "c1"})  # a customer
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    reset = (await counter_api.gql(RESET, {"id": "c1"}, as_=STAFF))["data"]["resetCounter"]
    assert reset["counter"] == {"value": 0, "version": 2}
    read = await counter_api.gql(READ, {"id": "c1", "after": reset["position"]})
    assert read["data"]["counter"] == {"id": "c1", "value": 0, "version": 2}
    anonymous = await counter_api.gql(READ, {"id": "c1"}, as_=None)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
