//! The attack corpus (tests/vectors/attacks.json, written by devissuer/examples/attack_corpus.rs)
//! through the pure pipeline: every demo row against the demo routes, every gateway row against
//! the corpus' own `ROUTES`, each mode one isolate (rows run in order, so the verified-token cache
//! sees them as a worker would). The same rows run end to end in tests/e2e.rs.
//!
//! The host gets the path exactly as written in the row; the runtime would have resolved dot
//! segments and backslashes first. Rows whose answer depends on that carry `host_status`.

mod common;

use std::cell::RefCell;

use common::{block_on, dpop, FakeIo, NOW};
use edge_auth::{
    config::Config,
    dpop::replay::ReplayCache,
    gateway::{assertion::AssertionCache, rules::Rules},
    pipeline::{self, Incoming, Keys, Outcome, Setup},
    token::cache::TokenCache,
    token::issuers::Issuers,
    token::verify::RustRsa,
};
use serde::Deserialize;
use serde_json::Value;

/// Where the gateway isolate forwards to; nothing is sent on the host.
const ORIGIN_URL: &str = "http://127.0.0.1:1/base";

fn corpus() -> Value {
    serde_json::from_str(include_str!("vectors/attacks.json")).expect("the corpus is JSON")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    name: String,
    mode: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    status: u16,
    error: Option<String>,
    /// The decision's reason (docs/operating.md, "Seeing what the edge decides").
    reason: String,
    #[serde(default)]
    host_status: Option<u16>,
    #[serde(default)]
    host_error: Option<String>,
    #[serde(default)]
    host_reason: Option<String>,
    #[serde(default)]
    origin_must_not_see: Vec<String>,
    #[serde(default)]
    origin_must_see: Vec<(String, String)>,
    /// How to make this row's DPoP proof (tests/common/dpop.rs).
    #[serde(default)]
    dpop: Option<Value>,
}

impl Row {
    fn runs_in(&self, mode: &str) -> bool {
        self.mode == mode || self.mode == "both"
    }

    /// The reason the host must decide: the row's, or its host override.
    fn expected_reason(&self) -> &str {
        self.host_reason.as_deref().unwrap_or(&self.reason)
    }

    /// What the host must answer: the row's expectation, or its host override.
    fn expected(&self) -> (u16, Option<&str>) {
        match self.host_status {
            Some(status) => (status, self.host_error.as_deref()),
            None => (self.status, self.error.as_deref()),
        }
    }

    /// A header as the runtime hands it over: repeated lines joined with ", ".
    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> =
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

fn rows(corpus: &Value) -> Vec<Row> {
    let rows: Vec<Row> = serde_json::from_value(corpus["rows"].clone()).expect("rows of the documented shape");
    for (i, row) in rows.iter().enumerate() {
        assert!(["demo", "gateway", "both"].contains(&row.mode.as_str()), "{}: mode {}", row.name, row.mode);
        assert!(rows[..i].iter().all(|r| r.name != row.name), "two rows named {}", row.name);
        assert!(row.status < 500 && row.host_status.unwrap_or(0) < 500, "{}: a row may not expect a 5xx", row.name);
    }
    rows
}

/// One worker isolate: its configuration, rules, key store over a fake issuer serving the
/// corpus' JWKS, and verified-token cache.
struct Isolate {
    config: Config,
    rules: Rules,
    issuers: Issuers,
    proofs: RefCell<ReplayCache>,
    /// The corpus' DPoP client keys (`dpop_keys`).
    proof_keys: Value,
    io: FakeIo,
    tokens: RefCell<TokenCache>,
    assertions: RefCell<AssertionCache>,
}

impl Isolate {
    fn new(corpus: &Value, gateway: bool) -> Isolate {
        let text = |s: &str| Some(Value::String(s.to_owned()));
        let get = |name: &str| match name {
            "AUTH0_DOMAIN" => text("attacks.edge-auth.test"),
            "AUTH0_ISSUER" => Some(corpus["issuer"].clone()),
            "AUTH0_AUDIENCE" => Some(corpus["audience"].clone()),
            "ORIGIN_URL" if gateway => text(ORIGIN_URL),
            "ROUTES" if gateway => Some(corpus["gateway_routes"].clone()),
            other if gateway => corpus["gateway_vars"].get(other).cloned(),
            _ => None,
        };
        let config = Config::from_vars(get).expect("the corpus configuration is valid");
        let rules = pipeline::compile_rules(&config).expect("the corpus routes compile");
        Isolate {
            issuers: config.trusted_issuers(),
            proofs: RefCell::new(ReplayCache::new([1, 2])),
            proof_keys: corpus["dpop_keys"].clone(),
            io: FakeIo::serving(&corpus["jwks"]),
            tokens: RefCell::default(),
            assertions: RefCell::default(),
            config,
            rules,
        }
    }

    fn send(&self, row: &Row) -> Outcome {
        let authorization = row.header("authorization");
        let origin = row.header("origin");
        let url = format!("https://attacks.edge-auth.test{}", row.path);
        let made = row.dpop.as_ref().map(|recipe| {
            let token = authorization.as_deref().and_then(|a| a.get(5..)).unwrap_or_default();
            dpop::from_recipe(recipe, &self.proof_keys, &row.method, &url, token, NOW, &row.name)
        });
        let dpop = made.or_else(|| row.header("dpop"));
        if row.dpop.as_ref().is_some_and(|r| r["send_twice"] == true) {
            self.send_once(row, &url, authorization.as_deref(), origin.as_deref(), dpop.as_deref());
        }
        self.send_once(row, &url, authorization.as_deref(), origin.as_deref(), dpop.as_deref())
    }

