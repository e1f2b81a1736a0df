"""The executor's shortcut for plain leaf fields keeps graphql-core's results and errors."""

from __future__ import annotations

import strawberry
from graphql import execute, parse

from api.execution import executor_for, plain_leaves


@strawberry.type
class Item:
    name: str
    count: int
    note: str | None

    @strawberry.field
    def shout(self) -> str | None:
        return self.name.upper() if self.name else None


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return [
            Item(name="a", count=1, note=None),
            Item(name=None, count=2, note="n"),  # type: ignore[arg-type]  # breaks `name: String!`
            Item(name="c", count=2**40, note="n"),  # too large for a GraphQL Int
        ]


schema = strawberry.Schema(query=Query)


def run(query: str) -> tuple[object, list[dict[str, object]]]:
    result = execute(schema._schema, parse(query), executor_class=executor_for(schema._schema))
    assert not hasattr(result, "__await__")
    return result.data, [e.formatted for e in result.errors or ()]  # type: ignore[union-attr]


def test_only_attribute_leaves_take_the_shortcut() -> None:
    leaves = plain_leaves(schema._schema)
    item = schema._schema.type_map["Item"]
    assert set(leaves[item]) == {"name", "count", "note"}  # not `shout`, which has a resolver
    assert schema._schema.type_map["Query"] not in leaves  # `items` has a resolver


def test_results_and_errors_match_graphql_core() -> None:
    query = "{ items { name count note shout } }"
    data, errors = run(query)
    plain = execute(schema._schema, parse(query))
    assert data == plain.data  # type: ignore[union-attr]
    assert errors == [e.formatted for e in plain.errors or ()]  # type: ignore[union-attr]
    # the null in a non-null field nulls its item; the huge Int is an error on its field
    assert data == {"items": [{"name": "a", "count": 1, "note": None, "shout": "A"}, None, None]}
    assert sorted(tuple(e["path"]) for e in errors) == [("items", 1, "name"), ("items", 2, "count")]  # type: ignore[arg-type]
