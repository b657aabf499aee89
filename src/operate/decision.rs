//! What the edge decided about a request, as data an operator can count (Envoy's `jwt_authn`
//! `Status`, used by its response, stats and log alike).
//!
//! - [`Reason`] names every outcome once, from a fixed list: a metric or log line never carries
//!   text a client chose, so an attacker can neither forge a reason nor blow up its cardinality.
//!   [`Reason::of`] is the one mapping from an [`ApiError`] to its reason.
//! - [`Decision`] is what the pipeline hands the edge beside the answer: the rule, the status, the
//!   reason and which issuer and key judged the token. The edge adds only the times.
//! - [`data_point`] and [`log_line`] are pure functions of a decision; the edge writes what they
//!   return, after answering. [`LogLimiter`] bounds how many lines any request pattern can make.

use std::{collections::HashMap, rc::Rc};

use serde_json::{json, Value};

use crate::{
    config::vars::{decimal, invalid, Vars},
    error::{ApiError, ConfigError, RequestProblem, TokenProblem},
};

/// Why a request got the answer it got. The list is documented in docs/operating.md ("Seeing what
/// the edge decides"); dashboards depend on these names, so they only ever grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A valid token satisfied the rule.
    Ok,
    /// A public rule: no token looked at.
    Public,
    /// An optional rule, no token sent: admitted without identity.
    Anonymous,
    /// A CORS preflight the edge answered itself.
    Preflight,
    MissingAuthorization,
    /// A Bearer credential that is not one well-formed token.
    InvalidRequest,
    /// Not a JWS, bad JSON, claims of the wrong type, no `exp`, a `crit` header, too large.
    MalformedToken,
    UnsupportedAlg,
    /// A `kid` the issuer's key set does not hold (or none, where the set holds several keys).
    UnknownKid,
    BadSignature,
    Expired,
    /// `nbf` or `iat` in the future.
    NotYetValid,
    UntrustedIssuer,
    WrongAudience,
    InsufficientScope,
    ClaimMismatch,
    Revoked,
    RateLimited,
    InvalidDpopProof,
    UseDpopNonce,
    /// A DPoP binding refusal: a bound token as Bearer, an unbound one as DPoP, DPoP required, a
    /// confirmation method this edge cannot check, or a token bound to another key than the proof's.
    TokenBinding,
    UpgradeNotAllowed,
    ClientBodyFailed,
    /// No usable signing keys and the issuer cannot be reached.
    NoKeys,
    /// The deny list was never read by this isolate and cannot be read now (refused, never let through).
    DenylistUnavailable,
    /// The fleet's memory of used DPoP proofs cannot be asked (refused, never let through).
    ReplayStoreUnavailable,
    Misconfigured,
    NotFound,
    MethodNotAllowed,
    AmbiguousPath,
    OriginUnreachable,
    OriginTimeout,
    InternalError,
    /// An MCP POST body over `MCP_MAX_BODY_BYTES`.
    PayloadTooLarge,
    /// An MCP rule called from an `Origin` not allowed (DNS rebinding).
    OriginNotAllowed,
    /// An MCP POST whose body is not plain UTF-8 JSON.
    UnsupportedMediaType,
}

