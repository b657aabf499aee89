//! The request pipeline, free of the runtime: route, authenticate, authorise, respond or forward.
//! The edge adapter feeds it plain request parts and turns the [`Outcome`] into a response.
//!
//! One pipeline for both modes: the demo routes are a built-in rule table answered by the worker,
//! `ROUTES` a user's table answered by the origin ([`crate::gateway::rules`]).

use std::{cell::RefCell, rc::Rc};

use serde_json::json;

use crate::{
    config::Config,
    dpop::nonce,
    dpop::policy::{DpopMode, ReplayScope},
    dpop::proof::{self, ProofError, ProofRequest, ProofVerifier},
    dpop::replay::{FleetReplay, FleetUse, Remembered, ReplayCache},
    error::{ApiError, ConfigError, ConfigProblem, ProofProblem, RequestProblem, TokenProblem},
    gateway::assertion::{self, AssertionCache, AssertionSigner, Caller, Issued},
    gateway::limits::{self, RateLimiter},
    gateway::rules::{self, Auth, Match, Responder, Revocation, Rules},
    gateway::{forward, mcp},
    http::{self, Challenge, HttpResponse},
    keys::store::KeyIo,
    operate::decision::{self, CacheUse, Decision, Reason},
    operate::denylist::{DenyIo, DenyList, FleetCopy, FleetRevocationIo, Snapshot, TokenIds, FLEET_COPY_MS},
    outline::outline,
    token::cache::{TokenCache, Verified},
    token::claims::{self, Binding, ClaimsPolicy, Principal},
    token::extract::{self, Scheme},
    token::issuers::Issuers,
    token::parse::UnverifiedToken,
    token::verify::{self, SignatureVerifier},
};

pub const PUBLIC_MESSAGE: &str = "Hello from a public endpoint! You don't need to be authenticated to see this.";
pub const PRIVATE_MESSAGE: &str = "Hello from a private endpoint! You need to be authenticated to see this.";
pub const SCOPED_MESSAGE: &str =
    "Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this.";
pub const REQUIRED_SCOPE: &str = "read:messages";
pub const STATUS_PATH: &str = "/.well-known/edge-auth/status";

/// The longest an answer is kept for its head ([`Outcome::kept_until`]): it is made again at
/// least this often, whatever else bounds it.
pub const KEEP_MS: u64 = 1_000;

/// The quickstart's routes, as a rule table.
pub fn demo_rules() -> Rules {
    Rules::demo(PUBLIC_MESSAGE, PRIVATE_MESSAGE, SCOPED_MESSAGE, REQUIRED_SCOPE)
}

/// The parts of a request the pipeline reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Incoming<'a> {
    pub method: &'a str,
    /// The URL the client called, whole (a DPoP proof's `htu` names it).
    pub url: &'a str,
    /// The path exactly as the runtime handed it over (still percent-encoded).
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    /// The `DPoP` header(s), joined by the runtime; read only for the DPoP scheme.
    pub dpop: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// The `Host` the client asked for (forwarded as `X-Forwarded-Host`).
    pub host: Option<&'a str>,
    /// The scheme of the request URL (forwarded as `X-Forwarded-Proto`).
    pub scheme: Option<&'a str>,
    /// The client's address as the runtime reports it (forwarded as `X-Forwarded-For`).
    pub address: Option<&'a str>,
    /// The `Upgrade` header: refused unless the rule allows a WebSocket and this is one.
    pub upgrade: Option<&'a str>,
    /// `Access-Control-Request-Method` was sent: with `OPTIONS` and `Origin`, a CORS preflight.
    pub preflight: bool,
    /// The body, read only when the pipeline asked for it ([`Outcome::needs_body`]): a POST on an
    /// MCP rule.
    pub body: Option<Body<'a>>,
}

/// A request body as the edge read it for the pipeline, with what says how to read its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Body<'a> {
    /// At most one byte over the limit is read, so that a longer body is told apart.
    pub bytes: &'a [u8],
    /// `Content-Type` and `Content-Encoding`: the origin decodes the bytes by them, so the edge
    /// takes only what it reads the same way (UTF-8 JSON, not encoded).
    pub media_type: Option<&'a str>,
    pub encoding: Option<&'a str>,
    /// `Content-Length` says more than the limit: nothing was read.
    pub declared_over: bool,
}

/// The runtime pieces that protected routes need, most of them held by the isolate.
pub struct Keys<'a, I, V> {
    pub issuers: &'a Issuers,
    pub io: &'a I,
    pub verifier: &'a V,
    pub tokens: &'a RefCell<TokenCache>,
    /// DPoP proofs accepted by this isolate, until they are too old to be accepted again.
    pub proofs: &'a RefCell<ReplayCache>,
    /// The isolate's copy of the deny list, when a `DENYLIST` is bound.
    pub denylist: Option<&'a RefCell<DenyList>>,
    /// The isolate's copy of the fleet's revocations, when a rule reads them.
    pub fleet: Option<&'a RefCell<FleetCopy>>,
    /// Identity assertions this isolate signed, while they may be sent again.
    pub assertions: &'a RefCell<AssertionCache>,
}

/// What the pipeline runs on once the configuration was read: it, its compiled rule table, and
/// the key store's pieces.
pub struct Setup<'a, I, V> {
    pub config: &'a Config,
    pub rules: &'a Rules,
    pub keys: Keys<'a, I, V>,
}

/// Changes whenever an issuer's key set or the deny list's copy is replaced: an answer kept for
/// its head ([`Outcome::kept_until`]) holds only while this stays what it was.
pub fn installed(issuers: &Issuers, denylist: Option<&RefCell<DenyList>>, fleet: Option<&RefCell<FleetCopy>>) -> u64 {
    let keys = issuers.iter().fold(0u64, |sum, issuer| sum.wrapping_add(issuer.store.installed()));
    let fleet = fleet.map_or(0, |copy| copy.borrow().installed());
    keys.wrapping_add(denylist.map_or(0, |list| list.borrow().installed())).wrapping_add(fleet)
}

/// The rule table a configuration asks for: the user's `ROUTES` in gateway mode, else the demo
/// routes. Compiled once per isolate.
pub fn compile_rules(config: &Config) -> Result<Rules, ConfigError> {
    match &config.gateway {
        None => Ok(demo_rules()),
        Some(gateway) => {
            let mut rules = Rules::parse(&gateway.routes).map_err(|e| ConfigError {
                variable: "ROUTES",
                problem: ConfigProblem::InvalidRule { index: e.index, detail: e.reason },
            })?;
            rules.need_claims(gateway.claim_headers.iter().map(|(_, claim)| claim.clone()));
            // A resource's tokens come from the issuers that list it among their audiences, and
            // only from them: one that no issuer lists could never be served.
            if let Some(orphan) =
                rules.resources().find(|r| !config.issuers.iter().any(|i| i.audiences.iter().any(|a| **a == *r.uri)))
            {
                return Err(ConfigError {
                    variable: "ROUTES",
                    problem: ConfigProblem::InvalidRule {
                        index: None,
                        detail: format!(
                            "resource {:?} is no trusted issuer's audience: add it to AUTH0_AUDIENCE or to the audiences \
                             of the ISSUERS entry that issues its tokens",
                            orphan.uri
                        ),
                    },
                });
            }
            rules.describe_resources(|resource, rule| resource_metadata(resource, rule, config).into());
            Ok(rules)
        }
    }
}

/// A configuration that could not be read, and whether it asked for a gateway: a broken gateway
/// answers nothing itself (the worker must not serve demo routes in front of someone's API).
#[derive(Debug, Clone, Copy)]
pub struct Broken<'a> {
    pub error: &'a ConfigError,
    pub gateway: bool,
}

