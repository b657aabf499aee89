//! Every way a request can fail, as typed values.
//!
//! Layers raise the variant that names what they saw; `http::error_response` is the one place a
//! variant becomes a status code, headers and a body. Descriptions are fixed strings so that no
//! token text, claim value or key material can ever reach a response.

use std::fmt;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    NotFound,
    /// The path is known, the method is not: the methods that are, for `Allow`.
    MethodNotAllowed(String),
    /// A required variable is missing, empty or invalid; protected routes refuse to guess.
    Misconfigured(ConfigError),
    /// No `Authorization` header, or a scheme other than Bearer (RFC 6750 §3.1: no error code).
    MissingAuthorization,
    InvalidRequest(RequestProblem),
    InvalidToken(TokenProblem),
    /// A DPoP proof that fails one of RFC 9449 §4.3's checks (`invalid_dpop_proof`).
    InvalidDpopProof(ProofProblem),
    /// The proof carries no nonce, or one this edge did not issue recently (`use_dpop_nonce`):
    /// the client retries with `nonce`, sent in `DPoP-Nonce`.
    UseDpopNonce {
        nonce: String,
    },
    /// The rule's `scopes` then `any_scopes`, space-separated (from configuration, never a token).
    InsufficientScope {
        required: String,
    },
    /// A claim the rule names does not hold (`access_denied`): the claim's name, from the rule.
    ClaimMismatch {
        claim: std::rc::Rc<str>,
    },
    /// The rule's limit for this caller is spent: try again after the binding's period.
    RateLimited {
        retry_after_secs: u64,
    },
    /// The deny list was never read by this isolate and cannot be read now: refused, since
    /// revocation must not fail open.
    DenylistUnavailable,
    /// `DPOP_REPLAY=fleet`: the fleet's memory of used proofs cannot be asked, or refuses to hold
    /// more for the key. Refused: single use must not fail open.
    ReplayStoreUnavailable,
    /// No usable keys anywhere and the issuer cannot be reached right now.
    KeysUnavailable {
        retry_after_secs: u64,
    },
    /// Gateway mode: the origin could not be reached (refused, reset, DNS).
    OriginUnreachable,
    /// Gateway mode: the origin sent no response headers within `ORIGIN_TIMEOUT_SECONDS`.
    OriginTimeout,
    /// An MCP rule's POST body is longer than `MCP_MAX_BODY_BYTES` (this many).
    PayloadTooLarge {
        limit: u64,
    },
    /// An MCP rule's POST body is not plain UTF-8 JSON by its `Content-Type` and `Content-Encoding`.
    UnsupportedMediaType,
    /// An MCP rule was called from a browser `Origin` that `CORS_ALLOWED_ORIGINS` does not list
    /// (DNS rebinding; the MCP transport spec asks servers to validate it).
    OriginNotAllowed,
}

/// A Bearer credential that is not one well-formed token (RFC 6750 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestProblem {
    EmptyCredential,
    MultipleCredentials,
    NotB64Token,
    /// A path an origin could read as another one (`rules::is_ambiguous_path`).
    AmbiguousPath,
    /// An `Upgrade` on a rule without `"websocket": true`, or to something other than a WebSocket.
    UpgradeNotAllowed,
    /// The client's body failed while it was streamed to the origin (a bad chunk, a cut connection).
    ClientBodyFailed,
    /// An MCP rule's POST body is not one JSON-RPC 2.0 message or a batch of them.
    NotJsonRpc,
}

impl RequestProblem {
    pub fn description(self) -> &'static str {
        match self {
            Self::EmptyCredential => "The Bearer credential is empty",
            Self::MultipleCredentials => "More than one credential was sent",
            Self::NotB64Token => "The Bearer credential is not a valid b64token",
            Self::AmbiguousPath => "The path could be read as another path (encoded characters, // or ;)",
            Self::UpgradeNotAllowed => "Upgrade not allowed on this route",
            Self::ClientBodyFailed => "The request body could not be read",
            Self::NotJsonRpc => "The body is not a JSON-RPC 2.0 message or batch",
        }
    }
}

/// Which check a token failed (RFC 6750 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    TooLarge,
    Malformed,
    UnsupportedAlgorithm,
    CriticalHeader,
    UnknownKey,
    /// No `kid`, and the key set holds more than one usable key.
    KeyNotSpecified,
    BadSignature,
    MalformedClaims,
    MissingExpiry,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// `iss` missing, not a string, or not one of the configured issuers.
    UntrustedIssuer,
    WrongAudience,
    /// A DPoP-bound token (`cnf.jkt`) sent as Bearer: it is worthless without its key's proof.
    BoundTokenAsBearer,
    /// The DPoP scheme with a token that is bound to no key.
    UnboundTokenAsDpop,
    /// `DPOP=required` and the token came as Bearer.
    DpopRequired,
    /// A `cnf` claim that is not one `jkt` (mTLS `x5t#S256`, say): a binding this edge cannot check.
    UnsupportedConfirmation,
    /// `cnf.jkt` is not the thumbprint of the key that signed the proof.
    KeyBindingMismatch,
    /// The deny list names the token's subject, id, client or issuer.
    Revoked,
}