impl Reason {
    /// Every reason, in the order docs/operating.md lists them.
    pub const ALL: [Reason; 36] = [
        Reason::Ok,
        Reason::Public,
        Reason::Anonymous,
        Reason::Preflight,
        Reason::MissingAuthorization,
        Reason::InvalidRequest,
        Reason::MalformedToken,
        Reason::UnsupportedAlg,
        Reason::UnknownKid,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::UntrustedIssuer,
        Reason::WrongAudience,
        Reason::InsufficientScope,
        Reason::ClaimMismatch,
        Reason::Revoked,
        Reason::RateLimited,
        Reason::InvalidDpopProof,
        Reason::UseDpopNonce,
        Reason::TokenBinding,
        Reason::UpgradeNotAllowed,
        Reason::ClientBodyFailed,
        Reason::NoKeys,
        Reason::DenylistUnavailable,
        Reason::ReplayStoreUnavailable,
        Reason::Misconfigured,
        Reason::NotFound,
        Reason::MethodNotAllowed,
        Reason::AmbiguousPath,
        Reason::OriginUnreachable,
        Reason::OriginTimeout,
        Reason::InternalError,
        Reason::PayloadTooLarge,
        Reason::OriginNotAllowed,
        Reason::UnsupportedMediaType,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Public => "public",
            Reason::Anonymous => "anonymous",
            Reason::Preflight => "preflight",
            Reason::MissingAuthorization => "missing_authorization",
            Reason::InvalidRequest => "invalid_request",
            Reason::MalformedToken => "malformed_token",
            Reason::UnsupportedAlg => "unsupported_alg",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::UntrustedIssuer => "untrusted_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::ClaimMismatch => "claim_mismatch",
            Reason::Revoked => "revoked",
            Reason::RateLimited => "rate_limited",
            Reason::InvalidDpopProof => "invalid_dpop_proof",
            Reason::UseDpopNonce => "use_dpop_nonce",
            Reason::TokenBinding => "token_binding",
            Reason::UpgradeNotAllowed => "upgrade_not_allowed",
            Reason::ClientBodyFailed => "client_body_failed",
            Reason::NoKeys => "no_keys",
            Reason::DenylistUnavailable => "denylist_unavailable",
            Reason::ReplayStoreUnavailable => "replay_store_unavailable",
            Reason::Misconfigured => "misconfigured",
            Reason::NotFound => "not_found",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::OriginUnreachable => "origin_unreachable",
            Reason::OriginTimeout => "origin_timeout",
            Reason::InternalError => "internal_error",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::OriginNotAllowed => "origin_not_allowed",
            Reason::UnsupportedMediaType => "unsupported_media_type",
        }
    }

    /// The one mapping from a refusal to its reason.
    pub fn of(error: &ApiError) -> Reason {
        match error {
            ApiError::NotFound => Reason::NotFound,
            ApiError::MethodNotAllowed(_) => Reason::MethodNotAllowed,
            ApiError::Misconfigured(_) => Reason::Misconfigured,
            ApiError::MissingAuthorization => Reason::MissingAuthorization,
            ApiError::InvalidRequest(problem) => match problem {
                RequestProblem::EmptyCredential | RequestProblem::MultipleCredentials | RequestProblem::NotB64Token => {
                    Reason::InvalidRequest
                }
                RequestProblem::AmbiguousPath => Reason::AmbiguousPath,
                RequestProblem::UpgradeNotAllowed => Reason::UpgradeNotAllowed,
                RequestProblem::ClientBodyFailed => Reason::ClientBodyFailed,
                RequestProblem::NotJsonRpc => Reason::InvalidRequest,
            },
            ApiError::InvalidToken(problem) => match problem {
                TokenProblem::TooLarge
                | TokenProblem::Malformed
                | TokenProblem::CriticalHeader
                | TokenProblem::MalformedClaims
                | TokenProblem::MissingExpiry => Reason::MalformedToken,
                TokenProblem::UnsupportedAlgorithm => Reason::UnsupportedAlg,
                TokenProblem::UnknownKey | TokenProblem::KeyNotSpecified => Reason::UnknownKid,
                TokenProblem::BadSignature => Reason::BadSignature,
                TokenProblem::Expired => Reason::Expired,
                TokenProblem::NotYetValid | TokenProblem::IssuedInFuture => Reason::NotYetValid,
                TokenProblem::UntrustedIssuer => Reason::UntrustedIssuer,
                TokenProblem::WrongAudience => Reason::WrongAudience,
                TokenProblem::BoundTokenAsBearer
                | TokenProblem::UnboundTokenAsDpop
                | TokenProblem::DpopRequired
                | TokenProblem::UnsupportedConfirmation
                | TokenProblem::KeyBindingMismatch => Reason::TokenBinding,
                TokenProblem::Revoked => Reason::Revoked,
            },
            ApiError::InvalidDpopProof(_) => Reason::InvalidDpopProof,
            ApiError::UseDpopNonce { .. } => Reason::UseDpopNonce,
            ApiError::InsufficientScope { .. } => Reason::InsufficientScope,
            ApiError::ClaimMismatch { .. } => Reason::ClaimMismatch,
            ApiError::KeysUnavailable { .. } => Reason::NoKeys,
            ApiError::DenylistUnavailable => Reason::DenylistUnavailable,
            ApiError::ReplayStoreUnavailable => Reason::ReplayStoreUnavailable,
            ApiError::RateLimited { .. } => Reason::RateLimited,
            ApiError::OriginUnreachable => Reason::OriginUnreachable,
            ApiError::OriginTimeout => Reason::OriginTimeout,
            ApiError::PayloadTooLarge { .. } => Reason::PayloadTooLarge,
            ApiError::OriginNotAllowed => Reason::OriginNotAllowed,
            ApiError::UnsupportedMediaType => Reason::UnsupportedMediaType,
        }
    }

    /// Whether the request was let through (or answered as asked): every other reason is a refusal.
    pub fn admitted(self) -> bool {
        matches!(self, Reason::Ok | Reason::Public | Reason::Anonymous | Reason::Preflight)
    }
}

