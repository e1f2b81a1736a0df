"""Automatic persisted queries and trusted documents (CONTRACT 7.6) through real HTTP and
WebSocket clients: misses, registrations and hits, shared by two app instances on one
Redis and on one database."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from api.app import create_app
from api.auth import mint_token
from api.persisted import KnownDocuments
from service.container import Services
from service.persisted_documents import REDIS_PREFIX, DatabaseDocuments
from service.settings import Settings
from tests.conftest import Api, count_rows
from tests.subscription_support import GraphQLWS
from tests.test_api_failures import serving

GRAPHQL_RESPONSE = "application/graphql-response+json"
CREATE = 'mutation { createOrder(input: {customerId: "cus_1"}) { position } }'


def unique_query() -> str:
    """A document no other test (or run sharing the Redis) has stored."""
    return f"query Q{uuid.uuid4().hex} {{ __typename }}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(query: str | None, sha256_hash: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hash}}
    }
    if query is not None:
        body["query"] = query
    return body


def get_params(body: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}


def only_error(response: httpx.Response, code: str) -> str:
    body = response.json()
    assert "data" not in body, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, body
    return str(error["message"])


def bearer(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings.jwt_secret or '', 'cus_1', 'customer')}"}


@pytest.fixture
async def http(api: Api, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the `api` app with a customer's token (anonymous callers store nothing)."""
    base_url = f"http://127.0.0.1:{api.port}"
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(settings), timeout=30) as client:
        yield client


async def test_miss_then_register_then_hit_over_post(http: httpx.AsyncClient) -> None:
    query = unique_query()
    miss = await http.post("/graphql", json=apq(None, sha256(query)))
    assert miss.status_code == 200
    # the code and the message Apollo's persisted-queries link looks for
    assert only_error(miss, "PERSISTED_QUERY_NOT_FOUND") == "PersistedQueryNotFound"

    registered = await http.post("/graphql", json=apq(query, sha256(query)))
    assert registered.json() == {"data": {"__typename": "Query"}}

    hit = await http.post(
        "/graphql", json=apq(None, sha256(query)), headers={"Accept": GRAPHQL_RESPONSE}
    )
    assert hit.status_code == 200
    assert hit.json() == {"data": {"__typename": "Query"}}


async def test_the_miss_is_200_for_graphql_response_clients_too(http: httpx.AsyncClient) -> None:
    miss = await http.post(
        "/graphql", json=apq(None, sha256(unique_query())), headers={"Accept": GRAPHQL_RESPONSE}
    )
    assert miss.status_code == 200
    only_error(miss, "PERSISTED_QUERY_NOT_FOUND")


async def test_miss_then_register_then_hit_over_get(http: httpx.AsyncClient) -> None:
    query = unique_query()
    # httpx sends Accept: */*; a request with extensions is an operation, not a browser
    miss = await http.get("/graphql", params=get_params(apq(None, sha256(query))))
    assert miss.status_code == 200
    only_error(miss, "PERSISTED_QUERY_NOT_FOUND")

    registered = await http.get("/graphql", params=get_params(apq(query, sha256(query))))
    assert registered.json() == {"data": {"__typename": "Query"}}

    body = {**apq(None, sha256(query)), "variables": {}, "operationName": query.split()[1]}
    hit = await http.get("/graphql", params=get_params(body))
    assert hit.json() == {"data": {"__typename": "Query"}}


async def test_variables_and_tokens_work_with_a_stored_document(api: Api) -> None:
    query = f"mutation M{uuid.uuid4().hex}($c: ID!) {{ createOrder(input: {{customerId: $c}}) {{ position }} }}"
    headers = {"Authorization": f"Bearer {api.token()}"}
    first = await api.http.post(
        "/graphql", json={**apq(query, sha256(query)), "variables": {"c": "cus_1"}}, headers=headers
    )
    assert first.json()["data"]["createOrder"]["position"] == "1"
    again = await api.http.post(
        "/graphql", json={**apq(None, sha256(query)), "variables": {"c": "cus_1"}}, headers=headers
    )
    assert again.json()["data"]["createOrder"]["position"] == "2"
    # a stored mutation still needs its token
    anonymous = await api.http.post(
        "/graphql", json={**apq(None, sha256(query)), "variables": {"c": "cus_1"}}
    )
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_anonymous_callers_run_documents_but_store_none(
    api: Api, http: httpx.AsyncClient, dsn: str
) -> None:
    query = unique_query()
    ran = await api.http.post("/graphql", json=apq(query, sha256(query)))
    assert ran.json() == {"data": {"__typename": "Query"}}
    only_error(
        await api.http.post("/graphql", json=apq(None, sha256(query))), "PERSISTED_QUERY_NOT_FOUND"
    )
    assert await stored_rows(dsn) == 0
    await http.post("/graphql", json=apq(query, sha256(query)))
    # stored by a caller with a token, the document serves anonymous callers too
    hit = await api.http.post("/graphql", json=apq(None, sha256(query)))
    assert hit.json() == {"data": {"__typename": "Query"}}


