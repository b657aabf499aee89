//! The Worker's own `fetch`: an admin API for scripts and tests. edge-auth itself reaches the
//! objects through its own Durable Object bindings, never through this.
//!
//!   POST /revoke, POST /unrevoke, GET /list → the `Revocations` object
//!   POST /use?jkt=<thumbprint>              → that key's `ReplayShard`
//!
//! Every call carries `Authorization: Bearer <FLEET_ADMIN_TOKEN>`.

use worker::{event, js_sys, Context, Env, Method, Request, RequestInit, Response, Result};

use crate::respond;
use crate::wire::{self, BodyError, MAX_BODY_BYTES};

const TOKEN_VAR: &str = "FLEET_ADMIN_TOKEN";
/// The object every deployment's revocations live in.
const REVOCATIONS_NAME: &str = "revocations";

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    respond::or_internal(route(&mut req, &env).await, "admin")
}

async fn route(req: &mut Request, env: &Env) -> Result<Response> {
    // An unset (or empty) token locks the API rather than opening it.
    let token = env.var(TOKEN_VAR).map(|v| v.to_string()).unwrap_or_default();
    if token.is_empty() {
        return respond::error(503, "FLEET_ADMIN_TOKEN is not set");
    }
    let authorization = req.headers().get("Authorization")?;
    if !wire::bearer_matches(authorization.as_deref(), &token) {
        let mut answer = respond::error(401, "unauthorized")?;
        answer.headers_mut().set("WWW-Authenticate", "Bearer")?;
        return Ok(answer);
    }

    let path = req.path();
    match (req.method(), path.as_str()) {
        (Method::Post, "/revoke" | "/unrevoke") | (Method::Get, "/list") => {
            let stub = env.durable_object("REVOCATIONS")?.get_by_name(REVOCATIONS_NAME)?;
            forward(req, &path, stub).await
        }
        (Method::Post, "/use") => {
            let url = req.url()?;
            let jkt = url.query_pairs().find(|(name, _)| name == "jkt").map(|(_, value)| value.into_owned());
            let Some(jkt) = jkt.filter(|jkt| wire::valid_jkt(jkt)) else {
                return respond::error(400, "jkt must be a key thumbprint (1 to 128 base64url characters)");
            };
            let stub = env.durable_object("REPLAY")?.get_by_name(&jkt)?;
            forward(req, &path, stub).await
        }
        (_, "/revoke" | "/unrevoke" | "/use") => respond::error(405, "use POST"),
        (_, "/list") => respond::error(405, "use GET"),
        _ => respond::error(404, "not found"),
    }
}

/// Sends the request on to an object as edge-auth would: `https://fleet<path>`, same method and
/// body. The object's answer comes back as it is.
async fn forward(req: &mut Request, path: &str, stub: worker::Stub) -> Result<Response> {
    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone());
    if method != Method::Get {
        let Some(body) = respond::body(req, MAX_BODY_BYTES).await? else {
            return respond::error(400, &BodyError::TooLarge.to_string());
        };
        init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    let inner = Request::new_with_init(&format!("https://fleet{path}"), &init)?;
    stub.fetch_with_request(inner).await
}
