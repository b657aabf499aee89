//! Keeping the issuer's keys close: isolate memory first, then the shared tiers (Cache API per
//! data centre, Workers KV globally), then the issuer itself.
//!
//! The policy lives here, free of the runtime: I/O comes in through [`KeyIo`] and time through
//! `now` parameters (and the time a [`KeyIo::sleep`] ends), so every branch is tested on the host
//! with fakes and a hand-set clock.
//!
//! Workers trap, written down because the design depends on it: a promise or fetch begun by one
//! request cannot be awaited by another (I/O isolation). So concurrent requests never share an
//! in-flight fetch. Instead one request at a time looks beyond memory (a mark set before its first
//! await), and the issuer is asked at most once per cooldown (stamped before the fetch starts). A
//! request with no usable keys that finds a lookup under way waits on a timer of its own and looks
//! at memory again, where that lookup's keys land.

use std::{cell::RefCell, future::Future, rc::Rc};

use serde_json::json;

use crate::{
    config::vars::Vars,
    error::{ApiError, ConfigError, TokenProblem},
    json::ObjectWriter,
    keys::jwks::{JwksError, KeySet, VerificationKey},
    outline::outline,
};

/// How long fetched keys count as fresh before a background refresh.
pub const DEFAULT_JWKS_MAX_AGE_SECONDS: u64 = 600;
/// The least time between two issuer fetches from one isolate (and, through the shared tiers'
/// fetch time, from a fleet of them).
pub const DEFAULT_JWKS_COOLDOWN_SECONDS: u64 = 30;
/// How long stale keys may be served while the issuer is failing.
pub const DEFAULT_JWKS_STALE_IF_ERROR_SECONDS: u64 = 7 * 24 * 3600;
/// How long one issuer fetch (connect, headers and body) may take.
pub const DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS: u64 = 5;

/// Timings of the key cache, all in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksPolicy {
    pub max_age_ms: u64,
    pub cooldown_ms: u64,
    pub stale_if_error_ms: u64,
    pub fetch_timeout_ms: u64,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            max_age_ms: DEFAULT_JWKS_MAX_AGE_SECONDS * 1000,
            cooldown_ms: DEFAULT_JWKS_COOLDOWN_SECONDS * 1000,
            stale_if_error_ms: DEFAULT_JWKS_STALE_IF_ERROR_SECONDS * 1000,
            fetch_timeout_ms: DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS * 1000,
        }
    }
}

impl JwksPolicy {
    /// `JWKS_MAX_AGE_SECONDS`, `JWKS_COOLDOWN_SECONDS`, `JWKS_STALE_IF_ERROR_SECONDS`,
    /// `JWKS_FETCH_TIMEOUT_SECONDS`.
    pub fn from_vars(vars: &Vars) -> Result<JwksPolicy, ConfigError> {
        let day = 24 * 3600;
        Ok(JwksPolicy {
            max_age_ms: 1000 * vars.seconds("JWKS_MAX_AGE_SECONDS", DEFAULT_JWKS_MAX_AGE_SECONDS, 1, 30 * day)?,
            cooldown_ms: 1000 * vars.seconds("JWKS_COOLDOWN_SECONDS", DEFAULT_JWKS_COOLDOWN_SECONDS, 1, day)?,
            stale_if_error_ms: 1000
                * vars.seconds("JWKS_STALE_IF_ERROR_SECONDS", DEFAULT_JWKS_STALE_IF_ERROR_SECONDS, 0, 365 * day)?,
            fetch_timeout_ms: 1000
                * vars.seconds("JWKS_FETCH_TIMEOUT_SECONDS", DEFAULT_JWKS_FETCH_TIMEOUT_SECONDS, 1, 30)?,
        })
    }
}

/// How often a request waiting on another request's lookup looks at memory again.
const WAIT_STEP_MS: u64 = 25;

