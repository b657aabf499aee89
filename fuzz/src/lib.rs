//! What the fuzz targets share: the fixed issuer of token_pipeline (its JWKS and tokens, from
//! fixtures/pipeline.json), a key IO that serves it and never pends, a poll-once executor, and an
//! oracle that verifies a token with jwt-compact directly, not through the worker's code.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    future::Future,
    pin::pin,
    sync::LazyLock,
    task::{Context, Poll, Waker},
};

use base64ct::{Base64UrlUnpadded, Encoding};
use edge_auth::keys::store::{FetchError, JwksSource, KeyIo, SharedTier};
use jwt_compact::{
    alg::{Rsa, RsaPublicKey},
    jwk::JsonWebKey,
    AlgorithmExt, Claims, UntrustedToken,
};
use serde_json::Value;

/// The leeway the worker applies by default (`CLOCK_SKEW_SECONDS`); the targets keep the default.
pub const LEEWAY_SECS: i64 = 30;

pub struct Fixture {
    pub issuer: String,
    pub audience: String,
    /// The fixed clock, in seconds since the epoch.
    pub now: i64,
    /// The JWKS document the issuer serves, as bytes.
    pub jwks: Vec<u8>,
    /// Every token of the fixture, with whether it must be admitted.
    pub tokens: Vec<(String, String, bool)>,
    keys: Vec<(String, RsaPublicKey)>,
}

impl Fixture {
    pub fn valid_tokens(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().filter(|(_, _, valid)| *valid).map(|(_, token, _)| token.as_str())
    }

    pub fn now_ms(&self) -> u64 {
        self.now as u64 * 1000
    }
}

pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let fixture: Value = serde_json::from_str(include_str!("../fixtures/pipeline.json")).expect("fixture is JSON");
    let text = |v: &Value| v.as_str().expect("fixture strings").to_owned();
    let keys = fixture["jwks"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kty"] == "RSA")
        .map(|k| {
            let jwk: JsonWebKey<'_> = serde_json::from_value(k.clone()).expect("an RSA JWK");
            (text(&k["kid"]), RsaPublicKey::try_from(&jwk).expect("a usable RSA key"))
        })
        .collect();
    let tokens = fixture["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (text(&t["name"]), text(&t["token"]), t["valid"].as_bool().unwrap()))
        .collect();
    Fixture {
        issuer: text(&fixture["issuer"]),
        audience: text(&fixture["audience"]),
        now: fixture["now"].as_i64().unwrap(),
        jwks: fixture["jwks"].to_string().into_bytes(),
        tokens,
        keys,
    }
});

/// The issuer serves the fixture's JWKS at once; there are no shared tiers. A lone request never
/// waits on another's lookup, so `sleep` is never called: if it is, the lookup mark leaked.
#[derive(Default)]
pub struct FixedIo {
    pub logs: RefCell<Vec<String>>,
}

impl KeyIo for FixedIo {
    fn has_tier(&self, _tier: SharedTier) -> bool {
        false
    }

    async fn load(&self, _tier: SharedTier, _source: &JwksSource<'_>) -> Option<String> {
        None
    }

    async fn store(&self, _tier: SharedTier, _source: &JwksSource<'_>, _document: &str) -> Result<(), String> {
        Ok(())
    }

    async fn fetch_issuer(&self, _source: &JwksSource<'_>) -> Result<Vec<u8>, FetchError> {
        Ok(FIXTURE.jwks.clone())
    }

    async fn sleep(&self, ms: u64) -> u64 {
        panic!("a lone request slept {ms} ms: it found another lookup under way");
    }

    fn log(&self, _event: &'static str, line: &str) {
        self.logs.borrow_mut().push(line.to_owned());
    }
}

/// No rule of the fuzzed tables has a rate limit: never spent.
impl edge_auth::gateway::limits::RateLimiter for FixedIo {
    async fn spend(&self, _binding: &str, _key: &str) -> Result<bool, String> {
        Ok(true)
    }
}

