"""Throughput with the background workers in the process, and list queries (issue 18).

    python -m benchmarks.throughput [--seconds 10] [--connections 32] [--rounds 2] [--profile OUT]

Two `eventgraph serve` processes (1 uvicorn worker each, scratch databases): one with the
projections, relay and saga off, one as shipped (all on). On each, 1,000 orders are created;
the workers-on one also gets 200 orders of three lines appended through the store (the
newest, so `orders(first: 20)` reads those). Then, for each round, wrk (one thread, the Lua
scripts of http_mutations and http_reads) runs in turn: `addItem` workers off, `addItem`
workers on, `orders(first: 20)` with lines and `{ __typename }` (workers on). Runs
alternate so a noisy neighbour hurts both sides alike. Server CPU per request counts the
process's CPU from the start of a run until its projections have caught up again (the
background work a run causes is charged to it; the embedded Redis is another process).
Prints each run, the best of each, and the ratios against the goals.
Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
from pathlib import Path

from api.auth import mint_token
from benchmarks._serve import (
    TYPENAME_LUA,
    cpu_seconds,
    parse_wrk_arguments,
    run_wrk,
    served,
    wait_caught_up,
    wrk_arguments,
)
from benchmarks.http_mutations import ADD_ITEM, create_orders
from benchmarks.http_mutations import LUA as ADD_ITEM_LUA
from benchmarks.http_mutations import ORDERS as ORDER_COUNT
from benchmarks.http_reads import LIST_LUA, seed
from benchmarks.http_reads import ORDERS as LIST_QUERY

WORKERS_OFF = {"EVENTGRAPH_RUN_PROJECTIONS": "0", "EVENTGRAPH_RUN_RELAY": "0", "EVENTGRAPH_RUN_SAGA": "0"}
LISTED_ORDERS = 200


def scripts(work: Path, token: str, orders: list[str], listed: bool) -> dict[str, Path]:
    (work / "orders.txt").write_text("\n".join(orders) + "\n")
    texts = {"addItem": ADD_ITEM_LUA % {"orders": work / "orders.txt", "query": json.dumps(json.dumps(ADD_ITEM)), "token": token}}
    if listed:
        texts["orders(first: 20)"] = LIST_LUA % {"query": json.dumps(json.dumps(LIST_QUERY)), "token": token}
        texts["{ __typename }"] = TYPENAME_LUA
    paths = {}
    for name, text in texts.items():
        paths[name] = work / f"{len(paths)}.lua"
        paths[name].write_text(text)
    return paths


def main() -> int:
    parser = wrk_arguments(
        __doc__, seconds=10, connections=32, profiled_run="the workers-on server during its first addItem run"
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parse_wrk_arguments(parser)

    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        off = stack.enter_context(served(**WORKERS_OFF))
        on = stack.enter_context(served())
        plans = []
        for label, server, listed in (("workers off", off, False), ("workers on", on, True)):
            token = mint_token(server.secret, "bench", "staff")
            orders = asyncio.run(create_orders(server.base, token, ORDER_COUNT))
            if listed:
                asyncio.run(seed(server.dsn, LISTED_ORDERS))
                wait_caught_up(server.base, token)
            for name, script in scripts(server.work, token, orders, listed).items():
                plans.append((f"{name} ({label})" if name == "addItem" else name, server, token, listed, script))
        for round_ in range(args.rounds):
            for name, server, token, workers_on, script in plans:
                cpu_before = cpu_seconds(server.pid)
                profile = args.profile if round_ == 0 and name == "addItem (workers on)" else None
                result = run_wrk(f"{server.base}/graphql", script, args.connections, args.seconds, server.pid, profile)
                if workers_on:
                    wait_caught_up(server.base, token)  # the background work this run caused
                result["cpu_ms"] = (cpu_seconds(server.pid) - cpu_before) * 1000 / max(result["requests"], 1)
                runs.setdefault(name, []).append(result)

    print(f"eventgraph serve, 1 uvicorn worker each; wrk -t1 -c{args.connections} -d{args.seconds}s,"
          f" {args.rounds} alternating rounds; load average before {load_before:.2f}")
    best = {}
    for name, results in runs.items():
        for result in results:
            print(
                f"  {name:<24} {result['rate']:8.0f} req/s  p50 {result['p50_ms']:.1f} ms  "
                f"p99 {result['p99_ms']:.1f} ms  server CPU {result['cpu_ms']:.3f} ms/req "
                f"(busy {result['busy']:.0%}, waited for a CPU {result['cpu_wait']:.0%}) "
                f"(postgres {result['postgres_ms']:.3f}, redis {result['redis-server_ms']:.3f};"
                f" machine {result['machine_ms']:.3f}) "
                f"({int(result['requests'])} requests, {int(result['errors'])} errors)"
            )
            if result["stderr"]:
                print(f"    first errors: {str(result['stderr'])[:500]}")
        best[name] = max(results, key=lambda r: r["rate"])
    on, off = best["addItem (workers on)"], best["addItem (workers off)"]
    listing, ceiling = best["orders(first: 20)"], best["{ __typename }"]
    workers_ratio = on["rate"] / off["rate"]
    list_ratio = listing["rate"] / ceiling["rate"]
    # Each round's own ratio (its two runs were next to each other), and their median: the
    # machine's noise moves a single run by more than the difference being measured.
    paired = [a["rate"] / b["rate"] for a, b in zip(runs["addItem (workers on)"], runs["addItem (workers off)"], strict=True)]
    print(f"  addItem workers on / off, each round: {', '.join(f'{r:.2f}' for r in paired)}"
          f" (median {statistics.median(paired):.2f})")
    # The workers' own cost, less noisy than the rates: what each event costs every process
    # more with them on (server counted until caught up; PostgreSQL and Redis during the run).
    extra = {
        part: statistics.median(a[key] - b[key] for a, b in zip(runs["addItem (workers on)"], runs["addItem (workers off)"], strict=True))
        for part, key in (("machine", "machine_ms"), ("server", "cpu_ms"), ("postgres", "postgres_ms"), ("redis", "redis-server_ms"))
    }
    print(f"  addItem workers on - off, CPU per event (median of rounds): machine {extra['machine']:.3f} ms"
          f" (server {extra['server']:.3f}, postgres {extra['postgres']:.3f}, redis {extra['redis']:.3f})")
    print(f"  addItem workers on / off: {workers_ratio:.2f} req/s (goal >= 0.85: {'met' if workers_ratio >= 0.85 else 'NOT met'});"
          f" server CPU per addItem {on['cpu_ms']:.3f} vs {off['cpu_ms']:.3f} ms"
          f" (background work {on['cpu_ms'] - off['cpu_ms']:.3f} ms per event)")
    print(f"  orders(first: 20) / __typename: {list_ratio:.3f} (goal >= 0.12: {'met' if list_ratio >= 0.12 else 'NOT met'});"
          f" server CPU {listing['cpu_ms']:.3f} vs {ceiling['cpu_ms']:.3f} ms per request")
    print(f"  load average after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0 if all(r["errors"] == 0 for results in runs.values() for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
