//! A warning for a verifier whose opaque tokens are all unknown to Clerk: machine B given machine
//! A's key (or an API URL with a wrong path).

use std::sync::{Mutex, PoisonError};

use crate::error::{AuthError, InvalidToken};
use crate::introspect::IntrospectedToken;

/// How many opaque verifications in a row must be "not found" (none accepted) before
/// [`NotFoundWatch`] warns.
const NOT_FOUND_STREAK: u32 = 3;
/// The least time between two of [`NotFoundWatch`]'s warnings.
const NOT_FOUND_WARNING_EVERY_MS: i64 = 60_000;

/// Machine B given machine A's key: with a machine secret key, Clerk knows only the opaque
/// tokens meant for that machine, so every valid token is "not found" and fails 401. The watch
/// counts "not found" answers in a row (any answer about a token Clerk found, valid or not,
/// starts over; an outage counts for nothing) and warns, at most once a minute, once the last
/// [`NOT_FOUND_STREAK`] were all "not found".
#[derive(Debug, Default)]
pub(super) struct NotFoundWatch {
    state: Mutex<NotFoundState>,
}

#[derive(Debug, Default)]
struct NotFoundState {
    streak: u32,
    /// When the last warning was logged, on the verifier's clock.
    warned_at_ms: Option<i64>,
}

impl NotFoundWatch {
    pub(super) fn record(
        &self,
        outcome: &Result<IntrospectedToken, AuthError>,
        now_ms: i64,
        url: &str,
    ) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Err(AuthError::InvalidToken(InvalidToken::NotActiveAtIssuer)) => {
                state.streak = state.streak.saturating_add(1);
            }
            Err(AuthError::Unavailable { .. }) => return,
            _ => {
                state.streak = 0;
                return;
            }
        }
        let due = state.warned_at_ms.is_none_or(|at| {
            now_ms.saturating_sub(at) >= NOT_FOUND_WARNING_EVERY_MS || now_ms < at
        });
        if state.streak >= NOT_FOUND_STREAK && due {
            state.warned_at_ms = Some(now_ms);
            let streak = state.streak;
            drop(state);
            tracing::warn!(
                endpoint = url,
                not_found_in_a_row = streak,
                "the last {streak} opaque tokens were all unknown to Clerk (404 token not \
                 found) and none was accepted: with CLERK_MACHINE_SECRET_KEY set, the issuer \
                 knows only the opaque tokens meant for that machine (in their `scopes`): \
                 verify with the receiving machine's key, or unset it to verify with \
                 CLERK_SECRET_KEY. If the key is right, check that CLERK_API_URL is the API's \
                 root (https://api.clerk.com, or the URL `machine-auth dev` prints)"
            );
        }
    }
}
