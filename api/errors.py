"""Every failure leaves with one of the contract's codes; unexpected ones are masked."""

from __future__ import annotations

import logging
import re
from typing import Any

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from api.auth import Unauthenticated, UnstorableClaim
from domain.errors import InvalidInput, RuleViolation
from eventstore import ConcurrencyConflict
from service.errors import Forbidden, NotFound, TooMuchContention

log = logging.getLogger("eventgraph.errors")

INTERNAL_MESSAGE = "Internal server error."

_CODES: list[tuple[type[Exception], str]] = [
    (UnstorableClaim, "BAD_USER_INPUT"),  # before its base class
    (Unauthenticated, "UNAUTHENTICATED"),
    (Forbidden, "FORBIDDEN"),
    (NotFound, "NOT_FOUND"),
    (InvalidInput, "BAD_USER_INPUT"),
    (ConcurrencyConflict, "CONCURRENCY_CONFLICT"),
    (RuleViolation, "RULE_VIOLATION"),
    (TooMuchContention, "CONCURRENCY_CONFLICT"),
]

# Limits reported as plain validation/syntax errors: the token limit (graphql-core's
# parser), graphql-core's own introspection depth rule and its budget for comparing
# same-named fields (`{ a a a ... }` is quadratic), and the depth/alias messages.
_TOO_COMPLEX = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|more than \d+ tokens|too complex"
    r"|Maximum introspection depth exceeded|Validation aborted",
    re.IGNORECASE,
)


def error_code(error: GraphQLError) -> tuple[str, dict[str, Any]]:
    """The contract code and extra extensions for an error."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        existing = (error.extensions or {}).get("code")
        if existing:
            return existing, {}
        return ("QUERY_TOO_COMPLEX" if _TOO_COMPLEX.search(error.message) else "BAD_USER_INPUT"), {}
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
    message = error.message
    if code == "INTERNAL_SERVER_ERROR":
        log.error(
            "unexpected error (correlation id %s) at %s",
            correlation_id,
            error.path,
            exc_info=error.original_error,
        )
        message = INTERNAL_MESSAGE
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
