"""The executor's shortcut for plain fields gives graphql-core's own results and errors."""

from __future__ import annotations

import asyncio
from typing import Any

import strawberry
from graphql import execute, parse

from api.execution import executor_for, plain_fields


@strawberry.type
class Price:
    amount: int
    label: str

    @strawberry.field
    async def later(self) -> int:
        await asyncio.sleep(0)
        if self.amount < 0:
            raise ValueError("negative")
        return self.amount


@strawberry.type
class Item:
    name: str
    count: int
    note: str | None
    price: Price
    spare: Price | None

    @strawberry.field
    def shout(self) -> str | None:
        return self.name.upper() if self.name else None


def items() -> list[Item | None]:
    return [
        Item(name="a", count=1, note=None, price=Price(amount=1, label="x"), spare=None),
        Item(name=None, count=2, note="n", price=Price(amount=2, label="y"), spare=None),  # type: ignore[arg-type]  # breaks `name: String!`
        Item(name="c", count=2**40, note="n", price=Price(amount=3, label="z"), spare=None),  # too large for a GraphQL Int
        Item(name="d", count=4, note=None, price=Price(amount=-1, label=None), spare=Price(amount=5, label=None)),  # type: ignore[arg-type]  # a null in `label: String!`, an error in `later`
    ]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return items()


schema = strawberry.Schema(query=Query)


async def both(query: str) -> tuple[Any, Any]:
    """(shortcut result, plain graphql-core result), each as (data, formatted errors)."""
    results = []
    for executor in (executor_for(schema._schema), None):
        result = execute(schema._schema, parse(query), executor_class=executor)
        if hasattr(result, "__await__"):
            result = await result  # type: ignore[misc]
        errors = sorted((e.formatted for e in result.errors or ()), key=lambda e: str(e["path"]))  # type: ignore[union-attr]
        results.append((result.data, errors))  # type: ignore[union-attr]
    return results[0], results[1]


def test_only_attribute_fields_take_the_shortcut() -> None:
    plain = plain_fields(schema._schema)
    item = schema._schema.type_map["Item"]
    assert set(plain[item]) == {"name", "count", "note", "price", "spare"}  # not `shout`: a resolver
    assert plain[item]["price"].object_type is schema._schema.type_map["Price"]
    assert schema._schema.type_map["Query"] not in plain  # `items` has a resolver


async def test_leaf_results_and_errors_match_graphql_core() -> None:
    shortcut, plain = await both("{ items { name count note shout } }")
    assert shortcut == plain
    data, errors = shortcut
    # the null in a non-null field nulls its item; the huge Int is an error on its field
    assert data["items"][0] == {"name": "a", "count": 1, "note": None, "shout": "A"}
    assert data["items"][1:3] == [None, None]
    assert [e["path"] for e in errors] == [["items", 1, "name"], ["items", 2, "count"]]


async def test_object_results_and_errors_match_graphql_core() -> None:
    shortcut, plain = await both("{ items { price { amount label later } spare { label } } }")
    assert shortcut == plain
    data, errors = shortcut
    assert data["items"][0] == {"price": {"amount": 1, "label": "x", "later": 1}, "spare": None}
    # `price: Price!` inside a nullable item: its errors null the whole item; `spare` is nullable
    assert data["items"][3] is None
    assert ["items", 3, "price", "label"] in [e["path"] for e in errors]
