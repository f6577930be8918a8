//! The metrics the layer and the verifier record through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): install any recorder (for example
//! `metrics-exporter-prometheus`) and they appear under these names.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `machine_auth_requests_total` | counter | `outcome`, `reason`, `token_type` | requests the layer decided |
//! | `machine_auth_verify_duration_seconds` | histogram | `token_type`, `cached` | time to verify a token, waits for a key fetch or an introspection call included |
//! | `machine_auth_jwks_fetches_total` | counter | `result` | JWKS fetches |
//! | `machine_auth_jwks_keys` | gauge | | keys in the current key set |
//! | `machine_auth_cache_entries` | gauge | | verified tokens in the cache, after each insertion |
//! | `machine_auth_introspection_requests_total` | counter | `result` | calls to an introspection endpoint |
//! | `machine_auth_breaker_state` | gauge | | the introspection circuit breaker: 0 closed, 1 open, 2 half-open (a probe is out) |
//!
//! The labels take only these values, never a token, a machine id or anything else a caller
//! chooses:
//!
//! - `outcome`: `accepted`, `rejected`, or `anonymous` (no credential, let through by an
//!   optional layer).
//! - `reason`: a [`Reason`] (`token-expired`, …), or `none` when accepted.
//! - `token_type`: `jwt`, `opaque`, `none` (no token), `other` (a token of neither shape).
//! - `cached`: `true` when the verified-token cache answered.
//! - `result` of JWKS fetches: `ok` or `error`; of introspection calls: `active`, `inactive`
//!   (the endpoint does not vouch for the token), or `error` (unreachable, failing, or an
//!   unusable reply).
//!
//! The gauges have no label that names a verifier: with several verifiers in one process, each
//! sets them in turn (one verifier, shared by clones, is the usual shape). The cache gauge is set
//! after each insertion and when the cache is cleared; entries that age out lower it at the next
//! insertion.
//!
//! The names are also constants of this module. With no recorder installed, recording costs
//! next to nothing; without the feature, nothing at all.
//!
//! ```
//! use tower_machine_auth::metrics;
//!
//! assert_eq!(metrics::REQUESTS_TOTAL, "machine_auth_requests_total");
//! ```

use crate::error::Reason;
use crate::machine::TokenFormat;

/// Requests the layer decided: counter, labels `outcome`, `reason`, `token_type`.
pub const REQUESTS_TOTAL: &str = "machine_auth_requests_total";
/// Time to verify a token, in seconds: histogram, labels `token_type`, `cached`.
pub const VERIFY_DURATION_SECONDS: &str = "machine_auth_verify_duration_seconds";
/// JWKS fetches: counter, label `result`.
pub const JWKS_FETCHES_TOTAL: &str = "machine_auth_jwks_fetches_total";
/// Keys in the current JWKS: gauge.
pub const JWKS_KEYS: &str = "machine_auth_jwks_keys";
/// Verified tokens in the cache: gauge.
pub const CACHE_ENTRIES: &str = "machine_auth_cache_entries";
/// Calls to an introspection endpoint: counter, label `result`.
pub const INTROSPECTION_REQUESTS_TOTAL: &str = "machine_auth_introspection_requests_total";
/// The introspection circuit breaker (0 closed, 1 open, 2 half-open): gauge.
pub const BREAKER_STATE: &str = "machine_auth_breaker_state";

/// The `token_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenType {
    Jwt,
    Opaque,
    /// No token at all.
    None,
    /// A token of neither shape.
    Other,
}

impl TokenType {
    /// The type of a token, by its shape.
    pub(crate) fn of(token: &[u8]) -> Self {
        if crate::credential::jwt_shaped(token).is_some() {
            Self::Jwt
        } else if token.starts_with(b"mt_") {
            Self::Opaque
        } else {
            Self::Other
        }
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Opaque => "opaque",
            Self::None => "none",
            Self::Other => "other",
        }
    }
}

impl From<TokenFormat> for TokenType {
    fn from(format: TokenFormat) -> Self {
        match format {
            TokenFormat::Jwt => Self::Jwt,
            TokenFormat::Opaque => Self::Opaque,
        }
    }
}

/// The `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    Rejected,
    Anonymous,
}

impl Outcome {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Anonymous => "anonymous",
        }
    }
}

/// The `result` label of an introspection call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntrospectionResult {
    Active,
    Inactive,
    Error,
}

/// The circuit breaker's state, as the gauge holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerGauge {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[cfg(feature = "metrics")]
mod record {
    use std::sync::LazyLock;
    use std::time::Instant;

    use ::metrics::{Key, Label, Level, Metadata};

    use super::*;

    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    const OUTCOMES: [Outcome; 3] = [Outcome::Accepted, Outcome::Rejected, Outcome::Anonymous];
    const TOKEN_TYPES: [TokenType; 4] = [
        TokenType::Jwt,
        TokenType::Opaque,
        TokenType::None,
        TokenType::Other,
    ];
    /// Every reason, in declaration order (`reason as usize` indexes it).
    const REASONS: [Reason; 10] = [
        Reason::TokenMissing,
        Reason::MalformedRequest,
        Reason::TokenTypeMismatch,
        Reason::TokenInvalid,
        Reason::TokenInvalidReceiver,
        Reason::TokenVerificationFailed,
        Reason::TokenExpired,
        Reason::TokenNotActive,
        Reason::InsufficientScope,
        Reason::VerifierUnavailable,
    ];
    // A new reason stops the build here until it is listed above.
    const _: () = match Reason::TokenMissing {
        Reason::TokenMissing
        | Reason::MalformedRequest
        | Reason::TokenTypeMismatch
        | Reason::TokenInvalid
        | Reason::TokenInvalidReceiver
        | Reason::TokenVerificationFailed
        | Reason::TokenExpired
        | Reason::TokenNotActive
        | Reason::InsufficientScope
        | Reason::VerifierUnavailable => {}
    };

