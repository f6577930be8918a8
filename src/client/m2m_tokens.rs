//! Clerk's machine-token API with a machine secret key: `POST /m2m_tokens` and
//! `POST /m2m_tokens/{id}/revoke`, as Clerk's SDK sends them.

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use reqwest::Url;
use serde_json::{Map, Value, json};

use crate::TokenFormat;
use crate::clerk_api::{self, ClerkError};
use crate::error::ConfigError;
use crate::fetch::{self, FetchError, PlainHttp, Timeouts};
use machine_auth_core::strict_json;

/// Longest reply read.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Clerk's machine-token API, called with a machine secret key (`ak_…`): create a token
/// (Clerk's `m2m.createToken`) and revoke one (`m2m.revokeToken`), sending exactly what Clerk's
/// SDK sends, and handing back the token resource Clerk answers with.
///
/// [`MachineTokenSource`](super::MachineTokenSource) creates its tokens through it; use it
/// directly for one-off tokens and for revocation (the `machine-auth` command does). The API URL
/// must be https, or http on a loopback host; redirects are not followed, and the key is hidden
/// from `Debug` output and errors.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_machine_auth::TokenFormat;
/// use tower_machine_auth::client::M2mTokens;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let api = M2mTokens::new("https://api.clerk.com", "ak_machine_secret")?;
/// let created = api
///     .create_token(TokenFormat::Opaque, Some(Duration::from_secs(600)), None)
///     .await?;
/// let id = created["id"].as_str().unwrap_or_default();
/// let revoked = api.revoke_token(id, Some("no longer needed")).await?;
/// assert_eq!(revoked["revoked"], true);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct M2mTokens {
    api_url: String,
    create_url: Url,
    shown: String,
    authorization: HeaderValue,
    client: reqwest::Client,
    plain_http: PlainHttp,
}

impl fmt::Debug for M2mTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("M2mTokens")
            .field("api", &self.shown)
            .finish_non_exhaustive()
    }
}

/// Why a call to Clerk's machine-token API failed. No variant holds the key or a token.
///
/// ```
/// use tower_machine_auth::client::M2mApiError;
///
/// let error = M2mApiError::Refused {
///     api: "https://api.clerk.com/".into(),
///     status: 401,
///     code: "machine_secret_key_invalid".into(),
///     message: "The provided Machine Secret Key is invalid".into(),
/// };
/// assert!(error.to_string().contains("401"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum M2mApiError {
    /// No answer: no connection, a timeout, or the connection broke.
    #[error("cannot reach {api}: {cause}")]
    Unreachable {
        /// The API's URL, without credentials.
        api: String,
        /// What went wrong.
        cause: String,
    },
    /// An answer other than success: Clerk's error (status, code and message), a redirect (not
    /// followed), or an outage (5xx, 408, 429; `code` and `message` are placeholders then).
    #[error("{api} answered {status}: {message} ({code})")]
    Refused {
        /// The API's URL, without credentials.
        api: String,
        /// The HTTP status.
        status: u16,
        /// Clerk's error code, such as `machine_secret_key_invalid`.
        code: String,
        /// Clerk's explanation.
        message: String,
    },
    /// A success whose body is not a JSON object (or is larger than 64 KiB): the URL is likely
    /// not Clerk's Backend API.
    #[error("{api} answered with an unusable reply: {reason}")]
    InvalidReply {
        /// The API's URL, without credentials.
        api: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The id given to [`M2mTokens::revoke_token`] is not a token id (`mt_` followed by letters
    /// and digits): not sent.
    #[error(
        "not a token id: the id is the token resource's `id` (mt_ followed by letters and \
         digits), not the token itself"
    )]
    NotATokenId,
}

