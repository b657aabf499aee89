//! `DPoP` header → `proof::check`, for one request (GET of a fixed URL with a fixed token at a
//! fixed time). The first byte picks how the rest is read:
//! - even: the whole header, raw (the parser on anything a client can send);
//! - odd: a proof's header JSON and claims JSON, split at the first 0 byte, then signed with a
//!   fixed ES256 key, so that libFuzzer explores every check after the signature. In this mode
//!   `"$JWK"` stands for the fixed key's public jwk and `$ATH` for the token's hash, so seeds
//!   (fuzz/seed.py) can be valid proofs.
//!
//! Invariants: no panic; and an accepted proof is, read independently of the edge's code, a
//! compact JWS whose header has typ dpop+jwt, one of the four algorithms and a public jwk without
//! private members, whose claims have a string jti of at most 256 bytes, htm GET, an htu naming
//! the request URL, an iat within the window, and the token's ath; its thumbprint is that of the
//! key that signed it when the fixed key did.

#![no_main]

use base64ct::{Base64UrlUnpadded, Encoding};
use edge_auth::{
    dpop::policy::{DpopMode, DpopPolicy, ReplayScope},
    dpop::proof::{self, ProofRequest},
    token::verify::RustRsa,
};
use edge_auth_fuzz::block_on;
use jwt_compact::{alg::Es256, Algorithm, AlgorithmSignature};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const URL: &str = "https://api.fuzz.test/api/private";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmdXp6In0.c2lnbmF0dXJl";
const NOW: i64 = 1_767_225_600;
const MAX_AGE: i64 = 300;
const LEEWAY: i64 = 30;

fn fixed_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("a valid scalar")
}

fn fixed_jwk() -> Value {
    let point = fixed_key().verifying_key().to_encoded_point(false);
    let b64 = |b: &[u8]| Base64UrlUnpadded::encode_string(b);
    json!({ "kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()) })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let (header, signed_by_fixed_key) = if selector % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        (text.to_owned(), false)
    } else {
        let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let (Ok(h), Ok(c)) =
            (std::str::from_utf8(&rest[..split]), std::str::from_utf8(rest.get(split + 1..).unwrap_or_default()))
        else {
            return;
        };
        let h = h.replace("\"$JWK\"", &fixed_jwk().to_string());
        let c = c.replace("$ATH", &proof::access_token_hash(TOKEN));
        let input = format!(
            "{}.{}",
            Base64UrlUnpadded::encode_string(h.as_bytes()),
            Base64UrlUnpadded::encode_string(c.as_bytes())
        );
        let signature = Es256.sign(&fixed_key(), input.as_bytes());
        (format!("{input}.{}", Base64UrlUnpadded::encode_string(&signature.as_bytes())), true)
    };
    let policy =
        DpopPolicy { mode: DpopMode::Allowed, max_age_secs: MAX_AGE as u64, nonce: None, replay: ReplayScope::Isolate };
    let request = ProofRequest { header: Some(&header), method: "GET", url: URL, access_token: TOKEN };
    let Ok(checked) = block_on(proof::check(&request, &policy, LEEWAY as u64, NOW, &RustRsa)) else { return };

    let parts: Vec<&str> = header.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a proof that is not three segments");
    let json = |s: &str| -> Value {
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(s).expect("accepted segments are base64url"))
            .expect("accepted segments are JSON")
    };
    let (h, c) = (json(parts[0]), json(parts[1]));
    assert_eq!(h["typ"], "dpop+jwt");
    assert!(["ES256", "RS256", "PS256", "EdDSA"].contains(&h["alg"].as_str().unwrap()), "{h}");
    let jwk = h["jwk"].as_object().expect("a jwk object");
    for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
        assert!(!jwk.contains_key(private), "accepted a private jwk: {h}");
    }
    let jti = c["jti"].as_str().expect("a string jti");
    assert!(!jti.is_empty() && jti.len() <= 256 && jti == checked.jti);
    assert_eq!(c["htm"], "GET");
    let htu = c["htu"].as_str().expect("a string htu");
    assert_eq!(proof::normalise_url(htu), proof::normalise_url(URL), "htu {htu}");
    let iat = c["iat"].as_f64().expect("a numeric iat") as i64;
    assert!(iat <= NOW + LEEWAY && iat >= NOW - MAX_AGE, "iat {iat}");
    assert_eq!(c["ath"], proof::access_token_hash(TOKEN));
    if signed_by_fixed_key {
        // Only the fixed key's own jwk can verify what it signed.
        let fixed = fixed_jwk();
        for member in ["kty", "crv", "x", "y"] {
            assert_eq!(jwk.get(member), fixed.get(member), "accepted a proof under another key's jwk");
        }
        let expected = proof::thumbprint(&proof::PublicJwk::Ec {
            x: Base64UrlUnpadded::decode_vec(fixed["x"].as_str().unwrap()).unwrap(),
            y: Base64UrlUnpadded::decode_vec(fixed["y"].as_str().unwrap()).unwrap(),
        });
        assert_eq!(checked.thumbprint, expected);
    }
});
