"""The consumer group member on real Redis: per-order order, pending on failure, reclaim."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
import redis.asyncio as redis

from eventstore import RecordedEvent
from service.saga.consumer import StreamConsumer, dead_letter_key
from service.saga.reactions import Reactions
from tests.relay_support import eventually, private_stream_key
from tests.saga_support import running


class Recording(Reactions):
    """Handles payment events by noting them; fails each listed event id once."""

    group = "recording"
    handles = frozenset({"payment.charged.v1"})

    def __init__(self, fail_once: set[str], slow: dict[str, float] | None = None) -> None:
        self.fail_once, self.slow, self.seen = fail_once, slow or {}, []  # type: ignore[var-annotated]

    async def handle(self, event: RecordedEvent) -> None:
        name = event.data["name"]
        await asyncio.sleep(self.slow.get(name, 0))
        if name in self.fail_once:
            self.fail_once.discard(name)
            raise RuntimeError(f"{name} fails once")
        self.seen.append(name)


async def publish(client: redis.Redis, key: str, order_id: str, name: str, type_: str = "payment.charged.v1") -> None:
    event = {
        "event_id": str(uuid.uuid4()), "event_type": type_, "stream_id": f"wallet-{order_id}",
        "version": 1, "position": "1", "data": {"order_id": order_id, "name": name},
        "metadata": {"correlation_id": "c"}, "recorded_at": "2026-11-29T06:00:00+00:00",
    }
    await client.xadd(key, {"event": orjson.dumps(event)})


async def test_orders_proceed_concurrently_and_each_in_turn(broker) -> None:
    client, key = broker
    reactions = Recording(fail_once=set(), slow={"a1": 0.3})
    for order_id, name in (("A", "a1"), ("A", "a2"), ("B", "b1"), ("B", "b2")):
        await publish(client, key, order_id, name)
    await publish(client, key, "C", "ignored", type_="order.created.v2")
    consumer = StreamConsumer(client, reactions, stream_key=key, block_ms=100)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: _seen(reactions, 4))
    stop.set()
    await task
    assert reactions.seen.index("a1") < reactions.seen.index("a2")
    assert reactions.seen.index("b2") < reactions.seen.index("a1")  # B did not wait for slow A
    assert consumer.handled == 5 and (await client.xpending(key, "recording"))["pending"] == 0


async def test_a_failed_message_holds_back_its_order_until_reclaimed(broker) -> None:
    client, key = broker
    reactions = Recording(fail_once={"a1"})
    for order_id, name in (("A", "a1"), ("A", "a2"), ("B", "b1")):
        await publish(client, key, order_id, name)
    consumer = StreamConsumer(client, reactions, stream_key=key, block_ms=100, claim_idle=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: _seen(reactions, 1))
    assert reactions.seen == ["b1"]  # a2 waits behind the failed a1
    await eventually(lambda: _seen(reactions, 3))  # reclaimed after 0.3 s idle: a1, then a2
    stop.set()
    await task
    assert reactions.seen == ["b1", "a1", "a2"]
    assert (await client.xpending(key, "recording"))["pending"] == 0


async def _seen(reactions: Recording | Failing, count: int) -> bool:
    return len(reactions.seen) >= count


async def test_a_cancelled_consumer_always_stops(redis_url: str) -> None:
    """Killed at a random moment (often inside a blocking read), the consumer's task ends:
    redis-py can turn that cancellation into an error the retry loop would swallow."""
    class Idle:
        group = "probe"
        handles: frozenset[str] = frozenset()

        async def handle(self, event: object) -> None:
            raise AssertionError("no events are published here")

    client = redis.from_url(redis_url)
    key = private_stream_key()
    try:
        for _ in range(80):
            consumer = StreamConsumer(client, Idle(), stream_key=key, block_ms=100, claim_idle=0.3)
            task = asyncio.create_task(consumer.run(asyncio.Event()))
            await asyncio.sleep(random.uniform(0, 0.15))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3)
            assert done, "a cancelled consumer kept running"
            assert task.cancelled()
    finally:
        await client.delete(key)
        await client.aclose()


class Failing(Reactions):
    """Raises the error listed for an event's name on every attempt, until it is removed."""

    group = "failing"
    handles = frozenset({"payment.charged.v1"})

    def __init__(self, errors: dict[str, Exception]) -> None:
        self.errors, self.seen, self.attempts = errors, [], Counter()  # type: ignore[var-annotated]

    async def handle(self, event: RecordedEvent) -> None:
        name = event.data["name"]
        self.attempts[name] += 1
        if name in self.errors:
            raise self.errors[name]
        self.seen.append(name)


