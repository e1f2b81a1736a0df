"""The schema: feature modules' Query/Mutation/Subscription types merged into one."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from strawberry.extensions import DisableIntrospection, SchemaExtension
from strawberry.tools import merge_types

from api.errors import ErrorCodes
from api.events import EventQuery
from api.inventory import InventoryMutation, InventoryQuery
from api.limits import QueryGuard
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
    guard = QueryGuard(settings.max_tokens, settings.max_depth, settings.max_aliases)
    extensions: list[Callable[[], SchemaExtension]] = [
        ErrorCodes,
        ConsistencyReport,
        guard.extension,  # token/depth/alias limits, parse and validation caches
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
