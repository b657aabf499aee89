//! DPoP proofs for tests (RFC 9449 §4.2), in every algorithm the edge accepts, with every part
//! open to tampering: a proof is built from a header and claims the test may edit.

use edge_auth::dpop::proof::access_token_hash;
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

impl ProofKey {
    /// An ES256 key from a private JWK (`d`, base64url).
    pub fn from_private_jwk(jwk: &Value) -> ProofKey {
        let d =
            base64ct::Base64UrlUnpadded::decode_vec(jwk["d"].as_str().expect("a private jwk")).expect("base64url d");
        ProofKey::Es256(p256::ecdsa::SigningKey::from_slice(&d).expect("a P-256 scalar"))
    }
}

use base64ct::Encoding as _;

/// The proof an attack-corpus row asks for (tests/vectors/attacks.json explains the recipe),
/// made now, for `method` `url` and `token`.
pub fn from_recipe(recipe: &Value, keys: &Value, method: &str, url: &str, token: &str, now: i64, jti: &str) -> String {
    let key = ProofKey::from_private_jwk(&keys[recipe["key"].as_str().unwrap()]);
    let ath_token = recipe["ath_of"].as_str().unwrap_or(token);
    let iat = now + recipe["iat_offset"].as_i64().unwrap_or(0);
    let mut proof = Proof::new(&key, method, url, ath_token, iat, jti);
    if recipe["private_jwk"] == true {
        proof.header["jwk"]["d"] = keys[recipe["key"].as_str().unwrap()]["d"].clone();
    }
    let merge = |target: &mut Value, edits: &Value| {
        for (name, value) in edits.as_object().into_iter().flatten() {
            match value {
                Value::Null => _ = target.as_object_mut().unwrap().remove(name),
                value => target[name] = value.clone(),
            }
        }
    };
    merge(&mut proof.header, &recipe["header"]);
    merge(&mut proof.claims, &recipe["claims"]);
    if let Some(path) = proof.claims.as_object_mut().unwrap().remove("htu_path") {
        let origin = &url[..url.find("://").map_or(0, |i| i + 3)
            + url[url.find("://").map_or(0, |i| i + 3)..].find('/').unwrap_or(0)];
        proof.claims["htu"] = json!(format!("{origin}{}", path.as_str().unwrap()));
    }
    if recipe["hs256_with_token"] == true {
        use hmac::Mac;
        proof.header["alg"] = json!("HS256");
        let input = format!(
            "{}.{}",
            b64(serde_json::to_string(&proof.header).unwrap().as_bytes()),
            b64(serde_json::to_string(&proof.claims).unwrap().as_bytes())
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        return format!("{input}.{}", b64(&mac.finalize().into_bytes()));
    }
    let signer = recipe["sign_with"].as_str().map(|k| ProofKey::from_private_jwk(&keys[k]));
    proof.sign(signer.as_ref().unwrap_or(&key))
}
