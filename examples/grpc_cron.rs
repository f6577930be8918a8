//! Machine-to-machine gRPC with Tonic, on one machine, no account needed:
//!
//! 1. a local Clerk-compatible issuer starts (as in `quickstart`);
//! 2. machine B (`mch_reports_api`) serves `cron.v1.CronService` with Tonic, behind
//!    `MachineAuthLayer`; its `Run` answers with the id of the machine that called it, read from
//!    the request's extensions;
//! 3. machine A (`mch_cron_service`) calls `Run` through a Tonic `Channel` wrapped in
//!    `MachineTokenLayer`, which creates a token at the issuer and sends it as
//!    `authorization: Bearer …` metadata;
//! 4. calls without a token, or with the token of a machine B does not accept, end with gRPC's
//!    `UNAUTHENTICATED`.
//!
//! ```sh
//! cargo run --example grpc_cron
//! ```
//!
//! The service is `examples/grpc/cron.proto`; its Rust code, `examples/grpc/cron_v1.rs`, is
//! generated once and checked in, so building needs no `protoc`.

#[path = "grpc/cron_service.rs"]
mod cron_service;
#[path = "grpc/cron_v1.rs"]
mod cron_v1;
#[path = "shared/issuer.rs"]
mod issuer;

use std::error::Error;

use cron_service::Cron;
use cron_v1::cron_service_client::CronServiceClient;
use cron_v1::cron_service_server::CronServiceServer;
use cron_v1::{RunReply, RunRequest};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tower_machine_auth::client::{MachineTokenLayer, MachineTokenSource};
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

/// Machine B's own machine id: it accepts only tokens scoped to it.
const MACHINE_B: &str = "mch_reports_api";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    println!("1. A local Clerk-compatible issuer (the demo configuration).");
    let (issuer_url, config) = issuer::start_demo_issuer().await?;
    println!("   listening on {issuer_url}\n");

    println!("2. Machine B: cron.v1.CronService over gRPC, behind MachineAuthLayer.");
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(&config.instance_secret_key)
        .clerk_api_url(&issuer_url)
        .own_machine_id(MACHINE_B)
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let grpc_url = format!("http://{}", listener.local_addr()?);
    let server = Server::builder()
        .layer(MachineAuthLayer::new(verifier))
        .add_service(CronServiceServer::new(Cron))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    println!("   listening on {grpc_url}\n");

    println!("3. Machine A calls Run through a Channel with MachineTokenLayer:");
    let channel = Channel::from_shared(grpc_url)?.connect().await?;
    let source = MachineTokenSource::builder()
        .api_url(&issuer_url)
        .machine_secret_key(&config.machines[0].secret_key)
        .build()?;
    let with_token = tower::ServiceBuilder::new()
        .layer(MachineTokenLayer::new(source))
        .service(channel.clone());
    let reply = CronServiceClient::new(with_token)
        .run(RunRequest {
            job: "nightly-report".to_owned(),
        })
        .await?;
    println!("   → OK, ran_by: {}\n", reply.get_ref().ran_by);

    println!("4. Calls machine B refuses:");
    let without_token = CronServiceClient::new(channel.clone())
        .run(RunRequest {
            job: "nightly-report".to_owned(),
        })
        .await;
    show_refusal("no token at all", without_token)?;
    let mut request = Request::new(RunRequest {
        job: "nightly-report".to_owned(),
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer mt_0123456789abcdef".parse()?);
    let unknown_token = CronServiceClient::new(channel).run(request).await;
    show_refusal("an opaque token the issuer never issued", unknown_token)
}

/// Prints a refused call's gRPC status; an error if the call was not refused as unauthenticated.
fn show_refusal(
    label: &str,
    outcome: Result<Response<RunReply>, Status>,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    match outcome {
        Err(status) if status.code() == Code::Unauthenticated => {
            println!("   {label:<42} → {:?}: {}", status.code(), status.message());
            Ok(())
        }
        Err(status) => Err(format!("{label}: refused with {status:?}, not Unauthenticated").into()),
        Ok(_) => Err(format!("{label}: accepted, where machine B must refuse it").into()),
    }
}