/// Whether a token's verification came from the isolate's token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
}

/// What the pipeline decided, without any text a client chose: the rule is a configured pattern
/// (or a demo route), the issuer a configured one, the `kid` one its key set holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The matching rule's path pattern; `None` when no rule was reached (404, an ambiguous path,
    /// a gateway preflight, the status route).
    pub rule: Option<Rc<str>>,
    pub status: u16,
    pub reason: Reason,
    /// The trusted issuer that judged the token (never an untrusted `iss`).
    pub issuer: Option<Rc<str>>,
    /// The key that verified the token (never a `kid` the key set does not hold).
    pub kid: Option<Rc<str>>,
    /// `None` when no token was verified far enough to look in the cache.
    pub cache: Option<CacheUse>,
    /// On an MCP rule's POST: the JSON-RPC method (`batch` for several), and a `tools/call`'s tool.
    /// Client text, so only a short printable name is kept ([`mcp_name`]).
    pub mcp_method: Option<Rc<str>>,
    pub mcp_tool: Option<Rc<str>>,
}

/// What a decision records of an MCP method or tool name the client chose: the name when it is
/// short and printable, else `other`, so neither a log line nor a metric takes arbitrary text.
pub fn mcp_name(name: &str) -> Rc<str> {
    let plain = name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic());
    if plain {
        name.into()
    } else {
        "other".into()
    }
}

impl Decision {
    /// After the pipeline, the forward failed (the origin, or the client's body): now a refusal.
    pub fn refused_after_pipeline(&mut self, error: &ApiError, status: u16) {
        self.reason = Reason::of(error);
        self.status = status;
    }
}

/// `DECISION_LOG`: which decisions get a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionLog {
    /// Every refusal (any reason but ok, public, anonymous, preflight).
    Refusals,
    All,
    Off,
}

/// What the operator asked to see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObservePolicy {
    pub decision_log: DecisionLog,
    /// The share of decisions considered for a line, 0 to 1.
    pub sample: f64,
    /// Lines of one event and reason per minute per isolate, before the rest are counted instead.
    pub lines_per_minute: u32,
}

pub const DEFAULT_LOG_LINES_PER_MINUTE: u32 = 60;

impl Default for ObservePolicy {
    fn default() -> Self {
        ObservePolicy {
            decision_log: DecisionLog::Refusals,
            sample: 1.0,
            lines_per_minute: DEFAULT_LOG_LINES_PER_MINUTE,
        }
    }
}

