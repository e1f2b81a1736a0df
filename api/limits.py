"""Request limits and the parse/validation caches, as one schema extension.

Depth and alias limits count introspection fields and cannot be made to hang.

strawberry's QueryDepthLimiter skips `__schema`/`__type` (so `__type { fields { type {
fields ... } } }` nests without bound) and, like its MaxAliasesLimiter, walks a fragment
once per spread: a chain of fragments that each spread the next twice costs 2^n. Here
each fragment is measured once and the result reused.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

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
    parse,
    specified_rules,
    validate,
)
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

TOO_COMPLEX = "QUERY_TOO_COMPLEX"

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
    limits, no introspection when it is off), the token limit, and LRU caches of parsed
    documents and of validation results keyed by the query text (a client sends the same
    few queries over and over; graphql-core's validation alone is ~0.5 ms a request)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        max_tokens: int,
        max_depth: int,
        max_aliases: int,
        introspection: bool = True,
        cache_size: int = 1024,
    ) -> None:
        self.schema = schema
        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self.rules: tuple[type[ASTValidationRule], ...] = (
            *specified_rules,
            MaybeNullValidationRule,
            OneOfInputValidationRule,
            complexity_rule(max_depth, max_aliases),
            *(() if introspection else (NoSchemaIntrospectionCustomRule,)),
        )
        self.parse = functools.lru_cache(cache_size)(self._parse)
        self.validate = functools.lru_cache(cache_size)(self._validate)

    def _parse(self, query: str) -> DocumentNode:
        """The document; a syntax error (or too many tokens) raises GraphQLError."""
        return parse(query, max_tokens=self.max_tokens)

    def _validate(self, query: str) -> list[GraphQLError]:
        return validate(self.schema, self.parse(query), self.rules)

    def extension(self) -> GuardExtension:
        return GuardExtension(self)


class GuardExtension(SchemaExtension):
    """The guard for strawberry's own execution path (WebSocket operations): the cached
    document and validation result stand in for strawberry's parse and validate."""

    def __init__(self, guard: QueryGuard) -> None:
        self.guard = guard

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self.guard.max_tokens
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            try:
                context.graphql_document = self.guard.parse(context.query)
            except GraphQLError:
                # strawberry parses again on its own path, where the syntax error (or the
                # token limit's) is reported inside the operation and so gets its code;
                # raised from here it would escape ErrorCodes uncoded.
                context.graphql_document = None
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and context.graphql_document is not None:
            context.pre_execution_errors = self.guard.validate(context.query)
        yield
