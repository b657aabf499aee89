//! `Revocations`: the single object holding every revocation, loaded into memory on first use.
//!
//! Each change is applied to the loaded set first and its writes (the entry and the new version
//! together) are issued before the first await, so storage commits them as one batch. Should a
//! write fail, the loaded copy is dropped and the next request reads storage again: memory never
//! outlives a version storage does not have.

use std::cell::RefCell;

use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, js_sys, wasm_bindgen_futures::JsFuture, Date, DurableObject, Env, Error, ListOptions, Method,
    Request, Response, Result, State, Storage,
};

use crate::keys;
use crate::respond;
use crate::revocations::{Change, ChangeError, RevocationSet, ENTRY_PREFIX, VERSION_KEY};
use crate::wire::{self, BodyError, MAX_BODY_BYTES};

/// Keys one storage delete takes at most.
const DELETE_BATCH: usize = 128;

#[durable_object(fetch)]
pub struct Revocations {
    storage: Storage,
    loaded: RefCell<Option<RevocationSet>>,
}

impl DurableObject for Revocations {
    fn new(state: State, _env: Env) -> Self {
        Self { storage: state.storage(), loaded: RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let outcome = match (req.method(), path.as_str()) {
            (Method::Post, "/revoke") => self.revoke(&mut req).await,
            (Method::Post, "/unrevoke") => self.unrevoke(&mut req).await,
            (Method::Get, "/list") => self.list().await,
            (_, "/revoke" | "/unrevoke") => respond::error(405, "use POST"),
            (_, "/list") => respond::error(405, "use GET"),
            _ => respond::error(404, "not found"),
        };
        respond::or_internal(outcome, "revocations")
    }
}

impl Revocations {
    async fn revoke(&self, req: &mut Request) -> Result<Response> {
        let request = match read(req, wire::parse_revoke).await? {
            Ok(request) => request,
            Err(refusal) => return refusal,
        };
        self.load().await?;
        let now = now();
        let change = self.with_set(|set| set.revoke(request, now))?;
        match change {
            Ok(change) => self.commit(change).await,
            Err(ChangeError::InThePast) => respond::error(400, "until must not be in the past"),
            Err(ChangeError::Full) => respond::error(503, "full"),
        }
    }

    async fn unrevoke(&self, req: &mut Request) -> Result<Response> {
        let request = match read(req, wire::parse_unrevoke).await? {
            Ok(request) => request,
            Err(refusal) => return refusal,
        };
        self.load().await?;
        let change = self.with_set(|set| set.unrevoke(request))?;
        self.commit(change).await
    }

    async fn list(&self) -> Result<Response> {
        self.load().await?;
        let now = now();
        let (expired, listed) = self.with_set(|set| (set.take_expired(now), set.to_list(now)))?;
        // Pruning moves no version and the answer already leaves these out, so a failure here
        // is only logged: the next list tries again.
        if let Err(e) = self.delete_keys(expired).await {
            worker::console_error!("revocations: pruning expired entries: {e}");
        }
        respond::json(200, &listed)
    }

    /// Writes a change (or, for `Ok(None)`, no change) and answers with the version.
    async fn commit(&self, change: Option<Change>) -> Result<Response> {
        let version = match change {
            None => self.with_set(|set| set.version())?,
            Some(change) => {
                let version = change.version;
                if let Err(e) = self.write(change).await {
                    self.loaded.replace(None);
                    return Err(e);
                }
                version
            }
        };
        respond::json(200, &json!({ "version": version }))
    }

    async fn write(&self, change: Change) -> Result<()> {
        let raw = self.storage.as_raw();
        let values = js_sys::Object::new();
        js_sys::Reflect::set(&values, &JsValue::from(VERSION_KEY), &JsValue::from(change.version as f64))?;
        if let Some((key, stored)) = &change.put {
            js_sys::Reflect::set(&values, &JsValue::from(key.as_str()), &JsValue::from(stored.as_str()))?;
        }
        // Both writes leave before either is awaited: one atomic batch.
        let delete = change.delete.as_deref().map(|key| raw.delete(key));
        let put = raw.put_multiple(values.into());
        if let Some(delete) = delete {
            JsFuture::from(delete?).await?;
        }
        JsFuture::from(put?).await?;
        Ok(())
    }

    async fn delete_keys(&self, keys: Vec<String>) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            self.storage.delete_multiple(batch.to_vec()).await?;
        }
        Ok(())
    }

    /// Reads the set from storage unless it is already in memory.
    async fn load(&self) -> Result<()> {
        if self.loaded.borrow().is_some() {
            return Ok(());
        }
        let version: Option<f64> = self.storage.get(VERSION_KEY).await?;
        let listed = self.storage.list_with_options(ListOptions::new().prefix(ENTRY_PREFIX)).await?;
        let mut stored = Vec::with_capacity(listed.size() as usize);
        for pair in listed.entries() {
            let pair: js_sys::Array = pair?.into();
            let key = pair.get(0).as_string();
            let text = pair.get(1).as_string();
            match (key, text) {
                (Some(key), Some(text)) => stored.push((key, text)),
                _ => return Err(Error::RustError("a stored revocation is not text".into())),
            }
        }
        let set = RevocationSet::load(version, stored.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| Error::RustError(e.to_string()))?;
        // A request that arrived while this one read storage may have loaded (and changed) the
        // set already; its copy is the newer one.
        let mut loaded = self.loaded.borrow_mut();
        if loaded.is_none() {
            *loaded = Some(set);
        }
        Ok(())
    }

    fn with_set<T>(&self, f: impl FnOnce(&mut RevocationSet) -> T) -> Result<T> {
        let mut loaded = self.loaded.borrow_mut();
        let set = loaded.as_mut().ok_or_else(|| Error::RustError("revocations not loaded".into()))?;
        Ok(f(set))
    }
}

fn now() -> u64 {
    keys::seconds(Date::now().as_millis())
}

/// The parsed body, or the 400 answer refusing it.
async fn read<T>(
    req: &mut Request,
    parse: fn(&[u8]) -> std::result::Result<T, BodyError>,
) -> Result<std::result::Result<T, Result<Response>>> {
    let Some(body) = respond::body(req, MAX_BODY_BYTES).await? else {
        return Ok(Err(respond::error(400, &BodyError::TooLarge.to_string())));
    };
    Ok(parse(&body).map_err(|e| respond::error(400, &e.to_string())))
}