const SAMPLE_EXPECTED: &str = "a number from 0 to 1 (the share of decisions logged)";
/// At least one line a minute; past this, a limit is no limit.
pub const MAX_LOG_LINES_PER_MINUTE: u64 = 100_000;

impl ObservePolicy {
    /// `DECISION_LOG`, `DECISION_LOG_SAMPLE` and `LOG_LINES_PER_MINUTE`.
    pub fn from_vars(vars: &Vars) -> Result<ObservePolicy, ConfigError> {
        let decision_log = vars.choice(
            "DECISION_LOG",
            "one of refusals, all, off",
            &[("refusals", DecisionLog::Refusals), ("all", DecisionLog::All), ("off", DecisionLog::Off)],
        )?;
        let sample = match vars.get("DECISION_LOG_SAMPLE") {
            None => 1.0,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(Value::String(s)) => decimal(s.trim()).unwrap_or(f64::NAN),
            Some(_) => f64::NAN,
        };
        if !(0.0..=1.0).contains(&sample) {
            return Err(invalid("DECISION_LOG_SAMPLE", SAMPLE_EXPECTED));
        }
        let per_minute =
            vars.count("LOG_LINES_PER_MINUTE", u64::from(DEFAULT_LOG_LINES_PER_MINUTE), 1, MAX_LOG_LINES_PER_MINUTE)?;
        let lines_per_minute = u32::try_from(per_minute).unwrap_or(u32::MAX);
        Ok(ObservePolicy { decision_log, sample, lines_per_minute })
    }
}

impl ObservePolicy {
    /// Whether this decision asks for a line, given a uniform draw in [0, 1) (the edge's
    /// randomness; only drawn when sampling is on, see [`ObservePolicy::samples`]).
    pub fn wants_line(&self, decision: &Decision, draw: f64) -> bool {
        let chosen = match self.decision_log {
            DecisionLog::Off => false,
            DecisionLog::All => true,
            DecisionLog::Refusals => !decision.reason.admitted(),
        };
        chosen && draw < self.sample
    }

    /// Whether a draw is needed at all (sampling below 1).
    pub fn samples(&self) -> bool {
        self.sample < 1.0
    }
}

/// A decision's log line (without the limiter's say). `ms`: the worker's time on the request.
pub fn log_line(decision: &Decision, ms: u64) -> String {
    let mut line = json!({
        "component": "edge-auth",
        "event": "decision",
        "rule": decision.rule.as_deref(),
        "status": decision.status,
        "reason": decision.reason.as_str(),
        "iss": decision.issuer.as_deref(),
        "kid": decision.kid.as_deref(),
        "ms": ms,
    });
    // Only on MCP rules, where they say what was called.
    if let Some(method) = &decision.mcp_method {
        line["mcp_method"] = (**method).into();
        line["mcp_tool"] = decision.mcp_tool.as_deref().into();
    }
    line.to_string()
}

/// One Analytics Engine data point (`writeDataPoint`'s argument, as plain data).
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    /// The rule: Analytics Engine samples per index, so a hot rule cannot drown a quiet one.
    pub index: String,
    /// reason, status class, method, issuer, kid, cache (`hit`, `miss` or empty), MCP method, MCP
    /// tool (empty off MCP rules). New blobs only ever go at the end: dashboards read by position.
    pub blobs: [String; 8],
    /// status, worker ms, origin ms (0 when nothing was forwarded).
    pub doubles: [f64; 3],
}

impl DataPoint {
    /// The index and the blobs, NUL-separated, as the edge hands them to `writeDataPoint` in one
    /// crossing. A NUL inside a field (a JWKS may name a key with one) is left out, so the fields
    /// always split back into the same nine.
    pub fn texts(&self) -> String {
        let mut texts = String::with_capacity(128);
        for (i, field) in std::iter::once(&self.index).chain(&self.blobs).enumerate() {
            if i > 0 {
                texts.push('\0');
            }
            texts.extend(field.chars().filter(|&c| c != '\0'));
        }
        texts
    }
}

