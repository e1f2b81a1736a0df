"""An aggregate's state as JSON-ready data, and back: what a snapshot stores.

Values are tagged so they come back as the types they were: Decimal, datetime, the
domain's enums and frozen dataclasses, dicts and lists, and JSON's scalars. An aggregate
class declares `SNAPSHOT_REVISION` and bumps it whenever its state changes shape; a
snapshot of another revision is never restored (the full fold is used, and a new
snapshot replaces it in time), so snapshots never need a migration.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from domain.aggregate import Aggregate

A = TypeVar("A", bound=Aggregate)

_NOT_STATE = frozenset({"_changes"})  # pending changes are never part of a snapshot


class UnusableSnapshot(ValueError):
    """Stored state that does not decode (a class renamed without a revision bump)."""


def capture(aggregate: Aggregate) -> dict[str, Any]:
    return {name: _encode(value) for name, value in vars(aggregate).items() if name not in _NOT_STATE}


def restore(aggregate: A, state: Mapping[str, Any]) -> A:
    """`aggregate` (a new, empty one) with the captured state."""
    try:
        decoded = {name: _decode(value) for name, value in state.items()}
    except (KeyError, TypeError, ValueError, AttributeError, ImportError) as error:
        raise UnusableSnapshot(f"{type(aggregate).__name__}: {error!r}") from error
    vars(aggregate).update(decoded)
    return aggregate


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str) and not isinstance(value, Enum):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, Enum):
        return {"$enum": _name(type(value)), "value": _encode(value.value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$data": _name(type(value)), "fields": fields}
    if isinstance(value, Mapping):
        return {"$dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return {"$list" if isinstance(value, list) else "$tuple": [_encode(v) for v in value]}
    raise TypeError(f"{type(value).__name__} cannot be kept in a snapshot")


def _decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "$decimal" in value:
        return Decimal(value["$decimal"])
    if "$datetime" in value:
        return datetime.fromisoformat(value["$datetime"])
    if "$enum" in value:
        return _class(value["$enum"])(_decode(value["value"]))
    if "$data" in value:
        return _class(value["$data"])(**{k: _decode(v) for k, v in value["fields"].items()})
    if "$dict" in value:
        return {_decode(k): _decode(v) for k, v in value["$dict"]}
    if "$list" in value:
        return [_decode(v) for v in value["$list"]]
    if "$tuple" in value:
        return tuple(_decode(v) for v in value["$tuple"])
    raise ValueError(f"not a snapshot value: {sorted(value)}")


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: str) -> Any:
    module, _, qualname = name.partition(":")
    if module != "domain" and not module.startswith("domain."):  # only the domain's own types
        raise ValueError(f"{name} is not a domain type")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found
