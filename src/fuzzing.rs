//! Entry points into the crate's own parsers for the fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Not a public API: hidden from the docs, exempt from semver, off by default. Each function is a
//! thin call of one crate-private parser, made the way the crate makes it, and returns plain data
//! so that a target can check its invariants. Keys, verifiers and introspectors are built by the
//! targets once per process; nothing here does I/O.

use std::fmt;

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::algorithm::AlgorithmSet;
use crate::error::{AuthError, InvalidToken, TypeMismatch};
use crate::introspect::{IntrospectedToken, Rfc7662Introspector};
use crate::jwt::{JwtRules, UnverifiedJwt};
use crate::keys::{self, VerifyingKey};
use crate::{Algorithm, AuthenticatedMachine, credential};
use machine_auth_core::strict_json::{self, StrictJsonError};

/// The bearer token of a request's `Authorization` headers, read as the layer reads it: one
/// header, the `Bearer` scheme, then RFC 6750's `b64token` grammar.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
/// use tower_machine_auth::fuzzing::bearer_token;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  mt_123"));
/// assert_eq!(bearer_token(&headers).unwrap(), "mt_123");
/// ```
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let bearer = credential::bearer_credential(headers)?;
    credential::b64token(bearer.token)
}

/// The kind of a token, told apart as the verifier does: `"jwt"` or `"opaque machine token"`, or
/// the kind of token it is instead.
///
/// ```
/// use tower_machine_auth::fuzzing::token_kind;
///
/// assert_eq!(token_kind("a.b.c"), Ok("jwt"));
/// assert_eq!(token_kind("mt_1"), Ok("opaque machine token"));
/// assert!(token_kind("ak_1").is_err());
/// ```
pub fn token_kind(token: &str) -> Result<&'static str, TypeMismatch> {
    credential::classify(token).and_then(|kind| match kind {
        credential::TokenKind::Jwt => Ok("jwt"),
        credential::TokenKind::OpaqueMachineToken => Ok("opaque machine token"),
        credential::TokenKind::ClerkKey(mismatch) => Err(mismatch),
    })
}

/// Parses a JSON object with the strict reader (no member name repeated at any depth); the error
/// is `"syntax"`, `"duplicate member"` or `"not an object"`.
///
/// ```
/// use tower_machine_auth::fuzzing::strict_json_object;
///
/// assert!(strict_json_object(br#"{"a":[{"b":1}]}"#).is_ok());
/// assert_eq!(strict_json_object(br#"{"a":1,"a":1}"#), Err("duplicate member"));
/// assert_eq!(strict_json_object(b"[]"), Err("not an object"));
/// ```
pub fn strict_json_object(bytes: &[u8]) -> Result<Map<String, Value>, &'static str> {
    strict_json::parse_object(bytes).map_err(|error| match error {
        StrictJsonError::Syntax => "syntax",
        StrictJsonError::DuplicateMember => "duplicate member",
        StrictJsonError::NotAnObject => "not an object",
    })
}

/// A public key as the verifier holds it: parsed once for each algorithm it may verify.
pub struct Key(VerifyingKey);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Key {
    /// The JWK `kid`; `None` for a PEM key.
    ///
    /// ```
    /// let pem = include_str!("../tests/data/rsa_public.pem");
    /// let key = tower_machine_auth::fuzzing::key_from_pem(pem, &[tower_machine_auth::Algorithm::RS256])?;
    /// assert_eq!(key.kid(), None);
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn kid(&self) -> Option<&str> {
        self.0.kid.as_deref()
    }

    /// The algorithms this key verifies, in [`Algorithm::ALL`] order.
    ///
    /// ```
    /// use tower_machine_auth::Algorithm;
    /// let pem = include_str!("../tests/data/rsa_public.pem");
    /// let key = tower_machine_auth::fuzzing::key_from_pem(pem, &[Algorithm::PS256, Algorithm::RS256])?;
    /// assert_eq!(key.algorithms(), [Algorithm::RS256, Algorithm::PS256]);
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn algorithms(&self) -> Vec<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(|&algorithm| self.0.supports(algorithm))
            .collect()
    }

    /// A digest of the key material and its algorithms: equal for equal keys.
    ///
    /// ```
    /// use tower_machine_auth::{Algorithm, fuzzing::key_from_pem};
    /// let pem = include_str!("../tests/data/rsa_public.pem");
    /// let a = key_from_pem(pem, &[Algorithm::RS256])?;
    /// let b = key_from_pem(&pem.replace('\n', "\\n"), &[Algorithm::RS256])?;
    /// assert_eq!(a.fingerprint(), b.fingerprint());
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn fingerprint(&self) -> [u8; 32] {
        self.0.fingerprint
    }

    /// Whether `signature` over `message` is valid under `algorithm` with this key.
    ///
    /// ```
    /// use tower_machine_auth::{Algorithm, fuzzing::key_from_pem};
    /// let pem = include_str!("../tests/data/rsa_public.pem");
    /// let key = key_from_pem(pem, &[Algorithm::RS256])?;
    /// assert!(!key.verify(Algorithm::RS256, b"message", &[0; 256]));
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn verify(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify(algorithm, message, signature)
    }
}

/// Loads a PEM (or bare base64 SPKI) public key as `CLERK_JWT_KEY` is loaded, for the allowed
/// `algorithms`.
///
/// ```
/// use tower_machine_auth::{Algorithm, fuzzing::key_from_pem};
///
/// let pem = include_str!("../tests/data/rsa_public.pem");
/// assert!(key_from_pem(pem, &[Algorithm::RS256]).is_ok());
/// assert!(key_from_pem(pem, &[Algorithm::ES256]).is_err());
/// assert!(key_from_pem("-----BEGIN PRIVATE KEY-----", &[Algorithm::RS256]).is_err());
/// ```
pub fn key_from_pem(text: &str, algorithms: &[Algorithm]) -> Result<Key, crate::ConfigError> {
    keys::key_from_pem(text, AlgorithmSet::of(algorithms)).map(Key)
}

