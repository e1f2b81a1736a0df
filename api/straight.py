"""Straight-line completions: Python code written once per selection of a compiled operation.

The compiled walk (`api.compiled`) still decides, for each field of each value, how to
read and complete it: about 1 µs a field, most of a list page's time (`orders(first: 20)`
with three lines each completes ~400 fields). For a selection whose fields are all read
as attributes (leaves, `__typename`, objects and lists of objects, recursively: a list
page's connection, edges, nodes, totals and lines), this module writes one function that
builds the result dict in straight-line code, without paths, plans or per-field dispatch.

It completes only the ordinary case: an object of exactly its type's class, a leaf that
coerces to a value, a null where null is allowed, a list that is a sequence. Anything else
(a null in a non-null field, a raised error, a value of another class, an awaitable, an
object cast to another type) raises out of it, and the caller completes the object the
general way, which gives graphql-core's results and errors. Reading an attribute twice is
the only cost of that (strawberry's attribute fields have no side effects).
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from graphql import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    GraphQLID,
    GraphQLInt,
    GraphQLObjectType,
    GraphQLString,
    Undefined,
    get_nullable_type,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter

from compat.strawberry import enum_class, is_interface_member_check

if TYPE_CHECKING:
    from api.compiled import FieldPlan, Selection

Straight = Callable[[Any], dict[str, Any]]


class Unusual(Exception):
    """A value the straight-line code does not complete: the general walk does."""


def _unusual(_value: Any) -> Any:
    raise Unusual


def _null_or_unusual(value: Any) -> None:
    if value is not None:
        raise Unusual


def _coerced_members(type_: Any, coerce: Callable[[Any], Any]) -> tuple[type[Enum], dict[Enum, Any]] | None:
    """An enum type's output for each member of its Python enum, found once (strawberry
    compares a member with each value of the type in turn)."""
    members = enum_class(get_nullable_type(type_))
    if members is None:
        return None
    coerced = {}
    for member in members:
        try:
            coerced[member] = coerce(member)
        except Exception:  # noqa: S112 - not output by the table: the general code says why
            continue
    return members, {m: c for m, c in coerced.items() if c is not None and c is not Undefined}


_SEQUENCES: set[type] = {list, tuple}  # classes seen to pass `_is_list`


def _is_list(value: Any) -> bool:
    """graphql-core's `is_iterable`, for values that can be read twice (sequences)."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray | memoryview):
        _SEQUENCES.add(type(value))
        return True
    return False


# Leaves whose values pass through their scalar's coercion unchanged: the coercion is
# not called for them (graphql-core's String, ID and Int).
_UNCHANGED = {
    GraphQLString.serialize: "type(%(v)s) is str",
    GraphQLID.serialize: "type(%(v)s) is str",
    GraphQLInt.serialize: f"type(%(v)s) is int and {GRAPHQL_MIN_INT} <= %(v)s <= {GRAPHQL_MAX_INT}",
}


def straight_completion(selection: Selection) -> Straight | None:
    """The selection's completion as one function, or None when a field needs the walk (a
    resolver, arguments, a list of leaves or of lists, an abstract type). Objects under
    it are written inline: no call per object or list item."""
    writer = _Writer()
    try:
        result = writer.selection(selection, "source", "    ")
        if result is None or len(writer.lines) > _MAX_LINES:
            return None
        writer.lines.append(f"    return {result}")
        code = "def straight(source):\n" + "\n".join(writer.lines) + "\n"
        exec(compile(code, f"<straight completion of {selection.type.name}>", "exec"), writer.names)  # noqa: S102 - our own code, from the schema's names
    except (SyntaxError, RecursionError, MemoryError):  # nested too deeply for Python's compiler
        return None
    straight: Straight = writer.names["straight"]
    return straight