#[derive(Debug)]
pub struct Outcome {
    /// The worker's answer; when `forward` is set, only its headers (CORS) are added to the origin's.
    pub response: HttpResponse,
    /// Send the request on to the origin, with these headers added to what the gateway keeps.
    pub forward: Option<Forward>,
    /// The key store of this issuer (an index into the isolate's `Issuers`) asks for a refresh
    /// after this response (stale-while-revalidate).
    pub background_refresh: Option<usize>,
    /// List the deny list again after this response (its copy is due).
    pub denylist_refresh: bool,
    /// What was decided, for the log and the metrics (the edge adds the times, and the origin's
    /// status when it forwards).
    pub decision: Decision,
    /// The answer (or forward) was made from the request's head alone (method, URL, the headers
    /// in `Incoming`; a forward also from the header names the edge reads) and this isolate's
    /// configuration: no token, clock, limit or state was consulted, so any request with the same
    /// head gets the same answer and decision. Never a forward with an identity assertion (its
    /// `iat` reads the clock): that one is kept for a while instead ([`Outcome::kept_until`]).
    pub fixed: bool,
    /// The answer (or forward) admitted a Bearer token, and any request with the same head gets
    /// the same answer and decision until this time (ms), as long as the isolate's key sets and
    /// deny list are not replaced ([`installed`]): it read the head, the clock (bounded by
    /// the token's expiry), and keys and a deny list that ask for no refresh before then. Also a
    /// forward that would be `fixed` but carries an identity assertion, which is made again. With
    /// an assertion, never past the moment it may no longer be reused
    /// ([`assertion::reusable_until_ms`]). Never more than [`KEEP_MS`] ahead; `None` for any
    /// other answer.
    pub kept_until: Option<u64>,
    /// The answer depends on the body, which was not read: the edge reads at most this many bytes
    /// plus one and asks again with [`Incoming::body`]. Asked only once the head is admitted
    /// (origin, token, rule scopes), so on a rule that needs a token no one without a valid one
    /// makes the edge read a body.
    pub needs_body: Option<u64>,
    /// With `kept_until` on an MCP rule's POST: what each later body of the same head is checked
    /// against ([`admits_kept_body`]) before the kept plan is used again.
    pub kept_body: Option<KeptBody>,
}

/// The rule (its index in the table) and the verified caller a kept MCP plan was made for.
#[derive(Debug, Clone)]
pub struct KeptBody {
    pub rule: usize,
    pub principal: Rc<Principal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub headers: Vec<(&'static str, String)>,
    /// The scheme of the token the edge verified, when the client's credential may reach the
    /// origin (with `FORWARD_AUTHORIZATION`; `DPoP` only under the DPoP scheme, see
    /// `GatewayConfig::drops`). `None` when nothing was verified, and on a protected resource's
    /// rule: its token was issued for the edge's resource, and passing it on is token passthrough,
    /// which the MCP authorization spec forbids.
    pub credentials: Option<Scheme>,
    /// A WebSocket handshake on a rule that allows one: the edge accepts it and relays frames.
    pub relay: Option<Relay>,
    /// `CLAIM_HEADERS` of the verified caller (names chosen by configuration, so not `'static`).
    pub claim_headers: Vec<(Rc<str>, String)>,
}

/// How long a relayed WebSocket may live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// When the edge closes both sockets with 1008, in ms since the epoch: the `exp` of the token
    /// that opened it plus the clock skew (`CLOCK_SKEW_SECONDS`), the moment a request with that
    /// token would be refused. `None` for a socket opened without a token (a public rule).
    pub close_at_ms: Option<u64>,
    /// For a socket opened with a token that a revocation list judged: what the edge checks again
    /// while the socket is open, so that a revoked token's socket is closed (1008) too.
    pub revocation: Option<RelayRevocation>,
}

/// What an open relay is judged by again, every `every_ms`: the token's ids, against the deny
/// list's copy (listed again when due) and, with `fleet`, the fleet's (at most a second old).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayRevocation {
    pub every_ms: u64,
    pub kv: bool,
    pub fleet: bool,
    pub subject: Option<String>,
    pub jti: Option<String>,
    pub client: Option<String>,
    pub issuer: Option<String>,
}

impl RelayRevocation {
    /// As JSON, which carries any claim text (line breaks, NUL) through the plan unharmed.
    pub fn to_json(&self) -> String {
        crate::json::ObjectWriter::default()
            .number("every", self.every_ms)
            .boolean("kv", self.kv)
            .boolean("fleet", self.fleet)
            .maybe_text("sub", self.subject.as_deref())
            .maybe_text("jti", self.jti.as_deref())
            .maybe_text("client", self.client.as_deref())
            .maybe_text("iss", self.issuer.as_deref())
            .finish()
    }

    pub fn from_json(text: &str) -> Option<RelayRevocation> {
        let value = crate::json::parse(text.as_bytes()).ok()?;
        let text = |name: &str| value.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
        Some(RelayRevocation {
            every_ms: value.get("every")?.as_u64()?,
            kv: value.get("kv")?.as_bool()?,
            fleet: value.get("fleet")?.as_bool()?,
            subject: text("sub"),
            jti: text("jti"),
            client: text("client"),
            issuer: text("iss"),
        })
    }
}

/// Whether an open relay's token is revoked now (see [`RelayRevocation`]). A deny list copy that
/// is due is listed again first; a listing that fails keeps the last copy (the socket was
/// admitted; the failure is logged), as a request's background listing does.
pub async fn relay_revoked<I: Io>(
    check: &RelayRevocation,
    denylist: Option<&RefCell<DenyList>>,
    fleet: Option<&RefCell<FleetCopy>>,
    io: &I,
    now_ms: u64,
) -> bool {
    let ids = TokenIds {
        subject: check.subject.as_deref(),
        jti: check.jti.as_deref(),
        client: check.client.as_deref(),
        issuer: check.issuer.as_deref(),
    };
    if let Some(list) = denylist.filter(|_| check.kv) {
        if list.borrow_mut().claim_refresh(now_ms) {
            refresh_denylist(list, io, now_ms).await;
        }
        if list.borrow().copy().is_some_and(|copy| copy.matches(&ids).is_some()) {
            return true;
        }
    }
    if let Some(fleet) = fleet.filter(|_| check.fleet) {
        let copy = fresh_fleet_copy(fleet, io, now_ms).await.ok().or_else(|| fleet.borrow().copy_any());
        if copy.is_some_and(|copy| copy.matches(&ids).is_some()) {
            return true;
        }
    }
    false
}

enum Answer {
    Respond(HttpResponse),
    Forward(Forward),
    /// See [`Outcome::needs_body`].
    NeedsBody,
}

