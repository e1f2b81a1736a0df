"""The one registration seam: a bounded context as the app composes it.

A `Module` lists what a context brings: its event classes, command handlers,
projections (with, for a context added without a migration, the tables they
write), saga reactions, and its strawberry Query/Mutation/Subscription types.
The app's modules are named once, in `Settings.modules` ("package.module:NAME"),
and everything that needs them (the schema, the container, the projection
runner, the saga worker, the CLI) reads them from there: a new context is one
entry, not an edit in each.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from domain.aggregate import DomainEvent
from domain.events import EventTypes
from readmodels.projection import Projection
from service.handlers import Handler, handler_table

if TYPE_CHECKING:
    import asyncpg

    from service.saga.reactions import Reactions


@dataclass(frozen=True)
class Module:
    name: str
    events: tuple[type[DomainEvent], ...] = ()
    handlers: tuple[Handler, ...] = ()
    projections: tuple[type[Projection], ...] = ()
    # Read tables created at start-up when missing: for a context added without an Alembic
    # migration (the built-in contexts' tables come from alembic/versions).
    tables: tuple[sa.Table, ...] = ()
    reactions: tuple[type[Reactions], ...] = ()
    queries: tuple[type, ...] = ()  # strawberry types, merged into Query / Mutation / Subscription
    mutations: tuple[type, ...] = ()
    subscriptions: tuple[type, ...] = ()
    node_types: tuple[type, ...] = ()  # types implementing Node that no field names


class Modules:
    """The app's modules together, in their order (the schema lists fields in it)."""

    def __init__(self, modules: Iterable[Module]) -> None:
        self.modules = tuple(modules)
        self.event_types = EventTypes(*(m.events for m in self.modules))
        self.handlers = handler_table(self._all("handlers"))
        self.projections: tuple[type[Projection], ...] = self._all("projections")
        self.tables: tuple[sa.Table, ...] = self._all("tables")
        self.reactions: tuple[type[Reactions], ...] = self._all("reactions")
        self.queries: tuple[type, ...] = self._all("queries")
        self.mutations: tuple[type, ...] = self._all("mutations")
        self.subscriptions: tuple[type, ...] = self._all("subscriptions")
        self.node_types: tuple[type, ...] = self._all("node_types")

    def _all(self, part: str) -> tuple[Any, ...]:
        return tuple(chain.from_iterable(getattr(m, part) for m in self.modules))

    def projection(self, name: str) -> type[Projection]:
        for cls in self.projections:
            if cls.name == name:
                return cls
        known = ", ".join(cls.name for cls in self.projections)
        raise LookupError(f"no projection named {name!r} (known: {known})")

    async def create_tables(self, conn: asyncpg.Connection) -> None:
        """The modules' own read tables, where missing (no migration for them)."""
        for table in self.tables:
            await conn.execute(str(CreateTable(table, if_not_exists=True).compile(dialect=postgresql.dialect())))


@functools.cache
def load_modules(paths: tuple[str, ...]) -> Modules:
    """The modules named "package.module:NAME", imported once per process."""
    modules = []
    for path in paths:
        module_name, _, attribute = path.partition(":")
        module = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(module, Module):
            raise TypeError(f"{path} is not a service.module.Module")
        modules.append(module)
    return Modules(modules)
