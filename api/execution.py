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

graphql-core also collects each object's sub-selection afresh in every request (about
8 % of an `order(id)`). For a document whose selections carry no directives, the
collection depends on nothing but the document and the type, so it is kept with the
cached document and shared by every request that runs it (`SharedPlan`), together with
which of its fields are plain leaves: `execute_fields` reads those in its loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    Undefined,
    get_nullable_type,
    is_leaf_type,
)
from graphql.execution.collect_fields import CollectedFields, FieldDetails
from graphql.language import Visitor, visit
from graphql.pyutils import Path, gather_with_cancel
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
            output = get_nullable_type(field.type)
            if is_leaf_type(output):
                fields[name] = PlainField(definition.python_name, field.type, coerce=output.coerce_output_value)
            elif isinstance(output, GraphQLObjectType) and output.is_type_of is None:
                fields[name] = PlainField(definition.python_name, field.type, object_type=output)
        if fields:
            found[type_] = fields
    return found


def leaf_value(field: PlainField, source: Any) -> Any:
    """A plain leaf's coerced value, or None: then the ordinary path runs, and reports the
    null, the failed coercion or the exception as graphql-core does."""
    try:
        value = getattr(source, field.attribute)
        coerced = None if value is None else field.coerce(value)  # type: ignore[misc]
    except Exception:
        return None
    return None if coerced is Undefined else coerced


class SharedPlan:
    """A document's collected sub-selections, shared by all its executions, and for each
    their plain leaves (scalar and enum attributes) by response name.

    Collections are keyed by (type, ids of the field nodes asked for); each entry keeps
    its field list alive, so the nodes stay alive and their ids cannot be taken by other
    nodes. Leaves are keyed by the id of a shared grouped field set, kept alive likewise.
    """

    __slots__ = ("collected", "leaves")

    def __init__(self) -> None:
        self.collected: dict[tuple[Any, ...], tuple[list[FieldDetails], CollectedFields]] = {}
        self.leaves: dict[int, dict[str, PlainField]] = {}


class _FindDirective(Visitor):
    found = False

    def enter_directive(self, *_: Any) -> Any:
        self.found = True
        return self.BREAK


def shared_plan(document: DocumentNode) -> SharedPlan | None:
    """A plan to share among a document's executions; None when a directive (`@skip`,
    `@include`) makes the collection depend on the variables."""
    finder = _FindDirective()
    visit(document, finder)
    return None if finder.found else SharedPlan()


class ShortcutExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Set `plain` on a subclass per schema (see `executor_for`)."""

    plain: dict[GraphQLObjectType, dict[str, PlainField]] = {}

    def __init__(self, *args: Any, plan: SharedPlan | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        middleware = self.middleware_manager
        # a resolve hook must see every field: no shortcut then
        hooked = middleware is not None and bool(middleware.middlewares)
        self._plain = {} if hooked else self.plain
        self._plan = plan
        self._leaves = None if plan is None or hooked else plan.leaves

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: list[FieldDetails]
    ) -> CollectedFields:
        plan = self._plan
        if plan is None:
            return super().collect_subfields(return_type, field_details_list)
        key = (return_type, *[id(details.node) for details in field_details_list])
        entry = plan.collected.get(key)
        if entry is None:
            collected = super().collect_subfields(return_type, field_details_list)
            entry = plan.collected[key] = (field_details_list, collected)
            plain = self.plain.get(return_type, {})
            leaves = {
                response_name: field
                for response_name, details in collected.grouped_field_set.items()
                if (field := plain.get(details[0].node.name.value)) is not None and field.coerce
            }
            if leaves:
                plan.leaves[id(collected.grouped_field_set)] = leaves
        return entry[1]

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Any,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's `execute_fields`, with the plain leaves of a shared sub-selection
        read in the loop: no call, no path, no awaitable check for each."""
        leaves = self._leaves.get(id(grouped_field_set)) if self._leaves is not None else None
        if leaves is None:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                leaf = leaves.get(response_name)
                if leaf is not None:
                    value = leaf_value(leaf, source_value)
                    if value is not None:
                        results[response_name] = value
                        continue
                result = self.execute_field(
                    parent_type,
                    source_value,
                    field_details_list,
                    Path(path, response_name, parent_type.name),
                    position_context,
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:  # settle the others' awaitables: they may fail too
                self.settle_in_background([results[name] for name in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                name = awaitable_fields[0]
                results[name] = await results[name]
            else:
                awaited = await gather_with_cancel(*(results[name] for name in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def execute_field(
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
        if plain.coerce is not None:
            value = leaf_value(plain, source)
            if value is not None:
                return value
        else:
            try:
                value = getattr(source, plain.attribute)
            except Exception:  # the ordinary path raises it again, as a field error
                value = None
            if value is not None and not isinstance(value, Exception) and not self.is_awaitable(value):
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
