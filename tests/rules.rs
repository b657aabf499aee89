//! Route rules as a specification: how `ROUTES` is parsed and refused, and which rule a request meets.

use edge_auth::gateway::rules::{is_ambiguous_path, Auth, Match, Rules};
use serde_json::{json, Value};

fn rules(value: Value) -> Rules {
    Rules::parse(&value).unwrap_or_else(|e| panic!("{value} should parse: {e}"))
}

fn refusal(value: Value) -> String {
    Rules::parse(&value).expect_err(&format!("{value} should be refused")).to_string()
}

/// The index of the rule a request meets, or what the matcher said instead.
fn decide(table: &Rules, method: &str, path: &str) -> String {
    match table.find(method, path) {
        Match::Rule(rule) => format!("{:?} {}", rule.auth, rule.scope_requirement()),
        Match::MethodNotAllowed(allowed) => format!("405 {}", allowed.join(", ")),
        Match::NotFound => "404".into(),
    }
}

#[test]
fn exact_paths_are_case_sensitive_and_a_trailing_slash_counts() {
    let t = rules(json!([{ "path": "/users/me", "auth": "public" }]));
    assert_eq!(decide(&t, "GET", "/users/me"), "Public ");
    for other in ["/users/Me", "/users/me/", "/users", "/users/me/x", "/users/mex", "//users/me"] {
        assert_eq!(decide(&t, "GET", other), "404", "{other}");
    }
}

#[test]
fn a_name_segment_matches_exactly_one_non_empty_segment() {
    let t = rules(json!([{ "path": "/users/:id/orders", "auth": "public" }]));
    assert_eq!(decide(&t, "GET", "/users/42/orders"), "Public ");
    for other in ["/users//orders", "/users/42/43/orders", "/users/orders", "/users/42/orders/"] {
        assert_eq!(decide(&t, "GET", other), "404", "{other}");
    }
}

#[test]
fn a_final_star_matches_the_prefix_and_everything_below_it() {
    let t = rules(json!([{ "path": "/api/*", "auth": "public" }]));
    for path in ["/api", "/api/", "/api/a", "/api/a/b/c"] {
        assert_eq!(decide(&t, "GET", path), "Public ", "{path}");
    }
    for path in ["/apix", "/ap", "/", "/x/api"] {
        assert_eq!(decide(&t, "GET", path), "404", "{path}");
    }
    let everything = rules(json!([{ "path": "/*", "auth": "public" }]));
    for path in ["/", "/a", "/a/b/"] {
        assert_eq!(decide(&everything, "DELETE", path), "Public ", "{path}");
    }
}

#[test]
fn the_first_rule_whose_path_and_method_match_decides() {
    let t = rules(json!([
        { "path": "/docs/*", "methods": ["GET"], "auth": "public" },
        { "path": "/docs/*", "scopes": ["write:docs"] },
        { "path": "/*", "auth": "optional" },
    ]));
    assert_eq!(decide(&t, "GET", "/docs/a"), "Public ");
    assert_eq!(decide(&t, "PUT", "/docs/a"), "Required write:docs");
    assert_eq!(decide(&t, "PUT", "/other"), "Optional ");
}

#[test]
fn methods_are_matched_in_any_case_and_get_takes_head() {
    let t = rules(json!([{ "path": "/a", "methods": ["get", "Post"], "auth": "public" }]));
    for method in ["GET", "HEAD", "POST"] {
        assert_eq!(decide(&t, method, "/a"), "Public ", "{method}");
    }
    assert_eq!(decide(&t, "PUT", "/a"), "405 GET, HEAD, POST");
}

#[test]
fn a_405_lists_the_methods_of_every_rule_whose_path_matched() {
    let t = rules(json!([
        { "path": "/a/*", "methods": ["POST"], "auth": "public" },
        { "path": "/a/b", "methods": ["GET", "POST"], "auth": "public" },
        { "path": "/c", "methods": ["DELETE"], "auth": "public" },
    ]));
    assert_eq!(decide(&t, "PUT", "/a/b"), "405 POST, GET, HEAD");
    assert_eq!(decide(&t, "PUT", "/a/x"), "405 POST");
    assert_eq!(decide(&t, "PUT", "/nothing"), "404");
}

