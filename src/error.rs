//! Why a request was rejected, and how that becomes an HTTP response.
//!
//! Every rejection is an [`AuthError`]. Its [`Reason`] is the stable, machine-readable part (the
//! `reason` field of the JSON body); its `Display` text is a short human explanation that never
//! contains the token, a secret, or a claim value taken from the token.
//!
//! | reason | status | `WWW-Authenticate` | body `error` |
//! |---|---|---|---|
//! | `token-missing` | 401 | `Bearer realm="…"` | `unauthorized` |
//! | `malformed-request` | 400 | `Bearer realm="…", error="invalid_request"` | `invalid_request` |
//! | `token-type-mismatch`, `token-invalid`, `token-invalid-receiver`, `token-verification-failed`, `token-expired`, `token-not-active` | 401 | `Bearer realm="…", error="invalid_token"` | `invalid_token` |
//! | `insufficient-scope` | 403 | `Bearer realm="…", error="insufficient_scope"`, plus `scope="…"` listing the route's required scopes when scopes are missing | `insufficient_scope` |
//! | `verifier-unavailable` | 503 + `Retry-After` | none | `temporarily_unavailable` |
//!
//! Every rejection also carries `Content-Type: application/json` and `Cache-Control: no-store`
//! (see [`AuthError::to_response`]). A gRPC request is answered the way gRPC reports errors
//! (see [`AuthError::to_grpc_response`]): HTTP 200 with `grpc-status` 16 (`UNAUTHENTICATED`)
//! where HTTP says 401 or 400, 7 (`PERMISSION_DENIED`) for 403, 14 (`UNAVAILABLE`) for 503, and
//! the same `WWW-Authenticate`.
//!
//! ```
//! use tower_machine_auth::{AuthError, Reason};
//! use tower_machine_auth::error::ClaimMismatch;
//!
//! let error = AuthError::ClaimMismatch(ClaimMismatch::Issuer);
//! assert_eq!(error.reason(), Reason::TokenVerificationFailed);
//! let response: http::Response<String> = error.to_response("api");
//! assert_eq!(response.status(), 401);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="invalid_token""#
//! );
//! let body: serde_json::Value = serde_json::from_str(response.body())?;
//! assert_eq!(body["reason"], "token-verification-failed");
//! assert_eq!(body["error"], "invalid_token");
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Serialize;

/// The header of a gRPC status code.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The header of a gRPC status message.
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// What gRPC percent-encodes in `grpc-message`: everything outside printable ASCII, and `%`.
const GRPC_MESSAGE_ESCAPED: &AsciiSet = &CONTROLS.add(b'%');

/// The stable, machine-readable reason for a rejection: the `reason` field of the response body.
///
/// The strings follow Clerk's `authenticateRequest` reasons where Clerk has one. It displays and
/// serializes as [`as_str`](Self::as_str).
///
/// ```
/// use tower_machine_auth::Reason;
///
/// assert_eq!(Reason::TokenExpired.as_str(), "token-expired");
/// assert_eq!(Reason::TokenExpired.status(), http::StatusCode::UNAUTHORIZED);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No `Authorization` header, or a scheme other than `Bearer` (401).
    TokenMissing,
    /// Several `Authorization` fields, a `Bearer` credential that breaks RFC 6750's grammar, or a
    /// token sent both in the header and as an `access_token` query parameter (400).
    MalformedRequest,
    /// A credential that is not a machine token, or a kind of token this layer does not accept
    /// (401); see [`TypeMismatch`].
    TokenTypeMismatch,
    /// A token that is too long, malformed, badly signed, fails a header check, or lacks or
    /// mistypes a claim (401); see [`InvalidToken`].
    TokenInvalid,
    /// A valid machine token that is not meant for this machine: the verifier's
    /// [own machine id](crate::MachineVerifierBuilder::own_machine_id) is not among its scopes
    /// (401); see [`AuthError::NotForThisMachine`].
    TokenInvalidReceiver,
    /// An authentic token whose issuer, audience or lifetime does not match the configuration
    /// (401); see [`ClaimMismatch`].
    TokenVerificationFailed,
    /// The token's `exp` has passed, allowing for the clock skew (401).
    TokenExpired,
    /// The token's `nbf` or `iat` lies in the future, allowing for the clock skew (401).
    TokenNotActive,
    /// A valid machine token that this route does not admit (403); see [`ScopeDenied`].
    InsufficientScope,
    /// The verification keys or the introspection endpoint are unavailable (503); the request may
    /// be retried. See
    /// [`Unavailable`].
    VerifierUnavailable,
}

