//! A circuit breaker for the introspection endpoint.
//!
//! After [`FAILURES_TO_OPEN`] consecutive failures the circuit opens: calls fail at once, without
//! reaching the endpoint, for [`OPEN_FOR`]. Then one call is let through as a probe; its success
//! closes the circuit, its failure opens it again. A probe whose future is dropped before it
//! records an outcome (the client hung up, a timeout fired) frees its slot, so the next call
//! probes again. Time is Tokio's, so tests drive it with paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::{self, BreakerGauge};

/// Consecutive failures that open the circuit.
pub(crate) const FAILURES_TO_OPEN: u32 = 5;
/// How long an open circuit refuses calls before it lets a probe through.
pub(crate) const OPEN_FOR: Duration = Duration::from_secs(10);

/// The state of a circuit breaker, as [`MachineVerifier::health`](crate::MachineVerifier::health)
/// reports it (serialized in snake case: `"closed"`, `"open"`, `"half_open"`).
///
/// ```
/// use tower_machine_auth::MachineVerifier;
/// use tower_machine_auth::introspect::BreakerState;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_machine_auth::ConfigError> {
/// let verifier = MachineVerifier::builder()
///     .clerk_machine_secret_key("ak_machine_secret")
///     .build()?;
/// assert_eq!(verifier.health().breaker, Some(BreakerState::Closed));
/// assert_eq!(serde_json::to_value(BreakerState::HalfOpen).unwrap(), "half_open");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go ahead.
    Closed,
    /// Consecutive failures opened the circuit: calls fail at once, without reaching the
    /// endpoint, until the next call after the pause is let through as a probe.
    Open,
    /// One call is out as a probe: its success closes the circuit.
    HalfOpen,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    /// While open: when the next probe may go.
    open_until: Option<Instant>,
    /// The probe in flight, by number.
    probe: Option<u64>,
    /// Probes started so far: numbers each probe, so that a late outcome of an earlier probe
    /// cannot free a later one's slot.
    probes_started: u64,
}

/// Whether a call may go ahead.
#[derive(Debug)]
pub(crate) enum Permit<'a> {
    Granted(Call<'a>),
    /// The circuit is open; retry after this long.
    Refused(Duration),
}

/// A granted call. Its outcome is given to [`record`](Self::record); dropped without one (its
/// future was cancelled), it changes nothing, except that a probe frees its slot.
#[derive(Debug)]
#[must_use = "a call's outcome must be recorded"]
pub(crate) struct Call<'a> {
    breaker: &'a CircuitBreaker,
    /// `Some(number)` when this call is the probe of an open circuit.
    probe: Option<u64>,
}

impl Call<'_> {
    /// Records the call's outcome: `false` for a sign that the endpoint is down.
    pub(crate) fn record(mut self, succeeded: bool) {
        self.breaker.record(self.probe.take(), succeeded);
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.take() {
            self.breaker.release(probe);
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct CircuitBreaker {
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// Asks to make a call.
    pub(crate) fn permit(&self) -> Permit<'_> {
        let mut state = self.lock();
        let Some(open_until) = state.open_until else {
            return Permit::Granted(Call {
                breaker: self,
                probe: None,
            });
        };
        let now = Instant::now();
        if now < open_until {
            return Permit::Refused(open_until - now);
        }
        if state.probe.is_some() {
            return Permit::Refused(OPEN_FOR);
        }
        state.probes_started = state.probes_started.wrapping_add(1);
        let probe = state.probes_started;
        state.probe = Some(probe);
        metrics::breaker(BreakerGauge::HalfOpen);
        Permit::Granted(Call {
            breaker: self,
            probe: Some(probe),
        })
    }

    /// Whether calls go ahead now.
    pub(crate) fn state(&self) -> BreakerState {
        let state = self.lock();
        match state.open_until {
            None => BreakerState::Closed,
            Some(_) if state.probe.is_some() => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, probe: Option<u64>, succeeded: bool) {
        let mut state = self.lock();
        let was_probe = probe.is_some() && state.probe == probe;
        if was_probe {
            state.probe = None;
        }
        if succeeded {
            if state.open_until.is_some() {
                metrics::breaker(BreakerGauge::Closed);
            }
            state.consecutive_failures = 0;
            state.open_until = None;
            state.probe = None;
            return;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if was_probe || state.consecutive_failures >= FAILURES_TO_OPEN {
            if state.open_until.is_none() || was_probe {
                tracing::warn!(
                    failures = state.consecutive_failures,
                    paused_for = ?OPEN_FOR,
                    "token introspection keeps failing: pausing calls"
                );
            }
            state.open_until = Some(Instant::now() + OPEN_FOR);
            metrics::breaker(BreakerGauge::Open);
        }
    }

    /// Frees the slot of a probe that ended without an outcome: the next call probes again.
    fn release(&self, probe: u64) {
        let mut state = self.lock();
        if state.probe == Some(probe) {
            state.probe = None;
            metrics::breaker(BreakerGauge::Open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The granted call, or a panic naming the refusal.
    fn granted(breaker: &CircuitBreaker) -> Call<'_> {
        match breaker.permit() {
            Permit::Granted(call) => call,
            Permit::Refused(after) => panic!("refused for {after:?}"),
        }
    }

    /// How long a refused call must wait, or a panic if it was granted.
    fn refused(breaker: &CircuitBreaker) -> Duration {
        match breaker.permit() {
            Permit::Granted(call) => panic!("granted: {call:?}"),
            Permit::Refused(after) => after,
        }
    }

    fn open(breaker: &CircuitBreaker) {
        for _ in 0..FAILURES_TO_OPEN {
            granted(breaker).record(false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_five_failures_and_probes_after_ten_seconds() {
        let breaker = CircuitBreaker::default();
        open(&breaker);
        assert_eq!(refused(&breaker), OPEN_FOR);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(refused(&breaker), Duration::from_secs(6));

        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = granted(&breaker);
        assert_eq!(refused(&breaker), OPEN_FOR, "one probe at a time");
        probe.record(false);
        assert_eq!(refused(&breaker), OPEN_FOR, "a failed probe reopens");

        tokio::time::advance(OPEN_FOR).await;
        granted(&breaker).record(true);
        granted(&breaker).record(true);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let breaker = CircuitBreaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            granted(&breaker).record(false);
        }
        granted(&breaker).record(true);
        for _ in 0..FAILURES_TO_OPEN - 1 {
            granted(&breaker).record(false);
        }
        granted(&breaker).record(true);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_frees_its_slot() {
        let breaker = CircuitBreaker::default();
        open(&breaker);
        tokio::time::advance(OPEN_FOR).await;
        let probe = granted(&breaker);
        assert_eq!(refused(&breaker), OPEN_FOR);
        drop(probe);
        let probe = granted(&breaker);
        assert_eq!(refused(&breaker), OPEN_FOR, "still one probe at a time");
        probe.record(true);
        granted(&breaker).record(true);
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_calls_while_closed_change_nothing() {
        let breaker = CircuitBreaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            granted(&breaker).record(false);
        }
        for _ in 0..100 {
            drop(granted(&breaker));
        }
        granted(&breaker).record(false);
        assert_eq!(refused(&breaker), OPEN_FOR, "the fifth failure opens");
    }
}
