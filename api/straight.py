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
from typing import TYPE_CHECKING, Any

from graphql import GraphQLObjectType, Undefined
from strawberry.schema.schema_converter import GraphQLCoreConverter

from compat.strawberry import is_interface_member_check

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


def _is_list(value: Any) -> bool:
    """graphql-core's `is_iterable`, for values that can be read twice."""
    return type(value) is list or type(value) is tuple or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray | memoryview)
    )


def straight_completion(selection: Selection) -> Straight | None:
    """The selection's completion as one function, or None when a field needs the walk (a
    resolver, arguments, a list of leaves or of lists, an abstract type); the selections
    under it must have theirs already (plans are built inside out)."""
    writer = _Writer()
    values = []
    for index, plan in enumerate(selection.fields):
        value = writer.field(index, plan)
        if value is None:
            return None
        values.append(f"{plan.response_name!r}: {value}")
    writer.lines.append(f"    return {{{', '.join(values)}}}")
    code = "def straight(source):\n" + "\n".join(writer.lines) + "\n"
    exec(compile(code, f"<straight completion of {selection.type.name}>", "exec"), writer.names)  # noqa: S102 - our own code, from the schema's names
    straight: Straight = writer.names["straight"]
    return straight


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "Undefined": Undefined, "_unusual": _unusual, "_null_or_unusual": _null_or_unusual, "_is_list": _is_list,
        }

    def field(self, index: int, plan: FieldPlan) -> str | None:
        """Writes the lines reading one field into `r<index>`; the expression of its value."""
        if plan.typename is not None:
            return repr(plan.typename)
        attribute = plan.attribute
        if attribute is None or not attribute.isidentifier() or keyword.iskeyword(attribute):
            return None
        completion = plan.completion
        write = self.lines.append
        write(f"    v = source.{attribute}")
        write("    if v is None:")
        write(f"        r{index} = None" if not completion.non_null else "        raise Unusual")
        if completion.coerce is not None:
            self.names[f"coerce{index}"] = completion.coerce
            write("    else:")
            write(f"        r{index} = coerce{index}(v)")
            write(f"        if r{index} is None or r{index} is Undefined or isinstance(v, Exception):")
            write("            raise Unusual")
            return f"r{index}"
        if completion.selection is not None:
            check = self.object_check(index, completion.selection, "v")
            if check is None:
                return None
            write(f"    elif {check}:")
            write(f"        r{index} = object{index}(v)")
            write("    else:")
            write("        raise Unusual")
            return f"r{index}"
        item = completion.item
        if item is None or item.selection is None:
            return None  # a list of leaves or of lists
        check = self.object_check(index, item.selection, "x")
        if check is None:
            return None
        otherwise = "_unusual" if item.non_null else "_null_or_unusual"
        write("    elif _is_list(v):")
        write(f"        r{index} = [object{index}(x) if {check} else {otherwise}(x) for x in v]")
        write("    else:")
        write("        raise Unusual")
        return f"r{index}"

    def object_check(self, index: int, selection: Selection, value: str) -> str | None:
        """The condition on `value` for a value completed by the selection's own function:
        exactly the type's class, and its `is_type_of` if it has strawberry's."""
        definition = (selection.type.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if selection.straight is None or definition is None or not isinstance(selection.type, GraphQLObjectType):
            return None
        self.names[f"object{index}"] = selection.straight
        self.names[f"class{index}"] = definition.origin
        is_type_of = selection.type.is_type_of
        if is_type_of is None:
            return f"type({value}) is class{index}"
        if not is_interface_member_check(is_type_of):
            return None  # the schema's own check may want the resolve info
        self.names[f"is_type_of{index}"] = is_type_of
        return f"type({value}) is class{index} and is_type_of{index}({value}, None) is True"
