"""One GraphQL operation over HTTP: cached parse, validation, price and compilation; the
variables coerced and the cost checked; then execution (`api.compiled`, or graphql-core
for what it does not plan).

strawberry's `Schema.execute` opens a dozen extension hooks and context managers per
request, ~0.4 ms here before any resolver runs, about as much as the rest of a small
query. The HTTP path skips that machinery, not its effects: the same guard (limits,
cached parse and validation), resolvers, error coding and `extensions` that the
WebSocket transport gets through strawberry's hooks (`GuardExtension`, `ErrorCodes`,
`ConsistencyReport`).
"""

from __future__ import annotations

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

from api.compiled import CompiledOperation, compile_operation, given_variables, run_compiled
from api.context import Context
from api.cost import Price
from api.document_cache import CachedDocument
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


@dataclass(frozen=True, slots=True)
class Plan:
    """What running one operation of a document needs besides its variables, found once."""

    operation: OperationDefinitionNode
    compiled: CompiledOperation | None  # None: graphql-core runs it
    price: Price


class Operations:
    def __init__(self, schema: ApiSchema) -> None:
        self.schema = schema
        self.guard = schema.guard

    def plan(self, entry: CachedDocument, operation_name: str | None) -> Plan:
        plan = entry.plans.get(operation_name)
        if plan is None:
            operation = self.operation(entry.document, operation_name)
            compiled = compile_operation(self.schema.graphql, entry.document, operation)
            plan = entry.plans[operation_name] = Plan(operation, compiled, self.guard.price(entry, operation))
        return plan

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
        entry = self.guard.document(request.query, document)
        errors = self.guard.errors(entry)
        if errors:
            return self.request_errors(errors, context)
        plan = self.plan(entry, request.operation_name)
        inputs = request.variables or {}
        variables = (plan.compiled and given_variables(plan.compiled, inputs)) or self.guard.coerce(
            plan.operation, inputs
        )
        if isinstance(variables, list):
            return self.request_errors(variables, context)
        refusal = self.guard.too_costly(plan.price, variables)
        if refusal is not None:
            return self.request_errors([refusal], context)
        if plan.compiled is not None:
            executed = run_compiled(plan.compiled, context, variables, is_awaitable)
        else:
            executed = execute(
                self.schema.graphql,
                document,
                context_value=context,
                variable_values=inputs,
                operation_name=request.operation_name,
                executor_class=StrawberryGraphQLCoreExecutionContext,
                is_awaitable=is_awaitable,
                hide_suggestions=self.guard.hide_suggestions,
            )
        result = cast(ExecutionResult, await executed if is_awaitable(executed) else executed)
        if result.errors and result.data is None and all(e.path is None for e in result.errors):
            # refused before execution (no data, no field path): a request error too
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
