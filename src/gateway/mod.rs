//! The gateway: the rule table, what the origin receives, and the per-caller limits.

pub mod forward;
pub mod limits;
pub mod rules;
