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

/// A configured value as typed, or as pasted from an environment file: surrounding whitespace
/// and one pair of matching quotes around the rest (`"sk_test_…"`, `'…'`) removed. Used for
/// every key, PEM and URL the crate is given.
///
/// (`docker run --env-file` and some orchestrators pass `KEY="value"` with its quotes.)
pub(crate) fn setting(text: &str) -> &str {
    let text = text.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = text
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner.trim();
        }
    }
    text
}

/// `Authorization: Bearer <key>` for a Clerk secret key (surrounding whitespace and quotes
/// removed, see [`setting`]), marked sensitive. `missing` says what to set when the key is
/// empty; `setting` names it in errors.
pub(crate) fn bearer(
    key: &str,
    setting_name: &str,
    missing: &str,
) -> Result<HeaderValue, ConfigError> {
    let key = setting(key);
    if key.is_empty() {
        return Err(ConfigError::new(missing));
    }
    let mut value = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
        ConfigError::new(format!(
            "{setting_name} holds characters not allowed in a header"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The kind of Clerk key `key` is by its prefix, if any: for errors about a key given in the
/// wrong place, which name the kind and never the key.
pub(crate) fn key_kind(key: &str) -> Option<KeyKind> {
    let key = setting(key);
    if key.starts_with("sk_") {
        Some(KeyKind::Instance)
    } else if key.starts_with("ak_") {
        Some(KeyKind::Machine)
    } else if key.starts_with("pk_") {
        Some(KeyKind::Publishable)
    } else {
        None
    }
}

/// Clerk's keys, told apart by their prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// `sk_test_…`, `sk_live_…`: the instance secret key, `CLERK_SECRET_KEY`.
    Instance,
    /// `ak_…`: a machine's secret key, `CLERK_MACHINE_SECRET_KEY`.
    Machine,
    /// `pk_test_…`, `pk_live_…`: the publishable key, `CLERK_PUBLISHABLE_KEY`.
    Publishable,
}

impl KeyKind {
    /// The key described, and where it belongs: `an instance secret key (sk_…): it belongs in
    /// CLERK_SECRET_KEY (clerk_secret_key)`.
    pub(crate) fn belongs(self) -> &'static str {
        match self {
            Self::Instance => {
                "an instance secret key (`sk_…`): it belongs in CLERK_SECRET_KEY \
                 (clerk_secret_key)"
            }
            Self::Machine => {
                "a machine secret key (`ak_…`): it belongs in CLERK_MACHINE_SECRET_KEY \
                 (clerk_machine_secret_key)"
            }
            Self::Publishable => {
                "a publishable key (`pk_…`): it belongs in CLERK_PUBLISHABLE_KEY \
                 (clerk_publishable_key)"
            }
        }
    }
}

/// The endpoint `path` of the Backend API at `api_url` (`CLERK_API_URL`): `api_url` as given
/// (quotes and a trailing `/` dropped, a trailing `/v1` kept, as Clerk's SDK does) followed by
/// `path`. https, or plain http where `plain_http` allows it; a query or fragment is refused,
/// since the path would land inside it. Errors quote `api_url` as it was typed.
pub(crate) fn endpoint(
    api_url: &str,
    path: &str,
    plain_http: &PlainHttp,
) -> Result<Url, ConfigError> {
    let base = checked_base(api_url, plain_http)?;
    fetch::checked_url_allowing(&format!("{base}{path}"), "CLERK_API_URL", plain_http)
}

/// [`endpoint`] for a path that Clerk serves only under `/v1` (the JWKS): a trailing `/v1` of
/// `api_url` is not doubled.
pub(crate) fn v1_endpoint(
    api_url: &str,
    path: &str,
    plain_http: &PlainHttp,
) -> Result<Url, ConfigError> {
    let base = checked_base(api_url, plain_http)?;
    let base = base.strip_suffix("/v1").unwrap_or(base);
    fetch::checked_url_allowing(&format!("{base}/v1{path}"), "CLERK_API_URL", plain_http)
}

/// `api_url` without quotes and trailing `/`, once it is known to be a URL the API may be
/// called at (errors quote it as typed).
fn checked_base<'a>(api_url: &'a str, plain_http: &PlainHttp) -> Result<&'a str, ConfigError> {
    let typed = setting(api_url);
    if typed.contains(['?', '#']) {
        return Err(ConfigError::new(format!(
            "CLERK_API_URL `{}` has a query or a fragment; set it to the API's base URL, such as \
             https://api.clerk.com",
            fetch::typed(typed)
        )));
    }
    fetch::checked_url_allowing(typed, "CLERK_API_URL", plain_http)?;
    Ok(typed.trim_end_matches('/'))
}

