//! The variables, read by type: the bottom of the configuration. Every part reads its own settings
//! through [`Vars`] and answers a [`ConfigError`] naming the variable; `config` composes the parts.
//!
//! A variable arrives as a JSON string (`--var`, secrets, a quoted `[vars]` value) or with its TOML
//! type (`STATUS_ENDPOINT = true`, `CLOCK_SKEW_SECONDS = 60`, `AUDIENCE = ["a", "b"]`). Each reader
//! accepts a string and its natural type; any other type is invalid, never ignored.

use serde_json::Value;

use crate::error::{ConfigError, ConfigProblem};

/// URLs longer than this are refused: they end up inside cache keys, and KV keys stop at 512 bytes.
/// A derived URL always fits: a host is at most 150 characters.
pub const MAX_URL_LEN: usize = 200;
pub const URL_EXPECTED: &str = "an https:// URL of at most 200 characters (http:// only for loopback hosts)";
const SECONDS_EXPECTED: &str = "a whole number of seconds within the documented range";

pub fn missing(variable: &'static str) -> ConfigError {
    ConfigError { variable, problem: ConfigProblem::Missing }
}

pub fn invalid(variable: &'static str, expected: &'static str) -> ConfigError {
    ConfigError { variable, problem: ConfigProblem::Invalid(expected) }
}

/// The variables, read by the shape each one takes. Unset, `null` and empty strings (after
/// trimming) all mean "not given", so `--var NAME:` restores a default. The lookup is a trait
/// object: one reader in the wasm, whichever closure the edge or a test hands in.
pub struct Vars<'a>(&'a dyn Fn(&str) -> Option<Value>);

impl<'a> Vars<'a> {
    /// Reads through `get`: a binding lookup at the edge, a map in tests.
    pub fn new(get: &'a dyn Fn(&str) -> Option<Value>) -> Self {
        Vars(get)
    }

    pub fn get(&self, name: &str) -> Option<Value> {
        match (self.0)(name)? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            value => Some(value),
        }
    }

    /// A string, trimmed.
    pub fn text(&self, name: &'static str, expected: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) => Err(invalid(name, expected)),
        }
    }

    /// A list: comma-separated in a string, or an array of strings; items trimmed.
    pub fn list(&self, name: &'static str, expected: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        let items = match self.get(name) {
            None => return Ok(None),
            Some(Value::Array(items)) if items.is_empty() => return Ok(None),
            Some(Value::Array(items)) => items.iter().map(|item| item.as_str().map(str::to_owned)).collect(),
            Some(Value::String(s)) => Some(s.split(',').map(str::to_owned).collect::<Vec<_>>()),
            Some(_) => None,
        };
        let items: Vec<String> = items.ok_or(invalid(name, expected))?;
        Ok(Some(items.into_iter().map(|item| item.trim().to_owned()).collect()))
    }

    /// Whole seconds within `min..=max`: a string of digits or a non-negative integer.
    pub fn seconds(&self, name: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        self.whole(name, default, min, max).ok_or(invalid(name, SECONDS_EXPECTED))
    }

    /// A whole number within `min..=max`, as [`Vars::seconds`] reads one.
    pub fn count(&self, name: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        self.whole(name, default, min, max).ok_or(invalid(name, "a whole number within the documented range"))
    }

    fn whole(&self, name: &'static str, default: u64, min: u64, max: u64) -> Option<u64> {
        let value = match self.get(name) {
            None => return Some(default),
            Some(Value::String(s)) if s.trim().bytes().all(|b| b.is_ascii_digit()) => s.trim().parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            Some(_) => None,
        };
        value.filter(|n| (min..=max).contains(n))
    }

    /// One of a fixed set of words; the first is the default.
    pub fn choice<T: Copy>(
        &self,
        name: &'static str,
        expected: &'static str,
        words: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        match self.text(name, expected)? {
            None => Ok(words[0].1),
            Some(word) => words.iter().find(|(w, _)| *w == word).map(|(_, v)| *v).ok_or(invalid(name, expected)),
        }
    }

    /// A boolean, or the string `true` or `false`; off unless given.
    pub fn switch(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(on)) => Ok(on),
            Some(Value::String(s)) if s.trim() == "true" => Ok(true),
            Some(Value::String(s)) if s.trim() == "false" => Ok(false),
            Some(_) => Err(invalid(name, "true or false")),
        }
    }
}

/// A decimal as written in a variable: a JSON number (read as every other number is, see
/// src/json.rs), also with a leading `+` or a bare `.5` / `5.` (what Rust's float reader took here).
pub fn decimal(text: &str) -> Option<f64> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "." {
        return None;
    }
    let mut normal = String::with_capacity(text.len() + 2);
    if text.starts_with('.') {
        normal.push('0');
    }
    normal.push_str(text);
    if text.ends_with('.') {
        normal.push('0');
    }
    crate::json::parse(normal.as_bytes()).ok()?.as_f64()
}

/// `host` or `host:port`; returns the host.
pub fn parse_domain(domain: &str) -> Option<&str> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (domain, None),
    };
    let host_ok = host.len() <= 150
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.split('.').all(|label| !label.is_empty())
        && !host.starts_with('-');
    (host_ok && port.is_none_or(valid_port)).then_some(host)
}

/// 1 to 65535, in digits.
pub fn valid_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// An absolute `https://` URL, or `http://` to a loopback host. No user info, no fragment.
pub fn check_url(url: &str) -> Option<()> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host = parse_domain(authority).or_else(|| parse_bracketed_ipv6(authority))?;
    let scheme_ok = scheme == "https" || (scheme == "http" && is_loopback(&host.to_ascii_lowercase()));
    let rest_ok = !url.contains('#') && !url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    (scheme_ok && rest_ok).then_some(())
}

pub fn parse_bracketed_ipv6(authority: &str) -> Option<&str> {
    let inner = authority.strip_prefix('[')?;
    let (host, after) = inner.split_once(']')?;
    let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
    // The host with its brackets, as `is_loopback` expects "[::1]".
    (port_ok && host.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')).then_some(&authority[..host.len() + 2])
}

pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host.strip_prefix("127.").is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('.').collect();
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())
        })
}

/// `scheme://host[:port]` exactly, as browsers send it in `Origin`.
pub fn parse_origin(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    let ok = (scheme == "https" || scheme == "http")
        && (parse_domain(authority).is_some() || parse_bracketed_ipv6(authority).is_some());
    ok.then(|| origin.to_ascii_lowercase())
}
