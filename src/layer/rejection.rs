//! The layer's rejections: gRPC's form for gRPC requests, the user's own (see
//! [`MachineAuthLayer::on_rejection`](super::MachineAuthLayer::on_rejection)) or the JSON one
//! for the others.

use std::fmt;
use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Response};

use super::layer::LayerSettings;
use crate::error::AuthError;

/// A function that builds rejection responses, set with
/// [`MachineAuthLayer::on_rejection`](super::MachineAuthLayer::on_rejection).
#[derive(Clone)]
pub(crate) struct RejectionHook(Arc<BuildRejection>);

type BuildRejection = dyn Fn(&AuthError) -> Response<String> + Send + Sync;

impl RejectionHook {
    pub(crate) fn new<F, B>(build: F) -> Self
    where
        F: Fn(&AuthError) -> Response<B> + Send + Sync + 'static,
        B: Into<String>,
    {
        Self(Arc::new(move |error| build(error).map(Into::into)))
    }
}

impl fmt::Debug for RejectionHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RejectionHook")
    }
}

/// The response to a request (with these headers) rejected with `error`: its body from a `String`
/// (JSON, or the hook's), or empty for gRPC.
pub(crate) fn rejection<B: From<String> + Default>(
    error: &AuthError,
    settings: &LayerSettings,
    request: &HeaderMap,
) -> Response<B> {
    if settings.grpc_rejections && is_grpc(request) {
        return error.to_grpc_response(&settings.realm);
    }
    match &settings.rejection_hook {
        Some(RejectionHook(build)) => {
            let mut response = build(error);
            // A rejection never answers with success: a hook that left the status alone (200)
            // or chose one below 400 gets the error's own.
            if !(response.status().is_client_error() || response.status().is_server_error()) {
                *response.status_mut() = error.status();
            }
            error.complete(&mut response, &settings.realm);
            response.map(B::from)
        }
        None => error.to_response(&settings.realm),
    }
}

/// `Content-Type: application/grpc`, `application/grpc+proto`, `application/grpc-web`…
fn is_grpc(headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(CONTENT_TYPE).is_some_and(|value| {
        value
            .as_bytes()
            .get(..GRPC.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(GRPC))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn grpc_content_types_are_told_apart() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            is_grpc(&headers)
        };
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC-web",
        ] {
            assert!(with(grpc), "{grpc}");
        }
        for other in ["application/json", "application/gr", "text/plain"] {
            assert!(!with(other), "{other}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
