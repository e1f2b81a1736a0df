"""What a projection is: the events it consumes, the tables it keeps, one batch apply.

A projection is a small self-contained class. The runner hands it batches of
upcast events, in global order, inside the transaction that also moves its
checkpoint; the projection writes its tables on that connection and nothing
else. Applying an event the tables already reflect must change nothing (the
order projection compares stream versions), so a retried batch is harmless.

Adding one: subclass `Projection`, name its event types and tables, write
`apply`, create the tables in a migration, and list the class in
its context's `service.module.Module`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import asyncpg

SHADOW_SUFFIX = "__rebuild"  # a rebuild fills `<table>__rebuild` beside the live tables


@dataclass(frozen=True, slots=True)
class LogEvent:
    """The part of a recorded event projections need (no metadata, no event id)."""

    position: int
    stream_id: str
    version: int
    type: str  # the latest version of the type: the data is upcast
    data: Mapping[str, Any]
    recorded_at: datetime


class Projection(ABC):
    name: ClassVar[str]  # also its checkpoint's name
    event_types: ClassVar[tuple[str, ...]]  # latest type names; older stored versions come upcast
    tables: ClassVar[tuple[str, ...]]  # its read tables, created by a migration

    def __init__(self, *, shadow: bool = False) -> None:
        self.shadow = shadow

    @property
    def checkpoint(self) -> str:
        return self.name + SHADOW_SUFFIX if self.shadow else self.name

    def table(self, base: str) -> str:
        """The table to write: the live one, or its shadow during a rebuild."""
        assert base in self.tables, base
        return base + SHADOW_SUFFIX if self.shadow else base

    @abstractmethod
    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        """Write the effect of `events` (in position order) to the tables, idempotently."""

    def committed(self) -> None:
        """The transaction of the batches applied since the last `committed` or `forget`
        has committed: a projection that remembers rows between batches may keep what it
        wrote (the default remembers nothing)."""
        return None

    def forget(self) -> None:
        """Drop whatever is remembered between batches: a batch rolled back, or the tables
        may have changed since (the lease moved, a rebuild swapped them)."""
        return None
