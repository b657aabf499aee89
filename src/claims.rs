//! Judging signed claims: issuer, audience, validity window (RFC 9068 §4) and granted scopes.

use std::{collections::BTreeSet, rc::Rc};

use serde::Deserialize;

use crate::{config::ScopeSource, error::TokenProblem, verify::SignedClaims};

/// The claims edge-auth reads besides `exp`/`nbf`/`iat` (which jwt-compact's `Claims` holds).
/// A member of the wrong JSON type fails deserialization, which is reported as malformed claims.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessClaims {
    /// Read before any key is looked at, to pick the issuer: anything but a string is no issuer.
    #[serde(default, deserialize_with = "string_or_none")]
    pub iss: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub sub: Option<String>,
    /// The token's id and its client (`azp`, else `client_id`): deny-list keys. Anything but a
    /// string is none (never a reason to refuse a token that the list does not name).
    #[serde(default, deserialize_with = "string_or_none")]
    pub jti: Option<String>,
    #[serde(default, deserialize_with = "string_or_none")]
    pub azp: Option<String>,
    #[serde(default, deserialize_with = "string_or_none")]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    /// Auth0 RBAC: granted permissions, when "Add Permissions in the Access Token" is on.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// RFC 7800 confirmation: present at all (even `null`) means the token is bound to something.
    #[serde(default, deserialize_with = "any_value")]
    pub cnf: Option<serde_json::Value>,
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

fn any_value<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// What key, if any, a token is bound to (RFC 9449 §6: `cnf.jkt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    None,
    /// The base64url SHA-256 thumbprint (RFC 7638) of the key whose proofs must come with it.
    Jkt(String),
    /// A `cnf` that is not exactly `{"jkt": "<thumbprint>"}`: a binding this edge cannot check,
    /// so the token is refused whatever the scheme (never silently treated as unbound).
    Unsupported,
}

impl Binding {
    fn of(cnf: Option<&serde_json::Value>) -> Binding {
        let Some(cnf) = cnf else { return Binding::None };
        match cnf.as_object().filter(|members| members.len() == 1).and_then(|m| m.get("jkt")).and_then(|j| j.as_str()) {
            Some(jkt) if !jkt.is_empty() && jkt.len() <= 128 => Binding::Jkt(jkt.to_owned()),
            _ => Binding::Unsupported,
        }
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, accepted: &[String]) -> bool {
        match self {
            Audience::One(a) => accepted.contains(a),
            Audience::Many(list) => list.iter().any(|a| accepted.contains(a)),
        }
    }
}

/// What the claims are judged against.
#[derive(Debug, Clone, Copy)]
pub struct ClaimsPolicy<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub leeway_secs: u64,
    pub scope_source: ScopeSource,
}

/// The authenticated caller. Built only by [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Option<String>,
    pub scopes: BTreeSet<String>,
    pub binding: Binding,
    /// The token's `exp`: what the caller proved ends then (a relayed WebSocket is closed at it).
    pub expires: i64,
    /// The claims that rules or `CLAIM_HEADERS` name, as signed ([`select`]); empty when none is
    /// named. Kept with a cached verification, so a cache hit reads no claim again.
    pub claims: Vec<(Rc<str>, serde_json::Value)>,
    /// `jti`, and `azp` or else `client_id`: what the deny list may name besides `sub` and `iss`.
    pub jti: Option<String>,
    pub client: Option<String>,
}

impl Principal {
    /// A claim kept by [`select`].
    pub fn claim(&self, name: &str) -> Option<&serde_json::Value> {
        self.claims.iter().find(|(n, _)| &**n == name).map(|(_, v)| v)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// When a token may be used, in seconds since the epoch. Kept with a cached verification so that
/// every use is judged against the clock of that moment, not of the first verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub expires: i64,
    pub not_before: Option<i64>,
    pub issued_at: Option<i64>,
}

impl Validity {
    pub fn check(&self, now_secs: i64, leeway_secs: u64) -> Result<(), TokenProblem> {
        let leeway = i64::try_from(leeway_secs).unwrap_or(i64::MAX);
        if now_secs >= self.expires.saturating_add(leeway) {
            return Err(TokenProblem::Expired);
        }
        if self.not_before.is_some_and(|nbf| now_secs.saturating_add(leeway) < nbf) {
            return Err(TokenProblem::NotYetValid);
        }
        if self.issued_at.is_some_and(|iat| now_secs.saturating_add(leeway) < iat) {
            return Err(TokenProblem::IssuedInFuture);
        }
        Ok(())
    }
}

/// Checks the validity window first (the most common failure), then issuer, then audience.
pub fn validate(
    signed: SignedClaims,
    policy: &ClaimsPolicy<'_>,
    now_secs: i64,
) -> Result<(Principal, Validity), TokenProblem> {
    let claims = signed.0;
    let validity = Validity {
        expires: claims.expiration.ok_or(TokenProblem::MissingExpiry)?.timestamp(),
        not_before: claims.not_before.map(|t| t.timestamp()),
        issued_at: claims.issued_at.map(|t| t.timestamp()),
    };
    validity.check(now_secs, policy.leeway_secs)?;

    let custom = claims.custom;
    if custom.iss.as_deref() != Some(policy.issuer) {
        return Err(TokenProblem::UntrustedIssuer);
    }
    if !custom.aud.as_ref().is_some_and(|aud| aud.contains_any(policy.audiences)) {
        return Err(TokenProblem::WrongAudience);
    }

    let mut scopes = BTreeSet::new();
    if policy.scope_source != ScopeSource::PermissionsClaim {
        if let Some(scope) = &custom.scope {
            scopes.extend(scope.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
        }
    }
    if policy.scope_source != ScopeSource::ScopeClaim {
        scopes.extend(custom.permissions.into_iter().flatten());
    }
    let binding = Binding::of(custom.cnf.as_ref());
    let principal = Principal {
        subject: custom.sub,
        scopes,
        binding,
        expires: validity.expires,
        claims: Vec::new(),
        jti: custom.jti,
        client: custom.azp.or(custom.client_id),
    };
    Ok((principal, validity))
}

/// The `names` claims of a verified token's payload segment (base64url JSON), each found one with
/// its value. Run once per verification, and only when some rule or header names a claim: the
/// standard claims are read by the typed parse, these by a second, untyped one.
pub fn select(payload: &str, names: &[Rc<str>]) -> Vec<(Rc<str>, serde_json::Value)> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let Ok(bytes) = Base64UrlUnpadded::decode_vec(payload) else { return Vec::new() };
    let Ok(mut all) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes) else {
        return Vec::new();
    };
    names.iter().filter_map(|name| all.remove(&**name).map(|value| (name.clone(), value))).collect()
}
