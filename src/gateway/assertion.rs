//! The identity assertion: a short-lived JWT the edge signs for every forwarded request, so that
//! the origin can check who the caller is with the edge's public keys instead of trusting
//! `X-Auth-*` because of a shared secret (as Cloudflare Access's `Cf-Access-Jwt-Assertion` and
//! Pomerium's `X-Pomerium-Jwt-Assertion` do).
//!
//! Pure: which claims go in ([`AssertionConfig::claims`]), how long it lives, when one already
//! made may serve again ([`reusable_until_ms`], [`AssertionCache`]), the settings
//! (`ASSERTION_*`, [`AssertionConfig::from_vars`]) and the published keys ([`AssertionConfig::jwks`]).
//! The signature is the runtime's ([`AssertionSigner`]: WebCrypto at the edge, the pure-Rust
//! engines on the host), as verification is through `SignatureVerifier`.

use std::{collections::HashMap, future::Future, rc::Rc};

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::Value;

use crate::{
    config::vars::{invalid, missing, Vars},
    error::{ConfigError, ConfigProblem},
    json::string_literal,
    token::claims::{Binding, Principal},
};

/// The header the assertion travels in (an `X-Auth-*` name, so a client's copy is always dropped).
pub const HEADER: &str = "x-auth-assertion";
/// Where the public halves of `ASSERTION_KEYS` are served, whatever `ROUTES` says.
pub const JWKS_PATH: &str = "/.well-known/edge-auth/jwks.json";
/// The JWS `typ`, so that an assertion is never taken for another kind of token (RFC 8725 §3.11).
pub const TYPE: &str = "edge-auth+jwt";
/// Long enough for an origin on the far side of a slow hop, short enough that one lifted from a
/// log is soon worthless.
pub const DEFAULT_TTL_SECONDS: u64 = 60;
pub const MAX_TTL_SECONDS: u64 = 300;
/// A rotation needs two keys; a few more cover a key kept published while two others overlap.
pub const MAX_KEYS: usize = 10;
/// Each entry holds a token (~1 KB) and an assertion (~0.5 KB): ~1.5 MB of an isolate at most.
pub const CACHE_CAPACITY: usize = 1024;
/// The token's claims an assertion carries as signed, kept with the verified caller when
/// assertions are on (`ClaimsPolicy::keep_access_claims`).
pub const TOKEN_CLAIMS: [&str; 4] = crate::token::claims::ACCESS_CLAIMS;
/// The assertion's own claims: a `CLAIM_HEADERS` claim of one of these names is left out of it
/// (it would contradict the edge, or say again what is there).
const OWN_CLAIMS: [&str; 15] = [
    "iss",
    "aud",
    "iat",
    "exp",
    "nbf",
    "jti",
    "htm",
    "htu",
    "sub",
    "token_iss",
    "scope",
    "permissions",
    "azp",
    "client_id",
    "cnf",
];

/// The two algorithms WebCrypto signs with in workerd that every JOSE library verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256; the signature is `r ‖ s` (64 bytes, RFC 7518 §3.4).
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// One key of `ASSERTION_KEYS`. Its private half never reaches a response or a log line: `Debug`
/// leaves it out, and configuration errors name the entry, never a value.
#[derive(Clone, PartialEq, Eq)]
pub struct AssertionKey {
    pub kid: Rc<str>,
    pub alg: Alg,
    /// The public point: `x` and `y` for P-256, `x` alone (`y` empty) for Ed25519; 32 bytes each.
    pub x: Vec<u8>,
    pub y: Vec<u8>,
    /// The private scalar (P-256) or seed (Ed25519), 32 bytes. Only the first key needs one: a
    /// later key may be published alone, while the assertions it signed expire.
    d: Option<Vec<u8>>,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private", &self.d.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AssertionKey {
    /// The private half, for the signer alone.
    pub fn private(&self) -> Option<&[u8]> {
        self.d.as_deref()
    }
}

