//! Tokens already verified, per isolate (Envoy's `jwt_cache`): a client that sends the same token a
//! thousand times pays for one signature check, not a thousand.
//!
//! What a hit may skip, and what it may not:
//! - Skipped: parsing, the signature and the issuer/audience checks, whose inputs (the token's exact
//!   bytes, the key, the isolate's fixed configuration) cannot have changed.
//! - Never skipped: the validity window against the current clock ([`Validity::check`]), the key
//!   still being held by the key store (a key removed from the JWKS takes its tokens with it), and
//!   the route's scope requirement, which the pipeline applies to the cached [`Principal`].
//!
//! Choices:
//! - The key is the whole token, compared byte for byte on lookup. A digest would save ~1 KB per
//!   entry but would make correctness rest on the digest's collision resistance and cost a hash of
//!   the token per request; a bounded map of strings needs no such argument.
//! - Only verified tokens are inserted. There is no failure cache: invalid tokens cannot evict good
//!   entries or grow memory, and a refusal is already cheap (it stops at the first failed check).
//! - Bounded at [`CAPACITY`] entries, first in first out; expired entries are swept out first (at
//!   most once a second, as a sweep costs a pass over the map). Entries never outlive their token's
//!   `exp` (plus leeway): an expired hit is removed and refused.

use std::{
    collections::{HashMap, VecDeque},
    rc::Rc,
};

use crate::{
    keys::jwks::VerificationKey,
    token::claims::{Principal, Validity},
};

/// ~1-2 KB per entry (the token and its principal), so at most a few MB of an isolate's 128 MB.
pub const CAPACITY: usize = 1024;

/// What one successful verification proved.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Which configured issuer's keys verified it (an index into [`crate::token::issuers::Issuers`]).
    pub issuer: usize,
    /// The `kid` the token named, looked up again on every use (`None`: the token named none).
    pub kid: Option<Rc<str>>,
    pub key: VerificationKey,
    pub principal: Rc<Principal>,
    pub validity: Validity,
}

#[derive(Debug)]
struct Entry {
    verified: Verified,
    /// Insertion number, matching this entry's place in `order`.
    serial: u64,
}

#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<Rc<str>, Entry>,
    /// Insertion order for eviction; holds stale places of removed entries until they are popped.
    order: VecDeque<(Rc<str>, u64)>,
    next_serial: u64,
    /// When expired entries were last swept out (a full sweep is O(capacity): once a second at most).
    swept_at_secs: i64,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl TokenCache {
    pub fn with_capacity(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_serial: 0,
            swept_at_secs: i64::MIN,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What an earlier verification of exactly this token proved. The caller still checks the
    /// validity window, the key and the scope.
    pub fn get(&self, token: &str) -> Option<Verified> {
        self.entries.get(token).map(|entry| entry.verified.clone())
    }

    pub fn remove(&mut self, token: &str) {
        self.entries.remove(token);
    }

    /// Remembers a verified token, evicting expired entries and then the oldest when full.
    pub fn insert(&mut self, token: &str, verified: Verified, now_secs: i64, leeway_secs: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(token) {
            if self.swept_at_secs != now_secs {
                self.swept_at_secs = now_secs;
                self.entries.retain(|_, e| e.verified.validity.check(now_secs, leeway_secs).is_ok());
            }
            while self.entries.len() >= self.capacity {
                let Some((oldest, serial)) = self.order.pop_front() else { break };
                if self.entries.get(&oldest).is_some_and(|e| e.serial == serial) {
                    self.entries.remove(&oldest);
                }
            }
        }
        let key: Rc<str> = Rc::from(token);
        let serial = self.next_serial;
        self.next_serial += 1;
        self.entries.insert(key.clone(), Entry { verified, serial });
        self.order.push_back((key, serial));
        // Removed and replaced entries leave stale places behind; keep `order` proportional.
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order.retain(|(k, s)| entries.get(k).is_some_and(|e| e.serial == *s));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{keys::jwks::KeySet, token::claims::Binding};

    const NOW: i64 = 1_767_225_600;

    fn verified(expires: i64) -> Verified {
        let n = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(&[0xC5; 256]);
        let set = KeySet::parse(format!(r#"{{"keys":[{{"kty":"RSA","kid":"k","n":"{n}","e":"AQAB"}}]}}"#).as_bytes());
        Verified {
            issuer: 0,
            kid: Some("k".into()),
            key: set.unwrap().select(Some("k")).unwrap().clone(),
            principal: Rc::new(Principal {
                subject: None,
                scopes: BTreeSet::new(),
                binding: Binding::None,
                expires,
                claims: Vec::new(),
                jti: None,
                client: None,
                audience: None,
            }),
            validity: Validity { expires, not_before: None, issued_at: None },
        }
    }

    #[test]
    fn a_full_cache_evicts_the_oldest_entry() {
        let mut cache = TokenCache::with_capacity(2);
        for token in ["a", "b", "c"] {
            cache.insert(token, verified(NOW + 3600), NOW, 0);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
    }

    #[test]
    fn a_full_cache_drops_expired_entries_before_live_ones() {
        let mut cache = TokenCache::with_capacity(2);
        cache.insert("live", verified(NOW + 3600), NOW, 0);
        cache.insert("expiring", verified(NOW + 10), NOW, 0);
        cache.insert("new", verified(NOW + 3600), NOW + 20, 0);
        assert!(cache.get("live").is_some());
        assert!(cache.get("expiring").is_none());
        assert!(cache.get("new").is_some());
    }

    #[test]
    fn removals_and_reinsertions_keep_the_bound() {
        let mut cache = TokenCache::with_capacity(3);
        for round in 0..100 {
            let token = format!("t{}", round % 5);
            cache.remove(&token);
            cache.insert(&token, verified(NOW + 3600), NOW, 0);
            assert!(cache.len() <= 3);
            assert!(cache.order.len() <= 2 * 3 + 1, "eviction order grew to {}", cache.order.len());
        }
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let mut cache = TokenCache::with_capacity(0);
        cache.insert("a", verified(NOW + 3600), NOW, 0);
        assert!(cache.is_empty());
    }
}