impl Reason {
    /// The reason as it appears in response bodies and logs, e.g. `"token-invalid"`.
    ///
    /// ```
    /// use tower_machine_auth::Reason;
    ///
    /// assert_eq!(Reason::InsufficientScope.as_str(), "insufficient-scope");
    /// assert_eq!(Reason::InsufficientScope.to_string(), "insufficient-scope");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TokenMissing => "token-missing",
            Self::MalformedRequest => "malformed-request",
            Self::TokenTypeMismatch => "token-type-mismatch",
            Self::TokenInvalid => "token-invalid",
            Self::TokenInvalidReceiver => "token-invalid-receiver",
            Self::TokenVerificationFailed => "token-verification-failed",
            Self::TokenExpired => "token-expired",
            Self::TokenNotActive => "token-not-active",
            Self::InsufficientScope => "insufficient-scope",
            Self::VerifierUnavailable => "verifier-unavailable",
        }
    }

    /// The HTTP status a rejection with this reason is answered with: 400 for
    /// [`MalformedRequest`](Self::MalformedRequest), 403 for
    /// [`InsufficientScope`](Self::InsufficientScope), 503 for
    /// [`VerifierUnavailable`](Self::VerifierUnavailable), 401 for the others.
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_machine_auth::Reason;
    ///
    /// assert_eq!(Reason::MalformedRequest.status(), StatusCode::BAD_REQUEST);
    /// assert_eq!(Reason::InsufficientScope.status(), StatusCode::FORBIDDEN);
    /// assert_eq!(Reason::VerifierUnavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub const fn status(self) -> StatusCode {
        match self {
            Self::TokenMissing
            | Self::TokenTypeMismatch
            | Self::TokenInvalid
            | Self::TokenInvalidReceiver
            | Self::TokenVerificationFailed
            | Self::TokenExpired
            | Self::TokenNotActive => StatusCode::UNAUTHORIZED,
            Self::MalformedRequest => StatusCode::BAD_REQUEST,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::VerifierUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code of a rejection sent to a gRPC client: 7 (`PERMISSION_DENIED`) for
    /// [`InsufficientScope`](Self::InsufficientScope), 14 (`UNAVAILABLE`) for
    /// [`VerifierUnavailable`](Self::VerifierUnavailable), 16 (`UNAUTHENTICATED`) for the others
    /// (a malformed `authorization` is a credential the server cannot use).
    ///
    /// ```
    /// use tower_machine_auth::Reason;
    ///
    /// assert_eq!(Reason::TokenExpired.grpc_status(), 16);
    /// assert_eq!(Reason::InsufficientScope.grpc_status(), 7);
    /// assert_eq!(Reason::VerifierUnavailable.grpc_status(), 14);
    /// ```
    pub const fn grpc_status(self) -> u16 {
        match self {
            Self::InsufficientScope => 7,
            Self::VerifierUnavailable => 14,
            _ => 16,
        }
    }

    /// The RFC 6750 error code, used in `WWW-Authenticate` and in the body's `error` field.
    const fn error_code(self) -> &'static str {
        match self {
            Self::TokenMissing => "unauthorized",
            Self::MalformedRequest => "invalid_request",
            Self::InsufficientScope => "insufficient_scope",
            Self::VerifierUnavailable => "temporarily_unavailable",
            _ => "invalid_token",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a request was not authenticated.
///
/// The layer turns it into a response with [`to_response`](Self::to_response) (see the
/// [module docs](self)), which also puts the error into that response's extensions, so outer
/// layers can log or count rejections by cause. [`MachineVerifier::verify`] and
/// [`MachineVerifier::authenticate`] return it directly.
///
/// [`MachineVerifier::verify`]: crate::MachineVerifier::verify
/// [`MachineVerifier::authenticate`]: crate::MachineVerifier::authenticate
///
/// ```
/// use tower_machine_auth::{AuthError, Reason};
///
/// let error = AuthError::MissingCredential;
/// assert_eq!(error.reason(), Reason::TokenMissing);
/// let response: http::Response<String> = error.to_response("api");
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="api""#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header was sent, or its scheme is not `Bearer`. Also the rejection of
    /// the Axum extractor for [`AuthenticatedMachine`](crate::AuthenticatedMachine) when the
    /// request carries no identity.
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    MissingCredential,
    /// The request's credential breaks RFC 6750's grammar, or is sent more than once.
    #[error("malformed request: {0}")]
    MalformedRequest(MalformedRequest),
    /// The credential is not a machine token this verifier accepts.
    #[error("not an accepted machine token: {0}")]
    TokenTypeMismatch(TypeMismatch),
    /// The token is too long, malformed, badly signed, fails a header check, or lacks or mistypes
    /// a claim.
    #[error("invalid token: {0}")]
    InvalidToken(InvalidToken),
    /// The token is authentic but its claims do not match the verifier's configuration.
    #[error("token rejected: {0}")]
    ClaimMismatch(ClaimMismatch),
    /// The token is valid but not meant for this machine: the verifier's
    /// [own machine id](crate::MachineVerifierBuilder::own_machine_id) is not among the token's
    /// scopes (JWT `scopes`, else `aud`; an opaque token's `scopes`). In Clerk's model machine A
    /// may call machine B only when B is among A's scoped machines.
    #[error("the token is not meant for this machine: its scopes do not include this machine's id")]
    NotForThisMachine,
    /// The token has expired: its `exp` is at or before now minus the clock skew.
    #[error("the token has expired")]
    Expired,
    /// The token is not valid yet: its `nbf` or `iat` lies after now plus the clock skew.
    #[error("the token is not valid yet")]
    NotYetActive,
    /// The machine is authenticated but this route does not admit it.
    #[error("forbidden: {0}")]
    InsufficientScope(ScopeDenied),
    /// The verifier cannot decide now: its JWKS keys are not loaded or too stale, or the
    /// introspection endpoint for opaque tokens is failing.
    #[error("verifier unavailable: {cause}")]
    Unavailable {
        /// What is unavailable.
        cause: Unavailable,
        /// When the client may retry (sent as `Retry-After`, in whole seconds, at least 1).
        retry_after: Duration,
    },
}

/// Details of [`AuthError::MalformedRequest`] (400 `malformed-request`).
///
/// ```
/// use tower_machine_auth::error::MalformedRequest;
/// use tower_machine_auth::{AuthError, MachineVerifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = MachineVerifier::from_pem(include_str!("../tests/data/rsa_public.pem"))?;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Bearer ".parse()?);
/// let error = verifier.authenticate(&headers).await.unwrap_err();
/// assert_eq!(error, AuthError::MalformedRequest(MalformedRequest::EmptyToken));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedRequest {
    /// More than one `Authorization` field.
    #[error("several Authorization headers")]
    SeveralAuthorizationHeaders,
    /// `Bearer` with nothing but spaces, or nothing at all, after it.
    #[error("the Bearer credential is empty")]
    EmptyToken,
    /// `Bearer` followed by a tab instead of spaces. (`Bearer` directly followed by another
    /// character, as in `Bearerx`, is a different scheme: [`AuthError::MissingCredential`].)
    #[error("Bearer must be followed by one or more spaces")]
    BadSeparator,
    /// The token holds characters outside RFC 6750's `b64token`, such as a space before a
    /// second word.
    #[error("the Bearer token contains characters outside RFC 6750's b64token grammar")]
    BadTokenCharacters,
    /// The token was sent both in the header and in the `access_token` query parameter.
    #[error("the token was sent both in the header and as an access_token query parameter")]
    SeveralMethods,
}