/// What the pipeline learns about a request on the way, beyond its answer.
#[derive(Debug, Default)]
struct Facts {
    /// The issuer whose keys want a background refresh. Set by the first lookup that asks, never
    /// cleared by a later one in the same request (the claim to refresh was already taken).
    refresh: Option<usize>,
    /// The scheme the credential came under: its challenge carries the error.
    scheme: Option<Scheme>,
    /// A fresh DPoP nonce for the answer (the client's is aging).
    nonce: Option<String>,
    /// The rule that decided (its pattern), once one was found.
    rule: Option<Rc<str>>,
    /// Why an admitted request was admitted (`Ok` unless set).
    admitted: Option<Reason>,
    /// The trusted issuer and the held key that judged the token, and whether from the cache.
    issuer: Option<Rc<str>>,
    kid: Option<Rc<str>>,
    cache: Option<CacheUse>,
    denylist_refresh: bool,
    /// See [`Outcome::fixed`].
    fixed: bool,
    /// The earliest time a key store or the deny list this request read asks for a refresh.
    steady_until: Option<u64>,
    /// See [`Outcome::kept_until`].
    kept_until: Option<u64>,
    /// See [`Outcome::kept_body`].
    kept_body: Option<KeptBody>,
    /// See [`Outcome::needs_body`].
    needs_body: Option<u64>,
    /// A protected resource's rule: its metadata URL and scopes go in every challenge.
    resource_metadata: Option<Rc<str>>,
    challenge_scope: Option<Rc<str>>,
    /// This pass only decides whether the body is worth reading (an MCP POST without its body):
    /// a DPoP proof is checked, but recorded as used only by the pass that has the body, which
    /// would otherwise find it used and refuse it.
    body_pending: bool,
    /// An MCP POST's method and tool, for the decision.
    mcp_method: Option<Rc<str>>,
    mcp_tool: Option<Rc<str>>,
    /// The verified caller of an admitted request, for the assertion its forward carries.
    caller: Option<Rc<Principal>>,
}

impl Facts {
    fn steady_until(&mut self, until: Option<u64>) {
        if let Some(until) = until {
            self.steady_until = Some(self.steady_until.map_or(until, |held| held.min(until)));
        }
    }

    fn ask_refresh(&mut self, issuer: usize, asked: bool) {
        if asked && self.refresh.is_none() {
            self.refresh = Some(issuer);
        }
    }
}

/// The runtime's cryptography: tokens' and proofs' signatures checked, and the assertion to the
/// origin signed (one engine does all three: WebCrypto at the edge).
pub trait Verifier: SignatureVerifier + ProofVerifier + AssertionSigner {}
impl<T: SignatureVerifier + ProofVerifier + AssertionSigner> Verifier for T {}

/// The runtime's I/O the pipeline may need: keys, the deny list and the rate limiters.
pub trait Io: KeyIo + DenyIo + RateLimiter + FleetReplay + FleetRevocationIo {}
impl<T: KeyIo + DenyIo + RateLimiter + FleetReplay + FleetRevocationIo> Io for T {}

pub async fn handle<I: Io, V: Verifier>(
    request: &Incoming<'_>,
    setup: Result<Setup<'_, I, V>, Broken<'_>>,
    now_ms: u64,
) -> Outcome {
    let mut facts = Facts::default();
    let result = respond(request, &setup, now_ms, &mut facts).await;
    // A forward with ASSERTION_KEYS set carries the edge's assertion; outlined, so that a gateway
    // without them never compiles the step.
    let signing =
        setup.as_ref().ok().and_then(|ready| Some((ready, ready.config.gateway.as_ref()?.assertion.as_ref()?)));
    let result = match (result, signing) {
        (Ok(Answer::Forward(forward)), Some((ready, signing))) => {
            outline(asserted(forward, signing, ready, request, now_ms, &mut facts)).await
        }
        (result, _) => result,
    };
    let (response, forward, reason) = match result {
        Ok(Answer::Respond(response)) => (response, None, facts.admitted.unwrap_or(Reason::Ok)),
        // Not an answer: the edge reads the body and asks again; nothing is decided or recorded yet.
        Ok(Answer::NeedsBody) => (HttpResponse::empty(200), None, Reason::Ok),
        Ok(Answer::Forward(forward)) => (HttpResponse::empty(200), Some(forward), facts.admitted.unwrap_or(Reason::Ok)),
        Err(error) => {
            // Only an admitted answer is kept, whichever step refused after `kept_until` was set.
            facts.kept_until = None;
            let challenge = setup.as_ref().ok().map(|s| Challenge {
                resource_metadata: facts.resource_metadata.as_deref(),
                scope: facts.challenge_scope.as_deref(),
                ..challenge(s.config, facts.scheme)
            });
            (http::error_response(&error, challenge.as_ref()), None, Reason::of(&error))
        }
    };
    let decision = Decision {
        rule: facts.rule,
        status: response.status,
        reason,
        issuer: facts.issuer,
        kid: facts.kid,
        cache: facts.cache,
        mcp_method: facts.mcp_method,
        mcp_tool: facts.mcp_tool,
    };
    let response = match facts.nonce {
        Some(nonce) => response.with_header("dpop-nonce", nonce),
        None => response,
    };
    let response = match &setup {
        Ok(setup) => http::with_cors(response, &setup.config.cors, request.origin),
        Err(_) => response,
    };
    Outcome {
        fixed: facts.fixed,
        kept_until: facts.kept_until,
        needs_body: facts.needs_body,
        kept_body: facts.kept_body.take().filter(|_| facts.kept_until.is_some()),
        response,
        forward,
        background_refresh: facts.refresh,
        denylist_refresh: facts.denylist_refresh,
        decision,
    }
}

fn challenge(config: &Config, scheme: Option<Scheme>) -> Challenge<'_> {
    Challenge { realm: config.realm(), dpop: config.dpop.mode, scheme, resource_metadata: None, scope: None }
}

