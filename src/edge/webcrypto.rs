//! RS256 through WebCrypto (`crypto.subtle`, BoringSSL in workerd): ~40 us a verification where
//! the pure-Rust engine compiled to wasm took ~620 us. DPoP proofs are verified, and the identity
//! assertion signed (ES256 or Ed25519), the same way: no signing engine is compiled into the wasm.
//!
//! Each key is imported once, on first use, and its `CryptoKey` is kept with the key itself
//! ([`VerificationKey::keep_prepared`]), so it is dropped when the key set that held it is.
//! A `CryptoKey` is plain data to the runtime: unlike a fetch or a promise, one made during one
//! request may be used by later ones.

use base64ct::{Base64UrlUnpadded, Encoding};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto};

use std::{cell::RefCell, collections::HashMap, rc::Rc};

use crate::{
    dpop::proof::{ProofAlg, ProofKey, ProofVerifier, PublicJwk},
    gateway::assertion::{Alg, AssertionKey, AssertionSigner, SignError},
    keys::jwks::VerificationKey,
    token::verify::SignatureVerifier,
};

/// Imported DPoP proof keys kept per isolate: a client signs every proof with the same key, so
/// its import is paid once. Bounded; emptied when full (a miss costs one import, ~20 us).
const PROOF_KEYS: usize = 256;

pub struct WebCrypto {
    subtle: Option<SubtleCrypto>,
    /// `{ name: "RSASSA-PKCS1-v1_5" }`, made once: verify takes it on every call.
    verify_params: Object,
    /// `{ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }` for imports.
    import_params: Object,
    /// `alg|thumbprint` → the imported proof key.
    proof_keys: RefCell<HashMap<String, CryptoKey>>,
    /// The assertion's signing key (by its kid), imported once per isolate, or why it cannot be:
    /// a key that failed is not imported again for every request.
    signing_key: RefCell<Option<Imported>>,
    /// `sign`'s parameters for ES256 and EdDSA, made once: every assertion made takes one.
    sign_params: [Object; 2],
}

/// An assertion key's kid, and its import's outcome.
type Imported = (Rc<str>, Result<CryptoKey, SignError>);

impl WebCrypto {
    pub fn new() -> Self {
        let subtle = Reflect::get(&js_sys::global(), &"crypto".into())
            .ok()
            .filter(|c| !c.is_undefined())
            .map(|crypto| crypto.unchecked_into::<web_sys::Crypto>().subtle());
        let verify_params = object(&[("name", "RSASSA-PKCS1-v1_5".into())]);
        let import_params = object(&[("name", "RSASSA-PKCS1-v1_5".into()), ("hash", "SHA-256".into())]);
        WebCrypto {
            subtle,
            verify_params,
            import_params,
            proof_keys: RefCell::default(),
            signing_key: RefCell::default(),
            sign_params: [sign_params(Alg::Es256), sign_params(Alg::EdDsa)],
        }
    }

    /// The assertion key as a non-extractable `CryptoKey` that may only sign, imported on first use.
    async fn signing_key(&self, subtle: &SubtleCrypto, key: &AssertionKey) -> Result<CryptoKey, SignError> {
        if let Some((kid, imported)) = &*self.signing_key.borrow() {
            if *kid == key.kid {
                return imported.clone();
            }
        }
        let imported = import_signing_key(subtle, key).await;
        *self.signing_key.borrow_mut() = Some((key.kid.clone(), imported.clone()));
        imported
    }

