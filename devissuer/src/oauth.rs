//! The dev issuer as a local Auth0 look-alike: enough of Auth0's Authentication API for the unmodified
//! `@auth0/auth0-spa-js` to log in, refresh and log out against it, and for an MCP client (the official MCP SDK's
//! OAuth client) to discover it, register and log in, with no tenant and no internet.
//!
//! Imitated: discovery (OIDC and RFC 8414), `/authorize` (authorization code with PKCE S256 only), a login page of
//! dev users (no passwords), `/oauth/token` (`authorization_code`, `refresh_token` with rotation and reuse
//! detection, `client_credentials` for one M2M client, DPoP binding, RFC 8707 `resource`), dynamic client
//! registration at `/oidc/register` (public clients only), RS256 ID tokens, `/userinfo`, `/v2/logout`, CORS for a
//! SPA's origin. Not imitated: sessions and `prompt=none` (silent login answers `login_required`),
//! `response_mode=web_message`, implicit grant, confidential registered clients, organizations, MFA,
//! `/oauth/revoke`, DPoP nonces.
//!
//! Plain data in, plain data out: the socket work is server.rs's, and time and randomness come in as
//! parameters so the tests drive every rule without a clock or a network.

use std::collections::{HashMap, VecDeque};

use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{b64, dpop, sign, SigningKey};

/// The client id auth0-spa-js is configured with: one dev application, a public client (no secret).
pub const DEV_CLIENT_ID: &str = "edge-auth-dev-client";
/// The machine-to-machine application: a confidential client that gets tokens with `client_credentials`.
pub const M2M_CLIENT_ID: &str = "edge-auth-dev-m2m";
/// Its secret: a constant, since everything here is a development stand-in on loopback.
pub const M2M_CLIENT_SECRET: &str = "edge-auth-dev-m2m-secret";
/// What the M2M client may be granted unless `serve --m2m-scopes` says otherwise (Auth0's "client grant").
pub const DEFAULT_M2M_SCOPES: [&str; 3] = ["mcp:tools", "read:messages", "repo:admin"];
/// Dynamically registered clients kept in memory; past this the oldest is forgotten.
pub const MAX_REGISTERED_CLIENTS: usize = 1_000;
/// Per registered client, and the longest URI taken (a redirect URI or a `resource`).
const MAX_REDIRECT_URIS: usize = 20;
const MAX_URI_LENGTH: usize = 2_048;
const MAX_CLIENT_NAME: usize = 200;
/// Auth0's default for access tokens issued to a SPA.
pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
pub const ID_TOKEN_SECONDS: i64 = 36_000;
/// RFC 6749 §4.1.2 recommends at most ten minutes; Auth0 and this issuer take one.
pub const CODE_SECONDS: i64 = 60;
/// Scopes that are about the user and the session, granted whenever asked for; API scopes are granted only
/// as far as the user's permissions go, as a tenant with RBAC does.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// Endpoints a SPA or a browser-based MCP client calls from script (fetch), so they answer CORS for the allowed
/// origins.
const CORS_PATHS: [&str; 5] = [
    "/oauth/token",
    "/userinfo",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/oidc/register",
];
/// Grant types the token endpoint knows; which client may use which is decided per client.
const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// A user one click signs in as.
#[derive(Debug)]
pub struct DevUser {
    pub id: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    /// What RBAC would assign for the API; copied into the access token's `permissions`.
    pub permissions: &'static [&'static str],
}

pub const DEV_USERS: &[DevUser] = &[
    DevUser { id: "dev-user|1", name: "Ada Reader", email: "ada@dev-issuer.invalid", permissions: &["read:messages"] },
    DevUser { id: "dev-user|2", name: "Bo Visitor", email: "bo@dev-issuer.invalid", permissions: &[] },
    // For MCP clients: holds the example server's tool scopes, granted only when asked for
    // (`scope`), so a client steps up from `mcp:tools` to `repo:admin`.
    DevUser {
        id: "dev-user|3",
        name: "Mo Maintainer",
        email: "mo@dev-issuer.invalid",
        permissions: &["mcp:tools", "repo:admin"],
    },
];

