//! Gateway mode's one piece of I/O: sending an admitted request on to the origin and handing its
//! answer back. What is sent (which headers stay, which are added) was decided by the core
//! (`forward`); this only copies, streams and times.

use wasm_bindgen::{prelude::wasm_bindgen, JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestInit, RequestRedirect, Response};

use crate::{app::Forward, config::GatewayConfig, error::ApiError};

#[wasm_bindgen(inline_js = "
export function fetch_within(request, ms) {
  // Aborts only while waiting for the response headers: the timer is cleared as soon as they
  // arrive (or the fetch fails), so a slow body streams on and no timer outlives its request.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('origin timeout', 'TimeoutError')), ms);
  return fetch(request, { signal: controller.signal }).finally(() => clearTimeout(timer));
}
")]
extern "C" {
    /// `fetch(request)`, rejected with a `TimeoutError` if no response headers came within `ms`.
    fn fetch_within(request: &Request, ms: f64) -> js_sys::Promise;
}
/// Sends `request` to the origin at `path_and_query`, the body streamed through (never buffered:
/// uploads of any size pass), redirects handed back rather than followed. The origin's answer is
/// returned as the runtime gave it, with `extra` headers (CORS) added.
pub async fn forward(
    request: &Request,
    gateway: &GatewayConfig,
    path_and_query: &str,
    forward: &Forward,
    extra: &[(&'static str, String)],
) -> Result<Response, ApiError> {
    let headers = Headers::new().map_err(|_| ApiError::OriginUnreachable)?;
    for entry in js_sys::try_iter(&request.headers()).ok().flatten().into_iter().flatten().flatten() {
        let pair: js_sys::Array = entry.unchecked_into();
        let (name, value) = (pair.get(0).as_string().unwrap_or_default(), pair.get(1).as_string().unwrap_or_default());
        if !gateway.drops(&name, forward.verified) {
            let _ = headers.append(&name, &value);
        }
    }
    for (name, value) in &forward.headers {
        let _ = headers.append(name, value);
    }
    let init = RequestInit::new();
    let method = request.method();
    init.set_method(&method);
    init.set_headers_headers(&headers);
    init.set_redirect(RequestRedirect::Manual);
    if method != "GET" && method != "HEAD" {
        init.set_body_opt_readable_stream(request.body().as_ref());
    }
    let outgoing =
        Request::new_with_str_and_init(&gateway.target(path_and_query), &init).map_err(|_| unreachable_origin())?;
    let response: Response = match JsFuture::from(fetch_within(&outgoing, gateway.timeout_ms as f64)).await {
        Ok(value) => value.dyn_into().map_err(|_| unreachable_origin())?,
        Err(error) if error_name(&error).as_deref() == Some("TimeoutError") => {
            log("origin_timeout");
            return Err(ApiError::OriginTimeout);
        }
        Err(_) => return Err(unreachable_origin()),
    };
    if extra.is_empty() {
        return Ok(response);
    }
    // The runtime's response headers are immutable: re-wrap the same body stream, passing the
    // response itself as the init (status, status text and every header, each Set-Cookie kept).
    let rewrapped = Response::new_with_opt_readable_stream_and_init(response.body().as_ref(), response.unchecked_ref())
        .map_err(|_| unreachable_origin())?;
    let headers = rewrapped.headers();
    for (name, value) in extra {
        // The origin's own Vary still holds; ours is added to it.
        let _ = if name.eq_ignore_ascii_case("vary") { headers.append(name, value) } else { headers.set(name, value) };
    }
    Ok(rewrapped)
}

fn error_name(error: &JsValue) -> Option<String> {
    js_sys::Reflect::get(error, &"name".into()).ok()?.as_string()
}

fn unreachable_origin() -> ApiError {
    log("origin_unreachable");
    ApiError::OriginUnreachable
}

fn log(event: &str) {
    web_sys::console::error_1(&format!(r#"{{"component":"edge-auth.gateway","event":"{event}"}}"#).into());
}