async fn respond<I: Io, V: Verifier>(
    request: &Incoming<'_>,
    setup: &Result<Setup<'_, I, V>, Broken<'_>>,
    now_ms: u64,
    facts: &mut Facts,
) -> Result<Answer, ApiError> {
    let gateway = match setup {
        Ok(setup) => setup.config.gateway.is_some(),
        Err(broken) => broken.gateway,
    };
    // A gateway answers CORS preflights itself, on any path, before anything else.
    if gateway && request.method == "OPTIONS" && request.origin.is_some() && request.preflight {
        facts.admitted = Some(Reason::Preflight);
        return Ok(Answer::Respond(preflight(setup, request)));
    }
    if let Some(Setup { keys, .. }) =
        setup.as_ref().ok().filter(|s| s.config.status_endpoint && request.path == STATUS_PATH)
    {
        facts.rule = Some(STATUS_PATH.into());
        return match request.method {
            "GET" | "HEAD" => Ok(Answer::Respond(
                HttpResponse::json(200, &keys.issuers.status(now_ms, keys.io)).with_header("cache-control", "no-store"),
            )),
            "OPTIONS" => {
                facts.admitted = Some(Reason::Preflight);
                Ok(Answer::Respond(preflight(setup, request)))
            }
            _ => Err(ApiError::MethodNotAllowed(http::ALLOW.into())),
        };
    }
    // The assertion's keys, for the origin to verify it with: the edge's own, whatever ROUTES says.
    if let Some(signing) = setup
        .as_ref()
        .ok()
        .and_then(|s| s.config.gateway.as_ref()?.assertion.as_ref())
        .filter(|_| request.path == assertion::JWKS_PATH)
    {
        facts.rule = Some(assertion::JWKS_PATH.into());
        return match request.method {
            "GET" | "HEAD" => {
                facts.admitted = Some(Reason::Public);
                facts.fixed = true;
                // Cached by origins and anything between: a new key is published this long before
                // an origin that honours the cache sees it (docs/assertion.md, "Rotating keys").
                Ok(Answer::Respond(
                    HttpResponse::json_text(200, signing.jwks())
                        .with_header("cache-control", "public, max-age=300")
                        .with_header("access-control-allow-origin", "*"),
                ))
            }
            _ => Err(ApiError::MethodNotAllowed("GET, HEAD".into())),
        };
    }
    // Match on exactly the path that will be forwarded, and only on a path that means one thing.
    if rules::is_ambiguous_path(request.path) {
        return Err(ApiError::InvalidRequest(RequestProblem::AmbiguousPath));
    }
    let demo;
    let table = match setup {
        Ok(setup) => setup.rules,
        Err(broken) if broken.gateway => return Err(ApiError::Misconfigured(broken.error.clone())),
        Err(_) => {
            demo = demo_rules();
            &demo
        }
    };
    // RFC 9728 §3: a protected resource's metadata, at the path inserted after the well-known
    // prefix; nothing else under that prefix is served.
    // (A gateway with no resource leaves the prefix to its own rules.)
    if let (Ok(_), true) = (setup, request.path.starts_with(mcp::WELL_KNOWN) && table.resources().next().is_some()) {
        let rule = table.resource_at(request.path).ok_or(ApiError::NotFound)?;
        facts.rule = Some(rule.path.clone());
        return match request.method {
            "GET" | "HEAD" => {
                facts.admitted = Some(Reason::Public);
                facts.fixed = true;
                let document = rule.resource.as_ref().map_or("{}", |r| r.document.as_ref());
                Ok(Answer::Respond(
                    HttpResponse::json_text(200, document)
                        .with_header("cache-control", "public, max-age=300")
                        .with_header("access-control-allow-origin", "*"),
                ))
            }
            _ => Err(ApiError::MethodNotAllowed("GET, HEAD".into())),
        };
    }
    // TRACE echoes the request, the edge's own headers (ORIGIN_SECRET) included: never forwarded.
    if rules::is_refused_method(request.method) {
        return Err(ApiError::MethodNotAllowed(table.methods_for(request.path).join(", ")));
    }
    let rule = match table.find(request.method, request.path) {
        Match::Rule(rule) => {
            facts.rule = Some(rule.path.clone());
            rule
        }
        Match::MethodNotAllowed(allowed) => return Err(ApiError::MethodNotAllowed(allowed.join(", "))),
        Match::NotFound => return Err(ApiError::NotFound),
    };
    // An upgraded connection is no longer HTTP the rules can judge: only a WebSocket handshake
    // (a GET) on a rule that allows one, which the edge then relays itself.
    if let Some(upgrade) = request.upgrade {
        if !(rule.websocket && request.method == "GET" && upgrade.eq_ignore_ascii_case("websocket")) {
            return Err(ApiError::InvalidRequest(RequestProblem::UpgradeNotAllowed));
        }
    }
    if let (Some(_), Ok(setup)) = (&rule.mcp, setup) {
        // DNS rebinding (the MCP transport spec): a page's Origin must be one that may call.
        if request.origin.is_some() && http::allowed_origin(&setup.config.cors, request.origin).is_none() {
            return Err(ApiError::OriginNotAllowed);
        }
    }
    if let Some(resource) = &rule.resource {
        facts.resource_metadata = Some(resource.metadata_url.clone());
        facts.challenge_scope = Some(resource.scope.clone());
    }
    // The worker's own routes answer any OPTIONS as a preflight (no token needed).
    if request.method == "OPTIONS" && matches!(rule.responder, Responder::Message(_)) {
        facts.admitted = Some(Reason::Preflight);
        return Ok(Answer::Respond(preflight(setup, request)));
    }
    if rule.auth == Auth::Public {
        facts.admitted = Some(Reason::Public);
        if let Ok(setup) = setup {
            if mcp_body(rule, request, setup.config, None, facts)? {
                return Ok(Answer::NeedsBody);
            }
        }
        if let (Some(limit), Ok(setup)) = (&rule.rate_limit, setup) {
            outline(spend(limit, None, None, request, setup.keys.io)).await?;
        }
        // Without a limit to spend, a public answer reads nothing but the head: a message, or a
        // forward (made from the head's URL, addresses and, at the edge, header names). A relayed
        // WebSocket is left out: each is a connection of its own, and so is a body read.
        facts.fixed = rule.rate_limit.is_none() && request.upgrade.is_none() && request.body.is_none();
        return answer(rule, None, None, setup, request);
    }
    let Setup { config, keys, rules: table } =
        setup.as_ref().map_err(|broken| ApiError::Misconfigured(broken.error.clone()))?;
    let needed = table.claims_needed();
    let audience = match &rule.resource {
        Some(resource) => Accepts::Resource(&resource.uri),
        None => Accepts::IssuerApis(table),
    };
    facts.body_pending = rule.mcp.is_some() && request.method == "POST" && request.body.is_none();
    let (principal, token) = match outline(authenticate(request, config, keys, needed, audience, now_ms, facts)).await {
        Ok(verified) => verified,
        // An optional rule admits a request that carries no token (a non-Bearer scheme is no token).
        Err(ApiError::MissingAuthorization) if rule.auth == Auth::Optional => {
            facts.admitted = Some(Reason::Anonymous);
            if mcp_body(rule, request, config, None, facts)? {
                return Ok(Answer::NeedsBody);
            }
            if let Some(limit) = &rule.rate_limit {
                outline(spend(limit, None, None, request, keys.io)).await?;
            }
            return answer(rule, None, None, setup, request);
        }
        Err(error) => return Err(error),
    };
    if let Some(list) = keys.denylist {
        outline(check_denylist(&principal, list, keys.io, now_ms, facts)).await?;
    }
    if rule.revocation == Revocation::Fleet {
        // The edge refuses to start without the binding a fleet rule needs (see `compile_rules`'s
        // caller); a missing copy here is a store that cannot be read.
        let fleet = keys.fleet.ok_or(ApiError::DenylistUnavailable)?;
        outline(check_fleet_revocations(&principal, fleet, keys.io, now_ms, facts)).await?;
    }
    if !rule.is_satisfied_by(|scope| principal.has_scope(scope)) {
        return Err(ApiError::InsufficientScope { required: rule.scope_requirement() });
    }
    if let Some(unmet) = rule.unmet_claim(|name| principal.claim(name)) {
        return Err(ApiError::ClaimMismatch { claim: unmet.name.clone() });
    }
    if mcp_body(rule, request, config, Some(&principal), facts)? {
        return Ok(Answer::NeedsBody);
    }
    // Last: only a request that would otherwise be admitted spends the caller's budget.
    if let Some(limit) = &rule.rate_limit {
        outline(spend(limit, facts.issuer.as_deref(), Some(&principal), request, keys.io)).await?;
    }
    facts.kept_until = kept_until(rule, request, &principal, config, now_ms, facts);
    if facts.kept_until.is_some() && rule.mcp.is_some() && request.body.is_some() {
        facts.kept_body = table.index_of(rule).map(|rule| KeptBody { rule, principal: principal.clone() });
    }
    facts.caller = Some(principal.clone());
    let mut answered = answer(rule, Some((principal.as_ref(), token)), facts.scheme, setup, request)?;
    if let Answer::Forward(Forward { relay: Some(relay), .. }) = &mut answered {
        let kv = keys.denylist.is_some();
        let fleet = rule.revocation == Revocation::Fleet;
        relay.revocation = (kv || fleet).then(|| RelayRevocation {
            every_ms: if fleet { FLEET_COPY_MS } else { config.denylist_refresh_secs.saturating_mul(1000) },
            kv,
            fleet,
            subject: principal.subject.clone(),
            jti: principal.jti.clone(),
            client: principal.client.clone(),
            issuer: facts.issuer.as_deref().map(str::to_owned),
        });
    }
    Ok(answered)
}

