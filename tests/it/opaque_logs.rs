//! What the logs say about opaque verification, without the token or our key: an unusable
//! reply, a wrong API path, and a machine key that finds no token.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::json;
use tower_machine_auth::clock::TokioClock;
use tower_machine_auth::error::{InvalidToken, Unavailable};
use tower_machine_auth::{AuthError, MachineAuthLayer, MachineVerifier};

const MACHINE_KEY: &str = "ak_test_machine_secret_key_0123";

#[tokio::test(flavor = "current_thread")]
async fn a_rejected_reply_is_logged_without_the_token() {
    let huge = opaque_token();
    let resource = with(
        clerk_resource("mt_1", "mch_cron_service"),
        "claims",
        json!({"pad": "x".repeat(70 * 1024)}),
    );
    let server = IntrospectionServer::start(Introspection::Clerk(HashMap::from([(
        huge.clone(),
        resource,
    )])))
    .await;
    let verifier = MachineVerifier::builder()
        .clerk_machine_secret_key(MACHINE_KEY)
        .clerk_api_url(server.base_url())
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    let logs = CapturedLogs::start();
    send_bearer(&app, "/cron/run", &huge)
        .await
        .assert_rejected(401, "token-invalid", Some(&huge));
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("larger than"),
        "{text}"
    );
    assert!(
        !text.contains(&huge) && !text.contains(MACHINE_KEY),
        "{text}"
    );
}

