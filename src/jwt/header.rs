//! The JOSE header of an M2M JWT.

use crate::algorithm::Algorithm;
use machine_auth_core::strict_json::{CheckedValue, MemberReader, StrictText};
use serde::de::MapAccess;

use super::{JwtRules, M2M_TOKEN_CATEGORY};
use crate::error::InvalidToken;

/// The longest accepted `kid`.
const MAX_KID_LEN: usize = 256;

/// The members of a JOSE header the rules read, borrowed from the decoded header; every other
/// member is checked (valid JSON, no repeated names) and skipped. A member given as `null` is
/// present, as `Some(StrictText::NotAString)`.
#[derive(Debug, Default)]
pub(crate) struct HeaderMembers<'de> {
    pub(super) alg: Option<StrictText<'de>>,
    pub(super) kid: Option<StrictText<'de>>,
    pub(super) typ: Option<StrictText<'de>>,
    pub(super) cat: Option<StrictText<'de>>,
    /// `crit`, whatever its value.
    pub(super) crit: bool,
    /// `enc`, `zip` or `b64`, whatever their values.
    pub(super) encoding: bool,
}

impl<'de> MemberReader<'de> for HeaderMembers<'de> {
    fn read<A: MapAccess<'de>>(&mut self, name: &str, access: &mut A) -> Result<(), A::Error> {
        let slot = match name {
            "alg" => &mut self.alg,
            "kid" => &mut self.kid,
            "typ" => &mut self.typ,
            "cat" => &mut self.cat,
            other => {
                access.next_value::<CheckedValue>()?;
                match other {
                    "crit" => self.crit = true,
                    "enc" | "zip" | "b64" => self.encoding = true,
                    _ => {}
                }
                return Ok(());
            }
        };
        *slot = Some(access.next_value::<StrictText<'de>>()?);
        Ok(())
    }
}

/// The parts of a checked header that select the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtHeader {
    pub(crate) algorithm: Algorithm,
    pub(crate) kid: Option<String>,
}

impl JwtHeader {
    /// Checks a decoded header:
    ///
    /// - no `crit` (of any form, `[]` included), and no `enc`, `zip` or `b64`;
    /// - `alg` a supported algorithm in the allowlist;
    /// - `typ` absent or `JWT` (case-insensitive);
    /// - `cat` absent or Clerk's M2M category;
    /// - `kid` absent or a string of at most 256 bytes.
    ///
    /// `jku`, `x5u`, `jwk` and `x5c` are ignored: keys come only from the configured source.
    pub(crate) fn parse(
        header: &HeaderMembers<'_>,
        rules: &JwtRules,
    ) -> Result<Self, InvalidToken> {
        if header.crit {
            return Err(InvalidToken::CriticalHeader);
        }
        if header.encoding {
            return Err(InvalidToken::UnsupportedEncoding);
        }
        let algorithm = match header.alg.as_ref().and_then(StrictText::as_str) {
            Some(name) => name
                .parse::<Algorithm>()
                .map_err(|_| InvalidToken::UnsupportedAlgorithm)?,
            _ => return Err(InvalidToken::UnsupportedAlgorithm),
        };
        if !rules.algorithms.contains(algorithm) {
            return Err(InvalidToken::AlgorithmNotAllowed);
        }
        match header.typ.as_ref().map(StrictText::as_str) {
            None => {}
            Some(Some(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
            Some(_) => return Err(InvalidToken::TypeHeader),
        }
        match header.cat.as_ref().map(StrictText::as_str) {
            None => {}
            Some(Some(M2M_TOKEN_CATEGORY)) => {}
            Some(_) => return Err(InvalidToken::Category),
        }
        let kid = match header.kid.as_ref().map(StrictText::as_str) {
            None => None,
            Some(Some(kid)) if kid.len() <= MAX_KID_LEN => Some(kid.to_owned()),
            Some(_) => return Err(InvalidToken::Malformed),
        };
        Ok(Self { algorithm, kid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::AlgorithmSet;
    use serde_json::{Value, json};

    fn rules() -> JwtRules {
        JwtRules {
            algorithms: AlgorithmSet::of(&[Algorithm::RS256]),
            leeway_ms: 5_000,
            issuer: None,
            audiences: Vec::new(),
            max_lifetime_ms: None,
        }
    }

    fn parse(header: Value) -> Result<JwtHeader, InvalidToken> {
        let mut members = HeaderMembers::default();
        let bytes = header.to_string();
        machine_auth_core::strict_json::read_object(bytes.as_bytes(), &mut members).unwrap();
        JwtHeader::parse(&members, &rules())
    }

    #[test]
    fn accepts_clerk_headers() {
        let header =
            parse(json!({"alg":"RS256","kid":"ins_1","typ":"JWT","cat":M2M_TOKEN_CATEGORY}));
        assert_eq!(
            header.unwrap(),
            JwtHeader {
                algorithm: Algorithm::RS256,
                kid: Some("ins_1".into())
            }
        );
        assert!(parse(json!({"alg":"RS256"})).is_ok());
        assert!(parse(json!({"alg":"RS256","typ":"jwt"})).is_ok());
        assert!(parse(json!({"alg":"RS256","jku":"https://evil","x5u":"https://evil"})).is_ok());
    }

    #[test]
    fn rejects_dangerous_or_foreign_headers() {
        use InvalidToken::*;
        for (header, expected) in [
            (json!({"alg":"none"}), UnsupportedAlgorithm),
            (json!({"alg":"nOnE"}), UnsupportedAlgorithm),
            (json!({"alg":7}), UnsupportedAlgorithm),
            (json!({}), UnsupportedAlgorithm),
            (json!({"alg":"HS256"}), UnsupportedAlgorithm),
            (json!({"alg":"RS512"}), AlgorithmNotAllowed),
            (json!({"alg":"RS256","crit":[]}), CriticalHeader),
            (
                json!({"alg":"RS256","crit":["exp"],"exp":1}),
                CriticalHeader,
            ),
            (json!({"alg":"RS256","b64":false}), UnsupportedEncoding),
            (json!({"alg":"RS256","zip":"DEF"}), UnsupportedEncoding),
            (json!({"alg":"RS256","enc":"A256GCM"}), UnsupportedEncoding),
            (json!({"alg":"RS256","typ":"at+jwt"}), TypeHeader),
            (json!({"alg":"RS256","typ":"secevent+jwt"}), TypeHeader),
            (json!({"alg":"RS256","typ":5}), TypeHeader),
            (json!({"alg":"RS256","cat":"cl_B7d4PD111AAA"}), Category),
            (json!({"alg":"RS256","cat":"cl_I7d4PD111III"}), Category),
            (json!({"alg":"RS256","kid":5}), Malformed),
            (json!({"alg":"RS256","kid":"k".repeat(257)}), Malformed),
        ] {
            assert_eq!(parse(header.clone()), Err(expected), "{header}");
        }
    }
}