impl M2mApiError {
    /// The HTTP status of a [`Refused`](Self::Refused) call.
    ///
    /// ```
    /// use tower_machine_auth::client::M2mApiError;
    ///
    /// assert_eq!(M2mApiError::NotATokenId.status(), None);
    /// ```
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl M2mTokens {
    /// The API at `api_url` (Clerk's is [`DEFAULT_CLERK_API_URL`](crate::DEFAULT_CLERK_API_URL);
    /// a trailing `/v1` is kept), called with `machine_secret_key`, with 2 s connect and 5 s
    /// total timeouts. Fails if the URL is not https (or http on a loopback host), has a query,
    /// or if the key is empty or holds characters not allowed in a header.
    ///
    /// ```
    /// use tower_machine_auth::client::M2mTokens;
    ///
    /// assert!(M2mTokens::new("https://api.clerk.com", "ak_1").is_ok());
    /// assert!(M2mTokens::new("http://127.0.0.1:8787", "ak_1").is_ok());
    /// assert!(M2mTokens::new("http://api.clerk.com", "ak_1").is_err());
    /// assert!(M2mTokens::new("https://api.clerk.com", " ").is_err());
    /// ```
    pub fn new(api_url: &str, machine_secret_key: &str) -> Result<Self, ConfigError> {
        Self::with(
            api_url,
            machine_secret_key,
            Timeouts::default(),
            &PlainHttp::LoopbackOnly,
        )
    }

    /// Like [`new`](Self::new), also letting plain http go to `host` (a host name or IP
    /// address alone, as `MACHINE_AUTH_ALLOW_HTTP_HOST` names it): the local issuer in another
    /// container, say. A warning is logged when it is used.
    ///
    /// ```
    /// use tower_machine_auth::client::M2mTokens;
    ///
    /// assert!(M2mTokens::new("http://issuer:8787", "ak_1").is_err());
    /// assert!(M2mTokens::new_allowing_http_host("http://issuer:8787", "ak_1", "issuer").is_ok());
    /// assert!(M2mTokens::new_allowing_http_host("http://other:8787", "ak_1", "issuer").is_err());
    /// // Quotes, as some environment files keep them, are dropped.
    /// assert!(M2mTokens::new_allowing_http_host("http://issuer:8787", "ak_1", "'issuer'").is_ok());
    /// ```
    pub fn new_allowing_http_host(
        api_url: &str,
        machine_secret_key: &str,
        host: &str,
    ) -> Result<Self, ConfigError> {
        let plain_http = PlainHttp::loopback_and(Some(clerk_api::setting(host)))?;
        let tokens = Self::with(
            api_url,
            machine_secret_key,
            Timeouts::default(),
            &plain_http,
        )?;
        if let Some(host) = plain_http.allowed_host() {
            tracing::warn!(
                api = %tokens.shown,
                %host,
                "plain http is allowed to `{host}`: machine tokens and the machine secret key \
                 sent there cross the network unencrypted; use this only on a network you trust \
                 entirely, such as a docker compose network"
            );
        }
        Ok(tokens)
    }

    pub(crate) fn with(
        api_url: &str,
        machine_secret_key: &str,
        timeouts: Timeouts,
        plain_http: &PlainHttp,
    ) -> Result<Self, ConfigError> {
        let authorization = clerk_api::bearer(
            machine_secret_key,
            "CLERK_MACHINE_SECRET_KEY",
            "no machine secret key: set CLERK_MACHINE_SECRET_KEY (the machine's ak_… key; \
             `machine-auth dev` prints one)",
        )?;
        let create_url = clerk_api::endpoint(api_url, "/m2m_tokens", plain_http)?;
        Ok(Self {
            api_url: api_url.to_owned(),
            shown: fetch::shown(&create_url),
            create_url,
            authorization,
            client: fetch::client(timeouts)?,
            plain_http: plain_http.clone(),
        })
    }

    /// The token creation URL, without credentials: for messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Creates a token for this machine (`POST /m2m_tokens`) and returns Clerk's
    /// `machine_to_machine_token` resource, with the token in `token`. `lifetime` (whole seconds)
    /// and `claims` left out are sent as `null`, as Clerk's SDK does: Clerk's defaults apply.
    ///
    /// A call that could not connect at all is retried once, at once.
    pub async fn create_token(
        &self,
        format: TokenFormat,
        lifetime: Option<Duration>,
        claims: Option<&Map<String, Value>>,
    ) -> Result<Map<String, Value>, M2mApiError> {
        let body = json!({
            "seconds_until_expiration": lifetime.map(|lifetime| lifetime.as_secs()),
            "claims": claims,
            "token_format": format.as_str(),
        });
        self.post(&self.create_url, &body).await
    }

    /// Revokes the token whose resource `id` is `token_id` (`mt_…`, not the token itself) with
    /// `POST /m2m_tokens/{id}/revoke`, and returns the revoked resource. A machine key revokes
    /// only its own tokens.
    pub async fn revoke_token(
        &self,
        token_id: &str,
        reason: Option<&str>,
    ) -> Result<Map<String, Value>, M2mApiError> {
        let token_id = token_id.trim();
        let well_formed = token_id.strip_prefix("mt_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if !well_formed {
            return Err(M2mApiError::NotATokenId);
        }
        let url = clerk_api::endpoint(
            &self.api_url,
            &format!("/m2m_tokens/{token_id}/revoke"),
            &self.plain_http,
        )
        .map_err(|error| M2mApiError::Unreachable {
            api: self.shown.clone(),
            cause: error.to_string(),
        })?;
        self.post(&url, &json!({ "revocation_reason": reason }))
            .await
    }

    async fn post(&self, url: &Url, body: &Value) -> Result<Map<String, Value>, M2mApiError> {
        let request = clerk_api::post_json(&self.client, url, &self.authorization, body);
        let api = || self.shown.clone();
        let (status, reply) = match fetch::send_retrying_connect(request, MAX_REPLY_BYTES).await {
            Ok(answer) => answer,
            Err(FetchError::Redirect(status)) => {
                return Err(M2mApiError::Refused {
                    api: api(),
                    status,
                    code: "redirect".into(),
                    message: "redirects are not followed (the key would go with them)".into(),
                });
            }
            Err(FetchError::TooLarge(limit)) => {
                return Err(M2mApiError::InvalidReply {
                    api: api(),
                    reason: format!("larger than {limit} bytes"),
                });
            }
            Err(error) => {
                return Err(M2mApiError::Unreachable {
                    api: api(),
                    cause: error.to_string(),
                });
            }
        };
        if !status.is_success() {
            let ClerkError { code, message } = ClerkError::read(&reply);
            return Err(M2mApiError::Refused {
                api: api(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        strict_json::parse_object(&reply).map_err(|error| M2mApiError::InvalidReply {
            api: api(),
            reason: format!("not a JSON object ({error}; is CLERK_API_URL Clerk's Backend API?)"),
        })
    }
}
