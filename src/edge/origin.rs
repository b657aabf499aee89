//! Gateway mode's one piece of I/O: sending an admitted request on to the origin and handing its
//! answer back. What is sent (which headers stay, which are added) was decided by the core
//! (`forward`); this only copies, streams and times, tells a client's broken body from an origin's
//! failure, and relays a WebSocket the core allowed.

use wasm_bindgen::{prelude::wasm_bindgen, JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestInit, RequestRedirect, Response};

use crate::{
    app::Forward,
    config::GatewayConfig,
    error::{ApiError, RequestProblem},
    http,
};

// One snippet per function: wasm-bindgen imports a snippet once per function it exports, and
// esbuild warns of the repeated keys when functions share one.
#[wasm_bindgen(inline_js = "
export function fetch_within(request, ms, state) {
  // Aborts only while waiting for the response headers: the timer is cleared as soon as they
  // arrive (or the fetch fails), so a slow body streams on and no timer outlives its request.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('origin timeout', 'TimeoutError')), ms);
  const sent = fetch(request, { signal: controller.signal });
  if (state) {
    // A client body that fails aborts the fetch: an errored body stream would otherwise be ended
    // as if complete, and the origin would act on a truncated body. Once the origin has
    // answered, its answer stands (and its body is not cut).
    state.abort = (reason) => controller.abort(reason);
    sent.then(() => { state.abort = null; }, () => {});
  }
  return sent.finally(() => clearTimeout(timer));
}
")]
extern "C" {
    /// `fetch(request)`, rejected with a `TimeoutError` if no response headers came within `ms`;
    /// `state.abort`, when a state is given, aborts it.
    fn fetch_within(request: &Request, ms: f64, state: &JsValue) -> js_sys::Promise;
}