/// `ASSERTION_*`: the keys (the first signs, all are published), who the assertion says issued
/// it and for whom, and how long it lives.
#[derive(Debug, Clone, PartialEq)]
pub struct AssertionConfig {
    pub keys: Vec<AssertionKey>,
    /// `ASSERTION_ISSUER`: the assertion's `iss`.
    pub issuer: String,
    /// `ASSERTION_AUDIENCE`, by default the origin of `ORIGIN_URL`: the assertion's `aud`.
    pub audience: String,
    /// `ASSERTION_TTL_SECONDS`: `exp` is `iat` plus this, or the token's `exp` if sooner.
    pub ttl_secs: u64,
    /// The claims `CLAIM_HEADERS` forwards, carried in the assertion too (each once, none of
    /// the assertion's own names).
    pub claims: Vec<Rc<str>>,
    /// The protected header, base64url: the same for every assertion, so written once.
    header: String,
    /// The public halves as a JWKS document, written once.
    jwks: String,
}

const ISSUER_EXPECTED: &str = "a string of printable ASCII, at most 1024 characters";
const AUDIENCE_EXPECTED: &str = "a string of printable ASCII, at most 1024 characters";

impl AssertionConfig {
    /// `ASSERTION_KEYS` (none: no assertion), `ASSERTION_ISSUER` (required with it),
    /// `ASSERTION_AUDIENCE` (default `origin`, the scheme and authority of `ORIGIN_URL`) and
    /// `ASSERTION_TTL_SECONDS`. The others without the keys are an error: they would do nothing.
    /// `claims`: those `CLAIM_HEADERS` forwards.
    pub fn from_vars<'c>(
        vars: &Vars,
        origin: &str,
        claims: impl IntoIterator<Item = &'c Rc<str>>,
    ) -> Result<Option<AssertionConfig>, ConfigError> {
        let Some(value) = vars.get("ASSERTION_KEYS") else {
            return match ["ASSERTION_ISSUER", "ASSERTION_AUDIENCE", "ASSERTION_TTL_SECONDS"]
                .into_iter()
                .find(|name| vars.get(name).is_some())
            {
                Some(name) => Err(invalid(name, "used only with ASSERTION_KEYS: set it too")),
                None => Ok(None),
            };
        };
        let claims: Vec<&Rc<str>> = claims.into_iter().collect();
        Self::read(vars, value, origin, &claims).map(Some)
    }

    /// Kept out of [`AssertionConfig::from_vars`], which every gateway's isolate runs (and
    /// compiles whole) once: only one with keys compiles this.
    #[inline(never)]
    fn read(vars: &Vars, value: Value, origin: &str, claims: &[&Rc<str>]) -> Result<AssertionConfig, ConfigError> {
        let keys = parse_keys(value)?;
        let issuer = printable(vars, "ASSERTION_ISSUER", ISSUER_EXPECTED)?.ok_or(missing("ASSERTION_ISSUER"))?;
        let audience = printable(vars, "ASSERTION_AUDIENCE", AUDIENCE_EXPECTED)?.unwrap_or_else(|| origin.to_owned());
        let ttl_secs = vars.seconds("ASSERTION_TTL_SECONDS", DEFAULT_TTL_SECONDS, 1, MAX_TTL_SECONDS)?;
        let first = &keys[0];
        let header = format!(r#"{{"alg":"{}","kid":{},"typ":"{TYPE}"}}"#, first.alg.name(), string_literal(&first.kid));
        let jwks = jwks_document(&keys);
        let mut carried: Vec<Rc<str>> = Vec::new();
        for claim in claims {
            if !OWN_CLAIMS.contains(&&***claim) && !carried.contains(claim) {
                carried.push((*claim).clone());
            }
        }
        Ok(AssertionConfig { header: b64(header.as_bytes()), jwks, keys, issuer, audience, ttl_secs, claims: carried })
    }

    /// The key that signs: the first.
    pub fn signing_key(&self) -> &AssertionKey {
        &self.keys[0]
    }

    /// `GET /.well-known/edge-auth/jwks.json`'s body: every key's public half.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The claims of the assertion for a request sent to `htu` (the origin URL, no query) with
    /// `method`, at `now_secs`. `caller`: the verified token's, or `None` on a public rule or an
    /// optional one without a token (the assertion then says only that the request came through
    /// the edge).
    pub fn claims(&self, caller: Option<Caller<'_>>, method: &str, htu: &str, now_secs: i64) -> Claims {
        let issued_at = now_secs;
        let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
        let mut expires = issued_at.saturating_add(ttl);
        let mut out = Writer::default();
        out.text("iss", &self.issuer);
        out.text("aud", &self.audience);
        out.number("iat", seconds(issued_at));
        // Filled in below, once the token's `exp` is known: a placeholder keeps the order.
        let exp_at = out.0.len();
        out.text("htm", method);
        out.text("htu", htu);
        if let Some(caller) = caller {
            let principal = caller.principal;
            // Never outlives what the caller proved: a token admitted within the clock skew
            // after its `exp` gets an assertion that is already expired.
            expires = expires.min(principal.expires);
            if let Some(subject) = &principal.subject {
                out.text("sub", subject);
            }
            out.text("token_iss", caller.token_issuer);
            for name in TOKEN_CLAIMS {
                if let Some(value) = principal.claim(name) {
                    out.value(name, value);
                }
            }
            if let Binding::Jkt(jkt) = &principal.binding {
                out.member("cnf");
                out.0.push_str(&format!(r#"{{"jkt":{}}}"#, string_literal(jkt)));
            }
            for name in &self.claims {
                if let Some(value) = principal.claim(name) {
                    out.value(name, value);
                }
            }
        }
        out.0.insert_str(exp_at, &format!(r#","exp":{}"#, seconds(expires)));
        Claims { payload: out.finish(), issued_at, expires }
    }

    /// The compact JWS of `claims`, signed by the first key through `signer`.
    pub async fn sign(&self, claims: &Claims, signer: &impl AssertionSigner) -> Result<String, SignError> {
        let mut jws = String::with_capacity(self.header.len() + claims.payload.len() * 4 / 3 + 96);
        jws.push_str(&self.header);
        jws.push('.');
        jws.push_str(&b64(claims.payload.as_bytes()));
        let signature = signer.sign_assertion(self.signing_key(), jws.as_bytes()).await?;
        jws.push('.');
        jws.push_str(&b64(&signature));
        Ok(jws)
    }
}

/// The caller an assertion speaks for.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub principal: &'a Principal,
    /// The issuer that the token's `iss` named and whose keys verified it.
    pub token_issuer: &'a str,
}

/// An assertion's claims as JSON text, and its times (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub payload: String,
    pub issued_at: i64,
    pub expires: i64,
}

impl Claims {
    /// See [`reusable_until_ms`].
    pub fn reusable_until_ms(&self) -> u64 {
        reusable_until_ms(self.issued_at, self.expires)
    }
}

/// Until when (ms) an assertion issued at `issued_at` that expires at `expires` may be sent again
/// for the same token, method and URL: while more than half its life is left, so that the origin
/// always gets one with at least half of `ASSERTION_TTL_SECONDS` to go (and a repeated token does
/// not pay a signature per request). One already expired, or that expires as it is made, is
/// never reused.
pub fn reusable_until_ms(issued_at: i64, expires: i64) -> u64 {
    let ms = |secs: i64| u64::try_from(secs).unwrap_or(0).saturating_mul(1000);
    if expires <= issued_at {
        return ms(issued_at);
    }
    let life_ms = ms(expires).saturating_sub(ms(issued_at));
    ms(issued_at).saturating_add(life_ms / 2)
}

/// Assertions made by this isolate, by the token, method and URL they were made for, while they
/// may be reused ([`reusable_until_ms`]). The key is the whole token, compared byte for byte, for
/// the token cache's reasons (`token::cache`). Bounded: when full, the entries past their reuse
/// go, and if none did, all go (a miss costs one signature).
#[derive(Debug)]
pub struct AssertionCache {
    capacity: usize,
    entries: HashMap<String, Issued>,
}

/// An assertion as sent, and until when it may be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub jws: Rc<str>,
    pub reusable_until_ms: u64,
}

impl Default for AssertionCache {
    fn default() -> Self {
        Self::with_capacity(CACHE_CAPACITY)
    }
}

impl AssertionCache {
    pub fn with_capacity(capacity: usize) -> Self {
        AssertionCache { capacity, entries: HashMap::new() }
    }

    /// What an assertion is kept under: the method, the URL and the token (`None`: a request
    /// without one, whose assertion names no caller).
    pub fn key(token: Option<&str>, method: &str, htu: &str) -> String {
        let token = token.unwrap_or_default();
        let mut key = String::with_capacity(method.len() + htu.len() + token.len() + 2);
        key.push_str(method);
        key.push(' ');
        key.push_str(htu);
        key.push(' ');
        key.push_str(token);
        key
    }

    /// The assertion kept under `key`, if it may still be reused at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Issued> {
        self.entries.get(key).filter(|issued| now_ms < issued.reusable_until_ms).cloned()
    }

    /// Keeps `issued` under `key`, unless it may not be reused at all.
    pub fn insert(&mut self, key: String, issued: Issued, now_ms: u64) {
        if now_ms >= issued.reusable_until_ms {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, kept| now_ms < kept.reusable_until_ms);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key, issued);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Signs an assertion. Async because WebCrypto is.
pub trait AssertionSigner {
    /// The JWS signature of `input` by `key` (which holds its private half): for ES256 `r ‖ s`,
    /// for EdDSA the 64-byte Ed25519 signature.
    fn sign_assertion(&self, key: &AssertionKey, input: &[u8]) -> impl Future<Output = Result<Vec<u8>, SignError>>;
}

/// Why no assertion could be signed. Either way nothing is forwarded: an origin that expects an
/// assertion must never get a request without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// The key cannot sign, or its public half (the one published) does not verify what it signs.
    UnusableKey,
    /// The runtime offers no signing for the key's algorithm.
    Unavailable,
}

