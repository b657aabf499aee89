//! Which requirement applies to a request (Envoy's `matcher` / `requirement_map`): rules are data,
//! parsed and checked once per isolate into a compiled form that a request only walks.
//!
//! The demo routes are a built-in table ([`Rules::demo`]) answered by the worker itself; `ROUTES`
//! is a user's table answered by the origin. Both go through the same matcher and pipeline.

use std::rc::Rc;

use crate::{
    gateway::mcp::{McpScopes, Resource},
    json::Fields,
};

/// Who answers a request once its rule admits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Responder {
    /// The worker itself, with this message (the quickstart's routes), kept as its JSON body:
    /// made once per isolate, not serialised again for every answer.
    Message(std::rc::Rc<str>),
    /// The origin behind the gateway.
    Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// A valid token is needed.
    Required,
    /// No token is looked at.
    Public,
    /// No token: admitted without identity. A token that is present must be valid.
    Optional,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `:name`: one non-empty segment.
    Param,
}

/// A compiled `path`: its segments, and whether a final `/*` lets anything follow.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<Segment>,
    prefix: bool,
}

impl Pattern {
    fn parse(path: &str) -> Result<Pattern, String> {
        let rest = path.strip_prefix('/').ok_or("path must start with /")?;
        // A request path that means two things is refused before matching; a pattern like it would
        // never match, or (as `//*` once did) match more than it says.
        if is_ambiguous_path(path.trim_end_matches('*')) {
            return Err("a path may not hold //, ;, a backslash or escapes such requests are refused for".into());
        }
        let (rest, prefix) = match rest.strip_suffix('*') {
            // "/*" itself: everything.
            Some("") => return Ok(Pattern { segments: Vec::new(), prefix: true }),
            // "/a/b/*".
            Some(head) => (head.strip_suffix('/').ok_or("* may only end a path, as /*")?, true),
            None => (rest, false),
        };
        let segments = rest
            .split('/')
            .map(|segment| match segment.strip_prefix(':') {
                Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    Ok(Segment::Param)
                }
                Some(_) => Err(format!("bad parameter segment {segment:?}: use :name with letters, digits, _")),
                None if segment.bytes().all(is_path_char) => Ok(Segment::Literal(segment.to_owned())),
                None => Err(format!("segment {segment:?} holds characters a path cannot")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pattern { segments, prefix })
    }

    fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else { return false };
        if self.prefix && self.segments.is_empty() {
            return true;
        }
        let mut parts = rest.split('/');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Literal(literal), Some(part)) if literal == part => {}
                (Segment::Param, Some(part)) if !part.is_empty() => {}
                _ => return false,
            }
        }
        self.prefix || parts.next().is_none()
    }
}

/// RFC 3986 `pchar` minus `:` handling (a literal segment may hold one, just not lead with it).
fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()+,;=:@%".contains(&b)
}

