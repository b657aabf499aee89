//! The request bodies of both objects, read into typed values. No runtime imports: this module,
//! like `keys` and `revocations`, is compiled and tested on the host.
//!
//! Bodies are parsed as a `serde_json::Value` and checked field by field rather than through
//! `#[derive(Deserialize)]`, so that each refusal names the field and the rule it broke instead
//! of echoing serde's positional messages.

use std::fmt;

use serde_json::{Map, Value};

/// Longest `jti` a replay shard records, in bytes.
pub const MAX_JTI_BYTES: usize = 256;
/// Longest revoked value (a `sub`, `jti`, `client_id` or issuer URL), in bytes.
pub const MAX_VALUE_BYTES: usize = 512;
/// Longest revocation reason, in bytes.
pub const MAX_REASON_BYTES: usize = 200;
/// Largest body either object reads: every valid body is far below it.
pub const MAX_BODY_BYTES: usize = 4096;
/// Latest `until` accepted: the expiry index writes it in ten digits (year 2286).
pub const MAX_UNTIL: u64 = 9_999_999_999;

/// Why a body was refused; its `Display` is the `error` text of the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    NotJson,
    NotObject,
    UnknownField(String),
    Missing(&'static str),
    /// A field present with the wrong type or out of bounds; the text says what it must be.
    Invalid {
        field: &'static str,
        rule: &'static str,
    },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(f, "body is larger than {MAX_BODY_BYTES} bytes"),
            Self::NotJson => f.write_str("body is not JSON"),
            Self::NotObject => f.write_str("body is not a JSON object"),
            Self::UnknownField(name) => write!(f, "unknown field {name:?}"),
            Self::Missing(field) => write!(f, "{field} is missing"),
            Self::Invalid { field, rule } => write!(f, "{field} must be {rule}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// `POST /use` on a replay shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseRequest {
    pub jti: String,
    /// Unix seconds; the record is live through this second.
    pub until: u64,
}

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Sub,
    Jti,
    Client,
    Iss,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sub => "sub",
            Self::Jti => "jti",
            Self::Client => "client",
            Self::Iss => "iss",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sub" => Some(Self::Sub),
            "jti" => Some(Self::Jti),
            "client" => Some(Self::Client),
            "iss" => Some(Self::Iss),
            _ => None,
        }
    }
}

/// `POST /revoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    pub kind: Kind,
    pub value: String,
    /// Unix seconds, or `None` for a revocation that stands until it is lifted.
    pub until: Option<u64>,
    pub reason: Option<String>,
}

/// `POST /unrevoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnrevokeRequest {
    pub kind: Kind,
    pub value: String,
}

pub fn parse_use(body: &[u8]) -> Result<UseRequest, BodyError> {
    let mut fields = object(body, &["jti", "until"])?;
    let jti = bounded_string(&mut fields, "jti", MAX_JTI_BYTES, "a string of 1 to 256 bytes")?;
    let until = match fields.remove("until") {
        None => return Err(BodyError::Missing("until")),
        Some(value) => unix_seconds(&value, "until")?,
    };
    Ok(UseRequest { jti, until })
}

pub fn parse_revoke(body: &[u8]) -> Result<RevokeRequest, BodyError> {
    let mut fields = object(body, &["kind", "value", "until", "reason"])?;
    let kind = kind(&mut fields)?;
    let value = bounded_string(&mut fields, "value", MAX_VALUE_BYTES, "a string of 1 to 512 bytes")?;
    // `until` must be present even when it is null: a forgotten field should not become a
    // revocation that never ends.
    let until = match fields.remove("until") {
        None => return Err(BodyError::Missing("until")),
        Some(Value::Null) => None,
        Some(value) => Some(unix_seconds(&value, "until")?),
    };
    let reason = match fields.remove("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.len() <= MAX_REASON_BYTES => Some(text),
        Some(_) => return Err(BodyError::Invalid { field: "reason", rule: "a string of at most 200 bytes" }),
    };
    Ok(RevokeRequest { kind, value, until, reason })
}