async def test_a_message_that_keeps_failing_is_parked_and_its_order_goes_on(broker) -> None:
    client, key = broker
    reactions = Failing({"a1": ValueError("no such currency")})
    async with consuming(broker, reactions, claim_idle=0.2, max_deliveries=3) as consumer:
        await eventually(lambda: _seen(reactions, 1))  # a2 went on once a1 was parked
        assert reactions.seen == ["a2"] and reactions.attempts["a1"] == 3
        parked = await client.xrange(dead_letter_key(key))
        assert len(parked) == 1
        fields = parked[0][1]
        assert orjson.loads(fields[b"event"])["data"]["name"] == "a1"  # the message as published
        assert fields[b"group"] == b"failing" and fields[b"deliveries"] == b"3"
        assert fields[b"error"] == b"ValueError: no such currency"
        assert (await client.xpending(key, "failing"))["pending"] == 0
        assert consumer.dead_lettered == 1


@pytest.mark.parametrize(
    "outage",
    [ConnectionRefusedError("connection refused"), asyncpg.CannotConnectNowError("the database system is starting up")],
    ids=["refused", "starting-up"],
)
async def test_a_message_failing_while_the_database_is_away_waits_for_it(broker, outage: Exception) -> None:
    client, key = broker
    reactions = Failing({"a1": outage})
    async with consuming(broker, reactions, claim_idle=0.1, max_deliveries=2):
        await eventually(lambda: _attempted(reactions, "a1", 5))
        assert await client.xlen(dead_letter_key(key)) == 0  # past max_deliveries, still pending
        assert reactions.seen == []
        del reactions.errors["a1"]  # the database is back
        await eventually(lambda: _seen(reactions, 2))
        assert reactions.seen == ["a1", "a2"]
        assert (await client.xpending(key, "failing"))["pending"] == 0


@contextlib.asynccontextmanager
async def consuming(
    broker: tuple[redis.Redis, str], reactions: Failing, **options: float
) -> AsyncIterator[StreamConsumer]:
    """Order A's messages a1 then a2 published, and a consumer running on them until the
    block ends; the dead letters are removed afterwards."""
    client, key = broker
    for name in ("a1", "a2"):
        await publish(client, key, "A", name)
    consumer = StreamConsumer(client, reactions, stream_key=key, block_ms=100, **options)  # type: ignore[arg-type]
    try:
        async with running(consumer):
            yield consumer
    finally:
        await client.delete(dead_letter_key(key))


async def _attempted(reactions: Failing, name: str, count: int) -> bool:
    return reactions.attempts[name] >= count


async def test_a_type_the_group_does_not_handle_is_acknowledged_without_decoding(broker) -> None:
    """The type in its own field decides: the JSON of an unhandled type is never read (this
    one is not JSON at all, and is not parked); a handled one is decoded and handled."""
    client, key = broker
    await client.xadd(key, {"event": b"{not json", "event_type": b"order.created.v2"})
    await publish(client, key, "A", "a1")
    reactions = Recording(fail_once=set())
    consumer = StreamConsumer(client, reactions, stream_key=key, block_ms=100)
    async with running(consumer):
        await eventually(lambda: _seen(reactions, 1))
        await eventually(lambda: _handled(consumer, 2))
    assert reactions.seen == ["a1"] and consumer.dead_lettered == 0
    assert (await client.xpending(key, "recording"))["pending"] == 0
    assert await client.xlen(dead_letter_key(key)) == 0


async def _handled(consumer: StreamConsumer, count: int) -> bool:
    return consumer.handled >= count


async def test_messages_of_unhandled_types_are_acknowledged_together_while_it_runs(broker) -> None:
    """Their acknowledgements wait for each other (about a second), but none stays pending:
    a later burst is acknowledged too, without the consumer stopping."""
    client, key = broker
    reactions = Recording(fail_once=set())
    consumer = StreamConsumer(client, reactions, stream_key=key, block_ms=100)
    async with running(consumer):
        for burst in range(2):
            for n in range(20):
                await publish(client, key, "C", f"ignored-{burst}-{n}", type_="order.created.v2")
            await publish(client, key, "A", f"a{burst}")
            await eventually(lambda burst=burst: _handled(consumer, 21 * (burst + 1)))  # type: ignore[misc]
            assert (await client.xpending(key, "recording"))["pending"] == 0
    assert reactions.seen == ["a0", "a1"]


async def test_a_message_that_is_not_an_event_is_parked_at_once(broker) -> None:
    client, key = broker
    await client.xadd(key, {"event": b"{not json"})
    await client.xadd(key, {"something": b"else"})
    reactions = Failing({})
    async with consuming(broker, reactions, claim_idle=30, max_deliveries=5) as consumer:
        await eventually(lambda: _seen(reactions, 2))  # a1 and a2, published after the two
        parked = await client.xrange(dead_letter_key(key))
        assert [fields.get(b"event") for _, fields in parked] == [b"{not json", None]
        assert parked[0][1][b"error"].startswith(b"JSONDecodeError")
        assert parked[1][1][b"error"] == b"ValueError: no `event` field"
        assert consumer.dead_lettered == 2
        assert (await client.xpending(key, "failing"))["pending"] == 0


