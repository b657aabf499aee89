//! Shared fixtures for the host tests: test keys, a fake runtime for the key store, a clock
//! that only moves when told, and a poll-once executor (the fakes never pend).

#![allow(dead_code)]

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::pin,
    sync::OnceLock,
    task::{Context, Poll, Waker},
};

use edge_auth::keystore::{FetchError, KeyIo, SharedTier};
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

/// Keys are slow to make, so the whole test binary shares a few.
pub fn key(n: usize) -> &'static SigningKey {
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    &KEYS.get_or_init(|| (1..=3).map(|i| SigningKey::generate(&format!("key-{i}"), 2048)).collect())[n - 1]
}

pub fn small_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate("small", 1024))
}

/// The runtime side of the key store, in memory, counting what the policy does.
pub struct FakeIo {
    pub cache: RefCell<Option<String>>,
    pub kv: RefCell<Option<String>>,
    pub has_cache: bool,
    pub has_kv: bool,
    pub issuer: RefCell<Result<Vec<u8>, FetchError>>,
    pub fetches: Cell<usize>,
    pub kv_writes: Cell<usize>,
    pub cache_writes: Cell<usize>,
    pub logs: RefCell<Vec<String>>,
}

impl FakeIo {
    pub fn serving(jwks: &serde_json::Value) -> FakeIo {
        FakeIo {
            cache: RefCell::new(None),
            kv: RefCell::new(None),
            has_cache: true,
            has_kv: true,
            issuer: RefCell::new(Ok(jwks.to_string().into_bytes())),
            fetches: Cell::new(0),
            kv_writes: Cell::new(0),
            cache_writes: Cell::new(0),
            logs: RefCell::new(Vec::new()),
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

    async fn load(&self, tier: SharedTier) -> Option<String> {
        match tier {
            SharedTier::Cache if self.has_cache => self.cache.borrow().clone(),
            SharedTier::Kv if self.has_kv => self.kv.borrow().clone(),
            _ => None,
        }
    }

    async fn store(&self, tier: SharedTier, document: &str) {
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
    }

    async fn fetch_issuer(&self) -> Result<Vec<u8>, FetchError> {
        self.fetches.set(self.fetches.get() + 1);
        self.issuer.borrow().clone()
    }

    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.to_owned());
    }
}
