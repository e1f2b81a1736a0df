"""PostgreSQL outages as a client sees them: how fast requests fail while the database is
down, and the time from PostgreSQL back to the first successful write.

`eventgraph serve` runs on a private PostgreSQL that this script stops (`pg_ctl stop -m
fast`, then `-m immediate`: a crash) and starts again; the machine's server is never
touched. A client sends `createOrder` back to back throughout, as a retrying client would.

    python -m benchmarks.outage_recovery [--rounds 3] [--down 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import httpx

from api.auth import mint_token
from benchmarks._serve import served
from service.database import migrate
from tests.private_postgres import PrivatePostgres, private_postgres

CREATE = {"query": 'mutation { createOrder(input: {customerId: "cus_1"}) { position } }'}


def write(http: httpx.Client, headers: dict[str, str]) -> tuple[int, float]:
    """(status, seconds) of one createOrder; 200 only when it appended."""
    started = time.perf_counter()
    response = http.post("/graphql", json=CREATE, headers=headers)
    elapsed = time.perf_counter() - started
    ok = response.status_code == 200 and "errors" not in response.json()
    return (200 if ok else response.status_code), elapsed


def outage(
    server: PrivatePostgres, http: httpx.Client, headers: dict[str, str], mode: str, down: float
) -> dict[str, float]:
    server.stop(mode)
    failures: list[float] = []
    statuses = set()
    until = time.monotonic() + down
    while time.monotonic() < until:
        status, elapsed = write(http, headers)
        statuses.add(status)
        failures.append(elapsed)
    health = http.get("/healthz").status_code
    server.start()  # -w: returns once PostgreSQL accepts connections
    back = time.perf_counter()
    first_status, _ = write(http, headers)
    attempts = 1
    status = first_status
    while status != 200:
        status, _ = write(http, headers)
        attempts += 1
    return {
        "failed_p50_ms": statistics.median(failures) * 1000,
        "failed_max_ms": max(failures) * 1000,
        "failed_requests": len(failures),
        "statuses_while_down": float(min(statuses) if statuses == {503} else -1),
        "healthz_while_down": health,
        "first_after_back_ok": float(first_status == 200),
        "back_to_first_write_ms": (time.perf_counter() - back) * 1000,
        "attempts_after_back": attempts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down", type=float, default=2.0, help="seconds PostgreSQL stays down")
    args = parser.parse_args()
    with private_postgres() as server:
        asyncio.run(_create_database(server.url()))
        url = server.url("eventgraph")
        migrate(url)
        with served(url, EVENTGRAPH_RUN_RELAY="0", EVENTGRAPH_RUN_SAGA="0") as serve:
            headers = {"Authorization": f"Bearer {mint_token(serve.secret, 'cus_1', 'customer')}"}
            with httpx.Client(base_url=serve.base, timeout=30) as http:
                for _ in range(20):  # warm
                    write(http, headers)
                for mode in ("fast", "immediate"):
                    results = [outage(server, http, headers, mode, args.down) for _ in range(args.rounds)]
                    print(f"pg_ctl stop -m {mode}, {args.rounds} rounds, {args.down:g} s down each:")
                    for key in results[0]:
                        values = [round(r[key], 1) for r in results]
                        print(f"  {key:24} median {statistics.median(values):9.1f}   all {values}")
            logged = (serve.work / "serve.log").read_text()
            print(f"serve log (warnings and up) over {2 * args.rounds} outages:"
                  f" {logged.count('Traceback')} tracebacks, {logged.count('eventgraph.outage')} outage lines")


async def _create_database(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("CREATE DATABASE eventgraph")
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
