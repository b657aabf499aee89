//! The issuers this edge trusts, each with its own key store: a token's `iss`, read before any
//! key is looked at, picks one by exact comparison, and only that issuer's keys and audiences
//! judge the token. Keys of one issuer never verify another's token.

use std::rc::Rc;

use serde_json::Value;

use crate::{
    config::vars::{check_url, invalid, is_loopback, missing, parse_domain, Vars, MAX_URL_LEN, URL_EXPECTED},
    error::{ConfigError, ConfigProblem},
    keys::store::{JwksPolicy, KeyIo, KeyStore},
};

#[derive(Debug)]
pub struct TrustedIssuer {
    /// `config.issuer`, shared with every decision about its tokens.
    pub name: Rc<str>,
    pub config: IssuerConfig,
    pub store: KeyStore,
}

/// Built once per isolate from the configuration.
#[derive(Debug)]
pub struct Issuers {
    list: Vec<TrustedIssuer>,
}

impl Issuers {
    pub fn from_list(issuers: &[IssuerConfig], policy: JwksPolicy) -> Issuers {
        let list = issuers
            .iter()
            .map(|issuer| TrustedIssuer {
                name: issuer.issuer.as_str().into(),
                store: KeyStore::new(&issuer.issuer, &issuer.jwks_url, policy),
                config: issuer.clone(),
            })
            .collect();
        Issuers { list }
    }

    /// The issuer a token's `iss` names, and its index (which a cached verification keeps).
    /// A linear scan: there are at most 20, and nearly always one.
    pub fn find(&self, iss: &str) -> Option<(usize, &TrustedIssuer)> {
        self.list.iter().enumerate().find(|(_, issuer)| issuer.config.issuer == iss)
    }

    pub fn get(&self, index: usize) -> Option<&TrustedIssuer> {
        self.list.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TrustedIssuer> {
        self.list.iter()
    }

    /// The status route's body: every issuer with what its tiers hold.
    pub fn status(&self, now: u64, io: &impl KeyIo) -> Value {
        let issuers: Vec<Value> = self.list.iter().map(|issuer| issuer.store.status(now, io)).collect();
        serde_json::json!({ "issuers": issuers })
    }
}

/// One issuer the worker trusts: a token whose `iss` is exactly `issuer` is checked with keys
/// from `jwks_url` only, against `audiences` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub audiences: Vec<String>,
}

/// At most this many `ISSUERS` entries: each has its own key store, tiers and issuer fetches.
pub const MAX_ISSUERS: usize = 20;

const DOMAIN_EXPECTED: &str =
    "a host name such as example.eu.auth0.com (optionally :port, at most 150 characters), without scheme or path";
const AUDIENCE_EXPECTED: &str =
    "one or more API identifiers (a string, comma-separated, or an array), none empty, printable ASCII without \" or \\";

/// The issuers `AUTH0_DOMAIN` / `AUTH0_ISSUER` / `AUTH0_JWKS_URL` and `ISSUERS` describe, with the
/// realm of `WWW-Authenticate`: the first of `AUTH0_AUDIENCE`, else the first issuer's first audience.
pub fn from_vars(vars: &Vars) -> Result<(Vec<IssuerConfig>, String), ConfigError> {
    let listed = vars.get("ISSUERS");
    let audiences = vars.list("AUTH0_AUDIENCE", AUDIENCE_EXPECTED)?;
    if audiences.as_ref().is_some_and(|list| !list.iter().all(|a| header_safe(a))) {
        return Err(invalid("AUTH0_AUDIENCE", AUDIENCE_EXPECTED));
    }
    let mut issuers = Vec::new();
    if let Some((issuer, jwks_url)) = primary_issuer(vars, listed.is_none())? {
        let audiences = audiences.clone().ok_or(missing("AUTH0_AUDIENCE"))?;
        issuers.push(IssuerConfig { issuer, jwks_url, audiences });
    }
    if let Some(listed) = listed {
        issuers.extend(parse_issuers(listed, audiences.as_deref(), &issuers)?);
    }
    let realm = audiences.as_ref().unwrap_or(&issuers[0].audiences)[0].clone();
    Ok((issuers, realm))
}

/// An audience is the realm of `WWW-Authenticate` (the first one) and must make a valid header value.
fn header_safe(audience: &str) -> bool {
    !audience.is_empty() && audience.bytes().all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
}

/// The issuer `AUTH0_DOMAIN` (or `AUTH0_ISSUER`) and `AUTH0_JWKS_URL` describe, if any: required
/// unless `ISSUERS` is given.
fn primary_issuer(vars: &Vars, required: bool) -> Result<Option<(String, String)>, ConfigError> {
    let url = |name: &'static str| match vars.text(name, URL_EXPECTED)? {
        Some(url) if url.len() <= MAX_URL_LEN && check_url(&url).is_some() => Ok(Some(url)),
        Some(_) => Err(invalid(name, URL_EXPECTED)),
        None => Ok(None),
    };
    let (issuer, jwks_url) = (url("AUTH0_ISSUER")?, url("AUTH0_JWKS_URL")?);
    match vars.text("AUTH0_DOMAIN", DOMAIN_EXPECTED)? {
        Some(domain) => {
            let (derived_issuer, derived_jwks) =
                derive_from_domain(&domain).ok_or(invalid("AUTH0_DOMAIN", DOMAIN_EXPECTED))?;
            Ok(Some((issuer.unwrap_or(derived_issuer), jwks_url.unwrap_or(derived_jwks))))
        }
        None if required => Err(missing("AUTH0_DOMAIN")),
        None => match (issuer, jwks_url) {
            (Some(issuer), jwks_url) => {
                let default = default_jwks_url(&issuer);
                match jwks_url {
                    Some(url) => Ok(Some((issuer, url))),
                    None if default.len() <= MAX_URL_LEN => Ok(Some((issuer, default))),
                    None => Err(invalid("AUTH0_ISSUER", URL_EXPECTED)),
                }
            }
            (None, Some(_)) => Err(invalid("AUTH0_JWKS_URL", "used with AUTH0_DOMAIN or AUTH0_ISSUER only")),
            (None, None) => Ok(None),
        },
    }
}

