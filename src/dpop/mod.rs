//! DPoP (RFC 9449): the setting, the proofs, the nonces, and the memory of proofs already used.

pub mod nonce;
pub mod policy;
pub mod proof;
pub mod replay;
