//! `POST {api}/m2m_tokens`: one token creation, as Clerk's SDK sends it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::TokenFormat;
use crate::fetch::{self, FetchError};
use machine_auth_core::clerk::CLERK_API_VERSION;

/// Longest reply read.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What a creation call sends, and where.
pub(crate) struct CreateRequest {
    pub(crate) url: Url,
    pub(crate) shown: String,
    pub(crate) authorization: HeaderValue,
    pub(crate) client: reqwest::Client,
    pub(crate) body: String,
}

impl CreateRequest {
    /// The body Clerk's SDK sends: all three fields, null claims explicit.
    pub(crate) fn body(
        format: TokenFormat,
        lifetime: Duration,
        claims: Option<&Map<String, Value>>,
    ) -> String {
        json!({
            "seconds_until_expiration": lifetime.as_secs(),
            "claims": claims,
            "token_format": format.as_str(),
        })
        .to_string()
    }
}

/// A created token, as the issuer described it.
pub(crate) struct Created {
    pub(crate) token: String,
    pub(crate) id: String,
    pub(crate) created_at: Option<SystemTime>,
    pub(crate) expires_at: Option<SystemTime>,
}

/// Why a creation failed.
pub(crate) enum CreateFailure {
    /// 401: the machine key is wrong.
    CredentialsRejected { code: String },
    /// Another 4xx (not 408 or 429): the request is wrong.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// Worth retrying: the network, a timeout, 408, 429, 5xx, a malformed reply.
    Transient(String),
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    object: Option<String>,
    id: String,
    token: String,
    #[serde(default)]
    expiration: Option<i64>,
    #[serde(default)]
    created_at: Option<i64>,
}

/// Sends one creation request (retried once, at once, only if no connection could be made).
pub(crate) async fn create(request: &CreateRequest) -> Result<Created, CreateFailure> {
    let call = request
        .client
        .post(request.url.clone())
        .header(AUTHORIZATION, request.authorization.clone())
        .header("Clerk-API-Version", CLERK_API_VERSION)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(request.body.clone());
    let failed = |error: FetchError| CreateFailure::Transient(format!("{} {error}", request.shown));
    let (status, body) = fetch::send_retrying_connect(call, MAX_REPLY_BYTES)
        .await
        .map_err(failed)?;
    match status.as_u16() {
        200 | 201 => created(&body).map_err(failed),
        401 => Err(CreateFailure::CredentialsRejected {
            code: clerk_error(&body).0,
        }),
        code @ (400..=499) if code != 408 && code != 429 => {
            let (code_name, message) = clerk_error(&body);
            Err(CreateFailure::Refused {
                status: code,
                code: code_name,
                message,
            })
        }
        code => Err(failed(FetchError::Status(code))),
    }
}

fn created(body: &[u8]) -> Result<Created, FetchError> {
    let invalid = || FetchError::Invalid("not a machine_to_machine_token with a token".into());
    let reply: Reply = serde_json::from_slice(body).map_err(|_| invalid())?;
    if reply
        .object
        .as_deref()
        .is_some_and(|object| object != "machine_to_machine_token")
        || reply.token.is_empty()
    {
        return Err(invalid());
    }
    // Absent or null: not given. Anything else must be a time this machine can represent.
    let time = |millis: Option<i64>, name: &str| {
        millis
            .map(|millis| {
                u64::try_from(millis)
                    .ok()
                    .and_then(|millis| UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
                    .ok_or_else(|| FetchError::Invalid(format!("`{name}` is out of range")))
            })
            .transpose()
    };
    Ok(Created {
        created_at: time(reply.created_at, "created_at")?,
        expires_at: time(reply.expiration, "expiration")?,
        token: reply.token,
        id: reply.id,
    })
}

/// `errors[0].code` and its message, from Clerk's error shape (or placeholders).
fn clerk_error(body: &[u8]) -> (String, String) {
    let reply: Value = serde_json::from_slice(body).unwrap_or_default();
    let error = &reply["errors"][0];
    let text = |name: &str| error[name].as_str().map(str::to_owned);
    (
        text("code").unwrap_or_else(|| "no error code".into()),
        text("long_message")
            .or_else(|| text("message"))
            .unwrap_or_else(|| "no message".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_sdks() {
        let body: Value = serde_json::from_str(&CreateRequest::body(
            TokenFormat::Jwt,
            Duration::from_secs(3600),
            None,
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"seconds_until_expiration": 3600, "claims": null, "token_format": "jwt"})
        );
        let claims = json!({"job": "nightly"});
        let body: Value = serde_json::from_str(&CreateRequest::body(
            TokenFormat::Opaque,
            Duration::from_secs(600),
            claims.as_object(),
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"seconds_until_expiration": 600, "claims": {"job": "nightly"}, "token_format": "opaque"})
        );
    }

    #[test]
    fn replies_are_read_strictly() {
        let ok = created(
            br#"{"object":"machine_to_machine_token","id":"mt_1","token":"mt_abc","expiration":1700000060000,"created_at":1700000000000}"#,
        )
        .ok()
        .unwrap();
        assert_eq!((ok.id.as_str(), ok.token.as_str()), ("mt_1", "mt_abc"));
        assert_eq!(
            ok.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_060))
        );
        let no_times = created(br#"{"id":"mt_1","token":"mt_abc","expiration":null}"#)
            .ok()
            .unwrap();
        assert_eq!((no_times.created_at, no_times.expires_at), (None, None));
        for bad in [
            &br#"{"object":"machine_to_machine_token","id":"mt_1"}"#[..],
            br#"{"id":"mt_1","token":"mt_abc","expiration":-1}"#,
            br#"{"id":"mt_1","token":"mt_abc","created_at":-5}"#,
            br#"{"id":"mt_1","token":"mt_abc","expiration":1e300}"#,
            br#"{"object":"jwt_template","id":"mt_1","token":"x"}"#,
            br#"{"object":"machine_to_machine_token","id":"mt_1","token":""}"#,
            b"<html>",
        ] {
            assert!(created(bad).is_err());
        }
    }

    #[test]
    fn clerk_errors_are_read_or_described() {
        let (code, message) = clerk_error(
            br#"{"errors":[{"code":"form_param_value_invalid","message":"is invalid","long_message":"claims.sub is reserved"}]}"#,
        );
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("form_param_value_invalid", "claims.sub is reserved")
        );
        assert_eq!(
            clerk_error(b"oops"),
            ("no error code".to_owned(), "no message".to_owned())
        );
    }
}
