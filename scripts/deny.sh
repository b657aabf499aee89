#!/bin/sh
# Revoking access: writes, removes and lists deny-list entries in the DENYLIST KV namespace and,
# with --fleet, in the fleet's Revocations object too, so that no one hand-writes either format
# (docs/operating.md, "Revoking access").
#
#   ./scripts/deny.sh add    [sub|jti|client|iss] VALUE [--for DURATION] [--reason TEXT] [STORES]
#   ./scripts/deny.sh remove [sub|jti|client|iss] VALUE [STORES]
#   ./scripts/deny.sh list   [sub|jti|client|iss] [STORES]
#
#   STORES: [--local] [--persist-to DIR] [--config FILE] [--fleet URL [--no-kv]]
#
# The kind defaults to sub (a subject, such as auth0|64f1…). client is the token's azp (or
# client_id), iss an issuer exactly as in iss. --for takes 90s, 15m, 24h, 7d or seconds (KV's
# shortest expiry is 60 s); without it the entry stays until removed. Set it a little past the
# longest token lifetime and the entry cleans itself up. --reason is logged by the worker when the
# entry refuses a token, never sent to the client.
#
# KV, through `wrangler kv key`: --local (wrangler dev's local KV; the default is the deployed
# namespace), --persist-to DIR (with --local: the state directory wrangler dev uses), --config
# FILE (another wrangler configuration).
#
# The fleet (rules with "revocation": "fleet"; fleet/README.md): --fleet URL, or FLEET_URL in the
# environment, is the edge-auth-fleet worker's admin API (https://edge-auth-fleet.<you>.workers.dev,
# or http://127.0.0.1:PORT in wrangler dev), with its token in FLEET_ADMIN_TOKEN. Each change is
# then written to the fleet first and to KV second, unless --no-kv; list shows both. If one store
# fails, the script says which one holds the change and exits 1: running the same command again
# is harmless.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

usage() {
    sed -n '6,10p' "$0" | sed 's/^# *//' >&2
    exit 2
}

fail() {
    echo "deny.sh: $*" >&2
    exit 1
}

[ $# -ge 1 ] || usage
action="$1"
shift
case "$action" in add | remove | list) ;; *) usage ;; esac

kind=sub
kind_given=""
case "${1:-}" in sub | jti | client | iss)
    kind="$1"
    kind_given=1
    shift
    ;;
esac

value=""
ttl=""
reason=""
where="--remote"
passthrough=""
fleet="${FLEET_URL:-}"
kv=1
while [ $# -gt 0 ]; do
    case "$1" in
    --for)
        [ $# -ge 2 ] || usage
        amount="${2%[smhd]}"
        unit="${2#"$amount"}"
        case "$amount" in '' | *[!0-9]*)
            echo "deny.sh: --for takes a number with s, m, h or d (or seconds): $2" >&2
            exit 2
            ;;
        esac
        case "$unit" in
        '' | s) ttl="$amount" ;;
        m) ttl=$((amount * 60)) ;;
        h) ttl=$((amount * 3600)) ;;
        d) ttl=$((amount * 86400)) ;;
        esac
        shift 2
        ;;
    --reason)
        [ $# -ge 2 ] || usage
        reason="$2"
        shift 2
        ;;
    --local)
        where="--local"
        shift
        ;;
    --persist-to | --config)
        [ $# -ge 2 ] || usage
        passthrough="$passthrough $1 $(printf '%s' "$2" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/")"
        shift 2
        ;;
    --fleet)
        [ $# -ge 2 ] || usage
        fleet="$2"
        shift 2
        ;;
    --no-kv)
        kv=""
        shift
        ;;
    -*) usage ;;
    *)
        [ -z "$value" ] || usage
        value="$1"
        shift
        ;;
    esac
done

if [ -n "$ttl" ]; then
    if [ -n "$kv" ] && [ "$ttl" -lt 60 ]; then
        echo "deny.sh: --for must be at least 60 seconds (KV's shortest expiry)" >&2
        exit 2
    elif [ "$ttl" -lt 1 ]; then
        echo "deny.sh: --for must be at least 1 second" >&2
        exit 2
    fi
fi

# Everything the fleet needs is checked before anything is written.
if [ -n "$fleet" ]; then
    fleet="${fleet%/}"
    case "$fleet" in
    https://?*) ;;
    http://127.0.0.1:* | http://127.0.0.1 | http://localhost:* | http://localhost | http://\[::1\]:*) ;;
    http://*) fail "--fleet $fleet: plain http only to a loopback address (the admin token would travel in the clear); use https://" ;;
    *) fail "--fleet takes the fleet worker's URL, https://… (or http://127.0.0.1:PORT for wrangler dev): $fleet" ;;
    esac
    command -v curl >/dev/null 2>&1 || fail "--fleet needs curl, which is not installed"
    [ -n "${FLEET_ADMIN_TOKEN:-}" ] ||
        fail "--fleet needs the fleet's admin token in FLEET_ADMIN_TOKEN (the one set with: npx wrangler secret put FLEET_ADMIN_TOKEN -c fleet/wrangler.toml)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # The token goes to curl in a file of this user's only, never on a command line (ps shows those).
    (umask 077 && printf 'Authorization: Bearer %s\n' "$FLEET_ADMIN_TOKEN" >"$tmp/auth")
