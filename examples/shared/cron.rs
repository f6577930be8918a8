//! The cron server (machine B): shared by `axum_cron` and `quickstart`.

use std::iter::once;

use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::AUTHORIZATION;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};

/// `GET /healthz` and `GET /readyz` are public; `GET /whoami` and `POST /cron/run` need a
/// machine token.
///
/// The order of the layers, outermost first: `Authorization` is marked sensitive before anything
/// can print it, the trace spans every request (rejections included), and the machine layer
/// guards only the machine routes, so the probes answer without a token.
pub fn cron_app(verifier: MachineVerifier) -> Router {
    // 503 until the verifier's keys are loaded, and when they are stale.
    let readiness = verifier.readiness();
    let machine_routes = Router::new()
        .route("/whoami", get(whoami))
        .route("/cron/run", post(run_cron))
        .layer(MachineAuthLayer::new(verifier));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route_service("/readyz", readiness)
        .merge(machine_routes)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new(once(AUTHORIZATION)))
                .layer(TraceLayer::new_for_http()),
        )
}

/// The identity the layer verified.
async fn whoami(machine: AuthenticatedMachine) -> Json<AuthenticatedMachine> {
    Json(machine)
}

/// Runs the job for an authenticated machine.
async fn run_cron(machine: AuthenticatedMachine) -> Json<Value> {
    tracing::info!(machine = %machine.machine_id(), token = machine.token_id(), "cron job run");
    Json(json!({ "message": "Success" }))
}
