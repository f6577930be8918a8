//! What the layer does with a request: decided without waiting where it can be (a cache hit, a
//! JWT whose key is at hand, a rejection), after a key fetch or an introspection call otherwise.

use http::Request;

use super::AuthMode;
use super::layer::LayerSettings;
use crate::bearer_token::BearerToken;
use crate::credential;
use crate::error::{AuthError, MalformedRequest};
use crate::machine::AuthenticatedMachine;
use crate::verifier::{Attempt, Presented};

/// In a request's extensions when the layer let it through without an identity (no credential,
/// under [`AuthMode::Optional`]): the extractors tell this apart from a route with no layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassedWithoutIdentity;

/// Lets `request` through: the caller into its extensions, or the mark of a request admitted
/// without one.
pub(crate) fn admit<B>(request: &mut Request<B>, machine: Option<AuthenticatedMachine>) {
    let extensions = request.extensions_mut();
    match machine {
        Some(machine) => {
            extensions.insert(machine);
        }
        None => {
            extensions.insert(PassedWithoutIdentity);
        }
    }
}

/// What to do with a request, decided without waiting where possible.
pub(crate) enum Decision {
    /// On to the inner service, with the caller (or none, in optional mode).
    Pass(Option<AuthenticatedMachine>),
    Reject(AuthError),
    /// The token's key must be fetched first, or the token introspected: see
    /// [`LayerSettings::verify_waiting`].
    Wait(BearerToken),
}

impl LayerSettings {
    /// Reads the request's credential and verifies it if that needs no waiting.
    pub(crate) fn decide<B>(&self, request: &Request<B>) -> Decision {
        let bearer = match credential::bearer_credential(request.headers()) {
            Ok(bearer) => bearer,
            Err(AuthError::MissingCredential) if self.mode == AuthMode::Optional => {
                return Decision::Pass(None);
            }
            Err(error) => return Decision::Reject(error),
        };
        if credential::has_access_token_query(request.uri()) {
            return Decision::Reject(AuthError::MalformedRequest(
                MalformedRequest::SeveralMethods,
            ));
        }
        match self
            .verifier
            .try_verify_now(bearer.token, Presented::InHeader, self.accepted)
        {
            Attempt::Done(Ok(machine)) => match self.policy.check(&machine) {
                Ok(()) => Decision::Pass(Some(machine.with_token(bearer.to_bearer_token()))),
                Err(error) => Decision::Reject(error),
            },
            Attempt::Done(Err(error)) => Decision::Reject(error),
            Attempt::Pending => Decision::Wait(bearer.to_bearer_token()),
        }
    }

    /// Verifies a token [`decide`](Self::decide) left waiting, then checks the route's policy.
    pub(crate) async fn verify_waiting(
        &self,
        token: BearerToken,
    ) -> Result<AuthenticatedMachine, AuthError> {
        let machine = self
            .verifier
            .verify_pending(token.as_str().as_bytes(), self.accepted)
            .await?;
        self.policy.check(&machine)?;
        Ok(machine.with_token(token))
    }
}
