//! Operating the edge: the decision made for each request and what the operator sees of it, and the
//! deny list.

pub mod decision;
pub mod denylist;
