//! The signature check, behind one small interface so that its engine can change
//! (pure-Rust RSA today; WebCrypto's `crypto.subtle.verify` at the edge is on the roadmap).

use std::future::Future;

use jwt_compact::{
    alg::{Rsa, RsaSignature},
    Algorithm, AlgorithmSignature, Claims,
};

use crate::{claims::AccessClaims, error::TokenProblem, jwks::VerificationKey, token::UnverifiedToken};

/// Verifies RSASSA-PKCS1-v1_5 with SHA-256. Async because WebCrypto is.
pub trait SignatureVerifier {
    fn verify_rs256(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8])
        -> impl Future<Output = bool>;
}

/// RSA in Rust, compiled to wasm with the rest of the worker.
#[derive(Debug, Default, Clone, Copy)]
pub struct RustRsa;

impl SignatureVerifier for RustRsa {
    async fn verify_rs256(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = RsaSignature::try_from_slice(signature) else { return false };
        Rsa::rs256().verify_signature(&signature, &key.rsa, signing_input)
    }
}

/// Claims whose integrity is proven but whose content is not yet judged
/// (issuer, audience, times and scope are [`crate::claims`]' job).
#[derive(Debug)]
pub struct SignedClaims(pub(crate) Claims<AccessClaims>);

pub async fn check_signature(
    token: &UnverifiedToken<'_>,
    key: &VerificationKey,
    verifier: &impl SignatureVerifier,
) -> Result<SignedClaims, TokenProblem> {
    if !verifier.verify_rs256(key, token.signing_input(), token.signature()).await {
        return Err(TokenProblem::BadSignature);
    }
    token.claims_unchecked().map(SignedClaims)
}