/// A forward with `ASSERTION_KEYS` set gets the edge's signed assertion (`X-Auth-Assertion`): the
/// one made for the same token (seen before), method and URL while it may be reused, else a new
/// one. An answer
/// kept for its head is kept no longer than its assertion may be reused: a plan fixed by its head
/// (a public rule's) becomes one kept for a while. No assertion, no forward: a key that cannot
/// sign is a configuration error, never a request sent without one.
async fn asserted<I: Io, V: Verifier>(
    mut forward: Forward,
    signing: &assertion::AssertionConfig,
    setup: &Setup<'_, I, V>,
    request: &Incoming<'_>,
    now_ms: u64,
    facts: &mut Facts,
) -> Result<Answer, ApiError> {
    let Setup { config, keys, .. } = setup;
    let Some(gateway) = &config.gateway else { return Ok(Answer::Forward(forward)) };
    // Not fixed by the head whatever comes next: a new assertion reads the clock, and a refusal
    // to sign is answered as it is found.
    let fixed = std::mem::take(&mut facts.fixed);
    let caller = facts.caller.clone();
    let htu = gateway.target(request.path);
    // As with an answer kept for its head (`kept_until`), only a token seen before has its
    // assertion kept: most tokens seen once are never seen again, and keeping each one's would
    // cost every such request a copy and two hashes of the token, and push useful ones out.
    let key = match &caller {
        None => Some(AssertionCache::key(None, request.method, &htu)),
        Some(_) if facts.cache == Some(CacheUse::Hit) => extract::credential(request.authorization, config.dpop.mode)
            .ok()
            .map(|(_, token)| AssertionCache::key(Some(token), request.method, &htu)),
        Some(_) => None,
    };
    let kept = key.as_ref().and_then(|key| keys.assertions.borrow().get(key, now_ms));
    let issued = match kept {
        Some(issued) => issued,
        None => {
            let caller = caller
                .as_deref()
                .map(|principal| Caller { principal, token_issuer: facts.issuer.as_deref().unwrap_or_default() });
            let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
            let claims = signing.claims(caller, request.method, &htu, now_secs);
            let jws = signing.sign(&claims, keys.verifier).await.map_err(|error| {
                let error = error.config_error();
                // As the isolate logs a configuration it cannot read (`describe_config_error`).
                let line = crate::json::ObjectWriter::default()
                    .text("component", "edge-auth.config")
                    .text("event", "misconfigured")
                    .text("variable", error.variable)
                    .text("problem", &error.to_string())
                    .finish();
                keys.io.log("misconfigured", &line);
                ApiError::Misconfigured(error)
            })?;
            let issued = Issued { jws: jws.into(), reusable_until_ms: claims.reusable_until_ms() };
            if let Some(key) = key {
                keys.assertions.borrow_mut().insert(key, issued.clone(), now_ms);
            }
            issued
        }
    };
    forward.headers.push((assertion::HEADER, issued.jws.to_string()));
    if fixed {
        facts.kept_until = Some(now_ms.saturating_add(KEEP_MS));
    }
    facts.kept_until =
        facts.kept_until.map(|until| until.min(issued.reusable_until_ms)).filter(|until| *until > now_ms);
    Ok(Answer::Forward(forward))
}

/// How long an admitted token's answer holds for its head (see [`Outcome::kept_until`]). Only for
/// a token seen before (a hit in the verified-token cache): a token seen once is most often never
/// seen again, and keeping its answer would cost every such request (paired: +12 us of CPU with
/// 5,000 distinct tokens) and push useful answers out. Not for a limit (spent per request), a
/// relayed WebSocket (a connection of its own), a DPoP proof (one use each), or a request that
/// asked for a refresh (the next one must see its result).
fn kept_until(
    rule: &rules::Rule,
    request: &Incoming<'_>,
    principal: &Principal,
    config: &Config,
    now_ms: u64,
    facts: &Facts,
) -> Option<u64> {
    // A body is read for an MCP rule only, whose kept plan has every later body checked again
    // ([`admits_kept_body`]); any other body would make the answer its own.
    if rule.rate_limit.is_some()
        || request.upgrade.is_some()
        || (request.body.is_some() && rule.mcp.is_none())
        || facts.scheme != Some(Scheme::Bearer)
        || facts.cache != Some(CacheUse::Hit)
        || facts.refresh.is_some()
        || facts.denylist_refresh
    {
        return None;
    }
    // `Validity::check` refuses from the second `exp` + leeway on.
    let leeway = i64::try_from(config.leeway_secs).unwrap_or(i64::MAX);
    let expires_ms = u64::try_from(principal.expires.saturating_add(leeway)).unwrap_or(0).saturating_mul(1000);
    let until = expires_ms.min(now_ms.saturating_add(KEEP_MS)).min(facts.steady_until.unwrap_or(u64::MAX));
    (until > now_ms).then_some(until)
}

/// An MCP rule's POST: `Ok(true)` when its body must be read first; else the body was read and
/// every scope its JSON-RPC messages need (with the rule's own) is granted. `principal`: the
/// verified caller (`None` on a public rule, whose map names no scope, or an optional rule without
/// a token, which is refused if its messages need one).
#[inline(never)] // kept out of the pipeline's async bodies, which would each inline a copy
fn mcp_body(
    rule: &rules::Rule,
    request: &Incoming<'_>,
    config: &Config,
    principal: Option<&Principal>,
    facts: &mut Facts,
) -> Result<bool, ApiError> {
    let (Some(map), "POST") = (&rule.mcp, request.method) else { return Ok(false) };
    let limit = config.gateway.as_ref().map_or(mcp::DEFAULT_MAX_BODY_BYTES, |g| g.mcp_max_body_bytes);
    let Some(body) = request.body else {
        facts.needs_body = Some(limit);
        return Ok(true);
    };
    if body.declared_over || body.bytes.len() as u64 > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // The server reads the bytes as its Content-Type and Content-Encoding say: a body the edge
    // reads as UTF-8 JSON could be another message to a server that honours charset=utf-7, or
    // inflates gzip. Only what both read alike is let through.
    if !mcp::is_plain_json(body.media_type, body.encoding) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let call = map.read(body.bytes).map_err(ApiError::InvalidRequest)?;
    facts.mcp_method = call.method.as_deref().map(decision::mcp_name);
    facts.mcp_tool = call.tool.as_deref().map(decision::mcp_name);
    if call.needed.iter().any(|scope| !principal.is_some_and(|p| p.has_scope(scope))) {
        // RFC 6750 §3.1 and the MCP spec's step-up: every scope the request needs, so that the
        // client asks for all of them at once.
        let mut required: Vec<&str> = rule.scopes.iter().chain(&rule.any_scopes).map(String::as_str).collect();
        for scope in &call.needed {
            if !required.contains(&scope.as_str()) {
                required.push(scope);
            }
        }
        return Err(ApiError::InsufficientScope { required: required.join(" ") });
    }
    Ok(false)
}

/// For a plan kept for its head on an MCP rule ([`Outcome::kept_body`]): whether this request's body
/// is admitted as the kept one's was, by the same rule for the same caller. `false` sends the
/// request through the whole pipeline, which answers and records the refusal. The head's own
/// checks held when the plan was kept, and hold while it is kept (the edge drops it at its time,
/// and when a key set or a deny list's copy is replaced).
pub fn admits_kept_body(kept: &KeptBody, body: Body<'_>, config: &Config, rules: &Rules) -> bool {
    let Some(rule) = rules.get(kept.rule).filter(|rule| rule.mcp.is_some()) else { return false };
    let request = Incoming { method: "POST", body: Some(body), ..Incoming::default() };
    matches!(mcp_body(rule, &request, config, Some(&kept.principal), &mut Facts::default()), Ok(false))
}

