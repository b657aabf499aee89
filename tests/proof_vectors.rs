//! The host engines (jwt-compact's ES256, EdDSA, RS256, PS256) on the DPoP proof-signature corpus
//! (tests/vectors/proofs.json). WebCrypto is held to the same corpus in workerd (tests/e2e.rs):
//! one corpus, so the two engines give every proof the same verdict.

mod common;

use common::block_on;
use edge_auth::{
    dpop::policy::{DpopMode, DpopPolicy},
    dpop::proof::{self, ProofError, ProofRequest},
    error::ProofProblem,
    token::verify::RustRsa,
};
use serde_json::Value;

#[test]
fn the_host_engines_give_every_proof_vector_its_verdict() {
    let corpus: Value = serde_json::from_str(include_str!("vectors/proofs.json")).unwrap();
    let policy = DpopPolicy { mode: DpopMode::Allowed, max_age_secs: 300, nonce: None };
    let vectors = corpus["vectors"].as_array().unwrap();
    assert!(vectors.len() > 60, "the corpus is there");
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let request = ProofRequest {
            header: vector["proof"].as_str(),
            method: "GET",
            url: corpus["url"].as_str().unwrap(),
            access_token: corpus["token"].as_str().unwrap(),
        };
        let verdict = block_on(proof::check(&request, &policy, 0, corpus["issued_at"].as_i64().unwrap(), &RustRsa));
        if vector["valid"] == true {
            assert!(verdict.is_ok(), "{name}: {verdict:?}");
        } else {
            assert_eq!(verdict, Err(ProofError::Invalid(ProofProblem::BadSignature)), "{name}");
        }
    }
}
