//! The readiness probe of an introspection endpoint: what it answers about a made-up token.

use crate::error::{AuthError, InvalidToken, Unavailable};
use crate::fetch::FetchError;
use crate::introspect::clerk::ClerkAnswer;
use crate::introspect::is_outage;

use super::opaque::IntrospectionRoute;

/// What an endpoint answered a readiness probe about a made-up token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// It took the verifier's credentials and answered about the token ("no such token").
    Accepted,
    /// It refused the verifier's credentials, with this status when known (401, 403).
    Refused(Option<u16>),
    /// It answered 404 without its "no such token": its URL is wrong.
    NotFound,
    /// It answered something its protocol does not say, described.
    Unusable(String),
    /// It could not be reached, or failed (worth asking again), described.
    Failed(String),
}

impl IntrospectionRoute {
    /// Asks the endpoint about a made-up opaque token, outside the circuit breaker, the
    /// single flight and the not-found watch: a readiness probe.
    pub(crate) async fn probe(&self) -> Probe {
        let mut random = [0u8; 16];
        // Made up either way: the zeros of a failed fill name no token either.
        let _ = aws_lc_rs::rand::fill(&mut random);
        let token: String = std::iter::once("mt_".to_owned())
            .chain(random.iter().map(|b| format!("{b:02x}")))
            .collect();
        let Some(clerk) = &self.clerk else {
            return match self.introspector.introspect(&token).await {
                Err(AuthError::Unavailable { cause, .. }) => match cause {
                    Unavailable::IntrospectionCredentialsRejected => Probe::Refused(None),
                    Unavailable::IntrospectionNotFound => Probe::NotFound,
                    cause => Probe::Failed(cause.to_string()),
                },
                Err(AuthError::InvalidToken(InvalidToken::UnusableReply)) => {
                    Probe::Unusable("a reply it could not use (the log says why)".to_owned())
                }
                // "No such token", or any other answer about the token.
                _ => Probe::Accepted,
            };
        };
        match clerk.ask(&token).await {
            ClerkAnswer::Token(_) | ClerkAnswer::TokenNotFound => Probe::Accepted,
            ClerkAnswer::RouteNotFound => Probe::NotFound,
            ClerkAnswer::KeyRefused => Probe::Refused(Some(401)),
            // About a token that exists nowhere, a 403 can only be about our credentials.
            ClerkAnswer::Failed(FetchError::Status(403)) => Probe::Refused(Some(403)),
            // No retry changes a redirect.
            ClerkAnswer::Failed(error @ FetchError::Redirect(_)) => {
                Probe::Unusable(error.to_string())
            }
            ClerkAnswer::Failed(error) if is_outage(&error) => Probe::Failed(error.to_string()),
            ClerkAnswer::Failed(error) => Probe::Unusable(error.to_string()),
        }
    }
}