/// Details of [`AuthError::TokenTypeMismatch`] (401 `token-type-mismatch`).
///
/// A token is told apart by its shape, as Clerk's SDK does: three base64url segments make a JWT,
/// which is a machine token when its `sub` starts with `mch_` and otherwise another kind (a session
/// token, an OAuth access token, or just not a machine's); any other token's prefix (`mt_`,
/// `oat_`, `ak_`) decides. The kind is read before any other check, so a session token gets this
/// reason even when its header would break the machine-token rules.
///
/// ```
/// use tower_machine_auth::error::TypeMismatch;
/// use tower_machine_auth::{AuthError, MachineVerifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_machine_auth::ConfigError> {
/// let verifier = MachineVerifier::from_pem(include_str!("../tests/data/rsa_public.pem"))?;
/// let error = verifier.verify("ak_machine_secret").await.unwrap_err();
/// assert_eq!(error, AuthError::TokenTypeMismatch(TypeMismatch::ApiKey));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeMismatch {
    /// A JWT whose `sub` is not a machine id (`mch_…`), or is absent or not a string.
    #[error("the token's subject is not a machine id (mch_…)")]
    NotAMachineSubject,
    /// A Clerk session token or JWT-template token: a JWT with a `sid` claim or the header `cat`
    /// of a user token (`cl_B7d4PD111AAA`, `cl_B7d4PD222AAA`), and a `sub` that is not `mch_…`.
    #[error("session tokens are not machine tokens")]
    SessionToken,
    /// An opaque token, which this layer does not accept or this verifier has no introspection
    /// endpoint for.
    #[error("opaque machine tokens are not accepted here")]
    OpaqueNotAccepted,
    /// A JWT, which this layer does not accept or this verifier has no key source for.
    #[error("JWT machine tokens are not accepted here")]
    JwtNotAccepted,
    /// An API key (`ak_…`), for example a machine secret key sent by mistake.
    #[error("API keys (ak_…) are not machine tokens")]
    ApiKey,
    /// A Clerk instance secret key (`sk_test_…`, `sk_live_…`) or publishable key (`pk_test_…`,
    /// `pk_live_…`) sent by mistake; refused without any network call.
    #[error("Clerk secret and publishable keys are not machine tokens")]
    ClerkKey,
    /// An OAuth access token: opaque `oat_…`, or a JWT with the header `typ: at+jwt` (RFC 9068)
    /// and a `sub` that is not `mch_…`.
    #[error("OAuth access tokens are not machine tokens")]
    OAuthToken,
    /// A token of no known shape.
    #[error("the token is neither a JWT nor an opaque machine token")]
    UnknownFormat,
}

