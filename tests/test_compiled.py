"""A compiled operation gives graphql-core's own results and errors, and what it cannot
plan (directives, abstract types, introspection) is left to graphql-core."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import strawberry
from graphql import execute, parse

from api.compiled import compile_operation, execute_compiled
from api.operations import is_awaitable
from compat.strawberry import graphql_schema


@strawberry.interface
class Named:
    name: str


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
class Item(Named):  # implements an interface: graphql-core checks `is_type_of` on each
    name: str
    count: int
    note: str | None
    price: Price
    spare: Price | None
    bundle: list[Price | None] = strawberry.field(default_factory=list)  # lists read as attributes
    kit: list[Price] = strawberry.field(default_factory=list)

    @strawberry.field
    def shout(self) -> str | None:
        return self.name.upper() if self.name else None

    @strawberry.field
    def history(self) -> list[Price]:  # non-null items: a null inside nulls the list's item
        return [self.price, *([self.spare] if self.spare else [])]

    @strawberry.field
    def awaited_prices(self) -> list[Price | None]:  # items that are awaitables
        async def later(price: Price | None) -> Price | None:
            await asyncio.sleep(0)
            return price

        return [later(self.price), later(self.spare)]  # type: ignore[list-item]


@strawberry.enum
class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


@strawberry.type
class Box:  # fields read as attributes only: completed by straight-line code (api.straight)
    label: str | None
    price: Price
    prices: list[Price]
    maybe: list[Price | None] | None
    item: Item | None  # implements an interface: strawberry's `is_type_of`
    inner: list[Box] = strawberry.field(default_factory=list)
    size: Size | None = None


class CheapPrice(Price):  # a subclass: `is_type_of` has nothing to check, the straight code's class test fails
    pass


def boxes() -> list[Box | None]:
    def price(amount: int, label: str | None = "p") -> Price:
        return Price(amount=amount, label=label)  # type: ignore[arg-type]

    def one_shot() -> Iterator[Price]:  # read once: the straight code must not consume it
        yield price(5)
        yield price(6)

    return [
        Box(label="ordinary", price=price(1), prices=[price(1), price(2)], maybe=(price(3), None), item=items()[0],
            inner=[Box(label="inside", price=price(1), prices=[], maybe=None, item=None)], size=Size.LARGE),
        Box(label=None, price=price(1), prices=[], maybe=None, item=None),  # empty and null
        Box(label="one shot", price=price(1), prices=one_shot(), maybe=None, item=None),  # type: ignore[arg-type]
        Box(label="subclass", price=CheapPrice(amount=7, label="c"), prices=[CheapPrice(amount=8, label="c")], maybe=None, item=None),
        Box(label="null inside", price=price(1), prices=[price(1), None], maybe=[price(2, None)], item=None),  # type: ignore[list-item]
        Box(label="cast", price=price(1), prices=[], maybe=None, item=strawberry.cast(Price, price(9))),  # type: ignore[arg-type]
        Box(label="not an item", price=price(1), prices=[], maybe=None, item=price(1)),  # type: ignore[arg-type]
        Box(label="text", price=price(1), prices="ab", maybe=None, item=None, size="large"),  # type: ignore[arg-type]  # a value, not a member
        Box(label="raw size", price=price(1), prices=[], maybe=None, item=None, size="small"),  # type: ignore[arg-type]
        Box(label="error", price=price(1), prices=[], maybe=[ValueError("inside")], item=None),  # type: ignore[list-item]
        Box(label=7, price=price(2**40), prices=[], maybe=None, item=None),  # type: ignore[arg-type]  # coerced label; an Int too large
    ]


def items() -> list[Item | None]:
    return [
        Item(name="a", count=1, note=None, price=Price(amount=1, label="x"), spare=None,
             bundle=[Price(amount=1, label="x"), None], kit=[Price(amount=1, label="x")]),
        Item(name=None, count=2, note="n", price=Price(amount=2, label="y"), spare=None),  # type: ignore[arg-type]  # breaks `name: String!`
        Item(name="c", count=2**40, note="n", price=Price(amount=3, label="z"), spare=None),  # too large for a GraphQL Int
        Item(name="d", count=4, note=None, price=Price(amount=-1, label=None), spare=Price(amount=5, label=None),  # type: ignore[arg-type]  # a null in `label: String!`, an error in `later`
             bundle=[Price(amount=5, label=None), Price(amount=6, label="w")], kit=[Price(amount=7, label=None)]),  # type: ignore[arg-type]
    ]


@strawberry.type
class Query:
    @strawberry.field
    def items(self, first: int = 10, prefix: str | None = None) -> list[Item | None]:
        return [i for i in items()[:first] if prefix is None or (i and i.name or "").startswith(prefix)]

    @strawberry.field
    async def item(self, index: int) -> Item:
        await asyncio.sleep(0)
        return items()[index]  # type: ignore[return-value]

    @strawberry.field
    def not_an_item(self) -> Item | None:
        return Price(amount=1, label="x")  # type: ignore[return-value]  # fails `is_type_of`

    @strawberry.field
    def named(self) -> Named:
        return items()[0]  # type: ignore[return-value]

    @strawberry.field
    def boxes(self, index: int | None = None) -> list[Box | None]:
        return boxes() if index is None else boxes()[index : index + 1]

    @strawberry.field
    def broken(self) -> int:
        raise RuntimeError("no")


TRAIL: list[str] = []


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def record(self, word: str) -> str:
        await asyncio.sleep(0.01 if word == "first" else 0)  # the later one is quicker
        TRAIL.append(word)
        return word


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncIterator[int]:
        yield 1


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription, types=[Item])


def formatted(result: Any) -> tuple[Any, Any]:
    errors = sorted((e.formatted for e in result.errors or ()), key=lambda e: str(e.get("path")))
    return result.data, errors


async def run_compiled(query: str, variables: dict[str, Any] | None = None) -> tuple[Any, Any]:
    document = parse(query)
    compiled = compile_operation(graphql_schema(schema), document, document.definitions[0])  # type: ignore[arg-type]
    assert compiled is not None, "expected the document to compile"
    result = execute_compiled(compiled, None, variables, is_awaitable)
    return formatted(await result if is_awaitable(result) else result)


async def run_core(query: str, variables: dict[str, Any] | None = None) -> tuple[Any, Any]:
    result = execute(graphql_schema(schema), parse(query), variable_values=variables)
    return formatted(await result if is_awaitable(result) else result)  # type: ignore[arg-type]


async def both(query: str, variables: dict[str, Any] | None = None) -> tuple[Any, Any]:
    compiled = await run_compiled(query, variables)
    assert compiled == await run_core(query, variables)
    return compiled


async def test_leaves_nulls_and_coercion_errors_as_graphql_core() -> None:
    data, errors = await both("{ items { name count note shout } }")
    # the null in a non-null field nulls its item; the huge Int is an error on its field
    assert data["items"][0] == {"name": "a", "count": 1, "note": None, "shout": "A"}
    assert data["items"][1:3] == [None, None]
    assert [e["path"] for e in errors] == [["items", 1, "name"], ["items", 2, "count"]]
    assert errors[0]["message"] == "Cannot return null for non-nullable field Item.name."
    assert errors[0]["locations"] == [{"line": 1, "column": 11}]


async def test_objects_lists_and_async_errors_as_graphql_core() -> None:
    data, errors = await both("{ items { price { amount label later } spare { label } history { label } } }")
    assert data["items"][0] == {"price": {"amount": 1, "label": "x", "later": 1}, "spare": None, "history": [{"label": "x"}]}
    # `price: Price!` inside a nullable item: its errors null the whole item
    assert data["items"][3] is None
    assert ["items", 3, "price", "label"] in [e["path"] for e in errors]


async def test_lists_of_objects_read_as_attributes_as_graphql_core() -> None:
    """The list page's shape: nodes and lines are plain objects in plain lists."""
    data, errors = await both("{ items { name bundle { amount label later } } }")
    assert data["items"][0]["bundle"] == [{"amount": 1, "label": "x", "later": 1}, None]
    assert data["items"][3]["bundle"] == [None, {"amount": 6, "label": "w", "later": 6}]  # a null label nulls its item
    assert ["items", 3, "bundle", 0, "label"] in [e["path"] for e in errors]
    data, errors = await both("{ items { name kit { amount label } } }")
    assert data["items"][0]["kit"] == [{"amount": 1, "label": "x"}]
    assert data["items"][3] is None  # `kit: [Price!]!`: the null goes up to the nullable item
    assert ["items", 3, "kit", 0, "label"] in [e["path"] for e in errors]


