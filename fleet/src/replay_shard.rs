//! `ReplayShard`: one object per DPoP key, remembering each proof `jti` until it expires.
//!
//! The check and the record are one step: the object reads the `jti`'s record and the count,
//! decides, and issues its writes with no other I/O in between. The runtime's input gate delivers
//! no other request to the object while it waits on its own storage, so two uses of one `jti`
//! can never both be told "first use"; and writes issued without an intervening `await` are
//! committed as one atomic batch, so a record, its index entry and the count never part.

use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, js_sys, wasm_bindgen_futures::JsFuture, Date, DurableObject, Env, ListOptions, Method, Request,
    Response, Result, ScheduledTime, State, Storage,
};

use crate::keys::{self, COUNT_KEY, INDEX_PREFIX};
use crate::respond;
use crate::wire::{self, BodyError, MAX_BODY_BYTES};

/// Most records a shard holds. One key signs a handful of proofs a second at most; a shard this
/// full is being flooded, and refusing is safer than forgetting a live `jti`.
const MAX_RECORDS: u64 = 100_000;
/// Index entries removed per storage batch: each takes two keys, and a delete takes 128 at most.
const PRUNE_BATCH: usize = 64;
/// Entries one alarm run removes before it hands over to the next run, so a backlog after an
/// outage cannot hold the object for long.
const PRUNE_PER_ALARM: usize = 8192;

#[durable_object(alarm)]
pub struct ReplayShard {
    storage: Storage,
}

/// What a use of a `jti` comes to.
enum Verdict {
    FirstUse,
    Replay,
    Full,
}

impl DurableObject for ReplayShard {
    fn new(state: State, _env: Env) -> Self {
        Self { storage: state.storage() }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path() != "/use" {
            return respond::error(404, "not found");
        }
        if req.method() != Method::Post {
            return respond::error(405, "use POST");
        }
        let outcome = async {
            let Some(body) = respond::body(&mut req, MAX_BODY_BYTES).await? else {
                return respond::error(400, &BodyError::TooLarge.to_string());
            };
            let request = match wire::parse_use(&body) {
                Ok(request) => request,
                Err(error) => return respond::error(400, &error.to_string()),
            };
            match self.use_jti(&request.jti, request.until).await? {
                Verdict::FirstUse => respond::json(200, &json!({ "used": false })),
                Verdict::Replay => respond::json(409, &json!({ "used": true })),
                Verdict::Full => respond::error(503, "full"),
            }
        }
        .await;
        respond::or_internal(outcome, "replay shard")
    }

    async fn alarm(&self) -> Result<Response> {
        let now = keys::seconds(Date::now().as_millis());
        let backlog = self.prune(now, PRUNE_PER_ALARM).await?;
        if backlog {
            // More expired records than one run removes: continue in a fresh run right away.
            self.storage.set_alarm(0).await?;
        } else {
            self.schedule_next_expiry().await?;
        }
        Response::empty()
    }
}

impl ReplayShard {
    async fn use_jti(&self, jti: &str, until: u64) -> Result<Verdict> {
        let now = keys::seconds(Date::now().as_millis());
        if !keys::is_live(until, now) {
            // A window that has already closed records nothing: the caller refuses a proof that
            // old on its own clock, and a record here would be pruned before it could matter.
            return Ok(Verdict::FirstUse);
        }
        let record_key = keys::record_key(jti);
        let existing: Option<f64> = self.storage.get(&record_key).await?;
        let existing = existing.map(|until| until as u64);
        if existing.is_some_and(|recorded| keys::is_live(recorded, now)) {
            return Ok(Verdict::Replay);
        }
        let mut count = self.count().await?;
        if existing.is_none() && count >= MAX_RECORDS {
            // Expired records the alarm has not reached yet still hold places: free some first.
            self.prune(now, PRUNE_BATCH).await?;
            count = self.count().await?;
            if count >= MAX_RECORDS {
                return Ok(Verdict::Full);
            }
        }

        let wanted_alarm = keys::expiry_alarm_ms(until);
        let current_alarm = self.storage.get_alarm().await?;

        // Every write below, the alarm included, is issued before the first await, so the runtime
        // commits them as one batch: no record is stored without the alarm that will remove it.
        let raw = self.storage.as_raw();
        let stale_index = existing.map(|recorded| raw.delete(&keys::index_key(recorded, jti)));
        let new_count = if existing.is_some() { count } else { count + 1 };
        let entries = js_sys::Object::new();
        set(&entries, &record_key, until as f64)?;
        set(&entries, &keys::index_key(until, jti), 0.0)?;
        set(&entries, COUNT_KEY, new_count as f64)?;
        let put = raw.put_multiple(entries.into());
        let alarm = current_alarm
            .is_none_or(|at| at as u64 > wanted_alarm)
            .then(|| raw.set_alarm(date(wanted_alarm), js_sys::Object::new()));
        for write in [stale_index, Some(put), alarm].into_iter().flatten() {
            JsFuture::from(write?).await?;
        }
        Ok(Verdict::FirstUse)
    }

    async fn count(&self) -> Result<u64> {
        let count: Option<f64> = self.storage.get(COUNT_KEY).await?;
        Ok(count.map_or(0, |n| n as u64))
    }

    /// Removes up to `budget` records expired at `now`, oldest first; true if more remain.
    async fn prune(&self, now: u64, budget: usize) -> Result<bool> {
        let end = keys::expired_range_end(now);
        let mut removed = 0;
        while removed < budget {
            let limit = PRUNE_BATCH.min(budget - removed);
            let options = ListOptions::new().prefix(INDEX_PREFIX).end(&end).limit(limit);
            let listed = self.storage.list_with_options(options).await?;
            let batch = listed.size() as usize;
            if batch == 0 {
                return Ok(false);
            }
            let mut doomed = Vec::with_capacity(batch * 2);
            let mut records = 0;
            for key in listed.keys() {
                let Some(key) = key?.as_string() else { continue };
                if let Some((_, jti)) = keys::parse_index_key(&key) {
                    doomed.push(JsValue::from(keys::record_key(jti)));
                    records += 1;
                }
                doomed.push(JsValue::from(key));
            }
            let count = self.count().await?;
            // The deletes and the new count go out together, as one batch.
            let raw = self.storage.as_raw();
            let delete = raw.delete_multiple(doomed);
            let put = raw.put(COUNT_KEY, JsValue::from(count.saturating_sub(records) as f64));
            JsFuture::from(delete?).await?;
            JsFuture::from(put?).await?;
            removed += batch;
            if batch < limit {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sets the alarm for the earliest record still held, or clears it when none is.
    async fn schedule_next_expiry(&self) -> Result<()> {
        let options = ListOptions::new().prefix(INDEX_PREFIX).limit(1);
        let listed = self.storage.list_with_options(options).await?;
        let earliest = listed.keys().into_iter().next().transpose()?.and_then(|key| key.as_string());
        match earliest.as_deref().and_then(keys::parse_index_key) {
            Some((until, _)) => self.storage.set_alarm(ScheduledTime::new(date(keys::expiry_alarm_ms(until)))).await,
            None => self.storage.delete_alarm().await,
        }
    }
}

fn set(object: &js_sys::Object, key: &str, value: f64) -> Result<()> {
    js_sys::Reflect::set(object, &JsValue::from(key), &JsValue::from(value))?;
    Ok(())
}

fn date(ms: u64) -> js_sys::Date {
    js_sys::Date::new(&JsValue::from(ms as f64))
}
