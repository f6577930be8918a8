//! Replies of Clerk's `/m2m_tokens/verify`, read as the Clerk introspector reads a 200, then
//! handed to a verifier (through an `Introspector` that returns what was read) for `mt_…`.
//!
//! Invariants: a reply read as a valid token is a `machine_to_machine_token` resource, neither
//! revoked nor expired, whose fields the token carries; the verifier accepts only a token whose
//! subject is a machine id, whose expiration has not passed and that names this machine in its
//! scopes, and hands over its id, scopes and claims.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use machine_auth_core::clock::to_unix_millis;
use serde_json::Value;
use tower_machine_auth::fuzzing::clerk_reply;
use tower_machine_auth::{MachineId, MachineVerifier, TokenFormat};
use tower_machine_auth_fuzz::{FixedClock, LEEWAY_MS, NOW_MS, OWN_MACHINE_ID, Replay, runtime};

static STATE: LazyLock<(Replay, MachineVerifier)> = LazyLock::new(|| {
    let replay = Replay::default();
    let verifier = runtime().block_on(async {
        MachineVerifier::builder()
            .introspector(replay.clone())
            .own_machine_id(OWN_MACHINE_ID)
            .clock(FixedClock)
            .build()
            .expect("a verifier")
    });
    (replay, verifier)
});

fuzz_target!(|data: &[u8]| {
    let reading = clerk_reply(data);
    // Invalid UTF-8 in a member the reader ignores is not looked at: read the reply as text with
    // replacement characters. A number out of `f64`'s range in an ignored member is skipped by
    // the reader but refused by `Value`: then only the verifier's side is checked.
    let text = String::from_utf8_lossy(data);
    let reply = serde_json::from_str::<Value>(&text);
    if let (Ok(answer), Ok(reply)) = (&reading, &reply) {
        assert_eq!(reply["object"], "machine_to_machine_token");
        match answer {
            Ok(token) => {
                assert_eq!(reply["revoked"], false);
                assert_eq!(reply["expired"], false);
                assert_eq!(reply["subject"].as_str(), Some(token.subject.as_str()));
                assert_eq!(reply["id"].as_str(), Some(token.token_id.as_str()));
                assert_eq!(
                    reply["expiration"].as_i64(),
                    token.expires_at.map(to_unix_millis)
                );
            }
            Err(_) => assert!(reply["revoked"] == true || reply["expired"] == true),
        }
    }

    let (replay, verifier) = &*STATE;
    replay.answer_with(reading.clone());
    let outcome = runtime().block_on(verifier.verify("mt_fuzz"));
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
        assert!(
            token
                .issued_at
                .is_none_or(|iat| to_unix_millis(iat) <= NOW_MS + LEEWAY_MS)
        );
        assert_eq!(machine.scopes(), token.scopes.as_slice());
        assert!(machine.has_scope(OWN_MACHINE_ID));
        assert_eq!(machine.claims(), &token.claims);
    }
});
