//! The wall clock: the one way the verifier, the machine client and the issuer read the time.
//!
//! `tower-machine-auth` re-exports this module as `tower_machine_auth::clock`. Production code
//! uses [`SystemClock`]. Tests use [`TokioClock`], which follows Tokio's clock, so
//! `tokio::time::pause()` and `advance()` move token lifetimes forward without sleeping.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time.
///
/// A verifier reads it (`MachineVerifierBuilder::clock` in `tower-machine-auth`) for the `exp`,
/// `nbf` and `iat` checks and for the age of verified-token cache entries; the issuer for the
/// times it writes into tokens. JWKS refresh timing and staleness do not use it: they follow
/// Tokio's clock.
///
/// ```
/// use std::time::SystemTime;
/// use machine_auth_core::clock::{Clock, SystemClock};
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
    /// use machine_auth_core::clock::Clock;
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
    /// ```
    fn now(&self) -> SystemTime;
}

/// The operating system's clock ([`SystemTime::now`]): the default everywhere a clock can be set.
///
/// ```
/// use std::time::SystemTime;
/// use machine_auth_core::clock::{Clock, SystemClock};
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
/// use machine_auth_core::clock::{Clock, TokioClock};
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
    /// use machine_auth_core::clock::{Clock, TokioClock};
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

/// Milliseconds since the Unix epoch (negative before it), saturating at `i64`'s range.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use machine_auth_core::clock::{Clock, unix_millis};
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
/// let later = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
/// assert_eq!(unix_millis(&Fixed(later)), 1_500);
/// let earlier = SystemTime::UNIX_EPOCH - Duration::from_millis(2);
/// assert_eq!(unix_millis(&Fixed(earlier)), -2);
/// ```
pub fn unix_millis(clock: &dyn Clock) -> i64 {
    to_unix_millis(clock.now())
}

/// `time` in milliseconds since the Unix epoch (negative before it), saturating at `i64`'s range.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use machine_auth_core::clock::to_unix_millis;
///
/// assert_eq!(to_unix_millis(SystemTime::UNIX_EPOCH + Duration::from_micros(2_500)), 2);
/// assert_eq!(to_unix_millis(SystemTime::UNIX_EPOCH - Duration::from_millis(3)), -3);
/// ```
pub fn to_unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The time `millis` milliseconds after the Unix epoch (before it when negative): the inverse of
/// [`to_unix_millis`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use machine_auth_core::clock::{from_unix_millis, to_unix_millis};
///
/// let time = from_unix_millis(1_767_225_600_250);
/// assert_eq!(time, SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_225_600_250));
/// for millis in [i64::MIN, -1, 0, i64::MAX] {
///     assert_eq!(to_unix_millis(from_unix_millis(millis)), millis);
/// }
/// ```
pub fn from_unix_millis(millis: i64) -> SystemTime {
    let distance = Duration::from_millis(millis.unsigned_abs());
    let time = if millis >= 0 {
        UNIX_EPOCH.checked_add(distance)
    } else {
        UNIX_EPOCH.checked_sub(distance)
    };
    // Every i64 of milliseconds fits in the system time of the platforms Tokio runs on.
    time.unwrap_or(UNIX_EPOCH)
}