/// Whether two texts give the same public key, as the configuration check compares them.
///
/// ```
/// let pem = include_str!("../tests/data/rsa_public.pem");
/// assert!(tower_machine_auth::fuzzing::same_public_key(pem, &pem.replace('\n', "\\n")));
/// ```
pub fn same_public_key(a: &str, b: &str) -> bool {
    keys::same_public_key(a, b)
}

/// The keys of a JWK Set that the verifier would keep, and why the others were skipped.
#[derive(Debug)]
pub struct JwkSet {
    /// The usable keys.
    pub keys: Vec<Key>,
    /// `(kid, reason)` for every entry that was skipped.
    pub skipped: Vec<(Option<String>, &'static str)>,
}

/// Parses a JWKS document as a JWKS fetch does, keeping the keys usable with `algorithms`; the
/// error says why the whole document was refused.
///
/// ```
/// use tower_machine_auth::{Algorithm, fuzzing::jwk_set};
///
/// assert!(jwk_set(br#"{"keys":[{"kty":"oct","kid":"a","k":"AA"}]}"#, &[Algorithm::RS256]).is_err());
/// assert!(jwk_set(b"{}", &[Algorithm::RS256]).is_err());
/// ```
pub fn jwk_set(body: &[u8], algorithms: &[Algorithm]) -> Result<JwkSet, String> {
    keys::parse_jwk_set(body, AlgorithmSet::of(algorithms))
        .map(|parsed| JwkSet {
            keys: parsed.keys.into_iter().map(Key).collect(),
            skipped: parsed.skipped,
        })
        .map_err(|error| error.to_string())
}

/// What an M2M JWT must satisfy besides its signature (the verifier's rules).
#[derive(Debug, Clone)]
pub struct JwtChecks {
    /// Algorithms a token may use.
    pub algorithms: Vec<Algorithm>,
    /// Allowed clock skew, in milliseconds.
    pub leeway_ms: i64,
    /// The required `iss`, if any.
    pub issuer: Option<String>,
    /// Accepted audiences; none means any.
    pub audiences: Vec<String>,
    /// The longest accepted `exp - now`, in milliseconds.
    pub max_lifetime_ms: Option<i64>,
}

/// Verifies a JWT-shaped token with one key at `now_ms` (Unix milliseconds) on the verifier's
/// JWT path (header, kind, signature, then claims), without its cache or receiver check.
///
/// ```
/// use tower_machine_auth::{Algorithm, AuthError, fuzzing::{JwtChecks, key_from_pem, verify_jwt}};
///
/// let pem = include_str!("../tests/data/rsa_public.pem");
/// let key = key_from_pem(pem, &[Algorithm::RS256])?;
/// let checks = JwtChecks {
///     algorithms: vec![Algorithm::RS256],
///     leeway_ms: 5_000,
///     issuer: None,
///     audiences: Vec::new(),
///     max_lifetime_ms: None,
/// };
/// // {"alg":"none"}.{"sub":"mch_a"}.
/// let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtY2hfYSJ9.AA";
/// assert!(matches!(verify_jwt(token, &key, &checks, 0), Err(AuthError::InvalidToken(_))));
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
pub fn verify_jwt(
    token: &str,
    key: &Key,
    checks: &JwtChecks,
    now_ms: i64,
) -> Result<AuthenticatedMachine, AuthError> {
    let rules = JwtRules {
        algorithms: AlgorithmSet::of(&checks.algorithms),
        leeway_ms: checks.leeway_ms,
        issuer: checks.issuer.clone(),
        audiences: checks.audiences.clone(),
        max_lifetime_ms: checks.max_lifetime_ms,
    };
    if token.len() > credential::MAX_TOKEN_LEN {
        return Err(AuthError::InvalidToken(InvalidToken::TooLong));
    }
    UnverifiedJwt::parse(token, &rules)?
        .verify(&key.0, &rules, now_ms, || {})
        .map(|verified| verified.machine)
}

/// Reads the 200 reply of Clerk's `/m2m_tokens/verify`: the token's data, or why it is not
/// valid; the outer error is an unusable reply (the verifier refuses that one token, 401
/// `token-invalid`).
///
/// ```
/// use tower_machine_auth::fuzzing::clerk_reply;
///
/// assert!(clerk_reply(b"<html>").is_err());
/// ```
pub fn clerk_reply(body: &[u8]) -> Result<Result<IntrospectedToken, AuthError>, String> {
    crate::introspect::clerk::machine_token(body).map_err(|error| error.to_string())
}

/// Reads the 200 reply of an RFC 7662 introspection endpoint with `introspector`'s issuer and
/// audience checks: the token's data, or why it is not valid; the outer error is an unusable
/// reply (the verifier refuses that one token, 401 `token-invalid`).
///
/// ```
/// use tower_machine_auth::fuzzing::rfc7662_reply;
/// use tower_machine_auth::introspect::Rfc7662Introspector;
///
/// let introspector = Rfc7662Introspector::builder("https://auth.example.com/introspect").build()?;
/// let token = rfc7662_reply(&introspector, br#"{"active":true,"sub":"mch_a"}"#).unwrap().unwrap();
/// assert_eq!(token.subject, "mch_a");
/// assert!(rfc7662_reply(&introspector, br#"{"active":"true"}"#).is_err());
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
pub fn rfc7662_reply(
    introspector: &Rfc7662Introspector,
    body: &[u8],
) -> Result<Result<IntrospectedToken, AuthError>, String> {
    introspector.token(body).map_err(|error| error.to_string())
}
