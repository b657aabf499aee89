//! The Cloudflare Workers adapter: reads the request and bindings, runs the pure pipeline, and
//! turns its outcome into a runtime response. Everything here is I/O; every decision is in the core.

mod io;

use std::{cell::OnceCell, rc::Rc};

use worker::{event, Context, Date, Env, Headers, Request, Response, Result};

use crate::{
    app::{self, Incoming, Keys},
    config::Config,
    error::ConfigError,
    http::HttpResponse,
    keystore::KeyStore,
    verify::RustRsa,
};

/// What an isolate works out once: its configuration, and (when that is valid) its key store,
/// the first key tier. Variables cannot change during an isolate's life (a new deployment or
/// `--var` starts new isolates), so reading and checking them once per request would be waste.
type Isolate = Result<(Config, Rc<KeyStore>), ConfigError>;

thread_local! {
    static ISOLATE: OnceCell<Rc<Isolate>> = const { OnceCell::new() };
}

fn isolate(env: &Env) -> Rc<Isolate> {
    ISOLATE.with(|cell| {
        cell.get_or_init(|| {
            // Variables may be plain `[vars]` or secrets; both read as strings.
            let config = Config::from_vars(|name| {
                env.var(name).map(|v| v.to_string()).or_else(|_| env.secret(name).map(|s| s.to_string())).ok()
            });
            Rc::new(config.map(|c| {
                let store = Rc::new(KeyStore::new(&c.issuer, &c.jwks_url, c.jwks));
                (c, store)
            }))
        })
        .clone()
    })
}

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> Result<Response> {
    console_error_panic_hook::set_once();
    let now = Date::now().as_millis();
    let isolate = isolate(&env);

    let method = request.method().to_string();
    let path = request.path();
    let header = |name: &str| request.headers().get(name).ok().flatten();
    let (authorization, origin) = (header("authorization"), header("origin"));
    let incoming =
        Incoming { method: &method, path: &path, authorization: authorization.as_deref(), origin: origin.as_deref() };

    let outcome = match isolate.as_ref() {
        Ok((config, store)) => {
            let store = store.clone();
            let io = io::WorkerIo::new(&env, config);
            let keys = Keys { store: &store, io: &io, verifier: &RustRsa };
            let outcome = app::handle(&incoming, Ok((config, keys)), now).await;
            if outcome.background_refresh {
                // Runs after the response; nothing awaits it, so I/O isolation is respected.
                ctx.wait_until(async move { store.refresh(Date::now().as_millis(), &io).await });
            }
            outcome
        }
        Err(error) => {
            if app::Route::from_path(&path).is_some_and(|r| r != app::Route::Public) {
                worker::console_error!("{}", app::describe_config_error(error));
            }
            app::handle::<io::WorkerIo, RustRsa>(&incoming, Err(error), now).await
        }
    };
    Ok(to_response(outcome.response).unwrap_or_else(|_| fallback()))
}

fn to_response(response: HttpResponse) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &response.headers {
        headers.append(name, value)?;
    }
    let body = match response.body {
        Some(body) => Response::from_bytes(body.into_bytes())?,
        None => Response::empty()?,
    };
    Ok(body.with_status(response.status).with_headers(headers))
}

/// Never let a conversion failure become the runtime's own error page (or a stack trace).
fn fallback() -> Response {
    let body = br#"{"error":"server_error","error_description":"Internal error"}"#.to_vec();
    Response::from_bytes(body)
        .map(|r| r.with_status(500))
        .unwrap_or_else(|_| Response::empty().unwrap().with_status(500))
}
