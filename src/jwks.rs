//! The JSON Web Key Set model: which published keys may verify tokens, and which one a token names.

use jwt_compact::{alg::RsaPublicKey, jwk::JsonWebKey};
use serde::Deserialize;

use crate::error::TokenProblem;

/// Smaller RSA moduli are factorable in practice; Auth0 signs with 2048-bit keys.
pub const MIN_MODULUS_BITS: usize = 2048;

/// One public key that passed every usability rule. Built only by [`KeySet::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKey {
    pub kid: Option<String>,
    /// Big-endian modulus and exponent, as a WebCrypto import would take them.
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub(crate) rsa: RsaPublicKey,
}

impl VerificationKey {
    pub fn modulus_bits(&self) -> usize {
        bit_length(&self.n)
    }
}

/// Bits of a big-endian unsigned integer; JWKs sometimes carry a leading zero byte.
fn bit_length(be: &[u8]) -> usize {
    let be = &be[be.iter().take_while(|&&b| b == 0).count()..];
    match be.first() {
        None => 0,
        Some(first) => (be.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// The usable keys of one JWKS document, in document order, with unique `kid`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksError {
    /// Not JSON, or not an object with a `keys` array.
    Malformed,
    /// A well-formed set in which no key is usable.
    NoUsableKeys,
}

impl JwksError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed JWKS",
            Self::NoUsableKeys => "no usable keys in JWKS",
        }
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// `kid`, `use` and `alg` sit beside the key material; jwt-compact's `JsonWebKey` models only the latter.
#[derive(Deserialize)]
struct RawKey<'a> {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(flatten, borrow)]
    key: JsonWebKey<'a>,
}

impl KeySet {
    /// Parses a JWKS document, keeping only keys that may verify RS256 signatures:
    /// `kty` RSA, `use` absent or `sig`, `alg` absent or RS256, a modulus of at least 2048 bits.
    /// Unusable entries (other key types, encryption keys, malformed members) are skipped,
    /// so one odd key does not take down the whole set. A repeated `kid` keeps its first key.
    pub fn parse(document: &[u8]) -> Result<KeySet, JwksError> {
        let raw: RawSet = serde_json::from_slice(document).map_err(|_| JwksError::Malformed)?;
        let mut keys: Vec<VerificationKey> = Vec::new();
        for entry in &raw.keys {
            let Some(key) = usable_key(entry) else { continue };
            if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
                continue;
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(KeySet { keys })
    }

    /// The key a token names. Without a `kid`, only an unambiguous set (one key) answers.
    pub fn select(&self, kid: Option<&str>) -> Result<&VerificationKey, TokenProblem> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)).ok_or(TokenProblem::UnknownKey),
            None => match self.keys.as_slice() {
                [only] => Ok(only),
                _ => Err(TokenProblem::KeyNotSpecified),
            },
        }
    }

    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone().unwrap_or_default()).collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn usable_key(entry: &serde_json::Value) -> Option<VerificationKey> {
    let raw = RawKey::deserialize(entry).ok()?;
    if raw.usage.as_deref().is_some_and(|u| u != "sig") || raw.alg.as_deref().is_some_and(|a| a != "RS256") {
        return None;
    }
    let JsonWebKey::Rsa { modulus, public_exponent, private_parts: _ } = &raw.key else {
        return None;
    };
    if bit_length(modulus) < MIN_MODULUS_BITS {
        return None;
    }
    let rsa = RsaPublicKey::try_from(&raw.key).ok()?;
    Some(VerificationKey { kid: raw.kid, n: modulus.to_vec(), e: public_exponent.to_vec(), rsa })
}
