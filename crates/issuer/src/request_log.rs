//! One log line per request the issuer answers: method, path, status, time. The path is
//! request-supplied text, so it is logged escaped (`Debug`): control characters and Unicode
//! direction overrides cannot rewrite the log. Bodies and keys are never logged.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Logs the request once it is answered, at `info`.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        ?path,
        status = response.status().as_u16(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "request"
    );
    response
}