/// Analytics Engine caps an index at 96 bytes.
const MAX_INDEX_BYTES: usize = 96;
/// What stands for "no rule" in the index and for an unknown method in the blobs.
pub const NONE: &str = "-";

/// The data point of a decision. `method` is reduced to the standard methods (anything else is
/// `OTHER`: a method is client text). Never token text, claims or the subject.
pub fn data_point(decision: &Decision, method: &str, worker_ms: f64, origin_ms: Option<f64>) -> DataPoint {
    let mut index = decision.rule.as_deref().unwrap_or(NONE).to_owned();
    if index.len() > MAX_INDEX_BYTES {
        let mut end = MAX_INDEX_BYTES;
        while !index.is_char_boundary(end) {
            end -= 1;
        }
        index.truncate(end);
    }
    let class = match decision.status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    DataPoint {
        index,
        blobs: [
            decision.reason.as_str().to_owned(),
            class.to_owned(),
            standard_method(method).to_owned(),
            decision.issuer.as_deref().unwrap_or("").to_owned(),
            decision.kid.as_deref().unwrap_or("").to_owned(),
            match decision.cache {
                Some(CacheUse::Hit) => "hit",
                Some(CacheUse::Miss) => "miss",
                None => "",
            }
            .to_owned(),
            decision.mcp_method.as_deref().unwrap_or("").to_owned(),
            decision.mcp_tool.as_deref().unwrap_or("").to_owned(),
        ],
        doubles: [f64::from(decision.status), worker_ms, origin_ms.unwrap_or(0.0)],
    }
}

fn standard_method(method: &str) -> &'static str {
    const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "TRACK"];
    METHODS.iter().find(|m| m.eq_ignore_ascii_case(method)).copied().unwrap_or("OTHER")
}

/// A count of lines the limiter held back, to be logged as one `suppressed` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub event: &'static str,
    pub reason: &'static str,
    pub count: u32,
}

impl Suppressed {
    pub fn line(&self) -> String {
        let mut line =
            json!({ "component": "edge-auth", "event": "suppressed", "of": self.event, "count": self.count });
        if !self.reason.is_empty() {
            line["reason"] = self.reason.into();
        }
        line.to_string()
    }
}

/// The limiter's answer for one line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Print the line.
    pub print: bool,
    /// Print these first: the counts of lines held back in a minute that has ended.
    pub reports: Vec<Suppressed>,
}

/// At most `per_minute` lines of one (event, reason) per minute of the clock, per isolate; the
/// rest are counted, and the count is reported once, by the first line of any kind in a later
/// minute (an isolate that goes quiet reports when it next logs). Keys are fixed names from the
/// code, never client text, so the map holds a bounded set: every request pattern makes at most
/// `(per_minute + 1)` lines per key per minute.
#[derive(Debug)]
pub struct LogLimiter {
    per_minute: u32,
    minute: u64,
    counts: HashMap<(&'static str, &'static str), u32>,
}

impl LogLimiter {
    pub fn new(per_minute: u32) -> Self {
        LogLimiter { per_minute, minute: 0, counts: HashMap::new() }
    }

    /// Whether a line of `event` (and `reason`, or "") may be printed at `now_ms`.
    pub fn admit(&mut self, event: &'static str, reason: &'static str, now_ms: u64) -> Admission {
        let minute = now_ms / 60_000;
        let mut reports = Vec::new();
        if minute != self.minute {
            self.minute = minute;
            let per_minute = self.per_minute;
            for ((event, reason), count) in self.counts.drain() {
                if count > per_minute {
                    reports.push(Suppressed { event, reason, count: count - per_minute });
                }
            }
            reports.sort_by_key(|r| (r.event, r.reason));
        }
        let count = self.counts.entry((event, reason)).or_insert(0);
        *count = count.saturating_add(1);
        Admission { print: *count <= self.per_minute, reports }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ConfigError, ConfigProblem, ProofProblem};

