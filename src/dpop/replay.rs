//! DPoP `jti` memory: each isolate accepts a proof once (RFC 9449 §11.1).
//!
//! Entries are kept per proof key (thumbprint) until the proof's `iat` leaves the accepted window.
//! Memory is bounded so that one caller cannot push out others' entries:
//! - a key holds at most [`PER_KEY`] entries; past that its own oldest goes. Only that key's
//!   holder can make proofs for it, and replaying one's own proofs gains nothing;
//! - all keys together hold at most [`TOTAL`]; when full after dropping expired entries, the
//!   oldest entry of the key holding the most goes, and the caller is told so it can log it. One
//!   key never holds the most of a full memory by itself, so an attacker with one token and key
//!   cannot reach other clients' entries; it takes `TOTAL / PER_KEY` bound keys, and it shows.

use std::collections::{HashMap, HashSet, VecDeque};

pub const PER_KEY: usize = 4096;
pub const TOTAL: usize = 32 * 1024;

/// One key's remembered `jti`s: in arrival order (for expiry and eviction), and as a set (for the
/// lookup every proof makes, which a busy client's thousands of entries would make slow as a scan).
#[derive(Debug, Default)]
struct KeyEntries {
    order: VecDeque<(String, i64)>,
    seen: HashSet<String>,
}

impl KeyEntries {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn pop_oldest(&mut self) {
        if let Some((jti, _)) = self.order.pop_front() {
            self.seen.remove(&jti);
        }
    }
}

#[derive(Debug, Default)]
pub struct ReplayCache {
    /// thumbprint → that key's entries.
    keys: HashMap<String, KeyEntries>,
    len: usize,
    last_sweep: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Fresh,
    /// Memory was full: another key's oldest unexpired entry was dropped to make room.
    FreshEvicting,
    Replayed,
}

impl ReplayCache {
    /// Records `jti` for `thumbprint` until `forget_at` (seconds), unless it was seen already.
    pub fn remember(&mut self, thumbprint: &str, jti: &str, forget_at: i64, now: i64) -> Remembered {
        if let Some(entries) = self.keys.get_mut(thumbprint) {
            while entries.order.front().is_some_and(|(_, until)| *until <= now) {
                entries.pop_oldest();
                self.len -= 1;
            }
            if entries.seen.contains(jti) {
                return Remembered::Replayed;
            }
        }
        let mut outcome = Remembered::Fresh;
        if self.len >= TOTAL {
            self.sweep(now);
        }
        if self.len >= TOTAL {
            outcome = Remembered::FreshEvicting;
            if let Some(biggest) = self.keys.values_mut().max_by_key(|entries| entries.len()) {
                biggest.pop_oldest();
                self.len -= 1;
            }
        }
        let entries = self.keys.entry(thumbprint.to_owned()).or_default();
        if entries.len() >= PER_KEY {
            entries.pop_oldest();
            self.len -= 1;
        }
        entries.seen.insert(jti.to_owned());
        entries.order.push_back((jti.to_owned(), forget_at));
        self.len += 1;
        if now - self.last_sweep >= 60 {
            self.sweep(now);
        }
        outcome
    }

    fn sweep(&mut self, now: i64) {
        self.last_sweep = now;
        let mut len = 0;
        self.keys.retain(|_, entries| {
            let KeyEntries { order, seen } = entries;
            order.retain(|(jti, until)| {
                let keep = *until > now;
                if !keep {
                    seen.remove(jti);
                }
                keep
            });
            len += order.len();
            !order.is_empty()
        });
        self.len = len;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_accepted_once_per_key_until_it_is_forgotten() {
        let mut cache = ReplayCache::default();
        assert_eq!(cache.remember("k1", "a", 100, 0), Remembered::Fresh);
        assert_eq!(cache.remember("k1", "a", 100, 50), Remembered::Replayed);
        assert_eq!(cache.remember("k2", "a", 100, 50), Remembered::Fresh, "another key's jti is its own");
        assert_eq!(cache.remember("k1", "a", 200, 100), Remembered::Fresh, "past its window a proof is too old anyway");
    }

    #[test]
    fn one_key_flooding_only_pushes_out_its_own_entries() {
        let mut cache = ReplayCache::default();
        assert_eq!(cache.remember("victim", "v1", 1000, 0), Remembered::Fresh);
        for i in 0..(PER_KEY * 3) {
            assert_eq!(cache.remember("attacker", &i.to_string(), 1000, 1), Remembered::Fresh);
        }
        assert_eq!(cache.len(), PER_KEY + 1);
        assert_eq!(cache.remember("victim", "v1", 1000, 2), Remembered::Replayed, "the victim's entry held");
        let last = (PER_KEY * 3 - 1).to_string();
        assert_eq!(cache.remember("attacker", &last, 1000, 2), Remembered::Replayed, "its newest are still held");
    }

    #[test]
    fn a_full_memory_drops_from_the_largest_key_and_says_so() {
        let mut cache = ReplayCache::default();
        let keys = TOTAL / PER_KEY;
        for k in 0..keys {
            for i in 0..PER_KEY {
                cache.remember(&format!("k{k}"), &i.to_string(), 1000, 0);
            }
        }
        assert_eq!(cache.len(), TOTAL);
        assert_eq!(cache.remember("newcomer", "n", 1000, 1), Remembered::FreshEvicting);
        assert_eq!(cache.len(), TOTAL);
        // Expired entries go before anything is evicted.
        assert_eq!(cache.remember("later", "l", 5000, 1000), Remembered::Fresh);
        assert_eq!(cache.len(), 1);
    }
}
