//! Axum extractors (feature `axum`, on by default).
//!
//! [`AuthenticatedMachine`] extracts the identity [`MachineAuthLayer`](crate::MachineAuthLayer)
//! inserted, and rejects with 401 `token-missing` when there is none (a route outside the layer,
//! or a request without a credential under [`AuthMode::Optional`](crate::AuthMode::Optional)).
//! `Option<AuthenticatedMachine>` never rejects.
//!
//! ```
//! use axum::{Json, Router, routing::get};
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
//! # fn main() -> Result<(), tower_machine_auth::ConfigError> {
//! # let verifier = MachineVerifier::from_pem(include_str!("../tests/data/rsa_public.pem"))?;
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/greeting", get(greeting))
//!     .layer(MachineAuthLayer::new(verifier).optional());
//! # Ok(())
//! # }
//! ```

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::error::AuthError;
use crate::layer::DEFAULT_REALM;
use crate::machine::AuthenticatedMachine;

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        self.to_response(DEFAULT_REALM)
    }
}

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

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthenticatedMachine {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AuthenticatedMachine>().cloned())
    }
}
