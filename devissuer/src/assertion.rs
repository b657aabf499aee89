//! Keys for the worker's identity assertion (`ASSERTION_KEYS`): `assertion-key` makes one as a
//! private JWK and prints the `wrangler secret put` line; the end-to-end tests make theirs here.

use p256::ecdsa::SigningKey as EcSigningKey;
use serde_json::{json, Value};

use crate::b64;

/// What `ASSERTION_KEYS` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    Es256,
    EdDsa,
}

impl AssertionAlg {
    pub fn parse(name: &str) -> Option<AssertionAlg> {
        match name {
            "ES256" => Some(AssertionAlg::Es256),
            "EdDSA" => Some(AssertionAlg::EdDsa),
            _ => None,
        }
    }
}

/// A new private JWK (`kty`, `crv`, `x`, [`y`,] `d`, `kid`, `alg`, `use`).
pub fn assertion_key(alg: AssertionAlg, kid: &str) -> Value {
    match alg {
        AssertionAlg::Es256 => {
            let key = EcSigningKey::random(&mut rand::thread_rng());
            let point = key.verifying_key().to_encoded_point(false);
            let (x, y) = (point.x().expect("uncompressed point"), point.y().expect("uncompressed point"));
            json!({
                "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "d": b64(&key.to_bytes()),
                "kid": kid, "alg": "ES256", "use": "sig",
            })
        }
        AssertionAlg::EdDsa => {
            let pair = ed25519_compact::KeyPair::generate();
            json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(&pair.pk[..]), "d": b64(&pair.sk.seed()[..]),
                "kid": kid, "alg": "EdDSA", "use": "sig",
            })
        }
    }
}

/// The key without its private half, as the worker publishes it.
pub fn public_half(jwk: &Value) -> Value {
    let mut public = jwk.clone();
    if let Some(members) = public.as_object_mut() {
        members.remove("d");
    }
    public
}

/// A kid goes into a shell line inside single quotes, and into JSON: printable ASCII without
/// spaces, quotes or backslashes.
pub fn usable_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 128 && kid.bytes().all(|b| b.is_ascii_graphic() && !b"'\"\\".contains(&b))
}

/// `new` first (it signs), then the keys of the JWKS the worker serves now (`served`, its
/// `/.well-known/edge-auth/jwks.json`), published alone while the assertions they signed expire.
pub fn rotated(new: Value, served: Option<&Value>) -> Result<Value, String> {
    let mut keys = vec![new];
    if let Some(served) = served {
        let old = served["keys"].as_array().ok_or("--keep takes the JWKS the worker serves: {\"keys\": [...]}")?;
        for key in old {
            if key.get("d").is_some() {
                return Err("--keep takes public keys only (the served JWKS)".into());
            }
            if key["kid"] == keys[0]["kid"] {
                return Err("the new key's --kid is already published: choose another".into());
            }
            keys.push(key.clone());
        }
    }
    Ok(Value::Array(keys))
}

/// The shell line that stores `keys` as the `ASSERTION_KEYS` secret.
pub fn secret_put_line(keys: &Value) -> String {
    format!("printf '%s' '{keys}' | npx wrangler secret put ASSERTION_KEYS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_has_every_member_the_worker_reads_and_its_public_half_has_no_d() {
        for (alg, kty) in [(AssertionAlg::Es256, "EC"), (AssertionAlg::EdDsa, "OKP")] {
            let key = assertion_key(alg, "k1");
            assert_eq!((key["kty"].as_str(), key["kid"].as_str()), (Some(kty), Some("k1")));
            assert_eq!(key["d"].as_str().unwrap().len(), 43, "32 bytes, base64url");
            assert!(public_half(&key).get("d").is_none());
        }
    }

    #[test]
    fn rotation_puts_the_new_key_first_and_keeps_only_public_ones() {
        let old = public_half(&assertion_key(AssertionAlg::Es256, "old"));
        let served = json!({ "keys": [old] });
        let keys = rotated(assertion_key(AssertionAlg::EdDsa, "new"), Some(&served)).unwrap();
        assert_eq!(keys[0]["kid"], "new");
        assert_eq!(keys[1]["kid"], "old");
        assert!(rotated(assertion_key(AssertionAlg::EdDsa, "old"), Some(&served)).is_err());
        let private = json!({ "keys": [assertion_key(AssertionAlg::Es256, "x")] });
        assert!(rotated(assertion_key(AssertionAlg::EdDsa, "new"), Some(&private)).is_err());
    }

    #[test]
    fn the_secret_line_quotes_the_json_whole() {
        assert!(!usable_kid("it's"));
        assert!(usable_kid("edge-2026-12"));
        let line = secret_put_line(&json!([{ "kid": "k" }]));
        assert_eq!(line, r#"printf '%s' '[{"kid":"k"}]' | npx wrangler secret put ASSERTION_KEYS"#);
    }
}