async def test_awaitable_list_items_as_graphql_core() -> None:
    data, _ = await both("{ items(first: 1) { awaitedPrices { amount later } } }")
    assert data["items"][0]["awaitedPrices"] == [{"amount": 1, "later": 1}, None]


async def test_arguments_variables_aliases_fragments_and_typename() -> None:
    query = """
        query($first: Int = 2, $prefix: String) {
          some: items(first: $first, prefix: $prefix) { __typename ...Names ... on Item { n: count } }
          one: item(index: 0) { ... on Named { name } price { ...PriceParts } }
        }
        fragment Names on Item { name shout }
        fragment PriceParts on Price { amount amount: amount }
    """
    data, errors = await both(query)
    assert data["some"][0] == {"__typename": "Item", "name": "a", "shout": "A", "n": 1}
    assert data["one"] == {"name": "a", "price": {"amount": 1}}
    data, _ = await both(query, {"first": 4, "prefix": "d"})  # both given: coerced by the compiled signatures
    assert [i["name"] for i in data["some"]] == ["d"]
    data, _ = await both(query, {"first": 1, "prefix": None})  # an explicit null
    assert [i["name"] for i in data["some"]] == ["a"]


async def test_an_error_in_a_non_null_root_field_nulls_the_data() -> None:
    data, errors = await both("{ items(first: 1) { name } broken }")
    assert data is None
    assert [(e["message"], e["path"]) for e in errors] == [("no", ["broken"])]
    data, errors = await both("{ item(index: 1) { name } }")  # a non-null chain up to the root
    assert data is None and errors[0]["path"] == ["item", "name"]


