//! edge-auth: verifies Auth0 RS256 access tokens at the edge.
//!
//! Everything but [`edge`] is a pure core with no runtime types, tested on the host by `cargo test`.
//! `edge` is the thin Cloudflare Workers adapter and exists only on wasm32.
//!
//! Imports point down this list, never up, and parts on one line never import each other
//! (`tests/layout.rs` reads this list and holds every file in `src/` to it, and to having no loop):
//!
//! 1. `edge/` — the Workers adapter: request in, answer out; KV, Cache, fetch, WebCrypto, timers
//! 2. `pipeline` — route → authenticate → authorise → answer or forward, for every kind of rule
//! 3. `config` — composes each part's own settings into one `Config`; only the two above import it
//! 4. `gateway/` — the rule table and path safety, what the origin receives (the signed identity
//!    assertion too), per-caller limits
//! 5. `http` — answers as plain data, challenges, CORS
//! 6. `token/` — extract, parse, verify, judge the claims; the trusted issuers; verified tokens
//! 7. `dpop/` — DPoP proofs, nonces, replay memory
//! 8. `keys/` — the issuers' keys and their store
//! 9. `operate/` — decisions, their reasons and log limits; the deny list's policy
//! 10. `config::vars` — typed reading of variables, shared by every part for its own settings
//! 11. `error`, `json`, `outline`, `base64url` — typed errors, the one JSON reader, cold-path
//!     outlining, a token's segments decoded

pub mod base64url;
pub mod config;
pub mod dpop;
pub mod error;
pub mod gateway;
pub mod http;
pub mod json;
pub mod keys;
pub mod operate;
pub mod outline;
pub mod pipeline;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod edge;
