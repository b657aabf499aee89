//! The HTTP face of the worker, as plain data: response bodies, headers, CORS, and the one place
//! where an [`ApiError`] becomes a status code (`error_response`).

use serde_json::json;

use crate::{
    config::vars::{invalid, parse_origin, Vars},
    dpop::{policy::DpopMode, proof},
    error::{ApiError, ConfigError},
    token::extract::Scheme,
};

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

impl CorsPolicy {
    /// `CORS_ALLOWED_ORIGINS`: unset (no CORS), `*`, or a list of origins.
    pub fn from_vars(vars: &Vars) -> Result<CorsPolicy, ConfigError> {
        Ok(match vars.list("CORS_ALLOWED_ORIGINS", ORIGINS_EXPECTED)? {
            None => CorsPolicy::None,
            Some(list) if list == ["*"] => CorsPolicy::Any,
            Some(list) => {
                let origins: Option<Vec<String>> = list.iter().map(|o| parse_origin(o)).collect();
                CorsPolicy::Origins(origins.ok_or(invalid("CORS_ALLOWED_ORIGINS", ORIGINS_EXPECTED))?)
            }
        })
    }
}

const ORIGINS_EXPECTED: &str = "* or origins such as https://app.example.com (a string, comma-separated, or an array)";
const HEADERS_EXPECTED: &str = "header names such as X-Request-Id (a string, comma-separated, or an array)";

impl PreflightPolicy {
    /// `CORS_ALLOWED_HEADERS` and `CORS_MAX_AGE_SECONDS`.
    pub fn from_vars(vars: &Vars) -> Result<PreflightPolicy, ConfigError> {
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
}

/// A response before it is handed to the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

impl HttpResponse {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self { status, headers: vec![("content-type", "application/json".into())], body: Some(body.to_string()) }
    }

    /// A body that is JSON text already.
    pub fn json_text(status: u16, body: &str) -> Self {
        Self { status, headers: vec![("content-type", "application/json".into())], body: Some(body.to_owned()) }
    }

    pub fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: None }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The response as one string for `entry.mjs` (`respond`), so that handing it to the runtime
    /// is one crossing out of wasm instead of one per header: the status, then each header's name
    /// and value, each on a line; then, when there is a body, a NUL and the body as it is.
    /// `None` when a header could not travel that way (a line break or a NUL in it), which no
    /// header the edge writes holds.
    pub fn to_wire(&self) -> Option<String> {
        let mut wire = self.status.to_string();
        for (name, value) in &self.headers {
            if [*name, value.as_str()].iter().any(|text| text.contains(['\n', '\r', '\0'])) {
                return None;
            }
            for text in ["\n", name, "\n", value] {
                wire.push_str(text);
            }
        }
        if let Some(body) = &self.body {
            wire.push('\0');
            wire.push_str(body);
        }
        Some(wire)
    }
}

/// The answer for an internal failure, in the shape of every other error (and of `entry.mjs`'s
/// last resort): never the runtime's error page, never a detail.
pub fn internal_error() -> HttpResponse {
    HttpResponse::json_text(500, r#"{"error":"server_error","error_description":"Internal error"}"#)
        .with_header("cache-control", "no-store")
}

/// Methods every route answers; `HEAD` is `GET` without a body.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// What the `WWW-Authenticate` challenges of a refusal say: which schemes the deployment
/// accepts, and which one the client used (that one carries the error).
#[derive(Debug, Clone, Copy)]
pub struct Challenge<'a> {
    pub realm: &'a str,
    pub dpop: DpopMode,
    pub scheme: Option<Scheme>,
    /// A protected resource's metadata URL (RFC 9728 §5.1), named in every challenge of its rule.
    pub resource_metadata: Option<&'a str>,
    /// The scopes the request needs, when a 401 should say so too (a protected resource's rule):
    /// MCP clients ask for exactly these when they log in.
    pub scope: Option<&'a str>,
}

