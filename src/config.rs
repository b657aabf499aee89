//! The worker's settings, parsed and checked from its variables in one pass.
//!
//! The variable names are a public contract: deployment docs and outside test suites set them.
//! Optional variables that are empty count as unset, so `--var NAME:` restores a default.
//! Development values live in `.dev.vars`, which only `wrangler dev` reads: a deployment with no
//! variables set says which one is missing rather than trusting a local issuer.

use std::rc::Rc;

use serde_json::Value;

use crate::{
    decision::{DecisionLog, ObservePolicy, DEFAULT_LOG_LINES_PER_MINUTE},
    error::{ConfigError, ConfigProblem},
};

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

/// One issuer the worker trusts: a token whose `iss` is exactly `issuer` is checked with keys
/// from `jwks_url` only, against `audiences` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub audiences: Vec<String>,
}

/// At most this many `ISSUERS` entries: each has its own key store, tiers and issuer fetches.
pub const MAX_ISSUERS: usize = 20;

/// Which credentials are accepted (`DPOP`). A DPoP-bound token is never accepted as Bearer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// Bearer for unbound tokens, DPoP for bound ones.
    Allowed,
    /// Only DPoP-bound tokens with their proof.
    Required,
    /// Bearer only: the DPoP scheme counts as no credential, and bound tokens are refused.
    Off,
}

/// How DPoP proofs are judged (RFC 9449).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopPolicy {
    pub mode: DpopMode,
    /// A proof's `iat` may be at most this old; each isolate remembers used `jti`s as long.
    pub max_age_secs: u64,
    /// `DPOP_NONCE_SECRET`: when set, every proof carries a nonce the edge issued (RFC 9449 §9).
    pub nonce: Option<NoncePolicy>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct NoncePolicy {
    pub secret: Vec<u8>,
    /// A nonce is good for the step it was issued in and the next one.
    pub step_secs: u64,
}

impl std::fmt::Debug for NoncePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, even in a test failure.
        f.debug_struct("NoncePolicy").field("step_secs", &self.step_secs).finish_non_exhaustive()
    }
}

pub const DEFAULT_DPOP_MAX_AGE_SECONDS: u64 = 300;
pub const DEFAULT_DPOP_NONCE_SECONDS: u64 = 60;
/// An HMAC key shorter than this is guessable.
pub const MIN_DPOP_NONCE_SECRET_BYTES: usize = 32;

/// The gateway's settings. `ROUTES` is kept as given; the pipeline compiles it once per isolate.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// `scheme://host[:port]` and the base path, without a trailing `/`.
    pub origin: String,
    pub routes: Value,
    pub timeout_ms: u64,
    pub forward_authorization: bool,
    pub forward_claims: bool,
    pub secret: Option<String>,
    /// `CLAIM_HEADERS`: a header (lower case, `x-auth-…`) per claim it carries, in the order given.
    pub claim_headers: Vec<ClaimHeader>,
}

/// One `CLAIM_HEADERS` entry: the header's name (lower case) and the claim it carries.
pub type ClaimHeader = (Rc<str>, Rc<str>);

/// How long the origin has to send its response headers.
pub const DEFAULT_ORIGIN_TIMEOUT_SECONDS: u64 = 30;
pub const MAX_ORIGIN_TIMEOUT_SECONDS: u64 = 300;

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

/// What a CORS preflight from an allowed origin is told besides the methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightPolicy {
    /// `Access-Control-Allow-Headers`: [`PREFLIGHT_HEADERS`], then `CORS_ALLOWED_HEADERS`.
    pub allow_headers: String,
    /// `Access-Control-Max-Age`.
    pub max_age_secs: u64,
}

/// The request headers every allowed origin may send: the token, JSON bodies, and a DPoP proof.
pub const PREFLIGHT_HEADERS: &str = "Authorization, Content-Type, DPoP";
/// How long a browser may reuse a preflight's answer.
pub const DEFAULT_CORS_MAX_AGE_SECONDS: u64 = 600;
/// Browsers cap it lower anyway (Chromium at 2 hours, Firefox at 24).
pub const MAX_CORS_MAX_AGE_SECONDS: u64 = 86_400;

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
/// A derived URL always fits: a host is at most 150 characters.
const MAX_URL_LEN: usize = 200;
const DOMAIN_EXPECTED: &str =
    "a host name such as example.eu.auth0.com (optionally :port, at most 150 characters), without scheme or path";
