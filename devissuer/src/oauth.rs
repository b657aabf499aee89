//! The dev issuer as a local Auth0 look-alike: enough of Auth0's Authentication API for the unmodified
//! `@auth0/auth0-spa-js` to log in, refresh and log out against it, with no tenant and no internet.
//!
//! Imitated: discovery, `/authorize` (authorization code with PKCE S256 only), a login page of dev users (no
//! passwords), `/oauth/token` (`authorization_code`, `refresh_token` with rotation and reuse detection, DPoP
//! binding), RS256 ID tokens, `/userinfo`, `/v2/logout`, CORS for a SPA's origin. Not imitated: sessions and
//! `prompt=none` (silent login answers `login_required`), `response_mode=web_message`, implicit and client
//! credentials grants, client secrets, organizations, MFA, `/oauth/revoke`, DPoP nonces.
//!
//! Plain data in, plain data out: the socket work is server.rs's, and time and randomness come in as
//! parameters so the tests drive every rule without a clock or a network.

use std::collections::HashMap;

use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{b64, dpop, sign, SigningKey};

/// The client id auth0-spa-js is configured with: one dev application, a public client (no secret).
pub const DEV_CLIENT_ID: &str = "edge-auth-dev-client";
/// Auth0's default for access tokens issued to a SPA.
pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
pub const ID_TOKEN_SECONDS: i64 = 36_000;
/// RFC 6749 §4.1.2 recommends at most ten minutes; Auth0 and this issuer take one.
pub const CODE_SECONDS: i64 = 60;
/// Scopes that are about the user and the session, granted whenever asked for; API scopes are granted only
/// as far as the user's permissions go, as a tenant with RBAC does.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// Endpoints a SPA calls from script (fetch), so they answer CORS for the allowed origins.
const CORS_PATHS: [&str; 3] = ["/oauth/token", "/userinfo", "/.well-known/openid-configuration"];

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
    /// Exact URLs `/authorize` may send codes to and `/v2/logout` may return to. Their origins may call the
    /// token endpoint from script.
    pub redirect_uris: Vec<String>,
}

