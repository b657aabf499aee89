//! Gateway mode's I/O, planned here and carried out in JavaScript (`forward.mjs`): the core
//! decided what the origin receives (`forward`); this turns that into a plan of plain strings and
//! numbers that `entry.mjs` hands to `forward()`, which sends the request, streams both bodies,
//! times the wait for the origin's headers, relays a WebSocket the core allowed, and edits CORS.
//! A forwarded request so costs one call into wasm, as the pipeline's answer, and no promise
//! bridge; only a failure calls back in ([`origin_failed`]) for the edge's own error answer.

use wasm_bindgen::{prelude::wasm_bindgen, JsValue};
use web_sys::Request;

use crate::{
    error::{ApiError, RequestProblem},
    gateway::forward::GatewayConfig,
    http,
    pipeline::{self, Forward, Incoming},
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
/// corsPrefix, corsAdd, origin, held, relayCheck` (see there). `held`: the decision waiting for the origin's
/// answer to be recorded ([`super::observe::hold`]), if any. `None` if a header value the core made could not
/// travel (none holds a line break or a NUL). `names`: the request's header names, when its head
/// carried them.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    request: &Request,
    names: Option<&str>,
    incoming: &Incoming<'_>,
    gateway: &GatewayConfig,
    path_and_query: &str,
    forward: &Forward,
    cors: Cors<'_>,
    held: Option<u32>,
) -> Option<String> {
    // The core decides per header name (`GatewayConfig::drops`); the names came with the head
    // (comma-separated) or come out now, and the drop list goes back as one string.
    let asked;
    let (names, separator) = match names {
        Some(names) => (names, ','),
        None => {
            asked = header_names(request);
            (asked.as_str(), '\n')
        }
    };
    let mut drop = String::new();
    for name in names.split(separator).filter(|name| !name.is_empty() && gateway.drops(name, forward.credentials)) {
        drop.push_str(name);
        drop.push('\n');
    }
    let target = gateway.target(path_and_query);
    let relay_at = forward.relay.as_ref().map(|relay| relay.close_at_ms.map_or(-1, |ms| ms as i64).to_string());
    let mut add = lines(&forward.headers)?;
    for (name, value) in &forward.claim_headers {
        if value.contains(['\n', '\r']) || name.contains(['\n', '\r']) {
            return None;
        }
        add.push_str(&format!("{name}\n{value}\n"));
    }
    let held = held.map(|id| id.to_string());
    let relay_check = forward.relay.as_ref().and_then(|relay| relay.revocation.as_ref()).map(|check| check.to_json());
    let fields = [
        target.as_str(),
        &drop,
        &add,
        &gateway.timeout_ms.to_string(),
        if incoming.method != "GET" && incoming.method != "HEAD" { "1" } else { "" },
        relay_at.as_deref().unwrap_or(""),
        if cors.owned { http::CORS_HEADER_PREFIX } else { "" },
        &lines(cors.headers)?,
        incoming.origin.unwrap_or(""),
        held.as_deref().unwrap_or(""),
        relay_check.as_deref().unwrap_or(""),
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

fn log(event: &'static str) {
    let line = format!(r#"{{"component":"edge-auth.gateway","event":"{event}"}}"#);
    super::observe::emit(event, "", &line, true);
}

/// Called by `forward.mjs` when the origin could not be asked or did not answer in time: the
/// edge's own error answer (as `wire` text), shaped like every other (JSON, `no-store`, CORS for
/// `origin`), and the request's decision recorded as that refusal: the held one, or for a plan
/// kept for its head (never held), the one made again for `head` (`kept_decision`).
#[wasm_bindgen]
pub fn origin_failed(
    kind: &str,
    origin: Option<String>,
    held: Option<u32>,
    origin_ms: f64,
    head: Option<String>,
    made_ms: f64,
    installed: Option<f64>,
) -> String {
    let error = failure(kind);
    let Some(ready) = super::ready() else { return super::fallback() };
    let refusal = pipeline::refusal(&error, &ready.config, origin.as_deref());
    let refuse =
        |decision: &mut crate::operate::decision::Decision| decision.refused_after_pipeline(&error, refusal.status);
    match (held, head) {
        (None, Some(head)) => {
            let (mut decision, method) = super::kept_decision(head, made_ms as u64, installed, &ready);
            refuse(&mut decision);
            let started = js_sys::Date::now() - origin_ms;
            // A plan is kept only while ANALYTICS is unbound (`records_nothing` looked it up
            // with the real environment in this instance; a new instance has no kept plan).
            super::observe::record(
                &JsValue::UNDEFINED,
                ready.config.observe,
                decision,
                &method,
                started,
                Some(origin_ms),
            );
        }
        _ => super::observe::release(held, refuse, origin_ms),
    }
    super::wire(&refusal)
}

/// Called by `forward.mjs` when the origin answered a request whose decision is held: recorded
/// with the origin's status and time.
#[wasm_bindgen]
pub fn origin_answered(held: u32, status: u16, origin_ms: f64) {
    super::observe::release(Some(held), |decision| decision.status = status, origin_ms);
}