/// A stored fetch time up to this far ahead of our clock is clock skew between machines and read
/// as now; further ahead it is a wrong clock or a hand-made copy (see [`KeyStore::decode`]).
const CLOCK_SKEW_TOLERANCE_MS: u64 = 60_000;

/// The tiers shared between isolates. Either may be absent (no binding) or never hit
/// (the Cache API is a no-op on `*.workers.dev`); the policy must hold without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedTier {
    Cache,
    Kv,
}

impl SharedTier {
    const ALL: [SharedTier; 2] = [SharedTier::Cache, SharedTier::Kv];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            SharedTier::Cache => "cache",
            SharedTier::Kv => "kv",
        }
    }
}

/// Where the keys in memory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Issuer,
    Cache,
    Kv,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Issuer => "issuer",
            Source::Cache => "cache",
            Source::Kv => "kv",
        }
    }
}

impl From<SharedTier> for Source {
    fn from(tier: SharedTier) -> Self {
        match tier {
            SharedTier::Cache => Source::Cache,
            SharedTier::Kv => Source::Kv,
        }
    }
}

/// Why an issuer fetch gave no keys. A failed fetch never replaces keys already held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Network,
    Timeout,
    Status(u16),
    TooLarge,
    Invalid(JwksError),
}

impl FetchError {
    pub fn reason(&self) -> String {
        match self {
            Self::Network => "network error".into(),
            Self::Timeout => "timeout".into(),
            Self::Status(code) => format!("HTTP status {code}"),
            Self::TooLarge => "response too large".into(),
            Self::Invalid(e) => e.as_str().into(),
        }
    }
}

/// The runtime side of key storage. Loads answer `None` on a miss, an absent binding or an error:
/// to the policy all three mean "nothing usable here".
///
/// One runtime side serves every issuer's store: each call names the issuer and JWKS URL it is
/// about ([`JwksSource`]), so that tiers keep each issuer's copy under its own key.
pub trait KeyIo {
    fn has_tier(&self, tier: SharedTier) -> bool;
    fn load(&self, tier: SharedTier, source: &JwksSource<'_>) -> impl Future<Output = Option<String>>;
    /// `Err` holds a short reason for the log (never the document).
    fn store(
        &self,
        tier: SharedTier,
        source: &JwksSource<'_>,
        document: &str,
    ) -> impl Future<Output = Result<(), String>>;
    fn fetch_issuer(&self, source: &JwksSource<'_>) -> impl Future<Output = Result<Vec<u8>, FetchError>>;
    /// Waits `ms` on a timer of this request's own, and answers the time then (ms since the epoch).
    /// The time comes back from the wait rather than from a clock the store would read, so the
    /// store still takes time only from outside, and host tests drive both with one fake clock.
    fn sleep(&self, ms: u64) -> impl Future<Output = u64>;
    /// One structured line per key event. Never given token text or key material beyond `kid`s.
    /// `event` is the line's fixed event name: the edge bounds how many lines of each it prints
    /// (`decision::LogLimiter`), so a flood of bad tokens cannot flood the log.
    fn log(&self, event: &'static str, line: &str);
}

/// Whose keys a tier or fetch call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksSource<'a> {
    pub issuer: &'a str,
    pub jwks_url: &'a str,
}

/// A JWKS document as the shared tiers keep it: the raw issuer document plus when it was fetched
/// and for which issuer and URL, so that two configurations can never mix keys.
#[derive(Debug, Clone)]
struct StoredJwks {
    v: u8,
    issuer: String,
    jwks_url: String,
    fetched_at_ms: u64,
    jwks: String,
}

impl StoredJwks {
    fn to_json(&self) -> String {
        ObjectWriter::default()
            .number("v", self.v.into())
            .text("issuer", &self.issuer)
            .text("jwks_url", &self.jwks_url)
            .number("fetched_at_ms", self.fetched_at_ms)
            .text("jwks", &self.jwks)
            .finish()
    }

    /// Every member present and of its type; others are ignored (a later version may add some).
    fn from_json(text: &str) -> Option<StoredJwks> {
        let stored = crate::json::parse_object(text.as_bytes()).ok()?;
        let text = |name: &str| stored.get(name)?.as_str().map(str::to_owned);
        Some(StoredJwks {
            v: u8::try_from(stored.get("v")?.as_u64()?).ok()?,
            issuer: text("issuer")?,
            jwks_url: text("jwks_url")?,
            fetched_at_ms: stored.get("fetched_at_ms")?.as_u64()?,
            jwks: text("jwks")?,
        })
    }
}

#[derive(Debug, Clone)]
struct Snapshot {
    keys: Rc<KeySet>,
    fetched_at_ms: u64,
    source: Source,
}

/// What this isolate last read from, or wrote to, one shared tier. The write rule and the status
/// route work from this, so neither reads the tier again.
#[derive(Debug, Default)]
struct TierState {
    /// `None`: empty, unusable, or not looked at yet.
    copy: Option<(u64, Rc<KeySet>)>,
    /// A failed write is logged when it starts failing, not on every attempt.
    write_failing: bool,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Option<Snapshot>,
    /// When this isolate last started an issuer fetch (foreground or background).
    last_attempt_ms: Option<u64>,
    last_failure_ms: Option<u64>,
    /// Since when one of this isolate's requests has been looking beyond memory.
    lookup_since_ms: Option<u64>,
    shared: [TierState; 2],
    /// Copies due to a shared tier, written after the answer ([`KeyStore::write_pending`]): the
    /// newest per tier. A write never delays the request whose fetch or load made it due.
    pending: [Option<PendingWrite>; 2],
    /// How many key sets this isolate has installed: an answer kept for its head
    /// ([`crate::pipeline::Outcome::kept_until`]) holds only while this stays the same.
    installed: u64,
}

/// What a shared tier is to be written with: a copy read from the other tier, as it was read, or
/// a fetched document, written out as text only when the write is made (after the answer).
#[derive(Debug)]
enum Document {
    Read(String),
    Fetched(Rc<StoredJwks>),
}

impl Document {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Document::Read(text) => text.into(),
            Document::Fetched(stored) => stored.to_json().into(),
        }
    }
}

