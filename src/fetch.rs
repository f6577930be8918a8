//! Outbound HTTP with the limits every key or introspection fetch needs.
//!
//! https only (plain http is allowed for loopback hosts, for tests and local development), no
//! redirects, no proxy from the environment, connect and total timeouts, and a cap on the size of
//! the reply. Errors name what went wrong without echoing URLs' secrets or response bodies: a
//! configured URL is only ever shown through [`shown`] or [`redacted`], without its user info
//! (`user:password@`), query or fragment.

use std::net::IpAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::Url;

use crate::error::ConfigError;

/// Connect and total timeouts for outbound calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            total: Duration::from_secs(5),
        }
    }
}

impl Timeouts {
    /// Checks that both timeouts are sensible: 10 ms to 60 s, connect at most total.
    pub(crate) fn check(&self, what: &str) -> Result<(), ConfigError> {
        check_range(
            &format!("{what} connect timeout"),
            self.connect,
            Duration::from_millis(10),
            self.total,
        )?;
        check_range(
            &format!("{what} total timeout"),
            self.total,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )
    }
}

/// Checks that a configured duration lies within `min..=max`.
pub(crate) fn check_range(
    what: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(format!(
            "{what} is {value:?}; it must be between {min:?} and {max:?}"
        )));
    }
    Ok(())
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("cannot connect")]
    Connect,
    #[error("timed out")]
    Timeout,
    #[error("the connection failed")]
    Network,
    #[error("answered with a redirect ({0}); redirects are not followed")]
    Redirect(u16),
    #[error("answered with HTTP status {0}")]
    Status(u16),
    #[error("the reply is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the reply is not valid: {0}")]
    Invalid(String),
}

impl FetchError {
    fn from_reqwest(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect
        } else {
            Self::Network
        }
    }
}

/// An HTTP client with the limits above.
pub(crate) fn client(timeouts: Timeouts) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .user_agent(concat!("tower-machine-auth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| ConfigError::new(format!("cannot build the HTTP client: {error}")))
}

/// Where plain http may carry credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainHttp {
    /// Only to a loopback host (`localhost`, `127.0.0.0/8`, `::1`): the default.
    LoopbackOnly,
    /// To any host: an explicit, insecure opt-in.
    AnyHost,
}

/// Parses `url` and requires https, or http to a loopback host.
pub(crate) fn checked_url(url: &str, what: &str) -> Result<Url, ConfigError> {
    checked_url_allowing(url, what, PlainHttp::LoopbackOnly)
}

/// Parses `url` and requires https, or http where `plain_http` allows it. Errors name the URL
/// without its credentials.
pub(crate) fn checked_url_allowing(
    url: &str,
    what: &str,
    plain_http: PlainHttp,
) -> Result<Url, ConfigError> {
    let parsed = Url::parse(url.trim()).map_err(|error| {
        ConfigError::new(format!(
            "{what} `{}` is not a valid URL: {error}",
            redacted(url)
        ))
    })?;
    match transport_refusal(&parsed, plain_http) {
        None => Ok(parsed),
        Some(why) => Err(ConfigError::new(format!("{what} {why}"))),
    }
}

/// Why credentials may not be sent to `url`, or `None` when they may: https always; http to a
/// loopback host, or to any host with [`PlainHttp::AnyHost`]; nothing else. The reason names
/// the URL without its credentials.
pub(crate) fn transport_refusal(url: &Url, plain_http: PlainHttp) -> Option<String> {
    if url.cannot_be_a_base() {
        // `user:secret@host` parses as scheme `user`: show none of it.
        return Some("is not an https URL (it has no `//` before the host); use https://…".into());
    }
    let shown = shown(url);
    match url.scheme() {
        "https" => None,
        "http" if plain_http == PlainHttp::AnyHost || is_loopback(url) => None,
        "http" => Some(format!(
            "`{shown}` uses plain http to a non-loopback host; use https (http is allowed only \
             for 127.0.0.1, ::1 and localhost)"
        )),
        scheme => Some(format!("`{shown}` has scheme `{scheme}`; use https")),
    }
}

