"""graphql-core's executor, with a shortcut for plain leaf fields.

Most fields of a response (an order's `status`, a line's `sku`, a money's `amount`) are
attributes read off the object the parent resolver returned. graphql-core gives each one
the full treatment: a resolve-info object, strawberry's resolver wrapper, an awaitable
check and the generic completion, about 20 µs a field here, so a 20-order page with lines
spends most of its time on ~500 such fields. For a field strawberry itself marks basic (no
resolver, no arguments, no extensions) whose type is a scalar or enum, the shortcut reads
the attribute and coerces it directly. Anything unusual (a null, a coercion that fails, an
exception) goes the ordinary way, so errors and null propagation are graphql-core's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    get_nullable_type,
    is_leaf_type,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

# field name -> (attribute name, output coercion)
PlainLeaves = dict[str, tuple[str, Callable[[Any], Any]]]


def plain_leaves(schema: GraphQLSchema) -> dict[GraphQLObjectType, PlainLeaves]:
    """Per object type, its fields that are an attribute read plus a leaf coercion."""
    found: dict[GraphQLObjectType, PlainLeaves] = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        leaves: PlainLeaves = {}
        for name, field in type_.fields.items():
            definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            output = get_nullable_type(field.type)  # type: ignore[arg-type]
            if (
                definition is not None
                and getattr(field.resolve, "_is_default", False)  # strawberry's basic field
                and not field.args
                and is_leaf_type(output)
            ):
                leaves[name] = (definition.python_name, output.coerce_output_value)  # type: ignore[union-attr]
        if leaves:
            found[type_] = leaves
    return found


class LeafShortcutExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Set `plain_leaves` on a subclass per schema (see `executor_for`)."""

    plain_leaves: dict[GraphQLObjectType, PlainLeaves] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        middleware = self.middleware_manager
        if middleware is not None and middleware.middlewares:
            # a resolve hook must see every field: no shortcut
            self._leaves: dict[GraphQLObjectType, PlainLeaves] = {}
        else:
            self._leaves = self.plain_leaves

    def execute_field(  # type: ignore[override]
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        leaves = self._leaves.get(parent_type)
        if leaves is not None:
            plain = leaves.get(field_details_list[0].node.name.value)
            if plain is not None:
                attribute, coerce = plain
                try:
                    value = getattr(source, attribute)
                    coerced = None if value is None else coerce(value)
                except Exception:  # the ordinary path raises it again, as a field error
                    coerced = None
                if coerced is not None and coerced is not Undefined:
                    return coerced
        return super().execute_field(parent_type, source, field_details_list, path, position_context)


def executor_for(schema: GraphQLSchema) -> type[LeafShortcutExecutionContext]:
    return type(
        "SchemaExecutionContext",
        (LeafShortcutExecutionContext,),
        {"plain_leaves": plain_leaves(schema)},
    )
