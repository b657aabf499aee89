//! Keeping the issuer's keys close: isolate memory first, then the shared tiers (Cache API per
//! data centre, Workers KV globally), then the issuer itself.
//!
//! The policy lives here, free of the runtime: I/O comes in through [`KeyIo`] and time through
//! `now` parameters, so every branch is tested on the host with fakes and a hand-set clock.
//!
//! Workers trap, written down because the design depends on it: a promise or fetch begun by one
//! request cannot be awaited by another (I/O isolation). So concurrent requests never share an
//! in-flight fetch; instead the cooldown is stamped *before* a fetch starts, and other requests
//! either serve the keys they have or, with none at all, fetch for themselves.

use std::{cell::RefCell, future::Future, sync::Arc};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    config::JwksPolicy,
    error::{ApiError, TokenProblem},
    jwks::{JwksError, KeySet, VerificationKey},
};

/// The tiers shared between isolates. Either may be absent (no binding) or never hit
/// (the Cache API is a no-op on `*.workers.dev`); the policy must hold without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedTier {
    Cache,
    Kv,
}

/// Where the keys in memory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Issuer,
    Cache,
    Kv,
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
pub trait KeyIo {
    fn has_tier(&self, tier: SharedTier) -> bool;
    fn load(&self, tier: SharedTier) -> impl Future<Output = Option<String>>;
    fn store(&self, tier: SharedTier, document: &str) -> impl Future<Output = ()>;
    fn fetch_issuer(&self) -> impl Future<Output = Result<Vec<u8>, FetchError>>;
    /// One structured line per key event. Never given token text or key material beyond `kid`s.
    fn log(&self, line: &str);
}

/// A JWKS document as the shared tiers keep it: the raw issuer document plus when it was fetched
/// and for which issuer and URL, so that two configurations can never mix keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredJwks {
    v: u8,
    issuer: String,
    jwks_url: String,
    fetched_at_ms: u64,
    jwks: String,
}

#[derive(Debug, Clone)]
struct Snapshot {
    keys: Arc<KeySet>,
    fetched_at_ms: u64,
    source: Source,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Option<Snapshot>,
    /// When this isolate last started an issuer fetch (foreground or background).
    last_attempt_ms: Option<u64>,
    last_failure_ms: Option<u64>,
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

impl KeyStore {
    pub fn new(issuer: &str, jwks_url: &str, policy: JwksPolicy) -> Self {
        Self { issuer: issuer.into(), jwks_url: jwks_url.into(), policy, state: RefCell::default() }
    }

    /// The key a token names, from the closest tier that has it.
    ///
    /// - Keys fresher than max-age are used as they are.
    /// - Older keys are still used (stale-while-revalidate) and the caller is asked to refresh in
    ///   the background, at most once per cooldown.
    /// - Keys older than max-age + stale-if-error are not trusted: a foreground fetch or 503.
    /// - An unknown `kid` refetches once per cooldown; during the cooldown it is simply unknown.
    pub async fn resolve(&self, kid: Option<&str>, now: u64, io: &impl KeyIo) -> Result<Resolved, ApiError> {
        let Some(snapshot) = self.usable_snapshot(now) else {
            return self.resolve_without_keys(kid, now, io).await;
        };
        self.select(kid, snapshot, now, io).await
    }

    async fn select(
        &self,
        kid: Option<&str>,
        snapshot: Snapshot,
        now: u64,
        io: &impl KeyIo,
    ) -> Result<Resolved, ApiError> {
        match snapshot.keys.select(kid) {
            Ok(key) => {
                Ok(Resolved { key: key.clone(), background_refresh: self.claim_background_refresh(&snapshot, now) })
            }
            Err(TokenProblem::UnknownKey) => self.resolve_unknown_kid(kid, &snapshot, now, io).await,
            Err(problem) => Err(ApiError::InvalidToken(problem)),
        }
    }