/// RFC 9728 §2: the resource, who issues its tokens, the scopes its rule and `mcp` map name, how a
/// token is sent, and DPoP's members when DPoP is on. Written once per isolate ([`compile_rules`]):
/// it holds configuration only.
fn resource_metadata(resource: &mcp::Resource, rule: &rules::Rule, config: &Config) -> String {
    let mut scopes: Vec<&str> = rule.scopes.iter().chain(&rule.any_scopes).map(String::as_str).collect();
    for scope in rule.mcp.iter().flat_map(|map| map.scopes()) {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let document = crate::json::ObjectWriter::default()
        .text("resource", &resource.uri)
        .texts(
            "authorization_servers",
            config
                .issuers
                .iter()
                .filter(|i| i.audiences.iter().any(|a| **a == *resource.uri))
                .map(|i| i.issuer.as_str()),
        )
        .texts("scopes_supported", scopes)
        .texts("bearer_methods_supported", ["header"]);
    let document = match config.dpop.mode {
        DpopMode::Off => document,
        mode => document
            .texts("dpop_signing_alg_values_supported", proof::ALGORITHMS.split(' '))
            .boolean("dpop_bound_access_tokens_required", mode == DpopMode::Required),
    };
    document.finish()
}

/// What an admitted request gets: the worker's message, or the way to the origin.
/// `identity` is the verified caller and the token that proved it.
fn answer<I, V>(
    rule: &rules::Rule,
    identity: Option<(&Principal, &str)>,
    scheme: Option<Scheme>,
    setup: &Result<Setup<'_, I, V>, Broken<'_>>,
    request: &Incoming<'_>,
) -> Result<Answer, ApiError> {
    match (&rule.responder, setup) {
        (Responder::Message(body), _) => {
            let response = HttpResponse::json_text(200, body);
            // Answers that depend on who asked must not be cached by anyone in between.
            let response =
                if identity.is_some() { response.with_header("cache-control", "no-store") } else { response };
            Ok(Answer::Respond(response))
        }
        (Responder::Origin, Ok(setup)) => {
            let gateway = setup.config.gateway.as_ref();
            let claims = identity.map(|(principal, token)| (principal, forward::claims_segment(token)));
            let client = forward::Client { host: request.host, scheme: request.scheme, address: request.address };
            let headers = gateway.map(|g| g.added_headers(&client, claims)).unwrap_or_default();
            let relay = (rule.websocket && request.upgrade.is_some()).then(|| Relay {
                close_at_ms: identity.map(|(principal, _)| {
                    let leeway = i64::try_from(setup.config.leeway_secs).unwrap_or(i64::MAX);
                    u64::try_from(principal.expires.saturating_add(leeway)).unwrap_or(0).saturating_mul(1000)
                }),
                revocation: None,
            });
            let claim_headers = match (gateway, identity) {
                (Some(gateway), Some((principal, _))) => gateway.claim_headers(principal),
                _ => Vec::new(),
            };
            let credentials = identity.and(scheme).filter(|_| rule.resource.is_none());
            Ok(Answer::Forward(Forward { headers, credentials, relay, claim_headers }))
        }
        // An origin rule only comes from a configuration that was read; this is for completeness.
        (Responder::Origin, Err(broken)) => Err(ApiError::Misconfigured(broken.error.clone())),
    }
}

/// A gateway's preflight offers the methods of the rules whose path matches; the worker's own
/// routes (the demo's, the status route) take `GET, HEAD, OPTIONS`.
fn preflight<I, V>(setup: &Result<Setup<'_, I, V>, Broken<'_>>, request: &Incoming<'_>) -> HttpResponse {
    let Ok(setup) = setup else { return HttpResponse::empty(204).with_header("allow", http::ALLOW) };
    let config = setup.config;
    let methods = if config.gateway.is_some() && !(config.status_endpoint && request.path == STATUS_PATH) {
        let mut methods = setup.rules.methods_for(request.path);
        if !methods.contains(&"OPTIONS") {
            methods.push("OPTIONS");
        }
        methods.join(", ")
    } else {
        http::ALLOW.to_owned()
    };
    let mcp = config.gateway.is_some() && setup.rules.mcp_at(request.path);
    http::preflight(&config.cors, &config.preflight, request.origin, &methods, mcp)
}

/// Header → token → issuer → key → signature → claims → binding, each step refusing with the
/// check that failed. A token verified before skips the parse and the signature, never the key,
/// clock, binding, proof or scope. Answers the caller and the token that proved who it is.
/// `audience`: a protected resource's URI, the only `aud` its rule accepts; else the issuer's.
async fn authenticate<'t, I: Io, V: Verifier>(
    request: &Incoming<'t>,
    config: &Config,
    keys: &Keys<'_, I, V>,
    needed: &[Rc<str>],
    audience: Accepts<'_>,
    now_ms: u64,
    facts: &mut Facts,
) -> Result<(Rc<Principal>, &'t str), ApiError> {
    let (scheme, raw) = extract::credential(request.authorization, config.dpop.mode)?;
    facts.scheme = Some(scheme);
    if scheme == Scheme::Bearer && config.dpop.mode == DpopMode::Required {
        return Err(ApiError::InvalidToken(TokenProblem::DpopRequired));
    }
    let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let principal = verify_token(raw, config, keys, needed, audience, now_ms, now_secs, facts).await?;
    match (&principal.binding, scheme) {
        (Binding::Unsupported, _) => Err(ApiError::InvalidToken(TokenProblem::UnsupportedConfirmation)),
        (Binding::None, Scheme::Bearer) => Ok((principal, raw)),
        (Binding::None, Scheme::Dpop) => Err(ApiError::InvalidToken(TokenProblem::UnboundTokenAsDpop)),
        (Binding::Jkt(_), Scheme::Bearer) => Err(ApiError::InvalidToken(TokenProblem::BoundTokenAsBearer)),
        (Binding::Jkt(jkt), Scheme::Dpop) => {
            outline(check_proof(request, raw, jkt, config, keys, now_secs, facts)).await?;
            Ok((principal, raw))
        }
    }
}

