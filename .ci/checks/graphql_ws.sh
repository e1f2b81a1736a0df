#!/usr/bin/env bash
# graphql-transport-ws conformance with the npm graphql-ws client (.ci/graphql-ws-check)
# against a real `eventgraph serve` (1 worker, a free port): ack, subscribe/next/complete,
# ping/pong, 4403/4401 close codes, a syntax error isolated to its own operation.
set -euo pipefail
source "$(dirname "$0")/../lib/serve.sh"
start_server

token=$(eventgraph token --sub ws-check --role staff)
# The subscription starts from the beginning of the log; the trigger appends two events.
trigger="curl -fsS -o /dev/null -H 'Content-Type: application/json' -H 'Authorization: Bearer $token' \
  -d '{\"query\":\"mutation { createOrder(input: {customerId: \\\"cus_ws\\\"}) { position } }\"}' $url \
  && curl -fsS -o /dev/null -H 'Content-Type: application/json' -H 'Authorization: Bearer $token' \
  -d '{\"query\":\"mutation { createOrder(input: {customerId: \\\"cus_ws\\\"}) { position } }\"}' $url"

echo "-- graphql-ws client against ws://127.0.0.1:$port/graphql"
check_dir=.ci/graphql-ws-check
npm_ready "$check_dir" graphql-ws
WS_AUTHORIZATION="Bearer $token" WS_EXPECT=2 WS_TRIGGER_CMD="$trigger" \
  node "$check_dir/check.mjs" "ws://127.0.0.1:$port/graphql"
