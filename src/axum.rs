//! Axum extractors (feature `axum`, on by default).
//!
//! [`AuthenticatedMachine`] extracts the identity [`MachineAuthLayer`](crate::MachineAuthLayer)
//! inserted, and rejects with 401 `token-missing` when the layer let the request through without
//! one (no credential, under [`AuthMode::Optional`](crate::AuthMode::Optional)).
//! `Option<AuthenticatedMachine>` gives `None` then. Both work with any router state.
//!
//! A route with no layer in front of it is a server bug, not a caller's: both extractors then
//! answer 500 ([`MachineRejection::LayerMissing`]) and log an error naming the route, rather
//! than refusing every valid token with a 401.
//!
//! [`AuthError`] also implements `IntoResponse`, so handlers can return `Result<_, AuthError>`.
//! Responses built this way, the extractor's rejection included, use the realm
//! [`DEFAULT_REALM`] (`"api"`), not the one set with
//! [`MachineAuthLayer::realm`](crate::MachineAuthLayer::realm).
//!
//! ```
//! use axum::{Json, Router, body::Body, routing::get};
//! use tower::ServiceExt;
//! use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};
//!
//! async fn whoami(machine: AuthenticatedMachine) -> Json<AuthenticatedMachine> {
//!     Json(machine)
//! }
//!
//! async fn greeting(machine: Option<AuthenticatedMachine>) -> String {
//!     match machine {
//!         Some(machine) => format!("hello {}", machine.machine_id()),
//!         None => "hello stranger".to_owned(),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = MachineVerifier::from_pem(include_str!("../tests/data/rsa_public.pem"))?;
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/greeting", get(greeting))
//!     .layer(MachineAuthLayer::new(verifier).optional());
//!
//! // Without a credential, the optional layer lets both requests through with no identity.
//! let greeting = app.clone().oneshot(http::Request::get("/greeting").body(Body::empty())?).await?;
//! assert_eq!(greeting.status(), 200);
//! let whoami = app.oneshot(http::Request::get("/whoami").body(Body::empty())?).await?;
//! assert_eq!(whoami.status(), 401); // the extractor's rejection: token-missing
//! # Ok(())
//! # }
//! ```

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use crate::error::AuthError;
use crate::layer::{DEFAULT_REALM, PassedWithoutIdentity};
use crate::machine::AuthenticatedMachine;

/// Why the [`AuthenticatedMachine`] extractors refused a request.
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use tower::ServiceExt;
/// use tower_machine_auth::AuthenticatedMachine;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The layer was forgotten: a server error, never a 401 for a valid token.
/// let app: Router = Router::new().route("/whoami", get(|_: AuthenticatedMachine| async { "" }));
/// let response = app.oneshot(http::Request::get("/whoami").body(Body::empty())?).await?;
/// assert_eq!(response.status(), 500);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MachineRejection {
    /// The layer let the request through without an identity (no credential, in optional mode):
    /// 401, as [`AuthError::MissingCredential`] answers.
    Unauthenticated(AuthError),
    /// No [`MachineAuthLayer`](crate::MachineAuthLayer) in front of the route: 500, and an error
    /// is logged (target `tower_machine_auth`) with the method and path.
    LayerMissing,
}

impl IntoResponse for MachineRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated(error) => error.into_response(),
            Self::LayerMissing => {
                let body = r#"{"error":"server_error","message":"the server is misconfigured"}"#;
                let mut response = Response::new(body.into());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
        }
    }
}

/// The identity in `parts`, `None` when the layer admitted the request without one, or the
/// rejection of a route the layer does not guard.
fn identity(parts: &Parts) -> Result<Option<AuthenticatedMachine>, MachineRejection> {
    if let Some(machine) = parts.extensions.get::<AuthenticatedMachine>() {
        return Ok(Some(machine.clone()));
    }
    if parts.extensions.get::<PassedWithoutIdentity>().is_some() {
        return Ok(None);
    }
    tracing::error!(
        method = %parts.method,
        path = parts.uri.path(),
        "an AuthenticatedMachine extractor ran on a route without MachineAuthLayer in front of it: \
         add `.layer(MachineAuthLayer::new(verifier))` (or `.route_layer`) to the router that \
         holds this route"
    );
    Err(MachineRejection::LayerMissing)
}

/// The rejection response of [`AuthError::to_response`], with the realm [`DEFAULT_REALM`].
///
/// ```
/// use axum::response::IntoResponse;
/// use tower_machine_auth::AuthError;
///
/// let response = AuthError::Expired.into_response();
/// assert_eq!(response.status(), 401);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer realm="api", error="invalid_token""#
/// );
/// ```
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        self.to_response(DEFAULT_REALM)
    }
}

/// A clone of the identity in the request extensions; rejects with
/// [`MachineRejection::Unauthenticated`] when the layer admitted the request without one, and
/// [`MachineRejection::LayerMissing`] when there is no layer. See the [module docs](self).
impl<S: Send + Sync> FromRequestParts<S> for AuthenticatedMachine {
    type Rejection = MachineRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        identity(parts)?.ok_or(MachineRejection::Unauthenticated(
            AuthError::MissingCredential,
        ))
    }
}

/// A clone of the identity in the request extensions, or `None` when the layer admitted the
/// request without one; [`MachineRejection::LayerMissing`] when there is no layer. See the
/// [module docs](self).
impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthenticatedMachine {
    type Rejection = MachineRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        identity(parts)
    }
}
