//! The `iss` and `aud` checks that JWT claims and RFC 7662 introspection replies share.

use crate::error::ClaimMismatch;

/// Checks a token's `iss` and `aud` against what the verifier expects: when an issuer is
/// expected, `issuer` must be exactly it; when audiences are expected, `audiences` must name at
/// least one of them (compared exactly). Nothing expected: anything passes.
pub(crate) fn check_issuer_and_audiences(
    expected_issuer: Option<&str>,
    expected_audiences: &[String],
    issuer: Option<&str>,
    audiences: &[&str],
) -> Result<(), ClaimMismatch> {
    if expected_issuer.is_some_and(|expected| issuer != Some(expected)) {
        return Err(ClaimMismatch::Issuer);
    }
    if !expected_audiences.is_empty()
        && !audiences
            .iter()
            .any(|aud| expected_audiences.iter().any(|accepted| accepted == aud))
    {
        return Err(ClaimMismatch::Audience);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_expected_is_checked() {
        let issuer = Some("https://clerk.example");
        let audiences = ["mch_api".to_owned()];
        assert_eq!(check_issuer_and_audiences(None, &[], None, &[]), Ok(()));
        assert_eq!(
            check_issuer_and_audiences(issuer, &audiences, issuer, &["mch_other", "mch_api"]),
            Ok(())
        );
        for (token_issuer, token_audiences, mismatch) in [
            (None, &["mch_api"][..], ClaimMismatch::Issuer),
            (
                Some("https://clerk.example/"),
                &["mch_api"],
                ClaimMismatch::Issuer,
            ),
            (issuer, &[], ClaimMismatch::Audience),
            (issuer, &["MCH_API"], ClaimMismatch::Audience),
        ] {
            assert_eq!(
                check_issuer_and_audiences(issuer, &audiences, token_issuer, token_audiences),
                Err(mismatch)
            );
        }
    }
}
