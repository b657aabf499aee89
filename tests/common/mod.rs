//! Shared fixtures for the host tests: test keys, a fake runtime for the key store, a clock
//! that only moves when told, a poll-once executor for one request (the fakes pend only when
//! told to), and a round-robin executor for concurrent requests of one isolate.

#![allow(dead_code)]

pub mod dpop;

use std::{
    cell::{Cell, RefCell},
    collections::HashSet,
    future::{poll_fn, Future},
    pin::pin,
    rc::Rc,
    sync::OnceLock,
    task::{Context, Poll, Waker},
};

use edge_auth::{
    dpop::replay::{FleetReplay, FleetUse},
    gateway::limits::RateLimiter,
    keys::store::{FetchError, JwksSource, KeyIo, SharedTier},
    operate::denylist::{DeniedEntry, DenyIo, FleetRevocationIo},
};
use edge_auth_dev_issuer::SigningKey;

pub const ISSUER: &str = "https://tenant.example.auth0.com/";
pub const JWKS_URL: &str = "https://tenant.example.auth0.com/.well-known/jwks.json";
pub const AUDIENCE: &str = "https://api.example.com";
/// 2026-01-01T00:00:00Z, in seconds.
pub const NOW: i64 = 1_767_225_600;

pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("fakes never pend; a real await slipped into the core"),
    }
}

/// Runs `futures` as concurrent requests of one isolate: one thread, each polled in turn, so one
/// runs until its first pending await before the next starts, as in workerd. After every round
/// that leaves some pending, `tick` moves the world on (usually the fake clock).
pub fn run_together<F: Future>(futures: impl IntoIterator<Item = F>, mut tick: impl FnMut()) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                    *output = Some(value);
                }
            }
        }
        if outputs.iter().all(Option::is_some) {
            return outputs.into_iter().flatten().collect();
        }
        tick();
    }
    panic!("requests still pending after 100,000 rounds");
}

/// Keys are slow to make, so the whole test binary shares a few.
pub fn key(n: usize) -> &'static SigningKey {
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    &KEYS.get_or_init(|| (1..=3).map(|i| SigningKey::generate(&format!("key-{i}"), 2048)).collect())[n - 1]
}

pub fn small_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate("small", 1024))
}

/// The fleet's used proofs, (thumbprint, jti), shared by the fakes of two isolates.
pub type FleetStore = Rc<RefCell<HashSet<(String, String)>>>;

/// The runtime side of the key store, in memory, counting what the policy does.
pub struct FakeIo {
    pub cache: RefCell<Option<String>>,
    pub kv: RefCell<Option<String>>,
    pub has_cache: bool,
    pub has_kv: bool,
    pub issuer: RefCell<Result<Vec<u8>, FetchError>>,
    /// Other issuers' JWKS, by URL (several-issuer tests); any other URL gets `issuer`.
    pub other_issuers: RefCell<Vec<(String, Vec<u8>)>>,
    /// Every JWKS URL fetched, in order.
    pub fetched_urls: RefCell<Vec<String>>,
    /// How long the issuer takes to answer, on the fake clock; 0 answers at once.
    pub issuer_latency_ms: Cell<u64>,
    /// When set, every store fails with this reason.
    pub store_error: RefCell<Option<String>>,
    /// The time, in milliseconds: `sleep` and the issuer wait on it, and only tests move it.
    pub clock: Cell<u64>,
    pub fetches: Cell<usize>,
    pub loads: Cell<usize>,
    pub kv_writes: Cell<usize>,
    pub cache_writes: Cell<usize>,
    pub logs: RefCell<Vec<String>>,
    /// What a deny-list listing answers, and how many were made.
    pub denied: RefCell<Result<Vec<DeniedEntry>, String>>,
    pub deny_lists: Cell<usize>,
    /// Every rate limiter allows this many units per key (tests never move into a new period),
    /// and what was spent: (binding, key).
    pub rate_limit: Cell<usize>,
    pub spent: RefCell<Vec<(String, String)>>,
    /// The fleet's Durable Objects: used `jti`s by thumbprint (an `Rc`, so that two fakes, two
    /// isolates, share one), `None` when the store cannot be reached; its revocations and version.
    pub fleet_used: RefCell<Option<FleetStore>>,
    pub fleet_revoked: RefCell<Result<(u64, Vec<DeniedEntry>), String>>,
    pub fleet_calls: Cell<usize>,
    pub fleet_lists: Cell<usize>,
}

