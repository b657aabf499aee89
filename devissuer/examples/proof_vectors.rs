//! Writes the DPoP proof-signature corpus both engines are held to (tests/vectors/proofs.json):
//! proofs in ES256, EdDSA, RS256 and PS256 with valid, tampered, truncated, extended, high-S,
//! zero, DER-encoded and cross-algorithm signatures. The host engines check it in
//! tests/proof_vectors.rs, WebCrypto in workerd in tests/e2e.rs. Every other part of a proof is
//! valid for `url` and `token` at `issued_at`, so a proof's fate rests on its signature alone.
//! Regenerate with:
//!
//!     cargo run --release -p edge-auth-dev-issuer --example proof_vectors > tests/vectors/proofs.json

use edge_auth_dev_issuer::{b64, SigningKey};
use jwt_compact::{
    alg::{Ed25519, Es256},
    Algorithm, AlgorithmSignature,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const URL: &str = "https://vectors.edge-auth.test/api/private";
const TOKEN: &str = "vectors.access.token";
const ISSUED: i64 = 1_767_225_600;
/// The order of P-256's group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

enum Key {
    Es(p256::ecdsa::SigningKey),
    Ed(ed25519_compact::KeyPair),
    Rsa(Box<SigningKey>),
}

impl Key {
    fn jwk(&self) -> Value {
        match self {
            Key::Es(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                json!({ "kty": "EC", "crv": "P-256", "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap()) })
            }
            Key::Ed(k) => json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(k.pk.as_ref()) }),
            Key::Rsa(k) => {
                let jwk = k.public_jwk();
                json!({ "kty": "RSA", "n": jwk["n"], "e": jwk["e"] })
            }
        }
    }

    fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        match (self, alg) {
            (Key::Es(k), _) => Es256.sign(k, message).as_bytes().into_owned(),
            (Key::Ed(k), _) => Ed25519.sign(&k.sk, message).as_bytes().into_owned(),
            (Key::Rsa(k), "PS256") => k.sign_ps256(message),
            (Key::Rsa(k), _) => k.sign_rs256(message),
        }
    }
}

fn input(alg: &str, jwk: &Value, jti: &str) -> String {
    let header = json!({ "typ": "dpop+jwt", "alg": alg, "jwk": jwk });
    let ath = b64(&Sha256::digest(TOKEN.as_bytes()));
    let claims = json!({ "jti": jti, "htm": "GET", "htu": URL, "iat": ISSUED, "ath": ath });
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

/// `n - s` for a 32-byte big-endian `s`: the other valid S of an ECDSA signature.
fn negate_mod_order(s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = P256_ORDER[i] as i16 - s[i] as i16 - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + if d < 0 { 256 } else { 0 }) as u8;
    }
    out
}

/// ASN.1 DER of an ECDSA (r, s): what a careless client sends instead of JWS's raw r || s.
fn der(raw: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let v = &v[v.iter().take_while(|&&b| b == 0).count()..];
        let mut out = vec![0x02];
        let pad = v.first().is_some_and(|&b| b & 0x80 != 0);
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let (r, s) = (int(&raw[..32]), int(&raw[32..]));
    let mut out = vec![0x30, (r.len() + s.len()) as u8];
    out.extend(r);
    out.extend(s);
    out
}

