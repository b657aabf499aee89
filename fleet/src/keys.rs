//! Storage keys of a replay shard, and the time arithmetic of its expiry.
//!
//! A shard stores, per recorded jti:
//!   `u:<jti>`                → its `until` (the record looked up on each use);
//!   `x:<until, 10 digits>:<jti>` → 0 (the expiry index).
//! and `n` → how many `u:` records exist. Storage lists keys in byte order, so with `until`
//! zero-padded the index sorts by expiry: everything expired by now is the range from `x:` up to
//! `x:<now>`, and the alarm reads only that range, oldest first, never the live records.

use crate::wire::MAX_UNTIL;

pub const COUNT_KEY: &str = "n";
pub const INDEX_PREFIX: &str = "x:";
const RECORD_PREFIX: &str = "u:";
/// Digits of `until` in an index key: enough for `MAX_UNTIL`.
const UNTIL_DIGITS: usize = 10;

pub fn record_key(jti: &str) -> String {
    format!("{RECORD_PREFIX}{jti}")
}

pub fn index_key(until: u64, jti: &str) -> String {
    debug_assert!(until <= MAX_UNTIL);
    format!("{INDEX_PREFIX}{until:0UNTIL_DIGITS$}:{jti}")
}

/// The exclusive end of the index range holding every record expired at `now` (unix seconds):
/// `x:<now>` sorts after `x:<now - 1>:…` and before `x:<now>:…`.
pub fn expired_range_end(now: u64) -> String {
    format!("{INDEX_PREFIX}{:0UNTIL_DIGITS$}", now.min(MAX_UNTIL + 1))
}

/// `(until, jti)` from an index key; `None` for a key this module did not write.
pub fn parse_index_key(key: &str) -> Option<(u64, &str)> {
    let rest = key.strip_prefix(INDEX_PREFIX)?;
    let digits = rest.get(..UNTIL_DIGITS)?;
    let jti = rest.get(UNTIL_DIGITS..)?.strip_prefix(':')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, jti))
}

/// A record is live through the second `until` names, and expired from the next one on: the
/// shard errs on the side of remembering a jti one second too long, never one second too short.
pub fn is_live(until: u64, now: u64) -> bool {
    until >= now
}

/// When the alarm should run to remove a record: the first millisecond it is expired.
pub fn expiry_alarm_ms(until: u64) -> u64 {
    (until + 1) * 1000
}

/// Unix seconds from a `Date.now()` reading.
pub fn seconds(now_ms: u64) -> u64 {
    now_ms / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_expiry_then_jti() {
        let mut keys = [
            index_key(1_700_000_100, "a"),
            index_key(999, "z"),
            index_key(1_700_000_000, "b"),
            index_key(1_700_000_000, "a"),
            index_key(MAX_UNTIL, "a"),
        ];
        keys.sort();
        let order: Vec<_> = keys.iter().map(|k| parse_index_key(k).unwrap()).collect();
        assert_eq!(
            order,
            [(999, "z"), (1_700_000_000, "a"), (1_700_000_000, "b"), (1_700_000_100, "a"), (MAX_UNTIL, "a")]
        );
    }

    #[test]
    fn expired_range_holds_exactly_the_expired_records() {
        let now = 1_700_000_000;
        let end = expired_range_end(now);
        for (until, jti, expired) in [
            (now - 1, "x", true),
            (now - 1, "\u{10ffff}", true),
            (now, "", false),
            (now, "a", false),
            (now + 1, "a", false),
            (1, "a", true),
        ] {
            let key = index_key(until, jti);
            assert_eq!(key.as_str() >= INDEX_PREFIX && key < end, expired, "{key}");
            assert_eq!(!is_live(until, now), expired, "{key}");
        }
        // Record keys and the count live outside the index range whatever the jti.
        for other in [record_key("x:0000000001:a"), COUNT_KEY.to_string()] {
            assert!(!other.starts_with(INDEX_PREFIX));
        }
    }

    #[test]
    fn jti_may_hold_the_separator() {
        let key = index_key(42, "a:b:c");
        assert_eq!(key, "x:0000000042:a:b:c");
        assert_eq!(parse_index_key(&key), Some((42, "a:b:c")));
    }

    #[test]
    fn foreign_keys_are_not_index_keys() {
        for key in ["x:", "x:123", "x:00000000ab:j", "x:0000000042j", "u:x:0000000042:j", "n"] {
            assert_eq!(parse_index_key(key), None, "{key}");
        }
    }

    #[test]
    fn alarm_fires_when_the_record_expires() {
        let until = 1_700_000_000;
        let at = expiry_alarm_ms(until);
        assert!(is_live(until, seconds(at - 1)));
        assert!(!is_live(until, seconds(at)));
    }
}
