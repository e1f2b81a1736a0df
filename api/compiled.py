"""Operations compiled once per document: graphql-core's execution, planned ahead.

graphql-core decides everything afresh for each request: it builds an executor, collects
each object's sub-selection, looks up each field's definition and walks each return
type's wrappers, and sends every field through the same generic completion. For an
`order(id)` with its lines that bookkeeping costs more than the resolvers and the SQL.
None of it depends on anything but the document and the schema when the document has
no directives, so a compiled operation does it once: a tree of field plans, each with
its definition, its nodes, how it is read (an attribute, `__typename`, or the field's
resolver) and how its value is completed, and its variables' signatures. A request then
coerces its variables and walks the tree.

Semantics are graphql-core's own, results and errors alike: the same resolvers with the
same arguments and resolve info, the same messages, error locations and paths, and null
propagation to the nearest nullable field (tests/test_compiled.py runs a set of
documents both ways). Documents that could depend on more than the document (directives,
fragment variables), fields of an interface or union type, and introspection are not
compiled; they run through graphql-core.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    default_field_resolver,
    get_nullable_type,
    is_leaf_type,
    located_error,
)
from graphql.execution.get_variable_signature import (
    GraphQLVariableSignature,
    get_variable_signature,
)
from graphql.execution.values import (
    VariableValues,
    VariableValueSource,
    get_argument_values,
    get_variable_values,
    input_is_nested_too_deeply,
)
from graphql.language import Visitor, visit
from graphql.pyutils import Path, gather_with_cancel, inspect, is_iterable
from graphql.utilities import coerce_input_value, type_from_ast
from strawberry.schema.schema_converter import GraphQLCoreConverter

from api.straight import Straight, straight_completion
from compat.graphql import CollectedErrors
from compat.strawberry import is_plain_attribute, resolve_info

IsAwaitable = Callable[[Any], TypeGuard[Awaitable[Any]]]


class NotCompiled(Exception):
    """The document needs something only graphql-core does (see the module doc)."""


@dataclass(slots=True, eq=False)
class Completion:
    """How a value of one output type is completed (graphql-core's `complete_value`)."""

    type: GraphQLOutputType
    non_null: bool = False
    coerce: Callable[[Any], Any] | None = None  # a leaf
    item: Completion | None = None  # a list
    selection: Selection | None = None  # an object


@dataclass(slots=True, eq=False)
class FieldPlan:
    response_name: str
    nodes: list[FieldNode]
    definition: GraphQLField
    parent: GraphQLObjectType
    completion: Completion
    attribute: str | None  # read off the source (strawberry's basic fields)
    typename: str | None  # `__typename`
    has_arguments: bool
    plain_object: bool = False  # an attribute holding an object with no `is_type_of`

    def path(self, parent: Path | None) -> Path:
        return Path(parent, self.response_name, self.parent.name)


@dataclass(slots=True, eq=False)
class Selection:
    type: GraphQLObjectType
    fields: list[FieldPlan] = field(default_factory=list)
    straight: Straight | None = None  # the ordinary case in straight-line code (api.straight)


@dataclass(frozen=True, slots=True, eq=False)
class CompiledOperation:
    schema: GraphQLSchema
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    root: Selection
    serially: bool  # a mutation's root fields run one after another
    variables: tuple[GraphQLVariableSignature, ...]


class _FindDirective(Visitor):
    found = False

    def enter_directive(self, *_: Any) -> Any:
        self.found = True
        return self.BREAK


def compile_operation(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> CompiledOperation | None:
    """The compiled operation, or None where graphql-core must run it. The document must
    have passed validation."""
    finder = _FindDirective()
    visit(document, finder)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root_type = schema.get_root_type(operation.operation)
    if (
        finder.found
        or root_type is None
        or operation.operation is OperationType.SUBSCRIPTION  # a source stream, not a result
        or any(f.variable_definitions for f in fragments.values())
    ):
        return None
    signatures = [get_variable_signature(schema, node) for node in operation.variable_definitions or ()]
    variables = tuple(s for s in signatures if isinstance(s, GraphQLVariableSignature))
    if len(variables) < len(signatures):  # validation refuses these: let graphql-core say why
        return None
    try:
        root = _Compiler(schema, fragments).selection(root_type, [operation.selection_set])
    except NotCompiled:
        return None
    return CompiledOperation(
        schema, operation, fragments, root, operation.operation == OperationType.MUTATION, variables
    )


class _Compiler:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.schema = schema
        self.fragments = fragments

    def selection(self, type_: GraphQLObjectType, selection_sets: list[SelectionSetNode]) -> Selection:
        grouped: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for selection_set in selection_sets:
            self.collect(type_, selection_set, grouped, visited)
        selection = Selection(type_)
        selection.fields = [self.field(type_, name, nodes) for name, nodes in grouped.items()]
        selection.straight = straight_completion(selection)
        return selection

    def collect(
        self, type_: GraphQLObjectType, selection_set: SelectionSetNode,
        grouped: dict[str, list[FieldNode]], visited: set[str],
    ) -> None:
        """graphql-core's `collect_fields` for a document without directives."""
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                grouped.setdefault(node.alias.value if node.alias else node.name.value, []).append(node)
            elif isinstance(node, InlineFragmentNode):
                if self.applies(node.type_condition, type_):
                    self.collect(type_, node.selection_set, grouped, visited)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self.fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if self.applies(fragment.type_condition, type_):
                    self.collect(type_, fragment.selection_set, grouped, visited)

    def applies(self, condition: Any, type_: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        conditional = type_from_ast(self.schema, condition)
        if conditional is type_:
            return True
        return conditional is not None and self.schema.is_sub_type(conditional, type_)

    def field(self, parent: GraphQLObjectType, response_name: str, nodes: list[FieldNode]) -> FieldPlan:
        name = nodes[0].name.value
        if name in ("__schema", "__type"):
            raise NotCompiled(name)
        definition = self.schema.get_field(parent, name)
        if definition is None:  # validation would have refused it
            raise NotCompiled(name)
        sub_selections = [n.selection_set for n in nodes if n.selection_set]
        strawberry_field = (definition.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        # A field with permission classes or field extensions is read through its resolver,
        # which runs them (strawberry marks it "default" all the same when it has no resolver).
        plain = (
            name != "__typename"
            and is_plain_attribute(definition.resolve)
            and not (strawberry_field is not None and strawberry_field.extensions)
        )
        completion = self.completion(definition.type, sub_selections)
        attribute = strawberry_field.python_name if plain and strawberry_field is not None else None
        return FieldPlan(
            response_name=response_name,
            nodes=nodes,
            definition=definition,
            parent=parent,
            completion=completion,
            attribute=attribute,
            typename=parent.name if name == "__typename" else None,
            has_arguments=bool(definition.args or nodes[0].arguments),
            plain_object=attribute is not None
            and completion.selection is not None
            and completion.selection.type.is_type_of is None,
        )

    def completion(self, type_: GraphQLOutputType, sub_selections: list[SelectionSetNode]) -> Completion:
        if isinstance(type_, GraphQLNonNull):
            inner = self.completion(type_.of_type, sub_selections)
            return Completion(type_, True, inner.coerce, inner.item, inner.selection)
        if isinstance(type_, GraphQLList):
            return Completion(type_, item=self.completion(type_.of_type, sub_selections))
        if is_leaf_type(type_):
            return Completion(type_, coerce=type_.coerce_output_value)
        if isinstance(type_, GraphQLObjectType):
            return Completion(type_, selection=self.selection(type_, sub_selections))
        raise NotCompiled(str(type_))  # an interface or union: its runtime type is resolved


class Run:
    """One execution of a compiled operation."""

    def __init__(
        self, compiled: CompiledOperation, context: Any, variables: VariableValues, is_awaitable: IsAwaitable
    ) -> None:
        self.compiled = compiled
        self.context = context
        self.variables = variables
        self.is_awaitable = is_awaitable
        self.errors = CollectedErrors()

    def execute(self) -> ExecutionResult | Awaitable[ExecutionResult]:
        root = self.compiled.root
        try:
            if self.compiled.serially:
                data: Any = self.execute_serially(root)
            else:
                data = self.execute_selection(root, None, None)
        except GraphQLError as error:
            self.errors.add(error, None)
            return ExecutionResult(None, self.errors.errors)
        if self.is_awaitable(data):
            return self.await_data(data)
        return ExecutionResult(data, self.errors.errors or None)

    async def await_data(self, data: Awaitable[dict[str, Any]]) -> ExecutionResult:
        try:
            return ExecutionResult(await data, self.errors.errors or None)
        except GraphQLError as error:
            self.errors.add(error, None)
            return ExecutionResult(None, self.errors.errors)

    async def execute_serially(self, root: Selection) -> dict[str, Any]:
        results = {}
        for plan in root.fields:
            value = self.execute_field(plan, None, None)
            results[plan.response_name] = await value if self.is_awaitable(value) else value
        return results

    def execute_selection(self, selection: Selection, source: Any, path: Path | None) -> Any:
        """The object's fields; an awaitable when some are. Plain leaves (most fields) are
        read inline; anything unusual about one goes through `execute_field`."""
        if selection.straight is not None:
            try:
                return selection.straight(source)
            except Exception:  # noqa: S110 - something unusual: the walk below completes it and says what
                pass
        results: dict[str, Any] = {}
        pending: list[str] = []
        try:
            for plan in selection.fields:
                coerce = plan.completion.coerce
                if coerce is not None and plan.attribute is not None:
                    try:
                        value = getattr(source, plan.attribute)
                        coerced = None if value is None else coerce(value)
                    except Exception:
                        coerced = None
                    if coerced is not None and coerced is not Undefined and not isinstance(value, Exception):
                        results[plan.response_name] = coerced
                        continue
                if plan.plain_object:
                    value = self.execute_object(plan, source, path)
                else:
                    value = self.execute_field(plan, source, path)
                results[plan.response_name] = value
                if self.is_awaitable(value):
                    pending.append(plan.response_name)
        except Exception:
            _discard(results[name] for name in pending)
            raise
        if not pending:
            return results
        return self.settle(results, pending)

    async def settle(self, results: Any, pending: list[Any]) -> Any:
        """`results` (an object's dict or a list) with its `pending` entries awaited, together."""
        if len(pending) == 1:
            results[pending[0]] = await results[pending[0]]
        else:
            values = await gather_with_cancel(*(results[key] for key in pending))
            for key, value in zip(pending, values, strict=True):
                results[key] = value
        return results

    def execute_field(self, plan: FieldPlan, source: Any, path: Path | None) -> Any:
        """graphql-core's `execute_field`: resolve, then complete, errors handled by type."""
        if plan.typename is not None:
            return plan.typename
        field_path = plan.path(path)
        try:
            if plan.attribute is not None:
                result = getattr(source, plan.attribute)
            else:
                result = self.resolve(plan, source, field_path)
                if self.is_awaitable(result):
                    return self.await_value(plan.completion, plan, result, field_path)
            completed = self.complete(plan.completion, plan, result, field_path)
            if self.is_awaitable(completed):
                return self.await_completed(plan.completion, plan, completed, field_path)
            return completed
        except Exception as error:
            self.field_error(error, plan.completion, plan, field_path)
            return None

    def execute_object(self, plan: FieldPlan, source: Any, path: Path | None) -> Any:
        """`execute_field` for an attribute holding an object with no `is_type_of` (most
        objects of a list page): a plain value goes straight to its fields."""
        completion = plan.completion
        field_path = plan.path(path)
        try:
            value = getattr(source, plan.attribute)  # type: ignore[arg-type]
            if value is None or value is Undefined or isinstance(value, Exception):
                return self.complete(completion, plan, value, field_path)
            done = self.execute_selection(completion.selection, value, field_path)  # type: ignore[arg-type]
            if self.is_awaitable(done):
                return self.await_completed(completion, plan, done, field_path)
            return done
        except Exception as error:
            self.field_error(error, completion, plan, field_path)
            return None

    def resolve(self, plan: FieldPlan, source: Any, path: Path) -> Any:
        definition = plan.definition
        arguments = get_argument_values(definition, plan.nodes[0], self.variables) if plan.has_arguments else {}
        return (definition.resolve or default_field_resolver)(source, self.info(plan, path), **arguments)

    def info(self, plan: FieldPlan, path: Path) -> Any:
        compiled = self.compiled
        return resolve_info(  # as strawberry's executor builds it
            plan.nodes[0].name.value, plan.nodes, plan.definition.type, plan.parent, path, compiled.schema,
            compiled.fragments, None, compiled.operation, self.variables.coerced, self.context,
            self.is_awaitable, None, None, {},
        )

    def field_error(self, raw: Exception, completion: Completion, plan: FieldPlan, path: Path) -> None:
        """graphql-core's `handle_field_error`: a non-null position passes the error up."""
        error = located_error(raw, plan.nodes, path.as_list())
        if completion.non_null:
            raise error
        self.errors.add(error, path)

    def complete(self, completion: Completion, plan: FieldPlan, result: Any, path: Path) -> Any:
        """graphql-core's `complete_value` (`path` is the value's own)."""
        if isinstance(result, Exception):
            raise result
        if result is None or result is Undefined:
            if completion.non_null:
                raise TypeError(f"Cannot return null for non-nullable field {plan.parent.name}.{plan.nodes[0].name.value}.")
            return None
        if completion.coerce is not None:
            coerced = completion.coerce(result)
            if coerced is Undefined or coerced is None:
                leaf = get_nullable_type(completion.type)
                raise TypeError(
                    f"Expected `{inspect(leaf)}.coerce_output_value({inspect(result)})`"
                    f" to return non-nullable value, returned: {inspect(coerced)}"
                )
            return coerced
        if completion.item is not None:
            return self.complete_list(completion.item, plan, result, path)
        selection: Selection = completion.selection  # type: ignore[assignment]
        is_type_of = selection.type.is_type_of
        if is_type_of is not None:
            checked = is_type_of(result, self.info(plan, path))
            if self.is_awaitable(checked):
                return self.check_then_execute(checked, selection, plan, result, path)
            if not checked:
                raise _not_of_type(selection.type, result, plan)
        return self.execute_selection(selection, result, path)

    async def check_then_execute(
        self, checked: Awaitable[bool], selection: Selection, plan: FieldPlan, result: Any, path: Path
    ) -> Any:
        if not await checked:
            raise _not_of_type(selection.type, result, plan)
        executed = self.execute_selection(selection, result, path)
        return await executed if self.is_awaitable(executed) else executed

    def complete_list(self, item: Completion, plan: FieldPlan, result: Any, path: Path) -> Any:
        if not is_iterable(result):
            raise GraphQLError(
                f"Expected Iterable, but did not find one for field '{plan.parent.name}.{plan.nodes[0].name.value}'."
            )
        # Objects with no `is_type_of` (a list page's nodes and lines) go straight to their fields.
        objects = item.selection if item.selection is not None and item.selection.type.is_type_of is None else None
        completed: list[Any] = []
        pending: list[int] = []
        try:
            for index, value in enumerate(result):
                item_path = path.add_key(index, None)
                if self.is_awaitable(value):
                    completed.append(self.await_value(item, plan, value, item_path))
                    pending.append(index)
                    continue
                try:
                    if objects is not None and value is not None and value is not Undefined and not isinstance(value, Exception):
                        done = self.execute_selection(objects, value, item_path)
                    else:
                        done = self.complete(item, plan, value, item_path)
                    if self.is_awaitable(done):
                        done = self.await_completed(item, plan, done, item_path)
                        pending.append(index)
                except Exception as error:
                    self.field_error(error, item, plan, item_path)
                    done = None
                completed.append(done)
        except Exception:
            _discard(completed[i] for i in pending)
            raise
        if not pending:
            return completed
        return self.settle(completed, pending)

    async def await_value(self, completion: Completion, plan: FieldPlan, value: Awaitable[Any], path: Path) -> Any:
        """A resolver's (or a list item's) awaitable, then its completion; errors by type."""
        try:
            done = self.complete(completion, plan, await value, path)
            return await done if self.is_awaitable(done) else done
        except Exception as error:
            self.field_error(error, completion, plan, path)
            return None

    async def await_completed(self, completion: Completion, plan: FieldPlan, done: Awaitable[Any], path: Path) -> Any:
        try:
            return await done
        except Exception as error:
            self.field_error(error, completion, plan, path)
            return None


def _not_of_type(type_: GraphQLObjectType, result: Any, plan: FieldPlan) -> GraphQLError:
    return GraphQLError(f"Expected value of type '{type_}' but got: {inspect(result)}.", plan.nodes)


def _discard(awaitables: Iterable[Any]) -> None:
    """Awaitables whose results will never be used: close coroutines, cancel futures."""
    for awaitable in awaitables:
        close = getattr(awaitable, "close", None) or getattr(awaitable, "cancel", None)
        if close is not None:
            close()


def execute_compiled(
    compiled: CompiledOperation, context: Any, variables: dict[str, Any] | None, is_awaitable: IsAwaitable
) -> ExecutionResult | Awaitable[ExecutionResult]:
    coerced = given_variables(compiled, variables or {}) or get_variable_values(
        compiled.schema, compiled.operation.variable_definitions or (), variables or {}, max_errors=50
    )
    if isinstance(coerced, list):
        return ExecutionResult(None, coerced)
    return run_compiled(compiled, context, coerced, is_awaitable)


def run_compiled(
    compiled: CompiledOperation, context: Any, variables: VariableValues, is_awaitable: IsAwaitable
) -> ExecutionResult | Awaitable[ExecutionResult]:
    """The operation with variables already coerced."""
    return Run(compiled, context, variables, is_awaitable).execute()


def given_variables(compiled: CompiledOperation, inputs: dict[str, Any]) -> VariableValues | None:
    """The variables coerced with the signatures compiled once, when each is given and
    valid; None otherwise: graphql-core then applies defaults and reports what is wrong."""
    sources: dict[str, VariableValueSource] = {}
    coerced: dict[str, Any] = {}
    for signature in compiled.variables:
        name = signature.name
        value = inputs.get(name)
        if value is None or input_is_nested_too_deeply(value, signature.type):
            return None
        coerced_value = coerce_input_value(value, signature.type)
        if coerced_value is Undefined:
            return None
        sources[name] = VariableValueSource(signature, value)
        coerced[name] = coerced_value
    return VariableValues(sources, coerced)
