"""The schema: feature modules' Query/Mutation/Subscription types merged into one."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.tools import merge_types

from api.errors import ErrorCodes
from api.events import EventQuery
from api.orders import OrderHistoryQuery, OrderMutation
from api.types import Event, Order
from service.settings import Settings

# A feature adds its types here, and nowhere else.
QUERIES: tuple[type, ...] = (EventQuery, OrderHistoryQuery)
MUTATIONS: tuple[type, ...] = (OrderMutation,)
SUBSCRIPTIONS: tuple[type, ...] = ()
NODE_TYPES: list[type] = [Order, Event]


def build_schema(settings: Settings) -> strawberry.Schema:
    extensions = [
        ErrorCodes(),
        MaxTokensLimiter(max_token_count=settings.max_tokens),
        ParserCache(maxsize=1024),
        ValidationCache(maxsize=1024),
        QueryDepthLimiter(max_depth=settings.max_depth),
        MaxAliasesLimiter(max_alias_count=settings.max_aliases),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection())
    return strawberry.Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS),
        subscription=merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None,
        types=NODE_TYPES,
        extensions=extensions,
    )
