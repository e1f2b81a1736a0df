"""The counter's GraphQL fields, and its module: the one thing the app registers."""

from __future__ import annotations

import strawberry

from api.commands import command_mutation
from api.context import Info
from api.readmodels import read_your_writes
from readmodels.consistency import pinned_source
from service.module import Module
from service.stream_commands import CommandResult
from tests.counter.domain import COUNTER_EVENTS, Counter, IncrementCounter, ResetCounter
from tests.counter.handlers import COUNTER_HANDLERS
from tests.counter.projection import COUNTER_VIEWS, CounterProjection, CounterView, counter_view


@strawberry.type(name="Counter")
class CounterType:
    id: strawberry.ID
    value: int
    version: int

    @classmethod
    def of(cls, view: CounterView) -> CounterType:
        return cls(id=strawberry.ID(view.counter_id), value=view.value, version=view.version)


@strawberry.type
class CounterPayload:
    counter: CounterType
    position: str


def payload(result: CommandResult[Counter]) -> CounterPayload:
    counter = result.aggregate
    view = CounterView(counter.id, counter.value, counter.version)
    return CounterPayload(counter=CounterType.of(view), position=str(result.position))


@strawberry.input
class IncrementCounterInput:
    counter_id: strawberry.ID
    by: int | None = 1


@strawberry.input
class ResetCounterInput:
    counter_id: strawberry.ID


@strawberry.type
class CounterMutation:
    increment_counter = command_mutation(IncrementCounterInput, IncrementCounter, payload)
    reset_counter = command_mutation(ResetCounterInput, ResetCounter, payload)


@strawberry.type
class CounterQuery:
    @strawberry.field(description="A counter from its read table; `consistentWith` waits for a write.")
    async def counter(self, info: Info, id: strawberry.ID, consistent_with: str | None = None) -> CounterType | None:
        c = info.context
        c.principal  # noqa: B018 - authenticate before waiting
        await read_your_writes(c, consistent_with, CounterProjection.name)
        view = await counter_view(c.services.reads, id, pinned_source(c.consistency, CounterProjection.name))
        return CounterType.of(view) if view is not None else None


COUNTER = Module(
    name="counter",
    events=COUNTER_EVENTS,
    handlers=COUNTER_HANDLERS,
    projections=(CounterProjection,),
    tables=(COUNTER_VIEWS,),
    queries=(CounterQuery,),
    mutations=(CounterMutation,),
)