const AUDIENCE_EXPECTED: &str =
    "one or more API identifiers (a string, comma-separated, or an array), none empty, printable ASCII without \" or \\";
const URL_EXPECTED: &str = "an https:// URL of at most 200 characters (http:// only for loopback hosts)";
const ORIGINS_EXPECTED: &str = "* or origins such as https://app.example.com (a string, comma-separated, or an array)";
const HEADERS_EXPECTED: &str = "header names such as X-Request-Id (a string, comma-separated, or an array)";
const SECONDS_EXPECTED: &str = "a whole number of seconds within the documented range";

impl Config {
    /// Reads every variable through `get` (a binding lookup at the edge, a map in tests).
    ///
    /// A variable arrives as a JSON string (`--var`, secrets, a quoted `[vars]` value) or with its
    /// TOML type (`STATUS_ENDPOINT = true`, `CLOCK_SKEW_SECONDS = 60`, `AUTH0_AUDIENCE = ["a", "b"]`).
    /// Each accepts a string and its natural type; any other type is invalid, never ignored.
    pub fn from_vars(get: impl Fn(&str) -> Option<Value>) -> Result<Config, ConfigError> {
        let vars = Vars(get);

        let listed = vars.get("ISSUERS");
        let audiences = vars.list("AUTH0_AUDIENCE", AUDIENCE_EXPECTED)?;
        if audiences.as_ref().is_some_and(|list| !list.iter().all(|a| header_safe(a))) {
            return Err(invalid("AUTH0_AUDIENCE", AUDIENCE_EXPECTED));
        }
        let mut issuers = Vec::new();
        if let Some((issuer, jwks_url)) = primary_issuer(&vars, listed.is_none())? {
            let audiences = audiences.clone().ok_or(missing("AUTH0_AUDIENCE"))?;
            issuers.push(IssuerConfig { issuer, jwks_url, audiences });
        }
        if let Some(listed) = listed {
            issuers.extend(parse_issuers(listed, audiences.as_deref(), &issuers)?);
        }
        let realm = audiences.as_ref().unwrap_or(&issuers[0].audiences)[0].clone();

        let leeway_secs = vars.seconds("CLOCK_SKEW_SECONDS", DEFAULT_CLOCK_SKEW_SECONDS, 0, MAX_CLOCK_SKEW_SECONDS)?;
        let cors = match vars.list("CORS_ALLOWED_ORIGINS", ORIGINS_EXPECTED)? {
            None => CorsPolicy::None,
            Some(list) if list == ["*"] => CorsPolicy::Any,
            Some(list) => {
                let origins: Option<Vec<String>> = list.iter().map(|o| parse_origin(o)).collect();
                CorsPolicy::Origins(origins.ok_or(invalid("CORS_ALLOWED_ORIGINS", ORIGINS_EXPECTED))?)
            }
        };
        let preflight = preflight_policy(&vars)?;
        let scope_source = vars.choice(
            "SCOPE_SOURCE",
            "one of both, scope, permissions",
            &[
                ("both", ScopeSource::Both),
                ("scope", ScopeSource::ScopeClaim),
                ("permissions", ScopeSource::PermissionsClaim),
            ],
        )?;
        let day = 24 * 3600;
        let jwks = JwksPolicy {
            max_age_ms: 1000 * vars.seconds("JWKS_MAX_AGE_SECONDS", DEFAULT_JWKS_MAX_AGE_SECONDS, 1, 30 * day)?,
            cooldown_ms: 1000 * vars.seconds("JWKS_COOLDOWN_SECONDS", DEFAULT_JWKS_COOLDOWN_SECONDS, 1, day)?,
            stale_if_error_ms: 1000
                * vars.seconds("JWKS_STALE_IF_ERROR_SECONDS", DEFAULT_JWKS_STALE_IF_ERROR_SECONDS, 0, 365 * day)?,
            fetch_timeout_ms: 1000
                * vars.seconds("JWKS_FETCH_TIMEOUT_SECONDS", DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS, 1, 30)?,
        };
        let status_endpoint = vars.switch("STATUS_ENDPOINT")?;
        let gateway = gateway(&vars)?;
        let dpop = dpop(&vars)?;
        let observe = observe(&vars)?;
        let denylist_refresh_secs =
            vars.seconds("DENYLIST_REFRESH_SECONDS", crate::denylist::DEFAULT_REFRESH_SECONDS, 1, 3600)?;

        Ok(Config {
            issuers,
            realm,
            leeway_secs,
            cors,
            preflight,
            scope_source,
            jwks,
            status_endpoint,
            gateway,
            dpop,
            observe,
            denylist_refresh_secs,
        })
    }

