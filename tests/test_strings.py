"""The graphql-core internals `api.strings` relies on: String and ID coerce every input
(variables and literals) through these attributes, which it wraps in place."""

from __future__ import annotations

import pytest
from graphql import (
    GraphQLError,
    GraphQLID,
    GraphQLNonNull,
    GraphQLString,
    StringValueNode,
    build_schema,
    parse,
)
from graphql.utilities import coerce_input_value
from graphql.validation import validate

from api.strings import refuse_unstorable_strings


@pytest.fixture(autouse=True)
def wrapped() -> None:
    refuse_unstorable_strings()
    refuse_unstorable_strings()  # idempotent


@pytest.mark.parametrize("scalar", [GraphQLString, GraphQLID])
def test_values_and_literals_with_nul_are_refused(scalar: object) -> None:
    for coerce in (scalar.coerce_input_value, scalar.parse_value):  # type: ignore[attr-defined]
        with pytest.raises(GraphQLError, match="NUL"):
            coerce("a\x00b")
        assert coerce("ab") == "ab"
    with pytest.raises(GraphQLError, match="NUL"):
        scalar.coerce_input_literal(StringValueNode(value="a\x00"))  # type: ignore[attr-defined]
    assert scalar.coerce_input_literal(StringValueNode(value="ab")) == "ab"  # type: ignore[attr-defined]


def test_graphql_core_coerces_variables_and_validates_literals_through_them() -> None:
    from graphql.utilities.coerce_input_value import Undefined

    assert coerce_input_value("a\x00", GraphQLNonNull(GraphQLString)) is Undefined
    assert coerce_input_value("a", GraphQLNonNull(GraphQLID)) == "a"
    schema = build_schema("type Query { f(s: String, i: ID): String }")
    errors = validate(schema, parse('{ f(s: "a\\u0000") }'))
    assert errors and "NUL" in errors[0].message
    assert not validate(schema, parse('{ f(s: "a", i: "b") }'))
