//! The host engines (jwt-compact's ES256, EdDSA, RS256, PS256) on the DPoP proof-signature corpus
//! (tests/vectors/proofs.json). WebCrypto is held to the same corpus in workerd (tests/e2e.rs):
//! one corpus, so the two engines give every proof the same verdict.

mod common;

use base64ct::Encoding as _;
use common::{
    block_on,
    dpop::{Proof, ProofKey},
};
use edge_auth::{
    dpop::policy::{DpopMode, DpopPolicy, ReplayScope},
    dpop::proof::{self, ProofError, ProofRequest},
    error::ProofProblem,
    token::verify::RustRsa,
};
use edge_auth_dev_issuer::{b64, SigningKey};
use serde_json::{json, Value};

#[test]
fn the_host_engines_give_every_proof_vector_its_verdict() {
    let corpus: Value = serde_json::from_str(include_str!("vectors/proofs.json")).unwrap();
    let policy = DpopPolicy { mode: DpopMode::Allowed, max_age_secs: 300, nonce: None, replay: ReplayScope::Isolate };
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

/// A 2048-bit RSA key with the public exponent 3: rare, but valid, and both engines take it.
const EXPONENT_3_KEY: &str = "
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC7g3NFPjTUqgYS
AwOj1zJ/Fsa667uuBOC8DCNIPSl9yVYl59Yuhxs19dF1PwffVZUCbNWiRYNFWg47
+2qHf+cW4ybsidun28pJHJVMfQphYaY4OqiFnbeyykrrRnOnp4+zdiQqqp3Cnkfs
Ax0A4GsWo8kuomzJfv2BVhp+BbGiV2Dq2dOso2NvogzgvjFbGO3BWiTXCcCbcJan
fJnJkshFJxW1iIITUoOqwvd82A8CQp4rEgu41SNbb3UU/DYvbd2p0XpDD3JU2T7w
p0zg8hHttgEbn9qAIpvmyT2aIN4nFU4lsZtyeSEH8Q7Vr9gRoBhzYUw3+EoBYKlL
TwKJpXW/AgEDAoIBAH0CTNjUIzhxWWFXV8KPdv9khHydJ8lYldKywjAoxlPbjsPv
5B8EvM6j4PjUr+o5DgGd48GDrNjmtCf88a+qmg9CGfMGkm/n3DC9uN2osZZBGXrR
xa5pJSHcMfIu98UaX8z5bXHHE9cUL/KsvgCVnLnChh8W8zD/U6uOvFQDy8GOb1zT
BT6f89Qzz7GVH3+wgBnhuc1HZXPEBG8YxYD1/XKGp8LxmVOoCxpp1S7sxPE3qWPJ
osd6Een30PzUKj8IKXEsDD0mxnxy4WcLFe40gxcMdquKVzirxQ88CoKOrZrN2owv
dhv4IP6tanHcJ9awF5Ybg0vFRZXIz+iiR2Fk4esCgYEA+WPgj898FxTae44AT79W
WLPzwRTmjQqgx9UqBekzlX6+Wiaigg9sfa8rTSeYMHKMoDGW9Yyzu2pfSKWR2Tp+
UxSz2FyDWhNMMS0XX6YUAooSuaVXGkbXdUrBVgXuvPat99o/ZOKDdKvnjzPMIjXK
PMsOKy/3cs1Y3CKB7q/6zRECgYEAwHu8u/83Xpx52cheMlw51OaTzQ44G2MpyCut
a57uNpqev+p7mgZp9VP46o7ctyXif+PMogDqTRIccvQsHZZjTGtbj4rR7obgu6j/
TFWPSsEQlXT5PWRJfwUt19BcHMgyjnkrBWYBet4FX/cZehnNuEcp3BZY7tNalUvZ
qMeTVc8CgYEApkKVtTT9ZLiRp7QANSo5kHf31g3vCLHAhTjGrpt3uP8pkW8XAV+d
qR9yM2+6yvcIasu5+Qh30kbqMG5hO3xUN2MikD2s5reIIMi6P8QNVwa3Jm46EYSP
o4crjq6fKKRz+pF/mJcCTcfvtM0ywXkxfdy0HMqk9zOQksGr9HVR3gsCgYEAgFJ9
0qok6b2mkTA+zD1740RiiLQlZ5dxMB0eR79Jebxp1Ub9EVmb+OKl8bSTJMPsVUKI
bACcM2FoTKLIE7mXiEeSX7HhSa9AfRtU3Y5fhytgY6NQ05gw/1jJOoroEzAhtFDH
WO6rpz6uP/oQ/BEz0C9xPWQ7SeI8Y4fmcIUM498CgYAHOp9oxCmpwfrcHvqi5dgm
dGedcuWdpA2XviUO8bDC4bejRjUPHTDzi9BmdiCBzjJajqOVxUGClH+M7M3CXwfk
VFuE0lcnBAbJ2vECvgOCYHvlQhi/dT/4ShtlsW2W65lsxdUImy2eAFGD29ESPU2R
dEtmeFWLJYE3h22trKEq/w==
-----END PRIVATE KEY-----
";

fn check_at(proof: &str, corpus: &Value) -> Result<proof::CheckedProof, ProofError> {
    let policy = DpopPolicy { mode: DpopMode::Allowed, max_age_secs: 300, nonce: None, replay: ReplayScope::Isolate };
    let request = ProofRequest {
        header: Some(proof),
        method: "GET",
        url: corpus["url"].as_str().unwrap(),
        access_token: corpus["token"].as_str().unwrap(),
    };
    block_on(proof::check(&request, &policy, 0, corpus["issued_at"].as_i64().unwrap(), &RustRsa))
}

#[test]
fn rsa_proof_keys_are_held_to_the_key_stores_rule() {
    let corpus: Value = serde_json::from_str(include_str!("vectors/proofs.json")).unwrap();
    let (url, token, now) =
        (corpus["url"].as_str().unwrap(), corpus["token"].as_str().unwrap(), corpus["issued_at"].as_i64().unwrap());
    let exponent_3 = ProofKey::Rs256(SigningKey::from_pem("e3", EXPONENT_3_KEY.trim()).unwrap());
    for key in [ProofKey::Rs256(common::key(1).clone()), ProofKey::Ps256(common::key(2).clone()), exponent_3] {
        let proof = Proof::new(&key, "GET", url, token, now, "usable").sign(&key);
        assert!(check_at(&proof, &corpus).is_ok(), "e = {}", key.public_jwk()["e"]);
    }
    // Refused before any engine sees them (step 7): 1 makes every message its own signature,
    // an even exponent is no RSA key, and both engines refuse more than 33 bits.
    let key = ProofKey::Rs256(common::key(1).clone());
    let exponents: [&[u8]; 6] = [&[1], &[2], &[1, 0, 0], &[0], &[], &[3, 0, 0, 0, 1]];
    for e in exponents {
        let mut proof = Proof::new(&key, "GET", url, token, now, "unusable");
        proof.header["jwk"]["e"] = json!(b64(e));
        assert_eq!(check_at(&proof.sign(&key), &corpus), Err(ProofError::Invalid(ProofProblem::UnusableKey)), "{e:?}");
    }
    // A modulus of 2047 bits in 256 bytes is under 2048 bits, as for a token's key.
    let mut proof = Proof::new(&key, "GET", url, token, now, "short");
    let mut n = base64ct::Base64UrlUnpadded::decode_vec(proof.header["jwk"]["n"].as_str().unwrap()).unwrap();
    n[0] = 0x7f;
    proof.header["jwk"]["n"] = json!(b64(&n));
    assert_eq!(check_at(&proof.sign(&key), &corpus), Err(ProofError::Invalid(ProofProblem::UnusableKey)));
}
