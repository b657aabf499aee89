//! Parsing a compact JWS into an [`UnverifiedToken`] and enforcing the header rules that must hold
//! before any key is looked up.

use jwt_compact::{Claims, UntrustedToken};
use serde::Deserialize;

use crate::{claims::AccessClaims, error::TokenProblem};

/// The one algorithm accepted. Auth0 signs access tokens with RS256; accepting anything else
/// invites algorithm confusion (`none`, or HS256 keyed with the public key).
pub const ALGORITHM: &str = "RS256";

/// Header members jwt-compact does not model but that change how a token must be read.
/// `jku`, `x5u`, `jwk` and `x5c` are never read: keys come only from the configured JWKS.
#[derive(Debug, Default, Deserialize)]
struct HeaderExtensions {
    /// Present at all, whatever its value: `"crit": null` is a `crit` header too.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// A token whose structure and header are acceptable, but whose signature and claims are not
/// yet checked. The only way forward is [`crate::verify::check_signature`].
///
/// The claims are read here, unjudged, because `iss` picks the issuer (and so the keys) before
/// any key is looked at; they are read once, and judged only after the signature holds.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    raw: &'a str,
    inner: UntrustedToken<'a, HeaderExtensions>,
    claims: Claims<AccessClaims>,
}

impl<'a> UnverifiedToken<'a> {
    pub fn parse(raw: &'a str) -> Result<Self, TokenProblem> {
        let inner = UntrustedToken::<HeaderExtensions>::try_from(raw).map_err(|_| TokenProblem::Malformed)?;
        if inner.algorithm() != ALGORITHM {
            return Err(TokenProblem::UnsupportedAlgorithm);
        }
        // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must reject.
        if inner.header().other_fields.crit {
            return Err(TokenProblem::CriticalHeader);
        }
        let claims = inner.deserialize_claims_unchecked().map_err(|_| TokenProblem::MalformedClaims)?;
        Ok(Self { raw, inner, claims })
    }

    /// The `iss` the token claims, unverified: only good for choosing which keys to try.
    pub fn claimed_issuer(&self) -> Option<&str> {
        self.claims.custom.iss.as_deref()
    }

    pub fn kid(&self) -> Option<&str> {
        self.inner.header().key_id.as_deref()
    }

    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, exactly as received.
    pub fn signing_input(&self) -> &'a [u8] {
        let end = self.raw.rfind('.').unwrap_or(0);
        &self.raw.as_bytes()[..end]
    }

    pub fn signature(&self) -> &[u8] {
        self.inner.signature_bytes()
    }

    /// The claims, unjudged; for the signature check alone to hand on.
    pub(crate) fn into_claims(self) -> Claims<AccessClaims> {
        self.claims
    }
}
