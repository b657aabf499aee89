//! edge-auth: verifies Auth0 RS256 access tokens at the edge.
//!
//! Everything but [`edge`] is a pure core with no runtime types, tested on the host by `cargo test`.
//! `edge` is the thin Cloudflare Workers adapter and exists only on wasm32.

pub mod app;
pub mod claims;
pub mod config;
pub mod decision;
pub mod denylist;
pub mod error;
pub mod extract;
pub mod forward;
pub mod http;
pub mod issuers;
pub mod json;
pub mod jwks;
pub mod keystore;
pub mod limits;
pub mod nonce;
pub mod outline;
pub mod proof;
pub mod replay;
pub mod rules;
pub mod token;
pub mod token_cache;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod edge;
