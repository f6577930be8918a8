//! Why machine A has no token to send.

use std::time::Duration;

/// Why [`MachineTokenSource::token`](super::MachineTokenSource::token) has no token to give.
///
/// A source never hands out an expired token: when its token has expired and a new one cannot be
/// made, callers get one of these instead.
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::client::TokenError;
///
/// let error = TokenError::Unavailable {
///     cause: "the issuer answered with HTTP status 503".into(),
///     retry_in: Duration::from_secs(2),
/// };
/// assert!(!error.is_configuration());
/// assert!(error.to_string().contains("503"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The issuer refused the machine secret key (HTTP 401): a configuration error, not retried.
    #[error(
        "the issuer refused the machine secret key (HTTP 401 {code}): check \
         CLERK_MACHINE_SECRET_KEY (the machine's secret key, ak_…, of this issuer)"
    )]
    CredentialsRejected {
        /// The issuer's error code, such as `machine_secret_key_invalid`.
        code: String,
    },
    /// The issuer refused the request itself (another 4xx, such as a reserved claim or a lifetime
    /// out of range): a configuration error, not retried.
    #[error("the issuer refused to create a token (HTTP {status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The issuer's error code.
        code: String,
        /// The issuer's explanation.
        message: String,
    },
    /// No valid token, and creating one failed (the issuer could not be reached, timed out,
    /// answered 5xx or 429, or sent a reply that is not a token). Retried with backoff.
    #[error("no valid machine token: creating one failed ({cause}); next attempt in {retry_in:?}")]
    Unavailable {
        /// What went wrong.
        cause: String,
        /// When the source tries again.
        retry_in: Duration,
    },
}

impl TokenError {
    /// Whether this is a configuration error (a wrong key or request) that retrying cannot fix.
    ///
    /// ```
    /// use tower_machine_auth::client::TokenError;
    ///
    /// let error = TokenError::CredentialsRejected { code: "machine_secret_key_invalid".into() };
    /// assert!(error.is_configuration());
    /// ```
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::CredentialsRejected { .. } | Self::Refused { .. }
        )
    }
}

/// Why [`MachineTokenSource::send`](super::MachineTokenSource::send) did not get a response.
///
/// ```
/// use tower_machine_auth::client::{SendError, TokenError};
///
/// let error = SendError::from(TokenError::CredentialsRejected { code: "x".into() });
/// assert!(error.to_string().contains("machine secret key"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No token to send.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The request failed (connect, timeout, or building it).
    #[error("the request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The request's URL would carry the token in clear; nothing was sent.
    #[error(transparent)]
    InsecureDestination(#[from] InsecureDestination),
}

/// Machine A refused to attach its token to a request: the request's URL is not https, and not
/// plain http to a loopback host (`localhost`, `127.0.0.0/8`, `::1`). Nothing was sent and no
/// token was created.
///
/// Plain http to other hosts is allowed only by
/// [`MachineTokenSourceBuilder::allow_http_host`](super::MachineTokenSourceBuilder::allow_http_host)
/// (one host) or
/// [`MachineTokenSourceBuilder::allow_insecure_http_to_any_host`](super::MachineTokenSourceBuilder::allow_insecure_http_to_any_host).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_machine_auth::client::{MachineTokenSource, SendError};
///
/// let source = MachineTokenSource::builder().machine_secret_key("ak_x").build()?;
/// let http = reqwest::Client::new();
/// let refused = source.send(http.post("http://user:pw@reports.internal/run")).await;
/// let Err(SendError::InsecureDestination(error)) = refused else { panic!("sent") };
/// assert_eq!(error.url(), "http://reports.internal/run");
/// assert!(error.to_string().contains("plain http"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to send a machine token: the request URL {reason}")]
pub struct InsecureDestination {
    /// The URL without its credentials, query or fragment.
    url: String,
    reason: String,
}

impl InsecureDestination {
    pub(crate) fn new(url: String, reason: String) -> Self {
        Self { url, reason }
    }

    /// The refused URL, without its credentials, query or fragment.
    pub fn url(&self) -> &str {
        &self.url
    }
}
