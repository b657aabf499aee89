//! Revoking a token before its `exp`: the deny list's policy, pure (what matches, when a copy is
//! due); reading it is Edge work behind [`DenyIo`], as [`crate::keys::store::KeyIo`] is for keys.
//!
//! The list lives in an optional KV namespace (`DENYLIST`), one key per entry: `sub:<subject>`,
//! `jti:<token id>`, `client:<azp or client_id>`, `iss:<issuer>`; the entry's metadata may carry a
//! `reason`, which is logged, never sent. KV's own expiration removes an entry.
//!
//! Read pattern: a listed snapshot per isolate, no KV read per request. The first request that
//! needs it reads it in the foreground (an isolate that never read it cannot know, and revocation
//! never fails open: 503 when that read fails); after that a copy older than the refresh interval
//! is listed again after a response, in the background, by one request at a time, and a failing
//! list keeps the last copy. So an entry takes effect within the interval plus KV's propagation.

use std::{collections::HashMap, future::Future, rc::Rc};

use crate::{config::vars::Vars, error::ConfigError};

pub const DEFAULT_REFRESH_SECONDS: u64 = 30;

/// `DENYLIST_REFRESH_SECONDS`: how old an isolate's copy of the deny list may grow before it is
/// listed again (used only with a `DENYLIST` binding).
pub fn refresh_from_vars(vars: &Vars) -> Result<u64, ConfigError> {
    vars.seconds("DENYLIST_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS, 1, 3600)
}

/// One listed entry: the KV key, and the `reason` its metadata gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedEntry {
    pub key: String,
    pub reason: Option<String>,
}

/// The runtime side of the deny list.
pub trait DenyIo {
    /// Every entry (all pages of a KV list). `Err` holds a short reason for the log.
    fn list_denied(&self) -> impl Future<Output = Result<Vec<DeniedEntry>, String>>;
}

/// What a token is matched on: its verified claims, and the configured issuer that judged it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenIds<'a> {
    pub subject: Option<&'a str>,
    pub jti: Option<&'a str>,
    /// `azp`, else `client_id`.
    pub client: Option<&'a str>,
    pub issuer: Option<&'a str>,
}

/// The entry a token matched: which kind of key, and the reason the operator gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    pub kind: &'static str,
    pub reason: Option<&'a str>,
}

/// One listed copy of the deny list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    entries: HashMap<String, Option<String>>,
}

