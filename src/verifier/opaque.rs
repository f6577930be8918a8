//! Opaque tokens: routing to an introspector, one call per token however many requests carry it,
//! the circuit breaker, the opt-in result cache, and the mapping to an `AuthenticatedMachine`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::MachineVerifier;
use crate::cache::TokenDigest;
use crate::clock::unix_millis;
use crate::credential::TokenKind;
use crate::error::{AuthError, InvalidToken, TypeMismatch, Unavailable};
use crate::introspect::{CircuitBreaker, IntrospectedToken, Introspector, Permit};
use crate::machine::{AuthenticatedMachine, MachineId, TokenFormat};

type Outcome = Result<AuthenticatedMachine, AuthError>;

/// One introspection endpoint and its circuit breaker.
pub(crate) struct IntrospectionRoute {
    introspector: Arc<dyn Introspector>,
    breaker: CircuitBreaker,
}

impl IntrospectionRoute {
    pub(crate) fn new(introspector: Arc<dyn Introspector>) -> Self {
        Self {
            introspector,
            breaker: CircuitBreaker::default(),
        }
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
    in_flight: Mutex<HashMap<TokenDigest, Arc<OnceCell<Outcome>>>>,
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
            Err(mismatch) => self.others.as_ref().ok_or(mismatch),
        }
    }

    /// The shared call for `digest`, joined or started.
    fn flight(&self, digest: TokenDigest) -> Arc<OnceCell<Outcome>> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(in_flight.entry(digest).or_default())
    }

    fn land(&self, digest: &TokenDigest, flight: &Arc<OnceCell<Outcome>>) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight
            .get(digest)
            .is_some_and(|current| Arc::ptr_eq(current, flight))
        {
            in_flight.remove(digest);
        }
    }
}

impl MachineVerifier {
    /// Asks `route` about `token`, sharing the call with concurrent requests for the same token.
    pub(super) async fn verify_opaque(
        &self,
        route: &IntrospectionRoute,
        token: &str,
        digest: TokenDigest,
    ) -> Outcome {
        let opaque = &self.inner.opaque;
        let flight = opaque.flight(digest);
        let outcome = flight
            .get_or_init(|| self.introspect(route, token, digest))
            .await
            .clone();
        opaque.land(&digest, &flight);
        outcome
    }

    async fn introspect(
        &self,
        route: &IntrospectionRoute,
        token: &str,
        digest: TokenDigest,
    ) -> Outcome {
        let inner = &*self.inner;
        if let Permit::Refused(retry_after) = route.breaker.permit() {
            return Err(AuthError::Unavailable {
                cause: Unavailable::CircuitOpen,
                retry_after,
            });
        }
        inner.counters.add(&inner.counters.introspections);
        let introspected = route.introspector.introspect(token).await;
        route
            .breaker
            .record(!matches!(introspected, Err(AuthError::Unavailable { .. })));
        let now_ms = unix_millis(&*inner.clock);
        let (machine, expires_at_ms) =
            opaque_machine(introspected?, inner.rules.leeway_ms, now_ms)?;
        self.check_receiver(&machine)?;
        if inner.opaque.cache_ttl_ms > 0 {
            let served_until_ms = now_ms
                .saturating_add(inner.opaque.cache_ttl_ms)
                .min(expires_at_ms.unwrap_or(i64::MAX));
            inner
                .cache
                .insert_opaque(digest, machine.clone(), served_until_ms);
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
    if token
        .expires_at_ms
        .is_some_and(|exp| exp <= now_ms - leeway_ms)
    {
        return Err(AuthError::InvalidToken(InvalidToken::ExpiredAtIssuer));
    }
    let in_future = |at_ms: Option<i64>| at_ms.is_some_and(|at| at > now_ms + leeway_ms);
    if in_future(token.not_before_ms) || in_future(token.issued_at_ms) {
        return Err(AuthError::NotYetActive);
    }
    let machine_id = MachineId::from_string(token.subject).ok_or(AuthError::TokenTypeMismatch(
        TypeMismatch::NotAMachineSubject,
    ))?;
    let seconds = |ms: i64| u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
    let machine = AuthenticatedMachine::builder(machine_id)
        .token_id(token.token_id)
        .token_format(TokenFormat::Opaque)
        .scopes(token.scopes)
        .claims(token.claims)
        .expires_at(token.expires_at_ms.map(seconds))
        .issued_at(token.issued_at_ms.map(seconds))
        .issuer(token.issuer)
        .build();
    Ok((machine, token.expires_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_767_225_600_000;

    #[test]
    fn maps_a_valid_answer() {
        let token = IntrospectedToken {
            token_id: "mt_1".into(),
            scopes: vec!["mch_b".into()],
            expires_at_ms: Some(NOW_MS + 60_000),
            issued_at_ms: Some(NOW_MS - 1_000),
            ..IntrospectedToken::new("mch_a")
        };
        let (machine, expires) = opaque_machine(token, 5_000, NOW_MS).unwrap();
        assert_eq!(machine.machine_id().as_str(), "mch_a");
        assert_eq!(machine.token_format(), TokenFormat::Opaque);
        assert_eq!(machine.token_id(), "mt_1");
        assert_eq!(machine.expires_at(), Some(1_767_225_660));
        assert_eq!(expires, Some(NOW_MS + 60_000));
    }

    #[test]
    fn expired_or_non_machine_answers_are_rejected() {
        let expired = IntrospectedToken {
            expires_at_ms: Some(NOW_MS - 5_000),
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
            not_before_ms: Some(NOW_MS + 60_000),
            ..IntrospectedToken::new("mch_a")
        };
        assert_eq!(
            opaque_machine(early, 5_000, NOW_MS).unwrap_err(),
            AuthError::NotYetActive
        );
    }
}
