//! DPoP (RFC 9449) for the dev issuer, in one place: the client key kept on disk for `proof`, proofs made with
//! it, the proof checks `/oauth/token` and `/userinfo` run before binding a token, and the RFC 7638 thumbprint
//! that binds one (`cnf.jkt`).
//!
//! Only ES256 is made and accepted here: it is what auth0-spa-js (through the `dpop` package) and most browser
//! clients use. The worker's own verifier, which takes more algorithms, is a separate piece of the worker.

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use p256::{
    ecdsa::{
        signature::{Signer, Verifier},
        Signature, SigningKey as EcSigningKey, VerifyingKey,
    },
    elliptic_curve::generic_array::GenericArray,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding},
    EncodedPoint, SecretKey,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::b64;

/// RFC 9449 §4.2: the proof's media type, compared exactly.
pub const PROOF_TYP: &str = "dpop+jwt";
/// The one algorithm this issuer makes and accepts.
pub const ALG: &str = "ES256";
/// RFC 9449 §4.3 step 11 leaves the window to the server; the worker defaults to 300 s and so does this.
pub const MAX_AGE_SECONDS: i64 = 300;
/// A proof dated this far ahead of our clock is still taken (clients' clocks drift).
pub const CLOCK_SKEW_SECONDS: i64 = 60;
/// `jti` is meant to be a short random id; a longer one is refused rather than remembered.
const MAX_JTI_BYTES: usize = 256;

/// An EC P-256 key a client proves possession of.
#[derive(Clone)]
pub struct ClientKey(EcSigningKey);

impl ClientKey {
    pub fn generate() -> ClientKey {
        ClientKey(EcSigningKey::random(&mut rand::thread_rng()))
    }

    pub fn to_pem(&self) -> String {
        let secret = SecretKey::from(self.0.as_nonzero_scalar());
        secret.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding").to_string()
    }

    pub fn from_pem(pem: &str) -> Result<ClientKey, String> {
        let secret = SecretKey::from_pkcs8_pem(pem).map_err(|e| format!("not a PKCS#8 EC P-256 private key: {e}"))?;
        Ok(ClientKey(EcSigningKey::from(secret)))
    }

    /// The public JWK that goes in every proof's header.
    pub fn public_jwk(&self) -> Value {
        let point = self.0.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x().expect("uncompressed point"), point.y().expect("uncompressed point"));
        json!({ "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y) })
    }

    pub fn thumbprint(&self) -> String {
        thumbprint(&self.public_jwk()).expect("an EC JWK has every required member")
    }
}

/// What a proof says, before it is signed.
#[derive(Debug, Clone)]
pub struct ProofClaims<'a> {
    pub method: &'a str,
    /// The URL being called; its query and fragment are left out of `htu` (RFC 9449 §4.2).
    pub url: &'a str,
    /// The access token the request carries, bound through `ath`; none at the token endpoint.
    pub access_token: Option<&'a str>,
    /// A nonce the server handed out in `DPoP-Nonce`.
    pub nonce: Option<&'a str>,
    pub iat: i64,
    pub jti: String,
}

/// A compact JWS proof, ES256, with the key's public JWK in its header.
pub fn make_proof(key: &ClientKey, claims: &ProofClaims) -> String {
    let header = json!({ "typ": PROOF_TYP, "alg": ALG, "jwk": key.public_jwk() });
    let mut payload = json!({
        "jti": claims.jti,
        "htm": claims.method,
        "htu": without_query(claims.url),
        "iat": claims.iat,
    });
    if let Some(token) = claims.access_token {
        payload["ath"] = json!(access_token_hash(token));
    }
    if let Some(nonce) = claims.nonce {
        payload["nonce"] = json!(nonce);
    }
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()));
    let signature: Signature = key.0.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

/// A random `jti`: 128 bits, base64url.
pub fn random_jti() -> String {
    b64(&rand::random::<[u8; 16]>())
}

