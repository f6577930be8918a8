//! The integration tests of `machine-auth-issuer`, one binary: the issuer's HTTP API, its store,
//! its logs and its JWT templates, with issued tokens checked by the real verifier.

/// The middleware's test helpers (keys, tokens, loopback servers), shared rather than copied.
#[path = "../../../../tests/it/common.rs"]
mod common;

mod issuer;
mod issuer_logs;
mod template_limits;
mod templates;
