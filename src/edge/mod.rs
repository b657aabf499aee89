//! The Cloudflare Workers adapter: reads the request and bindings, runs the pure pipeline, and
//! turns its outcome into a runtime response. Everything here is I/O; every decision is in the core.
//!
//! The hot path is kept close to what a plain JavaScript worker costs (measured, see docs/performance.md):
//! - the entry is a plain `{ fetch }` object (`entry.mjs`) over wasm-bindgen's glue, not worker-build's
//!   per-request `WorkerEntrypoint` behind a Proxy;
//! - a request crosses into wasm as one string, its head (`entry.mjs`: the method, the URL, the six
//!   headers the pipeline reads and, in a gateway, the header names), and the answer comes back as
//!   one string (a response's wire text, or a gateway's plan); no `web_sys` object is built per request;
//! - an answer the pipeline made from the head alone (`Outcome::fixed`), or that admitted a Bearer
//!   token seen before (`Outcome::kept_until`: for at most a second, while no key set or deny
//!   list is replaced), and that nobody records is kept by `entry.mjs` for that head, and repeats
//!   of it never call into wasm;
//! - everything that can be worked out once (configuration, key store, imported keys, verified tokens)
//!   lives with the isolate;
//! - an answer that needs no I/O is returned synchronously; only one that awaits becomes a promise.
//!
//! KV, the Cache API and the issuer fetch are a few plain JavaScript calls (`io.mjs`, awaited by `io`).

mod handoff;
mod io;
mod observe;
mod origin;
mod timer;
mod webcrypto;

use std::{
    cell::{OnceCell, RefCell},
    future::Future,
    rc::Rc,
    task::{Context as TaskContext, Poll, Waker},
};

use wasm_bindgen::{prelude::wasm_bindgen, JsCast, JsValue};
use web_sys::Request;

use crate::{
    config::Config,
    dpop::{
        policy::ReplayScope,
        replay::{FleetReplay, FleetUse, ReplayCache},
    },
    error::{ConfigError, ConfigProblem},
    gateway::{assertion::AssertionCache, rules::Rules},
    http::HttpResponse,
    keys::store::{FetchError, JwksSource, KeyIo, SharedTier},
    operate::denylist::{DeniedEntry, DenyIo, DenyList, FleetCopy, FleetRevocationIo},
    pipeline::{self, Body, Broken, Incoming, Keys, Setup},
    token::cache::TokenCache,
    token::issuers::Issuers,
};

/// What an isolate works out once. Variables cannot change during an isolate's life (a new
/// deployment or `--var` starts new isolates), so reading and checking them per request is waste.
struct Ready {
    config: Config,
    rules: Rules,
    issuers: Rc<Issuers>,
    tokens: RefCell<TokenCache>,
    proofs: RefCell<ReplayCache>,
    /// The deny list's copy, when a `DENYLIST` namespace is bound.
    denylist: Option<RefCell<DenyList>>,
    /// The fleet's revocations' copy, when a rule reads them.
    fleet: Option<RefCell<FleetCopy>>,
    /// Identity assertions signed, while they may be sent again.
    assertions: RefCell<AssertionCache>,
    verifier: webcrypto::WebCrypto,
    /// Where this instance's count of installs starts (see `installed`), drawn when first needed.
    salt: OnceCell<u64>,
}

impl Ready {
    /// What the pipeline runs with for one request, its runtime side `io`.
    fn setup<'a>(&'a self, io: &'a LazyIo) -> Setup<'a, LazyIo, webcrypto::WebCrypto> {
        let keys = Keys {
            issuers: &self.issuers,
            io,
            verifier: &self.verifier,
            tokens: &self.tokens,
            proofs: &self.proofs,
            denylist: self.denylist.as_ref(),
            fleet: self.fleet.as_ref(),
            assertions: &self.assertions,
        };
        Setup { config: &self.config, rules: &self.rules, keys }
    }

