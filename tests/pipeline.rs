//! The request pipeline as a specification: every route, every rejection rule, every error
//! format, driven through `pipeline::handle` with real RS256 tokens, fake tiers and a fixed clock.

mod common;

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
};

use common::{
    dpop::{Proof, ProofKey},
    *,
};
use edge_auth::{
    config::Config,
    dpop::proof::{self, access_token_hash, ProofVerifier},
    dpop::replay::ReplayCache,
    gateway::assertion::{AssertionCache, AssertionKey, AssertionSigner, SignError},
    gateway::rules::Rules,
    http::HttpResponse,
    keys::jwks::VerificationKey,
    keys::store::FetchError,
    operate::decision::CacheUse,
    operate::denylist::{DeniedEntry, DenyList, FleetCopy},
    pipeline::{self, Body, Broken, Incoming, Keys, Outcome, Setup},
    token::cache::TokenCache,
    token::extract::Scheme,
    token::issuers::IssuerConfig,
    token::issuers::Issuers,
    token::verify::{RustRsa, SignatureVerifier},
};
use edge_auth_dev_issuer::{
    assertion::{assertion_key, public_half, AssertionAlg},
    b64, jwks, sign, Mint, SigningKey,
};
use serde_json::{json, Value};

struct World {
    config: Result<(Config, Rules), edge_auth::error::ConfigError>,
    /// `ORIGIN_URL` was given, whether or not the configuration could be read.
    gateway: bool,
    issuers: Issuers,
    io: FakeIo,
    tokens: RefCell<TokenCache>,
    proofs: RefCell<ReplayCache>,
    /// Bound only by the deny-list tests.
    denylist: Option<RefCell<DenyList>>,
    /// The isolate's copy of the fleet's revocations (read only by a rule that asks for them).
    fleet: RefCell<FleetCopy>,
    assertions: RefCell<AssertionCache>,
    verifier: CountingRsa,
    /// The clock, in milliseconds; tests move it by hand.
    now: Cell<u64>,
}

/// The pure-Rust engine, counting the signatures it is asked to check.
#[derive(Default)]
struct CountingRsa {
    checks: Cell<usize>,
    /// Identity assertions signed.
    signatures: Cell<usize>,
}

impl SignatureVerifier for CountingRsa {
    async fn verify_rs256(&self, key: &VerificationKey, signing_input: &[u8], signature: &[u8]) -> bool {
        self.checks.set(self.checks.get() + 1);
        RustRsa.verify_rs256(key, signing_input, signature).await
    }
}

impl ProofVerifier for CountingRsa {
    async fn verify_proof(&self, key: &proof::ProofKey, signing_input: &[u8], signature: &[u8]) -> bool {
        RustRsa.verify_proof(key, signing_input, signature).await
    }
}

/// Assertions are signed by the pure-Rust engines, counted.
impl AssertionSigner for CountingRsa {
    async fn sign_assertion(&self, key: &AssertionKey, input: &[u8]) -> Result<Vec<u8>, SignError> {
        self.signatures.set(self.signatures.get() + 1);
        RustRsa.sign_assertion(key, input).await
    }
}

fn world_with(vars: &[(&str, &str)], published: &[&SigningKey]) -> World {
    let mut map: HashMap<&str, &str> =
        [("AUTH0_DOMAIN", "tenant.example.auth0.com"), ("AUTH0_AUDIENCE", AUDIENCE)].into_iter().collect();
    map.extend(vars.iter().copied());
    let get = |name: &str| map.get(name).map(|v| Value::String(v.to_string()));
    let config = Config::from_vars(get).and_then(|c| pipeline::compile_rules(&c).map(|rules| (c, rules)));
    let issuers = match &config {
        Ok((config, _)) => config.trusted_issuers(),
        Err(_) => {
            let only =
                IssuerConfig { issuer: ISSUER.into(), jwks_url: JWKS_URL.into(), audiences: vec![AUDIENCE.into()] };
            Issuers::from_list(&[only], Default::default())
        }
    };
    World {
        config,
        gateway: edge_auth::gateway::forward::gateway_requested(get),
        issuers,
        io: FakeIo::serving(&jwks(published)),
        tokens: RefCell::default(),
        proofs: RefCell::new(ReplayCache::with_limits([1, 2], PROOFS_PER_KEY, 8 * PROOFS_PER_KEY)),
        denylist: None,
        fleet: RefCell::default(),
        assertions: RefCell::default(),
        verifier: CountingRsa::default(),
        now: Cell::new(NOW as u64 * 1000),
    }
}

fn world() -> World {
    world_with(&[], &[key(1)])
}

impl World {
    fn call(&self, method: &str, path: &str, authorization: Option<&str>, origin: Option<&str>) -> Outcome {
        self.send(&Incoming { method, path, authorization, origin, ..Incoming::default() })
    }

    fn send(&self, request: &Incoming<'_>) -> Outcome {
        let keys = Keys {
            issuers: &self.issuers,
            io: &self.io,
            verifier: &self.verifier,
            tokens: &self.tokens,
            proofs: &self.proofs,
            denylist: self.denylist.as_ref(),
            fleet: Some(&self.fleet),
            assertions: &self.assertions,
        };
        let setup = match &self.config {
            Ok((config, rules)) => Ok(Setup { config, rules, keys }),
            Err(error) => Err(Broken { error, gateway: self.gateway }),
        };
        block_on(pipeline::handle(request, setup, self.now.get()))
    }

    fn get(&self, path: &str, token: &str) -> HttpResponse {
        self.call("GET", path, Some(&format!("Bearer {token}")), None).response
    }
}

fn mint() -> Mint {
    Mint { now: NOW, ..Mint::new(ISSUER, AUDIENCE) }
}

fn valid_token() -> String {
    mint().sign(key(1))
}

fn token_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = mint().claims();
    edit(&mut claims);
    sign(&json!({ "alg": "RS256", "typ": "JWT", "kid": "key-1" }), &claims, key(1))
}

fn body(response: &HttpResponse) -> Value {
    serde_json::from_str(response.body.as_deref().unwrap_or("null")).unwrap()
}

/// Asserts an RFC 6750 error: status, JSON code, `Cache-Control: no-store`, and the challenge.
fn assert_error(response: &HttpResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(body(response)["error"], json!(code), "{response:?}");
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("content-type"), Some("application/json"));
}

fn assert_invalid_token(response: &HttpResponse, description: &str) {
    assert_error(response, 401, "invalid_token");
    assert_eq!(body(response)["error_description"], json!(description));
    let challenge = response.header("www-authenticate").unwrap();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"{AUDIENCE}\", error=\"invalid_token\", error_description=\"{description}\"")
    );
}

// ---- routes ----

#[test]
fn public_route_needs_no_token() {
    let r = world().call("GET", "/api/public", None, None).response;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), json!({ "message": pipeline::PUBLIC_MESSAGE }));
    assert_eq!(
        pipeline::PUBLIC_MESSAGE,
        "Hello from a public endpoint! You don't need to be authenticated to see this."
    );
}

#[test]
fn private_route_accepts_any_valid_token() {
    let r = world().get("/api/private", &valid_token());
    assert_eq!(r.status, 200);
    assert_eq!(
        body(&r),
        json!({ "message": "Hello from a private endpoint! You need to be authenticated to see this." })
    );
}

#[test]
fn scoped_route_accepts_read_messages_from_scope_or_permissions() {
    let w = world();
    let scoped = |m: Mint| w.get("/api/private-scoped", &m.sign(key(1)));
    let ok = scoped(Mint { scope: Some("openid read:messages profile".into()), ..mint() });
    assert_eq!(ok.status, 200);
    assert_eq!(
        body(&ok),
        json!({ "message": "Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this." })
    );
    assert_eq!(scoped(Mint { permissions: Some(vec!["read:messages".into()]), ..mint() }).status, 200);
}

#[test]
fn scoped_route_without_the_scope_is_403_insufficient_scope() {
    let w = world();
    for m in [
        mint(),
        Mint { scope: Some("read:message write:messages".into()), ..mint() },
        Mint { scope: Some("read:messagesX".into()), ..mint() },
        Mint { permissions: Some(vec!["write:messages".into()]), ..mint() },
    ] {
        let r = w.get("/api/private-scoped", &m.sign(key(1)));
        assert_error(&r, 403, "insufficient_scope");
        assert_eq!(
            r.header("www-authenticate").unwrap(),
            format!("Bearer realm=\"{AUDIENCE}\", error=\"insufficient_scope\", error_description=\"The token does not grant the required scope\", scope=\"read:messages\"")
        );
    }
}

#[test]
fn scope_source_can_be_restricted_to_one_claim() {
    let by_scope = Mint { scope: Some("read:messages".into()), ..mint() }.sign(key(1));
    let by_permission = Mint { permissions: Some(vec!["read:messages".into()]), ..mint() }.sign(key(1));
    let only_scope = world_with(&[("SCOPE_SOURCE", "scope")], &[key(1)]);
    assert_eq!(only_scope.get("/api/private-scoped", &by_scope).status, 200);
    assert_eq!(only_scope.get("/api/private-scoped", &by_permission).status, 403);
    let only_permissions = world_with(&[("SCOPE_SOURCE", "permissions")], &[key(1)]);
    assert_eq!(only_permissions.get("/api/private-scoped", &by_scope).status, 403);
    assert_eq!(only_permissions.get("/api/private-scoped", &by_permission).status, 200);
}

#[test]
fn unknown_path_is_404_json() {
    let r = world().call("GET", "/api/nope", None, None).response;
    assert_error(&r, 404, "not_found");
}

#[test]
fn other_methods_are_405_with_allow() {
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = world().call(method, "/api/private", None, None).response;
        assert_error(&r, 405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    }
}

#[test]
fn head_is_answered_like_get() {
    assert_eq!(world().call("HEAD", "/api/public", None, None).response.status, 200);
    assert_eq!(world().call("HEAD", "/api/private", None, None).response.status, 401);
}

// ---- the Authorization header ----

#[test]
fn missing_header_or_other_scheme_is_401_without_error_code() {
    for header in [None, Some("Basic dXNlcjpwYXNz")] {
        let r = world().call("GET", "/api/private", header, None).response;
        assert_error(&r, 401, "missing_authorization");
        assert_eq!(r.header("www-authenticate"), Some(format!("Bearer realm=\"{AUDIENCE}\"").as_str()));
    }
}

#[test]
fn malformed_bearer_credentials_are_400_invalid_request() {
    let token = valid_token();
    for header in [
        "Bearer".to_string(),
        "Bearer  ".into(),
        format!("Bearer {token} {token}"),
        format!("Bearer {token}, Bearer {token}"),
        "Bearer a\"b".into(),
    ] {
        let r = world().call("GET", "/api/private", Some(&header), None).response;
        assert_error(&r, 400, "invalid_request");
        assert!(r.header("www-authenticate").unwrap().contains("error=\"invalid_request\", error_description=\""));
    }
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let r = world().call("GET", "/api/private", Some(&format!("bEaReR {}", valid_token())), None).response;
    assert_eq!(r.status, 200);
}

// ---- token structure and header ----

#[test]
fn tokens_over_8_kib_are_refused_unparsed() {
    let padding = "x".repeat(9000);
    let w = world();
    let r = w.get("/api/private", &token_with(|c| c["pad"] = json!(padding)));
    assert_invalid_token(&r, "The token is too large");
    assert_eq!(w.io.fetches.get(), 0);
}

#[test]
fn malformed_compact_serializations_are_invalid_tokens() {
    let t = valid_token();
    let parts: Vec<&str> = t.split('.').collect();
    let cases = [
        "abc".to_string(),
        "a.b".into(),
        format!("{t}.extra"),
        format!("{}.{}.", parts[0], parts[1]) + "!!",
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("@@@.{}.{}", parts[1], parts[2]),
    ];
    for token in cases {
        let r = world().call("GET", "/api/private", Some(&format!("Bearer {token}")), None).response;
        // "!!" and "@@@" are not b64token characters: refused one step earlier, as invalid_request.
        if token.contains('!') || token.contains('@') {
            assert_error(&r, 400, "invalid_request");
        } else {
            assert_invalid_token(&r, "The token is not a well-formed JWS compact serialization");
        }
    }
}

#[test]
fn every_algorithm_but_rs256_is_rejected_before_any_key_is_touched() {
    let claims = mint().claims();
    for alg in [
        "none", "None", "NONE", "nOnE", "HS256", "HS384", "HS512", "RS384", "RS512", "PS256", "ES256", "EdDSA",
        "rs256", "",
    ] {
        let w = world();
        let header = json!({ "alg": alg, "typ": "JWT", "kid": "key-1" });
        let forged = sign(&header, &claims, key(1));
        assert_invalid_token(
            &w.get("/api/private", &forged),
            "The token algorithm is not supported; RS256 is required",
        );
        let unsigned = format!("{}.{}.", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        assert_invalid_token(
            &w.get("/api/private", &unsigned),
            "The token algorithm is not supported; RS256 is required",
        );
        assert_eq!(w.io.fetches.get(), 0, "alg {alg:?} reached the key store");
    }
}

#[test]
fn crit_header_is_rejected_whatever_its_value() {
    for crit in [json!(["exp"]), json!([]), json!(null), json!("exp"), json!({})] {
        let forged = sign(&json!({ "alg": "RS256", "kid": "key-1", "crit": crit, "exp": 1 }), &mint().claims(), key(1));
        assert_invalid_token(
            &world().get("/api/private", &forged),
            "The token has critical header parameters that are not supported",
        );
    }
}

#[test]
fn keys_embedded_in_or_pointed_to_by_the_header_are_never_used() {
    // Signed by an attacker's key that the header offers every way it can: still unknown.
    let attacker = key(3);
    let header = json!({
        "alg": "RS256", "kid": "key-3",
        "jwk": attacker.public_jwk(),
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
    });
    let w = world();
    assert_invalid_token(
        &w.get("/api/private", &sign(&header, &mint().claims(), attacker)),
        "The token is signed with an unknown key",
    );
    // The same header on a token signed by the real key is fine: the extra members are inert.
    let header = json!({ "alg": "RS256", "kid": "key-1", "jku": "https://evil.example/jwks.json" });
    assert_eq!(w.get("/api/private", &sign(&header, &mint().claims(), key(1))).status, 200);
}

// ---- keys and signatures ----

#[test]
fn kid_must_name_a_published_key() {
    let header = json!({ "alg": "RS256", "kid": "key-9" });
    assert_invalid_token(
        &world().get("/api/private", &sign(&header, &mint().claims(), key(1))),
        "The token is signed with an unknown key",
    );
}

#[test]
fn without_kid_only_a_single_key_set_is_unambiguous() {
    let token = sign(&json!({ "alg": "RS256" }), &mint().claims(), key(1));
    assert_eq!(world().get("/api/private", &token).status, 200);
    let two = world_with(&[], &[key(1), key(2)]);
    assert_invalid_token(&two.get("/api/private", &token), "The token does not name its signing key");
}

#[test]
fn unusable_published_keys_are_ignored() {
    let mut enc = key(2).public_jwk();
    enc["use"] = json!("enc");
    let mut rs512 = key(3).public_jwk();
    rs512["alg"] = json!("RS512");
    let published = json!({ "keys": [small_key().public_jwk(), enc, rs512, {"kty": "EC", "crv": "P-256", "kid": "ec"}, key(1).public_jwk()] });
    let w = world();
    w.io.issuer_serves(&published);
    for k in [small_key(), key(2), key(3)] {
        let token = sign(&json!({ "alg": "RS256", "kid": k.kid }), &mint().claims(), k);
        assert_invalid_token(&w.get("/api/private", &token), "The token is signed with an unknown key");
    }
    assert_eq!(w.get("/api/private", &valid_token()).status, 200);
}

#[test]
fn entries_with_odd_or_private_members_are_skipped_and_a_null_kid_is_no_kid() {
    // key(2)'s material under other kids, each entry odd in one member.
    let entry = |kid: &str, edit: &dyn Fn(&mut Value)| {
        let mut jwk = key(2).public_jwk();
        jwk["kid"] = json!(kid);
        edit(&mut jwk);
        jwk
    };
    let published = json!({ "keys": [
        entry("numeric", &|j| j["kid"] = json!(2)),
        entry("padded", &|j| j["n"] = json!(format!("{}=", j["n"].as_str().unwrap()))),
        entry("untyped", &|j| drop(j.as_object_mut().unwrap().remove("kty"))),
        entry("alg-list", &|j| j["alg"] = json!(["RS256"])),
        entry("private", &|j| j["d"] = json!("AQAB")),
        entry("sign-only", &|j| j["key_ops"] = json!(["sign"])),
        entry("ops-not-a-list", &|j| j["key_ops"] = json!("verify")),
        "not a key",
        key(1).public_jwk(),
    ] });
    let w = world();
    w.io.issuer_serves(&published);
    for kid in ["2", "numeric", "padded", "untyped", "alg-list", "private", "sign-only", "ops-not-a-list"] {
        let token = sign(&json!({ "alg": "RS256", "kid": kid }), &mint().claims(), key(2));
        assert_invalid_token(&w.get("/api/private", &token), "The token is signed with an unknown key");
    }
    assert_eq!(w.get("/api/private", &valid_token()).status, 200);

    // key_ops holding verify is a usable key.
    let mut verify_only = key(3).public_jwk();
    verify_only["key_ops"] = json!(["verify"]);
    let w = world();
    w.io.issuer_serves(&json!({ "keys": [verify_only] }));
    let token = sign(&json!({ "alg": "RS256", "kid": key(3).kid }), &mint().claims(), key(3));
    assert_eq!(w.get("/api/private", &token).status, 200);

    let mut null_kid = key(1).public_jwk();
    null_kid["kid"] = Value::Null;
    let w = world();
    w.io.issuer_serves(&json!({ "keys": [null_kid] }));
    assert_eq!(w.get("/api/private", &sign(&json!({ "alg": "RS256" }), &mint().claims(), key(1))).status, 200);
}

#[test]
fn signatures_must_verify_over_the_exact_signing_input() {
    let token = valid_token();
    let parts: Vec<&str> = token.split('.').collect();
    let tampered_claims = b64(mint().claims().to_string().replace("dev-user|1", "admin|1").as_bytes());
    let other_key = sign(&json!({ "alg": "RS256", "kid": "key-1" }), &mint().claims(), key(2));
    let mut flipped = parts[2].as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let cases = [
        format!("{}.{}.{}", parts[0], tampered_claims, parts[2]),
        other_key,
        format!("{}.{}.{}", parts[0], parts[1], String::from_utf8(flipped).unwrap()),
        format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]),
    ];
    for token in cases {
        assert_invalid_token(&world().get("/api/private", &token), "The token signature is invalid");
    }
}