    /// The background refresh asked for by [`Self::resolve`]: adopt a fresher copy another isolate
    /// left in the shared tiers, or fetch from the issuer.
    pub async fn refresh(&self, now: u64, io: &impl KeyIo) {
        self.adopt_shared(now, io).await;
        let fresh = self.snapshot().is_some_and(|s| self.age(&s, now) < self.policy.max_age_ms);
        if !fresh {
            let _ = self.fetch(now, io).await;
        }
    }

    async fn resolve_without_keys(&self, kid: Option<&str>, now: u64, io: &impl KeyIo) -> Result<Resolved, ApiError> {
        // Only a *failed* attempt holds back a keyless request: a concurrent cold request's fetch
        // cannot be awaited from here (I/O isolation), so waiting for it is not an option.
        let failed_recently = self.state.borrow().last_failure_ms.map(|at| self.remaining(at, now));
        if let Some(remaining) = failed_recently.filter(|&r| r > 0) {
            return Err(ApiError::KeysUnavailable { retry_after_secs: remaining.div_ceil(1000).max(1) });
        }
        // A cold isolate (or one whose keys aged out) looks in the shared tiers before the issuer.
        if self.adopt_shared(now, io).await {
            if let Some(snapshot) = self.usable_snapshot(now) {
                return self.select(kid, snapshot, now, io).await;
            }
        }
        match self.fetch(now, io).await {
            Ok(keys) => just_fetched(&keys, kid),
            Err(_) => {
                Err(ApiError::KeysUnavailable { retry_after_secs: self.policy.cooldown_ms.div_ceil(1000).max(1) })
            }
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
        if self.cooling_down(held, now) {
            self.log(io, "cooldown_hit", json!({ "kid": kid.map(truncate_kid) }));
            return unknown;
        }
        // Stamp the attempt before any await, so a flood of unknown kids costs one refetch.
        self.state.borrow_mut().last_attempt_ms = Some(now);

        // Another isolate may have fetched the rotated keys already.
        if self.adopt_shared(now, io).await {
            if let Some(current) = self.snapshot() {
                if current.keys.select(kid).is_ok() {
                    return just_fetched(&current.keys, kid);
                }
                if self.remaining(current.fetched_at_ms, now) > 0 {
                    self.log(io, "cooldown_hit", json!({ "kid": kid.map(truncate_kid), "tier": current.source }));
                    return unknown;
                }
            }
        }
        match self.fetch(now, io).await {
            Ok(keys) => just_fetched(&keys, kid),
            Err(_) => unknown,
        }
    }

    /// Fetches from the issuer; on success the new set replaces memory and both shared tiers.
    async fn fetch(&self, now: u64, io: &impl KeyIo) -> Result<Arc<KeySet>, FetchError> {
        self.state.borrow_mut().last_attempt_ms = Some(now);
        let result = match io.fetch_issuer().await {
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
                self.log(io, "fetch_failed", json!({ "reason": error.reason() }));
                if let Some(held) = held {
                    self.log(io, "served_stale", json!({ "source": held.source, "age_s": self.age(&held, now) / 1000, "kids": held.keys.kids() }));
                }
                return Err(error);
            }
        };
        let keys = Arc::new(keys);
        let previous = self.install(Snapshot { keys: keys.clone(), fetched_at_ms: now, source: Source::Issuer });
        let changed = previous.as_ref().is_none_or(|p| *p.keys != *keys);
        let event = if previous.is_none() { "fetched" } else { "refreshed" };
        self.log(io, event, json!({ "changed": changed, "kids": keys.kids() }));

        // The body was parsed as JSON above, so it is valid UTF-8.
        let document = StoredJwks {
            v: 1,
            issuer: self.issuer.clone(),
            jwks_url: self.jwks_url.clone(),
            fetched_at_ms: now,
            jwks: String::from_utf8_lossy(&body).into_owned(),
        };
        let document = serde_json::to_string(&document).unwrap_or_default();
        // Every successful fetch is a refresh: its new fetch time is what lets the fleet honour
        // the cooldown. Fetches are bounded by max-age and cooldown, so KV sees few writes.
        io.store(SharedTier::Cache, &document).await;
        io.store(SharedTier::Kv, &document).await;
        Ok(keys)
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
            io.store(SharedTier::Cache, &document).await;
        }
        self.log(io, "loaded", json!({ "source": snapshot.source, "age_s": self.age(&snapshot, now) / 1000, "kids": snapshot.keys.kids() }));
        self.install(snapshot);
        true
    }

