//! The key cache policy, branch by branch, with fake tiers and a hand-set clock.

mod common;

use common::*;
use edge_auth::{
    error::{ApiError, TokenProblem},
    keys::jwks::JwksError,
    keys::store::JwksPolicy,
    keys::store::{FetchError, KeyStore},
};
use edge_auth_dev_issuer::jwks;
use serde_json::json;

const SEC: u64 = 1000;
const T0: u64 = NOW as u64 * SEC;

fn policy() -> JwksPolicy {
    JwksPolicy {
        max_age_ms: 600 * SEC,
        cooldown_ms: 30 * SEC,
        stale_if_error_ms: 7 * 24 * 3600 * SEC,
        fetch_timeout_ms: 5 * SEC,
    }
}

fn store() -> KeyStore {
    KeyStore::new(ISSUER, JWKS_URL, policy())
}

fn stored(issuer: &str, fetched_at_ms: u64, jwks: &serde_json::Value) -> String {
    json!({ "v": 1, "issuer": issuer, "jwks_url": JWKS_URL, "fetched_at_ms": fetched_at_ms, "jwks": jwks.to_string() })
        .to_string()
}

/// One request, then what the edge does after answering it: the tier writes it made due.
fn resolve(store: &KeyStore, kid: &str, now: u64, io: &FakeIo) -> Result<(String, bool), ApiError> {
    let resolved = block_on(store.resolve(Some(kid), now, io));
    block_on(store.write_pending(io));
    resolved.map(|r| (r.key.kid().unwrap().to_owned(), r.background_refresh))
}

/// A background refresh, then the writes it made due.
fn refresh(store: &KeyStore, now: u64, io: &FakeIo) {
    block_on(store.refresh(now, io));
    block_on(store.write_pending(io));
}

/// `n` requests for `kid` arriving together at the fake clock's time, run to completion while the
/// clock moves 10 ms per round.
fn resolve_together(store: &KeyStore, kid: &str, n: usize, io: &FakeIo) -> Vec<Result<String, ApiError>> {
    let requests = (0..n).map(|_| store.resolve(Some(kid), io.clock.get(), io));
    let results = run_together(requests, || io.advance(10));
    block_on(store.write_pending(io));
    results.into_iter().map(|r| r.map(|r| r.key.kid().unwrap().to_owned())).collect()
}

fn stored_fetch_time(tier: &std::cell::RefCell<Option<String>>) -> Option<u64> {
    let document: serde_json::Value = serde_json::from_str(tier.borrow().as_deref()?).ok()?;
    document["fetched_at_ms"].as_u64()
}

fn store_failures(io: &FakeIo) -> Vec<serde_json::Value> {
    let lines = io.logs.borrow();
    let events = lines.iter().map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap());
    events.filter(|e| e["event"] == "store_failed").collect()
}

#[test]
fn cold_isolate_fetches_once_then_serves_from_memory() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    for i in 0..50 {
        assert_eq!(resolve(&s, "key-1", T0 + i * SEC, &io), Ok(("key-1".into(), false)));
    }
    assert_eq!(io.fetches.get(), 1);
    assert_eq!(io.kv_writes.get(), 1, "KV is written on a fetch, never per request");
    assert_eq!(io.cache_writes.get(), 1);
}

#[test]
fn cold_isolate_prefers_the_cache_tier_over_the_issuer() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    *io.cache.borrow_mut() = Some(stored(ISSUER, T0 - 10 * SEC, &jwks(&[key(1)])));
    assert!(resolve(&store(), "key-1", T0, &io).is_ok());
    assert_eq!(io.fetches.get(), 0);
    assert_eq!(io.events(), vec!["loaded"]);
}

#[test]
fn cold_isolate_loads_from_kv_when_the_cache_is_empty_and_fills_the_cache() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    io.issuer_fails(FetchError::Network);
    *io.kv.borrow_mut() = Some(stored(ISSUER, T0 - 10 * SEC, &jwks(&[key(1)])));
    assert!(resolve(&store(), "key-1", T0, &io).is_ok());
    assert_eq!(io.fetches.get(), 0);
    assert_eq!(io.cache_writes.get(), 1);
    assert!(io.cache.borrow().as_deref().unwrap().contains("key-1"));
}

