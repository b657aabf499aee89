//! Writes the attack corpus (tests/vectors/attacks.json): hostile requests and the answer each
//! must get, run against the host pipeline (tests/attacks.rs) and end to end against the real
//! worker in demo and gateway modes (tests/e2e.rs). The file is data: a row is a request (method,
//! path, header lines) and its expectation (status, JSON `error` code or null, and for gateway
//! rows that reach the origin what the origin may and may not see). Regenerate with:
//!
//!     cargo run --release -p edge-auth-dev-issuer --example attack_corpus > tests/vectors/attacks.json
//!
//! Keys are new on every run, so every token changes; the rows and their expectations do not.
//! URLs inside tokens (`jku`, `x5u`) all point at [`CANARY`], a loopback port where the end-to-end
//! runner counts connections: the worker must never open one.

use base64ct::{Base64, Encoding};
use edge_auth_dev_issuer::{b64, SigningKey};
use jwt_compact::{
    alg::{Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key},
    Algorithm, AlgorithmSignature,
};
use rsa::{
    pkcs1::EncodeRsaPublicKey,
    pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding},
    RsaPrivateKey, RsaPublicKey,
};
use serde_json::{json, Value};

const ISSUER: &str = "https://attacks.edge-auth.test/";
const AUDIENCE: &str = "https://attacks.edge-auth.test/api";
/// Far enough ahead that the committed tokens stay valid: 2100-01-01.
const EXPIRES: i64 = 4_102_444_800;
const ISSUED: i64 = 1_767_225_600;
/// 2099-01-01: a `nbf` or `iat` still in the future for as long as the file is used.
const FUTURE: i64 = 4_070_908_800;
const SUBJECT: &str = "attacks|user";
/// Where every URL found in a token points: loopback, a port the end-to-end runner listens on.
const CANARY: &str = "http://127.0.0.1:29417";
/// The limit the worker documents: larger credentials are refused unparsed.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The gateway's `ROUTES` for the gateway rows. The demo routes come first, with the same rules as
/// the demo worker's, so that rows of mode "both" mean the same in either mode. The last rule is a
/// public catch-all (static content, say): a path that dodges a protected rule lands there.
fn gateway_routes() -> Value {
    json!([
        { "path": "/api/public", "auth": "public" },
        { "path": "/api/private" },
        { "path": "/api/private-scoped", "scopes": ["read:messages"] },
        { "path": "/public/*", "auth": "public" },
        { "path": "/optional", "auth": "optional" },
        { "path": "/admin/*", "scopes": ["admin"] },
        { "path": "/*", "auth": "public" }
    ])
}

/// Expected answers: (status, `error` code; None for an admitted request).
type Expect = (u16, Option<&'static str>);
const OK: Expect = (200, None);
const INVALID_TOKEN: Expect = (401, Some("invalid_token"));
const INVALID_REQUEST: Expect = (400, Some("invalid_request"));
const MISSING: Expect = (401, Some("missing_authorization"));
const SCOPE: Expect = (403, Some("insufficient_scope"));
const METHOD: Expect = (405, Some("method_not_allowed"));

struct Keys {
    /// Published, usable.
    one: SigningKey,
    two: SigningKey,
    /// Published with `use: enc`: not usable for signatures.
    enc: SigningKey,
    /// Published but 1024 bits: below the minimum.
    small: SigningKey,
    /// Never published.
    attacker: SigningKey,
    /// `one`'s public half, for the HMAC confusion rows.
    one_public: RsaPublicKey,
}

fn generate(kid: &str, bits: usize) -> (SigningKey, RsaPublicKey) {
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), bits).expect("RSA key generation");
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding");
    (SigningKey::from_pem(kid, &pem).expect("a key just made"), key.to_public_key())
}

/// Rows whose decision reason is not the one their section (or their answer) implies, each
/// checked against the list in docs/operating.md ("Seeing what the edge decides"): a wrong type anywhere in
/// the header or claims is `malformed_token`, a held `kid` with another key's signature is
/// `bad_signature`, public and optional gateway rules admit as `public` and `anonymous`, and so on.
/// Every entry must name a row (checked at the end of `main`).
const REASONS: &[(&str, &str)] = &[
    ("gateway: control: optional route, no token", "anonymous"),
    ("gateway: optional route, Basic credentials: anonymous", "anonymous"),
    ("gateway: spoofed X-Auth-* on the optional route, no token", "anonymous"),
    ("RS256 by an unpublished key under kid attacks-1", "bad_signature"),
    ("RS256 by attacks-2 under kid attacks-1", "bad_signature"),
    ("gateway: optional route, forged token", "bad_signature"),
    ("signed by the attacker, header carries jku to the canary, kid attacks-1", "bad_signature"),
    ("signed by the attacker, header carries jwk (attacker's key named attacks-1), kid attacks-1", "bad_signature"),
    ("signed by the attacker, header carries jwk, jku, x5u and x5c together, kid attacks-1", "bad_signature"),
    ("exp 0", "expired"),
    ("exp a float in 2001", "expired"),
    ("exp in 2001", "expired"),
    ("exp negative", "expired"),
    ("exp negative zero float", "expired"),
    ("a quote in the credential", "invalid_request"),
    ("a space after a dot", "invalid_request"),
    ("a space inside the signature", "invalid_request"),
    ("a tab inside the payload", "invalid_request"),
    ("base64 padding on the header", "invalid_request"),
    ("base64 padding on the payload", "invalid_request"),
    ("alg NONE, kid attacks-1, no signature segment", "malformed_token"),
    ("alg NONE, no signature segment", "malformed_token"),
    ("alg None, kid attacks-1, no signature segment", "malformed_token"),
    ("alg None, no signature segment", "malformed_token"),
    ("alg as a number", "malformed_token"),
    ("alg as an array", "malformed_token"),
    ("alg as null", "malformed_token"),
    ("alg nOnE, kid attacks-1, no signature segment", "malformed_token"),
    ("alg nOnE, no signature segment", "malformed_token"),
    ("alg none, kid attacks-1, no signature segment", "malformed_token"),
    ("alg none, no signature segment", "malformed_token"),
    ("aud as a nested array holding ours", "malformed_token"),
    ("aud as a number", "malformed_token"),
    ("aud as an array of ours and a number", "malformed_token"),
    ("aud as an array of ours and null", "malformed_token"),
    ("aud as an object holding ours", "malformed_token"),
    ("aud as true", "malformed_token"),
    ("cty JWT (a nested token)", "malformed_token"),
    ("kid 6,000 characters (fits under the size limit), signed by attacks-1", "malformed_token"),
    ("kid as a number", "malformed_token"),
    ("kid as an array holding the published kid", "malformed_token"),
    ("kid as an object", "malformed_token"),
    ("kid as true", "malformed_token"),
    ("kid holding an escaped lone UTF-16 surrogate", "malformed_token"),
    ("kid of 10 KB (over the token size limit)", "malformed_token"),
    ("no alg", "malformed_token"),
    ("x5t that is no SHA-1 thumbprint", "malformed_token"),
    ("iat a float in 2099", "not_yet_valid"),
    ("iat in 2099", "not_yet_valid"),
    ("nbf a float in 2099", "not_yet_valid"),
    ("nbf in 2099", "not_yet_valid"),
    ("control: public route, no token", "public"),
    ("gateway: %2F in the query of a public path", "public"),
    ("gateway: admin in upper case lands on the public catch-all (origin-dependent)", "public"),
    ("gateway: control: public prefix route", "public"),
    ("gateway: control: the catch-all is public", "public"),
    ("gateway: spoofed X-Auth-* on a public route: the origin sees no identity", "public"),
    ("gateway: spoofed X-Forwarded-Host is replaced", "public"),
    ("gateway: spoofed X_Auth_Subject (underscores) on a public route", "public"),
    ("gateway: spoofed X_Forwarded_For (underscores) is dropped", "public"),
    ("gateway: spoofed proxy headers are dropped; the edge sets X-Forwarded-Proto and -For", "public"),
    ("gateway: the private route with a trailing slash lands on the catch-all (origin-dependent)", "public"),
    ("Authorization: a DPoP scheme carrying an unbound token", "token_binding"),
    ("gateway: optional route, alg none", "unsupported_alg"),
    ("tampered header (alg none), original signature", "unsupported_alg"),
    ("iss naming an attacker's host", "untrusted_issuer"),
    ("payload aud another, AUD ours (a different member)", "wrong_audience"),
];

struct Corpus {
    rows: Vec<Value>,
    /// The decision reason of this section's `invalid_token` and `invalid_request` rows, unless a
    /// row names its own (docs/operating.md, "Seeing what the edge decides").
    section: &'static str,
}

/// One request and what it must get.
struct Row {
    name: String,
    mode: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    expect: Expect,
    host_expect: Option<Expect>,
    must_not_see: Vec<&'static str>,
    must_see: Vec<(&'static str, String)>,
    /// How the runner makes this row's DPoP proof at run time (see `dpop_rows`).
    dpop: Option<Value>,
    /// The host's reason where `host` overrides the answer.
    host_reason: Option<&'static str>,
}

impl Row {
    fn new(name: impl Into<String>, mode: &'static str, path: &str, expect: Expect) -> Row {
        Row {
            name: name.into(),
            mode,
            method: "GET",
            path: path.into(),
            headers: Vec::new(),
            expect,
            host_expect: None,
            must_not_see: Vec::new(),
            must_see: Vec::new(),
            dpop: None,
            host_reason: None,
        }
    }

