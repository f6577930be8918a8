//! Sets of signature algorithms: the allowlist, and what each key may be used with.

use std::fmt;

use jsonwebtoken::Algorithm;

/// The asymmetric algorithms a machine-token verifier can use, in display order.
pub(crate) const SUPPORTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A small set of [`Algorithm`]s.
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
            bits |= bit(algorithms[i]);
            i += 1;
        }
        Self(bits)
    }

    pub(crate) fn contains(self, algorithm: Algorithm) -> bool {
        self.0 & bit(algorithm) != 0
    }

    pub(crate) fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the set holds anything outside [`SUPPORTED`] (HMAC algorithms).
    pub(crate) fn has_unsupported(self) -> bool {
        self.0 & !Self::of(&SUPPORTED).0 != 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALL.into_iter().filter(move |&a| self.contains(a))
    }
}

const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const fn bit(algorithm: Algorithm) -> u16 {
    1 << match algorithm {
        Algorithm::HS256 => 0,
        Algorithm::HS384 => 1,
        Algorithm::HS512 => 2,
        Algorithm::RS256 => 3,
        Algorithm::RS384 => 4,
        Algorithm::RS512 => 5,
        Algorithm::PS256 => 6,
        Algorithm::PS384 => 7,
        Algorithm::PS512 => 8,
        Algorithm::ES256 => 9,
        Algorithm::ES384 => 10,
        Algorithm::EdDSA => 11,
        // Algorithms added to jsonwebtoken later are outside `SUPPORTED`, hence refused.
        _ => 15,
    }
}

impl fmt::Debug for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.iter().map(|a| format!("{a:?}")).collect();
        f.write_str(&names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!allow.has_unsupported());
        assert!(AlgorithmSet::of(&[Algorithm::HS256]).has_unsupported());
        assert_eq!(allow.to_string(), "RS256, ES256");
    }
}
