//! Counters a verifier keeps, for metrics and tests.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A snapshot of a verifier's counters; see [`MachineVerifier::stats`](crate::MachineVerifier::stats).
///
/// The counters start at zero when the verifier is built, only grow, and are shared by its
/// clones (and so by every layer made from them). A later snapshot does not update this one.
///
/// ```
/// use tower_machine_auth::{MachineVerifier, VerifierStats};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../tests/data/rsa_private.pem"))?;
/// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
/// let claims = serde_json::json!({"sub": "mch_cron", "exp": now + 60});
/// let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)?;
/// let verifier = MachineVerifier::from_pem(include_str!("../tests/data/rsa_public.pem"))?;
/// assert_eq!(verifier.stats(), VerifierStats::default());
/// verifier.verify(&token).await?;
/// verifier.verify(&token).await?; // the same token again: answered from the cache
/// let stats = verifier.stats();
/// assert_eq!((stats.signature_checks, stats.cache_hits), (1, 1));
/// assert_eq!(stats.jwks_fetches, 0); // a PEM key never fetches
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifierStats {
    /// Signatures checked: tokens not answered from the cache whose header passed and whose key
    /// was found for their algorithm, whether or not the signature then verified.
    pub signature_checks: u64,
    /// Tokens answered from the verified-token cache, including reused tokens answered as
    /// expired.
    pub cache_hits: u64,
    /// JWKS fetches started (background and on demand); always 0 with a PEM key.
    pub jwks_fetches: u64,
    /// JWKS fetches that failed (network error, timeout, redirect, non-200 status, a document
    /// that is oversized, unreadable or without a usable key); the last good keys are kept.
    pub jwks_fetch_failures: u64,
    /// On-demand JWKS fetches not made because the cooldown had not elapsed: counted once per
    /// token with an unknown `kid` that would otherwise have triggered one.
    pub jwks_fetches_skipped: u64,
    /// Calls made to an introspection endpoint for opaque tokens (one per token however many
    /// requests carried it at once; none while the circuit breaker is open).
    pub introspections: u64,
}

/// The live counters behind [`VerifierStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) signature_checks: AtomicU64,
    /// Every cache hit adds to it, from every thread: striped.
    pub(crate) cache_hits: StripedCounter,
    pub(crate) jwks_fetches: AtomicU64,
    pub(crate) jwks_fetch_failures: AtomicU64,
    pub(crate) jwks_fetches_skipped: AtomicU64,
    pub(crate) introspections: AtomicU64,
}

impl Counters {
    pub(crate) fn add(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> VerifierStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        VerifierStats {
            signature_checks: read(&self.signature_checks),
            cache_hits: self.cache_hits.sum(),
            jwks_fetches: read(&self.jwks_fetches),
            jwks_fetch_failures: read(&self.jwks_fetch_failures),
            jwks_fetches_skipped: read(&self.jwks_fetches_skipped),
            introspections: read(&self.introspections),
        }
    }
}

/// How many stripes a [`StripedCounter`] has: threads beyond it share stripes.
const STRIPES: usize = 16;

/// A counter that many threads add to at once: each thread adds to a stripe of its own, on a cache
/// line of its own, so that two cores do not take turns owning one line on every request.
#[derive(Debug, Default)]
pub(crate) struct StripedCounter([Stripe; STRIPES]);

#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl StripedCounter {
    pub(crate) fn add(&self) {
        self.0[stripe_index()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0
            .iter()
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// This thread's stripe: threads take stripes in turn as they first count.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|index| *index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counts_add_up_across_threads() {
        let counter = StripedCounter::default();
        std::thread::scope(|scope| {
            for _ in 0..40 {
                scope.spawn(|| (0..100).for_each(|_| counter.add()));
            }
        });
        assert_eq!(counter.sum(), 4_000);
    }
}
