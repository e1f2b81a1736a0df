"""The HTTP path runs what strawberry's own execution (the WebSocket transport) runs: a
field's permission classes and field extensions, even on a field without a resolver; and a
schema extension the HTTP path does not replicate is refused when the schema is built."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.permission import BasePermission

from api.context import Context
from api.operations import GraphQLRequest, Operations
from api.schema import EXTENSIONS, ApiSchema, ExtensionNotOnHTTP, build_schema
from service.settings import Settings


class Deny(BasePermission):
    message = "not for you"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


class Shout(FieldExtension):
    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        return next_(source, info, **kwargs).upper()


@strawberry.type
class Secret:
    name: str = "open"
    hidden: str | None = strawberry.field(default="leaked", permission_classes=[Deny])
    loud: str = strawberry.field(default="quiet", extensions=[Shout()])


@strawberry.type
class GuardedQuery:
    @strawberry.field
    def secret(self) -> Secret:
        return Secret()


@pytest.fixture
def schema(settings: Settings) -> ApiSchema:
    return build_schema(settings, queries=(GuardedQuery,))


def context() -> Context:
    return Context(services=None, correlation_id="cid-1", authenticated=None)  # type: ignore[arg-type]


async def both_ways(schema: ApiSchema, query: str) -> tuple[dict[str, Any], dict[str, Any]]:
    operations = Operations(schema)
    document = operations.document(query)
    assert not isinstance(document, Exception)
    over_http = (await operations.run(GraphQLRequest(query), document, context())).body
    result = await schema.strawberry.execute(query, context_value=context())
    over_websocket: dict[str, Any] = {"data": result.data}
    if result.errors:
        over_websocket["errors"] = [e.formatted for e in result.errors]
    return over_http, over_websocket


async def test_a_denied_field_without_resolver_is_refused_over_http_as_over_websocket(
    schema: ApiSchema,
) -> None:
    over_http, over_websocket = await both_ways(schema, "{ secret { name hidden } }")
    assert over_http == over_websocket
    assert over_http["data"] == {"secret": {"name": "open", "hidden": None}}
    assert [e["message"] for e in over_http["errors"]] == ["not for you"]
    assert over_http["errors"][0]["path"] == ["secret", "hidden"]


async def test_field_extensions_run_over_http_as_over_websocket(schema: ApiSchema) -> None:
    over_http, over_websocket = await both_ways(schema, "{ secret { loud } }")
    assert over_http == over_websocket == {"data": {"secret": {"loud": "QUIET"}}}


class Tracing(SchemaExtension):
    pass


def test_a_schema_extension_the_http_path_does_not_replicate_is_refused(settings: Settings) -> None:
    with pytest.raises(ExtensionNotOnHTTP, match="Tracing would run on WebSocket only"):
        build_schema(settings, extensions=(*EXTENSIONS, Tracing))
