"""Text the database can store: NUL characters and lone surrogates are refused where
input is coerced.

PostgreSQL stores no NUL (`\\u0000`) in `text` or `jsonb`, and nothing that is not valid
UTF-8 (a lone surrogate such as `\\ud800`, which Python's JSON parser lets through on
the WebSocket). A command carrying either fails inside the append, after the request
has taken a connection and joined a batch with other clients' commands. Every string a
request brings in arrives as a GraphQL `String` or `ID` (an argument, a variable, an
input field, a list item), and graphql-core coerces each one through those two scalars,
over HTTP (`api.operations`, `api.compiled`) and WebSocket (strawberry) alike, before
any resolver runs. So the refusal lives there, once: `BAD_USER_INPUT` before any
database work, and nothing downstream checks.

graphql-core's `String` and `ID` are process-wide objects that a schema may not
redefine ("Redefinition of reserved type"), so `refuse_unstorable_strings` wraps their
input coercion in place (idempotently); any other string coerces as before.
tests/test_strings.py pins the graphql-core attributes this relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLError, GraphQLID, GraphQLScalarType, GraphQLString, StringValueNode

NUL = "\x00"
NUL_MESSAGE = "a NUL character (\\u0000) cannot be stored: remove it from the input"
SURROGATE_MESSAGE = "a lone surrogate (\\ud800-\\udfff) is not text: send valid Unicode"


def has_nul(value: Any) -> bool:
    return isinstance(value, str) and NUL in value


def unstorable(text: str) -> str | None:
    """Why PostgreSQL could not store `text` (None: it can)."""
    if NUL in text:
        return NUL_MESSAGE
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return SURROGATE_MESSAGE
    return None


def _refuse(value: Any) -> None:
    why = unstorable(value) if isinstance(value, str) else None
    if why is not None:
        raise GraphQLError(f"{why}.")


def _refusing_value(coerce: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def coerce_storable(value: Any) -> Any:
        if type(value) is str and (NUL in value or not value.isascii()):  # else nothing to check
            _refuse(value)
        return coerce(value)

    coerce_storable.refuses_nul = True  # type: ignore[attr-defined]
    return coerce_storable


def _refusing_literal(coerce: Callable[..., Any]) -> Callable[..., Any]:
    def coerce_storable(node: Any, *args: Any) -> Any:
        if isinstance(node, StringValueNode):
            _refuse(node.value)
        return coerce(node, *args)

    coerce_storable.refuses_nul = True  # type: ignore[attr-defined]
    return coerce_storable


def refuse_unstorable_strings(scalars: tuple[GraphQLScalarType, ...] = (GraphQLString, GraphQLID)) -> None:
    """Make `String` and `ID` input coercion (values and literals) refuse unstorable text."""
    for scalar in scalars:
        for name, wrap in (
            ("coerce_input_value", _refusing_value),
            ("parse_value", _refusing_value),
            ("coerce_input_literal", _refusing_literal),
            ("parse_literal", _refusing_literal),
        ):
            current = getattr(scalar, name)
            if current is not None and not getattr(current, "refuses_nul", False):
                setattr(scalar, name, wrap(current))