async def test_a_stored_mutation_is_refused_over_get(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.token()}"}
    await api.http.post("/graphql", json=apq(CREATE, sha256(CREATE)), headers=headers)
    response = await api.http.get(
        "/graphql", params=get_params(apq(None, sha256(CREATE))), headers=headers
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "persisted",
    [
        {"version": 1, "sha256Hash": sha256("{ __typename }x")},  # another text's hash
        {"version": 1, "sha256Hash": sha256("{ __typename }").upper()},  # not lower-case
        {"version": 2, "sha256Hash": sha256("{ __typename }")},
        {"version": 1, "sha256Hash": "abc"},
        {"version": 1},
        "abc",
    ],
)
async def test_a_wrong_hash_or_version_is_bad_user_input(
    http: httpx.AsyncClient, persisted: object
) -> None:
    body = {"query": "{ __typename }", "extensions": {"persistedQuery": persisted}}
    response = await http.post("/graphql", json=body)
    assert response.status_code == 400
    only_error(response, "BAD_USER_INPUT")


async def test_a_hash_only_request_with_a_malformed_hash_is_bad_user_input(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/graphql", json=apq(None, "x" * 64))
    assert response.status_code == 400
    only_error(response, "BAD_USER_INPUT")


async def test_a_document_that_fails_validation_is_not_stored(
    http: httpx.AsyncClient, dsn: str
) -> None:
    for query in (f"{{ noSuchField{uuid.uuid4().hex} }}", f"{{ __typename {uuid.uuid4().hex}"):
        response = await http.post("/graphql", json=apq(query, sha256(query)))
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        miss = await http.post("/graphql", json=apq(None, sha256(query)))
        only_error(miss, "PERSISTED_QUERY_NOT_FOUND")
    assert await stored_rows(dsn) == 0


async def stored_rows(dsn: str) -> int:
    return await count_rows(dsn, "SELECT count(*) FROM persisted_documents")


@contextlib.asynccontextmanager
async def two_instances(
    settings: Settings, dsn: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two apps, each with its own services (pools, stores, caches), on one database."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            services = await Services.start(settings, dsn)
            stack.push_async_callback(services.close)
            client = await stack.enter_async_context(serving(settings, services))
            client.headers.update(bearer(settings))
            clients.append(client)
        yield clients[0], clients[1]


async def register_on_one_hit_on_the_other(
    first: httpx.AsyncClient, second: httpx.AsyncClient
) -> str:
    query = unique_query()
    only_error(
        await second.post("/graphql", json=apq(None, sha256(query))), "PERSISTED_QUERY_NOT_FOUND"
    )
    registered = await first.post("/graphql", json=apq(query, sha256(query)))
    assert registered.json() == {"data": {"__typename": "Query"}}
    hit = await second.post("/graphql", json=apq(None, sha256(query)))
    assert hit.json() == {"data": {"__typename": "Query"}}
    return query


async def test_two_instances_share_documents_through_redis(
    settings: Settings, dsn: str, redis_url: str
) -> None:
    with_redis = dataclasses.replace(settings, redis_url=redis_url, apq_ttl=3600)
    async with two_instances(with_redis, dsn) as (first, second):
        query = await register_on_one_hit_on_the_other(first, second)
    client = redis.from_url(redis_url)
    try:
        key = REDIS_PREFIX + sha256(query)
        assert await client.get(key) == query.encode()
        assert 0 < await client.ttl(key) <= 3600
        await client.delete(key)
    finally:
        await client.aclose()
    assert await stored_rows(dsn) == 0  # Redis holds them, not the database


async def test_two_instances_share_documents_through_the_database(
    settings: Settings, dsn: str
) -> None:
    assert settings.redis_url is None
    async with two_instances(settings, dsn) as (first, second):
        await register_on_one_hit_on_the_other(first, second)
    assert await stored_rows(dsn) == 1


async def test_an_unreachable_store_is_a_miss_and_the_text_still_runs(
    settings: Settings, dsn: str
) -> None:
    unreachable = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with two_instances(unreachable, dsn) as (first, _):
        query = unique_query()
        only_error(
            await first.post("/graphql", json=apq(None, sha256(query))), "PERSISTED_QUERY_NOT_FOUND"
        )
        ran = await first.post("/graphql", json=apq(query, sha256(query)))
        assert ran.json() == {"data": {"__typename": "Query"}}


async def test_a_subscription_by_hash_over_websocket(api: Api) -> None:
    query = f"subscription S{uuid.uuid4().hex} {{ events {{ type }} }}"
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token())
        await ws.send({"id": "miss", "type": "subscribe", "payload": apq(None, sha256(query))})
        error = await ws.receive("miss")
        assert error["type"] == "error"
        assert error["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        await ws.send({"id": "register", "type": "subscribe", "payload": apq(query, sha256(query))})
        await ws.send({"id": "hit", "type": "subscribe", "payload": apq(None, sha256(query))})
        await api.gql(CREATE)
        for id in ("register", "hit"):
            (data,) = await ws.data(id, 1)
            assert data["events"]["type"].startswith("order.created")


# -- trusted documents

TRUSTED_QUERY = "query Trusted { orders(first: 1) { edges { cursor } } }"
TRUSTED_DATA = {"data": {"orders": {"edges": []}}}
TRUSTED_MUTATION = CREATE


@pytest.fixture
def trusted_file(tmp_path: Path) -> Path:
    path = tmp_path / "trusted.json"
    path.write_text(json.dumps({sha256(d): d for d in (TRUSTED_QUERY, TRUSTED_MUTATION)}))
    return path


@contextlib.asynccontextmanager
async def trusted_app(
    settings: Settings, services: Services, trusted_file: Path, introspection: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    trusted = dataclasses.replace(
        settings, trusted_documents=trusted_file, introspection=introspection
    )
    async with serving(trusted, services) as http:
        http.headers["Authorization"] = (
            f"Bearer {mint_token(settings.jwt_secret or '', 'cus_1', 'customer')}"
        )
        yield http


async def test_trusted_documents_run_by_hash_and_by_text(
    settings: Settings, services: Services, trusted_file: Path
) -> None:
    async with trusted_app(settings, services, trusted_file) as http:
        by_hash = await http.post("/graphql", json=apq(None, sha256(TRUSTED_QUERY)))
        assert by_hash.json() == TRUSTED_DATA
        by_get = await http.get("/graphql", params=get_params(apq(None, sha256(TRUSTED_QUERY))))
        assert by_get.json() == TRUSTED_DATA
        by_text = await http.post("/graphql", json={"query": TRUSTED_MUTATION})
        assert by_text.json() == {"data": {"createOrder": {"position": "1"}}}
        both = await http.post("/graphql", json=apq(TRUSTED_MUTATION, sha256(TRUSTED_MUTATION)))
        assert both.json() == {"data": {"createOrder": {"position": "2"}}}


async def test_other_documents_are_forbidden_in_trusted_mode(
    settings: Settings, services: Services, trusted_file: Path, dsn: str
) -> None:
    other = "query Other { orders(first: 2) { edges { cursor } } }"
    async with trusted_app(settings, services, trusted_file) as http:
        as_json = await http.post("/graphql", json={"query": other})
        assert as_json.status_code == 200  # application/json: 200 for every well-formed request
        only_error(as_json, "FORBIDDEN")
        as_spec = await http.post(
            "/graphql", json={"query": other}, headers={"Accept": GRAPHQL_RESPONSE}
        )
        assert as_spec.status_code == 403
        only_error(as_spec, "FORBIDDEN")
        # registering is refused too, and nothing is stored
        registering = await http.post("/graphql", json=apq(other, sha256(other)))
        only_error(registering, "FORBIDDEN")
        unknown = await http.post("/graphql", json=apq(None, sha256(other)))
        only_error(unknown, "PERSISTED_QUERY_NOT_FOUND")
        # the same text with other whitespace is another document
        reformatted = await http.post("/graphql", json={"query": TRUSTED_QUERY + " "})
        only_error(reformatted, "FORBIDDEN")
        mutation = await http.post("/graphql", json={"query": CREATE.replace("cus_1", "cus_2")})
        only_error(mutation, "FORBIDDEN")
    assert await stored_rows(dsn) == 0


async def test_introspection_runs_in_trusted_mode_while_it_is_on(
    settings: Settings, services: Services, trusted_file: Path
) -> None:
    introspection = (
        "query { __schema { queryType { name } } ...Meta } fragment Meta on Query { __typename }"
    )
    async with trusted_app(settings, services, trusted_file) as http:
        response = await http.post("/graphql", json={"query": introspection})
        assert response.json() == {
            "data": {"__schema": {"queryType": {"name": "Query"}}, "__typename": "Query"}
        }
        mixed = "query { __schema { queryType { name } } ...Meta } fragment Meta on Query { orders(first: 1) { edges { cursor } } }"
        only_error(await http.post("/graphql", json={"query": mixed}), "FORBIDDEN")
    async with trusted_app(settings, services, trusted_file, introspection=False) as http:
        only_error(await http.post("/graphql", json={"query": introspection}), "FORBIDDEN")


async def test_trusted_mode_holds_over_websocket(
    settings: Settings, services: Services, trusted_file: Path
) -> None:
    async with trusted_app(settings, services, trusted_file) as http:
        port = http.base_url.port
        assert port is not None
        async with GraphQLWS.connect(port) as ws:
            await ws.init(mint_token(settings.jwt_secret or "", "cus_1", "customer"))
            await ws.subscribe("other", "subscription { events { type } }")
            error = await ws.receive("other")
            assert error["type"] == "error"
            assert error["payload"][0]["extensions"]["code"] == "FORBIDDEN"
            await ws.send(
                {"id": "trusted", "type": "subscribe", "payload": apq(None, sha256(TRUSTED_QUERY))}
            )
            assert (await ws.receive("trusted"))["payload"] == TRUSTED_DATA


def test_a_trusted_documents_file_with_a_wrong_hash_is_refused_at_start(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "trusted.json"
    path.write_text(json.dumps({sha256("{ a }"): "{ b }"}))
    with pytest.raises(ValueError, match="SHA-256"):
        create_app(
            dataclasses.replace(
                settings, trusted_documents=path, database_url="postgresql://unused"
            )
        )


async def test_the_database_store_deletes_documents_unused_past_the_ttl(
    services: Services, dsn: str
) -> None:
    await DatabaseDocuments(services.pool, ttl=60).put("old", "{ __typename }")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE persisted_documents SET used_at = now() - interval '61 seconds'")
        store = DatabaseDocuments(services.pool, ttl=60)  # a process that has not pruned yet
        await store.put("new", "{ __typename }")
        assert await store.get("old") is None
        assert await store.get("new") == "{ __typename }"
        await conn.execute("UPDATE persisted_documents SET used_at = now() - interval '30 seconds'")
        assert await store.get("new") == "{ __typename }"  # a lookup marks it used again
        assert await conn.fetchval(
            "SELECT now() - used_at < interval '5 seconds' FROM persisted_documents"
        )
    finally:
        await conn.close()


def test_known_documents_drop_the_least_recently_used_past_their_bytes() -> None:
    documents = {name: name * 1000 for name in "abc"}
    known = KnownDocuments(max_bytes=2 * sys.getsizeof(documents["a"]))
    known.add("a", documents["a"])
    known.add("b", documents["b"])
    assert known.get("a") == documents["a"]  # now b is the least recently used
    known.add("c", documents["c"])
    assert (known.get("a"), known.get("b"), known.get("c")) == (
        documents["a"],
        None,
        documents["c"],
    )
    known.add("huge", "x" * 10_000)  # larger than the whole budget: never kept
    assert known.get("huge") is None and known.get("c") == documents["c"]