    /// What a kept token answer is checked against: the count of key sets and deny-list copies
    /// installed (`pipeline::installed`), from a random start per instance, as an exact JavaScript
    /// number. A trap re-creates the instance, whose counts start again from zero; `entry.mjs`
    /// may still hold answers kept by the old one, which must not match by chance.
    fn installed(&self) -> u64 {
        const EXACT: u64 = (1 << 53) - 1;
        let salt = *self.salt.get_or_init(|| {
            let mut bytes = [0u8; 8];
            match getrandom::getrandom(&mut bytes) {
                Ok(()) => u64::from_le_bytes(bytes),
                // Without randomness, the time the instance first kept an answer, in microseconds.
                Err(_) => (js_sys::Date::now() * 1000.0) as u64,
            }
        });
        salt.wrapping_add(self.installs()) & EXACT
    }

    fn installs(&self) -> u64 {
        pipeline::installed(&self.issuers, self.denylist.as_ref(), self.fleet.as_ref())
    }
}

/// The key of this isolate's DPoP `jti` digests (`dpop::replay`): random, so no client can make
/// two of its `jti`s collide on purpose.
fn replay_secret() -> [u64; 2] {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Without randomness, the clock and Math.random: weaker (a collision aimed at a key of the
        // client's own could slow that key's lookups, never admit a proof), so it is logged.
        bytes[..8].copy_from_slice(&js_sys::Date::now().to_bits().to_le_bytes());
        bytes[8..].copy_from_slice(&js_sys::Math::random().to_bits().to_le_bytes());
        let line = r#"{"component":"edge-auth.dpop","event":"replay_secret_weak"}"#;
        observe::emit("replay_secret_weak", "", line, true);
    }
    let (a, b) = bytes.split_at(8);
    [u64::from_le_bytes(a.try_into().unwrap_or_default()), u64::from_le_bytes(b.try_into().unwrap_or_default())]
}

/// What asks for the fleet's Durable Objects must have them bound: otherwise every request it
/// judges would be refused, so the configuration is refused as a whole, naming what asked.
fn check_fleet_bindings(config: &Config, rules: &Rules, env: &JsValue) -> Result<(), ConfigError> {
    let missing = |name| io::binding(env, name).is_none();
    if config.dpop.replay == ReplayScope::Fleet && missing(io::FLEET_REPLAY_BINDING) {
        return Err(ConfigError {
            variable: "DPOP_REPLAY",
            problem: ConfigProblem::Invalid("fleet needs the FLEET_REPLAY Durable Object binding (docs/dpop.md)"),
        });
    }
    if let Some(index) = rules.fleet_revocation().filter(|_| missing(io::FLEET_REVOCATIONS_BINDING)) {
        return Err(ConfigError {
            variable: "ROUTES",
            problem: ConfigProblem::InvalidRule {
                index: Some(index),
                detail: "revocation \"fleet\" needs the FLEET_REVOCATIONS Durable Object binding (docs/operating.md)"
                    .into(),
            },
        });
    }
    Ok(())
}

/// A configuration that cannot be read, and whether it asked for a gateway.
struct Unready {
    error: ConfigError,
    gateway: bool,
}

type Isolate = Result<Rc<Ready>, Unready>;

thread_local! {
    static ISOLATE: OnceCell<Rc<Isolate>> = const { OnceCell::new() };
}

