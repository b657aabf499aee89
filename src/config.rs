//! The worker's settings, parsed and checked from its variables in one pass.
//!
//! The variable names are a public contract: deployment docs and outside test suites set them.
//! Optional variables that are empty count as unset, so `--var NAME:` restores a default.

use crate::error::{ConfigError, ConfigProblem};

/// Leeway for `exp`, `nbf` and `iat`, so that small clock differences do not reject good tokens.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;
/// How long fetched keys count as fresh before a background refresh.
pub const DEFAULT_JWKS_MAX_AGE_SECONDS: u64 = 600;
/// The least time between two issuer fetches from one isolate (and, through the shared tiers'
/// fetch time, from a fleet of them).
pub const DEFAULT_JWKS_COOLDOWN_SECONDS: u64 = 30;
/// How long stale keys may be served while the issuer is failing.
pub const DEFAULT_JWKS_STALE_IF_ERROR_SECONDS: u64 = 7 * 24 * 3600;
/// How long one issuer fetch (connect, headers and body) may take.
pub const DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS: u64 = 5;

/// Settings for one deployment. Built only by [`Config::from_vars`], so every instance is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_url: String,
    pub leeway_secs: u64,
    pub cors: CorsPolicy,
    pub scope_source: ScopeSource,
    pub jwks: JwksPolicy,
    pub status_endpoint: bool,
}

/// Where granted scopes are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeSource {
    /// The `scope` claim and Auth0's RBAC `permissions` claim, united.
    Both,
    ScopeClaim,
    PermissionsClaim,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No CORS headers at all: browsers on other origins cannot read responses.
    None,
    Any,
    Origins(Vec<String>),
}

/// Timings of the key cache, all in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksPolicy {
    pub max_age_ms: u64,
    pub cooldown_ms: u64,
    pub stale_if_error_ms: u64,
    pub fetch_timeout_ms: u64,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            max_age_ms: DEFAULT_JWKS_MAX_AGE_SECONDS * 1000,
            cooldown_ms: DEFAULT_JWKS_COOLDOWN_SECONDS * 1000,
            stale_if_error_ms: DEFAULT_JWKS_STALE_IF_ERROR_SECONDS * 1000,
            fetch_timeout_ms: DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS * 1000,
        }
    }
}

/// URLs longer than this are refused: they end up inside cache keys, and KV keys stop at 512 bytes.
const MAX_URL_LEN: usize = 200;

impl Config {
    /// Reads every variable through `get` (a binding lookup at the edge, a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let domain = var("AUTH0_DOMAIN").ok_or(missing("AUTH0_DOMAIN"))?;
        let host = parse_domain(&domain)
            .ok_or(invalid("AUTH0_DOMAIN", "a host name such as example.eu.auth0.com, without scheme or path"))?;
        // A loopback issuer (the local dev issuer, a test double) has no TLS certificate.
        let scheme = if is_loopback(host) { "http" } else { "https" };

        let audiences: Vec<String> =
            var("AUTH0_AUDIENCE").ok_or(missing("AUTH0_AUDIENCE"))?.split(',').map(|a| a.trim().to_owned()).collect();
        if audiences.iter().any(|a| a.is_empty() || a.contains('"') || a.contains('\\')) {
            return Err(invalid("AUTH0_AUDIENCE", "one or more API identifiers, comma-separated, none empty"));
        }

        let url_or = |name: &'static str, default: String| match var(name) {
            Some(url) if check_url(&url).is_some() => Ok(url),
            Some(_) => Err(invalid(name, "an https:// URL (http:// only for loopback hosts)")),
            None => Ok(default),
        };
        let issuer = url_or("AUTH0_ISSUER", format!("{scheme}://{domain}/"))?;
        let jwks_url = url_or("AUTH0_JWKS_URL", format!("{scheme}://{domain}/.well-known/jwks.json"))?;
        if issuer.len() > MAX_URL_LEN || jwks_url.len() > MAX_URL_LEN {
            return Err(invalid("AUTH0_DOMAIN", "a host name of at most 150 characters"));
        }

        let leeway_secs = seconds(&var, "CLOCK_SKEW_SECONDS", DEFAULT_CLOCK_SKEW_SECONDS, 0, MAX_CLOCK_SKEW_SECONDS)?;
        let cors = match var("CORS_ALLOWED_ORIGINS") {
            None => CorsPolicy::None,
            Some(v) if v == "*" => CorsPolicy::Any,
            Some(v) => {
                let origins: Option<Vec<String>> = v.split(',').map(|o| parse_origin(o.trim())).collect();
                CorsPolicy::Origins(origins.ok_or(invalid(
                    "CORS_ALLOWED_ORIGINS",
                    "* or comma-separated origins such as https://app.example.com",
                ))?)
            }
        };
        let scope_source = match var("SCOPE_SOURCE").as_deref() {
            None | Some("both") => ScopeSource::Both,
            Some("scope") => ScopeSource::ScopeClaim,
            Some("permissions") => ScopeSource::PermissionsClaim,
            Some(_) => return Err(invalid("SCOPE_SOURCE", "one of both, scope, permissions")),
        };
        let day = 24 * 3600;
        let jwks = JwksPolicy {
            max_age_ms: 1000 * seconds(&var, "JWKS_MAX_AGE_SECONDS", DEFAULT_JWKS_MAX_AGE_SECONDS, 1, 30 * day)?,
            cooldown_ms: 1000 * seconds(&var, "JWKS_COOLDOWN_SECONDS", DEFAULT_JWKS_COOLDOWN_SECONDS, 1, day)?,
            stale_if_error_ms: 1000
                * seconds(&var, "JWKS_STALE_IF_ERROR_SECONDS", DEFAULT_JWKS_STALE_IF_ERROR_SECONDS, 0, 365 * day)?,
            fetch_timeout_ms: 1000
                * seconds(&var, "JWKS_FETCH_TIMEOUT_SECONDS", DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS, 1, 30)?,
        };
        let status_endpoint = match var("STATUS_ENDPOINT").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(invalid("STATUS_ENDPOINT", "true or false")),
        };

        Ok(Config { issuer, audiences, jwks_url, leeway_secs, cors, scope_source, jwks, status_endpoint })
    }

    /// The realm named in `WWW-Authenticate`: the protected API's identifier.
    pub fn realm(&self) -> &str {
        &self.audiences[0]
    }
}

