//! The issuers this edge trusts, each with its own key store: a token's `iss`, read before any
//! key is looked at, picks one by exact comparison, and only that issuer's keys and audiences
//! judge the token. Keys of one issuer never verify another's token.

use std::rc::Rc;

use serde_json::Value;

use crate::{
    config::{Config, IssuerConfig, JwksPolicy},
    keystore::{KeyIo, KeyStore},
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
    pub fn new(config: &Config) -> Issuers {
        Issuers::from_list(&config.issuers, config.jwks)
    }

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
