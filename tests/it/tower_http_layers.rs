//! The layer among `tower-http`'s: `MachineAuthorizer` behind `AsyncRequireAuthorizationLayer`
//! answers as `MachineAuthLayer` does, and a `TimeoutLayer` that gives up on a request waiting
//! for a key fetch leaves nothing broken behind.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use http::{Request, StatusCode};
use serde_json::json;
use tokio::sync::watch;
use tower_http::auth::AsyncRequireAuthorizationLayer;
use tower_http::timeout::TimeoutLayer;
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

use crate::common::*;

/// The test app with `MachineAuthorizer` in front of it instead of the layer.
fn authorizer_app(layer: MachineAuthLayer) -> Router {
    routes().layer(AsyncRequireAuthorizationLayer::new(layer.authorizer()))
}

#[tokio::test]
async fn the_authorizer_answers_as_the_layer_does() {
    let layered = app(MachineAuthLayer::new(pem_verifier()).realm("cron"));
    let authorized = authorizer_app(MachineAuthLayer::new(pem_verifier()).realm("cron"));
    let key = TestKey::shared_rsa();
    let cases = [
        vec![],
        vec!["Basic dXNlcjpwYXNz".to_owned()],
        vec!["Bearer".to_owned()],
        vec![format!(
            "Bearer {}",
            key.token("k1", &with(claims(), "exp", json!(now() - 3600)))
        )],
        vec![format!(
            "Bearer {}",
            key.token("k1", &with(claims(), "sub", json!("user_1")))
        )],
        vec!["Bearer a".to_owned(), "Bearer b".to_owned()],
    ];
    for authorization in cases {
        let authorization: Vec<&str> = authorization.iter().map(String::as_str).collect();
        let expected = send(&layered, "/whoami", &authorization).await;
        let got = send(&authorized, "/whoami", &authorization).await;
        assert_ne!(expected.status, StatusCode::OK, "{authorization:?}");
        assert_eq!(got.status, expected.status, "{authorization:?}");
        assert_eq!(got.body, expected.body, "{authorization:?}");
        assert_eq!(
            got.header("www-authenticate"),
            expected.header("www-authenticate"),
            "{authorization:?}"
        );
    }
    let token = key.token("k1", &claims());
    let reply = send_bearer(&authorized, "/whoami", &token).await;
    reply.assert_ok();
    assert_eq!(reply.body["machine_id"], "mch_cron_service");
}

#[tokio::test]
async fn the_authorizer_waits_for_a_key_fetch() {
    let key = TestKey::shared_rsa();
    let jwks = JwksServer::start(key_set(&[key.jwk("k1", Some("RS256"))])).await;
    let verifier = MachineVerifier::from_jwks_url(&jwks.url()).unwrap();
    let authorized = authorizer_app(MachineAuthLayer::new(verifier));
    let reply = send_bearer(&authorized, "/whoami", &key.token("k1", &claims())).await;
    reply.assert_ok();
    assert_eq!(reply.body["machine_id"], "mch_cron_service");
}

/// A JWKS endpoint that holds every request until `open` says so.
async fn gated_jwks(keys: serde_json::Value) -> (String, watch::Sender<bool>) {
    let (open, gate) = watch::channel(false);
    let keys = Arc::new(keys.to_string());
    let app = Router::new().fallback(move || {
        let mut gate = gate.clone();
        let keys = Arc::clone(&keys);
        async move {
            // Bounded by the test's own timeouts: the sender lives until the test ends.
            let _ = gate.wait_for(|open| *open).await;
            ([("content-type", "application/json")], keys.to_string()).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, open)
}

#[tokio::test]
async fn a_timeout_during_a_key_fetch_poisons_nothing() {
    let key = TestKey::shared_rsa();
    let (url, open) = gated_jwks(json!({ "keys": [key.jwk("k1", Some("RS256"))] })).await;
    let verifier = MachineVerifier::from_jwks_url(&url).unwrap();
    let app = app(MachineAuthLayer::new(verifier.clone())).layer(TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        Duration::from_millis(200),
    ));
    let token = key.token("k1", &claims());

    // The key fetch hangs: the timeout answers, and the waiting request is dropped.
    let reply = send_bearer(&app, "/whoami", &token).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);

    // The endpoint answers again: the same token is accepted, nothing cached or tripped by the
    // abandoned request stands in the way.
    open.send(true).unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let reply = send_bearer(&app, "/whoami", &token).await;
            if reply.status != StatusCode::GATEWAY_TIMEOUT {
                return reply;
            }
        }
    })
    .await
    .expect("accepted within 10 s");
    reply.assert_ok();
    assert_eq!(reply.body["machine_id"], "mch_cron_service");
    assert_eq!(verifier.stats().cache_hits, 0);
    let reply = send_bearer(&app, "/whoami", &token).await;
    reply.assert_ok();
    assert_eq!(
        verifier.stats().cache_hits,
        1,
        "the verified token is cached"
    );

    // A request without the layer's wait is never touched by the timeout.
    let request = Request::get("/whoami").body(Body::empty()).unwrap();
    let reply = send_request(&app, request).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}