_MAX_LINES = 5_000  # a document's selections are each written with all they contain


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "Undefined": Undefined, "_unusual": _unusual, "_null_or_unusual": _null_or_unusual,
            "_is_list": _is_list, "_SEQUENCES": _SEQUENCES,
        }
        self.count = 0

    def selection(self, selection: Selection, source: str, indent: str) -> str | None:
        """Writes the lines completing `selection` on the object in variable `source`;
        returns the expression of the result dict."""
        values = []
        for plan in selection.fields:
            value = self.field(plan, source, indent)
            if value is None:
                return None
            values.append(f"{plan.response_name!r}: {value}")
        return f"{{{', '.join(values)}}}"

    def field(self, plan: FieldPlan, source: str, indent: str) -> str | None:
        """Writes the lines reading one field into a variable; the expression of its value."""
        if plan.typename is not None:
            return repr(plan.typename)
        attribute = plan.attribute
        if attribute is None or not attribute.isidentifier() or keyword.iskeyword(attribute):
            return None
        self.count += 1
        n = self.count
        v, r = f"v{n}", f"r{n}"
        completion = plan.completion
        write = self.lines.append
        null = f"{indent}    {r} = None" if not completion.non_null else f"{indent}    raise Unusual"
        write(f"{indent}{v} = {source}.{attribute}")
        if completion.coerce is not None:
            self.names[f"coerce{n}"] = completion.coerce
            unchanged = _UNCHANGED.get(completion.coerce)  # type: ignore[arg-type]
            members = _coerced_members(completion.type, completion.coerce)
            if unchanged is not None:
                write(f"{indent}if {unchanged % {'v': v}}:")
                write(f"{indent}    {r} = {v}")
                write(f"{indent}elif {v} is None:")
            elif members is not None:
                self.names[f"enum{n}"], self.names[f"members{n}"] = members
                write(f"{indent}if type({v}) is enum{n} and {v} in members{n}:")
                write(f"{indent}    {r} = members{n}[{v}]")
                write(f"{indent}elif {v} is None:")
            else:
                write(f"{indent}if {v} is None:")
            write(null)
            write(f"{indent}else:")
            write(f"{indent}    {r} = coerce{n}({v})")
            write(f"{indent}    if {r} is None or {r} is Undefined or isinstance({v}, Exception):")
            write(f"{indent}        raise Unusual")
            return r
        if completion.selection is not None:
            inner = self.checked_object(n, completion.selection, v, indent)
            if inner is None:
                return None
            write(f"{indent}    {r} = {inner}")
        else:
            item = completion.item
            if item is None or item.selection is None:
                return None  # a list of leaves or of lists
            x = f"x{n}"
            write(f"{indent}if type({v}) in _SEQUENCES or _is_list({v}):")
            write(f"{indent}    {r} = []")
            write(f"{indent}    for {x} in {v}:")
            inner = self.checked_object(n, item.selection, x, indent + "        ")
            if inner is None:
                return None
            write(f"{indent}            {r}.append({inner})")
            write(f"{indent}        else:")
            write(f"{indent}            {r}.append({'_unusual' if item.non_null else '_null_or_unusual'}({x}))")
        write(f"{indent}elif {v} is None:")
        write(null)
        write(f"{indent}else:")
        write(f"{indent}    raise Unusual")
        return r

    def checked_object(self, n: int, selection: Selection, value: str, indent: str) -> str | None:
        """Writes `if <value is an object the code completes>:` and, one level in, the lines
        completing it; returns the expression of its result."""
        check = self.object_check(n, selection, value)
        if check is None:
            return None
        self.lines.append(f"{indent}if {check}:")
        return self.selection(selection, value, indent + "    ")

    def object_check(self, n: int, selection: Selection, value: str) -> str | None:
        """The condition on `value` for an object the code completes: exactly the type's
        class, and its `is_type_of` if it has strawberry's."""
        definition = (selection.type.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if definition is None or not isinstance(selection.type, GraphQLObjectType):
            return None
        self.names[f"class{n}"] = definition.origin
        is_type_of = selection.type.is_type_of
        if is_type_of is None:
            return f"type({value}) is class{n}"
        if not is_interface_member_check(is_type_of):
            return None  # the schema's own check may want the resolve info
        self.names[f"is_type_of{n}"] = is_type_of
        return f"type({value}) is class{n} and is_type_of{n}({value}, None) is True"
