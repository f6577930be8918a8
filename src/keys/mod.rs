//! Public keys: loading them (PEM, JWKS), filtering unusable ones, and keeping a JWKS fresh.

mod jwk;
mod jwks;
mod pem;
mod rsa;

pub(crate) use jwk::parse_jwk_set;
pub(crate) use jwks::{JwksEndpoint, JwksSettings, JwksSource};
pub(crate) use pem::key_from_pem;

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;

use crate::error::{AuthError, InvalidToken};
use crate::jwt::{AlgorithmSet, JwtHeader};

/// One public key, bound to the algorithms it may verify.
pub(crate) struct VerifyingKey {
    /// The JWK `kid`; `None` for a PEM key.
    pub(crate) kid: Option<String>,
    /// The algorithms this key verifies: its JWK `alg` alone, or the allowlist within its family.
    pub(crate) algorithms: AlgorithmSet,
    pub(crate) decoding: DecodingKey,
    /// A digest of the key material and algorithms, to notice a `kid` whose key changed.
    pub(crate) fingerprint: [u8; 32],
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Where a verifier's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// One key from PEM: networkless, the token's `kid` is ignored (as Clerk's `jwtKey`).
    Static(Arc<VerifyingKey>),
    /// A JWKS fetched and refreshed in the background.
    Jwks(Arc<JwksSource>),
}

/// The outcome of looking a token's key up without waiting.
#[derive(Debug)]
pub(crate) enum KeyLookup {
    Found(Arc<VerifyingKey>),
    /// The key is not known now; a fetch is allowed and may find it.
    FetchMayHelp,
    Failed(AuthError),
}

impl KeySource {
    /// The key for `header`, without touching the network.
    pub(crate) fn lookup(&self, header: &JwtHeader) -> KeyLookup {
        match self {
            Self::Static(key) => KeyLookup::Found(Arc::clone(key)),
            Self::Jwks(source) => {
                let Some(kid) = header.kid.as_deref() else {
                    return KeyLookup::Failed(AuthError::InvalidToken(InvalidToken::MissingKeyId));
                };
                source.lookup(kid)
            }
        }
    }
}

/// The SHA-256 of `parts`, each length-prefixed.
pub(crate) fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}
