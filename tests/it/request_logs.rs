//! What the layer tells operators about each request: one span with the route and the caller,
//! one event per outcome at its level, the caller in the response's extensions; never the token.

use axum::Router;
use axum::routing::get;
use http::Request;
use serde_json::json;
use tower::ServiceExt;
use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer};

use crate::common::*;

/// The line of `logs` that contains every one of `parts`.
fn line_with<'a>(logs: &'a str, parts: &[&str]) -> Option<&'a str> {
    logs.lines()
        .find(|line| parts.iter().all(|part| line.contains(part)))
}

#[tokio::test(flavor = "current_thread")]
async fn every_outcome_is_logged_with_the_route_and_the_caller() {
    let captured = CapturedLogs::start();
    let key = TestKey::shared_rsa();
    let guarded = Router::new()
        .route(
            "/cron/run",
            get(|machine: AuthenticatedMachine| async move {
                tracing::info!("handler ran for {}", machine.machine_id());
                "ok"
            }),
        )
        .layer(MachineAuthLayer::new(pem_verifier()).require_scopes(["mch_reports"]));
    let token = key.token("k", &with(claims(), "scopes", json!("mch_reports")));
    send_bearer(&guarded, "/cron/run", &token).await.assert_ok();
    send(&guarded, "/cron/run", &[]).await;
    let unscoped = key.token("k", &with(claims(), "scopes", json!("mch_other")));
    send_bearer(&guarded, "/cron/run", &unscoped).await;
    let expired = key.token(
        "k",
        &with(claims_at(now() - 7200), "exp", json!(now() - 60)),
    );
    send_bearer(&guarded, "/cron/run?job=nightly", &expired).await;

    let logs = captured.text();
    let span = r#"machine_auth{method=GET path="/cron/run""#;
    let accepted = line_with(&logs, &["DEBUG", span, "machine request accepted"])
        .unwrap_or_else(|| panic!("no accepted line:\n{logs}"));
    assert!(
        accepted.contains(r#"machine_id="mch_cron_service""#),
        "{accepted}"
    );
    assert!(accepted.contains(r#"token_type="jwt""#), "{accepted}");
    // The handler's own events are inside the span: they name the caller.
    let handler = line_with(&logs, &["handler ran for", span]).expect("the handler's line");
    assert!(
        handler.contains(r#"machine_id="mch_cron_service""#),
        "{handler}"
    );

    let missing = line_with(
        &logs,
        &[
            " INFO",
            span,
            "machine request rejected",
            "reason=token-missing",
        ],
    )
    .unwrap_or_else(|| panic!("no token-missing line:\n{logs}"));
    assert!(missing.contains("status=401"), "{missing}");
    let denied = line_with(&logs, &[" INFO", span, "reason=insufficient-scope"])
        .unwrap_or_else(|| panic!("no insufficient-scope line:\n{logs}"));
    assert!(
        denied.contains(r#"machine_id="mch_cron_service""#) && denied.contains("status=403"),
        "{denied}"
    );
    // The path without the query; the token as a fingerprint only.
    let expired_line = line_with(&logs, &[" INFO", "reason=token-expired"])
        .unwrap_or_else(|| panic!("no token-expired line:\n{logs}"));
    assert!(
        expired_line.contains(span) && !expired_line.contains("nightly"),
        "{expired_line}"
    );
    assert!(expired_line.contains("token=\""), "{expired_line}");
    for token in [&token, &unscoped, &expired] {
        for segment in token.split('.') {
            assert!(
                !logs.contains(segment),
                "a token segment was logged:\n{logs}"
            );
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_outage_is_logged_as_a_warning() {
    let captured = CapturedLogs::start();
    let server = IntrospectionServer::start(Introspection::Status(503)).await;
    let verifier = clerk_opaque_verifier(&server);
    let token = opaque_token();
    send_bearer(&app(MachineAuthLayer::new(verifier)), "/cron/run", &token)
        .await
        .assert_rejected(503, "verifier-unavailable", Some(&token));
    let logs = captured.text();
    let line = line_with(
        &logs,
        &[
            " WARN",
            "machine request rejected",
            "reason=verifier-unavailable",
        ],
    )
    .unwrap_or_else(|| panic!("no warning:\n{logs}"));
    assert!(line.contains(r#"token_type="opaque""#), "{line}");
    assert!(!logs.contains(&token), "the token was logged:\n{logs}");
}

#[tokio::test]
async fn the_response_names_the_caller_without_its_token() {
    let token = TestKey::shared_rsa().token("k", &claims());
    let request = Request::get("/cron/run")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app(MachineAuthLayer::new(pem_verifier()))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let caller = response
        .extensions()
        .get::<AuthenticatedMachine>()
        .expect("the caller in the response's extensions");
    assert_eq!(caller.machine_id().as_str(), "mch_cron_service");
    assert!(caller.token().is_none(), "the response carries the token");
}
