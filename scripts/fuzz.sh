#!/bin/sh
# Fuzzes the host core with cargo fuzz (libFuzzer): every target in fuzz/ for SECONDS each (default
# 60), one after the other, one job at a time. Installs what it needs the first time (the nightly
# toolchain, cargo-fuzz pinned into ~/.cache/edge-auth/), seeds the corpora (fuzz/seed.py), prints
# executions and duration per target, and exits non-zero on a crash, naming its artifact.
#
#   scripts/fuzz.sh [SECONDS]        e.g. scripts/fuzz.sh 10 for a CI smoke
#   FUZZ_TARGETS="routes jwks_parse" scripts/fuzz.sh 30     some targets only
#
# Reproduce a crash:   cargo +nightly fuzz run -a TARGET fuzz/artifacts/TARGET/crash-...
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"

SECONDS_PER_TARGET="${1:-60}"
case "$SECONDS_PER_TARGET" in '' | *[!0-9]* | 0)
    say "usage: scripts/fuzz.sh [seconds-per-target, a whole number > 0]"
    exit 2
    ;;
esac
TARGETS="${FUZZ_TARGETS:-token_pipeline jwks_parse routes path_safety dpop_proof json_parse mcp_body}"
CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ_BIN="$TOOLS_DIR/cargo-fuzz-$CARGO_FUZZ_VERSION/bin/cargo-fuzz"
# -a: debug assertions and overflow checks in the core, as in its host tests.
# The address sanitizer is cargo fuzz's default; FUZZ_SANITIZER=none trades it for speed.
BUILD_FLAGS="-a --sanitizer ${FUZZ_SANITIZER:-address}"

if ! rustup toolchain list | grep -q '^nightly'; then
    say "adding the nightly toolchain (cargo fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
cargo_install cargo-fuzz "$CARGO_FUZZ_VERSION" "$CARGO_FUZZ_BIN"
PATH="$(dirname "$CARGO_FUZZ_BIN"):$PATH"
export PATH

if command -v python3 >/dev/null; then
    python3 fuzz/seed.py
else
    say "python3 not found: the corpora start empty (libFuzzer still runs)"
fi

say "building the fuzz targets"
start=$(date +%s)
# shellcheck disable=SC2086
cargo +nightly fuzz build $BUILD_FLAGS
say "built in $(($(date +%s) - start)) s"

options() { # target: libFuzzer options beyond the common ones
    case "$1" in
    token_pipeline) echo "-max_len=12288" ;; # past the 8 KiB token limit
    jwks_parse) echo "-max_len=16384" ;;
    json_parse) echo "-max_len=4096" ;;
    routes) echo "-max_len=4096 -dict=fuzz/dicts/routes.dict" ;;
    dpop_proof) echo "-max_len=4096 -dict=fuzz/dicts/dpop.dict" ;;
    *) echo "-max_len=1024" ;;
    esac
}

LOGS="fuzz/target/logs"
mkdir -p "$LOGS"
summary=""
failed=0
for target in $TARGETS; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log="$LOGS/$target.log"
    say "fuzzing $target for $SECONDS_PER_TARGET s (log: $log)"
    start=$(date +%s)
    status=0
    # shellcheck disable=SC2046,SC2086
    cargo +nightly fuzz run $BUILD_FLAGS "$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 $(options "$target") \
        >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l | tr -d ' ')
    if [ "$status" -eq 0 ]; then
        result="ok"
    else
        failed=1
        result="CRASH (exit $status)"
        tail -n 60 "$log"
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        say "$target: crash artifact: ${artifact:-none written, see $log}"
    fi
    line="$target: ${runs:-?} runs in ${elapsed} s wall (${done_line:-no Done line}), corpus $corpus, $result"
    say "$line"
    summary="$summary$line
"
done

printf '\nfuzz summary (%s s per target):\n%s' "$SECONDS_PER_TARGET" "$summary"
exit "$failed"