#[test]
fn kv_copy_newer_than_a_stale_cache_copy_wins() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    *io.cache.borrow_mut() = Some(stored(ISSUER, T0 - 2000 * SEC, &jwks(&[key(1)])));
    *io.kv.borrow_mut() = Some(stored(ISSUER, T0 - 5 * SEC, &jwks(&[key(2)])));
    assert!(resolve(&store(), "key-2", T0, &io).is_ok());
    assert_eq!(io.fetches.get(), 0);
}

#[test]
fn shared_copies_of_another_issuer_or_corrupt_copies_are_ignored() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    *io.cache.borrow_mut() = Some(stored("https://other.auth0.com/", T0, &jwks(&[key(2)])));
    *io.kv.borrow_mut() = Some("{not json".into());
    assert_eq!(resolve(&store(), "key-2", T0, &io), Err(ApiError::InvalidToken(TokenProblem::UnknownKey)));
    assert_eq!(resolve(&store(), "key-1", T0, &io).map(|r| r.0), Ok("key-1".into()));
}

#[test]
fn a_shared_copy_stamped_in_the_future_counts_as_old_and_the_next_fetch_replaces_it() {
    let io = FakeIo::serving(&jwks(&[key(1), key(2)]));
    *io.kv.borrow_mut() = Some(stored(ISSUER, T0 + 1_000_000 * SEC, &jwks(&[key(1)])));
    assert_eq!(resolve(&store(), "key-1", T0, &io), Ok(("key-1".into(), true)), "served, and refreshed at once");
    assert_eq!(io.fetches.get(), 0);
    // Believed, the copy would stay fresh and its cooldown running forever: a new key never refetched.
    assert!(resolve(&store(), "key-2", T0, &io).is_ok());
    assert_eq!(io.fetches.get(), 1);
    assert_eq!(stored_fetch_time(&io.kv), Some(T0), "the fetched copy replaced it");
}

#[test]
fn a_shared_fetch_time_a_few_seconds_ahead_is_clock_skew_and_read_as_now() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    *io.kv.borrow_mut() = Some(stored(ISSUER, T0 + 5 * SEC, &jwks(&[key(1)])));
    assert_eq!(resolve(&store(), "key-1", T0, &io), Ok(("key-1".into(), false)));
    assert_eq!(io.fetches.get(), 0);
}

#[test]
fn stale_keys_are_served_and_one_background_refresh_is_asked_per_cooldown() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    assert_eq!(resolve(&s, "key-1", T0 + 599 * SEC, &io).map(|r| r.1), Ok(false));
    assert_eq!(resolve(&s, "key-1", T0 + 600 * SEC, &io).map(|r| r.1), Ok(true));
    assert_eq!(resolve(&s, "key-1", T0 + 601 * SEC, &io).map(|r| r.1), Ok(false), "cooling down");
    assert_eq!(resolve(&s, "key-1", T0 + 630 * SEC, &io).map(|r| r.1), Ok(true));
    assert_eq!(io.fetches.get(), 1, "resolve itself never waits on the issuer for known keys");
}

#[test]
fn background_refresh_adopts_a_fresher_shared_copy_instead_of_fetching() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    *io.cache.borrow_mut() = Some(stored(ISSUER, T0 + 650 * SEC, &jwks(&[key(1), key(2)])));
    refresh(&s, T0 + 700 * SEC, &io);
    assert_eq!(io.fetches.get(), 1);
    assert!(resolve(&s, "key-2", T0 + 700 * SEC, &io).is_ok());
}

#[test]
fn background_refresh_fetches_when_no_tier_is_fresh() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_serves(&jwks(&[key(2)]));
    refresh(&s, T0 + 700 * SEC, &io);
    assert_eq!(io.fetches.get(), 2);
    assert!(resolve(&s, "key-2", T0 + 700 * SEC, &io).is_ok());
}

#[test]
fn unknown_kid_refetches_once_and_accepts_a_rotated_key() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_serves(&jwks(&[key(1), key(2)]));
    assert!(resolve(&s, "key-2", T0 + 31 * SEC, &io).is_ok());
    assert_eq!(io.fetches.get(), 2);
    assert!(io.events().contains(&"refreshed".to_string()));
}