/// Which audience a rule takes.
#[derive(Clone, Copy)]
enum Accepts<'a> {
    /// A protected resource's URI, and only from an issuer that lists it among its audiences.
    Resource(&'a str),
    /// Any of the token's issuer's audiences that is no rule's resource: a token issued for an
    /// MCP server (handed to an agent) is not a key to the rest of the API.
    IssuerApis(&'a Rules),
}

/// Whether the token was issued for what the rule protects ([`Accepts`]). Judged on every use, so
/// one cached verification serves rules that accept different audiences; a token refused here is
/// never cached.
#[inline(never)] // called from the cached and the fresh verification alike
fn audience_accepted(
    principal: &Principal,
    audience: Accepts<'_>,
    issuers: &Issuers,
    issuer: usize,
) -> Result<(), ApiError> {
    let Some(issuer) = issuers.get(issuer) else { return Err(ApiError::InvalidToken(TokenProblem::WrongAudience)) };
    let listed = |aud: &str| issuer.config.audiences.iter().any(|a| a == aud);
    // A resource is also one of its issuers' audiences (checked at start-up): a token from an
    // issuer that does not list it (another tenant, a staging one) is never taken for it.
    let accepted = match audience {
        Accepts::Resource(resource) => listed(resource) && principal.has_audience(|aud| aud == resource),
        Accepts::IssuerApis(rules) => principal.has_audience(|aud| listed(aud) && !rules.is_resource(aud)),
    };
    if accepted {
        Ok(())
    } else {
        Err(ApiError::InvalidToken(TokenProblem::WrongAudience))
    }
}

/// The token's own checks, from the cache when it was verified before. `audience`: see
/// [`audience_accepted`].
#[allow(clippy::too_many_arguments)]
async fn verify_token<I: Io, V: Verifier>(
    raw: &str,
    config: &Config,
    keys: &Keys<'_, I, V>,
    needed: &[Rc<str>],
    audience: Accepts<'_>,
    now_ms: u64,
    now_secs: i64,
    facts: &mut Facts,
) -> Result<Rc<Principal>, ApiError> {
    let cached = keys.tokens.borrow().get(raw);
    if let Some(verified) = cached {
        facts.cache = Some(CacheUse::Hit);
        facts.issuer = keys.issuers.get(verified.issuer).map(|issuer| issuer.name.clone());
        facts.kid = verified.kid.clone();
        match recheck(&verified, config, keys, now_ms, now_secs, facts).await {
            Ok(true) => {
                audience_accepted(&verified.principal, audience, keys.issuers, verified.issuer)?;
                return Ok(verified.principal);
            }
            // The token's key id now names other key material: verify the token afresh.
            Ok(false) => keys.tokens.borrow_mut().remove(raw),
            Err(error) => {
                keys.tokens.borrow_mut().remove(raw);
                return Err(error);
            }
        }
    }

    facts.cache = Some(CacheUse::Miss);
    facts.issuer = None;
    facts.kid = None;
    let token = UnverifiedToken::parse(raw).map_err(ApiError::InvalidToken)?;
    // The issuer is chosen before any key is looked at: an unknown one costs no fetch, and one
    // issuer's keys never verify another's token.
    let (index, issuer) = token
        .claimed_issuer()
        .and_then(|iss| keys.issuers.find(iss))
        .ok_or(ApiError::InvalidToken(TokenProblem::UntrustedIssuer))?;
    facts.issuer = Some(issuer.name.clone());
    let kid = token.kid().map(Rc::from);
    let resolved = issuer.store.resolve(kid.as_deref(), now_ms, keys.io).await?;
    // Only now is the kid one of the issuer's own, fit for a log line or a metric.
    facts.kid.clone_from(&kid);
    facts.ask_refresh(index, resolved.background_refresh);
    let signed = verify::check_signature(token, &resolved.key, keys.verifier).await.map_err(ApiError::InvalidToken)?;
    let policy = ClaimsPolicy {
        issuer: &issuer.config.issuer,
        leeway_secs: config.leeway_secs,
        scope_source: config.scope_source,
        keep_access_claims: config.gateway.as_ref().is_some_and(|g| g.assertion.is_some()),
    };
    let (mut principal, validity) = claims::validate(signed, &policy, now_secs).map_err(ApiError::InvalidToken)?;
    audience_accepted(&principal, audience, keys.issuers, index)?;
    if !needed.is_empty() {
        for (name, value) in claims::select(forward::claims_segment(raw), needed) {
            if principal.claim(&name).is_none() {
                principal.claims.push((name, value));
            }
        }
    }
    let principal = Rc::new(principal);
    let verified = Verified { issuer: index, kid, key: resolved.key, principal: principal.clone(), validity };
    keys.tokens.borrow_mut().insert(raw, verified, now_secs, config.leeway_secs);
    Ok(principal)
}

/// What a cached verification must still pass: the clock, and its key still being held by its
/// issuer. `Ok(false)` when the token's key id now names other key material.
async fn recheck<I: Io, V: Verifier>(
    verified: &Verified,
    config: &Config,
    keys: &Keys<'_, I, V>,
    now_ms: u64,
    now_secs: i64,
    facts: &mut Facts,
) -> Result<bool, ApiError> {
    verified.validity.check(now_secs, config.leeway_secs).map_err(ApiError::InvalidToken)?;
    let issuer = keys.issuers.get(verified.issuer).ok_or(ApiError::InvalidToken(TokenProblem::UntrustedIssuer))?;
    let resolved = issuer.store.resolve(verified.kid.as_deref(), now_ms, keys.io).await?;
    facts.ask_refresh(verified.issuer, resolved.background_refresh);
    facts.steady_until(issuer.store.fresh_until());
    Ok(resolved.key == verified.key)
}

/// Spends one unit of the rule's limit for this caller; 429 with the period as `Retry-After` when
/// the caller is over it. A binding that fails lets the request through, with a log line.
async fn spend<I: Io>(
    limit: &rules::RateLimit,
    issuer: Option<&str>,
    principal: Option<&Principal>,
    request: &Incoming<'_>,
    io: &I,
) -> Result<(), ApiError> {
    let key = limits::key(limit, issuer, principal, request.address);
    match io.spend(&limit.binding, &key).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::RateLimited { retry_after_secs: limit.period_secs }),
        Err(reason) => {
            let line = json!({ "component": "edge-auth.limits", "event": "rate_limit_failed", "binding": &*limit.binding, "reason": reason });
            io.log("rate_limit_failed", &line.to_string());
            Ok(())
        }
    }
}

/// Refuses a token the deny list names, from the isolate's copy: listed in the foreground only
/// by an isolate that never listed it (and refused with 503 when that fails: revocation never
/// fails open), else listed again after the response when due.
async fn check_denylist<I: Io>(
    principal: &Principal,
    list: &RefCell<DenyList>,
    io: &I,
    now_ms: u64,
    facts: &mut Facts,
) -> Result<(), ApiError> {
    let copy = list.borrow().copy();
    let copy = match copy {
        Some(copy) => {
            facts.denylist_refresh |= list.borrow_mut().claim_refresh(now_ms);
            copy
        }
        None => match io.list_denied().await {
            Ok(entries) => list.borrow_mut().install(Snapshot::new(entries), now_ms),
            Err(reason) => {
                let line = json!({ "component": "edge-auth.denylist", "event": "denylist_unreadable", "reason": reason, "copy": "none" });
                io.log("denylist_unreadable", &line.to_string());
                return Err(ApiError::DenylistUnavailable);
            }
        },
    };
    facts.steady_until(Some(list.borrow().due_at_ms()));
    if let Some(found) = copy.matches(&token_ids(principal, facts)) {
        // The operator's reason is for the log only; the client is told "revoked".
        let line = json!({ "component": "edge-auth.denylist", "event": "revoked", "entry": found.kind, "reason": found.reason });
        io.log("revoked", &line.to_string());
        return Err(ApiError::InvalidToken(TokenProblem::Revoked));
    }
    Ok(())
}

fn token_ids<'a>(principal: &'a Principal, facts: &'a Facts) -> TokenIds<'a> {
    TokenIds {
        subject: principal.subject.as_deref(),
        jti: principal.jti.as_deref(),
        client: principal.client.as_deref(),
        issuer: facts.issuer.as_deref(),
    }
}

/// A rule with `"revocation": "fleet"`: the token is judged by a copy of the fleet's revocations at
/// most [`FLEET_COPY_MS`] old, listed now when the isolate's is older. Never fails open: a copy
/// that cannot be listed refuses the request (503).
async fn check_fleet_revocations<I: Io>(
    principal: &Principal,
    fleet: &RefCell<FleetCopy>,
    io: &I,
    now_ms: u64,
    facts: &mut Facts,
) -> Result<(), ApiError> {
    let copy = fresh_fleet_copy(fleet, io, now_ms).await.map_err(|()| ApiError::DenylistUnavailable)?;
    // A kept answer holds no longer than the copy that judged it.
    facts.steady_until(Some(fleet.borrow().good_until_ms()));
    if let Some(found) = copy.matches(&token_ids(principal, facts)) {
        io.log("revoked", &fleet_line("revoked", found.reason, Some(found.kind)));
        return Err(ApiError::InvalidToken(TokenProblem::Revoked));
    }
    Ok(())
}

