//! JSON parsing that rejects duplicate member names at every depth.
//!
//! `serde_json::Value` keeps the last of two equal names, so `{"scopes":"a","scopes":"admin"}`
//! would silently become `admin`. RFC 7515 §4 and RFC 7519 §4 allow rejecting such input. The
//! verifier does, for JWT headers, claims, JWKS documents and introspection replies; the issuer
//! does for request bodies.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    /// Not JSON, or nested too deeply.
    #[error("not JSON, or nested too deeply")]
    Syntax,
    /// An object repeats a member name.
    #[error("an object repeats a member name")]
    DuplicateMember,
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
}

/// Parses `bytes` as a JSON object with no repeated member names.
///
/// ```
/// use machine_auth_core::strict_json::{StrictJsonError, parse_object};
///
/// let object = parse_object(br#"{"sub":"mch_a","scopes":"mch_b"}"#).unwrap();
/// assert_eq!(object["scopes"], "mch_b");
/// assert_eq!(
///     parse_object(br#"{"scopes":"a","scopes":"admin"}"#),
///     Err(StrictJsonError::DuplicateMember)
/// );
/// assert_eq!(parse_object(b"[1]"), Err(StrictJsonError::NotAnObject));
/// assert_eq!(parse_object(b"{"), Err(StrictJsonError::Syntax));
/// ```
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(_) => Err(StrictJsonError::NotAnObject),
        // Only our visitor raises data errors: `deserialize_any` accepts every JSON value.
        Err(error) if error.is_data() => Err(StrictJsonError::DuplicateMember),
        Err(_) => Err(StrictJsonError::Syntax),
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate member names")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let StrictValue(value) = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects() {
        let map = parse_object(br#"{"a":1,"b":[true,null,{"c":"d"}],"e":1.5}"#).unwrap();
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"a":1,"b":[true,null,{"c":"d"}],"e":1.5})
        );
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        for doc in [
            r#"{"a":1,"a":2}"#,
            r#"{"scope":"read","scope":"admin"}"#,
            r#"{"x":{"a":1,"a":1}}"#,
            r#"{"x":[{"a":1,"a":2}]}"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            assert_eq!(
                parse_object(doc.as_bytes()),
                Err(StrictJsonError::DuplicateMember),
                "{doc}"
            );
        }
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        assert_eq!(parse_object(b"[1]"), Err(StrictJsonError::NotAnObject));
        assert_eq!(parse_object(b"{"), Err(StrictJsonError::Syntax));
        assert_eq!(parse_object(b"{} x"), Err(StrictJsonError::Syntax));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_object(deep.as_bytes()), Err(StrictJsonError::Syntax));
    }
}
