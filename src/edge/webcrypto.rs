//! RS256 through WebCrypto (`crypto.subtle`, BoringSSL in workerd): ~40 us a verification where
//! the pure-Rust engine compiled to wasm took ~620 us.
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

use std::{cell::RefCell, collections::HashMap};

use crate::{
    dpop::proof::{ProofAlg, ProofKey, ProofVerifier, PublicJwk},
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
}

impl WebCrypto {
    pub fn new() -> Self {
        let subtle = Reflect::get(&js_sys::global(), &"crypto".into())
            .ok()
            .filter(|c| !c.is_undefined())
            .map(|crypto| crypto.unchecked_into::<web_sys::Crypto>().subtle());
        let verify_params = object(&[("name", "RSASSA-PKCS1-v1_5".into())]);
        let import_params = object(&[("name", "RSASSA-PKCS1-v1_5".into()), ("hash", "SHA-256".into())]);
        WebCrypto { subtle, verify_params, import_params, proof_keys: RefCell::default() }
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

fn object(members: &[(&str, JsValue)]) -> Object {
    let object = Object::new();
    for (name, value) in members {
        let _ = Reflect::set(&object, &(*name).into(), value);
    }
    object
}
