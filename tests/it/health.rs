//! `MachineVerifier::health` and the readiness endpoint: keys loaded, their age, the last fetch
//! error, the circuit breaker. Real loopback servers, paused time.

use std::time::Duration;

use http::Request;
use tower::ServiceExt;
use tower_machine_auth::introspect::BreakerState;
use tower_machine_auth::{KeySourceKind, MachineAuthLayer, MachineVerifier};

use crate::common::*;

/// Lets background tasks (the refresher, the server) run until they are idle.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// The readiness endpoint's status and JSON body.
async fn readyz(verifier: &MachineVerifier, max_age: Option<Duration>) -> (u16, serde_json::Value) {
    let mut readiness = verifier.readiness();
    if let Some(max_age) = max_age {
        readiness = readiness.max_key_set_age(max_age);
    }
    let response = readiness.oneshot(Request::new(())).await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(response.body()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_jwks_verifier_is_ready_once_loaded_and_not_when_stale() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(JwksReply::Status(500)).await;
    let verifier = MachineVerifier::builder()
        .jwks_url(server.url())
        .jwks_refresh_interval(Duration::from_secs(60))
        .jwks_max_stale(Duration::from_secs(600))
        .build()
        .unwrap();
    // The first fetch fails: not ready, and why is said.
    for _ in 0..1000 {
        if server.hits() > 0 {
            break;
        }
        settle().await;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    settle().await;
    assert_eq!(server.hits(), 1, "the first fetch was not made");
    let health = verifier.health();
    assert_eq!((health.key_source, health.keys), (KeySourceKind::Jwks, 0));
    assert!(!health.is_ready());
    assert_eq!(
        health.last_fetch_error.as_deref(),
        Some("answered with HTTP status 500")
    );
    let (status, body) = readyz(&verifier, None).await;
    assert_eq!((status, &body["ready"]), (503, &serde_json::json!(false)));

    // The endpoint comes up; the retry loads the keys.
    server.set(key_set(&[key.jwk("k1", None)]));
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    let health = verifier.health();
    assert!(health.is_ready(), "{health:?}");
    assert_eq!((health.keys, health.last_fetch_error), (1, None));
    assert_eq!(readyz(&verifier, None).await.0, 200);

    // The endpoint fails again: the keys age; a tighter limit says so first, then the
    // verifier's own.
    server.set(JwksReply::Status(500));
    tokio::time::advance(Duration::from_secs(300)).await;
    settle().await;
    let health = verifier.health();
    assert!(
        health.key_set_age.unwrap() >= Duration::from_secs(240),
        "{health:?}"
    );
    assert!(health.is_ready() && !health.is_ready_within(Duration::from_secs(120)));
    assert_eq!(readyz(&verifier, None).await.0, 200);
    assert_eq!(
        readyz(&verifier, Some(Duration::from_secs(120))).await.0,
        503
    );
    tokio::time::advance(Duration::from_secs(400)).await;
    settle().await;
    let (status, body) = readyz(&verifier, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["last_fetch_error"], "answered with HTTP status 500");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_state_follows_the_introspection_endpoint() {
    let server = IntrospectionServer::start(Introspection::Status(503)).await;
    let verifier = clerk_opaque_verifier(&server);
    let health = verifier.health();
    assert_eq!(
        (health.key_source, health.breaker),
        (KeySourceKind::None, Some(BreakerState::Closed))
    );
    assert!(
        health.is_ready(),
        "an opaque-only verifier has no keys to wait for"
    );
    let app = app(MachineAuthLayer::new(verifier.clone()));
    for _ in 0..5 {
        send_bearer(&app, "/cron/run", &opaque_token()).await;
    }
    assert_eq!(verifier.health().breaker, Some(BreakerState::Open));
    // The breaker is reported, but an outage every replica shares does not make one unready.
    assert_eq!(readyz(&verifier, None).await.0, 200);
}

#[tokio::test]
async fn health_counts_cached_tokens() {
    let verifier = pem_verifier();
    assert_eq!(verifier.health().cached_tokens, 0);
    verifier
        .verify(&TestKey::shared_rsa().token("k", &claims()))
        .await
        .unwrap();
    let health = verifier.health();
    assert_eq!(
        (health.key_source, health.keys, health.cached_tokens),
        (KeySourceKind::Pem, 1, 1)
    );
}
