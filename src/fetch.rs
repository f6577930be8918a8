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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum PlainHttp {
    /// Only to a loopback host (`localhost`, `127.0.0.0/8`, `::1`): the default.
    #[default]
    LoopbackOnly,
    /// To a loopback host, and to this one host, named explicitly (`allow_http_host`,
    /// `MACHINE_AUTH_ALLOW_HTTP_HOST`): a dev issuer in another container, say.
    LoopbackAnd(url::Host<String>),
    /// To any host: an explicit, insecure opt-in.
    AnyHost,
}

/// The environment variable that names one more host plain http may go to.
pub(crate) const ALLOW_HTTP_HOST_VAR: &str = "MACHINE_AUTH_ALLOW_HTTP_HOST";

impl PlainHttp {
    /// Loopback hosts and `host`, when one is given: a host name or an IP address alone (no
    /// scheme, port or path).
    pub(crate) fn loopback_and(host: Option<&str>) -> Result<Self, ConfigError> {
        let Some(text) = host.map(str::trim).filter(|text| !text.is_empty()) else {
            return Ok(Self::LoopbackOnly);
        };
        let parsed = url::Host::parse(text)
            .or_else(|_| url::Host::parse(&format!("[{text}]")))
            .map_err(|_| {
                // A URL with credentials given by mistake is shown without them.
                ConfigError::new(format!(
                    "{ALLOW_HTTP_HOST_VAR} (allow_http_host) `{}` is not a host name: give the \
                     host alone, such as `issuer` for http://issuer:8787 (no scheme, port or path)",
                    typed(text)
                ))
            })?;
        Ok(Self::LoopbackAnd(parsed))
    }

    /// Whether plain http may go to `url`'s host.
    fn allows(&self, url: &Url) -> bool {
        match self {
            Self::AnyHost => true,
            Self::LoopbackOnly => is_loopback(url),
            Self::LoopbackAnd(host) => {
                is_loopback(url) || url.host().is_some_and(|h| h.to_owned() == *host)
            }
        }
    }

    /// The host named besides loopback, if any.
    pub(crate) fn allowed_host(&self) -> Option<&url::Host<String>> {
        match self {
            Self::LoopbackAnd(host) => Some(host),
            _ => None,
        }
    }
}

/// Parses `url` and requires https, or http to a loopback host.
pub(crate) fn checked_url(url: &str, what: &str) -> Result<Url, ConfigError> {
    checked_url_allowing(url, what, &PlainHttp::LoopbackOnly)
}

/// Parses `url` and requires https, or http where `plain_http` allows it. Errors quote the URL
/// as it was typed, without its credentials, query or fragment.
pub(crate) fn checked_url_allowing(
    url: &str,
    what: &str,
    plain_http: &PlainHttp,
) -> Result<Url, ConfigError> {
    let text = url.trim();
    if let Some(refusal) = no_scheme(text, plain_http) {
        return Err(ConfigError::new(format!("{what} {refusal}")));
    }
    let parsed = Url::parse(text).map_err(|error| {
        ConfigError::new(format!(
            "{what} `{}` is not a valid URL: {error}",
            typed(text)
        ))
    })?;
    match refusal(&parsed, plain_http, &typed(text)) {
        None => Ok(parsed),
        Some(why) => Err(ConfigError::new(format!("{what} {why}"))),
    }
}

