//! edge-auth-fleet: the Durable Objects that hold what edge-auth cannot keep per isolate.
//!
//! - `ReplayShard`, one per DPoP key (named by its JWK thumbprint): each proof `jti` is accepted
//!   once until its `until`.
//! - `Revocations`, a single object: the revoked subjects, token ids, clients and issuers, with a
//!   version that moves on each change.
//! - The Worker's own `fetch`: an admin API over both, behind `FLEET_ADMIN_TOKEN`.
//!
//! `wire`, `keys` and `revocations` are the pure part (bodies, storage keys, the revocation set)
//! and build on the host for `cargo test`; the runtime modules build for wasm32 only.

pub mod keys;
pub mod revocations;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod admin;
#[cfg(target_arch = "wasm32")]
mod replay_shard;
#[cfg(target_arch = "wasm32")]
mod respond;
#[cfg(target_arch = "wasm32")]
mod revocations_object;
