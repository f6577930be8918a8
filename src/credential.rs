//! Reading the bearer token from a request (RFC 6750 §2.1) and telling token kinds apart.
//!
//! The grammar is `Authorization: Bearer 1*SP b64token`. The scheme is matched case-insensitively
//! (RFC 9110 §11.1). Unlike Clerk's SDK, a bare token with no scheme is not accepted, and a second
//! word after the token is an error rather than silently dropped.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use crate::bearer_token::BearerToken;
use crate::error::{AuthError, InvalidToken, MalformedRequest, TypeMismatch};

/// Tokens longer than this are rejected before any decoding.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The bearer credential of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bearer<'a> {
    /// The `Authorization` value.
    header: &'a HeaderValue,
    /// The bytes after `Bearer `, at most [`MAX_TOKEN_LEN`] long. Their characters are checked by
    /// [`b64token`], which a verifier can skip for a token it has already verified.
    pub(crate) token: &'a [u8],
}

impl Bearer<'_> {
    /// The token, sharing the header's bytes, for the identity it authenticates.
    pub(crate) fn to_bearer_token(self) -> BearerToken {
        BearerToken::from_header(self.header, self.token.len())
    }
}

/// The bearer credential of a request.
///
/// Returns [`AuthError::MissingCredential`] when there is no `Authorization` header or its scheme is
/// not `Bearer`, and [`AuthError::MalformedRequest`] when the header is repeated or ill-formed.
pub(crate) fn bearer_credential(headers: &HeaderMap) -> Result<Bearer<'_>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(header) = values.next() else {
        return Err(AuthError::MissingCredential);
    };
    if values.next().is_some() {
        return Err(malformed(MalformedRequest::SeveralAuthorizationHeaders));
    }
    let token = parse_bearer(header.as_bytes())?;
    Ok(Bearer { header, token })
}

fn parse_bearer(value: &[u8]) -> Result<&[u8], AuthError> {
    const SCHEME: &[u8] = b"bearer";
    let Some(scheme) = value.get(..SCHEME.len()) else {
        return Err(AuthError::MissingCredential);
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(AuthError::MissingCredential);
    }
    let rest = &value[SCHEME.len()..];
    let token = match rest.first() {
        None => return Err(malformed(MalformedRequest::EmptyToken)),
        Some(b' ') => {
            let spaces = rest.iter().take_while(|&&b| b == b' ').count();
            &rest[spaces..]
        }
        Some(b'\t') => return Err(malformed(MalformedRequest::BadSeparator)),
        // `Bearerx …` is another scheme.
        Some(_) => return Err(AuthError::MissingCredential),
    };
    if token.is_empty() {
        return Err(malformed(MalformedRequest::EmptyToken));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::InvalidToken(InvalidToken::TooLong));
    }
    Ok(token)
}

/// The credential as a token, if it follows RFC 6750's `b64token` grammar.
pub(crate) fn b64token(credential: &[u8]) -> Result<&str, AuthError> {
    if !is_b64token(credential) {
        return Err(malformed(MalformedRequest::BadTokenCharacters));
    }
    // `is_b64token` admits ASCII only.
    std::str::from_utf8(credential).map_err(|_| malformed(MalformedRequest::BadTokenCharacters))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
pub(crate) fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && all_bytes(&token[..body_len], |b| {
            is_base64url(b) | (b == b'.') | (b == b'~') | (b == b'+') | (b == b'/')
        })
}

/// `[A-Za-z0-9_-]`, written without branches so that byte scans vectorise.
fn is_base64url(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'_')
}

/// Whether every byte satisfies `allowed`. Scans whole chunks without early exit, which the
/// compiler vectorises: a ~1 KB token takes tens of nanoseconds instead of a microsecond.
fn all_bytes(bytes: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    bytes
        .chunks(64)
        .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & allowed(b)))
}

fn malformed(kind: MalformedRequest) -> AuthError {
    AuthError::MalformedRequest(kind)
}

