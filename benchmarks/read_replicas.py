"""Reads on a streaming replica against reads on the primary, while addItem load runs on the primary.

    python -m benchmarks.read_replicas [--seconds 8] [--connections 16] [--write-connections 8]
                                       [--rounds 2] [--orders 2000]

Starts a private primary and a `pg_basebackup -R` streaming replica of it (the test
suite's tests/replica_support.py), and three `eventgraph serve` processes (1 uvicorn
worker each) on the primary: a writer (projections on, relay and saga off) that takes
the addItem load, a reader whose reads go to the primary, and a reader with
`DATABASE_READ_URL` set to the replica. Seeds orders of three lines for the reads and
1,000 orders for the writes. Then, in alternating rounds, for each query (`order(id)`
with its lines, `orders(first: 20)`) and each reader, wrk runs the reads and at the same
time addItem against the writer; and addItem alone as the writes' baseline. Prints per
phase the reads' req/s and latencies, the writes' req/s and p99, and the CPU each
PostgreSQL server spent per second. Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from api.auth import mint_token
from benchmarks._serve import (
    Served,
    parse_wrk_arguments,
    run_wrk,
    served,
    wait_caught_up,
    wrk_arguments,
)
from benchmarks.http_mutations import ADD_ITEM, create_orders
from benchmarks.http_mutations import LUA as ADD_ITEM_LUA
from benchmarks.http_reads import LIST_LUA, ORDER, ORDER_LUA, ORDERS, seed
from service.database import migrate
from tests.replica_support import Cluster, start_cluster

# One secret for the three servers, so one token serves them all.
SHARED = {"EVENTGRAPH_RUN_RELAY": "0", "EVENTGRAPH_RUN_SAGA": "0", "EVENTGRAPH_JWT_SECRET": "bench-" + os.urandom(24).hex()}


def postgres_cpu(cluster: Cluster, data: str) -> float:
    """CPU seconds the server in `data` (postmaster and its live backends) has used so far."""
    pid = int((cluster.root / data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    postmaster = psutil.Process(pid)
    for process in [postmaster, *postmaster.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def servers(cluster: Cluster) -> Iterator[tuple[Served, Served, Served]]:
    with (
        served(cluster.primary_url, **SHARED) as writer,
        served(cluster.primary_url, EVENTGRAPH_RUN_PROJECTIONS="0", **SHARED) as on_primary,
        served(
            cluster.primary_url,
            EVENTGRAPH_RUN_PROJECTIONS="0",
            DATABASE_READ_URL=cluster.standby_url,
            **SHARED,
        ) as on_replica,
    ):
        yield writer, on_primary, on_replica


def phase(
    cluster: Cluster,
    writer: Served,
    write_script: Path,
    reader: Served | None,
    read_script: Path | None,
    args: argparse.Namespace,
) -> dict[str, float]:
    """addItem on the writer and, when given, reads on `reader`, at the same time."""
    cpu = {data: postgres_cpu(cluster, data) for data in ("primary", "standby")}
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        writes = pool.submit(
            run_wrk, f"{writer.base}/graphql", write_script, args.write_connections, args.seconds, writer.pid
        )
        reads = None
        if reader is not None and read_script is not None:
            reads = pool.submit(
                run_wrk, f"{reader.base}/graphql", read_script, args.connections, args.seconds, reader.pid
            )
        wrote = writes.result()
        read = reads.result() if reads is not None else {}
    elapsed = time.monotonic() - started
    out = {"write_rate": wrote["rate"], "write_p99": wrote["p99_ms"], "errors": wrote["errors"]}
    if read:
        out |= {
            "read_rate": read["rate"], "read_p50": read["p50_ms"], "read_p99": read["p99_ms"],
            "reader_cpu": read["cpu_ms"], "errors": wrote["errors"] + read["errors"],
        }
    for data in ("primary", "standby"):
        out[f"{data}_cpu"] = (postgres_cpu(cluster, data) - cpu[data]) / elapsed
    return out


def main() -> int:
    parser = wrk_arguments(__doc__, seconds=8, connections=16, connections_help="wrk connections for the reads")
    parser.add_argument("--write-connections", type=int, default=8, help="wrk connections for addItem")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--orders", type=int, default=2000)
    args = parse_wrk_arguments(parser)

    load_before = os.getloadavg()[0]
    cluster = start_cluster()
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    try:
        migrate(cluster.primary_url)
        cluster.wait_replayed()
        with servers(cluster) as (writer, on_primary, on_replica):
            read_ids = asyncio.run(seed(cluster.primary_url, args.orders))
            token = mint_token(SHARED["EVENTGRAPH_JWT_SECRET"], "bench", "staff")
            write_ids = asyncio.run(create_orders(writer.base, token, 1000))
            wait_caught_up(writer.base, token, "orders")
            work = writer.work
            (work / "read.txt").write_text("\n".join(read_ids) + "\n")
            (work / "write.txt").write_text("\n".join(write_ids) + "\n")
            write_script = work / "add_item.lua"
            write_script.write_text(
                ADD_ITEM_LUA % {"orders": work / "write.txt", "query": json.dumps(json.dumps(ADD_ITEM)), "token": token}
            )
            scripts = {}
            for name, text in {
                "order(id)": ORDER_LUA % {"orders": work / "read.txt", "query": json.dumps(json.dumps(ORDER)), "token": token},
                "orders(first: 20)": LIST_LUA % {"query": json.dumps(json.dumps(ORDERS)), "token": token},
            }.items():
                scripts[name] = work / f"{len(scripts)}.lua"
                scripts[name].write_text(text)
            readers = {"primary": on_primary, "replica": on_replica}
            for round_ in range(args.rounds):
                results["addItem alone"].append(phase(cluster, writer, write_script, None, None, args))
                order = ("primary", "replica") if round_ % 2 == 0 else ("replica", "primary")
                for query, script in scripts.items():
                    for where in order:
                        results[f"{query} on the {where}"].append(
                            phase(cluster, writer, write_script, readers[where], script, args)
                        )
    finally:
        cluster.stop()

    print(
        f"3 x eventgraph serve (1 worker each) on a private primary + 1 streaming replica;"
        f" reads wrk -c{args.connections}, addItem wrk -c{args.write_connections}, {args.seconds}s a phase,"
        f" {args.rounds} rounds (medians); {os.cpu_count()} CPUs, load average before {load_before:.2f}"
    )
    errors = 0
    for name, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        errors += int(sum(run["errors"] for run in runs))
        reads = (
            f"reads {median['read_rate']:6.0f}/s p50 {median['read_p50']:5.1f} ms p99 {median['read_p99']:6.1f} ms"
            f" ({median['reader_cpu']:.2f} ms server CPU each);"
            if "read_rate" in median else " " * 72
        )
        print(
            f"  {name:<33} {reads} addItem {median['write_rate']:5.0f}/s p99 {median['write_p99']:6.1f} ms;"
            f" PostgreSQL CPU primary {median['primary_cpu']:.2f} s/s, replica {median['standby_cpu']:.2f} s/s"
        )
    print(f"  errors: {errors}; load average after: {os.getloadavg()[0]:.2f}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
