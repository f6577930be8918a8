//! A public key, pre-parsed once for every algorithm it may verify.
//!
//! Signatures are checked with `aws-lc-rs` directly: `jsonwebtoken::crypto::verify` rebuilds the
//! RSA key (Montgomery constants included) on every call, about 2.5 µs of a 23 µs RS256
//! verification; a pre-parsed `ParsedPublicKey` pays that once per key.

use std::fmt;

use crate::algorithm::Algorithm;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, VerificationAlgorithm};

use crate::algorithm::AlgorithmSet;

/// Public key material, as checked by the loaders.
#[derive(Debug, Clone)]
pub(crate) enum PublicKey {
    /// RSA modulus and exponent, big-endian, checked by `rsa::check_rsa_components`.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An EC key on P-256 or P-384: an SPKI document or an uncompressed point.
    Ec {
        family: AlgorithmSet,
        encoded: Vec<u8>,
    },
    /// An Ed25519 key: an SPKI document or the raw 32 bytes.
    Ed25519 { encoded: Vec<u8> },
}

impl PublicKey {
    /// The algorithms this kind of key can verify.
    pub(crate) fn family(&self) -> AlgorithmSet {
        match self {
            Self::Rsa { .. } => AlgorithmSet::RSA,
            Self::Ec { family, .. } => *family,
            Self::Ed25519 { .. } => AlgorithmSet::ED25519,
        }
    }

    /// A digest of the key and the algorithms it is bound to.
    fn fingerprint(&self, algorithms: AlgorithmSet) -> [u8; 32] {
        let algorithms = format!("{algorithms:?}");
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let parts: [&[u8]; 3] = match self {
            Self::Rsa { n, e } => [n, e, algorithms.as_bytes()],
            Self::Ec { encoded, .. } => [b"EC", encoded, algorithms.as_bytes()],
            Self::Ed25519 { encoded } => [b"Ed25519", encoded, algorithms.as_bytes()],
        };
        for part in parts {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let mut out = [0; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }

    fn parse_for(&self, algorithm: Algorithm) -> Option<ParsedPublicKey> {
        match self {
            Self::Rsa { n, e } => PublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .to_parsed_public_key(rsa_parameters(algorithm)?)
            .ok(),
            Self::Ec { encoded, .. } | Self::Ed25519 { encoded } => {
                ParsedPublicKey::new(curve_algorithm(algorithm)?, encoded).ok()
            }
        }
    }
}

fn rsa_parameters(algorithm: Algorithm) -> Option<&'static RsaParameters> {
    Some(match algorithm {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn curve_algorithm(algorithm: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match algorithm {
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

/// One public key, bound to the algorithms it may verify.
pub(crate) struct VerifyingKey {
    /// The JWK `kid`; `None` for a PEM key.
    pub(crate) kid: Option<String>,
    /// The key parsed for each algorithm it verifies: its JWK `alg` alone, or the allowlist
    /// within its family.
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
    /// A digest of the key material and algorithms, to notice a `kid` whose key changed.
    pub(crate) fingerprint: [u8; 32],
}

impl VerifyingKey {
    /// Binds `key` to `algorithms` (which must lie within its family), or says why it cannot be.
    pub(crate) fn new(
        kid: Option<String>,
        key: &PublicKey,
        algorithms: AlgorithmSet,
    ) -> Result<Self, &'static str> {
        if algorithms.is_empty() || algorithms.intersection(key.family()) != algorithms {
            return Err("no allowed algorithm fits the key");
        }
        let parsed = algorithms
            .iter()
            .map(|algorithm| Some((algorithm, key.parse_for(algorithm)?)))
            .collect::<Option<Vec<_>>>()
            .ok_or("the key cannot be parsed")?;
        Ok(Self {
            kid,
            parsed,
            fingerprint: key.fingerprint(algorithms),
        })
    }

    /// Whether this key may verify `algorithm`.
    pub(crate) fn supports(&self, algorithm: Algorithm) -> bool {
        self.parsed.iter().any(|(a, _)| *a == algorithm)
    }

    /// Whether `signature` over `message` is valid under `algorithm`; `false` also when the key is
    /// not for `algorithm`.
    pub(crate) fn verify(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .iter()
            .find(|(a, _)| *a == algorithm)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithms: Vec<Algorithm> = self.parsed.iter().map(|(a, _)| *a).collect();
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &algorithms)
            .finish_non_exhaustive()
    }
}