    /// The keys of every label combination, made once: a request then records without
    /// allocating.
    static REQUEST_KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
        let mut keys = Vec::with_capacity(OUTCOMES.len() * (REASONS.len() + 1) * TOKEN_TYPES.len());
        for outcome in OUTCOMES {
            for reason in std::iter::once(None).chain(REASONS.map(Some)) {
                for token_type in TOKEN_TYPES {
                    let labels = vec![
                        Label::from_static_parts("outcome", outcome.as_str()),
                        Label::from_static_parts("reason", reason.map_or("none", Reason::as_str)),
                        Label::from_static_parts("token_type", token_type.as_str()),
                    ];
                    keys.push(Key::from_parts(REQUESTS_TOTAL, labels));
                }
            }
        }
        keys
    });

    static VERIFY_KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
        let mut keys = Vec::with_capacity(TOKEN_TYPES.len() * 2);
        for token_type in TOKEN_TYPES {
            for cached in ["false", "true"] {
                let labels = vec![
                    Label::from_static_parts("token_type", token_type.as_str()),
                    Label::from_static_parts("cached", cached),
                ];
                keys.push(Key::from_parts(VERIFY_DURATION_SECONDS, labels));
            }
        }
        keys
    });

    pub(crate) fn request(outcome: Outcome, reason: Option<Reason>, token_type: TokenType) {
        let reason = reason.map_or(0, |reason| reason as usize + 1);
        let index = ((outcome as usize) * (REASONS.len() + 1) + reason) * TOKEN_TYPES.len()
            + token_type as usize;
        let key = &REQUEST_KEYS[index];
        ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
    }

    /// A clock reading for [`verified`], taken only when metrics are compiled in.
    pub(crate) fn start() -> Option<Instant> {
        Some(Instant::now())
    }

    pub(crate) fn verified(started: Option<Instant>, token_type: TokenType, cached: bool) {
        if let Some(started) = started {
            let key = &VERIFY_KEYS[token_type as usize * 2 + usize::from(cached)];
            ::metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
                .record(started.elapsed().as_secs_f64());
        }
    }

    pub(crate) fn jwks_fetch(ok: bool, keys: Option<usize>) {
        let result = if ok { "ok" } else { "error" };
        ::metrics::counter!(JWKS_FETCHES_TOTAL, "result" => result).increment(1);
        if let Some(keys) = keys {
            ::metrics::gauge!(JWKS_KEYS).set(keys as f64);
        }
    }

    pub(crate) fn cache_entries(entries: usize) {
        ::metrics::gauge!(CACHE_ENTRIES).set(entries as f64);
    }

    pub(crate) fn introspection(result: IntrospectionResult) {
        let result = match result {
            IntrospectionResult::Active => "active",
            IntrospectionResult::Inactive => "inactive",
            IntrospectionResult::Error => "error",
        };
        ::metrics::counter!(INTROSPECTION_REQUESTS_TOTAL, "result" => result).increment(1);
    }

    pub(crate) fn breaker(state: BreakerGauge) {
        ::metrics::gauge!(BREAKER_STATE).set(f64::from(state as u8));
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_tables_are_indexed_by_the_enums() {
            for (index, reason) in REASONS.into_iter().enumerate() {
                assert_eq!(reason as usize, index);
            }
            for (index, outcome) in OUTCOMES.into_iter().enumerate() {
                assert_eq!(outcome as usize, index);
            }
            for (index, token_type) in TOKEN_TYPES.into_iter().enumerate() {
                assert_eq!(token_type as usize, index);
            }
            let key = &REQUEST_KEYS[((Outcome::Rejected as usize) * 11 + 7) * 4 + 1];
            let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
            assert_eq!(
                labels,
                [
                    ("outcome", "rejected"),
                    ("reason", "token-expired"),
                    ("token_type", "opaque")
                ]
            );
            assert_eq!(REQUEST_KEYS.len(), 3 * 11 * 4);
        }
    }
}

#[cfg(not(feature = "metrics"))]
#[allow(clippy::missing_const_for_fn)]
mod record {
    use super::*;

    pub(crate) fn request(_: Outcome, _: Option<Reason>, _: TokenType) {}
    pub(crate) fn start() -> Option<std::time::Instant> {
        None
    }
    pub(crate) fn verified(_: Option<std::time::Instant>, _: TokenType, _: bool) {}
    pub(crate) fn jwks_fetch(_: bool, _: Option<usize>) {}
    pub(crate) fn cache_entries(_: usize) {}
    pub(crate) fn introspection(_: IntrospectionResult) {}
    pub(crate) fn breaker(_: BreakerGauge) {}
}

pub(crate) use record::*;