impl Settings {
    fn base(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    fn allowed_origins(&self) -> Vec<String> {
        self.redirect_uris.iter().filter_map(|u| origin_of(u)).collect()
    }
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
    scope: String,
    audience: String,
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
            ("GET", "/.well-known/openid-configuration") => Response::json(200, &self.discovery()),
            ("GET", "/authorize") => self.authorize(&parse_form(&request.query), now, rng),
            ("POST", "/oauth/token") => self.token(request, now, rng),
            ("GET" | "POST", "/userinfo") => self.userinfo(request, now),
            ("GET", "/v2/logout") => self.logout(&parse_form(&request.query)),
            (_, "/authorize" | "/oauth/token" | "/userinfo" | "/v2/logout") => {
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

    fn cors_origin(&self, origin: Option<&str>) -> Option<String> {
        let origin = origin?;
        self.settings.allowed_origins().into_iter().find(|o| o.eq_ignore_ascii_case(origin))
    }

    fn preflight(&self, origin: Option<&str>) -> Response {
        let mut response = Response { status: 204, headers: vec![("vary".into(), "Origin".into())], body: Vec::new() };
        if let Some(origin) = self.cors_origin(origin) {
            response.headers.extend([
                ("access-control-allow-origin".into(), origin),
                ("access-control-allow-methods".into(), "GET, POST".into()),
                // Auth0-Client is the SDK's telemetry header; DPoP its proof.
                ("access-control-allow-headers".into(), "Authorization, Content-Type, Auth0-Client, DPoP".into()),
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
             <a href=\"/.well-known/openid-configuration\">/.well-known/openid-configuration</a>.</p>",
            iss = escape(&self.settings.issuer),
            client = escape(&self.settings.client_id),
            aud = escape(&self.settings.default_audience),
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
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": OIDC_SCOPES,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "nickname", "email", "email_verified"],
            "dpop_signing_alg_values_supported": [dpop::ALG],
        })
    }

    /// RFC 6749 §4.1.1 with PKCE (RFC 7636). Until the client and redirect URI are known good, errors are
    /// shown here; after, they go back to the client (§4.1.2.1).
    fn authorize(&mut self, q: &HashMap<String, String>, now: i64, rng: &mut impl RngCore) -> Response {
        let get = |name: &str| q.get(name).map(String::as_str).filter(|v| !v.is_empty());
        if get("client_id") != Some(self.settings.client_id.as_str()) {
            let body = format!(
                "<p>Unknown <code>client_id</code>. The dev issuer has one application: <code>{}</code>.</p>",
                escape(&self.settings.client_id)
            );
            return Response::page(400, "Unknown application", &body);
        }
        let Some(redirect_uri) = get("redirect_uri").filter(|u| self.settings.redirect_uris.iter().any(|a| a == u))
        else {
            let body = format!(
                "<p>The <code>redirect_uri</code> {} is not on the allow-list, so nothing is sent back to it.</p>\
                 <p>Allowed: {}. The dev script sets the list (<code>serve --redirect-uris</code>).</p>",
                get("redirect_uri").map(|u| format!("<code>{}</code>", escape(u))).unwrap_or("(none given)".into()),
                if self.settings.redirect_uris.is_empty() {
                    "none".to_owned()
                } else {
                    self.settings
                        .redirect_uris
                        .iter()
                        .map(|u| format!("<code>{}</code>", escape(u)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
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
        if get("prompt") == Some("none") {
            // There are no sessions to be silent about: the SPA must log in through the page.
            return fail("login_required", "the dev issuer keeps no sessions; log in interactively");
        }
        let user = get("login_hint").and_then(|hint| DEV_USERS.iter().find(|u| u.id == hint));
        let Some(user) = user else { return self.login_page(q) };
        let audience = get("audience").unwrap_or(&self.settings.default_audience).to_owned();
        let code = random_token(rng);
        self.codes.insert(
            code.clone(),
            Code {
                client_id: self.settings.client_id.clone(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.to_owned(),
                nonce: get("nonce").map(str::to_owned),
                grant: Grant { user, scope: granted_scope(get("scope").unwrap_or(""), user), audience },
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
    fn login_page(&self, q: &HashMap<String, String>) -> Response {
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
        let audience = q.get("audience").cloned().unwrap_or_else(|| self.settings.default_audience.clone());
        let body = format!(
            "<p>Sign in to <code>{client}</code> for <code>{audience}</code> as:</p>{links}",
            client = escape(&self.settings.client_id),
            audience = escape(&audience),
        );
        Response::page(200, "Sign in", &body)
    }

    fn token(&mut self, request: &Request, now: i64, rng: &mut impl RngCore) -> Response {
        let Some(params) = token_params(request) else {
            return Response::oauth_error(400, "invalid_request", "the body must be a form or a JSON object");
        };
        let get = |name: &str| params.get(name).map(String::as_str).filter(|v| !v.is_empty());
        if get("client_id") != Some(self.settings.client_id.as_str()) {
            return Response::oauth_error(401, "invalid_client", "unknown client_id");
        }
        let url = format!("{}/oauth/token", self.settings.base());
        let jkt = match self.check_proof(request, &url, None, now) {
            Ok(jkt) => jkt,
            Err(description) => return Response::oauth_error(400, "invalid_dpop_proof", &description),
        };
        match get("grant_type") {
            Some("authorization_code") => {
                // Single use: the code is gone whatever happens next (RFC 6749 §4.1.2).
                let Some(code) = get("code").and_then(|c| self.codes.remove(c)) else {
                    return Response::oauth_error(400, "invalid_grant", "the code is unknown, used or expired");
                };
                if code.expires < now {
                    return Response::oauth_error(400, "invalid_grant", "the code is unknown, used or expired");
                }
                if get("redirect_uri") != Some(code.redirect_uri.as_str()) || code.client_id != self.settings.client_id
                {
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
                if code.dpop_jkt.is_some() && code.dpop_jkt != jkt {
                    return Response::oauth_error(400, "invalid_dpop_proof", "the code is bound to another DPoP key");
                }
                let family = self.next_family;
                self.next_family += 1;
                self.issue(&code.grant, code.nonce.as_deref(), jkt, family, now, rng)
            }
            Some("refresh_token") => {
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
            Some(other) => Response::oauth_error(
                400,
                "unsupported_grant_type",
                &format!("the dev issuer supports authorization_code and refresh_token, not {other}"),
            ),
            None => Response::oauth_error(400, "invalid_request", "grant_type is required"),
        }
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
        // Auth0 adds its /userinfo audience when openid is asked for, so the token also opens /userinfo.
        let audience = if scopes.contains(&"openid") {
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
            "azp": self.settings.client_id,
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
                "aud": self.settings.client_id,
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

fn token_params(request: &Request) -> Option<HashMap<String, String>> {
    let content_type = request.header("content-type").unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let Value::Object(map) = serde_json::from_slice(&request.body).ok()? else { return None };
        return Some(map.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned()))).collect());
    }
    Some(parse_form(std::str::from_utf8(&request.body).ok()?))
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

    #[test]
    fn forms_decode_percent_and_plus() {
        let form = parse_form("a=x%7Cy+z&b=%zz&c=%4&a=second");
        assert_eq!((form["a"].as_str(), form["b"].as_str(), form["c"].as_str()), ("x|y z", "%zz", "%4"));
        assert_eq!(encode("dev-user|1 ~"), "dev-user%7C1%20~");
    }
}
