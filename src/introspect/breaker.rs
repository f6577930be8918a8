//! A circuit breaker for the introspection endpoint.
//!
//! After [`FAILURES_TO_OPEN`] consecutive failures the circuit opens: calls fail at once, without
//! reaching the endpoint, for [`OPEN_FOR`]. Then one call is let through as a probe; its success
//! closes the circuit, its failure opens it again. Time is Tokio's, so tests drive it with paused
//! time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Consecutive failures that open the circuit.
pub(crate) const FAILURES_TO_OPEN: u32 = 5;
/// How long an open circuit refuses calls before it lets a probe through.
pub(crate) const OPEN_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    /// While open: when the next probe may go.
    open_until: Option<Instant>,
    probe_in_flight: bool,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    Granted,
    /// The circuit is open; retry after this long.
    Refused(Duration),
}

#[derive(Debug, Default)]
pub(crate) struct CircuitBreaker {
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// Asks to make a call; every granted call must be followed by [`record`](Self::record).
    pub(crate) fn permit(&self) -> Permit {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(open_until) = state.open_until else {
            return Permit::Granted;
        };
        let now = Instant::now();
        if now < open_until {
            return Permit::Refused(open_until - now);
        }
        if state.probe_in_flight {
            return Permit::Refused(OPEN_FOR);
        }
        state.probe_in_flight = true;
        Permit::Granted
    }

    /// Records the outcome of a granted call.
    pub(crate) fn record(&self, succeeded: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let was_probe = std::mem::take(&mut state.probe_in_flight);
        if succeeded {
            *state = State::default();
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_five_failures_and_probes_after_ten_seconds() {
        let breaker = CircuitBreaker::default();
        for _ in 0..FAILURES_TO_OPEN {
            assert_eq!(breaker.permit(), Permit::Granted);
            breaker.record(false);
        }
        assert_eq!(breaker.permit(), Permit::Refused(OPEN_FOR));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(breaker.permit(), Permit::Refused(Duration::from_secs(6)));

        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(breaker.permit(), Permit::Granted, "the probe");
        assert!(
            matches!(breaker.permit(), Permit::Refused(_)),
            "one probe at a time"
        );
        breaker.record(false);
        assert_eq!(
            breaker.permit(),
            Permit::Refused(OPEN_FOR),
            "a failed probe reopens"
        );

        tokio::time::advance(OPEN_FOR).await;
        assert_eq!(breaker.permit(), Permit::Granted);
        breaker.record(true);
        assert_eq!(breaker.permit(), Permit::Granted, "a good probe closes");
        breaker.record(true);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let breaker = CircuitBreaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            breaker.permit();
            breaker.record(false);
        }
        breaker.permit();
        breaker.record(true);
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert_eq!(breaker.permit(), Permit::Granted);
            breaker.record(false);
        }
        assert_eq!(breaker.permit(), Permit::Granted);
        breaker.record(true);
    }
}