impl Challenge<'_> {
    /// One `WWW-Authenticate` value per accepted scheme (RFC 9449 §7.1), `error` on the one used.
    fn headers(&self, error: Option<(&str, &str)>, scope: Option<&str>) -> Vec<(&'static str, String)> {
        let used = match (self.scheme, self.dpop) {
            (Some(scheme), _) => scheme,
            (None, DpopMode::Required) => Scheme::Dpop,
            (None, _) => Scheme::Bearer,
        };
        // A DPoP-specific error belongs to the DPoP challenge whatever scheme was used, and an
        // error on a scheme the deployment does not offer goes on the one it does.
        let used = match (error, self.dpop) {
            (Some(("invalid_dpop_proof" | "use_dpop_nonce", _)), _) | (_, DpopMode::Required) => Scheme::Dpop,
            (_, DpopMode::Off) => Scheme::Bearer,
            _ => used,
        };
        let with_error = |mut value: String, scheme: Scheme| {
            if let (Some((code, description)), true) = (error, scheme == used) {
                value.push_str(&format!(", error=\"{code}\", error_description=\"{description}\""));
                if let Some(scope) = scope {
                    value.push_str(&format!(", scope=\"{scope}\""));
                }
            }
            // RFC 9728 §5.1 and the MCP authorization spec: every challenge of a protected resource
            // names its metadata, and its scopes when no error already did.
            if let Some(url) = self.resource_metadata {
                if let Some(scope) = self.scope.filter(|s| !s.is_empty() && (scope.is_none() || scheme != used)) {
                    value.push_str(&format!(", scope=\"{scope}\""));
                }
                value.push_str(&format!(", resource_metadata=\"{url}\""));
            }
            value
        };
        let mut headers = Vec::with_capacity(2);
        if self.dpop != DpopMode::Required {
            headers.push(("www-authenticate", with_error(format!("Bearer realm=\"{}\"", self.realm), Scheme::Bearer)));
        }
        if self.dpop != DpopMode::Off {
            let dpop = format!("DPoP algs=\"{}\"", proof::ALGORITHMS);
            headers.push(("www-authenticate", with_error(dpop, Scheme::Dpop)));
        }
        headers
    }
}

/// A client refused because the deny list could not be read tries again after this long: the
/// next request of an isolate that never read it reads it again.
const DENYLIST_RETRY_AFTER_SECS: u64 = 5;

/// When the configuration itself is broken: Bearer only, a neutral realm.
const BROKEN: Challenge<'static> =
    Challenge { realm: "edge-auth", dpop: DpopMode::Off, scheme: None, resource_metadata: None, scope: None };