impl Snapshot {
    pub fn new(entries: impl IntoIterator<Item = DeniedEntry>) -> Snapshot {
        Snapshot { entries: entries.into_iter().map(|e| (e.key, e.reason)).collect() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry the token matches, checking `sub`, `jti`, `client`, `iss` in that order.
    /// Values are compared exactly (a key is `kind:` and the claim, whole).
    pub fn matches(&self, ids: &TokenIds<'_>) -> Option<Match<'_>> {
        if self.entries.is_empty() {
            return None;
        }
        let mut key = String::new();
        for (kind, value) in [("sub", ids.subject), ("jti", ids.jti), ("client", ids.client), ("iss", ids.issuer)] {
            let Some(value) = value else { continue };
            key.clear();
            key.push_str(kind);
            key.push(':');
            key.push_str(value);
            if let Some(reason) = self.entries.get(&key) {
                return Some(Match { kind, reason: reason.as_deref() });
            }
        }
        None
    }
}

/// The isolate's copy and when to list again. Time in ms comes in as a parameter.
#[derive(Debug)]
pub struct DenyList {
    refresh_ms: u64,
    copy: Option<Rc<Snapshot>>,
    listed_at_ms: u64,
    /// When a background listing was last claimed: at most one per interval, whether it succeeds.
    claimed_at_ms: Option<u64>,
    /// How many copies were installed (see [`crate::keys::store::KeyStore::installed`]).
    installed: u64,
}

impl DenyList {
    pub fn new(refresh_secs: u64) -> DenyList {
        DenyList {
            refresh_ms: refresh_secs.saturating_mul(1000),
            copy: None,
            listed_at_ms: 0,
            claimed_at_ms: None,
            installed: 0,
        }
    }

    /// The last copy listed, if this isolate ever listed one.
    pub fn copy(&self) -> Option<Rc<Snapshot>> {
        self.copy.clone()
    }

    pub fn install(&mut self, snapshot: Snapshot, now_ms: u64) -> Rc<Snapshot> {
        let snapshot = Rc::new(snapshot);
        self.copy = Some(snapshot.clone());
        self.listed_at_ms = now_ms;
        self.installed = self.installed.wrapping_add(1);
        snapshot
    }

    /// Changes whenever a listed copy is installed.
    pub fn installed(&self) -> u64 {
        self.installed
    }

    /// When the copy is due to be listed again (from then on a request may claim the listing).
    pub fn due_at_ms(&self) -> u64 {
        self.listed_at_ms.saturating_add(self.refresh_ms)
    }

    /// Whether this request should list the deny list again after its response: the copy is at
    /// least the interval old and no other request claimed a listing within the interval. Claims it.
    pub fn claim_refresh(&mut self, now_ms: u64) -> bool {
        let due = self.copy.is_some() && now_ms.saturating_sub(self.listed_at_ms) >= self.refresh_ms;
        let claimed = self.claimed_at_ms.is_some_and(|at| now_ms.saturating_sub(at) < self.refresh_ms);
        if due && !claimed {
            self.claimed_at_ms = Some(now_ms);
            return true;
        }
        false
    }

    /// How old the copy is, in seconds (for the log when a listing fails).
    pub fn age_secs(&self, now_ms: u64) -> Option<u64> {
        self.copy.as_ref().map(|_| now_ms.saturating_sub(self.listed_at_ms) / 1000)
    }
}

/// The fleet's revocations (`"revocation": "fleet"` on a rule): the same entries, kept by one
/// Durable Object that `scripts/deny.sh` writes to beside KV, so an entry holds everywhere as soon
/// as it is written, with no KV propagation. An isolate keeps a listed copy at most
/// [`FLEET_COPY_MS`] and lists it again in the foreground when it is older: the bound is ~1 s.
pub trait FleetRevocationIo {
    /// The object's entries and its version (one more per change). `Err` holds a short reason
    /// for the log; the request is then refused (503), never let through.
    fn list_revoked(&self) -> impl Future<Output = Result<(u64, Vec<DeniedEntry>), String>>;
}

/// How old an isolate's copy of the fleet's revocations may be when a request is judged by it.
pub const FLEET_COPY_MS: u64 = 1000;

/// The isolate's copy of the fleet's revocations.
#[derive(Debug, Default)]
pub struct FleetCopy {
    copy: Option<Rc<Snapshot>>,
    version: Option<u64>,
    listed_at_ms: u64,
    /// Changes when a copy of another version is installed (a listing of the same version only
    /// renews the copy's age, so kept answers do not all go each second).
    installed: u64,
}

impl FleetCopy {
    /// The copy, when it was listed less than [`FLEET_COPY_MS`] ago.
    pub fn fresh(&self, now_ms: u64) -> Option<Rc<Snapshot>> {
        self.copy.clone().filter(|_| now_ms.saturating_sub(self.listed_at_ms) < FLEET_COPY_MS)
    }

    /// The last copy listed, however old (an open relay keeps being judged by it when a listing
    /// fails).
    pub fn copy_any(&self) -> Option<Rc<Snapshot>> {
        self.copy.clone()
    }

    /// Until when an answer judged by the fresh copy may be kept: the copy's end.
    pub fn good_until_ms(&self) -> u64 {
        self.listed_at_ms.saturating_add(FLEET_COPY_MS)
    }

    pub fn install(&mut self, version: u64, entries: Vec<DeniedEntry>, listed_at_ms: u64) -> Rc<Snapshot> {
        // A listing that finished after a newer one (two requests listed at once) keeps the newer.
        if self.version.is_some_and(|v| v > version) {
            self.listed_at_ms = self.listed_at_ms.max(listed_at_ms);
            return self.copy.clone().unwrap_or_default();
        }
        if self.version != Some(version) || self.copy.is_none() {
            self.copy = Some(Rc::new(Snapshot::new(entries)));
            self.installed = self.installed.wrapping_add(1);
        }
        self.version = Some(version);
        self.listed_at_ms = listed_at_ms;
        self.copy.clone().unwrap_or_default()
    }

    pub fn installed(&self) -> u64 {
        self.installed
    }
}

/// The KV key an operator writes for an entry (`scripts/deny.sh` builds the same).
pub fn key(kind: &str, value: &str) -> String {
    format!("{kind}:{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, reason: Option<&str>) -> DeniedEntry {
        DeniedEntry { key: key.into(), reason: reason.map(str::to_owned) }
    }

    #[test]
    fn a_fleet_copy_is_used_for_one_second_and_only_a_new_version_counts_as_installed() {
        let mut fleet = FleetCopy::default();
        assert!(fleet.fresh(0).is_none(), "an isolate that never listed knows nothing");
        fleet.install(3, vec![entry("sub:alice", None)], 10_000);
        assert!(fleet.fresh(10_999).is_some_and(|c| c.len() == 1));
        assert!(fleet.fresh(11_000).is_none(), "a copy a second old is listed again");
        assert_eq!(fleet.good_until_ms(), 11_000);
        let installed = fleet.installed();
        fleet.install(3, vec![entry("sub:alice", None)], 11_000);
        assert_eq!(fleet.installed(), installed, "the same version renews the copy's age only");
        assert!(fleet.fresh(11_500).is_some());
        fleet.install(4, vec![], 11_600);
        assert_ne!(fleet.installed(), installed);
        assert!(fleet.fresh(11_700).is_some_and(|c| c.is_empty()));
        // An older listing that lands late does not bring an entry back.
        fleet.install(3, vec![entry("sub:alice", None)], 11_650);
        assert!(fleet.fresh(11_700).is_some_and(|c| c.is_empty()));
    }

    #[test]
    fn a_token_matches_by_subject_token_id_client_or_issuer_exactly() {
        let list = Snapshot::new([
            entry("sub:auth0|departed", Some("left the company")),
            entry("jti:abc-123", None),
            entry("client:stolen-client", Some("leaked secret")),
            entry("iss:https://old.example/", None),
        ]);
        let ids = |subject, jti, client, issuer| TokenIds { subject, jti, client, issuer };
        let hit = |i: TokenIds<'_>| list.matches(&i).map(|m| (m.kind, m.reason.map(str::to_owned)));
        let issuer = Some("https://tenant.example/");
        assert_eq!(
            hit(ids(Some("auth0|departed"), None, None, issuer)),
            Some(("sub", Some("left the company".into())))
        );
        assert_eq!(hit(ids(Some("auth0|other"), Some("abc-123"), None, issuer)), Some(("jti", None)));
        assert_eq!(hit(ids(None, None, Some("stolen-client"), issuer)), Some(("client", Some("leaked secret".into()))));
        assert_eq!(hit(ids(None, None, None, Some("https://old.example/"))), Some(("iss", None)));
        for miss in [
            ids(Some("auth0|departed2"), None, None, issuer),
            ids(Some("AUTH0|DEPARTED"), None, None, issuer),
            ids(Some("abc-123"), None, None, issuer),
            ids(None, Some("abc-12"), Some("stolen"), issuer),
            ids(None, None, None, None),
        ] {
            assert_eq!(hit(miss), None, "{miss:?}");
        }
        // A kind names its own claim only: a subject that happens to read "jti:…" is a subject.
        assert_eq!(hit(ids(Some("x"), None, None, None)), None);
    }

    #[test]
    fn a_copy_is_listed_again_once_per_interval_and_kept_until_then() {
        let mut list = DenyList::new(30);
        assert!(list.copy().is_none());
        assert!(!list.claim_refresh(0), "nothing to refresh before the first listing");
        list.install(Snapshot::new([entry("sub:a", None)]), 1_000);
        assert!(!list.claim_refresh(30_999));
        assert!(list.claim_refresh(31_000));
        // Claimed: no other request lists again within the interval, even if that listing fails.
        assert!(!list.claim_refresh(31_001));
        assert!(!list.claim_refresh(60_999));
        assert_eq!(list.age_secs(60_999), Some(59));
        assert!(list.claim_refresh(61_000));
        list.install(Snapshot::new([]), 61_500);
        assert!(list.copy().unwrap().is_empty());
        assert!(!list.claim_refresh(91_499));
        assert!(list.claim_refresh(91_500));
    }

    #[test]
    fn keys_are_kind_colon_value() {
        assert_eq!(key("sub", "auth0|42"), "sub:auth0|42");
    }
}
