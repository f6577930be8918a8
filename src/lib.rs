//! Machine-to-machine authentication for Tower servers (Axum, Hyper, Tonic).
//!
//! [`MachineAuthLayer`] reads `Authorization: Bearer <token>`, verifies the machine token, and
//! hands handlers an [`AuthenticatedMachine`]. It mirrors Clerk's
//! `authenticateRequest(req, { acceptsToken: 'm2m_token' })` and accepts only tokens meant for
//! this machine (see [`MachineVerifierBuilder::own_machine_id`]): M2M JWTs are verified locally,
//! with a PEM public key (no network at all) or a JWKS fetched and refreshed in the background
//! (no network on the request path); opaque `mt_…` tokens are verified by Clerk's
//! `/m2m_tokens/verify`, and any other opaque token by an RFC 7662 endpoint (see [`introspect`]).
//!
//! ```no_run
//! use axum::{Router, routing::post};
//! use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};
//!
//! async fn run_cron(machine: AuthenticatedMachine) -> &'static str {
//!     tracing::info!(machine = %machine.machine_id(), "cron run requested");
//!     "ok"
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_machine_auth::ConfigError> {
//! // CLERK_JWT_KEY, CLERK_SECRET_KEY, CLERK_MACHINE_SECRET_KEY, CLERK_API_URL, … as with
//! // Clerk's SDKs; this machine's own id: only tokens scoped to it are accepted.
//! let verifier = MachineVerifier::builder()
//!     .env()
//!     .own_machine_id("mch_reports_api")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/cron/run", post(run_cron))
//!     .layer(MachineAuthLayer::new(verifier));
//! # Ok(())
//! # }
//! ```
//!
//! Rejections follow one contract (status, `WWW-Authenticate`, and a JSON body with a stable
//! `reason`): see [`error`]. The verifier works without Tower too:
//! [`MachineVerifier::verify`] and [`MachineVerifier::authenticate`].
//!
//! Features:
//!
//! - `axum` (default): extractors for [`AuthenticatedMachine`] and `Option<AuthenticatedMachine>`
//!   (see [`mod@axum`]).
//! - `client`: machine A, the side that sends tokens: a token source that creates and reuses
//!   them, an outgoing Tower layer, and Clerk's machine-token API (see `client`).
//! - `tonic`: machine A's outgoing layer on a Tonic `Channel` (with `client`).
//! - `tower-http`: the layer's authentication for `tower_http::auth::AsyncRequireAuthorizationLayer`
//!   (see `MachineAuthLayer::authorizer`).
//! - `metrics`: request outcomes, verification time, JWKS, cache and introspection figures
//!   through the `metrics` facade (see [`metrics`] for the names and labels).
//! - `test-util`: `test_util::TestIssuer` mints JWTs and opaque tokens in your own tests, and
//!   gives a verifier that accepts them.
//!
//! Operating it: [`MachineVerifier::health`] and [`MachineVerifier::readiness`] (a `/readyz`
//! endpoint), [`MachineVerifier::ready`] (a start-up check), one `tracing` span per request
//! (target `tower_machine_auth::request`), and [`MachineAuthLayer::on_rejection`] for your own
//! rejection format.
//!
//! The local Clerk-compatible issuer, for development and tests, is the crate
//! `machine-auth-issuer`; the `machine-auth` command is the crate of that name.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, rust_2018_idioms)]

mod algorithm;
#[cfg(feature = "axum")]
pub mod axum;
mod bearer_token;
mod cache;
mod clerk_api;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
mod credential;
pub mod error;
mod expected_claims;
mod fetch;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod introspect;
mod jwt;
mod keys;
pub mod layer;
mod machine;
pub mod metrics;
mod stats;
#[cfg(feature = "test-util")]
pub mod test_util;
mod verifier;

pub use algorithm::{Algorithm, UnknownAlgorithm};
pub use bearer_token::BearerToken;
pub use error::{AuthError, ConfigError, Reason};
pub use layer::{AuthMode, MachineAuthLayer};
pub use machine::{
    AcceptedTokens, AuthenticatedMachine, AuthenticatedMachineBuilder, MAX_MACHINE_ID_LEN,
    MachineId, TokenFormat,
};
pub use machine_auth_core::clerk::CLERK_API_VERSION;
pub use stats::VerifierStats;
pub use verifier::{
    DEFAULT_CLERK_API_URL, KeySourceKind, MAX_CLOCK_SKEW, MachineVerifier, MachineVerifierBuilder,
    NotReady, Readiness, VerifierHealth,
};

/// The README's Rust examples, compiled and run as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
