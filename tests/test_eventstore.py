"""The event store on real PostgreSQL: atomic appends, conflicts, keys, upcasting, global order."""

from __future__ import annotations

import asyncio
import random
from uuid import uuid4

import asyncpg
import pytest

from eventstore import (
    NO_STREAM,
    NOTIFY_CHANNEL,
    AlreadyProcessed,
    Appender,
    AppendRequest,
    ConcurrencyConflict,
    DuplicateRequest,
    EventReader,
    IdempotencyRecord,
    NewEvent,
    StoreUnavailable,
    StreamWrite,
    Tracking,
    UnstorableData,
)
from eventstore.pool import create_pool
from service.container import build_upcasters


def ev(type_: str = "thing.happened.v1", **data: object) -> NewEvent:
    return NewEvent(type=type_, data=data, metadata={"correlation_id": "c1"})


@pytest.fixture
async def pool(dsn: str):  # type: ignore[no-untyped-def]
    pool = await create_pool(dsn, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture
async def store(pool):  # type: ignore[no-untyped-def]
    appender = Appender(pool)
    yield appender, EventReader(pool, build_upcasters())
    await appender.close()


async def test_append_to_several_streams_is_atomic_and_versioned(store) -> None:  # type: ignore[no-untyped-def]
    appender, reader = store
    result = await appender.append(
        AppendRequest([StreamWrite("a-1", [ev(n=1), ev(n=2)], NO_STREAM), StreamWrite("b-1", [ev(n=3)])])
    )
    assert [e.position for e in result.events] == [1, 2, 3]
    assert [(e.stream_id, e.version) for e in result.events] == [("a-1", 1), ("a-1", 2), ("b-1", 1)]
    assert result.stream_versions == {"a-1": 2, "b-1": 1}
    stored = await reader.read_stream("a-1")
    assert [e.data["n"] for e in stored] == [1, 2]
    assert await reader.head_position() == 3


async def test_conflict_writes_nothing_in_any_stream(store) -> None:  # type: ignore[no-untyped-def]
    appender, reader = store
    await appender.append(AppendRequest([StreamWrite("a-1", [ev()])]))
    with pytest.raises(ConcurrencyConflict) as caught:
        await appender.append(
            AppendRequest([StreamWrite("b-1", [ev()]), StreamWrite("a-1", [ev()], expected_version=0)])
        )
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    assert await reader.head_position() == 1
    assert await reader.read_stream("b-1") == []


async def test_refused_request_does_not_disturb_its_batch(store) -> None:  # type: ignore[no-untyped-def]
    appender, reader = store
    results = await asyncio.gather(
        appender.append(AppendRequest([StreamWrite("s-1", [ev(n=1)], NO_STREAM)])),
        appender.append(AppendRequest([StreamWrite("s-1", [ev(n=2)], NO_STREAM)])),
        appender.append(AppendRequest([StreamWrite("s-2", [ev(n=3)])])),
        return_exceptions=True,
    )
    assert isinstance(results[1], ConcurrencyConflict)
    assert [e.data["n"] for e in await reader.read_all()] == [1, 3]


async def test_versions_carry_across_one_batch_past_a_refusal(store) -> None:  # type: ignore[no-untyped-def]
    appender, reader = store
    results = await asyncio.gather(
        appender.append(AppendRequest([StreamWrite("s-1", [ev(n=1), ev(n=2)])])),
        appender.append(AppendRequest([StreamWrite("s-1", [ev(n=3)], NO_STREAM)])),
        appender.append(AppendRequest([
            StreamWrite("s-1", [ev(n=4)], expected_version=2),
            StreamWrite("s-2", [ev(n=5)]),
            StreamWrite("s-1", [ev(n=6)]),
        ])),
        appender.append(AppendRequest([StreamWrite("s-1", [ev(n=7)], expected_version=4)])),
        return_exceptions=True,
    )
    assert isinstance(results[1], ConcurrencyConflict)
    assert (results[1].expected_version, results[1].actual_version) == (0, 2)
    stored = await reader.read_all()
    assert [(e.position, e.stream_id, e.version, e.data["n"]) for e in stored] == [
        (1, "s-1", 1, 1), (2, "s-1", 2, 2), (3, "s-1", 3, 4), (4, "s-2", 1, 5), (5, "s-1", 4, 6),
        (6, "s-1", 5, 7),
    ]
    assert [e.position for e in results[2].events] == [3, 4, 5]
    assert results[3].stream_versions == {"s-1": 5}


async def test_idempotency_key_is_stored_with_the_append(store) -> None:  # type: ignore[no-untyped-def]
    appender, reader = store
    key = IdempotencyRecord("customer:cus_1", "k1", 0, 2)
    first = await appender.append(AppendRequest([StreamWrite("s-1", [ev(), ev()])], idempotency=[key]))
    with pytest.raises(DuplicateRequest) as caught:
        await appender.append(AppendRequest([StreamWrite("s-1", [ev()])], idempotency=[key]))
    outcome = caught.value.outcomes[("customer:cus_1", "k1")]
    assert (outcome.first_position, outcome.last_position) == (1, 2)
    assert outcome.stream_versions == {"s-1": 2}
    assert first.last_position == 2 and await reader.head_position() == 2


async def test_tracking_makes_a_consumer_exactly_once(store) -> None:  # type: ignore[no-untyped-def]
    appender, reader = store
    request = AppendRequest([StreamWrite("s-1", [ev()])], tracking=Tracking("payments", "evt-1"))
    await appender.append(request)
    with pytest.raises(AlreadyProcessed):
        await appender.append(request)
    assert await reader.head_position() == 1


async def test_every_append_has_its_outbox_row(store, pool) -> None:  # type: ignore[no-untyped-def]
    appender, _ = store
    await appender.append(AppendRequest([StreamWrite("s-1", [ev(), ev()])]))
    assert [r[0] for r in await pool.fetch("SELECT position FROM outbox ORDER BY 1")] == [1, 2]


async def test_commit_notifies_with_the_last_position(store, dsn) -> None:  # type: ignore[no-untyped-def]
    appender, _ = store
    listener = await asyncpg.connect(dsn)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        await appender.append(AppendRequest([StreamWrite("s-1", [ev(), ev(), ev()])]))
        assert await asyncio.wait_for(received.get(), 5) == "3"
    finally:
        await listener.close()


async def test_v1_rows_are_upcast_on_read_and_never_rewritten(store, pool) -> None:  # type: ignore[no-untyped-def]
    _, reader = store
    await pool.execute(
        """INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, recorded_at) VALUES
        (1, $1, 'order-o1', 1, 'order.created.v1', '{"customer_id": "cus_1"}', '{}', now()),
        (2, $2, 'order-o1', 2, 'item.added.v1', '{"item_id": "A", "quantity": 2, "price": 19.99}', '{}', now()),
        (3, $3, 'order-o1', 3, 'item.added.v1', '{"item_id": "B", "quantity": 1, "price": "5"}', '{}', now())""",
        uuid4(), uuid4(), uuid4(),
    )
    events = await reader.read_stream("order-o1")
    assert [(e.type, dict(e.data)) for e in events] == [
        ("order.created.v2", {"customer_id": "cus_1", "currency": "USD"}),
        ("item.added.v2", {"item_id": "A", "quantity": 2, "price": "19.99", "discount": "0"}),
        ("item.added.v2", {"item_id": "B", "quantity": 1, "price": "5", "discount": "0"}),
    ]
    assert [e.position for e in await reader.read_all(types=["item.added.v2"])] == [2, 3]
    stored = await pool.fetch("SELECT type FROM events ORDER BY position")
    assert [r["type"] for r in stored] == ["order.created.v1", "item.added.v1", "item.added.v1"]


async def test_global_order_is_gap_free_under_concurrent_writers(dsn: str) -> None:
    """8 writers in 4 'processes' (own pools and appenders) for a few seconds while a reader
    tails the log: it sees exactly the final table, each event once, positions 1..N."""
    pools = [await create_pool(dsn, max_size=4) for _ in range(4)]
    appenders = [Appender(p) for p in pools]
    reader_pool = await create_pool(dsn, max_size=2)
    reader = EventReader(reader_pool, build_upcasters())
    stop = asyncio.Event()
    writers_done = asyncio.Event()
    written = 0

    async def writer(index: int) -> None:
        nonlocal written
        appender = appenders[index % len(appenders)]
        rng = random.Random(index)
        while not stop.is_set():
            stream = f"s-{rng.randrange(200)}"
            count = rng.randint(1, 3)
            await appender.append(AppendRequest([StreamWrite(stream, [ev(w=index) for _ in range(count)])]))
            written += count

    seen: list[int] = []

    async def tail() -> None:
        cursor = 0
        while True:
            page = await reader.read_all(after=cursor, limit=500)
            seen.extend(e.position for e in page)
            if page:
                cursor = page[-1].position
            elif writers_done.is_set() and cursor == await reader.head_position():
                return
            else:
                await asyncio.sleep(0.001)

    tasks = [asyncio.create_task(writer(i)) for i in range(8)]
    tailer = asyncio.create_task(tail())
    await asyncio.sleep(4)
    stop.set()
    await asyncio.gather(*tasks)
    writers_done.set()
    await asyncio.wait_for(tailer, 30)
    final = [r[0] for r in await reader_pool.fetch("SELECT position FROM events ORDER BY position")]
    assert written > 500
    assert seen == final == list(range(1, written + 1))
    for appender in appenders:
        await appender.close()
    for p in (*pools, reader_pool):
        await p.close()


async def test_killed_connections_lose_no_acknowledged_append(store, pool, dsn) -> None:  # type: ignore[no-untyped-def]
    """Backends are terminated while writers append: every append that reported success is
    stored exactly once, failed ones left nothing, positions stay contiguous, and the store
    keeps working afterwards."""
    appender, reader = store
    acknowledged: list[str] = []
    failed = 0
    stop = asyncio.Event()

    async def writer(index: int) -> None:
        nonlocal failed
        n = 0
        while not stop.is_set():
            marker = f"{index}-{n}"
            n += 1
            try:
                await appender.append(AppendRequest([StreamWrite(f"s-{index}", [ev(marker=marker)])]))
                acknowledged.append(marker)
            except StoreUnavailable:
                failed += 1

    admin = await asyncpg.connect(dsn)
    tasks = [asyncio.create_task(writer(i)) for i in range(6)]
    try:
        for _ in range(10):
            await asyncio.sleep(0.15)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name <> 'keep'"
            )
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    rows = await admin.fetch("SELECT position, data->>'marker' AS marker FROM events ORDER BY position")
    await admin.close()
    stored = [r["marker"] for r in rows]
    assert failed > 0, "no append was interrupted; the test proved nothing"
    assert len(stored) == len(set(stored))
    assert set(acknowledged) <= set(stored)
    assert [r["position"] for r in rows] == list(range(1, len(rows) + 1))
    result = await appender.append(AppendRequest([StreamWrite("after", [ev()])]))
    assert result.last_position == len(rows) + 1