/// Whether a request URI also carries an `access_token` query parameter (RFC 6750 §2.3).
///
/// Parameter names are decoded as `application/x-www-form-urlencoded` first (percent-escapes,
/// `+` for a space), as the application reading the query would, so `access%5Ftoken` is found too.
pub(crate) fn has_access_token_query(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|query| {
        url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "access_token")
    })
}

/// The kinds of bearer token, told apart the way Clerk's SDK does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Three non-empty base64url segments.
    Jwt,
    /// `mt_…`: an opaque machine token.
    OpaqueMachineToken,
    /// A Clerk key sent by mistake: a machine secret key or API key (`ak_…`), an instance
    /// secret key (`sk_test_…`, `sk_live_…`) or a publishable key (`pk_test_…`, `pk_live_…`).
    /// Rejected as this mismatch, and never sent to an introspection endpoint.
    ClerkKey(TypeMismatch),
}

/// Prefixes of Clerk's instance secret keys and publishable keys. Only the full prefixes: a
/// random opaque token from another issuer starts with `sk_` once in 2^18.
const CLERK_KEY_PREFIXES: [&str; 4] = ["sk_test_", "sk_live_", "pk_test_", "pk_live_"];

/// Classifies a token: JWT shape first, then the `mt_`, `oat_` and `ak_` prefixes, then Clerk's
/// other keys.
pub(crate) fn classify(token: &str) -> Result<TokenKind, TypeMismatch> {
    if is_jwt_shaped(token.as_bytes()) {
        Ok(TokenKind::Jwt)
    } else if token.starts_with("mt_") {
        Ok(TokenKind::OpaqueMachineToken)
    } else if token.starts_with("oat_") {
        Err(TypeMismatch::OAuthToken)
    } else if token.starts_with("ak_") {
        Ok(TokenKind::ClerkKey(TypeMismatch::ApiKey))
    } else if CLERK_KEY_PREFIXES
        .iter()
        .any(|prefix| token.starts_with(prefix))
    {
        Ok(TokenKind::ClerkKey(TypeMismatch::ClerkKey))
    } else {
        Err(TypeMismatch::UnknownFormat)
    }
}

/// The token as text, if it is shaped like a JWT. Its characters (base64url and dots) are all
/// RFC 6750 `b64token` characters, so a JWT-shaped credential needs no other check.
pub(crate) fn jwt_shaped(token: &[u8]) -> Option<&str> {
    if is_jwt_shaped(token) {
        std::str::from_utf8(token).ok()
    } else {
        None
    }
}

