//! The wall clock used for `exp`, `nbf` and `iat` checks.
//!
//! Production code uses [`SystemClock`]. Tests use [`TokioClock`], which follows Tokio's clock, so
//! `tokio::time::pause()` and `advance()` move token lifetimes forward without sleeping.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time.
///
/// A verifier reads it (see [`MachineVerifierBuilder::clock`](crate::MachineVerifierBuilder::clock))
/// for the `exp`, `nbf` and `iat` checks and for the age of verified-token cache entries. JWKS
/// refresh timing and staleness do not use it: they follow Tokio's clock.
///
/// ```
/// use std::time::SystemTime;
/// use tower_machine_auth::clock::{Clock, SystemClock};
///
/// let now = SystemClock.now();
/// assert!(now > SystemTime::UNIX_EPOCH);
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    ///
    /// A fixed clock, for tests that check tokens at one instant:
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_machine_auth::MachineVerifier;
    /// use tower_machine_auth::clock::Clock;
    ///
    /// #[derive(Debug)]
    /// struct Fixed(SystemTime);
    ///
    /// impl Clock for Fixed {
    ///     fn now(&self) -> SystemTime {
    ///         self.0
    ///     }
    /// }
    ///
    /// let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    /// assert_eq!(Fixed(new_year).now(), new_year);
    /// # let pem = include_str!("../tests/data/rsa_public.pem");
    /// let verifier = MachineVerifier::builder().pem_key(pem).clock(Fixed(new_year)).build()?;
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    fn now(&self) -> SystemTime;
}

/// The operating system's clock ([`SystemTime::now`]): the default of
/// [`MachineVerifierBuilder::clock`](crate::MachineVerifierBuilder::clock).
///
/// ```
/// use std::time::SystemTime;
/// use tower_machine_auth::clock::{Clock, SystemClock};
///
/// let before = SystemTime::now();
/// assert!(SystemClock.now() >= before);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that advances with Tokio's clock.
///
/// It reads the system time once, when created, and from then on adds the time elapsed on
/// [`tokio::time::Instant`]. Under `tokio::time::pause()` (which needs Tokio's `test-util`
/// feature) it stands still until the test advances time, which makes expiry tests exact and
/// instant. Copies share the same starting point.
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::clock::{Clock, TokioClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let clock = TokioClock::new();
/// let before = clock.now();
/// tokio::time::advance(Duration::from_secs(3600)).await;
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(3600));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall_at_start: SystemTime,
    instant_at_start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that starts at the current system time. Same as [`TokioClock::default`].
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_machine_auth::clock::{Clock, TokioClock};
    ///
    /// let before = SystemTime::now();
    /// let clock = TokioClock::new();
    /// assert!(clock.now() >= before);
    /// assert!(clock.now() < before + Duration::from_secs(60));
    /// ```
    pub fn new() -> Self {
        Self {
            wall_at_start: SystemTime::now(),
            instant_at_start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.wall_at_start + self.instant_at_start.elapsed()
    }
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn unix_millis(clock: &dyn Clock) -> i64 {
    match clock.now().duration_since(UNIX_EPOCH) {
        Ok(since) => duration_millis(since),
        Err(before) => -duration_millis(before.duration()),
    }
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