    /// The realm named in `WWW-Authenticate`: the protected API's identifier.
    pub fn realm(&self) -> &str {
        &self.realm
    }
}

/// An audience is the realm of `WWW-Authenticate` (the first one) and must make a valid header value.
fn header_safe(audience: &str) -> bool {
    !audience.is_empty() && audience.bytes().all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
}

/// The issuer `AUTH0_DOMAIN` (or `AUTH0_ISSUER`) and `AUTH0_JWKS_URL` describe, if any: required
/// unless `ISSUERS` is given.
fn primary_issuer<F: Fn(&str) -> Option<Value>>(
    vars: &Vars<F>,
    required: bool,
) -> Result<Option<(String, String)>, ConfigError> {
    let url = |name: &'static str| match vars.text(name, URL_EXPECTED)? {
        Some(url) if url.len() <= MAX_URL_LEN && check_url(&url).is_some() => Ok(Some(url)),
        Some(_) => Err(invalid(name, URL_EXPECTED)),
        None => Ok(None),
    };
    let (issuer, jwks_url) = (url("AUTH0_ISSUER")?, url("AUTH0_JWKS_URL")?);
    match vars.text("AUTH0_DOMAIN", DOMAIN_EXPECTED)? {
        Some(domain) => {
            let (derived_issuer, derived_jwks) =
                derive_from_domain(&domain).ok_or(invalid("AUTH0_DOMAIN", DOMAIN_EXPECTED))?;
            Ok(Some((issuer.unwrap_or(derived_issuer), jwks_url.unwrap_or(derived_jwks))))
        }
        None if required => Err(missing("AUTH0_DOMAIN")),
        None => match (issuer, jwks_url) {
            (Some(issuer), jwks_url) => {
                let default = default_jwks_url(&issuer);
                match jwks_url {
                    Some(url) => Ok(Some((issuer, url))),
                    None if default.len() <= MAX_URL_LEN => Ok(Some((issuer, default))),
                    None => Err(invalid("AUTH0_ISSUER", URL_EXPECTED)),
                }
            }
            (None, Some(_)) => Err(invalid("AUTH0_JWKS_URL", "used with AUTH0_DOMAIN or AUTH0_ISSUER only")),
            (None, None) => Ok(None),
        },
    }
}

/// The issuer and JWKS URL of an Auth0 domain: `https://` (plain `http://` for a loopback host,
/// such as the local dev issuer, which has no TLS certificate).
fn derive_from_domain(domain: &str) -> Option<(String, String)> {
    // Host names are case-insensitive, but `iss` is compared exactly, and Auth0 writes it in lower case.
    let domain = domain.to_ascii_lowercase();
    let host = parse_domain(&domain)?;
    let scheme = if is_loopback(host) { "http" } else { "https" };
    Some((format!("{scheme}://{domain}/"), format!("{scheme}://{domain}/.well-known/jwks.json")))
}

/// Where an issuer that is not a bare Auth0 domain publishes its keys by default.
fn default_jwks_url(issuer: &str) -> String {
    let separator = if issuer.ends_with('/') { "" } else { "/" };
    format!("{issuer}{separator}.well-known/jwks.json")
}

/// The members an `ISSUERS` entry may have.
const ISSUER_FIELDS: [&str; 4] = ["domain", "issuer", "jwks_url", "audiences"];