/// Clerk's error code for a machine token it does not know: `verify` answers 404 with it (the
/// local issuer too). A 404 without it comes from no Backend API route, or another server.
pub(crate) const TOKEN_NOT_FOUND_CODE: &str = "resource_not_found";

/// Whether a 404 reply says "no such token" in Clerk's words: `errors[0].code` is
/// [`TOKEN_NOT_FOUND_CODE`].
pub(crate) fn is_token_not_found(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|reply| reply["errors"][0]["code"] == TOKEN_NOT_FOUND_CODE)
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
            endpoint(api, path, &PlainHttp::LoopbackOnly).map(|url| url.to_string())
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
                v1_endpoint(api, "/jwks", &PlainHttp::LoopbackOnly)
                    .unwrap()
                    .as_str(),
                "https://api.clerk.com/v1/jwks"
            );
        }
    }

    #[test]
    fn errors_quote_the_api_url_as_typed() {
        let plain = PlainHttp::LoopbackOnly;
        for (api, quoted) in [
            ("http://api.clerk.com", "`http://api.clerk.com`"),
            ("127.0.0.1:8787", "`127.0.0.1:8787`"),
            ("localhost:8787", "`localhost:8787`"),
        ] {
            for error in [
                endpoint(api, "/m2m_tokens/verify", &plain).unwrap_err(),
                v1_endpoint(api, "/jwks", &plain).unwrap_err(),
            ] {
                let error = error.to_string();
                assert!(
                    error.starts_with(&format!("CLERK_API_URL {quoted} ")),
                    "{error}"
                );
                assert!(
                    !error.contains("jwks") && !error.contains("verify"),
                    "{error}"
                );
            }
        }
        assert_eq!(
            endpoint("\"http://127.0.0.1:8787/\"", "/m2m_tokens", &plain)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8787/m2m_tokens"
        );
    }

    #[test]
    fn settings_lose_surrounding_quotes_once() {
        for (text, expected) in [
            ("\"sk_test_1\"", "sk_test_1"),
            (" 'sk_test_1' ", "sk_test_1"),
            ("\" sk_test_1 \"", "sk_test_1"),
            ("sk_test_1", "sk_test_1"),
            ("\"sk_test_1'", "\"sk_test_1'"),
            ("\"\"sk\"\"", "\"sk\""),
            ("\"", "\""),
            ("\"\"", ""),
        ] {
            assert_eq!(setting(text), expected, "{text}");
        }
        let value = bearer("\"ak_1\"", "the key", "set the key").unwrap();
        assert_eq!(value, "Bearer ak_1");
        assert_eq!(key_kind("'ak_1'"), Some(KeyKind::Machine));
        assert_eq!(key_kind("sk_live_1"), Some(KeyKind::Instance));
        assert_eq!(key_kind("pk_test_1"), Some(KeyKind::Publishable));
        assert_eq!(key_kind("local_key"), None);
    }

    #[test]
    fn only_clerks_token_not_found_code_means_no_such_token() {
        assert!(is_token_not_found(
            br#"{"errors":[{"code":"resource_not_found","message":"not found"}]}"#
        ));
        for other in [
            &br#"{"errors":[{"code":"route_not_found"}]}"#[..],
            br#"{"message":"Not Found"}"#,
            b"<html>404</html>",
            b"",
        ] {
            assert!(!is_token_not_found(other));
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
