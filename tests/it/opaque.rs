//! Opaque tokens through the real layer, against real loopback servers standing in for Clerk's
//! Backend API and an RFC 7662 endpoint.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tower_machine_auth::introspect::Rfc7662Introspector;
use tower_machine_auth::{
    AcceptedTokens, MachineAuthLayer, MachineVerifier, MachineVerifierBuilder,
};

const MACHINE_KEY: &str = "ak_test_machine_secret_key_0123";

/// A Clerk stand-in that knows one valid token, and that token.
async fn clerk_with_one_token() -> (IntrospectionServer, String) {
    let token = opaque_token();
    let tokens = HashMap::from([(
        token.clone(),
        clerk_resource("mt_0123456789abcdef0123456789abcdef", "mch_cron_service"),
    )]);
    (
        IntrospectionServer::start(Introspection::Clerk(tokens)).await,
        token,
    )
}

fn clerk_builder(server: &IntrospectionServer) -> MachineVerifierBuilder {
    MachineVerifier::builder()
        .clerk_machine_secret_key(MACHINE_KEY)
        .clerk_api_url(server.base_url())
}

fn clerk_app(server: &IntrospectionServer) -> axum::Router {
    app(MachineAuthLayer::new(
        clerk_builder(server).build().unwrap(),
    ))
}

fn clerk_answer(token: &str, resource: Value) -> Introspection {
    Introspection::Clerk(HashMap::from([(token.to_owned(), resource)]))
}

