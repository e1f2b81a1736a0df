"""A real `eventgraph serve` for the HTTP benchmarks, and wrk to load it."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks._db import drop_database, scratch_database
from benchmarks._references import REFERENCES
from service.embedded_redis import stop_embedded_redis
from service.serving import ServeProcess, free_port

__all__ = ["free_port"]  # the benchmarks' import

TYPENAME_LUA = r"""
wrk.method = "POST"
wrk.body = '{"query":"{ __typename }"}'
wrk.headers["Content-Type"] = "application/json"
local errors = 0
response = function(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("errors %d\n", errors))
end
"""


@dataclass(frozen=True)
class Served:
    base: str  # http://127.0.0.1:PORT
    dsn: str  # its scratch database
    secret: str  # its JWT secret
    pid: int
    work: Path  # a scratch folder, removed afterwards


@contextlib.contextmanager
def served(database_url: str | None = None, *, workers: int = 1, **env: str) -> Iterator[Served]:
    """`eventgraph serve` (`workers` uvicorn processes) on a free port and a scratch database (or on
    `database_url`, left as it is); everything it started (its embedded Redis included) is
    stopped and removed afterwards."""
    url, server_url = (database_url, None) if database_url else scratch_database()
    secret = "bench-" + os.urandom(24).hex()
    work = Path(tempfile.mkdtemp(prefix="eventgraph-bench-"))
    full_env = {
        **os.environ,
        "DATABASE_URL": url,
        "EVENTGRAPH_JWT_SECRET": secret,
        "EVENTGRAPH_DATA_DIR": str(work / "data"),
        **env,
    }
    server = ServeProcess(full_env, work / "serve.log", "--workers", str(workers), "--log-level", "warning")
    try:
        server.wait_healthy(60)
        yield Served(server.url, url, secret, server.pid, work)
    except BaseException:
        print(server.output()[-3000:], file=sys.stderr)
        raise
    finally:
        server.stop(15)
        stop_embedded_redis(work / "data" / "redis")  # `serve` starts one; it outlives serve
        if server_url is not None:
            drop_database(server_url, url)
        shutil.rmtree(work, ignore_errors=True)


def orders_lua(request: str) -> str:
    """A wrk script (a %-template of `orders`, a file of order ids, `query`, a JSON string,
    and `token`) whose `request` function is given; answers that are not 200 or carry
    `errors` are counted, and the first three printed."""
    return r"""
