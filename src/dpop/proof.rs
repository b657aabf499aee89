//! DPoP proofs (RFC 9449): every check of §4.3 on a proof, in the RFC's order, each failing with
//! its own [`ProofProblem`]. Pure: time, the nonce policy and the signature engine come in.
//!
//! What this does not decide: whether the request needed a proof (the scheme and the token's
//! `cnf`, [`crate::pipeline`]), whether `cnf.jkt` names this proof's key (step 12, by the caller with
//! [`CheckedProof::thumbprint`]), and replay ([`crate::dpop::replay`]), which is recorded only once
//! everything else held, so a refused proof never takes a place in memory.

use std::future::Future;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    dpop::{nonce, policy::DpopPolicy},
    error::ProofProblem,
    keys::jwks::{usable_rsa_exponent, usable_rsa_modulus},
};

/// A DPoP header longer than this is refused unread: an RSA-4096 `jwk` proof is under 2 KiB.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// RFC 9449 leaves `jti` open; 256 bytes is far beyond any random identifier.
pub const MAX_JTI_BYTES: usize = 256;
/// The algorithms a proof may use, as the DPoP challenge announces them.
pub const ALGORITHMS: &str = "ES256 RS256 PS256 EdDSA";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofAlg {
    Es256,
    Rs256,
    Ps256,
    EdDsa,
}

impl ProofAlg {
    fn parse(alg: &str) -> Option<ProofAlg> {
        match alg {
            "ES256" => Some(ProofAlg::Es256),
            "RS256" => Some(ProofAlg::Rs256),
            "PS256" => Some(ProofAlg::Ps256),
            "EdDSA" => Some(ProofAlg::EdDsa),
            _ => None,
        }
    }
}

/// A proof's public key, decoded and checked to fit its `alg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicJwk {
    /// P-256: the coordinates, 32 bytes each.
    Ec { x: Vec<u8>, y: Vec<u8> },
    /// As the issuers' keys: 2048 to 4096 bits, an odd exponent of at least 3.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Ed25519: 32 bytes.
    Ed25519 { x: Vec<u8> },
}

/// What a signature engine needs to check a proof: the key, the algorithm, and the key's RFC 7638
/// thumbprint (an engine may keep the imported key under it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofKey {
    pub alg: ProofAlg,
    pub jwk: PublicJwk,
    pub thumbprint: String,
}

/// Checks a proof's signature. WebCrypto at the edge; jwt-compact's engines on the host.
pub trait ProofVerifier {
    fn verify_proof(&self, key: &ProofKey, signing_input: &[u8], signature: &[u8]) -> impl Future<Output = bool>;
}

/// The request a proof must be about.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// Every `DPoP` header value, as the runtime joined them (a comma means more than one).
    pub header: Option<&'a str>,
    pub method: &'a str,
    /// The URL the client called: the worker's own request URL, also in gateway mode.
    pub url: &'a str,
    /// The access token the proof must name in `ath`.
    pub access_token: &'a str,
}

/// A proof that passed every check this module makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    pub thumbprint: String,
    pub jti: String,
    pub issued_at: i64,
    /// The nonce's time step was the previous one: the answer should carry a fresh nonce.
    pub nonce_aging: bool,
    /// With nonces on, the last second the proof's nonce is accepted (and so the proof).
    pub nonce_through: Option<i64>,
}

/// Why a proof was refused: a failed check, or (with nonces on) no fresh nonce of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    Invalid(ProofProblem),
    UseNonce,
}

impl From<ProofProblem> for ProofError {
    fn from(problem: ProofProblem) -> Self {
        ProofError::Invalid(problem)
    }
}

struct Header {
    typ: Option<Value>,
    alg: Option<Value>,
    jwk: Option<Map<String, Value>>,
}

struct Payload {
    jti: Option<Value>,
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    nonce: Option<Value>,
}

