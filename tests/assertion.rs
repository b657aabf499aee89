//! The identity assertion as a specification: what `ASSERTION_*` accepts, which claims an
//! assertion carries for each kind of caller, how long it lives, when one may be sent again (the
//! clock passed in), and that the host signer's output verifies with the published keys.

mod common;

use std::{collections::BTreeSet, rc::Rc};

use common::block_on;
use edge_auth::{
    config::Config,
    error::{ConfigError, ConfigProblem},
    gateway::assertion::{
        reusable_until_ms, AssertionCache, AssertionConfig, Caller, Issued, SignError, JWKS_PATH, TYPE,
    },
    token::claims::{Binding, Principal},
    token::verify::RustRsa,
};
use edge_auth_dev_issuer::assertion::{assertion_key, public_half, AssertionAlg};
use serde_json::{json, Value};

const NOW: i64 = 1_767_225_600;
const HTU: &str = "https://origin.example.com/v1/orders/7";

fn vars(extra: &[(&str, Value)]) -> Result<Config, ConfigError> {
    let mut map: Vec<(String, Value)> = vec![
        ("AUTH0_DOMAIN".into(), json!("tenant.example.auth0.com")),
        ("AUTH0_AUDIENCE".into(), json!("https://api.example.com")),
        ("ORIGIN_URL".into(), json!("https://origin.example.com/v1")),
        ("ROUTES".into(), json!("[]")),
    ];
    for (name, value) in extra {
        map.retain(|(n, _)| n != name);
        map.push((name.to_string(), value.clone()));
    }
    Config::from_vars(|name| map.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
}

fn keys_text(keys: &[Value]) -> Value {
    json!(Value::Array(keys.to_vec()).to_string())
}

fn configured(keys: &[Value], extra: &[(&str, Value)]) -> AssertionConfig {
    let mut all = vec![("ASSERTION_KEYS", keys_text(keys)), ("ASSERTION_ISSUER", json!("https://edge.example.com"))];
    all.extend_from_slice(extra);
    vars(&all).expect("a valid configuration").gateway.unwrap().assertion.expect("assertions on")
}

fn failing(extra: &[(&str, Value)]) -> ConfigError {
    vars(extra).expect_err("the configuration should be refused")
}

fn es256() -> Value {
    assertion_key(AssertionAlg::Es256, "edge-1")
}

fn payload(claims: &str) -> Value {
    serde_json::from_str(claims).expect("the claims are JSON")
}

fn principal() -> Principal {
    Principal {
        subject: Some("auth0|alice".into()),
        scopes: BTreeSet::from(["read:orders".to_owned()]),
        binding: Binding::None,
        expires: NOW + 3600,
        claims: vec![
            (Rc::from("scope"), json!("read:orders openid")),
            (Rc::from("permissions"), json!(["admin"])),
            (Rc::from("azp"), json!("spa-client")),
            (Rc::from("email"), json!("alice@example.com")),
            (Rc::from("https://example.com/org"), json!({"id": "org_1"})),
        ],
        jti: Some("t-1".into()),
        client: Some("spa-client".into()),
        audience: None,
    }
}

// ---- settings ----

#[test]
fn without_assertion_keys_there_is_no_assertion_and_its_companions_alone_are_errors() {
    assert_eq!(vars(&[]).unwrap().gateway.unwrap().assertion, None);
    for name in ["ASSERTION_ISSUER", "ASSERTION_AUDIENCE", "ASSERTION_TTL_SECONDS"] {
        assert_eq!(failing(&[(name, json!("60"))]).variable, name);
    }
    // Only a gateway forwards: the keys without ORIGIN_URL would do nothing.
    let demo = Config::from_vars(|name| match name {
        "AUTH0_DOMAIN" => Some(json!("tenant.example.auth0.com")),
        "AUTH0_AUDIENCE" => Some(json!("a")),
        "ASSERTION_KEYS" => Some(keys_text(&[es256()])),
        _ => None,
    });
    assert_eq!(demo.unwrap_err().variable, "ASSERTION_KEYS");
}

#[test]
fn defaults_are_the_origin_as_audience_and_sixty_seconds() {
    let c = configured(&[es256()], &[]);
    assert_eq!(c.issuer, "https://edge.example.com");
    assert_eq!(c.audience, "https://origin.example.com", "the origin of ORIGIN_URL, without its base path");
    assert_eq!(c.ttl_secs, 60);
    let c = configured(
        &[es256()],
        &[("ASSERTION_AUDIENCE", json!("urn:orders-api")), ("ASSERTION_TTL_SECONDS", json!(300))],
    );
    assert_eq!((c.audience.as_str(), c.ttl_secs), ("urn:orders-api", 300));
    for bad in ["0", "301", "ten", "-1"] {
        let e = failing(&[
            ("ASSERTION_KEYS", keys_text(&[es256()])),
            ("ASSERTION_ISSUER", json!("edge")),
            ("ASSERTION_TTL_SECONDS", json!(bad)),
        ]);
        assert_eq!(e.variable, "ASSERTION_TTL_SECONDS", "{bad}");
    }
    let e = failing(&[("ASSERTION_KEYS", keys_text(&[es256()]))]);
    assert_eq!((e.variable, e.problem), ("ASSERTION_ISSUER", ConfigProblem::Missing));
    let e = failing(&[("ASSERTION_KEYS", keys_text(&[es256()])), ("ASSERTION_ISSUER", json!("a\nb"))]);
    assert_eq!(e.variable, "ASSERTION_ISSUER");
}

#[test]
fn keys_come_as_json_text_or_as_an_array_of_tables() {
    let key = es256();
    let from_text = configured(std::slice::from_ref(&key), &[]);
    let from_toml = vars(&[("ASSERTION_KEYS", json!([key])), ("ASSERTION_ISSUER", json!("https://edge.example.com"))])
        .unwrap()
        .gateway
        .unwrap()
        .assertion
        .unwrap();
    assert_eq!(from_text, from_toml);
}

#[test]
fn a_malformed_key_set_is_an_error_naming_assertion_keys_and_never_its_values() {
    let ec = es256();
    let ed = assertion_key(AssertionAlg::EdDsa, "edge-2");
    let with = |key: &Value, edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut key = key.clone();
        edit(key.as_object_mut().unwrap());
        key
    };
    let rsa = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB", "kid": "r"});
    let cases: Vec<(&str, Value)> = vec![
        ("not JSON", json!("[{")),
        ("not an array", json!(ec.to_string())),
        ("empty", keys_text(&[])),
        (
            "eleven keys",
            keys_text(&(0..11).map(|i| assertion_key(AssertionAlg::EdDsa, &format!("k{i}"))).collect::<Vec<_>>()),
        ),
        ("an entry that is no object", json!("[1]")),
        ("no kid", keys_text(&[with(&ec, &|k| drop(k.remove("kid")))])),
        ("an empty kid", keys_text(&[with(&ec, &|k| drop(k.insert("kid".into(), json!(""))))])),
        ("a kid with a space", keys_text(&[with(&ec, &|k| drop(k.insert("kid".into(), json!("a b"))))])),
        ("two keys, one kid", keys_text(&[ec.clone(), with(&ed, &|k| drop(k.insert("kid".into(), json!("edge-1"))))])),
        ("RSA", keys_text(&[rsa])),
        ("another curve", keys_text(&[with(&ec, &|k| drop(k.insert("crv".into(), json!("P-384"))))])),
        ("alg not the key's", keys_text(&[with(&ec, &|k| drop(k.insert("alg".into(), json!("EdDSA"))))])),
        ("use enc", keys_text(&[with(&ec, &|k| drop(k.insert("use".into(), json!("enc"))))])),
        ("x too short", keys_text(&[with(&ec, &|k| drop(k.insert("x".into(), json!("AAAA"))))])),
        (
            "x padded",
            keys_text(&[with(&ec, &|k| drop(k.insert("x".into(), json!(format!("{}=", k["x"].as_str().unwrap())))))]),
        ),
        ("no y on EC", keys_text(&[with(&ec, &|k| drop(k.remove("y")))])),
        ("a y on Ed25519", keys_text(&[with(&ed, &|k| drop(k.insert("y".into(), ec["y"].clone())))])),
        ("d not a string", keys_text(&[with(&ec, &|k| drop(k.insert("d".into(), json!(7))))])),
        ("the first without d", keys_text(&[public_half(&ec), ed.clone()])),
    ];
    for (what, value) in cases {
        let error = failing(&[("ASSERTION_KEYS", value), ("ASSERTION_ISSUER", json!("edge"))]);
        assert_eq!(error.variable, "ASSERTION_KEYS", "{what}");
        let shown = format!("{error} {error:?}");
        for secret in [ec["d"].as_str().unwrap(), ed["d"].as_str().unwrap()] {
            assert!(!shown.contains(secret), "{what}: the private key leaked into {shown}");
        }
    }
}