/// Whether an origin could read this path as another path than the one rules are matched on
/// (Envoy's `normalize_path` / `path_with_escaped_slashes_action`, as a refusal: the path is
/// forwarded exactly, so it must mean one thing). Refused:
/// - an encoded `/`, `\` or `.`: `/public/..%2Fadmin`;
/// - any other encoded unreserved character: `/%61dmin` is `/admin` to an origin that decodes;
/// - an escape that is malformed, or bytes that are not UTF-8 once decoded (overlong forms such as
///   `%C0%AF` are read as `/` by lax decoders);
/// - an encoded control character (`%00` truncates paths in some stacks), and an encoded `%`
///   followed by two hex digits (`%252F` is `/` to an origin that decodes twice);
/// - an empty segment (`//admin`: nginx merges slashes) and `;` (`/admin;x/panel`: Tomcat, Jetty and
///   Spring drop path parameters, `..;/` is a classic traversal);
/// - a `.` or `..` segment: the URL the edge forwards is parsed again, which resolves them
///   (`/public/../admin` would be matched as a public path and sent as `/admin`). Cloudflare's URL
///   normalisation usually resolves them first, but not with it turned off, nor on bare workerd;
/// - an encoded `;`, `?` or `#` (`/admin%3Bx`, `/admin%3Fx`, `/admin%23`): an origin that decodes
///   before it splits off path parameters, the query or a fragment serves `/admin`;
/// - a raw `\\` (URL parsers may read it as `/`).
pub fn is_ambiguous_path(path: &str) -> bool {
    if path.contains("//") || path.contains(';') || path.contains('\\') {
        return true;
    }
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        return true;
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |b: u8| (b as char).to_digit(16);
        let Some(value) = bytes.get(i + 1..i + 3).and_then(|h| Some(hex(h[0])? * 16 + hex(h[1])?)) else {
            return true;
        };
        let value = value as u8;
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\') {
            return true;
        }
        if value.is_ascii_control() || matches!(value, b';' | b'?' | b'#') {
            return true;
        }
        let hex_digit = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
        if value == b'%' && hex_digit(i + 3) && hex_digit(i + 4) {
            return true;
        }
        decoded.push(value);
        i += 3;
    }
    std::str::from_utf8(&decoded).is_err()
}

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The path pattern as configured: how decisions and metrics name the rule.
    pub path: Rc<str>,
    pattern: Pattern,
    /// Upper-case; `None` admits every method. A rule listing GET also takes HEAD.
    methods: Option<Vec<String>>,
    pub auth: Auth,
    /// Every one must be granted.
    pub scopes: Vec<String>,
    /// At least one must be granted (when any are listed).
    pub any_scopes: Vec<String>,
    /// A WebSocket upgrade may be made on this rule (the edge relays it); any other upgrade is refused.
    pub websocket: bool,
    /// Every one must hold (checked after the scopes).
    pub claims: Vec<ClaimRule>,
    /// A limit per caller, checked once the request is otherwise admitted.
    pub rate_limit: Option<RateLimit>,
    /// An OAuth protected resource: its tokens must name it in `aud` (see `gateway::mcp`).
    pub resource: Option<Resource>,
    /// An MCP endpoint: a POST's JSON-RPC body decides the scopes on top of `scopes`.
    pub mcp: Option<McpScopes>,
    /// Where its tokens' revocations are read (`"revocation"`).
    pub revocation: Revocation,
    pub responder: Responder,
}

/// `"revocation"`: `"kv"` (the default) judges a token by the isolate's copy of the `DENYLIST`
/// namespace (its refresh interval plus KV's propagation, up to about a minute across locations);
/// `"fleet"` by a copy at most a second old of the fleet's Durable Object, which `deny.sh` writes
/// to beside KV (see `operate::denylist::FleetRevocationIo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revocation {
    #[default]
    Kv,
    Fleet,
}

/// `"rate_limit": {"binding": "NAME", "key": "subject", "period": 60}`: a Workers Rate Limiting
/// binding (`[[ratelimits]]`) spent once per admitted request, keyed on the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub binding: Rc<str>,
    pub key: LimitKey,
    /// The binding's period (10 or 60 s), which the worker cannot read from the binding: stated
    /// here, and sent as `Retry-After` to a caller over the limit.
    pub period_secs: u64,
}

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey {
    /// The verified issuer and `sub`.
    Subject,
    /// The verified issuer and client (`azp`, else `client_id`).
    Client,
    /// The client's address as the runtime reports it (`CF-Connecting-IP`): for public rules.
    Ip,
}

/// What Workers Rate Limiting allows as a period.
pub const RATE_LIMIT_PERIODS: [u64; 2] = [10, 60];
pub const DEFAULT_RATE_LIMIT_PERIOD_SECONDS: u64 = 60;

