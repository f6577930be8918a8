//! Telling an M2M JWT from the other kinds of Clerk token, before any check of its own.
//!
//! Clerk's SDK calls a JWT an M2M token when its `sub` starts with `mch_`, whatever its header
//! says; a session token (`sid`, another Clerk `cat`) or an OAuth access token (`typ: at+jwt`) is
//! another kind and gets `token-type-mismatch`, even when its header would also break the M2M
//! rules. This reads the header and payload *unverified*, so it may only choose the reason of a
//! rejection: a token it lets through still meets every check that follows.

use machine_auth_core::strict_json::StrictText;
use serde_json::Value;

use super::M2M_TOKEN_CATEGORY;
use super::claims::RegisteredClaims;
use super::header::HeaderMembers;
use crate::error::TypeMismatch;
use crate::machine::MachineId;

/// Clerk's JWT categories (header `cat`) of user tokens: sessions and JWT templates.
const USER_TOKEN_CATEGORIES: [&str; 2] = ["cl_B7d4PD111AAA", "cl_B7d4PD222AAA"];

/// `Ok` when the token says it is an M2M token (`sub` a string starting with `mch_`), otherwise
/// the kind of token it is instead.
pub(super) fn require_machine_token(
    header: &HeaderMembers<'_>,
    claims: &RegisteredClaims,
) -> Result<(), TypeMismatch> {
    if as_str(&claims.sub).is_some_and(|sub| sub.starts_with(MachineId::PREFIX)) {
        return Ok(());
    }
    if text(&header.typ).is_some_and(is_access_token_type) {
        return Err(TypeMismatch::OAuthToken);
    }
    let user_category = text(&header.cat)
        .is_some_and(|cat| cat != M2M_TOKEN_CATEGORY && USER_TOKEN_CATEGORIES.contains(&cat));
    if user_category || claims.sid {
        return Err(TypeMismatch::SessionToken);
    }
    Err(TypeMismatch::NotAMachineSubject)
}

/// A claim's value if it is a string.
fn as_str(member: &Option<Value>) -> Option<&str> {
    member.as_ref().and_then(Value::as_str)
}

/// A header member's value if it is a string.
fn text<'a>(member: &'a Option<StrictText<'_>>) -> Option<&'a str> {
    member.as_ref().and_then(StrictText::as_str)
}

/// RFC 9068's `typ` of a JWT access token, `at+jwt` or `application/at+jwt` (media types are
/// case-insensitive).
fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(header: Value, claims: Value) -> Result<(), TypeMismatch> {
        let mut members = HeaderMembers::default();
        let header = header.to_string();
        machine_auth_core::strict_json::read_object(header.as_bytes(), &mut members).unwrap();
        let claims = RegisteredClaims::read(claims.to_string().as_bytes()).unwrap();
        require_machine_token(&members, &claims)
    }

    #[test]
    fn machine_subjects_are_machine_tokens_whatever_the_header() {
        for header in [
            json!({"alg": "RS256", "typ": "JWT", "cat": M2M_TOKEN_CATEGORY}),
            json!({"alg": "RS256", "typ": "at+jwt"}),
            json!({"alg": "RS256", "cat": "cl_B7d4PD111AAA"}),
            json!({"alg": "none"}),
        ] {
            assert_eq!(
                kind(header.clone(), json!({"sub": "mch_a", "sid": "sess_1"})),
                Ok(()),
                "{header}"
            );
        }
        // The prefix decides, as in Clerk's SDK; the full machine-id grammar is checked later.
        assert_eq!(kind(json!({}), json!({"sub": "mch_a-b"})), Ok(()));
    }

    #[test]
    fn session_and_template_tokens_are_session_tokens() {
        let session = json!({"sub": "user_1", "sid": "sess_1"});
        for header in [
            json!({"alg": "RS256", "cat": "cl_B7d4PD111AAA"}),
            json!({"alg": "RS256", "cat": "cl_B7d4PD222AAA"}),
            json!({"alg": "HS256", "typ": "jwt+session", "crit": ["x"]}),
        ] {
            assert_eq!(
                kind(header.clone(), session.clone()),
                Err(TypeMismatch::SessionToken),
                "{header}"
            );
        }
        assert_eq!(
            kind(
                json!({"alg": "RS256", "cat": "cl_B7d4PD111AAA"}),
                json!({"sub": "user_1"})
            ),
            Err(TypeMismatch::SessionToken)
        );
    }

    #[test]
    fn access_tokens_are_oauth_tokens() {
        let claims = json!({"sub": "user_1", "client_id": "client_1"});
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/AT+JWT",
        ] {
            let header = json!({"alg": "RS256", "typ": typ});
            assert_eq!(
                kind(header, claims.clone()),
                Err(TypeMismatch::OAuthToken),
                "{typ}"
            );
        }
        let header = json!({"alg": "RS256", "typ": "application/jwt"});
        assert_eq!(kind(header, claims), Err(TypeMismatch::NotAMachineSubject));
    }

    #[test]
    fn everything_else_is_not_a_machine_subject() {
        for claims in [
            json!({"sub": "user_1"}),
            json!({"sub": "MCH_a"}),
            json!({"sub": null}),
            json!({"sub": 5}),
            json!({}),
        ] {
            let header = json!({"alg": "RS256", "cat": M2M_TOKEN_CATEGORY});
            assert_eq!(
                kind(header, claims.clone()),
                Err(TypeMismatch::NotAMachineSubject),
                "{claims}"
            );
        }
        let ignored_category = json!({"alg": "RS256", "cat": "cl_I7d4PD111III"});
        assert_eq!(
            kind(ignored_category, json!({"sub": "user_1"})),
            Err(TypeMismatch::NotAMachineSubject)
        );
    }
}