#[tokio::test]
async fn clerk_200_accepts_the_token_with_its_identity() {
    let (server, token) = clerk_with_one_token().await;
    let reply = send_bearer(&clerk_app(&server), "/whoami", &token).await;
    reply.assert_ok();
    assert_eq!(reply.body["machine_id"], "mch_cron_service");
    assert_eq!(
        reply.body["token_id"],
        "mt_0123456789abcdef0123456789abcdef"
    );
    assert_eq!(reply.body["token_format"], "opaque");
    assert_eq!(reply.body["scopes"], json!(["mch_reports_api"]));
    assert_eq!(reply.body["claims"], json!({"team": "billing"}));
    let expires_at = reply.body["expires_at"].as_u64().unwrap() as i64;
    assert!(
        (expires_at - (now() + 3600)).abs() <= 2,
        "expiration is in milliseconds at Clerk"
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn clerk_receives_the_request_its_sdk_sends() {
    let (server, token) = clerk_with_one_token().await;
    send_bearer(&clerk_app(&server), "/cron/run", &token)
        .await
        .assert_ok();
    let received = server.last();
    assert_eq!(received.path, "/m2m_tokens/verify");
    assert_eq!(
        received.headers["authorization"],
        format!("Bearer {MACHINE_KEY}")
    );
    assert_eq!(received.headers["clerk-api-version"], "2026-05-12");
    assert_eq!(received.headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&received.body).unwrap(),
        json!({"token": token})
    );

    let versioned = clerk_builder(&server)
        .clerk_api_url(format!("{}/v1/", server.base_url()))
        .build()
        .unwrap();
    send_bearer(&app(MachineAuthLayer::new(versioned)), "/cron/run", &token)
        .await
        .assert_ok();
    assert_eq!(server.last().path, "/v1/m2m_tokens/verify");
}

#[tokio::test]
async fn the_machine_secret_key_wins_over_the_instance_key_from_the_environment() {
    let (server, token) = clerk_with_one_token().await;
    let base_url = server.base_url();
    let verifier = MachineVerifier::builder()
        .env_from(|name| match name {
            "CLERK_SECRET_KEY" => Some("sk_test_instance".to_owned()),
            "CLERK_MACHINE_SECRET_KEY" => Some(MACHINE_KEY.to_owned()),
            "CLERK_API_URL" => Some(base_url.clone()),
            _ => None,
        })
        .build()
        .unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(
        server.last().headers["authorization"],
        format!("Bearer {MACHINE_KEY}")
    );

    let instance_only = MachineVerifier::builder()
        .env_from(|name| match name {
            "CLERK_SECRET_KEY" => Some("sk_test_instance".to_owned()),
            "CLERK_API_URL" => Some(base_url.clone()),
            _ => None,
        })
        .build()
        .unwrap();
    instance_only.verify(&token).await.unwrap();
    assert_eq!(
        server.last().headers["authorization"],
        "Bearer sk_test_instance"
    );
}

#[tokio::test]
async fn clerk_404_is_token_invalid() {
    let (server, _) = clerk_with_one_token().await;
    let unknown = opaque_token();
    send_bearer(&clerk_app(&server), "/cron/run", &unknown)
        .await
        .assert_rejected(401, "token-invalid", Some(&unknown));
}

#[tokio::test]
async fn clerk_200_with_revoked_true_is_token_invalid() {
    let token = opaque_token();
    let resource = with(
        clerk_resource("mt_1", "mch_cron_service"),
        "revoked",
        json!(true),
    );
    let server = IntrospectionServer::start(clerk_answer(&token, resource)).await;
    let reply = send_bearer(&clerk_app(&server), "/cron/run", &token).await;
    reply.assert_rejected(401, "token-invalid", Some(&token));
    assert_eq!(
        reply.body["message"],
        "invalid token: the token was revoked"
    );
}

#[tokio::test]
async fn clerk_200_with_expired_true_or_a_past_expiration_is_token_invalid() {
    let token = opaque_token();
    let expired = with(
        clerk_resource("mt_1", "mch_cron_service"),
        "expired",
        json!(true),
    );
    let past = with(
        clerk_resource("mt_1", "mch_cron_service"),
        "expiration",
        json!((now() - 60) * 1000),
    );
    for resource in [expired, past] {
        let server = IntrospectionServer::start(clerk_answer(&token, resource)).await;
        let reply = send_bearer(&clerk_app(&server), "/cron/run", &token).await;
        reply.assert_rejected(401, "token-invalid", Some(&token));
        assert_eq!(
            reply.body["message"],
            "invalid token: the token has expired at its issuer"
        );
    }
}

#[tokio::test]
async fn clerk_401_means_our_key_is_wrong_503_and_an_error_log() {
    let server = IntrospectionServer::start(Introspection::Status(401)).await;
    let token = opaque_token();
    let (reply, logs) = with_logs(send_bearer(&clerk_app(&server), "/cron/run", &token)).await;
    reply.assert_rejected(503, "verifier-unavailable", Some(&token));
    assert!(logs.contains("ERROR") && logs.contains("refused"), "{logs}");
    assert!(
        !logs.contains(MACHINE_KEY) && !logs.contains(&token),
        "{logs}"
    );
}

#[tokio::test]
async fn clerk_5xx_408_and_429_are_503() {
    for status in [408, 429, 500, 502, 503] {
        let server = IntrospectionServer::start(Introspection::Status(status)).await;
        let reply = send_bearer(&clerk_app(&server), "/cron/run", &opaque_token()).await;
        reply.assert_rejected(503, "verifier-unavailable", None);
        assert_eq!(server.hits(), 1, "status {status} was retried");
    }
}

#[tokio::test]
async fn other_clerk_4xx_statuses_are_token_invalid() {
    for status in [400, 403, 422] {
        let server = IntrospectionServer::start(Introspection::Status(status)).await;
        let reply = send_bearer(&clerk_app(&server), "/cron/run", &opaque_token()).await;
        reply.assert_rejected(401, "token-invalid", None);
        assert_eq!(server.hits(), 1, "status {status} was retried");
    }
}

#[tokio::test]
async fn clerk_replies_that_are_not_the_expected_json_are_token_invalid() {
    let token = opaque_token();
    for body in [
        "<html>bad gateway</html>".to_owned(),
        "{}".to_owned(),
        with(
            clerk_resource("mt_1", "mch_cron_service"),
            "object",
            json!("api_key"),
        )
        .to_string(),
        with(
            clerk_resource("mt_1", "mch_cron_service"),
            "revoked",
            json!("no"),
        )
        .to_string(),
        format!(
            "{{\"object\":\"machine_to_machine_token\",\"padding\":\"{}\"}}",
            "x".repeat(70 * 1024)
        ),
    ] {
        let server = IntrospectionServer::start(Introspection::Raw(body)).await;
        send_bearer(&clerk_app(&server), "/cron/run", &token)
            .await
            .assert_rejected(401, "token-invalid", Some(&token));
    }
}

#[tokio::test(start_paused = true)]
async fn a_clerk_timeout_is_503() {
    let (server, token) = clerk_with_one_token().await;
    server.set_delay(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    send_bearer(&clerk_app(&server), "/cron/run", &token)
        .await
        .assert_rejected(503, "verifier-unavailable", Some(&token));
    assert!(
        started.elapsed() <= Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let verifier = MachineVerifier::builder()
        .clerk_machine_secret_key(MACHINE_KEY)
        .clerk_api_url(format!("http://{closed}"))
        .build()
        .unwrap();
    send_bearer(
        &app(MachineAuthLayer::new(verifier)),
        "/cron/run",
        &opaque_token(),
    )
    .await
    .assert_rejected(503, "verifier-unavailable", None);
}

#[tokio::test]
async fn a_subject_that_is_not_a_machine_is_a_type_mismatch() {
    let token = opaque_token();
    let server =
        IntrospectionServer::start(clerk_answer(&token, clerk_resource("mt_1", "user_2abc"))).await;
    send_bearer(&clerk_app(&server), "/cron/run", &token)
        .await
        .assert_rejected(401, "token-type-mismatch", Some(&token));
}

#[tokio::test]
async fn a_revoked_token_is_rejected_on_the_very_next_request_without_a_cache() {
    let (server, token) = clerk_with_one_token().await;
    let app = clerk_app(&server);
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    server.set(clerk_answer(
        &token,
        with(
            clerk_resource("mt_1", "mch_cron_service"),
            "revoked",
            json!(true),
        ),
    ));
    send_bearer(&app, "/cron/run", &token)
        .await
        .assert_rejected(401, "token-invalid", None);
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn with_the_cache_a_revocation_is_seen_within_the_ttl() {
    let (server, token) = clerk_with_one_token().await;
    let verifier = clerk_builder(&server)
        .clock(tower_machine_auth::clock::TokioClock::new())
        .opaque_token_cache(Duration::from_secs(10))
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    server.set(clerk_answer(
        &token,
        with(
            clerk_resource("mt_1", "mch_cron_service"),
            "revoked",
            json!(true),
        ),
    ));
    tokio::time::advance(Duration::from_secs(9)).await;
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    assert_eq!(server.hits(), 1, "the cached result was not used");
    tokio::time::advance(Duration::from_secs(1)).await;
    send_bearer(&app, "/cron/run", &token)
        .await
        .assert_rejected(401, "token-invalid", None);
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_with_one_token_make_one_upstream_call() {
    let (server, token) = clerk_with_one_token().await;
    server.set_delay(Duration::from_millis(200));
    let app = clerk_app(&server);
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (app, token) = (app.clone(), token.clone());
        requests.spawn(async move { send_bearer(&app, "/cron/run", &token).await.status });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn after_five_failures_the_breaker_stops_calls_until_the_probe() {
    let (server, token) = clerk_with_one_token().await;
    server.set(Introspection::Status(500));
    let verifier = clerk_builder(&server).build().unwrap();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    for _ in 0..5 {
        send_bearer(&app, "/cron/run", &token)
            .await
            .assert_rejected(503, "verifier-unavailable", None);
    }
    assert_eq!(server.hits(), 5);
    for _ in 0..20 {
        let reply = send_bearer(&app, "/cron/run", &token).await;
        reply.assert_rejected(503, "verifier-unavailable", None);
        let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=10).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(
        server.hits(),
        5,
        "calls reached the endpoint while the circuit was open"
    );

    server.set(clerk_answer(
        &token,
        clerk_resource("mt_1", "mch_cron_service"),
    ));
    tokio::time::advance(Duration::from_secs(10)).await;
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    assert_eq!(server.hits(), 6, "the probe");
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    assert_eq!(server.hits(), 7, "closed again");
    assert_eq!(verifier.stats().introspections, 7);
}

#[tokio::test]
async fn a_jwt_shaped_token_never_falls_back_to_introspection() {
    let (clerk, _) = clerk_with_one_token().await;
    let rfc7662 = IntrospectionServer::start(Introspection::Rfc7662(HashMap::new())).await;
    let verifier = clerk_builder(&clerk)
        .pem_key(TestKey::shared_rsa().public_pem())
        .introspector(
            Rfc7662Introspector::builder(format!("{}/introspect", rfc7662.base_url()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    let forged = TestKey::rsa().token("k", &claims());
    send_bearer(&app, "/cron/run", &forged)
        .await
        .assert_rejected(401, "token-invalid", Some(&forged));
    let user = TestKey::shared_rsa().token("k", &with(claims(), "sub", json!("user_1")));
    send_bearer(&app, "/cron/run", &user)
        .await
        .assert_rejected(401, "token-type-mismatch", None);
    assert_eq!((clerk.hits(), rfc7662.hits()), (0, 0));
    send_bearer(
        &app,
        "/cron/run",
        &TestKey::shared_rsa().token("k", &claims()),
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn one_layer_accepts_both_formats_and_each_layer_can_narrow_them() {
    let (server, token) = clerk_with_one_token().await;
    let verifier = clerk_builder(&server)
        .pem_key(TestKey::shared_rsa().public_pem())
        .build()
        .unwrap();
    let jwt = TestKey::shared_rsa().token("k", &claims());

    let both = app(MachineAuthLayer::new(verifier.clone()));
    assert_eq!(
        send_bearer(&both, "/whoami", &jwt).await.body["token_format"],
        "jwt"
    );
    assert_eq!(
        send_bearer(&both, "/whoami", &token).await.body["token_format"],
        "opaque"
    );

    let hits = server.hits();
    let jwt_only = app(MachineAuthLayer::new(verifier.clone()).accept(AcceptedTokens::Jwt));
    send_bearer(&jwt_only, "/cron/run", &jwt).await.assert_ok();
    send_bearer(&jwt_only, "/cron/run", &opaque_token())
        .await
        .assert_rejected(401, "token-type-mismatch", None);
    assert_eq!(
        server.hits(),
        hits,
        "a JWT-only layer called the introspection endpoint"
    );

    let opaque_only = app(MachineAuthLayer::new(verifier).accept(AcceptedTokens::Opaque));
    send_bearer(&opaque_only, "/cron/run", &token)
        .await
        .assert_ok();
    send_bearer(&opaque_only, "/cron/run", &jwt)
        .await
        .assert_rejected(401, "token-type-mismatch", None);
}

#[tokio::test]
async fn a_cached_token_still_respects_the_layers_accepted_formats() {
    let (server, token) = clerk_with_one_token().await;
    let verifier = clerk_builder(&server)
        .opaque_token_cache(Duration::from_secs(60))
        .build()
        .unwrap();
    send_bearer(
        &app(MachineAuthLayer::new(verifier.clone())),
        "/cron/run",
        &token,
    )
    .await
    .assert_ok();
    let jwt_only = app(MachineAuthLayer::new(verifier.clone()).accept(AcceptedTokens::Jwt));
    send_bearer(&jwt_only, "/cron/run", &token)
        .await
        .assert_rejected(401, "token-type-mismatch", None);
    assert_eq!(verifier.stats().cache_hits, 1);
}

#[tokio::test]
async fn an_opaque_only_verifier_refuses_jwts() {
    let (server, _) = clerk_with_one_token().await;
    let jwt = TestKey::shared_rsa().token("k", &claims());
    send_bearer(&clerk_app(&server), "/cron/run", &jwt)
        .await
        .assert_rejected(401, "token-type-mismatch", None);
    let no_opaque = app(MachineAuthLayer::new(pem_verifier()));
    send_bearer(&no_opaque, "/cron/run", &opaque_token())
        .await
        .assert_rejected(401, "token-type-mismatch", None);
}

mod rfc7662 {
    use super::*;
    use base64::Engine;

    async fn endpoint(tokens: &[(&str, Value)]) -> IntrospectionServer {
        let tokens = tokens
            .iter()
            .map(|(t, v)| ((*t).to_owned(), v.clone()))
            .collect();
        IntrospectionServer::start(Introspection::Rfc7662(tokens)).await
    }

    fn introspecting_app(
        server: &IntrospectionServer,
        configure: fn(
            tower_machine_auth::introspect::Rfc7662IntrospectorBuilder,
        ) -> tower_machine_auth::introspect::Rfc7662IntrospectorBuilder,
    ) -> axum::Router {
        let introspector = configure(
            Rfc7662Introspector::builder(format!("{}/oauth2/introspect", server.base_url()))
                .client_credentials("cron api", "s3cret:value"),
        )
        .build()
        .unwrap();
        app(MachineAuthLayer::new(
            MachineVerifier::builder()
                .introspector(introspector)
                .build()
                .unwrap(),
        ))
    }

    fn active(sub: &str) -> Value {
        json!({
            "active": true, "sub": sub, "client_id": "cron-client", "scope": "mch_reports_api read",
            "exp": now() + 600, "iat": now(), "iss": "https://auth.example.test",
            "aud": "https://api.example.test", "jti": "tok-1", "token_type": "Bearer"
        })
    }

    #[tokio::test]
    async fn an_active_token_is_accepted_with_its_identity() {
        let server = endpoint(&[("opaque-token-1", active("mch_cron_service"))]).await;
        let reply = send_bearer(
            &introspecting_app(&server, |b| b),
            "/whoami",
            "opaque-token-1",
        )
        .await;
        reply.assert_ok();
        assert_eq!(reply.body["machine_id"], "mch_cron_service");
        assert_eq!(reply.body["token_id"], "tok-1");
        assert_eq!(reply.body["token_format"], "opaque");
        assert_eq!(reply.body["scopes"], json!(["mch_reports_api", "read"]));
        assert_eq!(reply.body["issuer"], "https://auth.example.test");
        assert_eq!(reply.body["claims"]["client_id"], "cron-client");
        assert_eq!(reply.body["claims"]["token_type"], "Bearer");
    }

    #[tokio::test]
    async fn the_request_is_form_encoded_with_basic_client_credentials() {
        let server = endpoint(&[("opaque+token/1=", active("mch_cron_service"))]).await;
        send_bearer(
            &introspecting_app(&server, |b| b),
            "/cron/run",
            "opaque+token/1=",
        )
        .await
        .assert_ok();
        let received = server.last();
        assert_eq!(received.path, "/oauth2/introspect");
        assert_eq!(
            received.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            received.body,
            "token=opaque%2Btoken%2F1%3D&token_type_hint=access_token"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("cron+api:s3cret%3Avalue");
        assert_eq!(received.headers["authorization"], format!("Basic {basic}"));
    }

    #[tokio::test]
    async fn inactive_tokens_are_token_invalid() {
        let server = endpoint(&[]).await;
        send_bearer(
            &introspecting_app(&server, |b| b),
            "/cron/run",
            "unknown-token",
        )
        .await
        .assert_rejected(401, "token-invalid", Some("unknown-token"));
    }

    #[tokio::test]
    async fn active_must_be_the_json_boolean_true() {
        for reply in [
            json!({"active": "true", "sub": "mch_a"}),
            json!({"sub": "mch_a"}),
            json!({"active": 1}),
        ] {
            let server = endpoint(&[("t", reply)]).await;
            send_bearer(&introspecting_app(&server, |b| b), "/cron/run", "t")
                .await
                .assert_rejected(401, "token-invalid", None);
        }
    }

    #[tokio::test]
    async fn refused_client_credentials_are_503() {
        for status in [401, 403] {
            let server = IntrospectionServer::start(Introspection::Status(status)).await;
            send_bearer(&introspecting_app(&server, |b| b), "/cron/run", "t")
                .await
                .assert_rejected(503, "verifier-unavailable", None);
        }
    }

    #[tokio::test]
    async fn issuer_and_audience_are_checked_when_configured() {
        let server = endpoint(&[("t", active("mch_cron_service"))]).await;
        let strict = |b: tower_machine_auth::introspect::Rfc7662IntrospectorBuilder| {
            b.issuer("https://auth.example.test")
                .audiences(["https://api.example.test"])
        };
        send_bearer(&introspecting_app(&server, strict), "/cron/run", "t")
            .await
            .assert_ok();
        let other_issuer = |b: tower_machine_auth::introspect::Rfc7662IntrospectorBuilder| {
            b.issuer("https://evil.example.test")
        };
        send_bearer(&introspecting_app(&server, other_issuer), "/cron/run", "t")
            .await
            .assert_rejected(401, "token-verification-failed", None);
        let other_audience = |b: tower_machine_auth::introspect::Rfc7662IntrospectorBuilder| {
            b.audiences(["https://other.example.test"])
        };
        send_bearer(
            &introspecting_app(&server, other_audience),
            "/cron/run",
            "t",
        )
        .await
        .assert_rejected(401, "token-verification-failed", None);
    }

    #[tokio::test]
    async fn expired_tokens_and_non_machine_subjects_are_rejected() {
        let server = endpoint(&[
            (
                "expired",
                with(active("mch_cron_service"), "exp", json!(now() - 60)),
            ),
            ("user", active("user_123")),
        ])
        .await;
        let app = introspecting_app(&server, |b| b);
        send_bearer(&app, "/cron/run", "expired")
            .await
            .assert_rejected(401, "token-invalid", None);
        send_bearer(&app, "/cron/run", "user")
            .await
            .assert_rejected(401, "token-type-mismatch", None);
    }

    #[tokio::test]
    async fn with_clerk_configured_too_mt_tokens_go_to_clerk_and_the_rest_here() {
        let (clerk, mt) = clerk_with_one_token().await;
        let server = endpoint(&[("other-token", active("mch_cron_service"))]).await;
        let verifier = clerk_builder(&clerk)
            .introspector(
                Rfc7662Introspector::builder(server.base_url())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let app = app(MachineAuthLayer::new(verifier));
        send_bearer(&app, "/cron/run", &mt).await.assert_ok();
        send_bearer(&app, "/cron/run", "other-token")
            .await
            .assert_ok();
        assert_eq!((clerk.hits(), server.hits()), (1, 1));
    }
}

/// Runs `future` with every log event captured, and returns the logs too.
async fn with_logs<F: std::future::Future>(future: F) -> (F::Output, String) {
    let captured = CapturedLogs::start();
    let output = future.await;
    (output, captured.text())
}
