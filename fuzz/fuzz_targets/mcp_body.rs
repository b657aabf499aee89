//! Raw bytes → `McpScopes::read`, as the body of a POST on an MCP rule.
//!
//! Invariants: no panic; a body it admits is JSON-RPC 2.0 as serde_json reads it (one message or a
//! non-empty batch, each with `"jsonrpc": "2.0"`); the scopes it asks for are exactly those of the
//! map's keys that match some message by serde_json's reading (its method; its method and a string
//! `params.name`), so no message a server reads can call a tool without the tool's scopes.

#![no_main]

use std::collections::BTreeSet;

use edge_auth::gateway::mcp::McpScopes;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

thread_local! {
    static MAP: McpScopes = McpScopes::parse(
        &json!({"tools/call": ["t"], "tools/call:delete_repo": ["admin"], "prompts/get:p": ["p"], "resources/read": ["r"]}),
        |s| !s.is_empty(),
    )
    .expect("the map is valid");
}

/// The scopes of one message, read by serde_json rather than the edge's reader.
fn expected(message: &Value, into: &mut BTreeSet<&'static str>) {
    let Some(method) = message.get("method").and_then(Value::as_str) else { return };
    let name = message.get("params").and_then(|p| p.get("name")).and_then(Value::as_str);
    match (method, name) {
        ("tools/call", Some("delete_repo")) => into.extend(["t", "admin"]),
        ("tools/call", _) => _ = into.insert("t"),
        ("prompts/get", Some("p")) => _ = into.insert("p"),
        ("resources/read", _) => _ = into.insert("r"),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = MAP.with(|map| map.read(data)) else { return };
    let value: Value = serde_json::from_slice(data).expect("an admitted body is JSON to serde_json too");
    let messages: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    assert!(!messages.is_empty());
    let mut want = BTreeSet::new();
    for message in messages {
        assert_eq!(message.get("jsonrpc"), Some(&json!("2.0")), "{message}");
        expected(message, &mut want);
    }
    let got: BTreeSet<&str> = request.needed.iter().map(String::as_str).collect();
    assert_eq!(got, want, "{}", String::from_utf8_lossy(data));
});
