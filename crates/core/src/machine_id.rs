//! The machine id grammar shared by the verifier and the issuer.

use std::fmt;

use serde::Serialize;

/// The longest machine id accepted, in bytes, prefix included: `mch_` and up to 92 characters.
///
/// ```
/// use machine_auth_core::{MAX_MACHINE_ID_LEN, MachineId};
///
/// let longest = format!("mch_{}", "a".repeat(MAX_MACHINE_ID_LEN - 4));
/// assert!(MachineId::is_valid(&longest));
/// assert!(!MachineId::is_valid(&format!("{longest}a")));
/// ```
pub const MAX_MACHINE_ID_LEN: usize = 96;

/// A machine id: `mch_` followed by 1 to 92 ASCII letters, digits or `_`.
///
/// Clerk issues mixed-case ids such as `mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk`; the comparison is exact
/// and case-sensitive. It displays, and serializes, as the bare id string.
///
/// ```
/// use machine_auth_core::MachineId;
///
/// let id = MachineId::parse("mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk").unwrap();
/// assert_eq!(id.as_str(), "mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk");
/// assert!(MachineId::parse("user_123").is_none());
/// assert!(MachineId::parse("mch_").is_none());
/// assert!(MachineId::parse("mch_a-b").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MachineId(Box<str>);

impl MachineId {
    /// The prefix every machine id starts with (lowercase; `MCH_…` is not a machine id).
    ///
    /// ```
    /// use machine_auth_core::MachineId;
    ///
    /// let id = MachineId::parse("mch_cron").unwrap();
    /// assert!(id.as_str().starts_with(MachineId::PREFIX));
    /// ```
    pub const PREFIX: &'static str = "mch_";

    /// Parses a machine id, or returns `None` if `value` does not follow the grammar (see
    /// [`is_valid`](Self::is_valid)). Surrounding whitespace is not trimmed.
    ///
    /// ```
    /// use machine_auth_core::MachineId;
    ///
    /// assert_eq!(MachineId::parse("mch_cron").unwrap().to_string(), "mch_cron");
    /// assert!(MachineId::parse(" mch_cron").is_none());
    /// ```
    pub fn parse(value: &str) -> Option<Self> {
        Self::is_valid(value).then(|| Self(value.into()))
    }

    /// Like [`parse`](Self::parse), keeping the string's allocation.
    pub fn from_string(value: String) -> Option<Self> {
        Self::is_valid(&value).then(|| Self(value.into_boxed_str()))
    }

    /// Whether `value` follows the machine-id grammar: `mch_` followed by 1 to 92 ASCII letters,
    /// digits or `_` ([`MAX_MACHINE_ID_LEN`] bytes in all).
    ///
    /// ```
    /// use machine_auth_core::MachineId;
    ///
    /// assert!(MachineId::is_valid("mch_cron_service"));
    /// assert!(!MachineId::is_valid("MCH_cron"));
    /// assert!(!MachineId::is_valid("mch_cron.service"));
    /// ```
    pub fn is_valid(value: &str) -> bool {
        value.len() <= MAX_MACHINE_ID_LEN
            && value.strip_prefix(Self::PREFIX).is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
    }

    /// The id as a string slice.
    ///
    /// ```
    /// use machine_auth_core::MachineId;
    ///
    /// let id = MachineId::parse("mch_cron").unwrap();
    /// assert_eq!(id.as_str(), "mch_cron");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MachineId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_grammar() {
        for good in [
            "mch_a",
            "mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk",
            "mch_cron_service",
        ] {
            assert!(MachineId::is_valid(good), "{good}");
        }
        let longest = format!("mch_{}", "a".repeat(MAX_MACHINE_ID_LEN - 4));
        assert!(MachineId::is_valid(&longest));
        let too_long = format!("{longest}a");
        for bad in [
            "",
            "mch_",
            "MCH_a",
            "user_a",
            "mch_a-b",
            "mch_a.b",
            "mch_a b",
            "mch_a\0",
            "m\u{441}h_a",
            "mch_\u{e9}",
            too_long.as_str(),
        ] {
            assert!(!MachineId::is_valid(bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// The grammar, written out plainly: `mch_` and 1 to 92 characters from `[A-Za-z0-9_]`.
    fn reference(value: &str) -> bool {
        let Some(rest) = value.strip_prefix("mch_") else {
            return false;
        };
        let allowed = |c: char| c.is_ascii_alphabetic() || c.is_ascii_digit() || c == '_';
        let count = rest.chars().count();
        (1..=92).contains(&count) && rest.chars().all(allowed)
    }

    /// Strings near the grammar: likely prefixes (and look-alikes), then characters in and out of
    /// the alphabet, at lengths around the limit.
    fn near_ids() -> impl Strategy<Value = String> {
        let prefix = prop_oneof![
            Just("mch_"),
            Just("MCH_"),
            Just("mch"),
            Just("mch__"),
            Just("m\u{441}h_"),
            Just(" mch_"),
            Just(""),
        ];
        let rest = prop_oneof![
            "[A-Za-z0-9_]{0,100}",
            "[a-z]{88,96}",
            "[A-Za-z0-9_.\\- \u{0}\u{e9}\u{ff3f}]{0,100}",
        ];
        (prefix, rest).prop_map(|(prefix, rest)| format!("{prefix}{rest}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_and_is_valid_agree_with_the_grammar(value in prop_oneof![near_ids(), any::<String>()]) {
            let expected = reference(&value);
            prop_assert_eq!(MachineId::is_valid(&value), expected);
            prop_assert_eq!(MachineId::parse(&value).is_some(), expected);
            prop_assert_eq!(MachineId::from_string(value.clone()).is_some(), expected);
        }

        #[test]
        fn display_debug_and_serde_round_trip(value in "mch_[A-Za-z0-9_]{1,92}") {
            let id = MachineId::parse(&value).unwrap();
            prop_assert_eq!(id.as_str(), value.as_str());
            let shown = id.to_string();
            prop_assert_eq!(&shown, &value);
            prop_assert_eq!(format!("{id:?}"), format!("{value:?}"));
            prop_assert_eq!(MachineId::parse(&shown), Some(id.clone()));
            prop_assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!(value));
        }
    }
}
