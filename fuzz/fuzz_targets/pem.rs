//! PEM (or bare base64 SPKI) public keys, as `CLERK_JWT_KEY` is read.
//!
//! Invariants: a loaded key verifies at least one algorithm, only allowed ones, and has no
//! `kid`; escaping its line breaks as `\n` gives the same key, and `same_public_key` says so;
//! a refusal never repeats a line of base64 key material from the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_machine_auth::Algorithm;
use tower_machine_auth::fuzzing::{key_from_pem, same_public_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for allowed in [&Algorithm::ALL[..], &[Algorithm::RS256]] {
        match key_from_pem(text, allowed) {
            Ok(key) => {
                let algorithms = key.algorithms();
                assert!(!algorithms.is_empty());
                assert!(algorithms.iter().all(|a| allowed.contains(a)));
                assert_eq!(key.kid(), None);
                let escaped = text.trim().replace('\n', "\\n");
                let again = key_from_pem(&escaped, allowed).expect("the escaped form loads");
                assert_eq!(again.fingerprint(), key.fingerprint());
                assert!(same_public_key(text, &escaped));
            }
            Err(error) => {
                let message = error.to_string();
                let framing: Vec<&str> = text.lines().filter(|l| l.contains("-----")).collect();
                for line in text.lines().map(str::trim) {
                    let material = line.len() >= 40
                        && line
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                    if material && !framing.iter().any(|f| f.contains(line)) {
                        assert!(
                            !message.contains(line),
                            "the error repeats key material: {message}"
                        );
                    }
                }
            }
        }
    }
});
