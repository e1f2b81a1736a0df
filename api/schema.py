"""The schema: feature modules' Query/Mutation/Subscription types merged into one."""

from __future__ import annotations

from collections.abc import Callable
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
from api.inventory import InventoryMutation, InventoryQuery
from api.limits import QueryGuard
from api.orders import OrderHistoryQuery, OrderMutation
from api.readmodels import ConsistencyReport, ReadModelQuery
from api.strings import refuse_unstorable_strings
from api.subscriptions import LiveSubscription
from api.types import BOUNDED_DATETIME, STRICT_DECIMAL, Event, Order
from service.settings import Settings

# A feature adds its types here, and nowhere else.
QUERIES: tuple[type, ...] = (EventQuery, OrderHistoryQuery, ReadModelQuery, InventoryQuery)
MUTATIONS: tuple[type, ...] = (OrderMutation, InventoryMutation)
SUBSCRIPTIONS: tuple[type, ...] = (LiveSubscription,)
NODE_TYPES: list[type] = [Order, Event]


@dataclass(frozen=True)
class ApiSchema:
    """strawberry's schema (the SDL, the WebSocket transport) and what the HTTP path
    checks documents with: the guard (limits, cached parse and validation)."""

    strawberry: strawberry.Schema
    guard: QueryGuard

    @property
    def graphql(self) -> GraphQLSchema:
        return self.strawberry._schema


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


def build_schema(settings: Settings) -> ApiSchema:
    # Factories, not instances: an extension instance keeps the execution context of the
    # request it serves, so one shared instance mixes up concurrent requests' results.
    extensions: list[Callable[[], SchemaExtension]] = [ErrorCodes, ConsistencyReport]
    refuse_unstorable_strings()
    schema = strawberry.Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS),
        subscription=merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None,
        types=NODE_TYPES,
        extensions=extensions,
        config=StrawberryConfig(
            name_converter=RememberedNames(),
            scalar_map={Decimal: STRICT_DECIMAL, datetime: BOUNDED_DATETIME},
        ),
    )
    omit_null_defaults(schema)
    guard = QueryGuard(
        schema._schema,
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
    for type_ in schema._schema.type_map.values():
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            slots: list[Any] = [arg for field in type_.fields.values() for arg in field.args.values()]
        elif isinstance(type_, GraphQLInputObjectType):
            slots = list(type_.fields.values())
        else:
            continue
        for slot in slots:
            if slot.default_value is None and not is_non_null_type(slot.type):
                slot.default_value = Undefined
