//! The access token: where it is found, how it is read, whose keys verify it, which claims it must
//! hold, and the tokens already verified.

pub mod cache;
pub mod claims;
pub mod extract;
pub mod issuers;
pub mod parse;
pub mod verify;
