//! Machine A: calls machine B on a schedule with a machine token that it creates once and reuses
//! until shortly before it expires.
//!
//! ```sh
//! # terminal 1: the local issuer (or use Clerk: CLERK_API_URL defaults to https://api.clerk.com)
//! cargo run -p machine-auth -- dev
//! # terminal 2: machine B
//! CLERK_API_URL=http://127.0.0.1:8787 CLERK_SECRET_KEY=sk_test_demo_instance_do_not_use_in_production \
//!   PORT=3000 cargo run --example axum_cron
//! # terminal 3: machine A
//! CLERK_API_URL=http://127.0.0.1:8787 CLERK_MACHINE_SECRET_KEY=ak_demo_cron_service_do_not_use_in_production \
//!   TARGET_URL=http://127.0.0.1:3000/cron/run INTERVAL_SECS=5 cargo run --example machine_client
//! ```
//!
//! Variables: `CLERK_API_URL`, `CLERK_MACHINE_SECRET_KEY` (required), `TARGET_URL` (required),
//! `INTERVAL_SECS` (default 60), `TOKEN_FORMAT` (`jwt` or `opaque`, default `jwt`), `CALLS` (stop
//! after that many calls; default: run until stopped). One line per call on standard output.

use std::process::ExitCode;
use std::time::Duration;

use tower_machine_auth::TokenFormat;
use tower_machine_auth::client::{MachineTokenSource, SendError};

/// What the environment asks for.
struct Settings {
    target: String,
    interval: Duration,
    format: TokenFormat,
    calls: Option<u64>,
}

fn settings() -> Result<Settings, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let number = |name: &str| -> Result<Option<u64>, String> {
        var(name)
            .map(|value| {
                value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name} must be a whole number above 0, not `{value}`"))
            })
            .transpose()
    };
    let format = match var("TOKEN_FORMAT").as_deref().map(str::trim) {
        None | Some("jwt") => TokenFormat::Jwt,
        Some("opaque") => TokenFormat::Opaque,
        Some(other) => {
            return Err(format!(
                "TOKEN_FORMAT must be `jwt` or `opaque`, not `{other}`"
            ));
        }
    };
    Ok(Settings {
        target: var("TARGET_URL")
            .ok_or("set TARGET_URL to machine B's endpoint, e.g. http://127.0.0.1:3000/cron/run")?,
        interval: Duration::from_secs(number("INTERVAL_SECS")?.unwrap_or(60)),
        format,
        calls: number("CALLS")?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match settings() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("machine_client: {message}");
            return ExitCode::from(2);
        }
    };
    let source = match MachineTokenSource::builder()
        .env()
        .format(settings.format)
        .build()
    {
        Ok(source) => source,
        Err(error) => {
            eprintln!("machine_client: {error}");
            return ExitCode::from(2);
        }
    };
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            eprintln!("machine_client: cannot build the HTTP client: {error}");
            return ExitCode::from(2);
        }
    };
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut call = 0;
    while settings.calls.is_none_or(|calls| call < calls) {
        ticks.tick().await;
        call += 1;
        match source.send(http.post(&settings.target)).await {
            Ok(response) => println!(
                "call {call}: {} {} (tokens created so far: {})",
                settings.target,
                response.status(),
                source.stats().created
            ),
            Err(SendError::Token(error)) if error.is_configuration() => {
                eprintln!("machine_client: {error}");
                return ExitCode::from(2);
            }
            Err(error) => println!("call {call}: {} failed: {error}", settings.target),
        }
    }
    ExitCode::SUCCESS
}