/// `ISSUERS`: a JSON array as text, or an array of tables. Errors name the 0-based entry.
fn parse_issuers(
    value: Value,
    default_audiences: Option<&[String]>,
    earlier: &[IssuerConfig],
) -> Result<Vec<IssuerConfig>, ConfigError> {
    let fail = |index: Option<usize>, detail: String| ConfigError {
        variable: "ISSUERS",
        problem: ConfigProblem::InvalidRule { index, detail },
    };
    let value = match value {
        Value::String(text) => crate::json::parse(text.as_bytes()).map_err(|e| fail(None, e.to_string()))?,
        value => value,
    };
    let Value::Array(entries) = value else { return Err(fail(None, "not an array of issuers".into())) };
    if entries.len() > MAX_ISSUERS {
        return Err(fail(None, format!("at most {MAX_ISSUERS} issuers")));
    }
    let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let fail = |detail: &str| fail(Some(index), detail.to_owned());
        let entry = crate::json::Fields::of(&entry, "struct IssuerEntry", &ISSUER_FIELDS).map_err(|e| fail(&e))?;
        let text = |name: &str| entry.string(name).map(|v| v.map(str::to_owned)).map_err(|e| fail(&e));
        let (domain, issuer, jwks_url) = (text("domain")?, text("issuer")?, text("jwks_url")?);
        let checked_url = |url: String| (url.len() <= MAX_URL_LEN && check_url(&url).is_some()).then_some(url);
        let (issuer, jwks_url) = match (domain, issuer) {
            (Some(domain), None) => {
                let (issuer, derived) = derive_from_domain(domain.trim()).ok_or_else(|| fail(DOMAIN_EXPECTED))?;
                (issuer, jwks_url.map(checked_url).unwrap_or(Some(derived)))
            }
            (None, Some(issuer)) => {
                let issuer = checked_url(issuer).ok_or_else(|| fail("issuer must be an https:// URL"))?;
                let default = default_jwks_url(&issuer);
                let jwks_url = jwks_url.map_or_else(|| checked_url(default), checked_url);
                (issuer, jwks_url)
            }
            _ => return Err(fail("give exactly one of domain and issuer")),
        };
        let jwks_url = jwks_url.ok_or_else(|| fail("jwks_url must be an https:// URL of at most 200 characters"))?;
        let audiences = match entry.get("audiences").cloned() {
            None => default_audiences.map(<[String]>::to_vec),
            Some(Value::String(s)) => Some(s.split(',').map(|a| a.trim().to_owned()).collect()),
            Some(Value::Array(items)) => {
                let items: Option<Vec<String>> =
                    items.iter().map(|a| a.as_str().map(|a| a.trim().to_owned())).collect();
                Some(items.ok_or_else(|| fail("audiences must be a string or an array of strings"))?)
            }
            Some(_) => return Err(fail("audiences must be a string or an array of strings")),
        };
        let audiences = audiences
            .filter(|list| !list.is_empty())
            .ok_or_else(|| fail("no audiences: give audiences here or set AUTH0_AUDIENCE"))?;
        if !audiences.iter().all(|a| header_safe(a)) {
            return Err(fail(AUDIENCE_EXPECTED));
        }
        if earlier.iter().chain(&issuers).any(|known| known.issuer == issuer) {
            return Err(fail(
                "this issuer is already trusted (listed twice, or also set by AUTH0_DOMAIN / AUTH0_ISSUER)",
            ));
        }
        issuers.push(IssuerConfig { issuer, jwks_url, audiences });
    }
    if issuers.is_empty() && earlier.is_empty() {
        return Err(fail(None, "no issuers".into()));
    }
    Ok(issuers)
}