/// `url` without user info, query or fragment, safe to log.
pub(crate) fn shown(url: &Url) -> String {
    if url.cannot_be_a_base() {
        // `user:secret@host` parses as scheme `user` and a path: show none of it.
        return "[not a URL with a host]".to_owned();
    }
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A configured URL's text, safe to show: as [`shown`] when it parses; otherwise everything
/// between the scheme's `//` (or the start) and the last `@` is left out, and so is any query.
pub(crate) fn redacted(text: &str) -> String {
    let text = text.trim();
    if let Ok(url) = Url::parse(text) {
        return shown(&url);
    }
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match text.find("://") {
        Some(at) => text.split_at(at + 3),
        None => ("", text),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => text.to_owned(),
    }
}

/// Whether `url`'s host is `localhost`, `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Sends `request`, requires a 2xx status, and reads at most `limit` bytes of the body.
///
/// Returns the status too, since some callers map specific statuses.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    limit: usize,
) -> Result<(reqwest::StatusCode, Bytes), FetchError> {
    let mut response = request
        .send()
        .await
        .map_err(|error| FetchError::from_reqwest(&error))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Redirect(status.as_u16()));
    }
    // A failing endpoint's body is of no use, and must not turn an outage into an oversized
    // reply.
    if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        return Ok((status, Bytes::new()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(FetchError::TooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| FetchError::from_reqwest(&error))?
    {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body.freeze()))
}

/// Like [`send`], retrying once, at once, when no connection could be made (nothing reached
/// the server, so a retry cannot repeat its effect).
pub(crate) async fn send_retrying_connect(
    request: reqwest::RequestBuilder,
    limit: usize,
) -> Result<(reqwest::StatusCode, Bytes), FetchError> {
    let retry = request.try_clone();
    match (send(request, limit).await, retry) {
        (Err(FetchError::Connect), Some(retry)) => send(retry, limit).await,
        (outcome, _) => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_carry_no_credentials() {
        let url = Url::parse("https://user:secret@jwks.example/keys?token=abc#x").unwrap();
        assert_eq!(shown(&url), "https://jwks.example/keys");
    }

    #[test]
    fn only_https_or_loopback_http() {
        for ok in [
            "https://api.clerk.com/v1/jwks",
            "http://127.0.0.1:3000/jwks",
            "http://127.8.0.1/jwks",
            "http://[::1]:80/jwks",
            "http://localhost:9/x",
        ] {
            assert!(checked_url(ok, "JWKS URL").is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.example.com/",
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
            "not a url",
        ] {
            let error = checked_url(bad, "JWKS URL").unwrap_err();
            assert!(error.to_string().contains("JWKS URL"), "{bad}: {error}");
        }
    }

    #[test]
    fn refusals_name_the_url_without_its_credentials() {
        for (bad, shown) in [
            ("http://user:s3cr3t@example.com", "`http://example.com/`"),
            (
                "http://user:s3cr3t@example.com/jwks?k=v",
                "`http://example.com/jwks`",
            ),
            ("ftp://user:s3cr3t@127.0.0.1/jwks", "`ftp://127.0.0.1/jwks`"),
            (
                "http://user:s3cr3t@exa mple.com/jwks",
                "`http://exa mple.com/jwks`",
            ),
            ("http://user:s3cr3t@[::1/jwks", "`http://[::1/jwks`"),
            ("https://user:s3cr3t@:443/", "`https://:443/`"),
            ("user:s3cr3t@example.com", "no `//`"),
            ("s3cr3t@@", "``"),
        ] {
            let error = checked_url(bad, "the JWKS URL").unwrap_err().to_string();
            assert!(!error.contains("s3cr3t"), "{bad}: {error}");
            assert!(error.contains(shown), "{bad}: {error}");
            assert!(error.starts_with("the JWKS URL "), "{bad}: {error}");
        }
    }

    #[test]
    fn plain_http_to_any_host_only_when_allowed() {
        let url = Url::parse("http://user:s3cr3t@reports.internal/run").unwrap();
        assert!(transport_refusal(&url, PlainHttp::AnyHost).is_none());
        let refusal = transport_refusal(&url, PlainHttp::LoopbackOnly).unwrap();
        assert!(refusal.contains("http://reports.internal/run"), "{refusal}");
        assert!(!refusal.contains("s3cr3t"), "{refusal}");
        let ftp = Url::parse("ftp://127.0.0.1/").unwrap();
        assert!(transport_refusal(&ftp, PlainHttp::AnyHost).is_some());
    }

    #[test]
    fn redacted_text_drops_user_info_and_query() {
        for (text, expected) in [
            (
                "https://user:s3cr3t@example.com/a?token=s3cr3t",
                "https://example.com/a",
            ),
            (
                "http://u:s3cr3t@exa mple.com/a?x=s3cr3t",
                "http://exa mple.com/a",
            ),
            ("u:s3cr3t@exa mple.com", "[not a URL with a host]"),
            ("//u:s3cr3t@example.com/a", "example.com/a"),
            ("user:s3cr3t@example.com", "[not a URL with a host]"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted(text), expected, "{text}");
        }
    }
}