impl SignError {
    /// As the configuration error it is answered with (a fixed text: no key material).
    pub fn config_error(self) -> ConfigError {
        let expected = match self {
            SignError::UnusableKey => {
                "its first key cannot sign, or its d does not belong to its public x (and y): make the key again"
            }
            SignError::Unavailable => "its first key's algorithm cannot be used to sign by this runtime",
        };
        invalid("ASSERTION_KEYS", expected)
    }
}

fn printable(vars: &Vars, name: &'static str, expected: &'static str) -> Result<Option<String>, ConfigError> {
    let value = vars.text(name, expected)?;
    if value.as_ref().is_some_and(|v| v.len() > 1024 || !v.bytes().all(|b| (0x20..=0x7e).contains(&b))) {
        return Err(invalid(name, expected));
    }
    Ok(value)
}

/// `ASSERTION_KEYS`: JSON text (a secret) or an array of tables. Each entry is an EC P-256 or
/// an OKP Ed25519 private JWK with a `kid`; the first must hold its private half.
fn parse_keys(value: Value) -> Result<Vec<AssertionKey>, ConfigError> {
    // The details go to the log line only, and never quote a value (the variable is a secret).
    let fail = |index: Option<usize>, detail: &str| ConfigError {
        variable: "ASSERTION_KEYS",
        problem: ConfigProblem::InvalidRule { index, detail: detail.to_owned() },
    };
    let value = match value {
        Value::String(text) => crate::json::parse(text.as_bytes()).map_err(|_| fail(None, "not JSON"))?,
        value => value,
    };
    let Value::Array(entries) = value else { return Err(fail(None, "not an array of JWKs")) };
    if entries.is_empty() || entries.len() > MAX_KEYS {
        return Err(fail(None, "an array of 1 to 10 JWKs, the first of which signs"));
    }
    let mut keys: Vec<AssertionKey> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let key = parse_key(entry).map_err(|detail| fail(Some(index), detail))?;
        if keys.iter().any(|k| k.kid == key.kid) {
            return Err(fail(Some(index), "its kid is another key's too"));
        }
        if index == 0 && key.d.is_none() {
            return Err(fail(Some(0), "the first key signs: it needs its private half, d"));
        }
        keys.push(key);
    }
    Ok(keys)
}

