//! [`MachineAuthLayer`]: machine authentication as a Tower layer.
//!
//! ```
//! use axum::{Extension, Router, routing::post};
//! use tower::ServiceExt;
//! use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pem = include_str!("../../tests/data/rsa_public.pem");
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
//! Any response body whose data is `Bytes` works (Axum's, Tonic's, `http_body_util::Full<Bytes>`,
//! `BoxBody<Bytes, E>`, `String`): the layer's responses have a [`MachineAuthBody`], the inner
//! service's body or the layer's rejection. A gRPC request is rejected the way gRPC reports
//! errors (see [`MachineAuthLayer::grpc_rejections`]).

#[cfg(feature = "tower-http")]
mod authorizer;
mod body;
mod decision;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod observe;
mod policy;
mod rejection;
mod service;

#[cfg(feature = "tower-http")]
pub use authorizer::{AuthorizeFuture, MachineAuthorizer};
pub use body::MachineAuthBody;
#[cfg(feature = "axum")]
pub(crate) use decision::PassedWithoutIdentity;
pub use future::ResponseFuture;
pub use layer::{DEFAULT_REALM, MachineAuthLayer};
pub use service::MachineAuth;

/// Whether requests without a credential are rejected; set with [`MachineAuthLayer::mode`] or
/// [`MachineAuthLayer::optional`].
///
/// "Without a credential" means no `Authorization` header, or one whose scheme is not `Bearer`.
///
/// ```
/// use tower::{Layer, ServiceExt};
/// use tower_machine_auth::{AuthMode, MachineAuthLayer, MachineVerifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
/// let inner = tower::service_fn(|_: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
/// });
/// assert_eq!(AuthMode::default(), AuthMode::Required);
/// let service = MachineAuthLayer::new(verifier).mode(AuthMode::Optional).layer(inner);
/// let basic = http::Request::builder()
///     .header("authorization", "Basic dXNlcjpwYXNz")
///     .body(String::new())?;
/// assert_eq!(service.oneshot(basic).await?.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every request needs a valid machine token (the default); a request without a credential
    /// gets 401 `token-missing`.
    #[default]
    Required,
    /// Requests without a credential pass with no identity, whatever the route's machine and scope
    /// rules; a malformed `Bearer` credential or an invalid token is still rejected.
    Optional,
}