/// RFC 9449 §4.3, top to bottom.
pub async fn check(
    request: &ProofRequest<'_>,
    policy: &DpopPolicy,
    leeway_secs: u64,
    now_secs: i64,
    verifier: &impl ProofVerifier,
) -> Result<CheckedProof, ProofError> {
    // 1. Exactly one DPoP header (the runtime joins repeated headers with ", ").
    let proof = request.header.map(str::trim).filter(|h| !h.is_empty()).ok_or(ProofProblem::Missing)?;
    if proof.contains(',') {
        return Err(ProofProblem::Multiple.into());
    }
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofProblem::TooLarge.into());
    }
    // 2. A well-formed JWS compact serialization, with JSON objects for header and payload.
    let (header, payload, signature, signing_input) = split(proof).ok_or(ProofProblem::Malformed)?;
    // 3–4. `typ` is exactly dpop+jwt.
    if header.typ.as_ref().and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(ProofProblem::WrongType.into());
    }
    // 5. An asymmetric algorithm we support (never `none`, never HMAC).
    let alg = header.alg.as_ref().and_then(Value::as_str).and_then(ProofAlg::parse);
    let alg = alg.ok_or(ProofProblem::UnsupportedAlgorithm)?;
    // 7 (before 6: a private key is refused without using it). A public key, fit for `alg`.
    let jwk = header.jwk.ok_or(ProofProblem::MissingKey)?;
    if ["d", "p", "q", "dp", "dq", "qi", "k", "oth"].iter().any(|member| jwk.contains_key(*member)) {
        return Err(ProofProblem::PrivateKey.into());
    }
    let key = public_key(&jwk, alg).ok_or(ProofProblem::UnusableKey)?;
    // 6. The signature verifies with that key.
    let signature_len_ok = match &key.jwk {
        PublicJwk::Rsa { n, .. } => signature.len() == n.len(),
        PublicJwk::Ec { .. } | PublicJwk::Ed25519 { .. } => signature.len() == 64,
    };
    if !signature_len_ok || !verifier.verify_proof(&key, signing_input.as_bytes(), &signature).await {
        return Err(ProofProblem::BadSignature.into());
    }
    // 3 (claims). `jti`: a string of bounded size.
    let jti = match &payload.jti {
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_BYTES => jti.clone(),
        _ => return Err(ProofProblem::BadJti.into()),
    };
    // 8. `htm` is exactly the method (no case folding: methods are case-sensitive).
    if payload.htm.as_ref().and_then(Value::as_str) != Some(request.method) {
        return Err(ProofProblem::MethodMismatch.into());
    }
    // 9. `htu` is the request URL, both without query and fragment, normalised (RFC 3986 §6.2.2).
    let htu = payload.htu.as_ref().and_then(Value::as_str).and_then(normalise_url);
    if htu.is_none() || htu != normalise_url(request.url) {
        return Err(ProofProblem::UrlMismatch.into());
    }
    // 10. The nonce this edge issued, when nonces are on.
    let (mut nonce_aging, mut nonce_through) = (false, None);
    if let Some(nonces) = &policy.nonce {
        let given = payload.nonce.as_ref().and_then(Value::as_str);
        match given.and_then(|given| nonce::check(nonces, given, now_secs)) {
            Some(age) => {
                nonce_aging = age == nonce::Age::Previous || nonce::next_step_near(nonces, now_secs);
                nonce_through = Some(nonce::accepted_through(nonces, age, now_secs));
            }
            None => return Err(ProofError::UseNonce),
        }
    }
    // 11. `iat` within the window: at most DPOP_MAX_AGE_SECONDS old, at most the clock skew ahead.
    let issued_at = match &payload.iat {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    };
    let issued_at = issued_at.ok_or(ProofProblem::MissingIssuedAt)?;
    let leeway = i64::try_from(leeway_secs).unwrap_or(i64::MAX);
    if issued_at > now_secs.saturating_add(leeway) {
        return Err(ProofProblem::IssuedInFuture.into());
    }
    if issued_at < now_secs.saturating_sub(i64::try_from(policy.max_age_secs).unwrap_or(i64::MAX)) {
        return Err(ProofProblem::TooOld.into());
    }
    // 12 (first half). `ath` is the hash of the very token presented.
    if payload.ath.as_ref().and_then(Value::as_str) != Some(access_token_hash(request.access_token).as_str()) {
        return Err(ProofProblem::AccessTokenHashMismatch.into());
    }
    Ok(CheckedProof { thumbprint: key.thumbprint, jti, issued_at, nonce_aging, nonce_through })
}

type Parts = (Header, Payload, Vec<u8>, String);

fn split(proof: &str) -> Option<Parts> {
    let mut parts = proof.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let object = |segment: &str| crate::json::parse_object(&crate::base64url::decode(segment)?).ok();
    // Absent and `null` alike are no member.
    let take = |members: &mut Map<String, Value>, name: &str| members.remove(name).filter(|v| !v.is_null());
    let mut members = object(h)?;
    let jwk = match take(&mut members, "jwk") {
        None => None,
        Some(Value::Object(jwk)) => Some(jwk),
        Some(_) => return None,
    };
    let header = Header { typ: take(&mut members, "typ"), alg: take(&mut members, "alg"), jwk };
    let mut members = object(p)?;
    let mut take = |name: &str| take(&mut members, name);
    let payload = Payload {
        jti: take("jti"),
        htm: take("htm"),
        htu: take("htu"),
        iat: take("iat"),
        ath: take("ath"),
        nonce: take("nonce"),
    };
    let signature = crate::base64url::decode(s)?;
    Some((header, payload, signature, format!("{h}.{p}")))
}

