//! Clerk's Backend API: `POST {CLERK_API_URL}/m2m_tokens/verify`.

use std::fmt;

use http::HeaderValue;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    IntrospectedToken, IntrospectionFuture, Introspector, MAX_REPLY_BYTES, call_failed,
    credentials_rejected, endpoint_not_found,
};
use crate::clerk_api;
use crate::clock::from_unix_millis;
use crate::error::{AuthError, ConfigError, InvalidToken};
use crate::fetch::{self, FetchError, PlainHttp, Timeouts};

/// Verifies Clerk's opaque machine tokens (`mt_…`) with Clerk's Backend API, as Clerk's SDK does:
/// `POST {api_url}/m2m_tokens/verify` with `{"token": …}`, `Authorization: Bearer <secret key>` and
/// `Clerk-API-Version: 2026-05-12`.
///
/// - 200: valid, unless the reply says `revoked: true` or `expired: true`, or its `expiration`
///   has passed (Clerk's SDK accepts such replies; we reject them as `token-invalid`). A reply
///   that is not a `machine_to_machine_token` resource, or is larger than 64 KiB, is
///   `token-invalid` too, with a warning in the log: a machine chooses its token's claims, so
///   such a reply says nothing about Clerk's health.
/// - 404 with Clerk's error code for an unknown token (`resource_not_found`): `token-invalid`
///   (Clerk does not know the token).
/// - 404 with another error code, or none: no Backend API route answered (`CLERK_API_URL` has a
///   wrong path, such as `http://host/api`): 503, and an error in the log naming the URL.
/// - Any other 4xx but 401, 408 and 429: `token-invalid`, with a warning in the log.
/// - 401: Clerk refused our secret key: 503 and an error in the log. Clerk checks the key before
///   the token, so every token fails alike; this counts toward the circuit breaker, which then
///   stops sending the refused key for a while.
/// - 5xx, 408, 429, a redirect, a timeout, or no connection: 503.
///
/// The path follows `api_url`: `https://api.clerk.com` calls `/m2m_tokens/verify` (as the JS
/// SDK), `https://api.clerk.com/v1` calls `/v1/m2m_tokens/verify` (as the OpenAPI spec and the Go
/// SDK).
///
/// ```
/// use tower_machine_auth::introspect::ClerkIntrospector;
///
/// let introspector = ClerkIntrospector::new("https://api.clerk.com", "ak_machine_secret")?;
/// assert!(ClerkIntrospector::new("http://api.clerk.com", "ak_machine_secret").is_err());
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
pub struct ClerkIntrospector {
    url: Url,
    shown: String,
    authorization: HeaderValue,
    client: reqwest::Client,
}

impl fmt::Debug for ClerkIntrospector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClerkIntrospector")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl ClerkIntrospector {
    /// The verify URL without credentials, for messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// An introspector for Clerk's API at `api_url` (https, or http on a loopback host), with a
    /// machine secret key (`ak_…`, which sees tokens that have that machine in scope) or the
    /// instance secret key (`sk_…`, which sees every token of the instance).
    pub fn new(api_url: &str, secret_key: &str) -> Result<Self, ConfigError> {
        Self::with_timeouts(
            api_url,
            secret_key,
            Timeouts::default(),
            &PlainHttp::LoopbackOnly,
        )
    }

    pub(crate) fn with_timeouts(
        api_url: &str,
        secret_key: &str,
        timeouts: Timeouts,
        plain_http: &PlainHttp,
    ) -> Result<Self, ConfigError> {
        let url = clerk_api::endpoint(api_url, "/m2m_tokens/verify", plain_http)?;
        let authorization = clerk_api::bearer(
            secret_key,
            "the Clerk secret key",
            "the Clerk secret key for opaque tokens is empty: set CLERK_MACHINE_SECRET_KEY or \
             CLERK_SECRET_KEY",
        )?;
        Ok(Self {
            shown: fetch::shown(&url),
            url,
            authorization,
            client: fetch::client(timeouts)?,
        })
    }
}

/// What Clerk's answer to a verify call says: read in one place, for requests and for
/// readiness probes alike.
#[derive(Debug)]
pub(crate) enum ClerkAnswer {
    /// 200: the token, valid or not (revoked, expired).
    Token(Result<IntrospectedToken, AuthError>),
    /// 404 with Clerk's token-not-found code: the key was accepted, the token is unknown.
    TokenNotFound,
    /// 404 without that code: no route answered, so the API URL's path is wrong.
    RouteNotFound,
    /// 401: the secret key was refused.
    KeyRefused,
    /// Anything else: no answer, another status, or a reply that is not Clerk's.
    Failed(FetchError),
}

impl ClerkIntrospector {
    /// Asks Clerk about `token`, and reads the answer.
    pub(crate) async fn ask(&self, token: &str) -> ClerkAnswer {
        let body = serde_json::json!({ "token": token });
        let request = clerk_api::post_json(&self.client, &self.url, &self.authorization, &body);
        match fetch::send_retrying_connect(request, MAX_REPLY_BYTES).await {
            Ok((status, body)) => read_answer(status.as_u16(), &body),
            Err(error) => ClerkAnswer::Failed(error),
        }
    }
}

