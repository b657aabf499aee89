#!/bin/sh
# README command one: the worker on http://127.0.0.1:8787, verifying tokens from a local dev
# issuer on http://127.0.0.1:8788, with ready-to-paste curl lines. No Auth0 tenant needed.
#
#   ./scripts/dev.sh                          the quickstart's demo routes
#   ./scripts/dev.sh --gateway URL            a gateway in front of your local API at URL
#   ./scripts/dev.sh --gateway echo           a gateway in front of a built-in echo origin (8790)
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
WORKER_PORT="${WORKER_PORT:-8787}"
ISSUER_PORT=8788  # .dev.vars's AUTH0_DOMAIN points here
ECHO_PORT=8790
export WRANGLER_SEND_METRICS=false

ORIGIN=""
case "${1:-}" in
    "") ;;
    --gateway)
        ORIGIN="${2:?--gateway needs an origin URL such as http://127.0.0.1:3000, or echo}"
        ;;
    *) say "usage: $0 [--gateway URL|echo]"; exit 2 ;;
esac

# An example rule table for the gateway: a public prefix, reads for any valid token, writes
# for tokens holding write:api; everything else is denied.
ROUTES='[
  {"path": "/public/*", "auth": "public"},
  {"path": "/api/*", "methods": ["GET"]},
  {"path": "/api/*", "methods": ["POST", "PUT", "PATCH", "DELETE"], "scopes": ["write:api"]}
]'

ensure_tools
say "building the dev issuer"
cargo build --quiet --release -p edge-auth-dev-issuer
ISSUER="$ROOT/target/release/edge-auth-dev-issuer"

pids=""
cleanup() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT INT TERM

"$ISSUER" serve --port "$ISSUER_PORT" &
pids="$!"
if [ "$ORIGIN" = echo ]; then
    "$ISSUER" origin --port "$ECHO_PORT" &
    pids="$pids $!"
    ORIGIN="http://127.0.0.1:$ECHO_PORT"
fi
say "building and starting the worker (wrangler dev, workerd)"
# The wrangler launcher itself (not npx), so that stopping it stops workerd too.
if [ -n "$ORIGIN" ]; then
    wrangler dev --ip 127.0.0.1 --port "$WORKER_PORT" --show-interactive-dev-session=false \
        --var "ORIGIN_URL:$ORIGIN" --var "ROUTES:$ROUTES" &
else
    wrangler dev --ip 127.0.0.1 --port "$WORKER_PORT" --show-interactive-dev-session=false &
fi
wrangler_pid=$!
pids="$pids $wrangler_pid"

URL="http://127.0.0.1:$WORKER_PORT"
i=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/public/" 2>/dev/null)" != 000 ]; do
    i=$((i + 1))
    if ! kill -0 "$wrangler_pid" 2>/dev/null; then say "wrangler dev stopped; see its output above"; exit 1; fi
    if [ "$i" -gt 300 ]; then say "the worker did not start within 5 minutes"; exit 1; fi
    sleep 1
done

TOKEN="$("$ISSUER" mint)"
if [ -z "$ORIGIN" ]; then
    SCOPED="$("$ISSUER" mint --scope "openid read:messages")"
    cat <<MSG

  edge-auth is running at $URL, trusting the dev issuer at http://127.0.0.1:$ISSUER_PORT/
  Try (tokens are valid for an hour; mint more with: $ISSUER mint --scope read:messages):

  curl -i $URL/api/public
  curl -i $URL/api/private -H "Authorization: Bearer $TOKEN"
  curl -i $URL/api/private-scoped -H "Authorization: Bearer $SCOPED"
  curl -i $URL/api/private-scoped -H "Authorization: Bearer $TOKEN"     # 403: no read:messages
  curl -i $URL/api/private                                              # 401

  Ctrl-C stops both.

MSG
else
    WRITER="$("$ISSUER" mint --scope "write:api")"
    cat <<MSG

  edge-auth is a gateway at $URL in front of $ORIGIN, trusting the dev issuer at
  http://127.0.0.1:$ISSUER_PORT/. Its rules (ROUTES, see scripts/dev.sh): /public/* is open,
  GET /api/* needs any valid token, writes to /api/* need write:api, everything else is denied.

  curl -i $URL/public/health                                                     # forwarded
  curl -i $URL/api/orders                                                        # 401, never forwarded
  curl -i $URL/api/orders -H "Authorization: Bearer $TOKEN"                     # forwarded with X-Auth-Subject
  curl -i -X POST $URL/api/orders -H "Authorization: Bearer $TOKEN"             # 403: no write:api
  curl -i -X POST $URL/api/orders -H "Authorization: Bearer $WRITER"            # forwarded, X-Auth-Scopes: write:api
  curl -i $URL/admin                                                             # 404: not listed, denied

  Ctrl-C stops everything.

MSG
fi
wait
