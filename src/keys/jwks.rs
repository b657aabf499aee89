//! The JSON Web Key Set model: which published keys may verify tokens, and which one a token names.

use std::{any::Any, cell::OnceCell, fmt, rc::Rc};

use crate::error::TokenProblem;

/// Smaller RSA moduli are factorable in practice; Auth0 signs with 2048-bit keys.
pub const MIN_MODULUS_BITS: usize = 2048;
/// Both signature engines (the pure-Rust one refuses larger keys) verify up to this size.
pub const MAX_MODULUS_BITS: usize = 4096;

/// One public key that passed every usability rule. Built only by [`KeySet::parse`].
///
/// A cheap handle: clones share the key material and the engine's prepared form of it, so an
/// imported WebCrypto key lives exactly as long as some key set (or cached token) holds the key.
#[derive(Clone)]
pub struct VerificationKey(Rc<Material>);

struct Material {
    kid: Option<String>,
    /// Big-endian modulus (leading zero bytes stripped) and exponent.
    n: Vec<u8>,
    e: Vec<u8>,
    /// The engine's own form of this key (a WebCrypto `CryptoKey` at the edge), made on first use.
    prepared: OnceCell<Box<dyn Any>>,
}

impl VerificationKey {
    fn new(kid: Option<String>, n: &[u8], e: &[u8]) -> Self {
        let n = strip_leading_zeros(n).to_vec();
        let e = strip_leading_zeros(e).to_vec();
        VerificationKey(Rc::new(Material { kid, n, e, prepared: OnceCell::new() }))
    }

    pub fn kid(&self) -> Option<&str> {
        self.0.kid.as_deref()
    }

    pub fn modulus(&self) -> &[u8] {
        &self.0.n
    }

    pub fn exponent(&self) -> &[u8] {
        &self.0.e
    }

    pub fn modulus_bits(&self) -> usize {
        bit_length(&self.0.n)
    }

    /// RSASSA-PKCS1-v1_5 signatures are exactly this many bytes (RFC 8017 §8.2.2 step 1).
    pub fn signature_len(&self) -> usize {
        self.0.n.len()
    }

    /// The engine's prepared form of this key, if it made one.
    pub fn prepared<T: Any + Clone>(&self) -> Option<T> {
        self.0.prepared.get().and_then(|p| p.downcast_ref::<T>()).cloned()
    }

    /// Keeps the engine's prepared form with the key. The first one stays: two requests that
    /// prepared the same key concurrently made equivalent forms.
    pub fn keep_prepared<T: Any>(&self, prepared: T) {
        let _ = self.0.prepared.set(Box::new(prepared));
    }
}

/// Keys are equal when they are the same key: same `kid`, modulus and exponent.
impl PartialEq for VerificationKey {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0) || (self.0.kid == other.0.kid && self.0.n == other.0.n && self.0.e == other.0.e)
    }
}

impl Eq for VerificationKey {}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey").field("kid", &self.0.kid).field("bits", &self.modulus_bits()).finish()
    }
}

fn strip_leading_zeros(be: &[u8]) -> &[u8] {
    &be[be.iter().take_while(|&&b| b == 0).count()..]
}

/// Bits of a big-endian unsigned integer; JWKs sometimes carry a leading zero byte.
fn bit_length(be: &[u8]) -> usize {
    let be = strip_leading_zeros(be);
    match be.first() {
        None => 0,
        Some(first) => (be.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// An RSA public exponent (big-endian) both engines accept (BoringSSL's and the `rsa` crate's
/// rules): odd, at least 3, at most 33 bits. One rule for the issuers' keys and for DPoP proof
/// keys: 1 would make every message its own signature, and an even one is no RSA key.
pub fn usable_rsa_exponent(e: &[u8]) -> bool {
    let bits = bit_length(e);
    (2..=33).contains(&bits) && e.last().is_some_and(|last| last & 1 == 1)
}

/// An RSA modulus (big-endian, leading zero bytes ignored) of [`MIN_MODULUS_BITS`] to
/// [`MAX_MODULUS_BITS`]: the issuers' keys and DPoP proof keys alike.
pub fn usable_rsa_modulus(n: &[u8]) -> bool {
    (MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bit_length(n))
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

impl KeySet {
    /// Parses a JWKS document, keeping only keys that may verify RS256 signatures:
    /// `kty` RSA, `use` absent or `sig`, `alg` absent or RS256, `key_ops` absent or holding
    /// `verify`, no private member, a modulus of 2048 to 4096 bits, an odd exponent of at least 3.
    /// Unusable entries (other key types, encryption keys, malformed members) are skipped,
    /// so one odd key does not take down the whole set. A repeated `kid` keeps its first key.
    /// A document that repeats a member name in any object is malformed as a whole (which of the
    /// values is meant cannot be known; see src/json.rs): keys already held are kept.
    pub fn parse(document: &[u8]) -> Result<KeySet, JwksError> {
        let document = crate::json::parse_object(document).map_err(|_| JwksError::Malformed)?;
        let Some(serde_json::Value::Array(entries)) = document.get("keys") else { return Err(JwksError::Malformed) };
        let mut keys: Vec<VerificationKey> = Vec::new();
        for entry in entries {
            let Some(key) = usable_key(entry) else { continue };
            if key.kid().is_some() && keys.iter().any(|k| k.kid() == key.kid()) {
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
            Some(kid) => self.keys.iter().find(|k| k.kid() == Some(kid)).ok_or(TokenProblem::UnknownKey),
            None => match self.keys.as_slice() {
                [only] => Ok(only),
                _ => Err(TokenProblem::KeyNotSpecified),
            },
        }
    }

    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid().unwrap_or_default().to_owned()).collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One entry read by hand rather than through a derived, flattened `Deserialize` (kid, use and alg
/// beside jwt-compact's key model): the same rules, without serde's buffering machinery, which
/// a fresh isolate would otherwise compile before its first verification.
fn usable_key(entry: &serde_json::Value) -> Option<VerificationKey> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use serde_json::Value;
    let entry = entry.as_object()?;
    // Absent or null: none; a string: itself; anything else makes the entry unusable.
    let text = |name: &str| match entry.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text)) => Some(Some(text.as_str())),
        Some(_) => None,
    };
    let (kid, usage, alg) = (text("kid")?, text("use")?, text("alg")?);
    if usage.is_some_and(|u| u != "sig") || alg.is_some_and(|a| a != "RS256") || text("kty")? != Some("RSA") {
        return None;
    }
    // RFC 7517 §4.3: when `key_ops` is given, the key is for those operations only.
    if let Some(ops) = entry.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return None;
        }
    }
    // A published private part means anyone may hold the key: what it signs proves nothing.
    if ["d", "p", "q", "dp", "dq", "qi", "oth"].iter().any(|member| entry.contains_key(*member)) {
        return None;
    }
    let bytes = |name: &str| Base64UrlUnpadded::decode_vec(text(name)??).ok();
    let (modulus, public_exponent) = (bytes("n")?, bytes("e")?);
    if !usable_rsa_modulus(&modulus) || !usable_rsa_exponent(&public_exponent) {
        return None;
    }
    Some(VerificationKey::new(kid.map(str::to_owned), &modulus, &public_exponent))
}