// ---- claims ----

#[test]
fn claim_rules() {
    let leeway = 30;
    type Edit = Box<dyn Fn(&mut Value)>;
    // (case, how the claims differ from a valid token, the expected description or None for 200)
    let cases: Vec<(&str, Edit, Option<&str>)> = vec![
        ("valid", Box::new(|_| {}), None),
        ("expired beyond leeway", Box::new(move |c| c["exp"] = json!(NOW - leeway)), Some("The token is expired")),
        ("expired within leeway", Box::new(move |c| c["exp"] = json!(NOW - leeway + 1)), None),
        (
            "no exp",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Some("The token has no expiry"),
        ),
        (
            "nbf in the future",
            Box::new(move |c| c["nbf"] = json!(NOW + leeway + 1)),
            Some("The token is not valid yet"),
        ),
        ("nbf within leeway", Box::new(move |c| c["nbf"] = json!(NOW + leeway)), None),
        (
            "iat in the future",
            Box::new(move |c| c["iat"] = json!(NOW + leeway + 1)),
            Some("The token was issued in the future"),
        ),
        (
            "iat absent",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
            None,
        ),
        (
            "wrong iss",
            Box::new(|c| c["iss"] = json!("https://evil.auth0.com/")),
            Some("The token issuer is not trusted"),
        ),
        (
            "iss without trailing slash",
            Box::new(|c| c["iss"] = json!("https://tenant.example.auth0.com")),
            Some("The token issuer is not trusted"),
        ),
        (
            "no iss",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            Some("The token issuer is not trusted"),
        ),
        ("wrong aud", Box::new(|c| c["aud"] = json!("https://other.api")), Some("The token audience is not accepted")),
        ("aud array containing ours", Box::new(|c| c["aud"] = json!(["https://other.api", AUDIENCE])), None),
        (
            "aud array without ours",
            Box::new(|c| c["aud"] = json!(["https://other.api"])),
            Some("The token audience is not accepted"),
        ),
        (
            "no aud",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Some("The token audience is not accepted"),
        ),
        ("exp as a string", Box::new(|c| c["exp"] = json!("tomorrow")), Some("The token claims are malformed")),
        ("aud as a number", Box::new(|c| c["aud"] = json!(7)), Some("The token claims are malformed")),
        ("iss as an object", Box::new(|c| c["iss"] = json!({})), Some("The token issuer is not trusted")),
        (
            "scope as an array",
            Box::new(|c| c["scope"] = json!(["read:messages"])),
            Some("The token claims are malformed"),
        ),
        (
            "permissions as a string",
            Box::new(|c| c["permissions"] = json!("read:messages")),
            Some("The token claims are malformed"),
        ),
        ("claims not an object", Box::new(|c| *c = json!([1, 2])), Some("The token claims are malformed")),
    ];
    for (name, edit, expected) in cases {
        let r = world().get("/api/private", &token_with(edit));
        match expected {
            None => assert_eq!(r.status, 200, "{name}: {r:?}"),
            Some(description) => assert_invalid_token(&r, description),
        }
    }
}

#[test]
fn leeway_is_configurable() {
    let token = token_with(|c| c["exp"] = json!(NOW - 5));
    assert_eq!(world().get("/api/private", &token).status, 200);
    assert_eq!(world_with(&[("CLOCK_SKEW_SECONDS", "0")], &[key(1)]).get("/api/private", &token).status, 401);
}

#[test]
fn any_configured_audience_is_accepted() {
    let w = world_with(&[("AUTH0_AUDIENCE", "https://first.api,https://api.example.com")], &[key(1)]);
    assert_eq!(w.get("/api/private", &valid_token()).status, 200);
}

#[test]
fn error_responses_never_echo_the_token() {
    let token = token_with(|c| c["aud"] = json!("https://secret-audience.example"));
    let r = world().get("/api/private", &token);
    let text = format!("{:?}", r);
    for part in token.split('.') {
        assert!(!text.contains(&part[..16.min(part.len())]));
    }
    assert!(!text.contains("secret-audience"));
}

// ---- CORS ----

const APP: &str = "https://app.example.com";

fn cors_world() -> World {
    world_with(&[("CORS_ALLOWED_ORIGINS", APP)], &[key(1)])
}

#[test]
fn preflight_from_an_allowed_origin_gets_cors_headers_without_a_token() {
    let r = cors_world().call("OPTIONS", "/api/private", None, Some(APP)).response;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    for name in ["access-control-allow-origin", "vary", "access-control-allow-methods"] {
        assert_eq!(r.headers.iter().filter(|(n, _)| *n == name).count(), 1, "{name} once: {r:?}");
    }
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD, OPTIONS"));
    assert!(r.header("access-control-allow-headers").unwrap().contains("Authorization"));
}

#[test]
fn preflight_from_another_origin_gets_no_allow_headers() {
    for w in [cors_world(), world()] {
        let r = w.call("OPTIONS", "/api/private", None, Some("https://evil.example")).response;
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-origin"), None);
        assert_eq!(r.header("access-control-allow-methods"), None);
    }
}

#[test]
fn errors_to_an_allowed_origin_carry_cors_headers() {
    let w = cors_world();
    for (authorization, status) in [(None, 401), (Some("Bearer"), 400), (Some("Bearer a.b.c"), 401)] {
        let r = w.call("GET", "/api/private", authorization, Some(APP)).response;
        assert_eq!(r.status, status);
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        assert!(r.header("access-control-expose-headers").unwrap().contains("WWW-Authenticate"));
    }
    let ok = w.call("GET", "/api/private", Some(&format!("Bearer {}", valid_token())), Some(APP)).response;
    assert_eq!(ok.header("access-control-allow-origin"), Some(APP));
    let other = w.call("GET", "/api/private", None, Some("https://evil.example")).response;
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[test]
fn wildcard_cors_allows_any_origin() {
    let w = world_with(&[("CORS_ALLOWED_ORIGINS", "*")], &[key(1)]);
    let r = w.call("GET", "/api/public", None, Some("https://anywhere.example")).response;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

// ---- configuration and availability ----

#[test]
fn misconfiguration_is_500_naming_the_variable_and_public_keeps_working() {
    for (vars, variable) in [
        (vec![("AUTH0_DOMAIN", "")], "AUTH0_DOMAIN"),
        (vec![("AUTH0_DOMAIN", "https://tenant.auth0.com/")], "AUTH0_DOMAIN"),
        (vec![("AUTH0_AUDIENCE", "")], "AUTH0_AUDIENCE"),
        (vec![("CLOCK_SKEW_SECONDS", "ten")], "CLOCK_SKEW_SECONDS"),
    ] {
        let w = world_with(&vars, &[key(1)]);
        for path in ["/api/private", "/api/private-scoped"] {
            let r = w.get(path, &valid_token());
            assert_error(&r, 500, "server_misconfigured");
            assert!(body(&r)["error_description"].as_str().unwrap().starts_with(variable));
            assert_eq!(r.header("www-authenticate"), None);
        }
        assert_eq!(w.call("GET", "/api/public", None, None).response.status, 200);
    }
}

#[test]
fn no_keys_and_issuer_unreachable_is_503_with_retry_after() {
    let w = world();
    w.io.issuer_fails(FetchError::Network);
    let r = w.get("/api/private", &valid_token());
    assert_error(&r, 503, "temporarily_unavailable");
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.header("www-authenticate"), None);
}

#[test]
fn stale_keys_ask_for_a_background_refresh() {
    let w = world();
    let fresh = w.call("GET", "/api/private", Some(&format!("Bearer {}", valid_token())), None);
    assert_eq!(fresh.background_refresh, None);
    w.now.set(NOW as u64 * 1000 + 601_000);
    let outcome = w.call("GET", "/api/private", Some(&format!("Bearer {}", valid_token())), None);
    // The token (minted at NOW, valid for an hour) is still fine; the keys are stale.
    assert_eq!(outcome.response.status, 200);
    assert_eq!(outcome.background_refresh, Some(0));
}

#[test]
fn status_route_is_off_unless_enabled() {
    assert_error(&world().call("GET", pipeline::STATUS_PATH, None, None).response, 404, "not_found");
    let w = world_with(&[("STATUS_ENDPOINT", "true")], &[key(1)]);
    w.get("/api/private", &valid_token());
    let r = w.call("GET", pipeline::STATUS_PATH, None, None).response;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["issuers"][0]["tiers"]["memory"]["kids"], json!(["key-1"]));
}

// ---------------------------------------------------------------- verified-token cache

#[test]
fn a_repeated_token_is_verified_once() {
    let w = world();
    let token = valid_token();
    for _ in 0..5 {
        assert_eq!(w.get("/api/private", &token).status, 200);
    }
    assert_eq!(w.verifier.checks.get(), 1);
}

#[test]
fn refused_tokens_are_not_cached() {
    let w = world();
    let forged = sign(&json!({ "alg": "RS256", "kid": "key-1" }), &mint().claims(), key(2));
    for _ in 0..3 {
        assert_invalid_token(&w.get("/api/private", &forged), "The token signature is invalid");
    }
    assert_eq!(w.verifier.checks.get(), 3);
    let wrong_audience = token_with(|c| c["aud"] = json!("https://other.api"));
    assert_eq!(w.get("/api/private", &wrong_audience).status, 401);
    assert_eq!(w.get("/api/private", &wrong_audience).status, 401);
    assert!(w.tokens.borrow().is_empty());
}

#[test]
fn a_cached_token_is_refused_once_it_expires() {
    let w = world();
    let token = token_with(|c| c["exp"] = json!(NOW + 60));
    assert_eq!(w.get("/api/private", &token).status, 200);
    // Leeway is 30 s by default: valid until exp + 30.
    w.now.set((NOW as u64 + 89) * 1000);
    assert_eq!(w.get("/api/private", &token).status, 200);
    w.now.set((NOW as u64 + 90) * 1000);
    assert_invalid_token(&w.get("/api/private", &token), "The token is expired");
    assert!(w.tokens.borrow().is_empty(), "an expired entry is dropped");
    assert_eq!(w.verifier.checks.get(), 1);
}

#[test]
fn a_cached_token_is_refused_once_its_key_leaves_the_key_set() {
    let w = world_with(&[], &[key(1), key(2)]);
    let token = valid_token();
    assert_eq!(w.get("/api/private", &token).status, 200);
    // Key 1 is withdrawn upstream; the next refresh (keys past max-age) drops it.
    w.io.issuer_serves(&jwks(&[key(2)]));
    let later = NOW as u64 * 1000 + 601_000;
    block_on(w.issuers.get(0).unwrap().store.refresh(later, &w.io));
    w.now.set(later);
    assert_invalid_token(&w.get("/api/private", &token), "The token is signed with an unknown key");
    assert_eq!(w.verifier.checks.get(), 1, "refused on the key, not re-verified");
}

#[test]
fn a_cached_token_is_verified_afresh_when_its_kid_names_a_new_key() {
    let w = world();
    let token = valid_token();
    assert_eq!(w.get("/api/private", &token).status, 200);
    // The issuer republishes "key-1" with other key material (a botched rotation, or an attack on
    // the JWKS): the cached verdict was about the old key and no longer holds.
    let mut impostor = key(2).public_jwk();
    impostor["kid"] = json!("key-1");
    w.io.issuer_serves(&json!({ "keys": [impostor] }));
    let later = NOW as u64 * 1000 + 601_000;
    block_on(w.issuers.get(0).unwrap().store.refresh(later, &w.io));
    w.now.set(later);
    assert_invalid_token(&w.get("/api/private", &token), "The token signature is invalid");
    assert_eq!(w.verifier.checks.get(), 2);
}

#[test]
fn a_cached_token_still_needs_the_route_scope() {
    let w = world();
    let token = valid_token();
    assert_eq!(w.get("/api/private", &token).status, 200);
    assert_error(&w.get("/api/private-scoped", &token), 403, "insufficient_scope");
    let scoped = Mint { scope: Some("read:messages".into()), ..mint() }.sign(key(1));
    assert_eq!(w.get("/api/private", &scoped).status, 200);
    assert_eq!(w.get("/api/private-scoped", &scoped).status, 200);
    assert_eq!(w.verifier.checks.get(), 2);
}

#[test]
fn a_cached_token_that_is_not_valid_yet_is_refused_until_it_is() {
    let w = world();
    // Accepted within the leeway, then the clock is set back (NTP step): the window still applies.
    let token = token_with(|c| c["nbf"] = json!(NOW + 20));
    assert_eq!(w.get("/api/private", &token).status, 200);
    w.now.set((NOW as u64 - 30) * 1000);
    assert_invalid_token(&w.get("/api/private", &token), "The token is not valid yet");
}

// ---- configuration that would break every challenge ----

#[test]
fn an_audience_that_cannot_be_a_header_value_is_a_misconfiguration_not_a_broken_challenge() {
    let w = world_with(&[("AUTH0_AUDIENCE", "https://api.example.com\r\nX-Injected: 1")], &[key(1)]);
    let r = w.get("/api/private", "not-a-token");
    assert_error(&r, 500, "server_misconfigured");
    assert!(body(&r)["error_description"].as_str().unwrap().starts_with("AUTH0_AUDIENCE"));
    assert_eq!(r.header("www-authenticate"), None);
}

// ---------------------------------------------------------------- signature engines

/// The corpus both engines are held to: the pure-Rust engine here, WebCrypto in workerd (e2e.rs).
fn signature_vectors() -> Value {
    serde_json::from_str(include_str!("vectors/signatures.json")).unwrap()
}

#[test]
fn the_rust_engine_gives_every_signature_vector_its_verdict() {
    let corpus = signature_vectors();
    let issuer = corpus["issuer"].as_str().unwrap();
    let audience = corpus["audience"].as_str().unwrap();
    let w = world_with(&[("AUTH0_ISSUER", issuer), ("AUTH0_AUDIENCE", audience)], &[]);
    w.io.issuer_serves(&corpus["jwks"]);
    let vectors = corpus["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 40 && vectors.iter().any(|v| v["valid"] == json!(true)));
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let response = w.get("/api/private", vector["token"].as_str().unwrap());
        if vector["valid"] == json!(true) {
            assert_eq!(response.status, 200, "{name}: {response:?}");
        } else {
            assert_error(&response, 401, "invalid_token");
            assert_eq!(body(&response)["error_description"], json!("The token signature is invalid"), "{name}");
        }
    }
}