    /// `Authorization: DPoP <token>` and a proof the runner makes from `recipe`.
    fn dpop(mut self, token: &str, recipe: Value) -> Row {
        self.dpop = Some(recipe);
        self.header("Authorization", format!("DPoP {token}"))
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Row {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn method(mut self, method: &'static str) -> Row {
        self.method = method;
        self
    }

    fn bearer(self, token: &str) -> Row {
        self.header("Authorization", format!("Bearer {token}"))
    }

    fn host(mut self, expect: Expect, reason: &'static str) -> Row {
        self.host_expect = Some(expect);
        self.host_reason = Some(reason);
        self
    }

    fn not_seen(mut self, names: &[&'static str]) -> Row {
        self.must_not_see.extend_from_slice(names);
        self
    }

    fn seen(mut self, name: &'static str, value: impl Into<String>) -> Row {
        self.must_see.push((name, value.into()));
        self
    }
}

impl Corpus {
    fn push(&mut self, row: Row) {
        let listed = REASONS.iter().find(|(name, _)| *name == row.name).map(|(_, reason)| *reason);
        let reason = listed.unwrap_or(match row.expect {
            (_, Some("invalid_token" | "invalid_request")) => self.section,
            (_, Some(code)) => code,
            (_, None) => "ok",
        });
        let mut value = json!({
            "name": row.name,
            "mode": row.mode,
            "method": row.method,
            "path": row.path,
            "headers": row.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            "status": row.expect.0,
            "error": row.expect.1,
            "reason": reason,
        });
        if let Some((status, error)) = row.host_expect {
            value["host_status"] = json!(status);
            value["host_error"] = json!(error);
            value["host_reason"] = json!(row.host_reason);
        }
        if !row.must_not_see.is_empty() {
            value["origin_must_not_see"] = json!(row.must_not_see);
        }
        if let Some(recipe) = row.dpop {
            value["dpop"] = recipe;
        }
        if !row.must_see.is_empty() {
            value["origin_must_see"] = json!(row.must_see.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>());
        }
        assert!(!self.rows.iter().any(|r| r["name"] == value["name"]), "duplicate row name {}", value["name"]);
        self.rows.push(value);
    }

    /// A token on `/api/private` in both modes.
    fn token(&mut self, name: impl Into<String>, token: &str, expect: Expect) {
        self.push(Row::new(name, "both", "/api/private", expect).bearer(token));
    }
}

fn claims() -> Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": ISSUED, "exp": EXPIRES })
}

fn claims_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims();
    edit(claims.as_object_mut().unwrap());
    claims
}

fn header(kid: &str) -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": kid })
}

/// `BASE64URL(header) . BASE64URL(payload)` of exactly these JSON texts.
fn input(header: &str, payload: &str) -> String {
    format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()))
}

/// A compact JWS of exactly these JSON texts (duplicate members, NaN and other non-JSON included),
/// signed RS256 by `key`.
fn signed_raw(header: &str, payload: &str, key: &SigningKey) -> String {
    let input = input(header, payload);
    format!("{input}.{}", b64(&key.sign_rs256(input.as_bytes())))
}

fn signed(header: &Value, claims: &Value, key: &SigningKey) -> String {
    signed_raw(&header.to_string(), &claims.to_string(), key)
}

/// The valid claims as JSON text with one member's value replaced by `raw` text.
fn claims_raw(member: &str, raw: &str) -> String {
    let mut text = String::from("{");
    for (name, value) in claims().as_object().unwrap() {
        if name != member {
            text.push_str(&format!("{}:{value},", json!(name)));
        }
    }
    text.push_str(&format!("{}:{raw}}}", json!(member)));
    text
}