/// The isolate's copy of the fleet's revocations if under [`FLEET_COPY_MS`] old, else listed now;
/// `Err` (logged) when it cannot be listed, which each caller answers in its own way.
async fn fresh_fleet_copy<I: Io>(fleet: &RefCell<FleetCopy>, io: &I, now_ms: u64) -> Result<Rc<Snapshot>, ()> {
    let fresh = fleet.borrow().fresh(now_ms);
    if let Some(copy) = fresh {
        return Ok(copy);
    }
    match io.list_revoked().await {
        Ok((version, entries)) => Ok(fleet.borrow_mut().install(version, entries, now_ms)),
        Err(reason) => {
            io.log("denylist_unreadable", &fleet_line("denylist_unreadable", Some(&reason), None));
            Err(())
        }
    }
}

/// A log line about the fleet's revocations (written without `json!`, whose expansion per line
/// costs the wasm more than the line is worth).
fn fleet_line(event: &str, reason: Option<&str>, entry: Option<&str>) -> String {
    crate::json::ObjectWriter::default()
        .text("component", "edge-auth.denylist")
        .text("event", event)
        .text("store", "fleet")
        .maybe_text("entry", entry)
        .maybe_text("reason", reason)
        .finish()
}

/// Lists the deny list after a response and installs the copy; a failure keeps the last copy.
pub async fn refresh_denylist<I: Io>(list: &RefCell<DenyList>, io: &I, now_ms: u64) {
    match io.list_denied().await {
        Ok(entries) => {
            list.borrow_mut().install(Snapshot::new(entries), now_ms);
        }
        Err(reason) => {
            let age = list.borrow().age_secs(now_ms);
            let line = json!({ "component": "edge-auth.denylist", "event": "denylist_unreadable", "reason": reason, "copy_age_s": age });
            io.log("denylist_unreadable", &line.to_string());
        }
    }
}

/// RFC 9449 for a bound token sent with the DPoP scheme: the proof's own checks, then that the
/// token is bound to the proof's key (§4.3 step 12), then that the proof is new to this isolate.
/// Never skipped by the token cache.
async fn check_proof<I: Io, V: Verifier>(
    request: &Incoming<'_>,
    token: &str,
    jkt: &str,
    config: &Config,
    keys: &Keys<'_, I, V>,
    now_secs: i64,
    facts: &mut Facts,
) -> Result<(), ApiError> {
    let proof_request =
        ProofRequest { header: request.dpop, method: request.method, url: request.url, access_token: token };
    let checked = match proof::check(&proof_request, &config.dpop, config.leeway_secs, now_secs, keys.verifier).await {
        Ok(checked) => checked,
        Err(ProofError::Invalid(problem)) => return Err(ApiError::InvalidDpopProof(problem)),
        Err(ProofError::UseNonce) => {
            let nonce = config.dpop.nonce.as_ref().map(|n| nonce::issue(n, now_secs)).unwrap_or_default();
            return Err(ApiError::UseDpopNonce { nonce });
        }
    };
    if checked.thumbprint != jkt {
        return Err(ApiError::InvalidToken(TokenProblem::KeyBindingMismatch));
    }
    // Remembered through the last second the proof could be accepted: step 11 takes an `iat` up to
    // max-age old (and up to the leeway ahead, hence `max(now)` and the leeway), and a nonce only
    // through its second step.
    let window = i64::try_from(config.dpop.max_age_secs + config.leeway_secs).unwrap_or(i64::MAX);
    let by_iat = checked.issued_at.max(now_secs).saturating_add(window);
    let keep_through = checked.nonce_through.map_or(by_iat, |through| through.min(by_iat));
    if facts.body_pending {
        let seen = keys.proofs.borrow().seen(&checked.thumbprint, &checked.jti);
        return if seen { Err(ApiError::InvalidDpopProof(ProofProblem::Replayed)) } else { Ok(()) };
    }
    match keys.proofs.borrow_mut().remember(&checked.thumbprint, &checked.jti, keep_through, now_secs) {
        Remembered::Fresh => {}
        Remembered::Replayed => return Err(ApiError::InvalidDpopProof(ProofProblem::Replayed)),
        // With `fleet`, the fleet's store holds every proof this isolate cannot: single use is
        // its answer, and a full local memory no longer caps a busy key or isolate.
        Remembered::Full if config.dpop.replay == ReplayScope::Fleet => {}
        // Refused rather than remembered at the cost of another proof: see `dpop::replay`. A nonce
        // challenge lets an honest client retry with a proof remembered for a shorter time.
        Remembered::Full => {
            keys.io.log("replay_memory_full", r#"{"component":"edge-auth.dpop","event":"replay_memory_full"}"#);
            return Err(replay_full(config, now_secs));
        }
    }
    // New to this isolate; with `fleet`, it must be new to every other too.
    if config.dpop.replay == ReplayScope::Fleet {
        outline(use_in_fleet(&checked.thumbprint, &checked.jti, keep_through, config, keys.io, now_secs)).await?;
    }
    if checked.nonce_aging {
        facts.nonce = config.dpop.nonce.as_ref().map(|n| nonce::issue(n, now_secs));
    }
    Ok(())
}

/// `DPOP_REPLAY=fleet`: the proof's `jti` recorded in the fleet's store for its key, refused when
/// any isolate used it before, and refused (503) when the store cannot be asked.
async fn use_in_fleet<I: Io>(
    thumbprint: &str,
    jti: &str,
    keep_through: i64,
    config: &Config,
    io: &I,
    now_secs: i64,
) -> Result<(), ApiError> {
    match io.use_jti(thumbprint, jti, keep_through).await {
        Ok(FleetUse::Fresh) => Ok(()),
        Ok(FleetUse::Used) => Err(ApiError::InvalidDpopProof(ProofProblem::Replayed)),
        Ok(FleetUse::Full) => {
            io.log(
                "replay_memory_full",
                r#"{"component":"edge-auth.dpop","event":"replay_memory_full","store":"fleet"}"#,
            );
            Err(replay_full(config, now_secs))
        }
        Err(reason) => {
            let line = crate::json::ObjectWriter::default()
                .text("component", "edge-auth.dpop")
                .text("event", "replay_store_unavailable")
                .text("reason", &reason)
                .finish();
            io.log("replay_store_unavailable", &line);
            Err(ApiError::ReplayStoreUnavailable)
        }
    }
}

/// A proof refused because a memory of used proofs has no room for it. A nonce challenge lets an
/// honest client retry with a proof remembered for a shorter time.
fn replay_full(config: &Config, now_secs: i64) -> ApiError {
    match &config.dpop.nonce {
        Some(nonces) => ApiError::UseDpopNonce { nonce: nonce::issue(nonces, now_secs) },
        None => ApiError::InvalidDpopProof(ProofProblem::ReplayMemoryFull),
    }
}

/// The error answer for a failure after the pipeline (the origin down or slow), shaped like
/// every other: JSON, `no-store`, CORS for an allowed origin.
pub fn refusal(error: &ApiError, config: &Config, origin: Option<&str>) -> HttpResponse {
    http::with_cors(http::error_response(error, Some(&challenge(config, None))), &config.cors, origin)
}

/// The JSON body of a misconfiguration, for logs (the response says the same).
/// The log line says everything, including what a response leaves out (see `ConfigProblem`).
pub fn describe_config_error(error: &ConfigError) -> serde_json::Value {
    let mut line = json!({ "component": "edge-auth.config", "event": "misconfigured", "variable": error.variable, "problem": error.to_string() });
    if let ConfigProblem::InvalidRule { detail, .. } = &error.problem {
        line["detail"] = detail.clone().into();
    }
    line
}
