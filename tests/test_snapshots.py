"""Snapshots: a load through them equals the full fold at every version, whatever the
commands were (refused ones included), across state revisions, upcasters and two
processes writing at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import InvalidInput, RuleViolation
from domain.order import Order, order_stream
from domain.product import Product, product_stream
from domain.snapshots import capture
from eventstore import AppendRequest, NewEvent, StreamWrite
from eventstore.snapshots import SnapshotStore
from service.aggregates import Aggregates
from service.container import Services
from service.settings import Settings
from service.snapshots import SnapshotPolicy, Snapshots
from service.stream_commands import Command, StreamCommands

ROOT = Path(__file__).resolve().parent.parent
OFTEN = SnapshotPolicy(after_folding=2, every=3)
META = {"correlation_id": "snapshots-test"}

Op = tuple[str, int, int]  # (command, order number, quantity)

ops = st.lists(
    st.tuples(st.sampled_from(["restock", "reserve", "release", "consume"]), st.integers(0, 4), st.integers(0, 6)),
    max_size=25,
)


def decide(op: Op) -> Any:
    name, order, quantity = op
    order_id = f"ord_{order}"
    if name == "restock":
        return lambda p: p.restock(quantity)
    if name == "reserve":
        return lambda p: p.reserve(order_id, [{"sku": p.sku, "quantity": quantity}])
    if name == "release":
        return lambda p: p.release(order_id)
    return lambda p: p.consume(order_id)


async def run_commands(commands: StreamCommands, sku: str, script: list[Op]) -> None:
    stream = product_stream(sku)
    register = lambda p: p.register("Mug", "4.50", "USD", 3)  # noqa: E731 - one of the steps
    for step in [register, *map(decide, script)]:
        try:
            await commands.execute(Command(stream, lambda s: Product(sku), step, META))
        except (RuleViolation, InvalidInput):
            pass  # refused (another process registered it first, too little stock, ...): nothing appended


async def assert_loads_equal_the_full_fold(services: Services, stream: str, new: Any) -> int:
    """Every version through snapshots (a cold cache each time) equals the plain fold."""
    plain = Aggregates(services.reader)
    through = Aggregates(services.reader, Snapshots(SnapshotStore(services.pool), OFTEN))
    head = (await plain.load(stream, new)).version
    for version in range(1, head + 1):
        expected = capture(await plain.load(stream, new, to_version=version))
        assert capture(await through.load(stream, new, to_version=version)) == expected, version
    assert capture(await through.load(stream, new)) == capture(await plain.load(stream, new))
    return head


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops)
def test_loads_through_snapshots_equal_the_full_fold(database_url: str, script: list[Op]) -> None:
    async def scenario() -> None:
        services = await Services.start(Settings(run_projections=False, run_relay=False), database_url)
        try:
            snapshots = Snapshots(SnapshotStore(services.pool), OFTEN)
            sku = f"SNAP-{uuid.uuid4().hex[:8]}"
            await run_commands(StreamCommands(services.appender, services.reader, snapshots), sku, script)
            await snapshots.close()
            head = await assert_loads_equal_the_full_fold(services, product_stream(sku), lambda: Product(sku))
            stored = await services.pool.fetch(
                "SELECT version, state FROM snapshots WHERE stream_id = $1", product_stream(sku)
            )
            assert (head >= 3) == bool(stored)  # crossing version 3 took one
            plain = Aggregates(services.reader)
            for row in stored:  # each stored state is the committed state at its version
                at = await plain.load(product_stream(sku), lambda: Product(sku), to_version=row["version"])
                assert row["state"] == capture(at)
        finally:
            await services.close()

    asyncio.run(scenario())


async def test_a_snapshot_of_another_revision_is_ignored_and_replaced(services: Services) -> None:
    snapshots = Snapshots(SnapshotStore(services.pool), OFTEN)
    commands = StreamCommands(services.appender, services.reader, snapshots)
    await run_commands(commands, "REV", [("restock", 0, 1)] * 7)
    await snapshots.close()
    stream = product_stream("REV")
    assert await services.pool.fetchval("SELECT max(version) FROM snapshots WHERE stream_id = $1", stream) == 6

    class ProductV2(Product):  # the same events, a state of another shape
        SNAPSHOT_REVISION = 2

    ProductV2.__name__ = "Product"
    # A revision-1 state that would be wrong if used: the load must not read it.
    await services.pool.execute(
        "UPDATE snapshots SET state = jsonb_set(state, '{available}', '999') WHERE stream_id = $1", stream
    )
    fresh = Snapshots(SnapshotStore(services.pool), OFTEN)
    loaded = await Aggregates(services.reader, fresh).load(stream, lambda: ProductV2("REV"))
    assert loaded.available == 3 + 7 and loaded.version == 8
    await fresh.close()  # the load folded 8 > 2 events: a revision-2 snapshot is taken
    revisions = await services.pool.fetch("SELECT revision, version FROM snapshots WHERE stream_id = $1", stream)
    assert {(r["revision"], r["version"]) for r in revisions} >= {(2, 8)}


async def test_upcasters_apply_to_the_events_after_a_snapshot(services: Services) -> None:
    stream = order_stream("ord_old")
    old = [NewEvent("order.created.v1", {"customer_id": "cus_1"}, META)]
    old += [NewEvent("item.added.v1", {"item_id": f"S{i}", "quantity": 1, "price": 1.25}, META) for i in range(4)]
    await services.appender.append(AppendRequest([StreamWrite(stream, old, 0, owner="cus_1")]))
    snapshots = Snapshots(SnapshotStore(services.pool), OFTEN)
    await Aggregates(services.reader, snapshots).load(stream, lambda: Order("ord_old"))
    await snapshots.close()  # taken at version 5 (a load that folded 5 > 2)
    later = [NewEvent("item.added.v1", {"item_id": f"T{i}", "quantity": 2, "price": 0.1}, META) for i in range(3)]
    await services.appender.append(AppendRequest([StreamWrite(stream, later, 5, owner="cus_1")]))
    head = await assert_loads_equal_the_full_fold(services, stream, lambda: Order("ord_old"))
    assert head == 8
    order = await Aggregates(services.reader, Snapshots(SnapshotStore(services.pool))).load(stream, lambda: Order("ord_old"))
    assert str(order.total) == "5.60" and order.currency == "USD"


async def test_time_travel_by_instant_starts_from_a_snapshot_at_or_before_it(services: Services) -> None:
    snapshots = Snapshots(SnapshotStore(services.pool), OFTEN)
    await run_commands(StreamCommands(services.appender, services.reader, snapshots), "TT", [("restock", 0, 2)] * 8)
    await snapshots.close()
    stream = product_stream("TT")
    plain = Aggregates(services.reader)
    through = Aggregates(services.reader, Snapshots(SnapshotStore(services.pool), OFTEN))
    for row in await services.pool.fetch("SELECT version, recorded_at FROM events WHERE stream_id = $1", stream):
        at = row["recorded_at"]
        assert capture(await through.load(stream, lambda: Product("TT"), until=at)) == capture(
            await plain.load(stream, lambda: Product("TT"), until=at)
        )


WRITER = r"""
import asyncio, sys
from service.container import Services
from service.settings import Settings
from service.snapshots import SnapshotPolicy, Snapshots
from eventstore.snapshots import SnapshotStore
from service.stream_commands import StreamCommands
from tests.test_snapshots import run_commands

