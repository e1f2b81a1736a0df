"""The committed `schema.graphql` is the schema: a change to the API shows in review.

Refresh after an intended change with `python -m api.print_schema > schema.graphql`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from api.print_schema import schema_sdl

SNAPSHOT = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_printed_schema_matches_the_committed_snapshot() -> None:
    committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    printed = schema_sdl()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            printed.splitlines(keepends=True),
            "schema.graphql (committed)",
            "schema (printed now)",
        )
    )
    assert not diff, (
        "the GraphQL schema changed; if intended, refresh the snapshot with\n"
        "    python -m api.print_schema > schema.graphql\n" + diff
    )


def test_contract_lines_print_as_in_the_contract() -> None:
    """Names, nullability and defaults of contract section 4, for what exists so far."""
    sdl = schema_sdl()
    lines = set(sdl.splitlines())
    for line in (
        "scalar DateTime",
        "scalar Decimal",
        "scalar JSON",
        "interface Node {",
        "type Order implements Node {",
        "type Event implements Node {",
        "  cancellationReason: String",
        "  causationId: String",
        "input CreateOrderInput {",
        "  orderId: ID",
        '  currency: String = "USD"',
        '  discount: Decimal = "0"',
        "  expectedVersion: Int",
        "  idempotencyKey: String",
        "  node(id: ID!): Node",
        "  headPosition: String!",
        "  orderAt(id: ID!, version: Int, at: DateTime): Order",
        "  stream(streamId: String!, fromVersion: Int = 1, first: Int = 100): [Event!]!",
        "  events(after: String, first: Int = 100, types: [String!]): EventConnection!",
        "  trace(correlationId: String!): [Event!]!",
        "  createOrder(input: CreateOrderInput!): OrderPayload!",
        "  addItem(input: AddItemInput!): OrderPayload!",
        "  removeItem(input: RemoveItemInput!): OrderPayload!",
        "  submitOrder(input: SubmitOrderInput!): OrderPayload!",
        "  cancelOrder(input: CancelOrderInput!): OrderPayload!",
    ):
        # directives may follow (JSON has @specifiedBy)
        assert line in lines or any(have.startswith(f"{line} @") for have in lines), line
    assert "= null" not in sdl  # no published null defaults: the contract has none
