//! The revocation set as the `Revocations` object holds it in memory: what each change does to
//! it, which storage writes carry that change, and the `/list` answer. Storage stays the source
//! of truth; this is its loaded copy.
//!
//! Storage layout: `v` → the version; `r:<kind>:<value>` → `{"until":…,"reason":…}` as JSON text.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::wire::{Kind, RevokeRequest, UnrevokeRequest};

pub const VERSION_KEY: &str = "v";
pub const ENTRY_PREFIX: &str = "r:";
/// Most revocations held at once. The whole set is in memory and sent on every `/list`; a list
/// that grows past this is better answered by a denylist of another shape.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub until: Option<u64>,
    pub reason: Option<String>,
}

impl Entry {
    fn is_live(&self, now: u64) -> bool {
        self.until.is_none_or(|until| until >= now)
    }

    pub fn to_stored(&self) -> String {
        json!({ "until": self.until, "reason": self.reason }).to_string()
    }
}

/// A stored entry or version that does not read back as this module writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptEntry(pub String);

impl std::fmt::Display for CorruptEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored revocation {:?} is not in the expected form", self.0)
    }
}

impl std::error::Error for CorruptEntry {}

/// Why a change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeError {
    /// `until` has already passed: the revocation would never be in force.
    InThePast,
    /// The set holds `MAX_ENTRIES` live revocations.
    Full,
}

/// Writes that carry one change to storage, to be issued together (one atomic batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub version: u64,
    pub put: Option<(String, String)>,
    pub delete: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    version: u64,
    entries: BTreeMap<(Kind, String), Entry>,
}

pub fn entry_key(kind: Kind, value: &str) -> String {
    format!("{ENTRY_PREFIX}{}:{value}", kind.as_str())
}

impl RevocationSet {
    /// The set from its stored version and `r:` entries (key, stored JSON text).
    pub fn load<'a>(
        version: Option<f64>,
        stored: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, CorruptEntry> {
        let version = match version {
            None => 0,
            Some(v) if v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53) => v as u64,
            Some(v) => return Err(CorruptEntry(format!("{VERSION_KEY} = {v}"))),
        };
        let mut entries = BTreeMap::new();
        for (key, text) in stored {
            let corrupt = || CorruptEntry(key.to_string());
            let (kind, value) = key
                .strip_prefix(ENTRY_PREFIX)
                .and_then(|rest| rest.split_once(':'))
                .and_then(|(kind, value)| Some((Kind::parse(kind)?, value)))
                .ok_or_else(corrupt)?;
            let stored: Value = serde_json::from_str(text).map_err(|_| corrupt())?;
            let until = match &stored["until"] {
                Value::Null => None,
                v => Some(v.as_u64().ok_or_else(corrupt)?),
            };
            let reason = match &stored["reason"] {
                Value::Null => None,
                v => Some(v.as_str().ok_or_else(corrupt)?.to_string()),
            };
            entries.insert((kind, value.to_string()), Entry { until, reason });
        }
        Ok(Self { version, entries })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Adds or replaces a revocation. Repeating one already in force with the same `until` and
    /// reason changes nothing, and so neither writes nor moves the version.
    pub fn revoke(&mut self, request: RevokeRequest, now: u64) -> Result<Option<Change>, ChangeError> {
        let entry = Entry { until: request.until, reason: request.reason };
        if !entry.is_live(now) {
            return Err(ChangeError::InThePast);
        }
        let slot = (request.kind, request.value);
        let previous = self.entries.get(&slot);
        if previous == Some(&entry) {
            return Ok(None);
        }
        // Counting the live entries costs a pass over the set, so only when it could be full.
        if previous.is_none() && self.entries.len() >= MAX_ENTRIES && self.live_count(now) >= MAX_ENTRIES {
            return Err(ChangeError::Full);
        }
        let put = (entry_key(slot.0, &slot.1), entry.to_stored());
        self.entries.insert(slot, entry);
        self.version += 1;
        Ok(Some(Change { version: self.version, put: Some(put), delete: None }))
    }

    /// Lifts a revocation; lifting one that is not there changes nothing.
    pub fn unrevoke(&mut self, request: UnrevokeRequest) -> Option<Change> {
        self.entries.remove(&(request.kind, request.value.clone()))?;
        self.version += 1;
        Some(Change { version: self.version, put: None, delete: Some(entry_key(request.kind, &request.value)) })
    }

    /// Drops the revocations that have expired and returns their storage keys. The version does
    /// not move: what is in force at any moment is unchanged, and a reader holding an older copy
    /// already leaves an entry out once its `until` has passed.
    pub fn take_expired(&mut self, now: u64) -> Vec<String> {
        let mut keys = Vec::new();
        self.entries.retain(|(kind, value), entry| {
            let live = entry.is_live(now);
            if !live {
                keys.push(entry_key(*kind, value));
            }
            live
        });
        keys
    }

    fn live_count(&self, now: u64) -> usize {
        self.entries.values().filter(|entry| entry.is_live(now)).count()
    }

