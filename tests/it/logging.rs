//! Tokens and secrets never appear in logs, even at trace level.

use crate::common::*;
use serde_json::json;
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

#[tokio::test(flavor = "current_thread")]
async fn tokens_and_secret_keys_never_reach_the_logs() {
    let captured = CapturedLogs::start();

    let secret = "sk_test_d0NotLogThisSecretValue";
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(JwksReply::Status(401)).await;
    let clerk = MachineVerifier::builder()
        .clerk_secret_key(secret)
        .clerk_api_url(format!("http://{}", server.addr))
        .build()
        .unwrap();
    let clerk_app = app(MachineAuthLayer::new(clerk));
    let pem_app = app(MachineAuthLayer::new(pem_verifier()));

    let now = now();
    let tokens = [
        key.token("k", &claims()),
        TestKey::rsa().token("k", &claims()),
        key.token("k", &with(claims_at(now - 7200), "exp", json!(now - 60))),
        key.token("k", &with(claims(), "sub", json!("user_123"))),
        "mt_0123456789abcdef0123456789abcdef".to_owned(),
        "ak_machine_secret_key_value".to_owned(),
    ];
    for token in &tokens {
        send_bearer(&clerk_app, "/cron/run", token).await;
        send_bearer(&pem_app, "/cron/run", token).await;
    }

    let logs = captured.text();
    assert!(
        logs.contains("Clerk refused CLERK_SECRET_KEY"),
        "the wrong-key error was not logged:\n{logs}"
    );
    assert!(
        logs.contains("machine request rejected"),
        "rejections were not logged:\n{logs}"
    );
    assert!(!logs.contains(secret), "the secret key was logged:\n{logs}");
    assert!(
        !logs.contains("d0NotLogThis"),
        "part of the secret key was logged"
    );
    for token in &tokens {
        assert!(
            !logs.contains(token.as_str()),
            "a token was logged:\n{logs}"
        );
        for segment in token.split('.').filter(|s| s.len() > 16) {
            assert!(
                !logs.contains(segment),
                "a token segment was logged:\n{logs}"
            );
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn introspection_secrets_and_opaque_tokens_never_reach_logs_or_responses() {
    let captured = CapturedLogs::start();

    let machine_key = "ak_d0NotLogThisMachineSecret";
    let client_secret = "d0NotLogThisClientSecret";
    let token = opaque_token();
    let mut bodies = String::new();
    for answer in [
        Introspection::Status(401),
        Introspection::Status(500),
        Introspection::Raw("not json".to_owned()),
        Introspection::Clerk(Default::default()),
    ] {
        let clerk = IntrospectionServer::start(answer.clone()).await;
        let rfc7662 = IntrospectionServer::start(answer).await;
        let verifier = MachineVerifier::builder()
            .clerk_machine_secret_key(machine_key)
            .clerk_api_url(clerk.base_url())
            .introspector(
                tower_machine_auth::introspect::Rfc7662Introspector::builder(rfc7662.base_url())
                    .client_credentials("client", client_secret)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(!format!("{verifier:?}").contains("d0NotLog"));
        let app = app(MachineAuthLayer::new(verifier));
        for credential in [token.as_str(), "another-opaque-token-value"] {
            let reply = send_bearer(&app, "/cron/run", credential).await;
            assert!(reply.status.is_client_error() || reply.status.is_server_error());
            bodies.push_str(&reply.text);
            bodies.push_str(&format!("{:?}", reply.headers));
        }
    }

    let logs = captured.text();
    assert!(
        logs.contains("refused"),
        "the refused credentials were not logged:\n{logs}"
    );
    assert!(
        logs.contains("token introspection failed"),
        "failures were not logged:\n{logs}"
    );
    for secret in ["d0NotLog", &token, "another-opaque-token-value"] {
        assert!(!logs.contains(secret), "`{secret}` was logged:\n{logs}");
        assert!(
            !bodies.contains(secret),
            "`{secret}` was in a response:\n{bodies}"
        );
    }
}
