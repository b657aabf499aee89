//! A rule in front of an MCP server (Streamable HTTP transport): the server is an OAuth protected
//! resource (MCP authorization spec, RFC 9728, RFC 8707), and one endpoint takes every JSON-RPC
//! method, so the scopes a POST needs are read from its body, not its path.
//!
//! - `"resource"`: the server's canonical URI. Tokens must name it in `aud`; its RFC 9728 document
//!   is served at the path-inserted well-known URL ([`Resource::metadata_path`]) and named in every
//!   challenge of the rule (`resource_metadata`).
//! - `"mcp"`: `{"<method>": [scopes], "<method>:<name>": [scopes]}`; every key that matches a
//!   message (its method; its method and `params.name`) adds its scopes to the rule's own.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::{config::vars::is_loopback, error::RequestProblem};

/// Where RFC 9728 §3.1 puts a resource's metadata: this, then the resource's path.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The body a POST on an `mcp` rule may have when `MCP_MAX_BODY_BYTES` is not set.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// A rule's `"resource"`, checked and with its metadata URL worked out once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The canonical URI exactly as configured: the only `aud` the rule accepts.
    pub uri: Rc<str>,
    /// The path the metadata is served at on this worker (`/.well-known/oauth-protected-resource/mcp`).
    pub metadata_path: Rc<str>,
    /// The metadata's absolute URL, for `resource_metadata` (from the URI, never the request's `Host`).
    pub metadata_url: Rc<str>,
    /// The metadata document (JSON), written once the configuration is known ([`Rules::describe_resources`]).
    ///
    /// [`Rules::describe_resources`]: crate::gateway::rules::Rules::describe_resources
    pub document: Rc<str>,
    /// What its 401 challenges name as `scope`: the rule's scopes, space-separated (set with the rule).
    pub scope: Rc<str>,
}

impl Resource {
    /// An absolute `https` URI (`http` only to a loopback host), no query or fragment (RFC 8707
    /// §2: a resource is an absolute URI without a fragment; a query would not survive the
    /// path-inserted metadata URL).
    pub fn parse(uri: &str) -> Result<Resource, String> {
        let bad = || {
            format!("resource {uri:?} must be an absolute https:// URI without query or fragment (http:// only on loopback)")
        };
        let (scheme, rest) = uri.split_once("://").ok_or_else(bad)?;
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
        let host = match authority.strip_prefix('[') {
            Some(v6) => &authority[..v6.find(']').map_or(authority.len(), |end| end + 2)],
            None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
        };
        let clean = |s: &str| s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'"' | b'\\'));
        let scheme_ok = scheme == "https" || (scheme == "http" && is_loopback(host));
        if !scheme_ok || host.is_empty() || authority.contains('@') || !clean(authority) || !clean(path) {
            return Err(bad());
        }
        let path = path.trim_end_matches('/');
        Ok(Resource {
            uri: uri.into(),
            metadata_path: format!("{WELL_KNOWN}{path}").into(),
            metadata_url: format!("{scheme}://{authority}{WELL_KNOWN}{path}").into(),
            document: "{}".into(),
            scope: "".into(),
        })
    }
}

/// Whether a body's `Content-Type` and `Content-Encoding` say plain UTF-8 JSON: `application/json`
/// with no parameter but `charset=utf-8` (any case, quoted or not), and no encoding but `identity`.
/// A missing `Content-Type` is refused too: a server may guess otherwise.
pub fn is_plain_json(media_type: Option<&str>, encoding: Option<&str>) -> bool {
    let encoded = encoding.is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
    let Some(media_type) = media_type else { return false };
    let mut parts = media_type.split(';');
    let essence_ok = parts.next().is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"));
    let params_ok = parts.all(|param| match param.split_once('=') {
        Some((name, value)) => {
            name.trim().eq_ignore_ascii_case("charset") && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        None => param.trim().is_empty(),
    });
    !encoded && essence_ok && params_ok
}

/// The methods whose `params.name` names what is called, so that `method:name` keys may name it.
/// (`resources/read` names a `uri`, not a `name`: a key for one would never match.)
pub const NAMED_METHODS: [&str; 2] = ["tools/call", "prompts/get"];

/// A rule's `"mcp"` map: the scopes each method, or a tool or prompt by name, needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpScopes {
    entries: Vec<(Rc<str>, Vec<String>)>,
}

