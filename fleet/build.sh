#!/bin/sh
# Builds edge-auth-fleet into fleet/build/ (index.js + index_bg.wasm), as worker-build 0.8.7
# would, with the project's pinned tools and no downloads: `worker-build` fetches its own
# wasm-bindgen, wasm-opt and esbuild, which a machine reaching only package registries cannot.
#
#   cargo (fleet/target) → wasm-bindgen (module target, panic reset) → wasm-opt
#   → worker-build's shim (an Entrypoint class, and a Proxy per exported class that rebuilds the
#     instance after a Wasm trap) → esbuild, one module importing the wasm.
#
# fleet/wrangler.toml runs it; `sh fleet/build.sh` works from anywhere. FLEET_PREBUILT=1 skips
# it when a build exists (the test starts wrangler several times on one build).
set -eu
# tools.sh takes the repository root from $0: this file sits one level below it, as scripts/ does.
. "$(cd "$(dirname "$0")" && pwd)/../scripts/tools.sh"
FLEET="$ROOT/fleet"
cd "$FLEET"
if [ "${FLEET_PREBUILT:-}" = 1 ] && [ -f build/index.js ]; then
    exit 0
fi

# The wasm-bindgen CLI must be the crate's exact version; tools.sh installs the one the main
# worker's Cargo.lock names, so fleet pins the same.
fleet_bindgen="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ "$fleet_bindgen" != "$WASM_BINDGEN_VERSION" ]; then
    say "fleet/Cargo.lock has wasm-bindgen $fleet_bindgen, the main worker $WASM_BINDGEN_VERSION: set"
    say "wasm-bindgen = \"=$WASM_BINDGEN_VERSION\" in fleet/Cargo.toml so both use one CLI"
    exit 1
fi
ensure_tools

quiet=--quiet
if [ ! -d target/wasm32-unknown-unknown/release ]; then
    quiet=""
    say "first fleet build: cargo compiles the worker crate and its dependencies (a few minutes)"
fi
# Its own target folder whatever CARGO_TARGET_DIR says: never the main worker's.
cargo build $quiet --release --target wasm32-unknown-unknown --lib --target-dir "$FLEET/target"

# Staged and swapped in at the end, so wrangler never loads a half-written build.
stage="build.tmp.$$"
trap 'rm -rf "$stage"' EXIT
rm -rf "$stage"
mkdir -p "$stage"
"$WASM_BINDGEN_BIN" target/wasm32-unknown-unknown/release/edge_auth_fleet.wasm --out-dir "$stage" \
    --out-name index --target module --no-typescript \
    --experimental-reset-state-function --force-enable-abort-handler
# workerd takes a plain wasm module import, not the source-phase form wasm-bindgen writes.
sed -i 's/^import source /import /' "$stage/index.js"
# worker-build's feature set (what workerd supports); -Oz since every byte is compiled on a cold
# start and nothing here is hot enough to want inlining.
"$WASM_OPT_BIN" "$stage/index_bg.wasm" -o "$stage/index_bg.wasm" -Oz \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
    --enable-multivalue --enable-reference-types --enable-exception-handling

# The shim worker-build 0.8.7 writes (worker-build/src/js/shim.js), with its $HANDLERS and class
# exports generated the same way, from the glue's exports.
handlers="$(sed -n -E \
    -e 's/^export (async )?function ([A-Za-z0-9_$]+) *\(.*/\2/p' \
    -e 's/^export \{ *[A-Za-z0-9_$]+ as ([A-Za-z0-9_$]+) *\}.*/\1/p' "$stage/index.js" |
    grep -v -x -e __wbg_reset_state -e __worker_init_state || true)"
classes="$(sed -n -E 's/^export class ([A-Za-z0-9_$]+) *\{.*/\1/p' "$stage/index.js")"
{
    cat <<'SHIM'
import { WorkerEntrypoint } from "cloudflare:workers";
import * as exports from "./index.js";

Error.stackTraceLimit = 100;
const initState = exports.__worker_init_state();

function checkReinitialize() {
  if (initState.criticalError) {
    console.log("Reinitializing Wasm application");
    exports.__wbg_reset_state();
    initState.criticalError = false;
    initState.instanceId++;
  }
}

addEventListener('error', (e) => {
  handleMaybeCritical(e.error);
});

function handleMaybeCritical(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    console.error('Critical', e);
    initState.criticalError = true;
  }
}

