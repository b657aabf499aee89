//! The worker's settings: each part reads its own from the variables ([`vars`]), and this module
//! composes them into one [`Config`] in one pass. Nothing below the pipeline imports this
//! composition; the parts import only [`vars`].
//!
//! The variable names are a public contract: deployment docs and outside test suites set them.
//! Optional variables that are empty count as unset, so `--var NAME:` restores a default.
//! Development values live in `.dev.vars`, which only `wrangler dev` reads: a deployment with no
//! variables set says which one is missing rather than trusting a local issuer.

pub mod vars;

use serde_json::Value;

use crate::{
    dpop::policy::DpopPolicy,
    error::ConfigError,
    gateway::forward::GatewayConfig,
    http::{CorsPolicy, PreflightPolicy},
    keys::store::JwksPolicy,
    operate::{decision::ObservePolicy, denylist},
    token::{
        claims::{self, ScopeSource},
        issuers::{self, IssuerConfig, Issuers},
    },
};

/// Settings for one deployment. Built only by [`Config::from_vars`], so every instance is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Every issuer trusted, never empty, each `issuer` distinct: the one that `AUTH0_DOMAIN` /
    /// `AUTH0_ISSUER` describe first (when set), then `ISSUERS` in order.
    pub issuers: Vec<IssuerConfig>,
    /// The realm of every `WWW-Authenticate`: the first of `AUTH0_AUDIENCE`, else the first
    /// issuer's first audience.
    pub realm: String,
    pub leeway_secs: u64,
    pub cors: CorsPolicy,
    pub preflight: PreflightPolicy,
    pub scope_source: ScopeSource,
    pub jwks: JwksPolicy,
    pub status_endpoint: bool,
    /// Set by `ORIGIN_URL`: the worker is a gateway in front of that origin.
    pub gateway: Option<GatewayConfig>,
    pub dpop: DpopPolicy,
    /// What the edge tells the operator: `DECISION_LOG`, `DECISION_LOG_SAMPLE`, `LOG_LINES_PER_MINUTE`.
    pub observe: ObservePolicy,
    /// `DENYLIST_REFRESH_SECONDS`: how old an isolate's copy of the deny list may grow before it
    /// is listed again (used only with a `DENYLIST` binding).
    pub denylist_refresh_secs: u64,
}

impl Config {
    /// Reads every variable through `get` (a binding lookup at the edge, a map in tests), each part
    /// its own (see [`vars`] for the types a variable may arrive as).
    pub fn from_vars(get: impl Fn(&str) -> Option<Value>) -> Result<Config, ConfigError> {
        let vars = vars::Vars::new(&get);
        let (issuers, realm) = issuers::from_vars(&vars)?;
        Ok(Config {
            issuers,
            realm,
            leeway_secs: claims::leeway_from_vars(&vars)?,
            cors: CorsPolicy::from_vars(&vars)?,
            preflight: PreflightPolicy::from_vars(&vars)?,
            scope_source: ScopeSource::from_vars(&vars)?,
            jwks: JwksPolicy::from_vars(&vars)?,
            status_endpoint: vars.switch("STATUS_ENDPOINT")?,
            gateway: GatewayConfig::from_vars(&vars)?,
            dpop: DpopPolicy::from_vars(&vars)?,
            observe: ObservePolicy::from_vars(&vars)?,
            denylist_refresh_secs: denylist::refresh_from_vars(&vars)?,
        })
    }

    /// The realm named in `WWW-Authenticate`: the protected API's identifier.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The trusted issuers, each with a key store of its own (once per isolate).
    pub fn trusted_issuers(&self) -> Issuers {
        Issuers::from_list(&self.issuers, self.jwks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dpop::policy::{DpopMode, ReplayScope},
        error::ConfigProblem,
        operate::decision::DecisionLog,
    };
    use serde_json::json;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        typed(&pairs.iter().map(|(k, v)| (*k, json!(v))).collect::<Vec<_>>())
    }

