//! Stateless DPoP nonces (RFC 9449 §8–9): an HMAC of a time step under `DPOP_NONCE_SECRET`, so
//! every isolate in every data centre issues and accepts the same nonces with no shared state.
//!
//! A nonce is good during the step it was issued in and the next one, so the window in which a
//! captured proof can be replayed to another isolate is at most two steps (per isolate, the
//! `jti` memory in [`crate::dpop::replay`] stops replays outright).

use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{
    config::vars::{invalid, Vars},
    error::ConfigError,
};

#[derive(Clone, PartialEq, Eq)]
pub struct NoncePolicy {
    pub secret: Vec<u8>,
    /// A nonce is good for the step it was issued in and the next one.
    pub step_secs: u64,
}

impl std::fmt::Debug for NoncePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, even in a test failure.
        f.debug_struct("NoncePolicy").field("step_secs", &self.step_secs).finish_non_exhaustive()
    }
}

pub const DEFAULT_DPOP_NONCE_SECONDS: u64 = 60;
/// An HMAC key shorter than this is guessable.
pub const MIN_DPOP_NONCE_SECRET_BYTES: usize = 32;

impl NoncePolicy {
    /// `DPOP_NONCE_SECRET` (none: no nonces) and `DPOP_NONCE_SECONDS`.
    pub fn from_vars(vars: &Vars) -> Result<Option<NoncePolicy>, ConfigError> {
        const SECRET: &str = "at least 32 characters of printable ASCII (a random secret)";
        match vars.text("DPOP_NONCE_SECRET", SECRET)? {
            None => Ok(None),
            Some(secret)
                if secret.len() >= MIN_DPOP_NONCE_SECRET_BYTES
                    && secret.bytes().all(|b| (0x20..=0x7e).contains(&b)) =>
            {
                let step_secs = vars.seconds("DPOP_NONCE_SECONDS", DEFAULT_DPOP_NONCE_SECONDS, 10, 3600)?;
                Ok(Some(NoncePolicy { secret: secret.into_bytes(), step_secs }))
            }
            Some(_) => Err(invalid("DPOP_NONCE_SECRET", SECRET)),
        }
    }
}

/// Bytes of the MAC kept in a nonce: 128 bits cannot be guessed.
const TAG_BYTES: usize = 16;

/// Which step a valid nonce was issued in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    Current,
    Previous,
}

fn step(policy: &NoncePolicy, now_secs: i64) -> u64 {
    u64::try_from(now_secs).unwrap_or(0) / policy.step_secs
}

fn tag(policy: &NoncePolicy, step: u64) -> [u8; TAG_BYTES] {
    // Keyed with a secret of at least 32 bytes (checked by the configuration), so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(&policy.secret).expect("HMAC takes keys of any length");
    mac.update(b"edge-auth dpop nonce v1|");
    mac.update(&step.to_be_bytes());
    let mut out = [0; TAG_BYTES];
    out.copy_from_slice(&mac.finalize().into_bytes()[..TAG_BYTES]);
    out
}

/// The nonce of the current step: the step, then its MAC, base64url.
pub fn issue(policy: &NoncePolicy, now_secs: i64) -> String {
    let step = step(policy, now_secs);
    let mut bytes = step.to_be_bytes().to_vec();
    bytes.extend_from_slice(&tag(policy, step));
    Base64UrlUnpadded::encode_string(&bytes)
}

/// Whether `given` is a nonce of this step or the previous one, made with our secret.
pub fn check(policy: &NoncePolicy, given: &str, now_secs: i64) -> Option<Age> {
    let bytes = Base64UrlUnpadded::decode_vec(given).ok().filter(|b| b.len() == 8 + TAG_BYTES)?;
    let claimed = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    let current = step(policy, now_secs);
    let age = match current.checked_sub(claimed)? {
        0 => Age::Current,
        1 => Age::Previous,
        _ => return None,
    };
    // Compared in constant time: the MAC's own verify does so.
    let mut mac = Hmac::<Sha256>::new_from_slice(&policy.secret).ok()?;
    mac.update(b"edge-auth dpop nonce v1|");
    mac.update(&claimed.to_be_bytes());
    mac.verify_truncated_left(&bytes[8..]).ok()?;
    Some(age)
}

/// The last second a nonce of `age` is accepted: the end of the step after the one it was issued
/// in. A proof carrying it need not be remembered longer.
pub fn accepted_through(policy: &NoncePolicy, age: Age, now_secs: i64) -> i64 {
    let issued = step(policy, now_secs).saturating_sub(u64::from(age == Age::Previous));
    i64::try_from(issued.saturating_add(2).saturating_mul(policy.step_secs)).unwrap_or(i64::MAX) - 1
}

/// The current step's last quarter: answers then carry the next nonce early, so a busy client
/// never has to be refused to learn it.
pub fn next_step_near(policy: &NoncePolicy, now_secs: i64) -> bool {
    let into_step = u64::try_from(now_secs).unwrap_or(0) % policy.step_secs;
    into_step * 4 >= policy.step_secs * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(secret: &str) -> NoncePolicy {
        NoncePolicy { secret: secret.as_bytes().to_vec(), step_secs: 60 }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const T: i64 = 1_767_225_600;

    #[test]
    fn a_nonce_is_good_for_its_step_and_the_next_only() {
        let p = policy(SECRET);
        let nonce = issue(&p, T);
        assert_eq!(check(&p, &nonce, T), Some(Age::Current));
        assert_eq!(check(&p, &nonce, T + 59), Some(Age::Current));
        assert_eq!(check(&p, &nonce, T + 60), Some(Age::Previous));
        assert_eq!(check(&p, &nonce, T + 119), Some(Age::Previous));
        assert_eq!(check(&p, &nonce, T + 120), None);
        assert_eq!(check(&p, &nonce, T - 60), None, "a nonce from the future is not ours");
    }

    #[test]
    fn forged_altered_or_foreign_nonces_are_refused() {
        let p = policy(SECRET);
        let other = policy("another secret of at least 32 characters!");
        assert_eq!(check(&p, &issue(&other, T), T), None);
        let mut bytes = Base64UrlUnpadded::decode_vec(&issue(&p, T)).unwrap();
        bytes[12] ^= 1;
        assert_eq!(check(&p, &Base64UrlUnpadded::encode_string(&bytes), T), None);
        // The step moved forward with the old MAC.
        let mut bytes = Base64UrlUnpadded::decode_vec(&issue(&p, T - 60)).unwrap();
        bytes[7] += 1;
        assert_eq!(check(&p, &Base64UrlUnpadded::encode_string(&bytes), T), None);
        for junk in ["", "x", "not base64!", &"A".repeat(40)] {
            assert_eq!(check(&p, junk, T), None, "{junk}");
        }
    }

    #[test]
    fn the_next_nonce_is_offered_in_the_last_quarter_of_a_step() {
        let p = policy(SECRET);
        assert!(!next_step_near(&p, T));
        assert!(!next_step_near(&p, T + 44));
        assert!(next_step_near(&p, T + 45));
        assert!(next_step_near(&p, T + 59));
    }
}