#[test]
fn a_later_key_may_be_published_without_its_private_half_and_debug_never_shows_one() {
    let (first, later) = (es256(), public_half(&assertion_key(AssertionAlg::EdDsa, "edge-0")));
    let c = configured(&[first.clone(), later], &[]);
    assert_eq!(c.keys.len(), 2);
    assert_eq!(&*c.signing_key().kid, "edge-1");
    let shown = format!("{c:?}");
    assert!(!shown.contains(first["d"].as_str().unwrap()), "{shown}");
}

#[test]
fn claim_headers_may_not_name_the_assertion_header() {
    let e = failing(&[("CLAIM_HEADERS", json!(r#"{"X-Auth-Assertion": "email"}"#))]);
    assert_eq!(e.variable, "CLAIM_HEADERS");
}

#[test]
fn the_jwks_document_holds_every_public_half_in_order_and_no_private_one() {
    let (ec, ed) = (es256(), assertion_key(AssertionAlg::EdDsa, "edge-0"));
    let c = configured(&[ec.clone(), ed.clone()], &[]);
    let document: Value = serde_json::from_str(c.jwks()).unwrap();
    assert_eq!(document, json!({ "keys": [public_half(&ec), public_half(&ed)] }));
    assert!(!c.jwks().contains(ec["d"].as_str().unwrap()));
    assert_eq!(JWKS_PATH, "/.well-known/edge-auth/jwks.json");
}

// ---- the claim set ----

#[test]
fn without_a_token_the_assertion_only_says_the_request_came_through_the_edge() {
    let c = configured(&[es256()], &[]);
    let claims = c.claims(None, "GET", HTU, NOW);
    assert_eq!(
        payload(&claims.payload),
        json!({
            "iss": "https://edge.example.com", "aud": "https://origin.example.com",
            "iat": NOW, "exp": NOW + 60, "htm": "GET", "htu": HTU,
        })
    );
    assert_eq!((claims.issued_at, claims.expires), (NOW, NOW + 60));
}

#[test]
fn a_verified_caller_is_named_with_the_tokens_claims_as_signed() {
    let c = vars(&[
        ("ASSERTION_KEYS", keys_text(&[es256()])),
        ("ASSERTION_ISSUER", json!("https://edge.example.com")),
        // A claim the assertion has a name of its own for is not carried twice; `email` twice is once.
        (
            "CLAIM_HEADERS",
            json!(r#"{"X-Auth-Email": "email", "X-Auth-Mail": "email", "X-Auth-Org": "https://example.com/org", "X-Auth-Sub": "sub", "X-Auth-Missing": "nickname"}"#),
        ),
    ])
    .unwrap()
    .gateway
    .unwrap()
    .assertion
    .unwrap();
    let who = principal();
    let caller = Caller { principal: &who, token_issuer: "https://tenant.example.auth0.com/" };
    let claims = payload(&c.claims(Some(caller), "DELETE", HTU, NOW).payload);
    assert_eq!(
        claims,
        json!({
            "iss": "https://edge.example.com", "aud": "https://origin.example.com",
            "iat": NOW, "exp": NOW + 60, "htm": "DELETE", "htu": HTU,
            "sub": "auth0|alice", "token_iss": "https://tenant.example.auth0.com/",
            "scope": "read:orders openid", "permissions": ["admin"], "azp": "spa-client",
            "email": "alice@example.com", "https://example.com/org": {"id": "org_1"},
        })
    );
}

#[test]
fn a_dpop_bound_callers_key_is_named_in_cnf() {
    let c = configured(&[es256()], &[]);
    let who = Principal { binding: Binding::Jkt("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()), ..principal() };
    let caller = Caller { principal: &who, token_issuer: "https://tenant.example.auth0.com/" };
    let claims = payload(&c.claims(Some(caller), "GET", HTU, NOW).payload);
    assert_eq!(claims["cnf"], json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}));
}

#[test]
fn the_assertion_never_outlives_the_token() {
    let c = configured(&[es256()], &[("ASSERTION_TTL_SECONDS", json!(300))]);
    for (token_exp, expected) in [(NOW + 3600, NOW + 300), (NOW + 20, NOW + 20), (NOW - 5, NOW - 5)] {
        let who = Principal { expires: token_exp, ..principal() };
        let caller = Caller { principal: &who, token_issuer: "https://tenant.example.auth0.com/" };
        let claims = c.claims(Some(caller), "GET", HTU, NOW);
        assert_eq!(claims.expires, expected, "token exp {token_exp}");
        assert_eq!(payload(&claims.payload)["exp"], json!(expected));
    }
}

// ---- the reuse rule ----

#[test]
fn an_assertion_is_reused_while_more_than_half_its_life_is_left() {
    let s = |secs: i64| u64::try_from(secs).unwrap() * 1000;
    for (issued, expires, until) in [
        (NOW, NOW + 60, s(NOW) + 30_000),
        (NOW, NOW + 300, s(NOW) + 150_000),
        (NOW, NOW + 1, s(NOW) + 500),
        // Bounded by a token that expires soon: half of what is left.
        (NOW, NOW + 7, s(NOW) + 3_500),
        // Expired as it is made, or before: never reused.
        (NOW, NOW, s(NOW)),
        (NOW, NOW - 5, s(NOW)),
    ] {
        assert_eq!(reusable_until_ms(issued, expires), until, "{issued} {expires}");
    }
}

#[test]
fn the_cache_serves_the_same_token_method_and_url_until_the_half_life() {
    let mut cache = AssertionCache::default();
    let now = u64::try_from(NOW).unwrap() * 1000;
    let issued = Issued { jws: "a.b.c".into(), reusable_until_ms: now + 30_000 };
    let key = AssertionCache::key(Some("token-1"), "GET", HTU);
    cache.insert(key.clone(), issued.clone(), now);
    assert_eq!(cache.get(&key, now), Some(issued.clone()));
    assert_eq!(cache.get(&key, now + 29_999), Some(issued));
    assert_eq!(cache.get(&key, now + 30_000), None, "half its life gone");
    for other in [
        AssertionCache::key(Some("token-2"), "GET", HTU),
        AssertionCache::key(Some("token-1"), "POST", HTU),
        AssertionCache::key(Some("token-1"), "GET", "https://origin.example.com/v1/orders/8"),
        AssertionCache::key(None, "GET", HTU),
    ] {
        assert_eq!(cache.get(&other, now), None, "{other}");
    }
    // One that may not be reused at all is not kept.
    let mut cache = AssertionCache::default();
    cache.insert(key.clone(), Issued { jws: "x".into(), reusable_until_ms: now }, now);
    assert!(cache.is_empty());
}

#[test]
fn a_full_cache_drops_what_may_not_be_reused_first_then_everything() {
    let now = 1_000_000;
    let mut cache = AssertionCache::with_capacity(3);
    let issued = |until: u64| Issued { jws: "j".into(), reusable_until_ms: until };
    cache.insert("a".into(), issued(now + 10), now);
    cache.insert("b".into(), issued(now + 1_000), now);
    cache.insert("c".into(), issued(now + 1_000), now);
    cache.insert("d".into(), issued(now + 1_000), now + 20);
    assert_eq!(cache.len(), 3, "a (past its reuse) made room");
    assert!(cache.get("b", now + 20).is_some());
    cache.insert("e".into(), issued(now + 1_000), now + 20);
    assert_eq!(cache.len(), 1, "nothing past its reuse: emptied");
    assert!(cache.get("e", now + 20).is_some());
    // The same key again replaces, never evicts.
    cache.insert("e".into(), issued(now + 2_000), now + 20);
    assert_eq!(cache.len(), 1);
}

// ---- signing ----

fn segments(jws: &str) -> (Value, Value, Vec<u8>, String) {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "{jws}");
    let json = |s: &str| serde_json::from_slice(&Base64UrlUnpadded::decode_vec(s).unwrap()).unwrap();
    (
        json(parts[0]),
        json(parts[1]),
        Base64UrlUnpadded::decode_vec(parts[2]).unwrap(),
        format!("{}.{}", parts[0], parts[1]),
    )
}

fn decode(text: &str) -> Vec<u8> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    Base64UrlUnpadded::decode_vec(text).unwrap()
}

#[test]
fn the_host_signer_signs_es256_and_eddsa_that_verify_with_the_published_key() {
    for alg in [AssertionAlg::Es256, AssertionAlg::EdDsa] {
        let key = assertion_key(alg, "edge-9");
        let c = configured(std::slice::from_ref(&key), &[]);
        let claims = c.claims(None, "GET", HTU, NOW);
        let jws = block_on(c.sign(&claims, &RustRsa)).expect("signed");
        let (header, body, signature, input) = segments(&jws);
        assert_eq!(header["typ"], TYPE);
        assert_eq!(header["kid"], "edge-9");
        assert_eq!(body, payload(&claims.payload));
        assert_eq!(signature.len(), 64, "r ‖ s, or an Ed25519 signature");
        let verified = match alg {
            AssertionAlg::Es256 => {
                use p256::ecdsa::{signature::Verifier, Signature, VerifyingKey};
                let mut point = vec![4u8];
                point.extend(decode(key["x"].as_str().unwrap()));
                point.extend(decode(key["y"].as_str().unwrap()));
                let public = VerifyingKey::from_sec1_bytes(&point).unwrap();
                public.verify(input.as_bytes(), &Signature::from_slice(&signature).unwrap()).is_ok()
            }
            AssertionAlg::EdDsa => {
                let public = ed25519_compact::PublicKey::from_slice(&decode(key["x"].as_str().unwrap())).unwrap();
                public.verify(input.as_bytes(), &ed25519_compact::Signature::from_slice(&signature).unwrap()).is_ok()
            }
        };
        assert!(verified, "{alg:?}");
        assert_eq!(header["alg"], if alg == AssertionAlg::Es256 { "ES256" } else { "EdDSA" });
    }
}

#[test]
fn a_private_half_that_is_not_the_published_ones_key_cannot_sign() {
    for alg in [AssertionAlg::Es256, AssertionAlg::EdDsa] {
        let mut key = assertion_key(alg, "edge-1");
        key["x"] = assertion_key(alg, "other")["x"].clone();
        let c = configured(&[key], &[]);
        let claims = c.claims(None, "GET", HTU, NOW);
        assert_eq!(block_on(c.sign(&claims, &RustRsa)), Err(SignError::UnusableKey), "{alg:?}");
        assert_eq!(SignError::UnusableKey.config_error().variable, "ASSERTION_KEYS");
    }
}
