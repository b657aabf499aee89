//! The gateway: the rule table, what the origin receives, the per-caller limits, MCP endpoints,
//! and the identity assertion the origin can verify.

pub mod assertion;
pub mod forward;
pub mod limits;
pub mod mcp;
pub mod rules;
