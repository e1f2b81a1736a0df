"""The counter: its events, its aggregate, its commands (pure Python, like domain/)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.aggregate import Aggregate, DomainEvent, apply_step, event_type
from domain.errors import InvalidInput, RuleViolation

COUNTER_STREAM_PREFIX = "counter-"


def counter_stream(counter_id: str) -> str:
    return COUNTER_STREAM_PREFIX + counter_id


@event_type("counter.incremented.v1")
@dataclass(frozen=True)
class CounterIncremented(DomainEvent):
    by: int


@event_type("counter.reset.v1")
@dataclass(frozen=True)
class CounterReset(DomainEvent):
    pass


COUNTER_EVENTS: tuple[type[DomainEvent], ...] = (CounterIncremented, CounterReset)


class Counter(Aggregate):
    def __init__(self, counter_id: str) -> None:
        super().__init__(counter_id)
        self.value = 0

    def increment(self, by: int) -> None:
        if not 1 <= by <= 1000:
            raise InvalidInput("by must be 1-1000")
        self._emit(CounterIncremented(by))

    def reset(self) -> None:
        if self.version == 0:
            raise RuleViolation(f"counter {self.id} was never incremented")
        self._emit(CounterReset())

    @apply_step
    def apply(self, event: DomainEvent) -> None:
        raise TypeError(f"unknown event {event!r}")

    @apply.register
    def _(self, event: CounterIncremented) -> None:
        self.value += event.by

    @apply.register
    def _(self, event: CounterReset) -> None:
        self.value = 0


@dataclass(frozen=True, slots=True)
class IncrementCounter:
    counter_id: str
    by: int = 1


@dataclass(frozen=True, slots=True)
class ResetCounter:
    counter_id: str
