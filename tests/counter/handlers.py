"""The counter's command handlers: which stream, how to decide (like service/orders.py)."""

from __future__ import annotations

from domain.ids import check_id
from service.context import RequestContext
from service.handlers import Handler, Plan
from tests.counter.domain import Counter, IncrementCounter, ResetCounter, counter_stream


def increment_counter(ctx: RequestContext, command: IncrementCounter) -> Plan[Counter]:
    check_id(command.counter_id, "counterId")
    return Plan(counter_stream(command.counter_id), Counter, lambda counter: counter.increment(command.by))


def reset_counter(ctx: RequestContext, command: ResetCounter) -> Plan[Counter]:
    ctx.principal.require_staff("reset counters")
    check_id(command.counter_id, "counterId")
    return Plan(counter_stream(command.counter_id), Counter, Counter.reset)


COUNTER_HANDLERS: tuple[Handler, ...] = (increment_counter, reset_counter)