/// Details of [`AuthError::InvalidToken`] (401 `token-invalid`).
///
/// ```
/// use tower_machine_auth::error::InvalidToken;
/// use tower_machine_auth::{AuthError, MachineVerifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_machine_auth::ConfigError> {
/// let verifier = MachineVerifier::from_pem(include_str!("../tests/data/rsa_public.pem"))?;
/// let too_long = "a".repeat(8 * 1024 + 1);
/// let error = verifier.verify(&too_long).await.unwrap_err();
/// assert_eq!(error, AuthError::InvalidToken(InvalidToken::TooLong));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The token is longer than 8 KiB (8192 bytes); checked before any decoding.
    #[error("the token is too long")]
    TooLong,
    /// The token is not a well-formed compact JWS: a part that is not base64url or not a JSON
    /// object, or a `kid` that is not a string of at most 256 bytes.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// A JSON object in the token repeats a member name.
    #[error("the token repeats a header or claim name")]
    DuplicateMember,
    /// The `alg` is absent, not a string, unknown, symmetric (`HS*`), or `none`: not an
    /// [`Algorithm`](crate::Algorithm).
    #[error("the token's algorithm is not supported")]
    UnsupportedAlgorithm,
    /// The `alg` is not in the verifier's allowlist (see
    /// [`MachineVerifierBuilder::algorithms`](crate::MachineVerifierBuilder::algorithms)).
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The key set (a JWKS) needs a `kid` and the token has none.
    #[error("the token has no key id (kid)")]
    MissingKeyId,
    /// No key in the key set has the token's `kid`.
    #[error("no key matches the token's key id")]
    UnknownKeyId,
    /// The selected key (the JWKS key with the token's `kid`, or the PEM key) is not usable with
    /// the token's `alg`.
    #[error("the token's algorithm does not match its key")]
    KeyAlgorithmMismatch,
    /// The `typ` header is present and not `JWT` (compared case-insensitively).
    #[error("the token's typ header is not JWT")]
    TypeHeader,
    /// The `cat` header is present and not Clerk's M2M category (`cl_B7d4PD333AAA`).
    #[error("the token's cat header is not the machine-token category")]
    Category,
    /// The token has a `crit` header (even an empty one).
    #[error("the token has critical header extensions (crit)")]
    CriticalHeader,
    /// The token is encrypted or compressed (`enc` / `zip` / `b64` headers).
    #[error("encrypted, compressed or unencoded-payload tokens are not supported")]
    UnsupportedEncoding,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// A required claim (`sub` or `exp`) is absent.
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an out-of-range value (for example an `exp` that is negative
    /// or after the year 9999).
    #[error("the token's `{0}` claim is malformed")]
    MalformedClaim(&'static str),
    /// The issuer does not know this opaque token (Clerk's 404, or RFC 7662 `active: false`).
    #[error("the token is not active at its issuer")]
    NotActiveAtIssuer,
    /// The issuer says this opaque token was revoked.
    #[error("the token was revoked")]
    Revoked,
    /// The issuer says this opaque token has expired.
    #[error("the token has expired at its issuer")]
    ExpiredAtIssuer,
    /// The introspection endpoint says the token is active, but not an access token (an RFC 7662
    /// `token_type` such as `refresh_token`; see
    /// [`Rfc7662IntrospectorBuilder::allow_token_types`](crate::introspect::Rfc7662IntrospectorBuilder::allow_token_types)).
    #[error("the token is not an access token")]
    NotAnAccessToken,
    /// The issuer's answer about this token could not be used: larger than 64 KiB, not in the
    /// expected shape, or a client error other than "not found" (logged, without the token).
    /// Only this token is refused; the endpoint is not counted as failing.
    #[error("the issuer's answer about the token could not be used")]
    UnusableReply,
}

/// Details of [`AuthError::ClaimMismatch`] (401 `token-verification-failed`).
///
/// These are checked only after the signature, so they describe authentic tokens.
///
/// ```
/// use tower_machine_auth::error::ClaimMismatch;
/// use tower_machine_auth::{AuthError, Reason};
///
/// let error = AuthError::ClaimMismatch(ClaimMismatch::Audience);
/// assert_eq!(error.reason(), Reason::TokenVerificationFailed);
/// assert_eq!(error.to_string(), "token rejected: the audience is not accepted");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimMismatch {
    /// `iss` is absent or differs from the configured
    /// [`issuer`](crate::MachineVerifierBuilder::issuer).
    #[error("the issuer is not accepted")]
    Issuer,
    /// `aud` is absent or names none of the configured
    /// [`audiences`](crate::MachineVerifierBuilder::audiences).
    #[error("the audience is not accepted")]
    Audience,
    /// `exp` lies further ahead than the configured
    /// [`max_token_lifetime`](crate::MachineVerifierBuilder::max_token_lifetime).
    #[error("the token's lifetime exceeds the allowed maximum")]
    LifetimeTooLong,
}

