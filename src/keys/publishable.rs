//! Clerk's publishable key (`CLERK_PUBLISHABLE_KEY`): where the Frontend API serves its JWKS.
//!
//! A publishable key is `pk_test_` or `pk_live_` followed by the base64 of the instance's Frontend
//! API host and a `$`, such as `pk_test_Y2xlcmsuZXhhbXBsZS5jb20k` for `clerk.example.com`. Its
//! JWKS is `https://<frontend api>/.well-known/jwks.json`, the third key source of Clerk's manual
//! verification guide; it needs no secret, so it verifies JWTs only.

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

use crate::error::ConfigError;
use crate::fetch::PlainHttp;

/// Standard base64 with or without `=` padding, as browsers' `atob` reads it.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The longest Frontend API host accepted (a DNS name, and a port).
const MAX_HOST_LEN: usize = 260;

/// The Frontend API JWKS URL of a publishable key: `https://<host>/.well-known/jwks.json`, or
/// `http://` for a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`) or the host `plain_http`
/// names, as local issuers serve it.
pub(crate) fn frontend_api_jwks_url(
    publishable_key: &str,
    plain_http: &PlainHttp,
) -> Result<String, ConfigError> {
    let host = frontend_api_host(crate::clerk_api::setting(publishable_key))?;
    let mut url =
        url::Url::parse(&format!("https://{host}/.well-known/jwks.json")).map_err(|error| {
            malformed(&format!(
                "its Frontend API host is not a valid host: {error}"
            ))
        })?;
    if url.path() != "/.well-known/jwks.json" || url.host().is_none() {
        return Err(malformed("its Frontend API host is not a valid host"));
    }
    let named = plain_http
        .allowed_host()
        .is_some_and(|named| url.host().is_some_and(|host| host.to_owned() == *named));
    if crate::fetch::is_loopback(&url) || named {
        url.set_scheme("http")
            .map_err(|()| malformed("its Frontend API host is not a valid host"))?;
    }
    Ok(url.to_string())
}

fn frontend_api_host(key: &str) -> Result<String, ConfigError> {
    let encoded = key
        .strip_prefix("pk_test_")
        .or_else(|| key.strip_prefix("pk_live_"))
        .ok_or_else(|| malformed("it does not start with pk_test_ or pk_live_"))?;
    let decoded = LENIENT_BASE64
        .decode(encoded)
        .map_err(|_| malformed("what follows pk_test_/pk_live_ is not base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| malformed("it does not encode a Frontend API host"))?;
    let host = decoded
        .strip_suffix('$')
        .ok_or_else(|| malformed("it does not encode a Frontend API host followed by `$`"))?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if host.is_empty() || host.len() > MAX_HOST_LEN || !host.chars().all(allowed) {
        return Err(malformed("it does not encode a Frontend API host"));
    }
    Ok(host.to_owned())
}

/// The error for a publishable key that cannot be read; never shows the key (it is public, but
/// a secret pasted into the wrong variable is not).
fn malformed(why: &str) -> ConfigError {
    ConfigError::new(format!(
        "CLERK_PUBLISHABLE_KEY is not a Clerk publishable key: {why} (expected pk_test_… or \
         pk_live_… from Clerk's dashboard, API keys)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as PADDED;

    fn key(prefix: &str, host: &str) -> String {
        format!("{prefix}{}", PADDED.encode(format!("{host}$")))
    }

    #[test]
    fn decodes_clerk_publishable_keys() {
        let cases = [
            (
                key("pk_test_", "clean-mayfly-62.clerk.accounts.dev"),
                "https://clean-mayfly-62.clerk.accounts.dev/.well-known/jwks.json",
            ),
            (
                key("pk_live_", "clerk.example.com"),
                "https://clerk.example.com/.well-known/jwks.json",
            ),
            (
                key("pk_test_", "127.0.0.1:8123"),
                "http://127.0.0.1:8123/.well-known/jwks.json",
            ),
            (
                key("pk_test_", "localhost:3000"),
                "http://localhost:3000/.well-known/jwks.json",
            ),
            (
                key("pk_test_", "[::1]:3000"),
                "http://[::1]:3000/.well-known/jwks.json",
            ),
            // Without padding, and with surrounding whitespace.
            (
                format!(
                    " {} ",
                    key("pk_test_", "clerk.example.com").trim_end_matches('=')
                ),
                "https://clerk.example.com/.well-known/jwks.json",
            ),
        ];
        let issuer = PlainHttp::loopback_and(Some("issuer")).unwrap();
        assert_eq!(
            frontend_api_jwks_url(&format!("\"{}\"", key("pk_test_", "issuer:8787")), &issuer)
                .unwrap(),
            "http://issuer:8787/.well-known/jwks.json"
        );
        assert_eq!(
            frontend_api_jwks_url(&key("pk_test_", "issuer:8787"), &PlainHttp::LoopbackOnly)
                .unwrap(),
            "https://issuer:8787/.well-known/jwks.json"
        );
        for (key, url) in cases {
            assert_eq!(
                frontend_api_jwks_url(&key, &PlainHttp::LoopbackOnly).unwrap(),
                url,
                "{key}"
            );
        }
    }

    #[test]
    fn refuses_anything_else_with_a_clear_error() {
        let bad = [
            String::new(),
            "sk_test_abc".to_owned(),
            "pk_test_".to_owned(),
            "pk_test_!!!".to_owned(),
            format!("pk_prod_{}", PADDED.encode("clerk.example.com$")),
            format!("pk_test_{}", PADDED.encode("clerk.example.com")),
            format!("pk_test_{}", PADDED.encode("$")),
            format!("pk_test_{}", PADDED.encode([0xff, 0xfe, b'$'])),
            key("pk_test_", "evil.example/path"),
            key("pk_test_", "user@evil.example"),
            key("pk_test_", "evil.example?x"),
            key("pk_test_", "evil.example#x"),
            key("pk_test_", "two words"),
            key("pk_test_", "host:notaport"),
            key("pk_test_", &"a".repeat(300)),
        ];
        for key in bad {
            let error = frontend_api_jwks_url(&key, &PlainHttp::LoopbackOnly)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("CLERK_PUBLISHABLE_KEY is not"),
                "{key:?}: {error}"
            );
        }
    }
}
