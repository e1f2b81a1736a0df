"""addItem mutations over HTTP against a real `eventgraph serve` (1 uvicorn worker by default), with wrk.

    python -m benchmarks.http_mutations [--seconds 10] [--connections 32] [--with-workers] [--workers N] [--rounds N]

Starts `eventgraph serve` on a free port and a scratch database (DATABASE_URL's server,
else the embedded one), creates 1,000 orders, then runs wrk (C, one thread, a Lua script
that posts `addItem` with a distinct sku per order on each pass) with 32 connections,
then the same with `{ __typename }` as the GraphQL ceiling; then the reference apps of
`benchmarks._references`, which FIELD-NOTES measured too, to put the goal in this
machine's terms; prints each and the ratios.
By default the background workers (projections, relay, saga) stay off so the figure is
the API's; `--with-workers` measures the full `serve` as shipped. `--workers N` serves
from N uvicorn processes, as several instances behind a load balancer would: each keeps
its own orders, so an order's next command often reaches a process whose kept order is
stale (its append conflicts, and it catches up and decides again); the server's CPU is
then the processes' together, and `--rounds` repeats the addItem run (caches warm up).
Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import asyncio
import json
import os

import httpx

from api.auth import mint_token
from benchmarks._serve import (
    TYPENAME_LUA,
    calibration_lines,
    measure_references,
    orders_lua,
    parse_wrk_arguments,
    print_results,
    run_wrk,
    served,
    wrk_arguments,
)

ORDERS = 1000
ADD_ITEM = (
    "mutation($i: AddItemInput!) { addItem(input: $i) "
    "{ streamVersion position order { version total { amount } } } }"
)

# One wrk thread; `n` counts this thread's requests. Pass p over the orders uses sku "S<p>",
# so every addItem adds a new line (an order holds up to 500 lines).
LUA = orders_lua(r"""
request = function()
  local order = orders[(n %% #orders) + 1]
  local sku = "S" .. (math.floor(n / #orders) %% 400)
  n = n + 1
  local body = '{"query":' .. query .. ',"variables":{"i":{"orderId":"' .. order ..
    '","sku":"' .. sku .. '","quantity":1,"unitPrice":"1.00"}}}'
  return wrk.format("POST", "/graphql", headers, body)
end
""")

async def create_orders(base: str, token: str, count: int) -> list[str]:
    query = "mutation($c: ID!) { createOrder(input: {customerId: $c}) { order { id } } }"
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as http:
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> str:
            async with gate:
                response = await http.post("/graphql", json={"query": query, "variables": {"c": f"cus_{i % 100}"}})
                return str(response.json()["data"]["createOrder"]["order"]["id"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def main() -> int:
    parser = wrk_arguments(__doc__, seconds=10, connections=32, profiled_run="the server during the addItem run")
    parser.add_argument("--with-workers", action="store_true", help="keep projections, relay and saga on")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument("--rounds", type=int, default=1, help="addItem runs, each printed (default 1)")
    args = parse_wrk_arguments(parser)

    env = {} if args.with_workers else {
        "EVENTGRAPH_RUN_PROJECTIONS": "0", "EVENTGRAPH_RUN_RELAY": "0", "EVENTGRAPH_RUN_SAGA": "0"
    }
    with served(workers=args.workers, **env) as server:
        token = mint_token(server.secret, "bench", "staff")
        orders = asyncio.run(create_orders(server.base, token, ORDERS))
        work = server.work
        (work / "orders.txt").write_text("\n".join(orders) + "\n")
        add_lua = work / "add_item.lua"
        add_lua.write_text(
            LUA % {"orders": work / "orders.txt", "query": json.dumps(json.dumps(ADD_ITEM)), "token": token}
        )
        typename_lua = work / "typename.lua"
        typename_lua.write_text(TYPENAME_LUA)

        rounds = [
            run_wrk(f"{server.base}/graphql", add_lua, args.connections, args.seconds, server.pid, args.profile if i == 0 else None)
            for i in range(args.rounds)
        ]
        mutations = rounds[-1]
        ceiling = run_wrk(f"{server.base}/graphql", typename_lua, args.connections, args.seconds, server.pid)
    references = measure_references(args.connections, args.seconds)

    workers = "with background workers" if args.with_workers else "API only (workers off)"
    print(f"eventgraph serve, {args.workers} uvicorn worker(s), {workers}; wrk -t1 -c{args.connections} -d{args.seconds}s")
    print_results({**{f"addItem ({i + 1})": r for i, r in enumerate(rounds)}, "{ __typename }": ceiling}, name_width=15)
    print(f"  ratio addItem / __typename: {mutations['rate'] / ceiling['rate']:.2f}")
    # the machine may be shared: CPU per request says what one free core would give
    print(f"  one free core would give ~{1000 / mutations['cpu_ms']:.0f} addItem/s (server CPU bound)")
    print(f"  load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"  goal >= 1,500 addItem/s: {'met' if mutations['rate'] >= 1500 else 'NOT met'}")
    print(calibration_lines(mutations["rate"], 1500, "addItem", references))
    return 0 if all(r["errors"] == 0 for r in rounds) else 1


if __name__ == "__main__":
    raise SystemExit(main())
