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
//! Routes: `GET /healthz` (public), `GET /whoami` (the `AuthenticatedMachine` as JSON),
//! `POST /cron/run` (`{"message":"Success"}`). It prints `listening on <addr>` when ready, also
//! while its JWKS endpoint is unreachable (it answers 503 until keys load).
//!
//! ```sh
//! CLERK_JWT_KEY="$(cat public.pem)" CLERK_MACHINE_ID=mch_reports_api cargo run --example axum_cron
//! curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/cron/run
//! ```

#[path = "shared/cron.rs"]
mod cron;

use std::process::ExitCode;

use tower_machine_auth::MachineVerifier;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_machine_auth=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

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
    if let Err(error) = axum::serve(listener, cron::cron_app(verifier)).await {
        eprintln!("server error: {error}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