fn missing(variable: &'static str) -> ConfigError {
    ConfigError { variable, problem: ConfigProblem::Missing }
}

fn invalid(variable: &'static str, expected: &'static str) -> ConfigError {
    ConfigError { variable, problem: ConfigProblem::Invalid(expected) }
}

fn seconds(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    const EXPECTED: &str = "a whole number of seconds within the documented range";
    match var(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(invalid(name, EXPECTED)),
        },
    }
}

/// `host` or `host:port`; returns the host.
fn parse_domain(domain: &str) -> Option<&str> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 150
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.starts_with('-');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then_some(host)
}

/// An absolute `https://` URL, or `http://` to a loopback host. No user info, no fragment.
fn check_url(url: &str) -> Option<()> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host = parse_domain(authority).or_else(|| parse_bracketed_ipv6(authority))?;
    let scheme_ok = scheme == "https" || (scheme == "http" && is_loopback(host));
    let rest_ok = !url.contains('#') && !url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    (scheme_ok && rest_ok).then_some(())
}

fn parse_bracketed_ipv6(authority: &str) -> Option<&str> {
    let inner = authority.strip_prefix('[')?;
    let (host, after) = inner.split_once(']')?;
    let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    // The host with its brackets, as `is_loopback` expects "[::1]".
    (port_ok && host.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')).then_some(&authority[..host.len() + 2])
}

pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host.strip_prefix("127.").is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('.').collect();
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())
        })
}

/// `scheme://host[:port]` exactly, as browsers send it in `Origin`.
fn parse_origin(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    let ok = (scheme == "https" || scheme == "http")
        && (parse_domain(authority).is_some() || parse_bracketed_ipv6(authority).is_some());
    ok.then(|| origin.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|name| map.get(name).cloned())
    }

    const BASE: [(&str, &str); 2] =
        [("AUTH0_DOMAIN", "example.eu.auth0.com"), ("AUTH0_AUDIENCE", "https://api.example.com")];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
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
        assert_eq!(c.issuer, "https://example.eu.auth0.com/");
        assert_eq!(c.jwks_url, "https://example.eu.auth0.com/.well-known/jwks.json");
        assert_eq!(c.audiences, vec!["https://api.example.com"]);
        assert_eq!(c.leeway_secs, 30);
        assert_eq!(c.cors, CorsPolicy::None);
        assert_eq!(c.scope_source, ScopeSource::Both);
        assert_eq!(c.jwks, JwksPolicy::default());
        assert!(!c.status_endpoint);
    }

    #[test]
    fn loopback_domain_uses_plain_http() {
        let c = config(&[("AUTH0_DOMAIN", "127.0.0.1:8788"), ("AUTH0_AUDIENCE", "a")]).unwrap();
        assert_eq!(c.issuer, "http://127.0.0.1:8788/");
        assert_eq!(c.jwks_url, "http://127.0.0.1:8788/.well-known/jwks.json");
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
        assert_eq!(c.audiences, vec!["https://a", "https://b"]);
        assert_eq!(failing_variable(with(&[("AUTH0_AUDIENCE", "https://a,,https://b")])), "AUTH0_AUDIENCE");
    }

    #[test]
    fn issuer_and_jwks_url_overrides_must_be_https_or_loopback_http() {
        let c =
            with(&[("AUTH0_ISSUER", "https://login.example.com/"), ("AUTH0_JWKS_URL", "http://localhost:9000/jwks")])
                .unwrap();
        assert_eq!(c.issuer, "https://login.example.com/");
        assert_eq!(c.jwks_url, "http://localhost:9000/jwks");
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
        assert_eq!(c.issuer, "https://example.eu.auth0.com/");
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
}
