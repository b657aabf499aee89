//! The key store's runtime side: the Cache API, Workers KV, the issuer fetch and the log.

use std::{future::poll_fn, time::Duration};

use futures_core::Stream;
use worker::{
    AbortController, Cache, Date, Env, Fetch, Headers, KvStore, Method, Request, RequestInit, RequestRedirect, Response,
};

use crate::{
    config::Config,
    denylist::{DeniedEntry, DenyIo},
    keystore::{FetchError, JwksSource, KeyIo, SharedTier},
};

/// KV binding name, declared in wrangler.toml. Optional: without it the KV tier is skipped.
pub const KV_BINDING: &str = "JWKS_KV";
/// The deny list's KV namespace. Optional: without it nothing is revoked at the edge.
pub const DENYLIST_BINDING: &str = "DENYLIST";
/// KV lists at most 1,000 keys a page; a deny list longer than this many pages is cut (and logged).
const MAX_DENYLIST_PAGES: usize = 100;
/// A JWKS is a few KiB; anything past this is not one.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// The Cache API needs an absolute URL as key; this host is never contacted.
const CACHE_KEY_BASE: &str = "https://edge-auth.internal/jwks/v1";

pub struct WorkerIo {
    kv: Option<KvStore>,
    denylist: Option<KvStore>,
    fetch_timeout: Duration,
    /// How long shared copies are worth keeping: max-age plus stale-if-error.
    keep_secs: u64,
}

impl WorkerIo {
    pub fn new(env: &Env, config: &Config) -> WorkerIo {
        WorkerIo {
            kv: env.kv(KV_BINDING).ok(),
            denylist: env.kv(DENYLIST_BINDING).ok(),
            fetch_timeout: Duration::from_millis(config.jwks.fetch_timeout_ms),
            keep_secs: (config.jwks.max_age_ms + config.jwks.stale_if_error_ms) / 1000,
        }
    }

    async fn fetch_body(&self, jwks_url: &str, controller: &AbortController) -> Result<Vec<u8>, FetchError> {
        let headers = Headers::new();
        let _ = headers.set("accept", "application/json");
        let mut init = RequestInit::new();
        // A redirect from the JWKS URL is an error, not a hint: keys come from the configured URL only.
        init.with_method(Method::Get).with_headers(headers).with_redirect(RequestRedirect::Manual);
        let request = Request::new_with_init(jwks_url, &init).map_err(|_| FetchError::Network)?;
        let mut response =
            Fetch::Request(request).send_with_signal(&controller.signal()).await.map_err(|_| FetchError::Network)?;
        if response.status_code() != 200 {
            return Err(FetchError::Status(response.status_code()));
        }
        let declared = response.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > MAX_JWKS_BYTES) {
            return Err(FetchError::TooLarge);
        }
        read_capped(&mut response, MAX_JWKS_BYTES).await
    }
}

/// Reads a body chunk by chunk and stops at `cap`, so a hostile or broken issuer cannot make the
/// isolate buffer more than that.
async fn read_capped(response: &mut Response, cap: usize) -> Result<Vec<u8>, FetchError> {
    let mut stream = response.stream().map_err(|_| FetchError::Network)?;
    let mut body = Vec::new();
    loop {
        let chunk = poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await;
        match chunk {
            None => return Ok(body),
            Some(Err(_)) => return Err(FetchError::Network),
            Some(Ok(bytes)) => {
                if body.len() + bytes.len() > cap {
                    return Err(FetchError::TooLarge);
                }
                body.extend_from_slice(&bytes);
            }
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
        match tier {
            SharedTier::Cache => {
                let mut response = Cache::default().get(cache_key(source), false).await.ok()??;
                response.text().await.ok()
            }
            SharedTier::Kv => self.kv.as_ref()?.get(&kv_key(source)).text().await.ok()?,
        }
    }

    async fn store(&self, tier: SharedTier, source: &JwksSource<'_>, document: &str) -> Result<(), String> {
        let result = match tier {
            SharedTier::Cache => {
                // The Cache API keeps only cacheable responses; on *.workers.dev it keeps nothing,
                // which the policy tolerates.
                let headers = Headers::new();
                let _ = headers.set("content-type", "application/json");
                let _ = headers.set("cache-control", &format!("public, max-age={}", self.keep_secs.max(60)));
                match Response::from_bytes(document.as_bytes().to_vec()) {
                    Ok(response) => Cache::default().put(cache_key(source), response.with_headers(headers)).await,
                    Err(e) => Err(e),
                }
            }
            SharedTier::Kv => match &self.kv {
                None => return Err("no KV binding".into()),
                // KV's shortest expiry is 60 s.
                Some(kv) => match kv.put(&kv_key(source), document) {
                    Ok(put) => put.expiration_ttl(self.keep_secs.max(60)).execute().await.map_err(worker::Error::from),
                    Err(e) => Err(e.into()),
                },
            },
        };
        // The key store logs a failing tier once, not per write.
        result.map_err(|e| e.to_string())
    }

    async fn fetch_issuer(&self, source: &JwksSource<'_>) -> Result<Vec<u8>, FetchError> {
        let controller = AbortController::default();
        let timeout_ms = u64::try_from(self.fetch_timeout.as_millis()).unwrap_or(u64::MAX);
        match super::timer::race(self.fetch_body(source.jwks_url, &controller), timeout_ms).await {
            Some(result) => result,
            None => {
                controller.abort();
                Err(FetchError::Timeout)
            }
        }
    }

    async fn sleep(&self, ms: u64) -> u64 {
        super::timer::sleep(ms).await;
        // Not SystemTime: it panics on wasm32-unknown-unknown.
        Date::now().as_millis()
    }

    fn log(&self, event: &'static str, line: &str) {
        super::observe::emit(event, "", line, false);
    }
}

impl DenyIo for WorkerIo {
    /// Every page of a KV list: one list operation per 1,000 entries, no value read (the reason
    /// travels in each key's metadata).
    async fn list_denied(&self) -> Result<Vec<DeniedEntry>, String> {
        let kv = self.denylist.as_ref().ok_or("no DENYLIST binding")?;
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_DENYLIST_PAGES {
            let mut list = kv.list();
            if let Some(cursor) = cursor.take() {
                list = list.cursor(cursor);
            }
            let page = list.execute().await.map_err(|e| e.to_string())?;
            entries.extend(page.keys.into_iter().map(|key| DeniedEntry {
                reason: key.metadata.as_ref().and_then(|m| m.get("reason")).and_then(|r| r.as_str()).map(str::to_owned),
                key: key.name,
            }));
            match page.cursor.filter(|c| !page.list_complete && !c.is_empty()) {
                Some(next) => cursor = Some(next),
                None => return Ok(entries),
            }
        }
        Err(format!("more than {MAX_DENYLIST_PAGES} pages"))
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
