"""Running commands against aggregates: load, decide, append; serialized per stream.

Commands on one stream queue up in this process and run in batches: one
catch-up read, every command decided in turn on the evolving aggregate, one
append with the batch's expected version. A hot stream thus costs one commit
per batch, not one per command, and never retries against itself. A
concurrent write from another process shows up as a ConcurrencyConflict on
the append; the batch is then decided again on the fresh state. Refusals
(rules, stale expected versions) are reported only once the state they were
judged on is confirmed, so a retry can change them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from domain.aggregate import Aggregate
from domain.errors import InvalidInput, quoted
from domain.events import EVENT_TYPES, EventTypes
from eventstore import (
    Appender,
    AppendRequest,
    AppendResult,
    ConcurrencyConflict,
    DuplicateRequest,
    EventReader,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    StoredOutcome,
    StreamWrite,
    UnstorableData,
)
from service.command_runner import CommandRunner, new_event
from service.errors import TooMuchContention
from service.snapshots import Snapshots

A = TypeVar("A", bound=Aggregate)

MAX_BATCH = 256
MAX_ATTEMPTS = 30

# Event metadata of a keyed command: what it was (name and input), so a reuse of its
# idempotency key for anything else is refused. Kept with the events the key points to,
# which a repeat reads anyway: no schema change, and old keys (no fingerprint) still repeat.
FINGERPRINT = "idempotency_fingerprint"


def input_fingerprint(command_name: str, **inputs: Any) -> str:
    """A short hash of a command's name and input values (as text: "1.0" and "1.00" differ)."""
    text = json.dumps([command_name, sorted(inputs.items())], default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def key_reused(key: tuple[str, str]) -> InvalidInput:
    return InvalidInput(
        f"idempotencyKey {quoted(key[1], 80)} was already used for another mutation or input:"
        " use a new key for a new request"
    )


@dataclass(frozen=True)
class Command(Generic[A]):
    stream_id: str
    new_aggregate: Callable[[str], A]  # the empty aggregate of a stream id
    decide: Callable[[A], None]  # calls the aggregate's command methods; may raise
    metadata: dict[str, Any]
    expected_version: int | None = None
    idempotency: tuple[str, str] | None = None  # (scope, key)
    fingerprint: str | None = None  # input_fingerprint of a keyed command
    # Raises when the caller may not see the stream (e.g. NotFound): checked before the
    # expected version, so a version is reported only to a caller who may see it.
    authorize: Callable[[A], None] | None = None


@dataclass(frozen=True)
class CommandResult(Generic[A]):
    aggregate: A  # the state this command's events produced
    events: list[RecordedEvent]
    repeated: bool = False  # an idempotency key's stored outcome, nothing appended

    @property
    def stream_version(self) -> int:
        return self.aggregate.version

    @property
    def position(self) -> int:
        return self.events[-1].position if self.events else 0


@dataclass
class _Queued:
    command: Command[Any]
    future: asyncio.Future[CommandResult[Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, outcome: CommandResult[Any] | BaseException) -> None:
        if self.future.done():
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class StreamCommands:
    def __init__(
        self, appender: Appender, reader: EventReader, snapshots: Snapshots | None = None, *,
        events: EventTypes = EVENT_TYPES,  # what stored events decode to
    ) -> None:
        self._appender = appender
        self._reader = reader
        self._runner = CommandRunner(reader, snapshots, events=events)
        self.aggregates = self._runner.aggregates  # also for reads: `aggregates.load`
        self._queues: dict[str, list[_Queued]] = {}
        self._workers: set[asyncio.Task[None]] = set()

    async def execute(self, command: Command[A]) -> CommandResult[A]:
        queued = _Queued(command)
        queue = self._queues.get(command.stream_id)
        if queue is None:
            self._queues[command.stream_id] = queue = []
            worker = asyncio.create_task(self._drain(command.stream_id))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.append(queued)
        # Not shielded: a cancelled caller's command still runs; its result is dropped.
        return await queued.future

    async def _drain(self, stream_id: str) -> None:
        queue = self._queues[stream_id]
        try:
            while queue:
                batch = queue[:MAX_BATCH]
                del queue[:MAX_BATCH]
                try:
                    await self._run_batch(stream_id, batch)
                except BaseException as error:  # never leave a caller waiting
                    self.aggregates.forget(stream_id)
                    for queued in batch:
                        queued.settle(error)
                    if not isinstance(error, Exception):
                        raise
        finally:
            del self._queues[stream_id]

    async def _run_batch(self, stream_id: str, batch: list[_Queued]) -> None:
        verify = False  # read the stream even when the aggregate is cached
        for attempt in range(MAX_ATTEMPTS):
            batch = [q for q in batch if not q.future.done()]
            if batch:
                await self._answer_repeats(stream_id, batch)
                batch = [q for q in batch if not q.future.done()]
            if not batch:
                return
            new_aggregate = functools.partial(batch[0].command.new_aggregate, stream_id)
            state, fresh = await self._runner.committed_state(stream_id, new_aggregate, verify=verify)
            decision = _decide(stream_id, state, batch)
            if decision.refused and not fresh:
                verify = True  # a refusal judged on cached state is confirmed on the stored state first
                continue
            if decision.events:
                request = AppendRequest(
                    writes=[StreamWrite(stream_id, decision.events, state.version, owner=decision.state.owner)],
                    idempotency=decision.keys,
                )
                try:
                    result = await self._appender.append(request)
                except (ConcurrencyConflict, DuplicateRequest):
                    # Another process wrote the stream or used a key: decide again on fresh state.
                    verify = True
                    await self._runner.retry_later(attempt)
                    continue
                except UnstorableData:
                    self.aggregates.forget(stream_id)
                    if len(batch) == 1:
                        raise
                    await self._run_each(stream_id, batch)  # one command's data is at fault
                    return
                except BaseException:
                    self.aggregates.forget(stream_id)
                    raise
                decision.settle(result)
                self._runner.commit(result, {stream_id: (decision.state, state.version)})
            for queued, error in decision.refused:
                queued.settle(error)
            return
        for queued in batch:
            queued.settle(TooMuchContention(f"stream {stream_id} is too contended; retry"))

    async def _run_each(self, stream_id: str, batch: list[_Queued]) -> None:
        for queued in batch:
            try:
                await self._run_batch(stream_id, [queued])
            except Exception as failure:
                self.aggregates.forget(stream_id)
                queued.settle(failure)

    async def _answer_repeats(self, stream_id: str, batch: list[_Queued]) -> None:
        """Commands whose idempotency key was used before get the first outcome back."""
        keyed = [(q, q.command.idempotency) for q in batch if q.command.idempotency is not None]
        if not keyed:
            return
        outcomes = await self._reader.idempotency_outcomes([key for _, key in keyed])
        for queued, key in keyed:
            outcome = outcomes.get(key)
            if outcome is not None:
                queued.settle(await self._replay(queued.command, outcome))

    async def _replay(self, command: Command[A], outcome: StoredOutcome) -> CommandResult[A] | InvalidInput:
        events = await self._reader.read_positions(outcome.first_position, outcome.last_position)
        stored = events[0].metadata.get(FINGERPRINT) if events else None
        if stored is not None and stored != command.fingerprint:
            assert command.idempotency is not None
            return key_reused(command.idempotency)
        stream_id, version = next(iter(outcome.stream_versions.items()))
        # The key may have been used on another stream (a createOrder that drew its own id).
        aggregate = await self.aggregates.load(
            stream_id, lambda: command.new_aggregate(stream_id), to_version=version
        )
        return CommandResult(aggregate, events, repeated=True)


@dataclass
class _Decision:
    """A batch decided in turn on one aggregate: the events to append, who refused, and
    the state the accepted commands lead to."""

    state: Aggregate
    events: list[NewEvent] = field(default_factory=list)
    keys: list[IdempotencyRecord] = field(default_factory=list)
    decided: list[tuple[_Queued, int, Aggregate]] = field(default_factory=list)
    refused: list[tuple[_Queued, Exception]] = field(default_factory=list)
    repeats: dict[tuple[str, str], list[_Queued]] = field(default_factory=dict)
    fingerprints: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def settle(self, result: AppendResult) -> None:
        start = 0
        recorded_at = result.events[-1].recorded_at
        for queued, end, state in self.decided:
            state.mark_recorded(recorded_at)
            outcome = CommandResult(state, list(result.events[start:end]))
            queued.settle(outcome)
            for repeat in self.repeats.get(queued.command.idempotency or ("", ""), ()):
                repeat.settle(dataclasses.replace(outcome, repeated=True))
            start = end


def _decide(stream_id: str, state: Aggregate, batch: list[_Queued]) -> _Decision:
    """Each command decided on the state the accepted ones before it led to (`state`
    itself is left as it is)."""
    decision = _Decision(state)
    for queued in batch:
        command = queued.command
        if command.idempotency in decision.repeats:  # the same key twice in one batch
            if decision.fingerprints[command.idempotency] != command.fingerprint:
                decision.refused.append((queued, key_reused(command.idempotency)))
            else:
                decision.repeats[command.idempotency].append(queued)
            continue
        try:
            if command.authorize is not None:
                command.authorize(decision.state)
            if command.expected_version is not None and command.expected_version != decision.state.version:
                raise ConcurrencyConflict(stream_id, command.expected_version, decision.state.version)
            after, changes = CommandRunner.decide(decision.state, command.decide)
        except Exception as error:
            decision.refused.append((queued, error))
            continue
        first = len(decision.events)
        metadata = command.metadata
        if command.fingerprint is not None:
            metadata = {**metadata, FINGERPRINT: command.fingerprint}
        decision.events += [new_event(change, metadata) for change in changes]
        if command.idempotency is not None:
            decision.keys.append(IdempotencyRecord(*command.idempotency, first, len(decision.events)))
            decision.repeats[command.idempotency] = []
            decision.fingerprints[command.idempotency] = command.fingerprint
        decision.state = after
        decision.decided.append((queued, len(decision.events), after))
    return decision