// ---------------------------------------------------------------- several issuers

const OTHER_ISSUER: &str = "https://login.example.com/";
const OTHER_JWKS: &str = "https://login.example.com/.well-known/jwks.json";

/// Two issuers: the tenant (key 1) and a custom domain (key 2), each with its own keys.
fn two_issuers() -> World {
    let w = world_with(&[("ISSUERS", r#"[{"issuer": "https://login.example.com/"}]"#)], &[key(1)]);
    w.io.other_issuers.borrow_mut().push((OTHER_JWKS.into(), jwks(&[key(2)]).to_string().into_bytes()));
    w
}

fn signed_by(issuer: &str, signer: &SigningKey) -> String {
    let claims = Mint { now: NOW, ..Mint::new(issuer, AUDIENCE) }.claims();
    sign(&json!({ "alg": "RS256", "typ": "JWT", "kid": signer.kid }), &claims, signer)
}

#[test]
fn each_issuer_verifies_its_own_tokens_with_its_own_keys() {
    let w = two_issuers();
    assert_eq!(w.get("/api/private", &signed_by(ISSUER, key(1))).status, 200);
    assert_eq!(w.get("/api/private", &signed_by(OTHER_ISSUER, key(2))).status, 200);
    assert_eq!(*w.io.fetched_urls.borrow(), vec![JWKS_URL.to_owned(), OTHER_JWKS.to_owned()]);
}

#[test]
fn one_issuers_key_never_verifies_anothers_token() {
    let w = two_issuers();
    // iss of the custom domain, signed with the tenant's key (kid key-1): the custom domain's
    // keys do not hold key-1, so it is unknown there, though the tenant publishes it.
    let confused = signed_by(OTHER_ISSUER, key(1));
    assert_invalid_token(&w.get("/api/private", &confused), "The token is signed with an unknown key");
    let confused = signed_by(ISSUER, key(2));
    assert_invalid_token(&w.get("/api/private", &confused), "The token is signed with an unknown key");
}

#[test]
fn an_untrusted_issuer_is_refused_before_any_key_is_fetched() {
    let w = two_issuers();
    for iss in [json!("https://attacker.example/"), json!(null), json!(42), json!("https://login.example.com")] {
        let token = token_with(|c| c["iss"] = iss.clone());
        assert_invalid_token(&w.get("/api/private", &token), "The token issuer is not trusted");
    }
    let token = token_with(|c| {
        c.as_object_mut().unwrap().remove("iss");
    });
    assert_invalid_token(&w.get("/api/private", &token), "The token issuer is not trusted");
    assert_eq!(w.io.fetches.get(), 0, "nothing was fetched for an issuer nobody trusts");
}

#[test]
fn each_issuer_judges_audiences_by_its_own_list() {
    let w = world_with(
        &[("ISSUERS", r#"[{"issuer": "https://login.example.com/", "audiences": ["https://staging.api"]}]"#)],
        &[key(1)],
    );
    w.io.other_issuers.borrow_mut().push((OTHER_JWKS.into(), jwks(&[key(2)]).to_string().into_bytes()));
    // The custom domain's token for the tenant's audience is not for this issuer's API.
    assert_invalid_token(
        &w.get("/api/private", &signed_by(OTHER_ISSUER, key(2))),
        "The token audience is not accepted",
    );
    let claims = Mint { now: NOW, ..Mint::new(OTHER_ISSUER, "https://staging.api") }.claims();
    let token = sign(&json!({ "alg": "RS256", "kid": "key-2" }), &claims, key(2));
    assert_eq!(w.get("/api/private", &token).status, 200);
}

#[test]
fn the_status_route_lists_every_issuer() {
    let w = world_with(
        &[("STATUS_ENDPOINT", "true"), ("ISSUERS", r#"[{"issuer": "https://login.example.com/"}]"#)],
        &[key(1)],
    );
    let status = body(&w.call("GET", pipeline::STATUS_PATH, None, None).response);
    let issuers: Vec<&str> =
        status["issuers"].as_array().unwrap().iter().map(|i| i["issuer"].as_str().unwrap()).collect();
    assert_eq!(issuers, vec![ISSUER, OTHER_ISSUER]);
}

// ---------------------------------------------------------------- DPoP

const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// The test isolates' DPoP memory per key (the edge's is `replay::PER_KEY`): small enough to fill
/// with signed proofs in a moment; all keys together hold eight times that.
const PROOFS_PER_KEY: usize = 1024;

const URL: &str = "https://api.example.com/api/private";

fn bound_token(proof_key: &ProofKey) -> String {
    let mut claims = mint().claims();
    claims["cnf"] = json!({ "jkt": proof_key.thumbprint() });
    sign(&json!({ "alg": "RS256", "typ": "at+jwt", "kid": "key-1" }), &claims, key(1))
}

impl World {
    fn dpop(&self, method: &str, url: &str, authorization: &str, proof: Option<&str>) -> Outcome {
        let path = url.split_once(".com").map_or("/", |(_, p)| p).split('?').next().unwrap();
        self.send(&Incoming {
            method,
            url,
            path,
            authorization: Some(authorization),
            dpop: proof,
            ..Incoming::default()
        })
    }

    fn now_secs(&self) -> i64 {
        (self.now.get() / 1000) as i64
    }
}

fn assert_proof_error(outcome: &Outcome, description: &str) {
    let r = &outcome.response;
    assert_error(r, 401, "invalid_dpop_proof");
    assert_eq!(body(r)["error_description"], json!(description), "{r:?}");
    let challenges: Vec<&str> =
        r.headers.iter().filter(|(n, _)| *n == "www-authenticate").map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        challenges,
        vec![
            format!("Bearer realm=\"{AUDIENCE}\""),
            format!("DPoP algs=\"ES256 RS256 PS256 EdDSA\", error=\"invalid_dpop_proof\", error_description=\"{description}\""),
        ]
    );
}

#[test]
fn a_bound_token_with_its_proof_is_admitted_in_every_algorithm() {
    let keys = [ProofKey::es256(), ProofKey::eddsa(), ProofKey::Rs256(key(2).clone()), ProofKey::Ps256(key(3).clone())];
    let w = world();
    for (i, k) in keys.iter().enumerate() {
        let token = bound_token(k);
        let proof = Proof::new(k, "GET", URL, &token, w.now_secs(), &format!("jti-{i}")).sign(k);
        let outcome = w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof));
        assert_eq!(outcome.response.status, 200, "{}: {:?}", k.alg(), outcome.response);
    }
}

/// Review finding 4: with `CLOCK_SKEW_SECONDS=0` a `jti` was forgotten in the last second its
/// proof still counted as fresh, so the same proof was admitted again at `iat` + 300.5 s.
#[test]
fn a_proof_is_remembered_through_the_last_second_it_is_accepted() {
    let w = world_with(&[("CLOCK_SKEW_SECONDS", "0")], &[key(1)]);
    let k = ProofKey::es256();
    let token = bound_token(&k);
    let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), "once").sign(&k);
    assert_eq!(w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof)).response.status, 200);
    w.now.set(w.now.get() + 300_500);
    assert_proof_error(&w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof)), "The DPoP proof was already used");
    w.now.set(w.now.get() + 1_000);
    assert_proof_error(&w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof)), "The DPoP proof is too old");
}

/// Review finding 1: a busy client's own later proofs pushed its older `jti`s out of the memory
/// while they were still inside the window: a proof captured from a log was admitted again after
/// 4,096 more. Now the key is refused past its share, and the captured proof stays refused.
#[test]
fn a_captured_proof_stays_refused_however_many_proofs_follow_it() {
    let w = world();
    let k = ProofKey::es256();
    let token = bound_token(&k);
    let authorization = format!("DPoP {token}");
    let captured = Proof::new(&k, "GET", URL, &token, w.now_secs(), "captured").sign(&k);
    assert_eq!(w.dpop("GET", URL, &authorization, Some(&captured)).response.status, 200);
    for i in 1..PROOFS_PER_KEY {
        let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), &format!("later-{i}")).sign(&k);
        assert_eq!(w.dpop("GET", URL, &authorization, Some(&proof)).response.status, 200, "proof {i}");
    }
    let one_more = Proof::new(&k, "GET", URL, &token, w.now_secs(), "one-more").sign(&k);
    let refused = w.dpop("GET", URL, &authorization, Some(&one_more));
    assert_proof_error(&refused, "Too many DPoP proofs of this key are in use; retry later");
    assert_eq!(w.io.events().iter().filter(|e| *e == "replay_memory_full").count(), 1);
    assert_proof_error(&w.dpop("GET", URL, &authorization, Some(&captured)), "The DPoP proof was already used");
    // Another key of another client is not affected.
    let other = ProofKey::es256();
    let other_token = bound_token(&other);
    let proof = Proof::new(&other, "GET", URL, &other_token, w.now_secs(), "x").sign(&other);
    assert_eq!(w.dpop("GET", URL, &format!("DPoP {other_token}"), Some(&proof)).response.status, 200);
}

/// With nonces on, a key past its share is answered with a nonce challenge: a proof carrying a
/// nonce is remembered only while its nonce is good, so the client's retry finds room sooner.
#[test]
fn with_nonces_a_full_share_is_answered_with_a_nonce_challenge() {
    let w = world_with(&[("DPOP_NONCE_SECRET", SECRET)], &[key(1)]);
    let k = ProofKey::es256();
    let token = bound_token(&k);
    let authorization = format!("DPoP {token}");
    let nonce_now = |w: &World| {
        let nonces = w.config.as_ref().unwrap().0.dpop.nonce.as_ref().unwrap();
        edge_auth::dpop::nonce::issue(nonces, w.now_secs())
    };
    let with_nonce = |w: &World, jti: &str, nonce: &str| {
        let mut proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), jti);
        proof.claims["nonce"] = json!(nonce);
        proof.sign(&k)
    };
    let nonce = nonce_now(&w);
    for i in 0..PROOFS_PER_KEY {
        let outcome = w.dpop("GET", URL, &authorization, Some(&with_nonce(&w, &i.to_string(), &nonce)));
        assert_eq!(outcome.response.status, 200, "proof {i}");
    }
    let refused = w.dpop("GET", URL, &authorization, Some(&with_nonce(&w, "full", &nonce))).response;
    assert_error(&refused, 401, "use_dpop_nonce");
    assert!(refused.header("dpop-nonce").is_some(), "{refused:?}");
    // Two nonce steps later every one of those proofs is unacceptable, and forgotten (without
    // nonces they would be held for the whole 300 s window plus the leeway).
    w.now.set(w.now.get() + 120_000);
    let fresh = nonce_now(&w);
    assert_eq!(w.dpop("GET", URL, &authorization, Some(&with_nonce(&w, "after", &fresh))).response.status, 200);
}

#[test]
fn a_bound_token_presented_as_bearer_is_refused_in_every_mode() {
    let k = ProofKey::es256();
    for mode in ["allowed", "required", "off"] {
        let w = world_with(&[("DPOP", mode)], &[key(1)]);
        let outcome = w.call("GET", "/api/private", Some(&format!("Bearer {}", bound_token(&k))), None);
        assert_error(&outcome.response, 401, "invalid_token");
    }
}

#[test]
fn a_token_bound_by_another_confirmation_method_is_refused() {
    let w = world();
    for cnf in [json!({ "x5t#S256": "abc" }), json!({ "jkt": "abc", "x5t#S256": "abc" }), json!(null), json!("jkt")] {
        let mut claims = mint().claims();
        claims["cnf"] = cnf.clone();
        let token = sign(&json!({ "alg": "RS256", "kid": "key-1" }), &claims, key(1));
        assert_invalid_token(
            &w.get("/api/private", &token),
            "The token is bound by a confirmation method that is not supported",
        );
    }
}

#[test]
fn the_modes_decide_which_schemes_count() {
    let k = ProofKey::es256();
    let unbound = valid_token();
    // allowed: an unbound token with the DPoP scheme is refused; Bearer works.
    let w = world();
    let proof = Proof::new(&k, "GET", URL, &unbound, w.now_secs(), "a").sign(&k);
    assert_error(&w.dpop("GET", URL, &format!("DPoP {unbound}"), Some(&proof)).response, 401, "invalid_token");
    assert_eq!(w.get("/api/private", &unbound).status, 200);
    // required: Bearer is refused, with only the DPoP challenge.
    let w = world_with(&[("DPOP", "required")], &[key(1)]);
    let r = w.get("/api/private", &unbound);
    assert_error(&r, 401, "invalid_token");
    let challenges: Vec<&str> =
        r.headers.iter().filter(|(n, _)| *n == "www-authenticate").map(|(_, v)| v.as_str()).collect();
    assert_eq!(challenges.len(), 1);
    assert!(
        challenges[0].starts_with("DPoP algs=\"ES256 RS256 PS256 EdDSA\", error=\"invalid_token\""),
        "{challenges:?}"
    );
    // off: the DPoP scheme is no credential at all, and the challenge is Bearer alone.
    let w = world_with(&[("DPOP", "off")], &[key(1)]);
    let token = bound_token(&k);
    let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), "b").sign(&k);
    let r = w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof)).response;
    assert_error(&r, 401, "missing_authorization");
    assert_eq!(r.header("www-authenticate"), Some(format!("Bearer realm=\"{AUDIENCE}\"").as_str()));
}

/// Every check of RFC 9449 §4.3, each with the description that names it.
#[test]
fn every_proof_check_refuses_with_its_own_description() {
    let k = ProofKey::es256();
    let other = ProofKey::es256();
    let token = bound_token(&k);
    let w = world();
    let now = w.now_secs();
    let good = || Proof::new(&k, "GET", URL, &token, now, "j");
    let edited = |edit: &dyn Fn(&mut Proof)| {
        let mut p = good();
        edit(&mut p);
        p.sign(&k)
    };
    let hs256 = {
        // HS256 keyed with the access token: a symmetric alg is never accepted.
        let mut p = good();
        p.header["alg"] = json!("HS256");
        p.sign(&k)
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no DPoP header", None, "No DPoP proof was sent"),
        ("two proofs", Some(format!("{}, {}", good().sign(&k), good().sign(&k))), "More than one DPoP proof was sent"),
        ("not a JWS", Some("abc.def".into()), "The DPoP proof is not a well-formed JWS compact serialization"),
        ("typ JWT", Some(edited(&|p| p.header["typ"] = json!("JWT"))), "The DPoP proof typ is not dpop+jwt"),
        (
            "alg none",
            Some(edited(&|p| p.header["alg"] = json!("none"))),
            "The DPoP proof alg is not one of ES256, RS256, PS256, EdDSA",
        ),
        ("alg HS256", Some(hs256), "The DPoP proof alg is not one of ES256, RS256, PS256, EdDSA"),
        (
            "no jwk",
            Some(edited(&|p| {
                p.header.as_object_mut().unwrap().remove("jwk");
            })),
            "The DPoP proof header has no jwk",
        ),
        (
            "private jwk",
            Some(edited(&|p| p.header["jwk"]["d"] = json!("AAAA"))),
            "The DPoP proof jwk holds private key members",
        ),
        (
            "alg not matching the key",
            Some(edited(&|p| p.header["alg"] = json!("EdDSA"))),
            "The DPoP proof jwk is not a usable public key for its alg",
        ),
        (
            "another key's jwk",
            Some(edited(&|p| p.header["jwk"] = other.public_jwk())),
            "The DPoP proof signature is invalid",
        ),
        (
            "no jti",
            Some(edited(&|p| {
                p.claims.as_object_mut().unwrap().remove("jti");
            })),
            "The DPoP proof jti is missing, not a string or too long",
        ),
        (
            "long jti",
            Some(edited(&|p| p.claims["jti"] = json!("j".repeat(257)))),
            "The DPoP proof jti is missing, not a string or too long",
        ),
        (
            "htm post",
            Some(edited(&|p| p.claims["htm"] = json!("POST"))),
            "The DPoP proof htm does not match the request method",
        ),
        (
            "htm lower case",
            Some(edited(&|p| p.claims["htm"] = json!("get"))),
            "The DPoP proof htm does not match the request method",
        ),
        (
            "htu another path",
            Some(edited(&|p| p.claims["htu"] = json!("https://api.example.com/api/public"))),
            "The DPoP proof htu does not match the request URL",
        ),
        (
            "htu trailing slash",
            Some(edited(&|p| p.claims["htu"] = json!(format!("{URL}/")))),
            "The DPoP proof htu does not match the request URL",
        ),
        (
            "htu another host",
            Some(edited(&|p| p.claims["htu"] = json!("https://evil.example.com/api/private"))),
            "The DPoP proof htu does not match the request URL",
        ),
        (
            "no iat",
            Some(edited(&|p| {
                p.claims.as_object_mut().unwrap().remove("iat");
            })),
            "The DPoP proof has no iat",
        ),
        ("iat too old", Some(edited(&|p| p.claims["iat"] = json!(now - 301))), "The DPoP proof is too old"),
        (
            "iat in the future",
            Some(edited(&|p| p.claims["iat"] = json!(now + 31))),
            "The DPoP proof was issued in the future",
        ),
        (
            "no ath",
            Some(edited(&|p| {
                p.claims.as_object_mut().unwrap().remove("ath");
            })),
            "The DPoP proof ath is missing or not the hash of the access token",
        ),
        (
            "ath of another token",
            Some(edited(&|p| p.claims["ath"] = json!(access_token_hash(&valid_token())))),
            "The DPoP proof ath is missing or not the hash of the access token",
        ),
    ];
    for (name, proof, description) in cases {
        let outcome = w.dpop("GET", URL, &format!("DPoP {token}"), proof.as_deref());
        assert_proof_error(&outcome, description);
        let _ = name;
    }
    // Within the windows, and with a query and a default port the URL still matches.
    let lenient = edited(&|p| {
        p.claims["iat"] = json!(now - 300);
        p.claims["htu"] = json!("https://API.example.com:443/api/private");
    });
    assert_eq!(w.dpop("GET", &format!("{URL}?page=2"), &format!("DPoP {token}"), Some(&lenient)).response.status, 200);
}

