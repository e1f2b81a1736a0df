#!/usr/bin/env bash
# The fault test (issue 13): three `eventgraph serve` processes on a private PostgreSQL and a
# private Redis, orders flowing; kill -9 of the relay's lease holder, a PostgreSQL restart,
# a Redis restarted empty; then every order must reconcile. Once per CI run (a check, not
# part of the two pytest passes), bounded by the timeout below.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}
timeout --kill-after=10 180 python -m tests.faults.three_nodes