def test_event_ids_are_time_ordered_uuid7() -> None:
    import time

    from eventstore.records import time_ordered_id

    first = time_ordered_id()
    time.sleep(0.002)
    later = [time_ordered_id() for _ in range(1000)]
    assert {first.version, *(i.version for i in later)} == {7}
    assert all(first < i for i in later)  # a later millisecond sorts after
    assert len(set(later)) == 1000
    assert abs((first.int >> 80) - time.time_ns() // 1_000_000) < 5_000


def test_time_ordered_text_is_a_uuid7_in_canonical_form() -> None:
    import time
    from uuid import UUID

    from eventstore.records import time_ordered_text

    first = time_ordered_text()
    time.sleep(0.002)
    later = [time_ordered_text() for _ in range(1000)]
    assert all(str(UUID(text)) == text and UUID(text).version == 7 for text in [first, *later])
    assert all(first < text for text in later)  # as text too: ids in logs sort by time
    assert len(set(later)) == 1000


@pytest.mark.parametrize(
    "bad",
    [
        StreamWrite("s-bad", [ev(text="a\x00b")]),  # jsonb refuses \u0000 (22P05)
        StreamWrite("s-\x00", [ev()]),
        StreamWrite("s-bad", [NewEvent("t.v1", {}, {"correlation_id": "\x00"})]),
        StreamWrite("s-bad", [ev(text="\ud800")]),  # a lone surrogate: not even JSON can encode it
    ],
    ids=["data", "stream id", "metadata", "surrogate"],
)
async def test_a_request_postgres_refuses_fails_alone(store, pool, bad: StreamWrite) -> None:  # type: ignore[no-untyped-def]
    """One batch, one request PostgreSQL cannot store: it fails as UnstorableData and the
    others, before and after it, are appended in order with no gap."""
    appender, reader = store
    requests = [AppendRequest([StreamWrite(f"s-{n}", [ev(n=n)])]) for n in range(9)]
    requests.insert(5, AppendRequest([bad]))
    results = await asyncio.gather(*(appender.append(r) for r in requests), return_exceptions=True)
    assert isinstance(results.pop(5), UnstorableData)
    assert not [r for r in results if isinstance(r, BaseException)], results
    stored = await reader.read_all()
    assert [e.data["n"] for e in stored] == list(range(9))
    assert [e.position for e in stored] == list(range(1, 10))
    assert (pool.busy, pool.size) == (0, pool.idle)


async def test_close_answers_every_pending_append(dsn: str) -> None:
    """Appends waiting on the append lock (held by another session) when the appender is
    closed: each fails with StoreUnavailable, none is left waiting, nothing is half-written;
    an append after close fails at once."""
    from eventstore.appender import APPEND_LOCK_KEY

    pool = await create_pool(dsn, min_size=1, max_size=4)
    appender = Appender(pool, in_flight=2)
    blocker = await asyncpg.connect(dsn)
    try:
        await blocker.execute("SELECT pg_advisory_lock($1)", APPEND_LOCK_KEY)
        pending = [asyncio.create_task(appender.append(AppendRequest([StreamWrite("s-1", [ev(n=n)])]))) for n in range(5)]
        for _ in range(200):  # until a batch is inside PostgreSQL, waiting for the lock
            if await blocker.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("no append reached the lock")
        await asyncio.wait_for(appender.close(), 10)
        results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 10)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        # answered only once no batch waits on the server any more: none can commit later
        assert await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == 0
        with pytest.raises(StoreUnavailable):
            await appender.append(AppendRequest([StreamWrite("s-2", [ev()])]))
        await blocker.execute("SELECT pg_advisory_unlock($1)", APPEND_LOCK_KEY)
        assert await blocker.fetchval("SELECT count(*) FROM events") == 0
        assert pool.busy == 0
    finally:
        await blocker.close()
        await pool.close()


async def test_an_appender_task_cancelled_from_outside_is_replaced(store) -> None:  # type: ignore[no-untyped-def]
    appender, reader = store
    await appender.append(AppendRequest([StreamWrite("s-1", [ev(n=1)])]))
    for task in appender._tasks:  # e.g. a supervisor cancelling stray tasks
        task.cancel()
    await asyncio.gather(*appender._tasks, return_exceptions=True)
    result = await asyncio.wait_for(appender.append(AppendRequest([StreamWrite("s-1", [ev(n=2)])])), 10)
    assert result.last_position == 2
