"""Reading the event store on a caller's behalf: visibility rules in one place."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from domain.errors import InvalidInput, quoted
from eventstore import EventReader, RecordedEvent
from eventstore.reader import MAX_PAGE
from service.context import Principal
from service.errors import NotFound

MAX_POSITION = 2**63 - 1


def parse_position(value: str | None, what: str = "after") -> int:
    if value is None or value == "":
        return 0
    # ASCII digits only (str.isdigit also takes "²" and "١"), within PostgreSQL's bigint
    if not (value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= MAX_POSITION):
        raise InvalidInput(f"{what} must be a position: a decimal integer as a string")
    return int(value)


def check_page_size(first: int) -> int:
    if not 1 <= first <= MAX_PAGE:
        raise InvalidInput(f"first must be between 1 and {MAX_PAGE}")
    return first


async def require_visible_stream(
    reader: EventReader, principal: Principal, stream_id: str, what: str
) -> None:
    """A stream that does not exist, or that the caller may not read, is not found."""
    version, owner = await reader.stream_head(stream_id)
    if version == 0 or not principal.can_read_stream(owner):
        raise NotFound(f"{what} not found")


class EventQueries:
    def __init__(self, reader: EventReader) -> None:
        self._reader = reader

    async def stream(
        self, principal: Principal, stream_id: str, from_version: int, first: int
    ) -> list[RecordedEvent]:
        if from_version < 1:
            raise InvalidInput("fromVersion must be at least 1")
        events = await self._reader.read_stream(stream_id, from_version, limit=check_page_size(first))
        if events:
            if not principal.can_read_stream(events[0].owner):
                raise NotFound(f"stream {stream_id} not found")
        else:
            await require_visible_stream(self._reader, principal, stream_id, f"stream {stream_id}")
        return events

    async def page(
        self, principal: Principal, after: str | None, first: int, types: Sequence[str] | None
    ) -> tuple[list[RecordedEvent], bool]:
        """One page of the global log the caller may see, and whether more follow."""
        rows = await self._reader.read_all(
            parse_position(after),
            check_page_size(first) + 1,
            types=types,
            owner=None if principal.privileged else principal.sub,
        )
        return rows[:first], len(rows) > first

    async def event(self, principal: Principal, event_id: str) -> RecordedEvent:
        try:
            uuid = UUID(event_id)
        except ValueError:
            raise InvalidInput(f"{quoted(event_id)} is not an event id") from None
        event = await self._reader.get_event(uuid)
        if event is None or not principal.can_read_stream(event.owner):
            raise NotFound(f"event {event_id} not found")
        return event

    async def trace(self, principal: Principal, correlation_id: str) -> list[RecordedEvent]:
        """Every event of one business flow in causal order (causes precede effects in the log)."""
        events = await self._reader.read_correlation(correlation_id)
        return [e for e in events if principal.can_read_stream(e.owner)]

    async def head_position(self) -> int:
        return await self._reader.head_position()