async def test_a_value_of_the_wrong_type_fails_is_type_of() -> None:
    data, errors = await both("{ notAnItem { name } }")
    assert data == {"notAnItem": None}
    assert errors[0]["message"].startswith("Expected value of type 'Item' but got:")


async def test_variables_that_fail_coercion_are_errors_without_data() -> None:
    data, errors = await both("query($first: Int!) { items(first: $first) { name } }", {"first": "x"})
    assert data is None
    assert "$first" in errors[0]["message"]


async def test_mutation_fields_run_one_after_another() -> None:
    TRAIL.clear()
    data, _ = await run_compiled('mutation { a: record(word: "first") b: record(word: "second") }')
    assert data == {"a": "first", "b": "second"}
    assert TRAIL == ["first", "second"]  # the first finished before the second started


@pytest.mark.parametrize(
    "query",
    [
        "query($all: Boolean!) { items { name count @include(if: $all) } }",  # depends on variables
        "{ named { name } }",  # an interface: the runtime type is resolved per value
        "{ __schema { queryType { name } } }",  # introspection
        "subscription { ticks }",  # a source stream of results
    ],
)
def test_what_only_graphql_core_can_run_is_not_compiled(query: str) -> None:
    document = parse(query)
    assert compile_operation(graphql_schema(schema), document, document.definitions[0]) is None  # type: ignore[arg-type]


BOX_QUERY = """{ boxes%s { __typename label size price { amount label } prices { amount label } all: prices { amount }
    maybe { amount label } item { name count note __typename } ...Parts } }
    fragment Parts on Box { label again: label price { n: amount } }"""


def straight_selection(query: str) -> Any:
    document = parse(query)
    compiled = compile_operation(graphql_schema(schema), document, document.definitions[0])  # type: ignore[arg-type]
    assert compiled is not None
    return compiled.root.fields[0].completion.item.selection  # type: ignore[union-attr]


def test_selections_of_attributes_only_are_written_as_straight_code() -> None:
    straight = straight_selection("{ boxes { label price { amount } maybe { label } } }").straight
    assert straight is not None
    ordinary, empty, _, subclass, null_inside = boxes()[:5]
    assert straight(ordinary) == {"label": "ordinary", "price": {"amount": 1}, "maybe": [{"label": "p"}, None]}
    assert straight(empty) == {"label": None, "price": {"amount": 1}, "maybe": None}
    for unusual in (subclass, null_inside):  # left to the walk
        with pytest.raises(Exception):  # noqa: B017, PT011 - whichever the code meets first
            straight(unusual)
    assert straight_selection(BOX_QUERY % "").straight is not None
    assert straight_selection("{ boxes { price { later } } }").straight is None  # a resolver inside
    assert straight_selection("{ items { name shout } }").straight is None


@pytest.mark.parametrize("index", range(len(boxes())), ids=[str(b and b.label) for b in boxes()])
async def test_straight_code_gives_graphql_cores_results_and_errors(index: int) -> None:
    """Each box alone, then all together: what the straight code does not complete
    (nulls in non-null places, other classes, casts, one-shot iterables, text for a list,
    errors as values, failed coercions) falls back to the walk, with its errors."""
    data, errors = await both(BOX_QUERY % f"(index: {index})")
    assert len(data["boxes"]) == 1


async def test_straight_code_on_a_whole_list() -> None:
    data, errors = await both(BOX_QUERY % "")
    assert data["boxes"][0] == {
        "__typename": "Box", "label": "ordinary", "size": "LARGE", "again": "ordinary",
        "price": {"amount": 1, "label": "p", "n": 1},
        "prices": [{"amount": 1, "label": "p"}, {"amount": 2, "label": "p"}], "all": [{"amount": 1}, {"amount": 2}],
        "maybe": [{"amount": 3, "label": "p"}, None],
        "item": {"name": "a", "count": 1, "note": None, "__typename": "Item"},
    }
    assert data["boxes"][1] == {
        "__typename": "Box", "label": None, "size": None, "again": None, "price": {"amount": 1, "label": "p", "n": 1},
        "prices": [], "all": [], "maybe": None, "item": None,
    }
    assert data["boxes"][2]["prices"] == [{"amount": 5, "label": "p"}, {"amount": 6, "label": "p"}]
    assert data["boxes"][3]["prices"] == [{"amount": 8, "label": "c"}]
    assert data["boxes"][4] is None  # `prices: [Price!]!` with a null
    assert data["boxes"][8]["size"] == "SMALL"  # by its value, the general way
    assert data["boxes"][10] is None  # `price: Price!` with an Int too large
    assert errors


async def test_selections_nested_deeper_than_python_compiles_are_walked() -> None:
    query = "{ boxes(index: 0) { " + "inner { label " * 30 + "}" * 30 + " } }"
    assert straight_selection(query).straight is None  # more nested loops than Python allows
    data, _ = await both(query)
    assert data == {"boxes": [{"inner": [{"label": "inside", "inner": []}]}]}
    assert straight_selection("{ boxes { " + "inner { label " * 5 + "}" * 5 + " } }").straight is not None