/// The key in `jwk` if it is a public key of the kind `alg` needs, with its thumbprint.
fn public_key(jwk: &Map<String, Value>, alg: ProofAlg) -> Option<ProofKey> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| text(name).and_then(|v| Base64UrlUnpadded::decode_vec(v).ok());
    let key = match (alg, text("kty")?) {
        (ProofAlg::Es256, "EC") if text("crv")? == "P-256" => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            (x.len() == 32 && y.len() == 32).then_some(PublicJwk::Ec { x, y })?
        }
        (ProofAlg::Rs256 | ProofAlg::Ps256, "RSA") => {
            let (n, e) = (bytes("n")?, bytes("e")?);
            // The issuers' keys' rule. Besides, `n` without a leading zero byte (RFC 7518 §6.3.1.1):
            // step 6 wants a signature exactly as long as `n`, and a thumbprint names one encoding.
            let usable = n.first() != Some(&0) && usable_rsa_modulus(&n) && usable_rsa_exponent(&e);
            usable.then_some(PublicJwk::Rsa { n, e })?
        }
        (ProofAlg::EdDsa, "OKP") if text("crv")? == "Ed25519" => {
            let x = bytes("x")?;
            (x.len() == 32).then_some(PublicJwk::Ed25519 { x })?
        }
        _ => return None,
    };
    Some(ProofKey { alg, thumbprint: thumbprint(&key), jwk: key })
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace, base64url.
pub fn thumbprint(jwk: &PublicJwk) -> String {
    let b64 = Base64UrlUnpadded::encode_string;
    let canonical = match jwk {
        PublicJwk::Ec { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64(x), b64(y)),
        PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n)),
        PublicJwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x)),
    };
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// `ath`: base64url(SHA-256(the access token's ASCII)).
pub fn access_token_hash(token: &str) -> String {
    Base64UrlUnpadded::encode_string(&Sha256::digest(token.as_bytes()))
}

/// A URL reduced to what `htu` compares: scheme and host in lower case, a default port dropped,
/// percent-escapes in upper case, query and fragment gone; the path otherwise exact (a trailing
/// slash counts). `None` for anything that is not an absolute http(s) URL.
pub fn normalise_url(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next()?;
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    let mut normalised = format!("{scheme}://{authority}");
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            normalised.push('%');
            normalised.push(bytes[i + 1].to_ascii_uppercase() as char);
            normalised.push(bytes[i + 2].to_ascii_uppercase() as char);
            i += 3;
        } else {
            normalised.push(bytes[i] as char);
            i += 1;
        }
    }
    normalised.is_ascii().then_some(normalised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_comparison_ignores_query_fragment_default_port_and_case_where_the_rfc_allows() {
        let same = [
            ("https://API.example.com:443/a/b?x=1#f", "https://api.example.com/a/b"),
            ("HTTP://localhost:80/x", "http://localhost/x"),
            ("https://a.example/p%2fq", "https://a.example/p%2Fq"),
            ("https://a.example", "https://a.example/"),
        ];
        for (a, b) in same {
            assert_eq!(normalise_url(a), normalise_url(b), "{a} vs {b}");
        }
        let different = [
            ("https://a.example/x", "https://a.example/x/"),
            ("https://a.example/X", "https://a.example/x"),
            ("https://a.example:8443/x", "https://a.example/x"),
            ("http://a.example/x", "https://a.example/x"),
            ("https://a.example/%41", "https://a.example/A"),
        ];
        for (a, b) in different {
            assert_ne!(normalise_url(a), normalise_url(b), "{a} vs {b}");
        }
        for bad in ["ftp://a/x", "/x", "https:///x", "https://u@a/x"] {
            assert_eq!(normalise_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn thumbprint_matches_rfc_7638_section_3_1() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = PublicJwk::Rsa { n: Base64UrlUnpadded::decode_vec(n).unwrap(), e: vec![1, 0, 1] };
        assert_eq!(thumbprint(&jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn ath_is_base64url_sha256_of_the_token() {
        // RFC 9449 §4.1's example token and its ath (Figure 4 / §7.1).
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        assert_eq!(access_token_hash(token), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
    }
}
