//! Raw bytes → one request through `pipeline::handle`, in demo or gateway mode, against the fixture's
//! issuer (fixed JWKS, fixed clock, pure-Rust RSA), sent twice so the second answer comes through
//! the verified-token cache.
//!
//! Input: one selector byte, then the `Authorization` value (lossy UTF-8; none when empty).
//! Selector bits: 0 gateway mode, 1-3 the route, 4-5 the method, 6 an allowed `Origin`, 7 a CORS
//! preflight (`Access-Control-Request-Method`).
//!
//! Invariants: no panic, no 5xx; a protected answer (a private message, a request forwarded by a
//! rule that needs a token) only for a credential that is one of the fixture's valid tokens
//! and that jwt-compact verifies with the published key, holding the route's scopes; identity
//! headers exactly those of that token, and none on public routes; the cached answer equals the
//! first; refusals and log lines never hold the credential; log lines are JSON.

#![no_main]

use std::cell::RefCell;

use edge_auth::{
    config::Config,
    dpop::replay::ReplayCache,
    gateway::forward,
    gateway::rules::Rules,
    pipeline::{self, Incoming, Keys, Outcome, Setup},
    token::cache::TokenCache,
    token::verify::RustRsa,
};
use edge_auth_fuzz::{bearer_credential, block_on, verify_independently, FixedIo, Identity, FIXTURE};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ALLOWED_ORIGIN: &str = "https://app.fuzz.test";
const ORIGIN_SECRET: &str = "s3cret-fuzz";
const METHODS: [&str; 4] = ["GET", "HEAD", "POST", "OPTIONS"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// No rule admits the path (404, or 400 for an encoded separator).
    Nothing,
    Public,
    Optional,
    Required {
        scopes: &'static [&'static str],
        any_scopes: &'static [&'static str],
    },
}

/// A path a request may take, and what the mode's rules say of it.
struct Route {
    path: &'static str,
    needs: Needs,
    /// `None`: every method.
    methods: Option<&'static [&'static str]>,
}

const fn route(path: &'static str, needs: Needs, methods: Option<&'static [&'static str]>) -> Route {
    Route { path, needs, methods }
}

const DEMO_ROUTES: &[Route] = &[
    route("/api/public", Needs::Public, Some(&["GET", "OPTIONS"])),
    route("/api/private", Needs::Required { scopes: &[], any_scopes: &[] }, Some(&["GET", "OPTIONS"])),
    route(
        "/api/private-scoped",
        Needs::Required { scopes: &["read:messages"], any_scopes: &[] },
        Some(&["GET", "OPTIONS"]),
    ),
    route("/api/nope", Needs::Nothing, None),
];

const GATEWAY_RULES: &str = r#"[
    {"path": "/public/*", "auth": "public"},
    {"path": "/private"},
    {"path": "/scoped/:id", "methods": ["GET"], "scopes": ["read:messages"]},
    {"path": "/any", "methods": ["GET", "POST"], "any_scopes": ["admin", "owner"]},
    {"path": "/optional", "auth": "optional"}
]"#;

const GATEWAY_ROUTES: &[Route] = &[
    route("/public/x", Needs::Public, None),
    route("/private", Needs::Required { scopes: &[], any_scopes: &[] }, None),
    route("/scoped/42", Needs::Required { scopes: &["read:messages"], any_scopes: &[] }, Some(&["GET"])),
    route("/any", Needs::Required { scopes: &[], any_scopes: &["admin", "owner"] }, Some(&["GET", "POST"])),
    route("/optional", Needs::Optional, None),
    route("/nope", Needs::Nothing, None),
    route("/private%2Fx", Needs::Nothing, None),
    route("/scoped/42/x", Needs::Nothing, None),
];

struct Mode {
    config: Config,
    rules: Rules,
    routes: &'static [Route],
}