    /// Variables as `[vars]` hands them over when written with their TOML types.
    fn typed(pairs: &[(&str, Value)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, Value> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Config::from_vars(|name| map.get(name).cloned())
    }

    fn typed_with(extra: &[(&str, Value)]) -> Result<Config, ConfigError> {
        let mut pairs: Vec<(&str, Value)> = BASE.iter().map(|(k, v)| (*k, json!(v))).collect();
        pairs.extend_from_slice(extra);
        typed(&pairs)
    }

    const BASE: [(&str, &str); 2] =
        [("AUTH0_DOMAIN", "example.eu.auth0.com"), ("AUTH0_AUDIENCE", "https://api.example.com")];

    fn with(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut pairs = BASE.to_vec();
        pairs.extend_from_slice(extra);
        config(&pairs)
    }

    fn failing_variable(result: Result<Config, ConfigError>) -> &'static str {
        result.expect_err("config should be rejected").variable
    }

    #[test]
    fn defaults_follow_the_domain() {
        let c = with(&[]).unwrap();
        assert_eq!(c.issuers[0].issuer, "https://example.eu.auth0.com/");
        assert_eq!(c.issuers[0].jwks_url, "https://example.eu.auth0.com/.well-known/jwks.json");
        assert_eq!(c.issuers[0].audiences, vec!["https://api.example.com"]);
        assert_eq!(c.leeway_secs, 30);
        assert_eq!(c.cors, CorsPolicy::None);
        assert_eq!(c.scope_source, ScopeSource::Both);
        assert_eq!(c.jwks, JwksPolicy::default());
        assert!(!c.status_endpoint);
    }

    #[test]
    fn loopback_domain_uses_plain_http() {
        let c = config(&[("AUTH0_DOMAIN", "127.0.0.1:8788"), ("AUTH0_AUDIENCE", "a")]).unwrap();
        assert_eq!(c.issuers[0].issuer, "http://127.0.0.1:8788/");
        assert_eq!(c.issuers[0].jwks_url, "http://127.0.0.1:8788/.well-known/jwks.json");
    }

    #[test]
    fn required_variables_missing_or_empty_are_named() {
        assert_eq!(failing_variable(config(&[("AUTH0_AUDIENCE", "a")])), "AUTH0_DOMAIN");
        assert_eq!(failing_variable(config(&[("AUTH0_DOMAIN", " "), ("AUTH0_AUDIENCE", "a")])), "AUTH0_DOMAIN");
        assert_eq!(failing_variable(config(&[("AUTH0_DOMAIN", "x.auth0.com")])), "AUTH0_AUDIENCE");
        assert_eq!(
            failing_variable(config(&[("AUTH0_DOMAIN", "x.auth0.com"), ("AUTH0_AUDIENCE", "")])),
            "AUTH0_AUDIENCE"
        );
    }

    #[test]
    fn domain_with_scheme_or_path_is_rejected() {
        for bad in [
            "https://example.auth0.com",
            "example.auth0.com/",
            "example.auth0.com/x",
            "exa mple.com",
            "a@b.com",
            "host:port",
        ] {
            let r = config(&[("AUTH0_DOMAIN", bad), ("AUTH0_AUDIENCE", "a")]);
            assert_eq!(failing_variable(r), "AUTH0_DOMAIN", "{bad}");
        }
    }

    #[test]
    fn several_audiences_split_on_commas() {
        let c = with(&[("AUTH0_AUDIENCE", "https://a, https://b")]).unwrap();
        assert_eq!(c.issuers[0].audiences, vec!["https://a", "https://b"]);
        assert_eq!(failing_variable(with(&[("AUTH0_AUDIENCE", "https://a,,https://b")])), "AUTH0_AUDIENCE");
    }

