#!/bin/sh
# The wrangler.toml [build] command: builds the worker into build/ with the pinned tools.
# `npx wrangler dev` and `npx wrangler deploy` run it; it needs no environment of its own.
#
# The steps worker-build would take, minus its generated entry (see src/edge/entry.mjs):
# cargo → wasm-bindgen (ES module glue, panic recovery) → wasm-opt → esbuild with our entry.
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
# EDGE_AUTH_BUILD_NAMES=DIR: the same build into DIR with the wasm's function names kept (for
# ./scripts/bench.sh --profile); build/ is left as it is.
out=build
names=""
if [ -n "${EDGE_AUTH_BUILD_NAMES:-}" ]; then
    out="$EDGE_AUTH_BUILD_NAMES"
    names=--debuginfo
fi
# The end-to-end harness builds once and starts many workers; they skip the rebuild.
if [ -z "$names" ] && [ "${EDGE_AUTH_PREBUILT:-}" = 1 ] && [ -f build/worker.mjs ]; then
    exit 0
fi
ensure_tools
cargo build $(quiet_unless_first wasm32-unknown-unknown/release "release wasm32") --release --target wasm32-unknown-unknown --lib
# A staging folder of this build's own, swapped in at the end: a concurrent build (wrangler dev
# rebuilding while the test suite builds) never sees or breaks a half-written one.
stage="$out.tmp.$$"
trap 'rm -rf "$stage"' EXIT
rm -rf "$stage"
mkdir -p "$stage"
"$WASM_BINDGEN_BIN" target/wasm32-unknown-unknown/release/edge_auth.wasm --out-dir "$stage" --out-name glue \
    --target module --no-typescript --experimental-reset-state-function --force-enable-abort-handler
# workerd takes a plain wasm module import, not the source-phase form wasm-bindgen writes.
sed -i 's/^import source /import /' "$stage/glue.js"
# The feature set workerd supports (as worker-build passes it). No --debuginfo: the name section
# only names functions in stack traces, which this worker never shows, and cost ~100 KB.
# -ocimfs: wasm-opt inlines every function that has a single caller, whatever its size, and so
# built one 70 KB function of the whole pipeline; a fresh isolate compiles a function whole on its
# first call (~4 ms for that one), whichever branch it takes. Above 1,000 bytes a function keeps
# its own body and is compiled when first needed (see src/outline.rs; bench/cold.py measures it).
"$WASM_OPT_BIN" "$stage/glue_bg.wasm" -o "$stage/glue_bg.wasm" -O $names --one-caller-inline-max-function-size 1000 \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
    --enable-multivalue --enable-reference-types --enable-exception-handling
cp src/edge/entry.mjs src/edge/forward.mjs src/edge/respond.mjs "$stage/"
"$ESBUILD_BIN" "$stage/entry.mjs" --bundle --format=esm --minify --log-level=warning \
    --external:./glue_bg.wasm --external:'cloudflare:*' --outfile="$stage/worker.mjs"
rm -rf "$stage/entry.mjs" "$stage/forward.mjs" "$stage/respond.mjs" "$stage/glue.js" "$stage/snippets"
rm -rf "$out.old"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$stage" "$out"
rm -rf "$out.old"