/// Exactly three non-empty segments of base64url characters (no padding).
fn is_jwt_shaped(bytes: &[u8]) -> bool {
    // Both passes over the whole token are vectorised (`memchr` finds the dots).
    let mut dots = memchr::memchr_iter(b'.', bytes);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return false;
    };
    first > 0
        && second > first + 1
        && second + 1 < bytes.len()
        && all_bytes(bytes, |b| is_base64url(b) | (b == b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(value: &str) -> Result<&str, AuthError> {
        parse_bearer(value.as_bytes()).and_then(b64token)
    }

    #[test]
    fn accepts_any_scheme_case_and_several_spaces() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER   abc.def.ghi",
        ] {
            assert_eq!(parse(value).unwrap(), "abc.def.ghi", "{value}");
        }
        assert_eq!(parse("Bearer a+b/c~d==").unwrap(), "a+b/c~d==");
    }

    #[test]
    fn other_schemes_and_bare_tokens_are_missing_credentials() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "abc.def.ghi",
            "Bearerabc",
            "",
            "Token x",
        ] {
            assert_eq!(parse(value), Err(AuthError::MissingCredential), "{value:?}");
        }
    }

    #[test]
    fn ill_formed_bearer_credentials_are_malformed() {
        use MalformedRequest::*;
        for (value, kind) in [
            ("Bearer", EmptyToken),
            ("Bearer ", EmptyToken),
            ("Bearer    ", EmptyToken),
            ("Bearer\tabc", BadSeparator),
            ("Bearer abc def", BadTokenCharacters),
            ("Bearer abc\tdef", BadTokenCharacters),
            ("Bearer \tabc", BadTokenCharacters),
            ("Bearer a, Bearer b", BadTokenCharacters),
            ("Bearer ===", BadTokenCharacters),
            ("Bearer a=b", BadTokenCharacters),
            ("Bearer abc\u{e9}", BadTokenCharacters),
        ] {
            assert_eq!(parse(value), Err(malformed(kind)), "{value:?}");
        }
    }

    #[test]
    fn over_long_tokens_are_rejected_before_scanning() {
        let value = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(
            parse(&value),
            Err(AuthError::InvalidToken(InvalidToken::TooLong))
        );
        let value = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN));
        assert!(parse(&value).is_ok());
    }

    #[test]
    fn several_authorization_headers_are_malformed() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        assert_eq!(
            bearer_credential(&headers).unwrap_err(),
            malformed(MalformedRequest::SeveralAuthorizationHeaders)
        );
        assert_eq!(
            bearer_credential(&HeaderMap::new()).unwrap_err(),
            AuthError::MissingCredential
        );
    }

    #[test]
    fn byte_classes_match_their_definitions() {
        for b in 0..=255u8 {
            let base64url = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_base64url(b), base64url, "{b:#04x}");
        }
    }

    #[test]
    fn jwt_shape_is_three_non_empty_base64url_segments() {
        let reference = |token: &str| {
            let segments: Vec<&str> = token.split('.').collect();
            segments.len() == 3
                && segments
                    .iter()
                    .all(|s| !s.is_empty() && s.bytes().all(is_base64url))
        };
        let long = "A".repeat(700);
        for token in [
            "a.b.c",
            ".b.c",
            "a..c",
            "a.b.",
            "..",
            ".",
            "",
            "a.b.c.d",
            "a.b",
            "abc",
            "a+b.c.d",
            "a.b=.c",
            "a.b.c=",
            "-_.x.y",
            "a.b.c\n",
            "a.\u{e9}.c",
            &format!("{long}.{long}.{long}"),
            &format!("{long}..{long}"),
            &format!("{long}.{long}.{long}."),
        ] {
            assert_eq!(
                is_jwt_shaped(token.as_bytes()),
                reference(token),
                "{token:?}"
            );
            assert_eq!(
                jwt_shaped(token.as_bytes()).is_some(),
                reference(token),
                "{token:?}"
            );
        }
    }

    #[test]
    fn classifies_like_clerk() {
        assert_eq!(classify("a.b.c"), Ok(TokenKind::Jwt));
        assert_eq!(classify("mt_abc"), Ok(TokenKind::OpaqueMachineToken));
        assert_eq!(classify("oat_abc"), Err(TypeMismatch::OAuthToken));
        for other in [
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b.c=",
            "a.b+.c",
            "sk_other",
            "pk_x",
            "SK_LIVE_x",
            "........",
        ] {
            assert_eq!(classify(other), Err(TypeMismatch::UnknownFormat), "{other}");
        }
    }

    #[test]
    fn recognises_clerk_keys() {
        assert_eq!(
            classify("ak_abc"),
            Ok(TokenKind::ClerkKey(TypeMismatch::ApiKey))
        );
        for key in ["sk_test_abc", "sk_live_abc", "pk_test_abc", "pk_live_abc"] {
            assert_eq!(
                classify(key),
                Ok(TokenKind::ClerkKey(TypeMismatch::ClerkKey)),
                "{key}"
            );
        }
    }

    #[test]
    fn finds_access_token_query_parameters() {
        assert!(has_access_token_query(
            &"/x?access_token=a".parse().unwrap()
        ));
        assert!(has_access_token_query(
            &"/x?a=1&access_token".parse().unwrap()
        ));
        assert!(!has_access_token_query(
            &"/x?my_access_token=a".parse().unwrap()
        ));
        assert!(!has_access_token_query(&"/x".parse().unwrap()));
    }

    #[test]
    fn decodes_parameter_names_before_comparing() {
        for query in [
            "access%5Ftoken=a",
            "%61ccess_token=a",
            "x=1&%61%63%63%65%73%73%5f%74%6f%6b%65%6e",
        ] {
            let uri = format!("/x?{query}").parse().unwrap();
            assert!(has_access_token_query(&uri), "{query}");
        }
        for query in ["access+token=a", "access%20token=a", "a=access_token"] {
            let uri = format!("/x?{query}").parse().unwrap();
            assert!(!has_access_token_query(&uri), "{query}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Bytes a header value may hold, drawn mostly from the grammar's own pieces so that cases
    /// come close to valid credentials.
    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"Bearer".to_vec()),
            Just(b"bEaReR".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"=".to_vec()),
            Just(b",".to_vec()),
            "[A-Za-z0-9._~+/-]{1,12}".prop_map(String::into_bytes),
            // Any byte a header value can carry: visible ASCII, space, tab and obs-text.
            prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff].prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    /// RFC 6750's `b64token`, read differently from [`is_b64token`]: everything before the first
    /// `=` is one or more token characters, and everything from it on is `=`.
    fn reference_b64token(token: &[u8]) -> bool {
        let is_char = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
        let body_end = token.iter().position(|&b| b == b'=').unwrap_or(token.len());
        body_end > 0
            && token[..body_end].iter().all(is_char)
            && token[body_end..].iter().all(|&b| b == b'=')
    }

    /// `bearer` with each letter's case chosen by `upper`.
    fn scheme(upper: &[bool]) -> String {
        "bearer"
            .chars()
            .zip(upper)
            .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn any_header_value_is_answered_without_panicking(bytes in header_bytes()) {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                return Ok(());
            };
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, value);
            if let Ok(bearer) = bearer_credential(&headers) {
                prop_assert!(bytes.ends_with(bearer.token));
                if let Ok(token) = b64token(bearer.token) {
                    let _ = classify(token);
                }
            }
        }

        #[test]
        fn an_accepted_bearer_credential_is_the_b64token_after_the_scheme_and_spaces(
            bytes in header_bytes(),
        ) {
            if let Ok(token) = parse_bearer(&bytes).and_then(b64token) {
                prop_assert!(bytes[..6].eq_ignore_ascii_case(b"bearer"));
                let after_scheme = &bytes[6..];
                let spaces = after_scheme.iter().take_while(|&&b| b == b' ').count();
                prop_assert!(spaces >= 1);
                prop_assert_eq!(&after_scheme[spaces..], token.as_bytes());
                prop_assert!(reference_b64token(token.as_bytes()));
            }
        }

        #[test]
        fn every_well_formed_bearer_credential_round_trips(
            upper in proptest::collection::vec(any::<bool>(), 6),
            spaces in 1usize..8,
            token in "[A-Za-z0-9._~+/-]{1,64}={0,3}",
        ) {
            let value = format!("{}{}{token}", scheme(&upper), " ".repeat(spaces));
            prop_assert_eq!(parse_bearer(value.as_bytes()).and_then(b64token), Ok(token.as_str()));
        }

        #[test]
        fn b64token_acceptance_matches_the_grammar(token in header_bytes()) {
            prop_assert_eq!(is_b64token(&token), reference_b64token(&token));
            prop_assert_eq!(b64token(&token).is_ok(), reference_b64token(&token));
        }

        #[test]
        fn b64token_acceptance_matches_the_grammar_for_any_bytes(
            token in proptest::collection::vec(any::<u8>(), 1..80),
        ) {
            prop_assert_eq!(is_b64token(&token), reference_b64token(&token));
        }
    }
}