fn isolate(env: &JsValue) -> Rc<Isolate> {
    ISOLATE.with(|cell| {
        cell.get_or_init(|| {
            let get = |name: &str| var(env, name);
            let ready = Config::from_vars(get).and_then(|config| {
                observe::init(config.observe.lines_per_minute);
                let rules = pipeline::compile_rules(&config)?;
                crate::gateway::limits::check_bindings(&rules, |name| rate_limiter(env, name).is_some())?;
                check_fleet_bindings(&config, &rules, env)?;
                Ok(Rc::new(Ready {
                    issuers: Rc::new(config.trusted_issuers()),
                    tokens: RefCell::default(),
                    proofs: RefCell::new(ReplayCache::new(replay_secret())),
                    denylist: io::binding(env, io::DENYLIST_BINDING)
                        .map(|_| RefCell::new(DenyList::new(config.denylist_refresh_secs))),
                    fleet: rules.fleet_revocation().map(|_| RefCell::default()),
                    assertions: RefCell::default(),
                    verifier: webcrypto::WebCrypto::new(),
                    salt: OnceCell::new(),
                    rules,
                    config,
                }))
            });
            Rc::new(ready.map_err(|error| {
                let gateway = crate::gateway::forward::gateway_requested(get);
                // Once per isolate: every request would say the same.
                let line = pipeline::describe_config_error(&error).to_string();
                observe::emit("misconfigured", "", &line, true);
                Unready { error, gateway }
            }))
        })
        .clone()
    })
}

/// The binding `name` if it is a Workers Rate Limiting binding (an object with `limit`).
fn rate_limiter(env: &JsValue, name: &str) -> Option<JsValue> {
    let binding = io::binding(env, name)?;
    let limit = js_sys::Reflect::get(&binding, &JsValue::from_str("limit")).ok()?;
    limit.is_function().then_some(binding)
}

