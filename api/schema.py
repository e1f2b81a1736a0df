"""The schema: feature modules' Query/Mutation/Subscription types merged into one."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.tools import merge_types

from api.errors import CodedParserCache, ErrorCodes
from api.events import EventQuery
from api.inventory import InventoryMutation, InventoryQuery
from api.limits import ComplexityLimiter
from api.orders import OrderHistoryQuery, OrderMutation
from api.readmodels import ConsistencyReport, ReadModelQuery
from api.subscriptions import LiveSubscription
from api.types import Event, Order
from service.settings import Settings

# A feature adds its types here, and nowhere else.
QUERIES: tuple[type, ...] = (EventQuery, OrderHistoryQuery, ReadModelQuery, InventoryQuery)
MUTATIONS: tuple[type, ...] = (OrderMutation, InventoryMutation)
SUBSCRIPTIONS: tuple[type, ...] = (LiveSubscription,)
NODE_TYPES: list[type] = [Order, Event]


def build_schema(settings: Settings) -> strawberry.Schema:
    # Factories, not instances: an extension instance keeps the execution context of the
    # request it serves, so one shared instance mixes up concurrent requests' results.
    extensions: list[Callable[[], SchemaExtension]] = [
        ErrorCodes,
        ConsistencyReport,
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: CodedParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        lambda: ComplexityLimiter(max_depth=settings.max_depth, max_aliases=settings.max_aliases),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS),
        subscription=merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None,
        types=NODE_TYPES,
        extensions=extensions,
    )
