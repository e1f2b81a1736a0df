"""The counter: its events, its aggregate, its commands (pure Python, like domain/)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.aggregate import Aggregate, DomainEvent, StreamKind, apply_step, domain_event
from domain.errors import InvalidInput, RuleViolation

counter_stream = StreamKind("counter")


@domain_event("counter.incremented.v1")
class CounterIncremented(DomainEvent):
    by: int


@domain_event("counter.reset.v1")
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

    apply = apply_step()

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
