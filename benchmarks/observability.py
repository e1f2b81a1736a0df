"""What observability costs (issue 14): `addItem` and `order(id)` over HTTP with metrics on
and spans exported over OTLP/HTTP to a local receiver, against metrics off
(EVENTGRAPH_METRICS=off) and no tracing, in one run.

    python -m benchmarks.observability [--seconds 5] [--rounds 5] [--ratios default 1.0]

One `serve` per mode runs at once: the baseline, and one observed `serve` per sampler
ratio (`default`: OTEL_TRACES_SAMPLER unset, the service's default; a number: parent-based
trace-id ratio; `none`: metrics without tracing; `off`: a second baseline, a control that
shows how far two identical servers differ on this machine). Each round loads every server at the same
time, one wrk each, so a shared machine's load falls on all of them alike (run one after
the other, the same server's CPU per request moved by ±15 % between rounds): `addItem` on
orders of its own (workers off but projections: the API's cost and the projection's
tracing), then `order(id)` on orders of 3 lines that nothing changes. The figure that
counts is the server's CPU per request (req/s on a shared machine says more about the
neighbours), against the baseline's in the same round: the median and the range over
the rounds. The receiver is a separate process that reads and discards each export.
Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx

from api.auth import mint_token
from benchmarks._serve import Served, free_port, parse_wrk_arguments, run_wrk, served, wrk_arguments
from benchmarks.http_mutations import ADD_ITEM, LUA, create_orders
from benchmarks.http_reads import ORDER, ORDER_LUA
from service.tracing import DEFAULT_SAMPLER_RATIO

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

ADD_LINE = "mutation($i: AddItemInput!) { addItem(input: $i) { position } }"
BASELINE = "metrics off, no tracing"
WORKLOADS = ("addItem", "order(id)")


@contextlib.contextmanager
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


async def with_lines(base: str, token: str, orders: list[str], lines: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        gate = asyncio.Semaphore(32)

        async def add(order: str, line: int) -> None:
            item = {"orderId": order, "sku": f"R{line}", "quantity": 1, "unitPrice": "2.50"}
            async with gate:
                response = await http.post("/graphql", json={"query": ADD_LINE, "variables": {"i": item}})
                assert "errors" not in response.json(), response.text

        for line in range(lines):
            await asyncio.gather(*(add(order, line) for order in orders))


def scripts(server: Served) -> dict[str, str]:
    """The wrk script of each workload, on orders of their own."""
    token = mint_token(server.secret, "bench", "staff")
    added = asyncio.run(create_orders(server.base, token, 500))
    read = asyncio.run(create_orders(server.base, token, 500))
    asyncio.run(with_lines(server.base, token, read, 3))
    paths = {}
    for name, lua, query, orders in (("addItem", LUA, ADD_ITEM, added), ("order(id)", ORDER_LUA, ORDER, read)):
        ids = server.work / f"{len(paths)}.txt"
        ids.write_text("\n".join(orders) + "\n")
        script = server.work / f"{len(paths)}.lua"
        script.write_text(lua % {"orders": ids, "query": json.dumps(json.dumps(query)), "token": token})
        paths[name] = str(script)
    return paths


def modes(endpoint: str, ratios: list[str]) -> dict[str, dict[str, str]]:
    """Each mode's environment: the baseline, then metrics on and tracing per ratio."""
    found = {BASELINE: {"EVENTGRAPH_METRICS": "off"}}
    for ratio in ratios:
        if ratio == "none":  # what metrics alone cost
            found["metrics, no tracing"] = {"EVENTGRAPH_METRICS": "on"}
            continue
        if ratio == "off":  # a second baseline: how far two identical servers differ here
            found["a second baseline (control)"] = {"EVENTGRAPH_METRICS": "off"}
            continue
        traced = {"EVENTGRAPH_METRICS": "on", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        if ratio == "default":
            found[f"metrics, tracing at the default ratio {DEFAULT_SAMPLER_RATIO}"] = traced
        else:
            sampler = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
            found[f"metrics, tracing at ratio {float(ratio)}"] = {**traced, **sampler}
    return found


def main() -> int:
    parser = wrk_arguments(__doc__, seconds=5, connections=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ratios", nargs="+", default=["default", "1.0"], help="sampler ratios ('default': unset; 'none': metrics without tracing; 'off': a second baseline, the noise floor)")
    args = parse_wrk_arguments(parser)
    workers_off = {"EVENTGRAPH_RUN_PROJECTIONS": "1", "EVENTGRAPH_RUN_RELAY": "0", "EVENTGRAPH_RUN_SAGA": "0"}
    with receiver() as endpoint, contextlib.ExitStack() as stack:
        environments = modes(endpoint, args.ratios)
        servers = {mode: stack.enter_context(served(**workers_off, **env)) for mode, env in environments.items()}
        lua = {mode: scripts(server) for mode, server in servers.items()}
        time.sleep(2)  # the projections catch up with the set-up
        names = list(servers)
        cpu: dict[tuple[str, str], list[float]] = {}  # (workload, mode): server CPU ms per request, per round
        rate: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for workload in WORKLOADS:
                with ThreadPoolExecutor(len(names)) as pool:
                    runs = {
                        mode: pool.submit(
                            run_wrk, f"{server.base}/graphql", lua[mode][workload], args.connections, args.seconds, server.pid
                        )
                        for mode, server in servers.items()
                    }
                results = {mode: run.result() for mode, run in runs.items()}
                for mode, result in results.items():
                    if result["errors"]:
                        print(f"  {mode} {workload}: {int(result['errors'])} errors: {result['stderr'][:300]}")
                    cpu.setdefault((workload, mode), []).append(result["cpu_ms"])
                    rate.setdefault((workload, mode), []).append(result["rate"])
            print(f"  round {round_ + 1}: " + "; ".join(
                f"{workload} {mode}: {cpu[workload, mode][-1]:.3f} ms/req"
                for workload in WORKLOADS for mode in names
            ), flush=True)
    print(f"server CPU per request against '{BASELINE}', same rounds; wrk -t1 -c{args.connections} -d{args.seconds}s"
          f" per server at once, {args.rounds} rounds, spans exported over OTLP/HTTP to a local receiver")
    for workload in WORKLOADS:
        base_cpu, base_rate = cpu[workload, BASELINE], rate[workload, BASELINE]
        print(f"  {workload:<10} {BASELINE}: {sum(base_cpu) / len(base_cpu):.3f} ms/req, {sum(base_rate) / len(base_rate):.0f} req/s")
        for mode in names[1:]:
            per_round = [on / off for on, off in zip(cpu[workload, mode], base_cpu, strict=True)]
            rates = sum(rate[workload, mode]) / sum(base_rate)
            print(
                f"  {workload:<10} {mode}: CPU x{statistics.median(per_round):.3f} median"
                f" (rounds {min(per_round):.3f}-{max(per_round):.3f}), req/s x{rates:.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
