//! Claim checks of a signature-verified M2M JWT, and the identity they yield.

use machine_auth_core::strict_json::{CheckedValue, MemberReader, StrictValue};
use serde::de::MapAccess;
use serde_json::Value;
use smallvec::SmallVec;

use super::{JwtRules, VerifiedJwt};
use crate::clock::from_unix_millis;
use crate::error::{AuthError, ClaimMismatch, InvalidToken, TypeMismatch};
use crate::expected_claims::check_issuer_and_audiences;
use crate::machine::{AuthenticatedMachine, MachineId, TokenFormat};

/// 9999-12-31T23:59:59Z. A NumericDate beyond it is treated as malformed, which also rejects
/// `exp` values such as `1e300` or `u64::MAX` that would otherwise mean "never expires".
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// The claims of a payload that verification reads; every other member is checked (valid JSON, no
/// repeated names) and skipped, and only built into a map if a handler asks for the claims. A
/// claim given as `null` is present, as `Some(Value::Null)`.
#[derive(Debug, Default)]
pub(crate) struct RegisteredClaims {
    pub(super) sub: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    iss: Option<Value>,
    jti: Option<Value>,
    aud: Option<Value>,
    scopes: Option<Value>,
    /// `sid` (a session token's), whatever its value.
    pub(super) sid: bool,
}

impl<'de> MemberReader<'de> for RegisteredClaims {
    fn read<A: MapAccess<'de>>(&mut self, name: &str, access: &mut A) -> Result<(), A::Error> {
        let slot = match name {
            "sub" => &mut self.sub,
            "exp" => &mut self.exp,
            "nbf" => &mut self.nbf,
            "iat" => &mut self.iat,
            "iss" => &mut self.iss,
            "jti" => &mut self.jti,
            "aud" => &mut self.aud,
            "scopes" => &mut self.scopes,
            other => {
                access.next_value::<CheckedValue>()?;
                self.sid |= other == "sid";
                return Ok(());
            }
        };
        *slot = Some(access.next_value::<StrictValue>()?.0);
        Ok(())
    }
}

impl RegisteredClaims {
    /// Reads a decoded payload: a JSON object with no repeated member names at any depth.
    pub(crate) fn read(payload: &[u8]) -> Result<Self, InvalidToken> {
        let mut claims = Self::default();
        super::read_members(payload, &mut claims)?;
        Ok(claims)
    }
}