impl FakeIo {
    pub fn serving(jwks: &serde_json::Value) -> FakeIo {
        FakeIo {
            cache: RefCell::new(None),
            kv: RefCell::new(None),
            has_cache: true,
            has_kv: true,
            issuer: RefCell::new(Ok(jwks.to_string().into_bytes())),
            other_issuers: RefCell::new(Vec::new()),
            fetched_urls: RefCell::new(Vec::new()),
            issuer_latency_ms: Cell::new(0),
            store_error: RefCell::new(None),
            clock: Cell::new(NOW as u64 * 1000),
            fetches: Cell::new(0),
            loads: Cell::new(0),
            kv_writes: Cell::new(0),
            cache_writes: Cell::new(0),
            logs: RefCell::new(Vec::new()),
            denied: RefCell::new(Ok(Vec::new())),
            deny_lists: Cell::new(0),
            rate_limit: Cell::new(usize::MAX),
            spent: RefCell::new(Vec::new()),
            fleet_used: RefCell::new(Some(Rc::default())),
            fleet_revoked: RefCell::new(Ok((1, Vec::new()))),
            fleet_calls: Cell::new(0),
            fleet_lists: Cell::new(0),
        }
    }

    pub fn issuer_serves(&self, jwks: &serde_json::Value) {
        *self.issuer.borrow_mut() = Ok(jwks.to_string().into_bytes());
    }

    pub fn issuer_fails(&self, error: FetchError) {
        *self.issuer.borrow_mut() = Err(error);
    }

    pub fn issuer_body(&self, body: &[u8]) {
        *self.issuer.borrow_mut() = Ok(body.to_vec());
    }

    pub fn advance(&self, ms: u64) {
        self.clock.set(self.clock.get() + ms);
    }

    /// Pending until the fake clock reaches `at`.
    fn until(&self, at: u64) -> impl Future<Output = ()> + '_ {
        poll_fn(move |_| if self.clock.get() >= at { Poll::Ready(()) } else { Poll::Pending })
    }

    pub fn events(&self) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).expect("log lines are JSON")["event"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

impl KeyIo for FakeIo {
    fn has_tier(&self, tier: SharedTier) -> bool {
        match tier {
            SharedTier::Cache => self.has_cache,
            SharedTier::Kv => self.has_kv,
        }
    }

    async fn load(&self, tier: SharedTier, _source: &JwksSource<'_>) -> Option<String> {
        self.loads.set(self.loads.get() + 1);
        match tier {
            SharedTier::Cache if self.has_cache => self.cache.borrow().clone(),
            SharedTier::Kv if self.has_kv => self.kv.borrow().clone(),
            _ => None,
        }
    }

    async fn store(&self, tier: SharedTier, _source: &JwksSource<'_>, document: &str) -> Result<(), String> {
        if let Some(reason) = self.store_error.borrow().clone() {
            return Err(reason);
        }
        match tier {
            SharedTier::Cache if self.has_cache => {
                self.cache_writes.set(self.cache_writes.get() + 1);
                *self.cache.borrow_mut() = Some(document.to_owned());
            }
            SharedTier::Kv if self.has_kv => {
                self.kv_writes.set(self.kv_writes.get() + 1);
                *self.kv.borrow_mut() = Some(document.to_owned());
            }
            _ => {}
        }
        Ok(())
    }

    async fn fetch_issuer(&self, source: &JwksSource<'_>) -> Result<Vec<u8>, FetchError> {
        self.fetches.set(self.fetches.get() + 1);
        self.fetched_urls.borrow_mut().push(source.jwks_url.to_owned());
        self.until(self.clock.get() + self.issuer_latency_ms.get()).await;
        let other = self.other_issuers.borrow().iter().find(|(url, _)| url == source.jwks_url).map(|(_, b)| b.clone());
        other.map_or_else(|| self.issuer.borrow().clone(), Ok)
    }

    async fn sleep(&self, ms: u64) -> u64 {
        self.until(self.clock.get() + ms).await;
        self.clock.get()
    }

    fn log(&self, _event: &'static str, line: &str) {
        self.logs.borrow_mut().push(line.to_owned());
    }
}

impl RateLimiter for FakeIo {
    async fn spend(&self, binding: &str, key: &str) -> Result<bool, String> {
        let mut spent = self.spent.borrow_mut();
        spent.push((binding.to_owned(), key.to_owned()));
        Ok(spent.iter().filter(|(b, k)| b == binding && k == key).count() <= self.rate_limit.get())
    }
}

impl FleetReplay for FakeIo {
    async fn use_jti(&self, thumbprint: &str, jti: &str, _keep_through: i64) -> Result<FleetUse, String> {
        self.fleet_calls.set(self.fleet_calls.get() + 1);
        let store = self.fleet_used.borrow().clone().ok_or("unreachable")?;
        let fresh = store.borrow_mut().insert((thumbprint.to_owned(), jti.to_owned()));
        Ok(if fresh { FleetUse::Fresh } else { FleetUse::Used })
    }
}

impl FleetRevocationIo for FakeIo {
    async fn list_revoked(&self) -> Result<(u64, Vec<DeniedEntry>), String> {
        self.fleet_lists.set(self.fleet_lists.get() + 1);
        self.fleet_revoked.borrow().clone()
    }
}

impl DenyIo for FakeIo {
    async fn list_denied(&self) -> Result<Vec<DeniedEntry>, String> {
        self.deny_lists.set(self.deny_lists.get() + 1);
        self.denied.borrow().clone()
    }
}