/// `ath`: base64url(SHA-256(the access token's ASCII)), RFC 9449 §4.2.
pub fn access_token_hash(token: &str) -> String {
    b64(&Sha256::digest(token.as_bytes()))
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK: its required members, in lexicographic order, as JSON
/// without whitespace, hashed and base64url-encoded.
pub fn thumbprint(jwk: &Value) -> Result<String, ProofError> {
    let required: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("RSA") => &["e", "kty", "n"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => return Err(ProofError::Key("kty is not EC, RSA or OKP")),
    };
    // serde_json's Map keeps keys sorted, and to_string writes no whitespace: exactly RFC 7638 §3.3.
    let mut members = Map::new();
    for &name in required {
        let value = jwk.get(name).and_then(Value::as_str).ok_or(ProofError::Key("a required member is missing"))?;
        members.insert(name.to_owned(), json!(value));
    }
    Ok(b64(&Sha256::digest(Value::Object(members).to_string().as_bytes())))
}

/// What the server expects a proof to be for.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub method: &'a str,
    /// The URL the request was made to, as the client saw it.
    pub url: &'a str,
    /// When the request carries a token (a resource request), the proof must hash it in `ath`.
    pub access_token: Option<&'a str>,
    pub now: i64,
}

/// A proof that passed every check: what binding and replay protection need from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 thumbprint of the key that signed it.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

/// Why a proof was refused; each names one check of RFC 9449 §4.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    NotCompactJws,
    NotJson(&'static str),
    Typ,
    Alg,
    /// The `jwk` header member: missing, not public, not an EC P-256 point.
    Key(&'static str),
    Signature,
    Jti,
    Htm,
    Htu,
    IatMissing,
    IatTooOld,
    IatInFuture,
    Ath,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ProofError::NotCompactJws => "the DPoP proof is not a compact JWS".to_owned(),
            ProofError::NotJson(part) => format!("the DPoP proof's {part} is not a base64url JSON object"),
            ProofError::Typ => format!("the DPoP proof's typ is not {PROOF_TYP}"),
            ProofError::Alg => format!("the DPoP proof's alg is not {ALG} (the only one the dev issuer takes)"),
            ProofError::Key(why) => format!("the DPoP proof's jwk is refused: {why}"),
            ProofError::Signature => "the DPoP proof's signature does not verify with its jwk".to_owned(),
            ProofError::Jti => format!("the DPoP proof's jti is missing, not a string, or over {MAX_JTI_BYTES} bytes"),
            ProofError::Htm => "the DPoP proof's htm is not this request's method".to_owned(),
            ProofError::Htu => "the DPoP proof's htu is not this request's URL".to_owned(),
            ProofError::IatMissing => "the DPoP proof has no numeric iat".to_owned(),
            ProofError::IatTooOld => format!("the DPoP proof's iat is more than {MAX_AGE_SECONDS} s old"),
            ProofError::IatInFuture => "the DPoP proof's iat is in the future".to_owned(),
            ProofError::Ath => "the DPoP proof's ath is missing or not the hash of this access token".to_owned(),
        };
        f.write_str(&text)
    }
}

