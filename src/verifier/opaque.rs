//! Opaque tokens: routing to an introspector, one call per token however many requests carry it,
//! the circuit breaker, the opt-in result cache, and the mapping to an `AuthenticatedMachine`.
//!
//! A request may be dropped at any await (its client hung up, a timeout layer fired): the call it
//! shares with other requests leaves the in-flight map when the last of them goes, and a circuit
//! breaker probe frees its slot.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OnceCell;

use super::MachineVerifier;
use super::not_found_watch::NotFoundWatch;
use crate::clock::{to_unix_millis, unix_millis};
use crate::credential::TokenKind;
use crate::error::{AuthError, InvalidToken, TypeMismatch, Unavailable};
use crate::introspect::{
    BreakerState, CircuitBreaker, ClerkIntrospector, IntrospectedToken, Introspector, Permit,
};
use crate::machine::{AuthenticatedMachine, MachineId, TokenFormat};
use crate::metrics::{self, IntrospectionResult};

type Outcome = Result<AuthenticatedMachine, AuthError>;

/// The SHA-256 of a token: how calls in flight, and rejections in logs, name it.
pub(super) type TokenDigest = [u8; 32];

pub(super) fn digest(token: &[u8]) -> TokenDigest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// One introspection endpoint and its circuit breaker.
pub(crate) struct IntrospectionRoute {
    pub(super) introspector: Arc<dyn Introspector>,
    breaker: CircuitBreaker,
    /// What the endpoint is, for messages: Clerk's verify URL, or the introspector set on the
    /// builder.
    endpoint: Endpoint,
    /// With a machine secret key: watches for every token being unknown to Clerk.
    not_found_watch: Option<NotFoundWatch>,
    /// Clerk's introspector itself (also `introspector`), for probes that read its statuses.
    pub(super) clerk: Option<Arc<ClerkIntrospector>>,
}

/// What an [`IntrospectionRoute`] calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Clerk's `/m2m_tokens/verify` at this URL (without credentials), with a machine secret
    /// key (`CLERK_MACHINE_SECRET_KEY`) or the instance's (`CLERK_SECRET_KEY`).
    Clerk { url: String, machine_key: bool },
    /// An introspector given to the builder (its endpoint is its own business).
    Custom,
}

impl IntrospectionRoute {
    /// A route to an introspector given to the builder.
    pub(crate) fn new(introspector: Arc<dyn Introspector>) -> Self {
        Self {
            introspector,
            breaker: CircuitBreaker::default(),
            endpoint: Endpoint::Custom,
            not_found_watch: None,
            clerk: None,
        }
    }

    /// A route to Clerk's verify endpoint, called with a machine secret key or the instance's.
    pub(crate) fn clerk(introspector: ClerkIntrospector, machine_key: bool) -> Self {
        let clerk = Arc::new(introspector);
        Self {
            endpoint: Endpoint::Clerk {
                url: clerk.shown().to_owned(),
                machine_key,
            },
            not_found_watch: machine_key.then(NotFoundWatch::default),
            introspector: Arc::clone(&clerk) as Arc<dyn Introspector>,
            clerk: Some(clerk),
            breaker: CircuitBreaker::default(),
        }
    }

    /// What this route calls.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl fmt::Debug for IntrospectionRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.introspector, f)
    }
}

/// How a verifier handles opaque tokens.
#[derive(Debug)]
pub(crate) struct OpaqueVerification {
    /// Clerk's `mt_…` tokens.
    machine_tokens: Option<IntrospectionRoute>,
    /// Every other token that is not JWT-shaped (and `mt_…` when `machine_tokens` is unset).
    others: Option<IntrospectionRoute>,
    /// How long a valid result is reused; 0 (the default) asks the issuer every time.
    cache_ttl_ms: i64,
    /// Calls in flight, by token digest: concurrent requests with one token share one call.
    in_flight: Mutex<HashMap<TokenDigest, SharedCall>>,
}

/// One call in flight and how many requests wait for it.
#[derive(Debug)]
struct SharedCall {
    outcome: Arc<OnceCell<Outcome>>,
    waiters: usize,
}

/// A request's share in the call for its token. Dropped (the request finished or was cancelled),
/// it leaves; the call leaves the map once it has an outcome (so the next request asks again) or
/// when its last waiter leaves without one.
struct Flight<'a> {
    opaque: &'a OpaqueVerification,
    digest: TokenDigest,
    outcome: Arc<OnceCell<Outcome>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.opaque.lock_in_flight();
        let Entry::Occupied(mut entry) = in_flight.entry(self.digest) else {
            return;
        };
        let call = entry.get_mut();
        if !Arc::ptr_eq(&call.outcome, &self.outcome) {
            // A later call for the same token: this one already left the map.
            return;
        }
        call.waiters -= 1;
        if call.waiters == 0 || self.outcome.initialized() {
            entry.remove();
        }
    }
}