#[test]
fn a_proof_is_good_once_even_when_the_token_is_cached() {
    let k = ProofKey::es256();
    let token = bound_token(&k);
    let w = world();
    let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), "once").sign(&k);
    assert_eq!(w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof)).response.status, 200);
    assert_proof_error(&w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof)), "The DPoP proof was already used");
    // A new proof for the cached token is checked in full.
    let fresh = Proof::new(&k, "GET", URL, &token, w.now_secs(), "twice").sign(&k);
    assert_eq!(w.dpop("GET", URL, &format!("DPoP {token}"), Some(&fresh)).response.status, 200);
    let bad = Proof::new(&k, "POST", URL, &token, w.now_secs(), "thrice").sign(&k);
    assert_proof_error(
        &w.dpop("GET", URL, &format!("DPoP {token}"), Some(&bad)),
        "The DPoP proof htm does not match the request method",
    );
    assert_eq!(w.verifier.checks.get(), 1, "the token's signature was checked once");
}

#[test]
fn a_token_bound_to_another_key_is_refused_though_its_proof_is_sound() {
    let (k, other) = (ProofKey::es256(), ProofKey::es256());
    let token = bound_token(&other);
    let w = world();
    let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), "x").sign(&k);
    let r = w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof)).response;
    assert_error(&r, 401, "invalid_token");
    assert_eq!(
        body(&r)["error_description"],
        json!("The token is bound to another key than the one that signed the proof")
    );
    assert!(r
        .headers
        .iter()
        .any(|(n, v)| *n == "www-authenticate" && v.starts_with("DPoP algs") && v.contains("invalid_token")));
}

#[test]
fn with_nonces_a_proof_needs_one_of_ours_and_is_told_it() {
    let k = ProofKey::es256();
    let token = bound_token(&k);
    let w = world_with(&[("DPOP_NONCE_SECRET", SECRET)], &[key(1)]);
    let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), "n1").sign(&k);
    let r = w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof)).response;
    assert_error(&r, 401, "use_dpop_nonce");
    let nonce = r.header("dpop-nonce").expect("a nonce to retry with").to_owned();
    assert!(r
        .headers
        .iter()
        .any(|(n, v)| *n == "www-authenticate" && v.starts_with("DPoP") && v.contains("error=\"use_dpop_nonce\"")));
    let mut retry = Proof::new(&k, "GET", URL, &token, w.now_secs(), "n2");
    retry.claims["nonce"] = json!(nonce);
    assert_eq!(w.dpop("GET", URL, &format!("DPoP {token}"), Some(&retry.sign(&k))).response.status, 200);
    // A forged nonce is refused the same way.
    let mut forged = Proof::new(&k, "GET", URL, &token, w.now_secs(), "n3");
    forged.claims["nonce"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_error(&w.dpop("GET", URL, &format!("DPoP {token}"), Some(&forged.sign(&k))).response, 401, "use_dpop_nonce");
    // Two steps later the nonce is stale; a step later it still works and a fresh one comes back.
    w.now.set(w.now.get() + 60_000);
    let mut aging = Proof::new(&k, "GET", URL, &token, w.now_secs(), "n4");
    aging.claims["nonce"] = json!(nonce);
    let r = w.dpop("GET", URL, &format!("DPoP {token}"), Some(&aging.sign(&k))).response;
    assert_eq!(r.status, 200);
    assert!(r.header("dpop-nonce").is_some_and(|n| n != nonce), "the answer offers the next nonce");
    w.now.set(w.now.get() + 60_000);
    let mut stale = Proof::new(&k, "GET", URL, &token, w.now_secs(), "n5");
    stale.claims["nonce"] = json!(nonce);
    assert_error(&w.dpop("GET", URL, &format!("DPoP {token}"), Some(&stale.sign(&k))).response, 401, "use_dpop_nonce");
}

#[test]
fn the_gateway_forwards_the_proof_with_authorization_and_names_the_key() {
    let k = ProofKey::es256();
    let token = bound_token(&k);
    let w = world_with(
        &[
            ("ORIGIN_URL", "https://origin.example.com"),
            ("ROUTES", r#"[{"path": "/api/*"}]"#),
            ("FORWARD_AUTHORIZATION", "true"),
        ],
        &[key(1)],
    );
    let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), "g").sign(&k);
    let outcome = w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof));
    let forward = outcome.forward.expect("forwarded");
    assert_eq!(forward.credentials, Some(Scheme::Dpop));
    assert!(forward.headers.contains(&("x-auth-key-thumbprint", k.thumbprint())), "{forward:?}");
}

// ---- gateway: what never reaches the origin, and what does ----

const ROUND_TWO_ROUTES: &str = r#"[
    {"path": "/live", "auth": "public", "websocket": true},
    {"path": "/feed", "methods": ["GET"], "websocket": true},
    {"path": "/orders/:id", "methods": ["GET"], "scopes": ["read:orders"]},
    {"path": "/orders/:id", "methods": ["DELETE"]},
    {"path": "/*", "auth": "public"}
]"#;

fn gateway_world(extra: &[(&str, &str)]) -> World {
    let mut vars = vec![("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", ROUND_TWO_ROUTES)];
    vars.extend_from_slice(extra);
    world_with(&vars, &[key(1)])
}

#[test]
fn trace_and_track_are_405_whatever_the_rules_say_and_never_forwarded() {
    let w = gateway_world(&[]);
    let token = format!("Bearer {}", valid_token());
    for method in ["TRACE", "TRACK", "trace"] {
        for (path, authorization) in [("/anything", None), ("/orders/7", Some(token.as_str()))] {
            let outcome = w.call(method, path, authorization, None);
            assert_error(&outcome.response, 405, "method_not_allowed");
            assert!(outcome.forward.is_none(), "{method} {path} was forwarded");
            let allow = outcome.response.header("allow").unwrap();
            assert!(!allow.contains("TRACE") && !allow.contains("TRACK"), "{allow}");
        }
    }
    // The catch-all takes every method, and says which ones when asked.
    let r = w.call("TRACE", "/anything", None, None).response;
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
    assert!(w.call("GET", "/anything", None, None).forward.is_some(), "the catch-all still forwards GET");
    assert_error(&world().call("TRACE", "/api/public", None, None).response, 405, "method_not_allowed");
}

#[test]
fn an_upgrade_is_refused_unless_its_rule_allows_a_websocket() {
    let w = gateway_world(&[]);
    let upgrade = |method, path, upgrade, authorization: Option<&str>| {
        w.send(&Incoming { method, path, upgrade: Some(upgrade), authorization, ..Incoming::default() })
    };
    let token = format!("Bearer {}", valid_token());
    for (method, path, kind) in [
        ("GET", "/anything", "websocket"),
        ("GET", "/orders/7", "websocket"),
        ("GET", "/live", "h2c"),
        ("GET", "/live", "websocket, h2c"),
        ("POST", "/live", "websocket"),
    ] {
        let outcome = upgrade(method, path, kind, Some(token.as_str()));
        assert_error(&outcome.response, 400, "invalid_request");
        assert_eq!(body(&outcome.response)["error_description"], json!("Upgrade not allowed on this route"));
        assert!(outcome.forward.is_none(), "{method} {path} {kind} was forwarded");
    }
    // Allowed: relayed by the edge. A public socket has no deadline.
    let public = upgrade("GET", "/live", "WebSocket", None).forward.expect("relayed");
    assert_eq!(public.relay, Some(pipeline::Relay { close_at_ms: None, revocation: None }));
    // A socket opened with a token closes when a request with it would be refused: exp + leeway.
    assert_error(&upgrade("GET", "/feed", "websocket", None).response, 401, "missing_authorization");
    let short = format!("Bearer {}", token_with(|c| c["exp"] = json!(NOW + 60)));
    let relayed = upgrade("GET", "/feed", "websocket", Some(short.as_str())).forward.expect("relayed");
    assert_eq!(
        relayed.relay,
        Some(pipeline::Relay { close_at_ms: Some((NOW as u64 + 60 + 30) * 1000), revocation: None })
    );
    let strict = gateway_world(&[("CLOCK_SKEW_SECONDS", "0")]);
    let outcome = strict.send(&Incoming {
        method: "GET",
        path: "/feed",
        upgrade: Some("websocket"),
        authorization: Some(&short),
        ..Incoming::default()
    });
    assert_eq!(
        outcome.forward.unwrap().relay,
        Some(pipeline::Relay { close_at_ms: Some((NOW as u64 + 60) * 1000), revocation: None })
    );
    // Without an Upgrade, a WebSocket rule is plain HTTP.
    assert_eq!(w.call("GET", "/live", None, None).forward.unwrap().relay, None);
}

#[test]
fn the_edge_says_who_the_client_is_and_how_it_came() {
    let w = gateway_world(&[]);
    let request = Incoming {
        method: "GET",
        path: "/anything",
        host: Some("api.example.com"),
        scheme: Some("https"),
        address: Some("198.51.100.7"),
        ..Incoming::default()
    };
    let headers = w.send(&request).forward.expect("forwarded").headers;
    for (name, value) in
        [("x-forwarded-host", "api.example.com"), ("x-forwarded-proto", "https"), ("x-forwarded-for", "198.51.100.7")]
    {
        let values: Vec<&str> = headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, [value], "{name}: {headers:?}");
    }
}

#[test]
fn a_gateway_preflight_offers_the_methods_of_the_matching_rules_and_the_configured_headers() {
    let w = gateway_world(&[
        ("CORS_ALLOWED_ORIGINS", APP),
        ("CORS_ALLOWED_HEADERS", "X-Request-Id"),
        ("CORS_MAX_AGE_SECONDS", "120"),
    ]);
    let preflight =
        |path| w.send(&Incoming { method: "OPTIONS", path, origin: Some(APP), preflight: true, ..Incoming::default() });
    let orders = preflight("/orders/7");
    assert!(orders.forward.is_none(), "a preflight is the edge's own");
    let r = orders.response;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD, DELETE, POST, PUT, PATCH, OPTIONS"));
    assert_eq!(r.header("access-control-allow-headers"), Some("Authorization, Content-Type, DPoP, X-Request-Id"));
    assert_eq!(r.header("access-control-max-age"), Some("120"));
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    let only_orders = gateway_world(&[
        ("CORS_ALLOWED_ORIGINS", APP),
        ("ROUTES", r#"[{"path": "/orders/:id", "methods": ["GET", "DELETE"]}]"#),
    ]);
    let r = only_orders
        .send(&Incoming {
            method: "OPTIONS",
            path: "/orders/7",
            origin: Some(APP),
            preflight: true,
            ..Incoming::default()
        })
        .response;
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD, DELETE, OPTIONS"));
    assert_eq!(r.header("access-control-max-age"), Some("600"), "the default");
    // The demo routes are the worker's: GET, and a DPoP proof may be sent too.
    let demo = cors_world().call("OPTIONS", "/api/private", None, Some(APP)).response;
    assert_eq!(demo.header("access-control-allow-headers"), Some("Authorization, Content-Type, DPoP"));
}

#[test]
fn a_browser_may_read_the_challenge_the_retry_time_and_the_dpop_nonce() {
    let r = cors_world().call("GET", "/api/private", None, Some(APP)).response;
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("WWW-Authenticate, Retry-After, DPoP-Nonce, Mcp-Session-Id")
    );
}

#[test]
fn a_recheck_that_claimed_the_background_refresh_keeps_it_when_the_token_is_verified_afresh() {
    let w = world();
    let token = valid_token();
    assert_eq!(w.get("/api/private", &token).status, 200);
    // "key-1" is republished with other material and fetched; then those keys, too, go stale.
    let mut impostor = key(2).public_jwk();
    impostor["kid"] = json!("key-1");
    w.io.issuer_serves(&json!({ "keys": [impostor] }));
    let later = NOW as u64 * 1000 + 601_000;
    block_on(w.issuers.get(0).unwrap().store.refresh(later, &w.io));
    w.now.set(later + 601_000);
    // The recheck of the cached token claims the refresh (the only claim this cooldown grants),
    // then finds its key changed and verifies afresh: the claim must survive that second lookup.
    let outcome = w.call("GET", "/api/private", Some(&format!("Bearer {token}")), None);
    assert_invalid_token(&outcome.response, "The token signature is invalid");
    assert!(outcome.background_refresh.is_some(), "the claimed refresh was dropped: stale keys for another cooldown");
}

// ---- decisions ----

/// The decision's rule, status, reason, issuer, kid and cache use, as plain values.
type Decided<'a> = (Option<&'a str>, u16, &'a str, Option<&'a str>, Option<&'a str>, Option<CacheUse>);

fn decided(outcome: &Outcome) -> Decided<'_> {
    let d = &outcome.decision;
    (d.rule.as_deref(), d.status, d.reason.as_str(), d.issuer.as_deref(), d.kid.as_deref(), d.cache)
}

#[test]
fn every_answer_says_which_rule_decided_and_why() {
    let w = world();
    let bearer = |token: &str| format!("Bearer {token}");
    let good = bearer(&valid_token());
    let call = |method, path, authorization: Option<&str>| w.call(method, path, authorization, None);
    assert_eq!(decided(&call("GET", "/api/public", None)), (Some("/api/public"), 200, "public", None, None, None));
    assert_eq!(
        decided(&call("GET", "/api/private", Some(&good))),
        (Some("/api/private"), 200, "ok", Some(ISSUER), Some("key-1"), Some(CacheUse::Miss))
    );
    assert_eq!(
        decided(&call("GET", "/api/private", Some(&good))),
        (Some("/api/private"), 200, "ok", Some(ISSUER), Some("key-1"), Some(CacheUse::Hit))
    );
    assert_eq!(
        decided(&call("GET", "/api/private-scoped", Some(&good))),
        (Some("/api/private-scoped"), 403, "insufficient_scope", Some(ISSUER), Some("key-1"), Some(CacheUse::Hit))
    );
    assert_eq!(decided(&call("GET", "/api/nope", None)), (None, 404, "not_found", None, None, None));
    assert_eq!(decided(&call("GET", "/api//private", None)), (None, 400, "ambiguous_path", None, None, None));
    assert_eq!(decided(&call("POST", "/api/private", None)), (None, 405, "method_not_allowed", None, None, None));
    assert_eq!(
        decided(&call("GET", "/api/private", None)),
        (Some("/api/private"), 401, "missing_authorization", None, None, None)
    );
    assert_eq!(decided(&call("OPTIONS", "/api/private", None)).2, "preflight");
}