pub fn parse_unrevoke(body: &[u8]) -> Result<UnrevokeRequest, BodyError> {
    let mut fields = object(body, &["kind", "value"])?;
    let kind = kind(&mut fields)?;
    let value = bounded_string(&mut fields, "value", MAX_VALUE_BYTES, "a string of 1 to 512 bytes")?;
    Ok(UnrevokeRequest { kind, value })
}

/// The body as a JSON object holding no field outside `allowed`: a misspelt field (`"untill"`)
/// is refused rather than silently ignored.
fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    let Value::Object(fields) = serde_json::from_slice(body).map_err(|_| BodyError::NotJson)? else {
        return Err(BodyError::NotObject);
    };
    if let Some(name) = fields.keys().find(|name| !allowed.contains(&name.as_str())) {
        return Err(BodyError::UnknownField(name.clone()));
    }
    Ok(fields)
}

fn bounded_string(
    fields: &mut Map<String, Value>,
    field: &'static str,
    max: usize,
    rule: &'static str,
) -> Result<String, BodyError> {
    match fields.remove(field) {
        None => Err(BodyError::Missing(field)),
        Some(Value::String(text)) if !text.is_empty() && text.len() <= max => Ok(text),
        Some(_) => Err(BodyError::Invalid { field, rule }),
    }
}

fn kind(fields: &mut Map<String, Value>) -> Result<Kind, BodyError> {
    const RULE: &str = "one of \"sub\", \"jti\", \"client\", \"iss\"";
    match fields.remove("kind") {
        None => Err(BodyError::Missing("kind")),
        Some(Value::String(text)) => Kind::parse(&text).ok_or(BodyError::Invalid { field: "kind", rule: RULE }),
        Some(_) => Err(BodyError::Invalid { field: "kind", rule: RULE }),
    }
}

/// A whole number of seconds: `1.0`, `1e9`, negatives and strings are refused, so a caller
/// sending milliseconds or a float finds out at once.
fn unix_seconds(value: &Value, field: &'static str) -> Result<u64, BodyError> {
    const RULE: &str = "an integer number of unix seconds from 1 to 9999999999";
    match value.as_u64() {
        Some(seconds) if (1..=MAX_UNTIL).contains(&seconds) => Ok(seconds),
        _ => Err(BodyError::Invalid { field, rule: RULE }),
    }
}

