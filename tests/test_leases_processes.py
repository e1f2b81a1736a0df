"""Three real `eventgraph serve` processes on one database: the projection leases spread over
them, a killed holder's leases move to the live ones, a process joining gets its share, and
one stopping hands its leases on.

The figures (time to spread, takeover time) are printed: run with `-s` to see them."""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import httpx

from api.auth import mint_token
from service.module import load_modules
from service.serving import ServeProcess
from service.settings import Settings
from tests.test_subscriptions_processes import SECRET, serve_process

HANG_BOUND = 60.0  # seconds: only against a hang; the figures are printed, not asserted
STATUS = "{ projections { name owner } }"


class Node:
    """One `eventgraph serve` process: its HTTP client and its "<host>:<pid>"."""

    def __init__(self, process: ServeProcess) -> None:
        self.process = process
        self.http = httpx.AsyncClient(base_url=process.url, timeout=30)
        self.name = f"{socket.gethostname()}:{process.pid}"

    async def owners(self) -> dict[str, str | None]:
        token = mint_token(SECRET, "staff_1", "staff")
        response = await self.http.post("/graphql", json={"query": STATUS}, headers={"Authorization": f"Bearer {token}"})
        body = response.json()
        assert "errors" not in body, body
        return {p["name"]: p["owner"] for p in body["data"]["projections"]}

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        await self.http.aclose()
        await asyncio.to_thread(self.process.terminate, sig, 20)


async def start_node(dsn: str, redis_url: str, data_dir: Path) -> Node:
    process = serve_process(dsn, redis_url, data_dir)
    node = Node(process)
    await process.started(HANG_BOUND)
    return node


def spread_fairly(owners: dict[str, str | None], live: list[Node]) -> bool:
    """Every projection run by a live process, none holding more than ceil(P/N), none idle
    while another holds more than one."""
    names = {n.name for n in live}
    if any(owner not in names for owner in owners.values()):
        return False
    counts = [list(owners.values()).count(name) for name in names]
    return max(counts) <= math.ceil(len(load_modules(Settings().modules).projections) / len(live)) and max(counts) - min(counts) <= 1


async def settle(live: list[Node], asked: Node) -> tuple[float, dict[str, str | None]]:
    """Seconds until the leases are spread fairly over `live` (as `asked` reports them)."""
    started = time.monotonic()
    while time.monotonic() - started < HANG_BOUND:
        owners = await asked.owners()
        if spread_fairly(owners, live):
            return time.monotonic() - started, owners
        await asyncio.sleep(0.05)
    raise AssertionError(f"leases not spread over {[n.name for n in live]}: {owners}")


async def test_leases_spread_over_three_processes_and_move_off_a_killed_one(
    dsn: str, redis_url: str, tmp_path: Path
) -> None:
    nodes: list[Node] = []  # every process started, stopped at the end
    try:
        nodes += [await start_node(dsn, redis_url, tmp_path) for _ in range(3)]
        took, owners = await settle(nodes, nodes[0])
        print(f"\nspread over 3 processes after {took:.2f} s: {dict(Counter(owners.values()))}")
        # Every process reads the owners from the database: they all answer the same.
        assert [await n.owners() for n in nodes[1:]] == [owners, owners]

        victim = next(n for n in nodes if n.name == owners["orders"])
        await victim.stop(signal.SIGKILL)
        live = [n for n in nodes if n is not victim]
        took, owners = await settle(live, live[0])
        print(f"takeover after kill -9 of {victim.name}: {took:.2f} s: {dict(Counter(owners.values()))}")

        nodes.append(await start_node(dsn, redis_url, tmp_path))
        live.append(nodes[-1])
        took, owners = await settle(live, nodes[-1])
        print(f"a process joining got its share after {took:.2f} s: {dict(Counter(owners.values()))}")
        assert nodes[-1].name in owners.values()

        leaving = next(n for n in live if n.name == owners["products"])
        await leaving.stop(signal.SIGTERM)  # its leases released on the way out
        live.remove(leaving)
        took, owners = await settle(live, live[0])
        print(f"after SIGTERM of {leaving.name}: {took:.2f} s: {dict(Counter(owners.values()))}")
    finally:
        for node in nodes:
            await node.stop()