    #[test]
    fn reasons_are_distinct_lower_snake_case_names() {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        for (i, name) in names.iter().enumerate() {
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
            assert!(!names[..i].contains(name), "{name} twice");
        }
    }

    #[test]
    fn every_refusal_maps_to_its_reason() {
        use RequestProblem as R;
        use TokenProblem as T;
        let config = ConfigError { variable: "X", problem: ConfigProblem::Missing };
        let cases: Vec<(ApiError, &str)> = vec![
            (ApiError::NotFound, "not_found"),
            (ApiError::MethodNotAllowed("GET".into()), "method_not_allowed"),
            (ApiError::Misconfigured(config), "misconfigured"),
            (ApiError::MissingAuthorization, "missing_authorization"),
            (ApiError::InvalidRequest(R::EmptyCredential), "invalid_request"),
            (ApiError::InvalidRequest(R::MultipleCredentials), "invalid_request"),
            (ApiError::InvalidRequest(R::NotB64Token), "invalid_request"),
            (ApiError::InvalidRequest(R::AmbiguousPath), "ambiguous_path"),
            (ApiError::InvalidRequest(R::UpgradeNotAllowed), "upgrade_not_allowed"),
            (ApiError::InvalidRequest(R::ClientBodyFailed), "client_body_failed"),
            (ApiError::InvalidToken(T::TooLarge), "malformed_token"),
            (ApiError::InvalidToken(T::Malformed), "malformed_token"),
            (ApiError::InvalidToken(T::CriticalHeader), "malformed_token"),
            (ApiError::InvalidToken(T::MalformedClaims), "malformed_token"),
            (ApiError::InvalidToken(T::MissingExpiry), "malformed_token"),
            (ApiError::InvalidToken(T::UnsupportedAlgorithm), "unsupported_alg"),
            (ApiError::InvalidToken(T::UnknownKey), "unknown_kid"),
            (ApiError::InvalidToken(T::KeyNotSpecified), "unknown_kid"),
            (ApiError::InvalidToken(T::BadSignature), "bad_signature"),
            (ApiError::InvalidToken(T::Expired), "expired"),
            (ApiError::InvalidToken(T::NotYetValid), "not_yet_valid"),
            (ApiError::InvalidToken(T::IssuedInFuture), "not_yet_valid"),
            (ApiError::InvalidToken(T::UntrustedIssuer), "untrusted_issuer"),
            (ApiError::InvalidToken(T::WrongAudience), "wrong_audience"),
            (ApiError::InvalidToken(T::BoundTokenAsBearer), "token_binding"),
            (ApiError::InvalidToken(T::UnboundTokenAsDpop), "token_binding"),
            (ApiError::InvalidToken(T::DpopRequired), "token_binding"),
            (ApiError::InvalidToken(T::UnsupportedConfirmation), "token_binding"),
            (ApiError::InvalidToken(T::KeyBindingMismatch), "token_binding"),
            (ApiError::InvalidToken(T::Revoked), "revoked"),
            (ApiError::DenylistUnavailable, "denylist_unavailable"),
            (ApiError::ReplayStoreUnavailable, "replay_store_unavailable"),
            (ApiError::RateLimited { retry_after_secs: 60 }, "rate_limited"),
            (ApiError::InvalidDpopProof(ProofProblem::Replayed), "invalid_dpop_proof"),
            (ApiError::UseDpopNonce { nonce: "n".into() }, "use_dpop_nonce"),
            (ApiError::InsufficientScope { required: "a".into() }, "insufficient_scope"),
            (ApiError::ClaimMismatch { claim: "org_id".into() }, "claim_mismatch"),
            (ApiError::KeysUnavailable { retry_after_secs: 1 }, "no_keys"),
            (ApiError::OriginUnreachable, "origin_unreachable"),
            (ApiError::OriginTimeout, "origin_timeout"),
            (ApiError::PayloadTooLarge { limit: 1 }, "payload_too_large"),
            (ApiError::OriginNotAllowed, "origin_not_allowed"),
            (ApiError::UnsupportedMediaType, "unsupported_media_type"),
            (ApiError::InvalidRequest(RequestProblem::NotJsonRpc), "invalid_request"),
        ];
        for (error, reason) in cases {
            assert_eq!(Reason::of(&error).as_str(), reason, "{error:?}");
            assert!(!Reason::of(&error).admitted());
        }
    }

