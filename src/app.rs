//! The request pipeline, free of the runtime: route, authenticate, authorise, respond.
//! The edge adapter feeds it plain request parts and turns the [`Outcome`] into a response.

use serde_json::json;

use crate::{
    claims::{self, ClaimsPolicy, Principal},
    config::Config,
    error::{ApiError, ConfigError},
    extract,
    http::{self, HttpResponse},
    keystore::{KeyIo, KeyStore},
    token::UnverifiedToken,
    verify::{self, SignatureVerifier},
};

pub const PUBLIC_MESSAGE: &str = "Hello from a public endpoint! You don't need to be authenticated to see this.";
pub const PRIVATE_MESSAGE: &str = "Hello from a private endpoint! You need to be authenticated to see this.";
pub const SCOPED_MESSAGE: &str =
    "Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this.";
pub const REQUIRED_SCOPE: &str = "read:messages";
pub const STATUS_PATH: &str = "/.well-known/edge-auth/status";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Public,
    Private,
    PrivateScoped,
    Status,
}

impl Route {
    pub fn from_path(path: &str) -> Option<Route> {
        match path {
            "/api/public" => Some(Route::Public),
            "/api/private" => Some(Route::Private),
            "/api/private-scoped" => Some(Route::PrivateScoped),
            STATUS_PATH => Some(Route::Status),
            _ => None,
        }
    }
}

/// The parts of a request the pipeline reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub origin: Option<&'a str>,
}

/// The runtime pieces that protected routes need.
pub struct Keys<'a, I, V> {
    pub store: &'a KeyStore,
    pub io: &'a I,
    pub verifier: &'a V,
}

#[derive(Debug)]
pub struct Outcome {
    pub response: HttpResponse,
    /// The key store asks for a refresh after this response (stale-while-revalidate).
    pub background_refresh: bool,
}

pub async fn handle<I: KeyIo, V: SignatureVerifier>(
    request: &Incoming<'_>,
    setup: Result<(&Config, Keys<'_, I, V>), &ConfigError>,
    now_ms: u64,
) -> Outcome {
    let mut background_refresh = false;
    let result = respond(request, &setup, now_ms, &mut background_refresh).await;
    let response = match (result, &setup) {
        (Ok(response), Ok((config, _))) => http::with_cors(response, &config.cors, request.origin),
        (Ok(response), Err(_)) => response,
        (Err(error), Ok((config, _))) => {
            http::with_cors(http::error_response(&error, Some(config.realm())), &config.cors, request.origin)
        }
        (Err(error), Err(_)) => http::error_response(&error, None),
    };
    Outcome { response, background_refresh }
}

async fn respond<I: KeyIo, V: SignatureVerifier>(
    request: &Incoming<'_>,
    setup: &Result<(&Config, Keys<'_, I, V>), &ConfigError>,
    now_ms: u64,
    background_refresh: &mut bool,
) -> Result<HttpResponse, ApiError> {
    let route = Route::from_path(request.path).ok_or(ApiError::NotFound)?;
    if route == Route::Status && !setup.as_ref().is_ok_and(|(config, _)| config.status_endpoint) {
        return Err(ApiError::NotFound);
    }
    match request.method {
        "OPTIONS" => {
            return Ok(match setup {
                Ok((config, _)) => http::preflight(&config.cors, request.origin),
                Err(_) => HttpResponse::empty(204).with_header("allow", http::ALLOW),
            });
        }
        "GET" | "HEAD" => {}
        _ => return Err(ApiError::MethodNotAllowed),
    }

    if route == Route::Public {
        return Ok(HttpResponse::message(PUBLIC_MESSAGE));
    }
    let (config, keys) = setup.as_ref().map_err(|error| ApiError::Misconfigured((*error).clone()))?;
    let required_scope = match route {
        Route::Status => {
            let status = keys.store.status(now_ms, keys.io).await;
            return Ok(HttpResponse::json(200, &status).with_header("cache-control", "no-store"));
        }
        Route::Public | Route::Private => None,
        Route::PrivateScoped => Some(REQUIRED_SCOPE),
    };
    let principal = authenticate(request.authorization, config, keys, now_ms, background_refresh).await?;
    if let Some(scope) = required_scope {
        if !principal.has_scope(scope) {
            return Err(ApiError::InsufficientScope { required: scope });
        }
    }
    let message = if required_scope.is_some() { SCOPED_MESSAGE } else { PRIVATE_MESSAGE };
    Ok(HttpResponse::message(message).with_header("cache-control", "no-store"))
}

/// Header → token → key → signature → claims, each step refusing with the check that failed.
async fn authenticate<I: KeyIo, V: SignatureVerifier>(
    authorization: Option<&str>,
    config: &Config,
    keys: &Keys<'_, I, V>,
    now_ms: u64,
    background_refresh: &mut bool,
) -> Result<Principal, ApiError> {
    let raw = extract::bearer_token(authorization)?;
    let token = UnverifiedToken::parse(raw).map_err(ApiError::InvalidToken)?;
    let resolved = keys.store.resolve(token.kid(), now_ms, keys.io).await?;
    *background_refresh = resolved.background_refresh;
    let signed = verify::check_signature(&token, &resolved.key, keys.verifier).await.map_err(ApiError::InvalidToken)?;
    let policy = ClaimsPolicy {
        issuer: &config.issuer,
        audiences: &config.audiences,
        leeway_secs: config.leeway_secs,
        scope_source: config.scope_source,
    };
    let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    claims::validate(signed, &policy, now_secs).map_err(ApiError::InvalidToken)
}

/// The JSON body of a misconfiguration, for logs (the response says the same).
pub fn describe_config_error(error: &ConfigError) -> serde_json::Value {
    json!({ "component": "edge-auth.config", "event": "misconfigured", "variable": error.variable, "problem": error.to_string() })
}
