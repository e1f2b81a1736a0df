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


def test_contract_scalars_and_defaults() -> None:
    sdl = schema_sdl()
    for line in (
        "scalar DateTime",
        "scalar Decimal",
        "scalar JSON",
        "interface Node {",
        'discount: Decimal = "0"',
        'currency: String = "USD"',
        "stream(streamId: String!, fromVersion: Int = 1, first: Int = 100): [Event!]!",
        "createOrder(input: CreateOrderInput!): OrderPayload!",
        "orderAt(id: ID!, version: Int = null, at: DateTime = null): Order",
    ):
        assert line in sdl, line