    fn decision(reason: Reason, status: u16) -> Decision {
        Decision {
            rule: Some("/api/*".into()),
            status,
            reason,
            issuer: Some("https://issuer.example/".into()),
            kid: Some("k1".into()),
            cache: Some(CacheUse::Hit),
            mcp_method: None,
            mcp_tool: None,
        }
    }

    #[test]
    fn a_data_points_texts_split_back_into_its_index_and_eight_blobs_even_with_a_nul_in_a_kid() {
        let mut point = data_point(&decision(Reason::Ok, 200), "GET", 0.0, None);
        point.blobs[4] = "k\0ey".into();
        let texts = point.texts();
        let fields: Vec<&str> = texts.split('\0').collect();
        assert_eq!(fields.len(), 9);
        assert_eq!(fields[0], point.index);
        assert_eq!(fields[1..4], [&*point.blobs[0], &*point.blobs[1], &*point.blobs[2]]);
        assert_eq!(fields[5], "key");
    }

    #[test]
    fn the_data_point_carries_the_rule_reason_class_method_issuer_kid_cache_and_times() {
        let point = data_point(&decision(Reason::Ok, 204), "get", 1.5, Some(12.0));
        assert_eq!(point.index, "/api/*");
        assert_eq!(point.blobs, ["ok", "2xx", "GET", "https://issuer.example/", "k1", "hit", "", ""].map(String::from));
        assert_eq!(point.doubles, [204.0, 1.5, 12.0]);
        let refused = Decision { rule: None, issuer: None, kid: None, cache: None, ..decision(Reason::NotFound, 404) };
        let point = data_point(&refused, "X-ATTACKER-METHOD", 0.0, None);
        assert_eq!(point.index, NONE);
        assert_eq!(point.blobs, ["not_found", "4xx", "OTHER", "", "", "", "", ""].map(String::from));
        assert_eq!(point.doubles, [404.0, 0.0, 0.0]);
        let call = Decision {
            mcp_method: Some("tools/call".into()),
            mcp_tool: Some("echo".into()),
            ..decision(Reason::Ok, 200)
        };
        assert_eq!(data_point(&call, "POST", 0.0, None).blobs[6..], ["tools/call", "echo"].map(String::from));
    }

    #[test]
    fn an_mcp_name_is_kept_only_when_short_and_printable() {
        assert_eq!(&*mcp_name("tools/call"), "tools/call");
        assert_eq!(&*mcp_name(&"x".repeat(65)), "other");
        assert_eq!(&*mcp_name("a b"), "other");
        assert_eq!(&*mcp_name("é"), "other");
    }

    #[test]
    fn a_long_rule_is_cut_to_the_index_limit_on_a_character_boundary() {
        let rule: Rc<str> = format!("/{}", "é".repeat(100)).into();
        let point = data_point(&Decision { rule: Some(rule), ..decision(Reason::Ok, 200) }, "GET", 0.0, None);
        assert!(point.index.len() <= MAX_INDEX_BYTES && point.index.len() >= MAX_INDEX_BYTES - 1);
    }