/// A stand-in for Clerk's Backend API at its real paths: `/m2m_tokens/verify` knows `token`;
/// any other path gets the plain 404 of a server with no such route.
async fn backend_api_knowing(token: String) -> String {
    let app = axum::Router::new().route(
        "/m2m_tokens/verify",
        post(move |Json(body): Json<serde_json::Value>| {
            let token = token.clone();
            async move {
                if body["token"] == token.as_str() {
                    (
                        StatusCode::OK,
                        Json(clerk_resource("mt_1", "mch_cron_service")),
                    )
                } else {
                    let error = json!({"errors": [{"code": "resource_not_found",
                        "message": "not found", "long_message": "Resource not found"}]});
                    (StatusCode::NOT_FOUND, Json(error))
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// `CLERK_API_URL=http://host/api`: the verify route is not found there, which is no answer
/// about the token: 503, and an error naming the URL and the likely cause.
#[tokio::test(flavor = "current_thread")]
async fn a_wrong_api_path_is_503_with_an_error_naming_the_url() {
    let token = opaque_token();
    let api = backend_api_knowing(token.clone()).await;
    let verifier = |api_url: String| {
        MachineVerifier::builder()
            .clerk_machine_secret_key(MACHINE_KEY)
            .clerk_api_url(api_url)
            .build()
            .unwrap()
    };
    let wrong = app(MachineAuthLayer::new(verifier(format!("{api}/api"))));
    let logs = CapturedLogs::start();
    send_bearer(&wrong, "/cron/run", &token)
        .await
        .assert_rejected(503, "verifier-unavailable", Some(&token));
    let text = logs.text();
    assert!(
        text.contains("ERROR")
            && text.contains(&format!("{api}/api/m2m_tokens/verify"))
            && text.contains("path is probably wrong"),
        "{text}"
    );
    assert!(
        !text.contains(&token) && !text.contains(MACHINE_KEY),
        "{text}"
    );
    drop(logs);

    // The right path: the same token is accepted, an unknown one is 401 as before.
    let right = app(MachineAuthLayer::new(verifier(api)));
    send_bearer(&right, "/cron/run", &token).await.assert_ok();
    send_bearer(&right, "/cron/run", &opaque_token())
        .await
        .assert_rejected(401, "token-invalid", None);
}

/// A server that answers every request 404 with `body` (JSON, or none).
async fn answering_404(body: Option<serde_json::Value>) -> String {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            match body {
                Some(body) => (StatusCode::NOT_FOUND, Json(body)).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Only Clerk's token-not-found code makes a 404 "no such token": a 404 with another code, or
/// none, or no JSON, is the endpoint missing (503).
#[tokio::test]
async fn a_404_without_clerks_token_not_found_code_is_unavailable() {
    let verifier = |api_url: String| {
        MachineVerifier::builder()
            .clerk_machine_secret_key(MACHINE_KEY)
            .clerk_api_url(api_url)
            .build()
            .unwrap()
    };
    for body in [
        None,
        Some(json!({})),
        Some(json!({"errors": [{"code": "route_not_found", "message": "not found"}]})),
        Some(json!({"message": "Not Found"})),
    ] {
        let api = answering_404(body.clone()).await;
        let error = verifier(api).verify(&opaque_token()).await.unwrap_err();
        assert!(
            matches!(
                error,
                AuthError::Unavailable {
                    cause: Unavailable::IntrospectionNotFound,
                    ..
                }
            ),
            "{body:?}: {error:?}"
        );
    }
    let api = answering_404(Some(json!({"errors": [{"code": "resource_not_found"}]}))).await;
    assert_eq!(
        verifier(api).verify(&opaque_token()).await.unwrap_err(),
        AuthError::InvalidToken(InvalidToken::NotActiveAtIssuer)
    );
}

/// Machine B given machine A's key: Clerk knows none of the tokens meant for B, and every one
/// fails 401. After three in a row and none accepted, a warning says so in the CLI's words; at
/// most once a minute (on the verifier's clock).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_machine_key_that_finds_no_token_is_warned_about_once_a_minute() {
    let valid = opaque_token();
    let server = IntrospectionServer::start(Introspection::Clerk(HashMap::new())).await;
    let verifier = MachineVerifier::builder()
        .clerk_machine_secret_key(MACHINE_KEY)
        .clerk_api_url(server.base_url())
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let logs = CapturedLogs::start();
    let warnings = || {
        logs.text()
            .matches("with CLERK_MACHINE_SECRET_KEY set, the issuer knows only the opaque tokens")
            .count()
    };
    let not_found = || async {
        let token = opaque_token();
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            AuthError::InvalidToken(InvalidToken::NotActiveAtIssuer)
        );
        token
    };

    let mut tokens = vec![not_found().await, not_found().await];
    assert_eq!(warnings(), 0, "two are not enough: {}", logs.text());
    tokens.push(not_found().await);
    assert_eq!(warnings(), 1, "{}", logs.text());
    let text = logs.text();
    assert!(
        text.contains("WARN")
            && text.contains("the last 3 opaque tokens were all unknown to Clerk")
            && text.contains(
                "verify with the receiving machine's key, or unset it to verify with \
                 CLERK_SECRET_KEY"
            ),
        "{text}"
    );
    for _ in 0..5 {
        tokens.push(not_found().await);
    }
    tokio::time::advance(Duration::from_secs(59)).await;
    tokens.push(not_found().await);
    assert_eq!(warnings(), 1, "at most once a minute: {}", logs.text());
    tokio::time::advance(Duration::from_secs(2)).await;
    tokens.push(not_found().await);
    assert_eq!(warnings(), 2, "{}", logs.text());

    // An accepted token starts the count over.
    server.set(Introspection::Clerk(HashMap::from([(
        valid.clone(),
        clerk_resource("mt_1", "mch_cron_service"),
    )])));
    tokio::time::advance(Duration::from_secs(61)).await;
    verifier.verify(&valid).await.unwrap();
    tokens.push(not_found().await);
    tokens.push(not_found().await);
    assert_eq!(warnings(), 2, "{}", logs.text());
    tokens.push(not_found().await);
    assert_eq!(warnings(), 3, "{}", logs.text());

    let text = logs.text();
    assert!(!text.contains(MACHINE_KEY), "{text}");
    for token in tokens.iter().chain([&valid]) {
        assert!(!text.contains(token.as_str()), "{text}");
    }
}

/// With the instance key Clerk sees every token of the instance: no such warning. Nor with a
/// machine key whose tokens are sometimes found.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_warning_with_the_instance_key_or_when_tokens_are_found() {
    let valid = opaque_token();
    let server = IntrospectionServer::start(Introspection::Clerk(HashMap::from([(
        valid.clone(),
        clerk_resource("mt_1", "mch_cron_service"),
    )])))
    .await;
    let instance = MachineVerifier::builder()
        .pem_key(TestKey::shared_rsa().public_pem())
        .clerk_secret_key("sk_test_instance_key")
        .clerk_api_url(server.base_url())
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let machine = MachineVerifier::builder()
        .clerk_machine_secret_key(MACHINE_KEY)
        .clerk_api_url(server.base_url())
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let logs = CapturedLogs::start();
    for _ in 0..5 {
        assert!(instance.verify(&opaque_token()).await.is_err());
    }
    for _ in 0..4 {
        machine.verify(&valid).await.unwrap();
        assert!(machine.verify(&opaque_token()).await.is_err());
        assert!(machine.verify(&opaque_token()).await.is_err());
    }
    let text = logs.text();
    assert!(!text.contains("CLERK_MACHINE_SECRET_KEY set"), "{text}");
}