class Noting(Reactions):
    """Notes each message's name once (a repeat is a duplicate, as with tracked reactions);
    fails on the names listed, once each."""

    handles = frozenset({"payment.charged.v1"})

    def __init__(self, group: str, fail_once: set[str] | None = None) -> None:
        self.group, self.fail_once, self.seen = group, fail_once or set(), []  # type: ignore[misc]
        self.calls = 0

    async def handle(self, event: RecordedEvent) -> bool:
        self.calls += 1
        name = event.data["name"]
        if name in self.fail_once:
            self.fail_once.discard(name)
            raise RuntimeError(f"{name} fails once")
        if name in self.seen:
            return False
        self.seen.append(name)
        return True


async def test_one_group_runs_every_reaction_to_a_message_and_acknowledges_it_when_all_have(broker) -> None:
    """The saga reads the stream once for all its contexts: a message two of them handle is
    acknowledged once both reactions committed; one that failed leaves it pending, and the
    redelivery finds the other's done (a duplicate to it)."""
    client, key = broker
    first, second = Noting("first"), Noting("second", fail_once={"a1"})
    for order_id, name in (("A", "a1"), ("B", "b1")):
        await publish(client, key, order_id, name)
    consumer = StreamConsumer(client, [first, second], group="together", stream_key=key, block_ms=100, claim_idle=0.3)
    async with running(consumer):
        await eventually(lambda: _noted(second, ["b1"]))
        assert sorted(first.seen) == ["a1", "b1"]
        assert (await client.xpending(key, "together"))["pending"] == 1  # a1: second failed
        await eventually(lambda: _noted(second, ["b1", "a1"]))  # reclaimed after 0.3 s
        await eventually(lambda: _no_pending(client, key, "together"))
    assert sorted(first.seen) == ["a1", "b1"] and first.calls == 3  # a1 twice: the second time a duplicate
    assert consumer.handled == 2
    assert [g["name"] for g in await client.xinfo_groups(key)] == [b"together"]


async def test_the_one_group_starts_where_the_groups_it_replaces_had_got(broker) -> None:
    """Upgrading from a group per context: the new group starts after what every old group
    had acknowledged (nothing any of them still owed is skipped), and the old groups go."""
    client, key = broker
    ids = []
    for name in ("m1", "m2", "m3", "m4", "m5"):
        await publish(client, key, "A", name)
        ids.append((await client.xrevrange(key, count=1))[0][0])
    await client.xgroup_create(key, "first", id=ids[1])  # read and acknowledged m1, m2
    await client.xgroup_create(key, "second", id="0")
    await client.xreadgroup("second", "old", {key: ">"}, count=4)  # m1..m4 delivered
    await client.xack(key, "second", ids[0], ids[1], ids[3])  # m3 still pending
    first, second = Noting("first"), Noting("second")
    consumer = StreamConsumer(client, [first, second], group="together", stream_key=key, block_ms=100)
    async with running(consumer):
        await eventually(lambda: _noted(second, ["m3", "m4", "m5"]))
        await eventually(lambda: _no_pending(client, key, "together"))
    assert first.seen == ["m3", "m4", "m5"]  # m4 again for `second` (its tracking absorbs such repeats)
    assert [g["name"] for g in await client.xinfo_groups(key)] == [b"together"]


async def _noted(reactions: Noting, names: list[str]) -> bool:
    return reactions.seen == names


async def _no_pending(client: redis.Redis, key: str, group: str) -> bool:
    return (await client.xpending(key, group))["pending"] == 0


async def test_a_message_is_parked_only_once_no_reaction_to_it_fails_for_a_passing_reason(broker) -> None:
    """Parking acknowledges the message for every context in the group: while one context's
    reaction waits out an outage, another's permanent failure does not park it (the first
    would never be retried); once the outage is over, it is parked naming the context at fault."""
    client, key = broker
    broken, waiting = Failing({"a1": ValueError("no such currency")}), Failing({"a1": ConnectionRefusedError()})
    broken.group, waiting.group = "broken", "waiting"  # type: ignore[misc]
    for name in ("a1", "a2"):
        await publish(client, key, "A", name)
    consumer = StreamConsumer(
        client, [broken, waiting], group="together", stream_key=key, block_ms=100, claim_idle=0.1, max_deliveries=2
    )
    try:
        async with running(consumer):
            await eventually(lambda: _attempted(broken, "a1", 4))
            assert await client.xlen(dead_letter_key(key)) == 0 and waiting.seen == []
            del waiting.errors["a1"]  # the outage is over
            await eventually(lambda: _seen(waiting, 2))
            await eventually(lambda: _no_pending(client, key, "together"))
        assert waiting.seen == ["a1", "a2"] and broken.seen == ["a2"]
        [(_, parked)] = await client.xrange(dead_letter_key(key))
        assert parked[b"group"] == b"together" and parked[b"context"] == b"broken"
        assert parked[b"error"] == b"ValueError: no such currency"
    finally:
        await client.delete(dead_letter_key(key))