/// Details of [`AuthError::InsufficientScope`] (403 `insufficient-scope`), set by
/// [`MachineAuthLayer::allow_machines`](crate::MachineAuthLayer::allow_machines) and
/// [`MachineAuthLayer::require_scopes`](crate::MachineAuthLayer::require_scopes).
///
/// ```
/// use tower_machine_auth::AuthError;
/// use tower_machine_auth::error::ScopeDenied;
///
/// let error = AuthError::InsufficientScope(ScopeDenied::MissingScopes(vec!["mch_reports".into()]));
/// let response: http::Response<String> = error.to_response("api");
/// assert_eq!(response.status(), 403);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer realm="api", error="insufficient_scope", scope="mch_reports""#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeDenied {
    /// The route admits only certain machines, and this is not one of them.
    #[error("this machine may not call this route")]
    MachineNotAllowed,
    /// The token lacks at least one scope the route requires; holds every scope the route
    /// requires, not only the missing ones.
    #[error("the token lacks a required scope ({})", .0.join(" "))]
    MissingScopes(Vec<String>),
}

/// Details of [`AuthError::Unavailable`] (503 `verifier-unavailable`): a JWKS key source or an
/// introspection endpoint; a PEM key is always available.
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::AuthError;
/// use tower_machine_auth::error::Unavailable;
///
/// let error = AuthError::Unavailable {
///     cause: Unavailable::KeysNotLoaded,
///     retry_after: Duration::from_secs(5),
/// };
/// let response: http::Response<String> = error.to_response("api");
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "5");
/// assert!(response.headers().get("www-authenticate").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// No key set has been fetched yet (the JWKS endpoint has not answered successfully since the
    /// verifier was built).
    #[error("no verification keys have been loaded yet")]
    KeysNotLoaded,
    /// The last good key set is older than the stale window
    /// ([`jwks_max_stale`](crate::MachineVerifierBuilder::jwks_max_stale)) and could not be
    /// refreshed.
    #[error("the verification keys are stale and could not be refreshed")]
    KeysStale,
    /// The introspection endpoint timed out, could not be reached, answered with an unexpected
    /// status, or sent a reply that is not what its protocol promises.
    #[error("the token introspection endpoint failed")]
    IntrospectionFailed,
    /// The introspection endpoint refused our own credentials (the machine or instance secret
    /// key, or the RFC 7662 client credentials): a configuration error, logged loudly.
    #[error("the token introspection endpoint refused the verifier's credentials")]
    IntrospectionCredentialsRejected,
    /// The introspection endpoint's URL answered 404 without the endpoint's "no such token"
    /// answer (for Clerk, a 404 without the error code `resource_not_found`): the configured
    /// URL's path is probably wrong (`CLERK_API_URL=http://host/api`, say). Logged as an error
    /// naming the URL.
    #[error("the token introspection endpoint was not found at the configured URL")]
    IntrospectionNotFound,
    /// The introspection endpoint failed repeatedly; calls are paused for a while.
    #[error("the token introspection endpoint is failing; calls are paused")]
    CircuitOpen,
}

