//! JSON parsing that rejects duplicate member names at every depth.
//!
//! `serde_json::Value` keeps the last of two equal names, so `{"scopes":"a","scopes":"admin"}`
//! would silently become `admin`. RFC 7515 §4 and RFC 7519 §4 allow rejecting such input. The
//! verifier does, for JWT headers, claims, JWKS documents and introspection replies; the issuer
//! does for request bodies.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use smallvec::SmallVec;

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
    match serde_json::from_str::<StrictValue>(utf8(bytes)?) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(_) => Err(StrictJsonError::NotAnObject),
        // Only our visitor raises data errors: `deserialize_any` accepts every JSON value.
        Err(error) if error.is_data() => Err(StrictJsonError::DuplicateMember),
        Err(_) => Err(StrictJsonError::Syntax),
    }
}

/// Reads the members of one JSON object for [`read_object`]: each call gets a member's name and
/// must read exactly its value, with [`StrictValue`] (to keep it) or [`CheckedValue`] (to check and
/// skip it).
pub trait MemberReader<'de> {
    /// Reads the value of the member `name`.
    ///
    /// # Errors
    ///
    /// The deserializer's error, for a value that is not valid JSON or repeats a member name.
    fn read<A: MapAccess<'de>>(&mut self, name: &str, access: &mut A) -> Result<(), A::Error>;
}

/// Reads a JSON object member by member, with the same checks as [`parse_object`] (valid JSON, an
/// object, no repeated member names at any depth) but building only what `reader` keeps.
///
/// ```
/// use machine_auth_core::strict_json::{CheckedValue, MemberReader, StrictJsonError, read_object};
/// use serde::de::MapAccess;
///
/// #[derive(Default)]
/// struct Subject(Option<serde_json::Value>);
///
/// impl<'de> MemberReader<'de> for Subject {
///     fn read<A: MapAccess<'de>>(&mut self, name: &str, access: &mut A) -> Result<(), A::Error> {
///         if name == "sub" {
///             self.0 = Some(access.next_value::<machine_auth_core::strict_json::StrictValue>()?.0);
///         } else {
///             access.next_value::<CheckedValue>()?;
///         }
///         Ok(())
///     }
/// }
///
/// let mut subject = Subject::default();
/// read_object(br#"{"sub":"mch_a","role":{"x":1}}"#, &mut subject).unwrap();
/// assert_eq!(subject.0.unwrap(), "mch_a");
/// let repeated = read_object(br#"{"a":{"x":1,"x":2}}"#, &mut Subject::default());
/// assert_eq!(repeated, Err(StrictJsonError::DuplicateMember));
/// ```
pub fn read_object<'de, R: MemberReader<'de>>(
    bytes: &'de [u8],
    reader: &mut R,
) -> Result<(), StrictJsonError> {
    let mut deserializer = serde_json::Deserializer::from_str(utf8(bytes)?);
    let is_object = ObjectSeed(reader)
        .deserialize(&mut deserializer)
        .and_then(|is_object| deserializer.end().map(|()| is_object));
    match is_object {
        Ok(true) => Ok(()),
        Ok(false) => Err(StrictJsonError::NotAnObject),
        // Only the visitors here raise data errors: `deserialize_any` accepts every JSON value.
        Err(error) if error.is_data() => Err(StrictJsonError::DuplicateMember),
        Err(_) => Err(StrictJsonError::Syntax),
    }
}

/// The whole document as text: JSON is UTF-8 (RFC 8259 §8.1). Checked once, up front, so that
/// `serde_json` need not check each string again.
fn utf8(bytes: &[u8]) -> Result<&str, StrictJsonError> {
    std::str::from_utf8(bytes).map_err(|_| StrictJsonError::Syntax)
}

/// A JSON value with no repeated member names at any depth.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// A JSON value checked as [`StrictValue`] is, and not kept: nothing is built but the member names
/// of each object, to compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedValue;

impl<'de> Deserialize<'de> for CheckedValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(CheckVisitor)
            .map(|_| CheckedValue)
    }
}

/// A JSON value checked as [`StrictValue`] is, kept only if it is a string, and then borrowed from
/// the input unless it holds escapes: for members that are compared rather than kept.
///
/// ```
/// use machine_auth_core::strict_json::StrictText;
///
/// let text: StrictText<'_> = serde_json::from_str(r#""RS256""#).unwrap();
/// assert_eq!(text.as_str(), Some("RS256"));
/// let number: StrictText<'_> = serde_json::from_str("7").unwrap();
/// assert_eq!(number.as_str(), None);
/// assert!(serde_json::from_str::<StrictText<'_>>(r#"{"a":1,"a":2}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictText<'de> {
    /// A string.
    String(Cow<'de, str>),
    /// Any other value, `null` included.
    NotAString,
}

impl StrictText<'_> {
    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) => Some(text),
            Self::NotAString => None,
        }
    }
}

impl<'de> Deserialize<'de> for StrictText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

/// Keeps a string; checks any other value as [`CheckVisitor`] does.
struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = StrictText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate member names")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(StrictText::NotAString)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(StrictText::NotAString)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(StrictText::NotAString)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(StrictText::NotAString)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(StrictText::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StrictText::String(Cow::Owned(v.to_owned())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(StrictText::NotAString)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        CheckVisitor.visit_seq(seq).map(|()| StrictText::NotAString)
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        CheckVisitor
            .visit_map(access)
            .map(|()| StrictText::NotAString)
    }
}