/// The one mapping from errors to HTTP (RFC 6750 §3 for the Bearer errors, RFC 9449 §7.1 and §9
/// for DPoP's). `challenge` is `None` when the configuration itself is broken.
pub fn error_response(error: &ApiError, challenge: Option<&Challenge<'_>>) -> HttpResponse {
    let challenge = challenge.unwrap_or(&BROKEN);
    let refuse = |code: &str, description: &str| challenge.headers(Some((code, description)), None);
    let (status, code, description, extra): (u16, &str, String, Vec<(&'static str, String)>) = match error {
        ApiError::NotFound => (404, "not_found", "No such route".into(), vec![]),
        ApiError::MethodNotAllowed(allow) => {
            (405, "method_not_allowed", "Method not allowed".into(), vec![("allow", allow.clone())])
        }
        ApiError::Misconfigured(e) => (500, "server_misconfigured", e.to_string(), vec![]),
        ApiError::MissingAuthorization => (
            401,
            "missing_authorization",
            "Authorization header with a Bearer token is expected".into(),
            challenge.headers(None, None),
        ),
        ApiError::InvalidRequest(p) => {
            (400, "invalid_request", p.description().into(), refuse("invalid_request", p.description()))
        }
        ApiError::InvalidToken(p) => {
            (401, "invalid_token", p.description().into(), refuse("invalid_token", p.description()))
        }
        ApiError::InvalidDpopProof(p) => {
            (401, "invalid_dpop_proof", p.description().into(), refuse("invalid_dpop_proof", p.description()))
        }
        ApiError::UseDpopNonce { nonce } => {
            let description = "Resend the request with a DPoP proof carrying the nonce in DPoP-Nonce";
            let mut headers = refuse("use_dpop_nonce", description);
            headers.push(("dpop-nonce", nonce.clone()));
            (401, "use_dpop_nonce", description.into(), headers)
        }
        ApiError::InsufficientScope { required } => {
            let description = "The token does not grant the required scope";
            let headers = challenge.headers(Some(("insufficient_scope", description)), Some(required));
            (403, "insufficient_scope", description.into(), headers)
        }
        // Not an RFC 6750 error (no challenge): the token is fine, this route is not for its holder.
        ApiError::ClaimMismatch { claim } => {
            (403, "access_denied", format!("The token's {claim:?} claim does not satisfy this route"), vec![])
        }
        ApiError::OriginUnreachable => (502, "origin_unreachable", "The origin could not be reached".into(), vec![]),
        ApiError::OriginTimeout => (504, "origin_timeout", "The origin did not answer in time".into(), vec![]),
        ApiError::PayloadTooLarge { limit } => {
            (413, "payload_too_large", format!("The request body is longer than {limit} bytes"), vec![])
        }
        ApiError::UnsupportedMediaType => (
            415,
            "unsupported_media_type",
            "The body must be application/json in UTF-8, not encoded".into(),
            vec![("accept", "application/json".into())],
        ),
        // Before any credential is looked at: the page that sent it may not call this server.
        ApiError::OriginNotAllowed => {
            (403, "origin_not_allowed", "Requests from this Origin are not allowed".into(), vec![])
        }
        ApiError::RateLimited { retry_after_secs } => (
            429,
            "rate_limited",
            "Too many requests; retry after the time in Retry-After".into(),
            vec![("retry-after", retry_after_secs.to_string())],
        ),
        ApiError::ReplayStoreUnavailable => (
            503,
            "temporarily_unavailable",
            "The proof's single use cannot be checked right now".into(),
            vec![("retry-after", "1".to_string())],
        ),
        ApiError::DenylistUnavailable => (
            503,
            "temporarily_unavailable",
            "The revocation list cannot be read right now".into(),
            vec![("retry-after", DENYLIST_RETRY_AFTER_SECS.to_string())],
        ),
        ApiError::KeysUnavailable { retry_after_secs } => (
            503,
            "temporarily_unavailable",
            "Signing keys cannot be obtained from the issuer right now".into(),
            vec![("retry-after", retry_after_secs.to_string())],
        ),
    };
    let mut response = HttpResponse::json(status, &json!({ "error": code, "error_description": description }));
    response.headers.push(("cache-control", "no-store".into()));
    response.headers.extend(extra);
    response
}

/// Response headers a browser app may read: why it was refused, when to retry, and the nonce
/// its next DPoP proof must carry.
/// `Mcp-Session-Id` for browser MCP clients (the Streamable HTTP transport's session).
pub const EXPOSE_HEADERS: &str = "WWW-Authenticate, Retry-After, DPoP-Nonce, Mcp-Session-Id";

/// What an MCP client sends besides the defaults, allowed by the preflight of an MCP rule.
pub const MCP_PREFLIGHT_HEADERS: &str = "Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID";

/// Whether the edge answers for CORS. When `CORS_ALLOWED_ORIGINS` is set it does, alone: every
/// `Access-Control-*` header of the origin's answer is removed ([`is_cors_header`]) and the edge's
/// own are added, so an origin's `Access-Control-Allow-Origin: *` cannot open what the edge keeps
/// shut. When it is not set, the origin's CORS headers pass untouched.
pub fn edge_owns_cors(cors: &CorsPolicy) -> bool {
    !matches!(cors, CorsPolicy::None)
}

/// What every CORS response header's name starts with, in lower case (as the runtime lists names).
pub const CORS_HEADER_PREFIX: &str = "access-control-";

/// A CORS response header (`Access-Control-*`), in any case.
pub fn is_cors_header(name: &str) -> bool {
    name.get(..CORS_HEADER_PREFIX.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(CORS_HEADER_PREFIX))
}

/// Whether `origin` may read responses, and the value to echo in `Access-Control-Allow-Origin`.
pub fn allowed_origin(cors: &CorsPolicy, origin: Option<&str>) -> Option<String> {
    let origin = origin?;
    match cors {
        CorsPolicy::None => None,
        CorsPolicy::Any => Some("*".into()),
        CorsPolicy::Origins(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)).then(|| origin.to_owned()),
    }
}