fn parse_key(entry: &Value) -> Result<AssertionKey, &'static str> {
    let Value::Object(jwk) = entry else { return Err("not a JSON object") };
    let text = |name: &str| match jwk.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err("a member that should be a string is not one"),
    };
    let bytes = |name: &str| -> Result<Option<Vec<u8>>, &'static str> {
        match text(name)? {
            None => Ok(None),
            Some(s) => match Base64UrlUnpadded::decode_vec(s) {
                Ok(b) if b.len() == 32 => Ok(Some(b)),
                _ => Err("x, y and d must each be 32 bytes of base64url without padding"),
            },
        }
    };
    let kid = text("kid")?.ok_or("no kid")?;
    if kid.is_empty() || kid.len() > 128 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("kid must be 1 to 128 printable ASCII characters without spaces");
    }
    let alg = match (text("kty")?, text("crv")?) {
        (Some("EC"), Some("P-256")) => Alg::Es256,
        (Some("OKP"), Some("Ed25519")) => Alg::EdDsa,
        _ => return Err("kty and crv must be EC and P-256 (ES256), or OKP and Ed25519 (EdDSA)"),
    };
    if text("alg")?.is_some_and(|named| named != alg.name()) {
        return Err("alg does not match kty and crv (ES256 for EC P-256, EdDSA for OKP Ed25519)");
    }
    if text("use")?.is_some_and(|u| u != "sig") {
        return Err("use must be sig");
    }
    let x = bytes("x")?.ok_or("no x")?;
    let y = match alg {
        Alg::Es256 => bytes("y")?.ok_or("no y")?,
        Alg::EdDsa if jwk.contains_key("y") => return Err("an Ed25519 key has no y"),
        Alg::EdDsa => Vec::new(),
    };
    Ok(AssertionKey { kid: kid.into(), alg, x, y, d: bytes("d")? })
}

