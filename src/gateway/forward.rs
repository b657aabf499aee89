//! What the origin receives from the gateway: the target URL, which incoming headers are dropped,
//! and the identity headers the edge adds; and the settings that decide it ([`GatewayConfig`],
//! read from `ORIGIN_URL` and its companions). Pure: the edge only copies and sends.
//!
//! The origin may trust `X-Auth-*` because no client can send them: every incoming header named
//! `X-Auth-*` or `X-Edge-Auth-Secret` is removed before anything is added. The same holds for the
//! proxy headers: the client's `Forwarded`, `X-Forwarded-*`, `X-Real-IP` and `Proxy-*` are removed,
//! and so is every other header that names the client's address (`X-Client-IP`, `True-Client-IP`,
//! `Client-IP`, `X-Cluster-Client-IP`, `Fastly-Client-IP`, `CF-Connecting-IP`, …, see
//! `is_proxy_header`): the address is `X-Forwarded-For` alone, and it and `X-Forwarded-Host` and
//! `-Proto` are the edge's.

use std::rc::Rc;

use serde_json::Value;

use crate::{
    config::vars::{invalid, is_loopback, missing, parse_bracketed_ipv6, parse_domain, Vars},
    error::ConfigError,
    gateway::{
        assertion::{self, AssertionConfig},
        mcp::DEFAULT_MAX_BODY_BYTES,
    },
    token::{
        claims::{Binding, Principal},
        extract::Scheme,
    },
};

pub const SUBJECT: &str = "x-auth-subject";
pub const SCOPES: &str = "x-auth-scopes";
pub const CLAIMS: &str = "x-auth-claims";
/// The RFC 7638 thumbprint of the key a DPoP-bound token was proven with, at the edge.
pub const KEY_THUMBPRINT: &str = "x-auth-key-thumbprint";
pub const SECRET: &str = "x-edge-auth-secret";
/// The identity headers the edge writes itself: `CLAIM_HEADERS` may not name them.
pub const EDGE_IDENTITY_HEADERS: [&str; 5] = [SUBJECT, SCOPES, CLAIMS, KEY_THUMBPRINT, assertion::HEADER];
pub const FORWARDED_HOST: &str = "x-forwarded-host";
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// Headers some frameworks let override the path or method: the rule was decided on the request's
/// own path and method, so the origin must not act on others.
const OVERRIDES: [&str; 5] =
    ["x-original-url", "x-rewrite-url", "x-http-method-override", "x-http-method", "x-method-override"];

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
    /// `MCP_MAX_BODY_BYTES`: the longest body a POST on an MCP rule may have (it is read whole).
    pub mcp_max_body_bytes: u64,
    /// `ASSERTION_KEYS` and its companions: every forwarded request carries a signed assertion.
    pub assertion: Option<AssertionConfig>,
}

/// One `CLAIM_HEADERS` entry: the header's name (lower case) and the claim it carries.
pub type ClaimHeader = (Rc<str>, Rc<str>);

/// An MCP body is held in memory while its scopes are read, and its parsed form takes up to ~20
/// times its size (a body of many small values): 4 MiB at most keeps that within an isolate's memory.
pub const MAX_MCP_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// How long the origin has to send its response headers.
pub const DEFAULT_ORIGIN_TIMEOUT_SECONDS: u64 = 30;
pub const MAX_ORIGIN_TIMEOUT_SECONDS: u64 = 300;

/// Whether the variables ask for a gateway (`ORIGIN_URL` given), even if they cannot be read:
/// a broken gateway must answer nothing itself rather than fall back to the demo routes.
pub fn gateway_requested(get: impl Fn(&str) -> Option<Value>) -> bool {
    Vars::new(&get).get("ORIGIN_URL").is_some()
}

const ORIGIN_EXPECTED: &str =
    "an https:// URL with an optional base path, no query or fragment (http:// only for loopback hosts)";
const SECRET_EXPECTED: &str = "a string of printable ASCII (it is sent as a header)";

