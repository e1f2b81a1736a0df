"""Read-model queries over HTTP against a real `eventgraph serve` (1 uvicorn worker), with wrk.

    python -m benchmarks.http_reads [--seconds 10] [--connections 32] [--orders 2000]

Starts `eventgraph serve` (projections on; relay and saga off) on a free port and a
scratch database, appends orders with three lines each through the event store,
waits for the orders projection to catch up, then runs wrk (one thread, 32
connections) on: `order(id)` over random orders with every field and its lines
(27 fields), the same selecting only `id status total { amount }`; `orders(first: 20)` with lines;
and `{ __typename }` as the GraphQL ceiling; then the reference apps of
`benchmarks._references`, which FIELD-NOTES measured too, to put the goal in this
machine's terms. Prints req/s, latencies, server CPU per request and the ratios. Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import asyncio
import json
import os

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
    wait_caught_up,
    wrk_arguments,
)
from eventstore import Appender, AppendRequest, NewEvent, StreamWrite
from eventstore.pool import create_pool

ORDER = (
    "query($id: ID!) { order(id: $id) { id customerId status version total { amount currency } "
    "lines { sku quantity unitPrice { amount } lineTotal { amount } } } }"
)
ORDER_LEAN = "query($id: ID!) { order(id: $id) { id status total { amount } } }"
ORDERS = (
    "{ orders(first: 20) { edges { cursor node { id status total { amount } "
    "lines { sku quantity unitPrice { amount } lineTotal { amount } } } } pageInfo { hasNextPage endCursor } } }"
)

ORDER_LUA = orders_lua(r"""
request = function()
  n = n + 1
  local body = '{"query":' .. query .. ',"variables":{"id":"' .. orders[(n * 7919 %% #orders) + 1] .. '"}}'
  return wrk.format("POST", "/graphql", headers, body)
end
""")

LIST_LUA = r"""
wrk.method = "POST"
wrk.body = '{"query":' .. %(query)s .. '}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local errors = 0
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("errors %%d\n", errors))
end
"""


async def seed(dsn: str, count: int) -> list[str]:
    pool = await create_pool(dsn, max_size=4)
    appender = Appender(pool, outbox=False)
    meta = {"correlation_id": "bench", "user_id": "bench", "service": "bench"}
    ids = [f"bench_{i}" for i in range(count)]
    try:
        for start in range(0, count, 200):
            writes = []
            for i in range(start, min(start + 200, count)):
                events = [NewEvent("order.created.v2", {"customer_id": f"cus_{i % 100}", "currency": "USD"}, meta)]
                events += [
                    NewEvent("item.added.v2", {"item_id": f"{s}{i}", "quantity": 2, "price": "9.99", "discount": "0"}, meta)
                    for s in "ABC"
                ]
                writes.append(StreamWrite(f"order-{ids[i]}", events, owner=f"cus_{i % 100}"))
            await asyncio.gather(*(appender.append(AppendRequest([w])) for w in writes))
    finally:
        await appender.close()
        await pool.close()
    return ids


def main() -> int:
    parser = wrk_arguments(__doc__, seconds=10, connections=32, profiled_run="the server during the order(id) run")
    parser.add_argument("--orders", type=int, default=2000)
    args = parse_wrk_arguments(parser)

    load_before = os.getloadavg()[0]
    with served(EVENTGRAPH_RUN_PROJECTIONS="1", EVENTGRAPH_RUN_RELAY="0", EVENTGRAPH_RUN_SAGA="0") as server:
        ids = asyncio.run(seed(server.dsn, args.orders))
        token = mint_token(server.secret, "bench", "staff")
        wait_caught_up(server.base, token, "orders")
        work = server.work
        (work / "orders.txt").write_text("\n".join(ids) + "\n")
        scripts = {
            "order(id)": ORDER_LUA % {"orders": work / "orders.txt", "query": json.dumps(json.dumps(ORDER)), "token": token},
            "order(id) lean": ORDER_LUA % {"orders": work / "orders.txt", "query": json.dumps(json.dumps(ORDER_LEAN)), "token": token},
            "orders(first: 20)": LIST_LUA % {"query": json.dumps(json.dumps(ORDERS)), "token": token},
            "{ __typename }": TYPENAME_LUA,
        }
        results = {}
        for name, text in scripts.items():
            script = work / f"{len(results)}.lua"
            script.write_text(text)
            profile = args.profile if name == "order(id)" else None
            results[name] = run_wrk(f"{server.base}/graphql", script, args.connections, args.seconds, server.pid, profile)
    references = measure_references(args.connections, args.seconds)

    print(f"eventgraph serve, 1 uvicorn worker, projections on; {args.orders} orders of 3 lines;"
          f" wrk -t1 -c{args.connections} -d{args.seconds}s, load average before {load_before:.2f}")
    print_results(results, name_width=18)
    ceiling = results["{ __typename }"]["rate"]
    single = results["order(id)"]
    print(f"  ratio order(id) / __typename: {single['rate'] / ceiling:.2f};"
          f" orders(first: 20) / __typename: {results['orders(first: 20)']['rate'] / ceiling:.2f}")
    print(f"  one free core would give ~{1000 / single['cpu_ms']:.0f} order(id)/s (server CPU bound)")
    print(f"  load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    lean = results["order(id) lean"]["rate"]
    print(f"  goal >= 2,000 order(id)/s: full selection {'met' if single['rate'] >= 2000 else 'NOT met'},"
          f" lean selection {'met' if lean >= 2000 else 'NOT met'}")
    print(calibration_lines(single["rate"], 2000, "order(id)", references))
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