impl From<InvalidToken> for AuthError {
    fn from(error: InvalidToken) -> Self {
        Self::InvalidToken(error)
    }
}

impl AuthError {
    /// The stable reason for this rejection.
    ///
    /// ```
    /// use tower_machine_auth::{AuthError, Reason};
    ///
    /// assert_eq!(AuthError::Expired.reason(), Reason::TokenExpired);
    /// assert_eq!(AuthError::NotYetActive.reason(), Reason::TokenNotActive);
    /// ```
    pub fn reason(&self) -> Reason {
        match self {
            Self::MissingCredential => Reason::TokenMissing,
            Self::MalformedRequest(_) => Reason::MalformedRequest,
            Self::TokenTypeMismatch(_) => Reason::TokenTypeMismatch,
            Self::InvalidToken(_) => Reason::TokenInvalid,
            Self::ClaimMismatch(_) => Reason::TokenVerificationFailed,
            Self::NotForThisMachine => Reason::TokenInvalidReceiver,
            Self::Expired => Reason::TokenExpired,
            Self::NotYetActive => Reason::TokenNotActive,
            Self::InsufficientScope(_) => Reason::InsufficientScope,
            Self::Unavailable { .. } => Reason::VerifierUnavailable,
        }
    }

    /// The HTTP status of the rejection response: [`Reason::status`] of [`reason`](Self::reason).
    ///
    /// ```
    /// use tower_machine_auth::AuthError;
    ///
    /// assert_eq!(AuthError::MissingCredential.status(), http::StatusCode::UNAUTHORIZED);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.reason().status()
    }

    /// Builds the rejection response of the response contract (see the [module docs](self)).
    ///
    /// - The status is [`status`](Self::status).
    /// - The body is JSON, `{"error": …, "reason": …, "message": …}`: the error code of the
    ///   module docs' table, the [`Reason`], and this error's `Display` text.
    /// - Headers: `Content-Type: application/json`, `Cache-Control: no-store`, a
    ///   `WWW-Authenticate` challenge (except for 503), and for [`AuthError::Unavailable`] a
    ///   `Retry-After` in whole seconds (at least 1).
    /// - `realm` is the `realm` parameter of the challenge; `"` and `\` in it are escaped and
    ///   characters other than printable ASCII and spaces are dropped.
    /// - A clone of the error is stored in the response's extensions.
    ///
    /// ```
    /// use tower_machine_auth::AuthError;
    ///
    /// let response: http::Response<String> = AuthError::Expired.to_response("cron");
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(
    ///     response.headers()["www-authenticate"],
    ///     r#"Bearer realm="cron", error="invalid_token""#
    /// );
    /// assert_eq!(response.headers()["cache-control"], "no-store");
    /// assert_eq!(response.extensions().get::<AuthError>(), Some(&AuthError::Expired));
    /// ```
    pub fn to_response<B: From<String>>(&self, realm: &str) -> Response<B> {
        let reason = self.reason();
        let body = serde_json::json!({
            "error": reason.error_code(),
            "reason": reason,
            "message": self.to_string(),
        })
        .to_string();
        let mut response = self.response_with(realm, B::from(body));
        *response.status_mut() = reason.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    /// Builds the rejection as an RFC 9457 problem document (`Content-Type:
    /// application/problem+json`): `type` is `about:blank`, `title` the status's reason phrase,
    /// `status` the [`status`](Self::status), `detail` this error's `Display` text, and the
    /// extension members `reason` (the [`Reason`]) and `error` (the error code of the module
    /// docs' table). The status and the other headers are those of
    /// [`to_response`](Self::to_response).
    ///
    /// [`MachineAuthLayer::problem_details`](crate::MachineAuthLayer::problem_details) makes a
    /// layer answer this way.
    ///
    /// ```
    /// use tower_machine_auth::AuthError;
    ///
    /// let response: http::Response<String> = AuthError::Expired.to_problem_response("cron");
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["content-type"], "application/problem+json");
    /// assert_eq!(
    ///     response.headers()["www-authenticate"],
    ///     r#"Bearer realm="cron", error="invalid_token""#
    /// );
    /// let problem: serde_json::Value = serde_json::from_str(response.body())?;
    /// assert_eq!(problem, serde_json::json!({
    ///     "type": "about:blank",
    ///     "title": "Unauthorized",
    ///     "status": 401,
    ///     "detail": "the token has expired",
    ///     "reason": "token-expired",
    ///     "error": "invalid_token",
    /// }));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn to_problem_response<B: From<String>>(&self, realm: &str) -> Response<B> {
        let reason = self.reason();
        let status = reason.status();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or(""),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "reason": reason,
            "error": reason.error_code(),
        })
        .to_string();
        let mut response = self.response_with(realm, B::from(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }

    /// Builds the rejection as gRPC sends it (a "trailers-only" response): HTTP 200 with
    /// `Content-Type: application/grpc`, `grpc-status` the [`Reason::grpc_status`], and
    /// `grpc-message` the reason and this error's `Display` text (`token-expired: the token has
    /// expired`), percent-encoded as gRPC requires. The body is `B::default()`, which must be
    /// empty: the status travels in the headers, and the stream ends with them. The other headers
    /// are those of [`to_response`](Self::to_response): `WWW-Authenticate`, `Cache-Control`,
    /// `Retry-After`; a clone of the error is in the extensions.
    ///
    /// [`MachineAuthLayer`](crate::MachineAuthLayer) answers gRPC requests this way.
    ///
    /// ```
    /// use tower_machine_auth::AuthError;
    ///
    /// let response: http::Response<String> = AuthError::Expired.to_grpc_response("cron");
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["content-type"], "application/grpc");
    /// assert_eq!(response.headers()["grpc-status"], "16");
    /// assert_eq!(response.headers()["grpc-message"], "token-expired: the token has expired");
    /// assert_eq!(
    ///     response.headers()["www-authenticate"],
    ///     r#"Bearer realm="cron", error="invalid_token""#
    /// );
    /// assert!(response.body().is_empty());
    /// ```
    pub fn to_grpc_response<B: Default>(&self, realm: &str) -> Response<B> {
        let reason = self.reason();
        let mut response = self.response_with(realm, B::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(GRPC_STATUS, HeaderValue::from(reason.grpc_status()));
        let message = format!("{reason}: {self}");
        let message = utf8_percent_encode(&message, GRPC_MESSAGE_ESCAPED).to_string();
        if let Ok(message) = HeaderValue::try_from(message) {
            headers.insert(GRPC_MESSAGE, message);
        }
        response
    }

    /// A response with `body` and the headers every rejection has (status 200, to be set).
    fn response_with<B>(&self, realm: &str, body: B) -> Response<B> {
        let mut response = Response::new(body);
        self.complete(&mut response, realm);
        response
    }

    /// Adds what every rejection carries, whoever built its body: the challenge and
    /// `Cache-Control: no-store` (replacing any), for 503 a `Retry-After` (unless set), and a
    /// clone of the error in the extensions.
    pub(crate) fn complete<B>(&self, response: &mut Response<B>, realm: &str) {
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge(realm) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if let Self::Unavailable { retry_after, .. } = self
            && !headers.contains_key(RETRY_AFTER)
        {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
        }
        response.extensions_mut().insert(self.clone());
    }

    /// The `WWW-Authenticate` challenge, or `None` for 503.
    fn challenge(&self, realm: &str) -> Option<HeaderValue> {
        let reason = self.reason();
        let mut challenge = format!("Bearer realm=\"{}\"", quoted_string_content(realm));
        match self {
            Self::MissingCredential => {}
            Self::Unavailable { .. } => return None,
            Self::InsufficientScope(ScopeDenied::MissingScopes(scopes)) => {
                challenge.push_str(", error=\"insufficient_scope\", scope=\"");
                challenge.push_str(&quoted_string_content(&scopes.join(" ")));
                challenge.push('"');
            }
            _ => {
                challenge.push_str(", error=\"");
                challenge.push_str(reason.error_code());
                challenge.push('"');
            }
        }
        // Only printable ASCII went in, so this cannot fail; fall back to a bare challenge anyway.
        Some(
            HeaderValue::try_from(challenge).unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
        )
    }
}