    /// The `/list` answer: live entries only, in (kind, value) order.
    pub fn to_list(&self, now: u64) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.is_live(now))
            .map(|((kind, value), entry)| {
                json!({ "kind": kind.as_str(), "value": value, "until": entry.until, "reason": entry.reason })
            })
            .collect();
        json!({ "version": self.version, "entries": entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn revoke(kind: Kind, value: &str, until: Option<u64>, reason: Option<&str>) -> RevokeRequest {
        RevokeRequest { kind, value: value.into(), until, reason: reason.map(Into::into) }
    }

    #[test]
    fn each_change_moves_the_version_by_one() {
        let mut set = RevocationSet::default();
        let change = set.revoke(revoke(Kind::Sub, "u1", None, Some("left")), NOW).unwrap().unwrap();
        assert_eq!(change.version, 1);
        assert_eq!(change.put, Some(("r:sub:u1".into(), r#"{"reason":"left","until":null}"#.into())));
        // The same revocation again is no change.
        assert_eq!(set.revoke(revoke(Kind::Sub, "u1", None, Some("left")), NOW), Ok(None));
        // A new until (or reason) is.
        let change = set.revoke(revoke(Kind::Sub, "u1", Some(NOW + 60), Some("left")), NOW).unwrap().unwrap();
        assert_eq!(change.version, 2);
        let change = set.unrevoke(UnrevokeRequest { kind: Kind::Sub, value: "u1".into() }).unwrap();
        assert_eq!((change.version, change.delete.as_deref()), (3, Some("r:sub:u1")));
        assert_eq!(set.unrevoke(UnrevokeRequest { kind: Kind::Sub, value: "u1".into() }), None);
        assert_eq!(set.version(), 3);
    }

    #[test]
    fn kinds_are_separate() {
        let mut set = RevocationSet::default();
        set.revoke(revoke(Kind::Sub, "same", None, None), NOW).unwrap();
        set.revoke(revoke(Kind::Jti, "same", None, None), NOW).unwrap();
        assert_eq!(set.to_list(NOW)["entries"].as_array().unwrap().len(), 2);
        set.unrevoke(UnrevokeRequest { kind: Kind::Jti, value: "same".into() }).unwrap();
        assert_eq!(
            set.to_list(NOW),
            json!({"version": 3, "entries": [{"kind": "sub", "value": "same", "until": null, "reason": null}]})
        );
    }

    #[test]
    fn expired_entries_are_left_out_and_taken() {
        let mut set = RevocationSet::default();
        set.revoke(revoke(Kind::Client, "c", Some(NOW + 10), None), NOW).unwrap();
        set.revoke(revoke(Kind::Iss, "i", None, None), NOW).unwrap();
        assert_eq!(set.to_list(NOW + 10)["entries"].as_array().unwrap().len(), 2);
        assert_eq!(set.to_list(NOW + 11)["entries"].as_array().unwrap().len(), 1);
        assert_eq!(set.take_expired(NOW + 11), vec!["r:client:c".to_string()]);
        assert!(set.take_expired(NOW + 11).is_empty());
        assert_eq!(set.version(), 2);
    }

    #[test]
    fn past_until_is_refused() {
        let mut set = RevocationSet::default();
        assert_eq!(set.revoke(revoke(Kind::Sub, "u", Some(NOW - 1), None), NOW), Err(ChangeError::InThePast));
        assert_eq!(set.version(), 0);
    }

    #[test]
    fn a_full_set_takes_updates_but_no_new_entries() {
        let mut set = RevocationSet::default();
        for i in 0..MAX_ENTRIES {
            set.revoke(revoke(Kind::Jti, &i.to_string(), None, None), NOW).unwrap();
        }
        assert_eq!(set.revoke(revoke(Kind::Jti, "new", None, None), NOW), Err(ChangeError::Full));
        assert!(set.revoke(revoke(Kind::Jti, "0", None, Some("why")), NOW).unwrap().is_some());
    }

    #[test]
    fn stored_form_loads_back() {
        let mut set = RevocationSet::default();
        let a = set.revoke(revoke(Kind::Sub, "a:b", Some(NOW + 5), Some("r")), NOW).unwrap().unwrap();
        let b = set.revoke(revoke(Kind::Iss, "https://x/", None, None), NOW).unwrap().unwrap();
        let stored = [a.put.unwrap(), b.put.unwrap()];
        let loaded = RevocationSet::load(Some(2.0), stored.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(loaded, set);
    }

    #[test]
    fn corrupt_storage_is_an_error_not_a_silent_drop() {
        assert!(RevocationSet::load(Some(1.5), []).is_err());
        assert!(RevocationSet::load(None, [("r:user:a", "{}")]).is_err());
        assert!(RevocationSet::load(None, [("r:sub:a", "not json")]).is_err());
        assert!(RevocationSet::load(None, [("r:sub:a", r#"{"until":"soon"}"#)]).is_err());
        assert_eq!(RevocationSet::load(None, []).unwrap().version(), 0);
    }
}