/// Checks the claims of a verified token at `now_ms` and builds the identity; `payload` (the
/// decoded JSON they were read from) becomes its claims when a handler asks for them.
///
/// JSON `null` in an optional claim (`jti`, `iss`, `aud`, `nbf`, `iat`, `scopes`, and `azp`,
/// which is not read) means the claim is absent, as Clerk's SDK reads it; `sub` and `exp` stay
/// required, and a configured issuer or audience needs a real matching value.
///
/// Order: types of the claims we read, the subject (`mch_…`), issuer and audience, then time.
pub(super) fn machine_from_claims(
    claims: RegisteredClaims,
    payload: Vec<u8>,
    rules: &JwtRules,
    now_ms: i64,
) -> Result<VerifiedJwt, AuthError> {
    let subject = string(claims.sub, "sub")?.ok_or_else(|| missing("sub"))?;
    let expires_at_ms = numeric_date(claims.exp, "exp")?.ok_or_else(|| missing("exp"))?;
    let not_before_ms = numeric_date(claims.nbf, "nbf")?;
    let issued_at_ms = numeric_date(claims.iat, "iat")?;
    let issuer = string(claims.iss, "iss")?;
    let token_id = string(claims.jti, "jti")?.unwrap_or_default();
    let audiences = audiences(claims.aud.as_ref())?;
    let scopes: Vec<String> = match &claims.scopes {
        None | Some(Value::Null) => audiences.iter().map(|aud| (*aud).to_owned()).collect(),
        Some(Value::String(scopes)) => scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(_) => return Err(malformed("scopes")),
    };

    let machine_id = MachineId::from_string(subject).ok_or(AuthError::TokenTypeMismatch(
        TypeMismatch::NotAMachineSubject,
    ))?;

    check_issuer_and_audiences(
        rules.issuer.as_deref(),
        &rules.audiences,
        issuer.as_deref(),
        &audiences,
    )
    .map_err(AuthError::ClaimMismatch)?;

    // In i128: a clock may say anything an i64 holds, and none of this may overflow.
    let (now, leeway) = (i128::from(now_ms), i128::from(rules.leeway_ms));
    if i128::from(expires_at_ms) <= now - leeway {
        return Err(AuthError::Expired);
    }
    let in_future = |at_ms: Option<i64>| at_ms.is_some_and(|at| i128::from(at) > now + leeway);
    if in_future(not_before_ms) || in_future(issued_at_ms) {
        return Err(AuthError::NotYetActive);
    }
    if rules
        .max_lifetime_ms
        .is_some_and(|max| i128::from(expires_at_ms) - now > i128::from(max))
    {
        return Err(AuthError::ClaimMismatch(ClaimMismatch::LifetimeTooLong));
    }

    let machine = AuthenticatedMachine::builder(machine_id)
        .token_id(token_id)
        .token_format(TokenFormat::Jwt)
        .scopes(scopes)
        .claims_of_payload(payload)
        .expires_at(Some(from_unix_millis(expires_at_ms)))
        .issued_at(issued_at_ms.map(from_unix_millis))
        .issuer(issuer)
        .build();
    Ok(VerifiedJwt {
        machine,
        expires_at_ms,
    })
}

/// [`machine_from_claims`] of a JSON object, for tests.
#[cfg(test)]
fn machine_from_json(
    claims: &Value,
    rules: &JwtRules,
    now_ms: i64,
) -> Result<VerifiedJwt, AuthError> {
    let payload = claims.to_string().into_bytes();
    machine_from_claims(RegisteredClaims::read(&payload)?, payload, rules, now_ms)
}

fn missing(name: &'static str) -> AuthError {
    AuthError::InvalidToken(InvalidToken::MissingClaim(name))
}

fn malformed(name: &'static str) -> AuthError {
    AuthError::InvalidToken(InvalidToken::MalformedClaim(name))
}

/// A claim that must be a string if present (`null` counts as absent).
fn string(claim: Option<Value>, name: &'static str) -> Result<Option<String>, AuthError> {
    match claim {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(malformed(name)),
    }
}

