//! The strict JSON reader behind JWT headers and claims, JWKS documents and RFC 7662 replies.
//!
//! Invariants, against `serde_json` and a duplicate finder written here: an accepted document is
//! valid JSON, an object, equal to what `serde_json` reads, with no member name repeated at the
//! top level or below; a valid document refused for a duplicate has one; a syntax
//! refusal is JSON `serde_json` refuses too; and a valid object without duplicates is accepted.

#![no_main]

use std::collections::HashSet;
use std::fmt;

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use tower_machine_auth::fuzzing::strict_json_object;

/// Whether a JSON value repeats a member name anywhere.
struct Duplicates(bool);

impl<'de> Deserialize<'de> for Duplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DuplicatesVisitor)
    }
}

struct DuplicatesVisitor;

impl<'de> Visitor<'de> for DuplicatesVisitor {
    type Value = Duplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }
    fn visit_str<E>(self, _: &str) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }
    fn visit_unit<E>(self) -> Result<Duplicates, E> {
        Ok(Duplicates(false))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Duplicates, A::Error> {
        let mut found = false;
        while let Some(Duplicates(inner)) = seq.next_element()? {
            found |= inner;
        }
        Ok(Duplicates(found))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Duplicates, A::Error> {
        let mut names = HashSet::new();
        let mut found = false;
        while let Some(name) = map.next_key::<String>()? {
            found |= !names.insert(name);
            let Duplicates(inner) = map.next_value()?;
            found |= inner;
        }
        Ok(Duplicates(found))
    }
}

/// The top-level member names, in order, repeats included.
fn top_level_names(data: &[u8]) -> Vec<String> {
    struct Names(Vec<String>);
    impl<'de> Deserialize<'de> for Names {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct NamesVisitor;
            impl<'de> Visitor<'de> for NamesVisitor {
                type Value = Names;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Names, A::Error> {
                    let mut names = Vec::new();
                    while let Some(name) = map.next_key::<String>()? {
                        map.next_value::<IgnoredAny>()?;
                        names.push(name);
                    }
                    Ok(Names(names))
                }
            }
            deserializer.deserialize_map(NamesVisitor)
        }
    }
    serde_json::from_slice::<Names>(data)
        .expect("an accepted document is an object")
        .0
}

/// serde_json's `Value` takes a member named `$serde_json::private::…` for one of its private
/// types and refuses the document, while the strict reader reads it as a plain member: such
/// documents cannot be compared with `Value`.
const SERDE_PRIVATE_NAME: &[u8] = b"$serde_json::private::";

fuzz_target!(|data: &[u8]| {
    if data
        .windows(SERDE_PRIVATE_NAME.len())
        .any(|window| window == SERDE_PRIVATE_NAME)
    {
        let _ = strict_json_object(data);
        return;
    }
    let strict = strict_json_object(data);
    let lenient = serde_json::from_slice::<Value>(data);
    let duplicates = serde_json::from_slice::<Duplicates>(data)
        .ok()
        .map(|Duplicates(found)| found);
    match &strict {
        Ok(map) => {
            let lenient = lenient.expect("an accepted document is JSON");
            assert_eq!(lenient, Value::Object(map.clone()));
            let names = top_level_names(data);
            let unique: HashSet<&String> = names.iter().collect();
            assert_eq!(
                unique.len(),
                names.len(),
                "accepted a repeated top-level name"
            );
            assert_eq!(names.len(), map.len());
            assert_eq!(duplicates, Some(false), "accepted a repeated name");
        }
        Err("duplicate member") => {
            // The reader stops at the first repeated name, so what follows it may be invalid.
            if lenient.is_ok() {
                assert_eq!(duplicates, Some(true), "refused without a repeated name");
            }
        }
        Err("not an object") => {
            assert!(lenient.is_ok_and(|value| !value.is_object()));
        }
        Err(_) => {
            assert!(lenient.is_err(), "refused JSON that serde_json reads");
        }
    }
    if duplicates == Some(false) && lenient_is_object(data) {
        assert!(strict.is_ok(), "refused an object without repeated names");
    }
});

fn lenient_is_object(data: &[u8]) -> bool {
    serde_json::from_slice::<Value>(data).is_ok_and(|value| value.is_object())
}
