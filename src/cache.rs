//! The token cache: a token seen before skips the signature check (JWT) or the introspection call
//! (opaque, when enabled).
//!
//! - Keyed by the token itself: a hit needs the presented bytes to equal the stored ones in full,
//!   so no two tokens can share an entry. The map hashes with a randomly seeded hasher (foldhash),
//!   and only tokens that passed verification are ever inserted, so requests cannot flood it.
//!   Keying by the token costs its length in memory per entry (about 1 KB for a Clerk JWT) and saves
//!   a SHA-256 per request, which was most of a hit.
//! - A long token is hashed by its length, its first 64 and its last 128 bytes, not all of it:
//!   the end of a verified JWT is its signature (random to anyone without the signing key), and
//!   opaque tokens are short enough to be hashed whole. Equality still compares every byte.
//! - Each entry is served until a time its caller chose (the configured TTL, and for opaque tokens
//!   never past their expiry), checked against the verifier's clock on every hit; a JWT's `exp` is
//!   also re-checked on every hit.
//! - Bounded in entries (an entry past its time stays until replaced or evicted). Eviction is
//!   S3-FIFO (quick_cache): every new token is admitted, tokens seen only once leave first, and
//!   lookups from several threads take a shared lock on one shard of many.
//! - The whole cache is cleared when a key leaves the key set, so a token signed by a removed key
//!   is verified again (and rejected).
//! - Clearing starts a new [`Generation`]. A JWT is cached with the generation read before its
//!   key was looked up, and an entry of an older generation is never served: a verification that
//!   found its key just before the key left the set, and finished after the clearing, cannot
//!   leave its token verifiable.
//! - Only successful verifications are cached.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quick_cache::Equivalent;
use quick_cache::sync::Cache;

use crate::error::AuthError;
use crate::machine::AuthenticatedMachine;
use crate::metrics;

#[derive(Clone)]
struct CachedToken {
    machine: AuthenticatedMachine,
    /// A JWT's `exp`: past it (after the skew) the token is answered as expired.
    expires_at_ms: Option<i64>,
    served_until_ms: i64,
    generation: Generation,
}

/// A cached token's bytes: compared in full, hashed by [`hash_token`].
#[derive(PartialEq, Eq)]
struct TokenKey(Box<[u8]>);

/// A presented token, looked up without copying it.
struct Lookup<'a>(&'a [u8]);

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_token(&self.0, state);
    }
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_token(self.0, state);
    }
}

impl Equivalent<TokenKey> for Lookup<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        *self.0 == *key.0
    }
}

/// Tokens up to this long are hashed whole.
const HASHED_WHOLE: usize = 192;
/// Of a longer token, the bytes hashed at its start and at its end.
const HASHED_HEAD: usize = 64;
const HASHED_TAIL: usize = 128;

/// Feeds `token`'s length and bytes to `state`: all of them for a short token, the first
/// [`HASHED_HEAD`] and last [`HASHED_TAIL`] of a long one (a 1 KB JWT is hashed five times faster,
/// twice per miss and once per hit).
fn hash_token<H: Hasher>(token: &[u8], state: &mut H) {
    state.write_usize(token.len());
    if token.len() <= HASHED_WHOLE {
        state.write(token);
    } else {
        state.write(&token[..HASHED_HEAD]);
        state.write(&token[token.len() - HASHED_TAIL..]);
    }
}

/// How many times the cache was cleared when an entry was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation(u64);

