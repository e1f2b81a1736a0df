"""Customers placing orders through the GraphQL API of any node, retrying through outages."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from api.auth import mint_token

# Answers that mean "try again, maybe elsewhere", with the same idempotency key.
# INTERNAL_SERVER_ERROR is what an outage answers until SERVICE_UNAVAILABLE lands.
RETRYABLE = frozenset({"SERVICE_UNAVAILABLE", "INTERNAL_SERVER_ERROR"})
GIVE_UP_AFTER = 90.0  # seconds one call keeps retrying
UNIT_PRICE = Decimal("2.00")

CREATE = "mutation($i: CreateOrderInput!) { createOrder(input: $i) { position } }"
ADD = "mutation($i: AddItemInput!) { addItem(input: $i) { position } }"
SUBMIT = "mutation($i: SubmitOrderInput!) { submitOrder(input: $i) { position } }"


@dataclass(frozen=True)
class PlannedOrder:
    order_id: str
    customer: str
    lines: dict[str, int]  # sku -> quantity

    @property
    def total(self) -> Decimal:
        return sum((UNIT_PRICE * q for q in self.lines.values()), Decimal(0))


class CallFailed(Exception):
    """A call that answered something no retry can fix (a bug to report)."""


@dataclass
class Load:
    nodes: list[str]  # base URLs
    secret: str
    skus: list[str]
    customers: list[str]
    seen: Counter[str] = field(default_factory=Counter)  # retryable answers by kind
    writes: list[tuple[float, float]] = field(default_factory=list)  # successful writes: (sent, answered)
    submitted: dict[str, PlannedOrder] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    async def call(
        self, http: httpx.AsyncClient, query: str, variables: dict[str, Any], sub: str, role: str, first_node: int = 0
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {mint_token(self.secret, sub, role)}"}
        deadline = time.monotonic() + GIVE_UP_AFTER
        attempt = 0
        while True:
            node = self.nodes[(first_node + attempt) % len(self.nodes)]
            attempt += 1
            reason = await self._attempt(http, node, query, variables, headers)
            if isinstance(reason, dict):
                return reason
            self.seen[reason] += 1
            if time.monotonic() > deadline:
                raise CallFailed(f"gave up after {attempt} attempts, last: {reason}")
            await asyncio.sleep(min(0.05 * attempt, 0.5))

    async def _attempt(
        self, http: httpx.AsyncClient, node: str, query: str, variables: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any] | str:
        """The data, or why it is worth another try."""
        sent = time.monotonic()
        try:
            response = await http.post(f"{node}/graphql", json={"query": query, "variables": variables}, headers=headers)
        except httpx.TransportError as error:
            return f"transport: {type(error).__name__}"
        try:
            body = response.json()
        except ValueError:
            if response.status_code >= 500:
                return f"HTTP {response.status_code} (not JSON)"
            raise CallFailed(f"HTTP {response.status_code}: {response.text[:300]}") from None
        errors = body.get("errors") or []
        codes = {str((e.get("extensions") or {}).get("code")) for e in errors}
        if codes and codes <= RETRYABLE:
            return f"{'/'.join(sorted(codes))} (HTTP {response.status_code})"
        if errors:
            raise CallFailed(f"HTTP {response.status_code}: {errors}")
        if query.startswith("mutation"):
            self.writes.append((sent, time.monotonic()))
        return body["data"]

    async def place(self, http: httpx.AsyncClient, order: PlannedOrder, node: int) -> None:
        """create, add each line, submit: each with its own idempotency key, retried as is."""
        who = (order.customer, "customer")
        await self.call(http, CREATE, {"i": {"orderId": order.order_id, "customerId": order.customer,
                                             "idempotencyKey": f"{order.order_id}-create"}}, *who, node)
        for sku, quantity in order.lines.items():
            await self.call(http, ADD, {"i": {"orderId": order.order_id, "sku": sku, "quantity": quantity,
                                              "unitPrice": str(UNIT_PRICE),
                                              "idempotencyKey": f"{order.order_id}-add-{sku}"}}, *who, node)
        await self.call(http, SUBMIT, {"i": {"orderId": order.order_id,
                                             "idempotencyKey": f"{order.order_id}-submit"}}, *who, node)
        self.submitted[order.order_id] = order

    async def customer(self, http: httpx.AsyncClient, n: int, stop: asyncio.Event, pause: float) -> None:
        """One client: an order at a time until `stop`; never leaves an order half placed."""
        rng = random.Random(n)
        count = 0
        while not stop.is_set():
            customer = self.customers[(n + count) % len(self.customers)]
            lines = {sku: rng.randint(1, 2) for sku in rng.sample(self.skus, 2)}
            order = PlannedOrder(f"ord_{n}_{count}", customer, lines)
            count += 1
            try:
                await self.place(http, order, node=n + count)
            except CallFailed as failure:
                self.failures.append(f"{order.order_id}: {failure}")
                return
            await asyncio.sleep(pause)

    async def run(self, stop: asyncio.Event, clients: int, pause: float) -> None:
        async with httpx.AsyncClient(timeout=15) as http:
            await asyncio.gather(*(self.customer(http, n, stop, pause) for n in range(clients)))