impl OpaqueVerification {
    pub(crate) fn new(
        machine_tokens: Option<IntrospectionRoute>,
        others: Option<IntrospectionRoute>,
        cache_ttl_ms: i64,
    ) -> Self {
        Self {
            machine_tokens,
            others,
            cache_ttl_ms,
            in_flight: Mutex::default(),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.machine_tokens.is_some() || self.others.is_some()
    }

    /// The state of the circuit breakers: the worst of the endpoints', `None` without one.
    pub(crate) fn breaker_state(&self) -> Option<BreakerState> {
        let severity = |state: &BreakerState| match state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        [&self.machine_tokens, &self.others]
            .into_iter()
            .flatten()
            .map(|route| route.breaker.state())
            .max_by_key(severity)
    }

    /// The endpoint for a token that is not JWT-shaped.
    pub(crate) fn route(
        &self,
        classified: Result<TokenKind, TypeMismatch>,
    ) -> Result<&IntrospectionRoute, TypeMismatch> {
        match classified {
            Ok(TokenKind::OpaqueMachineToken) => self
                .machine_tokens
                .as_ref()
                .or(self.others.as_ref())
                .ok_or(TypeMismatch::OpaqueNotAccepted),
            Ok(TokenKind::Jwt) => Err(TypeMismatch::JwtNotAccepted),
            Ok(TokenKind::ClerkKey(mismatch)) => Err(mismatch),
            Err(mismatch) => self.others.as_ref().ok_or(mismatch),
        }
    }

    /// A share in the call for `digest`, joined or started.
    fn join(&self, digest: TokenDigest) -> Flight<'_> {
        let mut in_flight = self.lock_in_flight();
        let call = in_flight.entry(digest).or_insert_with(|| SharedCall {
            outcome: Arc::default(),
            waiters: 0,
        });
        call.waiters += 1;
        Flight {
            opaque: self,
            digest,
            outcome: Arc::clone(&call.outcome),
        }
    }

    fn lock_in_flight(&self) -> MutexGuard<'_, HashMap<TokenDigest, SharedCall>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The introspection endpoints configured: Clerk's, then the builder's introspector.
    pub(crate) fn routes(&self) -> impl Iterator<Item = &IntrospectionRoute> {
        self.machine_tokens.iter().chain(self.others.iter())
    }

    /// How many calls are in flight.
    #[cfg(test)]
    pub(crate) fn in_flight_len(&self) -> usize {
        self.lock_in_flight().len()
    }
}

impl MachineVerifier {
    /// Asks `route` about `token`, sharing the call with concurrent requests for the same token.
    pub(super) async fn verify_opaque(&self, route: &IntrospectionRoute, token: &str) -> Outcome {
        let flight = self.inner.opaque.join(digest(token.as_bytes()));
        flight
            .outcome
            .get_or_init(|| self.introspect(route, token))
            .await
            .clone()
    }

    async fn introspect(&self, route: &IntrospectionRoute, token: &str) -> Outcome {
        let inner = &*self.inner;
        let call = match route.breaker.permit() {
            Permit::Granted(call) => call,
            Permit::Refused(retry_after) => {
                return Err(AuthError::Unavailable {
                    cause: Unavailable::CircuitOpen,
                    retry_after,
                });
            }
        };
        inner.counters.add(&inner.counters.introspections);
        let introspected = route.introspector.introspect(token).await;
        let outage = matches!(introspected, Err(AuthError::Unavailable { .. }));
        call.record(!outage);
        metrics::introspection(match &introspected {
            Ok(_) => IntrospectionResult::Active,
            Err(_) if outage => IntrospectionResult::Error,
            Err(AuthError::InvalidToken(InvalidToken::UnusableReply)) => IntrospectionResult::Error,
            Err(_) => IntrospectionResult::Inactive,
        });
        let now_ms = unix_millis(&*inner.clock);
        if let (Some(watch), Endpoint::Clerk { url, .. }) =
            (&route.not_found_watch, &route.endpoint)
        {
            watch.record(&introspected, now_ms, url);
        }
        let (machine, expires_at_ms) =
            opaque_machine(introspected?, inner.rules.leeway_ms, now_ms)?;
        self.check_receiver(&machine)?;
        if inner.opaque.cache_ttl_ms > 0 {
            let served_until_ms = now_ms
                .saturating_add(inner.opaque.cache_ttl_ms)
                .min(expires_at_ms.unwrap_or(i64::MAX));
            inner
                .cache
                .insert_opaque(token.as_bytes(), machine.clone(), served_until_ms);
        }
        Ok(machine)
    }
}

