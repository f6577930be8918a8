//! Opaque tokens: asking their issuer whether they are valid.
//!
//! An opaque token (Clerk's `mt_…`, or any token an OAuth server hands out) carries nothing; only
//! its issuer can say whether it is valid, and it answers at once when the token is revoked. Two
//! [`Introspector`]s are built in:
//!
//! - [`ClerkIntrospector`]: `POST {CLERK_API_URL}/m2m_tokens/verify` with the machine or instance
//!   secret key, as Clerk's SDK does;
//! - [`Rfc7662Introspector`]: any RFC 7662 token introspection endpoint.
//!
//! The verifier adds what every endpoint needs around them: one call per token however many
//! requests carry it at once (single-flight), a circuit breaker (5 consecutive failures pause
//! calls for 10 s), an opt-in result cache, and the mapping to an
//! [`AuthenticatedMachine`](crate::AuthenticatedMachine). Each built-in call has connect and total
//! timeouts, is retried at most once and only when no connection could be made, follows no
//! redirects and reads at most 64 KiB.
//!
//! Only signs that an endpoint cannot serve count toward the circuit breaker: no connection, a
//! timeout, a redirect, a 5xx, 408 or 429 status, the endpoint refusing the verifier's own
//! credentials, and a 404 that is not the endpoint's "no such token" (a wrong URL). A caller can shape the reply about its own token (its claims make it large or
//! deeply nested), so a reply that is larger than 64 KiB, or that is not what the protocol
//! promises, rejects that one token (401 `token-invalid`, with a warning in the log) and never
//! pauses calls for everyone else; so does any other 4xx status.
//!
//! ```
//! use tower_machine_auth::MachineVerifier;
//! use tower_machine_auth::introspect::Rfc7662Introspector;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_machine_auth::ConfigError> {
//! let verifier = MachineVerifier::builder()
//!     .clerk_machine_secret_key("ak_…") // mt_… tokens, checked at Clerk
//!     .introspector(
//!         Rfc7662Introspector::builder("https://auth.example.com/oauth2/introspect")
//!             .client_credentials("my-api", "client-secret")
//!             .build()?,
//!     ) // every other opaque token
//!     .build()?;
//! # Ok(())
//! # }
//! ```

mod breaker;
pub(crate) mod clerk;
mod rfc7662;

pub use breaker::BreakerState;
pub(crate) use breaker::{CircuitBreaker, Permit};
pub use clerk::ClerkIntrospector;
pub use rfc7662::{Rfc7662Introspector, Rfc7662IntrospectorBuilder};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::error::{AuthError, InvalidToken, Unavailable};
use crate::fetch::FetchError;

/// `Retry-After` for requests answered 503 because introspection failed.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The largest introspection reply read.
pub(crate) const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The future an [`Introspector`] returns.
pub type IntrospectionFuture<'a> =
    Pin<Box<dyn Future<Output = Result<IntrospectedToken, AuthError>> + Send + 'a>>;

/// Asks an issuer about an opaque token.
///
/// Implementations answer with the token's data when the issuer says it is valid, and otherwise
/// with the [`AuthError`] to reject the request with: [`AuthError::InvalidToken`] when the issuer
/// does not know the token, or it is revoked or expired; [`AuthError::Unavailable`] when the issuer
/// could not be asked (these count as failures for the circuit breaker; nothing else does).
///
/// Answer [`AuthError::Unavailable`] only for signs that the issuer is down, never for a reply
/// about one token that cannot be used (too large, ill-formed): callers choose their tokens'
/// claims, so such replies must reject only that token, or any caller could pause introspection
/// for everyone.
///
/// ```
/// use tower_machine_auth::AuthError;
/// use tower_machine_auth::error::InvalidToken;
/// use tower_machine_auth::introspect::{IntrospectedToken, IntrospectionFuture, Introspector};
///
/// /// Accepts one hard-coded token (for a test).
/// #[derive(Debug)]
/// struct OneToken;
///
/// impl Introspector for OneToken {
///     fn introspect<'a>(&'a self, token: &'a str) -> IntrospectionFuture<'a> {
///         Box::pin(async move {
///             if token == "opaque-test-token" {
///                 Ok(IntrospectedToken::new("mch_test"))
///             } else {
///                 Err(AuthError::InvalidToken(InvalidToken::NotActiveAtIssuer))
///             }
///         })
///     }
/// }
///
/// let verifier = tower_machine_auth::MachineVerifier::builder().introspector(OneToken).build()?;
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
pub trait Introspector: Send + Sync + fmt::Debug + 'static {
    /// Asks the issuer about `token`.
    fn introspect<'a>(&'a self, token: &'a str) -> IntrospectionFuture<'a>;
}

