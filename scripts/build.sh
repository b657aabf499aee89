#!/bin/sh
# The wrangler.toml [build] command: builds the worker into build/ with the pinned tools.
# `npx wrangler dev` and `npx wrangler deploy` run it; it needs no environment of its own.
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
# The end-to-end harness builds once and starts many workers; they skip the rebuild.
if [ "${EDGE_AUTH_PREBUILT:-}" = 1 ] && [ -f build/worker/shim.mjs ]; then
    exit 0
fi
ensure_tools
exec "$WORKER_BUILD" --release
