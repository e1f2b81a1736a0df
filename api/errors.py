"""Every failure leaves with one of the contract's codes; unexpected ones are masked."""

from __future__ import annotations

import logging
import re
from typing import Any

from graphql.error import GraphQLError
from redis.exceptions import ConnectionError as BrokerConnectionError
from redis.exceptions import TimeoutError as BrokerTimeout
from strawberry.extensions import MaskErrors

from api.auth import Unauthenticated, UnstorableClaim
from domain.errors import InvalidInput, RuleViolation
from eventstore import ConcurrencyConflict, UnstorableData
from eventstore.pool import unreachable
from service.errors import Forbidden, NotFound, TooMuchContention

log = logging.getLogger("eventgraph.errors")

INTERNAL_MESSAGE = "Internal server error."
# An outage's cause is logged once by its tracker (eventstore.outage), not told to clients.
UNAVAILABLE_MESSAGE = (
    "The service is temporarily unavailable. Retry shortly: with the same idempotencyKey"
    " a retry is safe."
)

_CODES: list[tuple[type[Exception], str]] = [
    (UnstorableClaim, "BAD_USER_INPUT"),  # before its base class
    (Unauthenticated, "UNAUTHENTICATED"),
    (Forbidden, "FORBIDDEN"),
    (NotFound, "NOT_FOUND"),
    (InvalidInput, "BAD_USER_INPUT"),
    (UnstorableData, "BAD_USER_INPUT"),
    (ConcurrencyConflict, "CONCURRENCY_CONFLICT"),
    (RuleViolation, "RULE_VIOLATION"),
    (TooMuchContention, "CONCURRENCY_CONFLICT"),
    (BrokerConnectionError, "SERVICE_UNAVAILABLE"),  # Redis, for the paths that need it
    (BrokerTimeout, "SERVICE_UNAVAILABLE"),
]

# Limits reported as plain validation/syntax errors: the token limit (graphql-core's
# parser), graphql-core's own introspection depth rule and its budget for comparing
# same-named fields (`{ a a a ... }` is quadratic), and the depth/alias messages.
_TOO_COMPLEX = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|more than \d+ tokens|too complex"
    r"|Maximum introspection depth exceeded|Validation aborted",
    re.IGNORECASE,
)


MAX_QUOTED = 200  # characters of a client's input an error message may quote (CONTRACT 7.1)
MAX_MESSAGE = 1000  # a backstop for input quoted without quotes: templates are short


# Up to the next quote; a quoted stretch's inside, up to its closing quote (escapes skipped)
_PLAIN = re.compile(r"[^'\"]*")
_INSIDE = {q: re.compile(rf"[^{q}\\]*(?:\\.[^{q}\\]*)*", re.DOTALL) for q in "'\""}


def bounded(message: str) -> str:
    """The message with each quoted stretch cut to MAX_QUOTED characters.

    Input is quoted as '...' or "..." (graphql-core's `inspect` and `print_for_error`, our
    own `repr`s), backslash escapes included; an unclosed quote runs to the end. The scan
    stops past MAX_MESSAGE characters of output, so a huge message costs little whatever
    quotes it holds.
    """
    if len(message) <= MAX_QUOTED:
        return message
    out: list[str] = []
    size, i, n = 0, 0, len(message)
    while i < n and size <= MAX_MESSAGE:
        plain = _PLAIN.match(message, i)
        assert plain is not None  # `*` always matches
        out.append(plain[0])
        i = plain.end()
        if i >= n:
            break
        quote = message[i]
        inside = _INSIDE[quote].match(message, i + 1)
        assert inside is not None
        text = inside[0] if len(inside[0]) <= MAX_QUOTED else f"{inside[0][:MAX_QUOTED]}..."
        closed = inside.end() < n
        out.append(f"{quote}{text}{quote if closed else ''}")
        size += len(plain[0]) + len(out[-1])
        i = inside.end() + 1
    message = "".join(out)
    return message if len(message) <= MAX_MESSAGE else f"{message[:MAX_MESSAGE]}..."


def error_code(error: GraphQLError) -> tuple[str, dict[str, Any]]:
    """The contract code and extra extensions for an error."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        existing = (error.extensions or {}).get("code")
        if existing:
            return existing, {}
        return ("QUERY_TOO_COMPLEX" if _TOO_COMPLEX.search(error.message) else "BAD_USER_INPUT"), {}
    if unreachable(original):
        return "SERVICE_UNAVAILABLE", {}
    for cls, code in _CODES:
        if isinstance(original, cls):
            if isinstance(original, ConcurrencyConflict):
                return code, {
                    "expectedVersion": original.expected_version,
                    "actualVersion": original.actual_version,
                }
            return code, {}
    coded = getattr(original, "code", None)
    if isinstance(coded, str) and coded.isupper():
        return coded, dict(getattr(original, "extensions", {}) or {})
    return "INTERNAL_SERVER_ERROR", {}


def coded(error: GraphQLError, correlation_id: str) -> GraphQLError:
    """The error as a client sees it: with its code; an unexpected one masked and logged."""
    code, extra = error_code(error)
    message = bounded(error.message)
    if code == "INTERNAL_SERVER_ERROR":
        log.error(
            "unexpected error (correlation id %s) at %s",
            correlation_id,
            error.path,
            exc_info=error.original_error,
        )
        message = INTERNAL_MESSAGE
    elif code == "SERVICE_UNAVAILABLE":
        message = UNAVAILABLE_MESSAGE
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**(error.extensions or {}), "code": code, **extra},
    )


class ErrorCodes(MaskErrors):
    """`coded` for strawberry's own execution path (WebSocket operations)."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        correlation_id = getattr(self.execution_context.context, "correlation_id", "-")
        return [coded(error, correlation_id) for error in errors]
