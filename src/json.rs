//! The one JSON reader: RFC 8259 text to a `serde_json::Value`, refusing an object that repeats a
//! member name at any depth.
//!
//! Why not `serde_json::from_slice`: every type read through serde's `Deserialize` brings its own
//! copy of the parser and of serde's error formatting (floats included) into the wasm; a fresh
//! isolate compiles what its first requests touch, and the whole module is shipped. One reader of
//! a dynamic value, with the few typed shapes read by hand ([`Fields`]), is a fraction of that.
//!
//! Why refuse repeats everywhere: a token's claims read one way here and another way at the origin
//! is a bypass (RFC 7519 §4); a configuration or a JWKS that names a member twice is a mistake that
//! should be reported, not resolved silently to one of the values.
//!
//! What it accepts is what `serde_json` accepts (`tests/json_parity.rs` compares the two): numbers
//! as integers when they fit `u64` / `i64`, else finite `f64`; strings of valid UTF-8 with no raw
//! control character and no lone surrogate escape; fewer than 128 levels of nesting.

use serde_json::{Map, Number, Value};

/// This many levels of nesting are refused (as `serde_json` does): the reader recurses, and a wasm stack
/// overflow would trap the isolate.
const MAX_DEPTH: usize = 128;

/// Why a text is not JSON, and where (a byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub what: &'static str,
    pub at: usize,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// Reads one JSON value filling the whole text (whitespace around it allowed).
pub fn parse(text: &[u8]) -> Result<Value, JsonError> {
    let mut reader = Reader { text, at: 0 };
    let value = reader.value(0)?;
    reader.skip_space();
    if reader.at != text.len() {
        return Err(reader.fail("trailing characters"));
    }
    Ok(value)
}

