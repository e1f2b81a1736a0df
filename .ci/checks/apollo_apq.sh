#!/usr/bin/env bash
# Automatic persisted queries with the real Apollo Client (.ci/apq-check: npm @apollo/client,
# PersistedQueryLink + HttpLink) against a real `eventgraph serve` (1 worker, a free port):
# a first run misses and registers, later runs hit by hash alone, over POST and GET.
set -euo pipefail
source "$(dirname "$0")/../lib/serve.sh"
start_server

token=$(eventgraph token --sub apq-check --role staff)
echo "-- Apollo Client persisted queries against $url"
check_dir=.ci/apq-check
npm_ready "$check_dir" @apollo/client
APQ_AUTHORIZATION="Bearer $token" node "$check_dir/check.mjs" "$url"
