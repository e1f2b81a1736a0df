"""The command layer on real PostgreSQL: load, decide, append, one transaction."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from domain.commands import AddItem, CancelOrder, CreateOrder, SubmitOrder
from domain.errors import InvalidInput, RuleViolation
from domain.order import Order, OrderStatus
from eventstore import ConcurrencyConflict
from service.container import Services
from service.context import Principal, RequestContext, Role
from service.errors import Forbidden, NotFound

CUSTOMER = RequestContext.new(Principal("cus_1", Role.CUSTOMER), correlation_id="corr-1")
OTHER = RequestContext.new(Principal("cus_2", Role.CUSTOMER))
STAFF = RequestContext.new(Principal("staff_1", Role.STAFF))


async def create(services: Services, order_id: str = "o1") -> None:
    await services.execute(CUSTOMER, CreateOrder(customer_id="cus_1", order_id=order_id))


async def test_create_add_submit_with_exact_total(services: Services) -> None:
    created = await services.execute(CUSTOMER, CreateOrder(customer_id="cus_1"))
    order_id = created.aggregate.id
    assert order_id.startswith("ord_") and len(order_id) == 30
    await services.execute(CUSTOMER, AddItem(order_id=order_id, sku="A", quantity=1, unit_price="0.10"))
    await services.execute(CUSTOMER, AddItem(order_id=order_id, sku="B", quantity=1, unit_price="0.20"))
    submitted = await services.execute(CUSTOMER, SubmitOrder(order_id=order_id))
    assert submitted.aggregate.status is OrderStatus.SUBMITTED
    assert submitted.events[-1].data == {"total": "0.30"}
    assert submitted.stream_version == 4 and submitted.position == 4
    meta = submitted.events[-1].metadata
    assert meta["correlation_id"] == "corr-1" and meta["user_id"] == "cus_1"
    assert meta["service"] == "eventgraph" and meta["causation_id"]


async def test_forty_concurrent_add_items_lose_nothing(services: Services) -> None:
    await create(services)
    results = await asyncio.gather(
        *(
            services.execute(CUSTOMER, AddItem(order_id="o1", sku=f"SKU{i}", quantity=1, unit_price="1.00"))
            for i in range(40)
        )
    )
    stream = await services.reader.read_stream("order-o1")
    assert [e.version for e in stream] == list(range(1, 42))
    assert sorted(r.stream_version for r in results) == list(range(2, 42))
    order = await services.commands.aggregates.load("order-o1", lambda: Order("o1"))
    assert len(order.lines) == 40 and order.total == Decimal("40.00")


async def test_concurrent_writers_in_two_processes_lose_nothing(services: Services, dsn: str, settings) -> None:  # type: ignore[no-untyped-def]
    """Two command layers (as two processes) on one hot order: every add applies once."""
    other = await Services.start(settings, dsn)
    try:
        await create(services)
        calls = [
            (services if i % 2 else other).execute(
                CUSTOMER, AddItem(order_id="o1", sku=f"SKU{i}", quantity=1, unit_price="1.00")
            )
            for i in range(60)
        ]
        await asyncio.gather(*calls)
    finally:
        await other.close()
    stream = await services.reader.read_stream("order-o1")
    assert [e.version for e in stream] == list(range(1, 62))
    assert sorted(e.data["item_id"] for e in stream[1:]) == sorted(f"SKU{i}" for i in range(60))


def replayed() -> tuple[float, float]:
    """Aggregate loads so far in this process, and the events they folded (the metric)."""
    count = REGISTRY.get_sample_value("eventgraph_aggregate_events_replayed_count") or 0.0
    folded = REGISTRY.get_sample_value("eventgraph_aggregate_events_replayed_sum") or 0.0
    return count, folded


async def test_an_order_another_process_changed_is_caught_up_not_read_again(
    services: Services, dsn: str, settings  # type: ignore[no-untyped-def]
) -> None:
    """Behind a load balancer, the next command on an order often reaches a process whose
    kept order is stale. Its append conflicts; the retry folds only the events it missed
    onto the kept order, not the whole stream again (a kept order is a committed state)."""
    other = await Services.start(settings, dsn)
    try:
        await create(services)
        for i in range(10):
            await services.execute(CUSTOMER, AddItem(order_id="o1", sku=f"A{i}", quantity=1, unit_price="1.00"))
        await other.execute(CUSTOMER, AddItem(order_id="o1", sku="B", quantity=1, unit_price="2.00"))
        loads_before, folded_before = replayed()
        result = await services.execute(CUSTOMER, AddItem(order_id="o1", sku="C", quantity=1, unit_price="3.00"))
        loads, folded = replayed()
    finally:
        await other.close()
    assert result.stream_version == 13
    assert result.aggregate.total == Decimal("15.00") and len(result.aggregate.lines) == 12
    assert (loads - loads_before, folded - folded_before) == (1, 1)  # one catch-up, of event 12


async def test_stale_expected_version_is_a_typed_conflict_and_appends_nothing(services: Services) -> None:
    await create(services)
    await services.execute(CUSTOMER, AddItem(order_id="o1", sku="A", quantity=1, unit_price="1.00", expected_version=1))
    with pytest.raises(ConcurrencyConflict) as caught:
        await services.execute(
            CUSTOMER, AddItem(order_id="o1", sku="B", quantity=1, unit_price="1.00", expected_version=1)
        )
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert await services.reader.head_position() == 2


async def test_same_idempotency_key_twice_appends_once_and_returns_the_first_result(services: Services) -> None:
    await create(services)
    first, second = [
        await services.execute(
            CUSTOMER, AddItem(order_id="o1", sku="A", quantity=1, unit_price="1.00", idempotency_key="k-1")
        )
        for _ in range(2)
    ]
    assert second.repeated and not first.repeated
    assert second.position == first.position and second.stream_version == first.stream_version
    assert [e.event_id for e in second.events] == [e.event_id for e in first.events]
    assert await services.reader.head_position() == 2
    # Keys are per caller: another caller's same key is a new command.
    await services.execute(
        STAFF, AddItem(order_id="o1", sku="B", quantity=1, unit_price="1.00", idempotency_key="k-1")
    )
    assert await services.reader.head_position() == 3


async def test_concurrent_repeats_of_one_key_append_once(services: Services) -> None:
    await create(services)
    results = await asyncio.gather(
        *(
            services.execute(
                CUSTOMER, AddItem(order_id="o1", sku="A", quantity=1, unit_price="1.00", idempotency_key="k-2")
            )
            for _ in range(10)
        )
    )
    assert len({r.position for r in results}) == 1
    assert await services.reader.head_position() == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"quantity": 0, "unit_price": "1.00"}, InvalidInput),
        ({"quantity": 1, "unit_price": "-1.00"}, InvalidInput),
        ({"quantity": 1, "unit_price": "1.2.3"}, InvalidInput),
        ({"quantity": 1, "unit_price": "NaN"}, InvalidInput),
    ],
)
async def test_bad_input_appends_nothing(services: Services, kwargs: dict, error: type) -> None:  # type: ignore[type-arg]
    await create(services)
    with pytest.raises(error):
        await services.execute(CUSTOMER, AddItem(order_id="o1", sku="A", **kwargs))
    assert await services.reader.head_position() == 1


async def test_unknown_or_foreign_order_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        await services.execute(CUSTOMER, SubmitOrder(order_id="missing"))
    await create(services)
    with pytest.raises(NotFound):
        await services.execute(OTHER, AddItem(order_id="o1", sku="A", quantity=1, unit_price="1.00"))
    with pytest.raises(InvalidInput):
        await services.execute(CUSTOMER, SubmitOrder(order_id="not a valid id!"))
    with pytest.raises(Forbidden):
        await services.execute(OTHER, CreateOrder(customer_id="cus_1"))
    assert await services.reader.head_position() == 1


async def test_rule_violations_append_nothing(services: Services) -> None:
    await create(services)
    with pytest.raises(RuleViolation):
        await services.execute(CUSTOMER, SubmitOrder(order_id="o1"))
    with pytest.raises(RuleViolation):
        await create(services)
    assert await services.reader.head_position() == 1


async def test_staff_commands_any_order_and_order_at_time_travels(services: Services) -> None:
    await create(services)
    await services.execute(STAFF, AddItem(order_id="o1", sku="A", quantity=2, unit_price="3.00"))
    await services.execute(STAFF, CancelOrder(order_id="o1", reason="fraud check"))
    then = await services.orders.order_at(CUSTOMER, "o1", version=2)
    assert then.status is OrderStatus.DRAFT and then.total == Decimal("6.00") and then.version == 2
    now = await services.orders.order_at(CUSTOMER, "o1")
    assert now.created_at == then.created_at and now.updated_at > then.updated_at
    assert now.status is OrderStatus.CANCELLED and now.cancellation_reason == "fraud check"
    with pytest.raises(NotFound):
        await services.orders.order_at(OTHER, "o1")


async def test_repeated_create_without_an_order_id_returns_the_first_order(services: Services) -> None:
    first = await services.execute(CUSTOMER, CreateOrder(customer_id="cus_1", idempotency_key="new-order"))
    again = await services.execute(CUSTOMER, CreateOrder(customer_id="cus_1", idempotency_key="new-order"))
    assert again.repeated and again.aggregate.id == first.aggregate.id
    assert again.aggregate.customer_id == "cus_1" and again.stream_version == 1
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert await services.reader.head_position() == 1


async def test_commands_recover_after_the_database_drops_every_connection(services: Services, dsn: str) -> None:
    """After a restart-like cut, at most one append fails (StoreUnavailable, nothing half-written)
    and the pool is renewed: the next commands succeed and the stream stays contiguous."""
    import asyncpg

    from eventstore import StoreUnavailable

    await create(services)
    admin = await asyncpg.connect(dsn)
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    await admin.close()
    failures = 0
    for i in range(5):
        try:
            await services.execute(CUSTOMER, AddItem(order_id="o1", sku=f"S{i}", quantity=1, unit_price="1.00"))
        except StoreUnavailable:
            failures += 1
    assert failures <= 1
    stream = await services.reader.read_stream("order-o1")
    assert [e.version for e in stream] == list(range(1, 7 - failures))


async def test_a_command_postgres_refuses_fails_alone_in_its_stream_batch(services: Services) -> None:
    """Commands on one order run as one append; one whose data PostgreSQL cannot store
    (a NUL in the reason) fails as bad input, and the others on the order are appended."""
    from eventstore import UnstorableData

    await create(services)
    added, cancelled, added_too = await asyncio.gather(
        services.execute(CUSTOMER, AddItem(order_id="o1", sku="A", quantity=1, unit_price="1.00")),
        services.execute(CUSTOMER, CancelOrder(order_id="o1", reason="x\x00y")),
        services.execute(CUSTOMER, AddItem(order_id="o1", sku="B", quantity=1, unit_price="2.00")),
        return_exceptions=True,
    )
    assert isinstance(cancelled, InvalidInput | UnstorableData)
    assert not isinstance(added, BaseException) and not isinstance(added_too, BaseException)
    stream = await services.reader.read_stream("order-o1")
    assert [e.data.get("item_id") for e in stream] == [None, "A", "B"]


async def test_a_decision_that_raises_after_emitting_leaves_the_kept_order_as_it_was(services: Services) -> None:
    """A command whose decision emits and then fails changes nothing: not the store,
    not the order kept for the next command (its state and version)."""
    from domain.aggregate import aggregate_id_of
    from service.stream_commands import Command

    await create(services)
    await services.execute(CUSTOMER, AddItem(order_id="o1", sku="A", quantity=1, unit_price="1.00"))

    def add_then_fail(order: Order) -> None:
        order.add_item("B", 1, "2.00")
        raise RuntimeError("failed after emitting")

    with pytest.raises(RuntimeError):
        await services.commands.execute(
            Command("order-o1", lambda stream_id: Order(aggregate_id_of(stream_id)), add_then_fail, metadata={})
        )
    kept = services.commands.aggregates.kept("order-o1")
    assert kept is not None and kept.version == 2 and list(kept.lines) == ["A"]  # type: ignore[attr-defined]
    added = await services.execute(CUSTOMER, AddItem(order_id="o1", sku="C", quantity=1, unit_price="3.00"))
    assert added.stream_version == 3 and list(added.aggregate.lines) == ["A", "C"]
    assert added.aggregate.total == Decimal("4.00")
