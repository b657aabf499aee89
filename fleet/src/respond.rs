//! JSON answers, and the one place an internal error becomes a response.

use serde_json::{json, Value};
use worker::{console_error, Response, Result};

pub fn json(status: u16, body: &Value) -> Result<Response> {
    let mut response = Response::from_json(body)?.with_status(status);
    // Every answer is a decision about one moment; nothing in between may reuse it.
    response.headers_mut().set("Cache-Control", "no-store")?;
    Ok(response)
}

pub fn error(status: u16, message: &str) -> Result<Response> {
    json(status, &json!({ "error": message }))
}

/// The answer to a request whose handling failed: the error goes to the log, the caller gets a
/// bare 500. A runtime error can carry storage or binding details that are not the caller's
/// business, and a thrown exception would reach the caller as the runtime's own error page.
pub fn or_internal(outcome: Result<Response>, context: &str) -> Result<Response> {
    outcome.or_else(|e| {
        console_error!("{context}: {e}");
        error(500, "internal error")
    })
}

/// The body, or `None` when it is longer than `max` bytes (refused unread when its
/// Content-Length says so).
pub async fn body(request: &mut worker::Request, max: usize) -> Result<Option<Vec<u8>>> {
    let declared = request.headers().get("Content-Length")?.and_then(|n| n.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Ok(None);
    }
    let bytes = request.bytes().await?;
    Ok((bytes.len() <= max).then_some(bytes))
}