/// Why `text` cannot be a URL because it has no scheme (`localhost:8787`, `127.0.0.1:8787/v1`,
/// `api.clerk.com`), and what to write instead; `None` when it has one. Text holding user info
/// (`user:secret@host`) is left to the URL parser, whose refusal shows none of it.
fn no_scheme(text: &str, plain_http: &PlainHttp) -> Option<String> {
    if text.contains("://") || text.contains('@') {
        return None;
    }
    let shown = typed(text);
    // `https:/host`: a scheme with a slash missing.
    if let Some((scheme, rest)) = shown.split_once(':')
        && !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphabetic())
        && rest.starts_with('/')
    {
        return Some(format!(
            "`{shown}` lacks a `/` after `{scheme}:`: write `{scheme}://{}`",
            rest.trim_start_matches('/')
        ));
    }
    let with_http = Url::parse(&format!("http://{shown}"))
        .ok()
        .filter(|url| url.host().is_some());
    Some(match with_http {
        Some(url) if plain_http.allows(&url) => {
            let why = if is_loopback(&url) {
                "plain http is allowed only for loopback".to_owned()
            } else {
                format!("plain http is allowed to this host by {ALLOW_HTTP_HOST_VAR}")
            };
            format!("`{shown}` has no scheme: write `http://{shown}` ({why}) or `https://{shown}`")
        }
        Some(_) => format!("`{shown}` has no scheme: write `https://{shown}`"),
        None => format!(
            "`{shown}` is not a URL: write it with its scheme and host, such as \
             `https://api.example.com`"
        ),
    })
}

/// Why credentials may not be sent to `url`, or `None` when they may: https always; http to a
/// loopback host, or where `plain_http` allows it; nothing else. The reason names the URL
/// without its credentials.
pub(crate) fn transport_refusal(url: &Url, plain_http: &PlainHttp) -> Option<String> {
    refusal(url, plain_http, &shown(url))
}

/// [`transport_refusal`], naming the URL as `shown`.
fn refusal(url: &Url, plain_http: &PlainHttp, shown: &str) -> Option<String> {
    if url.cannot_be_a_base() {
        // `user:secret@host` parses as scheme `user`: show none of it.
        return Some("is not an https URL (it has no `//` before the host); use https://…".into());
    }
    match url.scheme() {
        "https" => None,
        "http" if plain_http.allows(url) => None,
        "http" => Some(format!(
            "`{shown}` uses plain http to a non-loopback host; use https ({})",
            plain_http_rule(plain_http)
        )),
        scheme => Some(format!("`{shown}` has scheme `{scheme}`; use https")),
    }
}

/// Where plain http is allowed, in words.
fn plain_http_rule(plain_http: &PlainHttp) -> String {
    let loopback = "loopback addresses: 127.0.0.0/8, ::1, localhost";
    match plain_http {
        PlainHttp::LoopbackAnd(host) => format!(
            "plain http is allowed only for {loopback}, and for `{host}` ({ALLOW_HTTP_HOST_VAR})"
        ),
        _ => format!(
            "plain http is allowed only for {loopback}; for another host on a trusted network, \
             such as a docker compose service, name it in {ALLOW_HTTP_HOST_VAR} \
             (allow_http_host)"
        ),
    }
}