impl TokenProblem {
    pub fn description(self) -> &'static str {
        match self {
            Self::TooLarge => "The token is too large",
            Self::Malformed => "The token is not a well-formed JWS compact serialization",
            Self::UnsupportedAlgorithm => "The token algorithm is not supported; RS256 is required",
            Self::CriticalHeader => "The token has critical header parameters that are not supported",
            Self::UnknownKey => "The token is signed with an unknown key",
            Self::KeyNotSpecified => "The token does not name its signing key",
            Self::BadSignature => "The token signature is invalid",
            Self::MalformedClaims => "The token claims are malformed",
            Self::MissingExpiry => "The token has no expiry",
            Self::Expired => "The token is expired",
            Self::NotYetValid => "The token is not valid yet",
            Self::IssuedInFuture => "The token was issued in the future",
            Self::UntrustedIssuer => "The token issuer is not trusted",
            Self::WrongAudience => "The token audience is not accepted",
            Self::BoundTokenAsBearer => "The token is bound to a key; send it with the DPoP scheme and a proof",
            Self::UnboundTokenAsDpop => "The token is not bound to a key; send it with the Bearer scheme",
            Self::DpopRequired => "A DPoP-bound token with its proof is required",
            Self::UnsupportedConfirmation => "The token is bound by a confirmation method that is not supported",
            Self::KeyBindingMismatch => "The token is bound to another key than the one that signed the proof",
            Self::Revoked => "The token is revoked",
        }
    }
}

/// Which check a DPoP proof failed (RFC 9449 §4.3), in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofProblem {
    Missing,
    Multiple,
    TooLarge,
    Malformed,
    WrongType,
    UnsupportedAlgorithm,
    MissingKey,
    PrivateKey,
    /// Not a public key of the kind `alg` names, or an RSA key outside 2048–4096 bits.
    UnusableKey,
    BadSignature,
    BadJti,
    MethodMismatch,
    UrlMismatch,
    MissingIssuedAt,
    TooOld,
    IssuedInFuture,
    AccessTokenHashMismatch,
    Replayed,
    /// This isolate cannot remember another proof of this key now (`dpop::replay`): refused rather
    /// than accepted unremembered.
    ReplayMemoryFull,
}

impl ProofProblem {
    pub fn description(self) -> &'static str {
        match self {
            Self::Missing => "No DPoP proof was sent",
            Self::Multiple => "More than one DPoP proof was sent",
            Self::TooLarge => "The DPoP proof is too large",
            Self::Malformed => "The DPoP proof is not a well-formed JWS compact serialization",
            Self::WrongType => "The DPoP proof typ is not dpop+jwt",
            Self::UnsupportedAlgorithm => "The DPoP proof alg is not one of ES256, RS256, PS256, EdDSA",
            Self::MissingKey => "The DPoP proof header has no jwk",
            Self::PrivateKey => "The DPoP proof jwk holds private key members",
            Self::UnusableKey => "The DPoP proof jwk is not a usable public key for its alg",
            Self::BadSignature => "The DPoP proof signature is invalid",
            Self::BadJti => "The DPoP proof jti is missing, not a string or too long",
            Self::MethodMismatch => "The DPoP proof htm does not match the request method",
            Self::UrlMismatch => "The DPoP proof htu does not match the request URL",
            Self::MissingIssuedAt => "The DPoP proof has no iat",
            Self::TooOld => "The DPoP proof is too old",
            Self::IssuedInFuture => "The DPoP proof was issued in the future",
            Self::AccessTokenHashMismatch => "The DPoP proof ath is missing or not the hash of the access token",
            Self::Replayed => "The DPoP proof was already used",
            Self::ReplayMemoryFull => "Too many DPoP proofs of this key are in use; retry later",
        }
    }
}

/// A configuration variable that cannot be used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: ConfigProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigProblem {
    Missing,
    /// What a valid value looks like.
    Invalid(&'static str),
    /// Which rule of `ROUTES` is wrong, and why. The why may quote the configuration (a secret,
    /// perhaps), so responses name the rule only and the log line carries the detail.
    InvalidRule {
        index: Option<usize>,
        detail: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            ConfigProblem::Missing => write!(f, "{} is required but missing or empty", self.variable),
            ConfigProblem::Invalid(expected) => write!(f, "{} is invalid: {expected}", self.variable),
            ConfigProblem::InvalidRule { index: Some(index), .. } => {
                write!(f, "{} is invalid: {} {index} (the worker's log says why)", self.variable, self.entry_name())
            }
            ConfigProblem::InvalidRule { index: None, .. } => {
                let entries = format!("{}s", self.entry_name());
                write!(f, "{} is invalid: not a JSON array of {entries} (the worker's log says why)", self.variable)
            }
        }
    }
}

impl ConfigError {
    /// What one element of a list variable is called in messages.
    fn entry_name(&self) -> &'static str {
        if self.variable == "ROUTES" {
            "rule"
        } else {
            "entry"
        }
    }
}

impl std::error::Error for ConfigError {}
