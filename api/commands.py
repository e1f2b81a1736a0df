"""Mutations that run a command: the one place a GraphQL input becomes a command.

An input type's fields carry the command's field names (graphql-core has coerced
their values already); a null where the command has a default takes that default.
`command_mutation` makes the whole mutation from the input type, the command class
and how its result is shown, so a new command adds one line to a Mutation type.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import strawberry

from api.context import Info
from service.stream_commands import CommandResult

C = TypeVar("C")


def command_of(input: object, command_type: type[C]) -> C:
    """The command `input` stands for: its fields by name, nulls left to the command's defaults."""
    values = {}
    for name in _field_names(typing.cast(type, command_type)):
        value = getattr(input, name, None)
        if value is not None:
            values[name] = value
    return command_type(**values)


@functools.cache
def _field_names(command_type: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(command_type))


def command_mutation(
    input_type: type,
    command_type: type,
    payload: Callable[[CommandResult[Any]], Any],
    *,
    description: str | None = None,
) -> Any:
    """A mutation field `(input: input_type) -> <payload's type>` running `command_type`."""

    async def run_command(info: Info, input: Any) -> Any:
        context = info.context
        return payload(await context.services.execute(context.ctx, command_of(input, command_type)))

    run_command.__annotations__ = {
        "info": Info, "input": input_type, "return": typing.get_type_hints(payload)["return"]
    }
    return strawberry.mutation(run_command, description=description)