    /// One shared tier's copy, if it is well-formed, for this issuer and URL, and usable keys.
    async fn load_tier(&self, tier: SharedTier, now: u64, io: &impl KeyIo) -> Option<(String, Snapshot)> {
        let text = io.load(tier).await?;
        match self.decode(&text, tier, now) {
            Some(snapshot) => Some((text, snapshot)),
            None => {
                self.log(io, "ignored_tier", json!({ "tier": tier, "reason": "unusable stored JWKS" }));
                None
            }
        }
    }

    fn decode(&self, text: &str, tier: SharedTier, now: u64) -> Option<Snapshot> {
        let stored: StoredJwks = serde_json::from_str(text).ok()?;
        if stored.v != 1 || stored.issuer != self.issuer || stored.jwks_url != self.jwks_url {
            return None;
        }
        let keys = KeySet::parse(stored.jwks.as_bytes()).ok()?;
        // A fetch time in the future would make the copy fresh (and the cooldown last) forever.
        Some(Snapshot { keys: Arc::new(keys), fetched_at_ms: stored.fetched_at_ms.min(now), source: tier.into() })
    }

    fn install(&self, snapshot: Snapshot) -> Option<Snapshot> {
        self.state.borrow_mut().snapshot.replace(snapshot)
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

    /// Cooling down after this isolate's last attempt, or after the held keys' fetch time
    /// (which may be another isolate's fetch, read from a shared tier).
    fn cooling_down(&self, held: &Snapshot, now: u64) -> bool {
        let last_attempt = self.state.borrow().last_attempt_ms;
        self.remaining(held.fetched_at_ms, now) > 0 || last_attempt.is_some_and(|at| self.remaining(at, now) > 0)
    }

    fn claim_background_refresh(&self, held: &Snapshot, now: u64) -> bool {
        if self.age(held, now) < self.policy.max_age_ms || self.cooling_down(held, now) {
            return false;
        }
        self.state.borrow_mut().last_attempt_ms = Some(now);
        true
    }

    fn log(&self, io: &impl KeyIo, event: &str, mut fields: serde_json::Value) {
        if let Some(map) = fields.as_object_mut() {
            map.insert("component".into(), "edge-auth.jwks".into());
            map.insert("event".into(), event.into());
            map.insert("issuer".into(), self.issuer.clone().into());
        }
        io.log(&fields.to_string());
    }

    /// What each tier holds, for the status route.
    pub async fn status(&self, now: u64, io: &impl KeyIo) -> serde_json::Value {
        let describe = |s: Option<&Snapshot>| match s {
            Some(s) => json!({ "present": true, "kids": s.keys.kids(), "age_seconds": self.age(s, now) / 1000 }),
            None => json!({ "present": false }),
        };
        let mut tiers = serde_json::Map::new();
        let memory = self.snapshot();
        let mut memory_json = describe(memory.as_ref());
        if let (Some(s), Some(map)) = (&memory, memory_json.as_object_mut()) {
            map.insert("source".into(), json!(s.source));
        }
        tiers.insert("memory".into(), memory_json);
        for tier in [SharedTier::Cache, SharedTier::Kv] {
            let name = serde_json::to_value(tier).unwrap_or_default().as_str().unwrap_or_default().to_owned();
            let value = if io.has_tier(tier) {
                let loaded = match io.load(tier).await {
                    Some(text) => self.decode(&text, tier, now),
                    None => None,
                };
                let mut v = describe(loaded.as_ref());
                v.as_object_mut().map(|m| m.insert("available".into(), true.into()));
                v
            } else {
                json!({ "available": false, "present": false })
            };
            tiers.insert(name, value);
        }
        let state = self.state.borrow();
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
