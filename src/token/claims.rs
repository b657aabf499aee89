//! Judging signed claims: issuer, audience, validity window (RFC 9068 §4) and granted scopes.

use std::{collections::BTreeSet, rc::Rc};

use serde_json::Value;

use crate::{
    config::vars::Vars,
    error::{ConfigError, TokenProblem},
};

/// Leeway for `exp`, `nbf` and `iat`, so that small clock differences do not reject good tokens.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;

/// `CLOCK_SKEW_SECONDS`: the leeway every time claim (and a DPoP proof's `iat`) is judged with.
pub fn leeway_from_vars(vars: &Vars) -> Result<u64, ConfigError> {
    vars.seconds("CLOCK_SKEW_SECONDS", DEFAULT_CLOCK_SKEW_SECONDS, 0, MAX_CLOCK_SKEW_SECONDS)
}

/// Where granted scopes are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeSource {
    /// The `scope` claim and Auth0's RBAC `permissions` claim, united.
    Both,
    ScopeClaim,
    PermissionsClaim,
}

impl ScopeSource {
    /// `SCOPE_SOURCE`: `both` (the default), `scope` or `permissions`.
    pub fn from_vars(vars: &Vars) -> Result<ScopeSource, ConfigError> {
        vars.choice(
            "SCOPE_SOURCE",
            "one of both, scope, permissions",
            &[
                ("both", ScopeSource::Both),
                ("scope", ScopeSource::ScopeClaim),
                ("permissions", ScopeSource::PermissionsClaim),
            ],
        )
    }
}

/// Claims whose integrity is proven but whose content is not yet judged (issuer, audience, times
/// and scope are [`validate`]'s job). Made only by [`crate::token::verify::check_signature`].
#[derive(Debug)]
pub struct SignedClaims(pub(crate) TokenClaims);

/// A token's claims as read, unjudged: the times, and the claims edge-auth reads besides.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    /// `exp`, `nbf`, `iat`, in seconds since the epoch.
    pub expires: Option<i64>,
    pub not_before: Option<i64>,
    pub issued_at: Option<i64>,
    pub custom: AccessClaims,
}

/// The claims edge-auth reads besides the times. A member of the wrong JSON type makes the claims
/// malformed, except where said.
#[derive(Debug, Clone, Default)]
pub struct AccessClaims {
    /// Read before any key is looked at, to pick the issuer: anything but a string is no issuer.
    pub iss: Option<String>,
    pub aud: Option<Audience>,
    pub sub: Option<String>,
    /// The token's id and its client (`azp`, else `client_id`): deny-list keys. Anything but a
    /// string is none (never a reason to refuse a token that the list does not name).
    pub jti: Option<String>,
    pub azp: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    /// Auth0 RBAC: granted permissions, when "Add Permissions in the Access Token" is on.
    pub permissions: Option<Vec<String>>,
    /// RFC 7800 confirmation: present at all (even `null`) means the token is bound to something.
    pub cnf: Option<Value>,
}

/// Earliest and latest second a timestamp may name (those of the calendar library the claims were
/// once read with, whose range kept a far-future `exp` from meaning anything odd).
const MIN_TIMESTAMP: i64 = -8_334_601_228_800;
const MAX_TIMESTAMP: i64 = 8_210_266_876_799;

impl TokenClaims {
    /// Reads a payload segment's JSON (already base64url-decoded). It must be an object in which
    /// no object repeats a member name (RFC 7519 §4: a duplicate is refused, never resolved to one
    /// of its values, so no two readers of this token can disagree on what it claims).
    pub fn parse(json: &[u8]) -> Result<TokenClaims, TokenProblem> {
        let mut members = crate::json::parse_object(json).map_err(|_| TokenProblem::MalformedClaims)?;
        let time = |value: Option<Value>| -> Result<Option<i64>, TokenProblem> {
            let Some(value) = value else { return Ok(None) };
            let Value::Number(n) = value else { return Err(TokenProblem::MalformedClaims) };
            // A fractional time counts whole seconds (RFC 7519's NumericDate allows fractions).
            let secs = n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64));
            secs.filter(|s| (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(s)).map(Some).ok_or(TokenProblem::MalformedClaims)
        };
        let mut take = |name: &str| members.remove(name);
        let (exp, nbf, iat) = (take("exp"), take("nbf"), take("iat"));
        let custom = AccessClaims {
            iss: string_or_none(take("iss")),
            aud: match take("aud") {
                None | Some(Value::Null) => None,
                Some(Value::String(one)) => Some(Audience::One(one)),
                Some(Value::Array(many)) => Some(Audience::Many(strings(many)?)),
                Some(_) => return Err(TokenProblem::MalformedClaims),
            },
            sub: optional_string(take("sub"))?,
            jti: string_or_none(take("jti")),
            azp: string_or_none(take("azp")),
            client_id: string_or_none(take("client_id")),
            scope: optional_string(take("scope"))?,
            permissions: match take("permissions") {
                None | Some(Value::Null) => None,
                Some(Value::Array(list)) => Some(strings(list)?),
                Some(_) => return Err(TokenProblem::MalformedClaims),
            },
            cnf: take("cnf"),
        };
        Ok(TokenClaims { expires: time(exp)?, not_before: time(nbf)?, issued_at: time(iat)?, custom })
    }
}