/// The public halves, as RFC 7517 §5 has them, with `alg` and `use` so that a library picks each
/// key for exactly what it is for.
fn jwks_document(keys: &[AssertionKey]) -> String {
    let mut out = String::from(r#"{"keys":["#);
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match key.alg {
            Alg::Es256 => {
                out.push_str(&format!(r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}""#, b64(&key.x), b64(&key.y)))
            }
            Alg::EdDsa => out.push_str(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}""#, b64(&key.x))),
        }
        out.push_str(&format!(r#","kid":{},"alg":"{}","use":"sig"}}"#, string_literal(&key.kid), key.alg.name()));
    }
    out.push_str("]}");
    out
}

/// A time as a JSON number. Never before the epoch here; written as `u64`, whose formatting the
/// worker has anyway (an `i64`'s would be compiled in for this alone).
fn seconds(time: i64) -> u64 {
    u64::try_from(time).unwrap_or(0)
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// A JSON object written member by member (names are constants or configured claim names).
#[derive(Default)]
struct Writer(String);

impl Writer {
    fn member(&mut self, name: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push_str(&string_literal(name));
        self.0.push(':');
    }

    fn text(&mut self, name: &str, value: &str) {
        self.member(name);
        self.0.push_str(&string_literal(value));
    }

    fn number(&mut self, name: &str, value: u64) {
        self.member(name);
        self.0.push_str(&value.to_string());
    }

    /// A claim as it was signed (serde_json writes it back as compact JSON).
    fn value(&mut self, name: &str, value: &Value) {
        self.member(name);
        self.0.push_str(&value.to_string());
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// The pure-Rust engines sign on the host (tests and tools), as they verify there; the wasm
/// signs with WebCrypto (`edge::webcrypto`). Like it, they refuse a key whose public half does
/// not match its private one.
#[cfg(not(target_arch = "wasm32"))]
impl AssertionSigner for crate::token::verify::RustRsa {
    async fn sign_assertion(&self, key: &AssertionKey, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let d = key.private().ok_or(SignError::UnusableKey)?;
        match key.alg {
            Alg::Es256 => {
                use p256::ecdsa::{signature::Signer, Signature, SigningKey};
                let signing = SigningKey::from_slice(d).map_err(|_| SignError::UnusableKey)?;
                let point = signing.verifying_key().to_encoded_point(false);
                if point.x().map(|x| x.as_slice()) != Some(&key.x[..])
                    || point.y().map(|y| y.as_slice()) != Some(&key.y[..])
                {
                    return Err(SignError::UnusableKey);
                }
                let signature: Signature = signing.sign(input);
                Ok(signature.to_bytes().to_vec())
            }
            Alg::EdDsa => {
                let seed = ed25519_compact::Seed::from_slice(d).map_err(|_| SignError::UnusableKey)?;
                let pair = ed25519_compact::KeyPair::from_seed(seed);
                if pair.pk[..] != key.x[..] {
                    return Err(SignError::UnusableKey);
                }
                Ok(pair.sk.sign(input, None).to_vec())
            }
        }
    }
}