/// The member names of one object so far: a list while short (the first 16 on the stack), a set
/// past that, so that a document with thousands of members costs no quadratic time. Listed names
/// carry a [`fingerprint`], compared before the names themselves.
#[derive(Default)]
struct MemberNames<'de> {
    listed: SmallVec<[(u64, Cow<'de, str>); 16]>,
    hashed: HashSet<Cow<'de, str>>,
}

impl<'de> MemberNames<'de> {
    const LISTED: usize = 32;

    /// Adds `name`; `false` if it was there already.
    fn insert(&mut self, name: Cow<'de, str>) -> bool {
        if self.listed.len() < Self::LISTED {
            let print = fingerprint(&name);
            if self
                .listed
                .iter()
                .any(|(listed_print, listed)| *listed_print == print && *listed == name)
            {
                return false;
            }
            self.listed.push((print, name));
            return true;
        }
        if self.hashed.is_empty() {
            self.hashed
                .extend(self.listed.iter().map(|(_, name)| name.clone()));
        }
        self.hashed.insert(name)
    }
}

/// A name's length and first seven bytes: equal for equal names, and for names of a JWT (short,
/// mostly of different lengths or starts) rarely equal otherwise.
fn fingerprint(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut print = [0u8; 8];
    let head = bytes.len().min(7);
    print[..head].copy_from_slice(&bytes[..head]);
    // Only a hint: lengths past 255 wrap, and such names are then compared in full.
    print[7] = bytes.len() as u8;
    u64::from_le_bytes(print)
}

/// A member name, borrowed from the input when it holds no escapes.
struct MemberName<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(NameVisitor).map(MemberName)
    }
}

fn duplicate<E: de::Error>() -> E {
    E::custom("duplicate member name")
}

/// Hands each member of an object to a [`MemberReader`]; `false` for any other value.
struct ObjectSeed<'r, R>(&'r mut R);

impl<'de, R: MemberReader<'de>> DeserializeSeed<'de> for ObjectSeed<'_, R> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, R: MemberReader<'de>> Visitor<'de> for ObjectSeed<'_, R> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object without duplicate member names")
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<CheckedValue>()?.is_some() {}
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<bool, A::Error> {
        let mut names = MemberNames::default();
        while let Some(MemberName(name)) = access.next_key()? {
            self.0.read(&name, &mut access)?;
            if !names.insert(name) {
                return Err(duplicate());
            }
        }
        Ok(true)
    }
}

/// Checks a value without keeping it.
struct CheckVisitor;

impl<'de> Visitor<'de> for CheckVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate member names")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<CheckedValue>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let mut names = MemberNames::default();
        while let Some(MemberName(name)) = access.next_key()? {
            access.next_value::<CheckedValue>()?;
            if !names.insert(name) {
                return Err(duplicate());
            }
        }
        Ok(())
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

    /// Keeps every member, as `parse_object` does.
    #[derive(Default)]
    struct KeepAll(Map<String, Value>);

    impl<'de> MemberReader<'de> for KeepAll {
        fn read<A: MapAccess<'de>>(&mut self, name: &str, access: &mut A) -> Result<(), A::Error> {
            let StrictValue(value) = access.next_value()?;
            self.0.insert(name.to_owned(), value);
            Ok(())
        }
    }

    /// Keeps nothing.
    struct SkipAll;

    impl<'de> MemberReader<'de> for SkipAll {
        fn read<A: MapAccess<'de>>(&mut self, _: &str, access: &mut A) -> Result<(), A::Error> {
            access.next_value::<CheckedValue>().map(|_| ())
        }
    }

    #[test]
    fn reading_members_refuses_what_parsing_refuses() {
        let many: String = (0..40).map(|n| format!(r#""m{n}":{n},"#)).collect();
        let documents = [
            r#"{"a":1,"b":[true,null,{"c":"d"}],"e":1.5,"f":"\u00e9"}"#.to_owned(),
            r#"{"a":1,"a":2}"#.to_owned(),
            r#"{"x":[{"a":1,"a":2}]}"#.to_owned(),
            r#"{"a":1,"\u0061":2}"#.to_owned(),
            r#"{"a":{"b":{"c":1,"c":1}}}"#.to_owned(),
            format!("{{{many}\"m7\":0}}"),
            format!("{{{many}\"last\":0}}"),
            "[1]".to_owned(),
            "\"text\"".to_owned(),
            "{".to_owned(),
            "{} x".to_owned(),
            r#"{"a":1e400}"#.to_owned(),
            r#"{"a":"\ud800"}"#.to_owned(),
            r#"{"a":[1,2,]}"#.to_owned(),
            format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200)),
        ];
        for document in &documents {
            let parsed = parse_object(document.as_bytes());
            let mut kept = KeepAll::default();
            let read = read_object(document.as_bytes(), &mut kept);
            assert_eq!(
                read,
                parsed.as_ref().map(|_| ()).map_err(|e| *e),
                "{document}"
            );
            if let Ok(map) = parsed {
                assert_eq!(kept.0, map, "{document}");
            }
            let skipped = read_object(document.as_bytes(), &mut SkipAll);
            assert_eq!(skipped, read, "{document}");
        }
    }
}