fn mode(gateway: bool) -> Mode {
    let fixture = &*FIXTURE;
    let get = |name: &str| {
        let value = match name {
            "AUTH0_DOMAIN" => "fuzz.edge-auth.test",
            "AUTH0_ISSUER" => &fixture.issuer,
            "AUTH0_AUDIENCE" => &fixture.audience,
            "CORS_ALLOWED_ORIGINS" => ALLOWED_ORIGIN,
            "ORIGIN_URL" if gateway => "https://origin.fuzz.test/base",
            "ROUTES" if gateway => GATEWAY_RULES,
            "FORWARD_CLAIMS" if gateway => "true",
            "ORIGIN_SECRET" if gateway => ORIGIN_SECRET,
            _ => return None,
        };
        Some(Value::String(value.to_owned()))
    };
    let config = Config::from_vars(get).expect("the fuzz configuration is valid");
    let rules = pipeline::compile_rules(&config).expect("the fuzz routes compile");
    Mode { config, rules, routes: if gateway { GATEWAY_ROUTES } else { DEMO_ROUTES } }
}

// Per thread, as the worker's isolate holds them (rules and configuration share `Rc`s), and
// leaked: built once for the fuzzer's life.
thread_local! {
    static DEMO: &'static Mode = Box::leak(Box::new(mode(false)));
    static GATEWAY: &'static Mode = {
        // Once, before any input: the oracle must agree with the fixture on every token.
        for (name, token, valid) in &FIXTURE.tokens {
            assert_eq!(verify_independently(token).is_some(), *valid, "the oracle disagrees with the fixture on {name}");
        }
        Box::leak(Box::new(mode(true)))
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let gateway = selector & 1 == 1;
    let mode: &'static Mode = if gateway { GATEWAY.with(|m| *m) } else { DEMO.with(|m| *m) };
    let route = &mode.routes[usize::from((selector >> 1) & 7) % mode.routes.len()];
    let authorization = (!rest.is_empty()).then(|| String::from_utf8_lossy(rest));
    let request = Incoming {
        method: METHODS[usize::from((selector >> 4) & 3)],
        url: "https://api.fuzz.test/",
        path: route.path,
        authorization: authorization.as_deref(),
        dpop: None,
        origin: (selector & 0x40 != 0).then_some(ALLOWED_ORIGIN),
        host: Some("api.fuzz.test"),
        scheme: Some("https"),
        address: None,
        upgrade: None,
        preflight: selector & 0x80 != 0,
        body: None,
    };

    // One isolate per input, so that every input is judged alone and reproduces alone.
    let config = &mode.config;
    let issuers = config.trusted_issuers();
    let proofs = RefCell::new(ReplayCache::new([1, 2]));
    let io = FixedIo::default();
    let tokens = RefCell::new(TokenCache::default());
    let assertions = RefCell::default();
    let send = || {
        let keys = Keys {
            issuers: &issuers,
            io: &io,
            verifier: &RustRsa,
            tokens: &tokens,
            proofs: &proofs,
            denylist: None,
            fleet: None,
            assertions: &assertions,
        };
        block_on(pipeline::handle(&request, Ok(Setup { config, rules: &mode.rules, keys }), FIXTURE.now_ms()))
    };
    let first = send();
    check(gateway, route, &request, &first, &io.logs.borrow());
    let second = send();
    assert_eq!(first.response, second.response, "the cached answer differs from the first");
    assert_eq!(first.forward, second.forward, "the cached answer forwards differently");
});