/// A variable as its JSON value: `--var` and secrets arrive as strings, `[vars]` in wrangler.toml
/// keep their TOML type (boolean, number, array of tables), which the configuration accepts too.
fn var(env: &JsValue, name: &str) -> Option<serde_json::Value> {
    let value = js_sys::Reflect::get(env, &JsValue::from_str(name)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    if let Some(text) = value.as_string() {
        return Some(serde_json::Value::String(text));
    }
    // A binding (KV, a service) stringifies to `{}`; the configuration refuses it where a value is due.
    crate::json::parse(js_sys::JSON::stringify(&value).ok()?.as_string()?.as_bytes()).ok()
}

/// The worker's `fetch` handler, called by `entry.mjs` with the runtime's request, env and context.
/// Returns the answer as a string (see [`serve`]), or a promise of one when it had to wait for I/O.
/// `head` is what the pipeline reads of the request, joined in JavaScript by `entry.mjs`: one
/// string crossing into wasm instead of a call back out for each header.
#[wasm_bindgen]
/// `body`: read by entry.mjs when an earlier answer asked for it, with `body_info`: its
/// `Content-Type`, `Content-Encoding` and "1" when `Content-Length` was over the limit (nothing
/// read), a line each.
pub fn fetch(
    request: Request,
    env: JsValue,
    ctx: JsValue,
    head: String,
    now: f64,
    body: Option<Vec<u8>>,
    body_info: Option<String>,
) -> JsValue {
    console_error_panic_hook::set_once();
    let now = now as u64;
    let isolate = isolate(&env);
    let parts = Parts::parse(head);
    let body = body.map(|bytes| (bytes, body_info.unwrap_or_default()));
    let answer: handoff::Task = Box::pin(serve(request, parts, body, isolate, env, ctx, now));
    // Polled once in place: most answers (public routes, refusals, cached tokens) need no I/O and
    // are returned without a promise; a signature check is handed to entry.mjs to await
    // (`handoff`); any other wait makes a promise whose executor polls again, and the Future
    // contract has it wake that later waker, not this no-op one. (worker's `Delay` breaks that
    // contract by keeping its first waker; `timer.rs` is ours for that reason.)
    handoff::drive(answer, None).unwrap_or_else(|waiting| waiting)
}

/// The pipeline waiting under `id` (a `[promise, id]` that `fetch` or `resume` returned), resumed
/// with how its promise settled; returns as `fetch` does.
#[wasm_bindgen]
pub fn resume(id: u32, ok: bool, value: JsValue) -> JsValue {
    match handoff::settled(id, if ok { Ok(value) } else { Err(value) }) {
        Some(task) => handoff::drive(task, Some(id)).unwrap_or_else(|waiting| waiting),
        None => JsValue::from_str(&fallback()),
    }
}

/// The request's head as `entry.mjs` joined it; fields are ranges of that one string.
struct Parts {
    head: String,
    fields: [Option<(usize, usize)>; 9],
}

impl Parts {
    const METHOD: usize = 0;
    const URL: usize = 1;
    const AUTHORIZATION: usize = 2;
    const DPOP: usize = 3;
    const ORIGIN: usize = 4;
    const PREFLIGHT: usize = 5;
    const UPGRADE: usize = 6;
    /// Set by the runtime, never by the client (Cloudflare replaces any the client sent).
    const ADDRESS: usize = 7;
    /// Every header name, comma-separated: sent once `entry.mjs` has seen that the worker is a
    /// gateway (which decides per name what the origin gets, `origin::plan`).
    const NAMES: usize = 8;

    fn parse(head: String) -> Parts {
        let mut fields = [None; 9];
        let mut start = 0;
        for (i, line) in head.split('\n').enumerate().take(9) {
            let end = start + line.len();
            fields[i] = match (i, line.as_bytes().first()) {
                (Self::METHOD | Self::URL, _) => Some((start, end)),
                (_, Some(b'+')) => Some((start + 1, end)),
                _ => None,
            };
            start = end + 1;
        }
        Parts { head, fields }
    }

    fn get(&self, field: usize) -> Option<&str> {
        self.fields[field].map(|(start, end)| &self.head[start..end])
    }

    /// The request as the pipeline reads it, and its path with the query.
    fn incoming(&self) -> (Incoming<'_>, &str) {
        let url = self.get(Self::URL).unwrap_or_default();
        let (scheme, host, path_and_query) = split_url(url);
        let incoming = Incoming {
            method: self.get(Self::METHOD).unwrap_or_default(),
            url,
            path: path_and_query.split('?').next().unwrap_or("/"),
            authorization: self.get(Self::AUTHORIZATION),
            dpop: self.get(Self::DPOP),
            origin: self.get(Self::ORIGIN),
            host: Some(host),
            scheme,
            address: self.get(Self::ADDRESS),
            upgrade: self.get(Self::UPGRADE),
            preflight: self.get(Self::PREFLIGHT).is_some(),
            body: None,
        };
        (incoming, path_and_query)
    }
}

/// The scheme, the host, and the path with its query, of an absolute URL exactly as the runtime
/// hands it over, never decoded or re-encoded here. (wrangler dev and Cloudflare's URL
/// normalisation resolve `..` first, bare workerd does not: the pipeline refuses dot segments
/// either way.)
fn split_url(url: &str) -> (Option<&str>, &str, &str) {
    let (scheme, after_scheme) = url.find("://").map_or((None, url), |i| (Some(&url[..i]), &url[i + 3..]));
    match after_scheme.find(['/', '?']) {
        Some(i) => (scheme, &after_scheme[..i], &after_scheme[i..]),
        None => (scheme, after_scheme, "/"),
    }
}

/// The answer, as a string: the edge's own response ([`wire`]), or for a request the gateway
/// forwards, the plan `entry.mjs` hands to `forward.mjs` (see `origin::plan`).
async fn serve(
    request: Request,
    parts: Parts,
    body: Option<(Vec<u8>, String)>,
    isolate: Rc<Isolate>,
    env: JsValue,
    ctx: JsValue,
    now: u64,
) -> JsValue {
    {
        let (incoming, path_and_query) = parts.incoming();
        let incoming = Incoming {
            body: body.as_ref().map(|(bytes, info)| {
                let mut lines = info.split('\n');
                let mut next = || lines.next().filter(|line| !line.is_empty());
                Body { bytes, media_type: next(), encoding: next(), declared_over: next() == Some("1") }
            }),
            ..incoming
        };
        let mut installs_before = 0;
        let outcome = match isolate.as_ref() {
            Ok(ready) => {
                let io = LazyIo { env: env.clone(), ready: ready.clone(), io: OnceCell::new() };
                installs_before = ready.installs();
                let setup = ready.setup(&io);
                let outcome = pipeline::handle(&incoming, Ok(setup), now).await;
                let writes_due = ready.issuers.iter().any(|issuer| issuer.store.has_pending_writes());
                if outcome.background_refresh.is_some() || writes_due || outcome.denylist_refresh {
                    // After the response: a refresh, and the shared-tier writes this request's
                    // fetch or load made due (a KV write takes far longer at the edge than a
                    // request should wait). Nothing awaits it, so I/O isolation is respected.
                    let (issuers, refresh) = (ready.issuers.clone(), outcome.background_refresh);
                    let denylist = outcome.denylist_refresh;
                    let work = wasm_bindgen_futures::future_to_promise(async move {
                        // The promise's first poll runs in this task, before the answer leaves:
                        // it only waits for a later task, and the work's own code (compiled on
                        // its first call by a fresh isolate) starts there.
                        timer::sleep(0).await;
                        crate::outline::outline(async move {
                            if let Some(list) = denylist.then_some(()).and(io.ready.denylist.as_ref()) {
                                pipeline::refresh_denylist(list, &io, js_sys::Date::now() as u64).await;
                            }
                            if let Some(issuer) = refresh.and_then(|index| issuers.get(index)) {
                                issuer.store.refresh(js_sys::Date::now() as u64, &io).await;
                            }
                            for issuer in issuers.iter() {
                                issuer.store.write_pending(&io).await;
                            }
                        })
                        .await;
                        Ok(JsValue::UNDEFINED)
                    });
                    io::wait_until(&ctx, &work);
                }
                outcome
            }
            Err(unready) => {
                let broken = Broken { error: &unready.error, gateway: unready.gateway };
                pipeline::handle::<LazyIo, webcrypto::WebCrypto>(&incoming, Err(broken), now).await
            }
        };
        // The body decides: entry.mjs reads at most `limit` + 1 bytes of it and asks again. Nothing
        // was decided yet, so nothing is recorded.
        if let Some(limit) = outcome.needs_body {
            return JsValue::from_str(&format!("{NEEDS_BODY}{limit}"));
        }
        let policy = isolate.as_ref().as_ref().map_or_else(|_| Default::default(), |ready| ready.config.observe);
        let decision = outcome.decision;
        if let (Some(forward), Ok(ready)) = (&outcome.forward, isolate.as_ref()) {
            if let Some(gateway) = &ready.config.gateway {
                let cors = origin::Cors {
                    owned: crate::http::edge_owns_cors(&ready.config.cors),
                    headers: &outcome.response.headers,
                };
                // A forward kept for its head (its header names included: the plan reads them),
                // whose success nobody counts or logs, is marked like a kept answer (entry.mjs
                // keeps its plan) and not held: were the origin to fail, its decision is the
                // pipeline's answer to the same head again (`kept_decision`).
                let names = parts.get(Parts::NAMES);
                let mark = names.filter(|_| observe::records_nothing(&env, policy, &decision)).and_then(|_| {
                    // A plan made with a body is kept only with what checks the next body.
                    let body = match (incoming.body, outcome.kept_body.clone()) {
                        (None, _) => None,
                        (Some(_), Some(kept)) => Some((gateway.mcp_max_body_bytes, kept)),
                        (Some(_), None) => return None,
                    };
                    keep_mark(outcome.fixed, outcome.kept_until, ready, installs_before, now, body)
                });
                // Otherwise the origin's answer comes back in JavaScript (forward.mjs), and the
                // decision waits for it there when it is to be recorded (see `observe::hold`).
                let held = match mark {
                    Some(_) => None,
                    None => observe::hold(&env, policy, decision, incoming.method, now as f64),
                };
                return match origin::plan(&request, names, &incoming, gateway, path_and_query, forward, cors, held) {
                    Some(plan) => JsValue::from_str(&match mark {
                        Some(mark) => mark + &plan,
                        None => plan,
                    }),
                    None => JsValue::from_str(&origin::origin_failed(
                        "unreachable",
                        incoming.origin.map(str::to_owned),
                        held,
                        0.0,
                        mark.map(|_| parts.head.clone()),
                        now as f64,
                        None,
                    )),
                };
            }
        }
        // An answer kept for its head, that nobody counts or logs, is marked so: entry.mjs answers
        // the next request with the same head itself, without calling in.
        let mark = match isolate.as_ref() {
            Ok(ready) if observe::records_nothing(&env, policy, &decision) => {
                keep_mark(outcome.fixed, outcome.kept_until, ready, installs_before, now, None)
            }
            _ => None,
        };
        observe::record(&env, policy, decision, incoming.method, now as f64, None);
        let wire = wire(&outcome.response);
        JsValue::from_str(&match mark {
            Some(mark) => mark + &wire,
            None => wire,
        })
    }
}

/// How `entry.mjs` is told it may keep an answer (or plan) for its head, before the text: `=` for
/// one fixed by the head (`Outcome::fixed`), for as long as the instance lives; `~made,until,
/// installed` and a line break for a token's (`Outcome::kept_until`), while the clock is before
/// `until` and [`installed`] still returns `installed`. `made` is the clock it was made at, given
/// back (with `installed`) if a kept forward's origin fails. A token's answer is not kept when a
/// key set or the deny list's copy was replaced while it was being made (`installs_before`): it
/// was judged on what was there before.
/// A plan kept for an MCP rule's head says, after `installed`, the body limit: each later body is
/// read and checked ([`admits_body`]) against what wasm keeps under the mark's last number, its id.
fn keep_mark(
    fixed: bool,
    kept_until: Option<u64>,
    ready: &Ready,
    installs_before: u64,
    now: u64,
    body: Option<(u64, pipeline::KeptBody)>,
) -> Option<String> {
    if fixed {
        return Some(FIXED.to_string());
    }
    let until = kept_until.filter(|_| ready.installs() == installs_before)?;
    let installed = ready.installed();
    Some(match body {
        Some((limit, kept)) => {
            let id = KEPT_BODIES.with(|kept_bodies| kept_bodies.borrow_mut().keep(kept));
            format!("{KEPT}{now},{until},{installed},{limit},{id}\n")
        }
        None => format!("{KEPT}{now},{until},{installed}\n"),
    })
}

/// What kept MCP plans are checked against, by the id their mark gives `entry.mjs`: the rule and
/// caller ([`pipeline::KeptBody`]), so that a later body is checked without the head being sent,
/// parsed and its token looked up again. As many as `entry.mjs` keeps plans; the oldest goes first,
/// and an id no longer here is answered "no" (the pipeline then runs whole).
#[derive(Default)]
struct KeptBodies {
    next: u32,
    kept: std::collections::VecDeque<(u32, pipeline::KeptBody)>,
}

const MAX_KEPT_BODIES: usize = 256;

impl KeptBodies {
    fn keep(&mut self, kept: pipeline::KeptBody) -> u32 {
        self.next = self.next.wrapping_add(1);
        if self.kept.len() >= MAX_KEPT_BODIES {
            self.kept.pop_front();
        }
        self.kept.push_back((self.next, kept));
        self.next
    }

    fn get(&self, id: u32) -> Option<&pipeline::KeptBody> {
        self.kept.iter().rev().find(|(kept, _)| *kept == id).map(|(_, kept)| kept)
    }
}

thread_local! {
    static KEPT_BODIES: RefCell<KeptBodies> = RefCell::default();
}

/// Whether `body` passes the MCP rule of the plan kept under `id` (see
/// `pipeline::admits_kept_body`); `info` as `fetch` takes it.
#[wasm_bindgen]
pub fn admits_body(id: u32, body: Vec<u8>, info: String) -> bool {
    let Some(ready) = ready() else { return false };
    let mut lines = info.split('\n');
    let mut next = || lines.next().filter(|line| !line.is_empty());
    let body = Body { bytes: &body, media_type: next(), encoding: next(), declared_over: next() == Some("1") };
    KEPT_BODIES.with(|kept| {
        kept.borrow().get(id).is_some_and(|kept| pipeline::admits_kept_body(kept, body, &ready.config, &ready.rules))
    })
}

/// What a kept token answer is checked against in `entry.mjs` on each use: changes whenever an
/// issuer's key set or the deny list's copy is replaced. NaN (equal to nothing) before the
/// configuration is read.
#[wasm_bindgen]
pub fn installed() -> f64 {
    // Below 2^53: exact as a JavaScript number.
    ready().map_or(f64::NAN, |ready| ready.installed() as f64)
}

/// The decision for `head`, whose forward `serve` marked kept (`keep_mark`) at `made` and did not
/// hold, to record its refusal with. Made again by the pipeline, at `made`, when that gives the
/// same decision with no side effect: an answer fixed by the head (`installed` is `None`) reads
/// nothing else; a token's, while the instance still has what it had installed then
/// (`installed`), finds its token in the cache and, at that clock, keys and a deny list that ask
/// for no refresh, so nothing is claimed, spent, logged or evicted. Otherwise (a key set or the
/// deny list replaced since, the token no longer cached) the pipeline is not run for a log line:
/// the decision names the rule alone.
fn kept_decision(
    head: String,
    made: u64,
    installed: Option<f64>,
    ready: &Rc<Ready>,
) -> (crate::operate::decision::Decision, String) {
    let parts = Parts::parse(head);
    let (incoming, _) = parts.incoming();
    if installed.is_none_or(|installed| installed == ready.installed() as f64) {
        let io = LazyIo { env: JsValue::UNDEFINED, ready: ready.clone(), io: OnceCell::new() };
        let setup = ready.setup(&io);
        let mut run = std::pin::pin!(pipeline::handle(&incoming, Ok(setup), made));
        if let Poll::Ready(outcome) = run.as_mut().poll(&mut TaskContext::from_waker(Waker::noop())) {
            if outcome.fixed || outcome.kept_until.is_some() {
                return (outcome.decision, incoming.method.to_owned());
            }
        }
    }
    let rule = match ready.rules.find(incoming.method, incoming.path) {
        crate::gateway::rules::Match::Rule(rule) => Some(rule.path.clone()),
        _ => None,
    };
    let decision = crate::operate::decision::Decision {
        rule,
        status: 200,
        reason: crate::operate::decision::Reason::Ok,
        issuer: None,
        kid: None,
        cache: None,
        mcp_method: None,
        mcp_tool: None,
    };
    (decision, incoming.method.to_owned())
}

/// The isolate's configuration, if it was read (for answers made outside a request's pipeline).
/// Whether the token an open relay was admitted with is revoked now (`forward.mjs` asks every
/// `every` ms of the check it was given, and closes both sockets with 1008 when it is).
#[wasm_bindgen]
pub async fn relay_revoked(check: String, env: JsValue) -> bool {
    let (Some(ready), Some(check)) = (ready(), pipeline::RelayRevocation::from_json(&check)) else { return false };
    let io = LazyIo { env, ready: ready.clone(), io: OnceCell::new() };
    let now = js_sys::Date::now() as u64;
    pipeline::relay_revoked(&check, ready.denylist.as_ref(), ready.fleet.as_ref(), &io, now).await
}

fn ready() -> Option<Rc<Ready>> {
    ISOLATE.with(|cell| cell.get().and_then(|isolate| isolate.as_ref().as_ref().ok().cloned()))
}

/// The key store's runtime side, built only when a request needs it: most requests are served
/// from isolate memory and never touch KV, the Cache API or the issuer.
struct LazyIo {
    env: JsValue,
    ready: Rc<Ready>,
    io: OnceCell<io::WorkerIo>,
}

impl LazyIo {
    fn get(&self) -> &io::WorkerIo {
        self.io.get_or_init(|| io::WorkerIo::new(&self.env, &self.ready.config))
    }
}

impl KeyIo for LazyIo {
    fn has_tier(&self, tier: SharedTier) -> bool {
        self.get().has_tier(tier)
    }

    async fn load(&self, tier: SharedTier, source: &JwksSource<'_>) -> Option<String> {
        self.get().load(tier, source).await
    }

    async fn store(&self, tier: SharedTier, source: &JwksSource<'_>, document: &str) -> Result<(), String> {
        self.get().store(tier, source, document).await
    }

    async fn fetch_issuer(&self, source: &JwksSource<'_>) -> Result<Vec<u8>, FetchError> {
        self.get().fetch_issuer(source).await
    }

    async fn sleep(&self, ms: u64) -> u64 {
        self.get().sleep(ms).await
    }

    fn log(&self, event: &'static str, line: &str) {
        observe::emit(event, "", line, false);
    }
}

impl crate::gateway::limits::RateLimiter for LazyIo {
    /// `binding.limit({ key })`, its `success` read; any throw or odd answer is an `Err`.
    async fn spend(&self, binding: &str, key: &str) -> Result<bool, String> {
        let binding = rate_limiter(&self.env, binding).ok_or("not a rate limiter")?;
        let limit: js_sys::Function =
            js_sys::Reflect::get(&binding, &JsValue::from_str("limit")).map_err(|_| "no limit")?.unchecked_into();
        let options = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&options, &JsValue::from_str("key"), &JsValue::from_str(key));
        let promise = limit.call1(&binding, &options).map_err(|_| "limit threw")?;
        let outcome = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&promise))
            .await
            .map_err(|_| "limit rejected")?;
        js_sys::Reflect::get(&outcome, &JsValue::from_str("success"))
            .ok()
            .and_then(|success| success.as_bool())
            .ok_or_else(|| "limit answered without success".into())
    }
}

