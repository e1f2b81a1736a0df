#!/usr/bin/env bash
# GraphQL over HTTP and GraphiQL against a real `eventgraph serve` (1 worker, a free port):
#   1. the npm graphql-http audit (GraphQL over HTTP spec): every audit must be ok;
#   2. GraphiQL rendered offline in headless Chromium (required in CI; elsewhere when installed).
# Env: GRAPHIQL_SCREENSHOT (default $TMPDIR/eventgraph-graphiql.png).
set -euo pipefail
source "$(dirname "$0")/../lib/serve.sh"
start_server

token=$(eventgraph token --sub audit --role staff)

echo "-- graphql-http audit against $url"
audit_dir=.ci/graphql-http-audit
npm_ready "$audit_dir" graphql-http
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
elif [ "${CI:-}" = "true" ]; then
  echo "no chromium for the GraphiQL check (apt-get install -y chromium)" >&2
  exit 1
else
  echo "-- skipping the GraphiQL check: no chromium (apt-get install -y chromium)"
fi