#[test]
fn a_refused_token_names_its_reason_and_never_a_kid_or_issuer_the_edge_does_not_hold() {
    let w = world();
    let refused = |token: String| {
        let outcome = w.call("GET", "/api/private", Some(&format!("Bearer {token}")), None);
        let (_, status, reason, issuer, kid, cache) = decided(&outcome);
        (status, reason.to_owned(), issuer.map(str::to_owned), kid.map(str::to_owned), cache)
    };
    let held = Some(ISSUER.to_owned());
    let unknown_kid = sign(&json!({ "alg": "RS256", "kid": "attacker-text" }), &mint().claims(), key(1));
    assert_eq!(refused(unknown_kid), (401, "unknown_kid".into(), held.clone(), None, Some(CacheUse::Miss)));
    let other_issuer = token_with(|c| c["iss"] = json!("https://attacker.example/"));
    assert_eq!(refused(other_issuer), (401, "untrusted_issuer".into(), None, None, Some(CacheUse::Miss)));
    let forged = sign(&json!({ "alg": "RS256", "kid": "key-1" }), &mint().claims(), key(2));
    assert_eq!(
        refused(forged),
        (401, "bad_signature".into(), held.clone(), Some("key-1".into()), Some(CacheUse::Miss))
    );
    for (edit, reason) in [
        (json!({ "exp": NOW - 3600 }), "expired"),
        (json!({ "nbf": NOW + 3600 }), "not_yet_valid"),
        (json!({ "aud": "https://other.example" }), "wrong_audience"),
    ] {
        let token = token_with(|c| {
            for (k, v) in edit.as_object().unwrap() {
                c[k] = v.clone();
            }
        });
        assert_eq!(refused(token).1, reason);
    }
    assert_eq!(refused("abc".into()).1, "malformed_token");
    let none = sign(&json!({ "alg": "none", "kid": "key-1" }), &mint().claims(), key(1));
    assert_eq!(refused(none).1, "unsupported_alg");
    let bound = token_with(|c| c["cnf"] = json!({ "jkt": "x".repeat(43) }));
    assert_eq!(refused(bound).1, "token_binding");
}

#[test]
fn a_forwarded_request_and_a_gateway_preflight_are_decided_too() {
    let w = gateway_world(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com")]);
    let token = format!("Bearer {}", token_with(|c| c["scope"] = json!("read:orders")));
    let outcome = w.call("GET", "/orders/7", Some(&token), None);
    assert!(outcome.forward.is_some());
    assert_eq!(decided(&outcome), (Some("/orders/:id"), 200, "ok", Some(ISSUER), Some("key-1"), Some(CacheUse::Miss)));
    let public = w.call("GET", "/anything", None, None);
    assert_eq!(decided(&public), (Some("/*"), 200, "public", None, None, None));
    let preflight = w.send(&Incoming {
        method: "OPTIONS",
        path: "/orders/7",
        origin: Some("https://app.example.com"),
        preflight: true,
        ..Incoming::default()
    });
    assert_eq!(decided(&preflight), (None, 204, "preflight", None, None, None));
    let broken = world_with(&[("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", "[")], &[key(1)]);
    assert_eq!(decided(&broken.call("GET", "/x", None, None)), (None, 500, "misconfigured", None, None, None));
}

// ---- rules and headers from any claim ----

const CLAIM_ROUTES: &str = r#"[
    {"path": "/org/*", "claims": {"org_id": "org_123", "https://example.com/roles": ["admin", "editor"]}},
    {"path": "/*", "auth": "public"}
]"#;

#[test]
fn a_claim_rule_admits_a_token_whose_claims_hold_and_refuses_others_with_403_naming_the_claim_only() {
    let w = world_with(
        &[
            ("ORIGIN_URL", "https://origin.example.com"),
            ("ROUTES", CLAIM_ROUTES),
            ("CLAIM_HEADERS", r#"{"X-Auth-Org": "org_id", "X-Auth-Email": "email"}"#),
        ],
        &[key(1)],
    );
    let with_claims = |org: Value, roles: Value| {
        token_with(|c| {
            c["org_id"] = org;
            c["https://example.com/roles"] = roles;
        })
    };
    let good = with_claims(json!("org_123"), json!(["viewer", "editor"]));
    for _ in 0..2 {
        // The second time from the token cache, which kept the claims.
        let outcome = w.call("GET", "/org/reports", Some(&format!("Bearer {good}")), None);
        let forward = outcome.forward.expect("forwarded");
        let headers: Vec<(&str, &str)> = forward.claim_headers.iter().map(|(h, v)| (&**h, v.as_str())).collect();
        // No email claim: no header.
        assert_eq!(headers, [("x-auth-org", "org_123")]);
    }
    assert_eq!(w.verifier.checks.get(), 1);
    for (token, claim) in [
        (with_claims(json!("org_999"), json!(["admin"])), "org_id"),
        (with_claims(json!("org_123"), json!(["viewer"])), "https://example.com/roles"),
        (token_with(|c| c["org_id"] = json!("org_123")), "https://example.com/roles"),
    ] {
        let outcome = w.call("GET", "/org/reports", Some(&format!("Bearer {token}")), None);
        assert!(outcome.forward.is_none());
        assert_error(&outcome.response, 403, "access_denied");
        let description = body(&outcome.response)["error_description"].as_str().unwrap().to_owned();
        assert_eq!(description, format!("The token's {claim:?} claim does not satisfy this route"));
        assert!(!description.contains("org_999") && !description.contains("viewer"), "{description}");
        assert_eq!(outcome.decision.reason.as_str(), "claim_mismatch");
    }
}

#[test]
fn claims_are_read_only_when_a_rule_or_claim_header_names_them() {
    let w = gateway_world(&[]);
    let token = token_with(|c| c["org_id"] = json!("org_123"));
    let outcome = w.call("GET", "/orders/1", Some(&format!("Bearer {token}")), None);
    assert!(outcome.forward.is_some() || outcome.response.status == 403);
    let cached = w.tokens.borrow().get(&token).expect("cached");
    assert!(cached.principal.claims.is_empty());
    let named = world_with(&[("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", CLAIM_ROUTES)], &[key(1)]);
    named.call("GET", "/org/x", Some(&format!("Bearer {token}")), None);
    let cached = named.tokens.borrow().get(&token).expect("cached");
    let kept: Vec<&str> = cached.principal.claims.iter().map(|(n, _)| &**n).collect();
    assert_eq!(kept, ["org_id"]);
}

/// `DPOP_REPLAY=fleet`: a proof accepted by one isolate is refused by another (two worlds, two
/// isolates, sharing one fleet store), and a store that cannot be asked refuses (fail closed).
#[test]
fn with_fleet_replay_a_proof_used_in_one_isolate_is_refused_in_another_and_an_unreachable_store_refuses() {
    let first = world_with(&[("DPOP_REPLAY", "fleet")], &[key(1)]);
    let second = world_with(&[("DPOP_REPLAY", "fleet")], &[key(1)]);
    *second.io.fleet_used.borrow_mut() = first.io.fleet_used.borrow().clone();
    let k = ProofKey::es256();
    let token = bound_token(&k);
    let proof = Proof::new(&k, "GET", URL, &token, first.now_secs(), "fleet-once").sign(&k);
    let authorization = format!("DPoP {token}");
    assert_eq!(first.dpop("GET", URL, &authorization, Some(&proof)).response.status, 200);
    assert_eq!(first.io.fleet_calls.get(), 1);
    // The same proof at another isolate: new to it, used in the fleet.
    assert_proof_error(&second.dpop("GET", URL, &authorization, Some(&proof)), "The DPoP proof was already used");
    // A replay to the first isolate is refused by its own memory, without asking the fleet.
    assert_proof_error(&first.dpop("GET", URL, &authorization, Some(&proof)), "The DPoP proof was already used");
    assert_eq!(first.io.fleet_calls.get(), 1);
    // Without `fleet`, the second isolate would have taken it: the default is per isolate.
    let isolated = world();
    assert_eq!(isolated.dpop("GET", URL, &authorization, Some(&proof)).response.status, 200);
    assert_eq!(isolated.io.fleet_calls.get(), 0);
    // The store down: refused with 503, the proof not taken (a retry once it is back passes).
    *second.io.fleet_used.borrow_mut() = None;
    let fresh = Proof::new(&k, "GET", URL, &token, second.now_secs(), "fleet-two").sign(&k);
    let outcome = second.dpop("GET", URL, &authorization, Some(&fresh));
    assert_error(&outcome.response, 503, "temporarily_unavailable");
    assert_eq!(outcome.response.header("retry-after"), Some("1"));
    assert_eq!(outcome.decision.reason.as_str(), "replay_store_unavailable");
    assert!(second.io.events().contains(&"replay_store_unavailable".to_owned()));
    // A misspelt setting is a configuration error, not the default.
    let w = world_with(&[("DPOP_REPLAY", "global")], &[key(1)]);
    assert_error(&w.get("/api/private", &valid_token()), 500, "server_misconfigured");
}

/// With `DPOP_REPLAY=fleet`, a key past its share of this isolate's memory is not refused: the
/// fleet's store records what the isolate cannot, and still refuses a second use.
#[test]
fn with_fleet_replay_a_full_isolate_memory_defers_to_the_fleet() {
    let w = world_with(&[("DPOP_REPLAY", "fleet")], &[key(1)]);
    let k = ProofKey::es256();
    let token = bound_token(&k);
    let authorization = format!("DPoP {token}");
    for i in 0..PROOFS_PER_KEY {
        let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), &format!("early-{i}")).sign(&k);
        assert_eq!(w.dpop("GET", URL, &authorization, Some(&proof)).response.status, 200, "proof {i}");
    }
    let past_share = Proof::new(&k, "GET", URL, &token, w.now_secs(), "past-share").sign(&k);
    assert_eq!(w.dpop("GET", URL, &authorization, Some(&past_share)).response.status, 200);
    assert_eq!(w.proofs.borrow().len(), PROOFS_PER_KEY, "the isolate did not remember it");
    assert_proof_error(&w.dpop("GET", URL, &authorization, Some(&past_share)), "The DPoP proof was already used");
    assert!(!w.io.events().contains(&"replay_memory_full".to_owned()));
}

// ---- revoking now: the deny list ----

fn denying(entries: &[(&str, Option<&str>)]) -> World {
    let mut w = world();
    w.denylist = Some(RefCell::new(DenyList::new(30)));
    *w.io.denied.borrow_mut() = Ok(entries
        .iter()
        .map(|(key, reason)| DeniedEntry { key: key.to_string(), reason: reason.map(str::to_owned) })
        .collect());
    w
}

fn assert_revoked(outcome: &Outcome) {
    assert_invalid_token(&outcome.response, "The token is revoked");
    assert_eq!(outcome.decision.reason.as_str(), "revoked");
}

#[test]
fn a_token_the_deny_list_names_is_revoked_cached_or_not_and_the_reason_is_only_logged() {
    let w = denying(&[
        ("sub:auth0|departed", Some("left the company")),
        ("jti:token-7", None),
        ("client:leaky-client", None),
        ("iss:https://elsewhere.example/", None),
    ]);
    let bearer = |token: String| format!("Bearer {token}");
    let fine = bearer(valid_token());
    // Verified and cached before the entry matters: the cache never skips the list.
    assert_eq!(w.call("GET", "/api/private", Some(&fine), None).response.status, 200);
    assert_eq!(w.call("GET", "/api/private", Some(&fine), None).response.status, 200);
    for token in [
        token_with(|c| c["sub"] = json!("auth0|departed")),
        token_with(|c| c["jti"] = json!("token-7")),
        token_with(|c| c["azp"] = json!("leaky-client")),
        token_with(|c| c["client_id"] = json!("leaky-client")),
    ] {
        let token = bearer(token);
        for _ in 0..2 {
            let outcome = w.call("GET", "/api/private", Some(&token), None);
            assert_revoked(&outcome);
            assert!(!outcome.response.body.as_deref().unwrap().contains("left the company"));
        }
    }
    // azp wins over client_id; a jti of the wrong type is no jti.
    let azp_first = token_with(|c| {
        c["azp"] = json!("good-client");
        c["client_id"] = json!("leaky-client");
    });
    assert_eq!(w.get("/api/private", &azp_first).status, 200);
    assert_eq!(w.get("/api/private", &token_with(|c| c["jti"] = json!(7))).status, 200);
    let logged = w.io.logs.borrow().iter().any(|l| l.contains("\"revoked\"") && l.contains("left the company"));
    assert!(logged, "{:?}", w.io.logs.borrow());
    // One listing served every request.
    assert_eq!(w.io.deny_lists.get(), 1);
    // A public route never consults it.
    assert_eq!(w.call("GET", "/api/public", None, None).response.status, 200);
}

#[test]
fn the_issuer_entry_revokes_every_token_of_that_issuer() {
    let w = denying(&[("iss:https://tenant.example.auth0.com/", Some("tenant compromised"))]);
    assert_revoked(&w.call("GET", "/api/private", Some(&format!("Bearer {}", valid_token())), None));
}