fn dpop<F: Fn(&str) -> Option<Value>>(vars: &Vars<F>) -> Result<DpopPolicy, ConfigError> {
    let mode = vars.choice(
        "DPOP",
        "one of allowed, required, off",
        &[("allowed", DpopMode::Allowed), ("required", DpopMode::Required), ("off", DpopMode::Off)],
    )?;
    let max_age_secs = vars.seconds("DPOP_MAX_AGE_SECONDS", DEFAULT_DPOP_MAX_AGE_SECONDS, 1, 3600)?;
    const SECRET: &str = "at least 32 characters of printable ASCII (a random secret)";
    let nonce = match vars.text("DPOP_NONCE_SECRET", SECRET)? {
        None => None,
        Some(secret)
            if secret.len() >= MIN_DPOP_NONCE_SECRET_BYTES && secret.bytes().all(|b| (0x20..=0x7e).contains(&b)) =>
        {
            let step_secs = vars.seconds("DPOP_NONCE_SECONDS", DEFAULT_DPOP_NONCE_SECONDS, 10, 3600)?;
            Some(NoncePolicy { secret: secret.into_bytes(), step_secs })
        }
        Some(_) => return Err(invalid("DPOP_NONCE_SECRET", SECRET)),
    };
    Ok(DpopPolicy { mode, max_age_secs, nonce })
}

const SAMPLE_EXPECTED: &str = "a number from 0 to 1 (the share of decisions logged)";
/// At least one line a minute; past this, a limit is no limit.
pub const MAX_LOG_LINES_PER_MINUTE: u64 = 100_000;

fn observe<F: Fn(&str) -> Option<Value>>(vars: &Vars<F>) -> Result<ObservePolicy, ConfigError> {
    let decision_log = vars.choice(
        "DECISION_LOG",
        "one of refusals, all, off",
        &[("refusals", DecisionLog::Refusals), ("all", DecisionLog::All), ("off", DecisionLog::Off)],
    )?;
    let sample = match vars.get("DECISION_LOG_SAMPLE") {
        None => 1.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => decimal(s.trim()).unwrap_or(f64::NAN),
        Some(_) => f64::NAN,
    };
    if !(0.0..=1.0).contains(&sample) {
        return Err(invalid("DECISION_LOG_SAMPLE", SAMPLE_EXPECTED));
    }
    let per_minute =
        vars.count("LOG_LINES_PER_MINUTE", u64::from(DEFAULT_LOG_LINES_PER_MINUTE), 1, MAX_LOG_LINES_PER_MINUTE)?;
    let lines_per_minute = u32::try_from(per_minute).unwrap_or(u32::MAX);
    Ok(ObservePolicy { decision_log, sample, lines_per_minute })
}

/// A decimal as written in a variable: a JSON number (read as every other number is, see
/// src/json.rs), also with a leading `+` or a bare `.5` / `5.` (what Rust's float reader took here).
fn decimal(text: &str) -> Option<f64> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "." {
        return None;
    }
    let mut normal = String::with_capacity(text.len() + 2);
    if text.starts_with('.') {
        normal.push('0');
    }
    normal.push_str(text);
    if text.ends_with('.') {
        normal.push('0');
    }
    crate::json::parse(normal.as_bytes()).ok()?.as_f64()
}

fn missing(variable: &'static str) -> ConfigError {
    ConfigError { variable, problem: ConfigProblem::Missing }
}

fn invalid(variable: &'static str, expected: &'static str) -> ConfigError {
    ConfigError { variable, problem: ConfigProblem::Invalid(expected) }
}

fn preflight_policy<F: Fn(&str) -> Option<Value>>(vars: &Vars<F>) -> Result<PreflightPolicy, ConfigError> {
    let mut allow_headers = PREFLIGHT_HEADERS.to_owned();
    for name in vars.list("CORS_ALLOWED_HEADERS", HEADERS_EXPECTED)?.unwrap_or_default() {
        // An RFC 9110 token: anything else would break the header it is listed in.
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(invalid("CORS_ALLOWED_HEADERS", HEADERS_EXPECTED));
        }
        allow_headers.push_str(", ");
        allow_headers.push_str(&name);
    }
    let max_age_secs =
        vars.seconds("CORS_MAX_AGE_SECONDS", DEFAULT_CORS_MAX_AGE_SECONDS, 0, MAX_CORS_MAX_AGE_SECONDS)?;
    Ok(PreflightPolicy { allow_headers, max_age_secs })
}

/// Whether the variables ask for a gateway (`ORIGIN_URL` given), even if they cannot be read:
/// a broken gateway must answer nothing itself rather than fall back to the demo routes.
pub fn gateway_requested(get: impl Fn(&str) -> Option<Value>) -> bool {
    Vars(get).get("ORIGIN_URL").is_some()
}

