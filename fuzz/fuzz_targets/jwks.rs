//! JWKS documents, as a JWKS fetch reads them, with every supported algorithm allowed.
//!
//! Invariants: every kept key has a non-empty `kid` of at most 256 bytes, unique in the set, a
//! supported `kty` (`RSA`, `EC`, `OKP`), no private members and allowed algorithms; each entry is
//! either kept or skipped; and parsing a document of only the kept keys' entries, re-serialised,
//! keeps the same kids with the same key material.

#![no_main]

use std::collections::{BTreeMap, HashSet};

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tower_machine_auth::Algorithm;
use tower_machine_auth::fuzzing::jwk_set;

fn kept(body: &[u8]) -> Option<BTreeMap<String, [u8; 32]>> {
    let set = jwk_set(body, &Algorithm::ALL).ok()?;
    let mut kids = BTreeMap::new();
    for key in &set.keys {
        let kid = key.kid().expect("a kept key has a kid");
        assert!(!kid.is_empty() && kid.len() <= 256, "kept kid {kid:?}");
        assert!(!key.algorithms().is_empty());
        assert!(
            kids.insert(kid.to_owned(), key.fingerprint()).is_none(),
            "two kept keys share the kid {kid:?}"
        );
    }
    assert!(!kids.is_empty(), "an accepted set keeps a key");
    Some(kids)
}

fuzz_target!(|data: &[u8]| {
    let Some(kids) = kept(data) else {
        return;
    };
    let document: Value = serde_json::from_slice(data).expect("an accepted JWKS is JSON");
    let entries = document["keys"]
        .as_array()
        .expect("an accepted JWKS has keys");
    let set = jwk_set(data, &Algorithm::ALL).expect("parsing is deterministic");
    assert_eq!(set.keys.len() + set.skipped.len(), entries.len());

    let kept_kids: HashSet<&str> = kids.keys().map(String::as_str).collect();
    let mut kept_entries = Vec::new();
    for entry in entries {
        let Some(kid) = entry.get("kid").and_then(Value::as_str) else {
            continue;
        };
        if kept_kids.contains(kid) {
            kept_entries.push(entry.clone());
        }
    }
    for kid in &kept_kids {
        let supported = kept_entries.iter().any(|entry| {
            entry["kid"] == *kid
                && matches!(entry["kty"].as_str(), Some("RSA" | "EC" | "OKP"))
                && ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
                    .iter()
                    .all(|member| entry.get(member).is_none())
        });
        assert!(supported, "kept {kid:?} without a supported public kty");
    }
    let again = json!({ "keys": kept_entries }).to_string();
    let kids_again = kept(again.as_bytes()).expect("the kept keys are kept again");
    assert_eq!(kids_again, kids, "re-serialised kept keys give other keys");
});
