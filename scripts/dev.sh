#!/bin/sh
# README command one: the worker on http://127.0.0.1:8787, verifying tokens from a local dev
# issuer on http://127.0.0.1:8788, with ready-to-paste curl lines. No Auth0 tenant needed.
#
#   ./scripts/dev.sh                          the quickstart's demo routes
#   ./scripts/dev.sh --gateway URL            a gateway in front of your local API at URL
#   ./scripts/dev.sh --gateway echo           a gateway in front of a built-in echo origin (8790)
#   ./scripts/dev.sh --demo                   a browser page on 8790 that logs in with Auth0's SPA SDK
#                                             at the dev issuer and calls the worker cross-origin
#   ./scripts/dev.sh --mcp                    an example MCP server (the official SDK) on 8791 behind
#                                             the gateway as an OAuth protected resource
#   ./scripts/dev.sh [MODE] --fleet           also the fleet worker (fleet/, its Durable Objects) on
#                                             8789: DPOP_REPLAY=fleet, and the example rules read the
#                                             fleet's revocations; alone, the gateway in front of echo
#
# WORKER_PORT, ISSUER_PORT, ECHO_PORT, PAGE_PORT, MCP_PORT, FLEET_PORT and INSPECTOR_PORT move the
# servers (the browser and MCP tests do). DPOP_REPLAY (isolate or fleet) is passed on to the
# worker; ROUTES replaces --gateway's example rules. DPOP_REPLAY=fleet, or a rule with
# "revocation": "fleet", starts the fleet as --fleet does.
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
WORKER_PORT="${WORKER_PORT:-8787}"
ISSUER_PORT="${ISSUER_PORT:-8788}"  # .dev.vars's AUTH0_DOMAIN points at 8788; another port is passed on
ECHO_PORT="${ECHO_PORT:-8790}"
PAGE_PORT="${PAGE_PORT:-8790}"
MCP_PORT="${MCP_PORT:-8791}"
export WRANGLER_SEND_METRICS=false

FLEET_PORT="${FLEET_PORT:-8789}"

ORIGIN=""
DEMO=""
MCP=""
FLEET=""
modes=0
usage() { say "usage: $0 [--gateway URL|echo | --demo | --mcp] [--fleet]"; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --gateway)
            ORIGIN="${2:?--gateway needs an origin URL such as http://127.0.0.1:3000, or echo}"
            modes=$((modes + 1))
            shift
            ;;
        --demo) DEMO=1; modes=$((modes + 1)) ;;
        --mcp) MCP=1; modes=$((modes + 1)) ;;
        --fleet) FLEET=1 ;;
        "") ;;
        *) usage ;;
    esac
    shift
done
[ "$modes" -le 1 ] || usage
# The fleet's revocations are a gateway rule's setting (the demo routes read KV's deny list), so
# --fleet alone puts the gateway with its example rules in front of the echo origin.
[ -n "$FLEET" ] && [ "$modes" = 0 ] && ORIGIN="echo"
DPOP_REPLAY="${DPOP_REPLAY:-}"
if [ -n "$FLEET" ]; then
    DPOP_REPLAY="${DPOP_REPLAY:-fleet}"
    REVOCATION=', "revocation": "fleet"'
else
    REVOCATION=""
fi

# An example rule table for the gateway: a public prefix, reads for any valid token, writes
# for tokens holding write:api; everything else is denied. ROUTES in the environment replaces it.
EXAMPLE_ROUTES='[
  {"path": "/public/*", "auth": "public"},
  {"path": "/api/*", "methods": ["GET"]'"$REVOCATION"'},
  {"path": "/api/*", "methods": ["POST", "PUT", "PATCH", "DELETE"], "scopes": ["write:api"]'"$REVOCATION"'}
]'
ROUTES="${ROUTES:-$EXAMPLE_ROUTES}"

