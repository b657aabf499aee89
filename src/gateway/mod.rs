//! The gateway: the rule table, what the origin receives, the per-caller limits, and MCP endpoints.

pub mod forward;
pub mod limits;
pub mod mcp;
pub mod rules;