fn main() {
    let keys: Vec<(String, &str, Key)> = vec![
        ("es256-a".into(), "ES256", Key::Es(p256::ecdsa::SigningKey::random(&mut rand::thread_rng()))),
        ("es256-b".into(), "ES256", Key::Es(p256::ecdsa::SigningKey::random(&mut rand::thread_rng()))),
        ("eddsa".into(), "EdDSA", Key::Ed(ed25519_compact::KeyPair::generate())),
        ("rs256-2048".into(), "RS256", Key::Rsa(Box::new(SigningKey::generate("rs256-2048", 2048)))),
        ("rs256-4096".into(), "RS256", Key::Rsa(Box::new(SigningKey::generate("rs256-4096", 4096)))),
        ("ps256-2048".into(), "PS256", Key::Rsa(Box::new(SigningKey::generate("ps256-2048", 2048)))),
        ("ps256-3072".into(), "PS256", Key::Rsa(Box::new(SigningKey::generate("ps256-3072", 3072)))),
    ];
    let mut vectors = Vec::new();
    let mut push = |name: String, input: &str, signature: &[u8], valid: bool| {
        vectors.push(json!({ "name": name, "proof": format!("{input}.{}", b64(signature)), "valid": valid }));
    };
    for (i, (name, alg, key)) in keys.iter().enumerate() {
        let jwk = key.jwk();
        let valid_input = input(alg, &jwk, &format!("{name}-valid"));
        let signature = key.sign(alg, valid_input.as_bytes());
        push(format!("{name}: valid"), &valid_input, &signature, true);
        let mut flipped = signature.clone();
        *flipped.last_mut().unwrap() ^= 1;
        push(format!("{name}: last byte flipped"), &valid_input, &flipped, false);
        let mut flipped = signature.clone();
        flipped[0] ^= 0x80;
        push(format!("{name}: first bit flipped"), &valid_input, &flipped, false);
        let other = key.sign(alg, input(alg, &jwk, "another").as_bytes());
        push(format!("{name}: signature of another proof"), &valid_input, &other, false);
        push(format!("{name}: one byte short"), &valid_input, &signature[..signature.len() - 1], false);
        push(format!("{name}: one zero byte long"), &valid_input, &[signature.clone(), vec![0]].concat(), false);
        push(format!("{name}: zero-prefixed"), &valid_input, &[vec![0], signature.clone()].concat(), false);
        push(format!("{name}: empty"), &valid_input, &[], false);
        push(format!("{name}: all zero"), &valid_input, &vec![0; signature.len()], false);
        // Signed by a key of the same kind, but not the one in the header.
        if let Some((other_name, _, stranger)) = keys.iter().skip(i + 1).find(|(_, a, _)| a == alg) {
            let s = stranger.sign(alg, valid_input.as_bytes());
            push(format!("{name}: signed by {other_name}"), &valid_input, &s, false);
        }
        match key {
            Key::Es(_) => {
                let high_s = [&signature[..32], &negate_mod_order(&signature[32..])[..]].concat();
                // ECDSA's other S verifies mathematically; both engines accept it (neither
                // enforces low S), and a replay of it is still the same jti.
                push(format!("{name}: high S"), &valid_input, &high_s, true);
                push(format!("{name}: DER-encoded"), &valid_input, &der(&signature), false);
                push(format!("{name}: r = 0"), &valid_input, &[vec![0; 32], signature[32..].to_vec()].concat(), false);
                let s_n = [&signature[..32], &P256_ORDER[..]].concat();
                push(format!("{name}: s = n"), &valid_input, &s_n, false);
            }
            Key::Ed(_) => {
                // S + L: the same point equation, but S not reduced; RFC 8032 §5.1.7 refuses it.
                let mut s = signature[32..].to_vec();
                let l: [u8; 32] = [
                    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ];
                let mut carry = 0u16;
                for (b, l) in s.iter_mut().zip(l) {
                    let sum = *b as u16 + l as u16 + carry;
                    *b = sum as u8;
                    carry = sum >> 8;
                }
                push(format!("{name}: S not reduced"), &valid_input, &[&signature[..32], &s[..]].concat(), false);
            }
            Key::Rsa(_) => {
                let cross = if *alg == "PS256" { "RS256" } else { "PS256" };
                let s = key.sign(cross, valid_input.as_bytes());
                push(format!("{name}: a {cross} signature"), &valid_input, &s, false);
                let n = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::decode_vec(jwk["n"].as_str().unwrap())
                    .unwrap();
                push(format!("{name}: the modulus itself"), &valid_input, &n, false);
            }
        }
    }
    let corpus = json!({
        "about": "DPoP proof signatures both engines must judge alike: every proof is valid for url, method GET and token at issued_at except, where valid is false, its signature. Generated by devissuer/examples/proof_vectors.rs.",
        "url": URL,
        "token": TOKEN,
        "issued_at": ISSUED,
        "vectors": vectors,
    });
    println!("{}", serde_json::to_string_pretty(&corpus).unwrap());
}