/// An HTTP request as plain data.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn json(status: u16, body: &Value) -> Response {
        let headers = vec![
            ("content-type".into(), "application/json".into()),
            // Tokens and their errors are never cached (RFC 6749 §5.1).
            ("cache-control".into(), "no-store".into()),
        ];
        Response { status, headers, body: body.to_string().into_bytes() }
    }

    fn oauth_error(status: u16, error: &str, description: &str) -> Response {
        Response::json(status, &json!({ "error": error, "error_description": description }))
    }

    fn page(status: u16, title: &str, body_html: &str) -> Response {
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · edge-auth dev issuer</title>\
             <meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head><body>\
             <p class=\"banner\">edge-auth dev issuer: a development tool on loopback, not Auth0. No passwords; \
             anyone on this machine can sign in as any dev user.</p><main><h1>{title}</h1>{body_html}</main></body></html>",
            title = escape(title)
        );
        Response {
            status,
            headers: vec![
                ("content-type".into(), "text/html; charset=utf-8".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: html.into_bytes(),
        }
    }

    fn redirect(location: &str) -> Response {
        Response {
            status: 302,
            headers: vec![("location".into(), location.into()), ("cache-control".into(), "no-store".into())],
            body: Vec::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

const STYLE: &str =
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#222}main{max-width:40rem;margin:2rem auto;\
padding:0 1rem}.banner{margin:0;padding:.5rem 1rem;background:#fff3cd;border-bottom:1px solid #e0c060}\
a.user{display:block;margin:.5rem 0;padding:.75rem 1rem;border:1px solid #99a;border-radius:6px;color:inherit;\
text-decoration:none}a.user:hover{background:#eef}code{background:#f3f3f3;padding:0 .2rem}small{color:#555}";

/// What the dev script decides: who may be redirected to, and what tokens are for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http://127.0.0.1:PORT/`: the `iss` of every token, and the base of every endpoint.
    pub issuer: String,
    pub client_id: String,
    /// The audience when `/authorize` names none (an Auth0 tenant's "Default Audience").
    pub default_audience: String,
    /// Exact URLs `/authorize` may send the dev client's codes to and `/v2/logout` may return to. Their origins
    /// may call the token endpoint from script.
    pub redirect_uris: Vec<String>,
    /// The scopes the M2M client (`M2M_CLIENT_ID`) may be granted.
    pub m2m_scopes: Vec<String>,
}

impl Settings {
    fn base(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}

pub fn default_m2m_scopes() -> Vec<String> {
    DEFAULT_M2M_SCOPES.iter().map(|s| s.to_string()).collect()
}

/// A client as the endpoints see it: the dev SPA, a registered (MCP) client or the M2M application.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    name: String,
    /// Only the M2M client has one; every other client is public.
    secret: Option<&'static str>,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    /// RFC 8252 §7.3: a registered loopback redirect URI matches on any port.
    any_loopback_port: bool,
}

impl Client {
    fn redirect_allowed(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|allowed| {
            allowed == uri
                || (self.any_loopback_port
                    && matches!((loopback_parts(allowed), loopback_parts(uri)), (Some(a), Some(b)) if a == b))
        })
    }

    fn may_use(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// What `/oidc/register` keeps (RFC 7591): public clients with their own redirect URIs.
struct RegisteredClient {
    name: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    grant: Grant,
    expires: i64,
    /// `dpop_jkt` on `/authorize` (RFC 9449 §10): the code may only be redeemed with a proof by that key.
    dpop_jkt: Option<String>,
}

/// What a login granted; a refresh token carries it forward.
#[derive(Clone)]
struct Grant {
    user: &'static DevUser,
    client_id: String,
    scope: String,
    /// The access token's audience: the `resource` asked for, else `audience`, else the default.
    audience: String,
    /// RFC 8707: the audience is a `resource`, so the token is for it alone (no `/userinfo` audience added).
    resource: bool,
}

struct RefreshToken {
    grant: Grant,
    family: u64,
    /// RFC 9449 §5: a public client's refresh token is bound to the DPoP key it was issued with.
    jkt: Option<String>,
}

struct AccessToken {
    user: &'static DevUser,
    expires: i64,
    jkt: Option<String>,
}

/// The issuer's memory: codes, tokens and proofs it has seen. Entries leave when they expire.
pub struct Provider {
    settings: Settings,
    key: SigningKey,
    codes: HashMap<String, Code>,
    refresh_tokens: HashMap<String, RefreshToken>,
    /// Rotated-away refresh tokens, by family: one presented again means it leaked, so the family dies.
    spent_refresh_tokens: HashMap<String, u64>,
    access_tokens: HashMap<String, AccessToken>,
    /// Proof `jti`s with their `iat`, for replay (RFC 9449 §11.1), kept while the `iat` is in the window.
    seen_proofs: HashMap<String, i64>,
    next_family: u64,
    registered: HashMap<String, RegisteredClient>,
    /// Registration order, to forget the oldest client when `MAX_REGISTERED_CLIENTS` is reached.
    registration_order: VecDeque<String>,
}

impl Provider {
    pub fn new(settings: Settings, key: SigningKey) -> Provider {
        Provider {
            settings,
            key,
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            spent_refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            seen_proofs: HashMap::new(),
            next_family: 0,
            registered: HashMap::new(),
            registration_order: VecDeque::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn handle(&mut self, request: &Request, now: i64, rng: &mut impl RngCore) -> Response {
        self.forget_expired(now);
        let cors = CORS_PATHS.contains(&request.path.as_str());
        if !self.host_allowed(request.header("host")) {
            // A page on another name resolving to 127.0.0.1 (DNS rebinding) must not drive the issuer.
            return Response::page(
                421,
                "Wrong host name",
                "<p>The dev issuer answers only to 127.0.0.1 and localhost.</p>",
            );
        }
        if request.method == "OPTIONS" && cors {
            return self.preflight(request.header("origin"));
        }
        let response = match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => self.index(),
            // One document at both: RFC 8414's is what MCP clients ask for first, OIDC's what auth0-spa-js reads.
            ("GET", "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server") => {
                Response::json(200, &self.discovery())
            }
            ("GET", "/authorize") => self.authorize(&request.query, now, rng),
            ("POST", "/oauth/token") => self.token(request, now, rng),
            ("POST", "/oidc/register") => self.register(request, now, rng),
            ("GET" | "POST", "/userinfo") => self.userinfo(request, now),
            ("GET", "/v2/logout") => self.logout(&parse_form(&request.query)),
            (_, "/authorize" | "/oauth/token" | "/oidc/register" | "/userinfo" | "/v2/logout") => {
                Response::oauth_error(405, "invalid_request", "method not allowed here")
            }
            _ => Response::oauth_error(404, "not_found", "the dev issuer has no such endpoint"),
        };
        if cors {
            self.with_cors(response, request.header("origin"))
        } else {
            response
        }
    }

    fn host_allowed(&self, host: Option<&str>) -> bool {
        let port = self.settings.base().rsplit_once(':').map(|(_, p)| p).unwrap_or("");
        matches!(host, Some(h) if h == format!("127.0.0.1:{port}") || h == format!("localhost:{port}"))
    }

    /// The origins of the dev client's redirect URIs and of every registered client's: the pages that run the
    /// flows and so call the token endpoint from script.
    fn cors_origin(&self, origin: Option<&str>) -> Option<String> {
        let origin = origin?;
        let registered = self.registered.values().flat_map(|c| c.redirect_uris.iter());
        self.settings
            .redirect_uris
            .iter()
            .chain(registered)
            .filter_map(|u| origin_of(u))
            .find(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The client a `client_id` names, if any.
    fn client(&self, id: &str) -> Option<Client> {
        if id == self.settings.client_id {
            return Some(Client {
                id: id.to_owned(),
                name: id.to_owned(),
                secret: None,
                redirect_uris: self.settings.redirect_uris.clone(),
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                any_loopback_port: false,
            });
        }
        if id == M2M_CLIENT_ID {
            return Some(Client {
                id: id.to_owned(),
                name: id.to_owned(),
                secret: Some(M2M_CLIENT_SECRET),
                redirect_uris: Vec::new(),
                grant_types: vec!["client_credentials".into()],
                any_loopback_port: false,
            });
        }
        let registered = self.registered.get(id)?;
        Some(Client {
            id: id.to_owned(),
            name: registered.name.clone().unwrap_or_else(|| id.to_owned()),
            secret: None,
            redirect_uris: registered.redirect_uris.clone(),
            grant_types: registered.grant_types.clone(),
            any_loopback_port: true,
        })
    }

    fn preflight(&self, origin: Option<&str>) -> Response {
        let mut response = Response { status: 204, headers: vec![("vary".into(), "Origin".into())], body: Vec::new() };
        if let Some(origin) = self.cors_origin(origin) {
            response.headers.extend([
                ("access-control-allow-origin".into(), origin),
                ("access-control-allow-methods".into(), "GET, POST".into()),
                // Auth0-Client is the SDK's telemetry header; DPoP its proof; the MCP SDK sends its protocol
                // version with discovery requests.
                (
                    "access-control-allow-headers".into(),
                    "Authorization, Content-Type, Auth0-Client, DPoP, MCP-Protocol-Version".into(),
                ),
                ("access-control-max-age".into(), "600".into()),
            ]);
        }
        response
    }

    fn with_cors(&self, mut response: Response, origin: Option<&str>) -> Response {
        response.headers.push(("vary".into(), "Origin".into()));
        if let Some(origin) = self.cors_origin(origin) {
            response.headers.push(("access-control-allow-origin".into(), origin));
            response.headers.push(("access-control-expose-headers".into(), "DPoP-Nonce, WWW-Authenticate".into()));
        }
        response
    }

    fn index(&self) -> Response {
        let uris = if self.settings.redirect_uris.is_empty() {
            "<p>No redirect URI is allowed yet: start with <code>serve --redirect-uris URL,URL</code>.</p>".to_owned()
        } else {
            let items: String =
                self.settings.redirect_uris.iter().map(|u| format!("<li><code>{}</code></li>", escape(u))).collect();
            format!("<p>Redirect and logout URLs allowed:</p><ul>{items}</ul>")
        };
        let body = format!(
            "<p>A stand-in for an Auth0 tenant. Issuer <code>{iss}</code>, client id <code>{client}</code>, \
             default audience <code>{aud}</code>.</p>{uris}<p>Discovery: \
             <a href=\"/.well-known/openid-configuration\">/.well-known/openid-configuration</a>, \
             <a href=\"/.well-known/oauth-authorization-server\">/.well-known/oauth-authorization-server</a>. \
             MCP clients register at <code>/oidc/register</code> ({registered} registered).</p>\
             <p>Machine-to-machine: client <code>{m2m}</code>, secret <code>{secret}</code>, scopes \
             <code>{scopes}</code>.</p>",
            iss = escape(&self.settings.issuer),
            client = escape(&self.settings.client_id),
            aud = escape(&self.settings.default_audience),
            registered = self.registered.len(),
            m2m = M2M_CLIENT_ID,
            secret = M2M_CLIENT_SECRET,
            scopes = escape(&self.settings.m2m_scopes.join(" ")),
        );
        Response::page(200, "Dev issuer", &body)
    }

    fn discovery(&self) -> Value {
        let base = self.settings.base();
        json!({
            "issuer": self.settings.issuer,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "registration_endpoint": format!("{base}/oidc/register"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": GRANT_TYPES,
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            // none: the dev client and registered clients; a secret: the M2M client.
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
            "scopes_supported": OIDC_SCOPES,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "nickname", "email", "email_verified"],
            "dpop_signing_alg_values_supported": [dpop::ALG],
        })
    }

    /// RFC 6749 §4.1.1 with PKCE (RFC 7636). Until the client and redirect URI are known good, errors are
    /// shown here; after, they go back to the client (§4.1.2.1).
    fn authorize(&mut self, query: &str, now: i64, rng: &mut impl RngCore) -> Response {
        let q = parse_form(query);
        let get = |name: &str| q.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let Some(client) = get("client_id").and_then(|id| self.client(id)) else {
            let body = format!(
                "<p>Unknown <code>client_id</code>. The dev issuer knows <code>{}</code> and the clients registered \
                 at <code>/oidc/register</code>.</p>",
                escape(&self.settings.client_id)
            );
            return Response::page(400, "Unknown application", &body);
        };
        if !client.may_use("authorization_code") {
            let body = format!(
                "<p><code>{}</code> is a machine-to-machine application: it gets tokens with \
                 <code>client_credentials</code> at <code>/oauth/token</code>, not through a login.</p>",
                escape(&client.id)
            );
            return Response::page(400, "Not an interactive application", &body);
        }
        let Some(redirect_uri) = get("redirect_uri").filter(|u| client.redirect_allowed(u)) else {
            let allowed = if client.redirect_uris.is_empty() {
                "none".to_owned()
            } else {
                client
                    .redirect_uris
                    .iter()
                    .map(|u| format!("<code>{}</code>", escape(u)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let how = if client.any_loopback_port {
                "The client registered them at <code>/oidc/register</code>."
            } else {
                "The dev script sets the list (<code>serve --redirect-uris</code>)."
            };
            let body = format!(
                "<p>The <code>redirect_uri</code> {} is not on the allow-list of <code>{}</code>, so nothing is sent \
                 back to it.</p><p>Allowed: {allowed}. {how}</p>",
                get("redirect_uri").map(|u| format!("<code>{}</code>", escape(u))).unwrap_or("(none given)".into()),
                escape(&client.id),
            );
            return Response::page(400, "Redirect URI not allowed", &body);
        };
        let state = get("state");
        let fail = |error: &str, description: &str| {
            let mut params = vec![("error", error), ("error_description", description)];
            params.extend(state.map(|s| ("state", s)));
            Response::redirect(&with_query(redirect_uri, &params))
        };
        if get("response_type") != Some("code") {
            return fail("unsupported_response_type", "the dev issuer supports response_type=code only");
        }
        if !matches!(get("response_mode"), None | Some("query")) {
            return fail("invalid_request", "the dev issuer supports response_mode=query only");
        }
        if get("code_challenge_method") != Some("S256") {
            return fail("invalid_request", "PKCE with code_challenge_method=S256 is required");
        }
        let Some(challenge) = get("code_challenge").filter(|c| c.len() == 43 && is_base64url(c)) else {
            return fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)");
        };
        // RFC 8707 §2: a bad resource goes back to the client like any other error.
        let resource = match resource_param(query, get("resource")) {
            Ok(resource) => resource,
            Err(description) => return fail("invalid_target", description),
        };
        if get("prompt") == Some("none") {
            // There are no sessions to be silent about: the SPA must log in through the page.
            return fail("login_required", "the dev issuer keeps no sessions; log in interactively");
        }
        let user = get("login_hint").and_then(|hint| DEV_USERS.iter().find(|u| u.id == hint));
        let Some(user) = user else { return self.login_page(&q, &client) };
        let audience = resource.or(get("audience")).unwrap_or(&self.settings.default_audience).to_owned();
        let grant = Grant {
            user,
            client_id: client.id.clone(),
            scope: granted_scope(get("scope").unwrap_or(""), user),
            audience,
            resource: resource.is_some(),
        };
        let code = random_token(rng);
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client.id,
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.to_owned(),
                nonce: get("nonce").map(str::to_owned),
                grant,
                expires: now + CODE_SECONDS,
                dpop_jkt: get("dpop_jkt").map(str::to_owned),
            },
        );
        let mut params = vec![("code", code.as_str())];
        params.extend(state.map(|s| ("state", s)));
        Response::redirect(&with_query(redirect_uri, &params))
    }

    /// One link per dev user: the same `/authorize` request with `login_hint` set, so signing in is one click
    /// and the page keeps no state.
    fn login_page(&self, q: &HashMap<String, String>, client: &Client) -> Response {
        let mut links = String::new();
        for user in DEV_USERS {
            let mut params: Vec<(&str, &str)> =
                q.iter().filter(|(k, _)| k.as_str() != "login_hint").map(|(k, v)| (k.as_str(), v.as_str())).collect();
            params.sort();
            params.push(("login_hint", user.id));
            let href = with_query("/authorize", &params);
            let permissions =
                if user.permissions.is_empty() { "no permissions".to_owned() } else { user.permissions.join(", ") };
            links.push_str(&format!(
                "<a class=\"user\" href=\"{href}\" data-user=\"{id}\"><strong>{name}</strong> <code>{id}</code><br>\
                 <small>{email} · {permissions}</small></a>",
                href = escape(&href),
                id = escape(user.id),
                name = escape(user.name),
                email = escape(user.email),
                permissions = escape(&permissions),
            ));
        }
        let named = |name: &str| q.get(name).filter(|v| !v.is_empty()).cloned();
        let audience =
            named("resource").or_else(|| named("audience")).unwrap_or_else(|| self.settings.default_audience.clone());
        let client_name = if client.name == client.id {
            format!("<code>{}</code>", escape(&client.id))
        } else {
            format!("{} (<code>{}</code>)", escape(&client.name), escape(&client.id))
        };
        let body = format!(
            "<p>Sign in to {client_name} for <code>{audience}</code> as:</p>{links}",
            audience = escape(&audience),
        );
        Response::page(200, "Sign in", &body)
    }

    fn token(&mut self, request: &Request, now: i64, rng: &mut impl RngCore) -> Response {
        let Some(params) = token_params(request) else {
            return Response::oauth_error(400, "invalid_request", "the body must be a form or a JSON object");
        };
        let get = |name: &str| params.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let client = match self.authenticate(request, &params) {
            Ok(client) => client,
            Err(response) => return response,
        };
        let grant_type = match get("grant_type") {
            None => return Response::oauth_error(400, "invalid_request", "grant_type is required"),
            Some(g) if !GRANT_TYPES.contains(&g) => {
                return Response::oauth_error(
                    400,
                    "unsupported_grant_type",
                    &format!(
                        "the dev issuer supports authorization_code, refresh_token and client_credentials, not {g}"
                    ),
                )
            }
            Some(g) => g,
        };
        if !client.may_use(grant_type) {
            let description = if client.secret.is_some() {
                format!("{} is a machine-to-machine client: it may use client_credentials only", client.id)
            } else {
                format!("{} is a public client: it may not use {grant_type}", client.id)
            };
            return Response::oauth_error(400, "unauthorized_client", &description);
        }
        let form = if token_body_is_json(request) { "" } else { std::str::from_utf8(&request.body).unwrap_or("") };
        let resource = match resource_param(form, get("resource")) {
            Ok(resource) => resource,
            Err(description) => return Response::oauth_error(400, "invalid_target", description),
        };
        let url = format!("{}/oauth/token", self.settings.base());
        let jkt = match self.check_proof(request, &url, None, now) {
            Ok(jkt) => jkt,
            Err(description) => return Response::oauth_error(400, "invalid_dpop_proof", &description),
        };
        match grant_type {
            "authorization_code" => {
                // Single use: the code is gone whatever happens next (RFC 6749 §4.1.2).
                let Some(code) = get("code").and_then(|c| self.codes.remove(c)) else {
                    return Response::oauth_error(400, "invalid_grant", "the code is unknown, used or expired");
                };
                if code.expires < now {
                    return Response::oauth_error(400, "invalid_grant", "the code is unknown, used or expired");
                }
                if code.client_id != client.id {
                    return Response::oauth_error(400, "invalid_grant", "the code was issued to another client");
                }
                if get("redirect_uri") != Some(code.redirect_uri.as_str()) {
                    return Response::oauth_error(
                        400,
                        "invalid_grant",
                        "redirect_uri is not the one the code was sent to",
                    );
                }
                let verifier = get("code_verifier").unwrap_or("");
                if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(is_unreserved) {
                    return Response::oauth_error(
                        400,
                        "invalid_grant",
                        "code_verifier must be 43 to 128 unreserved characters",
                    );
                }
                if b64(&Sha256::digest(verifier.as_bytes())) != code.challenge {
                    return Response::oauth_error(400, "invalid_grant", "code_verifier does not match code_challenge");
                }
                if resource.is_some_and(|r| r != code.grant.audience) {
                    return Response::oauth_error(
                        400,
                        "invalid_target",
                        "resource is not the one the code was issued for",
                    );
                }
                if code.dpop_jkt.is_some() && code.dpop_jkt != jkt {
                    return Response::oauth_error(400, "invalid_dpop_proof", "the code is bound to another DPoP key");
                }
                let family = self.next_family;
                self.next_family += 1;
                self.issue(&code.grant, code.nonce.as_deref(), jkt, family, now, rng)
            }
            "refresh_token" => {
                let presented = get("refresh_token").unwrap_or("");
                if let Some(family) = self.spent_refresh_tokens.get(presented).copied() {
                    // Reuse of a rotated token: whoever holds the family's live token may be the thief.
                    self.refresh_tokens.retain(|_, t| t.family != family);
                    return Response::oauth_error(
                        400,
                        "invalid_grant",
                        "refresh token reused; its whole family is revoked",
                    );
                }
                let Some(refresh) = self.refresh_tokens.get(presented) else {
                    return Response::oauth_error(400, "invalid_grant", "unknown or revoked refresh token");
                };
                if refresh.grant.client_id != client.id {
                    return Response::oauth_error(
                        400,
                        "invalid_grant",
                        "the refresh token was issued to another client",
                    );
                }
                // Checked before rotation: a mistaken request leaves the refresh token usable.
                if resource.is_some_and(|r| r != refresh.grant.audience) {
                    return Response::oauth_error(
                        400,
                        "invalid_target",
                        "a refresh keeps the resource of its grant; this is another one",
                    );
                }
                if refresh.jkt.is_some() && refresh.jkt != jkt {
                    return Response::oauth_error(
                        400,
                        "invalid_dpop_proof",
                        "the refresh token is bound to another DPoP key",
                    );
                }
                let refresh = self.refresh_tokens.remove(presented).expect("looked up above");
                self.spent_refresh_tokens.insert(presented.to_owned(), refresh.family);
                self.issue(&refresh.grant, None, refresh.jkt, refresh.family, now, rng)
            }
            _ => {
                // client_credentials, the M2M client only (may_use above). As Auth0 does, a scope outside the
                // client's grant is refused outright rather than dropped.
                let allowed = &self.settings.m2m_scopes;
                let mut scopes: Vec<&str> = Vec::new();
                for scope in get("scope").unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
                    if !allowed.iter().any(|a| a == scope) {
                        return Response::oauth_error(
                            403,
                            "access_denied",
                            &format!(
                                "{} has not been granted the scope {scope} (allowed: {})",
                                client.id,
                                allowed.join(" ")
                            ),
                        );
                    }
                    if !scopes.contains(&scope) {
                        scopes.push(scope);
                    }
                }
                if scopes.is_empty() {
                    scopes = allowed.iter().map(String::as_str).collect();
                }
                let audience = resource.or(get("audience")).unwrap_or(&self.settings.default_audience);
                self.issue_machine(&client.id, &scopes, audience, jkt, now, rng)
            }
        }
    }

    /// RFC 6749 §2.3: which client is asking. Public clients only name themselves (`client_id`); the M2M client
    /// proves itself with its secret, in the body (`client_secret_post`) or HTTP Basic, never both (§2.3.1).
    fn authenticate(&self, request: &Request, params: &HashMap<String, String>) -> Result<Client, Response> {
        let nonempty = |name: &str| params.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let (body_id, body_secret) = (nonempty("client_id"), nonempty("client_secret"));
        let basic = match request.header("authorization") {
            None => None,
            Some(value) => match basic_credentials(value) {
                Some(credentials) => Some(credentials),
                None => {
                    return Err(invalid_client(true, "the Authorization header must be Basic base64(client_id:secret)"))
                }
            },
        };
        let (id, secret, via_basic) = match (basic, body_id, body_secret) {
            (Some(_), _, Some(_)) => {
                return Err(Response::oauth_error(
                    400,
                    "invalid_request",
                    "use one client authentication method: HTTP Basic or client_secret in the body, not both",
                ))
            }
            (Some((id, _)), Some(named), None) if named != id => {
                return Err(Response::oauth_error(
                    400,
                    "invalid_request",
                    "client_id in the body is not the one in the Authorization header",
                ))
            }
            (Some((id, secret)), _, None) => (id, Some(secret), true),
            (None, Some(id), secret) => (id.to_owned(), secret.map(str::to_owned), false),
            (None, None, _) => return Err(invalid_client(false, "client_id is required")),
        };
        let Some(client) = self.client(&id) else { return Err(invalid_client(via_basic, "unknown client_id")) };
        match (client.secret, secret.as_deref().filter(|s| !s.is_empty())) {
            (None, None) => Ok(client),
            (None, Some(_)) => Err(invalid_client(
                via_basic,
                &format!("{id} is a public client and has no secret; send client_id alone"),
            )),
            (Some(expected), Some(given)) if given == expected => Ok(client),
            (Some(_), Some(_)) => Err(invalid_client(via_basic, "wrong client secret")),
            (Some(_), None) => Err(invalid_client(
                via_basic,
                &format!("{id} is a confidential client: authenticate with client_secret_post or client_secret_basic"),
            )),
        }
    }

    /// RFC 7591 registration of a public client (`token_endpoint_auth_method: none`), as Auth0's dynamic client
    /// registration at `/oidc/register`. Nothing is kept unless every member is good.
    fn register(&mut self, request: &Request, now: i64, rng: &mut impl RngCore) -> Response {
        let bad = |description: &str| Response::oauth_error(400, "invalid_client_metadata", description);
        // JSON only: a cross-site form post (text/plain, no preflight) cannot register anything.
        if !token_body_is_json(request) {
            return bad("the body must be JSON, sent as Content-Type: application/json");
        }
        let Ok(Value::Object(metadata)) = serde_json::from_slice::<Value>(&request.body) else {
            return bad("the body must be a JSON object of client metadata");
        };
        let redirect_uris = match registered_redirect_uris(metadata.get("redirect_uris")) {
            Ok(uris) => uris,
            Err(description) => return Response::oauth_error(400, "invalid_redirect_uri", &description),
        };
        let grant_types = match string_list(&metadata, "grant_types", &["authorization_code", "refresh_token"]) {
            Ok(list) => list,
            Err(description) => return bad(&description),
        };
        if let Some(other) = grant_types.iter().find(|g| !["authorization_code", "refresh_token"].contains(&g.as_str()))
        {
            return bad(&format!(
                "grant type {other} is not available: registered clients are public and use authorization_code and \
                 refresh_token (client_credentials is for {M2M_CLIENT_ID})"
            ));
        }
        if !grant_types.iter().any(|g| g == "authorization_code") {
            return bad("grant_types must include authorization_code: a registered client logs users in");
        }
        let response_types = match string_list(&metadata, "response_types", &["code"]) {
            Ok(list) => list,
            Err(description) => return bad(&description),
        };
        if response_types.iter().any(|t| t != "code") {
            return bad("response_types may only be [\"code\"]");
        }
        // A client asking for a secret is registered public all the same: RFC 7591 §3.2.1 lets the
        // server replace what was asked for, and the answer says `none` (the SDK's own example
        // client asks for client_secret_post, and then goes on without a secret).
        match optional_string(&metadata, "token_endpoint_auth_method") {
            Ok(None) => {}
            Ok(Some(method)) if ["none", "client_secret_post", "client_secret_basic"].contains(&method.as_str()) => {}
            Ok(Some(method)) => {
                return bad(&format!(
                    "token_endpoint_auth_method {method} is not supported: the dev issuer registers public clients \
                     (none)"
                ))
            }
            Err(description) => return bad(&description),
        }
        let name = match optional_string(&metadata, "client_name") {
            Ok(name) if name.as_ref().is_some_and(|n| n.chars().count() > MAX_CLIENT_NAME) => {
                return bad(&format!("client_name is longer than {MAX_CLIENT_NAME} characters"))
            }
            Ok(name) => name,
            Err(description) => return bad(&description),
        };
        let scope = match optional_string(&metadata, "scope") {
            Ok(scope) => scope,
            Err(description) => return bad(&description),
        };

        let client_id = loop {
            let mut id_bytes = [0u8; 16];
            rng.fill_bytes(&mut id_bytes);
            let id = b64(&id_bytes);
            if self.client(&id).is_none() {
                break id;
            }
        };
        if self.registration_order.len() >= MAX_REGISTERED_CLIENTS {
            if let Some(oldest) = self.registration_order.pop_front() {
                self.registered.remove(&oldest);
            }
        }
        let mut body = json!({
            "client_id": client_id,
            "client_id_issued_at": now,
            "redirect_uris": redirect_uris,
            "grant_types": grant_types,
            "response_types": response_types,
            "token_endpoint_auth_method": "none",
        });
        if let Some(name) = &name {
            body["client_name"] = json!(name);
        }
        if let Some(scope) = &scope {
            body["scope"] = json!(scope);
        }
        self.registration_order.push_back(client_id.clone());
        self.registered.insert(client_id, RegisteredClient { name, redirect_uris, grant_types });
        Response::json(201, &body)
    }

    /// Zero or one `DPoP` header; one must be a good, unreplayed proof. The key's thumbprint, if any.
    fn check_proof(
        &mut self,
        request: &Request,
        url: &str,
        token: Option<&str>,
        now: i64,
    ) -> Result<Option<String>, String> {
        let proofs = request.all("dpop");
        let proof = match proofs.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            _ => return Err("more than one DPoP header".into()),
        };
        let expected = dpop::Expected { method: &request.method, url, access_token: token, now };
        let proof = dpop::verify_proof(proof, &expected).map_err(|e| e.to_string())?;
        if self.seen_proofs.contains_key(&proof.jti) {
            return Err("the DPoP proof's jti was seen before (a replay)".into());
        }
        self.seen_proofs.insert(proof.jti, proof.iat);
        Ok(Some(proof.jkt))
    }

    fn issue(
        &mut self,
        grant: &Grant,
        nonce: Option<&str>,
        jkt: Option<String>,
        family: u64,
        now: i64,
        rng: &mut impl RngCore,
    ) -> Response {
        let user = grant.user;
        let base = &self.settings.issuer;
        let scopes: Vec<&str> = grant.scope.split(' ').filter(|s| !s.is_empty()).collect();
        // Auth0 adds its /userinfo audience when openid is asked for, so the token also opens /userinfo; a token
        // for a `resource` is for that resource alone (RFC 8707).
        let audience = if scopes.contains(&"openid") && !grant.resource {
            json!([grant.audience, format!("{base}userinfo")])
        } else {
            json!(grant.audience)
        };
        let mut claims = json!({
            "iss": base,
            "sub": user.id,
            "aud": audience,
            "iat": now,
            "exp": now + ACCESS_TOKEN_SECONDS,
            "azp": grant.client_id,
            "scope": grant.scope,
            "permissions": user.permissions,
            "jti": random_token(rng),
        });
        if let Some(jkt) = &jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.key.kid });
        let access_token = sign(&header, &claims, &self.key);
        self.access_tokens
            .insert(access_token.clone(), AccessToken { user, expires: now + ACCESS_TOKEN_SECONDS, jkt: jkt.clone() });
        let mut body = json!({
            "access_token": access_token,
            "scope": grant.scope,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
        });
        if scopes.contains(&"openid") {
            let mut id_claims = json!({
                "iss": base,
                "sub": user.id,
                "aud": grant.client_id,
                "iat": now,
                "exp": now + ID_TOKEN_SECONDS,
                "auth_time": now,
                "name": user.name,
                "nickname": user.name.split(' ').next().unwrap_or(user.name),
                "email": user.email,
                "email_verified": true,
            });
            if let Some(nonce) = nonce {
                id_claims["nonce"] = json!(nonce);
            }
            body["id_token"] = json!(sign(&header, &id_claims, &self.key));
        }
        if scopes.contains(&"offline_access") {
            let refresh_token = random_token(rng);
            self.refresh_tokens.insert(refresh_token.clone(), RefreshToken { grant: grant.clone(), family, jkt });
            body["refresh_token"] = json!(refresh_token);
        }
        Response::json(200, &body)
    }

    /// An Auth0 machine-to-machine token: the client is the subject (`<client_id>@clients`), `gty` says how it
    /// was had, and, as with RBAC's "Add Permissions in the Access Token", `permissions` repeats the scopes.
    /// No refresh or ID token, and nothing `/userinfo` would answer for.
    fn issue_machine(
        &self,
        client_id: &str,
        scopes: &[&str],
        audience: &str,
        jkt: Option<String>,
        now: i64,
        rng: &mut impl RngCore,
    ) -> Response {
        let scope = scopes.join(" ");
        let mut claims = json!({
            "iss": self.settings.issuer,
            "sub": format!("{client_id}@clients"),
            "aud": audience,
            "iat": now,
            "exp": now + ACCESS_TOKEN_SECONDS,
            "azp": client_id,
            "scope": scope,
            "gty": "client-credentials",
            "permissions": scopes,
            "jti": random_token(rng),
        });
        if let Some(jkt) = &jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.key.kid });
        Response::json(
            200,
            &json!({
                "access_token": sign(&header, &claims, &self.key),
                "scope": scope,
                "expires_in": ACCESS_TOKEN_SECONDS,
                "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
            }),
        )
    }

    fn userinfo(&mut self, request: &Request, now: i64) -> Response {
        let challenge = |error: &str, description: &str| {
            let mut response = Response::oauth_error(401, error, description);
            let value = format!("Bearer realm=\"dev issuer\", error=\"{error}\", error_description=\"{description}\"");
            response.headers.push(("www-authenticate".into(), value));
            response
        };
        let authorization = request.header("authorization").unwrap_or("");
        let (scheme, token) = authorization.split_once(' ').unwrap_or(("", ""));
        let scheme = scheme.to_ascii_lowercase();
        if token.is_empty() || !(scheme == "bearer" || scheme == "dpop") {
            return challenge("invalid_request", "an access token is required");
        }
        let Some(issued) = self.access_tokens.get(token).filter(|t| t.expires >= now) else {
            return challenge("invalid_token", "unknown or expired access token");
        };
        let (user, bound_to) = (issued.user, issued.jkt.clone());
        if let Some(jkt) = bound_to {
            // RFC 9449 §7.2: a bound token is only good with its proof, never as a bearer token.
            if scheme != "dpop" {
                return challenge("invalid_token", "a DPoP-bound token must be sent with the DPoP scheme");
            }
            let url = format!("{}/userinfo", self.settings.base());
            match self.check_proof(request, &url, Some(token), now) {
                Ok(Some(proof_jkt)) if proof_jkt == jkt => {}
                Ok(_) => return challenge("invalid_token", "the DPoP proof is missing or made with another key"),
                Err(description) => return challenge("invalid_dpop_proof", &description),
            }
        } else if scheme == "dpop" {
            return challenge("invalid_token", "the DPoP scheme needs a DPoP-bound token");
        }
        Response::json(
            200,
            &json!({
                "sub": user.id,
                "name": user.name,
                "nickname": user.name.split(' ').next().unwrap_or(user.name),
                "email": user.email,
                "email_verified": true,
            }),
        )
    }

    fn logout(&self, q: &HashMap<String, String>) -> Response {
        match q.get("returnTo").filter(|r| !r.is_empty()) {
            None => Response::page(200, "Signed out", "<p>You are signed out of the dev issuer.</p>"),
            Some(to) if self.settings.redirect_uris.iter().any(|a| a == to) => Response::redirect(to),
            Some(to) => Response::page(
                400,
                "Return URL not allowed",
                &format!("<p><code>returnTo</code> <code>{}</code> is not on the allow-list.</p>", escape(to)),
            ),
        }
    }

    fn forget_expired(&mut self, now: i64) {
        self.codes.retain(|_, c| c.expires >= now);
        self.access_tokens.retain(|_, t| t.expires >= now);
        self.seen_proofs.retain(|_, iat| *iat >= now - dpop::MAX_AGE_SECONDS);
    }
}

/// Scopes a login grants: the OIDC ones asked for, and API scopes asked for that the user holds.
fn granted_scope(requested: &str, user: &DevUser) -> String {
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if (OIDC_SCOPES.contains(&scope) || user.permissions.contains(&scope)) && !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    granted.join(" ")
}

fn token_body_is_json(request: &Request) -> bool {
    request.header("content-type").unwrap_or("").to_ascii_lowercase().starts_with("application/json")
}

fn token_params(request: &Request) -> Option<HashMap<String, String>> {
    if token_body_is_json(request) {
        let Value::Object(map) = serde_json::from_slice(&request.body).ok()? else { return None };
        let value = |k: &str, v: Value| match v {
            Value::String(v) => Some(v),
            // An array of resources is kept as its JSON text, which is no URI: `invalid_target`, not ignored.
            other if k == "resource" => Some(other.to_string()),
            _ => None,
        };
        return Some(map.into_iter().filter_map(|(k, v)| value(&k, v).map(|v| (k, v))).collect());
    }
    Some(parse_form(std::str::from_utf8(&request.body).ok()?))
}

fn invalid_client(via_basic: bool, description: &str) -> Response {
    let mut response = Response::oauth_error(401, "invalid_client", description);
    if via_basic {
        // RFC 6749 §5.2: a client that tried HTTP Basic is told which scheme to use.
        response.headers.push(("www-authenticate".into(), "Basic realm=\"dev issuer\"".into()));
    }
    response
}

/// `Basic base64(client_id:secret)`, each half form-encoded first (RFC 6749 §2.3.1).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    use base64ct::Encoding;
    let decoded = base64ct::Base64::decode_vec(encoded.trim()).ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((decode(id), decode(secret))).filter(|(id, _)| !id.is_empty())
}

