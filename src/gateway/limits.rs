//! Limits per caller: a rule's `rate_limit` spends one unit of a Workers Rate Limiting binding per
//! admitted request, keyed on who the caller is. Which key, and whether the rules' bindings are
//! usable, is decided here; spending is Edge work behind [`RateLimiter`].

use std::future::Future;

use crate::{
    error::{ConfigError, ConfigProblem},
    gateway::rules::{LimitKey, RateLimit, Rules},
    token::claims::Principal,
};

/// The runtime side: one call of a binding's `limit({ key })`.
pub trait RateLimiter {
    /// `Ok(true)` when the key is within its limit. `Err` holds a short reason for the log
    /// (the binding threw): the request is then let through, since a limit is not a security
    /// boundary and the binding's own outage should not take the API down.
    fn spend(&self, binding: &str, key: &str) -> impl Future<Output = Result<bool, String>>;
}

/// The caller's key for `limit`. Identity keys carry the verified issuer, so one subject name at
/// two issuers is two callers; a token without `sub` (or client) shares its issuer's bucket.
pub fn key(limit: &RateLimit, issuer: Option<&str>, principal: Option<&Principal>, address: Option<&str>) -> String {
    let iss = issuer.unwrap_or_default();
    match limit.key {
        LimitKey::Subject => format!("sub {iss} {}", principal.and_then(|p| p.subject.as_deref()).unwrap_or_default()),
        LimitKey::Client => format!("client {iss} {}", principal.and_then(|p| p.client.as_deref()).unwrap_or_default()),
        // Set by the runtime, never by the client; absent only off Cloudflare (bare workerd).
        LimitKey::Ip => format!("ip {}", address.unwrap_or_default()),
    }
}

/// A configuration error naming the first rule whose binding is missing or not a rate limiter.
pub fn check_bindings(rules: &Rules, is_rate_limiter: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
    match rules.rate_limit_bindings().find(|(_, binding)| !is_rate_limiter(binding)) {
        None => Ok(()),
        Some((index, binding)) => Err(ConfigError {
            variable: "ROUTES",
            problem: ConfigProblem::InvalidRule {
                index: Some(index),
                detail: format!("rate_limit: no rate limiter bound as {binding} ([[ratelimits]] in wrangler.toml)"),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::token::claims::Binding;

    fn limit(key: LimitKey) -> RateLimit {
        RateLimit { binding: "LIMIT".into(), key, period_secs: 60 }
    }

    fn principal(subject: Option<&str>, client: Option<&str>) -> Principal {
        Principal {
            subject: subject.map(str::to_owned),
            scopes: BTreeSet::new(),
            binding: Binding::None,
            expires: 0,
            claims: Vec::new(),
            jti: None,
            client: client.map(str::to_owned),
            audience: None,
        }
    }

    #[test]
    fn keys_name_the_issuer_and_the_caller_or_the_address() {
        let p = principal(Some("auth0|1"), Some("app"));
        let iss = Some("https://a.example/");
        assert_eq!(key(&limit(LimitKey::Subject), iss, Some(&p), None), "sub https://a.example/ auth0|1");
        assert_eq!(key(&limit(LimitKey::Client), iss, Some(&p), None), "client https://a.example/ app");
        assert_eq!(key(&limit(LimitKey::Ip), None, None, Some("203.0.113.9")), "ip 203.0.113.9");
        assert_ne!(
            key(&limit(LimitKey::Subject), Some("https://b.example/"), Some(&p), None),
            key(&limit(LimitKey::Subject), iss, Some(&p), None)
        );
    }

    #[test]
    fn a_binding_that_is_not_a_rate_limiter_names_its_rule() {
        let rules = Rules::parse(&serde_json::json!([
            { "path": "/a", "rate_limit": { "binding": "FAST", "key": "subject" } },
            { "path": "/b", "auth": "public", "rate_limit": { "binding": "SLOW", "key": "ip", "period": 10 } },
        ]))
        .unwrap();
        assert!(check_bindings(&rules, |_| true).is_ok());
        let error = check_bindings(&rules, |name| name == "FAST").unwrap_err();
        assert_eq!(error.variable, "ROUTES");
        assert!(matches!(error.problem, ConfigProblem::InvalidRule { index: Some(1), .. }), "{error:?}");
    }
}
