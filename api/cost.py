"""An operation's cost (CONTRACT 7.2), computed before anything runs.

Each selected field costs 1, and what is selected inside a list is paid once per item
the list can hold: `first` items for a connection's `edges` and for `stream`, the page
limit for `trace`, 500 for an order's `lines` (`LIST_SIZES`). A `first` larger than its
page cap is priced at the cap: the resolver refuses it as BAD_USER_INPUT, which says more
than QUERY_TOO_COMPLEX would. Introspection fields cost nothing (the depth limit bounds
them). Every branch of an abstract type's fragments is paid, as if all could apply.

A fragment is priced once per page size and reused at every spread, so a chain of
fragments that each spread the next twice costs a linear walk, not 2^n. A price depends
on the document and on the variables that give a `first`, so it is kept per document
(with its plan) and per value of those variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    VariableNode,
    get_named_type,
    get_nullable_type,
)
from graphql.language import Visitor, visit

from eventstore.reader import MAX_PAGE
from readmodels.order_queries import MAX_FIRST

TOO_COMPLEX = "QUERY_TOO_COMPLEX"
ORDER_LINES = 500  # the most lines an order is priced at


@dataclass(frozen=True, slots=True)
class FirstArgument:
    """As many items as the field's `first` argument asks for, at most `cap`."""

    cap: int


# (type, field) -> how many items the list can hold. A connection field's FirstArgument
# sizes its `edges`; a list field's sizes the list itself.
LIST_SIZES: dict[tuple[str, str], int | FirstArgument] = {
    ("Query", "stream"): FirstArgument(MAX_PAGE),
    ("Query", "events"): FirstArgument(MAX_PAGE),
    ("Query", "orders"): FirstArgument(MAX_FIRST),
    ("Query", "trace"): MAX_PAGE,
    ("Order", "lines"): ORDER_LINES,
    ("OrderPayload", "events"): 10,  # what one command appended: one or two events
    ("Query", "projections"): 10,  # one per projection: a handful
}
CONNECTION_EDGES = "edges"
UNKNOWN_LIST = MAX_PAGE  # a list nobody sized: priced as the largest page
UNPRICEABLE = 2**63 - 1  # nested too deeply to walk


def too_costly(cost: int, max_cost: int) -> GraphQLError:
    return GraphQLError(
        f"The operation costs {cost}, more than the limit of {max_cost}.",
        extensions={"code": TOO_COMPLEX, "cost": cost, "maxCost": max_cost},
    )


class _SizeVariables(Visitor):
    """The variables given as a `first` argument anywhere in the document."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        if node.name.value == "first" and isinstance(node.value, VariableNode):
            if node.value.name.value not in self.names:
                self.names.append(node.value.name.value)


class Price:
    """One operation's cost for given variables, walked once per value of its size variables."""

    KNOWN = 16  # costs remembered per operation (distinct `first` values; within its charge)

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        finder = _SizeVariables()
        visit(document, finder)
        self.variables = tuple(finder.names)
        self._known: dict[tuple[Any, ...], int] = {}

    def of(self, variables: Mapping[str, Any]) -> int:
        """The cost with these coerced variable values."""
        key = tuple([variables.get(name) for name in self.variables]) if self.variables else ()
        cost = self._known.get(key)
        if cost is None:
            if len(self._known) >= self.KNOWN:
                self._known.clear()
            root = self.schema.get_root_type(self.operation.operation)
            try:
                cost = _Walk(self, variables).selection(root, self.operation.selection_set, None) if root else 0
            except RecursionError:  # validation refuses such nesting first; never a 500 anyway
                cost = UNPRICEABLE
            self._known[key] = cost
        return cost


class _Walk:
    def __init__(self, price: Price, variables: Mapping[str, Any]) -> None:
        self.price = price
        self.variables = variables
        self.fragments: dict[tuple[str, int | None], int] = {}
        self.visiting: set[str] = set()

    def selection(self, parent: Any, selection_set: SelectionSetNode | None, page: int | None) -> int:
        """The cost of a selection set on `parent`; `page` sizes a connection's `edges`."""
        cost = 0
        for node in selection_set.selections if selection_set else ():
            if isinstance(node, FieldNode):
                cost += self.field(parent, node, page)
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                inner = self.price.schema.get_type(condition.name.value) if condition else parent
                cost += self.selection(inner, node.selection_set, page)
            elif isinstance(node, FragmentSpreadNode):
                cost += self.fragment(node.name.value, page)
        return cost

    def fragment(self, name: str, page: int | None) -> int:
        key = (name, page)
        known = self.fragments.get(key)
        if known is not None:
            return known
        fragment = self.price.fragments.get(name)
        if fragment is None or name in self.visiting:
            return 0  # unknown fragments and cycles are validation's errors
        self.visiting.add(name)
        parent = self.price.schema.get_type(fragment.type_condition.name.value)
        cost = self.fragments[key] = self.selection(parent, fragment.selection_set, page)
        self.visiting.discard(name)
        return cost

    def field(self, parent: Any, node: FieldNode, page: int | None) -> int:
        name = node.name.value
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0  # introspection
        definition = parent.fields.get(name)
        if definition is None:
            return 1  # validation refuses it
        size = LIST_SIZES.get((parent.name, name))
        inner_page = self.first(definition.args, node, size) if isinstance(size, FirstArgument) else None
        inner = self.selection(get_named_type(definition.type), node.selection_set, inner_page)
        if not isinstance(get_nullable_type(definition.type), GraphQLList):
            return 1 + inner
        if name == CONNECTION_EDGES and page is not None:
            items = page
        elif isinstance(size, int):
            items = size
        else:
            items = inner_page if inner_page is not None else UNKNOWN_LIST
        return 1 + items * inner

    def first(self, arguments: Mapping[str, Any], node: FieldNode, size: FirstArgument) -> int:
        """The field's `first`, as its resolver reads it, within 0..cap."""
        value: Any = None
        for argument in node.arguments or ():
            if argument.name.value == "first":
                if isinstance(argument.value, IntValueNode):
                    value = int(argument.value.value)
                elif isinstance(argument.value, VariableNode):
                    value = self.variables.get(argument.value.name.value)
        if not isinstance(value, int):  # absent or null: the argument's default
            default = arguments["first"].default_value if "first" in arguments else Undefined
            value = default if isinstance(default, int) else size.cap
        return max(0, min(value, size.cap))