/// RFC 8707 §2: `resource`, if given, is one absolute URI without a fragment. `raw` is the query or form it came
/// from, to see repeats (`parse_form` keeps the first); the dev issuer issues for one resource at a time.
fn resource_param<'a>(raw: &str, resource: Option<&'a str>) -> Result<Option<&'a str>, &'static str> {
    let given = raw.split('&').filter(|pair| decode(pair.split('=').next().unwrap_or("")) == "resource").count();
    if given > 1 {
        return Err("one resource per request: the dev issuer issues a token for a single audience");
    }
    match resource {
        Some(resource) if !is_resource_uri(resource) => {
            Err("resource must be an absolute URI without a fragment (RFC 8707)")
        }
        resource => Ok(resource),
    }
}

/// An absolute URI (RFC 3986 §4.3) without a fragment, printable ASCII; `http(s)` ones with a host.
fn is_resource_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else { return false };
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let host_ok = !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        || rest.strip_prefix("//").is_some_and(|r| !r.is_empty() && !r.starts_with(['/', '?']));
    scheme_ok
        && host_ok
        && !rest.is_empty()
        && value.len() <= MAX_URI_LENGTH
        && !value.contains('#')
        && value.bytes().all(|b| b.is_ascii_graphic())
}

/// `redirect_uris` of a registration: a non-empty list of https URLs or loopback http ones (RFC 8252 §7.3).
fn registered_redirect_uris(value: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(Value::Array(list)) = value else {
        return Err("redirect_uris is required: an array of https or loopback http URLs".into());
    };
    if list.is_empty() || list.len() > MAX_REDIRECT_URIS {
        return Err(format!("redirect_uris must hold 1 to {MAX_REDIRECT_URIS} URLs"));
    }
    let mut uris: Vec<String> = Vec::new();
    for uri in list {
        let Some(uri) = uri.as_str() else { return Err("each redirect URI must be a string".into()) };
        check_redirect_uri(uri).map_err(|why| format!("{uri}: {why}"))?;
        if !uris.iter().any(|u| u == uri) {
            uris.push(uri.to_owned());
        }
    }
    Ok(uris)
}

fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_URI_LENGTH || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a redirect URI is printable ASCII, at most 2048 characters");
    }
    if uri.contains('#') {
        return Err("a redirect URI has no fragment (RFC 6749 §3.1.2)");
    }
    if let Some(rest) = uri.strip_prefix("https://") {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        return if authority.is_empty() || authority.contains('@') {
            Err("an https redirect URI needs a host, and no user name")
        } else {
            Ok(())
        };
    }
    if loopback_parts(uri).is_some() {
        return Ok(());
    }
    Err("a redirect URI is https, or http on loopback only (127.0.0.1, localhost or [::1], any port)")
}

/// A loopback `http` URL's host and what follows its authority, the port left out: RFC 8252 §7.3 has a native
/// client pick its port when it logs in, so registered loopback URIs match on any port.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !authority.ends_with(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let port_ok = port.is_none_or(|p| (1..=5).contains(&p.len()) && p.parse::<u16>().is_ok());
    (port_ok && matches!(host, "127.0.0.1" | "localhost" | "[::1]")).then_some((host, tail))
}

/// A registration member that is a list of strings; `default` when absent.
fn string_list(metadata: &serde_json::Map<String, Value>, name: &str, default: &[&str]) -> Result<Vec<String>, String> {
    match metadata.get(name) {
        None => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(format!("{name} must be an array of strings")))
            .collect(),
        Some(_) => Err(format!("{name} must be a non-empty array of strings")),
    }
}

