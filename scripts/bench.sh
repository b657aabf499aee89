#!/bin/sh
# The benchmark: edge-auth against a plain JavaScript worker (jose) on bare workerd, driven by wrk.
# Never part of ./scripts/test.sh. Usage: ./scripts/bench.sh [seconds-per-run] [rounds]
# ./scripts/bench.sh --gateway [seconds] [rounds] [--assertion] [--jose-timeout]: the gateway hop against a
#   pass-through and a jose gateway (--assertion: its rows with ASSERTION_KEYS set too, beside the same rows
#   without; --jose-timeout: a jose gateway with a 30 s origin timeout too).
# ./scripts/bench.sh --cold [tries]: a fresh workerd per try, the first answers of a new isolate.
# ./scripts/bench.sh --profile [--gateway [--jose]] [--token|--distinct|--mcp] [PATH]: where a request's CPU
#   goes (a V8 profile; --jose: the jose gateway's).
# (defaults 10 and 3; more options: python3 bench/bench.py --help). The table goes to stdout and
# to bench/results/<UTC time>.md. EDGE_AUTH_PREBUILT=1 benches the build/ already there.
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
export WRANGLER_SEND_METRICS=false

ensure_tools
if ! command -v wrk >/dev/null 2>&1; then
    say "installing wrk (Debian package)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk
fi
if [ "${1:-}" = --gateway ]; then
    shift
    exec python3 bench/gateway.py "$@"
fi
if [ "${1:-}" = --cold ]; then
    shift
    exec python3 bench/cold.py "$@"
fi
if [ "${1:-}" = --profile ]; then
    shift
    exec python3 bench/profile.py "$@"
fi
exec python3 bench/bench.py "$@"
