"""A subscriber's tap: only its events, nothing for it wakes nobody, refused batches show
as gaps. (The hub around it runs against PostgreSQL in test_subscriptions_live.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from eventstore import RecordedEvent
from eventstore.listener import Batch, EventFilter, Tap


def event(position: int, stream: str = "s-1") -> RecordedEvent:
    return RecordedEvent(position, uuid4(), stream, 1, "t.v1", {}, {}, datetime.now(UTC))


def shape(batch: Batch | None) -> tuple[int, int, list[int]] | None:
    return None if batch is None else (batch.before, batch.after, [e.position for e in batch.events])


def test_ranges_with_nothing_for_it_do_not_wake_it_and_join_the_next_batch() -> None:
    tap = Tap(EventFilter(stream_id="s-1"), buffer=10)
    tap.offer(Batch(0, 2, [event(2)]))
    assert shape(tap.take()) == (0, 2, [2])
    assert tap.take() is None and not tap.ready.is_set()
    tap.offer(Batch(2, 5, []))
    tap.offer(Batch(5, 7, []))
    assert not tap.ready.is_set()  # nothing for it: asleep
    tap.offer(Batch(7, 9, [event(9)]))
    assert tap.ready.is_set()
    assert shape(tap.take()) == (2, 9, [9])  # one batch covering the quiet range too


def test_a_quiet_range_is_handed_out_when_asked() -> None:
    tap = Tap(EventFilter(stream_id="s-1"), buffer=10)
    tap.offer(Batch(0, 2, [event(2)]))
    tap.offer(Batch(2, 6, []))
    assert shape(tap.take()) == (0, 6, [2])  # appended to the queued batch
    tap.offer(Batch(6, 8, []))
    assert shape(tap.take()) == (6, 8, [])
    assert tap.take() is None


def test_a_range_that_does_not_follow_on_wakes_it() -> None:
    tap = Tap(EventFilter(stream_id="s-1"), buffer=10)
    tap.offer(Batch(0, 2, []))  # the first one: nothing to follow on from
    assert tap.ready.is_set()
    assert shape(tap.take()) == (0, 2, [])
    tap.offer(Batch(5, 5, []))  # a restarted tail's marker, past the tap's range
    assert tap.ready.is_set()
    assert shape(tap.take()) == (5, 5, [])


def test_a_full_queue_refuses_batches_and_the_next_one_shows_the_gap() -> None:
    tap = Tap(EventFilter(), buffer=3)
    tap.offer(Batch(0, 3, [event(1), event(2), event(3)]))
    tap.offer(Batch(3, 4, [event(4)]))  # refused: the queue holds 3
    tap.offer(Batch(4, 6, []))  # no merging across the refused range
    assert tap.dropped == 1
    assert shape(tap.take()) == (0, 3, [1, 2, 3])
    assert shape(tap.take()) == (4, 6, [])  # starts past 3: the subscriber reads 4 from the table
    assert tap.take() is None
