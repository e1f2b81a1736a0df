"""The aggregate root: command methods check rules and emit; one apply step per event."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Self


@dataclasses.dataclass(frozen=True)
class DomainEvent:
    """An event's data; its type name (`domain.entity.action.vN`) is its class's TYPE."""

    TYPE: ClassVar[str]

    def to_data(self) -> dict[str, Any]:
        event_type: type = type(self)
        return {name: _plain(getattr(self, name)) for name in _field_names(event_type)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        event_type: type = cls  # the cache key (mypy reads a dataclass's __hash__ as the class's)
        decimals = _decimal_fields(event_type)
        return cls(
            **{
                name: Decimal(str(data[name])) if name in decimals else data[name]
                for name in _field_names(event_type)
                if name in data
            }
        )


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _decimal_fields(cls: type) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    return frozenset(name for name in _field_names(cls) if hints[name] is Decimal)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """JSON-ready data: Decimals as exact strings."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _cannot_apply(aggregate: Any, event: DomainEvent) -> None:
    raise TypeError(f"{type(aggregate).__name__} cannot apply {type(event).__name__}")


class apply_step(functools.singledispatchmethod):
    """An aggregate's `apply = apply_step()`, one step registered per event class (as
    functools.singledispatchmethod; an event with no step is a TypeError), bound cheaply:
    Python 3.11's builds and wraps a new function on every attribute access, about 5 % of
    a command's CPU here."""

    def __init__(self) -> None:
        super().__init__(_cannot_apply)

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        if obj is None:
            return super().__get__(obj, cls)
        return types.MethodType(self._step, obj)

    def _step(self, aggregate: Any, event: DomainEvent) -> None:
        self.dispatcher.dispatch(type(event))(aggregate, event)


def aggregate_id_of(stream_id: str) -> str:
    """Streams are named `<kind>-<aggregate id>` ("order-ord_01J...", "product-SKU-1")."""
    return stream_id.split("-", 1)[1]


@dataclasses.dataclass(frozen=True)
class StreamKind:
    """One kind of stream: called with an aggregate id, gives its stream id `<kind>-<id>`."""

    kind: str

    @property
    def prefix(self) -> str:
        return f"{self.kind}-"

    def __call__(self, aggregate_id: str) -> str:
        return self.prefix + aggregate_id

    def id_of(self, stream_id: str) -> str:
        return stream_id.removeprefix(self.prefix)


E = typing.TypeVar("E", bound=type[DomainEvent])


@typing.dataclass_transform(frozen_default=True)
def domain_event(name: str) -> typing.Callable[[E], E]:
    """Class decorator declaring an event: a frozen dataclass named `name` (its TYPE).
    Registering it for decoding is explicit (its context's Module lists it), not a side
    effect of importing its module."""

    def declared(cls: E) -> E:
        cls.TYPE = name
        dataclasses.dataclass(frozen=True)(cls)
        return cls

    return declared


_CONTAINER_COPIES: dict[type, typing.Callable[[Any], Any]] = {dict: dict.copy, list: list.copy, set: set.copy}


def _copy_container(value: Any) -> Any:
    copier = _CONTAINER_COPIES.get(type(value))
    return value if copier is None else copier(value)


class Aggregate:
    # Bumped whenever the state's shape changes: snapshots of another revision are ignored.
    SNAPSHOT_REVISION: ClassVar[int] = 1

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = 0
        self.created_at: datetime | None = None  # when its first / last event was recorded
        self.updated_at: datetime | None = None
        self._changes: list[DomainEvent] = []

    @property
    def owner(self) -> str | None:
        """Who may read this aggregate's stream besides staff (None: staff only)."""
        return None

    def apply(self, event: DomainEvent) -> None:
        raise NotImplementedError

    def replay(self, event: DomainEvent, version: int, recorded_at: datetime | None = None) -> None:
        """Rebuild state from a stored event: the same apply step commands use."""
        self.apply(event)
        self.version = version
        if recorded_at is not None:
            self.mark_recorded(recorded_at)

    def mark_recorded(self, at: datetime) -> None:
        if self.created_at is None:
            self.created_at = at
        self.updated_at = at

    def _emit(self, event: DomainEvent) -> None:
        self.apply(event)
        self.version += 1
        self._changes.append(event)

    def snapshot(self) -> Self:
        """An independent copy of the current state (pending changes excluded).

        Derived, not written per aggregate: state is immutable values (scalars, Decimals,
        enums, frozen dataclasses) and flat dicts, lists and sets of them, so copying the
        containers one level deep is enough and cheap (the command path copies per command).
        """
        clone = object.__new__(type(self))
        clone.__dict__ = {name: _copy_container(value) for name, value in vars(self).items()}
        clone._changes = []
        return clone

    def take_changes(self) -> list[DomainEvent]:
        changes, self._changes = self._changes, []
        return changes
