//! An unusable introspection reply is logged, without the token or our key.

use std::collections::HashMap;

use crate::common::*;
use serde_json::json;
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

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