elif [ -z "$kv" ]; then
    fail "--no-kv leaves no store to write: give --fleet URL (or FLEET_URL) too"
fi

# One call to the fleet's admin API: METHOD PATH [JSON]. On 2xx the answer's body is in
# $tmp/body; otherwise a message saying why, and a non-zero return.
fleet_call() {
    if [ $# -ge 3 ]; then
        set -- -X "$1" "$fleet$2" -H 'Content-Type: application/json' --data-binary "$3"
    else
        set -- -X "$1" "$fleet$2"
    fi
    status="$(curl -sS --max-time 15 -o "$tmp/body" -w '%{http_code}' -H @"$tmp/auth" "$@" 2>"$tmp/curl")" ||
        status=000
    case "$status" in
    2??) return 0 ;;
    000)
        echo "deny.sh: the fleet at $fleet cannot be reached: $(cat "$tmp/curl")" >&2
        return 1
        ;;
    esac
    said="$(node -e 'try { const b = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(String(b.error ?? "")) } catch { }' "$tmp/body")"
    case "$status" in
    401) echo "deny.sh: the fleet refused FLEET_ADMIN_TOKEN (401): it is not the token the fleet worker has" >&2 ;;
    503)
        if [ "$said" = "FLEET_ADMIN_TOKEN is not set" ]; then
            echo "deny.sh: the fleet worker has no FLEET_ADMIN_TOKEN (503): npx wrangler secret put FLEET_ADMIN_TOKEN -c fleet/wrangler.toml" >&2
        else
            echo "deny.sh: the fleet cannot take it (503): ${said:-$(head -c 300 "$tmp/body")}" >&2
        fi
        ;;
    *) echo "deny.sh: the fleet answered $status: ${said:-$(head -c 300 "$tmp/body")}" >&2 ;;
    esac
    return 1
}

wrangler() {
    eval "set -- \"\$@\" $passthrough"
    npx wrangler kv key "$@" --binding DENYLIST "$where"
}

case "$action" in
list)
    [ -z "$value" ] || usage
    if [ -n "$kv" ]; then
        [ -z "$fleet" ] || echo "# DENYLIST (KV, ${where#--}):" >&2
        if [ -z "$kind_given" ]; then
            # No kind given: every entry.
            wrangler list
        else
            wrangler list --prefix "$kind:"
        fi
    fi
    if [ -n "$fleet" ]; then
        echo "# the fleet's revocations ($fleet):" >&2
        fleet_call GET /list || exit 1
        # The entries of the kind asked for, each with its end as a date too.
        KIND="${kind_given:+$kind}" node -e '
            const body = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
            const kind = process.env.KIND;
            const entries = body.entries
                .filter((e) => !kind || e.kind === kind)
                .map((e) => (e.until == null ? e : { ...e, until_utc: new Date(e.until * 1000).toISOString() }));
            console.log(JSON.stringify({ version: body.version, entries }, null, 2));' "$tmp/body"
    fi
    ;;
add | remove)
    if [ -z "$value" ]; then
        echo "deny.sh: $action needs a VALUE" >&2
        exit 2
    fi
    key="$kind:$value"
    if [ -n "$kv" ] && [ "$(printf '%s' "$key" | wc -c)" -gt 512 ]; then
        echo "deny.sh: the key is longer than KV's 512 bytes" >&2
        exit 2
    fi

    # The fleet first: it is the store that refuses within a second, and it refuses a bad entry
    # (or token) before KV is touched.
    if [ -n "$fleet" ]; then
        if [ "$action" = add ]; then
            body="$(KIND="$kind" VALUE="$value" TTL="$ttl" REASON="$reason" node -e '
                const { KIND, VALUE, TTL, REASON } = process.env;
                const until = TTL ? Math.floor(Date.now() / 1000) + Number(TTL) : null;
                process.stdout.write(JSON.stringify({ kind: KIND, value: VALUE, until, ...(REASON ? { reason: REASON } : {}) }))')"
            fleet_call POST /revoke "$body" || fail "nothing was written"
        else
            body="$(KIND="$kind" VALUE="$value" node -e 'process.stdout.write(JSON.stringify({ kind: process.env.KIND, value: process.env.VALUE }))')"
            fleet_call POST /unrevoke "$body" || fail "nothing was changed"
        fi
        echo "deny.sh: fleet: $action $key done ($(cat "$tmp/body"))" >&2
    fi
    [ -n "$kv" ] || exit 0

    if [ "$action" = remove ]; then
        wrangler delete "$key" && exit 0
        [ -z "$fleet" ] || fail "the fleet no longer holds $key, but removing it from KV failed (above), so rules reading KV still refuse it; run the same command again"
        exit 1
    fi
    # The value and the metadata as JSON, escaped by node (which npx runs on anyway).
    json="$(REASON="$reason" node -e 'const r = process.env.REASON; process.stdout.write(JSON.stringify(r ? { reason: r } : {}))')"
    if [ -n "$ttl" ]; then
        set -- put "$key" "$json" --metadata "$json" --ttl "$ttl"
    else
        set -- put "$key" "$json" --metadata "$json"
    fi
    wrangler "$@" && exit 0
    [ -z "$fleet" ] || fail "the fleet holds $key, but writing it to KV failed (above), so rules reading KV do not refuse it yet; run the same command again (writing an entry twice is harmless)"
    exit 1
    ;;
esac