ensure_tools
say "building the dev issuer"
cargo build --quiet --release -p edge-auth-dev-issuer
ISSUER="$ROOT/target/release/edge-auth-dev-issuer"
# The dev issuer's keys (its signing key, and the DPoP key `proof` signs with), named absolutely so
# that every command printed below works from any directory.
STATE="$ROOT/.dev-issuer"

pids=""
cleanup() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT INT TERM

PAGE="http://127.0.0.1:$PAGE_PORT/"
if [ -n "$DEMO" ]; then
    # The page is bundled with its ports baked in, into a folder of its own per port.
    DEMO_DIR="$ROOT/target/demo-$PAGE_PORT"
    mkdir -p "$DEMO_DIR"
    cp demo/index.html "$DEMO_DIR/index.html"
    "$ESBUILD_BIN" demo/app.js --bundle --format=esm --minify --log-level=warning --outfile="$DEMO_DIR/app.js" \
        --define:__EDGE_AUTH_DEMO__="{\"issuer\":\"http://127.0.0.1:$ISSUER_PORT\",\"clientId\":\"edge-auth-dev-client\",\"audience\":\"https://edge-auth.local/api\",\"api\":\"http://127.0.0.1:$WORKER_PORT\",\"page\":\"$PAGE\"}"
    "$ISSUER" serve --port "$ISSUER_PORT" --dir "$STATE" --redirect-uris "$PAGE" &
    pids="$!"
    "$ISSUER" pages --port "$PAGE_PORT" --dir "$DEMO_DIR" &
    pids="$pids $!"
else
    "$ISSUER" serve --port "$ISSUER_PORT" --dir "$STATE" &
    pids="$!"
fi
URL="http://127.0.0.1:$WORKER_PORT"
if [ -n "$MCP" ]; then
    # The example server behind a rule that makes it a protected resource: tokens must be issued
    # for its URL (the resource), any call needs mcp:tools, delete_repo repo:admin on top. Scopes
    # come from `scope` only, so a client holds what it asked for and steps up for more.
    node examples/mcp/server.mjs "$MCP_PORT" &
    pids="$pids $!"
    ORIGIN="http://127.0.0.1:$MCP_PORT"
    ROUTES='[{"path": "/mcp", "methods": ["GET", "POST", "DELETE"], "resource": "'"$URL"'/mcp",
              "scopes": ["mcp:tools"], "mcp": {"tools/call:delete_repo": ["repo:admin"]}'"$REVOCATION"'}]'
fi
if [ "$ORIGIN" = echo ]; then
    "$ISSUER" origin --port "$ECHO_PORT" &
    pids="$pids $!"
    ORIGIN="http://127.0.0.1:$ECHO_PORT"
fi

# The fleet, when anything asks for it: DPOP_REPLAY=fleet (here or in .dev.vars), or a rule that
# reads the fleet's revocations.
if [ "$DPOP_REPLAY" = fleet ] || grep -Eq '^[[:space:]]*DPOP_REPLAY[[:space:]]*=[[:space:]]*"?fleet' .dev.vars 2>/dev/null ||
    { [ -n "$ORIGIN" ] && printf '%s' "$ROUTES" | tr '\n' ' ' | grep -Eq '"revocation"[[:space:]]*:[[:space:]]*"fleet"'; }; then
    FLEET=1