const ORIGIN_EXPECTED: &str =
    "an https:// URL with an optional base path, no query or fragment (http:// only for loopback hosts)";
const SECRET_EXPECTED: &str = "a string of printable ASCII (it is sent as a header)";

fn gateway<F: Fn(&str) -> Option<Value>>(vars: &Vars<F>) -> Result<Option<GatewayConfig>, ConfigError> {
    let Some(url) = vars.text("ORIGIN_URL", ORIGIN_EXPECTED)? else {
        if vars.get("CLAIM_HEADERS").is_some() {
            return Err(invalid("CLAIM_HEADERS", "used only in gateway mode: set ORIGIN_URL too"));
        }
        return match vars.get("ROUTES") {
            Some(_) => Err(invalid("ROUTES", "used only in gateway mode: set ORIGIN_URL too")),
            None => Ok(None),
        };
    };
    let allowed = |scheme: &str, authority: &str| {
        let host = parse_domain(authority).or_else(|| parse_bracketed_ipv6(authority));
        host.is_some_and(|host| scheme == "https" || (scheme == "http" && is_loopback(host)))
    };
    let origin = Some(url)
        .filter(|url| url.len() <= 2048)
        .and_then(|url| parse_origin_url(&url, allowed))
        .ok_or(invalid("ORIGIN_URL", ORIGIN_EXPECTED))?;
    let secret = vars.text("ORIGIN_SECRET", SECRET_EXPECTED)?;
    if secret.as_ref().is_some_and(|s| !s.bytes().all(|b| (0x20..=0x7e).contains(&b))) {
        return Err(invalid("ORIGIN_SECRET", SECRET_EXPECTED));
    }
    Ok(Some(GatewayConfig {
        origin,
        routes: vars.get("ROUTES").ok_or(missing("ROUTES"))?,
        timeout_ms: 1000
            * vars.seconds("ORIGIN_TIMEOUT_SECONDS", DEFAULT_ORIGIN_TIMEOUT_SECONDS, 1, MAX_ORIGIN_TIMEOUT_SECONDS)?,
        forward_authorization: vars.switch("FORWARD_AUTHORIZATION")?,
        forward_claims: vars.switch("FORWARD_CLAIMS")?,
        secret,
        claim_headers: claim_headers(vars)?,
    }))
}

const CLAIM_HEADERS_EXPECTED: &str = "a JSON object of header names starting with X-Auth- (none the edge sets itself: \
     X-Auth-Subject, X-Auth-Scopes, X-Auth-Claims, X-Auth-Key-Thumbprint) to claim names";

/// `CLAIM_HEADERS`: `{"X-Auth-Email": "email"}`, as JSON text or a TOML table. A name must start
/// with `X-Auth-`, so that the spoofing rule removes a client's copy, and not be one the edge sets.
fn claim_headers<F: Fn(&str) -> Option<Value>>(vars: &Vars<F>) -> Result<Vec<ClaimHeader>, ConfigError> {
    let fail = || invalid("CLAIM_HEADERS", CLAIM_HEADERS_EXPECTED);
    let value = match vars.get("CLAIM_HEADERS") {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) => crate::json::parse(text.as_bytes()).map_err(|_| fail())?,
        Some(value) => value,
    };
    let Value::Object(map) = value else { return Err(fail()) };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let mut headers: Vec<ClaimHeader> = Vec::with_capacity(map.len());
    for (name, claim) in map {
        let lower = name.to_ascii_lowercase();
        let claim = claim.as_str().filter(|c| !c.is_empty()).ok_or_else(fail)?;
        let usable = lower.len() > "x-auth-".len()
            && lower.starts_with("x-auth-")
            && lower.bytes().all(token)
            && !crate::forward::EDGE_IDENTITY_HEADERS.contains(&lower.replace('_', "-").as_str())
            && !headers.iter().any(|(known, _)| **known == *lower);
        if !usable {
            return Err(fail());
        }
        headers.push((lower.into(), claim.into()));
    }
    Ok(headers)
}

