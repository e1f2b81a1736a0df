"""GraphQL over HTTP details: media types, request errors, the body size limit.

The GraphQL-over-HTTP spec: a client that accepts `application/graphql-response+json`
gets that media type, and a request that fails before execution (syntax, validation,
variable coercion) answers 4xx without a `data` entry; `application/json` clients keep
the legacy 200. Malformed HTTP requests answer 4xx with a coded GraphQL error body.
"""

from __future__ import annotations

from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from api.context import Context

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


def error_response(error: HTTPError, media_type: str) -> Response:
    body = {"errors": [{"message": error.message, "extensions": {"code": error.code}}]}
    return Response(
        orjson.dumps(body),
        status_code=error.status,
        headers=error.headers,
        media_type=content_type(media_type),
    )


def is_request_error(data: Any, errors: list[GraphQLError] | None) -> bool:
    """Failed before execution: no data, and no error belongs to a field (has a path)."""
    return data is None and bool(errors) and all(error.path is None for error in errors or ())


class BodyTooLarge(Exception):
    pass


def limited_receive(receive: Receive, max_bytes: int) -> Receive:
    """`receive` that raises BodyTooLarge once the body exceeds `max_bytes` (chunked too)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge
        return message

    return wrapped


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def too_large(max_bytes: int) -> HTTPError:
    return HTTPError(
        413,
        f"The request body is larger than the limit of {max_bytes} bytes.",
        code="QUERY_TOO_COMPLEX",
    )


_POST_ONLY = {"Allow": "POST"}
_OVER_GET = frozenset({OperationType.QUERY})
_OVER_POST = frozenset({OperationType.QUERY, OperationType.MUTATION})


class GraphQLOverHTTP(GraphQL[Context, None]):
    """strawberry's ASGI view, held to the GraphQL-over-HTTP spec: every refusal is a
    coded JSON error (never plain text or a 500), the body limit is enforced as the body
    arrives, and the response media type follows the Accept header."""

    max_body_bytes: int = 1024 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        media_type = negotiate(Request(scope).headers.get("accept"))
        try:
            length = declared_length(scope["headers"])
            if length is not None and length > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
            try:
                response = await self.run(Request(scope, limited_receive(receive, self.max_body_bytes)))
            except BodyTooLarge:
                raise too_large(self.max_body_bytes) from None
            except HTTPException as error:
                status = error.status_code
                allow = {"Allow": "GET, POST"} if status == 405 else None
                raise HTTPError(status, error.reason, headers=allow) from None
        except HTTPError as error:
            response = error_response(error, media_type)
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def parse_json(self, data: str | bytes) -> Any:
        if not data or not data.strip():
            raise HTTPError(400, "The request body is empty: send JSON with a `query`.")
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise HTTPError(400, "The request body is not valid JSON.") from None
        if not isinstance(value, dict | list):
            raise HTTPError(400, "Expected a JSON object.")
        return value

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            media = (request.content_type or "").partition(";")[0].strip().lower()
            if media != JSON:
                raise HTTPError(
                    415, f"Unsupported content type {media or '(none)'!r}: send application/json."
                )
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and not isinstance(data.operation_name, str | None):
            raise HTTPError(400, "`operationName` must be a string or null.")
        return data

    async def execute_single(  # type: ignore[override]
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Plain HTTP runs queries (GET, POST) and mutations (POST); subscriptions have
        # the WebSocket. strawberry would also start a subscription here and fail inside.
        get = request_adapter.method == "GET"
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=_OVER_GET if get else _OVER_POST,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError:
            if get:
                message = "Only queries are allowed over GET; send mutations with POST."
                raise HTTPError(405, message, headers=_POST_ONLY) from None
            message = "Subscriptions are served over WebSocket (graphql-transport-ws) at this path."
            raise HTTPError(400, message) from None
        except CannotGetOperationTypeError as error:
            raise HTTPError(400, error.as_http_error_reason()) from None
        except MissingQueryError:
            raise HTTPError(400, "No GraphQL query found in the request.") from None

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        request.state.sub_response = sub_response
        sub_response.media_type = negotiate(request.headers.get("accept"))
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        data = process_result(result)
        if is_request_error(result.data, result.errors):
            data.pop("data", None)  # a request error has no data entry (spec 7.1.2)
            sub_response = request.state.sub_response
            if sub_response.media_type == GRAPHQL_RESPONSE:
                sub_response.status_code = 400
        return data

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = Response(
            self.encode_json(response_data),
            status_code=sub_response.status_code or 200,
            media_type=content_type(sub_response.media_type or JSON),
        )
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response
