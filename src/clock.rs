//! The wall clock used for `exp`, `nbf` and `iat` checks: the one way this crate reads the time.
//!
//! Production code uses [`SystemClock`]. Tests use [`TokioClock`], which follows Tokio's clock, so
//! `tokio::time::pause()` and `advance()` (Tokio's `test-util` feature) move token lifetimes forward
//! without sleeping. Set a
//! clock with [`MachineVerifierBuilder::clock`](crate::MachineVerifierBuilder::clock) (and, for
//! machine A, `MachineTokenSourceBuilder::clock`).
//!
//! These are the types of `machine-auth-core`, shared with the local issuer
//! (`machine-auth-issuer`), so one clock can drive both.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tower_machine_auth::MachineVerifier;
//! use tower_machine_auth::clock::Clock;
//!
//! #[derive(Debug)]
//! struct Fixed(SystemTime);
//!
//! impl Clock for Fixed {
//!     fn now(&self) -> SystemTime {
//!         self.0
//!     }
//! }
//!
//! let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
//! let pem = include_str!("../tests/data/rsa_public.pem");
//! let verifier = MachineVerifier::builder().pem_key(pem).clock(Fixed(new_year)).build()?;
//! # Ok::<(), tower_machine_auth::ConfigError>(())
//! ```

pub use machine_auth_core::clock::{Clock, SystemClock, TokioClock};
pub(crate) use machine_auth_core::clock::{from_unix_millis, to_unix_millis, unix_millis};