#[test]
fn a_flood_of_unknown_kids_costs_one_fetch_per_cooldown() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    for i in 0..1000u64 {
        let now = T0 + 31 * SEC + i * 30; // 1000 requests over 30 s
        assert_eq!(
            resolve(&s, &format!("random-{i}"), now, &io),
            Err(ApiError::InvalidToken(TokenProblem::UnknownKey))
        );
    }
    assert_eq!(io.fetches.get(), 2, "one initial fetch, one refetch for the whole flood");
    assert!(io.events().iter().filter(|e| *e == "cooldown_hit").count() >= 998);
}

#[test]
fn unknown_kid_right_after_a_fetch_waits_for_the_cooldown() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_serves(&jwks(&[key(2)]));
    assert!(resolve(&s, "key-2", T0 + 29 * SEC, &io).is_err());
    assert_eq!(io.fetches.get(), 1);
    assert!(resolve(&s, "key-2", T0 + 30 * SEC, &io).is_ok());
}

#[test]
fn the_cooldown_holds_across_isolates_through_the_shared_fetch_time() {
    // Another isolate fetched 5 s ago and left the keys in KV; this fresh isolate must not refetch.
    let io = FakeIo::serving(&jwks(&[key(1), key(2)]));
    *io.kv.borrow_mut() = Some(stored(ISSUER, T0 - 5 * SEC, &jwks(&[key(1)])));
    assert!(resolve(&store(), "key-2", T0, &io).is_err());
    assert_eq!(io.fetches.get(), 0);
}

#[test]
fn unknown_kid_finds_a_rotated_key_another_isolate_already_shared() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    *io.cache.borrow_mut() = Some(stored(ISSUER, T0 + 40 * SEC, &jwks(&[key(1), key(2)])));
    assert!(resolve(&s, "key-2", T0 + 45 * SEC, &io).is_ok());
    assert_eq!(io.fetches.get(), 1);
}

#[test]
fn failed_or_invalid_fetches_never_replace_good_keys() {
    let failures = [
        FetchError::Network,
        FetchError::Timeout,
        FetchError::Status(500),
        FetchError::TooLarge,
        FetchError::Invalid(JwksError::Malformed),
    ];
    for failure in failures {
        let io = FakeIo::serving(&jwks(&[key(1)]));
        let s = store();
        resolve(&s, "key-1", T0, &io).unwrap();
        io.issuer_fails(failure.clone());
        refresh(&s, T0 + 700 * SEC, &io);
        assert!(resolve(&s, "key-1", T0 + 701 * SEC, &io).is_ok(), "{failure:?}");
        let events = io.events();
        assert!(events.contains(&"fetch_failed".into()) && events.contains(&"served_stale".into()), "{failure:?}");
    }
}

#[test]
fn garbage_or_keyless_documents_from_the_issuer_are_refused() {
    for body in [&b"<html>"[..], br#"{"keys":[]}"#, br#"{"keys":[{"kty":"EC"}]}"#, br#"{"nokeys":1}"#] {
        let io = FakeIo::serving(&jwks(&[key(1)]));
        let s = store();
        resolve(&s, "key-1", T0, &io).unwrap();
        io.issuer_body(body);
        assert!(resolve(&s, "key-2", T0 + 31 * SEC, &io).is_err());
        assert!(resolve(&s, "key-1", T0 + 32 * SEC, &io).is_ok());
        assert_eq!(io.kv_writes.get(), 1, "nothing bad is written to KV");
    }
}

#[test]
fn a_failed_fetch_starts_the_cooldown_too() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_fails(FetchError::Timeout);
    assert!(resolve(&s, "key-2", T0 + 31 * SEC, &io).is_err());
    assert!(resolve(&s, "key-3", T0 + 40 * SEC, &io).is_err());
    assert_eq!(resolve(&s, "key-1", T0 + 700 * SEC, &io).map(|r| r.1), Ok(true));
    assert_eq!(io.fetches.get(), 2);
}

