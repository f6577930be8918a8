//! The signature algorithms a machine token may be signed with, and small sets of them.

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm this crate verifies: exactly the asymmetric algorithms of RFC 7518
/// that Clerk's SDK accepts, plus EdDSA (Ed25519).
///
/// There is no `HS*` (HMAC) and no `none`: a verifier holds public keys only, so a symmetric
/// algorithm could only ever be used to confuse it (a token "signed" with the public key as an
/// HMAC secret). Parsing such a name fails with an error that says so.
///
/// ```
/// use tower_machine_auth::Algorithm;
///
/// let algorithm: Algorithm = "PS256".parse()?;
/// assert_eq!(algorithm, Algorithm::PS256);
/// assert_eq!(algorithm.as_str(), "PS256");
/// assert_eq!(Algorithm::EdDSA.to_string(), "EdDSA");
/// assert!("HS256".parse::<Algorithm>().unwrap_err().to_string().contains("symmetric"));
/// assert!("rs256".parse::<Algorithm>().is_err()); // names are case-sensitive, as in a JWS header
/// # Ok::<(), tower_machine_auth::UnknownAlgorithm>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: Clerk's default.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA with Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in the order they are listed in messages.
    ///
    /// ```
    /// use tower_machine_auth::Algorithm;
    ///
    /// assert_eq!(Algorithm::ALL.len(), 9);
    /// assert_eq!(Algorithm::ALL[0], Algorithm::RS256);
    /// ```
    pub const ALL: [Algorithm; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The algorithm's name in a JWS header (`alg`) and a JWK.
    ///
    /// ```
    /// use tower_machine_auth::Algorithm;
    ///
    /// assert_eq!(Algorithm::ES384.as_str(), "ES384");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// This algorithm's bit in an [`AlgorithmSet`].
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str() == name)
            .ok_or(UnknownAlgorithm {
                symmetric: matches!(name, "HS256" | "HS384" | "HS512"),
            })
    }
}

/// A name that is not one of the [`Algorithm`]s. Its text lists the algorithms there are, and
/// says why a symmetric one (`HS256`, `HS384`, `HS512`) never is.
///
/// ```
/// use tower_machine_auth::Algorithm;
///
/// let error = "none".parse::<Algorithm>().unwrap_err();
/// assert!(error.to_string().contains("RS256"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", if *.symmetric { SYMMETRIC } else { UNKNOWN })]
pub struct UnknownAlgorithm {
    symmetric: bool,
}

const SYMMETRIC: &str = "HS256/HS384/HS512 are symmetric algorithms and cannot be used with \
                         public keys (PEM or JWKS): allowing them would open the door to \
                         algorithm confusion";
const UNKNOWN: &str = "not a supported signature algorithm: RS256, RS384, RS512, PS256, PS384, \
                       PS512, ES256, ES384 or EdDSA";

/// A small set of [`Algorithm`]s: the allowlist, and what each key may be used with.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// RSA keys: PKCS#1 v1.5 and PSS with SHA-2.
    pub(crate) const RSA: Self = Self::of(&[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ]);
    /// EC keys on P-256.
    pub(crate) const P256: Self = Self::of(&[Algorithm::ES256]);
    /// EC keys on P-384.
    pub(crate) const P384: Self = Self::of(&[Algorithm::ES384]);
    /// Ed25519 keys.
    pub(crate) const ED25519: Self = Self::of(&[Algorithm::EdDSA]);

    pub(crate) const fn of(algorithms: &[Algorithm]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < algorithms.len() {
            bits |= algorithms[i].bit();
            i += 1;
        }
        Self(bits)
    }

    pub(crate) fn contains(self, algorithm: Algorithm) -> bool {
        self.0 & algorithm.bit() != 0
    }

    pub(crate) fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |&a| self.contains(a))
    }
}

impl fmt::Debug for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Algorithm::as_str).collect();
        f.write_str(&names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for algorithm in Algorithm::ALL {
            assert_eq!(algorithm.as_str().parse::<Algorithm>(), Ok(algorithm));
            assert_eq!(algorithm.to_string(), format!("{algorithm:?}"));
        }
        for name in [
            "none", "", "rs256", "RS256 ", "ES512", "HS256", "HS384", "HS512",
        ] {
            assert!(name.parse::<Algorithm>().is_err(), "{name:?}");
        }
        assert_eq!(
            "HS512".parse::<Algorithm>().unwrap_err().to_string(),
            SYMMETRIC
        );
        assert_eq!(
            "ES512".parse::<Algorithm>().unwrap_err().to_string(),
            UNKNOWN
        );
    }

    #[test]
    fn set_operations() {
        let allow = AlgorithmSet::of(&[Algorithm::RS256, Algorithm::ES256]);
        assert!(allow.contains(Algorithm::RS256));
        assert!(!allow.contains(Algorithm::RS512));
        assert_eq!(
            allow.intersection(AlgorithmSet::RSA),
            AlgorithmSet::of(&[Algorithm::RS256])
        );
        assert!(allow.intersection(AlgorithmSet::ED25519).is_empty());
        assert_eq!(allow.to_string(), "RS256, ES256");
        assert_eq!(
            AlgorithmSet::of(&Algorithm::ALL).iter().collect::<Vec<_>>(),
            Algorithm::ALL
        );
    }
}