/// [`parse`], for an object only.
pub fn parse_object(text: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse(text)? {
        Value::Object(members) => Ok(members),
        _ => Err(JsonError { what: "not an object", at: 0 }),
    }
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn fail(&self, what: &'static str) -> JsonError {
        JsonError { what, at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &'static [u8], value: Value) -> Result<Value, JsonError> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.fail("expected a value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.skip_space();
        match self.peek() {
            None => Err(self.fail("EOF while parsing a value")),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(open @ (b'[' | b'{')) => {
                if depth + 1 >= MAX_DEPTH {
                    return Err(self.fail("recursion limit exceeded"));
                }
                self.at += 1;
                if open == b'[' {
                    self.array(depth + 1)
                } else {
                    self.object(depth + 1)
                }
            }
            Some(_) => Err(self.fail("expected a value")),
        }
    }

    /// After `[`.
    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.fail("expected , or ]")),
            }
        }
    }

    /// After `{`.
    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        let mut members = Map::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(self.fail("expected a member name"));
            }
            let name_at = self.at;
            let name = self.string()?;
            self.skip_space();
            if self.peek() != Some(b':') {
                return Err(self.fail("expected :"));
            }
            self.at += 1;
            let value = self.value(depth)?;
            if members.insert(name, value).is_some() {
                return Err(JsonError { what: "duplicate member name", at: name_at });
            }
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.fail("expected , or }")),
            }
        }
    }

    /// At the opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.at += 1;
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            // The run up to the next quote, escape or control character is copied whole.
            let start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            bytes.extend_from_slice(&self.text[start..self.at]);
            match self.peek() {
                None => return Err(self.fail("EOF while parsing a string")),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(bytes).map_err(|_| self.fail("invalid UTF-8 in a string"));
                }
                Some(b'\\') => {
                    let escaped = match self.text.get(self.at + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 2;
                            let c = self.unicode_escape()?;
                            let mut buf = [0; 4];
                            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => return Err(JsonError { what: "invalid escape", at: self.at + 1 }),
                    };
                    self.at += 2;
                    bytes.push(escaped as u8);
                }
                Some(_) => return Err(self.fail("control character in a string")),
            }
        }
    }

    /// After `\u`: four hex digits, or a surrogate pair as two escapes. A lone surrogate is
    /// refused (it is no character, and has no UTF-8 form).
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.text.get(self.at..self.at + 2) != Some(b"\\u") {
                    return Err(self.fail("lone leading surrogate in hex escape"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.fail("lone leading surrogate in hex escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.fail("lone trailing surrogate in hex escape")),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.fail("invalid escape"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.text.get(self.at..self.at + 4).ok_or_else(|| self.fail("EOF while parsing a string"))?;
        let mut code = 0;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or_else(|| self.fail("invalid escape"))?;
            code = code * 16 + v;
        }
        self.at += 4;
        Ok(code)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<Number, JsonError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        // The first 19 significant digits, and the power of ten they are scaled by; later digits
        // only move the scale (as serde_json's default reader does).
        let (mut significand, mut scale, mut exact) = (0u64, 0i64, true);
        let mut digits = |r: &mut Self, fraction: bool, exact: &mut bool| {
            let from = r.at;
            while let Some(d @ b'0'..=b'9') = r.peek() {
                r.at += 1;
                match significand.checked_mul(10).and_then(|m| m.checked_add(u64::from(d - b'0'))) {
                    Some(m) if *exact => {
                        significand = m;
                        scale -= i64::from(fraction);
                    }
                    _ => {
                        *exact = false;
                        scale += i64::from(!fraction);
                    }
                }
            }
            r.at - from
        };
        let int_start = self.at;
        match digits(self, false, &mut exact) {
            0 => return Err(self.fail("invalid number")),
            n if n > 1 && self.text[int_start] == b'0' => {
                return Err(JsonError { what: "invalid number", at: int_start })
            }
            _ => {}
        }
        let mut integral = exact;
        if self.peek() == Some(b'.') {
            self.at += 1;
            integral = false;
            if digits(self, true, &mut exact) == 0 {
                return Err(self.fail("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            integral = false;
            let sign = match self.peek() {
                Some(b'-') => -1,
                Some(b'+') => 1,
                _ => 0,
            };
            if sign != 0 {
                self.at += 1;
            }
            let from = self.at;
            let mut exponent: i64 = 0;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                self.at += 1;
                // Saturating: an exponent past i64 gives zero or out of range either way.
                exponent = exponent.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            }
            if self.at == from {
                return Err(self.fail("invalid number"));
            }
            scale = scale.saturating_add(if sign < 0 { -exponent } else { exponent });
        }
        if integral {
            if !negative {
                return Ok(Number::from(significand));
            }
            // As serde_json: `-0` is the float -0.0; any other negative that fits is an i64.
            if significand != 0 && significand <= i64::MAX as u64 + 1 {
                return Ok(Number::from((significand as i64).wrapping_neg()));
            }
        }
        let magnitude = scaled(significand, scale);
        let float = if negative { -magnitude } else { magnitude };
        Number::from_f64(float).filter(|_| float.is_finite()).ok_or_else(|| self.fail("number out of range"))
    }
}

/// 10^0 ..= 10^22, exact in an f64: the powers every ordinary number needs, without the table.
const POW10_EXACT: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// `significand` × 10^`scale` as serde_json's default reader computes it (one multiplication or
/// division by an exactly rounded power of ten), so that both read every number alike; infinite
/// when out of range. Without core's correctly rounded decimal reader, whose tables and code were
/// ~18 KB of the wasm. Exact, hence correctly rounded, while the significand fits 53 bits and
/// |scale| ≤ 22 (Clinger's fast path: every time a token carries, every configuration value).
pub fn scaled(significand: u64, scale: i64) -> f64 {
    let mut value = significand as f64;
    let mut scale = scale;
    loop {
        // Compared as u64: a cast to usize first would wrap on wasm32.
        let power = match scale.unsigned_abs() {
            e @ 0..=22 => Some(POW10_EXACT[e as usize]),
            e @ 23..=308 => Some(pow10(e as usize)),
            _ => None,
        };
        if let Some(power) = power {
            return if scale >= 0 { value * power } else { value / power };
        }
        if value == 0.0 {
            return value;
        }
        if scale > 0 {
            return f64::INFINITY;
        }
        value /= 1e308;
        scale += 308;
    }
}

/// 10^0 ..= 10^308, each the nearest f64: made once, on the first number that needs one past
/// 10^22 (as a literal table they were ~2.5 KB of poorly compressible wasm data).
fn pow10(exponent: usize) -> f64 {
    static TABLE: std::sync::OnceLock<[f64; 309]> = std::sync::OnceLock::new();
    TABLE.get_or_init(powers_of_ten)[exponent]
}

/// 10^e = 5^e · 2^e, with 5^e exact in 32-bit limbs (at most 23 of them), rounded once.
pub fn powers_of_ten() -> [f64; 309] {
    let mut table = [1.0; 309];
    let mut five: Vec<u32> = vec![1];
    for (e, slot) in table.iter_mut().enumerate().skip(1) {
        let mut carry = 0u64;
        for limb in five.iter_mut() {
            let product = u64::from(*limb) * 5 + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry > 0 {
            five.push(carry as u32);
        }
        *slot = nearest(&five, e as i32);
    }
    table
}

/// The f64 nearest `big` (little-endian limbs) × 2^`scale`, ties to even: the top 64 bits, with
/// any lower bit set folded into the last one (it only ever breaks a tie upward, as it must),
/// rounded by the u64 conversion, then scaled exactly by a power of two.
fn nearest(big: &[u32], scale: i32) -> f64 {
    let top = big.len() - 1;
    let bits = 32 * top + (32 - big[top].leading_zeros() as usize);
    let shift = bits.saturating_sub(64);
    let bit = |i: usize| big[i / 32] >> (i % 32) & 1 == 1;
    let mut window = 0u64;
    for i in (shift..bits).rev() {
        window = window << 1 | u64::from(bit(i));
    }
    if (0..shift).any(bit) {
        window |= 1;
    }
    let exponent = shift as i32 + scale;
    window as f64 * f64::from_bits(((exponent + 1023) as u64) << 52)
}

/// A JSON object read as a record with known members (what `#[serde(deny_unknown_fields)]` with
/// optional members did), with serde's wording for what is wrong.
pub struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// `value` must be an object of no members beyond `known`.
    pub fn of(value: &'a Value, what: &str, known: &[&str]) -> Result<Fields<'a>, String> {
        let members = value.as_object().ok_or_else(|| invalid_type(value, what))?;
        if let Some(unknown) = members.keys().find(|name| !known.contains(&name.as_str())) {
            let listed: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            return Err(format!("unknown field `{unknown}`, expected one of {}", listed.join(", ")));
        }
        Ok(Fields(members))
    }

    /// A member that may be absent or `null`.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn string(&self, name: &str) -> Result<Option<&'a str>, String> {
        self.get(name).map(|v| v.as_str().ok_or_else(|| invalid_type(v, "a string"))).transpose()
    }

    pub fn required_string(&self, name: &str) -> Result<&'a str, String> {
        self.string(name)?.ok_or_else(|| format!("missing field `{name}`"))
    }

    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>, String> {
        let Some(value) = self.get(name) else { return Ok(None) };
        let items = value.as_array().ok_or_else(|| invalid_type(value, "a sequence"))?;
        items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| invalid_type(item, "a string")))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    pub fn unsigned(&self, name: &str) -> Result<Option<u64>, String> {
        self.get(name).map(|v| v.as_u64().ok_or_else(|| invalid_type(v, "u64"))).transpose()
    }

    /// Absent is `false`; `null` is not a boolean (as serde's `#[serde(default)] bool`).
    pub fn flag(&self, name: &str) -> Result<bool, String> {
        match self.0.get(name) {
            None => Ok(false),
            Some(value) => value.as_bool().ok_or_else(|| invalid_type(value, "a boolean")),
        }
    }

    /// One of `words`, by its lowercase name.
    pub fn choice<T: Copy>(&self, name: &str, words: &[(&str, T)]) -> Result<Option<T>, String> {
        let Some(word) = self.string(name)? else { return Ok(None) };
        match words.iter().find(|(w, _)| *w == word) {
            Some((_, value)) => Ok(Some(*value)),
            None => {
                let listed: Vec<String> = words.iter().map(|(w, _)| format!("`{w}`")).collect();
                Err(format!("unknown variant `{word}`, expected one of {}", listed.join(", ")))
            }
        }
    }
}

/// serde's "invalid type" message, naming the kind of value (never a float's digits: formatting
/// floats would bring a float printer into the wasm for an error message).
pub fn invalid_type(value: &Value, expected: &str) -> String {
    let kind = match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => "floating point".to_owned(),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_owned(),
        Value::Object(_) => "map".to_owned(),
    };
    format!("invalid type: {kind}, expected {expected}")
}