#[test]
fn no_keys_anywhere_and_issuer_down_is_503_without_a_retry_storm() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    io.issuer_fails(FetchError::Network);
    let s = store();
    assert_eq!(resolve(&s, "key-1", T0, &io), Err(ApiError::KeysUnavailable { retry_after_secs: 30 }));
    assert_eq!(resolve(&s, "key-1", T0 + 10 * SEC, &io), Err(ApiError::KeysUnavailable { retry_after_secs: 20 }));
    assert_eq!(io.fetches.get(), 1);
    io.issuer_serves(&jwks(&[key(1)]));
    assert!(resolve(&s, "key-1", T0 + 30 * SEC, &io).is_ok());
}

#[test]
fn keys_past_stale_if_error_are_not_trusted() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = KeyStore::new(ISSUER, JWKS_URL, JwksPolicy { stale_if_error_ms: 3600 * SEC, ..policy() });
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_fails(FetchError::Network);
    assert!(resolve(&s, "key-1", T0 + 4200 * SEC, &io).is_ok(), "max-age + stale-if-error not yet passed");
    assert!(matches!(resolve(&s, "key-1", T0 + 4201 * SEC, &io), Err(ApiError::KeysUnavailable { .. })));
}

#[test]
fn a_key_removed_upstream_is_rejected_once_the_refresh_is_in() {
    let io = FakeIo::serving(&jwks(&[key(1), key(2)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_serves(&jwks(&[key(2)]));
    assert!(resolve(&s, "key-1", T0 + 700 * SEC, &io).is_ok(), "stale-while-revalidate");
    refresh(&s, T0 + 700 * SEC, &io);
    assert_eq!(resolve(&s, "key-1", T0 + 701 * SEC, &io), Err(ApiError::InvalidToken(TokenProblem::UnknownKey)));
}

#[test]
fn works_with_no_shared_tiers_at_all() {
    let mut io = FakeIo::serving(&jwks(&[key(1)]));
    io.has_cache = false;
    io.has_kv = false;
    let s = store();
    assert!(resolve(&s, "key-1", T0, &io).is_ok());
    assert!(resolve(&s, "key-1", T0 + SEC, &io).is_ok());
    assert_eq!(io.fetches.get(), 1);
}

#[test]
fn log_lines_carry_kids_but_no_key_material() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    resolve(&store(), "key-1", T0, &io).unwrap();
    let n = jwks(&[key(1)])["keys"][0]["n"].as_str().unwrap().to_owned();
    for line in io.logs.borrow().iter() {
        assert!(!line.contains(&n[..20]), "{line}");
        assert!(line.contains("\"kids\":[\"key-1\"]"), "{line}");
    }
}

#[test]
fn status_reports_each_tier() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    let status = s.status(T0 + 12 * SEC, &io);
    assert_eq!(status["tiers"]["memory"]["kids"], json!(["key-1"]));
    assert_eq!(status["tiers"]["memory"]["age_seconds"], json!(12));
    assert_eq!(status["tiers"]["memory"]["source"], json!("issuer"));
    assert_eq!(status["tiers"]["kv"]["present"], json!(true));
    assert_eq!(status["tiers"]["cache"]["present"], json!(true));
}

#[test]
fn status_is_served_from_memory_without_reading_a_shared_tier() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    let loads = io.loads.get();
    for _ in 0..10 {
        let status = s.status(T0 + 12 * SEC, &io);
        assert_eq!(status["tiers"]["kv"]["kids"], json!(["key-1"]), "as this isolate last wrote it");
    }
    assert_eq!(io.loads.get(), loads);
}

// ---- one lookup at a time: no stampede on the issuer ----

#[test]
fn concurrent_cold_requests_cause_one_issuer_fetch_and_one_write_per_tier() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    io.issuer_latency_ms.set(400);
    let results = resolve_together(&store(), "key-1", 100, &io);
    assert!(results.iter().all(|r| r.as_deref() == Ok("key-1")), "{results:?}");
    assert_eq!((io.fetches.get(), io.kv_writes.get(), io.cache_writes.get()), (1, 1, 1));
}

