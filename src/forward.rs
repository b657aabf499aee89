//! What the origin receives from the gateway: the target URL, which incoming headers are dropped,
//! and the identity headers the edge adds. Pure: the edge only copies and sends.
//!
//! The origin may trust `X-Auth-*` because no client can send them: every incoming header named
//! `X-Auth-*` or `X-Edge-Auth-Secret` is removed before anything is added. The same holds for the
//! proxy headers: the client's `Forwarded`, `X-Forwarded-*`, `X-Real-IP` and `Proxy-*` are removed,
//! and `X-Forwarded-Host`, `-Proto` and `-For` are the edge's alone.

use std::rc::Rc;

use crate::{
    claims::{Binding, Principal},
    config::GatewayConfig,
};

pub const SUBJECT: &str = "x-auth-subject";
pub const SCOPES: &str = "x-auth-scopes";
pub const CLAIMS: &str = "x-auth-claims";
/// The RFC 7638 thumbprint of the key a DPoP-bound token was proven with, at the edge.
pub const KEY_THUMBPRINT: &str = "x-auth-key-thumbprint";
pub const SECRET: &str = "x-edge-auth-secret";
/// The identity headers the edge writes itself: `CLAIM_HEADERS` may not name them.
pub const EDGE_IDENTITY_HEADERS: [&str; 4] = [SUBJECT, SCOPES, CLAIMS, KEY_THUMBPRINT];
pub const FORWARDED_HOST: &str = "x-forwarded-host";
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// Headers some frameworks let override the path or method: the rule was decided on the request's
/// own path and method, so the origin must not act on others.
const OVERRIDES: [&str; 5] =
    ["x-original-url", "x-rewrite-url", "x-http-method-override", "x-http-method", "x-method-override"];

impl GatewayConfig {
    /// The origin URL for a request: the base path, then the path and query exactly as the
    /// runtime handed them over (no decoding, re-encoding or reordering).
    pub fn target(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.origin)
    }

    /// Whether an incoming header stays behind. `host` is the origin's own (set from the URL).
    /// Underscores count as dashes: CGI and WSGI servers read `X_Auth_Subject` and `X-Auth-Subject`
    /// alike (`HTTP_X_AUTH_SUBJECT`). `Authorization` reaches the origin only when asked for and
    /// only on a request whose token the edge verified (`verified`): never an unchecked one.
    /// `DPoP` travels with it under the same rule: a proof is meaningless without its token.
    pub fn drops(&self, name: &str, verified: bool) -> bool {
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
            || ((lower == "authorization" || lower == "dpop") && !(self.forward_authorization && verified))
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
/// `X-Forwarded-*`, `X-Real-IP`), and the hop-to-proxy `Proxy-*` ones (`Proxy-Authorization`
/// carries a credential meant for a proxy, never for the origin). `name` is in lower case.
fn is_proxy_header(name: &str) -> bool {
    name == "forwarded" || name == "x-real-ip" || name.starts_with("x-forwarded-") || name.starts_with("proxy-")
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