/// Sets the lowest unused bit of the last base64url character: the same bytes, non-canonically.
fn non_canonical(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(segment.len() % 4, 0, "a segment of whole 3-byte groups has no unused bits");
    let last = *segment.as_bytes().last().unwrap();
    let value = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(value & 1, 0, "canonical encodings leave the unused bits zero");
    format!("{}{}", &segment[..segment.len() - 1], ALPHABET[value | 1] as char)
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn main() {
    let (one, one_public) = generate("attacks-1", 2048);
    let keys = Keys {
        one,
        two: generate("attacks-2", 2048).0,
        enc: generate("attacks-enc", 2048).0,
        small: generate("attacks-small", 1024).0,
        attacker: generate("attacker", 2048).0,
        one_public,
    };
    let mut enc = keys.enc.public_jwk();
    enc["use"] = json!("enc");
    let published = json!({ "keys": [keys.one.public_jwk(), keys.two.public_jwk(), enc, keys.small.public_jwk()] });

    let mut corpus = Corpus { rows: Vec::new(), section: "" };
    controls(&mut corpus, &keys);
    algorithms(&mut corpus, &keys);
    key_selection(&mut corpus, &keys);
    embedded_keys(&mut corpus, &keys);
    kids(&mut corpus, &keys);
    crit(&mut corpus, &keys);
    duplicates(&mut corpus, &keys);
    encodings(&mut corpus, &keys);
    structure(&mut corpus, &keys);
    signatures(&mut corpus, &keys);
    times(&mut corpus, &keys);
    audiences(&mut corpus, &keys);
    issuers(&mut corpus, &keys);
    tampering(&mut corpus, &keys);
    sizes(&mut corpus, &keys);
    authorization_headers(&mut corpus, &keys);
    gateway_paths(&mut corpus, &keys);
    spoofed_headers(&mut corpus, &keys);
    methods_and_upgrades(&mut corpus, &keys);
    proxy_headers(&mut corpus);
    let proof_keys = ProofKeys::new();
    dpop_rows(&mut corpus, &keys, &proof_keys);

    for (name, _) in REASONS {
        assert!(corpus.rows.iter().any(|r| r["name"] == *name), "REASONS names no row: {name}");
    }
    let document = json!({
        "about": "Hostile requests and the answer each must get, in demo mode, gateway mode or both (mode). \
                  Rows run in order against one worker per mode. status and error are the expected HTTP status and \
                  JSON error code (null: admitted); reason is the decision's reason (docs/operating.md's list: the decision \
                  log line and the analytics data point carry it); host_status/host_error/host_reason override them for the host runner, which \
                  sees the raw path where the runtime would have normalised it. Gateway rows that reach the origin \
                  may list headers it must not see (origin_must_not_see, names) or must see exactly once with exactly \
                  that value (origin_must_see). Every URL in a token points at canary, which must never be contacted. \
                  A row with dpop has its DPoP proof made by the runner at run time (tests/common/dpop.rs), for the \
                  row's method and URL, the token in its Authorization header and the runner's clock: signed by \
                  dpop_keys[key] (or sign_with) with that key's public jwk in the header, then header and claims \
                  members replaced by those given (null removes one; htu_path keeps the runner's origin); \
                  private_jwk puts d in the jwk; ath_of hashes another token; iat_offset moves iat; hs256_with_token \
                  signs with HMAC-SHA256 keyed with the token; send_twice sends the request twice and judges the \
                  second answer. \
                  Generated by devissuer/examples/attack_corpus.rs.",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "canary": CANARY,
        "jwks": published,
        "gateway_routes": gateway_routes(),
        "gateway_vars": { "FORWARD_CLAIMS": "true" },
        "dpop_keys": proof_keys.private_jwks(),
        "rows": corpus.rows,
    });
    println!("{}", serde_json::to_string_pretty(&document).unwrap());
}

fn valid(keys: &Keys) -> String {
    signed(&header("attacks-1"), &claims(), &keys.one)
}

fn scoped(keys: &Keys, scope: &str) -> String {
    signed(&header("attacks-1"), &claims_with(|c| _ = c.insert("scope".into(), json!(scope))), &keys.one)
}

fn controls(c: &mut Corpus, keys: &Keys) {
    c.section = "malformed_token";
    c.push(Row::new("control: public route, no token", "both", "/api/public", OK));
    c.token("control: valid token", &valid(keys), OK);
    c.push(Row::new("control: no Authorization header", "both", "/api/private", MISSING));
    c.push(
        Row::new("control: scoped route, token with read:messages", "both", "/api/private-scoped", OK)
            .bearer(&scoped(keys, "openid read:messages")),
    );
    let permissions = claims_with(|c| _ = c.insert("permissions".into(), json!(["read:messages"])));
    c.push(
        Row::new("control: scoped route, read:messages as a permission", "both", "/api/private-scoped", OK)
            .bearer(&signed(&header("attacks-1"), &permissions, &keys.one)),
    );
    c.push(
        Row::new("control: scoped route, token without the scope", "both", "/api/private-scoped", SCOPE)
            .bearer(&valid(keys)),
    );
    c.token(
        "control: valid token signed by the second published key",
        &signed(&header("attacks-2"), &claims(), &keys.two),
        OK,
    );
    c.push(
        Row::new("control: scheme in lower case", "both", "/api/private", OK)
            .header("Authorization", format!("bearer {}", valid(keys))),
    );
    c.push(
        Row::new("control: Basic credentials are no token", "both", "/api/private", MISSING)
            .header("Authorization", "Basic YXR0YWNrZXI6cGFzc3dvcmQ="),
    );
    // Scope lookalikes: only the exact scope counts.
    for (name, scope) in [
        ("a prefix of it", "read:message"),
        ("it with a suffix", "read:messagesX"),
        ("it in upper case", "READ:MESSAGES"),
        ("it joined by a tab", "openid\tread:messages"),
        ("it joined by a comma", "openid,read:messages"),
    ] {
        c.push(
            Row::new(format!("scope lookalike: {name}"), "both", "/api/private-scoped", SCOPE)
                .bearer(&scoped(keys, scope)),
        );
    }
    let as_array = claims_with(|c| _ = c.insert("scope".into(), json!(["read:messages"])));
    c.push(Row::new("scope as an array", "both", "/api/private-scoped", INVALID_TOKEN).bearer(&signed(
        &header("attacks-1"),
        &as_array,
        &keys.one,
    )));
    let as_string = claims_with(|c| _ = c.insert("permissions".into(), json!("read:messages")));
    c.push(Row::new("permissions as a string", "both", "/api/private-scoped", INVALID_TOKEN).bearer(&signed(
        &header("attacks-1"),
        &as_string,
        &keys.one,
    )));
}

fn algorithms(c: &mut Corpus, keys: &Keys) {
    c.section = "unsupported_alg";
    let payload = claims().to_string();
    let real_signature = |header: &str| b64(&keys.one.sign_rs256(input(header, &payload).as_bytes()));
    for alg in ["none", "None", "NONE", "nOnE"] {
        for with_kid in [true, false] {
            let header =
                if with_kid { json!({ "alg": alg, "kid": "attacks-1" }) } else { json!({ "alg": alg }) }.to_string();
            let kid = if with_kid { ", kid attacks-1" } else { "" };
            let unsigned = input(&header, &payload);
            c.token(format!("alg {alg}{kid}, empty signature"), &format!("{unsigned}."), INVALID_TOKEN);
            c.token(format!("alg {alg}{kid}, no signature segment"), &unsigned, INVALID_TOKEN);
            c.token(
                format!("alg {alg}{kid}, RS256 signature by the real key"),
                &format!("{unsigned}.{}", real_signature(&header)),
                INVALID_TOKEN,
            );
            c.token(format!("alg {alg}{kid}, junk signature"), &format!("{unsigned}.{}", b64(b"junk")), INVALID_TOKEN);
        }
    }

    // HS* keyed with the RSA public key the JWKS publishes, in every form a confused verifier might use.
    let spki_pem = keys.one_public.to_public_key_pem(LineEnding::LF).unwrap();
    let spki_pem_crlf = keys.one_public.to_public_key_pem(LineEnding::CRLF).unwrap();
    let pkcs1_pem = keys.one_public.to_pkcs1_pem(LineEnding::LF).unwrap();
    let spki_der = keys.one_public.to_public_key_der().unwrap().as_bytes().to_vec();
    let jwk = keys.one.public_jwk();
    let forms: Vec<(&str, Vec<u8>)> = vec![
        ("the SPKI PEM", spki_pem.as_bytes().to_vec()),
        ("the SPKI PEM without its final newline", spki_pem.trim_end().as_bytes().to_vec()),
        ("the SPKI PEM with CRLF lines", spki_pem_crlf.as_bytes().to_vec()),
        ("the PKCS#1 PEM", pkcs1_pem.as_bytes().to_vec()),
        ("the SPKI DER", spki_der),
        ("the JWK as published (JSON text)", jwk.to_string().into_bytes()),
        ("the JWK's n member (base64url text)", jwk["n"].as_str().unwrap().as_bytes().to_vec()),
        ("the JWK's n (modulus bytes)", base64ct::Base64UrlUnpadded::decode_vec(jwk["n"].as_str().unwrap()).unwrap()),
    ];
    for (form, secret) in &forms {
        for (alg, with_kid) in [("HS256", true), ("HS256", false)] {
            let header =
                if with_kid { json!({ "alg": alg, "typ": "JWT", "kid": "attacks-1" }) } else { json!({ "alg": alg }) };
            let header = header.to_string();
            let signing_input = input(&header, &payload);
            let mac = Hs256.sign(&Hs256Key::new(secret), signing_input.as_bytes()).as_bytes().into_owned();
            let kid = if with_kid { ", kid attacks-1" } else { "" };
            c.token(format!("{alg} keyed with {form}{kid}"), &format!("{signing_input}.{}", b64(&mac)), INVALID_TOKEN);
        }
    }
    let spki = spki_pem.as_bytes();
    for (alg, mac) in [
        ("HS384", {
            let i = input(&json!({ "alg": "HS384", "kid": "attacks-1" }).to_string(), &payload);
            (i.clone(), Hs384.sign(&Hs384Key::new(spki), i.as_bytes()).as_bytes().into_owned())
        }),
        ("HS512", {
            let i = input(&json!({ "alg": "HS512", "kid": "attacks-1" }).to_string(), &payload);
            (i.clone(), Hs512.sign(&Hs512Key::new(spki), i.as_bytes()).as_bytes().into_owned())
        }),
    ] {
        c.token(
            format!("{alg} keyed with the SPKI PEM, kid attacks-1"),
            &format!("{}.{}", mac.0, b64(&mac.1)),
            INVALID_TOKEN,
        );
    }

    // Other names for the one algorithm, and other algorithms, over a real RS256 signature.
    for alg in ["rs256", "RS256 ", " RS256", "RS256\u{0}", "RS384", "RS512", "PS256", "ES256", "EdDSA", ""] {
        let header = json!({ "alg": alg, "kid": "attacks-1" });
        c.token(format!("alg {alg:?} over an RS256 signature"), &signed(&header, &claims(), &keys.one), INVALID_TOKEN);
    }
    for (name, alg) in [("null", json!(null)), ("an array", json!(["RS256"])), ("a number", json!(256))] {
        let header = json!({ "alg": alg, "kid": "attacks-1" });
        c.token(format!("alg as {name}"), &signed(&header, &claims(), &keys.one), INVALID_TOKEN);
    }
    c.token("no alg", &signed(&json!({ "kid": "attacks-1" }), &claims(), &keys.one), INVALID_TOKEN);
}

fn key_selection(c: &mut Corpus, keys: &Keys) {
    c.section = "unknown_kid";
    let claims = claims();
    c.token(
        "RS256 by an unpublished key under kid attacks-1",
        &signed(&header("attacks-1"), &claims, &keys.attacker),
        INVALID_TOKEN,
    );
    c.token("RS256 by attacks-2 under kid attacks-1", &signed(&header("attacks-1"), &claims, &keys.two), INVALID_TOKEN);
    c.token(
        "RS256 by an unpublished key under its own kid",
        &signed(&header("attacker"), &claims, &keys.attacker),
        INVALID_TOKEN,
    );
    c.token("RS256 by a published use:enc key", &signed(&header("attacks-enc"), &claims, &keys.enc), INVALID_TOKEN);
    c.token(
        "RS256 by a published 1024-bit key",
        &signed(&header("attacks-small"), &claims, &keys.small),
        INVALID_TOKEN,
    );
    let no_kid = json!({ "alg": "RS256", "typ": "JWT" });
    c.token(
        "no kid, two usable keys published (signed by attacks-1)",
        &signed(&no_kid, &claims, &keys.one),
        INVALID_TOKEN,
    );
    c.token("no kid, signed by an unpublished key", &signed(&no_kid, &claims, &keys.attacker), INVALID_TOKEN);
}

fn embedded_keys(c: &mut Corpus, keys: &Keys) {
    c.section = "unknown_kid";
    let claims = claims();
    let attacker_jwk = keys.attacker.public_jwk();
    let mut as_one = attacker_jwk.clone();
    as_one["kid"] = json!("attacks-1");
    // Not a real certificate: what matters is that nothing in x5c is ever read.
    let der = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 512).unwrap().to_public_key();
    let x5c = Base64::encode_string(der.to_public_key_der().unwrap().as_bytes());
    let jku = format!("{CANARY}/.well-known/jwks.json");
    let x5u = format!("{CANARY}/cert.pem");
    let cases: Vec<(&str, Value)> = vec![
        ("jwk (attacker's key), kid attacker", json!({ "alg": "RS256", "kid": "attacker", "jwk": attacker_jwk })),
        (
            "jwk (attacker's key named attacks-1), kid attacks-1",
            json!({ "alg": "RS256", "kid": "attacks-1", "jwk": as_one }),
        ),
        ("jwk (attacker's key), no kid", json!({ "alg": "RS256", "jwk": attacker_jwk })),
        ("jku to the canary, kid attacker", json!({ "alg": "RS256", "kid": "attacker", "jku": jku })),
        ("jku to the canary, kid attacks-1", json!({ "alg": "RS256", "kid": "attacks-1", "jku": jku })),
        ("jku to the canary, no kid", json!({ "alg": "RS256", "jku": jku })),
        ("x5u to the canary, kid attacker", json!({ "alg": "RS256", "kid": "attacker", "x5u": x5u })),
        ("x5u to the canary, no kid", json!({ "alg": "RS256", "x5u": x5u })),
        ("x5c (attacker's chain), kid attacker", json!({ "alg": "RS256", "kid": "attacker", "x5c": [x5c] })),
        ("x5c (attacker's chain), no kid", json!({ "alg": "RS256", "x5c": [x5c] })),
        (
            "jwk, jku, x5u and x5c together, kid attacks-1",
            json!({ "alg": "RS256", "kid": "attacks-1", "jwk": as_one, "jku": jku, "x5u": x5u, "x5c": [x5c] }),
        ),
    ];
    for (name, header) in cases {
        c.token(
            format!("signed by the attacker, header carries {name}"),
            &signed(&header, &claims, &keys.attacker),
            INVALID_TOKEN,
        );
    }
    // On a token the real key signed, the members are inert: admitted, and still nothing is fetched.
    let inert = json!({ "alg": "RS256", "kid": "attacks-1", "jku": jku, "x5u": x5u, "jwk": attacker_jwk });
    c.token("signed by attacks-1, header carries jku, x5u and jwk: inert", &signed(&inert, &claims, &keys.one), OK);
    let bad_x5t = json!({ "alg": "RS256", "kid": "attacks-1", "x5t": "not-a-thumbprint" });
    c.token("x5t that is no SHA-1 thumbprint", &signed(&bad_x5t, &claims, &keys.one), INVALID_TOKEN);
    let cty = json!({ "alg": "RS256", "kid": "attacks-1", "cty": "JWT" });
    c.token("cty JWT (a nested token)", &signed(&cty, &claims, &keys.one), INVALID_TOKEN);
}

