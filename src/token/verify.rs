//! The signature check, behind one small interface so that its engine can change: WebCrypto's
//! `crypto.subtle.verify` at the edge (`edge::webcrypto`), pure-Rust RSA in host tests.

use std::future::Future;

use crate::{
    error::TokenProblem, keys::jwks::VerificationKey, token::claims::SignedClaims, token::parse::UnverifiedToken,
};

/// Verifies RSASSA-PKCS1-v1_5 with SHA-256. Async because WebCrypto is.
///
/// Engines are only asked about signatures of exactly the key's size ([`check_signature`] refuses
/// the rest), so that every engine gives the same verdict on short, long or zero-padded input.
pub trait SignatureVerifier {
    fn verify_rs256(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8])
        -> impl Future<Output = bool>;
}

/// RSA in Rust, for host tests and tools. It never ships in the wasm: WebCrypto is ~15x faster
/// there and the `rsa` crate cost ~117 KB of the module.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Default, Clone, Copy)]
pub struct RustRsa;

#[cfg(not(target_arch = "wasm32"))]
impl SignatureVerifier for RustRsa {
    async fn verify_rs256(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8]) -> bool {
        use jwt_compact::{
            alg::{Rsa, RsaPublicKey, RsaSignature},
            jwk::JsonWebKey,
            Algorithm, AlgorithmSignature,
        };
        let jwk = JsonWebKey::Rsa {
            modulus: key.modulus().into(),
            public_exponent: key.exponent().into(),
            private_parts: None,
        };
        let (Ok(public), Ok(signature)) = (RsaPublicKey::try_from(&jwk), RsaSignature::try_from_slice(signature))
        else {
            return false;
        };
        Rsa::rs256().verify_signature(&signature, &public, signing_input)
    }
}

/// DPoP proofs on the host, through jwt-compact's engines.
#[cfg(not(target_arch = "wasm32"))]
impl crate::dpop::proof::ProofVerifier for RustRsa {
    async fn verify_proof(&self, key: &crate::dpop::proof::ProofKey, signing_input: &[u8], signature: &[u8]) -> bool {
        use crate::dpop::proof::{ProofAlg, PublicJwk};
        use jwt_compact::{
            alg::{Ed25519, Es256, Rsa, RsaPublicKey, RsaSignature, VerifyingKey},
            jwk::JsonWebKey,
            Algorithm, AlgorithmSignature,
        };
        fn check<A: Algorithm>(alg: A, key: &A::VerifyingKey, input: &[u8], signature: &[u8]) -> bool {
            A::Signature::try_from_slice(signature).is_ok_and(|s| alg.verify_signature(&s, key, input))
        }
        match (&key.jwk, key.alg) {
            (PublicJwk::Ec { x, y }, ProofAlg::Es256) => {
                let point = [&[4u8][..], x, y].concat();
                <p256::ecdsa::VerifyingKey as VerifyingKey<Es256>>::from_slice(&point)
                    .is_ok_and(|k| check(Es256, &k, signing_input, signature))
            }
            (PublicJwk::Ed25519 { x }, ProofAlg::EdDsa) => {
                <ed25519_compact::PublicKey as VerifyingKey<Ed25519>>::from_slice(x)
                    .is_ok_and(|k| check(Ed25519, &k, signing_input, signature))
            }
            (PublicJwk::Rsa { n, e }, ProofAlg::Rs256 | ProofAlg::Ps256) => {
                let jwk = JsonWebKey::Rsa { modulus: n.into(), public_exponent: e.into(), private_parts: None };
                let alg = if key.alg == ProofAlg::Rs256 { Rsa::rs256() } else { Rsa::ps256() };
                let (Ok(public), Ok(signature)) =
                    (RsaPublicKey::try_from(&jwk), RsaSignature::try_from_slice(signature))
                else {
                    return false;
                };
                alg.verify_signature(&signature, &public, signing_input)
            }
            _ => false,
        }
    }
}

pub async fn check_signature(
    token: UnverifiedToken<'_>,
    key: &VerificationKey,
    verifier: &impl SignatureVerifier,
) -> Result<SignedClaims, TokenProblem> {
    let signature = token.signature();
    if signature.len() != key.signature_len() || !verifier.verify_rs256(key, token.signing_input(), signature).await {
        return Err(TokenProblem::BadSignature);
    }
    Ok(SignedClaims(token.into_claims()))
}