fn check(gateway: bool, route: &Route, request: &Incoming<'_>, outcome: &Outcome, logs: &[String]) {
    let response = &outcome.response;
    assert!(response.status < 500, "a 5xx with keys always at hand: {response:?}");
    let credential = bearer_credential(request.authorization);
    // What an admission requires: the credential is a valid token of the fixture, and the oracle
    // verifies it independently.
    let admitted = || -> (&str, Identity) {
        let credential = credential.expect("admitted a request without a Bearer credential");
        assert!(
            FIXTURE.valid_tokens().any(|t| t == credential),
            "admitted a credential that is not one of the fixture's valid tokens: {credential:?}"
        );
        let identity = verify_independently(credential).expect("admitted a token that jwt-compact does not verify");
        (credential, identity)
    };

    let body = response.body.as_deref().unwrap_or_default();
    if body.contains(pipeline::PRIVATE_MESSAGE) || body.contains(pipeline::SCOPED_MESSAGE) {
        assert!(!gateway, "the gateway answered with a demo message");
        let (_, identity) = admitted();
        if body.contains(pipeline::SCOPED_MESSAGE) {
            assert!(
                identity.scopes.contains(pipeline::REQUIRED_SCOPE),
                "scoped message without the scope: {identity:?}"
            );
        }
    }

    match &outcome.forward {
        None if (200..300).contains(&response.status) && !body.contains("message") => {
            // Only a preflight is answered 2xx with no message and nothing forwarded.
            assert_eq!(request.method, "OPTIONS", "a 2xx that is neither a message nor forwarded: {response:?}");
        }
        None => {}
        Some(forward) => {
            assert!(gateway, "demo mode forwarded a request");
            let preflight = request.method == "OPTIONS" && request.origin.is_some() && request.preflight;
            assert!(!preflight, "a CORS preflight was forwarded");
            assert!(
                route
                    .methods
                    .is_none_or(|m| m.contains(&request.method) || (request.method == "HEAD" && m.contains(&"GET"))),
                "forwarded a method the rule does not take: {}",
                request.method
            );
            let header = |name: &str| {
                let mut values = forward.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str());
                let first = values.next();
                assert!(values.next().is_none(), "{name} added twice");
                first
            };
            assert_eq!(header(forward::SECRET), Some(ORIGIN_SECRET));
            let has_identity = [forward::SUBJECT, forward::SCOPES, forward::CLAIMS].iter().any(|h| header(h).is_some());
            match route.needs {
                Needs::Nothing => panic!("forwarded a request that no rule admits: {}", route.path),
                Needs::Public => assert!(!has_identity, "identity headers on a public route: {forward:?}"),
                Needs::Optional if !has_identity => {
                    assert!(credential.is_none(), "a Bearer credential forwarded without identity: {credential:?}")
                }
                Needs::Optional => check_identity(admitted(), header),
                Needs::Required { scopes, any_scopes } => {
                    let (credential, identity) = admitted();
                    assert!(scopes.iter().all(|s| identity.scopes.contains(*s)), "forwarded without {scopes:?}");
                    assert!(
                        any_scopes.is_empty() || any_scopes.iter().any(|s| identity.scopes.contains(*s)),
                        "forwarded without any of {any_scopes:?}"
                    );
                    check_identity((credential, identity), header);
                }
            }
        }
    }

    // Refusals and logs never repeat the token (a long JWS-shaped credential, so that one that
    // happens to spell part of the realm does not count).
    let leaks = |text: &str| {
        credential.is_some_and(|c| {
            c.len() >= 24 && c.matches('.').count() >= 2 && !FIXTURE.audience.contains(c) && text.contains(c)
        })
    };
    if response.status >= 400 {
        assert!(!leaks(body), "the refusal's body holds the credential");
        assert!(response.headers.iter().all(|(_, v)| !leaks(v)), "the refusal's headers hold the credential");
    }
    for line in logs {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "a log line that is not JSON: {line}");
        assert!(!leaks(line), "a log line holds the credential: {line}");
    }
}

/// The identity headers are exactly those of the verified token.
fn check_identity<'a>((credential, identity): (&str, Identity), header: impl Fn(&str) -> Option<&'a str>) {
    assert_eq!(header(forward::SUBJECT), identity.subject.as_deref(), "X-Auth-Subject");
    let scopes = identity.scopes.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    assert_eq!(header(forward::SCOPES), (!scopes.is_empty()).then_some(scopes.as_str()), "X-Auth-Scopes");
    assert_eq!(header(forward::CLAIMS), credential.split('.').nth(1), "X-Auth-Claims");
}
