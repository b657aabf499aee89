//! The token reader (src/token/parse.rs, src/token/claims.rs) against jwt-compact's, which it replaced at the
//! edge: on a grid of odd headers and claims, both accept or both refuse, and an accepted token
//! reads the same. The one deliberate difference: a repeated member name in any object of the
//! header or claims is refused here (jwt-compact let a repeated unknown or nested member through).

use base64ct::{Base64UrlUnpadded, Encoding};
use edge_auth::{error::TokenProblem, token::parse::UnverifiedToken};
use jwt_compact::{Claims, UntrustedToken};
use serde::Deserialize;

/// What the old reader read besides the times (the old `AccessClaims`).
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct OldClaims {
    #[serde(default, deserialize_with = "string_or_none")]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<OldAudience>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default, deserialize_with = "string_or_none")]
    jti: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum OldAudience {
    One(String),
    Many(Vec<String>),
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.as_str().map(str::to_owned))
}

#[derive(Debug, Default, Deserialize)]
struct OldExtensions {
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// What a reader made of a token: (kid, exp, iss), or the kind of refusal.
type Read = Result<(Option<String>, Option<i64>, Option<String>), TokenProblem>;

/// The old reader's verdict.
fn old(raw: &str) -> Read {
    let token = UntrustedToken::<OldExtensions>::try_from(raw).map_err(|_| TokenProblem::Malformed)?;
    if token.algorithm() != "RS256" {
        return Err(TokenProblem::UnsupportedAlgorithm);
    }
    if token.header().other_fields.crit {
        return Err(TokenProblem::CriticalHeader);
    }
    let claims: Claims<OldClaims> = token.deserialize_claims_unchecked().map_err(|_| TokenProblem::MalformedClaims)?;
    Ok((token.header().key_id.clone(), claims.expiration.map(|t| t.timestamp()), claims.custom.iss))
}

fn new(raw: &str) -> Read {
    let token = UnverifiedToken::parse(raw)?;
    Ok((token.kid().map(str::to_owned), token.expiry(), token.claimed_issuer().map(str::to_owned)))
}

fn segment(json: &str) -> String {
    Base64UrlUnpadded::encode_string(json.as_bytes())
}

const HEADERS: &[&str] = &[
    r#"{"alg":"RS256","kid":"k1"}"#,
    r#"{"alg":"RS256"}"#,
    r#"{"alg":"RS256","kid":null}"#,
    r#"{"alg":"RS256","kid":7}"#,
    r#"{"alg":"none","kid":"k1"}"#,
    r#"{"alg":"HS256"}"#,
    r#"{"alg":7}"#,
    r#"{"kid":"k1"}"#,
    r#"{"alg":"RS256","crit":["exp"]}"#,
    r#"{"alg":"RS256","crit":null}"#,
    r#"{"alg":"RS256","typ":"at+jwt"}"#,
    r#"{"alg":"RS256","typ":1}"#,
    r#"{"alg":"RS256","cty":"JSON"}"#,
    r#"{"alg":"RS256","cty":"JWT"}"#,
    r#"{"alg":"RS256","jku":"https://evil.example/jwks"}"#,
    r#"{"alg":"RS256","jku":false}"#,
    r#"{"alg":"RS256","x5u":[]}"#,
    r#"{"alg":"RS256","x5t":"c2hvcnQ"}"#,
    r#"{"alg":"RS256","x5t":"AAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
    r#"{"alg":"RS256","x5t#S256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
    r#"{"alg":"RS256","x5t#S256":"AAAA"}"#,
    r#"{"alg":"RS256","jwk":{"kty":"RSA"},"x5c":["AAAA"]}"#,
    r#"{"alg":"RS256","alg":"RS256"}"#,
    r#"{"alg":"RS256","kid":"a","kid":"b"}"#,
    r#"["RS256"]"#,
    r#"not json"#,
];

const CLAIMS: &[&str] = &[
    r#"{"iss":"https://i/","sub":"u","aud":"a","exp":4102444800}"#,
    r#"{"iss":"https://i/","aud":["a","b"],"exp":4102444800,"nbf":1,"iat":1}"#,
    r#"{"iss":"https://i/","exp":4102444800.9}"#,
    r#"{"iss":"https://i/","exp":-1}"#,
    r#"{"iss":"https://i/","exp":"4102444800"}"#,
    r#"{"iss":"https://i/","exp":null}"#,
    r#"{"iss":"https://i/","exp":1e300}"#,
    r#"{"iss":"https://i/","exp":18446744073709551615}"#,
    r#"{"iss":"https://i/","exp":8210266876799}"#,
    r#"{"iss":"https://i/","exp":8210266876800}"#,
    r#"{"iss":"https://i/","nbf":true}"#,
    r#"{"iss":7,"exp":1}"#,
    r#"{"iss":null}"#,
    r#"{"aud":7}"#,
    r#"{"aud":["a",7]}"#,
    r#"{"aud":null}"#,
    r#"{"sub":7}"#,
    r#"{"sub":null}"#,
    r#"{"jti":7}"#,
    r#"{"scope":["read"]}"#,
    r#"{"permissions":"read"}"#,
    r#"{"permissions":["read",1]}"#,
    r#"{"permissions":null}"#,
    r#"{"exp":1,"exp":2}"#,
    r#"{"iss":"a","iss":"b"}"#,
    r#"{"jti":"a","jti":"b"}"#,
    r#"{"cnf":{"jkt":"x"}}"#,
    r#"{}"#,
    r#"[]"#,
    r#"7"#,
    r#"{"iss":"https://i/""#,
];

/// Claims whose only oddity is a repeated member the old reader did not model, or a nested one.
const REFUSED_HERE_ONLY: &[&str] = &[
    r#"{"cnf":1,"cnf":2}"#,
    r#"{"org":"a","org":"b","exp":1}"#,
    r#"{"cnf":{"jkt":"A","jkt":"B"}}"#,
    r#"{"roles":[{"name":"a","name":"admin"}]}"#,
];

#[test]
fn the_token_reader_agrees_with_jwt_compact_on_every_odd_header_and_claim() {
    let signature = Base64UrlUnpadded::encode_string(&[7u8; 256]);
    let mut compared = 0;
    for header in HEADERS {
        for claims in CLAIMS {
            let raw = format!("{}.{}.{signature}", segment(header), segment(claims));
            assert_eq!(new(&raw), old(&raw), "header {header}, claims {claims}");
            compared += 1;
        }
    }
    for raw in ["a.b", "a.b.c.d", "", "..", "e30.e30.e30=", "e30.e30.!!"] {
        assert_eq!(new(raw).is_ok(), old(raw).is_ok(), "{raw}");
    }
    for claims in REFUSED_HERE_ONLY {
        let raw = format!("{}.{}.{signature}", segment(HEADERS[0]), segment(claims));
        assert!(old(&raw).is_ok(), "{claims}: jwt-compact should accept it");
        assert_eq!(new(&raw).unwrap_err(), TokenProblem::MalformedClaims, "{claims}");
    }
    assert!(compared > 700);
}