    async fn proof_key(&self, subtle: &SubtleCrypto, key: &ProofKey) -> Option<CryptoKey> {
        let cache_key = format!("{:?}|{}", key.alg, key.thumbprint);
        if let Some(imported) = self.proof_keys.borrow().get(&cache_key) {
            return Some(imported.clone());
        }
        let b64 = |bytes: &[u8]| JsValue::from(Base64UrlUnpadded::encode_string(bytes));
        let jwk = match &key.jwk {
            PublicJwk::Ec { x, y } => {
                object(&[("kty", "EC".into()), ("crv", "P-256".into()), ("x", b64(x)), ("y", b64(y))])
            }
            PublicJwk::Rsa { n, e } => object(&[("kty", "RSA".into()), ("n", b64(n)), ("e", b64(e))]),
            PublicJwk::Ed25519 { x } => object(&[("kty", "OKP".into()), ("crv", "Ed25519".into()), ("x", b64(x))]),
        };
        let params = match key.alg {
            ProofAlg::Es256 => object(&[("name", "ECDSA".into()), ("namedCurve", "P-256".into())]),
            ProofAlg::Rs256 => object(&[("name", "RSASSA-PKCS1-v1_5".into()), ("hash", "SHA-256".into())]),
            ProofAlg::Ps256 => object(&[("name", "RSA-PSS".into()), ("hash", "SHA-256".into())]),
            ProofAlg::EdDsa => object(&[("name", "Ed25519".into())]),
        };
        let usages = Array::of1(&"verify".into());
        let promise = subtle.import_key_with_object("jwk", &jwk, &params, false, &usages).ok()?;
        let imported: CryptoKey = JsFuture::from(promise).await.ok()?.dyn_into().ok()?;
        let mut keys = self.proof_keys.borrow_mut();
        if keys.len() >= PROOF_KEYS {
            keys.clear();
        }
        keys.insert(cache_key, imported.clone());
        Some(imported)
    }

    /// The key as a `CryptoKey`, imported on first use.
    async fn crypto_key(&self, subtle: &SubtleCrypto, key: &VerificationKey) -> Option<CryptoKey> {
        if let Some(imported) = key.prepared::<CryptoKey>() {
            return Some(imported);
        }
        let jwk = object(&[
            ("kty", "RSA".into()),
            ("n", Base64UrlUnpadded::encode_string(key.modulus()).into()),
            ("e", Base64UrlUnpadded::encode_string(key.exponent()).into()),
            ("alg", "RS256".into()),
            ("ext", true.into()),
        ]);
        let usages = Array::of1(&"verify".into());
        let promise = subtle.import_key_with_object("jwk", &jwk, &self.import_params, false, &usages).ok()?;
        let imported: CryptoKey = JsFuture::from(promise).await.ok()?.dyn_into().ok()?;
        key.keep_prepared(imported.clone());
        Some(imported)
    }
}

impl SignatureVerifier for WebCrypto {
    async fn verify_rs256(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8]) -> bool {
        let Some(subtle) = &self.subtle else { return false };
        let Some(crypto_key) = self.crypto_key(subtle, key).await else { return false };
        let Ok(promise) = subtle.verify_with_object_and_u8_array_and_u8_array(
            &self.verify_params,
            &crypto_key,
            signature,
            signing_input,
        ) else {
            return false;
        };
        super::handoff::wait(promise).await.ok().and_then(|verdict| verdict.as_bool()).unwrap_or(false)
    }
}

impl ProofVerifier for WebCrypto {
    async fn verify_proof(&self, key: &ProofKey, signing_input: &[u8], signature: &[u8]) -> bool {
        let Some(subtle) = &self.subtle else { return false };
        let Some(crypto_key) = self.proof_key(subtle, key).await else { return false };
        let params = match key.alg {
            ProofAlg::Es256 => object(&[("name", "ECDSA".into()), ("hash", "SHA-256".into())]),
            ProofAlg::Rs256 => object(&[("name", "RSASSA-PKCS1-v1_5".into())]),
            // RFC 7518 §3.5: the salt is as long as the hash.
            ProofAlg::Ps256 => object(&[("name", "RSA-PSS".into()), ("saltLength", 32.into())]),
            ProofAlg::EdDsa => object(&[("name", "Ed25519".into())]),
        };
        let Ok(promise) =
            subtle.verify_with_object_and_u8_array_and_u8_array(&params, &crypto_key, signature, signing_input)
        else {
            return false;
        };
        JsFuture::from(promise).await.ok().and_then(|verdict| verdict.as_bool()).unwrap_or(false)
    }
}

