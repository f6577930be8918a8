//! The cron server (machine B): shared by `axum_cron` and `quickstart`.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};

/// `GET /healthz` is public; `GET /whoami` and `POST /cron/run` need a machine token.
pub fn cron_app(verifier: MachineVerifier) -> Router {
    let machine_routes = Router::new()
        .route("/whoami", get(whoami))
        .route("/cron/run", post(run_cron))
        .layer(MachineAuthLayer::new(verifier));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(machine_routes)
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