/// A configured URL as it was typed (trimmed), without user info, query or fragment: for
/// messages, which must quote what the user wrote and no secret.
pub(crate) fn typed(text: &str) -> String {
    let text = text.trim();
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let Some(at) = text.find("://") else {
        return match text.rfind('@') {
            Some(at) => text[at + 1..].to_owned(),
            None => text.to_owned(),
        };
    };
    let (scheme, rest) = text.split_at(at + 3);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => text.to_owned(),
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
            ("http://user:s3cr3t@example.com", "`http://example.com`"),
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
        assert!(transport_refusal(&url, &PlainHttp::AnyHost).is_none());
        let refusal = transport_refusal(&url, &PlainHttp::LoopbackOnly).unwrap();
        assert!(refusal.contains("http://reports.internal/run"), "{refusal}");
        assert!(!refusal.contains("s3cr3t"), "{refusal}");
        let ftp = Url::parse("ftp://127.0.0.1/").unwrap();
        assert!(transport_refusal(&ftp, &PlainHttp::AnyHost).is_some());
    }

    #[test]
    fn a_missing_scheme_is_named_with_what_to_write() {
        let error = |text: &str| {
            checked_url_allowing(text, "CLERK_API_URL", &PlainHttp::LoopbackOnly)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("localhost:8787"),
            "CLERK_API_URL `localhost:8787` has no scheme: write `http://localhost:8787` (plain \
             http is allowed only for loopback) or `https://localhost:8787`"
        );
        assert!(
            error(" 127.0.0.1:8787/v1 ").starts_with(
                "CLERK_API_URL `127.0.0.1:8787/v1` has no scheme: write `http://127.0.0.1:8787/v1`"
            ),
            "{}",
            error("127.0.0.1:8787/v1")
        );
        assert_eq!(
            error("api.clerk.com"),
            "CLERK_API_URL `api.clerk.com` has no scheme: write `https://api.clerk.com`"
        );
        assert_eq!(
            error("https:/api.clerk.com"),
            "CLERK_API_URL `https:/api.clerk.com` lacks a `/` after `https:`: write \
             `https://api.clerk.com`"
        );
        assert!(error("issuer:8787?key=s3cr3t").contains("`issuer:8787`"));
        assert!(!error("issuer:8787?key=s3cr3t").contains("s3cr3t"));
        let issuer = PlainHttp::loopback_and(Some("issuer")).unwrap();
        let allowed = checked_url_allowing("issuer:8787", "CLERK_API_URL", &issuer)
            .unwrap_err()
            .to_string();
        assert!(
            allowed.contains("write `http://issuer:8787` (plain http is allowed to this host"),
            "{allowed}"
        );
    }

    #[test]
    fn the_plain_http_rule_matches_what_is_accepted() {
        let error = checked_url("http://10.0.0.1:8787", "CLERK_API_URL")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`http://10.0.0.1:8787`")
                && error.contains("loopback addresses: 127.0.0.0/8, ::1, localhost")
                && error.contains(ALLOW_HTTP_HOST_VAR),
            "{error}"
        );
        assert!(checked_url("http://127.200.3.4:1/", "x").is_ok());
    }

    #[test]
    fn one_more_host_may_get_plain_http_when_named() {
        let issuer = PlainHttp::loopback_and(Some(" Issuer ")).unwrap();
        for ok in [
            "http://issuer:8787",
            "http://ISSUER/v1",
            "http://127.0.0.1:1",
            "https://x.example",
        ] {
            assert!(checked_url_allowing(ok, "u", &issuer).is_ok(), "{ok}");
        }
        for refused in ["http://issuer.example:8787", "http://other:8787"] {
            let error = checked_url_allowing(refused, "u", &issuer)
                .unwrap_err()
                .to_string();
            assert!(error.contains("and for `issuer`"), "{error}");
        }
        let ip = PlainHttp::loopback_and(Some("10.0.0.7")).unwrap();
        assert!(checked_url_allowing("http://10.0.0.7:80/", "u", &ip).is_ok());
        let v6 = PlainHttp::loopback_and(Some("fd00::7")).unwrap();
        assert!(checked_url_allowing("http://[fd00::7]:80/", "u", &v6).is_ok());
        assert_eq!(
            PlainHttp::loopback_and(Some("  ")).unwrap(),
            PlainHttp::LoopbackOnly
        );
        for (bad, quoted) in [
            ("http://issuer:8787", "`http://issuer:8787`"),
            ("issuer:8787", "`issuer:8787`"),
            ("issuer/v1", "`issuer/v1`"),
            ("user:s3cr3t@issuer", "`issuer`"),
        ] {
            let error = PlainHttp::loopback_and(Some(bad)).unwrap_err().to_string();
            assert!(
                error.starts_with("MACHINE_AUTH_ALLOW_HTTP_HOST") && error.contains(quoted),
                "{error}"
            );
            assert!(!error.contains("s3cr3t"), "{error}");
        }
    }

    #[test]
    fn typed_urls_keep_their_form_and_lose_their_secrets() {
        for (text, expected) in [
            ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
            (
                " https://u:s3cr3t@api.example/v1/?k=s3cr3t ",
                "https://api.example/v1/",
            ),
            ("https://api.example/a@b", "https://api.example/a@b"),
            ("u:s3cr3t@issuer", "issuer"),
        ] {
            assert_eq!(typed(text), expected, "{text}");
        }
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
