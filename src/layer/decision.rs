//! What the layer does with a request: decided without waiting where it can be (a cache hit, a
//! JWT whose key is at hand, a rejection), after a key fetch or an introspection call otherwise.

use http::Request;
use http::header::AUTHORIZATION;
use tracing::Span;

use super::AuthMode;
use super::layer::LayerSettings;
use super::observe;
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
/// without one. Returns the caller without its token, for the response's extensions.
pub(crate) fn admit<B>(
    request: &mut Request<B>,
    machine: Option<AuthenticatedMachine>,
) -> Option<AuthenticatedMachine> {
    let extensions = request.extensions_mut();
    match machine {
        Some(machine) => {
            let caller = machine.without_token();
            extensions.insert(machine);
            Some(caller)
        }
        None => {
            extensions.insert(PassedWithoutIdentity);
            None
        }
    }
}

/// Keeps the credential out of `Debug` output of the headers further down the stack.
pub(crate) fn hide_credential<B>(request: &mut Request<B>) {
    if let Some(authorization) = request.headers_mut().get_mut(AUTHORIZATION) {
        authorization.set_sensitive(true);
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
    /// Reads the request's credential and verifies it if that needs no waiting. A decided
    /// request is reported in `span` (see [`observe`]).
    pub(crate) fn decide<B>(&self, request: &Request<B>, span: &Span) -> Decision {
        let bearer = match credential::bearer_credential(request.headers()) {
            Ok(bearer) => bearer,
            Err(AuthError::MissingCredential) if self.mode == AuthMode::Optional => {
                observe::passed(span, None);
                return Decision::Pass(None);
            }
            Err(error) => {
                observe::rejected(span, &error, None, None);
                return Decision::Reject(error);
            }
        };
        if credential::has_access_token_query(request.uri()) {
            let error = AuthError::MalformedRequest(MalformedRequest::SeveralMethods);
            observe::rejected(span, &error, Some(bearer.token), None);
            return Decision::Reject(error);
        }
        let verified =
            match self
                .verifier
                .try_verify_now(bearer.token, Presented::InHeader, self.accepted)
            {
                Attempt::Done(verified) => verified,
                Attempt::Pending => return Decision::Wait(bearer.to_bearer_token()),
            };
        match self.admitted(verified, bearer.token, span) {
            Ok(machine) => Decision::Pass(Some(machine.with_token(bearer.to_bearer_token()))),
            Err(error) => Decision::Reject(error),
        }
    }

    /// Verifies a token [`decide`](Self::decide) left waiting, then checks the route's policy.
    pub(crate) async fn verify_waiting(
        &self,
        token: BearerToken,
        span: &Span,
    ) -> Result<AuthenticatedMachine, AuthError> {
        let bytes = token.as_str().as_bytes();
        let verified = self.verifier.verify_pending(bytes, self.accepted).await;
        let machine = self.admitted(verified, bytes, span)?;
        Ok(machine.with_token(token))
    }

    /// The route's policy applied to a verification's result, reported in `span`.
    fn admitted(
        &self,
        verified: Result<AuthenticatedMachine, AuthError>,
        token: &[u8],
        span: &Span,
    ) -> Result<AuthenticatedMachine, AuthError> {
        let machine = verified.inspect_err(|error| {
            observe::rejected(span, error, Some(token), None);
        })?;
        if let Err(error) = self.policy.check(&machine) {
            observe::rejected(span, &error, Some(token), Some(&machine));
            return Err(error);
        }
        observe::passed(span, Some(&machine));
        Ok(machine)
    }
}
