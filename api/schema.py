"""The schema: the core's and each module's Query/Mutation/Subscription types merged into one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from graphql import (
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    is_non_null_type,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.tools import merge_types

from api.errors import ErrorCodes
from api.events import EventQuery
from api.limits import QueryGuard
from api.readmodels import ConsistencyReport
from api.strings import refuse_unstorable_strings
from api.subscriptions import LiveSubscription
from api.types import BOUNDED_DATETIME, STRICT_DECIMAL, Event
from compat.strawberry import graphql_schema
from service.module import load_modules
from service.settings import Settings

# What every app has, whatever its modules: the event log. A bounded context adds its types
# in its service.module.Module (listed in Settings.modules), and nowhere else.
CORE_QUERIES: tuple[type, ...] = (EventQuery,)
CORE_SUBSCRIPTIONS: tuple[type, ...] = (LiveSubscription,)
CORE_NODE_TYPES: tuple[type, ...] = (Event,)


@dataclass(frozen=True)
class ApiSchema:
    """strawberry's schema (the SDL, the WebSocket transport) and what the HTTP path
    checks documents with: the guard (limits, cached parse and validation)."""

    strawberry: strawberry.Schema
    guard: QueryGuard

    @property
    def graphql(self) -> GraphQLSchema:
        return graphql_schema(self.strawberry)


class RememberedNames(NameConverter):
    """strawberry converts each argument's Python name to camelCase again on every call
    (~4 % of an `order(id)`); the answer never changes."""

    def __init__(self) -> None:
        super().__init__(auto_camel_case=True)
        self._names: dict[str, str] = {}

    def apply_naming_config(self, name: str) -> str:
        converted = self._names.get(name)
        if converted is None:
            converted = self._names[name] = super().apply_naming_config(name)
        return converted


# Factories, not instances: an extension instance keeps the execution context of the
# request it serves, so one shared instance mixes up concurrent requests' results.
EXTENSIONS: tuple[Callable[[], SchemaExtension], ...] = (ErrorCodes, ConsistencyReport)
# What api.operations does itself for each HTTP request (besides the guard's own
# extension): strawberry's hooks run on WebSocket only, so any other extension would
# silently skip HTTP. Adding one means replicating it there first, then listing it here.
REPLICATED_ON_HTTP: frozenset[Callable[[], SchemaExtension]] = frozenset(EXTENSIONS)


class ExtensionNotOnHTTP(ValueError):
    """A schema extension the HTTP path does not replicate: refused at start-up."""


def refuse_unreplicated(extensions: Iterable[Callable[[], SchemaExtension]]) -> None:
    missing = [getattr(e, "__name__", repr(e)) for e in extensions if e not in REPLICATED_ON_HTTP]
    if missing:
        raise ExtensionNotOnHTTP(
            f"schema extension(s) {', '.join(missing)} would run on WebSocket only: the HTTP"
            " path (api/operations.py) skips strawberry's hooks and replicates only"
            f" {', '.join(sorted(getattr(e, '__name__', repr(e)) for e in REPLICATED_ON_HTTP))} (see api/schema.py)"
        )


def build_schema(
    settings: Settings,
    extensions: Sequence[Callable[[], SchemaExtension]] = EXTENSIONS,
    queries: tuple[type, ...] = (),  # tests add a type of their own
) -> ApiSchema:
    refuse_unreplicated(extensions)
    refuse_unstorable_strings()
    modules = load_modules(settings.modules)
    subscriptions = (*CORE_SUBSCRIPTIONS, *modules.subscriptions)
    schema = strawberry.Schema(
        query=merge_types("Query", (*CORE_QUERIES, *modules.queries, *queries)),
        mutation=merge_types("Mutation", modules.mutations) if modules.mutations else None,
        subscription=merge_types("Subscription", subscriptions),
        types=[*modules.node_types, *CORE_NODE_TYPES],
        extensions=list(extensions),
        config=StrawberryConfig(
            name_converter=RememberedNames(),
            scalar_map={Decimal: STRICT_DECIMAL, datetime: BOUNDED_DATETIME},
        ),
    )
    omit_null_defaults(schema)
    guard = QueryGuard(
        graphql_schema(schema),
        max_tokens=settings.max_tokens,
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        introspection=settings.introspection,
        max_cost=settings.max_cost,
        cache_bytes=settings.document_cache_bytes,
    )
    schema.extensions = (*schema.extensions, guard.extension)
    return ApiSchema(strawberry=schema, guard=guard)


def omit_null_defaults(schema: strawberry.Schema) -> None:
    """`after: String` as the contract prints it, not strawberry's `after: String = null`.

    A nullable argument or input field whose Python default is None gets no published
    default: left out by a client it is simply absent, and the Python default (None)
    applies, so nothing changes but the SDL and introspection.
    """
    for type_ in graphql_schema(schema).type_map.values():
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            slots: list[Any] = [arg for field in type_.fields.values() for arg in field.args.values()]
        elif isinstance(type_, GraphQLInputObjectType):
            slots = list(type_.fields.values())
        else:
            continue
        for slot in slots:
            if slot.default_value is None and not is_non_null_type(slot.type):
                slot.default_value = Undefined