/// `"revocation": "fleet"`: the rule judges tokens by a copy of the fleet's revocations at most a
/// second old, listed in the foreground; kept answers last no longer than the copy; a store that
/// cannot be listed refuses. Other rules never read it.
#[test]
fn a_fleet_revocation_rule_reads_a_copy_at_most_a_second_old_and_fails_closed() {
    let routes = r#"[{"path": "/now/*", "revocation": "fleet"}, {"path": "/later/*"}]"#;
    let w = gateway_world(&[("ROUTES", routes)]);
    let token = valid_token();
    let bearer = format!("Bearer {token}");
    assert_eq!(w.call("GET", "/now/x", Some(&bearer), None).response.status, 200);
    assert_eq!(w.io.fleet_lists.get(), 1);
    // Cached token: kept no longer than the copy that judged it.
    let outcome = w.call("GET", "/now/x", Some(&bearer), None);
    assert_eq!(outcome.response.status, 200);
    let copy_end = w.now.get() + 1000;
    assert!(outcome.kept_until.is_some_and(|until| until <= copy_end), "{:?}", outcome.kept_until);
    assert_eq!(w.io.fleet_lists.get(), 1, "a copy under a second old is used as it is");
    // The operator revokes the subject: the next request a second later sees it.
    *w.io.fleet_revoked.borrow_mut() =
        Ok((2, vec![DeniedEntry { key: format!("sub:{}", mint().claims()["sub"].as_str().unwrap()), reason: None }]));
    w.now.set(w.now.get() + 999);
    assert_eq!(w.call("GET", "/now/x", Some(&bearer), None).response.status, 200);
    w.now.set(w.now.get() + 1);
    assert_revoked(&w.call("GET", "/now/x", Some(&bearer), None));
    assert_eq!(w.io.fleet_lists.get(), 2);
    // A rule on the KV list (none bound here) is not judged by the fleet's copy.
    assert_eq!(w.call("GET", "/later/x", Some(&bearer), None).response.status, 200);
    // The store cannot be listed once the copy is a second old: refused, never let through.
    *w.io.fleet_revoked.borrow_mut() = Err("unreachable".into());
    w.now.set(w.now.get() + 1000);
    let outcome = w.call("GET", "/now/x", Some(&format!("Bearer {}", valid_token())), None);
    assert_error(&outcome.response, 503, "temporarily_unavailable");
    assert_eq!(outcome.decision.reason.as_str(), "denylist_unavailable");
    // Not on a public rule: it has no token to judge.
    let w = gateway_world(&[("ROUTES", r#"[{"path": "/*", "auth": "public", "revocation": "fleet"}]"#)]);
    assert_error(&w.call("GET", "/x", None, None).response, 500, "server_misconfigured");
}

/// Review finding 5: a socket relayed for a token stayed open after the token was revoked. Now the
/// relay carries the token's ids and is judged again while open: by the deny list's copy (listed
/// again when due) and, on a fleet rule, by the fleet's.
#[test]
fn an_open_relay_is_judged_again_and_a_revoked_tokens_socket_is_to_be_closed() {
    let routes =
        r#"[{"path": "/feed", "websocket": true}, {"path": "/now", "websocket": true, "revocation": "fleet"}]"#;
    let mut w = gateway_world(&[("ROUTES", routes)]);
    w.denylist = Some(RefCell::new(DenyList::new(30)));
    let token = format!("Bearer {}", valid_token());
    let open = |path: &'static str| {
        let outcome = w.send(&Incoming {
            method: "GET",
            path,
            upgrade: Some("websocket"),
            authorization: Some(&token),
            ..Incoming::default()
        });
        outcome.forward.and_then(|f| f.relay).and_then(|r| r.revocation).expect("a relay judged by a list")
    };
    let kv_check = open("/feed");
    assert_eq!((kv_check.every_ms, kv_check.kv, kv_check.fleet), (30_000, true, false));
    let fleet_check = open("/now");
    assert_eq!((fleet_check.every_ms, fleet_check.kv, fleet_check.fleet), (1000, true, true));
    assert_eq!(pipeline::RelayRevocation::from_json(&fleet_check.to_json()).as_ref(), Some(&fleet_check));
    let revoked = |check: &pipeline::RelayRevocation| {
        block_on(pipeline::relay_revoked(check, w.denylist.as_ref(), Some(&w.fleet), &w.io, w.now.get()))
    };
    assert!(!revoked(&kv_check) && !revoked(&fleet_check));
    let subject = format!("sub:{}", mint().claims()["sub"].as_str().unwrap());
    // Written to KV: the copy is listed again once due, and the socket is then to be closed.
    *w.io.denied.borrow_mut() = Ok(vec![DeniedEntry { key: subject.clone(), reason: None }]);
    assert!(!revoked(&kv_check), "the copy is not due yet");
    w.now.set(w.now.get() + 30_000);
    assert!(revoked(&kv_check));
    // Written to the fleet: a second later at most.
    *w.io.denied.borrow_mut() = Ok(Vec::new());
    w.now.set(w.now.get() + 30_000);
    assert!(!revoked(&fleet_check));
    *w.io.fleet_revoked.borrow_mut() = Ok((9, vec![DeniedEntry { key: subject, reason: None }]));
    w.now.set(w.now.get() + 1000);
    assert!(revoked(&fleet_check));
    // A listing that fails keeps the last copy.
    *w.io.fleet_revoked.borrow_mut() = Err("unreachable".into());
    w.now.set(w.now.get() + 1000);
    assert!(revoked(&fleet_check));
    // A public socket has nothing to judge.
    let public = w.send(&Incoming { method: "GET", path: "/feed", upgrade: Some("websocket"), ..Incoming::default() });
    assert_error(&public.response, 401, "missing_authorization");
}

#[test]
fn the_copy_is_listed_again_in_the_background_once_per_interval_and_a_failure_keeps_the_last_copy() {
    let w = denying(&[]);
    let token = valid_token();
    let call = |w: &World| w.call("GET", "/api/private", Some(&format!("Bearer {token}")), None);
    let first = call(&w);
    assert_eq!((first.response.status, first.denylist_refresh), (200, false));
    w.now.set(w.now.get() + 30_000);
    // Due: this response asks for a listing, the next within the interval does not.
    assert!(call(&w).denylist_refresh);
    assert!(!call(&w).denylist_refresh);
    // The edge lists after the response; the new entry holds from then on.
    *w.io.denied.borrow_mut() = Ok(vec![DeniedEntry { key: "sub:dev-user|1".into(), reason: None }]);
    block_on(pipeline::refresh_denylist(w.denylist.as_ref().unwrap(), &w.io, w.now.get()));
    assert_revoked(&call(&w));
    // KV failing: the last copy stays in force, with a log line.
    *w.io.denied.borrow_mut() = Err("KV list failed".into());
    w.now.set(w.now.get() + 30_000);
    assert!(call(&w).denylist_refresh);
    block_on(pipeline::refresh_denylist(w.denylist.as_ref().unwrap(), &w.io, w.now.get()));
    assert_revoked(&call(&w));
    assert!(w.io.events().contains(&"denylist_unreadable".to_owned()));
}

#[test]
fn an_isolate_that_never_read_the_list_refuses_tokens_with_503_until_it_can() {
    let w = denying(&[]);
    *w.io.denied.borrow_mut() = Err("KV list failed".into());
    let token = format!("Bearer {}", valid_token());
    let outcome = w.call("GET", "/api/private", Some(&token), None);
    assert_error(&outcome.response, 503, "temporarily_unavailable");
    assert_eq!(outcome.response.header("retry-after"), Some("5"));
    assert_eq!(outcome.decision.reason.as_str(), "denylist_unavailable");
    assert!(w.io.events().contains(&"denylist_unreadable".to_owned()));
    // Requests without a token are not held up by it.
    assert_eq!(w.call("GET", "/api/public", None, None).response.status, 200);
    assert_error(&w.call("GET", "/api/private", None, None).response, 401, "missing_authorization");
    *w.io.denied.borrow_mut() = Ok(Vec::new());
    assert_eq!(w.call("GET", "/api/private", Some(&token), None).response.status, 200);
}

// ---- limits per caller ----

const LIMITED_ROUTES: &str = r#"[
    {"path": "/orders/*", "rate_limit": {"binding": "PER_USER", "key": "subject"}},
    {"path": "/apps/*", "rate_limit": {"binding": "PER_APP", "key": "client", "period": 10}, "scopes": ["apps"]},
    {"path": "/*", "auth": "public", "rate_limit": {"binding": "PER_IP", "key": "ip"}}
]"#;

fn limited_world() -> World {
    let w = world_with(&[("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", LIMITED_ROUTES)], &[key(1)]);
    w.io.rate_limit.set(2);
    w
}

#[test]
fn a_limit_of_n_refuses_request_n_plus_one_of_that_caller_with_429_and_the_period_and_never_forwards_it() {
    let w = limited_world();
    let alice = format!("Bearer {}", Mint { subject: "auth0|alice".into(), ..mint() }.sign(key(1)));
    let bob = format!("Bearer {}", Mint { subject: "auth0|bob".into(), ..mint() }.sign(key(1)));
    for _ in 0..2 {
        assert!(w.call("GET", "/orders/1", Some(&alice), None).forward.is_some());
    }
    let over = w.call("GET", "/orders/1", Some(&alice), None);
    assert!(over.forward.is_none());
    assert_error(&over.response, 429, "rate_limited");
    assert_eq!(over.response.header("retry-after"), Some("60"));
    assert_eq!(over.decision.reason.as_str(), "rate_limited");
    // Another subject has a budget of its own; the key names the verified issuer and subject.
    assert!(w.call("GET", "/orders/1", Some(&bob), None).forward.is_some());
    let spent = w.io.spent.borrow().clone();
    assert_eq!(spent[0], ("PER_USER".to_owned(), format!("sub {ISSUER} auth0|alice")));
}

#[test]
fn an_invalid_or_unauthorised_token_never_spends_budget_and_public_rules_spend_per_address() {
    let w = limited_world();
    let forged = format!("Bearer {}", sign(&json!({ "alg": "RS256", "kid": "key-1" }), &mint().claims(), key(2)));
    for _ in 0..5 {
        assert_error(&w.call("GET", "/orders/1", Some(&forged), None).response, 401, "invalid_token");
        assert_error(&w.call("GET", "/orders/1", None, None).response, 401, "missing_authorization");
    }
    let without_scope = format!("Bearer {}", token_with(|c| c["azp"] = json!("app-1")));
    assert_error(&w.call("GET", "/apps/x", Some(&without_scope), None).response, 403, "insufficient_scope");
    assert!(w.io.spent.borrow().is_empty(), "{:?}", w.io.spent.borrow());
    // The client key, and its stated period.
    let app = format!(
        "Bearer {}",
        token_with(|c| {
            c["azp"] = json!("app-1");
            c["scope"] = json!("apps");
        })
    );
    for _ in 0..2 {
        assert!(w.call("GET", "/apps/x", Some(&app), None).forward.is_some());
    }
    assert_eq!(w.call("GET", "/apps/x", Some(&app), None).response.header("retry-after"), Some("10"));
    let from = |address| Incoming { method: "GET", path: "/health", address: Some(address), ..Incoming::default() };
    for _ in 0..2 {
        assert!(w.send(&from("203.0.113.1")).forward.is_some());
    }
    assert_error(&w.send(&from("203.0.113.1")).response, 429, "rate_limited");
    assert!(w.send(&from("203.0.113.2")).forward.is_some());
}

#[test]
fn rules_without_a_limit_spend_nothing() {
    let w = gateway_world(&[]);
    assert!(w.call("GET", "/anything", None, None).forward.is_some());
    assert!(w.io.spent.borrow().is_empty());
}

// ---- answers fixed by the head (entry.mjs answers their repeats without calling in) ----

#[test]
fn only_public_answers_and_forwards_are_fixed_by_the_request_head() {
    let w = world();
    let token = format!("Bearer {}", valid_token());
    let public = w.call("GET", "/api/public", Some(&token), Some("https://app.example.com"));
    assert_eq!(public.response.status, 200);
    assert!(public.fixed, "a public message reads nothing beyond the head");
    for (method, path, authorization) in [
        ("GET", "/api/private", Some(token.as_str())),
        ("GET", "/api/private", None),
        ("GET", "/api/private-scoped", Some(token.as_str())),
        ("GET", "/nowhere", None),
        ("POST", "/api/public", None),
    ] {
        let outcome = w.call(method, path, authorization, None);
        assert!(!outcome.fixed, "{method} {path} ({}) was fixed", outcome.response.status);
    }
    let gateway = gateway_world(&[]);
    let forwarded = gateway.call("GET", "/anything", None, None);
    assert!(forwarded.forward.is_some() && forwarded.fixed, "a public forward is made from the head");
    let token = format!("Bearer {}", valid_token());
    let verified = gateway.call("DELETE", "/orders/7", Some(&token), None);
    assert!(verified.forward.is_some() && !verified.fixed, "a verified forward depends on the clock");
    let socket = Incoming { method: "GET", path: "/live", upgrade: Some("websocket"), ..Incoming::default() };
    let relayed = gateway.send(&socket);
    assert!(relayed.forward.is_some() && !relayed.fixed, "a relayed WebSocket is a connection of its own");
    let limited = limited_world();
    let spent = limited.call("GET", "/anything", None, None);
    assert!(spent.forward.is_some() && !spent.fixed, "a limit is spent per request");
}

// ---- answers kept for their head a while: an admitted Bearer token ----

fn installed(w: &World) -> u64 {
    pipeline::installed(&w.issuers, w.denylist.as_ref(), Some(&w.fleet))
}

#[test]
fn an_admitted_bearer_token_is_kept_for_its_head_until_the_soonest_of_its_bounds() {
    let start = NOW as u64 * 1000;
    let bearer = |token: &str| format!("Bearer {token}");
    let w = world();
    let token = valid_token();
    let first = w.call("GET", "/api/private", Some(&bearer(&token)), None);
    assert_eq!((first.decision.cache, first.kept_until), (Some(CacheUse::Miss), None), "a token seen once is not kept");
    let again = w.call("GET", "/api/private", Some(&bearer(&token)), None);
    assert_eq!(
        (again.response.status, again.kept_until),
        (200, Some(start + pipeline::KEEP_MS)),
        "an hour left: the cap"
    );
    // Leeway 30 s: a token whose exp is 29.5 s past is refused from the next second on.
    w.now.set(start + 500);
    let expiring = token_with(|c| c["exp"] = json!(NOW - 29));
    assert_eq!(w.get("/api/private", &expiring).status, 200);
    let last = w.call("GET", "/api/private", Some(&bearer(&expiring)), None);
    assert_eq!((last.response.status, last.kept_until), (200, Some(start + 1_000)));
    w.now.set(start + 999);
    assert_eq!(w.get("/api/private", &expiring).status, 200);
    w.now.set(start + 1_000);
    assert_invalid_token(&w.get("/api/private", &expiring), "The token is expired");
    // Keys fetched at `start` are fresh for max-age (600 s), then a refresh is asked for.
    w.now.set(start + 599_700);
    assert_eq!(w.call("GET", "/api/private", Some(&bearer(&token)), None).kept_until, Some(start + 600_000));
    w.now.set(start + 601_000);
    let stale = w.call("GET", "/api/private", Some(&bearer(&token)), None);
    assert_eq!((stale.response.status, stale.background_refresh, stale.kept_until), (200, Some(0), None));
    // The deny list's copy, listed at `start`, is due again 30 s later.
    let w = denying(&[]);
    w.call("GET", "/api/private", Some(&bearer(&token)), None);
    assert_eq!(w.call("GET", "/api/private", Some(&bearer(&token)), None).kept_until, Some(start + pipeline::KEEP_MS));
    w.now.set(start + 29_600);
    assert_eq!(w.call("GET", "/api/private", Some(&bearer(&token)), None).kept_until, Some(start + 30_000));
    w.now.set(start + 30_000);
    let due = w.call("GET", "/api/private", Some(&bearer(&token)), None);
    assert_eq!((due.denylist_refresh, due.kept_until), (true, None));
}

#[test]
fn only_an_admitted_bearer_token_without_a_limit_or_a_socket_is_kept() {
    let w = world();
    let bearer = format!("Bearer {}", valid_token());
    // Twice each: the second time the token is a cache hit, which alone is not enough.
    for _ in 0..2 {
        for (path, authorization) in [
            ("/api/public", None),
            ("/api/private", None),
            ("/api/private-scoped", Some(bearer.as_str())),
            ("/nowhere", Some(bearer.as_str())),
        ] {
            let outcome = w.call("GET", path, authorization, None);
            assert_eq!(outcome.kept_until, None, "{path} ({}) was kept", outcome.response.status);
        }
    }
    let expired = format!("Bearer {}", token_with(|c| c["exp"] = json!(NOW - 60)));
    assert_eq!(w.call("GET", "/api/private", Some(&expired), None).kept_until, None);
    // A DPoP proof is good once: the same head again must be refused as a replay.
    let k = ProofKey::es256();
    let token = bound_token(&k);
    for jti in ["jti-kept-1", "jti-kept-2"] {
        let proof = Proof::new(&k, "GET", URL, &token, w.now_secs(), jti).sign(&k);
        let bound = w.dpop("GET", URL, &format!("DPoP {token}"), Some(&proof));
        assert_eq!((bound.response.status, bound.kept_until), (200, None));
    }
    let gateway = gateway_world(&[]);
    gateway.call("DELETE", "/orders/7", Some(&bearer), None);
    let verified = gateway.call("DELETE", "/orders/7", Some(&bearer), None);
    assert!(verified.forward.is_some() && verified.kept_until.is_some(), "a verified forward is kept");
    let socket = Incoming {
        method: "GET",
        path: "/feed",
        authorization: Some(&bearer),
        upgrade: Some("websocket"),
        ..Incoming::default()
    };
    let relayed = gateway.send(&socket);
    assert!(
        relayed.forward.is_some() && relayed.kept_until.is_none(),
        "a relayed WebSocket is a connection of its own"
    );
    let limited = limited_world();
    limited.call("GET", "/orders/1", Some(&bearer), None);
    let spent = limited.call("GET", "/orders/1", Some(&bearer), None);
    assert!(spent.forward.is_some() && spent.kept_until.is_none(), "a limit is spent per request");
}

#[test]
fn a_replaced_key_set_or_deny_list_copy_changes_what_kept_answers_are_checked_against() {
    let w = denying(&[]);
    let token = valid_token();
    let call = |w: &World| w.call("GET", "/api/private", Some(&format!("Bearer {token}")), None);
    call(&w);
    let listed_and_fetched = installed(&w);
    assert_eq!(listed_and_fetched, 2, "one key set fetched, one copy listed");
    call(&w);
    assert_eq!(installed(&w), listed_and_fetched, "answering from memory replaces nothing");
    let later = w.now.get() + 601_000;
    block_on(w.issuers.get(0).unwrap().store.refresh(later, &w.io));
    assert_eq!(installed(&w), listed_and_fetched + 1);
    *w.io.denied.borrow_mut() = Ok(vec![DeniedEntry { key: "sub:dev-user|1".into(), reason: None }]);
    block_on(pipeline::refresh_denylist(w.denylist.as_ref().unwrap(), &w.io, later));
    assert_eq!(installed(&w), listed_and_fetched + 2);
    w.now.set(later);
    assert_revoked(&call(&w));
}

// ---------------------------------------------------------------- MCP: a protected resource

const MCP_RESOURCE: &str = "https://api.example.com/mcp";
const MCP_ROUTES: &str = r#"[
    {"path": "/mcp", "methods": ["GET", "POST", "DELETE"], "resource": "https://api.example.com/mcp",
     "scopes": ["mcp:use"],
     "mcp": {"tools/call": ["mcp:tools"], "tools/call:delete_repo": ["repo:admin"], "resources/read": ["files:read"]}},
    {"path": "/open-mcp", "methods": ["GET", "POST"], "auth": "public", "mcp": {}},
    {"path": "/api/*"}
]"#;

fn mcp_world(extra: &[(&str, &str)]) -> World {
    let audiences = format!("{AUDIENCE},{MCP_RESOURCE}");
    let mut vars = vec![
        ("ORIGIN_URL", "https://origin.example.com"),
        ("ROUTES", MCP_ROUTES),
        ("CORS_ALLOWED_ORIGINS", APP),
        ("AUTH0_AUDIENCE", audiences.as_str()),
    ];
    vars.extend_from_slice(extra);
    world_with(&vars, &[key(1)])
}

