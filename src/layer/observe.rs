//! What the layer tells operators about each request: a tracing span, one log event for its
//! outcome, and the `machine_auth_requests_total` counter. Never the token: at most its
//! fingerprint.

use std::fmt::Write as _;

use http::Request;
use tracing::Span;
use tracing::field::Empty;

use crate::error::AuthError;
use crate::machine::AuthenticatedMachine;
use crate::metrics::{self, Outcome, TokenType};

/// The target of the layer's span and events.
pub(crate) const TARGET: &str = "tower_machine_auth::request";

/// The span of one request, at INFO: the method and path now, the caller and the outcome once
/// known.
pub(crate) fn request_span<B>(request: &Request<B>) -> Span {
    tracing::info_span!(
        target: TARGET,
        "machine_auth",
        method = %request.method(),
        path = request.uri().path(),
        token_type = Empty,
        machine_id = Empty,
        token_id = Empty,
        outcome = Empty,
        reason = Empty,
    )
}

/// Names the verified caller in `span` (also when its request is then refused by the route's
/// rules).
pub(crate) fn caller(span: &Span, machine: &AuthenticatedMachine) {
    if !span.is_disabled() {
        span.record("machine_id", machine.machine_id().as_str());
        span.record("token_id", machine.token_id());
        span.record(
            "token_type",
            TokenType::from(machine.token_format()).as_str(),
        );
    }
}

/// A request let through: with its caller, or with none (no credential, optional layer).
pub(crate) fn passed(span: &Span, machine: Option<&AuthenticatedMachine>) {
    let (outcome, token_type) = match machine {
        Some(machine) => (Outcome::Accepted, machine.token_format().into()),
        None => (Outcome::Anonymous, TokenType::None),
    };
    metrics::request(outcome, None, token_type);
    if span.is_disabled() {
        return;
    }
    if let Some(machine) = machine {
        caller(span, machine);
    }
    span.record("outcome", outcome.as_str());
    if tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        let _entered = span.enter();
        match machine {
            Some(_) => tracing::debug!(target: TARGET, "machine request accepted"),
            None => tracing::debug!(target: TARGET, "request without a credential let through"),
        }
    }
}

/// Enters `span` unless it is disabled (entering a disabled span still costs, with `tracing`'s
/// `log` feature).
pub(crate) fn enter(span: &Span) -> Option<tracing::span::Entered<'_>> {
    (!span.is_disabled()).then(|| span.enter())
}

/// A request rejected with `error`; `token` is the credential it carried, if it carried one, and
/// `machine` its verified caller, when the route's rules refused it.
pub(crate) fn rejected(
    span: &Span,
    error: &AuthError,
    token: Option<&[u8]>,
    machine: Option<&AuthenticatedMachine>,
) {
    let reason = error.reason();
    let token_type = match (machine, token) {
        (Some(machine), _) => machine.token_format().into(),
        (None, Some(token)) => TokenType::of(token),
        (None, None) => TokenType::None,
    };
    metrics::request(Outcome::Rejected, Some(reason), token_type);
    if !span.is_disabled() {
        match machine {
            Some(machine) => caller(span, machine),
            None => {
                span.record("token_type", token_type.as_str());
            }
        }
        span.record("outcome", Outcome::Rejected.as_str());
        span.record("reason", reason.as_str());
    }
    let _entered = enter(span);
    let status = error.status().as_u16();
    // The events are enabled or not by level; the fingerprint is computed only when one is.
    if matches!(error, AuthError::Unavailable { .. }) {
        if tracing::enabled!(target: TARGET, tracing::Level::WARN) {
            let token = token.map(fingerprint);
            tracing::warn!(target: TARGET, %reason, status, %error, token, "machine request rejected");
        }
    } else if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        let token = token.map(fingerprint);
        tracing::info!(target: TARGET, %reason, status, %error, token, "machine request rejected");
    }
}

/// The first 4 bytes of the token's SHA-256, in hex: enough to tell one caller's token from
/// another's in logs, nothing to recover it from.
fn fingerprint(token: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    let mut hex = String::with_capacity(8);
    for byte in &digest.as_ref()[..4] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_eight_hex_digits_of_the_sha256() {
        // SHA-256("abc") = ba7816bf…
        assert_eq!(fingerprint(b"abc"), "ba7816bf");
    }
}