/// A NumericDate claim (RFC 7519 §2) in Unix milliseconds: a finite, non-negative JSON number,
/// possibly fractional (`null` counts as absent).
fn numeric_date(claim: Option<Value>, name: &'static str) -> Result<Option<i64>, AuthError> {
    let value = match claim {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let seconds = value
        .as_f64()
        .filter(|s| s.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(s))
        .ok_or_else(|| malformed(name))?;
    // In range by the filter above: at most about 2.5e14 milliseconds.
    Ok(Some((seconds * 1000.0).floor() as i64))
}

/// `aud` as a list: a string, or an array of strings (`null` counts as absent).
fn audiences(aud: Option<&Value>) -> Result<SmallVec<[&str; 4]>, AuthError> {
    match aud {
        None | Some(Value::Null) => Ok(SmallVec::new()),
        Some(Value::String(aud)) => Ok(SmallVec::from_slice(&[aud.as_str()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(|| malformed("aud")))
            .collect(),
        Some(_) => Err(malformed("aud")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::algorithm::AlgorithmSet;
    use serde_json::json;

    const NOW_MS: i64 = 1_767_225_600_000;
    const NOW: i64 = NOW_MS / 1000;

    fn rules() -> JwtRules {
        JwtRules {
            algorithms: AlgorithmSet::RSA,
            leeway_ms: 5_000,
            issuer: None,
            audiences: Vec::new(),
            max_lifetime_ms: None,
        }
    }

    fn check(claims: Value, rules: &JwtRules) -> Result<VerifiedJwt, AuthError> {
        machine_from_json(&claims, rules, NOW_MS)
    }

    fn valid() -> Value {
        json!({"iss":"https://clerk.example","sub":"mch_test","jti":"mt_1","iat":NOW,"nbf":NOW-5,"exp":NOW+60})
    }

    fn with(mut base: Value, name: &str, value: Value) -> Value {
        base[name] = value;
        base
    }

    fn without(mut base: Value, name: &str) -> Value {
        base.as_object_mut().unwrap().remove(name);
        base
    }

    #[test]
    fn fractional_dates_are_read_to_the_exact_millisecond() {
        // The nearest double to this text is a little under ….369 once multiplied by 1000; a
        // reader that is not correctly rounded can land on the next double and round up.
        let claims = with(
            valid(),
            "exp",
            serde_json::from_str("101190088596.36899").unwrap(),
        );
        assert_eq!(
            check(claims, &rules()).unwrap().expires_at_ms,
            101_190_088_596_368
        );
    }

    #[test]
    fn maps_claims_like_clerk() {
        let claims = with(valid(), "scopes", json!("mch_a  mch_b"));
        let claims = with(claims, "role", json!("svc"));
        let verified = check(claims, &rules()).unwrap();
        let machine = verified.machine;
        assert_eq!(machine.machine_id().as_str(), "mch_test");
        assert_eq!(machine.token_id(), "mt_1");
        assert_eq!(machine.scopes(), ["mch_a", "mch_b"]);
        assert_eq!(
            serde_json::Value::Object(machine.claims().clone()),
            json!({"scopes":"mch_a  mch_b","role":"svc"})
        );
        assert_eq!(
            machine.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs((NOW + 60) as u64))
        );
        assert_eq!(
            machine.issued_at(),
            Some(UNIX_EPOCH + Duration::from_secs(NOW as u64))
        );
        assert_eq!(machine.issuer(), Some("https://clerk.example"));
        assert_eq!(verified.expires_at_ms, (NOW + 60) * 1000);
    }

    #[test]
    fn scopes_fall_back_to_aud_then_empty() {
        let claims = with(without(valid(), "jti"), "aud", json!(["mch_x", "mch_y"]));
        let machine = check(claims, &rules()).unwrap().machine;
        assert_eq!(machine.scopes(), ["mch_x", "mch_y"]);
        assert_eq!(machine.token_id(), "");
        assert_eq!(machine.claim("aud"), Some(&json!(["mch_x", "mch_y"])));
        let machine = check(valid(), &rules()).unwrap().machine;
        assert!(machine.scopes().is_empty());
    }

    #[test]
    fn time_boundaries_follow_clerk() {
        // Expired iff exp <= now - skew; nbf/iat rejected iff > now + skew.
        assert!(check(with(valid(), "exp", json!(NOW - 4)), &rules()).is_ok());
        assert_eq!(
            check(with(valid(), "exp", json!(NOW - 5)), &rules()).unwrap_err(),
            AuthError::Expired
        );
        assert!(check(with(valid(), "nbf", json!(NOW + 5)), &rules()).is_ok());
        assert_eq!(
            check(with(valid(), "nbf", json!(NOW + 6)), &rules()).unwrap_err(),
            AuthError::NotYetActive
        );
        assert_eq!(
            check(with(valid(), "iat", json!(NOW + 60)), &rules()).unwrap_err(),
            AuthError::NotYetActive
        );
        assert!(
            check(
                with(valid(), "exp", json!((NOW + 60) as f64 + 0.5)),
                &rules()
            )
            .is_ok()
        );
    }

    #[test]
    fn ill_typed_claims_are_invalid() {
        for (name, value) in [
            ("exp", json!("9999999999")),
            ("exp", json!(true)),
            ("exp", json!(-1)),
            ("exp", json!(1e300)),
            ("exp", json!(u64::MAX)),
            ("nbf", json!("0")),
            ("iat", json!("0")),
            // Before 1970: what the fuzzer's model once took for a valid past time.
            ("iat", json!(-182_291_281)),
            ("nbf", json!(-0.5)),
            ("iat", json!([NOW])),
            ("iss", json!(["https://clerk.example"])),
            ("iss", json!(1)),
            ("aud", json!(7)),
            ("aud", json!([7])),
            ("jti", json!(1)),
            ("scopes", json!(["mch_a"])),
            ("sub", json!(1)),
        ] {
            let error = check(with(valid(), name, value.clone()), &rules()).unwrap_err();
            assert_eq!(
                error,
                AuthError::InvalidToken(InvalidToken::MalformedClaim(match name {
                    "exp" => "exp",
                    "nbf" => "nbf",
                    "iat" => "iat",
                    "iss" => "iss",
                    "aud" => "aud",
                    "jti" => "jti",
                    "scopes" => "scopes",
                    _ => "sub",
                })),
                "{name}: {value}"
            );
        }
        assert_eq!(
            check(without(valid(), "exp"), &rules()).unwrap_err(),
            AuthError::InvalidToken(InvalidToken::MissingClaim("exp"))
        );
        assert_eq!(
            check(without(valid(), "sub"), &rules()).unwrap_err(),
            AuthError::InvalidToken(InvalidToken::MissingClaim("sub"))
        );
    }

    #[test]
    fn null_optional_claims_are_absent() {
        for name in ["jti", "iss", "aud", "scopes", "nbf", "iat", "azp"] {
            let claims = with(valid(), name, json!(null));
            let machine = check(claims.clone(), &rules())
                .unwrap_or_else(|error| panic!("{name}: null refused: {error}"))
                .machine;
            let absent = check(without(valid(), name), &rules()).unwrap().machine;
            assert_eq!(machine.token_id(), absent.token_id(), "{name}");
            assert_eq!(machine.issuer(), absent.issuer(), "{name}");
            assert_eq!(machine.issued_at(), absent.issued_at(), "{name}");
            assert_eq!(machine.scopes(), absent.scopes(), "{name}");
        }
        // `scopes: null` falls back to `aud`, as an absent `scopes` does.
        let claims = with(
            with(valid(), "scopes", json!(null)),
            "aud",
            json!(["mch_x"]),
        );
        assert_eq!(check(claims, &rules()).unwrap().machine.scopes(), ["mch_x"]);
        // `aud: null` with a `scopes` string: the scopes.
        let claims = with(with(valid(), "aud", json!(null)), "scopes", json!("mch_y"));
        assert_eq!(check(claims, &rules()).unwrap().machine.scopes(), ["mch_y"]);
    }

    #[test]
    fn null_required_claims_are_missing() {
        for name in ["exp", "sub"] {
            assert_eq!(
                check(with(valid(), name, json!(null)), &rules()).unwrap_err(),
                check(without(valid(), name), &rules()).unwrap_err(),
                "{name}"
            );
        }
        assert_eq!(
            check(with(valid(), "exp", json!(null)), &rules()).unwrap_err(),
            AuthError::InvalidToken(InvalidToken::MissingClaim("exp"))
        );
    }

    #[test]
    fn null_issuer_or_audience_fails_a_configured_check() {
        let mut strict = rules();
        strict.issuer = Some("https://clerk.example".into());
        strict.audiences = vec!["mch_api".into()];
        let good = with(valid(), "aud", json!("mch_api"));
        assert!(check(good.clone(), &strict).is_ok());
        assert_eq!(
            check(with(good.clone(), "iss", json!(null)), &strict).unwrap_err(),
            AuthError::ClaimMismatch(ClaimMismatch::Issuer)
        );
        assert_eq!(
            check(with(good, "aud", json!(null)), &strict).unwrap_err(),
            AuthError::ClaimMismatch(ClaimMismatch::Audience)
        );
        // The other optional claims may be null under a configured issuer and audience too.
        for name in ["jti", "scopes", "nbf", "iat", "azp"] {
            let claims = with(with(valid(), "aud", json!("mch_api")), name, json!(null));
            assert!(check(claims, &strict).is_ok(), "{name}");
        }
    }

    #[test]
    fn subjects_must_be_machine_ids() {
        for sub in [
            "user_123",
            "MCH_a",
            "mch_",
            "mch_a-b",
            "m\u{441}h_a",
            "mch_a\u{0}user_b",
        ] {
            assert_eq!(
                check(with(valid(), "sub", json!(sub)), &rules()).unwrap_err(),
                AuthError::TokenTypeMismatch(TypeMismatch::NotAMachineSubject),
                "{sub:?}"
            );
        }
    }

    #[test]
    fn issuer_and_audience_are_strict_when_configured() {
        let mut rules = rules();
        rules.issuer = Some("https://clerk.example".into());
        rules.audiences = vec!["mch_api".into()];
        let good = with(valid(), "aud", json!(["mch_other", "mch_api"]));
        assert!(check(good.clone(), &rules).is_ok());
        assert!(check(with(good.clone(), "aud", json!("mch_api")), &rules).is_ok());
        for (claims, mismatch) in [
            (without(good.clone(), "iss"), ClaimMismatch::Issuer),
            (
                with(good.clone(), "iss", json!("https://clerk.example.evil")),
                ClaimMismatch::Issuer,
            ),
            (
                with(good.clone(), "iss", json!("https://clerk.exampl")),
                ClaimMismatch::Issuer,
            ),
            (without(good.clone(), "aud"), ClaimMismatch::Audience),
            (
                with(good.clone(), "aud", json!([])),
                ClaimMismatch::Audience,
            ),
            (
                with(good.clone(), "aud", json!("mch_apix")),
                ClaimMismatch::Audience,
            ),
        ] {
            assert_eq!(
                check(claims.clone(), &rules).unwrap_err(),
                AuthError::ClaimMismatch(mismatch),
                "{claims}"
            );
        }
    }

    #[test]
    fn clocks_and_skews_at_the_ends_of_i64_do_not_overflow() {
        let at = |now_ms: i64, leeway_ms: i64| {
            let mut rules = rules();
            rules.leeway_ms = leeway_ms;
            rules.max_lifetime_ms = Some(3_600_000);
            machine_from_json(&valid(), &rules, now_ms)
        };
        assert_eq!(at(i64::MAX, 5_000).unwrap_err(), AuthError::Expired);
        assert_eq!(at(i64::MIN, 5_000).unwrap_err(), AuthError::NotYetActive);
        assert_eq!(
            at(-i64::MAX, i64::MAX).unwrap_err(),
            AuthError::NotYetActive
        );
        assert!(at(NOW_MS, i64::MAX).is_ok());
    }

    #[test]
    fn maximum_lifetime_is_enforced_when_configured() {
        let mut rules = rules();
        rules.max_lifetime_ms = Some(3_600_000);
        assert!(check(with(valid(), "exp", json!(NOW + 3600)), &rules).is_ok());
        assert_eq!(
            check(with(valid(), "exp", json!(NOW + 3601)), &rules).unwrap_err(),
            AuthError::ClaimMismatch(ClaimMismatch::LifetimeTooLong)
        );
    }
}

#[cfg(test)]
mod time_proptests {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::algorithm::AlgorithmSet;

    /// A NumericDate claim: whole or fractional seconds across the accepted range, values at and
    /// just past its bounds (refused as malformed), or absent.
    fn numeric_date() -> impl Strategy<Value = Option<f64>> {
        let max = MAX_NUMERIC_DATE as i64;
        prop_oneof![
            (0..=max).prop_map(|s| Some(s as f64)),
            (0.0..=MAX_NUMERIC_DATE).prop_map(Some),
            (max - 3..=max + 3).prop_map(|s| Some(s as f64)),
            (-3i64..=3).prop_map(|s| Some(s as f64)),
            Just(Some(MAX_NUMERIC_DATE + 0.5)),
            Just(Some(-0.5)),
            Just(None),
        ]
    }

    /// Now in Unix milliseconds: anywhere an `i64` reaches (a clock may say anything), or close to
    /// `near` (a NumericDate in milliseconds), where the boundaries are.
    fn now_ms(near: Option<f64>) -> impl Strategy<Value = i64> {
        let near = near.map_or(0, |seconds| (seconds * 1000.0).floor() as i64);
        prop_oneof![
            any::<i64>(),
            (-700_000i64..=700_000).prop_map(move |delta| near + delta),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-i64::MAX),
        ]
    }

    fn leeway_ms() -> impl Strategy<Value = i64> {
        prop_oneof![
            0i64..=300_000,
            Just(0),
            Just(300_000),
            0..=i64::MAX,
            Just(i64::MAX)
        ]
    }

    /// A NumericDate in milliseconds, as the spec reads it, or `None` if it is not one.
    fn model_ms(seconds: f64) -> Option<i128> {
        (0.0..=MAX_NUMERIC_DATE)
            .contains(&seconds)
            .then(|| (seconds * 1000.0).floor() as i128)
    }

    fn claims(exp: Option<f64>, nbf: Option<f64>, iat: Option<f64>) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("mch_time"));
        for (name, value) in [("exp", exp), ("nbf", nbf), ("iat", iat)] {
            if let Some(value) = value {
                claims.insert(name.into(), json!(value));
            }
        }
        claims
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Expired iff `exp * 1000 <= now_ms - leeway_ms`; otherwise not yet active iff `nbf` or
        /// `iat` is after `now + leeway`; otherwise accepted, and over the maximum lifetime iff
        /// `exp * 1000 - now_ms` exceeds it. Computed without overflow for every input.
        #[test]
        fn time_checks_follow_the_arithmetic(
            (exp, now_ms) in numeric_date().prop_flat_map(|exp| (Just(exp), now_ms(exp))),
            nbf in numeric_date(),
            iat in numeric_date(),
            leeway_ms in leeway_ms(),
            max_lifetime_ms in prop_oneof![Just(None), (0i64..=i64::MAX).prop_map(Some)],
        ) {
            let rules = JwtRules {
                algorithms: AlgorithmSet::RSA,
                leeway_ms,
                issuer: None,
                audiences: Vec::new(),
                max_lifetime_ms,
            };
            let outcome =
                machine_from_json(&Value::Object(claims(exp, nbf, iat)), &rules, now_ms);

            // Read in this order: `exp` (required), `nbf`, `iat`.
            let out_of_range = |value: Option<f64>| value.is_some_and(|s| model_ms(s).is_none());
            let refusal = if out_of_range(exp) {
                Some(malformed("exp"))
            } else if exp.is_none() {
                Some(missing("exp"))
            } else if out_of_range(nbf) {
                Some(malformed("nbf"))
            } else if out_of_range(iat) {
                Some(malformed("iat"))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                prop_assert_eq!(outcome.unwrap_err(), refusal);
                return Ok(());
            }
            let exp_ms = exp.and_then(model_ms).unwrap();
            let (now, leeway) = (i128::from(now_ms), i128::from(leeway_ms));
            let after_now = |at: Option<f64>| at.and_then(model_ms).is_some_and(|at| at > now + leeway);
            let expected = if exp_ms <= now - leeway {
                Err(AuthError::Expired)
            } else if after_now(nbf) || after_now(iat) {
                Err(AuthError::NotYetActive)
            } else if max_lifetime_ms.is_some_and(|max| exp_ms - now > i128::from(max)) {
                Err(AuthError::ClaimMismatch(ClaimMismatch::LifetimeTooLong))
            } else {
                Ok(exp_ms)
            };
            let outcome = outcome.map(|verified| i128::from(verified.expires_at_ms));
            prop_assert_eq!(outcome, expected);
        }
    }
}
