//! DPoP `jti` memory: each isolate accepts a proof once (RFC 9449 §11.1).
//!
//! An entry is kept per proof key (thumbprint) through the last second its proof could still be
//! accepted, and never forgotten earlier: a `jti` dropped to make room would make a captured proof
//! good again. So the memory is bounded by refusing, not by evicting:
//! - a key holds at most [`PER_KEY`] entries; a key at its share is refused ([`Remembered::Full`])
//!   until its own entries expire. Only that key's holder can make proofs for it;
//! - all keys together hold at most [`TOTAL`] units: an entry is one, and a key holding any is
//!   [`KEY_UNITS`] more (a key's own set and its place in the map cost about as much as three
//!   entries), so the memory's size is bounded whether a few keys or many hold it. A full memory
//!   refuses every new proof. Filling it takes about `TOTAL / PER_KEY` bound keys at their share,
//!   and the refusal is logged.
//!
//! A `jti` is kept as a 64-bit digest keyed with a secret drawn per isolate, not as its text: an
//! entry is ~40 bytes in wasm32 instead of ~100, so about four times the proofs of the earlier
//! bounds (with the default 330 s window, ~390 a second per isolate and ~50 per key) fit in at
//! most about 6 MB, however many keys they come from (measured in wasm32 with a counting
//! allocator: 5.1 MB for 8 keys at their share, 5.5 MB for 32,768 keys of one entry each, 5.9 MB
//! for 1,024 keys of 125). Two `jti`s of one key with the same digest would refuse
//! the second as replayed (fail closed); among the at most `PER_KEY` entries of a key that is a
//! chance of about 2^-37 per window, and without the secret nobody can aim for it.
//!
//! The caller answers a refusal with a nonce challenge when nonces are on, since a proof with a
//! nonce is remembered only as long as its nonce is good (two steps, not the whole `iat` window).
//! Expired entries leave in time order, a bucket per second, so no call ever sweeps the memory.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    hash::{BuildHasherDefault, Hasher},
    rc::Rc,
};

pub const PER_KEY: usize = 16 * 1024;
pub const TOTAL: usize = 128 * 1024;
/// What a key holding entries counts against [`TOTAL`] besides them (see the module's note).
pub const KEY_UNITS: usize = 3;

/// One remembered proof: its key's thumbprint and its `jti`'s digest.
type Entry = (Rc<str>, u64);

/// The fleet's memory of used `jti`s (`DPOP_REPLAY=fleet`): a Durable Object per proof key, shared
/// by every isolate in every location. Asked after the isolate's own memory took the proof, so
/// a replay to the same isolate never costs a call.
pub trait FleetReplay {
    /// Records `jti` for `thumbprint` until the second `keep_through`. `Err` holds a short reason
    /// for the log: the store could not be asked or answered oddly, and the proof is refused.
    fn use_jti(&self, thumbprint: &str, jti: &str, keep_through: i64)
        -> impl Future<Output = Result<FleetUse, String>>;
}

/// The fleet store's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetUse {
    Fresh,
    /// Used before, in this isolate or another.
    Used,
    /// The key's store refuses to hold more (it never forgets an unexpired `jti` to make room).
    Full,
}

/// Digests are keyed already: a set of them needs no second hash.
#[derive(Default)]
struct Digested(u64);

impl Hasher for Digested {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed here (`write_u64`); any other input is folded in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Digests = HashSet<u64, BuildHasherDefault<Digested>>;

pub struct ReplayCache {
    /// The secret the digests are keyed with (see the module's note).
    secret: [u64; 2],
    /// thumbprint → the digests of the `jti`s its proofs used.
    keys: HashMap<Rc<str>, Digests>,
    /// The entries by the last second they are kept, one bucket per second, oldest first. New
    /// entries' seconds nearly always come last (now plus a fixed window), so a bucket is found
    /// from the back in a step or two; there are at most as many buckets as seconds in a window.
    expiry: VecDeque<(i64, Vec<Entry>)>,
    /// Entries held.
    len: usize,
    per_key: usize,
    total: usize,
}

/// Everything but the secret.
impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("keys", &self.keys.len())
            .field("len", &self.len)
            .field("units", &self.units())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Fresh,
    Replayed,
    /// Not remembered, so not accepted: the key's share or the whole memory is full.
    Full,
}

impl ReplayCache {
    /// An empty memory whose digests are keyed with `secret` (random per isolate at the edge).
    pub fn new(secret: [u64; 2]) -> Self {
        Self::with_limits(secret, PER_KEY, TOTAL)
    }

    /// A memory of other bounds than [`PER_KEY`] and [`TOTAL`]: a test fills a small one
    /// without signing tens of thousands of proofs.
    pub fn with_limits(secret: [u64; 2], per_key: usize, total: usize) -> Self {
        ReplayCache { secret, keys: HashMap::new(), expiry: VecDeque::new(), len: 0, per_key, total }
    }