    #[test]
    fn issuer_and_jwks_url_overrides_must_be_https_or_loopback_http() {
        let c =
            with(&[("AUTH0_ISSUER", "https://login.example.com/"), ("AUTH0_JWKS_URL", "http://localhost:9000/jwks")])
                .unwrap();
        assert_eq!(c.issuers[0].issuer, "https://login.example.com/");
        assert_eq!(c.issuers[0].jwks_url, "http://localhost:9000/jwks");
        assert_eq!(failing_variable(with(&[("AUTH0_JWKS_URL", "http://example.com/jwks")])), "AUTH0_JWKS_URL");
        assert_eq!(failing_variable(with(&[("AUTH0_JWKS_URL", "ftp://example.com/jwks")])), "AUTH0_JWKS_URL");
        assert_eq!(failing_variable(with(&[("AUTH0_ISSUER", "example.com")])), "AUTH0_ISSUER");
        assert_eq!(failing_variable(with(&[("AUTH0_ISSUER", "http://10.0.0.1/")])), "AUTH0_ISSUER");
        assert!(with(&[("AUTH0_JWKS_URL", "http://127.0.0.1:1/x")]).is_ok());
        assert!(with(&[("AUTH0_JWKS_URL", "http://[::1]:8080/x")]).is_ok());
    }

    #[test]
    fn clock_skew_is_bounded() {
        assert_eq!(with(&[("CLOCK_SKEW_SECONDS", "0")]).unwrap().leeway_secs, 0);
        assert_eq!(with(&[("CLOCK_SKEW_SECONDS", "300")]).unwrap().leeway_secs, 300);
        for bad in ["301", "-1", "abc", "1.5"] {
            assert_eq!(failing_variable(with(&[("CLOCK_SKEW_SECONDS", bad)])), "CLOCK_SKEW_SECONDS", "{bad}");
        }
    }

    #[test]
    fn cors_origins_are_parsed() {
        assert_eq!(with(&[("CORS_ALLOWED_ORIGINS", "*")]).unwrap().cors, CorsPolicy::Any);
        assert_eq!(
            with(&[("CORS_ALLOWED_ORIGINS", "https://App.example.com, http://localhost:3000")]).unwrap().cors,
            CorsPolicy::Origins(vec!["https://app.example.com".into(), "http://localhost:3000".into()])
        );
        for bad in ["app.example.com", "https://app.example.com/path", "https://a.com,*"] {
            assert_eq!(failing_variable(with(&[("CORS_ALLOWED_ORIGINS", bad)])), "CORS_ALLOWED_ORIGINS", "{bad}");
        }
    }

    #[test]
    fn preflight_headers_and_max_age_are_configurable() {
        let c = with(&[]).unwrap();
        assert_eq!(
            c.preflight,
            PreflightPolicy { allow_headers: "Authorization, Content-Type, DPoP".into(), max_age_secs: 600 }
        );
        let c = with(&[("CORS_ALLOWED_HEADERS", "X-Request-Id, if-match"), ("CORS_MAX_AGE_SECONDS", "0")]).unwrap();
        assert_eq!(c.preflight.allow_headers, "Authorization, Content-Type, DPoP, X-Request-Id, if-match");
        assert_eq!(c.preflight.max_age_secs, 0);
        let typed = typed_with(&[("CORS_ALLOWED_HEADERS", json!(["X-A"])), ("CORS_MAX_AGE_SECONDS", json!(7200))]);
        assert_eq!(typed.unwrap().preflight.allow_headers, "Authorization, Content-Type, DPoP, X-A");
        for bad in ["X-A,,X-B", "X A", "X-A\r\nSet-Cookie: a=1", "X:A", "\"X\""] {
            assert_eq!(failing_variable(with(&[("CORS_ALLOWED_HEADERS", bad)])), "CORS_ALLOWED_HEADERS", "{bad:?}");
        }
        assert_eq!(failing_variable(typed_with(&[("CORS_ALLOWED_HEADERS", json!(3))])), "CORS_ALLOWED_HEADERS");
        for bad in ["86401", "-1", "ten"] {
            assert_eq!(failing_variable(with(&[("CORS_MAX_AGE_SECONDS", bad)])), "CORS_MAX_AGE_SECONDS", "{bad}");
        }
    }