fi
EDGE_CONFIG=""
if [ -n "$FLEET" ]; then
    # Everything of the fleet's in one git-ignored folder: its state (kept across restarts, so a
    # used proof stays used), the dev registry, and edge-auth's configuration with the bindings.
    DEV_FLEET="$ROOT/.wrangler/dev-fleet"
    FLEET_URL="http://127.0.0.1:$FLEET_PORT"
    say "building the fleet worker (fleet/; the first build compiles the worker crate, a few minutes)"
    sh fleet/build.sh
    mkdir -p "$DEV_FLEET"
    # The two wrangler dev processes find each other through wrangler's dev registry: this
    # script's own, so that no other wrangler dev on the machine answers for either worker.
    export WRANGLER_REGISTRY_PATH="$DEV_FLEET/registry"
    FLEET_ADMIN_TOKEN="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    say "starting the fleet worker on $FLEET_URL (wrangler dev -c fleet/wrangler.toml)"
    # Its own process: a second config in edge-auth's wrangler dev would get no port and no --var.
    FLEET_PREBUILT=1 wrangler dev -c fleet/wrangler.toml --ip 127.0.0.1 --port "$FLEET_PORT" \
        --show-interactive-dev-session=false --persist-to "$DEV_FLEET/state" \
        --var "FLEET_ADMIN_TOKEN:$FLEET_ADMIN_TOKEN" &
    fleet_pid=$!
    pids="$pids $fleet_pid"

    # edge-auth's wrangler.toml plus the bindings it lacks (they are commented out there, so that
    # a plain deploy needs no fleet). wrangler reads main, [build]'s watch_dir and .dev.vars
    # relative to a configuration's folder; the build command still runs here, in the root.
    EDGE_CONFIG="$DEV_FLEET/wrangler.toml"
    awk '/^main = "/ { sub(/^main = "/, "main = \"../../") } { print } /^\[build\]/ { print "watch_dir = \"../../src\"" }' \
        wrangler.toml >"$EDGE_CONFIG"
    for binding in FLEET_REPLAY:ReplayShard FLEET_REVOCATIONS:Revocations; do
        grep -q "^name = \"${binding%%:*}\"" wrangler.toml ||
            printf '\n[[durable_objects.bindings]]\nname = "%s"\nclass_name = "%s"\nscript_name = "edge-auth-fleet"\n' \
                "${binding%%:*}" "${binding#*:}" >>"$EDGE_CONFIG"
    done
    ln -sf ../../.dev.vars "$DEV_FLEET/.dev.vars"

    i=0
    until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $FLEET_ADMIN_TOKEN" "$FLEET_URL/list" 2>/dev/null)" = 200 ]; do
        i=$((i + 1))
        if ! kill -0 "$fleet_pid" 2>/dev/null; then say "the fleet's wrangler dev stopped; see its output above"; exit 1; fi
        if [ "$i" -gt 120 ]; then say "the fleet worker did not start within 2 minutes"; exit 1; fi
        sleep 1
    done
fi

say "building and starting the worker (wrangler dev, workerd)"
set -- --ip 127.0.0.1 --port "$WORKER_PORT" --show-interactive-dev-session=false
# The generated configuration keeps the local state (JWKS_KV) where a plain run keeps it.
[ -n "$EDGE_CONFIG" ] && set -- "$@" -c "$EDGE_CONFIG" --persist-to "$ROOT/.wrangler/state"
[ -n "$DPOP_REPLAY" ] && set -- "$@" --var "DPOP_REPLAY:$DPOP_REPLAY"
[ -n "${INSPECTOR_PORT:-}" ] && set -- "$@" --inspector-port "$INSPECTOR_PORT"
[ "$ISSUER_PORT" != 8788 ] && set -- "$@" --var "AUTH0_DOMAIN:127.0.0.1:$ISSUER_PORT"
[ -n "$ORIGIN" ] && set -- "$@" --var "ORIGIN_URL:$ORIGIN" --var "ROUTES:$ROUTES"
# The MCP Inspector's page may call the server from the browser (the edge refuses other pages).
# The resource is also the dev issuer's audience: a rule takes tokens for it only from an issuer
# that lists it.
[ -n "$MCP" ] && set -- "$@" --var "SCOPE_SOURCE:scope" --var "AUTH0_AUDIENCE:https://edge-auth.local/api,$URL/mcp" \
    --var "CORS_ALLOWED_ORIGINS:http://localhost:6274,http://127.0.0.1:6274"
