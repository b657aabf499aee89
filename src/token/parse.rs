//! Parsing a compact JWS into an [`UnverifiedToken`] and enforcing the header rules that must hold
//! before any key is looked up.

use serde_json::Value;

use crate::{error::TokenProblem, token::claims::TokenClaims};

/// The one algorithm accepted. Auth0 signs access tokens with RS256; accepting anything else
/// invites algorithm confusion (`none`, or HS256 keyed with the public key).
pub const ALGORITHM: &str = "RS256";

/// A token whose structure and header are acceptable, but whose signature and claims are not
/// yet checked. The only way forward is [`crate::token::verify::check_signature`].
///
/// The claims are read here, unjudged, because `iss` picks the issuer (and so the keys) before
/// any key is looked at; they are read once, and judged only after the signature holds.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    raw: &'a str,
    kid: Option<String>,
    signature: Vec<u8>,
    claims: TokenClaims,
}

impl<'a> UnverifiedToken<'a> {
    /// Three base64url segments (unpadded, canonical), a header that is a JSON object of distinct
    /// names with a string `alg` and correctly typed registered members, then the header rules,
    /// then the claims. `jku`, `x5u`, `jwk` and `x5c` are never followed: keys come only from the
    /// configured JWKS.
    pub fn parse(raw: &'a str) -> Result<Self, TokenProblem> {
        let mut segments = raw.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(TokenProblem::Malformed);
        };
        let decode = |segment: &str| crate::base64url::decode(segment).ok_or(TokenProblem::Malformed);
        let (header, payload, signature) = (decode(header)?, decode(payload)?, decode(signature)?);
        let header = crate::json::parse_object(&header).map_err(|_| TokenProblem::Malformed)?;
        let text = |name: &str| match header.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(_) => Err(TokenProblem::Malformed),
        };
        let alg = text("alg")?.ok_or(TokenProblem::Malformed)?;
        let kid = text("kid")?.map(str::to_owned);
        for name in ["typ", "jku", "x5u"] {
            text(name)?;
        }
        for (name, digest_len) in [("x5t", 20), ("x5t#S256", 32)] {
            if text(name)?.is_some_and(|thumbprint| !is_thumbprint(thumbprint, digest_len)) {
                return Err(TokenProblem::Malformed);
            }
        }
        // Claims in another encoding (CBOR, or a nested JWT) are not claims this edge reads.
        if text("cty")?.is_some_and(|cty| !cty.eq_ignore_ascii_case("json")) {
            return Err(TokenProblem::Malformed);
        }
        if alg != ALGORITHM {
            return Err(TokenProblem::UnsupportedAlgorithm);
        }
        // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must reject.
        // Present at all, whatever its value: `"crit": null` is a `crit` header too.
        if header.contains_key("crit") {
            return Err(TokenProblem::CriticalHeader);
        }
        let claims = TokenClaims::parse(&payload)?;
        Ok(Self { raw, kid, signature, claims })
    }

    /// The `iss` the token claims, unverified: only good for choosing which keys to try.
    pub fn claimed_issuer(&self) -> Option<&str> {
        self.claims.custom.iss.as_deref()
    }

    /// The `exp` the token claims, unverified.
    pub fn expiry(&self) -> Option<i64> {
        self.claims.expires
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, exactly as received.
    pub fn signing_input(&self) -> &'a [u8] {
        let end = self.raw.rfind('.').unwrap_or(0);
        &self.raw.as_bytes()[..end]
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The claims, unjudged; for the signature check alone to hand on.
    pub(crate) fn into_claims(self) -> TokenClaims {
        self.claims
    }
}

/// A certificate thumbprint as JOSE libraries read one (never used here, but a token whose header
/// others would refuse is refused here too): base64url, trailing `=` tolerated, a digest of
/// exactly `digest_len` bytes, or a longer opaque value that decodes to UTF-8.
fn is_thumbprint(text: &str, digest_len: usize) -> bool {
    let text = text.strip_suffix('=').unwrap_or(text);
    let text = text.strip_suffix('=').unwrap_or(text);
    match (text.len() * 3 / 4).cmp(&digest_len) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => crate::base64url::decode(text).is_some_and(|bytes| bytes.len() == digest_len),
        std::cmp::Ordering::Greater => {
            crate::base64url::decode(text).is_some_and(|bytes| String::from_utf8(bytes).is_ok())
        }
    }
}
