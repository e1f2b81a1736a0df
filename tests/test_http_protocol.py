"""GraphQL over HTTP through a real server: media types, status codes, bad requests, limits.

Every refused request must carry a coded error and append nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Api, count_rows

GRAPHQL_RESPONSE = "application/graphql-response+json"
CREATE = "mutation { createOrder(input: {customerId: \"cus_1\"}) { position } }"


async def event_count(dsn: str) -> int:
    return await count_rows(dsn, "SELECT count(*) FROM events")


def auth(api: Api, sub: str = "cus_1", role: str = "customer") -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token(sub, role)}"}


def only_error(body: dict, code: str) -> str:  # type: ignore[type-arg]
    assert "data" not in body, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, body
    return str(error["message"])


async def test_media_type_follows_accept(api: Api) -> None:
    query = {"query": "{ __typename }"}
    for accept, expected in (
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        (None, "application/json"),
        (f"application/json;q=0.5, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};q=0.1, application/json", "application/json"),
    ):
        headers = {"Accept": accept} if accept else {}
        response = await api.http.post("/graphql", json=query, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == f"{expected}; charset=utf-8", accept
        assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{", None, "BAD_USER_INPUT"),  # syntax
        ("{ noSuchField }", None, "BAD_USER_INPUT"),  # validation
        ("query($id: ID!) { __typename }", {}, "BAD_USER_INPUT"),  # variable coercion
        ("query($n: Int!) { __typename }", {"n": "seven"}, "BAD_USER_INPUT"),
    ],
)
async def test_request_errors_are_400_only_for_graphql_response_json(
    api: Api, query: str, variables: dict | None, code: str  # type: ignore[type-arg]
) -> None:
    body = {"query": query, "variables": variables}
    modern = await api.http.post("/graphql", json=body, headers={"Accept": GRAPHQL_RESPONSE})
    assert modern.status_code == 400
    assert modern.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    message = only_error(modern.json(), code)
    legacy = await api.http.post("/graphql", json=body, headers={"Accept": "application/json"})
    assert legacy.status_code == 200
    assert only_error(legacy.json(), code) == message
    assert message != "Internal server error."  # syntax/validation messages are kept


async def test_field_errors_stay_200_with_data_in_both_modes(api: Api) -> None:
    for accept in (GRAPHQL_RESPONSE, "application/json"):
        response = await api.http.post(
            "/graphql", json={"query": "{ headPosition }"}, headers={"Accept": accept}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert body["errors"][0]["path"] == ["headPosition"]


# Bodies posted as application/json that are not a GraphQL request: 400, naming what is wrong.
MALFORMED_JSON_BODIES = [
    (b'{"query": "mutation', "not valid JSON"),
    (b"", "empty"),
    (b"   ", "empty"),
    (b'"just a string"', "JSON object"),
    (b"42", "JSON object"),
    (b'{"variables": {}}', "No GraphQL query"),
    (b'{"query": 7}', "query"),
    (b'{"query": "{ __typename }", "variables": "x"}', "variables"),
    (b'{"query": "{ __typename }", "operationName": 1}', "operationName"),
    (b'{"query": "{ __typename }", "extensions": []}', "extensions"),
    (b'[{"query": "{ __typename }"}]', "Batching"),
    (b'{"query": "query A { __typename }", "operationName": "B"}', "B"),
]
# Bodies of another media type (or none): 415, naming application/json or what was sent.
OTHER_MEDIA_TYPES = [
    (CREATE.encode(), "application/graphql", "application/json"),
    (b"query=%7B__typename%7D", "application/x-www-form-urlencoded", "application/json"),
    (b'{"query": "{ __typename }"}', "text/plain", "text/plain"),
    (b'{"query": "{ __typename }"}', None, "none"),
]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "fragment"),
    [(content, "application/json", 400, fragment) for content, fragment in MALFORMED_JSON_BODIES]
    + [(content, content_type, 415, fragment) for content, content_type, fragment in OTHER_MEDIA_TYPES],
)
async def test_malformed_posts_are_coded_4xx_and_append_nothing(
    api: Api, dsn: str, content: bytes, content_type: str | None, status: int, fragment: str
) -> None:
    headers = {**auth(api), "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    response = await api.http.post("/graphql", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert fragment.lower() in only_error(response.json(), "BAD_USER_INPUT").lower()
    assert await event_count(dsn) == 0


async def test_mutation_over_get_is_405_and_appends_nothing(api: Api, dsn: str) -> None:
    for accept in ("application/json", GRAPHQL_RESPONSE):
        response = await api.http.get(
            "/graphql", params={"query": CREATE}, headers={**auth(api), "Accept": accept}
        )
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.headers["content-type"].startswith(accept)
        assert "POST" in only_error(response.json(), "BAD_USER_INPUT")
    assert await event_count(dsn) == 0


async def test_subscription_over_http_is_a_coded_400(api: Api) -> None:
    for request in (
        api.http.post("/graphql", json={"query": "subscription { events { id } }"}, headers=auth(api)),
        api.http.get("/graphql", params={"query": "subscription { events { id } }"}, headers=auth(api)),
    ):
        response = await request
        assert response.status_code in (400, 405)
        only_error(response.json(), "BAD_USER_INPUT")


async def test_queries_over_get(api: Api) -> None:
    response = await api.http.get(
        "/graphql",
        params={"query": "query($n: String!) { __type(name: $n) { name } }", "variables": '{"n": "Order"}'},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200 and response.json() == {"data": {"__type": {"name": "Order"}}}
    head = await api.http.get("/graphql", params={"query": "{ headPosition }"}, headers=auth(api))
    assert head.json() == {"data": {"headPosition": "0"}}
    missing = await api.http.get("/graphql", headers={"Accept": "application/json"})
    assert missing.status_code == 400
    only_error(missing.json(), "BAD_USER_INPUT")


async def test_other_methods_are_coded_405(api: Api) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        response = await api.http.request(method, "/graphql", json={"query": "{ __typename }"})
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
        only_error(response.json(), "BAD_USER_INPUT")


async def test_body_over_one_mib_is_413_by_content_length(api: Api, dsn: str) -> None:
    padding = " " * (1024 * 1024)
    response = await api.http.post(
        "/graphql", json={"query": CREATE + padding}, headers=auth(api)
    )
    assert response.status_code == 413
    assert "1048576" in only_error(response.json(), "QUERY_TOO_COMPLEX")
    assert await event_count(dsn) == 0
    # the limit is on the body, not the query: just under it is fine
    fits = await api.http.post(
        "/graphql", json={"query": "{ __typename }" + " " * (1024 * 1024 - 100)}
    )
    assert fits.status_code == 200 and fits.json() == {"data": {"__typename": "Query"}}


async def test_body_over_one_mib_is_413_while_streaming_chunked(api: Api, dsn: str) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"query": "' + CREATE.replace('"', '\\"').encode()
        for _ in range(64):  # up to 4 MiB, far past the limit, no Content-Length
            sent += 64 * 1024
            yield b" " * (64 * 1024)
            await asyncio.sleep(0)
        yield b'"}'

    response = await api.http.post(
        "/graphql", content=chunks(), headers={**auth(api), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "transfer-encoding" not in response.request.headers or "content-length" not in response.request.headers
    only_error(response.json(), "QUERY_TOO_COMPLEX")
    assert await event_count(dsn) == 0
    # the server is still healthy and answers the next request
    again = await api.http.post("/graphql", json={"query": "{ __typename }"})
    assert again.json() == {"data": {"__typename": "Query"}}


async def test_a_frontend_on_another_origin_may_call_the_api(api: Api) -> None:
    """CORS: the preflight allows POST with the bearer header; answers carry the origin."""
    origin = "http://localhost:5173"
    preflight = await api.http.options(
        "/graphql",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", origin)
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    answer = await api.http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Origin": origin}
    )
    assert answer.headers["access-control-allow-origin"] in ("*", origin)
    assert "x-correlation-id" in answer.headers["access-control-expose-headers"].lower()
    # Every answer varies by Origin (once), so a shared cache never serves one origin's to another.
    plain = await api.http.post("/graphql", json={"query": "{ __typename }"})
    assert "access-control-allow-origin" not in plain.headers
    for response in (answer, plain):
        assert response.headers.get_list("vary") == ["Origin"]


async def test_operation_name_picks_one_of_several_and_is_needed_for_several(api: Api) -> None:
    document = "query A { __typename } query B { headPosition }"
    picked = await api.http.post("/graphql", json={"query": document, "operationName": "A"})
    assert picked.status_code == 200 and picked.json() == {"data": {"__typename": "Query"}}
    for accept in ("application/json", GRAPHQL_RESPONSE):
        ambiguous = await api.http.post("/graphql", json={"query": document}, headers={"Accept": accept})
        assert ambiguous.status_code == 400
        assert "operationName" in only_error(ambiguous.json(), "BAD_USER_INPUT")


async def test_correlation_id_is_echoed_on_refusals_too(api: Api) -> None:
    response = await api.http.post(
        "/graphql", content=b"{", headers={"Content-Type": "application/json", "X-Correlation-ID": "corr-7"}
    )
    assert response.status_code == 400
    assert response.headers["x-correlation-id"] == "corr-7"


async def test_a_trailing_slash_reaches_the_endpoint_too(api: Api) -> None:
    response = await api.http.post("/graphql/", json={"query": "{ __typename }"})
    assert response.status_code == 200 and response.json() == {"data": {"__typename": "Query"}}
