"""What tracing costs: `addItem` and `order(id)` over HTTP with spans exported over
OTLP/HTTP to a local receiver, against the same `serve` with no tracing, in one run.

    python -m benchmarks.observability [--seconds 5] [--rounds 2] [--sampler-ratio 1.0]

Each round starts a `serve` per mode (alternating, so drift in a shared machine's load
falls on both) and runs wrk on `addItem` (workers off: the API's own cost) and on
`order(id)`. Metrics are always on (the counters are part of every request); their
cost is read by running `benchmarks.http_reads` / `http_mutations` on the commit before
them. The receiver is a separate process that reads and discards each export.
Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from api.auth import mint_token
from benchmarks._serve import free_port, parse_wrk_arguments, run_wrk, served, wrk_arguments
from benchmarks.http_mutations import ADD_ITEM, LUA, create_orders
from benchmarks.http_reads import ORDER, ORDER_LUA

RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


@contextmanager
def receiver() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=b"", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("the OTLP receiver did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def measure(env: dict[str, str], seconds: int, connections: int) -> dict[str, dict[str, float]]:
    workers_off = {"EVENTGRAPH_RUN_PROJECTIONS": "1", "EVENTGRAPH_RUN_RELAY": "0", "EVENTGRAPH_RUN_SAGA": "0"}
    with served(**workers_off, **env) as server:
        token = mint_token(server.secret, "bench", "staff")
        orders = asyncio.run(create_orders(server.base, token, 500))
        (server.work / "orders.txt").write_text("\n".join(orders) + "\n")
        add = server.work / "add.lua"
        add.write_text(LUA % {"orders": server.work / "orders.txt", "query": json.dumps(json.dumps(ADD_ITEM)), "token": token})
        read = server.work / "read.lua"
        read.write_text(ORDER_LUA % {"orders": server.work / "orders.txt", "query": json.dumps(json.dumps(ORDER)), "token": token})
        url = f"{server.base}/graphql"
        added = run_wrk(url, add, connections, seconds, server.pid)
        time.sleep(1)  # the projection catches up with the orders' new lines
        return {"addItem": added, "order(id)": run_wrk(url, read, connections, seconds, server.pid)}


def main() -> int:
    parser = wrk_arguments(__doc__, seconds=5, connections=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sampler-ratio", type=float, default=1.0, help="parent-based trace-id ratio")
    args = parse_wrk_arguments(parser)
    totals: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    cpu: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    with receiver() as endpoint:
        traced = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(args.sampler_ratio),
        }
        for round_ in range(args.rounds):
            for mode, env in (("off", {}), ("on", traced)) if round_ % 2 == 0 else (("on", traced), ("off", {})):
                for name, result in measure(env, args.seconds, args.connections).items():
                    totals[mode].setdefault(name, []).append(result["rate"])
                    cpu[mode].setdefault(name, []).append(result["cpu_ms"])
                    print(
                        f"  round {round_ + 1} tracing {mode:<3} {name:<10} {result['rate']:7.0f} req/s"
                        f"  server CPU {result['cpu_ms']:.2f} ms/req  ({int(result['errors'])} errors)",
                        flush=True,
                    )
    print(f"tracing exported over OTLP/HTTP, sampler ratio {args.sampler_ratio}; wrk -c{args.connections} -d{args.seconds}s")
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    for name in ("addItem", "order(id)"):
        off, on = mean(totals["off"][name]), mean(totals["on"][name])
        cpu_off, cpu_on = mean(cpu["off"][name]), mean(cpu["on"][name])
        print(
            f"  {name:<10} off {off:7.0f} req/s  on {on:7.0f} req/s  ratio {on / off:.3f};"
            f" server CPU {cpu_off:.3f} -> {cpu_on:.3f} ms/req (x{cpu_on / cpu_off:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
