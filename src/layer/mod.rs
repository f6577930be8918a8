//! [`MachineAuthLayer`]: machine authentication as a Tower layer.
//!
//! ```
//! use axum::{Extension, Router, routing::post};
//! use tower::ServiceExt;
//! use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pem = include_str!("../../tests/data/rsa_public.pem");
//! let verifier = MachineVerifier::from_pem(pem)?;
//! let app = Router::new()
//!     .route("/cron/run", post(|Extension(machine): Extension<AuthenticatedMachine>| async move {
//!         format!("hello {}", machine.machine_id())
//!     }))
//!     .layer(MachineAuthLayer::new(verifier).allow_machines(["mch_cron_service"])?);
//!
//! let request = http::Request::post("/cron/run").body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 401);
//! assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="api""#);
//! # Ok(())
//! # }
//! ```
//!
//! The response body type must implement `From<String>` (Axum's `Body`, `http_body_util::Full`,
//! `String` do): rejections carry a small JSON body.

mod future;
#[allow(clippy::module_inception)]
mod layer;
mod policy;
mod service;

pub use future::ResponseFuture;
pub use layer::{DEFAULT_REALM, MachineAuthLayer};
pub use service::MachineAuth;

/// Whether requests without a credential are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every request needs a valid machine token (the default).
    #[default]
    Required,
    /// Requests with no `Authorization` header pass with no identity; a present but invalid token
    /// is still rejected.
    Optional,
}
