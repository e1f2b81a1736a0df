"""graphql-core's executor, with a shortcut for plain fields.

Most fields of a response (an order's `status`, a line's `sku`, an order's `total`) are
attributes read off the object the parent resolver returned. graphql-core gives each one
the full treatment: a resolve-info object, strawberry's resolver wrapper, an awaitable
check and the generic completion, about 20 µs a field here, so a 20-order page with lines
spends most of its time on ~600 such fields. For a field strawberry itself marks basic (no
resolver, no arguments, no extensions) the shortcut reads the attribute and coerces it (a
scalar or enum) or executes its sub-selection (an object type) directly. Anything unusual
(a null, a coercion that fails, an exception) goes the ordinary way, and errors inside an
object are handled as graphql-core handles them, so results, errors and null propagation
are graphql-core's own (tests/test_execution_shortcut.py compares the two).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    Undefined,
    get_nullable_type,
    is_leaf_type,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter


@dataclass(frozen=True, slots=True)
class PlainField:
    """A field that is an attribute read: `coerce` for a leaf, `object_type` for an object."""

    attribute: str
    field_type: GraphQLOutputType
    coerce: Callable[[Any], Any] | None = None
    object_type: GraphQLObjectType | None = None


def plain_fields(schema: GraphQLSchema) -> dict[GraphQLObjectType, dict[str, PlainField]]:
    """Per object type, its fields that are an attribute read plus a leaf coercion or the
    sub-selection of an object type (not lists, not abstract types, no `is_type_of`)."""
    found: dict[GraphQLObjectType, dict[str, PlainField]] = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        fields: dict[str, PlainField] = {}
        for name, field in type_.fields.items():
            definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if definition is None or field.args or not getattr(field.resolve, "_is_default", False):
                continue  # not strawberry's basic field (an attribute, no resolver)
            output = get_nullable_type(field.type)  # type: ignore[arg-type]
            if is_leaf_type(output):
                fields[name] = PlainField(definition.python_name, field.type, coerce=output.coerce_output_value)  # type: ignore[union-attr]
            elif isinstance(output, GraphQLObjectType) and output.is_type_of is None:
                fields[name] = PlainField(definition.python_name, field.type, object_type=output)
        if fields:
            found[type_] = fields
    return found


class ShortcutExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Set `plain` on a subclass per schema (see `executor_for`)."""

    plain: dict[GraphQLObjectType, dict[str, PlainField]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        middleware = self.middleware_manager
        # a resolve hook must see every field: no shortcut then
        self._plain = {} if middleware is not None and middleware.middlewares else self.plain

    def execute_field(  # type: ignore[override]
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        fields = self._plain.get(parent_type)
        plain = fields.get(field_details_list[0].node.name.value) if fields is not None else None
        if plain is None:
            return super().execute_field(parent_type, source, field_details_list, path, position_context)
        try:
            value = getattr(source, plain.attribute)
        except Exception:  # the ordinary path raises it again, as a field error
            value = None
        if plain.coerce is not None:
            try:
                coerced = None if value is None else plain.coerce(value)
            except Exception:
                coerced = None
            if coerced is not None and coerced is not Undefined:
                return coerced
        elif value is not None and not isinstance(value, Exception) and not self.is_awaitable(value):
            return self._complete_object(plain, value, field_details_list, path, position_context)
        return super().execute_field(parent_type, source, field_details_list, path, position_context)

    def _complete_object(
        self, plain: PlainField, value: Any, field_details_list: Any, path: Any, position_context: Any
    ) -> Any:
        """graphql-core's completion of an object value, with its error handling."""
        try:
            completed = self.collect_and_execute_subfields(
                plain.object_type, field_details_list, path, value, position_context  # type: ignore[arg-type]
            )
        except Exception as error:
            self.handle_field_error(error, plain.field_type, field_details_list, path)
            return None
        if self.is_awaitable(completed):
            return self._await_object(plain, completed, field_details_list, path)
        return completed

    async def _await_object(self, plain: PlainField, completed: Any, field_details_list: Any, path: Any) -> Any:
        try:
            return await completed
        except Exception as error:
            self.handle_field_error(error, plain.field_type, field_details_list, path)
            return None


def executor_for(schema: GraphQLSchema) -> type[ShortcutExecutionContext]:
    return type("SchemaExecutionContext", (ShortcutExecutionContext,), {"plain": plain_fields(schema)})