/// CORS headers for an actual (non-preflight) response, errors included, so that a browser
/// app can read why it was refused.
pub fn with_cors(mut response: HttpResponse, cors: &CorsPolicy, origin: Option<&str>) -> HttpResponse {
    // An answer open to every origin already (a protected resource's metadata) keeps its own.
    if !matches!(cors, CorsPolicy::Origins(_) | CorsPolicy::Any)
        || response.header("access-control-allow-origin").is_some()
    {
        return response;
    }
    if matches!(cors, CorsPolicy::Origins(_)) {
        response.headers.push(("vary", "Origin".into()));
    }
    if let Some(allow) = allowed_origin(cors, origin) {
        response.headers.push(("access-control-allow-origin", allow));
        response.headers.push(("access-control-expose-headers", EXPOSE_HEADERS.into()));
    }
    response
}

/// The answer to `OPTIONS`: a CORS preflight from an allowed origin gets the allow headers,
/// anyone else gets a bare 204 (the browser then blocks the real request). `with_cors` adds
/// the origin itself, as on every response. `methods` are those the path takes.
pub fn preflight(
    cors: &CorsPolicy,
    policy: &PreflightPolicy,
    origin: Option<&str>,
    methods: &str,
    mcp: bool,
) -> HttpResponse {
    let mut response = HttpResponse::empty(204).with_header("allow", methods);
    if allowed_origin(cors, origin).is_some() {
        let headers = if mcp {
            format!("{}, {MCP_PREFLIGHT_HEADERS}", policy.allow_headers)
        } else {
            policy.allow_headers.clone()
        };
        response.headers.extend([
            ("access-control-allow-methods", methods.into()),
            ("access-control-allow-headers", headers),
            ("access-control-max-age", policy.max_age_secs.to_string()),
        ]);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_has_status_headers_and_body_in_order() {
        let response = HttpResponse::json_text(401, "{\"a\":\"\\u0000\"}\0tail")
            .with_header("www-authenticate", "Bearer realm=\"api\"")
            .with_header("vary", "Origin");
        assert_eq!(
            response.to_wire().unwrap(),
            "401\ncontent-type\napplication/json\nwww-authenticate\nBearer realm=\"api\"\nvary\nOrigin\0{\"a\":\"\\u0000\"}\0tail"
        );
    }

    #[test]
    fn wire_tells_no_body_from_an_empty_one() {
        assert_eq!(
            HttpResponse::empty(204).with_header("allow", ALLOW).to_wire().unwrap(),
            "204\nallow\nGET, HEAD, OPTIONS"
        );
        let empty = HttpResponse { status: 200, headers: Vec::new(), body: Some(String::new()) };
        assert_eq!(empty.to_wire().unwrap(), "200\0");
    }

    #[test]
    fn wire_refuses_a_header_that_cannot_travel() {
        for value in ["a\nb", "a\rb", "a\0b"] {
            assert_eq!(HttpResponse::empty(200).with_header("x", value).to_wire(), None, "{value:?}");
        }
        let status = internal_error().to_wire().unwrap();
        assert!(status.starts_with("500\n"), "{status}");
    }
}