/// What the body of a POST on an `mcp` rule asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpRequest {
    /// Scopes the messages need beyond the rule's, each once (in the map's key order).
    pub needed: Vec<String>,
    /// The method of a single message (`batch` for several, none for a response to the server).
    pub method: Option<Rc<str>>,
    /// `params.name` of a single `tools/call`.
    pub tool: Option<Rc<str>>,
}

impl McpScopes {
    pub fn parse(value: &Value, check_scope: impl Fn(&str) -> bool) -> Result<McpScopes, String> {
        let map = value.as_object().ok_or("mcp must be a map of JSON-RPC methods to lists of scopes")?;
        let mut entries = Vec::with_capacity(map.len());
        for (key, scopes) in map {
            let (method, name) = key.split_once(':').map_or((key.as_str(), None), |(m, n)| (m, Some(n)));
            if method.is_empty() || name.is_some_and(str::is_empty) || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("mcp: {key:?} is not a method or method:name"));
            }
            if name.is_some() && !NAMED_METHODS.contains(&method) {
                return Err(format!("mcp: {key:?}: only tools/call:<tool> and prompts/get:<prompt> name a target"));
            }
            let list: Option<Vec<String>> =
                scopes.as_array().and_then(|items| items.iter().map(|s| s.as_str().map(str::to_owned)).collect());
            let list = list.ok_or_else(|| format!("mcp: {key:?} must list scopes as strings"))?;
            if let Some(bad) = list.iter().find(|s| !check_scope(s)) {
                return Err(format!("mcp: {bad:?} is not a scope (printable, no spaces, quotes or backslashes)"));
            }
            entries.push((Rc::from(key.as_str()), list));
        }
        Ok(McpScopes { entries })
    }

    /// Every scope the map names, each once.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        let mut seen: Vec<&str> = Vec::new();
        self.entries.iter().flat_map(|(_, list)| list.iter().map(String::as_str)).filter(move |s| {
            let new = !seen.contains(s);
            if new {
                seen.push(s);
            }
            new
        })
    }

    /// Reads a JSON-RPC 2.0 body (one message or a batch) and the scopes its messages need.
    pub fn read(&self, body: &[u8]) -> Result<McpRequest, RequestProblem> {
        let bad = RequestProblem::NotJsonRpc;
        let value = crate::json::parse(body).map_err(|_| bad)?;
        let (messages, batch) = match &value {
            Value::Array(items) if !items.is_empty() => (items.iter().collect::<Vec<_>>(), true),
            Value::Object(_) => (vec![&value], false),
            _ => return Err(bad),
        };
        let mut request = McpRequest::default();
        for message in messages {
            let message = message.as_object().ok_or(bad)?;
            let Some((method, name)) = call(message).ok_or(bad)? else { continue };
            for (key, scopes) in &self.entries {
                let matches = match key.split_once(':') {
                    Some((m, n)) => m == method && name == Some(n),
                    None => **key == *method,
                };
                if matches {
                    for scope in scopes {
                        if !request.needed.contains(scope) {
                            request.needed.push(scope.clone());
                        }
                    }
                }
            }
            if !batch {
                request.method = Some(method.into());
                request.tool = (method == "tools/call").then_some(name).flatten().map(Rc::from);
            }
        }
        if batch {
            request.method = Some("batch".into());
        }
        Ok(request)
    }
}