#[derive(Debug)]
struct PendingWrite {
    document: Document,
    copy: (u64, Rc<KeySet>),
}

/// A key ready for the signature check, and whether the caller should refresh in the background.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub key: VerificationKey,
    pub background_refresh: bool,
}

/// The keys of one issuer and JWKS URL, held in isolate memory.
#[derive(Debug)]
pub struct KeyStore {
    issuer: String,
    jwks_url: String,
    policy: JwksPolicy,
    state: RefCell<State>,
}

/// The one lookup beyond memory under way in this isolate; dropping it (the lookup ended, or its
/// request was cancelled) lets the next one start.
struct Lookup<'a>(&'a RefCell<State>);

impl Drop for Lookup<'_> {
    fn drop(&mut self) {
        self.0.borrow_mut().lookup_since_ms = None;
    }
}

impl KeyStore {
    pub fn new(issuer: &str, jwks_url: &str, policy: JwksPolicy) -> Self {
        // Keys must be refreshable by the time they go stale: a cooldown past max-age would hold
        // stale keys (with no stale-if-error, no keys at all) until it ends.
        let policy = JwksPolicy { cooldown_ms: policy.cooldown_ms.min(policy.max_age_ms), ..policy };
        Self { issuer: issuer.into(), jwks_url: jwks_url.into(), policy, state: RefCell::default() }
    }

