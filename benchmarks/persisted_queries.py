"""Automatic persisted queries over HTTP against a real `eventgraph serve` (1 worker), with wrk.

    python -m benchmarks.persisted_queries [--seconds 5] [--connections 32]

The same small query (`headPosition`, a staff token) sent three ways, in one run:
as text (the baseline: no `persistedQuery`), by hash alone once stored (a hit, served
from the process's known documents), and by random unknown hashes (a miss each: one
lookup in the shared store, Redis at REDIS_URL or the embedded one). Prints req/s,
latencies and the server's CPU per request. Needs wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import hashlib
import json
import os

import httpx

from api.auth import mint_token
from benchmarks._serve import parse_wrk_arguments, run_wrk, served, wrk_arguments

QUERY = "query Bench { headPosition }"

POST_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local expected = "%(expected)s"
local errors = 0
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, expected, 1, true) then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("errors %%d\n", errors))
end
"""
FIXED_BODY = 'wrk.body = %(body)s\n'
RANDOM_HASH = r"""
math.randomseed(os.time())
local hex = "0123456789abcdef"
request = function()
  local digits = {}
  for i = 1, 64 do local n = math.random(16) digits[i] = hex:sub(n, n) end
  local body = '{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"' .. table.concat(digits) .. '"}}}'
  return wrk.format(nil, nil, nil, body)
end
"""


def main() -> int:
    parser = wrk_arguments(__doc__, seconds=5, connections=32)
    args = parse_wrk_arguments(parser)

    sha256 = hashlib.sha256(QUERY.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    load_before = os.getloadavg()[0]
    with served(EVENTGRAPH_RUN_PROJECTIONS="0", EVENTGRAPH_RUN_RELAY="0", EVENTGRAPH_RUN_SAGA="0") as server:
        token = mint_token(server.secret, "bench", "staff")
        registered = httpx.post(
            f"{server.base}/graphql",
            json={"query": QUERY, "extensions": persisted},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert registered == {"data": {"headPosition": "0"}}, registered
        fixed = POST_LUA % {"token": token, "expected": "headPosition"}
        scripts = {
            "as text": fixed + FIXED_BODY % {"body": json.dumps(json.dumps({"query": QUERY}))},
            "by hash (hit)": fixed + FIXED_BODY % {"body": json.dumps(json.dumps({"extensions": persisted}))},
            "unknown hash (miss)": POST_LUA % {"token": token, "expected": "PERSISTED_QUERY_NOT_FOUND"}
            + RANDOM_HASH,
        }
        results = {}
        for name, text in scripts.items():
            script = server.work / f"{len(results)}.lua"
            script.write_text(text)
            results[name] = run_wrk(f"{server.base}/graphql", script, args.connections, args.seconds, server.pid)

    print(f"eventgraph serve, 1 uvicorn worker; wrk -t1 -c{args.connections} -d{args.seconds}s,"
          f" load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    for name, result in results.items():
        print(
            f"  {name:<20} {result['rate']:8.0f} req/s  p50 {result['p50_ms']:.1f} ms  "
            f"p99 {result['p99_ms']:.1f} ms  server CPU {result['cpu_ms']:.3f} ms/req "
            f"({int(result['requests'])} requests, {int(result['errors'])} errors)"
        )
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