#[test]
fn a_request_waiting_on_another_requests_fetch_answers_503_once_the_fetch_timeout_passes() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    io.issuer_latency_ms.set(6 * SEC);
    let results = resolve_together(&store(), "key-1", 10, &io);
    assert_eq!(results[0].as_deref(), Ok("key-1"), "the request that fetched");
    for waiter in &results[1..] {
        // Gave up 5 s in, with 25 s of the cooldown left.
        assert_eq!(waiter, &Err(ApiError::KeysUnavailable { retry_after_secs: 25 }));
    }
    assert_eq!(io.fetches.get(), 1);
}

#[test]
fn at_max_age_without_stale_if_error_concurrent_requests_cause_one_issuer_fetch() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = KeyStore::new(ISSUER, JWKS_URL, JwksPolicy { stale_if_error_ms: 0, ..policy() });
    resolve(&s, "key-1", T0, &io).unwrap();
    io.clock.set(T0 + 601 * SEC);
    io.issuer_latency_ms.set(400);
    let results = resolve_together(&s, "key-1", 100, &io);
    assert!(results.iter().all(|r| r.as_deref() == Ok("key-1")), "{results:?}");
    assert_eq!((io.fetches.get(), io.kv_writes.get()), (2, 2));
}

#[test]
fn past_stale_if_error_with_the_issuer_down_concurrent_requests_cause_one_issuer_fetch() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = KeyStore::new(ISSUER, JWKS_URL, JwksPolicy { stale_if_error_ms: 3600 * SEC, ..policy() });
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_fails(FetchError::Timeout);
    io.clock.set(T0 + 4201 * SEC);
    io.issuer_latency_ms.set(400);
    let results = resolve_together(&s, "key-1", 100, &io);
    assert!(results.iter().all(|r| matches!(r, Err(ApiError::KeysUnavailable { .. }))), "{results:?}");
    assert_eq!(io.fetches.get(), 2);
}

#[test]
fn a_cooldown_longer_than_max_age_does_not_hold_back_the_refresh_of_expired_keys() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let short = JwksPolicy { max_age_ms: 2 * SEC, cooldown_ms: 30 * SEC, stale_if_error_ms: 0, ..policy() };
    let s = KeyStore::new(ISSUER, JWKS_URL, short);
    resolve(&s, "key-1", T0, &io).unwrap();
    assert_eq!(resolve(&s, "key-1", T0 + 3 * SEC, &io), Ok(("key-1".into(), false)));
    assert_eq!(io.fetches.get(), 2);
}

#[test]
fn a_failed_fetch_does_not_hide_keys_another_isolate_left_in_a_shared_tier() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    io.issuer_fails(FetchError::Network);
    let s = store();
    assert!(matches!(resolve(&s, "key-1", T0, &io), Err(ApiError::KeysUnavailable { .. })));
    *io.kv.borrow_mut() = Some(stored(ISSUER, T0 + 2 * SEC, &jwks(&[key(1)])));
    assert_eq!(resolve(&s, "key-1", T0 + 5 * SEC, &io).map(|r| r.0), Ok("key-1".into()), "within the cooldown");
    assert_eq!(io.fetches.get(), 1);
}

// ---- shared tiers written only when it matters ----

#[test]
fn unchanged_keys_are_written_back_to_a_shared_tier_only_once_its_copy_is_half_max_age_old() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    assert!(resolve(&s, "random-1", T0 + 31 * SEC, &io).is_err());
    assert_eq!((io.fetches.get(), io.kv_writes.get(), io.cache_writes.get()), (2, 1, 1), "same keys, copy 31 s old");
    assert!(resolve(&s, "random-2", T0 + 300 * SEC, &io).is_err());
    assert_eq!((io.fetches.get(), io.kv_writes.get(), io.cache_writes.get()), (3, 2, 2), "copy 300 s old");
    assert_eq!(stored_fetch_time(&io.kv), Some(T0 + 300 * SEC));
}

#[test]
fn a_changed_key_set_is_written_to_the_shared_tiers_at_once() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_serves(&jwks(&[key(1), key(2)]));
    assert!(resolve(&s, "key-2", T0 + 31 * SEC, &io).is_ok());
    assert_eq!((io.kv_writes.get(), io.cache_writes.get()), (2, 2));
    assert!(io.kv.borrow().as_deref().unwrap().contains("key-2"));
}