fn mcp_token(scope: &str) -> String {
    token_with(|c| {
        c["aud"] = json!(MCP_RESOURCE);
        c["scope"] = json!(scope);
    })
}

impl World {
    /// An MCP POST as the edge makes it: the head first; when the pipeline asks for the body, again
    /// with the body (the bytes entry.mjs reads).
    fn mcp_post(&self, path: &str, authorization: Option<&str>, origin: Option<&str>, body: &str) -> Outcome {
        let request = Incoming { method: "POST", path, authorization, origin, ..Incoming::default() };
        let first = self.send(&request);
        match first.needs_body {
            Some(limit) => {
                let read = &body.as_bytes()[..body.len().min(limit as usize + 1)];
                let body = Body { bytes: read, media_type: Some("application/json"), ..Body::default() };
                let second = self.send(&Incoming { body: Some(body), ..request });
                assert_eq!(second.needs_body, None, "the body is asked for once");
                second
            }
            None => first,
        }
    }
}

fn tool_call(tool: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#)
}

fn challenges(response: &HttpResponse) -> Vec<&str> {
    response.headers.iter().filter(|(n, _)| *n == "www-authenticate").map(|(_, v)| v.as_str()).collect()
}

const MCP_METADATA: &str = "https://api.example.com/.well-known/oauth-protected-resource/mcp";

#[test]
fn a_resource_publishes_its_metadata_at_the_path_inserted_well_known_url() {
    let w = mcp_world(&[]);
    let r =
        w.call("GET", "/.well-known/oauth-protected-resource/mcp", None, Some("https://elsewhere.example")).response;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        body(&r),
        json!({
            "resource": MCP_RESOURCE,
            "authorization_servers": [ISSUER],
            "scopes_supported": ["mcp:use", "files:read", "mcp:tools", "repo:admin"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
            "dpop_bound_access_tokens_required": false,
        })
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("cache-control").is_some_and(|c| c.starts_with("public")));
    let required = mcp_world(&[("DPOP", "required")]);
    let r = required.call("GET", "/.well-known/oauth-protected-resource/mcp", None, None).response;
    assert_eq!(body(&r)["dpop_bound_access_tokens_required"], json!(true));
    let off = mcp_world(&[("DPOP", "off")]).call("GET", "/.well-known/oauth-protected-resource/mcp", None, None);
    assert!(body(&off.response).get("dpop_signing_alg_values_supported").is_none());
    // Nothing else under the prefix, and never forwarded.
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/other"] {
        let outcome = w.call("GET", path, None, None);
        assert_eq!((outcome.response.status, outcome.forward.is_some()), (404, false), "{path}");
    }
}

#[test]
fn every_challenge_of_a_resource_names_its_metadata_and_scopes() {
    let w = mcp_world(&[]);
    let r = w.mcp_post("/mcp", None, None, &tool_call("echo")).response;
    assert_error(&r, 401, "missing_authorization");
    assert_eq!(
        challenges(&r),
        [
            format!(r#"Bearer realm="{AUDIENCE}", scope="mcp:use", resource_metadata="{MCP_METADATA}""#),
            format!(r#"DPoP algs="ES256 RS256 PS256 EdDSA", scope="mcp:use", resource_metadata="{MCP_METADATA}""#),
        ]
    );
    // Another rule's challenges stay as they were.
    let r = w.call("GET", "/api/x", None, None).response;
    assert!(challenges(&r).iter().all(|c| !c.contains("resource_metadata")), "{r:?}");
}

#[test]
fn a_resource_accepts_only_tokens_issued_for_it() {
    let w = mcp_world(&[]);
    // The issuer's own audience is not this resource's.
    let api = token_with(|c| c["scope"] = json!("mcp:use mcp:tools"));
    let r = w.mcp_post("/mcp", Some(&format!("Bearer {api}")), None, &tool_call("echo")).response;
    assert_error(&r, 401, "invalid_token");
    assert_eq!(body(&r)["error_description"], json!("The token audience is not accepted"));
    assert!(challenges(&r).iter().all(|c| c.contains(&format!("resource_metadata=\"{MCP_METADATA}\""))));
    // One issued for the resource, in an array too.
    for aud in [json!(MCP_RESOURCE), json!(["https://other.example", MCP_RESOURCE])] {
        let token = token_with(|c| {
            c["aud"] = aud.clone();
            c["scope"] = json!("mcp:use mcp:tools");
        });
        let outcome = w.mcp_post("/mcp", Some(&format!("Bearer {token}")), None, &tool_call("echo"));
        assert!(outcome.forward.is_some(), "{aud}: {:?}", outcome.response);
    }
    // And a resource's token is nothing to the rest of the API.
    let r = w.call("GET", "/api/x", Some(&format!("Bearer {}", mcp_token("mcp:use"))), None).response;
    assert_invalid_token(&r, "The token audience is not accepted");
}

#[test]
fn a_tool_call_needs_the_scopes_its_method_and_tool_name_and_a_403_lists_them_all() {
    let w = mcp_world(&[]);
    let bearer = |scope: &str| format!("Bearer {}", mcp_token(scope));
    let outcome = w.mcp_post("/mcp", Some(&bearer("mcp:use")), None, &tool_call("echo"));
    assert_error(&outcome.response, 403, "insufficient_scope");
    assert!(outcome.forward.is_none());
    let outcome = w.mcp_post("/mcp", Some(&bearer("mcp:use mcp:tools")), None, &tool_call("delete_repo"));
    assert_error(&outcome.response, 403, "insufficient_scope");
    assert_eq!(
        challenges(&outcome.response)[0],
        format!(
            r#"Bearer realm="{AUDIENCE}", error="insufficient_scope", error_description="The token does not grant the required scope", scope="mcp:use mcp:tools repo:admin", resource_metadata="{MCP_METADATA}""#
        )
    );
    assert_eq!(outcome.decision.mcp_method.as_deref(), Some("tools/call"));
    assert_eq!(outcome.decision.mcp_tool.as_deref(), Some("delete_repo"));
    // Stepped up, it goes through; a listing needs the rule's scope only.
    assert!(w
        .mcp_post("/mcp", Some(&bearer("mcp:use mcp:tools repo:admin")), None, &tool_call("delete_repo"))
        .forward
        .is_some());
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let outcome = w.mcp_post("/mcp", Some(&bearer("mcp:use")), None, list);
    assert!(outcome.forward.is_some());
    assert_eq!(
        (outcome.decision.mcp_method.as_deref(), outcome.decision.mcp_tool.as_deref()),
        (Some("tools/list"), None)
    );
    // Without the rule's own scope, nothing.
    assert_error(&w.mcp_post("/mcp", Some(&bearer("mcp:tools")), None, list).response, 403, "insufficient_scope");
}

#[test]
fn a_batch_needs_the_scopes_of_every_message() {
    let w = mcp_world(&[]);
    let batch = format!(
        r#"[{{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{{"uri":"file:///a"}}}}, {}]"#,
        tool_call("echo")
    );
    let short = w.mcp_post("/mcp", Some(&format!("Bearer {}", mcp_token("mcp:use mcp:tools"))), None, &batch);
    assert_error(&short.response, 403, "insufficient_scope");
    assert!(short.response.headers.iter().any(|(_, v)| v.contains(r#"scope="mcp:use files:read mcp:tools""#)));
    let enough = format!("Bearer {}", mcp_token("mcp:use mcp:tools files:read"));
    let outcome = w.mcp_post("/mcp", Some(&enough), None, &batch);
    assert!(outcome.forward.is_some());
    assert_eq!(outcome.decision.mcp_method.as_deref(), Some("batch"));
}

#[test]
fn an_mcp_body_that_is_not_json_rpc_or_too_long_is_refused_and_never_forwarded() {
    let w = mcp_world(&[("MCP_MAX_BODY_BYTES", "200")]);
    let bearer = format!("Bearer {}", mcp_token("mcp:use mcp:tools"));
    for bad in ["", "{", "[]", r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, r#"{"id":1,"method":"x"}"#] {
        let outcome = w.mcp_post("/mcp", Some(&bearer), None, bad);
        assert_error(&outcome.response, 400, "invalid_request");
        assert!(outcome.forward.is_none(), "{bad}");
    }
    let long = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#, "x".repeat(300));
    let outcome = w.mcp_post("/mcp", Some(&bearer), None, &long);
    assert_error(&outcome.response, 413, "payload_too_large");
    assert_eq!(outcome.decision.reason.as_str(), "payload_too_large");
    assert!(outcome.forward.is_none());
    // The body is asked for only once the head is admitted: no token, no read.
    let first = w.send(&Incoming { method: "POST", path: "/mcp", ..Incoming::default() });
    assert_eq!((first.response.status, first.needs_body), (401, None));
}

#[test]
fn an_mcp_rule_refuses_a_page_origin_it_does_not_allow_before_anything_else() {
    let w = mcp_world(&[]);
    let bearer = format!("Bearer {}", mcp_token("mcp:use mcp:tools"));
    for (path, authorization) in [("/mcp", Some(bearer.as_str())), ("/mcp", None), ("/open-mcp", None)] {
        let outcome = w.mcp_post(path, authorization, Some("https://evil.example"), &tool_call("echo"));
        assert_error(&outcome.response, 403, "origin_not_allowed");
        assert!(outcome.forward.is_none());
        assert_eq!(outcome.decision.reason.as_str(), "origin_not_allowed");
    }
    let get = w.call("GET", "/mcp", Some(&bearer), Some("https://evil.example"));
    assert_error(&get.response, 403, "origin_not_allowed");
    // An allowed page, and a client with no Origin at all (not a browser), are served.
    assert!(w.mcp_post("/mcp", Some(&bearer), Some(APP), &tool_call("echo")).forward.is_some());
    assert!(w.mcp_post("/open-mcp", None, None, &tool_call("echo")).forward.is_some());
    // A plain rule does not judge Origin (CORS does, in the browser).
    assert!(w
        .call("GET", "/api/x", Some(&format!("Bearer {}", valid_token())), Some("https://evil.example"))
        .forward
        .is_some());
}

#[test]
fn a_public_mcp_rule_still_reads_its_body_and_needs_no_token() {
    let w = mcp_world(&[]);
    let outcome = w.mcp_post("/open-mcp", None, None, &tool_call("anything"));
    assert!(outcome.forward.is_some(), "{:?}", outcome.response);
    assert!(!outcome.fixed, "an answer that read a body is not kept for its head");
    assert_error(&w.mcp_post("/open-mcp", None, None, "nope").response, 400, "invalid_request");
    // GET (the SSE stream) and DELETE (ending a session) need no body.
    let get = w.call("GET", "/open-mcp", None, None);
    assert_eq!((get.forward.is_some(), get.needs_body), (true, None));
}

#[test]
fn an_mcp_preflight_allows_the_transport_headers() {
    let w = mcp_world(&[]);
    let preflight = w.send(&Incoming {
        method: "OPTIONS",
        path: "/mcp",
        origin: Some(APP),
        preflight: true,
        ..Incoming::default()
    });
    let allowed = preflight.response.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    for name in ["authorization", "content-type", "dpop", "mcp-session-id", "mcp-protocol-version", "last-event-id"] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    let plain = w.send(&Incoming {
        method: "OPTIONS",
        path: "/api/x",
        origin: Some(APP),
        preflight: true,
        ..Incoming::default()
    });
    assert!(!plain.response.header("access-control-allow-headers").unwrap_or_default().contains("Mcp-Session-Id"));
}

#[test]
fn a_resource_never_passes_the_clients_credential_on_whatever_forward_authorization_says() {
    let w = mcp_world(&[("FORWARD_AUTHORIZATION", "true")]);
    let outcome =
        w.mcp_post("/mcp", Some(&format!("Bearer {}", mcp_token("mcp:use mcp:tools"))), None, &tool_call("echo"));
    assert_eq!(outcome.forward.expect("forwarded").credentials, None);
    let api = w.call("GET", "/api/x", Some(&format!("Bearer {}", valid_token())), None);
    assert_eq!(api.forward.expect("forwarded").credentials, Some(Scheme::Bearer));
}

/// Review: a body the edge reads as UTF-8 JSON can be another message to a server that honours
/// `charset=utf-7` (body-parser does) or inflates an encoding: only plain UTF-8 JSON is read.
#[test]
fn an_mcp_body_that_is_not_plain_utf8_json_is_refused_unread() {
    let w = mcp_world(&[]);
    let authorization = format!("Bearer {}", mcp_token("mcp:use"));
    let request = Incoming { method: "POST", path: "/mcp", authorization: Some(&authorization), ..Incoming::default() };
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"+ACIAfQB9-"}}"#.as_bytes();
    for (media_type, encoding) in [
        (Some("application/json; charset=utf-7"), None),
        (Some("text/plain"), None),
        (None, None),
        (Some("application/json"), Some("gzip")),
    ] {
        let outcome = w.send(&Incoming {
            body: Some(Body { bytes: body, media_type, encoding, declared_over: false }),
            ..request
        });
        assert_error(&outcome.response, 415, "unsupported_media_type");
        assert!(outcome.forward.is_none(), "{media_type:?} {encoding:?}");
    }
    let utf8 = Body { bytes: body, media_type: Some("application/json; charset=UTF-8"), ..Body::default() };
    assert!(w.send(&Incoming { body: Some(utf8), ..request }).forward.is_some());
    let over = Body { declared_over: true, media_type: Some("application/json"), ..Body::default() };
    assert_error(&w.send(&Incoming { body: Some(over), ..request }).response, 413, "payload_too_large");
}

/// Review: the pass that only decides whether to read the body recorded the proof, and the pass
/// with the body then refused it as replayed: no DPoP-bound POST on an MCP rule went through.
#[test]
fn a_dpop_bound_mcp_post_is_admitted_once_and_its_proof_is_single_use() {
    let w = mcp_world(&[]);
    let k = ProofKey::es256();
    let mut claims = mint().claims();
    claims["aud"] = json!(MCP_RESOURCE);
    claims["scope"] = json!("mcp:use mcp:tools");
    claims["cnf"] = json!({ "jkt": k.thumbprint() });
    let token = sign(&json!({ "alg": "RS256", "typ": "at+jwt", "kid": "key-1" }), &claims, key(1));
    let url = MCP_RESOURCE;
    let proof = Proof::new(&k, "POST", url, &token, w.now_secs(), "one").sign(&k);
    let authorization = format!("DPoP {token}");
    let request = Incoming {
        method: "POST",
        url,
        path: "/mcp",
        authorization: Some(&authorization),
        dpop: Some(&proof),
        ..Incoming::default()
    };
    let call = tool_call("echo");
    let body = Body { bytes: call.as_bytes(), media_type: Some("application/json"), ..Body::default() };
    assert!(w.send(&request).needs_body.is_some());
    let admitted = w.send(&Incoming { body: Some(body), ..request });
    assert!(admitted.forward.is_some(), "{:?}", admitted.response);
    // The same proof again, with or without its body, is a replay.
    for replayed in [w.send(&Incoming { body: Some(body), ..request }), w.send(&request)] {
        assert_error(&replayed.response, 401, "invalid_dpop_proof");
        assert_eq!(self::body(&replayed.response)["error_description"], json!("The DPoP proof was already used"));
    }
}

/// Review: a resource rule took tokens from every trusted issuer, so a staging tenant could mint
/// tokens for the production resource. Only issuers that list the resource are taken.
#[test]
fn a_resource_takes_tokens_only_from_issuers_that_list_it() {
    let audiences = format!("{AUDIENCE},{MCP_RESOURCE}");
    let w = world_with(
        &[
            ("ORIGIN_URL", "https://origin.example.com"),
            ("ROUTES", MCP_ROUTES),
            ("AUTH0_AUDIENCE", &audiences),
            ("ISSUERS", r#"[{"issuer": "https://login.example.com/", "audiences": ["https://staging.api"]}]"#),
        ],
        &[key(1)],
    );
    w.io.other_issuers.borrow_mut().push((OTHER_JWKS.into(), jwks(&[key(2)]).to_string().into_bytes()));
    let mut claims = Mint { now: NOW, ..Mint::new(OTHER_ISSUER, MCP_RESOURCE) }.claims();
    claims["scope"] = json!("mcp:use mcp:tools repo:admin");
    let staging = sign(&json!({ "alg": "RS256", "kid": "key-2" }), &claims, key(2));
    let outcome = w.mcp_post("/mcp", Some(&format!("Bearer {staging}")), None, &tool_call("delete_repo"));
    assert_error(&outcome.response, 401, "invalid_token");
    assert!(outcome.forward.is_none());
    // The metadata names only the issuer that lists the resource.
    let doc = w.call("GET", "/.well-known/oauth-protected-resource/mcp", None, None).response;
    assert_eq!(body(&doc)["authorization_servers"], json!([ISSUER]));
    // A resource no issuer lists could never be served: a configuration error.
    let orphan = world_with(&[("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", MCP_ROUTES)], &[key(1)]);
    assert_eq!(orphan.config.as_ref().err().map(|e| e.variable), Some("ROUTES"));
}

#[test]
fn without_a_resource_the_well_known_prefix_is_the_rules_to_route() {
    let routes = r#"[{"path": "/.well-known/*", "auth": "public"}]"#;
    let w = world_with(&[("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", routes)], &[key(1)]);
    assert!(w.call("GET", "/.well-known/oauth-protected-resource/x", None, None).forward.is_some());
}

#[test]
fn mcp_rules_that_cannot_work_are_configuration_errors() {
    for routes in [
        r#"[{"path": "/mcp", "resource": "http://api.example.com/mcp"}]"#,
        r#"[{"path": "/mcp", "resource": "https://api.example.com/mcp#x"}]"#,
        r#"[{"path": "/mcp", "auth": "public", "mcp": {"tools/call": ["a"]}}]"#,
        r#"[{"path": "/mcp", "mcp": {"tools/call": "a"}}]"#,
        r#"[{"path": "/mcp", "mcp": [], "websocket": true}]"#,
        r#"[{"path": "/mcp", "mcp": {"resources/read:file:///etc/secret": ["a"]}}]"#,
    ] {
        let w = world_with(&[("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", routes)], &[key(1)]);
        assert_eq!(w.config.as_ref().err().map(|e| e.variable), Some("ROUTES"), "{routes}");
    }
}

/// A plan kept for an MCP rule's head is used again only for a body that passes as the kept one
/// did: every later body is checked against the rule and the cached token's scopes.
#[test]
fn a_kept_mcp_plan_admits_only_bodies_its_token_may_send() {
    let w = mcp_world(&[]);
    let authorization = format!("Bearer {}", mcp_token("mcp:use mcp:tools"));
    // Seen twice: the second answer comes from the token cache, and is kept for its head.
    w.mcp_post("/mcp", Some(&authorization), None, &tool_call("echo"));
    let kept = w.mcp_post("/mcp", Some(&authorization), None, &tool_call("echo"));
    assert!(kept.kept_until.is_some(), "an admitted MCP POST's plan is kept for its head");
    let (config, rules) = w.config.as_ref().unwrap();
    let held = kept.kept_body.expect("a kept MCP plan holds what checks its next body");
    let admits = |held: &pipeline::KeptBody, text: &str, media_type: Option<&str>| {
        let body = Body { bytes: text.as_bytes(), media_type, ..Body::default() };
        pipeline::admits_kept_body(held, body, config, rules)
    };
    assert!(admits(&held, &tool_call("echo"), Some("application/json")));
    assert!(!admits(&held, &tool_call("delete_repo"), Some("application/json")), "a tool needing more scope");
    assert!(!admits(&held, "not json", Some("application/json")));
    assert!(!admits(&held, &tool_call("echo"), Some("application/json; charset=utf-7")));
    // What it holds is the caller's scopes: another caller's kept plan admits what that one may.
    let admin = format!("Bearer {}", mcp_token("mcp:use mcp:tools repo:admin"));
    w.mcp_post("/mcp", Some(&admin), None, &tool_call("echo"));
    let other = w.mcp_post("/mcp", Some(&admin), None, &tool_call("echo")).kept_body.unwrap();
    assert!(admits(&other, &tool_call("delete_repo"), Some("application/json")));
    // A rule that is not an MCP rule (`/api/*`, two below) admits nothing.
    let elsewhere = pipeline::KeptBody { rule: held.rule + 2, ..held.clone() };
    assert!(!admits(&elsewhere, &tool_call("echo"), Some("application/json")));
    // Only a plan made with its body holds one.
    let token = format!("Bearer {}", valid_token());
    assert!(w.call("GET", "/api/x", Some(&token), None).kept_body.is_none());
}

// ---- gateway: the identity assertion ----

const ASSERTION_ROUTES: &str = r#"[
    {"path": "/public/*", "auth": "public"},
    {"path": "/optional", "auth": "optional"},
    {"path": "/orders/:id", "scopes": ["read:orders"]},
    {"path": "/*", "auth": "public"}
]"#;
const EDGE_ISSUER: &str = "https://edge.example.com";

fn assertion_world(keys: &[Value], extra: &[(&str, &str)]) -> World {
    let keys = Value::Array(keys.to_vec()).to_string();
    let mut vars = vec![
        ("ORIGIN_URL", "https://origin.example.com/v1"),
        ("ROUTES", ASSERTION_ROUTES),
        ("ASSERTION_KEYS", keys.as_str()),
        ("ASSERTION_ISSUER", EDGE_ISSUER),
    ];
    vars.extend_from_slice(extra);
    world_with(&vars, &[key(1)])
}

fn edge_key(alg: AssertionAlg) -> Value {
    assertion_key(alg, "edge-1")
}

/// The assertion a forward carries (exactly one).
fn assertion_of(outcome: &Outcome) -> String {
    let forward = outcome.forward.as_ref().unwrap_or_else(|| panic!("not forwarded: {outcome:?}"));
    let found: Vec<&String> =
        forward.headers.iter().filter(|(n, _)| *n == "x-auth-assertion").map(|(_, v)| v).collect();
    assert_eq!(found.len(), 1, "{forward:?}");
    found[0].clone()
}

/// The claims of an assertion whose signature verifies with `edge`'s public half.
fn verified_claims(jws: &str, edge: &Value) -> Value {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let decode = |s: &str| Base64UrlUnpadded::decode_vec(s).unwrap();
    let (input, signature) = jws.rsplit_once('.').unwrap();
    let signature = decode(signature);
    let ok = match edge["kty"].as_str() {
        Some("EC") => {
            use p256::ecdsa::{signature::Verifier, Signature, VerifyingKey};
            let mut point = vec![4u8];
            point.extend(decode(edge["x"].as_str().unwrap()));
            point.extend(decode(edge["y"].as_str().unwrap()));
            let public = VerifyingKey::from_sec1_bytes(&point).unwrap();
            public.verify(input.as_bytes(), &Signature::from_slice(&signature).unwrap()).is_ok()
        }
        _ => {
            let public = ed25519_compact::PublicKey::from_slice(&decode(edge["x"].as_str().unwrap())).unwrap();
            public.verify(input.as_bytes(), &ed25519_compact::Signature::from_slice(&signature).unwrap()).is_ok()
        }
    };
    assert!(ok, "the assertion does not verify with {}", edge["kid"]);
    let (header, payload) = input.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&decode(header)).unwrap();
    assert_eq!(header, json!({ "alg": edge["alg"], "kid": edge["kid"], "typ": "edge-auth+jwt" }));
    serde_json::from_slice(&decode(payload)).unwrap()
}

#[test]
fn every_forward_carries_an_assertion_that_verifies_with_the_first_key() {
    for alg in [AssertionAlg::Es256, AssertionAlg::EdDsa] {
        let edge = edge_key(alg);
        let w = assertion_world(std::slice::from_ref(&edge), &[]);
        let token = Mint { scope: Some("read:orders".into()), ..mint() }.sign(key(1));
        let bearer = format!("Bearer {token}");
        let base = json!({ "iss": EDGE_ISSUER, "aud": "https://origin.example.com", "iat": NOW, "exp": NOW + 60 });
        let with = |extra: Value| {
            let mut claims = base.clone();
            claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            claims
        };
        let required = verified_claims(&assertion_of(&w.call("GET", "/orders/7", Some(&bearer), None)), &edge);
        assert_eq!(
            required,
            with(json!({
                "htm": "GET", "htu": "https://origin.example.com/v1/orders/7",
                "sub": "dev-user|1", "token_iss": ISSUER, "scope": "read:orders",
            }))
        );
        let optional = verified_claims(&assertion_of(&w.call("POST", "/optional", None, None)), &edge);
        assert_eq!(optional, with(json!({ "htm": "POST", "htu": "https://origin.example.com/v1/optional" })));
        let public = verified_claims(&assertion_of(&w.call("GET", "/public/a", None, None)), &edge);
        assert_eq!(public, with(json!({ "htm": "GET", "htu": "https://origin.example.com/v1/public/a" })));
        // An optional rule with a token names its caller.
        let named = verified_claims(&assertion_of(&w.call("GET", "/optional", Some(&bearer), None)), &edge);
        assert_eq!(named["sub"], "dev-user|1");
    }
}

#[test]
fn the_assertion_is_bound_to_the_url_without_its_query() {
    let edge = edge_key(AssertionAlg::Es256);
    let w = assertion_world(std::slice::from_ref(&edge), &[]);
    let request = Incoming {
        method: "GET",
        path: "/public/a",
        url: "https://api.example.com/public/a?x=1",
        ..Incoming::default()
    };
    let claims = verified_claims(&assertion_of(&w.send(&request)), &edge);
    assert_eq!(claims["htu"], "https://origin.example.com/v1/public/a");
}

#[test]
fn a_repeated_token_method_and_url_reuse_one_assertion_while_more_than_half_its_life_is_left() {
    let edge = edge_key(AssertionAlg::Es256);
    let w = assertion_world(std::slice::from_ref(&edge), &[]);
    let bearer = format!("Bearer {}", Mint { scope: Some("read:orders".into()), ..mint() }.sign(key(1)));
    let call = |path: &str| assertion_of(&w.call("GET", path, Some(&bearer), None));
    // A token seen for the first time: its assertion is not kept (most such tokens never come back).
    let once = call("/orders/7");
    assert_eq!(w.verifier.signatures.get(), 1);
    let first = call("/orders/7");
    assert_eq!(verified_claims(&first, &edge), verified_claims(&once, &edge), "the same claims, signed again");
    assert_eq!(w.verifier.signatures.get(), 2);
    w.now.set(w.now.get() + 29_999);
    assert_eq!(call("/orders/7"), first, "reused with 30 s of its 60 left, and a little more");
    assert_eq!(w.verifier.signatures.get(), 2);
    // Another URL or method, another assertion.
    assert_ne!(call("/orders/8"), first);
    assert_ne!(assertion_of(&w.call("HEAD", "/orders/7", Some(&bearer), None)), first);
    assert_eq!(w.verifier.signatures.get(), 4);
    w.now.set(w.now.get() + 1);
    let renewed = call("/orders/7");
    assert_ne!(renewed, first, "half its life gone: made again");
    assert_eq!(verified_claims(&renewed, &edge)["iat"], json!(NOW + 30));
    assert_eq!(w.verifier.signatures.get(), 5);
    // Without a token, per method and URL likewise, from the first request on.
    let public = assertion_of(&w.call("GET", "/public/a", None, None));
    assert_eq!(assertion_of(&w.call("GET", "/public/a", None, None)), public);
    assert_eq!(w.verifier.signatures.get(), 6);
}

#[test]
fn an_answer_kept_for_its_head_is_kept_no_longer_than_its_assertion_may_be_reused() {
    let edge = edge_key(AssertionAlg::EdDsa);
    let w = assertion_world(std::slice::from_ref(&edge), &[]);
    let now = w.now.get();
    // A public forward reads the clock now: no longer fixed by its head, kept for a while instead.
    let public = w.call("GET", "/public/a", None, None);
    assert!(!public.fixed, "an assertion's iat is the clock's");
    assert_eq!(public.kept_until, Some(now + pipeline::KEEP_MS));
    // A token seen before: kept, bounded by the second, and here by an assertion that may be
    // reused for half a second only (the token expires one second from now).
    let short = format!("Bearer {}", Mint { scope: Some("read:orders".into()), expires_in: 1, ..mint() }.sign(key(1)));
    w.call("GET", "/orders/7", Some(&short), None);
    let kept = w.call("GET", "/orders/7", Some(&short), None);
    assert_eq!(kept.kept_until, Some(now + 500), "{kept:?}");
    assert_eq!(verified_claims(&assertion_of(&kept), &edge)["exp"], json!(NOW + 1), "never past the token's exp");
    // A token admitted within the clock skew after its exp: an assertion expired already, never
    // reused, and the answer not kept.
    w.now.set(now + 5_000);
    let late = w.call("GET", "/orders/7", Some(&short), None);
    let claims = verified_claims(&assertion_of(&late), &edge);
    assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(NOW + 5), Some(NOW + 1)));
    assert_eq!(late.kept_until, None);
}