fn string_or_none(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Absent or null: none; a string: itself; anything else is malformed.
fn optional_string(value: Option<Value>) -> Result<Option<String>, TokenProblem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenProblem::MalformedClaims),
    }
}

fn strings(values: Vec<Value>) -> Result<Vec<String>, TokenProblem> {
    values
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(TokenProblem::MalformedClaims),
        })
        .collect()
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, accepted: impl Fn(&str) -> bool) -> bool {
        match self {
            Audience::One(a) => accepted(a),
            Audience::Many(list) => list.iter().any(|a| accepted(a)),
        }
    }
}

/// What the claims are judged against. The audience is judged per request
/// ([`Principal::has_audience`]): the rule decides which one it accepts.
#[derive(Debug, Clone, Copy)]
pub struct ClaimsPolicy<'a> {
    pub issuer: &'a str,
    pub leeway_secs: u64,
    pub scope_source: ScopeSource,
    /// Keep [`ACCESS_CLAIMS`] as signed in [`Principal::claims`] (the gateway's identity assertion
    /// carries them). [`TokenClaims::parse`] read them already: no second read of the payload.
    pub keep_access_claims: bool,
}

/// The claims a token grants access by, besides `sub`: `scope`, Auth0's `permissions`, and the
/// client it was issued to (`azp`, `client_id`).
pub const ACCESS_CLAIMS: [&str; 4] = ["scope", "permissions", "azp", "client_id"];

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
    /// `aud`, kept so that each rule judges it: the issuer's audiences, or a protected resource's URI.
    pub audience: Option<Audience>,
}

impl Principal {
    /// Whether `aud` is, or contains, an audience `accepted` takes.
    pub fn has_audience(&self, accepted: impl Fn(&str) -> bool) -> bool {
        self.audience.as_ref().is_some_and(|aud| aud.contains_any(accepted))
    }

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

/// Checks the validity window first (the most common failure), then the issuer; the caller checks
/// the audience next ([`Principal::has_audience`]), with what the rule accepts.
pub fn validate(
    signed: SignedClaims,
    policy: &ClaimsPolicy<'_>,
    now_secs: i64,
) -> Result<(Principal, Validity), TokenProblem> {
    let claims = signed.0;
    let validity = Validity {
        expires: claims.expires.ok_or(TokenProblem::MissingExpiry)?,
        not_before: claims.not_before,
        issued_at: claims.issued_at,
    };
    validity.check(now_secs, policy.leeway_secs)?;

    let custom = claims.custom;
    if custom.iss.as_deref() != Some(policy.issuer) {
        return Err(TokenProblem::UntrustedIssuer);
    }

    let mut kept = Vec::new();
    if policy.keep_access_claims {
        let text = |name: &str, value: &Option<String>| value.clone().map(|v| (Rc::from(name), Value::String(v)));
        kept.extend(text("scope", &custom.scope));
        if let Some(list) = &custom.permissions {
            kept.push((Rc::from("permissions"), Value::Array(list.iter().cloned().map(Value::String).collect())));
        }
        kept.extend(text("azp", &custom.azp));
        kept.extend(text("client_id", &custom.client_id));
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
        claims: kept,
        jti: custom.jti,
        client: custom.azp.or(custom.client_id),
        audience: custom.aud,
    };
    Ok((principal, validity))
}

/// The `names` claims of a verified token's payload segment (base64url JSON), each found one with
/// its value. Run once per verification, and only when some rule or header names a claim: the
/// standard claims are read by [`TokenClaims::parse`], these by a second read of the same payload
/// (which that parse found to be an object of distinct names).
pub fn select(payload: &str, names: &[Rc<str>]) -> Vec<(Rc<str>, serde_json::Value)> {
    let Some(bytes) = crate::base64url::decode(payload) else { return Vec::new() };
    let Ok(mut all) = crate::json::parse_object(&bytes) else {
        return Vec::new();
    };
    names.iter().filter_map(|name| all.remove(&**name).map(|value| (name.clone(), value))).collect()
}
