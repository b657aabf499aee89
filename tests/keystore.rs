//! The key cache policy, branch by branch, with fake tiers and a hand-set clock.

mod common;

use common::*;
use edge_auth::{
    config::JwksPolicy,
    error::{ApiError, TokenProblem},
    jwks::JwksError,
    keystore::{FetchError, KeyStore},
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

fn resolve(store: &KeyStore, kid: &str, now: u64, io: &FakeIo) -> Result<(String, bool), ApiError> {
    block_on(store.resolve(Some(kid), now, io)).map(|r| (r.key.kid.unwrap(), r.background_refresh))
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
fn a_shared_fetch_time_in_the_future_is_clamped_to_now() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    *io.kv.borrow_mut() = Some(stored(ISSUER, T0 + 1_000_000 * SEC, &jwks(&[key(1)])));
    let s = store();
    assert!(resolve(&s, "key-1", T0, &io).is_ok());
    // Had the future time been believed, the keys would never go stale.
    assert_eq!(resolve(&s, "key-1", T0 + 601 * SEC, &io).map(|r| r.1), Ok(true));
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
    block_on(s.refresh(T0 + 700 * SEC, &io));
    assert_eq!(io.fetches.get(), 1);
    assert!(resolve(&s, "key-2", T0 + 700 * SEC, &io).is_ok());
}

#[test]
fn background_refresh_fetches_when_no_tier_is_fresh() {
    let io = FakeIo::serving(&jwks(&[key(1)]));
    let s = store();
    resolve(&s, "key-1", T0, &io).unwrap();
    io.issuer_serves(&jwks(&[key(2)]));
    block_on(s.refresh(T0 + 700 * SEC, &io));
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
        block_on(s.refresh(T0 + 700 * SEC, &io));
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
    block_on(s.refresh(T0 + 700 * SEC, &io));
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
    let status = block_on(s.status(T0 + 12 * SEC, &io));
    assert_eq!(status["tiers"]["memory"]["kids"], json!(["key-1"]));
    assert_eq!(status["tiers"]["memory"]["age_seconds"], json!(12));
    assert_eq!(status["tiers"]["memory"]["source"], json!("issuer"));
    assert_eq!(status["tiers"]["kv"]["present"], json!(true));
    assert_eq!(status["tiers"]["cache"]["present"], json!(true));
}
