"""GraphQL over HTTP details: media types, request errors, the body size limit.

The GraphQL-over-HTTP spec: a client that accepts `application/graphql-response+json`
gets that media type, and a request that fails before execution (syntax, validation,
variable coercion) answers 4xx without a `data` entry; `application/json` clients keep
the legacy 200. Malformed HTTP requests answer 4xx with a coded GraphQL error body.
"""

from __future__ import annotations

from typing import Any

import orjson
from graphql import GraphQLError
from starlette.responses import Response
from starlette.types import Message, Receive

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
