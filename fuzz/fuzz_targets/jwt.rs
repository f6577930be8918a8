//! Whole token strings through a `MachineVerifier` built from the test suite's PEM key.
//!
//! Invariants: a token is accepted only if its signature verifies under the test key with an
//! allowed algorithm (checked here without the crate) and its claims pass (`sub` a machine id,
//! `exp` in the future, this machine in its scopes); the verifier with a cache gives the same
//! answer twice and the same as the verifier without one; and for a JWT-shaped token, the crate's
//! JWT path called directly gives the verifier's answer.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tower_machine_auth::fuzzing::{JwtChecks, Key, key_from_pem, token_kind, verify_jwt};
use tower_machine_auth::{AuthError, MachineVerifier};
use tower_machine_auth_fuzz::{
    ALLOWED, LEEWAY_MS, NOW_MS, OWN_MACHINE_ID, PUBLIC_PEM, assert_acceptable, pem_verifier,
    runtime,
};

struct State {
    uncached: MachineVerifier,
    cached: MachineVerifier,
    key: Key,
    checks: JwtChecks,
}

static STATE: LazyLock<State> = LazyLock::new(|| State {
    uncached: pem_verifier(false),
    cached: pem_verifier(true),
    key: key_from_pem(PUBLIC_PEM, &ALLOWED).expect("the test key"),
    checks: JwtChecks {
        algorithms: ALLOWED.to_vec(),
        leeway_ms: LEEWAY_MS,
        issuer: None,
        audiences: Vec::new(),
        max_lifetime_ms: None,
    },
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let state = &*STATE;
    let outcome = runtime().block_on(state.uncached.verify(token));
    if let Ok(machine) = &outcome {
        assert_acceptable(token, machine);
    }
    let id = |result: &Result<tower_machine_auth::AuthenticatedMachine, AuthError>| {
        result
            .as_ref()
            .map(|machine| machine.machine_id().as_str().to_owned())
            .map_err(Clone::clone)
    };
    let first = runtime().block_on(state.cached.verify(token));
    let second = runtime().block_on(state.cached.verify(token));
    assert_eq!(id(&first), id(&outcome), "the cache changed the answer");
    assert_eq!(id(&second), id(&outcome), "a cached answer differs");

    if token_kind(token) == Ok("jwt") {
        let direct = verify_jwt(token, &state.key, &state.checks, NOW_MS).and_then(|machine| {
            if machine.has_scope(OWN_MACHINE_ID) {
                Ok(machine)
            } else {
                Err(AuthError::NotForThisMachine)
            }
        });
        assert_eq!(
            id(&direct),
            id(&outcome),
            "the JWT path disagrees with the verifier"
        );
    }
});
