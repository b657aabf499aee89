//! Gateway mode's I/O, planned here and carried out in JavaScript (`forward.mjs`): the core
//! decided what the origin receives (`forward`); this turns that into a plan of plain strings and
//! numbers that `entry.mjs` hands to `forward()`, which sends the request, streams both bodies,
//! times the wait for the origin's headers, relays a WebSocket the core allowed, and edits CORS.
//! A forwarded request so costs one call into wasm, as the pipeline's answer, and no promise
//! bridge; only a failure calls back in ([`origin_failed`]) for the edge's own error answer.

use wasm_bindgen::prelude::wasm_bindgen;
use web_sys::{Request, Response};

use crate::{
    app::{self, Forward},
    config::GatewayConfig,
    error::{ApiError, RequestProblem},
    http,
};

#[wasm_bindgen(inline_js = "
export function header_names(request) {
  return [...request.headers.keys()].join('\\n');
}
")]
extern "C" {
    /// The request's header names (lower case, each once), one a line: one crossing, so that the
    /// core can decide what the origin gets without a call per header.
    fn header_names(request: &Request) -> String;
}

/// The CORS side of an answer: whether the edge owns CORS (the origin's `Access-Control-*` are
/// removed), and the headers the pipeline added (CORS, `Vary`).
pub struct Cors<'a> {
    pub owned: bool,
    pub headers: &'a [(&'static str, String)],
}

/// What `forward.mjs` needs to send an admitted request to the origin at `path_and_query`, as one
/// string of NUL-separated fields (one crossing): `url, drop, add, timeoutMs, withBody, relayAt,
/// corsPrefix, corsAdd, origin` (see there). `None` if a header value the core made could not
/// travel (none holds a line break or a NUL).
pub fn plan(
    request: &Request,
    method: &str,
    gateway: &GatewayConfig,
    path_and_query: &str,
    forward: &Forward,
    cors: Cors<'_>,
    origin: Option<&str>,
) -> Option<String> {
    // The core decides per header name (`GatewayConfig::drops`); the names come out and the drop
    // list goes back as one string each.
    let names = header_names(request);
    let mut drop = String::new();
    for name in names.split('\n').filter(|name| !name.is_empty() && gateway.drops(name, forward.verified)) {
        drop.push_str(name);
        drop.push('\n');
    }
    let target = gateway.target(path_and_query);
    let relay_at = forward.relay.map(|relay| relay.close_at_ms.map_or(-1, |ms| ms as i64).to_string());
    let fields = [
        target.as_str(),
        &drop,
        &lines(&forward.headers)?,
        &gateway.timeout_ms.to_string(),
        if method != "GET" && method != "HEAD" { "1" } else { "" },
        relay_at.as_deref().unwrap_or(""),
        if cors.owned { http::CORS_HEADER_PREFIX } else { "" },
        &lines(cors.headers)?,
        origin.unwrap_or(""),
    ];
    if fields.iter().any(|field| field.contains('\0')) {
        return None;
    }
    Some(fields.join("\0"))
}

/// Header names and values on alternate lines.
fn lines(headers: &[(&'static str, String)]) -> Option<String> {
    let mut out = String::new();
    for (name, value) in headers {
        if value.contains(['\n', '\r']) {
            return None;
        }
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    }
    Some(out)
}

/// Why `forward.mjs` got no answer from the origin, as the error the edge answers with.
pub fn failure(kind: &str) -> ApiError {
    match kind {
        "timeout" => {
            log("origin_timeout");
            ApiError::OriginTimeout
        }
        // The client's fault: a 4xx, never an origin alert.
        "client_body" => {
            log("client_body_failed");
            ApiError::InvalidRequest(RequestProblem::ClientBodyFailed)
        }
        _ => unreachable_origin(),
    }
}

pub fn unreachable_origin() -> ApiError {
    log("origin_unreachable");
    ApiError::OriginUnreachable
}

fn log(event: &str) {
    web_sys::console::error_1(&format!(r#"{{"component":"edge-auth.gateway","event":"{event}"}}"#).into());
}

/// Called by `forward.mjs` when the origin could not be asked or did not answer in time: the
/// edge's own error answer, shaped like every other (JSON, `no-store`, CORS for `origin`).
#[wasm_bindgen]
pub fn origin_failed(kind: &str, origin: Option<String>) -> Response {
    let error = failure(kind);
    match super::ready() {
        Some(ready) => super::to_response(&app::refusal(&error, &ready.config, origin.as_deref()))
            .unwrap_or_else(|_| super::fallback()),
        None => super::fallback(),
    }
}
