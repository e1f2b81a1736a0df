"""The GraphQL endpoint over HTTP: media types, request errors, the body size limit.

The GraphQL-over-HTTP spec: a client that accepts `application/graphql-response+json`
gets that media type, and a request that fails before execution (syntax, validation,
variable coercion) answers 4xx without a `data` entry; `application/json` clients keep
the legacy 200. Malformed HTTP requests answer 4xx with a coded GraphQL error body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError, OperationType
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from api.context import Context
from api.errors import INTERNAL_MESSAGE, bounded
from api.metrics import first_code, observe_request
from api.operations import GraphQLRequest, Operations, Outcome, UnknownOperation
from api.persisted import DocumentRefused, PersistedDocuments, persisted_hash
from api.ratelimit import RateLimited, RateLimiter, caller_of
from api.strings import NUL_MESSAGE, has_nul
from eventstore.records import time_ordered_text
from service.context import Principal
from service.logs import CORRELATION_ID
from service.tracing import operation_span

log = logging.getLogger("eventgraph.errors")

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"


class HTTPError(Exception):
    """A request refused before GraphQL execution, answered with `status` and a coded error."""

    def __init__(
        self, status: int, message: str, code: str = "BAD_USER_INPUT", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def negotiate(accept: str | None) -> str:
    """The response media type for an Accept header (application/json unless asked otherwise)."""
    best, best_q = JSON, -1.0
    for part in (accept or "").split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        if media not in (JSON, GRAPHQL_RESPONSE):
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # On a tie the newer media type wins: it is what a client naming both prefers.
        if q > 0 and (q > best_q or (q == best_q and media == GRAPHQL_RESPONSE)):
            best, best_q = media, q
    return best


def content_type(media_type: str) -> str:
    return f"{media_type}; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole response, sent as two ASGI messages (starlette's Response builds and then
    edits a header object: a few µs a request for what is always the same few headers)."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] | None = None
    operation_type: str | None = None  # a GraphQL answer's (None: a page, not an operation)
    code: str = "OK"  # the first error's code

    async def send(self, send: Send, correlation_id: str) -> None:
        # `Vary: Origin` comes from the app's CORS middleware, on every answer
        headers = [
            (b"content-type", self.content_type.encode("latin-1")),
            (b"content-length", str(len(self.body)).encode("latin-1")),
            # echoed, so a client can quote it when reporting an error (the log has it)
            (b"x-correlation-id", correlation_id.encode("latin-1")),
        ]
        for name, value in (self.headers or {}).items():
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def error_response(error: HTTPError, media_type: str) -> Reply:
    body = {"errors": [{"message": bounded(error.message), "extensions": {"code": error.code}}]}
    return Reply(
        error.status, orjson.dumps(body), content_type(media_type), error.headers, "unknown", error.code
    )


def declared_length(headers: dict[str, str]) -> int | None:
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def correlation_id_of(headers: Any) -> str:
    value = headers.get("x-correlation-id", "")
    return value if 0 < len(value) <= 200 and not has_nul(value) else time_ordered_text()


def too_large(max_bytes: int) -> HTTPError:
    return HTTPError(
        413,
        f"The request body is larger than the limit of {max_bytes} bytes.",
        code="QUERY_TOO_COMPLEX",
    )


# A restarted PostgreSQL is usually back within seconds; the pool reconnects on first use.
RETRY_LATER = {"Retry-After": "2"}


def unavailable(body: dict[str, Any]) -> bool:
    """The whole request failed for an outage: only SERVICE_UNAVAILABLE errors and no data
    (a response with some data, or another error, stays a 200)."""
    errors: list[dict[str, Any]] = body.get("errors") or []
    data = body.get("data")
    return (
        bool(errors)
        and all(e.get("extensions", {}).get("code") == "SERVICE_UNAVAILABLE" for e in errors)
        and (data is None or all(value is None for value in data.values()))
    )


_POST_ONLY = {"Allow": "POST"}
_GET_OR_POST = {"Allow": "GET, POST"}


def request_of(data: Any) -> GraphQLRequest:
    """The request's fields, each checked for its JSON type."""
    if isinstance(data, list):
        raise HTTPError(400, "Batching is not supported: send one operation per request.")
    if not isinstance(data, dict):
        raise HTTPError(400, "Expected a JSON object.")
    query = data.get("query")
    if not isinstance(query, str | None):
        raise HTTPError(400, "The GraphQL operation's `query` must be a string or null, if provided.")
    variables = data.get("variables")
    if not isinstance(variables, dict | None):
        raise HTTPError(400, "The GraphQL operation's `variables` must be an object or null, if provided.")
    extensions = data.get("extensions")
    if not isinstance(extensions, dict | None):
        raise HTTPError(400, "The GraphQL operation's `extensions` must be an object or null, if provided.")
    operation_name = data.get("operationName")
    if not isinstance(operation_name, str | None):
        raise HTTPError(400, "`operationName` must be a string or null.")
    sha256_hash = persisted_hash(extensions) if extensions else None
    if not query and sha256_hash is None:
        raise HTTPError(400, "No GraphQL query found in the request.")
    return GraphQLRequest(query or "", variables, operation_name, sha256_hash)


