//! The key store's runtime side: the Cache API, Workers KV, the issuer fetch and the log.

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::{prelude::wasm_bindgen, JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::{
    config::Config,
    dpop::replay::{FleetReplay, FleetUse},
    keys::store::{FetchError, JwksSource, KeyIo, SharedTier},
    operate::denylist::{DeniedEntry, DenyIo, FleetRevocationIo},
};

#[wasm_bindgen(module = "/src/edge/io.mjs")]
extern "C" {
    fn cache_get(key: &str) -> Promise;
    fn cache_put(key: &str, body: &str, max_age: f64) -> Promise;
    fn kv_get(binding: &JsValue, key: &str) -> Promise;
    fn kv_put(binding: &JsValue, key: &str, value: &str, ttl: f64) -> Promise;
    fn kv_list_all(binding: &JsValue, max_pages: u32) -> Promise;
    fn fetch_jwks(url: &str, timeout_ms: f64, cap: u32) -> Promise;
    fn fleet_use(namespace: &JsValue, thumbprint: &str, jti: &str, until: f64) -> Promise;
    fn fleet_list(namespace: &JsValue, name: &str) -> Promise;
    /// `ctx.waitUntil(promise)`.
    pub fn wait_until(ctx: &JsValue, promise: &Promise);
    /// `[promise, id]`: a wait handed over to entry.mjs (see handoff.rs).
    pub fn handed(promise: &Promise, id: u32) -> JsValue;
}

/// KV binding name, declared in wrangler.toml. Optional: without it the KV tier is skipped.
pub const KV_BINDING: &str = "JWKS_KV";
/// The deny list's KV namespace. Optional: without it nothing is revoked at the edge.
pub const DENYLIST_BINDING: &str = "DENYLIST";
/// The fleet's Durable Object namespaces (fleet/wrangler.toml's classes, bound with `script_name`):
/// needed by `DPOP_REPLAY=fleet` and by a rule with `"revocation": "fleet"`.
pub const FLEET_REPLAY_BINDING: &str = "FLEET_REPLAY";
pub const FLEET_REVOCATIONS_BINDING: &str = "FLEET_REVOCATIONS";
/// The one object that holds the revocations (fleet/src/lib.rs names it so too).
const REVOCATIONS_OBJECT: &str = "revocations";
/// The most revocations the fleet's list may hold that this isolate keeps.
const MAX_FLEET_ENTRIES: usize = 100_000;
/// KV lists at most 1,000 keys a page; a deny list longer than this many pages is cut (and logged).
const MAX_DENYLIST_PAGES: u32 = 100;
/// A JWKS is a few KiB; anything past this is not one.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// The Cache API needs an absolute URL as key; this host is never contacted.
const CACHE_KEY_BASE: &str = "https://edge-auth.internal/jwks/v1";

/// `fetch_jwks`'s answers other than a body or a status (see io.mjs).
const NETWORK: f64 = -1.0;
const TIMEOUT: f64 = -2.0;
const TOO_LARGE: f64 = -3.0;

/// The binding `name` of `env`, when it is an object (KV namespaces and the like are).
pub fn binding(env: &JsValue, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(env, &JsValue::from_str(name)).ok().filter(JsValue::is_object)
}

/// A thrown value as a log's reason: an `Error`'s name and message (the runtime's own words,
/// which hold no key material), else a fixed word.
fn describe(error: &JsValue) -> String {
    match error.dyn_ref::<js_sys::Error>() {
        Some(error) => format!("{}: {}", String::from(error.name()), String::from(error.message())),
        None => "unknown error".into(),
    }
}

pub struct WorkerIo {
    kv: Option<JsValue>,
    denylist: Option<JsValue>,
    fleet_replay: Option<JsValue>,
    fleet_revocations: Option<JsValue>,
    fetch_timeout_ms: u64,
    /// How long shared copies are worth keeping: max-age plus stale-if-error.
    keep_secs: u64,
}

impl WorkerIo {
    pub fn new(env: &JsValue, config: &Config) -> WorkerIo {
        WorkerIo {
            kv: binding(env, KV_BINDING),
            denylist: binding(env, DENYLIST_BINDING),
            fleet_replay: binding(env, FLEET_REPLAY_BINDING),
            fleet_revocations: binding(env, FLEET_REVOCATIONS_BINDING),
            fetch_timeout_ms: config.jwks.fetch_timeout_ms,
            keep_secs: (config.jwks.max_age_ms + config.jwks.stale_if_error_ms) / 1000,
        }
    }
}

impl KeyIo for WorkerIo {
    fn has_tier(&self, tier: SharedTier) -> bool {
        match tier {
            SharedTier::Cache => true,
            SharedTier::Kv => self.kv.is_some(),
        }
    }

    async fn load(&self, tier: SharedTier, source: &JwksSource<'_>) -> Option<String> {
        let promise = match tier {
            SharedTier::Cache => cache_get(&cache_key(source)),
            SharedTier::Kv => kv_get(self.kv.as_ref()?, &kv_key(source)),
        };
        JsFuture::from(promise).await.ok()?.as_string()
    }

    async fn store(&self, tier: SharedTier, source: &JwksSource<'_>, document: &str) -> Result<(), String> {
        // KV's shortest expiry is 60 s; the Cache API's max-age follows it.
        let keep = self.keep_secs.max(60) as f64;
        let promise = match tier {
            SharedTier::Cache => cache_put(&cache_key(source), document, keep),
            SharedTier::Kv => kv_put(self.kv.as_ref().ok_or("no KV binding")?, &kv_key(source), document, keep),
        };
        // The key store logs a failing tier once, not per write.
        JsFuture::from(promise).await.map(drop).map_err(|e| describe(&e))
    }

    async fn fetch_issuer(&self, source: &JwksSource<'_>) -> Result<Vec<u8>, FetchError> {
        let promise = fetch_jwks(source.jwks_url, self.fetch_timeout_ms as f64, MAX_JWKS_BYTES as u32);
        let answer = JsFuture::from(promise).await.map_err(|_| FetchError::Network)?;
        if let Some(body) = answer.dyn_ref::<Uint8Array>() {
            return Ok(body.to_vec());
        }
        match answer.as_f64() {
            Some(TIMEOUT) => Err(FetchError::Timeout),
            Some(TOO_LARGE) => Err(FetchError::TooLarge),
            Some(status) if (100.0..=599.0).contains(&status) => Err(FetchError::Status(status as u16)),
            Some(NETWORK) | Some(_) | None => Err(FetchError::Network),
        }
    }

    async fn sleep(&self, ms: u64) -> u64 {
        super::timer::sleep(ms).await;
        // Not SystemTime: it panics on wasm32-unknown-unknown.
        js_sys::Date::now() as u64
    }

    fn log(&self, event: &'static str, line: &str) {
        super::observe::emit(event, "", line, false);
    }
}

impl DenyIo for WorkerIo {
    async fn list_denied(&self) -> Result<Vec<DeniedEntry>, String> {
        let kv = self.denylist.as_ref().ok_or("no DENYLIST binding")?;
        let listed = JsFuture::from(kv_list_all(kv, MAX_DENYLIST_PAGES)).await.map_err(|e| describe(&e))?;
        let text = listed.as_string().ok_or("list answered no text")?;
        let listed = crate::json::parse(text.as_bytes()).map_err(|_| "list answered no list")?;
        // `[[key, reason-or-null], ...]`, as io.mjs's kv_list_all joins the pages.
        let entry = |pair: &serde_json::Value| {
            let [key, reason] = pair.as_array()?.as_slice() else { return None };
            let reason = if reason.is_null() { None } else { Some(reason.as_str()?.to_owned()) };
            Some(DeniedEntry { key: key.as_str()?.to_owned(), reason })
        };
        let listed = listed.as_array().ok_or("list answered no list")?;
        listed.iter().map(|pair| entry(pair).ok_or_else(|| "list answered no list".to_owned())).collect()
    }
}

/// Each issuer's copy under its own key in each tier (the stored document names its issuer and
/// URL too, and is ignored by any other store).
fn scope(source: &JwksSource<'_>) -> String {
    format!("{}|{}", source.issuer, source.jwks_url)
}

fn cache_key(source: &JwksSource<'_>) -> String {
    format!("{CACHE_KEY_BASE}?scope={}", percent_encode(&scope(source)))
}

fn kv_key(source: &JwksSource<'_>) -> String {
    format!("jwks/v1/{}", scope(source))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl FleetReplay for WorkerIo {
    /// 200 fresh, 409 used, 503 full (fleet/src/replay.rs); anything else is the store failing.
    async fn use_jti(&self, thumbprint: &str, jti: &str, keep_through: i64) -> Result<FleetUse, String> {
        let namespace = self.fleet_replay.as_ref().ok_or("no FLEET_REPLAY binding")?;
        let status = JsFuture::from(fleet_use(namespace, thumbprint, jti, keep_through as f64))
            .await
            .map_err(|e| describe(&e))?;
        match status.as_f64() {
            Some(200.0) => Ok(FleetUse::Fresh),
            Some(409.0) => Ok(FleetUse::Used),
            Some(503.0) => Ok(FleetUse::Full),
            // An integer's formatting: a float's would bring ~25 KB of formatting code into the wasm.
            other => Err(format!("the replay object answered {}", other.map_or(-1, |status| status as i64))),
        }
    }
}

impl FleetRevocationIo for WorkerIo {
    /// `{"version": n, "entries": [{"kind", "value", "reason"?}, ...]}` (fleet/src/revocations.rs).
    async fn list_revoked(&self) -> Result<(u64, Vec<DeniedEntry>), String> {
        let namespace = self.fleet_revocations.as_ref().ok_or("no FLEET_REVOCATIONS binding")?;
        let text = JsFuture::from(fleet_list(namespace, REVOCATIONS_OBJECT)).await.map_err(|e| describe(&e))?;
        let text = text.as_string().ok_or("list answered no text")?;
        let listed = crate::json::parse(text.as_bytes()).map_err(|_| "list answered no JSON")?;
        let version = listed.get("version").and_then(serde_json::Value::as_u64).ok_or("list answered no version")?;
        let entries = listed.get("entries").and_then(serde_json::Value::as_array).ok_or("list answered no entries")?;
        if entries.len() > MAX_FLEET_ENTRIES {
            return Err(format!("more than {MAX_FLEET_ENTRIES} revocations"));
        }
        let entry = |entry: &serde_json::Value| {
            let kind = entry.get("kind")?.as_str()?;
            let value = entry.get("value")?.as_str()?;
            let reason = entry.get("reason").and_then(serde_json::Value::as_str).map(str::to_owned);
            Some(DeniedEntry { key: crate::operate::denylist::key(kind, value), reason })
        };
        entries
            .iter()
            .map(|e| entry(e).ok_or_else(|| "list answered an odd entry".to_owned()))
            .collect::<Result<_, _>>()
            .map(|e| (version, e))
    }
}