/// What an issuer says about a valid opaque token.
///
/// The verifier turns it into an [`AuthenticatedMachine`](crate::AuthenticatedMachine) with
/// `token_format: "opaque"`, after checking that `subject` is a machine id and that the token has
/// not expired.
///
/// ```
/// use tower_machine_auth::introspect::IntrospectedToken;
///
/// let token = IntrospectedToken {
///     token_id: "mt_0123".to_owned(),
///     scopes: vec!["mch_reports".to_owned()],
///     ..IntrospectedToken::new("mch_cron")
/// };
/// assert_eq!(token.subject, "mch_cron");
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IntrospectedToken {
    /// Whom the token was issued to; must be a machine id (`mch_…`).
    pub subject: String,
    /// The token's id (Clerk's `mt_…` id, RFC 7662's `jti`), or empty.
    pub token_id: String,
    /// What the token may reach (Clerk's `scopes`, RFC 7662's `scope` split on spaces).
    pub scopes: Vec<String>,
    /// The token's other data, handed to handlers as
    /// [`AuthenticatedMachine::claims`](crate::AuthenticatedMachine::claims).
    pub claims: Map<String, Value>,
    /// When the token expires; `None` if it never does.
    pub expires_at: Option<SystemTime>,
    /// When the token was issued.
    pub issued_at: Option<SystemTime>,
    /// When the token becomes valid.
    pub not_before: Option<SystemTime>,
    /// Who issued the token.
    pub issuer: Option<String>,
}

impl IntrospectedToken {
    /// A token issued to `subject`, with nothing else known.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            ..Self::default()
        }
    }
}

/// The error for a call that failed: 503 for a sign that the endpoint cannot serve (which counts
/// toward the circuit breaker), otherwise the rejection of this one token. Logged without the
/// token or any secret.
pub(crate) fn call_failed(endpoint: &str, error: &FetchError) -> AuthError {
    if is_outage(error) {
        tracing::warn!(endpoint, %error, "token introspection failed");
        unavailable(Unavailable::IntrospectionFailed)
    } else {
        reply_rejected(endpoint, error)
    }
}

/// Whether `error` shows that the endpoint cannot serve: it cannot be reached, is too slow,
/// redirects (not followed, so it cannot serve as configured), fails (5xx), or asks us to slow
/// down (408, 429). Any other status, and any reply, answers the request, and the only part of
/// the request a caller chooses is its token.
pub(crate) fn is_outage(error: &FetchError) -> bool {
    match *error {
        FetchError::Connect
        | FetchError::Timeout
        | FetchError::Network
        | FetchError::Redirect(_) => true,
        FetchError::Status(code) => code == 408 || code == 429 || (500..=599).contains(&code),
        FetchError::TooLarge(_) | FetchError::Invalid(_) => false,
    }
}

/// Rejects the one token whose reply cannot be used (401 `token-invalid`), logging why without
/// the token. It does not count toward the circuit breaker.
pub(crate) fn reply_rejected(endpoint: &str, error: &FetchError) -> AuthError {
    tracing::warn!(
        endpoint,
        %error,
        "token introspection reply not usable: rejecting the token"
    );
    AuthError::InvalidToken(InvalidToken::UnusableReply)
}

/// The error for an endpoint that refused our credentials.
pub(crate) fn credentials_rejected(endpoint: &str, what: &str) -> AuthError {
    tracing::error!(
        endpoint,
        "the token introspection endpoint refused {what}: check it"
    );
    unavailable(Unavailable::IntrospectionCredentialsRejected)
}

/// The error for an endpoint whose URL answered 404 where the endpoint answers about tokens:
/// the configured URL is wrong, which every token meets alike. Logged as an error with the URL
/// (without credentials) and `hint`, what to check.
pub(crate) fn endpoint_not_found(endpoint: &str, hint: &str) -> AuthError {
    tracing::error!(
        endpoint,
        "the token introspection endpoint answered 404 for its own URL, not \"no such token\": \
         {hint}"
    );
    unavailable(Unavailable::IntrospectionNotFound)
}

pub(crate) fn unavailable(cause: Unavailable) -> AuthError {
    AuthError::Unavailable {
        cause,
        retry_after: RETRY_AFTER,
    }
}
