"""Request limits (depth, aliases, tokens, cost) and the document cache, as one schema extension.

Depth and alias limits count introspection fields and cannot be made to hang.

strawberry's QueryDepthLimiter skips `__schema`/`__type` (so `__type { fields { type {
fields ... } } }` nests without bound) and, like its MaxAliasesLimiter, walks a fragment
once per spread: a chain of fragments that each spread the next twice costs 2^n. Here
each fragment is measured once and the result reused.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.execution.values import VariableValues, get_variable_values
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from api.cost import TOO_COMPLEX, Price, too_costly
from api.document_cache import CachedDocument, DocumentCache

# (depth, aliases) of a selection set; depth counts the fields that have a selection set
# (the leaf's ancestors), like graphql-depth-limit and strawberry.
Measure = tuple[int, int]


class _Measurer:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self._fragments = fragments
        self._done: dict[str, Measure] = {}
        self._visiting: set[str] = set()

    def selection_set(self, selection_set: SelectionSetNode | None) -> Measure:
        depth = aliases = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                inner_depth, inner_aliases = self.selection_set(selection.selection_set)
                if selection.selection_set:
                    inner_depth += 1
                inner_aliases += 1 if selection.alias else 0
            elif isinstance(selection, InlineFragmentNode):
                inner_depth, inner_aliases = self.selection_set(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                inner_depth, inner_aliases = self.fragment(selection.name.value)
            else:  # pragma: no cover - the grammar has no other selections
                continue
            depth = max(depth, inner_depth)
            aliases += inner_aliases
        return depth, aliases

    def fragment(self, name: str) -> Measure:
        if name in self._done:
            return self._done[name]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._visiting:
            return 0, 0  # unknown fragments and cycles are other rules' errors
        self._visiting.add(name)
        measure = self.selection_set(fragment.selection_set)
        self._visiting.discard(name)
        self._done[name] = measure
        return measure


def too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": TOO_COMPLEX})


@functools.cache  # one class per limits
def complexity_rule(max_depth: int, max_aliases: int) -> type[ValidationRule]:
    class ComplexityLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            definitions = context.document.definitions
            measurer = _Measurer(
                {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
            )
            total_aliases = 0
            for definition in definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                depth, aliases = measurer.selection_set(definition.selection_set)
                total_aliases += aliases
                if depth > max_depth:
                    name = definition.name.value if definition.name else "anonymous"
                    context.report_error(
                        too_complex(
                            f"'{name}' exceeds maximum operation depth of {max_depth} (it has {depth})"
                        )
                    )
            if total_aliases > max_aliases:
                context.report_error(
                    too_complex(f"{total_aliases} aliases found. Allowed: {max_aliases}")
                )

    return ComplexityLimit


class QueryGuard:
    """Per schema: the validation rules (graphql-core's and strawberry's, the depth and alias
    limits, no introspection when it is off), the token limit, the cost limit, and one cache
    of documents bounded in bytes: each is parsed, validated and priced once (a client sends
    the same few queries over and over; graphql-core's validation alone is ~0.5 ms a request).

    With introspection off no message suggests a name ("Did you mean ...?", CONTRACT 7.5):
    the schema stays private."""

    def __init__(
        self,
        schema: GraphQLSchema,
        max_tokens: int,
        max_depth: int,
        max_aliases: int,
        introspection: bool = True,
        max_cost: int = 100_000,
        cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.schema = schema
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.hide_suggestions = not introspection
        self.cache = DocumentCache(cache_bytes)
        self.rules: tuple[type[ASTValidationRule], ...] = (
            *specified_rules,
            MaybeNullValidationRule,
            OneOfInputValidationRule,
            complexity_rule(max_depth, max_aliases),
            *(() if introspection else (NoSchemaIntrospectionCustomRule,)),
        )

    def document(self, query: str, parsed: DocumentNode | None = None) -> CachedDocument:
        """The document (kept when small enough); a syntax error (or too many tokens) raises
        GraphQLError. `parsed`: the query's document, when the caller has parsed it already."""
        entry = self.cache.get(query)
        if entry is None:
            entry = CachedDocument(parsed or parse(query, max_tokens=self.max_tokens))
            self.cache.add(query, entry)
        return entry

    def parse(self, query: str) -> DocumentNode:
        return self.document(query).document

    def errors(self, entry: CachedDocument) -> list[GraphQLError]:
        if entry.errors is None:
            entry.errors = validate(
                self.schema, entry.document, self.rules, hide_suggestions=self.hide_suggestions
            )
        return entry.errors

    def validate(self, query: str) -> list[GraphQLError]:
        return self.errors(self.document(query))

    def price(self, entry: CachedDocument, operation: OperationDefinitionNode) -> Price:
        name = operation.name.value if operation.name else None
        price = entry.prices.get(name)
        if price is None:
            price = entry.prices[name] = Price(self.schema, entry.document, operation)
        return price

    def coerce(
        self, operation: OperationDefinitionNode, inputs: dict[str, Any] | None
    ) -> VariableValues | list[GraphQLError]:
        return get_variable_values(
            self.schema,
            operation.variable_definitions or (),
            inputs or {},
            max_errors=50,
            hide_suggestions=self.hide_suggestions,
        )

    def too_costly(self, price: Price, variables: VariableValues) -> GraphQLError | None:
        cost = price.of(variables.coerced)
        return too_costly(cost, self.max_cost) if cost > self.max_cost else None

    def extension(self) -> GuardExtension:
        return GuardExtension(self)


class GuardExtension(SchemaExtension):
    """The guard for strawberry's own execution path (WebSocket operations): the cached
    document and validation result stand in for strawberry's parse and validate, and the
    operation's variables and cost are checked before strawberry runs anything."""

    def __init__(self, guard: QueryGuard) -> None:
        self.guard = guard
        self.entry: CachedDocument | None = None

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self.guard.max_tokens
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            try:
                self.entry = self.guard.document(context.query)
                context.graphql_document = self.entry.document
            except GraphQLError:
                # strawberry parses again on its own path, where the syntax error (or the
                # token limit's) is reported inside the operation and so gets its code;
                # raised from here it would escape ErrorCodes uncoded.
                context.graphql_document = None
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self.entry is not None and context.graphql_document is self.entry.document:
            errors = self.guard.errors(self.entry)
            operation = get_operation_ast(self.entry.document, context.operation_name)
            if not errors and operation is not None:  # else strawberry says what is missing
                errors = self.refusals(self.entry, operation)
            context.pre_execution_errors = errors
        yield

    def refusals(self, entry: CachedDocument, operation: OperationDefinitionNode) -> list[GraphQLError]:
        variables = self.guard.coerce(operation, self.execution_context.variables)
        if isinstance(variables, list):
            return variables
        refusal = self.guard.too_costly(self.guard.price(entry, operation), variables)
        return [refusal] if refusal else []
