//! Gateway mode's one piece of I/O: sending an admitted request on to the origin and handing its
//! answer back. What is sent (which headers stay, which are added) was decided by the core
//! (`forward`); this only copies, streams and times.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, Request, RequestInit, RequestRedirect, Response};

use crate::{config::GatewayConfig, error::ApiError};

/// Sends `request` to the origin at `path_and_query`, the body streamed through (never buffered:
/// uploads of any size pass), redirects handed back rather than followed. The origin's answer is
/// returned as the runtime gave it, with `extra` headers (CORS) added.
pub async fn forward(
    request: &Request,
    gateway: &GatewayConfig,
    path_and_query: &str,
    added: &[(&'static str, String)],
    extra: &[(&'static str, String)],
) -> Result<Response, ApiError> {
    let headers = Headers::new().map_err(|_| ApiError::OriginUnreachable)?;
    for entry in js_sys::try_iter(&request.headers()).ok().flatten().into_iter().flatten().flatten() {
        let pair: js_sys::Array = entry.unchecked_into();
        let (name, value) = (pair.get(0).as_string().unwrap_or_default(), pair.get(1).as_string().unwrap_or_default());
        if !gateway.drops(&name) {
            let _ = headers.append(&name, &value);
        }
    }
    for (name, value) in added {
        let _ = headers.append(name, value);
    }
    let controller = AbortController::new().ok();
    let init = RequestInit::new();
    let method = request.method();
    init.set_method(&method);
    init.set_headers_headers(&headers);
    init.set_redirect(RequestRedirect::Manual);
    init.set_signal(controller.as_ref().map(|c| c.signal()).as_ref());
    if method != "GET" && method != "HEAD" {
        init.set_body_opt_readable_stream(request.body().as_ref());
    }
    let outgoing =
        Request::new_with_str_and_init(&gateway.target(path_and_query), &init).map_err(|_| unreachable_origin())?;
    let sent = call_fetch(&outgoing).ok_or_else(unreachable_origin)?;

    // The timeout covers the response headers only: a slow body is the origin's to stream.
    let timed = crate::edge::timer::race(JsFuture::from(sent), gateway.timeout_ms).await;
    let response: Response = match timed {
        None => {
            if let Some(controller) = controller {
                controller.abort();
            }
            log("origin_timeout");
            return Err(ApiError::OriginTimeout);
        }
        Some(Err(_)) => return Err(unreachable_origin()),
        Some(Ok(value)) => value.dyn_into().map_err(|_| unreachable_origin())?,
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

fn call_fetch(request: &Request) -> Option<Promise> {
    let fetch: Function = Reflect::get(&js_sys::global(), &"fetch".into()).ok()?.dyn_into().ok()?;
    fetch.call1(&JsValue::NULL, request).ok()?.dyn_into().ok()
}

fn unreachable_origin() -> ApiError {
    log("origin_unreachable");
    ApiError::OriginUnreachable
}

fn log(event: &str) {
    web_sys::console::error_1(&format!(r#"{{"component":"edge-auth.gateway","event":"{event}"}}"#).into());
}
