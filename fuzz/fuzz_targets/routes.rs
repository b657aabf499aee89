//! Raw bytes → `ROUTES` (`Rules::parse` of the text, as `--var` gives it) and, when it parses,
//! `find` for a few method/path pairs.
//!
//! Input: the `ROUTES` text, then any number of `0xFF METHOD SP PATH` probes (lossy UTF-8). Each
//! rule's own path (`:name` filled in, `/*` cut) and a few fixed paths are probed too.
//!
//! Invariants: no panic; the text and the JSON value it holds (a TOML array under `[vars]`) parse
//! alike, unless that value is a string (which the parser reads as text again); and `find` agrees
//! with a plain reading of docs/gateway.md: the first rule whose path and method match decides;
//! `/exact` matches itself, `:name` one non-empty segment, a final `/*` the prefix and all below;
//! absent `methods` take every method, `GET` takes `HEAD`; a path that matched with no rule taking
//! the method is 405 listing the methods of every such rule (with `HEAD` after `GET`), in order
//! and once each; anything else is 404.

#![no_main]

use edge_auth::gateway::rules::{Auth, Match, Rules};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FIXED_PROBES: [(&str, &str); 6] =
    [("GET", "/"), ("HEAD", "/api"), ("POST", "/api/"), ("DELETE", "/a/b/c"), ("get", "/x"), ("GET", "")];

/// One rule as docs/gateway.md describes it, read from the JSON without the parser under test.
struct Reference {
    path: String,
    methods: Option<Vec<String>>,
    auth: Auth,
    scopes: Vec<String>,
    any_scopes: Vec<String>,
}

impl Reference {
    fn read(rule: &Value) -> Reference {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
        };
        Reference {
            path: rule["path"].as_str().unwrap().to_owned(),
            methods: rule
                .get("methods")
                .filter(|m| !m.is_null())
                .map(|m| strings(m).iter().map(|m| m.to_ascii_uppercase()).collect()),
            auth: match rule.get("auth").and_then(Value::as_str) {
                Some("public") => Auth::Public,
                Some("optional") => Auth::Optional,
                _ => Auth::Required,
            },
            scopes: strings(&rule["scopes"]),
            any_scopes: strings(&rule["any_scopes"]),
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        let Some(path) = path.strip_prefix('/') else { return false };
        let (pattern, prefix) = match self.path.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (self.path.as_str(), false),
        };
        if prefix && pattern.is_empty() {
            return true; // "/*"
        }
        let pattern = &pattern[1..];
        let wanted: Vec<&str> = pattern.split('/').collect();
        let given: Vec<&str> = path.split('/').collect();
        if given.len() < wanted.len() || (!prefix && given.len() != wanted.len()) {
            return false;
        }
        wanted.iter().zip(&given).all(|(w, g)| if w.starts_with(':') { !g.is_empty() } else { w == g })
    }

    fn takes(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|list| list.iter().any(|m| m == method || (method == "HEAD" && m == "GET")))
    }

    /// A path this rule matches, to probe with.
    fn sample(&self) -> String {
        let path = self.path.strip_suffix("/*").map(|p| format!("{p}/x/y")).unwrap_or_else(|| self.path.clone());
        path.split('/').map(|s| if s.starts_with(':') { "v" } else { s }).collect::<Vec<_>>().join("/")
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xFF);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let parsed = Rules::parse(&Value::String(text.to_string()));
    // (A JSON string is text again to the parser: only other values are compared. A value comes
    // from wrangler.toml through JSON.stringify, where no member name can repeat: the worker reads
    // it with the same reader as text, which refuses a repeated name.)
    if let Some(value) = edge_auth::json::parse(text.as_bytes()).ok().filter(|v| !v.is_string()) {
        assert_eq!(parsed, Rules::parse(&value), "ROUTES as text and as a value parse differently");
    }
    let Ok(rules) = parsed else { return };
    let value: Value = serde_json::from_str(&text).expect("parsed ROUTES are JSON");
    let reference: Vec<Reference> = value.as_array().expect("an array").iter().map(Reference::read).collect();

    let probes: Vec<(String, String)> = parts
        .map(|probe| {
            let probe = String::from_utf8_lossy(probe);
            let (method, path) = probe.split_once(' ').unwrap_or(("GET", &probe));
            (method.to_owned(), path.to_owned())
        })
        .chain(FIXED_PROBES.iter().map(|(m, p)| (m.to_string(), p.to_string())))
        .chain(reference.iter().flat_map(|r| {
            let sample = r.sample();
            ["GET", "HEAD", "PUT"].map(|m| (m.to_owned(), sample.clone()))
        }))
        .take(64)
        .collect();

    for (method, path) in &probes {
        let found = rules.find(method, path);
        assert_eq!(found, rules.find(method, path), "find is not deterministic");
        let matching: Vec<&Reference> = reference.iter().filter(|r| r.matches_path(path)).collect();
        match (matching.iter().find(|r| r.takes(method)), &found) {
            (Some(expected), Match::Rule(rule)) => {
                let got = (rule.auth, &rule.scopes, &rule.any_scopes);
                assert_eq!(got, (expected.auth, &expected.scopes, &expected.any_scopes), "{method} {path}");
            }
            (Some(expected), other) => panic!("{method} {path}: expected rule {:?}, got {other:?}", expected.path),
            (None, Match::Rule(_)) => panic!("{method} {path}: a rule matched that docs/gateway.md would not match"),
            (None, Match::NotFound) => assert!(matching.is_empty(), "{method} {path}: 404 with a matching path"),
            (None, Match::MethodNotAllowed(allowed)) => {
                let mut expected: Vec<String> = Vec::new();
                for m in matching.iter().flat_map(|r| r.methods.iter().flatten()) {
                    for m in std::iter::once(m.clone()).chain((m == "GET").then(|| "HEAD".to_owned())) {
                        if !expected.contains(&m) {
                            expected.push(m);
                        }
                    }
                }
                assert_eq!(allowed, &expected, "{method} {path}: Allow");
                assert!(!allowed.contains(method), "{method} {path}: 405 allowing the method itself");
            }
        }
    }
});