impl DenyIo for LazyIo {
    async fn list_denied(&self) -> Result<Vec<DeniedEntry>, String> {
        self.get().list_denied().await
    }
}

impl FleetReplay for LazyIo {
    async fn use_jti(&self, thumbprint: &str, jti: &str, keep_through: i64) -> Result<FleetUse, String> {
        self.get().use_jti(thumbprint, jti, keep_through).await
    }
}

impl FleetRevocationIo for LazyIo {
    async fn list_revoked(&self) -> Result<(u64, Vec<DeniedEntry>), String> {
        self.get().list_revoked().await
    }
}

/// Opens an answer's wire text when the same head always gets that answer (see `entry.mjs`).
const FIXED: char = '=';
/// Opens an answer's wire text (or plan) kept for its head for a while (see `keep_mark`).
const KEPT: char = '~';
/// Marks an answer that is a request for the body, with the most bytes it may have (`?1048576`).
const NEEDS_BODY: char = '?';

/// A response as `entry.mjs` hands it to the runtime (`HttpResponse::to_wire`, one crossing).
fn wire(response: &HttpResponse) -> String {
    response.to_wire().unwrap_or_else(fallback)
}

/// Never let an answer that cannot be handed over become the runtime's own error page.
fn fallback() -> String {
    observe::emit("internal_error", "", r#"{"component":"edge-auth","event":"internal_error"}"#, true);
    crate::http::internal_error().to_wire().unwrap_or_else(|| "500".into())
}