/// Escapes a value for an HTTP quoted-string, dropping anything that is not printable ASCII.
fn quoted_string_content(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().filter(|c| c.is_ascii_graphic() || *c == ' ') {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A configuration mistake found when a verifier is built
/// ([`MachineVerifierBuilder::build`](crate::MachineVerifierBuilder::build)) or a layer is
/// configured ([`MachineAuthLayer::allow_machines`](crate::MachineAuthLayer::allow_machines)).
///
/// Its `Display` text says what to set or change; there is nothing else to inspect.
///
/// ```
/// use tower_machine_auth::MachineVerifier;
///
/// let error = MachineVerifier::builder().build().unwrap_err();
/// assert!(error.to_string().contains("CLERK_JWT_KEY"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(response: &Response<String>, name: &str) -> Option<String> {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn missing_credential_has_a_bare_challenge() {
        let response: Response<String> = AuthError::MissingCredential.to_response("api");
        assert_eq!(response.status(), 401);
        assert_eq!(
            header(&response, "www-authenticate").unwrap(),
            r#"Bearer realm="api""#
        );
        assert_eq!(header(&response, "cache-control").unwrap(), "no-store");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["reason"], "token-missing");
    }

    #[test]
    fn unavailable_has_retry_after_and_no_challenge() {
        let error = AuthError::Unavailable {
            cause: Unavailable::KeysNotLoaded,
            retry_after: Duration::from_secs(7),
        };
        let response: Response<String> = error.to_response("api");
        assert_eq!(response.status(), 503);
        assert_eq!(header(&response, "retry-after").unwrap(), "7");
        assert!(header(&response, "www-authenticate").is_none());
        assert_eq!(response.extensions().get::<AuthError>(), Some(&error));
    }

    #[test]
    fn scope_challenge_lists_required_scopes_and_escapes_the_realm() {
        let error = AuthError::InsufficientScope(ScopeDenied::MissingScopes(vec![
            "mch_a".into(),
            "mch_b".into(),
        ]));
        let response: Response<String> = error.to_response("my \"realm\"\n");
        assert_eq!(response.status(), 403);
        assert_eq!(
            header(&response, "www-authenticate").unwrap(),
            r#"Bearer realm="my \"realm\"", error="insufficient_scope", scope="mch_a mch_b""#
        );
    }
}