class Entrypoint extends WorkerEntrypoint {}

SHIM
    for name in $handlers; do
        case "$name" in
        fetch | queue | scheduled | email | connect)
            printf 'Entrypoint.prototype.%s = function %s (arg) {\n  return exports.%s.call(this, arg, this.env, this.ctx);\n}\n' \
                "$name" "$name" "$name"
            ;;
        *) printf 'Entrypoint.prototype.%s = exports.%s;\n' "$name" "$name" ;;
        esac
    done
    cat <<'SHIM'

const instanceProxyHooks = {
  set: (target, prop, value, receiver) => Reflect.set(target.instance, prop, value, receiver),
  has: (target, prop) => Reflect.has(target.instance, prop),
  deleteProperty: (target, prop) => Reflect.deleteProperty(target.instance, prop),
  apply: (target, thisArg, args) => Reflect.apply(target.instance, thisArg, args),
  construct: (target, args, newTarget) => Reflect.construct(target.instance, args, newTarget),
  getPrototypeOf: (target) => Reflect.getPrototypeOf(target.instance),
  setPrototypeOf: (target, proto) => Reflect.setPrototypeOf(target.instance, proto),
  isExtensible: (target) => Reflect.isExtensible(target.instance),
  preventExtensions: (target) => Reflect.preventExtensions(target.instance),
  getOwnPropertyDescriptor: (target, prop) => Reflect.getOwnPropertyDescriptor(target.instance, prop),
  defineProperty: (target, prop, descriptor) => Reflect.defineProperty(target.instance, prop, descriptor),
  ownKeys: (target) => Reflect.ownKeys(target.instance),
};

const classProxyHooks = {
  construct(ctor, args, newTarget) {
    try {
      checkReinitialize();
      const instance = {
        instance: Reflect.construct(ctor, args, newTarget),
        instanceId: initState.instanceId,
        ctor,
        args,
        newTarget
      };
      return new Proxy(instance, {
        ...instanceProxyHooks,
        get(target, prop, receiver) {
          if (target.instanceId !== initState.instanceId) {
            target.instance = Reflect.construct(target.ctor, target.args, target.newTarget);
            target.instanceId = initState.instanceId;
          }
          const original = Reflect.get(target.instance, prop, receiver);
          if (typeof original !== 'function') return original;
          if (original.constructor === Function) {
            return new Proxy(original, {
              apply(target, thisArg, argArray) {
                checkReinitialize();
                try {
                  return target.apply(thisArg, argArray);
                } catch (e) {
                  handleMaybeCritical(e);
                  throw e;
                }
              }
            });
          } else {
            return new Proxy(original, {
              async apply(target, thisArg, argArray) {
                checkReinitialize();
                try {
                  return await target.apply(thisArg, argArray);
                } catch (e) {
                  handleMaybeCritical(e);
                  throw e;
                }
              }
            });
          }
        }
      });
    } catch (e) {
      initState.criticalError = true;
      throw e;
    }
  }
};

export default new Proxy(Entrypoint, classProxyHooks);
SHIM
    for class in $classes; do
        printf 'export const %s = new Proxy(exports.%s, classProxyHooks);\n' "$class" "$class"
    done
} >"$stage/shim.js"

# One module: the shim, the glue and its snippets; the wasm stays a separate module import.
(cd "$stage" && "$ESBUILD_BIN" ./shim.js --bundle --format=esm --minify --log-level=warning \
    --external:./index_bg.wasm --external:'cloudflare:*' --outfile=index.js --allow-overwrite)
rm -rf "$stage/shim.js" "$stage/snippets"

rm -rf build.old
[ -d build ] && mv build build.old
mv "$stage" build
rm -rf build.old