async def main(dsn, name):
    services = await Services.start(Settings(run_projections=False, run_relay=False), dsn)
    snapshots = Snapshots(SnapshotStore(services.pool), SnapshotPolicy(after_folding=2, every=2))
    commands = StreamCommands(services.appender, services.reader, snapshots)
    script = [("restock", 0, 1), ("reserve", int(name), 1), ("release", int(name), 1)] * 15
    try:
        await run_commands(commands, "SHARED", script)
    finally:
        await snapshots.close()
        await services.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_two_processes_writing_one_stream_keep_every_snapshot_exact(dsn: str) -> None:
    writers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, dsn, str(n), cwd=ROOT)
        for n in (1, 2)
    ]
    assert [await w.wait() for w in writers] == [0, 0]
    services = await Services.start(Settings(run_projections=False, run_relay=False), dsn)
    try:
        stream = product_stream("SHARED")
        await assert_loads_equal_the_full_fold(services, stream, lambda: Product("SHARED"))
        plain = Aggregates(services.reader)
        stored = await services.pool.fetch("SELECT version, state FROM snapshots WHERE stream_id = $1", stream)
        assert len(stored) > 5
        for row in stored:
            at = await plain.load(stream, lambda: Product("SHARED"), to_version=row["version"])
            assert row["state"] == capture(at), row["version"]
    finally:
        await services.close()


def test_snapshots_cli_reports_and_prunes(database_url: str) -> None:
    async def seed() -> None:
        services = await Services.start(Settings(run_projections=False, run_relay=False), database_url)
        try:
            await services.pool.execute("DELETE FROM snapshots")  # the run's database: other tests' too
            snapshots = Snapshots(SnapshotStore(services.pool), SnapshotPolicy(after_folding=1000, every=2))
            commands = StreamCommands(services.appender, services.reader, snapshots)
            for _ in range(9):  # one at a time: the writer keeps only the newest pending state of a stream
                await run_commands(commands, "CLI", [("restock", 0, 1)])
                await snapshots.flush()
            await snapshots.close()
        finally:
            await services.close()

    asyncio.run(seed())
    cli = str(Path(sys.executable).parent / "eventgraph")
    env = {"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    status = subprocess.run([cli, "snapshots", "status"], env=env, capture_output=True, text=True, check=True)
    [line] = [line for line in status.stdout.splitlines() if line.startswith("Product")]
    assert line.split()[:4] == ["Product", "1", "5", "1"]  # versions 2, 4, 6, 8, 10 of one stream
    pruned = subprocess.run([cli, "snapshots", "prune", "--keep", "2"], env=env, capture_output=True, text=True, check=True)
    assert "deleted 3 snapshots" in pruned.stdout

    async def versions() -> list[int]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT version FROM snapshots WHERE stream_id = 'product-CLI' ORDER BY version")
            return [r["version"] for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(versions()) == [8, 10]


async def test_a_refused_command_never_reaches_a_snapshot(services: Services) -> None:
    snapshots = Snapshots(SnapshotStore(services.pool), SnapshotPolicy(after_folding=1000, every=1))
    commands = StreamCommands(services.appender, services.reader, snapshots)
    stream = product_stream("REF")
    await run_commands(commands, "REF", [])

    def restock_then_refuse(product: Product) -> None:
        product.restock(5)  # emitted and applied to the working state...
        raise RuleViolation("refused after emitting")  # ...then refused: nothing is appended

    with pytest.raises(RuleViolation):
        await commands.execute(Command(stream, lambda s: Product("REF"), restock_then_refuse, META))
    await commands.execute(Command(stream, lambda s: Product("REF"), lambda p: p.restock(1), META))
    await snapshots.close()
    rows = await services.pool.fetch("SELECT version, state FROM snapshots WHERE stream_id = $1", stream)
    plain = Aggregates(services.reader)
    for row in rows:
        at = await plain.load(stream, lambda: Product("REF"), to_version=row["version"])
        assert row["state"] == capture(at), row["version"]
    assert {r["version"] for r in rows} == {1, 2}
