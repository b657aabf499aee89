#!/bin/sh
# README command two: every test. Host tests of the pure core first (milliseconds), then the
# end-to-end suite against the real worker in wrangler dev (workerd) and a mock issuer.
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
export WRANGLER_SEND_METRICS=false

ensure_tools
say "host tests (pure core, dev issuer)"
cargo test --workspace --quiet
say "building the worker once for the end-to-end suite"
sh scripts/build.sh
say "end-to-end tests (wrangler dev + mock issuer)"
EDGE_AUTH_PREBUILT=1 cargo test --quiet --test e2e -- --ignored --test-threads "${E2E_THREADS:-3}"