    #[test]
    fn jwks_timings_and_switches_are_overridable() {
        let c = with(&[
            ("JWKS_MAX_AGE_SECONDS", "60"),
            ("JWKS_COOLDOWN_SECONDS", "2"),
            ("JWKS_STALE_IF_ERROR_SECONDS", "0"),
            ("JWKS_FETCH_TIMEOUT_SECONDS", "1"),
            ("STATUS_ENDPOINT", "true"),
            ("SCOPE_SOURCE", "permissions"),
        ])
        .unwrap();
        assert_eq!(
            c.jwks,
            JwksPolicy { max_age_ms: 60_000, cooldown_ms: 2_000, stale_if_error_ms: 0, fetch_timeout_ms: 1_000 }
        );
        assert!(c.status_endpoint);
        assert_eq!(c.scope_source, ScopeSource::PermissionsClaim);
        assert_eq!(failing_variable(with(&[("JWKS_COOLDOWN_SECONDS", "0")])), "JWKS_COOLDOWN_SECONDS");
        assert_eq!(failing_variable(with(&[("JWKS_FETCH_TIMEOUT_SECONDS", "31")])), "JWKS_FETCH_TIMEOUT_SECONDS");
        assert_eq!(failing_variable(with(&[("STATUS_ENDPOINT", "yes")])), "STATUS_ENDPOINT");
        assert_eq!(failing_variable(with(&[("SCOPE_SOURCE", "roles")])), "SCOPE_SOURCE");
    }

    #[test]
    fn empty_optional_variables_fall_back_to_defaults() {
        let c = with(&[("AUTH0_ISSUER", ""), ("CLOCK_SKEW_SECONDS", ""), ("CORS_ALLOWED_ORIGINS", " ")]).unwrap();
        assert_eq!(c.issuers[0].issuer, "https://example.eu.auth0.com/");
        assert_eq!(c.leeway_secs, 30);
        assert_eq!(c.cors, CorsPolicy::None);
    }

    #[test]
    fn error_message_names_the_variable() {
        let e = failing_variable(with(&[("CLOCK_SKEW_SECONDS", "x")]));
        assert_eq!(e, "CLOCK_SKEW_SECONDS");
        let msg = with(&[("CLOCK_SKEW_SECONDS", "x")]).unwrap_err().to_string();
        assert!(msg.starts_with("CLOCK_SKEW_SECONDS is invalid"), "{msg}");
    }
    #[test]
    fn audience_must_be_printable_ascii_to_stay_a_valid_header() {
        for bad in ["https://api\nexample.com", "api\u{0}", "a\tb", "api\u{7f}", "https://api.exämple.com", "a,b\rc"] {
            assert_eq!(failing_variable(with(&[("AUTH0_AUDIENCE", bad)])), "AUTH0_AUDIENCE", "{bad:?}");
        }
        assert!(with(&[("AUTH0_AUDIENCE", "my api ~1")]).is_ok());
    }

    #[test]
    fn overlong_issuer_or_jwks_url_is_reported_under_its_own_name() {
        let long = format!("https://login.example.com/{}", "x".repeat(200));
        assert_eq!(failing_variable(with(&[("AUTH0_ISSUER", &long)])), "AUTH0_ISSUER");
        assert_eq!(failing_variable(with(&[("AUTH0_JWKS_URL", &long)])), "AUTH0_JWKS_URL");
        assert!(with(&[("AUTH0_JWKS_URL", &long[..200])]).is_ok());
    }

    #[test]
    fn domain_port_is_1_to_65535() {
        for bad in ["example.com:0", "example.com:65536", "example.com:99999", "example.com:", "example.com:+80"] {
            let r = config(&[("AUTH0_DOMAIN", bad), ("AUTH0_AUDIENCE", "a")]);
            assert_eq!(failing_variable(r), "AUTH0_DOMAIN", "{bad}");
        }
        assert!(config(&[("AUTH0_DOMAIN", "example.com:65535"), ("AUTH0_AUDIENCE", "a")]).is_ok());
        assert_eq!(failing_variable(with(&[("AUTH0_JWKS_URL", "http://[::1]:0/x")])), "AUTH0_JWKS_URL");
    }