/// Verified tokens, by their text.
pub(crate) struct TokenCache {
    entries: Option<Cache<TokenKey, CachedToken>>,
    /// Advanced by every [`clear`](Self::clear).
    generation: AtomicU64,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens, served at most `max_ttl`. A capacity or `max_ttl` of
    /// 0 disables it.
    pub(crate) fn new(capacity: u64, max_ttl: Duration) -> Self {
        let entries = (capacity > 0 && !max_ttl.is_zero()).then(|| {
            // No time-based expiry: freshness is decided on every hit with the verifier's clock,
            // and an entry past it is replaced or evicted like any other.
            Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX))
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

    /// The cached result for `token` at `now_ms`, or `None` when the token must be verified.
    ///
    /// A cached JWT whose `exp` has passed (after `leeway_ms`) is answered as expired: it was
    /// authentic, so that is what a full verification would say.
    pub(crate) fn get(
        &self,
        token: &[u8],
        now_ms: i64,
        leeway_ms: i64,
    ) -> Option<Result<AuthenticatedMachine, AuthError>> {
        let entry = self.entries.as_ref()?.get(&Lookup(token))?;
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
        token: &[u8],
        machine: AuthenticatedMachine,
        expires_at_ms: i64,
        served_until_ms: i64,
        generation: Generation,
    ) {
        self.insert(
            token,
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
        token: &[u8],
        machine: AuthenticatedMachine,
        served_until_ms: i64,
    ) {
        let generation = self.generation();
        self.insert(
            token,
            CachedToken {
                machine,
                expires_at_ms: None,
                served_until_ms,
                generation,
            },
        );
    }

    fn insert(&self, token: &[u8], entry: CachedToken) {
        if let Some(entries) = &self.entries {
            // An entry already stale would only displace a live one.
            if entry.generation == self.generation() {
                entries.insert(TokenKey(token.into()), entry);
                metrics::cache_entries(entries.len());
            }
        }
    }

    /// The number of tokens cached.
    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }

    /// Forgets every token, and every verification still running (called when a key leaves the
    /// key set, after the new set is in place).
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.clear();
            metrics::cache_entries(0);
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
        cache.insert_jwt(b"one", machine(), 10_000, 5_000, before);
        assert!(cache.get(b"one", 1_000, 0).is_some());
        cache.clear();
        // A verification that read the generation before the clearing finishes after it.
        cache.insert_jwt(b"two", machine(), 10_000, 5_000, before);
        assert!(cache.get(b"one", 1_000, 0).is_none());
        assert!(cache.get(b"two", 1_000, 0).is_none());
        cache.insert_jwt(b"two", machine(), 10_000, 5_000, cache.generation());
        assert!(cache.get(b"two", 1_000, 0).is_some());
    }

    #[test]
    fn any_capacity_is_accepted() {
        let cache = TokenCache::new(u64::MAX, Duration::from_secs(60));
        cache.insert_jwt(b"a.b.c", machine(), 10_000, 5_000, cache.generation());
        assert!(cache.get(b"a.b.c", 1_000, 0).is_some());
    }

    #[test]
    fn a_hit_needs_the_whole_token() {
        let cache = TokenCache::new(10, Duration::from_secs(60));
        cache.insert_jwt(b"a.b.c", machine(), 10_000, 5_000, cache.generation());
        for other in [&b"a.b.d"[..], b"a.b.", b"a.b.cc", b"A.b.c", b""] {
            assert!(cache.get(other, 1_000, 0).is_none(), "{other:?}");
        }
        assert!(cache.get(b"a.b.c", 1_000, 0).is_some());
    }

    #[test]
    fn long_tokens_differing_only_where_they_are_not_hashed_are_told_apart() {
        let cache = TokenCache::new(10, Duration::from_secs(60));
        let token = |middle: u8| {
            let mut token = vec![b'a'; 1_000];
            token[500] = middle;
            token
        };
        cache.insert_jwt(&token(b'x'), machine(), 10_000, 5_000, cache.generation());
        assert!(cache.get(&token(b'y'), 1_000, 0).is_none());
        assert!(cache.get(&token(b'x')[..999], 1_000, 0).is_none());
        assert!(cache.get(&token(b'x'), 1_000, 0).is_some());
    }

    #[test]
    fn clocks_at_the_ends_of_i64_do_not_overflow() {
        let cache = TokenCache::new(10, Duration::from_secs(60));
        cache.insert_jwt(b"one", machine(), 10_000, i64::MAX, cache.generation());
        assert!(matches!(cache.get(b"one", i64::MIN, 300_000), Some(Ok(_))));
        assert!(matches!(
            cache.get(b"one", i64::MAX, 300_000),
            Some(Err(AuthError::Expired))
        ));
    }
}
