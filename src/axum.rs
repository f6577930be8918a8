//! Axum extractors (feature `axum`, on by default).
//!
//! [`AuthenticatedMachine`] extracts the identity [`MachineAuthLayer`](crate::MachineAuthLayer)
//! inserted, and rejects with 401 `token-missing` when there is none (a route outside the layer,
//! or a request without a credential under [`AuthMode::Optional`](crate::AuthMode::Optional)).
//! `Option<AuthenticatedMachine>` never rejects. Both work with any router state.
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
use http::request::Parts;

use crate::error::AuthError;
use crate::layer::DEFAULT_REALM;
use crate::machine::AuthenticatedMachine;

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
/// [`AuthError::MissingCredential`] when there is none. See the [module docs](self).
impl<S: Send + Sync> FromRequestParts<S> for AuthenticatedMachine {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthenticatedMachine>()
            .cloned()
            .ok_or(AuthError::MissingCredential)
    }
}

/// A clone of the identity in the request extensions, or `None`; never rejects. See the
/// [module docs](self).
impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthenticatedMachine {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AuthenticatedMachine>().cloned())
    }
}