#[test]
fn a_day_of_one_random_kid_per_cooldown_costs_one_kv_write_per_five_minutes_not_one_per_fetch() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    let day = 24 * 3600;
    for i in 1..=day / 30 {
        assert!(resolve(&s, &format!("random-{i}"), T0 + i * 30 * SEC, &io).is_err());
    }
    assert_eq!(io.fetches.get(), 2881);
    assert_eq!(io.kv_writes.get(), 1 + day as usize / 300);
}

#[test]
fn failing_shared_writes_are_logged_once_per_tier_not_per_attempt() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    *io.store_error.borrow_mut() = Some("KV PUT failed: 429 Too Many Requests".into());
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    for i in 1..=10 {
        assert!(resolve(&s, &format!("random-{i}"), T0 + i * 31 * SEC, &io).is_err());
    }
    assert_eq!(io.fetches.get(), 11);
    let failures = store_failures(&io);
    assert_eq!(failures.iter().map(|f| f["tier"].as_str().unwrap()).collect::<Vec<_>>(), ["cache", "kv"]);
    assert_eq!(failures[1]["reason"], json!("KV PUT failed: 429 Too Many Requests"));
}

#[test]
fn a_fetch_answers_before_its_tier_writes_which_are_made_once_after() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    // The request that fetched has its key with no write made: the writes wait for the edge's
    // waitUntil after the answer.
    let answered = block_on(s.resolve(Some("key-1"), T0, &io));
    assert!(answered.is_ok());
    assert_eq!((io.kv_writes.get(), io.cache_writes.get()), (0, 0));
    assert!(s.has_pending_writes());
    // Two requests flushing at once (each scheduled one) write each tier once.
    run_together([s.write_pending(&io), s.write_pending(&io)], || io.advance(10));
    assert_eq!((io.kv_writes.get(), io.cache_writes.get()), (1, 1));
    assert!(!s.has_pending_writes());
    // A copy loaded from KV is due to the Cache tier the same way.
    let io = FakeIo::serving(&jwks(&[key(1)]));
    *io.kv.borrow_mut() = Some(stored(ISSUER, T0 - 10 * SEC, &jwks(&[key(1)])));
    let s = store();
    assert!(block_on(s.resolve(Some("key-1"), T0, &io)).is_ok());
    assert_eq!(io.cache_writes.get(), 0);
    block_on(s.write_pending(&io));
    assert_eq!((io.cache_writes.get(), io.kv_writes.get(), io.fetches.get()), (1, 0, 0));
}

#[test]
fn one_rsa_rule_holds_the_issuers_keys_and_dpop_proof_keys() {
    use edge_auth::keys::jwks::{usable_rsa_exponent, usable_rsa_modulus, KeySet};
    use edge_auth_dev_issuer::b64;
    let parses = |jwk: serde_json::Value| KeySet::parse(json!({ "keys": [jwk] }).to_string().as_bytes()).is_ok();
    let exponents: [(&[u8], bool); 11] = [
        (&[], false),
        (&[0], false),
        (&[1], false),
        (&[2], false),
        (&[1, 0, 0], false),
        (&[2, 0, 0, 0, 1], false),
        (&[3], true),
        (&[1, 0, 1], true),
        (&[0, 1, 0, 1], true),
        (&[1, 0, 0, 0, 1], true),
        (&[0xff, 0xff, 0xff, 0xff], true),
    ];
    for (e, usable) in exponents {
        assert_eq!(usable_rsa_exponent(e), usable, "e = {e:?}");
        let mut jwk = key(1).public_jwk();
        jwk["e"] = json!(b64(e));
        assert_eq!(parses(jwk), usable, "a JWKS key with e = {e:?}");
    }
    let bits = |bits: usize| {
        let mut n = vec![0xff; bits.div_ceil(8)];
        n[0] >>= (8 - bits % 8) % 8;
        n
    };
    for (n, usable) in [(bits(2047), false), (bits(2048), true), (bits(4096), true), (bits(4097), false)] {
        assert_eq!(usable_rsa_modulus(&n), usable, "{} bytes, first {:#x}", n.len(), n[0]);
    }
    assert!(usable_rsa_modulus(&[&[0][..], &bits(2048)].concat()), "a leading zero byte is no bit");
}
