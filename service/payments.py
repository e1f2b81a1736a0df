"""Wallet command handlers: deposits (staff only), on the customer's wallet stream."""

from __future__ import annotations

from decimal import Decimal

from domain.aggregate import aggregate_id_of
from domain.ids import check_id
from domain.wallet import Wallet, wallet_stream
from service.context import RequestContext
from service.stream_commands import Command, CommandResult, StreamCommands

WalletResult = CommandResult[Wallet]


class WalletCommands:
    def __init__(self, commands: StreamCommands) -> None:
        self._commands = commands

    async def deposit_funds(
        self, ctx: RequestContext, *, customer_id: str, amount: Decimal | str, currency: str = "USD"
    ) -> WalletResult:
        ctx.principal.require_staff("deposit funds")
        check_id(customer_id, "customerId")
        return await self._commands.execute(
            Command(
                stream_id=wallet_stream(customer_id),
                new_aggregate=lambda stream_id: Wallet(aggregate_id_of(stream_id)),
                decide=lambda wallet: wallet.deposit(amount, currency),
                metadata=ctx.event_metadata(),
            )
        )
