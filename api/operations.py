"""One GraphQL operation over HTTP: cached parse, validation and compilation, then
execution (`api.compiled`, or graphql-core for what it does not plan).

strawberry's `Schema.execute` opens a dozen extension hooks and context managers per
request, ~0.4 ms here before any resolver runs, about as much as the rest of a small
query. The HTTP path skips that machinery, not its effects: the same guard (limits,
cached parse and validation), resolvers, error coding and `extensions` that the
WebSocket transport gets through strawberry's hooks (`GuardExtension`, `ErrorCodes`,
`ConsistencyReport`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    execute,
    get_operation_ast,
)
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from api.compiled import CompiledOperation, compile_operation, execute_compiled
from api.context import Context
from api.errors import coded
from api.readmodels import consistency_report
from api.schema import ApiSchema


@dataclass(frozen=True)
class GraphQLRequest:
    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None
    persisted_hash: str | None = None  # extensions.persistedQuery's (api.persisted)


# strawberry's check (a type lookup first), typed as graphql-core's TypeGuard expects
is_awaitable = cast(Callable[[Any], TypeGuard[Awaitable[Any]]], optimized_is_awaitable)


class UnknownOperation(Exception):
    """The document has no operation to run under the given name (or several, and no name)."""


@dataclass
class Outcome:
    body: dict[str, Any]
    request_error: bool  # failed before execution: no `data` (GraphQL over HTTP 7.1.2)
    operation_type: str = "unknown"  # query | mutation | subscription, once known


class Operations:
    def __init__(self, schema: ApiSchema) -> None:
        self.schema = schema
        self.guard = schema.guard
        self._compiled = functools.lru_cache(schema.guard.cache_size)(self._compile)

    def _compile(self, query: str, operation_name: str | None) -> CompiledOperation | None:
        document = self.guard.parse(query)
        return compile_operation(self.schema.graphql, document, self.operation(document, operation_name))

    def document(self, query: str) -> DocumentNode | GraphQLError:
        try:
            return self.guard.parse(query)
        except GraphQLError as error:  # a syntax error, or too many tokens
            return error

    @staticmethod
    def operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
        operation = get_operation_ast(document, name)
        if operation is not None:
            return operation
        if name is not None:
            raise UnknownOperation(f'Unknown operation named "{name}".')
        operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
        if operations:
            raise UnknownOperation(
                "The document has several operations: say which to run with `operationName`."
            )
        raise UnknownOperation("The document has no operation to run.")

    async def run(self, request: GraphQLRequest, document: DocumentNode, context: Context) -> Outcome:
        errors = self.guard.validate(request.query)
        if errors:
            return self.request_errors(errors, context)
        compiled = self._compiled(request.query, request.operation_name)
        if compiled is not None:
            executed = execute_compiled(compiled, context, request.variables, is_awaitable)
        else:
            executed = execute(
                self.schema.graphql,
                document,
                context_value=context,
                variable_values=request.variables,
                operation_name=request.operation_name,
                executor_class=StrawberryGraphQLCoreExecutionContext,
                is_awaitable=is_awaitable,
            )
        result = cast(ExecutionResult, await executed if is_awaitable(executed) else executed)
        if result.errors and result.data is None and all(e.path is None for e in result.errors):
            # variables that fail coercion: a request error too (no data, no field path)
            return self.request_errors(result.errors, context)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [coded(e, context.correlation_id).formatted for e in result.errors]
        extensions = consistency_report(context)
        if extensions:
            body["extensions"] = extensions
        return Outcome(body, request_error=False)

    @staticmethod
    def request_errors(errors: list[GraphQLError], context: Context) -> Outcome:
        """Failed before execution (syntax, validation, variables): errors and no data."""
        formatted = [coded(e, context.correlation_id).formatted for e in errors]
        return Outcome({"errors": formatted}, request_error=True)
