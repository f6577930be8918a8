//! Rejections in the user's own shape: `on_rejection` and `problem_details` change the body and
//! keep the response contract's headers, through the layer and the tower-http authorizer alike.

use http::Request;
use serde_json::json;
use tower_http::auth::AsyncRequireAuthorizationLayer;
use tower_machine_auth::{AuthError, MachineAuthLayer};

use crate::common::*;

/// An API's own error shape: `{"code": …, "detail": …}` with the error's status.
fn house_style(layer: MachineAuthLayer) -> MachineAuthLayer {
    layer.on_rejection(|error: &AuthError| {
        let body = json!({"code": error.reason(), "detail": error.to_string()});
        http::Response::builder()
            .status(error.status())
            .header("content-type", "application/vnd.example+json")
            .body(body.to_string())
            .expect("a valid response")
    })
}

fn expired_token() -> String {
    TestKey::shared_rsa().token("k1", &with(claims(), "exp", json!(now() - 3600)))
}

#[tokio::test]
async fn a_hook_shapes_the_body_and_the_layer_keeps_the_headers() {
    let layer = house_style(MachineAuthLayer::new(pem_verifier()).realm("cron"));
    let apps = [
        app(layer.clone()),
        routes().layer(AsyncRequireAuthorizationLayer::new(layer.authorizer())),
    ];
    for app in &apps {
        let missing = send(app, "/cron/run", &[]).await;
        assert_eq!(missing.status, 401);
        assert_eq!(
            missing.body,
            json!({"code": "token-missing", "detail": "no bearer token: send `Authorization: Bearer <token>`"})
        );
        assert_eq!(
            missing.header("content-type"),
            Some("application/vnd.example+json")
        );
        assert_eq!(
            missing.header("www-authenticate"),
            Some(r#"Bearer realm="cron""#)
        );
        assert_eq!(missing.header("cache-control"), Some("no-store"));

        let expired = send_bearer(app, "/cron/run", &expired_token()).await;
        assert_eq!(expired.status, 401);
        assert_eq!(expired.body["code"], "token-expired");
        assert_eq!(
            expired.header("www-authenticate"),
            Some(r#"Bearer realm="cron", error="invalid_token""#)
        );

        send_bearer(
            app,
            "/cron/run",
            &TestKey::shared_rsa().token("k1", &claims()),
        )
        .await
        .assert_ok();
    }
}

#[tokio::test]
async fn a_hook_cannot_drop_or_forge_the_challenge() {
    let layer = MachineAuthLayer::new(pem_verifier())
        .require_scopes(["mch_payroll"])
        .on_rejection(|error: &AuthError| {
            http::Response::builder()
                .status(error.status())
                .header("www-authenticate", "Basic realm=\"forged\"")
                .body("nope")
                .expect("a valid response")
        });
    let reply = send_bearer(
        &app(layer),
        "/cron/run",
        &TestKey::shared_rsa().token("k1", &claims()),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.text, "nope");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="mch_payroll""#)
    );
}

#[tokio::test]
async fn an_outage_keeps_retry_after_and_has_no_challenge() {
    let server = IntrospectionServer::start(Introspection::Status(500)).await;
    let verifier = clerk_opaque_verifier(&server);
    let app = app(house_style(MachineAuthLayer::new(verifier)));
    let reply = send_bearer(&app, "/cron/run", "mt_0123456789abcdef0123456789abcdef").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body["code"], "verifier-unavailable");
    assert!(reply.header("retry-after").is_some(), "{reply:?}");
    assert!(reply.header("www-authenticate").is_none(), "{reply:?}");
}

#[tokio::test]
async fn grpc_requests_still_get_grpc_rejections() {
    let app = app(house_style(MachineAuthLayer::new(pem_verifier())));
    let request = Request::post("/cron/run")
        .header("content-type", "application/grpc")
        .body(axum::body::Body::empty())
        .unwrap();
    let reply = send_request(&app, request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("grpc-status"), Some("16"));
    assert!(reply.text.is_empty());
}

#[tokio::test]
async fn problem_details_answers_rfc_9457_documents() {
    let problems = app(MachineAuthLayer::new(pem_verifier()).problem_details());
    let reply = send_bearer(&problems, "/cron/run", &expired_token()).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    assert_eq!(
        reply.body,
        json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "the token has expired",
            "reason": "token-expired",
            "error": "invalid_token",
        })
    );
    // Without a hook, the body is the default JSON.
    let plain = app(MachineAuthLayer::new(pem_verifier()));
    let plain = send_bearer(&plain, "/cron/run", &expired_token()).await;
    assert_eq!(plain.body["reason"], "token-expired");
    assert_eq!(plain.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_hook_that_forgets_the_status_still_rejects() {
    let layer = MachineAuthLayer::new(pem_verifier()).on_rejection(|_: &AuthError| {
        // No status (200), and a cache header a rejection must not carry.
        http::Response::builder()
            .header("cache-control", "public, max-age=3600")
            .body("denied")
            .expect("a valid response")
    });
    let reply = send(&app(layer), "/cron/run", &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text, "denied");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}