impl GatewayConfig {
    /// `ORIGIN_URL` (none: not a gateway), `ROUTES` (kept as given), `ORIGIN_TIMEOUT_SECONDS`,
    /// `FORWARD_AUTHORIZATION`, `FORWARD_CLAIMS`, `ORIGIN_SECRET`, `CLAIM_HEADERS` and the
    /// assertion's (`ASSERTION_*`, read by [`AssertionConfig::from_vars`]).
    pub fn from_vars(vars: &Vars) -> Result<Option<GatewayConfig>, ConfigError> {
        let Some(url) = vars.text("ORIGIN_URL", ORIGIN_EXPECTED)? else {
            for only_here in ["CLAIM_HEADERS", "ASSERTION_KEYS"] {
                if vars.get(only_here).is_some() {
                    return Err(invalid(only_here, "used only in gateway mode: set ORIGIN_URL too"));
                }
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
        let claim_headers = claim_headers(vars)?;
        let assertion =
            AssertionConfig::from_vars(vars, origin_of(&origin), claim_headers.iter().map(|(_, claim)| claim))?;
        Ok(Some(GatewayConfig {
            origin,
            routes: vars.get("ROUTES").ok_or(missing("ROUTES"))?,
            timeout_ms: 1000
                * vars.seconds(
                    "ORIGIN_TIMEOUT_SECONDS",
                    DEFAULT_ORIGIN_TIMEOUT_SECONDS,
                    1,
                    MAX_ORIGIN_TIMEOUT_SECONDS,
                )?,
            forward_authorization: vars.switch("FORWARD_AUTHORIZATION")?,
            forward_claims: vars.switch("FORWARD_CLAIMS")?,
            secret,
            claim_headers,
            mcp_max_body_bytes: vars.count("MCP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1, MAX_MCP_BODY_BYTES)?,
            assertion,
        }))
    }
}

const CLAIM_HEADERS_EXPECTED: &str = "a JSON object of header names starting with X-Auth- (none the edge sets itself: \
     X-Auth-Subject, X-Auth-Scopes, X-Auth-Claims, X-Auth-Key-Thumbprint, X-Auth-Assertion) to claim names";

/// `CLAIM_HEADERS`: `{"X-Auth-Email": "email"}`, as JSON text or a TOML table. A name must start
/// with `X-Auth-`, so that the spoofing rule removes a client's copy, and not be one the edge sets.
fn claim_headers(vars: &Vars) -> Result<Vec<ClaimHeader>, ConfigError> {
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
            && !EDGE_IDENTITY_HEADERS.contains(&lower.replace('_', "-").as_str())
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

/// `scheme://authority` of an `ORIGIN_URL` as [`parse_origin_url`] returned it (the base path cut).
fn origin_of(url: &str) -> &str {
    let authority_at = url.find("://").map_or(0, |i| i + 3);
    url[authority_at..].find('/').map_or(url, |i| &url[..authority_at + i])
}

impl GatewayConfig {
    /// The origin URL for a request: the base path, then the path and query exactly as the
    /// runtime handed them over (no decoding, re-encoding or reordering).
    pub fn target(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.origin)
    }

    /// Whether an incoming header stays behind. `host` is the origin's own (set from the URL).
    /// Underscores count as dashes: CGI and WSGI servers read `X_Auth_Subject` and `X-Auth-Subject`
    /// alike (`HTTP_X_AUTH_SUBJECT`). `verified`: the scheme of the token the edge verified, if it
    /// did. `Authorization` reaches the origin only when asked for and only on such a request:
    /// never an unchecked one. `DPoP` only when, besides, the token came under the DPoP scheme (so
    /// the edge checked the proof): a Bearer request's `DPoP` header was never read, let alone
    /// checked, and must not look to the origin as if it had been.
    pub fn drops(&self, name: &str, verified: Option<Scheme>) -> bool {
        // Names come lower case from the runtime: only another one is rewritten (no allocation).
        let lower = if name.bytes().any(|b| b.is_ascii_uppercase() || b == b'_') {
            std::borrow::Cow::Owned(name.to_ascii_lowercase().replace('_', "-"))
        } else {
            std::borrow::Cow::Borrowed(name)
        };
        let lower = lower.as_ref();
        lower.starts_with("x-auth-")
            || lower == SECRET
            || lower == "host"
            || is_proxy_header(lower)
            || OVERRIDES.contains(&lower)
            || (lower == "authorization" && !(self.forward_authorization && verified.is_some()))
            || (lower == "dpop" && !(self.forward_authorization && verified == Some(Scheme::Dpop)))
    }

    /// Headers the edge adds after the incoming ones were filtered.
    /// `claims_segment` is the token's payload exactly as signed (base64url, no padding).
    pub fn added_headers(
        &self,
        client: &Client<'_>,
        principal: Option<(&Principal, &str)>,
    ) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(host) = client.host {
            headers.push((FORWARDED_HOST, host.to_owned()));
        }
        if let Some(scheme) = client.scheme {
            headers.push((FORWARDED_PROTO, scheme.to_owned()));
        }
        if let Some(address) = client.address {
            headers.push((FORWARDED_FOR, address.to_owned()));
        }
        if let Some(secret) = &self.secret {
            headers.push((SECRET, secret.clone()));
        }
        if let Some((principal, claims_segment)) = principal {
            if let Some(subject) = &principal.subject {
                headers.push((SUBJECT, header_safe(subject)));
            }
            if !principal.scopes.is_empty() {
                // A BTreeSet: de-duplicated and sorted already.
                let scopes: Vec<String> = principal.scopes.iter().map(|s| header_safe(s)).collect();
                headers.push((SCOPES, scopes.join(" ")));
            }
            if let Binding::Jkt(jkt) = &principal.binding {
                // Only a bound token whose proof held gets this far with a binding.
                headers.push((KEY_THUMBPRINT, header_safe(jkt)));
            }
            if self.forward_claims {
                headers.push((CLAIMS, claims_segment.to_owned()));
            }
        }
        headers
    }
}

impl GatewayConfig {
    /// `CLAIM_HEADERS` for a verified caller: each header that names a claim the token has, the
    /// claim as is when a string, else as compact JSON, encoded as the identity headers are.
    pub fn claim_headers(&self, principal: &Principal) -> Vec<(Rc<str>, String)> {
        self.claim_headers
            .iter()
            .filter_map(|(header, claim)| {
                let value = principal.claim(claim)?;
                let text = match value {
                    serde_json::Value::String(s) => header_safe(s),
                    other => header_safe(&other.to_string()),
                };
                Some((header.clone(), text))
            })
            .collect()
    }
}

/// What the runtime, not the client, says about where a request came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    /// The host of the request URL: the one the client asked for.
    pub host: Option<&'a str>,
    /// The scheme of the request URL (`https`, or `http` in local development).
    pub scheme: Option<&'a str>,
    /// The client's address as the runtime reports it (`CF-Connecting-IP`).
    pub address: Option<&'a str>,
}

/// Headers a proxy sets to say who the client is and how it came (RFC 7239 and the de facto
/// `X-Forwarded-*`, `X-Real-IP`), the client-address headers of CDNs and load balancers, which
/// origin libraries read, some before `X-Forwarded-For` (npm `request-ip` reads `X-Client-IP`
/// first), and the hop-to-proxy `Proxy-*` ones (`Proxy-Authorization` carries a credential meant
/// for a proxy, never for the origin). `name` is in lower case, underscores as dashes.
fn is_proxy_header(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("proxy-")
        || matches!(
            name,
            "forwarded"
                | "x-real-ip"
                | "x-client-ip"
                | "client-ip"
                | "true-client-ip"
                | "x-cluster-client-ip"
                | "fastly-client-ip"
                | "cf-connecting-ip"
                | "cf-connecting-ipv6"
                | "cf-pseudo-ipv4"
                | "do-connecting-ip"
                | "x-appengine-user-ip"
                | "x-forwarded"
                | "forwarded-for"
        )
}

/// Claims are JSON strings and may hold anything; a header value may not. Bytes outside
/// printable ASCII, and `%` itself, are percent-encoded, so the value stays reversible.
/// A space inside a scope would split it in `X-Auth-Scopes`, so it is encoded too.
pub fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The payload segment of a compact JWS (what `X-Auth-Claims` carries).
pub fn claims_segment(token: &str) -> &str {
    token.split('.').nth(1).unwrap_or_default()
}
