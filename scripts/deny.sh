#!/bin/sh
# Revoking access now: writes, removes and lists deny-list entries in the DENYLIST KV namespace,
# so that no one hand-writes the key format (docs/operating.md, "Revoking access").
#
#   ./scripts/deny.sh add    [sub|jti|client|iss] VALUE [--for DURATION] [--reason TEXT]
#   ./scripts/deny.sh remove [sub|jti|client|iss] VALUE
#   ./scripts/deny.sh list   [sub|jti|client|iss]
#
# The kind defaults to sub (a subject, such as auth0|64f1…). client is the token's azp (or
# client_id), iss an issuer exactly as in iss. --for takes 90s, 15m, 24h, 7d or seconds (KV's
# shortest expiry is 60 s); without it the entry stays until removed. Set it a little past the
# longest token lifetime and the entry cleans itself up. --reason is logged by the worker when the
# entry refuses a token, never sent to the client.
#
# Options passed on to `wrangler kv key`: --local (wrangler dev's local KV; the default is the
# deployed namespace), --persist-to DIR (with --local: the state directory wrangler dev uses),
# --config FILE (another wrangler configuration).
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

usage() {
    sed -n '4,7p' "$0" | sed 's/^# *//' >&2
    exit 2
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
        if [ "$ttl" -lt 60 ]; then
            echo "deny.sh: --for must be at least 60 seconds (KV's shortest expiry)" >&2
            exit 2
        fi
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
    -*) usage ;;
    *)
        [ -z "$value" ] || usage
        value="$1"
        shift
        ;;
    esac
done

wrangler() {
    eval "set -- \"\$@\" $passthrough"
    npx wrangler kv key "$@" --binding DENYLIST "$where"
}

case "$action" in
list)
    [ -z "$value" ] || usage
    if [ -z "$kind_given" ]; then
        # No kind given: every entry.
        wrangler list
    else
        wrangler list --prefix "$kind:"
    fi
    ;;
add | remove)
    if [ -z "$value" ]; then
        echo "deny.sh: $action needs a VALUE" >&2
        exit 2
    fi
    key="$kind:$value"
    if [ "$(printf '%s' "$key" | wc -c)" -gt 512 ]; then
        echo "deny.sh: the key is longer than KV's 512 bytes" >&2
        exit 2
    fi
    if [ "$action" = remove ]; then
        wrangler delete "$key"
        exit 0
    fi
    # The value and the metadata as JSON, escaped by node (which npx runs on anyway).
    json="$(REASON="$reason" node -e 'const r = process.env.REASON; process.stdout.write(JSON.stringify(r ? { reason: r } : {}))')"
    if [ -n "$ttl" ]; then
        wrangler put "$key" "$json" --metadata "$json" --ttl "$ttl"
    else
        wrangler put "$key" "$json" --metadata "$json"
    fi
    ;;
esac