/// The identity an issuer's answer yields, and when it expires.
fn opaque_machine(
    token: IntrospectedToken,
    leeway_ms: i64,
    now_ms: i64,
) -> Result<(AuthenticatedMachine, Option<i64>), AuthError> {
    let expires_at_ms = token.expires_at.map(to_unix_millis);
    if expires_at_ms
        .is_some_and(|exp| i128::from(exp) <= i128::from(now_ms) - i128::from(leeway_ms))
    {
        return Err(AuthError::InvalidToken(InvalidToken::ExpiredAtIssuer));
    }
    // A JWT's `nbf` and `iat` are whole seconds: its issuer drops the fraction, so a JWT issued at
    // the same instant as an opaque token carries a time up to a second earlier. Comparing the
    // opaque token's times at that resolution gives both formats the same leeway.
    let whole_seconds = |ms: i64| i128::from(ms).div_euclid(1000) * 1000;
    // In i128: a clock may say anything an i64 holds, and none of this may overflow.
    let in_future = |at_ms: Option<i64>| {
        at_ms.is_some_and(|at| whole_seconds(at) > i128::from(now_ms) + i128::from(leeway_ms))
    };
    if in_future(token.not_before.map(to_unix_millis))
        || in_future(token.issued_at.map(to_unix_millis))
    {
        return Err(AuthError::NotYetActive);
    }
    let machine_id = MachineId::from_string(token.subject).ok_or(AuthError::TokenTypeMismatch(
        TypeMismatch::NotAMachineSubject,
    ))?;
    let machine = AuthenticatedMachine::builder(machine_id)
        .token_id(token.token_id)
        .token_format(TokenFormat::Opaque)
        .scopes(token.scopes)
        .claims(token.claims)
        .expires_at(token.expires_at)
        .issued_at(token.issued_at)
        .issuer(token.issuer)
        .build();
    Ok((machine, expires_at_ms))
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::clock::from_unix_millis;
    use crate::introspect::IntrospectionFuture;

    const NOW_MS: i64 = 1_767_225_600_000;

    /// An endpoint that never answers.
    #[derive(Debug)]
    struct Stalled;

    impl Introspector for Stalled {
        fn introspect<'a>(&'a self, _: &'a str) -> IntrospectionFuture<'a> {
            Box::pin(std::future::pending())
        }
    }

    /// An endpoint that accepts every token at once.
    #[derive(Debug)]
    struct AcceptsAll;

    impl Introspector for AcceptsAll {
        fn introspect<'a>(&'a self, _: &'a str) -> IntrospectionFuture<'a> {
            Box::pin(async { Ok(IntrospectedToken::new("mch_a")) })
        }
    }

    fn verifier(introspector: impl Introspector) -> MachineVerifier {
        MachineVerifier::builder()
            .introspector(introspector)
            .build()
            .unwrap()
    }

    fn in_flight(verifier: &MachineVerifier) -> usize {
        verifier.inner.opaque.in_flight_len()
    }

    /// Polls `future` once, asserts it is waiting, and drops it (a cancelled request).
    fn cancel_after_one_poll(future: impl Future) {
        let mut future = pin!(future);
        let mut context = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut context).is_pending());
    }

    #[test]
    fn cancelled_lookups_leave_nothing_in_flight() {
        let verifier = verifier(Stalled);
        for i in 0..10_000 {
            cancel_after_one_poll(verifier.verify(&format!("opaque-{i}")));
        }
        assert_eq!(in_flight(&verifier), 0);
    }

    #[test]
    fn a_shared_call_stays_until_its_last_waiter_leaves() {
        let verifier = verifier(Stalled);
        let mut context = Context::from_waker(Waker::noop());
        let mut first = Box::pin(verifier.verify("opaque-token"));
        let mut second = Box::pin(verifier.verify("opaque-token"));
        assert!(first.as_mut().poll(&mut context).is_pending());
        assert!(second.as_mut().poll(&mut context).is_pending());
        assert_eq!(in_flight(&verifier), 1);
        drop(first);
        assert_eq!(in_flight(&verifier), 1, "the second request still waits");
        assert!(second.as_mut().poll(&mut context).is_pending());
        drop(second);
        assert_eq!(in_flight(&verifier), 0);
    }

    #[test]
    fn a_finished_call_leaves_the_map() {
        let verifier = verifier(AcceptsAll);
        let mut context = Context::from_waker(Waker::noop());
        let mut request = pin!(verifier.verify("opaque-token"));
        let Poll::Ready(outcome) = request.as_mut().poll(&mut context) else {
            panic!("the introspector answers at once");
        };
        assert_eq!(outcome.unwrap().machine_id().as_str(), "mch_a");
        assert_eq!(in_flight(&verifier), 0);
    }

    #[test]
    fn maps_a_valid_answer() {
        let token = IntrospectedToken {
            token_id: "mt_1".into(),
            scopes: vec!["mch_b".into()],
            expires_at: Some(from_unix_millis(NOW_MS + 60_000)),
            issued_at: Some(from_unix_millis(NOW_MS - 1_000)),
            ..IntrospectedToken::new("mch_a")
        };
        let (machine, expires) = opaque_machine(token, 5_000, NOW_MS).unwrap();
        assert_eq!(machine.machine_id().as_str(), "mch_a");
        assert_eq!(machine.token_format(), TokenFormat::Opaque);
        assert_eq!(machine.token_id(), "mt_1");
        assert_eq!(
            machine.expires_at(),
            Some(from_unix_millis(1_767_225_660_000))
        );
        assert_eq!(expires, Some(NOW_MS + 60_000));
    }

    #[test]
    fn times_at_the_ends_of_i64_never_overflow() {
        for now_ms in [i64::MIN, -1, 0, i64::MAX] {
            for at in [i64::MIN, 0, i64::MAX] {
                let token = IntrospectedToken {
                    expires_at: Some(from_unix_millis(at)),
                    issued_at: Some(from_unix_millis(at)),
                    not_before: Some(from_unix_millis(at)),
                    ..IntrospectedToken::new("mch_a")
                };
                // Any answer but a panic.
                let _ = opaque_machine(token, 300_000, now_ms);
            }
        }
    }

    #[test]
    fn expired_or_non_machine_answers_are_rejected() {
        let expired = IntrospectedToken {
            expires_at: Some(from_unix_millis(NOW_MS - 5_000)),
            ..IntrospectedToken::new("mch_a")
        };
        assert_eq!(
            opaque_machine(expired, 5_000, NOW_MS).unwrap_err(),
            AuthError::InvalidToken(InvalidToken::ExpiredAtIssuer)
        );
        assert_eq!(
            opaque_machine(IntrospectedToken::new("user_1"), 5_000, NOW_MS).unwrap_err(),
            AuthError::TokenTypeMismatch(TypeMismatch::NotAMachineSubject)
        );
        let early = IntrospectedToken {
            not_before: Some(from_unix_millis(NOW_MS + 60_000)),
            ..IntrospectedToken::new("mch_a")
        };
        assert_eq!(
            opaque_machine(early, 5_000, NOW_MS).unwrap_err(),
            AuthError::NotYetActive
        );
    }

    #[test]
    fn issue_times_get_the_leeway_of_a_jwt_issued_at_the_same_instant() {
        // Issued at NOW + 5.4 s; a JWT issued then says `iat: NOW + 5 s`, within a 5 s leeway.
        let issued = |at_ms: i64| IntrospectedToken {
            issued_at: Some(from_unix_millis(at_ms)),
            ..IntrospectedToken::new("mch_a")
        };
        let not_before = |at_ms: i64| IntrospectedToken {
            not_before: Some(from_unix_millis(at_ms)),
            ..IntrospectedToken::new("mch_a")
        };
        assert!(opaque_machine(issued(NOW_MS + 5_400), 5_000, NOW_MS).is_ok());
        assert!(opaque_machine(not_before(NOW_MS + 5_999), 5_000, NOW_MS).is_ok());
        for early in [issued(NOW_MS + 6_000), not_before(NOW_MS + 6_000)] {
            assert_eq!(
                opaque_machine(early, 5_000, NOW_MS).unwrap_err(),
                AuthError::NotYetActive
            );
        }
        assert_eq!(
            opaque_machine(issued(NOW_MS + 1_000), 0, NOW_MS).unwrap_err(),
            AuthError::NotYetActive
        );
        assert!(opaque_machine(issued(NOW_MS + 999), 0, NOW_MS).is_ok());
    }
}