/// Whether an `Authorization` header carries `expected` as its bearer token. The comparison takes
/// the same time wherever the first differing byte is; only a length mismatch returns early,
/// which tells an attacker the token's length and nothing else.
pub fn bearer_matches(header: Option<&str>, expected: &str) -> bool {
    let Some(header) = header else { return false };
    let Some((scheme, token)) = header.split_once(' ') else { return false };
    if !scheme.eq_ignore_ascii_case("bearer") || expected.is_empty() {
        return false;
    }
    let (token, expected) = (token.trim().as_bytes(), expected.as_bytes());
    if token.len() != expected.len() {
        return false;
    }
    let difference = token.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // Keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

/// A key thumbprint as the admin route takes it (`?jkt=`): base64url, as RFC 7638 thumbprints are.
pub fn valid_jkt(jkt: &str) -> bool {
    (1..=128).contains(&jkt.len()) && jkt.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(field: &'static str) -> impl Fn(&BodyError) -> bool {
        move |error| matches!(error, BodyError::Invalid { field: f, .. } if *f == field)
    }

    #[test]
    fn use_body_reads_jti_and_until() {
        let parsed = parse_use(br#"{"jti":"abc","until":1700000000}"#).unwrap();
        assert_eq!(parsed, UseRequest { jti: "abc".into(), until: 1_700_000_000 });
    }

    #[test]
    fn use_body_refusals_name_the_field() {
        assert_eq!(parse_use(b"not json"), Err(BodyError::NotJson));
        assert_eq!(parse_use(b"[1]"), Err(BodyError::NotObject));
        assert_eq!(parse_use(br#"{"until":5}"#), Err(BodyError::Missing("jti")));
        assert_eq!(parse_use(br#"{"jti":"a"}"#), Err(BodyError::Missing("until")));
        assert_eq!(parse_use(br#"{"jti":"a","until":5,"x":1}"#), Err(BodyError::UnknownField("x".into())));
        for body in [&br#"{"jti":"","until":5}"#[..], br#"{"jti":5,"until":5}"#, br#"{"jti":null,"until":5}"#] {
            assert!(invalid("jti")(&parse_use(body).unwrap_err()), "{}", String::from_utf8_lossy(body));
        }
        for until in ["1.5", "1.0", "1e9", "-1", "0", "\"5\"", "null", "10000000000"] {
            let body = format!(r#"{{"jti":"a","until":{until}}}"#);
            assert!(invalid("until")(&parse_use(body.as_bytes()).unwrap_err()), "{until}");
        }
    }

    #[test]
    fn jti_limit_is_in_bytes() {
        let at_limit = format!(r#"{{"jti":"{}","until":5}}"#, "a".repeat(MAX_JTI_BYTES));
        assert!(parse_use(at_limit.as_bytes()).is_ok());
        let over = format!(r#"{{"jti":"{}","until":5}}"#, "a".repeat(MAX_JTI_BYTES + 1));
        assert!(invalid("jti")(&parse_use(over.as_bytes()).unwrap_err()));
        // 129 two-byte characters: 129 characters but 258 bytes.
        let wide = format!(r#"{{"jti":"{}","until":5}}"#, "é".repeat(129));
        assert!(invalid("jti")(&parse_use(wide.as_bytes()).unwrap_err()));
    }

    #[test]
    fn oversized_body_is_refused_before_parsing() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(parse_use(&body), Err(BodyError::TooLarge));
    }

    #[test]
    fn revoke_body() {
        let parsed = parse_revoke(br#"{"kind":"sub","value":"auth0|1","until":null,"reason":"left"}"#).unwrap();
        assert_eq!(
            parsed,
            RevokeRequest { kind: Kind::Sub, value: "auth0|1".into(), until: None, reason: Some("left".into()) }
        );
        let parsed = parse_revoke(br#"{"kind":"iss","value":"https://x/","until":1800000000}"#).unwrap();
        assert_eq!((parsed.kind, parsed.until, parsed.reason), (Kind::Iss, Some(1_800_000_000), None));
        assert_eq!(parse_revoke(br#"{"kind":"sub","value":"a"}"#), Err(BodyError::Missing("until")));
        assert!(invalid("kind")(&parse_revoke(br#"{"kind":"user","value":"a","until":null}"#).unwrap_err()));
        let long_reason = format!(r#"{{"kind":"sub","value":"a","until":null,"reason":"{}"}}"#, "r".repeat(201));
        assert!(invalid("reason")(&parse_revoke(long_reason.as_bytes()).unwrap_err()));
        let long_value = format!(r#"{{"kind":"sub","value":"{}","until":null}}"#, "v".repeat(513));
        assert!(invalid("value")(&parse_revoke(long_value.as_bytes()).unwrap_err()));
    }

    #[test]
    fn unrevoke_body() {
        let parsed = parse_unrevoke(br#"{"kind":"client","value":"c1"}"#).unwrap();
        assert_eq!(parsed, UnrevokeRequest { kind: Kind::Client, value: "c1".into() });
        assert_eq!(
            parse_unrevoke(br#"{"kind":"client","value":"c1","until":null}"#),
            Err(BodyError::UnknownField("until".into()))
        );
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [Kind::Sub, Kind::Jti, Kind::Client, Kind::Iss] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn bearer_token_check() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3creT"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
        assert!(!bearer_matches(Some("Bearer "), ""));
    }

    #[test]
    fn thumbprints() {
        assert!(valid_jkt("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
        assert!(!valid_jkt(""));
        assert!(!valid_jkt("a/b"));
        assert!(!valid_jkt(&"a".repeat(129)));
    }
}
