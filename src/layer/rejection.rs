//! The layer's rejections: gRPC's form for gRPC requests, the JSON one for the others.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Response};

use super::layer::LayerSettings;
use crate::error::AuthError;

/// The response to a request (with these headers) rejected with `error`: its body from a `String`
/// (JSON), or empty for gRPC.
pub(crate) fn rejection<B: From<String> + Default>(
    error: &AuthError,
    settings: &LayerSettings,
    request: &HeaderMap,
) -> Response<B> {
    if settings.grpc_rejections && is_grpc(request) {
        error.to_grpc_response(&settings.realm)
    } else {
        error.to_response(&settings.realm)
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
