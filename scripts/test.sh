#!/bin/sh
# README command two: every test. Quality gates and host tests of the pure core first (seconds),
# then the end-to-end suite against the real worker in wrangler dev (workerd) and local mocks,
# then the browser test (headless Chromium, Auth0's SPA SDK, the demo page; tests/browser/demo.mjs),
# then MCP clients written with the official SDK against an MCP server behind the gateway
# (tests/mcp/sdk.mjs), then the MCP conformance suite's server scenarios through the gateway
# (tests/mcp/conformance.mjs). The fleet's Durable Objects (fleet/, a crate and Worker of their
# own) get the same gates, host tests, a build, and their own wrangler dev test (fleet/test.mjs).
set -eu
. "$(dirname "$0")/tools.sh"
cd "$ROOT"
export WRANGLER_SEND_METRICS=false

ensure_tools
ensure_chromium
say "quality gates: rustfmt, clippy (host and wasm32, warnings denied)"
cargo fmt --all --check
host_quiet="$(quiet_unless_first debug host)"
wasm_quiet="$(quiet_unless_first wasm32-unknown-unknown/debug wasm32)"
cargo clippy $host_quiet --workspace --all-targets -- -D warnings
cargo clippy $wasm_quiet --target wasm32-unknown-unknown --lib -- -D warnings
cargo fmt --manifest-path fleet/Cargo.toml --check
cargo clippy --quiet --manifest-path fleet/Cargo.toml --all-targets -- -D warnings
cargo clippy --quiet --manifest-path fleet/Cargo.toml --target wasm32-unknown-unknown --lib -- -D warnings
say "host tests (pure core, dev issuer, the fleet's pure part)"
cargo test --workspace $host_quiet
cargo test --quiet --manifest-path fleet/Cargo.toml
say "building the worker and the fleet once for the end-to-end suite"
sh scripts/build.sh
sh fleet/build.sh
say "end-to-end tests (wrangler dev + mock issuer and origin)"
EDGE_AUTH_PREBUILT=1 cargo test --quiet --test e2e -- --ignored --test-threads "${E2E_THREADS:-3}"
say "the fleet's objects in wrangler dev (replay, revocations, a restart, a second process)"
FLEET_PREBUILT=1 node fleet/test.mjs
say "browser test (chromium + playwright-core: the demo page logs in at the dev issuer and calls the worker)"
EDGE_AUTH_PREBUILT=1 node tests/browser/demo.mjs
say "MCP test (the official SDK's clients: discovery, registration, PKCE with resource, step-up, client_credentials)"
EDGE_AUTH_PREBUILT=1 node tests/mcp/sdk.mjs
say "MCP conformance suite (its server scenarios against our SDK server, directly and through the gateway)"
EDGE_AUTH_PREBUILT=1 node tests/mcp/conformance.mjs