    /// SipHash-1-3 (std's hasher) over the secret, then the `jti`.
    fn digest(&self, jti: &str) -> u64 {
        // std's SipHasher13 is unstable; `DefaultHasher::new()` is that hasher, keyed with zeros.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        hasher.write_u64(self.secret[0]);
        hasher.write_u64(self.secret[1]);
        hasher.write(jti.as_bytes());
        hasher.finish()
    }

    /// Records `jti` for `thumbprint` through the second `keep_through`, unless it was seen already
    /// or there is no room for it.
    pub fn remember(&mut self, thumbprint: &str, jti: &str, keep_through: i64, now: i64) -> Remembered {
        let digest = self.digest(jti);
        self.remember_digest(thumbprint, digest, keep_through, now)
    }

    fn remember_digest(&mut self, thumbprint: &str, digest: u64, keep_through: i64, now: i64) -> Remembered {
        self.expire(now);
        let held = self.keys.get(thumbprint);
        if held.is_some_and(|digests| digests.contains(&digest)) {
            return Remembered::Replayed;
        }
        let needed = if held.is_some() { 1 } else { 1 + KEY_UNITS };
        if self.units() + needed > self.total || held.is_some_and(|digests| digests.len() >= self.per_key) {
            return Remembered::Full;
        }
        let thumbprint: Rc<str> = match self.keys.get_key_value(thumbprint) {
            Some((known, _)) => known.clone(),
            None => thumbprint.into(),
        };
        self.keys.entry(thumbprint.clone()).or_default().insert(digest);
        let at = self.expiry.iter().rposition(|(second, _)| *second <= keep_through);
        match at {
            Some(i) if self.expiry[i].0 == keep_through => self.expiry[i].1.push((thumbprint, digest)),
            Some(i) => self.expiry.insert(i + 1, (keep_through, vec![(thumbprint, digest)])),
            None => self.expiry.push_front((keep_through, vec![(thumbprint, digest)])),
        }
        self.len += 1;
        Remembered::Fresh
    }

    /// Whether `jti` was recorded for `thumbprint` (without recording it). An entry past its last
    /// second may still be found: its proof is too old to be accepted anyway.
    pub fn seen(&self, thumbprint: &str, jti: &str) -> bool {
        self.keys.get(thumbprint).is_some_and(|digests| digests.contains(&self.digest(jti)))
    }

    /// Drops every entry whose last second is before `now`, oldest bucket first.
    fn expire(&mut self, now: i64) {
        while self.expiry.front().is_some_and(|(second, _)| *second < now) {
            let Some((_, bucket)) = self.expiry.pop_front() else { break };
            for (thumbprint, digest) in bucket {
                if let Some(digests) = self.keys.get_mut(&thumbprint) {
                    digests.remove(&digest);
                    if digests.is_empty() {
                        self.keys.remove(&thumbprint);
                    }
                }
                self.len -= 1;
            }
        }
    }