local orders = {}
for line in io.lines("%(orders)s") do orders[#orders + 1] = line end
local query = %(query)s
local n = 0
local errors = 0
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s"}
""" + request + r"""
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    errors = errors + 1
    if errors <= 3 then io.stderr:write(status .. " " .. body .. "\n") end
  end
end
done = function(summary, latency, requests)
  io.write(string.format("errors %%d\n", errors))
end
"""


HELLO_LUA = TYPENAME_LUA.replace("{ __typename }", "{ hello }")


@contextlib.contextmanager
def reference(app: str) -> Iterator[tuple[str, int]]:
    """A reference app of `benchmarks._references` on uvicorn, set up as `serve` sets it
    up: its base URL and pid."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"{base}/graphql", json={"query": "{ hello }"}, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"{app} did not start") from None
                time.sleep(0.1)
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(15)


def measure_references(connections: int, seconds: int) -> dict[str, float]:
    """req/s of each reference app, by its description."""
    rates = {}
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "hello.lua"
        script.write_text(HELLO_LUA)
        for app, (what, _) in REFERENCES.items():
            with reference(app) as (base, pid):
                rates[what] = run_wrk(f"{base}/graphql", script, connections, seconds, pid)["rate"]
    return rates


def calibration_lines(rate: float, goal: float, what: str, references: dict[str, float]) -> str:
    """How fast this machine is against FIELD-NOTES' by each reference, and the goal in its terms."""
    lines, scaled = [], []
    for description, field_notes in REFERENCES.values():
        factor = references[description] / field_notes
        scaled.append(goal * factor)
        lines.append(
            f"  reference: {description}: {references[description]:,.0f} req/s here,"
            f" {field_notes:,} in FIELD-NOTES (this machine x{factor:.2f})"
        )
    low, high = min(scaled), max(scaled)
    verdict = "met" if rate >= high else "met by one reference only" if rate >= low else "NOT met"
    lines.append(
        f"  goal {goal:,.0f} {what}/s in this machine's terms: {low:,.0f}-{high:,.0f}/s;"
        f" measured {rate:,.0f}/s: {verdict}"
    )
    return "\n".join(lines)


@contextlib.contextmanager
def _profiled(pid: int, seconds: int, out: str | None) -> Iterator[None]:
    """py-spy records `pid` for `seconds` while the block runs (nothing when `out` is None):
    `out` ending in .txt gets raw collapsed stacks, else a flame graph."""
    if out is None:
        yield
        return
    fmt = "raw" if out.endswith(".txt") else "flamegraph"
    profiler = subprocess.Popen(
        ["py-spy", "record", "--subprocesses", "-r", "400", "-p", str(pid), "-d", str(seconds), "-f", fmt, "-o", out],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        profiler.wait(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its descendants (`serve --workers N`
    serves from child processes) (Linux /proc)."""
    total = 0
    for member in _process_tree(pid):
        with contextlib.suppress(OSError):  # it ended meanwhile
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pid: int) -> float:
    """Time the threads of a process and its descendants spent ready to run but waiting
    for a CPU (Linux schedstat)."""
    total = 0
    for member in _process_tree(pid):
        for stat in Path(f"/proc/{member}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError):  # a thread ended meanwhile
                total += int(stat.read_text().split()[1])
    return total / 1e9


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants running the same program (not the embedded Redis or
    PostgreSQL that `serve` may have started: they are counted as such)."""
    tree, index = [pid], 0
    program = _program(pid)
    while index < len(tree):
        for children in Path(f"/proc/{tree[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                tree += [int(child) for child in children.read_text().split() if _program(int(child)) == program]
        index += 1
    return tree


def _program(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return None


def cpu_by_command() -> dict[str, float]:
    """CPU seconds so far of every live process, summed by command name (postgres,
    redis-server, ...): what the database and the broker spend for a run, beside the server."""
    totals: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue  # the process ended meanwhile
        fields = tail.split()
        name = head.split("(", 1)[1]
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    # and the whole machine's busy time (every process and the kernel's interrupt work)
    busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    totals["machine"] = sum(int(busy[i]) for i in (0, 1, 2, 5, 6, 7)) / tick  # user nice system irq softirq steal
    return totals


def run_wrk(
    url: str, script: Path, connections: int, seconds: int, server_pid: int, profile: str | None = None
) -> dict[str, float]:
    """One wrk run; py-spy records the server meanwhile into `profile`, when given."""
    with _profiled(server_pid, seconds, profile):
        cpu_before = cpu_seconds(server_pid)
        waited_before = cpu_wait_seconds(server_pid)
        others_before = cpu_by_command()
        started = time.monotonic()
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
            capture_output=True, text=True, check=True,
        )
        cpu = cpu_seconds(server_pid) - cpu_before
        waited = cpu_wait_seconds(server_pid) - waited_before
        wall = time.monotonic() - started
        others = cpu_by_command()
    text = out.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    errors = int(re.search(r"^errors (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rate": rate,
        "requests": requests,
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
        "p50_ms": _latency(text, "50%"),
        "p99_ms": _latency(text, "99%"),
        "cpu_ms": cpu * 1000 / max(requests, 1),  # the server's CPU per request
        # the server's share of the run on a CPU, and waiting for one (ready, but every CPU taken)
        "busy": cpu / wall,
        "cpu_wait": waited / wall,
        # PostgreSQL's and Redis's CPU per request (every backend and server of the machine,
        # alive before and after the run: wrk itself is not, so only "machine" counts it),
        # and the whole machine's
        **{
            f"{name}_ms": (others.get(name, 0.0) - others_before.get(name, 0.0)) * 1000 / max(requests, 1)
            for name in ("postgres", "redis-server", "machine")
        },
        "stderr": out.stderr.strip(),  # type: ignore[dict-item]
    }


def _latency(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)$", text, re.M)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def benchmark_arguments(description: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line, with its docstring (layout kept) as the help."""
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def wait_caught_up(base: str, token: str, projection: str | None = None, timeout: float = 120) -> None:
    """Until the projection's lag (every projection's, when None) is 0."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = httpx.post(
            f"{base}/graphql", json={"query": "{ projections { name lag } }"},
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        ).json()
        lags = [p["lag"] for p in reply["data"]["projections"] if projection in (None, p["name"])]
        if lags and all(lag == 0 for lag in lags):
            return
        time.sleep(0.1)
    raise SystemExit(f"the {projection} projection did not catch up" if projection else "the projections did not catch up")


def wrk_arguments(
    description: str | None, *, seconds: int, connections: int = 32, connections_help: str | None = None,
    profiled_run: str | None = None,
) -> argparse.ArgumentParser:
    """The command line every wrk benchmark starts from: `--seconds` and `--connections`,
    and `--profile OUT` when the benchmark names the run it would profile."""
    parser = benchmark_arguments(description)
    parser.add_argument("--seconds", type=int, default=seconds)
    parser.add_argument("--connections", type=int, default=connections, help=connections_help)
    if profiled_run is not None:
        parser.add_argument("--profile", metavar="OUT", help=f"py-spy record {profiled_run} (OUT.svg/.txt)")
    return parser


def parse_wrk_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed command line, once wrk is known to be on the PATH (else exit 2, saying how
    to get it: before any server starts)."""
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        raise SystemExit(2)
    return args



def print_results(results: dict[str, dict[str, float]], name_width: int) -> None:
    """A line per wrk run: req/s, latencies, the server's CPU per request, counts; its first errors."""
    for name, result in results.items():
        print(
            f"  {name:<{name_width}} {result['rate']:8.0f} req/s  p50 {result['p50_ms']:.1f} ms  "
            f"p99 {result['p99_ms']:.1f} ms  server CPU {result['cpu_ms']:.2f} ms/req "
            f"({int(result['requests'])} requests, {int(result['errors'])} errors)"
        )
        if result["stderr"]:
            print(f"    first errors: {str(result['stderr'])[:500]}")
