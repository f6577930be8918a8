//! Public keys: loading them (PEM, JWKS), filtering unusable ones, and keeping a JWKS fresh.

mod jwk;
mod jwks;
mod pem;
mod publishable;
mod rsa;
mod verifying_key;

pub(crate) use jwk::parse_jwk_set;
pub(crate) use jwks::{JwksEndpoint, JwksSettings, JwksSource, NotLoaded};
pub(crate) use pem::{key_from_pem, same_public_key};
pub(crate) use publishable::frontend_api_jwks_url;
pub(crate) use verifying_key::{PublicKey, VerifyingKey};

use std::sync::Arc;

use crate::error::{AuthError, InvalidToken};

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
    /// The key for a token whose header names `kid` (or none), without touching the network.
    pub(crate) fn lookup(&self, kid: Option<&str>) -> KeyLookup {
        match self {
            Self::Static(key) => KeyLookup::Found(Arc::clone(key)),
            Self::Jwks(source) => {
                let Some(kid) = kid else {
                    return KeyLookup::Failed(AuthError::InvalidToken(InvalidToken::MissingKeyId));
                };
                source.lookup(kid)
            }
        }
    }
}
