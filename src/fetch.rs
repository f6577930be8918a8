//! Outbound HTTP with the limits every key or introspection fetch needs.
//!
//! https only (plain http is allowed for loopback hosts, for tests and local development), no
//! redirects, no proxy from the environment, connect and total timeouts, and a cap on the size of
//! the reply. Errors name what went wrong without echoing URLs' secrets or response bodies.

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

/// Parses `url` and requires https, or http to a loopback host.
pub(crate) fn checked_url(url: &str, what: &str) -> Result<Url, ConfigError> {
    let parsed = Url::parse(url.trim())
        .map_err(|error| ConfigError::new(format!("{what} `{url}` is not a valid URL: {error}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err(ConfigError::new(format!(
            "{what} `{url}` uses plain http to a non-loopback host; use https \
             (http is allowed only for 127.0.0.1, ::1 and localhost)"
        ))),
        scheme => Err(ConfigError::new(format!(
            "{what} `{url}` has scheme `{scheme}`; use https"
        ))),
    }
}

/// `url` without user info or query, safe to log.
pub(crate) fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
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
}
