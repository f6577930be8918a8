//! Every row of the response contract, through the real layer in an Axum app.

mod common;

use common::*;
use serde_json::json;
use tower_machine_auth::MachineAuthLayer;

#[tokio::test]
async fn valid_machine_token_reaches_the_handler_with_its_identity() {
    let key = TestKey::shared_rsa();
    let app = app(MachineAuthLayer::new(pem_verifier()));
    let claims = with(claims(), "role", json!("svc"));
    let token = key.token("ins_test", &claims);
    let reply = send_bearer(&app, "/whoami", &token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({
            "machine_id": "mch_cron_service",
            "token_id": claims["jti"],
            "token_format": "jwt",
            "scopes": ["mch_reports_api", "mch_billing"],
            "claims": {"scopes": "mch_reports_api mch_billing", "role": "svc"},
            "expires_at": claims["exp"],
            "issued_at": claims["iat"],
            "issuer": "https://clerk.example.test",
        })
    );
}
