//! Machine B: a cron endpoint that only machines may call.
//!
//! Configured only by environment variables, as with Clerk's SDKs (`MachineVerifier::from_env`
//! reads all the `CLERK_…` ones):
//!
//! | variable | meaning |
//! |---|---|
//! | `CLERK_JWT_KEY` | PEM public key: verify JWTs locally, no network at all |
//! | `CLERK_SECRET_KEY` | instance secret key: JWKS from `GET {CLERK_API_URL}/v1/jwks`, and opaque `mt_…` tokens at `POST {CLERK_API_URL}/m2m_tokens/verify` |
//! | `CLERK_MACHINE_SECRET_KEY` | machine secret key: opaque `mt_…` tokens (wins over `CLERK_SECRET_KEY` for them) |
//! | `CLERK_API_URL` | Clerk's Backend API (default `https://api.clerk.com`) |
//! | `CLERK_MACHINE_ID` | this server's own machine id (`mch_…`): only tokens scoped to it are accepted, others get 401 `token-invalid-receiver`. Unset, tokens of every machine of the instance are accepted (a warning at startup says so) |
//! | `PORT` | port on 127.0.0.1 (default 3000) |
//!
//! JWT and opaque tokens reach the same routes; `/whoami` says which (`token_format`).
//!
//! Routes: `GET /healthz` (public: the process is up), `GET /readyz` (public: 503 until the
//! verifier's keys are loaded), `GET /metrics` (public: Prometheus text format, with the layer's
//! metrics when built with `--features metrics`), `GET /whoami`
//! (the `AuthenticatedMachine` as JSON), `POST /cron/run` (`{"message":"Success"}`). It prints
//! `listening on <addr>` when ready, also while its JWKS endpoint is unreachable (it answers 503
//! until keys load).
//!
//! ```sh
//! CLERK_JWT_KEY="$(cat public.pem)" CLERK_MACHINE_ID=mch_reports_api cargo run --example axum_cron
//! curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/cron/run
//! ```

#[path = "shared/cron.rs"]
mod cron;

use std::process::ExitCode;

use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tower_machine_auth::{MachineVerifier, metrics};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_machine_auth=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    #[cfg(not(feature = "metrics"))]
    eprintln!(
        "note: built without the `metrics` feature, /metrics has none of the layer's metrics \
         (cargo run --example axum_cron --features metrics)"
    );
    let prometheus_handle = match prometheus() {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("cannot install the metrics recorder: {error}");
            return ExitCode::from(1);
        }
    };

    // Reads CLERK_JWT_KEY, CLERK_SECRET_KEY, CLERK_JWKS_URL, CLERK_MACHINE_SECRET_KEY,
    // CLERK_API_URL and CLERK_MACHINE_ID (this server's own machine id: the receiver check).
    let verifier = match MachineVerifier::from_env() {
        Ok(verifier) => verifier,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    // Without an own id, `build` has logged a warning that every machine is accepted.
    if let Some(own_id) = verifier.own_machine_id() {
        tracing::info!(
            machine_id = %own_id,
            "own machine id from CLERK_MACHINE_ID: only tokens scoped to this machine are accepted"
        );
    }
    let port = match std::env::var("PORT") {
        Err(_) => 3000,
        Ok(port) => match port.parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                eprintln!(
                    "configuration error: PORT must be a port number (0-65535), not `{port}`"
                );
                return ExitCode::from(2);
            }
        },
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(error) => {
            eprintln!("cannot read the listening address: {error}");
            return ExitCode::from(1);
        }
    }
    let app = cron::cron_app(verifier).route(
        "/metrics",
        get(move || async move { prometheus_handle.render() }),
    );
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("server error: {error}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The Prometheus recorder of the layer's metrics. The verification time is a histogram with
/// buckets from 10 µs (a cache hit) to 5 s (a slow introspection call); without buckets the
/// exporter would render it as a summary.
fn prometheus() -> Result<PrometheusHandle, BuildError> {
    const VERIFY_BUCKETS: &[f64] = &[
        0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(metrics::VERIFY_DURATION_SECONDS.to_owned()),
            VERIFY_BUCKETS,
        )?
        .install_recorder()
}
