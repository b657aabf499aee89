//! The `DPOP` setting: which credentials the edge accepts, and how old a proof may be.

use crate::{config::vars::Vars, dpop::nonce::NoncePolicy, error::ConfigError};

/// Which credentials are accepted (`DPOP`). A DPoP-bound token is never accepted as Bearer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// Bearer for unbound tokens, DPoP for bound ones.
    Allowed,
    /// Only DPoP-bound tokens with their proof.
    Required,
    /// Bearer only: the DPoP scheme counts as no credential, and bound tokens are refused.
    Off,
}

/// Where a proof's `jti` is remembered (`DPOP_REPLAY`): always in the isolate that saw it, and
/// with `fleet` also in the fleet's Durable Object for the proof's key, so a second use anywhere
/// is refused (RFC 9449 §11.1), not only a second use in the same isolate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayScope {
    Isolate,
    Fleet,
}

/// How DPoP proofs are judged (RFC 9449).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopPolicy {
    pub mode: DpopMode,
    /// A proof's `iat` may be at most this old; each isolate remembers used `jti`s as long.
    pub max_age_secs: u64,
    /// `DPOP_NONCE_SECRET`: when set, every proof carries a nonce the edge issued (RFC 9449 §9).
    pub nonce: Option<NoncePolicy>,
    pub replay: ReplayScope,
}

pub const DEFAULT_DPOP_MAX_AGE_SECONDS: u64 = 300;

impl DpopPolicy {
    /// `DPOP`, `DPOP_MAX_AGE_SECONDS`, and the nonces' `DPOP_NONCE_SECRET` / `DPOP_NONCE_SECONDS`.
    pub fn from_vars(vars: &Vars) -> Result<DpopPolicy, ConfigError> {
        let mode = vars.choice(
            "DPOP",
            "one of allowed, required, off",
            &[("allowed", DpopMode::Allowed), ("required", DpopMode::Required), ("off", DpopMode::Off)],
        )?;
        let max_age_secs = vars.seconds("DPOP_MAX_AGE_SECONDS", DEFAULT_DPOP_MAX_AGE_SECONDS, 1, 3600)?;
        let nonce = NoncePolicy::from_vars(vars)?;
        let replay = vars.choice(
            "DPOP_REPLAY",
            "isolate or fleet",
            &[("isolate", ReplayScope::Isolate), ("fleet", ReplayScope::Fleet)],
        )?;
        Ok(DpopPolicy { mode, max_age_secs, nonce, replay })
    }
}
