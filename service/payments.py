"""Wallet command handlers: deposits (staff only), on the customer's wallet stream."""

from __future__ import annotations

from domain.commands import DepositFunds
from domain.ids import check_id
from domain.wallet import Wallet, wallet_stream
from service.context import RequestContext
from service.handlers import Handler, Plan
from service.stream_commands import CommandResult

WalletResult = CommandResult[Wallet]


def deposit_funds(ctx: RequestContext, command: DepositFunds) -> Plan[Wallet]:
    ctx.principal.require_staff("deposit funds")
    check_id(command.customer_id, "customerId")
    return Plan(wallet_stream(command.customer_id), Wallet, lambda wallet: wallet.deposit(command.amount, command.currency))


WALLET_HANDLERS: tuple[Handler, ...] = (deposit_funds,)
