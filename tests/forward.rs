//! What the origin receives, as a specification: which incoming headers stay behind, which the
//! edge adds, and how claim values become header values.

use std::collections::BTreeSet;

use edge_auth::{
    gateway::forward::GatewayConfig,
    gateway::forward::{claims_segment, header_safe, Client},
    token::claims::{Binding, Principal},
    token::extract::Scheme,
};
use serde_json::json;

const BEARER: Option<Scheme> = Some(Scheme::Bearer);
const DPOP: Option<Scheme> = Some(Scheme::Dpop);

fn gateway(forward_authorization: bool, forward_claims: bool, secret: Option<&str>) -> GatewayConfig {
    GatewayConfig {
        origin: "https://origin.example.com/v1".into(),
        routes: json!([]),
        timeout_ms: 30_000,
        forward_authorization,
        forward_claims,
        secret: secret.map(str::to_owned),
        claim_headers: Vec::new(),
        mcp_max_body_bytes: 1024,
        assertion: None,
    }
}

#[test]
fn headers_that_speak_for_the_edge_never_pass_from_the_client() {
    let g = gateway(false, false, None);
    for name in [
        "X-Auth-Subject",
        "x-auth-scopes",
        "X-AUTH-CLAIMS",
        "X-Auth-Anything",
        // A client's assertion is never the edge's (ASSERTION_KEYS set or not).
        "X-Auth-Assertion",
        "x_auth_assertion",
        "X_Auth_Subject",
        "x_auth_scopes",
        "X-Edge-Auth-Secret",
        "X_Edge_Auth_Secret",
        "Host",
        "X-Forwarded-Host",
        "X-Forwarded-For",
        "x-forwarded-proto",
        "X-Forwarded-Prefix",
        "X-Forwarded-Port",
        "X-Forwarded-Anything",
        "X_Forwarded_For",
        "Forwarded",
        "X-Real-IP",
        "Proxy-Authorization",
        "proxy-connection",
        "Proxy-Anything",
        "Authorization",
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        assert!(g.drops(name, BEARER), "{name}");
    }
    for name in ["X-Authx", "X-Custom", "Content-Type", "Cookie", "X-Forwardedx", "X-Real-IPs", "Authorization-Extra"] {
        assert!(!g.drops(name, BEARER), "{name}");
    }
}

#[test]
fn authorization_reaches_the_origin_only_when_asked_for_and_verified() {
    assert!(!gateway(true, false, None).drops("Authorization", BEARER), "kept with FORWARD_AUTHORIZATION");
    assert!(gateway(true, false, None).drops("Authorization", None), "an unchecked credential never passes");
    assert!(gateway(false, false, None).drops("Authorization", BEARER));
}

#[test]
fn the_target_is_the_base_path_then_the_path_and_query_as_received() {
    assert_eq!(
        gateway(false, false, None).target("/orders/7?next=%2F&b=2&a=1"),
        "https://origin.example.com/v1/orders/7?next=%2F&b=2&a=1"
    );
}