    /// Units used against the total: the entries and [`KEY_UNITS`] per key holding any.
    fn units(&self) -> usize {
        self.len + KEY_UNITS * self.keys.len()
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
    fn a_jti_is_accepted_once_per_key_until_its_last_second_has_passed() {
        let mut cache = ReplayCache::new([1, 2]);
        assert_eq!(cache.remember("k1", "a", 100, 0), Remembered::Fresh);
        assert_eq!(cache.remember("k1", "a", 100, 50), Remembered::Replayed);
        assert_eq!(cache.remember("k2", "a", 100, 50), Remembered::Fresh, "another key's jti is its own");
        assert_eq!(cache.remember("k1", "a", 100, 100), Remembered::Replayed, "kept through its last second");
        assert_eq!(cache.remember("k1", "a", 200, 101), Remembered::Fresh, "past its window a proof is too old anyway");
    }

    #[test]
    fn a_jti_is_kept_as_a_digest_keyed_per_memory() {
        let (one, other) = (ReplayCache::new([1, 2]), ReplayCache::new([3, 4]));
        assert_eq!(one.digest("jti-1"), one.digest("jti-1"));
        assert_ne!(one.digest("jti-1"), other.digest("jti-1"), "another secret, another digest");
        assert_ne!(one.digest("jti-1"), one.digest("jti-2"));
        let mut cache = ReplayCache::new([5, 6]);
        assert_eq!(cache.remember("k", "jti-1", 100, 0), Remembered::Fresh);
        assert!(cache.seen("k", "jti-1") && !cache.seen("k", "jti-10") && !cache.seen("k2", "jti-1"));
    }

    /// Two `jti`s of one key with one digest: the second is refused as used, never admitted, and
    /// the first's entry expiring does not free a later one (each is its own entry).
    #[test]
    fn a_digest_collision_refuses_and_never_admits() {
        let mut cache = ReplayCache::new([1, 2]);
        assert_eq!(cache.remember_digest("k", 7, 100, 0), Remembered::Fresh);
        assert_eq!(cache.remember_digest("k", 7, 200, 50), Remembered::Replayed, "a colliding jti");
        assert_eq!(cache.remember_digest("other", 7, 200, 50), Remembered::Fresh, "another key's digests are its own");
        assert_eq!(cache.remember_digest("k", 7, 300, 101), Remembered::Fresh, "past its window, room again");
        assert_eq!(cache.remember_digest("k", 7, 300, 250), Remembered::Replayed, "held through its own window");
    }

    /// Many keys of one entry each fill the memory sooner than a few keys: each key is charged
    /// for its own set and place, so the memory's size has one bound whatever the spread.
    #[test]
    fn many_keys_of_one_entry_are_charged_for_their_keys() {
        let mut cache = ReplayCache::new([1, 2]);
        let mut k = 0;
        while cache.remember(&format!("key{k}"), "only", 1000, 0) == Remembered::Fresh {
            k += 1;
        }
        assert_eq!(k, TOTAL / (1 + KEY_UNITS), "{cache:?}");
        assert_eq!((cache.len(), cache.units()), (k, k * (1 + KEY_UNITS)));
        // Room comes back as entries expire, a key's units with its last entry.
        assert_eq!(cache.remember("newcomer", "n", 2000, 1001), Remembered::Fresh);
        assert_eq!((cache.len(), cache.units()), (1, 1 + KEY_UNITS));
    }

    /// Review finding 1: a busy client's own later proofs pushed its older `jti`s out while they
    /// were still inside the window, so a proof captured from a log was good again after 4,096 more.
    #[test]
    fn a_key_past_its_share_is_refused_and_its_old_entries_stay() {
        let mut cache = ReplayCache::new([1, 2]);
        assert_eq!(cache.remember("busy", "captured", 1000, 0), Remembered::Fresh);
        for i in 1..PER_KEY {
            assert_eq!(cache.remember("busy", &i.to_string(), 1000, 1), Remembered::Fresh);
        }
        assert_eq!(cache.remember("busy", "one more", 1000, 2), Remembered::Full, "the share is full");
        assert_eq!(cache.remember("busy", "captured", 1000, 3), Remembered::Replayed, "never forgotten to make room");
        assert_eq!(cache.remember("other", "x", 1000, 3), Remembered::Fresh, "other keys are not affected");
        assert_eq!(cache.remember("busy", "later", 1000, 1001), Remembered::Fresh, "room again once entries expire");
    }

    /// Review finding 2: an attacker spreading proofs over keys of its own made a victim's key the
    /// largest holder of a full memory, and the victim's entries were the ones evicted.
    #[test]
    fn a_full_memory_refuses_newcomers_and_evicts_no_one() {
        let mut cache = ReplayCache::new([1, 2]);
        for i in 0..PER_KEY {
            assert_eq!(cache.remember("victim", &format!("v{i}"), 1000, 0), Remembered::Fresh);
        }
        let mut k: usize = 0;
        while cache.remember(&format!("attacker{}", k / 300), &k.to_string(), 1000, 1) == Remembered::Fresh {
            k += 1;
        }
        // Filled to the last unit a newcomer key would need.
        assert!(cache.units() > TOTAL - (1 + KEY_UNITS), "{cache:?}");
        assert_eq!(cache.units(), cache.len() + KEY_UNITS * (1 + k.div_ceil(300)), "{cache:?}");
        assert_eq!(cache.remember("attacker-new", "a", 1000, 2), Remembered::Full, "memory is full");
        for i in 0..PER_KEY {
            assert_eq!(cache.remember("victim", &format!("v{i}"), 1000, 3), Remembered::Replayed, "v{i}");
        }
        // Expired entries make room, in time order.
        assert_eq!(cache.remember("later", "l", 5000, 1001), Remembered::Fresh);
        assert_eq!((cache.len(), cache.units()), (1, 1 + KEY_UNITS));
    }

    /// Review finding 3: once the memory was full, every insert swept all of it (373 µs each in a
    /// debug build), so a few busy keys made every DPoP request in the isolate pay.
    #[test]
    fn a_full_memory_answers_without_sweeping_it() {
        let mut cache = ReplayCache::new([1, 2]);
        let mut i = 0;
        while cache.remember(&format!("k{}", i / PER_KEY), &i.to_string(), 1000, 0) == Remembered::Fresh {
            i += 1;
        }
        assert!(cache.units() > TOTAL - (1 + KEY_UNITS), "{cache:?}");
        let started = std::time::Instant::now();
        for i in 0..2000 {
            cache.remember(&format!("n{i}"), "x", 1000, 1);
        }
        let elapsed = started.elapsed();
        // A sweep per call was ~0.75 s for these 2,000 in a debug build; a lookup is microseconds.
        assert!(elapsed < std::time::Duration::from_millis(150), "2,000 calls on a full memory took {elapsed:?}");
    }
}
