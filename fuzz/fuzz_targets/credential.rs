//! `Authorization` header values: the bearer grammar (RFC 6750 §2.1), the token kinds, and the
//! verifier's `authenticate` on the same headers.
//!
//! Input: up to three header values separated by `\n` (values a header cannot carry are
//! dropped). Invariants: an accepted credential is the only `Authorization` header, starts with
//! the `Bearer` scheme (any case) and spaces, and is the rest of the value: non-empty, at most
//! 8 KiB, `b64token` characters only; `authenticate` refuses a refused credential with the same
//! error, and what it accepts is a token the test key really signed.

#![no_main]

use std::sync::LazyLock;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_machine_auth::MachineVerifier;
use tower_machine_auth::fuzzing::{bearer_token, token_kind};
use tower_machine_auth_fuzz::{assert_acceptable, pem_verifier, runtime};

static VERIFIER: LazyLock<MachineVerifier> = LazyLock::new(|| pem_verifier(false));

fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn is_jwt_shaped(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n').take(3) {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(AUTHORIZATION, value);
        }
    }

    let parsed = bearer_token(&headers);
    if let Ok(token) = parsed {
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
        let value = headers[AUTHORIZATION].as_bytes();
        assert!(value.len() > 7 && value[..6].eq_ignore_ascii_case(b"bearer"));
        assert!(value.ends_with(token.as_bytes()));
        let separator = &value[6..value.len() - token.len()];
        assert!(!separator.is_empty() && separator.iter().all(|&b| b == b' '));
        assert!(token.len() <= 8 * 1024);
        assert!(is_b64token(token), "accepted token characters: {token:?}");
        match token_kind(token) {
            Ok("jwt") => assert!(is_jwt_shaped(token)),
            Ok(_) => assert!(token.starts_with("mt_") && !is_jwt_shaped(token)),
            Err(_) => assert!(!is_jwt_shaped(token) && !token.starts_with("mt_")),
        }
    }

    let outcome = runtime().block_on(VERIFIER.authenticate(&headers));
    match (&parsed, &outcome) {
        (Err(refused), outcome) => assert_eq!(outcome.as_ref().err(), Some(refused)),
        (Ok(token), Ok(machine)) => {
            assert_eq!(machine.token().map(|t| t.as_str()), Some(*token));
            assert_acceptable(token, machine);
        }
        (Ok(_), Err(_)) => {}
    }
});