def parse_json(data: bytes | str) -> Any:
    if not data or not data.strip():
        raise HTTPError(400, "The request body is empty: send JSON with a `query`.")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise HTTPError(400, "The request body is not valid JSON.") from None


def params_of(query_string: bytes) -> dict[str, Any]:
    """GET parameters: `variables` and `extensions` are JSON in the query string."""
    params: dict[str, Any] = dict(QueryParams(query_string))
    for name in ("variables", "extensions"):
        if params.get(name):
            params[name] = parse_json(params[name])
    return params


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    """The whole body; past `max_bytes` a 413, counted as it streams (chunked too)."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            raise HTTPError(400, "The request body was not received.")
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


_READ_HEADERS = frozenset(
    {
        b"accept",
        b"authorization",
        b"content-length",
        b"content-type",
        b"origin",
        b"traceparent",
        b"x-correlation-id",
    }
)


def read_headers(scope: Scope) -> dict[str, str]:
    """The few request headers the endpoint reads, in one pass (the first of repeats)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _READ_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def wants_html(headers: dict[str, str]) -> bool:
    accept = headers.get("accept", "")
    return "text/html" in accept or "*/*" in accept


class GraphQLOverHTTP:
    """The GraphQL endpoint for GET and POST, held to the GraphQL-over-HTTP spec: every
    refusal is a coded JSON error (never plain text or a 500), the body limit is enforced
    as the body arrives, the response media type follows the Accept header, and a browser
    asking for the page gets GraphiQL."""

    def __init__(
        self,
        operations: Operations,
        context_for: Callable[[dict[str, str], str], Awaitable[Context]],
        graphiql: Callable[[str], str],
        documents: PersistedDocuments,
        max_body_bytes: int = 1024 * 1024,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.operations = operations
        self.documents = documents
        self.context_for = context_for
        self.graphiql = graphiql
        self.max_body_bytes = max_body_bytes
        self.rate_limiter = rate_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = read_headers(scope)
        media_type = negotiate(headers.get("accept"))
        correlation_id = correlation_id_of(headers)
        CORRELATION_ID.set(correlation_id)  # this request's task: its log lines carry it
        try:
            response = await self.respond(scope, receive, headers, media_type, correlation_id)
        except HTTPError as error:
            response = error_response(error, media_type)
        except DocumentRefused as refused:
            status = refused.status if media_type == GRAPHQL_RESPONSE else refused.json_status
            response = error_response(HTTPError(status, refused.message, refused.code), media_type)
        except Exception:  # a bug: still a coded answer, and the log has the details
            log.exception("unexpected error (correlation id %s) serving %s", correlation_id, scope["method"])
            response = error_response(HTTPError(500, INTERNAL_MESSAGE, code="INTERNAL_SERVER_ERROR"), media_type)
        await response.send(send, correlation_id)
        if response.operation_type is not None:
            observe_request(response.operation_type, response.code, time.perf_counter() - started)

    async def respond(
        self, scope: Scope, receive: Receive, headers: dict[str, str], media_type: str, correlation_id: str
    ) -> Reply:
        method = scope["method"]
        if has_nul(headers.get("x-correlation-id")):  # the response echoes a fresh id instead
            raise HTTPError(400, f"X-Correlation-ID: {NUL_MESSAGE}.")
        context = await self.context_for(headers, correlation_id)
        if self.rate_limiter is not None:  # once per request, before any parsing
            await self.admit(context, scope)
        if method == "GET":
            params = params_of(scope["query_string"])
            if "query" not in params and "extensions" not in params and wants_html(headers):
                return Reply(200, self.graphiql(scope["path"]).encode(), "text/html; charset=utf-8")
            request = request_of(params)
        elif method == "POST":
            request = request_of(parse_json(await self.body(receive, headers)))
        else:
            raise HTTPError(405, "GraphQL only supports GET and POST requests.", headers=_GET_OR_POST)
        if request.persisted_hash is not None or self.documents.trusted is not None:
            may_store = isinstance(context.authenticated, Principal)
            query = await self.documents.document(request.query, request.persisted_hash, may_store)
            request = GraphQLRequest(query, request.variables, request.operation_name, request.persisted_hash)
        outcome = await self.answer(request, method, context, headers)
        if unavailable(outcome.body):
            return Reply(
                503, orjson.dumps(outcome.body), content_type(media_type), RETRY_LATER,
                operation_type=outcome.operation_type, code="SERVICE_UNAVAILABLE",
            )
        # A request error answers 400 to clients of the spec's media type; `application/json`
        # clients keep the legacy 200.
        status = 400 if outcome.request_error and media_type == GRAPHQL_RESPONSE else 200
        return Reply(
            status,
            orjson.dumps(outcome.body),
            content_type(media_type),
            operation_type=outcome.operation_type,
            code=first_code(outcome.body),
        )

    async def admit(self, context: Context, scope: Scope) -> None:
        assert self.rate_limiter is not None
        try:
            await self.rate_limiter.check(caller_of(context.authenticated, scope.get("client")))
        except RateLimited as refused:
            retry_after = {"Retry-After": str(refused.retry_after)}
            raise HTTPError(429, str(refused), code=refused.code, headers=retry_after) from None

    async def body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != JSON:
            raise HTTPError(415, f"Unsupported content type {media or '(none)'!r}: send application/json.")
        length = declared_length(headers)
        if length is not None and length > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        return await read_body(receive, self.max_body_bytes)

    async def answer(
        self, request: GraphQLRequest, method: str, context: Context, headers: dict[str, str] | None = None
    ) -> Outcome:
        document = self.operations.document(request.query)
        if isinstance(document, GraphQLError):
            return self.operations.request_errors([document], context)
        try:
            operation = self.operations.operation(document, request.operation_name)
        except UnknownOperation as error:
            raise HTTPError(400, str(error)) from None
        # Plain HTTP runs queries (GET, POST) and mutations (POST); subscriptions have the WebSocket.
        if operation.operation is OperationType.SUBSCRIPTION:
            raise HTTPError(400, "Subscriptions are served over WebSocket (graphql-transport-ws) at this path.")
        if method == "GET" and operation.operation is not OperationType.QUERY:
            raise HTTPError(405, "Only queries are allowed over GET; send mutations with POST.", headers=_POST_ONLY)
        operation_type = operation.operation.value
        name = operation.name.value if operation.name else None
        with operation_span(operation_type, name, context.correlation_id, headers):
            outcome = await self.operations.run(request, document, context)
        outcome.operation_type = operation_type
        return outcome
