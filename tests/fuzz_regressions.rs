//! Inputs the fuzz targets (fuzz/, run by scripts/fuzz.sh) found to break an invariant, minimised
//! and kept as host tests. Each names its target and its input.
//!
//! A test marked `#[ignore]` is a finding that is not fixed yet: the fix removes the attribute.
//! (Run them anyway with `cargo test --test fuzz_regressions -- --ignored`.)

mod common;

use std::cell::RefCell;

use common::{block_on, FakeIo, NOW};
use edge_auth::{
    config::Config,
    dpop::replay::ReplayCache,
    gateway::rules::{Auth, Match, Rules},
    pipeline::{self, Incoming, Keys, Setup},
    token::cache::TokenCache,
    token::verify::RustRsa,
};
use serde_json::{json, Value};

/// Target `routes`, input `[{"path":"//*"}]` (fuzz/artifacts/routes/crash-double-slash-star).
///
/// By docs/gateway.md, a final `/*` matches the prefix itself and everything below it: `//*` is the
/// prefix `/` with `/*`, so it matches `/` and paths starting with `//` (which the pipeline refuses
/// as ambiguous anyway). `Pattern::parse` takes it for the catch-all `/*` instead: `"//*"` strips
/// to an empty rest and returns early as if it were `"/*"`, so the rule decides every path.
/// Either refusing the pattern or matching it as written fixes it; this test accepts both.
#[test]
fn routes_double_slash_star_is_not_a_catch_all() {
    let Ok(rules) = Rules::parse(&Value::String(r#"[{"path": "//*"}]"#.into())) else { return };
    for path in ["/health", "/api", "/admin/panel"] {
        assert_eq!(rules.find("GET", path), Match::NotFound, "{path}");
    }
    let Ok(rules) = Rules::parse(&json!([{ "path": "//*", "auth": "public" }, { "path": "/admin/*" }])) else {
        return;
    };
    match rules.find("GET", "/admin/panel") {
        Match::Rule(rule) => assert_eq!(rule.auth, Auth::Required, "/admin/panel decided by the //* rule"),
        other => panic!("/admin/panel: {other:?}"),
    }
}

/// The same finding through the gateway pipeline: with a public `//*` rule listed first, a request
/// for a protected route is forwarded to the origin without a token.
#[test]
fn gateway_public_double_slash_star_does_not_open_protected_routes() {
    let routes = json!([{ "path": "//*", "auth": "public" }, { "path": "/admin/*", "scopes": ["admin"] }]);
    let text = |s: &str| Some(Value::String(s.to_owned()));
    let get = |name: &str| match name {
        "AUTH0_DOMAIN" => text("tenant.example.auth0.com"),
        "AUTH0_AUDIENCE" => text("https://api.example.com"),
        "ORIGIN_URL" => text("https://origin.example.com"),
        "ROUTES" => Some(routes.clone()),
        _ => None,
    };
    let Ok(config) = Config::from_vars(get) else { return };
    // A configuration error naming ROUTES is a fix too.
    let Ok(rules) = pipeline::compile_rules(&config) else { return };
    let issuers = config.trusted_issuers();
    let proofs = RefCell::new(ReplayCache::new([1, 2]));
    let io = FakeIo::serving(&json!({ "keys": [] }));
    let tokens = RefCell::new(TokenCache::default());
    let assertions = RefCell::default();
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
    let request = Incoming { method: "GET", path: "/admin/panel", ..Incoming::default() };
    let outcome =
        block_on(pipeline::handle(&request, Ok(Setup { config: &config, rules: &rules, keys }), NOW as u64 * 1000));
    assert!(outcome.forward.is_none(), "forwarded /admin/panel without a token: {outcome:?}");
    assert_eq!(outcome.response.status, 401, "{outcome:?}");
}