    #[test]
    fn the_log_line_has_the_documented_fields_only() {
        let line: serde_json::Value = serde_json::from_str(&log_line(&decision(Reason::Expired, 401), 7)).unwrap();
        assert_eq!(
            line,
            json!({"component": "edge-auth", "event": "decision", "rule": "/api/*", "status": 401,
                   "reason": "expired", "iss": "https://issuer.example/", "kid": "k1", "ms": 7})
        );
        let call = Decision {
            mcp_method: Some("tools/call".into()),
            mcp_tool: Some("echo".into()),
            ..decision(Reason::Ok, 200)
        };
        let line: serde_json::Value = serde_json::from_str(&log_line(&call, 1)).unwrap();
        assert_eq!((&line["mcp_method"], &line["mcp_tool"]), (&json!("tools/call"), &json!("echo")));
    }

    #[test]
    fn the_decision_log_takes_refusals_all_or_nothing_and_samples() {
        let ok = decision(Reason::Ok, 200);
        let refused = decision(Reason::BadSignature, 401);
        let policy = |decision_log, sample| ObservePolicy { decision_log, sample, lines_per_minute: 60 };
        assert!(!policy(DecisionLog::Refusals, 1.0).wants_line(&ok, 0.0));
        assert!(policy(DecisionLog::Refusals, 1.0).wants_line(&refused, 0.999));
        assert!(policy(DecisionLog::All, 1.0).wants_line(&ok, 0.5));
        assert!(!policy(DecisionLog::Off, 1.0).wants_line(&refused, 0.0));
        assert!(policy(DecisionLog::All, 0.25).wants_line(&ok, 0.2));
        assert!(!policy(DecisionLog::All, 0.25).wants_line(&ok, 0.3));
        assert!(!policy(DecisionLog::All, 0.0).wants_line(&ok, 0.0));
        assert!(!policy(DecisionLog::All, 1.0).samples() && policy(DecisionLog::All, 0.5).samples());
    }

    const MINUTE: u64 = 60_000;

    #[test]
    fn the_limiter_lets_n_lines_a_minute_through_per_event_and_reason_then_reports_the_rest_once() {
        let mut limiter = LogLimiter::new(3);
        let start = 100 * MINUTE;
        let printed = (0..10).filter(|i| limiter.admit("decision", "unknown_kid", start + i).print).count();
        assert_eq!(printed, 3);
        // Another reason and another event have budgets of their own.
        assert!(limiter.admit("decision", "expired", start + 20).print);
        assert!(limiter.admit("cooldown_hit", "", start + 21).print);
        // The next minute: the count of what was held back comes first, then the line.
        let next = limiter.admit("cooldown_hit", "", start + MINUTE);
        assert!(next.print);
        assert_eq!(next.reports, vec![Suppressed { event: "decision", reason: "unknown_kid", count: 7 }]);
        // Reported once.
        assert!(limiter.admit("decision", "unknown_kid", start + MINUTE + 1).reports.is_empty());
    }

    #[test]
    fn no_pattern_makes_more_than_n_plus_one_lines_per_key_a_minute() {
        let mut limiter = LogLimiter::new(5);
        let mut lines = 0;
        for i in 0..100_000u64 {
            let admission = limiter.admit("decision", "bad_signature", i * 7);
            lines += usize::from(admission.print) + admission.reports.len();
        }
        let minutes = (100_000 * 7) / MINUTE + 1;
        assert!(lines as u64 <= minutes * 6, "{lines} lines in {minutes} minutes");
        assert!(lines as u64 >= (minutes - 1) * 5);
    }

    #[test]
    fn the_suppressed_line_names_what_was_held_back() {
        let line = Suppressed { event: "decision", reason: "expired", count: 4 }.line();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({"component": "edge-auth", "event": "suppressed", "of": "decision", "reason": "expired", "count": 4})
        );
        let line = Suppressed { event: "cooldown_hit", reason: "", count: 1 }.line();
        assert!(!line.contains("reason"));
    }
}