/// The issuer and JWKS URL of an Auth0 domain: `https://` (plain `http://` for a loopback host,
/// such as the local dev issuer, which has no TLS certificate).
fn derive_from_domain(domain: &str) -> Option<(String, String)> {
    // Host names are case-insensitive, but `iss` is compared exactly, and Auth0 writes it in lower case.
    let domain = domain.to_ascii_lowercase();
    let host = parse_domain(&domain)?;
    let scheme = if is_loopback(host) { "http" } else { "https" };
    Some((format!("{scheme}://{domain}/"), format!("{scheme}://{domain}/.well-known/jwks.json")))
}

/// Where an issuer that is not a bare Auth0 domain publishes its keys by default.
fn default_jwks_url(issuer: &str) -> String {
    let separator = if issuer.ends_with('/') { "" } else { "/" };
    format!("{issuer}{separator}.well-known/jwks.json")
}

/// The members an `ISSUERS` entry may have.
const ISSUER_FIELDS: [&str; 4] = ["domain", "issuer", "jwks_url", "audiences"];

/// `ISSUERS`: a JSON array as text, or an array of tables. Errors name the 0-based entry.
fn parse_issuers(
    value: Value,
    default_audiences: Option<&[String]>,
    earlier: &[IssuerConfig],
) -> Result<Vec<IssuerConfig>, ConfigError> {
    let fail = |index: Option<usize>, detail: String| ConfigError {
        variable: "ISSUERS",
        problem: ConfigProblem::InvalidRule { index, detail },
    };
    let value = match value {
        Value::String(text) => crate::json::parse(text.as_bytes()).map_err(|e| fail(None, e.to_string()))?,
        value => value,
    };
    let Value::Array(entries) = value else { return Err(fail(None, "not an array of issuers".into())) };
    if entries.len() > MAX_ISSUERS {
        return Err(fail(None, format!("at most {MAX_ISSUERS} issuers")));
    }
    let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let fail = |detail: &str| fail(Some(index), detail.to_owned());
        let entry = crate::json::Fields::of(&entry, "struct IssuerEntry", &ISSUER_FIELDS).map_err(|e| fail(&e))?;
        let text = |name: &str| entry.string(name).map(|v| v.map(str::to_owned)).map_err(|e| fail(&e));
        let (domain, issuer, jwks_url) = (text("domain")?, text("issuer")?, text("jwks_url")?);
        let checked_url = |url: String| (url.len() <= MAX_URL_LEN && check_url(&url).is_some()).then_some(url);
        let (issuer, jwks_url) = match (domain, issuer) {
            (Some(domain), None) => {
                let (issuer, derived) = derive_from_domain(domain.trim()).ok_or_else(|| fail(DOMAIN_EXPECTED))?;
                (issuer, jwks_url.map(checked_url).unwrap_or(Some(derived)))
            }
            (None, Some(issuer)) => {
                let issuer = checked_url(issuer).ok_or_else(|| fail("issuer must be an https:// URL"))?;
                let default = default_jwks_url(&issuer);
                let jwks_url = jwks_url.map_or_else(|| checked_url(default), checked_url);
                (issuer, jwks_url)
            }
            _ => return Err(fail("give exactly one of domain and issuer")),
        };
        let jwks_url = jwks_url.ok_or_else(|| fail("jwks_url must be an https:// URL of at most 200 characters"))?;
        let audiences = match entry.get("audiences").cloned() {
            None => default_audiences.map(<[String]>::to_vec),
            Some(Value::String(s)) => Some(s.split(',').map(|a| a.trim().to_owned()).collect()),
            Some(Value::Array(items)) => {
                let items: Option<Vec<String>> =
                    items.iter().map(|a| a.as_str().map(|a| a.trim().to_owned())).collect();
                Some(items.ok_or_else(|| fail("audiences must be a string or an array of strings"))?)
            }
            Some(_) => return Err(fail("audiences must be a string or an array of strings")),
        };
        let audiences = audiences
            .filter(|list| !list.is_empty())
            .ok_or_else(|| fail("no audiences: give audiences here or set AUTH0_AUDIENCE"))?;
        if !audiences.iter().all(|a| header_safe(a)) {
            return Err(fail(AUDIENCE_EXPECTED));
        }
        if earlier.iter().chain(&issuers).any(|known| known.issuer == issuer) {
            return Err(fail(
                "this issuer is already trusted (listed twice, or also set by AUTH0_DOMAIN / AUTH0_ISSUER)",
            ));
        }
        issuers.push(IssuerConfig { issuer, jwks_url, audiences });
    }
    if issuers.is_empty() && earlier.is_empty() {
        return Err(fail(None, "no issuers".into()));
    }
    Ok(issuers)
}
