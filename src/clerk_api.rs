//! Clerk's Backend API as this crate calls it: the URL of an endpoint under `CLERK_API_URL`, the
//! secret key as a bearer credential, the `Clerk-API-Version` header, JSON both ways, and what
//! its error replies say. The one home of these rules for the JWKS fetch, the verify call and
//! (with the `client` feature) token creation and revocation.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};
use reqwest::Url;
use serde_json::Value;

use crate::error::ConfigError;
use crate::fetch::{self, PlainHttp};
use machine_auth_core::clerk::CLERK_API_VERSION;

/// `Authorization: Bearer <key>` for a Clerk secret key (surrounding whitespace trimmed), marked
/// sensitive. `missing` says what to set when the key is empty; `setting` names it in errors.
pub(crate) fn bearer(key: &str, setting: &str, missing: &str) -> Result<HeaderValue, ConfigError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::new(missing));
    }
    let mut value = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
        ConfigError::new(format!(
            "{setting} holds characters not allowed in a header"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The endpoint `path` of the Backend API at `api_url` (`CLERK_API_URL`): `api_url` as given
/// (trailing `/` dropped, a trailing `/v1` kept, as Clerk's SDK does) followed by `path`.
/// https, or plain http where `plain_http` allows it; a query or fragment is refused, since the
/// path would land inside it.
pub(crate) fn endpoint(
    api_url: &str,
    path: &str,
    plain_http: PlainHttp,
) -> Result<Url, ConfigError> {
    let base = api_url.trim().trim_end_matches('/');
    if base.contains(['?', '#']) {
        return Err(ConfigError::new(format!(
            "CLERK_API_URL `{}` has a query or a fragment; set it to the API's base URL, such as \
             https://api.clerk.com",
            fetch::redacted(base)
        )));
    }
    fetch::checked_url_allowing(&format!("{base}{path}"), "CLERK_API_URL", plain_http)
}

/// [`endpoint`] for a path that Clerk serves only under `/v1` (the JWKS): a trailing `/v1` of
/// `api_url` is not doubled.
pub(crate) fn v1_endpoint(api_url: &str, path: &str) -> Result<Url, ConfigError> {
    let base = api_url.trim().trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    endpoint(base, &format!("/v1{path}"), PlainHttp::LoopbackOnly)
}

/// A request to the Backend API: the credential, the API version, and a JSON reply asked for.
pub(crate) fn request(
    client: &reqwest::Client,
    method: Method,
    url: &Url,
    authorization: &HeaderValue,
) -> reqwest::RequestBuilder {
    client
        .request(method, url.clone())
        .header(AUTHORIZATION, authorization.clone())
        .header("Clerk-API-Version", CLERK_API_VERSION)
        .header(ACCEPT, "application/json")
}

/// A `POST` of `body` as JSON to the Backend API.
pub(crate) fn post_json(
    client: &reqwest::Client,
    url: &Url,
    authorization: &HeaderValue,
    body: &Value,
) -> reqwest::RequestBuilder {
    request(client, Method::POST, url, authorization)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

/// What a Clerk error reply says: `{"errors": [{"code", "message", "long_message"}]}`, or a bare
/// `message`; placeholders for anything else.
#[cfg(feature = "client")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClerkError {
    /// `errors[0].code`, or `no error code`.
    pub(crate) code: String,
    /// `errors[0].long_message`, else `errors[0].message`, else `message`, else `no message`.
    pub(crate) message: String,
}

#[cfg(feature = "client")]
impl ClerkError {
    pub(crate) fn read(body: &[u8]) -> Self {
        let reply: Value = serde_json::from_slice(body).unwrap_or_default();
        let error = &reply["errors"][0];
        let text = |value: &Value| value.as_str().map(str::to_owned);
        Self {
            code: text(&error["code"]).unwrap_or_else(|| "no error code".into()),
            message: text(&error["long_message"])
                .or_else(|| text(&error["message"]))
                .or_else(|| text(&reply["message"]))
                .unwrap_or_else(|| "no message".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_api_url() {
        let at = |api: &str, path: &str| {
            endpoint(api, path, PlainHttp::LoopbackOnly).map(|url| url.to_string())
        };
        assert_eq!(
            at("https://api.clerk.com/", "/m2m_tokens").unwrap(),
            "https://api.clerk.com/m2m_tokens"
        );
        assert_eq!(
            at(" https://api.clerk.com/v1/ ", "/m2m_tokens").unwrap(),
            "https://api.clerk.com/v1/m2m_tokens"
        );
        assert!(at("http://127.0.0.1:8787", "/m2m_tokens").is_ok());
        for refused in [
            "http://api.clerk.com",
            "ftp://api.clerk.com",
            "https://api.clerk.com?x=1",
            "https://api.clerk.com#top",
            "not a url",
        ] {
            assert!(at(refused, "/m2m_tokens").is_err(), "{refused}");
        }
        for api in ["https://api.clerk.com", "https://api.clerk.com/v1/"] {
            assert_eq!(
                v1_endpoint(api, "/jwks").unwrap().as_str(),
                "https://api.clerk.com/v1/jwks"
            );
        }
    }

    #[test]
    fn credentials_are_checked_and_hidden() {
        let value = bearer(" ak_1 ", "the key", "set the key").unwrap();
        assert_eq!(value, "Bearer ak_1");
        assert!(value.is_sensitive());
        assert_eq!(
            bearer("  ", "the key", "set the key")
                .unwrap_err()
                .to_string(),
            "set the key"
        );
        assert!(
            bearer("ak\n1", "the key", "set the key")
                .unwrap_err()
                .to_string()
                .contains("the key holds characters")
        );
    }

    #[cfg(feature = "client")]
    #[test]
    fn clerk_errors_are_read_or_described() {
        let body = br#"{"errors":[{"code":"c","message":"m","long_message":"long"}]}"#;
        assert_eq!(
            ClerkError::read(body),
            ClerkError {
                code: "c".into(),
                message: "long".into()
            }
        );
        assert_eq!(ClerkError::read(br#"{"message":"m"}"#).message, "m");
        let nothing = ClerkError::read(b"<html>");
        assert_eq!(
            (nothing.code.as_str(), nothing.message.as_str()),
            ("no error code", "no message")
        );
    }
}
