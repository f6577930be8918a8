//! RFC 7662 introspection replies, read as the RFC 7662 introspector reads a 200 (with and
//! without a required issuer and audience), then handed to a verifier for an opaque token.
//!
//! Input: byte 0 chooses the introspector's checks, the rest is the reply.
//!
//! Invariants: a reply read as a valid token is a JSON object with `active: true`, whose `sub`
//! (else `client_id`) is the subject, whose times are finite NumericDates, whose issuer and
//! audience match when required, and whose claims hold none of the mapped members; a reply with
//! `active: false` is an invalid token; the verifier accepts only a token whose subject is a
//! machine id, still valid now and scoped to this machine.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use machine_auth_core::clock::to_unix_millis;
use serde_json::Value;
use tower_machine_auth::error::InvalidToken;
use tower_machine_auth::fuzzing::rfc7662_reply;
use tower_machine_auth::introspect::Rfc7662Introspector;
use tower_machine_auth::{AuthError, MachineId, MachineVerifier, TokenFormat};
use tower_machine_auth_fuzz::{FixedClock, LEEWAY_MS, NOW_MS, OWN_MACHINE_ID, Replay, runtime};

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://api.example.com";
const MAPPED: [&str; 7] = ["active", "sub", "exp", "iat", "nbf", "iss", "jti"];

struct State {
    /// No checks, the issuer, the audience, both.
    introspectors: Vec<(Rfc7662Introspector, bool, bool)>,
    replay: Replay,
    verifier: MachineVerifier,
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    runtime().block_on(async {
        let url = "https://auth.example.com/introspect";
        let mut introspectors = Vec::new();
        for (issuer, audience) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut builder = Rfc7662Introspector::builder(url);
            if issuer {
                builder = builder.issuer(ISSUER);
            }
            if audience {
                builder = builder.audiences([AUDIENCE]);
            }
            introspectors.push((builder.build().expect("an introspector"), issuer, audience));
        }
        let replay = Replay::default();
        let verifier = MachineVerifier::builder()
            .introspector(replay.clone())
            .own_machine_id(OWN_MACHINE_ID)
            .clock(FixedClock)
            .build()
            .expect("a verifier");
        State {
            introspectors,
            replay,
            verifier,
        }
    })
});

fn date_ok(reply: &Value, name: &str, read: Option<i64>) {
    match reply.get(name) {
        None => assert_eq!(read, None),
        Some(value) => {
            let seconds = value.as_f64().expect("a read date is a number");
            assert!(seconds.is_finite() && seconds >= 0.0, "{name} {seconds}");
            let ms = read.expect("a present date is read");
            assert!(
                (ms as f64 - seconds * 1000.0).abs() <= 1.0,
                "{name}: {seconds} read as {ms}"
            );
        }
    }
}

/// The `token_type`s of access tokens, which the introspectors here accept (no others are
/// allowed), compared ignoring ASCII case.
fn is_access_token_type(token_type: &str) -> bool {
    [
        "bearer",
        "access_token",
        "urn:ietf:params:oauth:token-type:access_token",
    ]
    .iter()
    .any(|accepted| accepted.eq_ignore_ascii_case(token_type))
}

fuzz_target!(|data: &[u8]| {
    let Some((choice, body)) = data.split_first() else {
        return;
    };
    let state = &*STATE;
    let (introspector, needs_issuer, needs_audience) =
        &state.introspectors[usize::from(*choice) % state.introspectors.len()];
    let reading = rfc7662_reply(introspector, body);
    if let Ok(answer) = &reading {
        let reply: Value = serde_json::from_slice(body).expect("a read reply is JSON");
        assert!(reply["active"].is_boolean());
        match answer {
            Ok(token) => {
                assert_eq!(reply["active"], true);
                let subject = reply
                    .get("sub")
                    .or_else(|| reply.get("client_id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                assert_eq!(token.subject, subject);
                date_ok(&reply, "exp", token.expires_at.map(to_unix_millis));
                date_ok(&reply, "iat", token.issued_at.map(to_unix_millis));
                date_ok(&reply, "nbf", token.not_before.map(to_unix_millis));
                if *needs_issuer {
                    assert_eq!(token.issuer.as_deref(), Some(ISSUER));
                }
                if *needs_audience {
                    let aud = &reply["aud"];
                    assert!(
                        aud == AUDIENCE
                            || aud
                                .as_array()
                                .is_some_and(|a| a.iter().any(|v| v == AUDIENCE))
                    );
                }
                for name in MAPPED {
                    assert!(!token.claims.contains_key(name), "claim {name} kept");
                }
                if let Some(token_type) = reply.get("token_type").and_then(Value::as_str) {
                    assert!(is_access_token_type(token_type), "{token_type}");
                }
            }
            Err(AuthError::InvalidToken(InvalidToken::NotAnAccessToken)) => {
                // Active, but another kind of token (a refresh token, say).
                assert_eq!(reply["active"], true);
                let token_type = reply["token_type"]
                    .as_str()
                    .expect("a refused type is a string");
                assert!(!is_access_token_type(token_type), "{token_type}");
            }
            Err(AuthError::InvalidToken(_)) => assert_eq!(reply["active"], false),
            Err(_) => assert_eq!(reply["active"], true),
        }
    }

    state.replay.answer_with(reading.clone());
    let outcome = runtime().block_on(state.verifier.verify("opaque-fuzz-token"));
    if let Ok(machine) = outcome {
        let Ok(Ok(token)) = reading else {
            panic!("accepted a token the reply did not vouch for");
        };
        assert!(MachineId::is_valid(&token.subject));
        assert_eq!(machine.machine_id().as_str(), token.subject);
        assert_eq!(machine.token_format(), TokenFormat::Opaque);
        assert!(
            token
                .expires_at
                .is_none_or(|exp| to_unix_millis(exp) > NOW_MS - LEEWAY_MS)
        );
        for at in [token.issued_at, token.not_before] {
            assert!(at.is_none_or(|at| to_unix_millis(at) <= NOW_MS + LEEWAY_MS));
        }
        assert!(machine.has_scope(OWN_MACHINE_ID));
        assert_eq!(machine.issuer(), token.issuer.as_deref());
    }
});