/// `text` as a JSON string literal (RFC 8259 §7: quotes, backslashes and control characters
/// escaped). For bodies made once per isolate, where serde_json's serializer would be compiled on
/// a fresh isolate's first answer for a few constant strings.
pub fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON object written member by member, for lines the key store writes on a fresh isolate's
/// first requests (a fetch, a load): serde_json's writer would be compiled there for them.
/// Member names are the caller's constants; values are escaped.
pub struct ObjectWriter(String);

impl Default for ObjectWriter {
    fn default() -> Self {
        ObjectWriter(String::from("{"))
    }
}

impl ObjectWriter {
    fn member(&mut self, name: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&string_literal(name));
        self.0.push(':');
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.member(name);
        self.0.push_str(&string_literal(value));
        self
    }

    /// `null` for `None`.
    pub fn maybe_text(mut self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.text(name, value),
            None => {
                self.member(name);
                self.0.push_str("null");
                self
            }
        }
    }

    pub fn number(mut self, name: &str, value: u64) -> Self {
        self.member(name);
        self.0.push_str(&value.to_string());
        self
    }

    pub fn boolean(mut self, name: &str, value: bool) -> Self {
        self.member(name);
        self.0.push_str(if value { "true" } else { "false" });
        self
    }

    pub fn texts<'a>(mut self, name: &str, values: impl IntoIterator<Item = &'a str>) -> Self {
        self.member(name);
        self.0.push('[');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(&string_literal(value));
        }
        self.0.push(']');
        self
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}
