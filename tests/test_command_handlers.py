"""Commands as data: the handler table, the one execute path, and the idempotency
fingerprints keyed commands stored before commands were data (they must still match)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from api.commands import command_of
from api.orders import AddItemInput, CreateOrderInput
from domain.commands import AddItem, CancelOrder, CreateOrder, RemoveItem, SubmitOrder
from domain.errors import InvalidInput
from service.container import Services
from service.context import Principal, RequestContext, Role
from service.handlers import Plan, handler_table
from service.orders import ORDER_HANDLERS, add_item
from service.stream_commands import FINGERPRINT
from tests.conftest import Api

CUSTOMER = RequestContext.new(Principal("cus_1", Role.CUSTOMER))

# As the commands before this change stored them (service.orders._run's inputs).
STORED_FINGERPRINTS = [
    (CreateOrder(customer_id="cus_1", idempotency_key="k1"), "4f76691d5a1a1794925cc9e0eb49de80"),
    (CreateOrder(customer_id="cus_1", currency="EUR", order_id="o1", idempotency_key="k2"),
     "7ffb700bed47f5d1e85d28c99270a274"),
    (AddItem(order_id="o1", sku="A", quantity=2, unit_price=Decimal("1.50"), discount=Decimal("0"),
             expected_version=1, idempotency_key="k3"), "808e3d5684d1f386848004d44cded200"),
    (RemoveItem(order_id="o1", sku="A", idempotency_key="k4"), "8e6d738b5ef676e6423983d1647c24e9"),
    (SubmitOrder(order_id="o1", idempotency_key="k5"), "5012bdc7b22c9881c937ec371fdd63c0"),
    (CancelOrder(order_id="o1", reason="changed my mind", idempotency_key="k6"), "27614693fa6cef4930e944b82f9998dd"),
]


async def test_keyed_commands_store_the_fingerprints_earlier_versions_stored(services: Services) -> None:
    for command, fingerprint in STORED_FINGERPRINTS:
        if isinstance(command, SubmitOrder):  # an order to submit needs a line
            await services.execute(CUSTOMER, AddItem(order_id="o1", sku="B", quantity=1, unit_price="1.00"))
        result = await services.execute(CUSTOMER, command)
        assert {e.metadata[FINGERPRINT] for e in result.events} == {fingerprint}, command
        # The same key with the same input repeats: the stored fingerprint compares equal.
        again = await services.execute(CUSTOMER, command)
        assert again.repeated and [e.event_id for e in again.events] == [e.event_id for e in result.events]


async def test_a_key_reused_for_another_input_is_refused(services: Services) -> None:
    await services.execute(CUSTOMER, CreateOrder(customer_id="cus_1", order_id="o1"))
    await services.execute(CUSTOMER, AddItem(order_id="o1", sku="A", quantity=1, unit_price="1.00", idempotency_key="k"))
    with pytest.raises(InvalidInput, match="already used for another mutation or input"):
        await services.execute(CUSTOMER, AddItem(order_id="o1", sku="A", quantity=2, unit_price="1.00", idempotency_key="k"))
    with pytest.raises(InvalidInput, match="already used for another mutation or input"):
        await services.execute(CUSTOMER, RemoveItem(order_id="o1", sku="A", idempotency_key="k"))


def test_the_handler_table_is_keyed_by_each_handlers_annotated_command() -> None:
    table = handler_table(ORDER_HANDLERS)
    assert set(table) == {CreateOrder, AddItem, RemoveItem, SubmitOrder, CancelOrder}
    assert table[AddItem] is add_item


def test_two_handlers_for_one_command_are_refused() -> None:
    def another(ctx: RequestContext, command: AddItem) -> Plan[object]:  # type: ignore[type-var]
        raise AssertionError

    with pytest.raises(ValueError, match="AddItem has two handlers: add_item, another"):
        handler_table((*ORDER_HANDLERS, another))


async def test_a_command_without_a_handler_is_refused(services: Services) -> None:
    @dataclass(frozen=True)
    class Unknown:
        order_id: str

    with pytest.raises(LookupError, match="no handler registered for Unknown"):
        await services.execute(CUSTOMER, Unknown("o1"))


def test_an_input_becomes_its_command_with_nulls_left_to_the_commands_defaults() -> None:
    created = command_of(CreateOrderInput(customer_id="cus_1", currency=None), CreateOrder)  # type: ignore[arg-type]
    assert created == CreateOrder(customer_id="cus_1", currency="USD", order_id=None)
    added = command_of(
        AddItemInput(order_id="o1", sku="A", quantity=2, unit_price=Decimal("1.50"), discount=None, idempotency_key="k"),  # type: ignore[arg-type]
        AddItem,
    )
    assert added == AddItem(order_id="o1", sku="A", quantity=2, unit_price=Decimal("1.50"), idempotency_key="k")


async def test_an_empty_currency_is_refused_like_any_unknown_code(api: Api) -> None:
    """Contract 3: a code that is not ISO 4217 is BAD_USER_INPUT (the mutation once read "" as USD)."""
    created = await api.gql('mutation { createOrder(input: {customerId: "cus_1", currency: ""}) { order { id } } }')
    assert created["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "unknown currency" in created["errors"][0]["message"]
    usd = await api.gql('mutation { createOrder(input: {customerId: "cus_1", currency: null}) { order { currency } } }')
    assert usd["data"]["createOrder"]["order"]["currency"] == "USD"