fn kids(c: &mut Corpus, keys: &Keys) {
    c.section = "unknown_kid";
    let claims = claims();
    let kid_of = |kid: Value| json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
    let strings: Vec<(&str, String)> = vec![
        ("a path traversal", "../../../../etc/passwd".into()),
        ("a path to the published key", "../attacks-1".into()),
        ("a path traversal ending in the published kid", "attacks-1/../../attacks-1".into()),
        ("a URL to the canary", format!("{CANARY}/attacks-1")),
        ("SQL (tautology)", "' OR '1'='1".into()),
        ("SQL (comment after the published kid)", "attacks-1' --".into()),
        ("SQL (union)", "x' UNION SELECT 'attacks-1".into()),
        ("empty", String::new()),
        ("the published kid in upper case", "ATTACKS-1".into()),
        ("the published kid with a trailing space", "attacks-1 ".into()),
        ("the published kid with a NUL", "attacks-1\u{0}".into()),
        ("the published kid with U+FFFD appended", "attacks-1\u{fffd}".into()),
        ("6,000 characters (fits under the size limit)", "k".repeat(6000)),
    ];
    for (name, kid) in strings {
        c.token(
            format!("kid {name}, signed by attacks-1"),
            &signed(&kid_of(json!(kid)), &claims, &keys.one),
            INVALID_TOKEN,
        );
    }
    let surrogate = r#"{"alg":"RS256","typ":"JWT","kid":"attacks-1\ud800"}"#;
    c.token(
        "kid holding an escaped lone UTF-16 surrogate",
        &signed_raw(surrogate, &claims.to_string(), &keys.one),
        INVALID_TOKEN,
    );
    c.token(
        "kid of 10 KB (over the token size limit)",
        &signed(&kid_of(json!("k".repeat(10 * 1024))), &claims, &keys.one),
        INVALID_TOKEN,
    );
    for (name, kid) in [
        ("a number", json!(1)),
        ("an array holding the published kid", json!(["attacks-1"])),
        ("an object", json!({ "kid": "attacks-1" })),
        ("true", json!(true)),
    ] {
        c.token(format!("kid as {name}"), &signed(&kid_of(kid), &claims, &keys.one), INVALID_TOKEN);
    }
    // null reads as no kid: with two usable keys published, the key is not named.
    c.token("kid null (two usable keys: none named)", &signed(&kid_of(json!(null)), &claims, &keys.one), INVALID_TOKEN);
}

fn crit(c: &mut Corpus, keys: &Keys) {
    c.section = "malformed_token";
    for (name, crit) in [
        ("[\"exp\"]", json!(["exp"])),
        ("[\"b64\"] with b64 false", json!(["b64"])),
        ("[]", json!([])),
        ("null", json!(null)),
        ("a string", json!("exp")),
        ("an object", json!({})),
    ] {
        let mut header = json!({ "alg": "RS256", "kid": "attacks-1", "crit": crit, "exp": EXPIRES });
        if name.contains("b64") {
            header["b64"] = json!(false);
        }
        c.token(format!("crit {name}, signed by attacks-1"), &signed(&header, &claims(), &keys.one), INVALID_TOKEN);
    }
}