/// No deny list is bound in the fuzzed pipeline (`Keys::denylist` is `None`): never listed.
impl edge_auth::operate::denylist::DenyIo for FixedIo {
    async fn list_denied(&self) -> Result<Vec<edge_auth::operate::denylist::DeniedEntry>, String> {
        Err("no deny list in the fuzzed pipeline".into())
    }
}

/// The fuzzed configurations use neither `DPOP_REPLAY=fleet` nor a fleet revocation rule: a call
/// would be a bug, and fails closed.
impl edge_auth::dpop::replay::FleetReplay for FixedIo {
    async fn use_jti(
        &self,
        _thumbprint: &str,
        _jti: &str,
        _until: i64,
    ) -> Result<edge_auth::dpop::replay::FleetUse, String> {
        Err("no fleet in the fuzzed pipeline".into())
    }
}

impl edge_auth::operate::denylist::FleetRevocationIo for FixedIo {
    async fn list_revoked(&self) -> Result<(u64, Vec<edge_auth::operate::denylist::DeniedEntry>), String> {
        Err("no fleet in the fuzzed pipeline".into())
    }
}

/// Runs a future that must complete without pending (the fakes never pend).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the pipeline pended with fakes that never pend"),
    }
}

/// Who a token proves the caller to be, by the oracle's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: Option<String>,
    /// `scope` split on spaces, united with `permissions`.
    pub scopes: BTreeSet<String>,
}

/// The credential of an `Authorization` value as RFC 6750 reads it, or `None` when the scheme is
/// not Bearer (or there is no value).
pub fn bearer_credential(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim_start_matches([' ', '\t']))
}

/// Verifies `token` against the fixture's keys with jwt-compact, and judges its claims here:
/// RS256 only, no `crit`, a `kid` naming a published key, `exp` present and not passed, `nbf`
/// and `iat` not in the future (with the leeway), `iss` exactly the issuer, `aud` holding the
/// audience. `None`: the worker must not admit this token.
pub fn verify_independently(token: &str) -> Option<Identity> {
    let fixture = &*FIXTURE;
    let untrusted = UntrustedToken::new(token).ok()?;
    if untrusted.algorithm() != "RS256" {
        return None;
    }
    let (header, _) = token.split_once('.')?;
    let header: Value = serde_json::from_slice(&Base64UrlUnpadded::decode_vec(header).ok()?).ok()?;
    if header.get("crit").is_some() {
        return None;
    }
    let kid = header.get("kid")?.as_str()?;
    let (_, key) = fixture.keys.iter().find(|(k, _)| k == kid)?;
    let verified = Rsa::rs256().validator::<Value>(key).validate(&untrusted).ok()?;
    let claims: &Claims<Value> = verified.claims();
    let now = fixture.now;
    if now >= claims.expiration?.timestamp() + LEEWAY_SECS {
        return None;
    }
    if claims.not_before.is_some_and(|t| now + LEEWAY_SECS < t.timestamp()) {
        return None;
    }
    if claims.issued_at.is_some_and(|t| now + LEEWAY_SECS < t.timestamp()) {
        return None;
    }
    let custom = &claims.custom;
    if custom.get("iss")?.as_str()? != fixture.issuer {
        return None;
    }
    let audience_ok = match custom.get("aud")? {
        Value::String(aud) => *aud == fixture.audience,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(fixture.audience.as_str())),
        _ => false,
    };
    if !audience_ok {
        return None;
    }
    let mut scopes = BTreeSet::new();
    if let Some(scope) = custom.get("scope").and_then(Value::as_str) {
        scopes.extend(scope.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    if let Some(permissions) = custom.get("permissions").and_then(Value::as_array) {
        scopes.extend(permissions.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    let subject = custom.get("sub").and_then(Value::as_str).map(str::to_owned);
    Some(Identity { subject, scopes })
}