#[test]
fn identity_headers_carry_subject_sorted_scopes_claims_and_the_secret() {
    let principal = Principal {
        subject: Some("auth0|42".into()),
        scopes: BTreeSet::from(["write:a".to_owned(), "admin".to_owned(), "read:a".to_owned()]),
        binding: Binding::None,
        expires: 1_767_229_200,
        claims: Vec::new(),
        jti: None,
        client: None,
        audience: None,
    };
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhdXRoMHw0MiJ9.c2ln";
    let client = Client { host: Some("api.example.com"), scheme: Some("https"), address: Some("203.0.113.9") };
    let added = gateway(false, true, Some("s3cret")).added_headers(&client, Some((&principal, claims_segment(token))));
    assert_eq!(
        added,
        vec![
            ("x-forwarded-host", "api.example.com".to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
            ("x-forwarded-for", "203.0.113.9".to_owned()),
            ("x-edge-auth-secret", "s3cret".to_owned()),
            ("x-auth-subject", "auth0|42".to_owned()),
            ("x-auth-scopes", "admin read:a write:a".to_owned()),
            ("x-auth-claims", "eyJzdWIiOiJhdXRoMHw0MiJ9".to_owned()),
        ]
    );
    let anonymous = gateway(false, true, None).added_headers(&Client::default(), None);
    assert!(anonymous.is_empty(), "no identity without a verified token: {anonymous:?}");
    let silent = Principal {
        subject: None,
        scopes: BTreeSet::new(),
        binding: Binding::None,
        expires: 0,
        claims: Vec::new(),
        jti: None,
        client: None,
        audience: None,
    };
    assert!(gateway(false, false, None).added_headers(&Client::default(), Some((&silent, "e30"))).is_empty());
    // No address reported by the runtime: no X-Forwarded-For at all (never the client's own).
    let local = Client { host: Some("127.0.0.1:8787"), scheme: Some("http"), address: None };
    assert_eq!(
        gateway(false, false, None).added_headers(&local, None),
        vec![("x-forwarded-host", "127.0.0.1:8787".to_owned()), ("x-forwarded-proto", "http".to_owned())]
    );
}

#[test]
fn a_dpop_bound_caller_is_named_by_its_key_thumbprint() {
    let bound = Principal {
        subject: None,
        scopes: BTreeSet::new(),
        binding: Binding::Jkt("0ZcOCORZNYy".into()),
        expires: 0,
        claims: Vec::new(),
        jti: None,
        client: None,
        audience: None,
    };
    let added = gateway(false, false, None).added_headers(&Client::default(), Some((&bound, "e30")));
    assert_eq!(added, vec![("x-auth-key-thumbprint", "0ZcOCORZNYy".to_owned())]);
}

#[test]
fn the_dpop_proof_reaches_the_origin_only_with_a_verified_dpop_token_and_forwarded_authorization() {
    // (FORWARD_AUTHORIZATION, the verified token's scheme) → (Authorization kept, DPoP kept)
    let table = [
        (false, None, (false, false)),
        (false, BEARER, (false, false)),
        (false, DPOP, (false, false)),
        (true, None, (false, false)),
        // A Bearer request's DPoP header was never read at the edge, let alone checked.
        (true, BEARER, (true, false)),
        (true, DPOP, (true, true)),
    ];
    for (forward_authorization, verified, kept) in table {
        let g = gateway(forward_authorization, false, None);
        let got = (!g.drops("authorization", verified), !g.drops("DPoP", verified));
        assert_eq!(got, kept, "FORWARD_AUTHORIZATION={forward_authorization}, verified {verified:?}");
        assert_eq!(g.drops("dpop", verified), g.drops("DPoP", verified));
    }
    assert!(gateway(true, false, None).drops("X-Auth-Key-Thumbprint", DPOP), "clients cannot claim a binding");
}

#[test]
fn claim_values_become_reversible_header_values() {
    assert_eq!(header_safe("auth0|abc-123"), "auth0|abc-123");
    assert_eq!(header_safe("a b"), "a%20b");
    assert_eq!(header_safe("line\r\nX-Injected: 1"), "line%0D%0AX-Injected:%201");
    assert_eq!(header_safe("100%"), "100%25");
    assert_eq!(header_safe("café"), "caf%C3%A9");
}

#[test]
fn claim_headers_carry_strings_as_is_and_anything_else_as_compact_json_encoded_like_identity_headers() {
    let mut config = gateway(false, false, None);
    config.claim_headers = [
        ("x-auth-email", "email"),
        ("x-auth-org", "org"),
        ("x-auth-roles", "https://example.com/roles"),
        ("x-auth-absent", "nope"),
    ]
    .iter()
    .map(|(h, c)| (std::rc::Rc::from(*h), std::rc::Rc::from(*c)))
    .collect();
    let principal = Principal {
        subject: None,
        scopes: BTreeSet::new(),
        binding: Binding::None,
        expires: 0,
        claims: vec![
            ("email".into(), json!("ada lovelace@example.com")),
            ("org".into(), json!({"id": 7, "name": "Zoë"})),
            ("https://example.com/roles".into(), json!(["admin", "editor"])),
        ],
        jti: None,
        client: None,
        audience: None,
    };
    let headers: Vec<(String, String)> =
        config.claim_headers(&principal).into_iter().map(|(h, v)| (h.to_string(), v)).collect();
    assert_eq!(
        headers,
        [
            ("x-auth-email".to_owned(), "ada%20lovelace@example.com".to_owned()),
            ("x-auth-org".to_owned(), r#"{"id":7,"name":"Zo%C3%AB"}"#.to_owned()),
            ("x-auth-roles".to_owned(), r#"["admin","editor"]"#.to_owned()),
        ]
    );
    // A client's own copies are removed before anything is added, as for every X-Auth- header.
    assert!(config.drops("X-Auth-Email", BEARER) && config.drops("x_auth_org", BEARER));
}

#[test]
fn client_address_headers_never_pass_from_the_client() {
    let g = gateway(true, false, None);
    for name in [
        "X-Client-IP",
        "True-Client-IP",
        "Client-IP",
        "X-Cluster-Client-IP",
        "Fastly-Client-IP",
        "CF-Connecting-IP",
        "cf-connecting-ipv6",
        "Cf-Pseudo-IPv4",
        "DO-Connecting-IP",
        "X-AppEngine-User-IP",
        "X-Forwarded",
        "Forwarded-For",
        "x_client_ip",
        "True_Client_IP",
        "CF_CONNECTING_IP",
    ] {
        assert!(g.drops(name, BEARER), "{name}");
        assert!(g.drops(name, None), "{name}");
    }
    for name in ["X-Client-IPs", "Client-IP-Hint", "X-Client"] {
        assert!(!g.drops(name, BEARER), "{name}");
    }
    // What the origin gets: the client's own address claims gone, the runtime's in X-Forwarded-For.
    let sent = [
        ("X-Client-IP", "10.0.0.1"),
        ("True-Client-IP", "10.0.0.2"),
        ("CF-Connecting-IP", "10.0.0.3"),
        ("X-Forwarded-For", "10.0.0.4"),
        ("Accept", "*/*"),
    ];
    let client = Client { host: Some("api.example.com"), scheme: Some("https"), address: Some("203.0.113.9") };
    let kept = sent.iter().filter(|(name, _)| !g.drops(name, None)).map(|(n, v)| (n.to_string(), v.to_string()));
    let added = g.added_headers(&client, None).into_iter().map(|(n, v)| (n.to_owned(), v));
    assert_eq!(
        kept.chain(added).collect::<Vec<_>>(),
        [
            ("Accept", "*/*"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.9")
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
}