/// An `ORIGIN_URL`: `https://`, or `http://` to a loopback host; an optional base path; no query,
/// fragment or user info. Returns `scheme://authority/base` without a trailing `/`.
fn parse_origin_url(url: &str, is_allowed: impl Fn(&str, &str) -> bool) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
    let valid_path = path.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'\\' | b'"'));
    if authority.is_empty() || authority.contains('@') || !valid_path || !is_allowed(scheme, authority) {
        return None;
    }
    Some(format!("{scheme}://{authority}{}", path.trim_end_matches('/')))
}

/// The variables, read by the shape each one takes. Unset, `null` and empty strings (after
/// trimming) all mean "not given", so `--var NAME:` restores a default.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<Value>> Vars<F> {
    fn get(&self, name: &str) -> Option<Value> {
        match (self.0)(name)? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            value => Some(value),
        }
    }

    /// A string, trimmed.
    fn text(&self, name: &'static str, expected: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) => Err(invalid(name, expected)),
        }
    }

    /// A list: comma-separated in a string, or an array of strings; items trimmed.
    fn list(&self, name: &'static str, expected: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        let items = match self.get(name) {
            None => return Ok(None),
            Some(Value::Array(items)) if items.is_empty() => return Ok(None),
            Some(Value::Array(items)) => items.iter().map(|item| item.as_str().map(str::to_owned)).collect(),
            Some(Value::String(s)) => Some(s.split(',').map(str::to_owned).collect::<Vec<_>>()),
            Some(_) => None,
        };
        let items: Vec<String> = items.ok_or(invalid(name, expected))?;
        Ok(Some(items.into_iter().map(|item| item.trim().to_owned()).collect()))
    }

    /// Whole seconds within `min..=max`: a string of digits or a non-negative integer.
    fn seconds(&self, name: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        self.whole(name, default, min, max).ok_or(invalid(name, SECONDS_EXPECTED))
    }

    /// A whole number within `min..=max`, as [`Vars::seconds`] reads one.
    fn count(&self, name: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        self.whole(name, default, min, max).ok_or(invalid(name, "a whole number within the documented range"))
    }

    fn whole(&self, name: &'static str, default: u64, min: u64, max: u64) -> Option<u64> {
        let value = match self.get(name) {
            None => return Some(default),
            Some(Value::String(s)) if s.trim().bytes().all(|b| b.is_ascii_digit()) => s.trim().parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            Some(_) => None,
        };
        value.filter(|n| (min..=max).contains(n))
    }

    /// One of a fixed set of words; the first is the default.
    fn choice<T: Copy>(
        &self,
        name: &'static str,
        expected: &'static str,
        words: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        match self.text(name, expected)? {
            None => Ok(words[0].1),
            Some(word) => words.iter().find(|(w, _)| *w == word).map(|(_, v)| *v).ok_or(invalid(name, expected)),
        }
    }

    /// A boolean, or the string `true` or `false`; off unless given.
    fn switch(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(on)) => Ok(on),
            Some(Value::String(s)) if s.trim() == "true" => Ok(true),
            Some(Value::String(s)) if s.trim() == "false" => Ok(false),
            Some(_) => Err(invalid(name, "true or false")),
        }
    }
}

/// `host` or `host:port`; returns the host.
fn parse_domain(domain: &str) -> Option<&str> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (domain, None),
    };
    let host_ok = host.len() <= 150
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.split('.').all(|label| !label.is_empty())
        && !host.starts_with('-');
    (host_ok && port.is_none_or(valid_port)).then_some(host)
}

/// 1 to 65535, in digits.
fn valid_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// An absolute `https://` URL, or `http://` to a loopback host. No user info, no fragment.
fn check_url(url: &str) -> Option<()> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host = parse_domain(authority).or_else(|| parse_bracketed_ipv6(authority))?;
    let scheme_ok = scheme == "https" || (scheme == "http" && is_loopback(&host.to_ascii_lowercase()));
    let rest_ok = !url.contains('#') && !url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    (scheme_ok && rest_ok).then_some(())
}

fn parse_bracketed_ipv6(authority: &str) -> Option<&str> {
    let inner = authority.strip_prefix('[')?;
    let (host, after) = inner.split_once(']')?;
    let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
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
        assert_eq!(c.dpop, DpopPolicy { mode: DpopMode::Allowed, max_age_secs: 300, nonce: None });
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
