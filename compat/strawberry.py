"""strawberry internals (pinned in pyproject.toml; tests/test_compat.py checks each)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLSchema
from strawberry.schema.schema import _OperationContextAwareGraphQLResolveInfo

# The order of the resolve info's fields as strawberry's executor builds it (positional:
# a keyword call costs ~1 µs more per resolved field).
RESOLVE_INFO_FIELDS = (
    "field_name", "field_nodes", "return_type", "parent_type", "path", "schema", "fragments",
    "root_value", "operation", "variable_values", "context", "is_awaitable", "abort_signal",
    "async_helpers", "operation_extensions",
)
resolve_info: Any = _OperationContextAwareGraphQLResolveInfo  # takes RESOLVE_INFO_FIELDS in order


def graphql_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema strawberry built (it has no public accessor)."""
    return schema._schema


def is_plain_attribute(resolve: Any) -> bool:
    """strawberry marks the resolver of a field without its own resolver `_is_default`
    (it may still carry field extensions, which the caller checks)."""
    return bool(getattr(resolve, "_is_default", False))


def is_interface_member_check(is_type_of: Any) -> bool:
    """strawberry's own `is_type_of` for a type implementing interfaces: an isinstance
    check of the value (or of the type it was cast to), which ignores the resolve info."""
    return getattr(is_type_of, "__qualname__", "").endswith("._get_is_type_of.<locals>.is_type_of")


def enum_class(type_: Any) -> type[Enum] | None:
    """The Python enum whose members strawberry's enum type takes as output values."""
    wrapped = getattr(type_, "wrapped_cls", None)
    return wrapped if isinstance(wrapped, type) and issubclass(wrapped, Enum) else None