    pub fn source(&self) -> JwksSource<'_> {
        JwksSource { issuer: &self.issuer, jwks_url: &self.jwks_url }
    }

    /// The key a token names, from the closest tier that has it.
    ///
    /// - Keys fresher than max-age are used as they are.
    /// - Older keys are still used (stale-while-revalidate) and the caller is asked to refresh in
    ///   the background, at most once per cooldown.
    /// - Keys older than max-age + stale-if-error are not trusted: the request looks in the shared
    ///   tiers, then the issuer; 503 only when no tier has keys and the issuer cannot give them.
    /// - An unknown `kid` refetches once per cooldown; during the cooldown it is simply unknown.
    pub async fn resolve(&self, kid: Option<&str>, now: u64, io: &impl KeyIo) -> Result<Resolved, ApiError> {
        match self.usable_snapshot(now) {
            Some(held) => self.select(kid, held, now, io).await,
            None => outline(self.resolve_without_keys(kid, now, io)).await,
        }
    }

    async fn select(&self, kid: Option<&str>, held: Snapshot, now: u64, io: &impl KeyIo) -> Result<Resolved, ApiError> {
        match held.keys.select(kid) {
            Ok(key) => Ok(Resolved { key: key.clone(), background_refresh: self.claim_background_refresh(&held, now) }),
            Err(TokenProblem::UnknownKey) => outline(self.resolve_unknown_kid(kid, &held, now, io)).await,
            Err(problem) => Err(ApiError::InvalidToken(problem)),
        }
    }

    /// The background refresh asked for by [`Self::resolve`]: adopt a fresher copy another isolate
    /// left in the shared tiers, or fetch from the issuer.
    pub async fn refresh(&self, now: u64, io: &impl KeyIo) {
        let Some(_lookup) = self.begin_lookup(now) else { return };
        self.adopt_shared(now, io).await;
        let fresh = self.snapshot().is_some_and(|s| self.age(&s, now) < self.policy.max_age_ms);
        if !fresh {
            let _ = self.fetch(now, io).await;
        }
    }

    /// No usable keys in memory: a cold isolate, keys past max-age with no stale-if-error left, or
    /// past stale-if-error during an outage. One request looks beyond memory; the others wait for
    /// its keys on their own timers, up to the fetch timeout.
    async fn resolve_without_keys(&self, kid: Option<&str>, now: u64, io: &impl KeyIo) -> Result<Resolved, ApiError> {
        let give_up_at = now.saturating_add(self.policy.fetch_timeout_ms);
        let mut now = now;
        let mut waited = false;
        loop {
            if let Some(held) = self.usable_snapshot(now) {
                return self.select(kid, held, now, io).await;
            }
            if let Some(lookup) = self.begin_lookup(now) {
                // The lookup waited on ended without keys: another one now would only repeat it.
                if waited {
                    return Err(self.unavailable(now));
                }
                return self.look_beyond_memory(lookup, kid, now, io).await;
            }
            if now >= give_up_at {
                return Err(self.unavailable(now));
            }
            now = io.sleep(WAIT_STEP_MS).await;
            waited = true;
        }
    }

    /// The shared tiers first, whatever the cooldown says (another isolate may have keys there);
    /// then the issuer, if the cooldown allows.
    async fn look_beyond_memory(
        &self,
        lookup: Lookup<'_>,
        kid: Option<&str>,
        now: u64,
        io: &impl KeyIo,
    ) -> Result<Resolved, ApiError> {
        if outline(self.adopt_shared(now, io)).await {
            if let Some(held) = self.usable_snapshot(now) {
                drop(lookup);
                return self.select(kid, held, now, io).await;
            }
        }
        if !self.claim_fetch(now) {
            return Err(self.unavailable(now));
        }
        match outline(self.fetch(now, io)).await {
            Ok(keys) => just_fetched(&keys, kid),
            Err(_) => Err(self.unavailable(now)),
        }
    }

    async fn resolve_unknown_kid(
        &self,
        kid: Option<&str>,
        held: &Snapshot,
        now: u64,
        io: &impl KeyIo,
    ) -> Result<Resolved, ApiError> {
        let unknown = Err(ApiError::InvalidToken(TokenProblem::UnknownKey));
        // Everything is decided before the first await, so a flood of unknown kids costs one lookup.
        let lookup = if self.remaining(held.fetched_at_ms, now) > 0 { None } else { self.begin_lookup(now) };
        let Some(_lookup) = lookup.filter(|_| self.claim_fetch(now)) else {
            self.log(io, "cooldown_hit", |line| line.maybe_text("kid", kid.map(truncate_kid).as_deref()));
            return unknown;
        };

        // Another isolate may have fetched the rotated keys already.
        if outline(self.adopt_shared(now, io)).await {
            if let Some(current) = self.snapshot() {
                if current.keys.select(kid).is_ok() {
                    return just_fetched(&current.keys, kid);
                }
                if self.remaining(current.fetched_at_ms, now) > 0 {
                    self.log(io, "cooldown_hit", |line| {
                        line.maybe_text("kid", kid.map(truncate_kid).as_deref()).text("tier", current.source.name())
                    });
                    return unknown;
                }
            }
        }
        match outline(self.fetch(now, io)).await {
            Ok(keys) => just_fetched(&keys, kid),
            Err(_) => unknown,
        }
    }

    /// Fetches from the issuer; on success the new set replaces memory, and the shared tiers
    /// that need it (see [`Self::needs_write`]).
    async fn fetch(&self, now: u64, io: &impl KeyIo) -> Result<Rc<KeySet>, FetchError> {
        self.state.borrow_mut().last_attempt_ms = Some(now);
        let result = match io.fetch_issuer(&self.source()).await {
            Ok(body) => KeySet::parse(&body).map(|keys| (keys, body)).map_err(FetchError::Invalid),
            Err(e) => Err(e),
        };
        let (keys, body) = match result {
            Ok(ok) => ok,
            Err(error) => {
                let held = {
                    let mut state = self.state.borrow_mut();
                    state.last_failure_ms = Some(now);
                    state.snapshot.clone()
                };
                self.log(io, "fetch_failed", |line| line.text("reason", &error.reason()));
                if let Some(held) = held {
                    self.log(io, "served_stale", |line| {
                        line.text("source", held.source.name())
                            .number("age_s", self.age(&held, now) / 1000)
                            .texts("kids", held.keys.kids().iter().map(String::as_str))
                    });
                }
                return Err(error);
            }
        };
        let keys = Rc::new(keys);
        let previous = self.install(Snapshot { keys: keys.clone(), fetched_at_ms: now, source: Source::Issuer });
        let changed = previous.as_ref().is_none_or(|p| *p.keys != *keys);
        let event = if previous.is_none() { "fetched" } else { "refreshed" };
        self.log(io, event, |line| {
            line.boolean("changed", changed).texts("kids", keys.kids().iter().map(String::as_str))
        });

        let tiers: Vec<SharedTier> =
            SharedTier::ALL.into_iter().filter(|&t| io.has_tier(t) && self.needs_write(t, &keys, now)).collect();
        if !tiers.is_empty() {
            // The body was parsed as JSON above, so it is valid UTF-8.
            let document = StoredJwks {
                v: 1,
                issuer: self.issuer.clone(),
                jwks_url: self.jwks_url.clone(),
                fetched_at_ms: now,
                jwks: String::from_utf8_lossy(&body).into_owned(),
            };
            // Written out after the answer, with the write (`write_pending`).
            let document = Rc::new(document);
            for tier in tiers {
                self.queue_write(tier, Document::Fetched(document.clone()), (now, keys.clone()));
            }
        }
        Ok(keys)
    }

    /// A fetched set goes to a shared tier only when it differs from the copy there, or that copy
    /// is half of max-age old or more. Refetches (at most one per cooldown, e.g. for unknown kids)
    /// would otherwise each be a KV write, and KV takes one write per second per key and 1,000 a
    /// day on the Free plan. Half of max-age keeps the copy young enough that isolates loading it
    /// find it fresh rather than refetching.
    fn needs_write(&self, tier: SharedTier, keys: &KeySet, now: u64) -> bool {
        match &self.state.borrow().shared[tier.index()].copy {
            Some((fetched_at_ms, copy)) => {
                **copy != *keys || now.saturating_sub(*fetched_at_ms) >= self.policy.max_age_ms / 2
            }
            None => true,
        }
    }

    fn queue_write(&self, tier: SharedTier, document: Document, copy: (u64, Rc<KeySet>)) {
        self.state.borrow_mut().pending[tier.index()] = Some(PendingWrite { document, copy });
    }

    /// Whether a shared tier has a copy due: the edge then calls [`Self::write_pending`] after
    /// the answer (`ctx.waitUntil`), so no request waits for a KV or Cache write.
    pub fn has_pending_writes(&self) -> bool {
        self.state.borrow().pending.iter().any(Option::is_some)
    }

    /// Writes what is due to the shared tiers. Each copy is taken before its write starts, so two
    /// requests that both call this never write it twice (one writer per isolate), and the write
    /// rule ([`Self::needs_write`]) and the once-only `store_failed` line hold as before.
    pub async fn write_pending(&self, io: &impl KeyIo) {
        for tier in SharedTier::ALL {
            let due = self.state.borrow_mut().pending[tier.index()].take();
            if let Some(PendingWrite { document, copy }) = due {
                self.write(tier, &document.text(), copy, io).await;
            }
        }
    }

    async fn write(&self, tier: SharedTier, document: &str, copy: (u64, Rc<KeySet>), io: &impl KeyIo) {
        let result = io.store(tier, &self.source(), document).await;
        let newly_failing = {
            let mut state = self.state.borrow_mut();
            let known = &mut state.shared[tier.index()];
            let was_failing = std::mem::replace(&mut known.write_failing, result.is_err());
            if result.is_ok() {
                known.copy = Some(copy);
            }
            result.is_err() && !was_failing
        };
        if let (true, Err(reason)) = (newly_failing, result) {
            let reason: String = reason.chars().take(200).collect();
            self.log(io, "store_failed", |line| line.text("tier", tier.name()).text("reason", &reason));
        }
    }

    /// Loads the freshest copy from the shared tiers and adopts it if it is newer than memory.
    /// The Cache API (local, cheap) is read first; KV only when the cache has nothing fresh.
    async fn adopt_shared(&self, now: u64, io: &impl KeyIo) -> bool {
        let cached = self.load_tier(SharedTier::Cache, now, io).await;
        let cache_fresh = cached.as_ref().is_some_and(|(_, s)| self.age(s, now) < self.policy.max_age_ms);
        let best = if cache_fresh {
            cached.clone()
        } else {
            let from_kv = self.load_tier(SharedTier::Kv, now, io).await;
            match (cached.clone(), from_kv) {
                (Some(c), Some(k)) => Some(if k.1.fetched_at_ms > c.1.fetched_at_ms { k } else { c }),
                (c, k) => c.or(k),
            }
        };
        let Some((document, snapshot)) = best else { return false };
        let newer = self.snapshot().is_none_or(|held| snapshot.fetched_at_ms > held.fetched_at_ms);
        if !newer {
            return false;
        }
        if snapshot.source == Source::Kv && cached.as_ref().is_none_or(|c| c.1.fetched_at_ms < snapshot.fetched_at_ms) {
            self.queue_write(
                SharedTier::Cache,
                Document::Read(document),
                (snapshot.fetched_at_ms, snapshot.keys.clone()),
            );
        }
        self.log(io, "loaded", |line| {
            line.text("source", snapshot.source.name())
                .number("age_s", self.age(&snapshot, now) / 1000)
                .texts("kids", snapshot.keys.kids().iter().map(String::as_str))
        });
        self.install(snapshot);
        true
    }

    /// One shared tier's copy, if it is well-formed, for this issuer and URL, and usable keys.
    /// What was found is remembered for the write rule and the status route.
    async fn load_tier(&self, tier: SharedTier, now: u64, io: &impl KeyIo) -> Option<(String, Snapshot)> {
        if !io.has_tier(tier) {
            return None;
        }
        let text = io.load(tier, &self.source()).await;
        let loaded = text.and_then(|text| match self.decode(&text, tier, now) {
            Some(snapshot) => Some((text, snapshot)),
            None => {
                self.log(io, "ignored_tier", |line| {
                    line.text("tier", tier.name()).text("reason", "unusable stored JWKS")
                });
                None
            }
        });
        self.state.borrow_mut().shared[tier.index()].copy =
            loaded.as_ref().map(|(_, s)| (s.fetched_at_ms, s.keys.clone()));
        loaded
    }

    fn decode(&self, text: &str, tier: SharedTier, now: u64) -> Option<Snapshot> {
        let stored = StoredJwks::from_json(text)?;
        if stored.v != 1 || stored.issuer != self.issuer || stored.jwks_url != self.jwks_url {
            return None;
        }
        let keys = KeySet::parse(stored.jwks.as_bytes()).ok()?;
        // A fetch time far ahead (a writer with a wrong clock, a hand-made `wrangler kv` write) is
        // not believed: taken as now at every load, the copy would stay fresh, and its cooldown
        // running, forever. It counts as just past max-age instead: still served, refreshed at
        // once, and replaced by that fetch.
        let fetched_at_ms = if stored.fetched_at_ms > now.saturating_add(CLOCK_SKEW_TOLERANCE_MS) {
            now.saturating_sub(self.policy.max_age_ms)
        } else {
            stored.fetched_at_ms.min(now)
        };
        Some(Snapshot { keys: Rc::new(keys), fetched_at_ms, source: tier.into() })
    }

    fn install(&self, snapshot: Snapshot) -> Option<Snapshot> {
        let mut state = self.state.borrow_mut();
        state.installed = state.installed.wrapping_add(1);
        state.snapshot.replace(snapshot)
    }

    /// Changes whenever the held key set is replaced (fetched, or adopted from a shared tier).
    pub fn installed(&self) -> u64 {
        self.state.borrow().installed
    }

    /// Until when a held key is used as it is, with no refresh asked (its copy's max-age); `None`
    /// with no keys held.
    pub fn fresh_until(&self) -> Option<u64> {
        self.state.borrow().snapshot.as_ref().map(|s| s.fetched_at_ms.saturating_add(self.policy.max_age_ms))
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.state.borrow().snapshot.clone()
    }

    fn usable_snapshot(&self, now: u64) -> Option<Snapshot> {
        let limit = self.policy.max_age_ms.saturating_add(self.policy.stale_if_error_ms);
        self.snapshot().filter(|s| self.age(s, now) <= limit)
    }

    fn age(&self, snapshot: &Snapshot, now: u64) -> u64 {
        now.saturating_sub(snapshot.fetched_at_ms)
    }

    /// Milliseconds left of a cooldown that began at `since`.
    fn remaining(&self, since: u64, now: u64) -> u64 {
        since.saturating_add(self.policy.cooldown_ms).saturating_sub(now)
    }

    /// Marks a lookup beyond memory as under way, unless one already is. A lookup is two shared
    /// reads and one fetch bounded by the fetch timeout; a mark older than twice that timeout was
    /// left by a request the runtime cancelled before its lookup could end.
    fn begin_lookup(&self, now: u64) -> Option<Lookup<'_>> {
        if self.lookup_under_way(now) {
            return None;
        }
        self.state.borrow_mut().lookup_since_ms = Some(now);
        Some(Lookup(&self.state))
    }

    fn lookup_under_way(&self, now: u64) -> bool {
        let since = self.state.borrow().lookup_since_ms;
        since.is_some_and(|since| now < since.saturating_add(2 * self.policy.fetch_timeout_ms))
    }

    /// The one issuer fetch per cooldown, stamped before any await.
    fn claim_fetch(&self, now: u64) -> bool {
        let mut state = self.state.borrow_mut();
        if state.last_attempt_ms.is_some_and(|at| self.remaining(at, now) > 0) {
            return false;
        }
        state.last_attempt_ms = Some(now);
        true
    }

    /// 503, with `Retry-After` at the end of the current cooldown (at least a second).
    fn unavailable(&self, now: u64) -> ApiError {
        let remaining = self.state.borrow().last_attempt_ms.map_or(0, |at| self.remaining(at, now));
        ApiError::KeysUnavailable { retry_after_secs: remaining.div_ceil(1000).max(1) }
    }

    fn claim_background_refresh(&self, held: &Snapshot, now: u64) -> bool {
        if self.age(held, now) < self.policy.max_age_ms || self.remaining(held.fetched_at_ms, now) > 0 {
            return false;
        }
        !self.lookup_under_way(now) && self.claim_fetch(now)
    }

    /// One line: the component, the event and the issuer, then `fields`.
    fn log(&self, io: &impl KeyIo, event: &'static str, fields: impl FnOnce(ObjectWriter) -> ObjectWriter) {
        let line = ObjectWriter::default()
            .text("component", "edge-auth.jwks")
            .text("event", event)
            .text("issuer", &self.issuer);
        io.log(event, &fields(line).finish());
    }

    /// What each tier holds, for the status route, from isolate memory only: the shared tiers as
    /// this isolate last read or wrote them. No tier is read and no JWKS parsed per call.
    pub fn status(&self, now: u64, io: &impl KeyIo) -> serde_json::Value {
        let state = self.state.borrow();
        let describe = |copy: Option<(u64, &KeySet)>| match copy {
            Some((fetched_at_ms, keys)) => {
                json!({ "present": true, "kids": keys.kids(), "age_seconds": now.saturating_sub(fetched_at_ms) / 1000 })
            }
            None => json!({ "present": false }),
        };
        let mut memory = describe(state.snapshot.as_ref().map(|s| (s.fetched_at_ms, &*s.keys)));
        if let (Some(s), Some(map)) = (&state.snapshot, memory.as_object_mut()) {
            map.insert("source".into(), json!(s.source.name()));
        }
        let mut tiers = serde_json::Map::new();
        tiers.insert("memory".into(), memory);
        for tier in SharedTier::ALL {
            let known = &state.shared[tier.index()];
            let mut value = describe(known.copy.as_ref().map(|(at, keys)| (*at, &**keys)));
            if let Some(map) = value.as_object_mut() {
                map.insert("available".into(), io.has_tier(tier).into());
                map.insert("write_failing".into(), known.write_failing.into());
            }
            tiers.insert(tier.name().into(), value);
        }
        let ago = |t: Option<u64>| t.map(|t| now.saturating_sub(t) / 1000);
        json!({
            "issuer": self.issuer,
            "jwks_url": self.jwks_url,
            "tiers": tiers,
            "last_fetch_attempt_seconds_ago": ago(state.last_attempt_ms),
            "last_fetch_failure_seconds_ago": ago(state.last_failure_ms),
        })
    }
}

/// A key from a set fetched or adopted during this very request: no refresh is due.
fn just_fetched(keys: &KeySet, kid: Option<&str>) -> Result<Resolved, ApiError> {
    keys.select(kid).map(|key| Resolved { key: key.clone(), background_refresh: false }).map_err(ApiError::InvalidToken)
}

/// `kid`s come from untrusted tokens: bound what a log line can carry.
fn truncate_kid(kid: &str) -> String {
    kid.chars().take(64).collect()
}