#[wasm_bindgen(inline_js = "
// The client's body, read through a reader of our own so that a failure to read it (a bad chunk,
// a connection cut mid-upload) is told apart from the origin's: the fetch fails the same way for
// both. A known length is kept (FixedLengthStream), so the origin still gets Content-Length.
export function watched_body(body, length, state) {
  const reader = body.getReader();
  const watched = new ReadableStream({
    async pull(controller) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        state.client_failed = true;
        if (state.abort) state.abort(error);
        controller.error(error);
        return;
      }
      if (chunk.done) controller.close();
      else controller.enqueue(chunk.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  if (length < 0 || typeof FixedLengthStream !== 'function') return watched;
  const fixed = new FixedLengthStream(length);
  watched.pipeTo(fixed.writable).catch(() => {});
  return fixed.readable;
}
")]
extern "C" {
    /// `body` read through a reader that sets `state.client_failed` when reading it fails.
    fn watched_body(body: &web_sys::ReadableStream, length: f64, state: &js_sys::Object) -> web_sys::ReadableStream;
}

#[wasm_bindgen(inline_js = "
// Relays frames between the socket the edge accepts from the client and the one the origin
// accepted, in JavaScript: no frame crosses into wasm. Both are closed with 1008 at close_at (ms
// since the epoch; negative: never), and either side's close closes the other. An origin that
// did not accept the upgrade has its answer handed back as it is.
export function relay(response, close_at) {
  const upstream = response.webSocket;
  if (!upstream) return response;
  const [client, edge] = Object.values(new WebSocketPair());
  upstream.accept();
  edge.accept();
  let open = true;
  let timer;
  const close = (code, reason) => {
    if (!open) return;
    open = false;
    clearTimeout(timer);
    for (const socket of [edge, upstream]) {
      try { socket.close(code, reason); } catch {}
    }
  };
  // 1005 (no code), 1006 (abnormal) and 1015 (TLS) are reported, never sent.
  const sendable = (code) => code === 1000 || (code >= 1001 && code <= 1003) || (code >= 1007 && code <= 1014)
    || (code >= 3000 && code <= 4999);
  const pass = (from, to) => {
    // A binary message may come as a Blob (wrangler dev's sockets), which send() would turn into
    // the text '[object Blob]': it is read first, and later messages wait their turn behind it.
    let queue = null;
    from.addEventListener('message', (event) => {
      const data = event.data;
      if (!queue && !(data instanceof Blob)) {
        try { to.send(data); } catch { close(1011, 'relay failed'); }
        return;
      }
      const turn = (queue || Promise.resolve())
        .then(async () => to.send(data instanceof Blob ? await data.arrayBuffer() : data))
        .catch(() => close(1011, 'relay failed'));
      queue = turn;
      turn.then(() => { if (queue === turn) queue = null; });
    });
    from.addEventListener('close', (event) => close(sendable(event.code) ? event.code : 1000, event.reason || ''));
    from.addEventListener('error', () => close(1011, 'relay failed'));
  };
  pass(edge, upstream);
  pass(upstream, edge);
  if (close_at >= 0) {
    // setTimeout waits at most 2^31-1 ms (~24.8 days): a longer wait is re-armed.
    const arm = () => {
      const left = close_at - Date.now();
      if (left <= 0) close(1008, 'token expired');
      else timer = setTimeout(arm, Math.min(left, 2147483647));
    };
    arm();
  }
  const headers = new Headers();
  const protocol = response.headers.get('sec-websocket-protocol');
  if (protocol) headers.set('sec-websocket-protocol', protocol);
  return new Response(null, { status: 101, webSocket: client, headers });
}
")]
extern "C" {
    /// The client's side of a relayed WebSocket (or `response` itself when the origin refused it).
    fn relay(response: &Response, close_at: f64) -> Response;
}

/// The CORS side of an answer: whether the edge owns CORS (the origin's `Access-Control-*` are
/// removed), and the headers the pipeline added (CORS, `Vary`).
pub struct Cors<'a> {
    pub owned: bool,
    pub headers: &'a [(&'static str, String)],
}
/// Sends `request` to the origin at `path_and_query`, the body streamed through (never buffered:
/// uploads of any size pass), redirects handed back rather than followed. The origin's answer is
/// returned as the runtime gave it, with `extra` headers (CORS) added.
pub async fn forward(
    request: &Request,
    gateway: &GatewayConfig,
    path_and_query: &str,
    forward: &Forward,
    cors: Cors<'_>,
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
    for (name, value) in &forward.claim_headers {
        let _ = headers.append(name, value);
    }
    let init = RequestInit::new();
    let method = request.method();
    init.set_method(&method);
    init.set_headers_headers(&headers);
    init.set_redirect(RequestRedirect::Manual);
    // Where the body's reader notes a failure of its own (only a request with a body has one).
    let mut state = None;
    if method != "GET" && method != "HEAD" {
        if let Some(body) = request.body() {
            let length = request.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
            let watch = state.insert(js_sys::Object::new());
            init.set_body(&watched_body(&body, length.map_or(-1.0, |n| n as f64), watch));
        }
    }
    let state: JsValue = state.map_or(JsValue::UNDEFINED, Into::into);
    let outgoing =
        Request::new_with_str_and_init(&gateway.target(path_and_query), &init).map_err(|_| unreachable_origin())?;
    let response: Response = match JsFuture::from(fetch_within(&outgoing, gateway.timeout_ms as f64, &state)).await {
        Ok(value) => value.dyn_into().map_err(|_| unreachable_origin())?,
        Err(error) if error_name(&error).as_deref() == Some("TimeoutError") => {
            log("origin_timeout");
            return Err(ApiError::OriginTimeout);
        }
        Err(_)
            if !state.is_undefined()
                && js_sys::Reflect::get(&state, &"client_failed".into()).is_ok_and(|v| v.is_truthy()) =>
        {
            // The client's fault: a 4xx, never an origin alert.
            log("client_body_failed");
            return Err(ApiError::InvalidRequest(RequestProblem::ClientBodyFailed));
        }
        Err(_) => return Err(unreachable_origin()),
    };
    // An origin that refused the upgrade answered like any other request (CORS and all).
    if let Some(relayed) = forward.relay.filter(|_| response.status() == 101) {
        return Ok(relay(&response, relayed.close_at_ms.map_or(-1.0, |ms| ms as f64)));
    }
    let extra = cors.headers;
    if extra.is_empty() && !cors.owned {
        return Ok(response);
    }
    // The runtime's response headers are immutable: re-wrap the same body stream, passing the
    // response itself as the init (status, status text and every header, each Set-Cookie kept).
    let rewrapped = Response::new_with_opt_readable_stream_and_init(response.body().as_ref(), response.unchecked_ref())
        .map_err(|_| unreachable_origin())?;
    let headers = rewrapped.headers();
    if cors.owned {
        // Names first: deleting while iterating would skip entries.
        let names: Vec<String> = js_sys::try_iter(&headers)
            .ok()
            .flatten()
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.unchecked_into::<js_sys::Array>().get(0).as_string())
            .filter(|name| http::is_cors_header(name))
            .collect();
        for name in names {
            let _ = headers.delete(&name);
        }
    }
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

fn log(event: &'static str) {
    let line = format!(r#"{{"component":"edge-auth.gateway","event":"{event}"}}"#);
    super::observe::emit(event, "", &line, true);
}