/// Checks one proof against the request it came with, in RFC 9449 §4.3's order. Replay (the `jti` seen
/// before) is the caller's to check: it holds the memory of past proofs.
pub fn verify_proof(proof: &str, expected: &Expected) -> Result<Proof, ProofError> {
    // §4.3 step 3: a well-formed JWT.
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::NotCompactJws);
    };
    let header = json_object(header_b64).ok_or(ProofError::NotJson("header"))?;
    let claims = json_object(payload_b64).ok_or(ProofError::NotJson("payload"))?;
    // Step 5: typ.
    if header.get("typ").and_then(Value::as_str) != Some(PROOF_TYP) {
        return Err(ProofError::Typ);
    }
    // Step 6: an asymmetric algorithm we support (so never "none" nor a MAC keyed with the token).
    if header.get("alg").and_then(Value::as_str) != Some(ALG) {
        return Err(ProofError::Alg);
    }
    // Step 7: a public key, and one the algorithm fits.
    let jwk = header.get("jwk").ok_or(ProofError::Key("there is none"))?;
    let key = public_key(jwk)?;
    // Step 8: the signature, by that key.
    let signature = Base64UrlUnpadded::decode_vec(signature_b64)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(ProofError::Signature)?;
    let input = &proof[..header_b64.len() + 1 + payload_b64.len()];
    key.verify(input.as_bytes(), &signature).map_err(|_| ProofError::Signature)?;
    // Step 4: the claims.
    let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES);
    let jti = jti.ok_or(ProofError::Jti)?.to_owned();
    // Step 9: htm, exactly.
    if claims.get("htm").and_then(Value::as_str) != Some(expected.method) {
        return Err(ProofError::Htm);
    }
    // Step 10: htu, without query and fragment.
    let htu = claims.get("htu").and_then(Value::as_str).ok_or(ProofError::Htu)?;
    if normalise_url(htu).is_none() || normalise_url(htu) != normalise_url(expected.url) {
        return Err(ProofError::Htu);
    }
    // Step 11: iat within the window.
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(ProofError::IatMissing)?;
    if iat < expected.now - MAX_AGE_SECONDS {
        return Err(ProofError::IatTooOld);
    }
    if iat > expected.now + CLOCK_SKEW_SECONDS {
        return Err(ProofError::IatInFuture);
    }
    // Step 12 (nonces) does not apply: this issuer hands none out. Step 13: ath, when a token is presented.
    if let Some(token) = expected.access_token {
        if claims.get("ath").and_then(Value::as_str) != Some(access_token_hash(token).as_str()) {
            return Err(ProofError::Ath);
        }
    }
    Ok(Proof { jkt: thumbprint(jwk)?, jti, iat })
}

fn json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = Base64UrlUnpadded::decode_vec(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn public_key(jwk: &Value) -> Result<VerifyingKey, ProofError> {
    let jwk = jwk.as_object().ok_or(ProofError::Key("it is not an object"))?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::Key("it holds private key members"));
    }
    if jwk.get("kty").and_then(Value::as_str) != Some("EC") || jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
        return Err(ProofError::Key("ES256 needs an EC P-256 key"));
    }
    let coordinate = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(|v| Base64UrlUnpadded::decode_vec(v).ok())
            .filter(|bytes| bytes.len() == 32)
            .ok_or(ProofError::Key("x and y must be 32-byte base64url coordinates"))
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let point =
        EncodedPoint::from_affine_coordinates(GenericArray::from_slice(&x), GenericArray::from_slice(&y), false);
    VerifyingKey::from_encoded_point(&point).map_err(|_| ProofError::Key("the point is not on P-256"))
}

fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Scheme, host, port and path of an absolute http(s) URL, for comparing `htu` (RFC 9449 §4.3 step 10 and
/// RFC 3986 §6.2.2-6.2.3): scheme and host compared case-insensitively, a default port equal to none,
/// percent-encoding hex case ignored, an empty path equal to `/`.
fn normalise_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let rest = without_query(rest);
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    let mut normal_path = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        normal_path.push(c);
        if c == '%' {
            normal_path.extend(chars.by_ref().take(2).map(|h| h.to_ascii_uppercase()));
        }
    }
    Some(format!("{scheme}://{authority}{normal_path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:8788/oauth/token";
    const NOW: i64 = 1_800_000_000;

    fn claims<'a>(token: Option<&'a str>) -> ProofClaims<'a> {
        ProofClaims { method: "POST", url: URL, access_token: token, nonce: None, iat: NOW, jti: random_jti() }
    }

    fn expected<'a>(token: Option<&'a str>) -> Expected<'a> {
        Expected { method: "POST", url: URL, access_token: token, now: NOW }
    }

    /// A proof with its header and payload replaced, signed by `key` all the same.
    fn forged(key: &ClientKey, header: Value, payload: Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()));
        let signature: Signature = key.0.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }

    fn good_payload() -> Value {
        json!({ "jti": "j1", "htm": "POST", "htu": URL, "iat": NOW })
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1: the RSA key and its SHA-256 thumbprint.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn thumbprint_of_an_ec_key_uses_only_crv_kty_x_y_in_order() {
        let jwk = json!({ "y": "Y", "x": "X", "kty": "EC", "crv": "P-256", "use": "sig", "kid": "ignored" });
        let expected = b64(&Sha256::digest(br#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#));
        assert_eq!(thumbprint(&jwk).unwrap(), expected);
        assert!(thumbprint(&json!({ "kty": "EC", "crv": "P-256", "x": "X" })).is_err());
        assert!(thumbprint(&json!({ "kty": "oct", "k": "AAAA" })).is_err());
    }

    #[test]
    fn a_proof_made_here_verifies_and_names_its_key() {
        let key = ClientKey::generate();
        let proof = verify_proof(&make_proof(&key, &claims(None)), &expected(None)).unwrap();
        assert_eq!(proof.jkt, key.thumbprint());
        assert_eq!(proof.iat, NOW);
        let with_token = make_proof(&key, &claims(Some("the.access.token")));
        assert!(verify_proof(&with_token, &expected(Some("the.access.token"))).is_ok());
    }

    #[test]
    fn the_key_survives_its_pem() {
        let key = ClientKey::generate();
        let again = ClientKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(again.thumbprint(), key.thumbprint());
        assert!(ClientKey::from_pem("not a key").is_err());
    }

    #[test]
    fn htu_leaves_out_query_and_fragment_and_compares_normalised() {
        let key = ClientKey::generate();
        let mut c = claims(None);
        c.url = "http://127.0.0.1:8788/oauth/token?x=1#f";
        let proof = make_proof(&key, &c);
        assert!(verify_proof(&proof, &expected(None)).is_ok());
        for same in ["HTTP://127.0.0.1:8788/oauth/token", "http://127.0.0.1:8788/oauth/token?other"] {
            assert!(verify_proof(&proof, &Expected { url: same, ..expected(None) }).is_ok(), "{same}");
        }
        assert_eq!(normalise_url("https://A.example:443/%7e"), normalise_url("https://a.example/%7E"));
        assert_eq!(normalise_url("http://a.example"), normalise_url("http://a.example/"));
        for other in [
            "http://127.0.0.1:8788/oauth/token/",
            "http://127.0.0.1:8789/oauth/token",
            "https://127.0.0.1:8788/oauth/token",
        ] {
            assert_eq!(
                verify_proof(&proof, &Expected { url: other, ..expected(None) }),
                Err(ProofError::Htu),
                "{other}"
            );
        }
    }

    #[test]
    fn each_check_refuses_what_it_names() {
        let key = ClientKey::generate();
        let header = json!({ "typ": PROOF_TYP, "alg": ALG, "jwk": key.public_jwk() });
        let with_header = |field: &str, value: Value| {
            let mut h = header.clone();
            h[field] = value;
            forged(&key, h, good_payload())
        };
        let with_claim = |field: &str, value: Value| {
            let mut p = good_payload();
            p[field] = value;
            forged(&key, header.clone(), p)
        };
        let without_claim = |field: &str| {
            let mut p = good_payload();
            p.as_object_mut().unwrap().remove(field);
            forged(&key, header.clone(), p)
        };
        let mut private_jwk = key.public_jwk();
        private_jwk["d"] = json!(b64(&[1u8; 32]));
        let other_key = ClientKey::generate();
        let good = forged(&key, header.clone(), good_payload());
        let (head, _) = good.rsplit_once('.').unwrap();
        let signed_by_other: Signature = other_key.0.sign(head.as_bytes());
        let cases: Vec<(&str, String, ProofError)> = vec![
            ("two parts", "a.b".into(), ProofError::NotCompactJws),
            ("four parts", format!("{good}.x"), ProofError::NotCompactJws),
            ("header not JSON", format!("{}.{}.x", b64(b"nope"), b64(b"{}")), ProofError::NotJson("header")),
            ("typ JWT", with_header("typ", json!("JWT")), ProofError::Typ),
            ("typ in capitals", with_header("typ", json!("DPOP+JWT")), ProofError::Typ),
            ("alg none", with_header("alg", json!("none")), ProofError::Alg),
            ("alg HS256", with_header("alg", json!("HS256")), ProofError::Alg),
            ("jwk null", with_header("jwk", Value::Null), ProofError::Key("it is not an object")),
            (
                "no jwk",
                forged(&key, json!({ "typ": PROOF_TYP, "alg": ALG }), good_payload()),
                ProofError::Key("there is none"),
            ),
            ("private jwk", with_header("jwk", private_jwk), ProofError::Key("it holds private key members")),
            (
                "RSA jwk",
                with_header("jwk", json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" })),
                ProofError::Key("ES256 needs an EC P-256 key"),
            ),
            ("signed by another key", format!("{head}.{}", b64(&signed_by_other.to_bytes())), ProofError::Signature),
            ("signature garbage", format!("{head}.AAAA"), ProofError::Signature),
            ("no jti", without_claim("jti"), ProofError::Jti),
            ("jti a number", with_claim("jti", json!(7)), ProofError::Jti),
            ("jti too long", with_claim("jti", json!("j".repeat(257))), ProofError::Jti),
            ("htm GET", with_claim("htm", json!("GET")), ProofError::Htm),
            ("htm lower case", with_claim("htm", json!("post")), ProofError::Htm),
            ("htu elsewhere", with_claim("htu", json!("http://127.0.0.1:8788/userinfo")), ProofError::Htu),
            ("htu not a URL", with_claim("htu", json!("/oauth/token")), ProofError::Htu),
            ("no iat", without_claim("iat"), ProofError::IatMissing),
            ("iat a string", with_claim("iat", json!("1800000000")), ProofError::IatMissing),
            ("iat too old", with_claim("iat", json!(NOW - MAX_AGE_SECONDS - 1)), ProofError::IatTooOld),
            ("iat in the future", with_claim("iat", json!(NOW + CLOCK_SKEW_SECONDS + 1)), ProofError::IatInFuture),
        ];
        for (name, proof, error) in cases {
            assert_eq!(verify_proof(&proof, &expected(None)), Err(error), "{name}");
        }
        // At the edges of the window, still good.
        for iat in [NOW - MAX_AGE_SECONDS, NOW + CLOCK_SKEW_SECONDS] {
            assert!(verify_proof(&with_claim("iat", json!(iat)), &expected(None)).is_ok(), "iat {iat}");
        }
    }

    #[test]
    fn ath_must_hash_the_token_presented() {
        let key = ClientKey::generate();
        let for_a = make_proof(&key, &claims(Some("token-a")));
        assert_eq!(verify_proof(&for_a, &expected(Some("token-b"))), Err(ProofError::Ath));
        let without = make_proof(&key, &claims(None));
        assert_eq!(verify_proof(&without, &expected(Some("token-a"))), Err(ProofError::Ath));
        // RFC 9449 §7.1's example: the hash of its example access token.
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn nonce_is_carried_when_given() {
        let key = ClientKey::generate();
        let proof = make_proof(&key, &ProofClaims { nonce: Some("n-1"), ..claims(None) });
        let payload = proof.split('.').nth(1).unwrap();
        assert_eq!(json_object(payload).unwrap()["nonce"], json!("n-1"));
    }
}