# Only the page's origin may read the worker's answers from script.
[ -n "$DEMO" ] && set -- "$@" --var "CORS_ALLOWED_ORIGINS:http://127.0.0.1:$PAGE_PORT"
# The wrangler launcher itself (not npx), so that stopping it stops workerd too.
wrangler dev "$@" &
wrangler_pid=$!
pids="$pids $wrangler_pid"

answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" != 000 ]; }
i=0
until answers "$URL/public/" && answers "http://127.0.0.1:$ISSUER_PORT/.well-known/jwks.json" &&
    { [ -z "$DEMO" ] || answers "$PAGE"; } && { [ -z "$MCP" ] || answers "http://127.0.0.1:$MCP_PORT/mcp"; }; do
    i=$((i + 1))
    if ! kill -0 "$wrangler_pid" 2>/dev/null; then say "wrangler dev stopped; see its output above"; exit 1; fi
    if [ "$i" -gt 300 ]; then say "the worker did not start within 5 minutes"; exit 1; fi
    sleep 1
done

TOKEN="$("$ISSUER" mint --port "$ISSUER_PORT" --dir "$STATE")"
if [ -n "$MCP" ]; then
    cat <<MSG

  An MCP server (examples/mcp/server.mjs, the official SDK) is behind edge-auth at
  $URL/mcp: an OAuth protected resource whose authorization server is the dev issuer
  (http://127.0.0.1:$ISSUER_PORT/: discovery, registration, PKCE, the resource parameter).
  The server checks no token; edge-auth's rule (ROUTES in scripts/dev.sh) asks for a token issued
  for $URL/mcp with mcp:tools, and repo:admin on top for the delete_repo tool.

  Connect the SDK client (it registers, logs in as dev-user|3, lists the tools, steps up for
  delete_repo):

  node $ROOT/examples/mcp/client.mjs $URL/mcp --tool delete_repo --args '{"name":"demo"}'
  node $ROOT/examples/mcp/client.mjs $URL/mcp --m2m --tool whoami      # machine to machine

  The MCP Inspector (npx @modelcontextprotocol/inspector, Streamable HTTP, URL above) works too.
  What a client sees first:

  curl -i -X POST $URL/mcp -H 'Content-Type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'   # 401
  curl -s $URL/.well-known/oauth-protected-resource/mcp       # RFC 9728 metadata
  curl -s http://127.0.0.1:$ISSUER_PORT/.well-known/oauth-authorization-server

MSG
    # On a line of its own, for people and for the MCP test.
    echo "mcp: $URL/mcp"
    echo
    say "Ctrl-C stops all three."
elif [ -n "$DEMO" ]; then
    cat <<MSG

  The demo page logs in with Auth0's SPA SDK (@auth0/auth0-spa-js) at the dev issuer
  (http://127.0.0.1:$ISSUER_PORT/, dev users: dev-user|1 holds read:messages, dev-user|2 does not) and
  calls the worker at $URL from its own origin. Open it in a browser:

MSG
    # On a line of its own, for people and for the browser test.
    echo "page: $PAGE"
    echo
    say "Ctrl-C stops all three."
elif [ -z "$ORIGIN" ]; then
    SCOPED="$("$ISSUER" mint --port "$ISSUER_PORT" --dir "$STATE" --scope "openid read:messages")"
    # Bound to the EC key `proof` keeps in $STATE (RFC 9449 cnf.jkt).
    BOUND="$("$ISSUER" mint --port "$ISSUER_PORT" --dir "$STATE" --dpop-jkt "$("$ISSUER" jkt --dir "$STATE")")"
    cat <<MSG

  edge-auth is running at $URL, trusting the dev issuer at http://127.0.0.1:$ISSUER_PORT/
  Try (tokens are valid for an hour; mint more with: $ISSUER mint --dir $STATE --scope read:messages):

  curl -i $URL/api/public
  curl -i $URL/api/private -H "Authorization: Bearer $TOKEN"
  curl -i $URL/api/private-scoped -H "Authorization: Bearer $SCOPED"
  curl -i $URL/api/private-scoped -H "Authorization: Bearer $TOKEN"     # 403: no read:messages
  curl -i $URL/api/private                                              # 401

  DPoP: a token bound to a local key, and a fresh proof for each call (a proof is good once):

  curl -i $URL/api/private -H "Authorization: DPoP $BOUND" -H "DPoP: \$($ISSUER proof --dir $STATE --method GET --url $URL/api/private --token $BOUND)"

  Ctrl-C stops both.

MSG
else
    WRITER="$("$ISSUER" mint --port "$ISSUER_PORT" --dir "$STATE" --scope "write:api")"
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
if [ -n "$FLEET" ]; then
    cat <<MSG
  The fleet (fleet/: the Durable Objects that edge-auth shares across isolates) runs at
  $FLEET_URL as a wrangler dev of its own, its state in $DEV_FLEET/state
  (kept across restarts), its admin token generated for this run. edge-auth binds it with
  DPOP_REPLAY=${DPOP_REPLAY:-isolate}. Ctrl-C stops the fleet too.

MSG
    if [ "$DPOP_REPLAY" = fleet ] && [ -z "$MCP" ] && [ -z "$DEMO" ]; then
        DPOP_PATH=/api/private
        [ -n "$ORIGIN" ] && DPOP_PATH=/api/orders
        BOUND="${BOUND:-$("$ISSUER" mint --port "$ISSUER_PORT" --dir "$STATE" --dpop-jkt "$("$ISSUER" jkt --dir "$STATE")")}"
        cat <<MSG
  A DPoP proof is good once in the whole fleet, not once per isolate. The same proof twice: the
  second is 401 "The DPoP proof was already used" (restart this script within 5 minutes and send
  it once more: still 401, from the fleet's memory, where a fresh isolate alone would admit it):

  PROOF="\$($ISSUER proof --dir $STATE --method GET --url $URL$DPOP_PATH --token $BOUND)"
  curl -i $URL$DPOP_PATH -H "Authorization: DPoP $BOUND" -H "DPoP: \$PROOF"
  curl -i $URL$DPOP_PATH -H "Authorization: DPoP $BOUND" -H "DPoP: \$PROOF"    # 401

MSG
    fi
    if [ -n "$ORIGIN" ] && printf '%s' "$ROUTES" | tr '\n' ' ' | grep -Eq '"revocation"[[:space:]]*:[[:space:]]*"fleet"'; then
        SUBJECT="dev-user|1"
        [ -n "$MCP" ] && SUBJECT="dev-user|3"
        cat <<MSG
  Rules with "revocation": "fleet" refuse a revoked token within about a second, everywhere.
  Revoke $SUBJECT (the tokens above) in the fleet, and lift it again (--no-kv: this setup binds no
  DENYLIST namespace; against a deployment, deny.sh writes KV too):

  export FLEET_ADMIN_TOKEN=$FLEET_ADMIN_TOKEN
  $ROOT/scripts/deny.sh add sub '$SUBJECT' --for 1h --reason "trying it" --fleet $FLEET_URL --no-kv
MSG
        [ -z "$MCP" ] && [ -z "$DEMO" ] && cat <<MSG
  curl -i $URL/api/orders -H "Authorization: Bearer $TOKEN"    # 401: The token is revoked
MSG
        cat <<MSG
  $ROOT/scripts/deny.sh list --fleet $FLEET_URL --no-kv
  $ROOT/scripts/deny.sh remove sub '$SUBJECT' --fleet $FLEET_URL --no-kv

MSG
    else
        cat <<MSG
  No rule here reads the fleet's revocations (the demo routes read KV's deny list);
  ./scripts/dev.sh --fleet has rules that do.

MSG
    fi
fi
wait