fn duplicates(c: &mut Corpus, keys: &Keys) {
    c.section = "malformed_token";
    let payload = claims().to_string();
    let headers = [
        ("header alg twice: none then RS256", r#"{"alg":"none","alg":"RS256","kid":"attacks-1"}"#),
        ("header alg twice: RS256 then none", r#"{"alg":"RS256","alg":"none","kid":"attacks-1"}"#),
        ("header alg twice: RS256 then RS256", r#"{"alg":"RS256","alg":"RS256","kid":"attacks-1"}"#),
        ("header alg twice, the second written \\u0061lg", r#"{"alg":"none","\u0061lg":"RS256","kid":"attacks-1"}"#),
        ("header kid twice: attacker then attacks-1", r#"{"alg":"RS256","kid":"attacker","kid":"attacks-1"}"#),
        ("header kid twice: attacks-1 then attacker", r#"{"alg":"RS256","kid":"attacks-1","kid":"attacker"}"#),
        ("header crit twice", r#"{"alg":"RS256","kid":"attacks-1","crit":["exp"],"crit":null}"#),
    ];
    for (name, header) in headers {
        c.token(
            format!("duplicate member: {name} (signed by attacks-1)"),
            &signed_raw(header, &payload, &keys.one),
            INVALID_TOKEN,
        );
    }
    let h = header("attacks-1").to_string();
    let base = format!(r#""iss":"{ISSUER}","sub":"{SUBJECT}","iat":{ISSUED}"#);
    let payloads = [
        (
            "aud twice: another then ours",
            format!(r#"{{{base},"exp":{EXPIRES},"aud":"https://other.example","aud":"{AUDIENCE}"}}"#),
        ),
        (
            "aud twice: ours then another",
            format!(r#"{{{base},"exp":{EXPIRES},"aud":"{AUDIENCE}","aud":"https://other.example"}}"#),
        ),
        (
            "aud twice, the second written \\u0061ud",
            format!(r#"{{{base},"exp":{EXPIRES},"aud":"https://other.example","\u0061ud":"{AUDIENCE}"}}"#),
        ),
        ("exp twice: past then future", format!(r#"{{{base},"aud":"{AUDIENCE}","exp":1000000000,"exp":{EXPIRES}}}"#)),
        ("exp twice: future then past", format!(r#"{{{base},"aud":"{AUDIENCE}","exp":{EXPIRES},"exp":1000000000}}"#)),
        (
            "iss twice: another then ours",
            format!(
                r#"{{"iss":"https://evil.example/","iss":"{ISSUER}","sub":"{SUBJECT}","aud":"{AUDIENCE}","exp":{EXPIRES}}}"#
            ),
        ),
        (
            "nbf twice: future then past",
            format!(r#"{{{base},"aud":"{AUDIENCE}","exp":{EXPIRES},"nbf":{FUTURE},"nbf":0}}"#),
        ),
        ("sub twice", format!(r#"{{{base},"aud":"{AUDIENCE}","exp":{EXPIRES},"sub":"admin"}}"#)),
    ];
    for (name, payload) in payloads {
        c.token(
            format!("duplicate member: payload {name} (signed by attacks-1)"),
            &signed_raw(&h, &payload, &keys.one),
            INVALID_TOKEN,
        );
    }
    let scope = format!(
        r#"{{"iss":"{ISSUER}","sub":"{SUBJECT}","aud":"{AUDIENCE}","exp":{EXPIRES},"scope":"openid","scope":"read:messages"}}"#
    );
    c.push(
        Row::new(
            "duplicate member: payload scope twice, on the scoped route",
            "both",
            "/api/private-scoped",
            INVALID_TOKEN,
        )
        .bearer(&signed_raw(&h, &scope, &keys.one)),
    );
    // `jti` is a deny-list key: twice, it could name a listed token to one reader and another to
    // the next, so it is refused like every member the worker reads.
    let jti = format!(r#"{{{base},"aud":"{AUDIENCE}","exp":{EXPIRES},"jti":"a","jti":"b"}}"#);
    c.token(
        "duplicate member: payload jti twice (a deny-list key: one meaning or none)",
        &signed_raw(&h, &jti, &keys.one),
        INVALID_TOKEN,
    );
    // Names differing only in case are different members.
    let case = format!(r#"{{{base},"exp":{EXPIRES},"aud":"https://other.example","AUD":"{AUDIENCE}"}}"#);
    c.token("payload aud another, AUD ours (a different member)", &signed_raw(&h, &case, &keys.one), INVALID_TOKEN);
}

fn encodings(c: &mut Corpus, keys: &Keys) {
    c.section = "malformed_token";
    // A header and payload whose encodings are not whole 3-byte groups (so they have unused bits),
    // the payload holding a `-` (`~~~` encodes to one) to turn into standard base64's `+`.
    let header = json!({ "alg": "RS256", "kid": "attacks-1", "typ": "JOSE" });
    assert_ne!(b64(header.to_string().as_bytes()).len() % 4, 0);
    let claims = (0..1000)
        .map(|i| claims_with(|claims| _ = claims.insert("jti".into(), json!(format!("~~~~~~{i}")))))
        .find(|claims| {
            let encoded = b64(claims.to_string().as_bytes());
            !encoded.len().is_multiple_of(4) && encoded.contains(['-', '_'])
        })
        .expect("some jti gives the encoding wanted");
    let token = signed(&header, &claims, &keys.one);
    let (h, p, s) = {
        let parts = segments(&token);
        (parts[0].clone(), parts[1].clone(), parts[2].clone())
    };
    c.token("control: the encoding rows' token, unaltered", &token, OK);
    let pad = |segment: &str| format!("{segment}{}", "=".repeat((4 - segment.len() % 4) % 4));
    c.token("base64 padding on the signature", &format!("{h}.{p}.{}", pad(&s)), INVALID_TOKEN);
    // `=` inside the credential is not a b64token at all.
    c.token("base64 padding on the header", &format!("{}.{p}.{s}", pad(&h)), INVALID_REQUEST);
    c.token("base64 padding on the payload", &format!("{h}.{}.{s}", pad(&p)), INVALID_REQUEST);
    let standard = |segment: &str| segment.replace('-', "+").replace('_', "/");
    assert!(s.contains(['-', '_']) && p.contains(['-', '_']), "no -/_ to turn into +//");
    c.token("standard base64 (+ and /) in the signature", &format!("{h}.{p}.{}", standard(&s)), INVALID_TOKEN);
    c.token("standard base64 (+ and /) in the payload", &format!("{h}.{}.{s}", standard(&p)), INVALID_TOKEN);
    c.token("non-canonical trailing bits in the header", &format!("{}.{p}.{s}", non_canonical(&h)), INVALID_TOKEN);
    c.token("non-canonical trailing bits in the payload", &format!("{h}.{}.{s}", non_canonical(&p)), INVALID_TOKEN);
    c.token("non-canonical trailing bits in the signature", &format!("{h}.{p}.{}", non_canonical(&s)), INVALID_TOKEN);
    c.token("a space inside the signature", &format!("{h}.{p}.{} {}", &s[..100], &s[100..]), INVALID_REQUEST);
    c.token("a tab inside the payload", &format!("{h}.{}\t{}.{s}", &p[..10], &p[10..]), INVALID_REQUEST);
    c.token("a space after a dot", &format!("{h}. {p}.{s}"), INVALID_REQUEST);
    c.token(
        "a character outside base64url (~) in the signature",
        &format!("{h}.{p}.{}~", &s[..s.len() - 1]),
        INVALID_TOKEN,
    );
    c.token("a quote in the credential", &format!("{h}.{p}.\"{s}\""), INVALID_REQUEST);
    c.push(
        Row::new("leading tab and spaces before the token", "both", "/api/private", OK)
            .header("Authorization", format!("Bearer \t  {token}")),
    );
    // The header JSON itself, garbled.
    let payload = claims.to_string();
    for (name, header) in [
        ("not JSON", "RS256"),
        ("a JSON array", r#"["RS256"]"#),
        ("JSON with a trailing comma", r#"{"alg":"RS256","kid":"attacks-1",}"#),
        ("JSON followed by more text", r#"{"alg":"RS256","kid":"attacks-1"}x"#),
        ("two JSON objects", r#"{"alg":"RS256","kid":"attacks-1"}{"alg":"none"}"#),
        ("a byte-order mark before the JSON", "\u{feff}{\"alg\":\"RS256\",\"kid\":\"attacks-1\"}"),
    ] {
        c.token(format!("header {name}"), &signed_raw(header, &payload, &keys.one), INVALID_TOKEN);
    }
    let bad_utf8 = {
        let header = [b"{\"alg\":\"RS256\",\"kid\":\"attacks-1\xff\"}".as_slice()].concat();
        let input = format!("{}.{}", b64(&header), b64(payload.as_bytes()));
        format!("{input}.{}", b64(&keys.one.sign_rs256(input.as_bytes())))
    };
    c.token("header with invalid UTF-8", &bad_utf8, INVALID_TOKEN);
    for (name, body) in [
        ("not JSON", "exp=4102444800"),
        ("a JSON array", "[1,2]"),
        ("JSON null", "null"),
        ("empty", ""),
        ("JSON followed by more text", &format!("{payload}x")),
    ] {
        c.token(format!("payload {name}"), &signed_raw(&header.to_string(), body, &keys.one), INVALID_TOKEN);
    }
}

fn structure(c: &mut Corpus, keys: &Keys) {
    c.section = "malformed_token";
    let token = valid(keys);
    let p = segments(&token);
    c.token("1 segment", &p[0], INVALID_TOKEN);
    c.token("2 segments (no signature)", &format!("{}.{}", p[0], p[1]), INVALID_TOKEN);
    c.token("4 segments (a trailing dot)", &format!("{token}."), INVALID_TOKEN);
    c.token("4 segments (the signature twice)", &format!("{token}.{}", p[2]), INVALID_TOKEN);
    c.token(
        "5 segments (JWE-shaped)",
        &format!("{}.{}.{}.{}.{}", p[0], b64(b"cek"), b64(b"iv"), p[1], p[2]),
        INVALID_TOKEN,
    );
    c.token("5 segments (the token, then two more)", &format!("{token}.{}.{}", p[1], p[2]), INVALID_TOKEN);
    c.token("only dots", "..", INVALID_TOKEN);
    c.token("empty header segment", &format!(".{}.{}", p[1], p[2]), INVALID_TOKEN);
    c.token(
        "empty payload segment, signed",
        &signed_raw(&header("attacks-1").to_string(), "", &keys.one),
        INVALID_TOKEN,
    );
    c.token("a leading dot", &format!(".{token}"), INVALID_TOKEN);
}

fn signatures(c: &mut Corpus, keys: &Keys) {
    c.section = "bad_signature";
    let token = valid(keys);
    let p = segments(&token);
    let signature = base64ct::Base64UrlUnpadded::decode_vec(&p[2]).unwrap();
    let with = |bytes: &[u8]| format!("{}.{}.{}", p[0], p[1], b64(bytes));
    c.token("empty signature", &format!("{}.{}.", p[0], p[1]), INVALID_TOKEN);
    c.token("signature of 1 byte", &with(&[1]), INVALID_TOKEN);
    c.token("signature one byte short", &with(&signature[..255]), INVALID_TOKEN);
    c.token("signature with one byte appended", &with(&[signature.as_slice(), &[0]].concat()), INVALID_TOKEN);
    c.token("signature with a zero byte prepended", &with(&[&[0], signature.as_slice()].concat()), INVALID_TOKEN);
    c.token("signature twice over (512 bytes)", &with(&signature.repeat(2)), INVALID_TOKEN);
    c.token("signature of 256 zero bytes", &with(&[0; 256]), INVALID_TOKEN);
    c.token("signature of 256 0xff bytes", &with(&[0xff; 256]), INVALID_TOKEN);
    let mut flipped = signature.clone();
    flipped[128] ^= 1;
    c.token("signature with one bit flipped", &with(&flipped), INVALID_TOKEN);
    let other =
        segments(&signed(&header("attacks-1"), &claims_with(|c| _ = c.insert("jti".into(), json!("x"))), &keys.one));
    c.token("signature of another token by the same key", &format!("{}.{}.{}", p[0], p[1], other[2]), INVALID_TOKEN);
}

fn times(c: &mut Corpus, keys: &Keys) {
    c.section = "malformed_token";
    let h = header("attacks-1").to_string();
    let case = |c: &mut Corpus, member: &str, name: &str, raw: &str, expect: Expect| {
        c.token(format!("{member} {name}"), &signed_raw(&h, &claims_raw(member, raw), &keys.one), expect);
    };
    let valid_exp = EXPIRES.to_string();
    // Malformed whatever the member: the wrong JSON type, or a time no clock can hold.
    for member in ["exp", "nbf", "iat"] {
        for (name, raw) in [
            ("as a numeric string", format!("\"{valid_exp}\"")),
            ("as a date string", "\"2100-01-01T00:00:00Z\"".to_string()),
            ("as the string NaN", "\"NaN\"".into()),
            ("as the string Infinity", "\"Infinity\"".into()),
            ("as bare NaN (not JSON)", "NaN".into()),
            ("as bare Infinity (not JSON)", "Infinity".into()),
            ("as true", "true".into()),
            ("as an array", format!("[{valid_exp}]")),
            ("as an object", format!("{{\"$date\":{valid_exp}}}")),
            ("2^63", "9223372036854775808".into()),
            ("2^63 - 1", "9223372036854775807".into()),
            ("2^64", "18446744073709551616".into()),
            ("-2^63", "-9223372036854775808".into()),
            ("1e300", "1e300".into()),
            ("1e400 (beyond f64)", "1e400".into()),
            ("-1e300", "-1e300".into()),
            ("past year 262143", "10000000000000".into()),
        ] {
            case(c, member, name, &raw, INVALID_TOKEN);
        }
    }
    // exp: what a clock can hold is judged as a time.
    for (name, raw, expect) in [
        ("null", "null", INVALID_TOKEN),
        ("0", "0", INVALID_TOKEN),
        ("negative", "-1", INVALID_TOKEN),
        ("in 2001", "1000000000", INVALID_TOKEN),
        ("a float in 2001", "1000000000.5", INVALID_TOKEN),
        ("a float in 2100 (NumericDate may be fractional)", "4102444800.5", OK),
        ("in 2100 with an exponent (4.1024448e9)", "4.1024448e9", OK),
        ("in year 9999", "253402300799", OK),
        ("negative zero float", "-0.0", INVALID_TOKEN),
    ] {
        case(c, "exp", name, raw, expect);
    }
    c.token(
        "exp absent",
        &signed(&header("attacks-1"), &claims_with(|c| _ = c.remove("exp")), &keys.one),
        INVALID_TOKEN,
    );
    for (name, raw, expect) in [
        ("in 2099", FUTURE.to_string(), INVALID_TOKEN),
        ("a float in 2099", format!("{FUTURE}.5"), INVALID_TOKEN),
        ("negative (long past: valid)", "-1".into(), OK),
        ("0 (the epoch: valid)", "0".into(), OK),
        ("a float in the past (valid)", "1000000000.25".into(), OK),
        ("null (not a NumericDate)", "null".into(), INVALID_TOKEN),
    ] {
        case(c, "nbf", name, &raw, expect);
    }
    for (name, raw, expect) in [
        ("in 2099", FUTURE.to_string(), INVALID_TOKEN),
        ("a float in 2099", format!("{FUTURE}.5"), INVALID_TOKEN),
        ("negative (long past: valid)", "-1".into(), OK),
        ("a float in the past (valid)", format!("{ISSUED}.75"), OK),
        ("null (not a NumericDate)", "null".into(), INVALID_TOKEN),
    ] {
        case(c, "iat", name, &raw, expect);
    }
}

fn audiences(c: &mut Corpus, keys: &Keys) {
    c.section = "wrong_audience";
    let h = header("attacks-1");
    let with_aud = |aud: Value| signed(&h, &claims_with(|c| _ = c.insert("aud".into(), aud)), &keys.one);
    for (name, aud, expect) in [
        ("as an object holding ours", json!({ "aud": AUDIENCE }), INVALID_TOKEN),
        ("as a number", json!(7), INVALID_TOKEN),
        ("as a nested array holding ours", json!([[AUDIENCE]]), INVALID_TOKEN),
        ("as an array of ours and a number", json!([AUDIENCE, 7]), INVALID_TOKEN),
        ("as an array of ours and null", json!([AUDIENCE, null]), INVALID_TOKEN),
        ("as true", json!(true), INVALID_TOKEN),
        ("as an empty array", json!([]), INVALID_TOKEN),
        ("as an empty string", json!(""), INVALID_TOKEN),
        ("null", json!(null), INVALID_TOKEN),
        ("another API", json!("https://other.example/api"), INVALID_TOKEN),
        ("ours with a trailing slash", json!(format!("{AUDIENCE}/")), INVALID_TOKEN),
        ("ours in upper case", json!(AUDIENCE.to_ascii_uppercase()), INVALID_TOKEN),
        ("ours with a trailing space", json!(format!("{AUDIENCE} ")), INVALID_TOKEN),
        ("ours as a prefix", json!(format!("{AUDIENCE}x")), INVALID_TOKEN),
        ("the issuer", json!(ISSUER), INVALID_TOKEN),
        ("an array of others and ours (valid)", json!(["https://other.example/api", AUDIENCE]), OK),
    ] {
        c.token(format!("aud {name}"), &with_aud(aud), expect);
    }
    c.token("aud absent", &signed(&h, &claims_with(|c| _ = c.remove("aud")), &keys.one), INVALID_TOKEN);
}

fn issuers(c: &mut Corpus, keys: &Keys) {
    c.section = "untrusted_issuer";
    let h = header("attacks-1");
    let with_iss = |iss: Value| signed(&h, &claims_with(|c| _ = c.insert("iss".into(), iss)), &keys.one);
    let bare = ISSUER.trim_end_matches('/');
    for (name, iss) in [
        ("without its trailing slash", json!(bare)),
        ("with two trailing slashes", json!(format!("{ISSUER}/"))),
        ("with the host in upper case", json!("https://ATTACKS.EDGE-AUTH.TEST/")),
        ("with the scheme in upper case", json!("HTTPS://attacks.edge-auth.test/")),
        ("over http", json!("http://attacks.edge-auth.test/")),
        ("with a port", json!("https://attacks.edge-auth.test:443/")),
        ("with a trailing space", json!(format!("{ISSUER} "))),
        ("with a trailing dot on the host", json!("https://attacks.edge-auth.test./")),
        ("with a path", json!(format!("{ISSUER}api/"))),
        ("as an array holding it", json!([ISSUER])),
        ("as an object", json!({ "iss": ISSUER })),
        ("as a number", json!(1)),
        ("null", json!(null)),
        ("another issuer", json!("https://evil.example/")),
    ] {
        let expect = INVALID_TOKEN;
        c.token(format!("iss {name}"), &with_iss(iss), expect);
    }
    c.token("iss absent", &signed(&h, &claims_with(|c| _ = c.remove("iss")), &keys.one), INVALID_TOKEN);
}

fn tampering(c: &mut Corpus, keys: &Keys) {
    c.section = "bad_signature";
    let token = valid(keys);
    let p = segments(&token);
    let changed = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| b64(claims_with(edit).to_string().as_bytes());
    let admin = changed(&|c| _ = c.insert("sub".into(), json!("admin")));
    c.token("tampered payload (sub admin), original signature", &format!("{}.{admin}.{}", p[0], p[2]), INVALID_TOKEN);
    let scoped = changed(&|c| _ = c.insert("scope".into(), json!("read:messages")));
    c.push(
        Row::new(
            "tampered payload (scope added), original signature, scoped route",
            "both",
            "/api/private-scoped",
            INVALID_TOKEN,
        )
        .bearer(&format!("{}.{scoped}.{}", p[0], p[2])),
    );
    let later = changed(&|c| _ = c.insert("exp".into(), json!(EXPIRES + 1)));
    c.token("tampered payload (exp + 1 s), original signature", &format!("{}.{later}.{}", p[0], p[2]), INVALID_TOKEN);
    let other_kid = b64(header("attacks-2").to_string().as_bytes());
    c.token(
        "tampered header (kid attacks-2), original signature",
        &format!("{other_kid}.{}.{}", p[1], p[2]),
        INVALID_TOKEN,
    );
    let none = b64(json!({ "alg": "none", "typ": "JWT", "kid": "attacks-1" }).to_string().as_bytes());
    c.token("tampered header (alg none), original signature", &format!("{none}.{}.{}", p[1], p[2]), INVALID_TOKEN);
    // The same claims re-serialised (other spacing): the signature covers the exact bytes.
    let spaced = b64(serde_json::to_string_pretty(&claims()).unwrap().as_bytes());
    c.token(
        "payload re-serialised with other whitespace, original signature",
        &format!("{}.{spaced}.{}", p[0], p[2]),
        INVALID_TOKEN,
    );
    // A token admitted earlier (and so cached) still needs the route's scope.
    c.push(
        Row::new(
            "a token admitted earlier still lacks the scope (verified-token cache)",
            "both",
            "/api/private-scoped",
            SCOPE,
        )
        .bearer(&token),
    );
}

/// A valid token padded with a `pad` claim until it is exactly `len` bytes long.
fn token_of_length(keys: &Keys, len: usize) -> String {
    for typ in ["JWT", "JWTX", "JWTXY"] {
        let header = json!({ "alg": "RS256", "typ": typ, "kid": "attacks-1" });
        for pad in 0..len {
            let claims = claims_with(|c| _ = c.insert("pad".into(), json!("x".repeat(pad))));
            let length = b64(header.to_string().as_bytes()).len() + b64(claims.to_string().as_bytes()).len() + 2 + 342;
            if length == len {
                return signed(&header, &claims, &keys.one);
            }
            if length > len {
                break;
            }
        }
    }
    panic!("no token of exactly {len} bytes");
}

fn sizes(c: &mut Corpus, keys: &Keys) {
    c.section = "malformed_token";
    let at_limit = token_of_length(keys, MAX_TOKEN_BYTES);
    assert_eq!(at_limit.len(), MAX_TOKEN_BYTES);
    c.token("valid token of exactly 8 KiB (the limit)", &at_limit, OK);
    let over = token_of_length(keys, MAX_TOKEN_BYTES + 1);
    c.token("valid token of 8 KiB + 1 byte", &over, INVALID_TOKEN);
    let huge = token_of_length(keys, 12 * 1024);
    c.token("valid token of 12 KiB", &huge, INVALID_TOKEN);
}

fn authorization_headers(c: &mut Corpus, keys: &Keys) {
    c.section = "invalid_request";
    let token = valid(keys);
    let forged = signed(&header("attacks-1"), &claims(), &keys.attacker);
    let scoped = scoped(keys, "read:messages");
    let two = |name: &str, first: String, second: String, path: &str, expect: Expect| {
        Row::new(format!("two Authorization headers: {name}"), "both", path, expect)
            .header("Authorization", first)
            .header("Authorization", second)
    };
    let bearer = |t: &str| format!("Bearer {t}");
    c.push(two("the same valid token twice", bearer(&token), bearer(&token), "/api/private", INVALID_REQUEST));
    c.push(two("valid, then forged", bearer(&token), bearer(&forged), "/api/private", INVALID_REQUEST));
    c.push(two("forged, then valid", bearer(&forged), bearer(&token), "/api/private", INVALID_REQUEST));
    c.push(two("unscoped, then scoped", bearer(&token), bearer(&scoped), "/api/private-scoped", INVALID_REQUEST));
    c.push(two("Bearer valid, then Basic", bearer(&token), "Basic YTpi".into(), "/api/private", INVALID_REQUEST));
    c.push(two("Basic, then Bearer valid", "Basic YTpi".into(), bearer(&token), "/api/private", MISSING));
    c.push(
        Row::new("three Authorization headers, all valid", "both", "/api/private", INVALID_REQUEST)
            .header("Authorization", bearer(&token))
            .header("Authorization", bearer(&token))
            .header("Authorization", bearer(&token)),
    );
    for (name, value, expect) in [
        ("scheme only", "Bearer".to_string(), INVALID_REQUEST),
        ("scheme and spaces", "Bearer   ".into(), INVALID_REQUEST),
        ("two tokens in one header", format!("Bearer {token} {token}"), INVALID_REQUEST),
        ("two tokens joined by a comma", format!("Bearer {token},{token}"), INVALID_REQUEST),
        ("a token and a trailing comma", format!("Bearer {token},"), INVALID_REQUEST),
        ("no space after the scheme", format!("Bearer{token}"), MISSING),
        ("another scheme carrying the token", format!("Token {token}"), MISSING),
        ("a DPoP scheme carrying an unbound token", format!("DPoP {token}"), INVALID_TOKEN),
        ("the token without a scheme", token.clone(), MISSING),
    ] {
        c.push(
            Row::new(format!("Authorization: {name}"), "both", "/api/private", expect).header("Authorization", value),
        );
    }
}

fn gateway_paths(c: &mut Corpus, keys: &Keys) {
    c.section = "ambiguous_path";
    let token = valid(keys);
    let admin = scoped(keys, "admin");
    let gw = |name: &str, path: &str, expect: Expect| Row::new(format!("gateway: {name}"), "gateway", path, expect);
    c.push(gw("control: public prefix route", "/public/x", OK).not_seen(&["x-auth-subject", "authorization"]));
    c.push(gw("control: the catch-all is public", "/anything/else", OK));
    c.push(gw("control: admin route without a token", "/admin/panel", MISSING));
    c.push(gw("control: admin route, token without the admin scope", "/admin/panel", SCOPE).bearer(&token));
    c.push(gw("control: admin route, admin token", "/admin/panel", OK).bearer(&admin).seen("x-auth-scopes", "admin"));
    c.push(gw("control: optional route, no token", "/optional", OK).not_seen(&["x-auth-subject"]));
    c.push(gw("control: optional route, valid token", "/optional", OK).bearer(&token).seen("x-auth-subject", SUBJECT));
    c.push(gw("optional route, forged token", "/optional", INVALID_TOKEN).bearer(&signed(
        &header("attacks-1"),
        &claims(),
        &keys.attacker,
    )));
    c.push(
        gw("optional route, alg none", "/optional", INVALID_TOKEN)
            .bearer(&format!("{}.", input(r#"{"alg":"none"}"#, &claims().to_string()))),
    );

    // Encoded separators: refused before matching, whatever the route and case.
    for (name, path) in [
        ("%2F in a public path", "/public/a%2Fb"),
        ("%2f in a public path", "/public/a%2fb"),
        ("%2F leading out of a public prefix", "/public%2F..%2Fadmin/panel"),
        ("%5C in a public path", "/public/a%5Cb"),
        ("%5c in a public path", "/public/a%5cb"),
        ("%2E in a public path", "/public/a%2Eb"),
        ("%2e in a public path", "/public/a%2eb"),
        ("%2E in the admin prefix", "/admin%2Epanel"),
        ("%2F in the admin route", "/admin%2Fpanel"),
        ("%2F in the catch-all", "/x%2F..%2Fadmin%2Fpanel"),
        ("%252F (a double-encoded slash: / to an origin that decodes twice)", "/public/a%252Fb"),
    ] {
        c.push(gw(name, path, INVALID_REQUEST));
    }
    c.push(gw("%2F on a protected path, with a valid token", "/api%2Fprivate", INVALID_REQUEST).bearer(&token));
    // `%2e%2e` segments are dot segments to the runtime, resolved before the worker sees the path;
    // the host runner gets the raw path and refuses the encoded dots instead.
    for (name, path) in [
        (
            "%2e%2e out of a public prefix into admin (runtime resolves it; host refuses %2e)",
            "/public/%2e%2e/admin/panel",
        ),
        (
            "%2E%2e out of a public prefix into admin (runtime resolves it; host refuses %2E)",
            "/public/%2E%2e/admin/panel",
        ),
        (".%2e out of a public prefix into admin (runtime resolves it; host refuses %2e)", "/public/.%2e/admin/panel"),
    ] {
        c.push(gw(name, path, MISSING).host(INVALID_REQUEST, "ambiguous_path"));
    }
    // Raw dot segments and backslashes never reach the worker: the runtime resolves them. The host
    // runner sees them raw, where they match the public routes (as the runtime would never let them).
    c.push(
        gw(
            "raw .. out of a public prefix into admin (wrangler dev resolves it; the host refuses the ..)",
            "/public/../admin/panel",
            MISSING,
        )
        .host(INVALID_REQUEST, "ambiguous_path"),
    );
    c.push(
        gw("raw \\ as a separator into admin (runtime makes it /; host refuses the \\)", "/admin\\panel", MISSING)
            .host(INVALID_REQUEST, "ambiguous_path"),
    );

    // Doubled slashes: an origin may merge them (nginx does by default), so a path holding an empty
    // segment means two things and is refused wherever it appears.
    c.push(gw("// inside the admin route", "/admin//panel", INVALID_REQUEST));
    c.push(gw("// inside a public path", "/public//x", INVALID_REQUEST).bearer(&token));
    c.push(gw("// before admin: an origin that merges slashes serves /admin/panel", "//admin/panel", INVALID_REQUEST));
    c.push(gw("// before the private route", "//api/private", INVALID_REQUEST));
    c.push(gw("/// before admin", "///admin/panel", INVALID_REQUEST));
    // Path parameters: Tomcat, Jetty and Spring drop `;...` from a segment before routing.
    c.push(gw("; after admin: a servlet origin serves /admin/panel", "/admin;x/panel", INVALID_REQUEST));
    c.push(gw("; after the private route", "/api/private;jsessionid=1", INVALID_REQUEST));
    c.push(gw(
        "..; out of a public prefix: a servlet origin reads it as ..",
        "/public/..;/admin/panel",
        INVALID_REQUEST,
    ));
    c.push(gw("; inside the admin route", "/admin/panel;x", INVALID_REQUEST));
    // Overlong UTF-8 (%C0%AF is `/`, %C0%AE is `.` to a lax decoder): invalid UTF-8 either way.
    c.push(gw("overlong / (%C0%AF) inside a public path", "/public/a%C0%AFb", INVALID_REQUEST));
    c.push(gw(
        "overlong .. (%C0%AE%C0%AE) out of a public prefix",
        "/public/%C0%AE%C0%AE/admin/panel",
        INVALID_REQUEST,
    ));
    c.push(gw("overlong / (%c0%af) before admin", "/%c0%afadmin/panel", INVALID_REQUEST));
    c.push(gw("overlong / (%E0%80%AF, 3 bytes) inside a public path", "/public/a%E0%80%AFb", INVALID_REQUEST));
    c.push(gw("overlong / inside the admin route, no token", "/admin/%C0%AF", INVALID_REQUEST));
    // Percent-encoded unreserved characters are the same path to RFC 3986 and to every origin that
    // decodes before routing (nginx locations, WSGI's PATH_INFO), but not to a literal match.
    c.push(gw(
        "%61 (an encoded a) before admin: a decoding origin serves /admin/panel",
        "/%61dmin/panel",
        INVALID_REQUEST,
    ));
    c.push(gw("%2D (an encoded -) in the scoped route", "/api/private%2Dscoped", INVALID_REQUEST));
    // Encoded delimiters: an origin that decodes before it splits off path parameters (;), the
    // query (?) or a fragment (#) serves /admin for each of these, which miss the /admin rule.
    for (name, path) in [
        ("%3B after admin: a decoding servlet origin drops ;x and serves /admin/panel", "/admin%3Bx/panel"),
        ("%3b after admin", "/admin%3bx/panel"),
        ("%3F after admin: a decoding origin reads the rest as a query", "/admin%3Fx"),
        ("%3f inside the admin route", "/admin/panel%3fx"),
        ("%23 after admin: a decoding origin reads the rest as a fragment", "/admin%23"),
        ("%23 after the private route", "/api/private%23x"),
    ] {
        c.push(gw(name, path, INVALID_REQUEST));
    }
    // Routing that differs by origin, not by encoding: forwarded as is to the public catch-all.
    // An origin routing case-insensitively or ignoring a trailing slash (Express's defaults) would
    // serve the protected route; ROUTES without a public catch-all answer 404 instead.
    c.push(gw("admin in upper case lands on the public catch-all (origin-dependent)", "/ADMIN/panel", OK));
    c.push(gw(
        "the private route with a trailing slash lands on the catch-all (origin-dependent)",
        "/api/private/",
        OK,
    ));
    // The query is not the path: encoded separators there are the origin's business.
    c.push(gw("%2F in the query of a public path", "/public/x?next=%2F..%2Fadmin%2Fpanel", OK));
    c.push(gw("the admin route with a query, no token", "/admin/panel?x=%2F", MISSING));
    c.push(
        gw("optional route, Basic credentials: anonymous", "/optional", OK)
            .header("Authorization", "Basic YTpi")
            .not_seen(&["authorization", "x-auth-subject"]),
    );
}

fn methods_and_upgrades(c: &mut Corpus, keys: &Keys) {
    c.section = "upgrade_not_allowed";
    let admin = scoped(keys, "admin");
    let gw = |name: &str, path: &str, expect: Expect| Row::new(format!("gateway: {name}"), "gateway", path, expect);
    // TRACE echoes the request back, the edge's X-Edge-Auth-Secret included: never forwarded, on
    // a public rule or with a token that passes the rule. (TRACK never reaches a worker: workerd's
    // parser refuses it; the host tests hold the worker's own 405.)
    c.push(gw("TRACE on the public catch-all", "/anything", METHOD).method("TRACE"));
    c.push(gw("TRACE on a public prefix", "/public/x", METHOD).method("TRACE"));
    c.push(gw("TRACE on the admin route with an admin token", "/admin/panel", METHOD).method("TRACE").bearer(&admin));
    c.push(Row::new("TRACE on the public route", "both", "/api/public", METHOD).method("TRACE"));
    // Upgrades: no rule here allows a WebSocket, so each is refused before any token is looked at.
    let upgrade = |row: Row| {
        row.header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Version", "13")
    };
    c.push(upgrade(gw("WebSocket upgrade on the public catch-all", "/anything", INVALID_REQUEST)));
    c.push(upgrade(gw("WebSocket upgrade on a public prefix", "/public/x", INVALID_REQUEST)));
    c.push(
        upgrade(gw("WebSocket upgrade on the admin route, admin token", "/admin/panel", INVALID_REQUEST))
            .bearer(&admin),
    );
    c.push(upgrade(gw("WebSocket upgrade on the private route, no token", "/api/private", INVALID_REQUEST)));
}

fn proxy_headers(c: &mut Corpus) {
    c.section = "invalid_request";
    let gw = |name: &str, path: &str, expect: Expect| Row::new(format!("gateway: {name}"), "gateway", path, expect);
    // Origins trust these for the client's address, scheme and base path: only the edge sets them.
    // X-Forwarded-For is the runtime's CF-Connecting-IP (wrangler dev reports 127.0.0.1).
    c.push(
        gw("spoofed proxy headers are dropped; the edge sets X-Forwarded-Proto and -For", "/public/x", OK)
            .header("Forwarded", "for=203.0.113.1;proto=https;host=admin.example")
            .header("X-Forwarded-For", "203.0.113.1")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Prefix", "/admin")
            .header("X-Forwarded-Port", "443")
            .header("X-Real-IP", "203.0.113.1")
            .header("Proxy-Authorization", "Basic YWRtaW46YWRtaW4=")
            .header("Proxy-Connection", "keep-alive")
            .not_seen(&["forwarded", "x-forwarded-prefix", "x-forwarded-port", "x-real-ip", "proxy-authorization"])
            .not_seen(&["proxy-connection"])
            .seen("x-forwarded-proto", "http")
            .seen("x-forwarded-for", "127.0.0.1"),
    );
    c.push(
        gw("spoofed X_Forwarded_For (underscores) is dropped", "/public/x", OK)
            .header("X_Forwarded_For", "203.0.113.1")
            .header("X_Real_IP", "203.0.113.1")
            .not_seen(&["x_forwarded_for", "x_real_ip"])
            .seen("x-forwarded-for", "127.0.0.1"),
    );
}

fn spoofed_headers(c: &mut Corpus, keys: &Keys) {
    c.section = "invalid_request";
    let token = valid(keys);
    let payload = segments(&token)[1].clone();
    let spoof = |row: Row| {
        row.header("X-Auth-Subject", "admin")
            .header("x-auth-scopes", "admin read:messages")
            .header("X-AUTH-CLAIMS", "eyJzdWIiOiJhZG1pbiJ9")
            .header("X-Auth-Anything", "1")
            .header("X-Edge-Auth-Secret", "guessed")
    };
    let gw = |name: &str, path: &str, expect: Expect| Row::new(format!("gateway: {name}"), "gateway", path, expect);
    c.push(
        spoof(
            gw("spoofed X-Auth-* with a valid token: the origin sees only the verified identity", "/api/private", OK)
                .bearer(&token),
        )
        .seen("x-auth-subject", SUBJECT)
        .seen("x-auth-claims", payload.clone())
        .not_seen(&["x-auth-scopes", "x-auth-anything", "x-edge-auth-secret", "authorization"]),
    );
    c.push(spoof(gw("spoofed X-Auth-* on a public route: the origin sees no identity", "/public/x", OK)).not_seen(&[
        "x-auth-subject",
        "x-auth-scopes",
        "x-auth-claims",
        "x-auth-anything",
        "x-edge-auth-secret",
    ]));
    c.push(spoof(gw("spoofed X-Auth-* on the optional route, no token", "/optional", OK)).not_seen(&[
        "x-auth-subject",
        "x-auth-scopes",
        "x-auth-claims",
        "x-auth-anything",
        "x-edge-auth-secret",
    ]));
    c.push(spoof(gw("spoofed X-Auth-* on the admin route, no token", "/admin/panel", MISSING)));
    c.push(spoof(gw("spoofed X-Auth-* on the admin route, token without admin", "/admin/panel", SCOPE).bearer(&token)));
    c.push(
        gw("spoofed X-Auth-Subject twice with a valid token", "/api/private", OK)
            .bearer(&token)
            .header("X-Auth-Subject", "admin")
            .header("X-Auth-Subject", "root")
            .seen("x-auth-subject", SUBJECT),
    );
    c.push(
        gw("spoofed X-Forwarded-Host is replaced", "/public/x", OK)
            .header("X-Forwarded-Host", "evil.example")
            .not_seen(&["authorization"]),
    );
    // CGI and WSGI origins read X_Auth_Subject and X-Auth-Subject as the same HTTP_X_AUTH_SUBJECT.
    c.push(
        gw("spoofed X_Auth_Subject (underscores) with a valid token", "/api/private", OK)
            .bearer(&token)
            .header("X_Auth_Subject", "admin")
            .header("X_Auth_Scopes", "admin")
            .seen("x-auth-subject", SUBJECT)
            .not_seen(&["x_auth_subject", "x_auth_scopes"]),
    );
    c.push(
        gw("spoofed X_Auth_Subject (underscores) on a public route", "/public/x", OK)
            .header("X_Auth_Subject", "admin")
            .not_seen(&["x_auth_subject", "x-auth-subject"]),
    );
}

/// Two client keys for DPoP rows (ES256), committed in the corpus so that runners can sign proofs
/// with their own clock: a proof's `iat` must be recent, so it cannot be written down once.
struct ProofKeys {
    a: p256::ecdsa::SigningKey,
    b: p256::ecdsa::SigningKey,
}

impl ProofKeys {
    fn new() -> ProofKeys {
        let mut rng = rand::thread_rng();
        ProofKeys { a: p256::ecdsa::SigningKey::random(&mut rng), b: p256::ecdsa::SigningKey::random(&mut rng) }
    }

    fn public(key: &p256::ecdsa::SigningKey) -> Value {
        let p = key.verifying_key().to_encoded_point(false);
        json!({ "kty": "EC", "crv": "P-256", "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap()) })
    }

    fn private_jwks(&self) -> Value {
        let private = |key: &p256::ecdsa::SigningKey| {
            let mut jwk = Self::public(key);
            jwk["d"] = json!(b64(&key.to_bytes()));
            jwk
        };
        json!({ "a": private(&self.a), "b": private(&self.b) })
    }

    /// RFC 7638.
    fn thumbprint(key: &p256::ecdsa::SigningKey) -> String {
        use sha2::Digest;
        let jwk = Self::public(key);
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, jwk["x"], jwk["y"]);
        b64(&sha2::Sha256::digest(canonical.as_bytes()))
    }
}

fn dpop_rows(c: &mut Corpus, keys: &Keys, proof: &ProofKeys) {
    c.section = "token_binding";
    let bound_to =
        |cnf: Value| signed(&header("attacks-1"), &claims_with(|c| _ = c.insert("cnf".into(), cnf)), &keys.one);
    let bound = bound_to(json!({ "jkt": ProofKeys::thumbprint(&proof.a) }));
    let bound_to_b = bound_to(json!({ "jkt": ProofKeys::thumbprint(&proof.b) }));
    let mtls = bound_to(json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" }));
    let proof_error: Expect = (401, Some("invalid_dpop_proof"));
    let row = |name: &str, expect: Expect| Row::new(format!("DPoP: {name}"), "both", "/api/private", expect);
    let a = || json!({ "key": "a" });
    let with = |edit: Value| {
        let mut recipe = a();
        for (k, v) in edit.as_object().unwrap() {
            recipe[k] = v.clone();
        }
        recipe
    };
    c.push(row("control: a bound token with its proof", OK).dpop(&bound, a()));
    c.push(row("a bound token presented as Bearer", INVALID_TOKEN).bearer(&bound));
    c.push(row("a bound token as Bearer, with a DPoP header", INVALID_TOKEN).bearer(&bound).header("DPoP", "a.b.c"));
    c.push(row("proof with alg none", proof_error).dpop(&bound, with(json!({ "header": { "alg": "none" } }))));
    c.push(
        row("proof signed HS256 keyed with the token", proof_error)
            .dpop(&bound, with(json!({ "hs256_with_token": true }))),
    );
    c.push(row("proof with a private jwk", proof_error).dpop(&bound, with(json!({ "private_jwk": true }))));
    c.push(
        row("proof for another URL", proof_error)
            .dpop(&bound, with(json!({ "claims": { "htu": "https://evil.example/api/private" } }))),
    );
    c.push(
        row("proof for another path", proof_error)
            .dpop(&bound, with(json!({ "claims": { "htu_path": "/api/public" } }))),
    );
    c.push(row("proof for another method", proof_error).dpop(&bound, with(json!({ "claims": { "htm": "POST" } }))));
    c.push(
        row("proof with the method in lower case", proof_error)
            .dpop(&bound, with(json!({ "claims": { "htm": "get" } }))),
    );
    c.push(row("a replayed proof", proof_error).dpop(&bound, with(json!({ "send_twice": true }))));
    c.push(row("proof whose ath is another token's", proof_error).dpop(&bound, with(json!({ "ath_of": valid(keys) }))));
    c.push(row("proof without ath", proof_error).dpop(&bound, with(json!({ "claims": { "ath": null } }))));
    c.push(row("proof from an hour ago", proof_error).dpop(&bound, with(json!({ "iat_offset": -3600 }))));
    c.push(row("proof from an hour ahead", proof_error).dpop(&bound, with(json!({ "iat_offset": 3600 }))));
    c.push(row("proof with typ JWT", proof_error).dpop(&bound, with(json!({ "header": { "typ": "JWT" } }))));
    c.push(row("proof with a's jwk signed by b", proof_error).dpop(&bound, with(json!({ "sign_with": "b" }))));
    c.push(row("proof without jti", proof_error).dpop(&bound, with(json!({ "claims": { "jti": null } }))));
    c.push(row("no DPoP header", proof_error).header("Authorization", format!("DPoP {bound}")));
    c.push(
        row("two DPoP headers", proof_error)
            .header("Authorization", format!("DPoP {bound}"))
            .header("DPoP", "a.b.c")
            .header("DPoP", "d.e.f"),
    );
    c.push(row("a token bound to another key", INVALID_TOKEN).dpop(&bound_to_b, a()));
    c.push(row("a token bound by mTLS (cnf x5t#S256)", INVALID_TOKEN).dpop(&mtls, a()));
    c.push(row("an mTLS-bound token as Bearer", INVALID_TOKEN).bearer(&mtls));
    c.push(row("the DPoP scheme with an unbound token and a valid proof", INVALID_TOKEN).dpop(&valid(keys), a()));
    // Issuer confusion at the edge: an iss naming the canary (an attacker's host) is never trusted,
    // so nothing is fetched there (the end-to-end runner counts connections to it).
    let canary_iss = signed(
        &header("attacks-1"),
        &claims_with(|c| _ = c.insert("iss".into(), json!(format!("{CANARY}/")))),
        &keys.attacker,
    );
    c.token("iss naming an attacker's host", &canary_iss, INVALID_TOKEN);
}