#[test]
fn auth_defaults_to_required_and_scope_requirements_list_scopes_then_any_scopes() {
    let t = rules(json!([{ "path": "/a", "scopes": ["read:a", "read:b"], "any_scopes": ["admin", "owner"] }]));
    let Match::Rule(rule) = t.find("GET", "/a") else { panic!() };
    assert_eq!(rule.auth, Auth::Required);
    assert_eq!(rule.scope_requirement(), "read:a read:b admin owner");
    let granted = |list: &'static [&'static str]| move |s: &str| list.contains(&s);
    assert!(rule.is_satisfied_by(granted(&["read:a", "read:b", "owner"])));
    assert!(!rule.is_satisfied_by(granted(&["read:a", "read:b"])), "any_scopes needs one of them");
    assert!(!rule.is_satisfied_by(granted(&["read:a", "admin"])), "scopes needs every one");
}

#[test]
fn routes_may_be_json_text_or_a_json_array() {
    let text = json!(r#"[{"path": "/a", "auth": "public"}]"#);
    assert_eq!(rules(text), rules(json!([{ "path": "/a", "auth": "public" }])));
}

#[test]
fn rules_that_cannot_be_understood_are_refused_with_their_index() {
    let cases = [
        (json!("not json"), "not JSON"),
        // Which path would this be? (serde_json kept the last; the fuzzer's first find this round.)
        (json!(r#"[{"path": "/a", "path": "/b"}]"#), "not JSON: duplicate member name at byte 16"),
        (json!({ "path": "/a" }), "must be a JSON array"),
        (json!(42), "must be a JSON array"),
        (json!([{ "path": "/a" }, { "path": "/b", "color": "red" }]), "rule 1: unknown field `color`"),
        (json!([{ "methods": ["GET"] }]), "rule 0: missing field `path`"),
        (json!([{ "path": 7 }]), "rule 0: invalid type"),
        (json!([{ "path": "/a", "methods": "GET" }]), "rule 0: invalid type"),
        (json!([{ "path": "/a", "methods": [] }]), "rule 0: methods must list"),
        (json!([{ "path": "/a", "methods": ["GE T"] }]), "rule 0: \"GE T\" is not a method"),
        (json!([{ "path": "/a", "auth": "sometimes" }]), "rule 0: unknown variant `sometimes`"),
        (json!([{ "path": "a" }]), "rule 0: path must start with /"),
        (json!([{ "path": "/a*" }]), "rule 0: * may only end a path"),
        (json!([{ "path": "/a/*/b" }]), "rule 0: segment \"*\""),
        (json!([{ "path": "/a/:" }]), "rule 0: bad parameter segment"),
        (json!([{ "path": "/a b" }]), "rule 0: segment \"a b\""),
        (json!([{ "path": "/a/..%2Fb" }]), "rule 0: a path may not hold"),
        (json!([{ "path": "//*" }]), "rule 0: a path may not hold"),
        (json!([{ "path": "/a;b" }]), "rule 0: a path may not hold"),
        (json!([{ "path": "/%61dmin" }]), "rule 0: a path may not hold"),
        (json!([{ "path": "/a", "auth": "public", "scopes": ["x"] }]), "rule 0: scopes and any_scopes need auth"),
        (json!([{ "path": "/a", "auth": "optional", "any_scopes": ["x"] }]), "rule 0: scopes and any_scopes need auth"),
        (json!([{ "path": "/a", "scopes": ["has space"] }]), "rule 0: scopes: \"has space\" is not a scope"),
        (json!([{ "path": "/a", "scopes": [""] }]), "rule 0: scopes: \"\" is not a scope"),
        (json!([{ "path": "/a" }, { "path": "/b", "methods": ["GET", "trace"] }]), "rule 1: TRACE may not be listed"),
        (json!([{ "path": "/a", "methods": ["TRACK"] }]), "rule 0: TRACK may not be listed"),
        (json!([{ "path": "/a", "methods": ["Connect"] }]), "rule 0: CONNECT may not be listed"),
        (json!([{ "path": "/a", "websocket": "yes" }]), "rule 0: invalid type: string \"yes\", expected a boolean"),
        (json!([{ "path": "/a" }, { "path": "/b", "websocket": 1 }]), "rule 1: invalid type: integer"),
        (json!([{ "path": "/a", "websocket": null }]), "rule 0: invalid type: null"),
        (json!([{ "path": "/a", "methods": ["POST"], "websocket": true }]), "rule 0: websocket needs GET"),
    ];
    for (value, expected) in cases {
        let message = refusal(value.clone());
        assert!(message.starts_with(expected), "{value}: {message:?} should start with {expected:?}");
    }
}

#[test]
fn websocket_is_off_unless_a_rule_says_true() {
    let t = rules(json!([
        { "path": "/live", "auth": "public", "websocket": true },
        { "path": "/feed", "methods": ["get"], "websocket": true },
        { "path": "/plain", "websocket": false },
        { "path": "/*", "auth": "public" }
    ]));
    let websocket = |path: &str| match t.find("GET", path) {
        Match::Rule(rule) => rule.websocket,
        other => panic!("{path}: {other:?}"),
    };
    assert!(websocket("/live") && websocket("/feed"));
    assert!(!websocket("/plain") && !websocket("/other"));
}

#[test]
fn the_methods_for_a_path_are_those_of_every_rule_whose_path_matches() {
    let t = rules(json!([
        { "path": "/orders/:id", "methods": ["GET"], "scopes": ["read"] },
        { "path": "/orders/:id", "methods": ["delete", "GET"] },
        { "path": "/open/*" },
        { "path": "/*", "methods": ["POST"], "auth": "public" }
    ]));
    assert_eq!(t.methods_for("/orders/7"), ["GET", "HEAD", "DELETE", "POST"]);
    assert_eq!(t.methods_for("/open/x"), ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
    assert_eq!(t.methods_for("/else"), ["POST"]);
    assert!(rules(json!([{ "path": "/a" }])).methods_for("/b").is_empty());
}

#[test]
fn encoded_slashes_backslashes_and_dots_are_ambiguous_in_any_case() {
    for path in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb", "/%2e%2e/admin", "/a/..%2F", "/x%2E"] {
        assert!(is_ambiguous_path(path), "{path}");
    }
}

#[test]
fn paths_an_origin_could_read_as_another_path_are_ambiguous() {
    let ambiguous = [
        "/public/..%2Fadmin",
        "/a%5cb",
        "/a%2eb",
        "/%61dmin/panel",
        "/api/private%2Dscoped",
        "/a%7Eb",
        "/a%5Fb",
        "/public/a%C0%AFb",
        "/%c0%afadmin",
        "/public/a%E0%80%AFb",
        "/a%ff",
        "/a%2",
        "/a%zz",
        "/%",
        "//admin/panel",
        "/public//x",
        "/admin;x/panel",
        "/api/private;jsessionid=1",
        "/public/..;/admin",
        "/a\\b",
        "/public/../admin",
        "/public/x/../../admin",
        "/public/./x",
        "/public/..",
        "/admin%00",
        "/admin%0a",
        "/admin%7F",
        "/public/..%252fadmin",
        "/a%2541",
        "/admin%3Bx",
        "/admin%3bx",
        "/admin%3Fx",
        "/admin%3fx",
        "/admin%23",
        "/a%3Fb",
    ];
    for path in ambiguous {
        assert!(is_ambiguous_path(path), "{path}");
    }
    let plain =
        ["/", "/a/b/", "/a%20b", "/caf%C3%A9", "/a:b@c", "/a-b.c_d~e", "/a%40b", "/a..b", "/.well-known/x", "/a%25"];
    for path in plain {
        assert!(!is_ambiguous_path(path), "{path}");
    }
}

fn first_rule(table: &Rules) -> &edge_auth::gateway::rules::Rule {
    match table.find("GET", "/x") {
        Match::Rule(rule) => rule,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_claim_rule_holds_by_equality_or_membership_and_a_list_means_any_one() {
    let t = rules(json!([{ "path": "/x", "claims": {
        "org_id": "org_123",
        "https://example.com/roles": ["admin", "editor"],
        "level": 3,
        "verified": true,
    } }]));
    let rule = first_rule(&t);
    let check = |claims: Value| {
        let unmet = rule.unmet_claim(|name| claims.get(name));
        unmet.map(|c| c.name.to_string())
    };
    let good = json!({ "org_id": "org_123", "https://example.com/roles": "editor", "level": 3, "verified": true });
    assert_eq!(check(good.clone()), None);
    // A claim that is an array holds when any accepted value is an element of it.
    let mut as_arrays = good.clone();
    as_arrays["org_id"] = json!(["org_9", "org_123"]);
    as_arrays["https://example.com/roles"] = json!(["viewer", "admin"]);
    assert_eq!(check(as_arrays), None);
    for (name, value) in [
        ("org_id", json!("org_1234")),
        ("org_id", json!("ORG_123")),
        ("org_id", json!(["org_9"])),
        ("org_id", json!({ "org_123": true })),
        ("https://example.com/roles", json!("viewer")),
        ("https://example.com/roles", json!(["admin editor"])),
        ("level", json!("3")),
        ("verified", json!("true")),
        ("verified", json!(false)),
    ] {
        let mut claims = good.clone();
        claims[name] = value.clone();
        assert_eq!(check(claims).as_deref(), Some(name), "{name}: {value}");
    }
    let mut missing = good;
    missing.as_object_mut().unwrap().remove("level");
    assert_eq!(check(missing).as_deref(), Some("level"));
    // Names are taken whole: the dotted name is one claim, never a path into others.
    assert_eq!(t.claims_needed().iter().map(|n| &**n).collect::<Vec<_>>().len(), 4);
}

#[test]
fn claim_rules_are_refused_on_public_rules_and_with_values_that_cannot_match() {
    let public = refusal(json!([{ "path": "/a" }, { "path": "/x", "auth": "public", "claims": { "org": "a" } }]));
    assert!(public.starts_with("rule 1: claims need a token"), "{public}");
    for claims in [
        json!({ "org": null }),
        json!({ "org": {} }),
        json!({ "org": [] }),
        json!({ "org": [["a"]] }),
        json!({ "": "a" }),
        json!(["org"]),
    ] {
        let refused = refusal(json!([{ "path": "/x", "claims": claims }]));
        assert!(refused.starts_with("rule 0: "), "{claims}: {refused}");
    }
    // Nor on an optional rule, which admits a request without a token.
    let optional = refusal(json!([{ "path": "/x", "auth": "optional", "claims": { "org": "a" } }]));
    assert!(optional.starts_with("rule 0: claims need a token"), "{optional}");
    assert!(rules(json!([{ "path": "/x" }])).claims_needed().is_empty());
}

#[test]
fn a_rate_limit_names_a_binding_a_key_and_a_period_of_10_or_60() {
    let t = rules(json!([
        { "path": "/a", "rate_limit": { "binding": "PER_USER", "key": "subject" } },
        { "path": "/b", "auth": "public", "rate_limit": { "binding": "PER_IP", "key": "ip", "period": 10 } },
    ]));
    let bindings: Vec<(usize, &str)> = t.rate_limit_bindings().collect();
    assert_eq!(bindings, [(0, "PER_USER"), (1, "PER_IP")]);
    for (rule, why) in [
        (json!({ "path": "/x", "auth": "public", "rate_limit": { "binding": "L", "key": "subject" } }), "needs auth"),
        (json!({ "path": "/x", "auth": "optional", "rate_limit": { "binding": "L", "key": "client" } }), "needs auth"),
        (json!({ "path": "/x", "rate_limit": { "binding": "L", "key": "subject", "period": 30 } }), "period"),
        (json!({ "path": "/x", "rate_limit": { "binding": "", "key": "ip" } }), "binding"),
        (json!({ "path": "/x", "rate_limit": { "binding": "A-B", "key": "ip" } }), "binding"),
        (json!({ "path": "/x", "rate_limit": { "binding": "L", "key": "email" } }), "unknown variant"),
        (json!({ "path": "/x", "rate_limit": { "binding": "L" } }), "missing field"),
    ] {
        let refused = refusal(json!([rule]));
        assert!(refused.starts_with("rule 0: ") && refused.contains(why), "{rule}: {refused}");
    }
}
