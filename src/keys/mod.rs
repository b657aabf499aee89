//! The issuers' signing keys: the JWKS model and the tiered store that keeps them close.

pub mod jwks;
pub mod store;