/// Reads Clerk's answer to a verify call.
fn read_answer(status: u16, body: &[u8]) -> ClerkAnswer {
    match status {
        200 => match machine_token(body) {
            Ok(token) => ClerkAnswer::Token(token),
            Err(error) => ClerkAnswer::Failed(error),
        },
        404 if clerk_api::is_token_not_found(body) => ClerkAnswer::TokenNotFound,
        404 => ClerkAnswer::RouteNotFound,
        401 => ClerkAnswer::KeyRefused,
        code => ClerkAnswer::Failed(FetchError::Status(code)),
    }
}

impl Introspector for ClerkIntrospector {
    fn introspect<'a>(&'a self, token: &'a str) -> IntrospectionFuture<'a> {
        Box::pin(async move {
            match self.ask(token).await {
                ClerkAnswer::Token(token) => token,
                ClerkAnswer::TokenNotFound => {
                    Err(AuthError::InvalidToken(InvalidToken::NotActiveAtIssuer))
                }
                ClerkAnswer::RouteNotFound => Err(endpoint_not_found(
                    &self.shown,
                    "CLERK_API_URL's path is probably wrong: set it to the Backend API's base \
                     URL, such as https://api.clerk.com or the URL `machine-auth dev` prints \
                     (tokens are verified at {CLERK_API_URL}/m2m_tokens/verify)",
                )),
                ClerkAnswer::KeyRefused => Err(credentials_rejected(
                    &self.shown,
                    "the Clerk secret key (CLERK_MACHINE_SECRET_KEY or CLERK_SECRET_KEY)",
                )),
                // An outage (503), or a reply about this token that cannot be used.
                ClerkAnswer::Failed(error) => Err(call_failed(&self.shown, &error)),
            }
        })
    }
}

/// Clerk's `machine_to_machine_token` resource (times in milliseconds).
#[derive(Deserialize)]
struct MachineToken {
    object: String,
    id: String,
    subject: String,
    /// Absent or `null` means none.
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
    revoked: bool,
    expired: bool,
    #[serde(default)]
    expiration: Option<i64>,
    #[serde(default)]
    created_at: Option<i64>,
}

/// The token from a 200 reply: valid data, or the reason the token is not valid.
pub(crate) fn machine_token(
    body: &[u8],
) -> Result<Result<IntrospectedToken, AuthError>, FetchError> {
    let token: MachineToken = serde_json::from_slice(body)
        .map_err(|_| FetchError::Invalid("not a machine_to_machine_token resource".into()))?;
    if token.object != "machine_to_machine_token" {
        return Err(FetchError::Invalid(
            "the reply's `object` is not machine_to_machine_token".into(),
        ));
    }
    if token.revoked {
        return Ok(Err(AuthError::InvalidToken(InvalidToken::Revoked)));
    }
    if token.expired {
        return Ok(Err(AuthError::InvalidToken(InvalidToken::ExpiredAtIssuer)));
    }
    Ok(Ok(IntrospectedToken {
        subject: token.subject,
        token_id: token.id,
        scopes: token.scopes.unwrap_or_default(),
        claims: token.claims.unwrap_or_default(),
        expires_at: token.expiration.map(from_unix_millis),
        issued_at: token.created_at.map(from_unix_millis),
        ..IntrospectedToken::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(reply: Value) -> Result<Result<IntrospectedToken, AuthError>, FetchError> {
        machine_token(reply.to_string().as_bytes())
    }

    fn resource() -> Value {
        json!({
            "object": "machine_to_machine_token", "id": "mt_1", "subject": "mch_a",
            "scopes": ["mch_b"], "claims": {"k": "v"}, "revoked": false, "revocation_reason": null,
            "expired": false, "expiration": 1_767_225_600_000_i64, "last_used_at": null,
            "created_at": 1_767_222_000_000_i64, "updated_at": 1_767_222_000_000_i64
        })
    }

    #[test]
    fn maps_the_resource() {
        let token = parse(resource()).unwrap().unwrap();
        assert_eq!(token.subject, "mch_a");
        assert_eq!(token.token_id, "mt_1");
        assert_eq!(token.scopes, ["mch_b"]);
        assert_eq!(token.claims["k"], "v");
        assert_eq!(token.expires_at, Some(from_unix_millis(1_767_225_600_000)));
        assert_eq!(token.issued_at, Some(from_unix_millis(1_767_222_000_000)));
    }

    #[test]
    fn revoked_or_expired_replies_are_invalid_tokens() {
        let mut revoked = resource();
        revoked["revoked"] = json!(true);
        assert_eq!(
            parse(revoked).unwrap(),
            Err(AuthError::InvalidToken(InvalidToken::Revoked))
        );
        let mut expired = resource();
        expired["expired"] = json!(true);
        assert_eq!(
            parse(expired).unwrap(),
            Err(AuthError::InvalidToken(InvalidToken::ExpiredAtIssuer))
        );
    }

    #[test]
    fn unexpected_replies_are_unusable() {
        let mut wrong_object = resource();
        wrong_object["object"] = json!("api_key");
        let mut no_revoked = resource();
        no_revoked.as_object_mut().unwrap().remove("revoked");
        let mut string_revoked = resource();
        string_revoked["revoked"] = json!("false");
        for reply in [
            wrong_object,
            no_revoked,
            string_revoked,
            json!([]),
            json!({"id": "mt_1"}),
        ] {
            assert!(parse(reply.clone()).is_err(), "{reply}");
        }
        assert!(machine_token(b"<html>").is_err());
    }
}
