"""The executor's shortcut for plain fields gives graphql-core's own results and errors."""

from __future__ import annotations

import asyncio
from typing import Any

import strawberry
from graphql import execute, parse

from api.execution import SharedPlan, executor_for, plain_fields, shared_plan


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

    @strawberry.field
    def history(self) -> list[Price]:  # non-null items: a null inside nulls the list's item
        return [self.price, *([self.spare] if self.spare else [])]


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


async def run(query: Any, executor: Any = None, **plan: Any) -> tuple[Any, Any]:
    """(data, formatted errors) of one execution."""
    result = execute(schema._schema, query, executor_class=executor, **plan)
    if hasattr(result, "__await__"):
        result = await result  # type: ignore[misc]
    errors = sorted((e.formatted for e in result.errors or ()), key=lambda e: str(e["path"]))  # type: ignore[union-attr]
    return result.data, errors  # type: ignore[union-attr]


async def both(query: str) -> tuple[Any, Any]:
    """(shortcut result, plain graphql-core result), each as (data, formatted errors).

    The shortcut runs without a shared plan, then twice with one (as the HTTP path runs a
    cached document: the first execution fills the plan, the next ones use it); all agree."""
    executor = executor_for(schema._schema)
    document = parse(query)
    plan = shared_plan(document)
    assert isinstance(plan, SharedPlan)
    runs = [await run(document, executor), await run(document, executor, plan=plan)]
    assert plan.collected and plan.leaves  # filled, and the leaves' fast path is taken next
    runs.append(await run(document, executor, plan=plan))
    assert runs[0] == runs[1] == runs[2]
    return runs[0], await run(parse(query))


async def test_list_results_and_errors_match_graphql_core() -> None:
    shortcut, plain = await both("{ items { history { amount label later } } }")
    assert shortcut == plain
    data, errors = shortcut
    assert data["items"][0] == {"history": [{"amount": 1, "label": "x", "later": 1}]}
    # a null `label` in a `Price!` item nulls the list, which nulls the item (`history` is non-null)
    assert data["items"][3] is None
    assert ["items", 3, "history", 0, "label"] in [e["path"] for e in errors]


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


async def test_a_document_with_directives_is_collected_afresh_each_time() -> None:
    query = "query($full: Boolean!) { items { name count @include(if: $full) } }"
    assert shared_plan(parse(query)) is None  # its collection depends on the variables
    executor = executor_for(schema._schema)
    for full in (True, False):
        shortcut = await run(parse(query), executor, variable_values={"full": full})
        plain = await run(parse(query), variable_values={"full": full})
        assert shortcut == plain
        assert ("count" in shortcut[0]["items"][0]) is full
