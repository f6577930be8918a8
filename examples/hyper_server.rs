//! Machine B on plain Hyper 1 and `hyper-util`, no web framework:
//!
//! 1. a local Clerk-compatible issuer starts (as in `quickstart`);
//! 2. machine B (`mch_reports_api`) serves `POST /cron/run` with `hyper::server::conn::http1`,
//!    its handler a `tower::service_fn` behind `MachineAuthLayer`, reading the caller from the
//!    request's extensions;
//! 3. machine A (`mch_cron_service`) creates a token at the issuer and calls machine B with it,
//!    then without one.
//!
//! ```sh
//! cargo run --example hyper_server
//! ```

#[path = "shared/issuer.rs"]
mod issuer;

use std::convert::Infallible;
use std::error::Error;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_machine_auth::client::MachineTokenSource;
use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};

/// Machine B's own machine id: it accepts only tokens scoped to it.
const MACHINE_B: &str = "mch_reports_api";

/// Machine B's handler: runs the job for the machine the layer authenticated.
async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let machine = request.extensions().get::<AuthenticatedMachine>();
    let (status, body) = match (request.method(), request.uri().path(), machine) {
        (&Method::POST, "/cron/run", Some(machine)) => (
            StatusCode::OK,
            format!(r#"{{"ran_by":"{}"}}"#, machine.machine_id()),
        ),
        _ => (StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.to_owned()),
    };
    let mut response = Response::new(Full::from(body));
    *response.status_mut() = status;
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    println!("1. A local Clerk-compatible issuer (the demo configuration).");
    let (issuer_url, config) = issuer::start_demo_issuer().await?;
    println!("   listening on {issuer_url}\n");

    println!("2. Machine B: Hyper's HTTP/1 server, a service_fn behind MachineAuthLayer.");
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(&config.instance_secret_key)
        .clerk_api_url(&issuer_url)
        .own_machine_id(MACHINE_B)
        .build()?;
    let service = tower::ServiceBuilder::new()
        .layer(MachineAuthLayer::new(verifier))
        .service_fn(handle);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let cron_url = format!("http://{}/cron/run", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    eprintln!("   connection error: {error}");
                }
            });
        }
    });
    println!("   listening on {cron_url}\n");

    println!("3. Machine A calls POST /cron/run:");
    let source = MachineTokenSource::builder()
        .api_url(&issuer_url)
        .machine_secret_key(&config.machines[0].secret_key)
        .build()?;
    let http = reqwest::Client::new();
    let token = source.token().await?;
    let with_token = http
        .post(&cron_url)
        .bearer_auth(token.as_str())
        .send()
        .await?;
    show("with machine A's token", with_token).await?;
    let without_token = http.post(&cron_url).send().await?;
    show("without a token", without_token).await
}

/// Prints an answer of machine B.
async fn show(
    label: &str,
    response: reqwest::Response,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let status = response.status().as_u16();
    let body = response.text().await?;
    println!("   {label:<24} → {status} {body}");
    Ok(())
}
