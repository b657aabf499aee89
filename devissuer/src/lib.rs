//! A local issuer for development and tests: RSA signing keys, their JWKS, tokens signed with them
//! (well-formed or deliberately broken), and a tiny JWKS server that can be told to misbehave.

pub mod assertion;
pub mod dpop;
pub mod oauth;
pub mod origin;
pub mod pages;
pub mod server;

use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::{alg::Rsa, Algorithm, AlgorithmSignature};
use rsa::{
    pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding},
    traits::PublicKeyParts,
    RsaPrivateKey,
};
use serde_json::{json, Value};

/// An RSA signing key and the `kid` its public half is published under.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    key: RsaPrivateKey,
}

impl SigningKey {
    pub fn generate(kid: &str, bits: usize) -> SigningKey {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), bits).expect("RSA key generation");
        SigningKey { kid: kid.into(), key }
    }

    pub fn to_pem(&self) -> String {
        self.key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding").to_string()
    }

    pub fn from_pem(kid: &str, pem: &str) -> Result<SigningKey, String> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| format!("not a PKCS#8 RSA private key: {e}"))?;
        Ok(SigningKey { kid: kid.into(), key })
    }

    /// The public JWK, as Auth0 publishes it.
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64(&self.key.n().to_bytes_be()),
            "e": b64(&self.key.e().to_bytes_be()),
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub fn sign_rs256(&self, message: &[u8]) -> Vec<u8> {
        Rsa::rs256().sign(&self.key, message).as_bytes().into_owned()
    }

    /// RSASSA-PSS with SHA-256 and a 32-byte salt (JWS PS256) over `message`.
    pub fn sign_ps256(&self, message: &[u8]) -> Vec<u8> {
        Rsa::ps256().sign(&self.key, message).as_bytes().into_owned()
    }
}

pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
}

pub fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// A compact JWS of exactly this header and these claims, signed RS256 with `key`.
/// The header is taken as given, so tests can forge `alg`, `kid` or `crit`.
pub fn sign(header: &Value, claims: &Value, key: &SigningKey) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = key.sign_rs256(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

/// The claims of an Auth0-style access token.
#[derive(Debug, Clone)]
pub struct Mint {
    pub issuer: String,
    pub audience: Value,
    pub subject: String,
    pub scope: Option<String>,
    pub permissions: Option<Vec<String>>,
    /// Seconds from now; negative for an expired token.
    pub expires_in: i64,
    pub not_before_in: Option<i64>,
    pub now: i64,
}

impl Mint {
    pub fn new(issuer: &str, audience: &str) -> Mint {
        Mint {
            issuer: issuer.into(),
            audience: json!(audience),
            subject: "dev-user|1".into(),
            scope: None,
            permissions: None,
            expires_in: 3600,
            not_before_in: None,
            now: unix_now(),
        }
    }

    pub fn claims(&self) -> Value {
        let mut claims = json!({
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "iat": self.now,
            "exp": self.now + self.expires_in,
        });
        if let Some(scope) = &self.scope {
            claims["scope"] = json!(scope);
        }
        if let Some(permissions) = &self.permissions {
            claims["permissions"] = json!(permissions);
        }
        if let Some(nbf) = self.not_before_in {
            claims["nbf"] = json!(self.now + nbf);
        }
        claims
    }

    pub fn sign(&self, key: &SigningKey) -> String {
        sign(&json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid }), &self.claims(), key)
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
