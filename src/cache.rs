//! The token cache: a token seen before skips the signature check (JWT) or the introspection call
//! (opaque, when enabled).
//!
//! - Keyed by the SHA-256 of the token; the raw token is never stored.
//! - Each entry is served until a time its caller chose (the configured TTL, and for opaque tokens
//!   never past their expiry), checked against the verifier's clock on every hit; a JWT's `exp` is
//!   also re-checked on every hit.
//! - Bounded in entries (an entry past its time stays until replaced or evicted), evicting the
//!   least recently used; the whole cache is cleared when a key
//!   leaves the key set, so a token signed by a removed key is verified again (and rejected).
//! - Clearing starts a new [`Generation`]. A JWT is cached with the generation read before its
//!   key was looked up, and an entry of an older generation is never served: a verification that
//!   found its key just before the key left the set, and finished after the clearing, cannot
//!   leave its token verifiable.
//! - Only successful verifications are cached.

use std::sync::atomic::{AtomicU64, Ordering};
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
    /// A JWT's `exp`: past it (after the skew) the token is answered as expired.
    expires_at_ms: Option<i64>,
    served_until_ms: i64,
    generation: Generation,
}

/// How many times the cache was cleared when an entry was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation(u64);

/// Verified tokens, by digest.
pub(crate) struct TokenCache {
    entries: Option<Cache<TokenDigest, CachedToken>>,
    /// Advanced by every [`clear`](Self::clear).
    generation: AtomicU64,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens, served at most `max_ttl`. A capacity or `max_ttl` of
    /// 0 disables it.
    pub(crate) fn new(capacity: u64, max_ttl: Duration) -> Self {
        let entries = (capacity > 0 && !max_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                // LRU admits every new token at once; TinyLFU could keep refusing a freshly
                // refreshed token while older, often-seen tokens fill the cache.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                // No time-based expiry: freshness is decided on every hit with the verifier's
                // clock, and an entry past it is replaced or evicted like any other. (moka's
                // expiry bookkeeping measurably slowed every insert into a full cache.)
                .build()
        });
        Self {
            entries,
            generation: AtomicU64::new(0),
        }
    }

    /// The current generation: read it before looking up the key a token is verified with, and
    /// cache the token with it.
    pub(crate) fn generation(&self) -> Generation {
        // SeqCst, paired with `clear`: a reader that sees the old generation may have read the
        // old key set; one that sees the new generation reads the new key set.
        Generation(self.generation.load(Ordering::SeqCst))
    }

    /// The cached result for `digest` at `now_ms`, or `None` when the token must be verified.
    ///
    /// A cached JWT whose `exp` has passed (after `leeway_ms`) is answered as expired: it was
    /// authentic, so that is what a full verification would say.
    pub(crate) fn get(
        &self,
        digest: &TokenDigest,
        now_ms: i64,
        leeway_ms: i64,
    ) -> Option<Result<AuthenticatedMachine, AuthError>> {
        let entry = self.entries.as_ref()?.get(digest)?;
        if entry.generation != self.generation() {
            return None;
        }
        if entry
            .expires_at_ms
            .is_some_and(|exp| exp <= now_ms.saturating_sub(leeway_ms))
        {
            return Some(Err(AuthError::Expired));
        }
        if now_ms >= entry.served_until_ms {
            return None;
        }
        Some(Ok(entry.machine))
    }

    /// Remembers a verified JWT (expiring at `expires_at_ms`) until `served_until_ms`, if the
    /// cache has not been cleared since `generation` (read before its key was looked up).
    pub(crate) fn insert_jwt(
        &self,
        digest: TokenDigest,
        machine: AuthenticatedMachine,
        expires_at_ms: i64,
        served_until_ms: i64,
        generation: Generation,
    ) {
        self.insert(
            digest,
            CachedToken {
                machine,
                expires_at_ms: Some(expires_at_ms),
                served_until_ms,
                generation,
            },
        );
    }

    /// Remembers a verified opaque token until `served_until_ms` (at most its expiry).
    pub(crate) fn insert_opaque(
        &self,
        digest: TokenDigest,
        machine: AuthenticatedMachine,
        served_until_ms: i64,
    ) {
        let generation = self.generation();
        self.insert(
            digest,
            CachedToken {
                machine,
                expires_at_ms: None,
                served_until_ms,
                generation,
            },
        );
    }

    fn insert(&self, digest: TokenDigest, entry: CachedToken) {
        if let Some(entries) = &self.entries {
            // An entry already stale would only displace a live one.
            if entry.generation == self.generation() {
                entries.insert(digest, entry);
            }
        }
    }

    /// Forgets every token, and every verification still running (called when a key leaves the
    /// key set, after the new set is in place).
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineId;

    fn machine() -> AuthenticatedMachine {
        AuthenticatedMachine::builder(MachineId::parse("mch_a").unwrap()).build()
    }

    #[test]
    fn entries_of_an_older_generation_are_never_served() {
        let cache = TokenCache::new(10, Duration::from_secs(60));
        let before = cache.generation();
        cache.insert_jwt([1; 32], machine(), 10_000, 5_000, before);
        assert!(cache.get(&[1; 32], 1_000, 0).is_some());
        cache.clear();
        // A verification that read the generation before the clearing finishes after it.
        cache.insert_jwt([2; 32], machine(), 10_000, 5_000, before);
        assert!(cache.get(&[1; 32], 1_000, 0).is_none());
        assert!(cache.get(&[2; 32], 1_000, 0).is_none());
        cache.insert_jwt([2; 32], machine(), 10_000, 5_000, cache.generation());
        assert!(cache.get(&[2; 32], 1_000, 0).is_some());
    }

    #[test]
    fn clocks_at_the_ends_of_i64_do_not_overflow() {
        let cache = TokenCache::new(10, Duration::from_secs(60));
        cache.insert_jwt([1; 32], machine(), 10_000, i64::MAX, cache.generation());
        assert!(matches!(
            cache.get(&[1; 32], i64::MIN, 300_000),
            Some(Ok(_))
        ));
        assert!(matches!(
            cache.get(&[1; 32], i64::MAX, 300_000),
            Some(Err(AuthError::Expired))
        ));
    }
}
