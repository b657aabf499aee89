#!/bin/sh
# README command one: the worker on http://127.0.0.1:8787, verifying tokens from a local dev
# issuer on http://127.0.0.1:8788, with ready-to-paste curl lines. No Auth0 tenant needed.
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
WORKER_PORT="${WORKER_PORT:-8787}"
ISSUER_PORT=8788  # .dev.vars's AUTH0_DOMAIN points here
export WRANGLER_SEND_METRICS=false

ensure_tools
say "building the dev issuer"
cargo build --quiet --release -p edge-auth-dev-issuer
ISSUER="$ROOT/target/release/edge-auth-dev-issuer"

pids=""
cleanup() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT INT TERM

"$ISSUER" serve --port "$ISSUER_PORT" &
pids="$!"
say "building and starting the worker (wrangler dev, workerd)"
# The wrangler launcher itself (not npx), so that stopping it stops workerd too.
wrangler dev --ip 127.0.0.1 --port "$WORKER_PORT" --show-interactive-dev-session=false &
pids="$pids $!"

i=0
until curl -fsS -o /dev/null "http://127.0.0.1:$WORKER_PORT/api/public" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 300 ]; then say "the worker did not start within 5 minutes"; exit 1; fi
    sleep 1
done

TOKEN="$("$ISSUER" mint)"
SCOPED="$("$ISSUER" mint --scope "openid read:messages")"
URL="http://127.0.0.1:$WORKER_PORT"
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
wait