impl RateLimit {
    fn parse(raw: &serde_json::Value, auth: Auth) -> Result<RateLimit, String> {
        let raw = Fields::of(raw, "struct RawRateLimit", &["binding", "key", "period"])?;
        let binding = raw.required_string("binding")?;
        let key = raw
            .choice("key", &[("subject", LimitKey::Subject), ("client", LimitKey::Client), ("ip", LimitKey::Ip)])?
            .ok_or("missing field `key`")?;
        let name_ok = !binding.is_empty()
            && binding.len() <= 64
            && binding.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !binding.as_bytes()[0].is_ascii_digit();
        if !name_ok {
            return Err(format!("rate_limit: binding {binding:?} is not a binding name"));
        }
        if key != LimitKey::Ip && auth != Auth::Required {
            return Err("rate_limit: key \"subject\" or \"client\" needs auth \"required\" (use \"ip\")".into());
        }
        let period_secs = raw.unsigned("period")?.unwrap_or(DEFAULT_RATE_LIMIT_PERIOD_SECONDS);
        if !RATE_LIMIT_PERIODS.contains(&period_secs) {
            return Err("rate_limit: period must be 10 or 60 (the binding's period)".into());
        }
        Ok(RateLimit { binding: binding.into(), key, period_secs })
    }
}

/// `"claims": {"org_id": "org_123", "roles": ["admin", "editor"]}`: one claim and the values it may
/// take (express-oauth2-jwt-bearer's `claimEquals` / `claimIncludes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    /// Taken whole: Auth0's namespaced claims hold dots and slashes (`https://example.com/roles`).
    pub name: Rc<str>,
    /// Strings, numbers or booleans; any one will do (a single value is a list of one).
    accepted: Vec<serde_json::Value>,
}

impl ClaimRule {
    /// Whether the token's claim (absent: `None`) holds: it equals an accepted value, or is an
    /// array that has one among its elements. Values compare as JSON (`1` is not `"1"`).
    pub fn holds(&self, claim: Option<&serde_json::Value>) -> bool {
        let Some(claim) = claim else { return false };
        self.accepted
            .iter()
            .any(|accepted| claim == accepted || claim.as_array().is_some_and(|items| items.contains(accepted)))
    }

    fn parse(name: &str, value: &serde_json::Value) -> Result<ClaimRule, String> {
        use serde_json::Value;
        let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
        if name.is_empty() {
            return Err("claims: a claim name may not be empty".into());
        }
        let accepted = match value {
            Value::Array(items) if !items.is_empty() && items.iter().all(scalar) => items.clone(),
            v if scalar(v) => vec![v.clone()],
            _ => {
                return Err(format!(
                    "claims: {name:?} must be a string, number or boolean, or a non-empty array of them"
                ))
            }
        };
        Ok(ClaimRule { name: name.into(), accepted })
    }
}

impl Rule {
    fn admits(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|list| list.iter().any(|m| m == method || (method == "HEAD" && m == "GET")))
    }

    /// What the rule asks for, as `scope="..."` of a 403 lists it: `scopes`, then `any_scopes`.
    pub fn scope_requirement(&self) -> String {
        self.scopes.iter().chain(&self.any_scopes).map(String::as_str).collect::<Vec<_>>().join(" ")
    }

    /// The first claim rule the token's claims do not meet (`claim` looks one up by name).
    pub fn unmet_claim<'v>(&self, claim: impl Fn(&str) -> Option<&'v serde_json::Value>) -> Option<&ClaimRule> {
        self.claims.iter().find(|rule| !rule.holds(claim(&rule.name)))
    }

    /// Whether the granted scopes satisfy this rule.
    pub fn is_satisfied_by(&self, has: impl Fn(&str) -> bool) -> bool {
        self.scopes.iter().all(|s| has(s)) && (self.any_scopes.is_empty() || self.any_scopes.iter().any(|s| has(s)))
    }
}