    fn send_once(
        &self,
        row: &Row,
        url: &str,
        authorization: Option<&str>,
        origin: Option<&str>,
        dpop: Option<&str>,
    ) -> Outcome {
        let upgrade = row.header("upgrade");
        let request = Incoming {
            method: &row.method,
            url,
            dpop,
            // The runtime hands over the path without its query, as the edge adapter does.
            path: row.path.split('?').next().unwrap_or_default(),
            authorization,
            origin,
            host: Some("attacks.edge-auth.test"),
            // As the end-to-end runner's requests arrive: plain http, and the client address
            // wrangler dev reports in CF-Connecting-IP.
            scheme: Some("http"),
            address: Some("127.0.0.1"),
            upgrade: upgrade.as_deref(),
            preflight: row.header("access-control-request-method").is_some(),
            body: None,
        };
        let keys = Keys {
            issuers: &self.issuers,
            io: &self.io,
            verifier: &RustRsa,
            tokens: &self.tokens,
            proofs: &self.proofs,
            denylist: None,
            fleet: None,
            assertions: &self.assertions,
        };
        let setup = Setup { config: &self.config, rules: &self.rules, keys };
        block_on(pipeline::handle(&request, Ok(setup), NOW as u64 * 1000))
    }

    /// The headers the origin would get for an admitted row, as the edge builds them: the
    /// request's own minus those the gateway drops, then the ones it adds.
    fn origin_view(&self, row: &Row, outcome: &Outcome) -> Vec<(String, String)> {
        let gateway = self.config.gateway.as_ref().expect("a gateway isolate");
        let credentials = outcome.forward.as_ref().and_then(|f| f.credentials);
        let kept = row.headers.iter().filter(|(name, _)| !gateway.drops(name, credentials)).cloned();
        let added = outcome.forward.iter().flat_map(|f| &f.headers).map(|(n, v)| (n.to_string(), v.clone()));
        kept.chain(added).collect()
    }
}

/// Every way the answer to `row` differs from its expectation, in one line each.
fn judge(isolate: &Isolate, mode: &str, row: &Row, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    let response = &outcome.response;
    let body: Value = response.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    let got = (response.status, body["error"].as_str());
    let expected = row.expected();
    if got != expected {
        problems.push(format!("answered {got:?}, expected {expected:?}"));
    }
    if response.status >= 500 {
        problems.push(format!("a 5xx: {}", response.status));
    }
    if outcome.decision.reason.as_str() != row.expected_reason() {
        problems.push(format!("decided {}, expected {}", outcome.decision.reason.as_str(), row.expected_reason()));
    }
    let admitted = (200..300).contains(&expected.0);
    match (&outcome.forward, mode, admitted) {
        (Some(_), _, false) => problems.push("a refusal row was forwarded to the origin".into()),
        (Some(_), "demo", _) => problems.push("the demo worker forwarded a request".into()),
        (None, "gateway", true) => problems.push("an admitted gateway row was not forwarded".into()),
        _ => {}
    }
    if outcome.forward.is_some() {
        let seen = isolate.origin_view(row, outcome);
        let values = |name: &str| -> Vec<&str> {
            seen.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
        };
        for name in &row.origin_must_not_see {
            if !values(name).is_empty() {
                problems.push(format!("the origin would see {name}: {:?}", values(name)));
            }
        }
        for (name, value) in &row.origin_must_see {
            if values(name) != [value.as_str()] {
                problems.push(format!("the origin would see {name}: {:?}, expected exactly {value:?}", values(name)));
            }
        }
    }
    problems
}

#[test]
fn every_attack_row_gets_its_answer_from_the_host_pipeline() {
    let corpus = corpus();
    let rows = rows(&corpus);
    let mut failures = Vec::new();
    for mode in ["demo", "gateway"] {
        let isolate = Isolate::new(&corpus, mode == "gateway");
        let mine: Vec<&Row> = rows.iter().filter(|r| r.runs_in(mode)).collect();
        assert!(
            mine.iter().any(|r| r.expected().0 == 200) && mine.iter().any(|r| r.expected().0 >= 400),
            "{mode}: the corpus must hold both admitted and refused rows"
        );
        for row in &mine {
            let outcome = isolate.send(row);
            for problem in judge(&isolate, mode, row, &outcome) {
                failures.push(format!("[{mode}] {}: {problem}", row.name));
            }
        }
        // The fake runtime can reach one URL only, the configured JWKS: one fetch, then memory
        // (the clock stands still, so the unknown-kid rows stay within one cooldown).
        assert!(isolate.io.fetches.get() <= 1, "{mode}: {} issuer fetches", isolate.io.fetches.get());
        eprintln!("host {mode}: {} rows", mine.len());
    }
    assert!(failures.is_empty(), "{} row(s) failed:\n{}", failures.len(), failures.join("\n"));
}
