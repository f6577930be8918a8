//! The verified-token cache: a token seen before skips the signature check.
//!
//! - Keyed by the SHA-256 of the token; the raw token is never stored.
//! - An entry lives at most the configured TTL, and never past the token's expiry: `exp` is
//!   re-checked against the verifier's clock on every hit.
//! - Bounded in entries; the whole cache is cleared when a key leaves the key set, so a token
//!   signed by a removed key is verified again (and rejected).
//! - Only successful verifications are cached.

use std::time::Duration;

use moka::sync::Cache;

use crate::error::AuthError;
use crate::machine::AuthenticatedMachine;

/// The SHA-256 of a token.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &[u8]) -> TokenDigest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[derive(Clone)]
struct CachedToken {
    machine: AuthenticatedMachine,
    expires_at_ms: i64,
    cached_until_ms: i64,
}

/// Verified tokens, by digest.
pub(crate) struct TokenCache {
    entries: Option<Cache<TokenDigest, CachedToken>>,
    ttl_ms: i64,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens, each kept at most `ttl`. A capacity of 0 disables it.
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        let entries = (capacity > 0 && !ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                // LRU admits every new token at once; TinyLFU could keep refusing a freshly
                // refreshed token while older, often-seen tokens fill the cache.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                // Eviction only: freshness is decided on every hit with the verifier's clock.
                .time_to_live(ttl)
                .build()
        });
        Self {
            entries,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// The cached result for `digest` at `now_ms`, or `None` when the token must be verified.
    ///
    /// A cached token whose `exp` has passed (after `leeway_ms`) is answered as expired: it was
    /// authentic, so that is what a full verification would say.
    pub(crate) fn get(
        &self,
        digest: &TokenDigest,
        now_ms: i64,
        leeway_ms: i64,
    ) -> Option<Result<AuthenticatedMachine, AuthError>> {
        let entry = self.entries.as_ref()?.get(digest)?;
        if entry.expires_at_ms <= now_ms - leeway_ms {
            return Some(Err(AuthError::Expired));
        }
        if now_ms >= entry.cached_until_ms {
            return None;
        }
        Some(Ok(entry.machine))
    }

    /// Remembers a verified token.
    pub(crate) fn insert(
        &self,
        digest: TokenDigest,
        machine: AuthenticatedMachine,
        expires_at_ms: i64,
        now_ms: i64,
    ) {
        let Some(entries) = &self.entries else {
            return;
        };
        entries.insert(
            digest,
            CachedToken {
                machine,
                expires_at_ms,
                cached_until_ms: now_ms.saturating_add(self.ttl_ms),
            },
        );
    }

    /// Forgets every token (called when a key leaves the key set).
    pub(crate) fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }
}
