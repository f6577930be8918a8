//! Counters a verifier keeps, for metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a verifier's counters; see [`MachineVerifier::stats`](crate::MachineVerifier::stats).
///
/// ```
/// use tower_machine_auth::VerifierStats;
///
/// let stats = VerifierStats::default();
/// assert_eq!(stats.signature_checks, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifierStats {
    /// Signature verifications performed (cache misses that reached the crypto).
    pub signature_checks: u64,
    /// Tokens answered from the verified-token cache.
    pub cache_hits: u64,
    /// JWKS fetches started (background and on demand).
    pub jwks_fetches: u64,
    /// JWKS fetches that failed.
    pub jwks_fetch_failures: u64,
    /// On-demand JWKS fetches refused because the cooldown had not elapsed.
    pub jwks_fetches_skipped: u64,
}

/// The live counters behind [`VerifierStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) signature_checks: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) jwks_fetches: AtomicU64,
    pub(crate) jwks_fetch_failures: AtomicU64,
    pub(crate) jwks_fetches_skipped: AtomicU64,
}

impl Counters {
    pub(crate) fn add(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> VerifierStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        VerifierStats {
            signature_checks: read(&self.signature_checks),
            cache_hits: read(&self.cache_hits),
            jwks_fetches: read(&self.jwks_fetches),
            jwks_fetch_failures: read(&self.jwks_fetch_failures),
            jwks_fetches_skipped: read(&self.jwks_fetches_skipped),
        }
    }
}
