"""Fast construction of flat input types (scalar fields only).

strawberry converts an input object field by field through its generic type machinery
(resolving each field's type and camel-casing its name on every request): ~14 % of an
addItem request's CPU. graphql-core has already coerced every scalar (Decimal, ID, Int
...), so a flat input only needs its GraphQL names mapped to Python names. `flat_input`
installs that mapping through strawberry's `from_input` hook.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from strawberry.schema.name_converter import NameConverter
from strawberry.types.base import StrawberryOptional

T = TypeVar("T", bound=type)

_SCALARS: tuple[Any, ...] = (str, int, float, bool, Decimal, datetime)


def _is_scalar(type_: Any) -> bool:
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    while hasattr(type_, "__supertype__"):  # NewType, e.g. strawberry.ID
        type_ = type_.__supertype__
    return type_ in _SCALARS


def flat_input(cls: T) -> T:
    """Build `cls` straight from its coerced input value; only for scalar-only inputs."""
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    names = NameConverter()
    fields: list[tuple[str, str]] = []
    implicit_none: dict[str, None] = {}
    for field in definition.fields:
        if not _is_scalar(field.resolve_type(type_definition=definition)):
            raise TypeError(f"{cls.__name__}.{field.python_name} is not a scalar: flat_input does not apply")
        fields.append((names.from_field(field), field.python_name))
        if field.default_value is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            implicit_none[field.python_name] = None  # as strawberry does for nullable fields

    def from_input(type_: type, value: Mapping[str, Any], _context: Any) -> Any:
        kwargs: dict[str, Any] = dict(implicit_none)
        for graphql_name, python_name in fields:
            if graphql_name in value:
                kwargs[python_name] = value[graphql_name]
        return type_(**kwargs)

    definition.from_input = from_input
    return cls
