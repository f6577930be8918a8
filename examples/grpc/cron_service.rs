//! Machine B's side of `cron.v1.CronService`, shared by `examples/grpc_cron.rs` and the gRPC
//! tests: `Run` answers with the id of the machine that called, which `MachineAuthLayer` put in
//! the request's extensions.

use tonic::{Request, Response, Status};
use tower_machine_auth::AuthenticatedMachine;

use super::cron_v1::cron_service_server::CronService;
use super::cron_v1::{RunReply, RunRequest};

/// Runs a job for the machine that called.
pub struct Cron;

#[tonic::async_trait]
impl CronService for Cron {
    async fn run(&self, request: Request<RunRequest>) -> Result<Response<RunReply>, Status> {
        let machine = request
            .extensions()
            .get::<AuthenticatedMachine>()
            .ok_or_else(|| Status::internal("MachineAuthLayer is not in front of this service"))?;
        println!(
            "   machine B runs {:?} for {}",
            request.get_ref().job,
            machine.machine_id()
        );
        Ok(Response::new(RunReply {
            ran_by: machine.machine_id().to_string(),
        }))
    }
}
