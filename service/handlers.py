"""Commands dispatched by their type to one handler each, and run on their stream.

A handler is a plain function `(ctx, command) -> Plan`: it checks what it can
before any read (ids, who may ask) and says which stream the command goes to,
how to decide on its aggregate and who may see it. The table is keyed by the
class each handler's `command` parameter is annotated with: no names typed out.
Everything else (expected version, idempotency, metadata) is the same for every
command and done here, once: `CommandHandlers.execute` is the one way a command runs.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from domain.aggregate import Aggregate, aggregate_id_of
from domain.errors import InvalidInput
from service.context import RequestContext
from service.stream_commands import Command, CommandResult, StreamCommands, input_fingerprint

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True)
class Plan(Generic[A]):
    """Where a command goes and how it is decided there."""

    stream_id: str
    aggregate_type: Callable[[str], A]  # its empty aggregate, of the id (the stream id's tail)
    decide: Callable[[A], None]  # calls the aggregate's command methods; may raise
    # Raises when the caller may not see the aggregate (checked before the expected version).
    authorize: Callable[[A], None] | None = None


Handler = Callable[[RequestContext, Any], Plan[Any]]


def command_type_of(handler: Handler) -> type:
    """The command class a handler takes: its `command` parameter's annotation."""
    hints = typing.get_type_hints(handler)
    if "command" not in hints:
        raise TypeError(f"handler {handler.__name__} has no annotated `command` parameter")
    return typing.cast(type, hints["command"])


def handler_table(handlers: Iterable[Handler]) -> dict[type, Handler]:
    table: dict[type, Handler] = {}
    for handler in handlers:
        command_type = command_type_of(handler)
        known = table.setdefault(command_type, handler)
        if known is not handler:
            raise ValueError(f"{command_type.__name__} has two handlers: {known.__name__}, {handler.__name__}")
    return table


def mutation_name(command_type: type) -> str:
    """`AddItem` -> `addItem`: the mutation a command stands for."""
    name = command_type.__name__
    return name[0].lower() + name[1:]


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def command_fingerprint(command: Any) -> str:
    """What a reused idempotency key is compared on: the mutation's name and input values by
    their GraphQL names (besides the key). As stored since keys were first fingerprinted:
    every order command's has `expectedVersion`, createOrder's (which has none) a null."""
    inputs: dict[str, Any] = {"expectedVersion": None}
    for field in dataclasses.fields(command):
        if field.name != "idempotency_key":
            inputs[_camel(field.name)] = getattr(command, field.name)
    return input_fingerprint(mutation_name(type(command)), **inputs)


class CommandHandlers:
    def __init__(self, commands: StreamCommands, handlers: Mapping[type, Handler]) -> None:
        self._commands = commands
        self._handlers = dict(handlers)

    async def execute(self, ctx: RequestContext, command: Any) -> CommandResult[Any]:
        handler = self._handlers.get(type(command))
        if handler is None:
            raise LookupError(f"no handler registered for {type(command).__name__}")
        plan = handler(ctx, command)
        expected_version: int | None = getattr(command, "expected_version", None)
        key: str | None = getattr(command, "idempotency_key", None)
        if expected_version is not None and expected_version < 0:
            raise InvalidInput("expectedVersion must be 0 or more")
        if key is not None and not 1 <= len(key) <= 200:
            raise InvalidInput("idempotencyKey must be 1-200 characters")
        return await self._commands.execute(
            Command(
                stream_id=plan.stream_id,
                new_aggregate=lambda stream_id: plan.aggregate_type(aggregate_id_of(stream_id)),
                decide=plan.decide,
                authorize=plan.authorize,
                metadata=ctx.event_metadata(),
                expected_version=expected_version,
                idempotency=(ctx.idempotency_scope, key) if key else None,
                fingerprint=command_fingerprint(command) if key else None,
            )
        )