/// The answer of the matcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a> {
    Rule(&'a Rule),
    /// Some rule's path matched but none took the method: these methods would have been taken.
    MethodNotAllowed(Vec<String>),
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
    /// Every claim some rule (or `CLAIM_HEADERS`) reads beyond the standard ones: only these are
    /// kept with a verified token, and none is read when none is named.
    claims_needed: Vec<Rc<str>>,
}

/// A rule that cannot be understood: its 0-based index (if the array itself was fine) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    pub index: Option<usize>,
    pub reason: String,
}

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(index) => write!(f, "rule {index}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// The members a rule may have.
const RULE_FIELDS: [&str; 11] = [
    "path",
    "methods",
    "auth",
    "scopes",
    "any_scopes",
    "websocket",
    "claims",
    "rate_limit",
    "resource",
    "mcp",
    "revocation",
];

/// Methods no rule may list: TRACE and TRACK echo the request, headers the edge adds included
/// (`X-Edge-Auth-Secret`), and CONNECT asks for a tunnel the gateway does not make.
pub const NEVER_FORWARDED: [&str; 3] = ["TRACE", "TRACK", "CONNECT"];

/// What a rule without a method list stands for when methods must be listed (a preflight's
/// `Access-Control-Allow-Methods`, a 405's `Allow`).
const ANY_METHOD: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Whether a request method is answered 405 whatever the rules say (never forwarded).
pub fn is_refused_method(method: &str) -> bool {
    method.eq_ignore_ascii_case("TRACE") || method.eq_ignore_ascii_case("TRACK")
}

impl Rules {
    /// The quickstart's routes.
    pub fn demo(public: &'static str, private: &'static str, scoped: &'static str, scope: &str) -> Rules {
        let rule = |path: &str, auth, scopes: &[&str], message| Rule {
            path: path.into(),
            pattern: Pattern::parse(path).expect("built-in paths are valid"),
            methods: Some(vec!["GET".into(), "OPTIONS".into()]),
            auth,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            any_scopes: Vec::new(),
            websocket: false,
            claims: Vec::new(),
            rate_limit: None,
            resource: None,
            mcp: None,
            revocation: Revocation::Kv,
            responder: Responder::Message(format!("{{\"message\":{}}}", crate::json::string_literal(message)).into()),
        };
        Rules {
            rules: vec![
                rule("/api/public", Auth::Public, &[], public),
                rule("/api/private", Auth::Required, &[], private),
                rule("/api/private-scoped", Auth::Required, &[scope], scoped),
            ],
            claims_needed: Vec::new(),
        }
    }

    /// A user's `ROUTES`: a JSON array, given as JSON text (`--var`, a secret) or as the array
    /// itself (a TOML array of tables under `[vars]`).
    pub fn parse(value: &serde_json::Value) -> Result<Rules, RulesError> {
        let whole = |reason: String| RulesError { index: None, reason };
        let parsed;
        let value = match value {
            serde_json::Value::String(text) => {
                parsed = crate::json::parse(text.as_bytes()).map_err(|e| whole(format!("not JSON: {e}")))?;
                &parsed
            }
            other => other,
        };
        let list = value.as_array().ok_or_else(|| whole("must be a JSON array of rules".into()))?;
        let rules = list
            .iter()
            .enumerate()
            .map(|(index, raw)| Self::rule(raw).map_err(|reason| RulesError { index: Some(index), reason }))
            .collect::<Result<Vec<_>, _>>()?;
        let mut parsed = Rules { rules, claims_needed: Vec::new() };
        let names: Vec<Rc<str>> = parsed.rules.iter().flat_map(|r| r.claims.iter().map(|c| c.name.clone())).collect();
        parsed.need_claims(names);
        Ok(parsed)
    }

    /// Each rule's rate-limit binding, with the rule's index: the edge checks at start-up that
    /// each is bound and is a rate limiter.
    /// The rule at `index` of the table.
    pub fn get(&self, index: usize) -> Option<&Rule> {
        self.rules.get(index)
    }

    /// Where `rule` (one of this table's) sits in it.
    pub fn index_of(&self, rule: &Rule) -> Option<usize> {
        self.rules.iter().position(|r| std::ptr::eq(r, rule))
    }

    /// The first rule that reads the fleet's revocations, if one does (the edge then needs their
    /// binding).
    pub fn fleet_revocation(&self) -> Option<usize> {
        self.rules.iter().position(|r| r.revocation == Revocation::Fleet)
    }

    pub fn rate_limit_bindings(&self) -> impl Iterator<Item = (usize, &str)> {
        self.rules.iter().enumerate().filter_map(|(i, r)| r.rate_limit.as_ref().map(|l| (i, &*l.binding)))
    }

    /// The claims a verified token must keep for these rules and the identity headers.
    pub fn claims_needed(&self) -> &[Rc<str>] {
        &self.claims_needed
    }

    /// Adds claims to keep (`CLAIM_HEADERS`' sources), each once.
    pub fn need_claims(&mut self, names: impl IntoIterator<Item = Rc<str>>) {
        for name in names {
            if !self.claims_needed.contains(&name) {
                self.claims_needed.push(name);
            }
        }
    }

    fn rule(raw: &serde_json::Value) -> Result<Rule, String> {
        let raw = Fields::of(raw, "struct RawRule", &RULE_FIELDS)?;
        let path = raw.required_string("path")?;
        let pattern = Pattern::parse(path)?;
        let methods = match raw.strings("methods")? {
            None => None,
            Some(list) if list.is_empty() => return Err("methods must list at least one method".into()),
            Some(list) => Some(
                list.iter()
                    .map(|m| {
                        let valid = !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic());
                        let upper =
                            valid.then(|| m.to_ascii_uppercase()).ok_or_else(|| format!("{m:?} is not a method"))?;
                        if NEVER_FORWARDED.contains(&upper.as_str()) {
                            return Err(format!("{upper} may not be listed: the gateway never forwards it"));
                        }
                        Ok(upper)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let auth = raw
            .choice("auth", &[("required", Auth::Required), ("public", Auth::Public), ("optional", Auth::Optional)])?
            .unwrap_or(Auth::Required);
        let scopes = scope_list(raw.strings("scopes")?, "scopes")?;
        let any_scopes = scope_list(raw.strings("any_scopes")?, "any_scopes")?;
        if auth != Auth::Required && !(scopes.is_empty() && any_scopes.is_empty()) {
            return Err("scopes and any_scopes need auth \"required\"".into());
        }
        let claims = match raw.get("claims") {
            None => Vec::new(),
            Some(other) if !other.is_object() => return Err(crate::json::invalid_type(other, "a map")),
            // As with scopes: an optional rule admits a request without a token, which would
            // pass the claims unchecked.
            Some(_) if auth != Auth::Required => {
                return Err("claims need a token: auth \"required\" (not allowed on a public or optional rule)".into());
            }
            Some(map) => map
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| ClaimRule::parse(name, value))
                .collect::<Result<_, _>>()?,
        };
        let rate_limit = raw.get("rate_limit").map(|limit| RateLimit::parse(limit, auth)).transpose()?;
        let websocket = raw.flag("websocket")?;
        // A WebSocket handshake is a GET (RFC 6455 §4.1).
        if websocket && methods.as_ref().is_some_and(|list| !list.iter().any(|m| m == "GET")) {
            return Err("websocket needs GET among the methods (a handshake is a GET)".into());
        }
        let resource = raw.string("resource")?.map(Resource::parse).transpose()?;
        let mcp = raw.get("mcp").map(|map| McpScopes::parse(map, is_scope)).transpose()?;
        if mcp.as_ref().is_some_and(|map| map.scopes().next().is_some()) && auth != Auth::Required {
            return Err("mcp scopes need auth \"required\" (use \"mcp\": {} on a public rule)".into());
        }
        if mcp.is_some() && websocket {
            return Err("an mcp rule streams over HTTP (SSE), not a WebSocket".into());
        }
        let revocation = match raw.string("revocation")? {
            None | Some("kv") => Revocation::Kv,
            Some("fleet") if auth == Auth::Public => {
                return Err("revocation \"fleet\" needs a token: not on a public rule".into());
            }
            Some("fleet") => Revocation::Fleet,
            Some(other) => return Err(format!("revocation must be \"kv\" or \"fleet\", not {other:?}")),
        };
        let mut rule = Rule {
            path: path.into(),
            pattern,
            methods,
            auth,
            scopes,
            any_scopes,
            websocket,
            claims,
            rate_limit,
            resource,
            mcp,
            revocation,
            responder: Responder::Origin,
        };
        // Once per isolate: every challenge of the rule names it.
        let scope = rule.scope_requirement().into();
        if let Some(resource) = rule.resource.as_mut() {
            resource.scope = scope;
        }
        Ok(rule)
    }

    /// The methods the rules whose path matches take, in rule order, each once (`GET` brings
    /// `HEAD`; a rule without a list brings the common methods). Never TRACE, TRACK or CONNECT.
    pub fn methods_for(&self, path: &str) -> Vec<&str> {
        let mut methods: Vec<&str> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.pattern.matches(path)) {
            let listed: Vec<&str> = match &rule.methods {
                None => ANY_METHOD.to_vec(),
                Some(list) => list
                    .iter()
                    .flat_map(|m| std::iter::once(m.as_str()).chain((m == "GET").then_some("HEAD")))
                    .collect(),
            };
            for m in listed {
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
        }
        methods
    }

    /// Writes each protected resource's metadata document (`describe`: from the rule and the rest
    /// of the configuration), once per isolate.
    pub fn describe_resources(&mut self, describe: impl Fn(&Resource, &Rule) -> Rc<str>) {
        for rule in &mut self.rules {
            if let Some(resource) = rule.resource.take() {
                let document = describe(&resource, rule);
                rule.resource = Some(Resource { document, ..resource });
            }
        }
    }

    /// Whether `uri` is some rule's `resource` (its tokens are for that rule alone).
    pub fn is_resource(&self, uri: &str) -> bool {
        self.rules.iter().any(|r| r.resource.as_ref().is_some_and(|res| *res.uri == *uri))
    }

    /// Every rule's `resource`.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.rules.iter().filter_map(|r| r.resource.as_ref())
    }

    /// The rule whose `resource` metadata is served at `path` (RFC 9728 §3.1), if any.
    pub fn resource_at(&self, path: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.resource.as_ref().is_some_and(|res| *res.metadata_path == *path))
    }

    /// Whether some rule whose path matches is an MCP endpoint (its preflight allows MCP's headers).
    pub fn mcp_at(&self, path: &str) -> bool {
        self.rules.iter().any(|r| r.mcp.is_some() && r.pattern.matches(path))
    }

    /// The first rule whose path and method both match decides.
    pub fn find(&self, method: &str, path: &str) -> Match<'_> {
        let mut allowed: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.pattern.matches(path)) {
            if rule.admits(method) {
                return Match::Rule(rule);
            }
            for m in rule.methods.iter().flatten() {
                let implied = (m == "GET").then(|| "HEAD".to_owned());
                for m in std::iter::once(m.clone()).chain(implied) {
                    if !allowed.contains(&m) {
                        allowed.push(m);
                    }
                }
            }
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed(allowed)
        }
    }
}

/// A scope as a challenge's `scope="…"` can carry it (RFC 6749 §3.3's scope-token).
fn is_scope(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

fn scope_list(list: Option<Vec<String>>, field: &str) -> Result<Vec<String>, String> {
    let list = list.unwrap_or_default();
    match list.iter().find(|s| !is_scope(s)) {
        Some(bad) => Err(format!("{field}: {bad:?} is not a scope (printable, no spaces, quotes or backslashes)")),
        None => Ok(list),
    }
}
