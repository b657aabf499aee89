#!/bin/sh
# The soak: the release worker on bare workerd, in demo and gateway modes, under a fixed mix of
# valid and invalid tokens at fixed concurrency while the issuer rotates its signing key once.
# Never part of ./scripts/test.sh. Usage: ./scripts/soak.sh [seconds] (default 600; more options:
# python3 bench/soak.py --help). Its last line is the counts; it exits non-zero on any 5xx, valid
# token refused, invalid token admitted, issuer fetches past the cooldown bound, or memory growth.
# A report lands in bench/results/soak-<UTC time>.md. EDGE_AUTH_PREBUILT=1 soaks the build/ already there.
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
export WRANGLER_SEND_METRICS=false

ensure_tools
exec python3 bench/soak.py "$@"
