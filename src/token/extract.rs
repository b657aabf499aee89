//! Cutting the one token out of an `Authorization` header: `Bearer` (RFC 6750 §2.1) or `DPoP`
//! (RFC 9449 §7.1, the same token68 syntax).

use crate::{
    dpop::policy::DpopMode,
    error::{ApiError, RequestProblem, TokenProblem},
};

/// The scheme a credential came under; it decides which challenge carries the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

/// The token of `Authorization: Bearer <token>` or (unless DPoP is off) `Authorization: DPoP <token>`.
/// Any other scheme is no credential at all.
pub fn credential(authorization: Option<&str>, mode: DpopMode) -> Result<(Scheme, &str), ApiError> {
    let header = authorization.ok_or(ApiError::MissingAuthorization)?;
    let header = header.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = header.split_once([' ', '\t']).unwrap_or((header, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") && mode != DpopMode::Off {
        Scheme::Dpop
    } else {
        return Err(ApiError::MissingAuthorization);
    };
    token68(rest).map(|token| (scheme, token))
}

/// Tokens above this size are refused before any parsing: Auth0 access tokens are a few hundred
/// bytes to a few KiB, and parsing costs grow with input.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Returns the token of `Authorization: Bearer <token>`.
///
/// The runtime joins repeated headers with ", ", so two `Authorization` headers arrive as one
/// value with a separator inside the credential and are refused as more than one credential.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, ApiError> {
    match credential(authorization, DpopMode::Off)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(ApiError::MissingAuthorization),
    }
}

fn token68(rest: &str) -> Result<&str, ApiError> {
    let credential = rest.trim_start_matches([' ', '\t']);
    if credential.is_empty() {
        return Err(ApiError::InvalidRequest(RequestProblem::EmptyCredential));
    }
    if credential.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::InvalidToken(TokenProblem::TooLarge));
    }
    // One pass over the token (a few hundred bytes on every request that carries one): a byte
    // outside b64token is looked at again only to tell a second credential from a bad character.
    let body = credential.trim_end_matches('=');
    if !body.is_empty() && body.bytes().all(|b| B64TOKEN[b as usize]) {
        return Ok(credential);
    }
    if credential.contains([' ', '\t', ',']) {
        return Err(ApiError::InvalidRequest(RequestProblem::MultipleCredentials));
    }
    Err(ApiError::InvalidRequest(RequestProblem::NotB64Token))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`: the bytes of its
/// body, by value.
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_matches_in_any_case() {
        for header in ["Bearer abc.def.ghi", "bearer abc.def.ghi", "BEARER  abc.def.ghi", "Bearer abc.def.ghi "] {
            assert_eq!(bearer_token(Some(header)), Ok("abc.def.ghi"), "{header}");
        }
    }

    #[test]
    fn absent_header_or_other_scheme_is_missing_authorization() {
        for header in [None, Some(""), Some("Basic dXNlcjpwYXNz"), Some("Bearerabc"), Some("Token abc")] {
            assert_eq!(bearer_token(header), Err(ApiError::MissingAuthorization), "{header:?}");
        }
    }

    #[test]
    fn malformed_credentials_are_invalid_requests() {
        let cases = [
            ("Bearer", RequestProblem::EmptyCredential),
            ("Bearer    ", RequestProblem::EmptyCredential),
            ("Bearer a.b.c d.e.f", RequestProblem::MultipleCredentials),
            ("Bearer a.b.c, Bearer d.e.f", RequestProblem::MultipleCredentials),
            ("Bearer a.b.c,d", RequestProblem::MultipleCredentials),
            ("Bearer a.b.c\"", RequestProblem::NotB64Token),
            ("Bearer ===", RequestProblem::NotB64Token),
            ("Bearer a=b", RequestProblem::NotB64Token),
            ("Bearer é", RequestProblem::NotB64Token),
        ];
        for (header, problem) in cases {
            assert_eq!(bearer_token(Some(header)), Err(ApiError::InvalidRequest(problem)), "{header}");
        }
    }

    #[test]
    fn b64token_allows_its_whole_alphabet_and_padding() {
        assert_eq!(bearer_token(Some("Bearer aZ09-._~+/==")), Ok("aZ09-._~+/=="));
    }

    #[test]
    fn dpop_scheme_is_a_credential_unless_dpop_is_off() {
        for mode in [DpopMode::Allowed, DpopMode::Required] {
            assert_eq!(credential(Some("DPoP a.b.c"), mode), Ok((Scheme::Dpop, "a.b.c")));
            assert_eq!(credential(Some("dpop  a.b.c"), mode), Ok((Scheme::Dpop, "a.b.c")));
            assert_eq!(credential(Some("Bearer a.b.c"), mode), Ok((Scheme::Bearer, "a.b.c")));
            assert_eq!(
                credential(Some("DPoP a.b.c, DPoP d.e.f"), mode),
                Err(ApiError::InvalidRequest(RequestProblem::MultipleCredentials))
            );
        }
        assert_eq!(credential(Some("DPoP a.b.c"), DpopMode::Off), Err(ApiError::MissingAuthorization));
    }

    #[test]
    fn oversized_token_is_refused_unparsed() {
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(bearer_token(Some(&big)), Err(ApiError::InvalidToken(TokenProblem::TooLarge)));
        let limit = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
        assert!(bearer_token(Some(&limit)).is_ok());
    }
}