    #[test]
    fn domain_labels_are_never_empty() {
        for bad in ["a..b", "example.com.", ".example.com", "."] {
            let r = config(&[("AUTH0_DOMAIN", bad), ("AUTH0_AUDIENCE", "a")]);
            assert_eq!(failing_variable(r), "AUTH0_DOMAIN", "{bad}");
        }
    }

    #[test]
    fn domain_case_is_normalised_in_the_derived_issuer_and_jwks_url() {
        let c = config(&[("AUTH0_DOMAIN", "Tenant.EU.Auth0.com"), ("AUTH0_AUDIENCE", "a")]).unwrap();
        assert_eq!(c.issuers[0].issuer, "https://tenant.eu.auth0.com/");
        assert_eq!(c.issuers[0].jwks_url, "https://tenant.eu.auth0.com/.well-known/jwks.json");
        let local = config(&[("AUTH0_DOMAIN", "LocalHost:8788"), ("AUTH0_AUDIENCE", "a")]).unwrap();
        assert_eq!(local.issuers[0].issuer, "http://localhost:8788/");
    }

    #[test]
    fn variables_accept_their_natural_toml_types() {
        let c = typed_with(&[
            ("STATUS_ENDPOINT", json!(true)),
            ("CLOCK_SKEW_SECONDS", json!(60)),
            ("JWKS_MAX_AGE_SECONDS", json!(120)),
            ("JWKS_COOLDOWN_SECONDS", json!(5)),
            ("JWKS_STALE_IF_ERROR_SECONDS", json!(0)),
            ("JWKS_FETCH_TIMEOUT_SECONDS", json!(2)),
            ("AUTH0_AUDIENCE", json!(["https://a", " https://b "])),
            ("CORS_ALLOWED_ORIGINS", json!(["https://app.example.com"])),
        ])
        .unwrap();
        assert!(c.status_endpoint);
        assert_eq!(c.leeway_secs, 60);
        assert_eq!(
            c.jwks,
            JwksPolicy { max_age_ms: 120_000, cooldown_ms: 5_000, stale_if_error_ms: 0, fetch_timeout_ms: 2_000 }
        );
        assert_eq!(c.issuers[0].audiences, vec!["https://a", "https://b"]);
        assert_eq!(c.cors, CorsPolicy::Origins(vec!["https://app.example.com".into()]));
        assert!(!typed_with(&[("STATUS_ENDPOINT", json!(false))]).unwrap().status_endpoint);
        assert_eq!(typed_with(&[("CORS_ALLOWED_ORIGINS", json!(["*"]))]).unwrap().cors, CorsPolicy::Any);
    }

    #[test]
    fn a_value_of_a_type_that_makes_no_sense_is_rejected_naming_the_variable() {
        let cases = [
            ("AUTH0_DOMAIN", json!(8788)),
            ("AUTH0_DOMAIN", json!(["example.com"])),
            ("AUTH0_AUDIENCE", json!(42)),
            ("AUTH0_AUDIENCE", json!(["https://a", 1])),
            ("AUTH0_ISSUER", json!(true)),
            ("AUTH0_JWKS_URL", json!({ "url": "https://x/" })),
            ("STATUS_ENDPOINT", json!("yes")),
            ("STATUS_ENDPOINT", json!(1)),
            ("CLOCK_SKEW_SECONDS", json!(1.5)),
            ("CLOCK_SKEW_SECONDS", json!(-1)),
            ("CLOCK_SKEW_SECONDS", json!("60s")),
            ("JWKS_MAX_AGE_SECONDS", json!(true)),
            ("JWKS_COOLDOWN_SECONDS", json!([30])),
            ("SCOPE_SOURCE", json!(["scope"])),
            ("CORS_ALLOWED_ORIGINS", json!(true)),
        ];
        for (variable, value) in cases {
            assert_eq!(failing_variable(typed_with(&[(variable, value.clone())])), variable, "{value}");
        }
    }