impl AssertionSigner for WebCrypto {
    async fn sign_assertion(&self, key: &AssertionKey, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let subtle = self.subtle.as_ref().ok_or(SignError::Unavailable)?;
        let crypto_key = self.signing_key(subtle, key).await?;
        let params = &self.sign_params[usize::from(key.alg == Alg::EdDsa)];
        sign(subtle, params, &crypto_key, input).await.ok_or(SignError::Unavailable)
    }
}

/// Imports the private key, then signs a probe with it and verifies that with the public half
/// alone, as the origin will: BoringSSL does not hold an Ed25519 JWK's `x` to its `d`, and a key
/// whose published half does not match would make every assertion fail at the origin, silently
/// for the edge. Once per isolate.
async fn import_signing_key(subtle: &SubtleCrypto, key: &AssertionKey) -> Result<CryptoKey, SignError> {
    let b64 = |bytes: &[u8]| JsValue::from(Base64UrlUnpadded::encode_string(bytes));
    let d = key.private().ok_or(SignError::UnusableKey)?;
    let (public, params) = match key.alg {
        Alg::Es256 => (
            object(&[("kty", "EC".into()), ("crv", "P-256".into()), ("x", b64(&key.x)), ("y", b64(&key.y))]),
            object(&[("name", "ECDSA".into()), ("namedCurve", "P-256".into())]),
        ),
        Alg::EdDsa => (
            object(&[("kty", "OKP".into()), ("crv", "Ed25519".into()), ("x", b64(&key.x))]),
            object(&[("name", "Ed25519".into())]),
        ),
    };
    let import = |jwk: &Object, usage: &str| {
        let promise = subtle.import_key_with_object("jwk", jwk, &params, false, &Array::of1(&usage.into()));
        async move {
            let imported = JsFuture::from(promise.map_err(|_| SignError::UnusableKey)?).await;
            imported.ok().and_then(|k| k.dyn_into::<CryptoKey>().ok()).ok_or(SignError::UnusableKey)
        }
    };
    let verifying = import(&public, "verify").await?;
    let _ = Reflect::set(&public, &"d".into(), &b64(d));
    let signing = import(&public, "sign").await?;
    const PROBE: &[u8] = b"edge-auth: does this key's public half verify what it signs?";
    let signature = sign(subtle, &sign_params(key.alg), &signing, PROBE).await.ok_or(SignError::UnusableKey)?;
    let verify = subtle
        .verify_with_object_and_u8_array_and_u8_array(&sign_params(key.alg), &verifying, &signature, PROBE)
        .map_err(|_| SignError::UnusableKey)?;
    match JsFuture::from(verify).await.ok().and_then(|verdict| verdict.as_bool()) {
        Some(true) => Ok(signing),
        _ => Err(SignError::UnusableKey),
    }
}

/// WebCrypto's ECDSA signature is already JWS's `r ‖ s` (IEEE P1363), not DER. Awaited as a
/// token's verification is (`handoff`): a distinct token's request then waits twice, both in
/// `entry.mjs`, rather than falling back to wasm-bindgen-futures for the second.
async fn sign(subtle: &SubtleCrypto, params: &Object, key: &CryptoKey, input: &[u8]) -> Option<Vec<u8>> {
    let promise = subtle.sign_with_object_and_u8_array(params, key, input).ok()?;
    let signature = super::handoff::wait(promise).await.ok()?;
    Some(js_sys::Uint8Array::new(&signature).to_vec())
}

fn sign_params(alg: Alg) -> Object {
    match alg {
        Alg::Es256 => object(&[("name", "ECDSA".into()), ("hash", "SHA-256".into())]),
        Alg::EdDsa => object(&[("name", "Ed25519".into())]),
    }
}

fn object(members: &[(&str, JsValue)]) -> Object {
    let object = Object::new();
    for (name, value) in members {
        let _ = Reflect::set(&object, &(*name).into(), value);
    }
    object
}