/// One JSON-RPC 2.0 message: `Some(Some((method, params.name)))` for a request or notification,
/// `Some(None)` for a response (to a request the server made), `None` for anything else.
fn call(message: &Map<String, Value>) -> Option<Option<(&str, Option<&str>)>> {
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return None;
    }
    match message.get("method") {
        Some(Value::String(method)) => {
            let name = match message.get("params") {
                None => None,
                Some(Value::Object(params)) => match params.get("name") {
                    None => None,
                    Some(Value::String(name)) => Some(name.as_str()),
                    Some(_) => return None,
                },
                Some(Value::Array(_)) => None,
                Some(_) => return None,
            };
            Some(Some((method, name)))
        }
        Some(_) => None,
        None => {
            let answer = message.contains_key("result") != message.contains_key("error");
            (answer && message.contains_key("id")).then_some(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scopes() -> McpScopes {
        let map = json!({"tools/call": ["mcp:tools"], "tools/call:delete_repo": ["repo:admin"], "resources/read": ["files:read"]});
        McpScopes::parse(&map, |s| !s.is_empty()).unwrap()
    }

    fn read(body: &str) -> Result<McpRequest, RequestProblem> {
        scopes().read(body.as_bytes())
    }

    #[test]
    fn only_plain_utf8_json_is_read() {
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_plain_json(Some(good), None), "{good}");
            assert!(is_plain_json(Some(good), Some("identity")), "{good}");
        }
        for bad in [
            "application/json; charset=utf-7",
            "application/json; charset=shift_jis",
            "text/plain",
            "application/jsonx",
            "application/json; x=1",
        ] {
            assert!(!is_plain_json(Some(bad), None), "{bad}");
        }
        assert!(!is_plain_json(None, None));
        assert!(!is_plain_json(Some("application/json"), Some("gzip")));
    }

    #[test]
    fn a_resource_names_its_path_inserted_metadata() {
        let r = Resource::parse("https://api.example.com/mcp").unwrap();
        assert_eq!(&*r.metadata_path, "/.well-known/oauth-protected-resource/mcp");
        assert_eq!(&*r.metadata_url, "https://api.example.com/.well-known/oauth-protected-resource/mcp");
        let root = Resource::parse("https://api.example.com").unwrap();
        assert_eq!(&*root.metadata_path, "/.well-known/oauth-protected-resource");
        assert!(Resource::parse("http://127.0.0.1:8787/mcp").is_ok());
        assert!(Resource::parse("http://[::1]:8787/mcp").is_ok());
        for bad in [
            "http://api.example.com/mcp",
            "https://a.com/mcp?x=1",
            "https://a.com/mcp#f",
            "/mcp",
            "mcp",
            "https://u@a.com/",
        ] {
            assert!(Resource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_call_needs_the_scopes_of_its_method_and_of_its_tool() {
        let call =
            |tool: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
        let plain = read(&call("echo")).unwrap();
        assert_eq!(plain.needed, ["mcp:tools"]);
        assert_eq!((plain.method.as_deref(), plain.tool.as_deref()), (Some("tools/call"), Some("echo")));
        assert_eq!(read(&call("delete_repo")).unwrap().needed, ["mcp:tools", "repo:admin"]);
        let list = read(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).unwrap();
        assert!(list.needed.is_empty());
        assert_eq!((list.method.as_deref(), list.tool), (Some("tools/list"), None));
    }

    #[test]
    fn a_batch_needs_the_scopes_of_every_message() {
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}},
                        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo"}},
                        {"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
        let request = read(batch).unwrap();
        assert_eq!(request.needed, ["files:read", "mcp:tools", "repo:admin"]);
        assert_eq!((request.method.as_deref(), request.tool), (Some("batch"), None));
    }

    #[test]
    fn a_response_to_the_server_needs_no_scope() {
        let answer = read(r#"{"jsonrpc":"2.0","id":"s-1","result":{"content":{"type":"text","text":"hi"}}}"#).unwrap();
        assert_eq!(answer, McpRequest::default());
        assert!(read(r#"{"jsonrpc":"2.0","id":"s-1","error":{"code":-1,"message":"no"}}"#).is_ok());
    }

    #[test]
    fn anything_but_json_rpc_two_is_refused() {
        for bad in [
            "",
            "not json",
            "[]",
            "42",
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"p"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"x"}, 3]"#,
            r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"x"}"#,
        ] {
            assert_eq!(read(bad), Err(RequestProblem::NotJsonRpc), "{bad}");
        }
    }

    #[test]
    fn a_map_that_cannot_be_read_is_refused() {
        let check = |s: &str| !s.is_empty() && !s.contains(' ');
        for bad in [
            json!([]),
            json!({"tools/call": "x"}),
            json!({"": ["a"]}),
            json!({"tools/call:": ["a"]}),
            json!({"m": ["a b"]}),
            json!({"resources/read:file:///etc/secret": ["a"]}),
        ] {
            assert!(McpScopes::parse(&bad, check).is_err(), "{bad}");
        }
        assert_eq!(scopes().scopes().collect::<Vec<_>>(), ["files:read", "mcp:tools", "repo:admin"]);
    }
}