    fn issuers_of(c: &Config) -> Vec<(&str, &str, Vec<&str>)> {
        c.issuers
            .iter()
            .map(|i| (i.issuer.as_str(), i.jwks_url.as_str(), i.audiences.iter().map(String::as_str).collect()))
            .collect()
    }

    fn failing_entry(result: Result<Config, ConfigError>) -> Option<usize> {
        let error = result.expect_err("ISSUERS should be rejected");
        assert_eq!(error.variable, "ISSUERS", "{error}");
        match error.problem {
            ConfigProblem::InvalidRule { index, .. } => index,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn issuers_add_to_the_auth0_domain_issuer_a_custom_domain_move_is_one_entry() {
        let c = with(&[("ISSUERS", r#"[{"issuer": "https://login.example.com/"}]"#)]).unwrap();
        assert_eq!(
            issuers_of(&c),
            vec![
                (
                    "https://example.eu.auth0.com/",
                    "https://example.eu.auth0.com/.well-known/jwks.json",
                    vec!["https://api.example.com"]
                ),
                (
                    "https://login.example.com/",
                    "https://login.example.com/.well-known/jwks.json",
                    vec!["https://api.example.com"]
                ),
            ]
        );
        assert_eq!(c.realm(), "https://api.example.com");
    }

    #[test]
    fn issuers_alone_need_no_auth0_domain_and_take_their_own_audiences() {
        let c = typed(&[(
            "ISSUERS",
            json!([
                { "domain": "Dev.EU.auth0.com", "audiences": "https://dev-api" },
                { "issuer": "https://staging.example.com", "jwks_url": "https://keys.example.com/jwks", "audiences": ["a", "b"] },
                { "domain": "127.0.0.1:8788", "audiences": ["local"] }
            ]),
        )])
        .unwrap();
        assert_eq!(
            issuers_of(&c),
            vec![
                (
                    "https://dev.eu.auth0.com/",
                    "https://dev.eu.auth0.com/.well-known/jwks.json",
                    vec!["https://dev-api"]
                ),
                ("https://staging.example.com", "https://keys.example.com/jwks", vec!["a", "b"]),
                ("http://127.0.0.1:8788/", "http://127.0.0.1:8788/.well-known/jwks.json", vec!["local"]),
            ]
        );
        assert_eq!(c.realm(), "https://dev-api");
    }

    #[test]
    fn an_issuer_alone_by_auth0_issuer_derives_its_jwks_url() {
        let c = typed(&[
            ("AUTH0_ISSUER", json!("https://login.example.com/")),
            ("AUTH0_AUDIENCE", json!("a")),
            ("ISSUERS", json!([{ "domain": "t.auth0.com" }])),
        ])
        .unwrap();
        assert_eq!(c.issuers[0].jwks_url, "https://login.example.com/.well-known/jwks.json");
        assert_eq!(c.issuers[1].issuer, "https://t.auth0.com/");
    }

    #[test]
    fn bad_issuers_entries_are_named_by_index() {
        let cases = [
            (json!([{ "domain": "a.auth0.com" }, { "domain": "a.auth0.com" }]), Some(1)),
            (json!([{ "domain": "example.eu.auth0.com" }]), Some(0)),
            (json!([{ "issuer": "https://example.eu.auth0.com/" }]), Some(0)),
            (json!([{ "domain": "a.auth0.com", "issuer": "https://a.auth0.com/" }]), Some(0)),
            (json!([{ "audiences": "x" }]), Some(0)),
            (json!([{ "domain": "a.auth0.com" }, { "domain": "b.auth0.com", "color": "red" }]), Some(1)),
            (json!([{ "issuer": "http://evil.example.com/" }]), Some(0)),
            (json!([{ "issuer": "https://a.example.com/", "jwks_url": "ftp://x" }]), Some(0)),
            (json!([{ "domain": "https://a.auth0.com" }]), Some(0)),
            (json!([{ "domain": "a.auth0.com", "audiences": [] }]), Some(0)),
            (json!([{ "domain": "a.auth0.com", "audiences": [1] }]), Some(0)),
            (json!([{ "domain": "a.auth0.com", "audiences": "a\"b" }]), Some(0)),
            (json!({ "domain": "a.auth0.com" }), None),
            (json!("not json"), None),
            (json!((0..21).map(|i| json!({ "domain": format!("t{i}.auth0.com") })).collect::<Vec<_>>()), None),
        ];
        for (value, index) in cases {
            assert_eq!(failing_entry(typed_with(&[("ISSUERS", value.clone())])), index, "{value}");
        }
        // No audience anywhere.
        let alone = typed(&[("ISSUERS", json!([{ "domain": "a.auth0.com" }]))]);
        assert_eq!(failing_entry(alone), Some(0));
        assert!(typed_with(&[(
            "ISSUERS",
            json!((0..19).map(|i| json!({ "domain": format!("t{i}.auth0.com") })).collect::<Vec<_>>())
        )])
        .is_ok());
    }

    #[test]
    fn claim_headers_name_x_auth_headers_the_edge_does_not_set_itself() {
        let gateway = [("ORIGIN_URL", "https://origin.example.com"), ("ROUTES", "[]")];
        let headers = |value: &str| {
            let mut vars = gateway.to_vec();
            vars.push(("CLAIM_HEADERS", value));
            with(&vars).map(|c| c.gateway.unwrap().claim_headers)
        };
        let parsed = headers(r#"{"X-Auth-Email": "email", "x-auth-org": "https://example.com/org"}"#).unwrap();
        let pairs: Vec<(&str, &str)> = parsed.iter().map(|(h, c)| (&**h, &**c)).collect();
        assert_eq!(pairs, [("x-auth-email", "email"), ("x-auth-org", "https://example.com/org")]);
        for bad in [
            r#"{"X-Email": "email"}"#,
            r#"{"X-Auth-": "email"}"#,
            r#"{"X-Auth-Subject": "email"}"#,
            r#"{"x-auth-scopes": "scope"}"#,
            r#"{"X-Auth-Claims": "x"}"#,
            r#"{"X_Auth_Key_Thumbprint": "x"}"#,
            r#"{"X-Auth-Key-Thumbprint": "x"}"#,
            r#"{"X-Auth-E mail": "email"}"#,
            r#"{"X-Auth-Email": ""}"#,
            r#"{"X-Auth-Email": ["email"]}"#,
            r#"{"X-Auth-Email": "email", "x-auth-email": "other"}"#,
            r#"["X-Auth-Email"]"#,
            "not json",
        ] {
            assert_eq!(headers(bad).expect_err(bad).variable, "CLAIM_HEADERS", "{bad}");
        }
        let toml_table = typed_with(&[
            ("ORIGIN_URL", json!("https://origin.example.com")),
            ("ROUTES", json!([])),
            ("CLAIM_HEADERS", json!({"X-Auth-Email": "email"})),
        ]);
        assert_eq!(toml_table.unwrap().gateway.unwrap().claim_headers.len(), 1);
        assert_eq!(failing_variable(with(&[("CLAIM_HEADERS", r#"{"X-Auth-Email": "email"}"#)])), "CLAIM_HEADERS");
    }

    #[test]
    fn the_deny_list_refresh_defaults_to_30_seconds_within_1_to_3600() {
        assert_eq!(with(&[]).unwrap().denylist_refresh_secs, 30);
        assert_eq!(with(&[("DENYLIST_REFRESH_SECONDS", "5")]).unwrap().denylist_refresh_secs, 5);
        for bad in ["0", "3601", "1.5"] {
            assert_eq!(failing_variable(with(&[("DENYLIST_REFRESH_SECONDS", bad)])), "DENYLIST_REFRESH_SECONDS");
        }
    }

    #[test]
    fn the_decision_log_and_the_line_budget_default_to_refusals_all_sampled_60_a_minute() {
        let c = with(&[]).unwrap();
        assert_eq!(c.observe, ObservePolicy::default());
        assert_eq!(
            (c.observe.decision_log, c.observe.sample, c.observe.lines_per_minute),
            (DecisionLog::Refusals, 1.0, 60)
        );
        let c =
            with(&[("DECISION_LOG", "all"), ("DECISION_LOG_SAMPLE", "0.25"), ("LOG_LINES_PER_MINUTE", "5")]).unwrap();
        assert_eq!((c.observe.decision_log, c.observe.sample, c.observe.lines_per_minute), (DecisionLog::All, 0.25, 5));
        let c = typed_with(&[("DECISION_LOG", json!("off")), ("DECISION_LOG_SAMPLE", json!(0))]).unwrap();
        assert_eq!((c.observe.decision_log, c.observe.sample), (DecisionLog::Off, 0.0));
        for (text, sample) in [(".5", 0.5), ("+0.5", 0.5), ("1.", 1.0), (" 0.1 ", 0.1), ("5e-1", 0.5), ("0", 0.0)] {
            let c = with(&[("DECISION_LOG_SAMPLE", text)]).unwrap();
            assert_eq!(c.observe.sample, sample, "{text}");
        }
        for (name, value) in [
            ("DECISION_LOG", "refusal"),
            ("DECISION_LOG_SAMPLE", "1.5"),
            ("DECISION_LOG_SAMPLE", "-0.1"),
            ("DECISION_LOG_SAMPLE", "NaN"),
            ("DECISION_LOG_SAMPLE", "half"),
            ("DECISION_LOG_SAMPLE", "inf"),
            ("DECISION_LOG_SAMPLE", "."),
            ("DECISION_LOG_SAMPLE", "0x1"),
            ("LOG_LINES_PER_MINUTE", "0"),
            ("LOG_LINES_PER_MINUTE", "100001"),
        ] {
            assert_eq!(failing_variable(with(&[(name, value)])), name, "{name}={value}");
        }
    }

    #[test]
    fn dpop_settings_default_to_allowed_without_nonces() {
        let c = with(&[]).unwrap();
        assert_eq!(
            c.dpop,
            DpopPolicy { mode: DpopMode::Allowed, max_age_secs: 300, nonce: None, replay: ReplayScope::Isolate }
        );
        let c = with(&[
            ("DPOP", "required"),
            ("DPOP_MAX_AGE_SECONDS", "60"),
            ("DPOP_NONCE_SECRET", "0123456789abcdef0123456789abcdef"),
            ("DPOP_NONCE_SECONDS", "30"),
        ])
        .unwrap();
        assert_eq!(c.dpop.mode, DpopMode::Required);
        assert_eq!(c.dpop.max_age_secs, 60);
        assert_eq!(c.dpop.nonce.as_ref().map(|n| n.step_secs), Some(30));
        assert!(!format!("{:?}", c.dpop).contains("0123456789"), "the secret never prints");
        assert_eq!(with(&[("DPOP", "off")]).unwrap().dpop.mode, DpopMode::Off);
        for (name, bad) in [
            ("DPOP", "yes"),
            ("DPOP_MAX_AGE_SECONDS", "0"),
            ("DPOP_NONCE_SECRET", "short"),
            ("DPOP_NONCE_SECRET", "0123456789abcdef\t0123456789abcdef"),
        ] {
            assert_eq!(failing_variable(with(&[(name, bad)])), name, "{bad}");
        }
        let step = with(&[("DPOP_NONCE_SECRET", "0123456789abcdef0123456789abcdef"), ("DPOP_NONCE_SECONDS", "5")]);
        assert_eq!(failing_variable(step), "DPOP_NONCE_SECONDS");
    }
}