#[test]
fn the_published_keys_are_the_edges_own_route_whatever_routes_say() {
    let (first, second) = (edge_key(AssertionAlg::Es256), assertion_key(AssertionAlg::EdDsa, "edge-0"));
    let w = assertion_world(&[first.clone(), second.clone()], &[]);
    let outcome = w.call("GET", "/.well-known/edge-auth/jwks.json", None, Some("https://elsewhere.example"));
    assert!(outcome.forward.is_none(), "the catch-all public rule does not take it");
    let r = outcome.response;
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), json!({ "keys": [public_half(&first), public_half(&second)] }));
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(outcome.fixed);
    assert_eq!(w.call("HEAD", "/.well-known/edge-auth/jwks.json", None, None).response.status, 200);
    let post = w.call("POST", "/.well-known/edge-auth/jwks.json", None, None).response;
    assert_error(&post, 405, "method_not_allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // Without ASSERTION_KEYS the path is the rules' like any other.
    let plain = world_with(&[("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", ASSERTION_ROUTES)], &[key(1)]);
    let forwarded = plain.call("GET", "/.well-known/edge-auth/jwks.json", None, None);
    assert!(forwarded.forward.is_some_and(|f| f.headers.iter().all(|(n, _)| *n != "x-auth-assertion")));
}

#[test]
fn a_first_key_that_cannot_sign_is_a_configuration_error_and_nothing_is_forwarded() {
    let mut edge = edge_key(AssertionAlg::Es256);
    edge["x"] = assertion_key(AssertionAlg::Es256, "other")["x"].clone();
    let w = assertion_world(&[edge.clone()], &[]);
    let bearer = format!("Bearer {}", Mint { scope: Some("read:orders".into()), ..mint() }.sign(key(1)));
    for outcome in [w.call("GET", "/public/a", None, None), w.call("GET", "/orders/7", Some(&bearer), None)] {
        assert!(outcome.forward.is_none(), "forwarded without an assertion: {outcome:?}");
        assert_error(&outcome.response, 500, "server_misconfigured");
        let description = body(&outcome.response)["error_description"].as_str().unwrap().to_owned();
        assert!(description.starts_with("ASSERTION_KEYS is invalid"), "{description}");
        assert!(!description.contains(edge["d"].as_str().unwrap()));
        assert_eq!(outcome.kept_until, None);
        assert!(!outcome.fixed);
    }
    assert!(w.io.logs.borrow().iter().any(|line| line.contains("ASSERTION_KEYS")), "{:?}", w.io.logs.borrow());
    // A key set that does not parse is refused when the configuration is read, naming it.
    let broken = assertion_world(&[json!({"kty": "EC", "kid": "k"})], &[]);
    assert_eq!(broken.config.as_ref().err().map(|e| e.variable), Some("ASSERTION_KEYS"));
    let r = broken.call("GET", "/public/a", None, None);
    assert!(r.forward.is_none());
    assert_error(&r.response, 500, "server_misconfigured");
}

#[test]
fn the_token_claims_the_assertion_carries_are_read_once_per_verification() {
    let edge = edge_key(AssertionAlg::Es256);
    let w = assertion_world(std::slice::from_ref(&edge), &[("CLAIM_HEADERS", r#"{"X-Auth-Org": "org_id"}"#)]);
    let token = token_with(|claims| {
        claims["scope"] = json!("read:orders");
        claims["permissions"] = json!(["read:orders", "admin"]);
        claims["azp"] = json!("spa");
        claims["org_id"] = json!("org_1");
    });
    let claims =
        verified_claims(&assertion_of(&w.call("GET", "/orders/1", Some(&format!("Bearer {token}")), None)), &edge);
    assert_eq!(claims["permissions"], json!(["read:orders", "admin"]));
    assert_eq!((claims["azp"].as_str(), claims["org_id"].as_str()), (Some("spa"), Some("org_1")));
    assert_eq!(claims.get("client_id"), None);
}
