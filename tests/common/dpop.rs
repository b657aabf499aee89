//! DPoP proofs for tests (RFC 9449 §4.2), in every algorithm the edge accepts, with every part
//! open to tampering: a proof is built from a header and claims the test may edit.

use edge_auth::proof::access_token_hash;
use edge_auth_dev_issuer::{b64, SigningKey};
use jwt_compact::{
    alg::{Ed25519, Es256},
    Algorithm, AlgorithmSignature,
};
use serde_json::{json, Value};

/// A client's proof key.
pub enum ProofKey {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_compact::KeyPair),
    Rs256(SigningKey),
    Ps256(SigningKey),
}

impl ProofKey {
    pub fn es256() -> ProofKey {
        ProofKey::Es256(p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng))
    }

    pub fn eddsa() -> ProofKey {
        ProofKey::EdDsa(ed25519_compact::KeyPair::generate())
    }

    pub fn alg(&self) -> &'static str {
        match self {
            ProofKey::Es256(_) => "ES256",
            ProofKey::EdDsa(_) => "EdDSA",
            ProofKey::Rs256(_) => "RS256",
            ProofKey::Ps256(_) => "PS256",
        }
    }

    /// The public JWK, members as a client library writes them.
    pub fn public_jwk(&self) -> Value {
        match self {
            ProofKey::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({ "kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()) })
            }
            ProofKey::EdDsa(pair) => json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.pk.as_ref()) }),
            ProofKey::Rs256(key) | ProofKey::Ps256(key) => {
                let jwk = key.public_jwk();
                json!({ "kty": "RSA", "n": jwk["n"], "e": jwk["e"] })
            }
        }
    }

    /// RFC 7638, computed here independently of the edge's own code.
    pub fn thumbprint(&self) -> String {
        use sha2::Digest;
        let jwk = self.public_jwk();
        let members: Vec<&str> = match jwk["kty"].as_str().unwrap() {
            "EC" => vec!["crv", "kty", "x", "y"],
            "OKP" => vec!["crv", "kty", "x"],
            _ => vec!["e", "kty", "n"],
        };
        let canonical: serde_json::Map<String, Value> =
            members.iter().map(|m| (m.to_string(), jwk[*m].clone())).collect();
        b64(&sha2::Sha256::digest(serde_json::to_string(&canonical).unwrap().as_bytes()))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            ProofKey::Es256(key) => Es256.sign(key, message).as_bytes().into_owned(),
            ProofKey::EdDsa(pair) => Ed25519.sign(&pair.sk, message).as_bytes().into_owned(),
            ProofKey::Rs256(key) => key.sign_rs256(message),
            ProofKey::Ps256(key) => key.sign_ps256(message),
        }
    }
}

/// A proof's parts before signing.
pub struct Proof {
    pub header: Value,
    pub claims: Value,
}

impl Proof {
    /// A correct proof for `method` `url` with `token`, issued at `now`.
    pub fn new(key: &ProofKey, method: &str, url: &str, token: &str, now: i64, jti: &str) -> Proof {
        Proof {
            header: json!({ "typ": "dpop+jwt", "alg": key.alg(), "jwk": key.public_jwk() }),
            claims: json!({ "jti": jti, "htm": method, "htu": url, "iat": now, "ath": access_token_hash(token) }),
        }
    }

    pub fn sign(&self, key: &ProofKey) -> String {
        let input = format!(
            "{}.{}",
            b64(serde_json::to_string(&self.header).unwrap().as_bytes()),
            b64(serde_json::to_string(&self.claims).unwrap().as_bytes())
        );
        format!("{input}.{}", b64(&key.sign(input.as_bytes())))
    }
}
