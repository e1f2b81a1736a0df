"""Wallet aggregate: deposits, and one payment decision per order."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import InvalidInput, RuleViolation
from domain.wallet import (
    CURRENCY_MISMATCH,
    INSUFFICIENT_FUNDS,
    ORDER_NOT_PAYABLE,
    FundsDeposited,
    PaymentCharged,
    PaymentFailed,
    PaymentRefunded,
    Wallet,
)


def given(*events: object) -> Wallet:
    wallet = Wallet("cus_1")
    for version, event in enumerate(events, start=1):
        wallet.replay(event, version)  # type: ignore[arg-type]
    return wallet


def test_deposit_sets_currency_and_balance() -> None:
    wallet = Wallet("cus_1")
    wallet.deposit("10.00", "USD")
    wallet.deposit(Decimal("0.50"), "USD")
    assert wallet.take_changes() == [FundsDeposited(Decimal("10.00"), "USD"), FundsDeposited(Decimal("0.50"), "USD")]
    assert wallet.balance == Decimal("10.50") and wallet.currency == "USD"


@pytest.mark.parametrize(("amount", "currency"), [("0", "USD"), ("-1", "USD"), ("1.001", "USD"), ("NaN", "USD"), ("1", "ABC")])
def test_deposit_refuses_bad_amounts(amount: str, currency: str) -> None:
    with pytest.raises(InvalidInput):
        Wallet("cus_1").deposit(amount, currency)


def test_deposit_in_another_currency_is_refused() -> None:
    with pytest.raises(RuleViolation):
        given(FundsDeposited(Decimal(5), "USD")).deposit("1", "EUR")


def test_charges_an_order_once() -> None:
    wallet = given(FundsDeposited(Decimal("10.00"), "USD"))
    wallet.pay_for_order("ord_1", Decimal("7.50"), "USD")
    wallet.pay_for_order("ord_1", Decimal("7.50"), "USD")
    assert wallet.take_changes() == [PaymentCharged("ord_1", Decimal("7.50"))]
    assert wallet.balance == Decimal("2.50")


@pytest.mark.parametrize(
    ("amount", "currency", "payable", "reason"),
    [("10.01", "USD", True, INSUFFICIENT_FUNDS), ("1", "EUR", True, CURRENCY_MISMATCH), ("1", "USD", False, ORDER_NOT_PAYABLE)],
)
def test_refusals_are_recorded_once(amount: str, currency: str, payable: bool, reason: str) -> None:
    wallet = given(FundsDeposited(Decimal("10.00"), "USD"))
    wallet.pay_for_order("ord_1", Decimal(amount), currency, payable=payable)
    wallet.pay_for_order("ord_1", Decimal("1"), "USD")  # a redelivery decides nothing new
    assert wallet.take_changes() == [PaymentFailed("ord_1", reason)]
    assert wallet.balance == Decimal("10.00")


def test_an_empty_wallet_cannot_pay() -> None:
    wallet = Wallet("cus_1")
    wallet.pay_for_order("ord_1", Decimal("1.00"), "USD")
    assert wallet.take_changes() == [PaymentFailed("ord_1", INSUFFICIENT_FUNDS)]


def test_closing_a_charged_order_refunds_it_once() -> None:
    wallet = given(FundsDeposited(Decimal("50.00"), "USD"), PaymentCharged("ord_1", Decimal("20.00")))
    wallet.close_order("ord_1")
    assert wallet.take_changes() == [PaymentRefunded("ord_1", Decimal("20.00"))]
    assert wallet.balance == Decimal("50.00")
    wallet.close_order("ord_1")  # redelivered: nothing more
    wallet.pay_for_order("ord_1", Decimal("20.00"), "USD")  # a late reservation: not again
    assert wallet.take_changes() == [] and wallet.balance == Decimal("50.00")


def test_closing_an_order_before_its_charge_refuses_the_charge() -> None:
    wallet = given(FundsDeposited(Decimal("50.00"), "USD"))
    wallet.close_order("ord_1")
    assert wallet.take_changes() == [PaymentFailed("ord_1", ORDER_NOT_PAYABLE)]
    wallet.pay_for_order("ord_1", Decimal("20.00"), "USD")  # decided on a stale view of the order
    assert wallet.take_changes() == [] and wallet.balance == Decimal("50.00")


def test_closing_a_refused_order_changes_nothing() -> None:
    wallet = given(FundsDeposited(Decimal("5.00"), "USD"), PaymentFailed("ord_1", INSUFFICIENT_FUNDS))
    wallet.close_order("ord_1")
    assert wallet.take_changes() == [] and wallet.balance == Decimal("5.00")
