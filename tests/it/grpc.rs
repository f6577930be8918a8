//! gRPC through the layer: a real Tonic server on loopback, called by a real Tonic client. A
//! refused call ends with gRPC's status (a "trailers-only" response), not an HTTP error.

#[path = "../../examples/grpc/cron_service.rs"]
mod cron_service;
#[path = "../../examples/grpc/cron_v1.rs"]
mod cron_v1;

use std::time::Duration;

use cron_service::Cron;
use cron_v1::cron_service_client::CronServiceClient;
use cron_v1::cron_service_server::CronServiceServer;
use cron_v1::{RunReply, RunRequest};
use machine_auth_issuer::{Issuer, IssuerConfig};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Status};
use tower_machine_auth::client::{MachineTokenLayer, MachineTokenSource};
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

use crate::common::{TestKey, claims, pem_verifier};

/// Serves `CronService` behind `layer` on loopback; a channel to it.
async fn serve(layer: MachineAuthLayer) -> Channel {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(CronServiceServer::new(Cron))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Channel::from_shared(url).unwrap().connect().await.unwrap()
}

/// Calls `Run` with `authorization: Bearer <token>` metadata, if a token is given.
async fn run(channel: &Channel, token: Option<&str>) -> Result<RunReply, Status> {
    let mut request = Request::new(RunRequest {
        job: "nightly".to_owned(),
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    let reply = CronServiceClient::new(channel.clone()).run(request).await?;
    Ok(reply.into_inner())
}

/// Checks a refused call's code, message and challenge.
fn assert_refused(status: &Status, code: Code, message_start: &str, challenge: Option<&str>) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(message_start),
        "{:?} does not start with {message_start:?}",
        status.message()
    );
    let sent = status
        .metadata()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap());
    assert_eq!(sent, challenge);
}

fn token() -> String {
    TestKey::shared_rsa().token("k1", &claims())
}

#[tokio::test]
async fn an_accepted_call_reaches_the_service_with_the_identity() {
    let channel = serve(MachineAuthLayer::new(pem_verifier())).await;
    let reply = run(&channel, Some(&token())).await.unwrap();
    assert_eq!(reply.ran_by, "mch_cron_service");
}

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated() {
    let channel = serve(MachineAuthLayer::new(pem_verifier()).realm("cron")).await;
    let status = run(&channel, None).await.unwrap_err();
    assert_refused(
        &status,
        Code::Unauthenticated,
        "token-missing: no bearer token",
        Some(r#"Bearer realm="cron""#),
    );
}

#[tokio::test]
async fn a_bad_token_is_unauthenticated_with_its_reason() {
    let channel = serve(MachineAuthLayer::new(pem_verifier())).await;
    let mut tampered = token();
    tampered.push('A');
    let status = run(&channel, Some(&tampered)).await.unwrap_err();
    assert_refused(
        &status,
        Code::Unauthenticated,
        "token-invalid: ",
        Some(r#"Bearer realm="api", error="invalid_token""#),
    );
}

#[tokio::test]
async fn a_missing_scope_is_permission_denied() {
    let layer = MachineAuthLayer::new(pem_verifier()).require_scopes(["mch_payroll"]);
    let channel = serve(layer).await;
    let status = run(&channel, Some(&token())).await.unwrap_err();
    assert_refused(
        &status,
        Code::PermissionDenied,
        "insufficient-scope: ",
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="mch_payroll""#),
    );
}

#[tokio::test]
async fn a_key_source_that_is_down_is_unavailable() {
    // A loopback port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!(
        "http://{}/.well-known/jwks.json",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let verifier = MachineVerifier::from_jwks_url(&jwks_url).unwrap();
    let channel = serve(MachineAuthLayer::new(verifier)).await;
    let status = run(&channel, Some(&token())).await.unwrap_err();
    assert_refused(&status, Code::Unavailable, "verifier-unavailable: ", None);
    assert!(status.metadata().get("retry-after").is_some());
}

#[tokio::test]
async fn grpc_rejections_can_be_turned_off() {
    let layer = MachineAuthLayer::new(pem_verifier()).grpc_rejections(false);
    let channel = serve(layer).await;
    let status = run(&channel, None).await.unwrap_err();
    // A plain HTTP 401 with a JSON body is not a gRPC answer: Tonic reports a broken call, not
    // the reason.
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(!status.message().contains("token-missing"), "{status:?}");
}

#[tokio::test]
async fn machine_a_calls_through_a_channel_with_the_token_layer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_url = format!("http://{}", listener.local_addr().unwrap());
    let config = IssuerConfig::demo();
    let issuer = Issuer::builder(config.clone())
        .issuer_url(&issuer_url)
        .build()
        .unwrap();
    let router = issuer.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(&config.instance_secret_key)
        .clerk_api_url(&issuer_url)
        .own_machine_id("mch_reports_api")
        .build()
        .unwrap();
    let channel = serve(MachineAuthLayer::new(verifier)).await;
    let source = MachineTokenSource::builder()
        .api_url(&issuer_url)
        .machine_secret_key(&config.machines[0].secret_key)
        .build()
        .unwrap();
    let with_token = tower::ServiceBuilder::new()
        .layer(MachineTokenLayer::new(source.clone()))
        .service(channel);
    let mut client = CronServiceClient::new(with_token);
    for _ in 0..2 {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.run(RunRequest {
                job: "nightly".to_owned(),
            }),
        )
        .await
        .expect("no answer in 10 s")
        .unwrap();
        assert_eq!(reply.get_ref().ran_by, config.machines[0].id);
    }
    assert_eq!(
        source.stats().created,
        1,
        "the second call reused the token"
    );
}

/// The layer over inner services with the response bodies of Tonic, `http-body-util` and
/// `String`: each compiles unchanged, passes a valid token through and answers a missing one.
#[tokio::test]
async fn any_body_whose_data_is_bytes_works() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, combinators::BoxBody};
    use tower::{Layer, ServiceExt};

    async fn check<B>(make: fn() -> B)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Debug,
    {
        let layer = MachineAuthLayer::new(pem_verifier());
        let inner = tower::service_fn(move |_: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(http::Response::new(make()))
        });
        let service = layer.layer(inner);
        let request = http::Request::builder()
            .header("authorization", format!("Bearer {}", token()))
            .body(())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
        let response = service.oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(response.status(), 401);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(br#"{"error":"unauthorized""#), "{body:?}");
    }

    check(|| tonic::body::Body::new(Full::new(Bytes::from_static(b"ok")))).await;
    check(|| Full::new(Bytes::from_static(b"ok"))).await;
    check(|| BoxBody::new(Full::new(Bytes::from_static(b"ok")).map_err(|never| match never {})))
        .await;
    check(|| "ok".to_owned()).await;
    check(|| axum::body::Body::from("ok")).await;
}