fn optional_string(metadata: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match metadata.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

fn random_token(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    b64(&bytes)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn is_base64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{authority}"))
}

/// application/x-www-form-urlencoded; a name given twice keeps its first value.
pub fn parse_form(text: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(decode(name)).or_insert_with(|| decode(value));
    }
    map
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(text: &str) -> String {
    text.bytes().map(|b| if is_unreserved(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// `url` with these parameters added to its query.
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{}", query.join("&"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::{make_proof, ClientKey, ProofClaims};
    use base64ct::Encoding;
    use rand::{rngs::StdRng, SeedableRng};
    use std::sync::OnceLock;

    const NOW: i64 = 1_800_000_000;
    const PAGE: &str = "http://127.0.0.1:8790/";
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ0H3lGcgfyiMbIg2uLpA3a8lO8SHz0";

    fn key() -> SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate("test-key", 2048)).clone()
    }

    fn provider() -> Provider {
        let settings = Settings {
            issuer: "http://127.0.0.1:8788/".into(),
            client_id: DEV_CLIENT_ID.into(),
            default_audience: "https://edge-auth.local/api".into(),
            redirect_uris: vec![PAGE.into()],
            m2m_scopes: default_m2m_scopes(),
        };
        Provider::new(settings, key())
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut all = vec![("host".to_owned(), "127.0.0.1:8788".to_owned())];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        Request { method: method.into(), path: path.into(), query: query.into(), headers: all, body: body.into() }
    }

    fn challenge() -> String {
        b64(&Sha256::digest(VERIFIER.as_bytes()))
    }

    fn authorize_query(extra: &[(&str, &str)]) -> String {
        let challenge = challenge();
        let mut params = vec![
            ("client_id", DEV_CLIENT_ID),
            ("redirect_uri", PAGE),
            ("response_type", "code"),
            ("scope", "openid profile email offline_access read:messages"),
            ("audience", "https://edge-auth.local/api"),
            ("state", "st-1"),
            ("nonce", "no-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in extra {
            params.retain(|(n, _)| n != name);
            if !value.is_empty() {
                params.push((name, value));
            }
        }
        with_query("/authorize", &params)
    }

    fn location_params(response: &Response) -> HashMap<String, String> {
        assert_eq!(response.status, 302, "{}", String::from_utf8_lossy(&response.body));
        let location = response.header("location").unwrap();
        assert!(location.starts_with(PAGE), "{location}");
        parse_form(location.split_once('?').unwrap().1)
    }

    fn code_for(p: &mut Provider, user: &str, extra: &[(&str, &str)]) -> String {
        let mut extra = extra.to_vec();
        extra.push(("login_hint", user));
        let response = p.handle(&request("GET", &authorize_query(&extra), &[], ""), NOW, &mut rng());
        let params = location_params(&response);
        assert_eq!(params["state"], "st-1");
        params["code"].clone()
    }

    fn exchange(p: &mut Provider, code: &str, headers: &[(&str, &str)], now: i64) -> Response {
        let body = with_query(
            "",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", DEV_CLIENT_ID),
                ("code", code),
                ("redirect_uri", PAGE),
                ("code_verifier", VERIFIER),
            ],
        );
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        p.handle(&request("POST", "/oauth/token", &all, &body[1..]), now, &mut rng())
    }

    fn body(response: &Response) -> Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    fn claims(jwt: &str) -> Value {
        let payload = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64ct::Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap()
    }

    fn token_proof(client: &ClientKey, url: &str, method: &str, token: Option<&str>) -> String {
        let claims = ProofClaims { method, url, access_token: token, nonce: None, iat: NOW, jti: dpop::random_jti() };
        make_proof(client, &claims)
    }

    #[test]
    fn code_flow_gives_auth0_shaped_tokens() {
        let mut p = provider();
        let code = code_for(&mut p, "dev-user|1", &[]);
        let response = exchange(&mut p, &code, &[], NOW + 5);
        assert_eq!(response.status, 200);
        let tokens = body(&response);
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], ACCESS_TOKEN_SECONDS);
        let access = claims(tokens["access_token"].as_str().unwrap());
        assert_eq!(access["iss"], "http://127.0.0.1:8788/");
        assert_eq!(access["sub"], "dev-user|1");
        assert_eq!(access["aud"], json!(["https://edge-auth.local/api", "http://127.0.0.1:8788/userinfo"]));
        assert_eq!(access["scope"], "openid profile email offline_access read:messages");
        assert_eq!(access["permissions"], json!(["read:messages"]));
        assert!(access.get("cnf").is_none());
        let id = claims(tokens["id_token"].as_str().unwrap());
        assert_eq!(
            (id["aud"].as_str(), id["nonce"].as_str(), id["sub"].as_str()),
            (Some(DEV_CLIENT_ID), Some("no-1"), Some("dev-user|1"))
        );
        let header = claims(&format!("x.{}", tokens["id_token"].as_str().unwrap().split('.').next().unwrap()));
        assert_eq!(header["alg"], "RS256");
        assert!(tokens["refresh_token"].is_string());
    }

    #[test]
    fn a_user_without_the_permission_is_not_granted_the_scope() {
        let mut p = provider();
        let code = code_for(&mut p, "dev-user|2", &[]);
        let access = claims(body(&exchange(&mut p, &code, &[], NOW))["access_token"].as_str().unwrap());
        assert_eq!(access["scope"], "openid profile email offline_access");
        assert_eq!(access["permissions"], json!([]));
    }

    #[test]
    fn a_code_is_single_use_and_expires_in_a_minute() {
        let mut p = provider();
        let code = code_for(&mut p, "dev-user|1", &[]);
        assert_eq!(exchange(&mut p, &code, &[], NOW).status, 200);
        let again = exchange(&mut p, &code, &[], NOW);
        assert_eq!((again.status, body(&again)["error"].as_str()), (400, Some("invalid_grant")));
        let late = code_for(&mut p, "dev-user|1", &[]);
        assert_eq!(body(&exchange(&mut p, &late, &[], NOW + CODE_SECONDS + 1))["error"], "invalid_grant");
        let in_time = code_for(&mut p, "dev-user|1", &[]);
        assert_eq!(exchange(&mut p, &in_time, &[], NOW + CODE_SECONDS).status, 200);
    }

    #[test]
    fn pkce_verifier_and_redirect_uri_must_match() {
        let mut p = provider();
        let code = code_for(&mut p, "dev-user|1", &[]);
        let wrong = format!(
            "grant_type=authorization_code&client_id={DEV_CLIENT_ID}&code={code}&redirect_uri={}&code_verifier={}",
            encode(PAGE),
            "a".repeat(43)
        );
        let response = p.handle(&request("POST", "/oauth/token", &[], &wrong), NOW, &mut rng());
        assert_eq!(body(&response)["error"], "invalid_grant");
        let code = code_for(&mut p, "dev-user|1", &[]);
        let elsewhere = format!("grant_type=authorization_code&client_id={DEV_CLIENT_ID}&code={code}&redirect_uri=http%3A%2F%2F127.0.0.1%3A8790%2Fother&code_verifier={VERIFIER}");
        assert_eq!(
            body(&p.handle(&request("POST", "/oauth/token", &[], &elsewhere), NOW, &mut rng()))["error"],
            "invalid_grant"
        );
        // JSON bodies are taken too, as Auth0 does.
        let code = code_for(&mut p, "dev-user|1", &[]);
        let json_body = json!({ "grant_type": "authorization_code", "client_id": DEV_CLIENT_ID, "code": code, "redirect_uri": PAGE, "code_verifier": VERIFIER });
        let response = p.handle(
            &request("POST", "/oauth/token", &[("content-type", "application/json")], &json_body.to_string()),
            NOW,
            &mut rng(),
        );
        assert_eq!(response.status, 200);
    }

    #[test]
    fn authorize_errors_go_back_to_an_allowed_redirect_uri_only() {
        let mut p = provider();
        let cases = [
            (vec![("response_type", "token")], "unsupported_response_type"),
            (vec![("code_challenge_method", "plain")], "invalid_request"),
            (vec![("code_challenge_method", "")], "invalid_request"),
            (vec![("code_challenge", "short")], "invalid_request"),
            (vec![("response_mode", "web_message")], "invalid_request"),
            (vec![("prompt", "none")], "login_required"),
        ];
        for (extra, error) in cases {
            let params =
                location_params(&p.handle(&request("GET", &authorize_query(&extra), &[], ""), NOW, &mut rng()));
            assert_eq!((params["error"].as_str(), params["state"].as_str()), (error, "st-1"), "{extra:?}");
        }
        for extra in
            [vec![("redirect_uri", "http://evil.example/")], vec![("redirect_uri", "")], vec![("client_id", "other")]]
        {
            let response = p.handle(&request("GET", &authorize_query(&extra), &[], ""), NOW, &mut rng());
            assert_eq!(response.status, 400, "{extra:?}");
            assert!(response.header("location").is_none());
        }
    }

    #[test]
    fn without_a_login_hint_the_login_page_lists_the_dev_users() {
        let mut p = provider();
        let response = p.handle(&request("GET", &authorize_query(&[]), &[], ""), NOW, &mut rng());
        assert_eq!(response.status, 200);
        let html = String::from_utf8(response.body).unwrap();
        assert!(html.contains("a development tool"));
        for user in DEV_USERS {
            assert!(html.contains(&format!("data-user=\"{}\"", user.id)), "{}", user.id);
        }
        assert!(html.contains("login_hint=dev-user%7C1"));
    }

    #[test]
    fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
        let mut p = provider();
        let code = code_for(&mut p, "dev-user|1", &[]);
        let first = body(&exchange(&mut p, &code, &[], NOW))["refresh_token"].as_str().unwrap().to_owned();
        let refresh = |p: &mut Provider, token: &str| {
            let form = format!("grant_type=refresh_token&client_id={DEV_CLIENT_ID}&refresh_token={}", encode(token));
            p.handle(&request("POST", "/oauth/token", &[], &form), NOW, &mut rand::thread_rng())
        };
        let second = body(&refresh(&mut p, &first));
        let second_token = second["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(second_token, first);
        assert_eq!(claims(second["access_token"].as_str().unwrap())["sub"], "dev-user|1");
        assert_eq!(body(&refresh(&mut p, &first))["error"], "invalid_grant");
        // The reuse killed the family: the live token is gone too.
        assert_eq!(body(&refresh(&mut p, &second_token))["error"], "invalid_grant");
    }

    #[test]
    fn a_dpop_proof_binds_the_access_token_and_the_refresh_token() {
        let mut p = provider();
        let client = ClientKey::generate();
        let url = "http://127.0.0.1:8788/oauth/token";
        let code = code_for(&mut p, "dev-user|1", &[]);
        let proof = token_proof(&client, url, "POST", None);
        let response = exchange(&mut p, &code, &[("dpop", &proof)], NOW);
        let tokens = body(&response);
        assert_eq!(tokens["token_type"], "DPoP");
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(claims(access)["cnf"], json!({ "jkt": client.thumbprint() }));

        // Replayed proof, bad proof, two proofs: refused before the code is looked at.
        for headers in [
            vec![("dpop", proof.as_str())],
            vec![("dpop", "x.y.z")],
            vec![("dpop", proof.as_str()), ("dpop", proof.as_str())],
        ] {
            let code = code_for(&mut p, "dev-user|1", &[]);
            let response = exchange(&mut p, &code, &headers, NOW);
            assert_eq!((response.status, body(&response)["error"].as_str()), (400, Some("invalid_dpop_proof")));
        }

        // The refresh token needs a proof by the same key.
        let refresh_token = tokens["refresh_token"].as_str().unwrap();
        let form =
            format!("grant_type=refresh_token&client_id={DEV_CLIENT_ID}&refresh_token={}", encode(refresh_token));
        let other = token_proof(&ClientKey::generate(), url, "POST", None);
        for headers in [vec![], vec![("dpop", other.as_str())]] {
            let response = p.handle(&request("POST", "/oauth/token", &headers, &form), NOW, &mut rng());
            assert_eq!(body(&response)["error"], "invalid_dpop_proof");
        }
        let same = token_proof(&client, url, "POST", None);
        let refreshed = body(&p.handle(&request("POST", "/oauth/token", &[("dpop", &same)], &form), NOW, &mut rng()));
        assert_eq!(claims(refreshed["access_token"].as_str().unwrap())["cnf"]["jkt"], json!(client.thumbprint()));

        // /userinfo: a bound token needs the DPoP scheme and a proof for it, by its key.
        let userinfo = "http://127.0.0.1:8788/userinfo";
        let call = |p: &mut Provider, scheme: &str, proof: Option<String>| {
            let auth = format!("{scheme} {access}");
            let mut headers = vec![("authorization", auth.as_str())];
            let proof = proof.unwrap_or_default();
            if !proof.is_empty() {
                headers.push(("dpop", &proof));
            }
            p.handle(&request("GET", "/userinfo", &headers, ""), NOW, &mut rng()).status
        };
        assert_eq!(call(&mut p, "Bearer", None), 401);
        assert_eq!(call(&mut p, "DPoP", None), 401);
        assert_eq!(call(&mut p, "DPoP", Some(token_proof(&ClientKey::generate(), userinfo, "GET", Some(access)))), 401);
        assert_eq!(call(&mut p, "DPoP", Some(token_proof(&client, userinfo, "GET", Some("other")))), 401);
        assert_eq!(call(&mut p, "DPoP", Some(token_proof(&client, userinfo, "GET", Some(access)))), 200);
    }

    #[test]
    fn a_code_bound_by_dpop_jkt_needs_that_key() {
        let mut p = provider();
        let client = ClientKey::generate();
        let url = "http://127.0.0.1:8788/oauth/token";
        let code = code_for(&mut p, "dev-user|1", &[("dpop_jkt", &client.thumbprint())]);
        assert_eq!(body(&exchange(&mut p, &code, &[], NOW))["error"], "invalid_dpop_proof");
        let code = code_for(&mut p, "dev-user|1", &[("dpop_jkt", &client.thumbprint())]);
        assert_eq!(exchange(&mut p, &code, &[("dpop", &token_proof(&client, url, "POST", None))], NOW).status, 200);
    }

    #[test]
    fn userinfo_answers_for_a_bearer_token_it_issued() {
        let mut p = provider();
        let code = code_for(&mut p, "dev-user|2", &[]);
        let access = body(&exchange(&mut p, &code, &[], NOW))["access_token"].as_str().unwrap().to_owned();
        let auth = format!("Bearer {access}");
        let response = p.handle(&request("GET", "/userinfo", &[("authorization", &auth)], ""), NOW, &mut rng());
        assert_eq!(body(&response)["sub"], "dev-user|2");
        let forged = p.handle(&request("GET", "/userinfo", &[("authorization", "Bearer a.b.c")], ""), NOW, &mut rng());
        assert_eq!(forged.status, 401);
        assert!(forged.header("www-authenticate").unwrap().contains("invalid_token"));
        let late = p.handle(
            &request("GET", "/userinfo", &[("authorization", &auth)], ""),
            NOW + ACCESS_TOKEN_SECONDS + 1,
            &mut rng(),
        );
        assert_eq!(late.status, 401);
    }

    #[test]
    fn logout_returns_only_to_an_allowed_url() {
        let mut p = provider();
        let back = p.handle(
            &request("GET", &with_query("/v2/logout", &[("client_id", DEV_CLIENT_ID), ("returnTo", PAGE)]), &[], ""),
            NOW,
            &mut rng(),
        );
        assert_eq!((back.status, back.header("location")), (302, Some(PAGE)));
        let away = p.handle(
            &request("GET", &with_query("/v2/logout", &[("returnTo", "http://evil.example/")]), &[], ""),
            NOW,
            &mut rng(),
        );
        assert_eq!((away.status, away.header("location")), (400, None));
    }

    #[test]
    fn cors_answers_the_page_origin_only() {
        let mut p = provider();
        let preflight = |p: &mut Provider, origin: &str| {
            p.handle(
                &request(
                    "OPTIONS",
                    "/oauth/token",
                    &[("origin", origin), ("access-control-request-method", "POST")],
                    "",
                ),
                NOW,
                &mut rng(),
            )
        };
        let allowed = preflight(&mut p, "http://127.0.0.1:8790");
        assert_eq!(allowed.header("access-control-allow-origin"), Some("http://127.0.0.1:8790"));
        assert!(allowed.header("access-control-allow-headers").unwrap().contains("DPoP"));
        assert_eq!(preflight(&mut p, "http://localhost:8790").header("access-control-allow-origin"), None);
        let discovery = p.handle(
            &request("GET", "/.well-known/openid-configuration", &[("origin", "http://127.0.0.1:8790")], ""),
            NOW,
            &mut rng(),
        );
        assert_eq!(discovery.header("access-control-allow-origin"), Some("http://127.0.0.1:8790"));
        assert_eq!(body(&discovery)["code_challenge_methods_supported"], json!(["S256"]));
        // The login page is navigated to, never fetched: no CORS there.
        let page = p.handle(
            &request("GET", &authorize_query(&[]), &[("origin", "http://127.0.0.1:8790")], ""),
            NOW,
            &mut rng(),
        );
        assert_eq!(page.header("access-control-allow-origin"), None);
    }

    #[test]
    fn other_host_names_are_refused() {
        let mut p = provider();
        let mut r = request("GET", "/.well-known/openid-configuration", &[], "");
        r.headers[0].1 = "rebound.example:8788".into();
        assert_eq!(p.handle(&r, NOW, &mut rng()).status, 421);
        r.headers[0].1 = "localhost:8788".into();
        assert_eq!(p.handle(&r, NOW, &mut rng()).status, 200);
    }

    const MCP_CALLBACK: &str = "http://localhost:3000/callback";
    const MCP_RESOURCE: &str = "https://mcp.edge-auth.local/mcp";

    fn register(p: &mut Provider, metadata: &Value) -> Response {
        let headers = [("content-type", "application/json")];
        p.handle(&request("POST", "/oidc/register", &headers, &metadata.to_string()), NOW, &mut rand::thread_rng())
    }

    /// What the MCP SDK's OAuth client registers.
    fn mcp_metadata() -> Value {
        json!({
            "client_name": "Simple OAuth MCP Client",
            "redirect_uris": [MCP_CALLBACK],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "openid offline_access read:messages mcp:tools",
        })
    }

    fn mcp_client(p: &mut Provider) -> String {
        let response = register(p, &mcp_metadata());
        assert_eq!(response.status, 201, "{}", String::from_utf8_lossy(&response.body));
        body(&response)["client_id"].as_str().unwrap().to_owned()
    }

    fn redirect_params(response: &Response, to: &str) -> HashMap<String, String> {
        assert_eq!(response.status, 302, "{}", String::from_utf8_lossy(&response.body));
        let location = response.header("location").unwrap();
        assert!(location.starts_with(&format!("{to}?")), "{location}");
        parse_form(location.split_once('?').unwrap().1)
    }

    /// A login through `/authorize` for `client_id` back to `redirect_uri`: its code.
    fn mcp_code(p: &mut Provider, client_id: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
        let mut params = vec![("client_id", client_id), ("redirect_uri", redirect_uri), ("login_hint", "dev-user|1")];
        params.extend_from_slice(extra);
        let response = p.handle(&request("GET", &authorize_query(&params), &[], ""), NOW, &mut rng());
        redirect_params(&response, redirect_uri)["code"].clone()
    }

    fn token_form(p: &mut Provider, params: &[(&str, &str)], headers: &[(&str, &str)]) -> Response {
        let form = with_query("", params);
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        p.handle(&request("POST", "/oauth/token", &all, &form[1..]), NOW, &mut rand::thread_rng())
    }

    fn error_of(response: &Response) -> (u16, String) {
        let b = body(response);
        assert!(b["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{b}");
        (response.status, b["error"].as_str().unwrap().to_owned())
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", base64ct::Base64::encode_string(format!("{id}:{secret}").as_bytes()))
    }

    #[test]
    fn rfc_8414_metadata_is_the_discovery_document_with_registration_and_m2m() {
        let mut p = provider();
        let get = |p: &mut Provider, path: &str| {
            p.handle(&request("GET", path, &[("origin", "http://127.0.0.1:8790")], ""), NOW, &mut rng())
        };
        let oauth = get(&mut p, "/.well-known/oauth-authorization-server");
        assert_eq!(oauth.status, 200);
        assert_eq!(oauth.header("access-control-allow-origin"), Some("http://127.0.0.1:8790"));
        let metadata = body(&oauth);
        assert_eq!(metadata, body(&get(&mut p, "/.well-known/openid-configuration")));
        assert_eq!(metadata["issuer"], "http://127.0.0.1:8788/");
        assert_eq!(metadata["authorization_endpoint"], "http://127.0.0.1:8788/authorize");
        assert_eq!(metadata["token_endpoint"], "http://127.0.0.1:8788/oauth/token");
        assert_eq!(metadata["registration_endpoint"], "http://127.0.0.1:8788/oidc/register");
        assert_eq!(metadata["jwks_uri"], "http://127.0.0.1:8788/.well-known/jwks.json");
        assert_eq!(metadata["response_types_supported"], json!(["code"]));
        assert_eq!(
            metadata["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(metadata["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            metadata["token_endpoint_auth_methods_supported"],
            json!(["none", "client_secret_post", "client_secret_basic"])
        );
        assert_eq!(metadata["scopes_supported"], json!(OIDC_SCOPES));
        // The MCP SDK sends MCP-Protocol-Version with discovery, so a browser asks first.
        let preflight = p.handle(
            &request(
                "OPTIONS",
                "/.well-known/oauth-authorization-server",
                &[("origin", "http://127.0.0.1:8790"), ("access-control-request-headers", "mcp-protocol-version")],
                "",
            ),
            NOW,
            &mut rng(),
        );
        assert!(preflight.header("access-control-allow-headers").unwrap().contains("MCP-Protocol-Version"));
        assert_eq!(get(&mut p, "/.well-known/oauth-authorization-server/tenant").status, 404);
    }

    #[test]
    fn a_registered_client_logs_in_with_pkce_and_its_own_redirect_uri() {
        let mut p = provider();
        let response = register(&mut p, &mcp_metadata());
        assert_eq!(response.status, 201);
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let registered = body(&response);
        let client_id = registered["client_id"].as_str().unwrap().to_owned();
        assert!(client_id.len() >= 20 && is_base64url(&client_id), "{client_id}");
        assert_eq!(
            registered,
            json!({
                "client_id": client_id,
                "client_id_issued_at": NOW,
                "client_name": "Simple OAuth MCP Client",
                "redirect_uris": [MCP_CALLBACK],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": "openid offline_access read:messages mcp:tools",
            })
        );
        // A second registration is another client.
        assert_ne!(mcp_client(&mut p), client_id);
        // One that asks for a secret is registered public, and told so.
        let mut confidential = mcp_metadata();
        confidential["token_endpoint_auth_method"] = json!("client_secret_post");
        let answer = body(&register(&mut p, &confidential));
        assert_eq!((&answer["token_endpoint_auth_method"], answer.get("client_secret")), (&json!("none"), None));

        // Its login page names it; the dev client's redirect URI is not its.
        let page = p.handle(
            &request("GET", &authorize_query(&[("client_id", &client_id), ("redirect_uri", MCP_CALLBACK)]), &[], ""),
            NOW,
            &mut rng(),
        );
        assert!(String::from_utf8(page.body).unwrap().contains("Simple OAuth MCP Client"));
        let elsewhere = p.handle(
            &request("GET", &authorize_query(&[("client_id", &client_id), ("redirect_uri", PAGE)]), &[], ""),
            NOW,
            &mut rng(),
        );
        assert_eq!((elsewhere.status, elsewhere.header("location")), (400, None));

        let code = mcp_code(&mut p, &client_id, MCP_CALLBACK, &[("scope", "openid offline_access mcp:tools")]);
        let exchange = [
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", MCP_CALLBACK),
            ("code_verifier", VERIFIER),
        ];
        // Another client cannot redeem it; the code is spent all the same.
        let mut stolen = exchange;
        stolen[1].1 = DEV_CLIENT_ID;
        assert_eq!(error_of(&token_form(&mut p, &stolen, &[])), (400, "invalid_grant".into()));
        let code = mcp_code(&mut p, &client_id, MCP_CALLBACK, &[("scope", "openid offline_access mcp:tools")]);
        let mut exchange = exchange;
        exchange[2].1 = &code;
        let tokens = body(&token_form(&mut p, &exchange, &[]));
        let access = claims(tokens["access_token"].as_str().unwrap());
        assert_eq!((access["azp"].as_str(), access["sub"].as_str()), (Some(client_id.as_str()), Some("dev-user|1")));
        // mcp:tools is not dev-user|1's, so it is not granted (as with any API scope).
        assert_eq!(access["scope"], "openid offline_access");
        assert_eq!(claims(tokens["id_token"].as_str().unwrap())["aud"], json!(client_id));

        // Its refresh token is its own.
        let refresh_token = tokens["refresh_token"].as_str().unwrap();
        let refresh = [("grant_type", "refresh_token"), ("client_id", DEV_CLIENT_ID), ("refresh_token", refresh_token)];
        assert_eq!(error_of(&token_form(&mut p, &refresh, &[])), (400, "invalid_grant".into()));
        let mut refresh = refresh;
        refresh[1].1 = &client_id;
        assert_eq!(token_form(&mut p, &refresh, &[]).status, 200);
    }

    #[test]
    fn bad_registrations_are_refused_with_a_reason_and_register_nothing() {
        let mut p = provider();
        let with = |name: &str, value: Value| {
            let mut metadata = mcp_metadata();
            metadata[name] = value;
            metadata
        };
        let mut without_uris = mcp_metadata();
        without_uris.as_object_mut().unwrap().remove("redirect_uris");
        let bad_uris = [
            without_uris,
            with("redirect_uris", json!([])),
            with("redirect_uris", json!("http://localhost:3000/callback")),
            with("redirect_uris", json!([42])),
            with("redirect_uris", json!(["http://example.com/callback"])),
            with("redirect_uris", json!(["http://localhost.example.com/callback"])),
            with("redirect_uris", json!(["http://localhost:3000@evil.example/callback"])),
            with("redirect_uris", json!(["http://127.0.0.1:99999/callback"])),
            with("redirect_uris", json!(["https://app.example/callback#top"])),
            with("redirect_uris", json!(["https:///callback"])),
            with("redirect_uris", json!(["javascript:alert(1)"])),
            with("redirect_uris", json!(["/callback"])),
            with("redirect_uris", json!([MCP_CALLBACK, "ftp://files.example/"])),
            with("redirect_uris", json!(vec![MCP_CALLBACK; MAX_REDIRECT_URIS + 1])),
        ];
        for metadata in bad_uris {
            assert_eq!(error_of(&register(&mut p, &metadata)), (400, "invalid_redirect_uri".into()), "{metadata}");
        }
        let bad_metadata = [
            with("token_endpoint_auth_method", json!("private_key_jwt")),
            with("token_endpoint_auth_method", json!(true)),
            with("grant_types", json!(["authorization_code", "client_credentials"])),
            with("grant_types", json!(["refresh_token"])),
            with("grant_types", json!(["implicit"])),
            with("grant_types", json!([])),
            with("response_types", json!(["token"])),
            with("client_name", json!(7)),
            with("client_name", json!("x".repeat(MAX_CLIENT_NAME + 1))),
            with("scope", json!(["mcp:tools"])),
        ];
        for metadata in bad_metadata {
            assert_eq!(error_of(&register(&mut p, &metadata)), (400, "invalid_client_metadata".into()), "{metadata}");
        }
        // Not JSON, or JSON sent as a simple (preflight-free) cross-site request would be.
        let raw = |p: &mut Provider, content_type: &str, text: &str| {
            p.handle(&request("POST", "/oidc/register", &[("content-type", content_type)], text), NOW, &mut rng())
        };
        let text = mcp_metadata().to_string();
        assert_eq!(error_of(&raw(&mut p, "text/plain", &text)), (400, "invalid_client_metadata".into()));
        assert_eq!(error_of(&raw(&mut p, "application/json", "[1]")), (400, "invalid_client_metadata".into()));
        assert_eq!(error_of(&raw(&mut p, "application/json", "{")), (400, "invalid_client_metadata".into()));
        assert_eq!(p.handle(&request("GET", "/oidc/register", &[], ""), NOW, &mut rng()).status, 405);
        assert!(p.registered.is_empty() && p.registration_order.is_empty());

        // Loopback on any port, IPv6 loopback, https; omitted members get their defaults.
        let good = register(
            &mut p,
            &json!({ "redirect_uris": ["http://127.0.0.1/cb", "http://[::1]:8080/cb", "https://app.example/cb"] }),
        );
        assert_eq!(good.status, 201, "{}", String::from_utf8_lossy(&good.body));
        let good = body(&good);
        assert_eq!(good["grant_types"], json!(["authorization_code", "refresh_token"]));
        assert_eq!(good["response_types"], json!(["code"]));
        assert_eq!(good["token_endpoint_auth_method"], "none");
        assert!(good.get("client_name").is_none() && good.get("scope").is_none());
        assert_eq!(p.registered.len(), 1);
    }

    #[test]
    fn registered_clients_are_bounded_and_the_oldest_is_forgotten() {
        let mut p = provider();
        let first = mcp_client(&mut p);
        let mut last = String::new();
        for _ in 0..MAX_REGISTERED_CLIENTS {
            last = mcp_client(&mut p);
        }
        assert_eq!((p.registered.len(), p.registration_order.len()), (MAX_REGISTERED_CLIENTS, MAX_REGISTERED_CLIENTS));
        let gone = p.handle(
            &request("GET", &authorize_query(&[("client_id", &first), ("redirect_uri", MCP_CALLBACK)]), &[], ""),
            NOW,
            &mut rng(),
        );
        assert_eq!((gone.status, gone.header("location")), (400, None));
        let form = [("grant_type", "refresh_token"), ("client_id", first.as_str()), ("refresh_token", "x")];
        assert_eq!(error_of(&token_form(&mut p, &form, &[])), (401, "invalid_client".into()));
        mcp_code(&mut p, &last, MCP_CALLBACK, &[]);
    }

    #[test]
    fn a_registered_loopback_redirect_uri_matches_on_any_port_and_its_origin_gets_cors() {
        let mut p = provider();
        let preflight = |p: &mut Provider, origin: &str, path: &str| {
            let headers = [("origin", origin), ("access-control-request-method", "POST")];
            p.handle(&request("OPTIONS", path, &headers, ""), NOW, &mut rng())
                .header("access-control-allow-origin")
                .map(str::to_owned)
        };
        assert_eq!(preflight(&mut p, "http://localhost:3000", "/oauth/token"), None);
        // The page's origin may register (the dev client's redirect URIs are allowed origins).
        assert_eq!(
            preflight(&mut p, "http://127.0.0.1:8790", "/oidc/register").as_deref(),
            Some("http://127.0.0.1:8790")
        );
        let client_id = mcp_client(&mut p);
        assert_eq!(
            preflight(&mut p, "http://localhost:3000", "/oauth/token").as_deref(),
            Some("http://localhost:3000")
        );

        // RFC 8252 §7.3: the port is the client's choice at login; host and path are not.
        mcp_code(&mut p, &client_id, "http://localhost:51234/callback", &[]);
        mcp_code(&mut p, &client_id, "http://localhost/callback", &[]);
        for other in
            ["http://localhost:3000/other", "http://127.0.0.1:3000/callback", "https://localhost:3000/callback"]
        {
            let response = p.handle(
                &request("GET", &authorize_query(&[("client_id", &client_id), ("redirect_uri", other)]), &[], ""),
                NOW,
                &mut rng(),
            );
            assert_eq!((response.status, response.header("location")), (400, None), "{other}");
        }
        // The dev client's allow-list stays exact.
        let response = p.handle(
            &request("GET", &authorize_query(&[("redirect_uri", "http://127.0.0.1:8791/")]), &[], ""),
            NOW,
            &mut rng(),
        );
        assert_eq!(response.status, 400);
    }

    #[test]
    fn resource_is_the_audience_and_wins_over_audience() {
        let mut p = provider();
        // With openid asked for, and `audience` given too: the token is for the resource alone.
        let code = code_for(&mut p, "dev-user|1", &[("resource", MCP_RESOURCE)]);
        let tokens = body(&exchange(&mut p, &code, &[], NOW));
        let access = claims(tokens["access_token"].as_str().unwrap());
        assert_eq!(access["aud"], json!(MCP_RESOURCE));
        assert_eq!(access["scope"], "openid profile email offline_access read:messages");
        assert_eq!(tokens["scope"], "openid profile email offline_access read:messages");
        // dev-user|2 holds no API scope: the scopes are decided as without a resource.
        let code = code_for(&mut p, "dev-user|2", &[("resource", MCP_RESOURCE), ("audience", "")]);
        let access = claims(body(&exchange(&mut p, &code, &[], NOW))["access_token"].as_str().unwrap());
        assert_eq!(
            (access["aud"].as_str(), access["scope"].as_str()),
            (Some(MCP_RESOURCE), Some("openid profile email offline_access"))
        );
        // Any absolute URI is a resource, and the token request may repeat it.
        let code = code_for(&mut p, "dev-user|1", &[("resource", "urn:edge-auth:mcp")]);
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", DEV_CLIENT_ID),
            ("code", code.as_str()),
            ("redirect_uri", PAGE),
            ("code_verifier", VERIFIER),
            ("resource", "urn:edge-auth:mcp"),
        ];
        let access = claims(body(&token_form(&mut p, &form, &[]))["access_token"].as_str().unwrap());
        assert_eq!(access["aud"], "urn:edge-auth:mcp");
    }

    #[test]
    fn a_bad_or_other_resource_is_invalid_target_and_issues_nothing() {
        let mut p = provider();
        let bad = [
            "mcp.edge-auth.local/mcp",
            "/mcp",
            "https://mcp.edge-auth.local/mcp#tools",
            "https:///mcp",
            "https:",
            "1https://x/",
            "https://mcp.edge-auth.local/a b",
        ];
        for resource in bad {
            let response = p.handle(
                &request("GET", &authorize_query(&[("resource", resource), ("login_hint", "dev-user|1")]), &[], ""),
                NOW,
                &mut rng(),
            );
            let params = location_params(&response);
            assert_eq!((params["error"].as_str(), params.get("code")), ("invalid_target", None), "{resource}");
            assert_eq!(params["state"], "st-1");
        }
        let two = format!("{}&resource=https%3A%2F%2Fother.example%2F", authorize_query(&[("resource", MCP_RESOURCE)]));
        let params = location_params(&p.handle(&request("GET", &two, &[], ""), NOW, &mut rng()));
        assert_eq!(params["error"], "invalid_target");
        assert!(p.codes.is_empty());

        // At the token endpoint: a malformed resource leaves the code unspent; another resource spends it.
        let code = code_for(&mut p, "dev-user|1", &[("resource", MCP_RESOURCE)]);
        let form = |resource: &'static str, code: &str| {
            format!(
                "grant_type=authorization_code&client_id={DEV_CLIENT_ID}&code={code}&redirect_uri={}&code_verifier={VERIFIER}&resource={}",
                encode(PAGE),
                encode(resource)
            )
        };
        let post =
            |p: &mut Provider, body: &str| p.handle(&request("POST", "/oauth/token", &[], body), NOW, &mut rng());
        assert_eq!(error_of(&post(&mut p, &form("not a uri", &code))), (400, "invalid_target".into()));
        let twice = format!("{}&resource={}", form(MCP_RESOURCE, &code), encode(MCP_RESOURCE));
        assert_eq!(error_of(&post(&mut p, &twice)), (400, "invalid_target".into()));
        assert_eq!(error_of(&post(&mut p, &form("https://other.example/", &code))), (400, "invalid_target".into()));
        assert_eq!(error_of(&post(&mut p, &form(MCP_RESOURCE, &code))), (400, "invalid_grant".into()));
        // JSON bodies: an array of resources is no resource.
        let code = code_for(&mut p, "dev-user|1", &[("resource", MCP_RESOURCE)]);
        let json_body = json!({ "grant_type": "authorization_code", "client_id": DEV_CLIENT_ID, "code": code,
            "redirect_uri": PAGE, "code_verifier": VERIFIER, "resource": [MCP_RESOURCE] });
        let response = p.handle(
            &request("POST", "/oauth/token", &[("content-type", "application/json")], &json_body.to_string()),
            NOW,
            &mut rng(),
        );
        assert_eq!(error_of(&response), (400, "invalid_target".into()));
        assert!(p.refresh_tokens.is_empty() && p.access_tokens.is_empty());
    }

    #[test]
    fn a_refresh_keeps_the_resource_of_its_grant() {
        let mut p = provider();
        let code = code_for(&mut p, "dev-user|1", &[("resource", MCP_RESOURCE)]);
        let mut refresh_token = body(&exchange(&mut p, &code, &[], NOW))["refresh_token"].as_str().unwrap().to_owned();
        for resource in [Some(MCP_RESOURCE), None] {
            let mut form = vec![("grant_type", "refresh_token"), ("client_id", DEV_CLIENT_ID)];
            form.extend(resource.map(|r| ("resource", r)));
            form.push(("refresh_token", &refresh_token));
            let tokens = body(&token_form(&mut p, &form, &[]));
            assert_eq!(claims(tokens["access_token"].as_str().unwrap())["aud"], json!(MCP_RESOURCE), "{resource:?}");
            refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
        }
        let other = [
            ("grant_type", "refresh_token"),
            ("client_id", DEV_CLIENT_ID),
            ("refresh_token", refresh_token.as_str()),
            ("resource", "https://edge-auth.local/api"),
        ];
        assert_eq!(error_of(&token_form(&mut p, &other, &[])), (400, "invalid_target".into()));
        // Refused before rotation: the refresh token still works.
        assert_eq!(token_form(&mut p, &other[..3], &[]).status, 200);
    }

    #[test]
    fn login_hint_signs_in_without_a_page_with_a_resource_too() {
        let mut p = provider();
        // The page's links carry the resource, and say what the login is for.
        let page = p.handle(&request("GET", &authorize_query(&[("resource", MCP_RESOURCE)]), &[], ""), NOW, &mut rng());
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains(&format!("for <code>{MCP_RESOURCE}</code>")), "{html}");
        let href = html.split("href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
        assert!(
            href.contains(&format!("resource={}", encode(MCP_RESOURCE))) && href.contains("login_hint=dev-user%7C1")
        );
        let response = p.handle(&request("GET", &href, &[], ""), NOW, &mut rng());
        let code = location_params(&response)["code"].clone();
        let access = claims(body(&exchange(&mut p, &code, &[], NOW))["access_token"].as_str().unwrap());
        assert_eq!((access["aud"].as_str(), access["sub"].as_str()), (Some(MCP_RESOURCE), Some("dev-user|1")));
    }

    #[test]
    fn client_credentials_gives_the_m2m_client_an_auth0_shaped_token() {
        let mut p = provider();
        let post_auth =
            [("grant_type", "client_credentials"), ("client_id", M2M_CLIENT_ID), ("client_secret", M2M_CLIENT_SECRET)];
        // No scope asked for: all the client's grant. No resource nor audience: the default audience.
        let response = token_form(&mut p, &post_auth, &[]);
        assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
        let tokens = body(&response);
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["scope"], "mcp:tools read:messages repo:admin");
        assert!(tokens.get("refresh_token").is_none() && tokens.get("id_token").is_none());
        let access = claims(tokens["access_token"].as_str().unwrap());
        assert_eq!(access["iss"], "http://127.0.0.1:8788/");
        assert_eq!(access["sub"], "edge-auth-dev-m2m@clients");
        assert_eq!(access["azp"], M2M_CLIENT_ID);
        assert_eq!(access["gty"], "client-credentials");
        assert_eq!(access["aud"], "https://edge-auth.local/api");
        assert_eq!(access["permissions"], json!(["mcp:tools", "read:messages", "repo:admin"]));
        assert_eq!(access["exp"].as_i64(), Some(NOW + ACCESS_TOKEN_SECONDS));
        // An M2M token is no user's: /userinfo does not answer for it.
        let auth = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
        assert_eq!(
            p.handle(&request("GET", "/userinfo", &[("authorization", &auth)], ""), NOW, &mut rng()).status,
            401
        );

        // HTTP Basic (what the MCP SDK's ClientCredentialsProvider sends), a scope subset, and the audience.
        let basic = basic(M2M_CLIENT_ID, M2M_CLIENT_SECRET);
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", "mcp:tools mcp:tools"),
            ("audience", "https://other.example/api"),
        ];
        let tokens = body(&token_form(&mut p, &form, &[("authorization", &basic)]));
        let access = claims(tokens["access_token"].as_str().unwrap());
        assert_eq!(
            (access["scope"].as_str(), access["aud"].as_str()),
            (Some("mcp:tools"), Some("https://other.example/api"))
        );
        assert_eq!(access["permissions"], json!(["mcp:tools"]));
        // resource wins over audience.
        let mut form = form.to_vec();
        form.push(("resource", MCP_RESOURCE));
        let access =
            claims(body(&token_form(&mut p, &form, &[("authorization", &basic)]))["access_token"].as_str().unwrap());
        assert_eq!(access["aud"], MCP_RESOURCE);
        // A DPoP proof binds it, as for the other grants.
        let client = ClientKey::generate();
        let proof = token_proof(&client, "http://127.0.0.1:8788/oauth/token", "POST", None);
        let tokens = body(&token_form(&mut p, &post_auth, &[("dpop", &proof)]));
        assert_eq!(tokens["token_type"], "DPoP");
        assert_eq!(claims(tokens["access_token"].as_str().unwrap())["cnf"]["jkt"], json!(client.thumbprint()));
    }

    #[test]
    fn client_credentials_refuses_wrong_secrets_other_clients_and_scopes_not_granted() {
        let mut p = provider();
        let cc = |extra: &[(&'static str, &'static str)]| {
            let mut form = vec![("grant_type", "client_credentials")];
            form.extend_from_slice(extra);
            form
        };
        let wrong_basic = basic(M2M_CLIENT_ID, "guess");
        let good_basic = basic(M2M_CLIENT_ID, M2M_CLIENT_SECRET);
        type Pairs<'a> = Vec<(&'a str, &'a str)>;
        // (form, headers, status, error)
        let cases: Vec<(Pairs, Pairs, u16, &str)> = vec![
            (cc(&[("client_id", M2M_CLIENT_ID), ("client_secret", "guess")]), vec![], 401, "invalid_client"),
            (cc(&[("client_id", M2M_CLIENT_ID)]), vec![], 401, "invalid_client"),
            (cc(&[]), vec![("authorization", &wrong_basic)], 401, "invalid_client"),
            (cc(&[]), vec![("authorization", "Basic !!!")], 401, "invalid_client"),
            (cc(&[]), vec![("authorization", "Bearer x")], 401, "invalid_client"),
            (cc(&[("client_id", "nobody"), ("client_secret", "x")]), vec![], 401, "invalid_client"),
            (cc(&[]), vec![], 401, "invalid_client"),
            (cc(&[("client_secret", M2M_CLIENT_SECRET)]), vec![("authorization", &good_basic)], 400, "invalid_request"),
            (cc(&[("client_id", DEV_CLIENT_ID)]), vec![("authorization", &good_basic)], 400, "invalid_request"),
            (
                cc(&[
                    ("client_id", M2M_CLIENT_ID),
                    ("client_secret", M2M_CLIENT_SECRET),
                    ("scope", "mcp:tools admin:all"),
                ]),
                vec![],
                403,
                "access_denied",
            ),
            (
                cc(&[("client_id", M2M_CLIENT_ID), ("client_secret", M2M_CLIENT_SECRET), ("scope", "openid")]),
                vec![],
                403,
                "access_denied",
            ),
            (
                cc(&[("client_id", M2M_CLIENT_ID), ("client_secret", M2M_CLIENT_SECRET), ("resource", "no-uri")]),
                vec![],
                400,
                "invalid_target",
            ),
            // Public clients have no secret to present, and no client_credentials grant.
            (cc(&[("client_id", DEV_CLIENT_ID)]), vec![], 400, "unauthorized_client"),
            (cc(&[("client_id", DEV_CLIENT_ID), ("client_secret", "x")]), vec![], 401, "invalid_client"),
            (
                vec![("grant_type", "authorization_code"), ("code", "x")],
                vec![("authorization", &good_basic)],
                400,
                "unauthorized_client",
            ),
            (vec![("grant_type", "password")], vec![("authorization", &good_basic)], 400, "unsupported_grant_type"),
        ];
        for (form, headers, status, error) in cases {
            let response = token_form(&mut p, &form, &headers);
            assert_eq!(error_of(&response), (status, error.to_owned()), "{form:?} {headers:?}");
            if error == "invalid_client" && headers.iter().any(|(_, v)| v.starts_with("Basic")) {
                assert_eq!(response.header("www-authenticate"), Some("Basic realm=\"dev issuer\""));
            }
        }
        // Not a login client either.
        let page = p.handle(
            &request("GET", &authorize_query(&[("client_id", M2M_CLIENT_ID), ("login_hint", "dev-user|1")]), &[], ""),
            NOW,
            &mut rng(),
        );
        assert_eq!((page.status, page.header("location")), (400, None));
        assert!(p.access_tokens.is_empty() && p.codes.is_empty());
    }

    #[test]
    fn the_m2m_grant_is_the_configured_scope_list() {
        let mut settings = provider().settings.clone();
        settings.m2m_scopes = vec!["mcp:tools".into()];
        let mut p = Provider::new(settings, key());
        let form = |scope: &'static str| {
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", M2M_CLIENT_ID),
                ("client_secret", M2M_CLIENT_SECRET),
                ("scope", scope),
            ]
        };
        assert_eq!(body(&token_form(&mut p, &form(""), &[]))["scope"], "mcp:tools");
        assert_eq!(error_of(&token_form(&mut p, &form("read:messages"), &[])), (403, "access_denied".into()));
        p.settings.m2m_scopes.clear();
        assert_eq!(body(&token_form(&mut p, &form(""), &[]))["scope"], "");
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let form = parse_form("a=x%7Cy+z&b=%zz&c=%4&a=second");
        assert_eq!((form["a"].as_str(), form["b"].as_str(), form["c"].as_str()), ("x|y z", "%zz", "%4"));
        assert_eq!(encode("dev-user|1 ~"), "dev-user%7C1%20~");
    }
}
