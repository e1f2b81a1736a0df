"""The wallets projection (`wallet_views`) and its queries: a customer's balance.

An event whose stream version the row already reflects is skipped, so a
replayed batch is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import asyncpg

from domain.wallet import FundsDeposited, PaymentCharged, PaymentFailed, PaymentRefunded
from eventstore.pool import Pool
from eventstore.replicas import ReadPools, read_pools
from readmodels.projection import LogEvent, Projection

WALLET_STREAM_PREFIX = "wallet-"


@dataclass(frozen=True)
class WalletView:
    customer_id: str
    currency: str
    balance: Decimal
    version: int
    updated_at: datetime


def _fold(wallet: WalletView | None, customer_id: str, event: LogEvent) -> WalletView:
    """One event's effect; mirrors domain.wallet.Wallet.apply."""
    data = event.data
    if wallet is None:  # opened by its first deposit
        wallet = WalletView(customer_id, data["currency"], Decimal(0), 0, event.recorded_at)
    if event.type == FundsDeposited.TYPE:
        wallet = replace(wallet, currency=data["currency"], balance=wallet.balance + Decimal(data["amount"]))
    elif event.type == PaymentCharged.TYPE:
        wallet = replace(wallet, balance=wallet.balance - Decimal(data["amount"]))
    elif event.type == PaymentRefunded.TYPE:
        wallet = replace(wallet, balance=wallet.balance + Decimal(data["amount"]))
    return replace(wallet, version=event.version, updated_at=event.recorded_at)


class WalletProjection(Projection):
    name = "wallets"
    event_types = (FundsDeposited.TYPE, PaymentCharged.TYPE, PaymentRefunded.TYPE, PaymentFailed.TYPE)
    tables = ("wallet_views",)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        by_customer: dict[str, list[LogEvent]] = {}
        for event in events:
            if event.stream_id.startswith(WALLET_STREAM_PREFIX):
                by_customer.setdefault(event.stream_id[len(WALLET_STREAM_PREFIX) :], []).append(event)
        if not by_customer:
            return
        rows = await conn.fetch(
            f"SELECT customer_id, currency, balance, version, updated_at FROM {self.table('wallet_views')}"
            " WHERE customer_id = ANY($1::text[])",
            list(by_customer),
        )
        stored = {r["customer_id"]: WalletView(*r) for r in rows}
        changed: list[WalletView] = []
        for customer_id, wallet_events in by_customer.items():
            wallet = stored.get(customer_id)
            for event in wallet_events:
                if wallet is None and event.type != FundsDeposited.TYPE:
                    continue  # no funds, no currency yet: no wallet to show
                if wallet is None or event.version > wallet.version:
                    wallet = _fold(wallet, customer_id, event)
            if wallet is not None and wallet is not stored.get(customer_id):
                changed.append(wallet)
        if changed:
            await conn.execute(
                f"""
                INSERT INTO {self.table("wallet_views")} AS t (customer_id, currency, balance, version, updated_at)
                SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::int[], $5::timestamptz[])
                ON CONFLICT (customer_id) DO UPDATE SET currency = excluded.currency,
                    balance = excluded.balance, version = excluded.version, updated_at = excluded.updated_at
                """,
                [w.customer_id for w in changed], [w.currency for w in changed],
                [w.balance for w in changed], [w.version for w in changed], [w.updated_at for w in changed],
            )


class WalletReadModel:
    def __init__(self, pool: Pool | ReadPools) -> None:
        self._reads = read_pools(pool)

    async def by_customers(self, customer_ids: Sequence[str], source: Pool | None = None) -> dict[str, WalletView]:
        rows = await self._reads.fetch(
            "SELECT customer_id, currency, balance, version, updated_at FROM wallet_views"
            " WHERE customer_id = ANY($1::text[])",
            list(customer_ids),
            prefer=source,
        )
        return {r["customer_id"]: WalletView(*r) for r in rows}
