//! The `test-util` feature: tokens minted by `TestIssuer` through the real layer, its loopback
//! stand-in for Clerk's verify endpoint, paused time, and what happens when it is dropped.
#![cfg(feature = "test-util")]

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tower_machine_auth::clock::TokioClock;
use tower_machine_auth::test_util::TestIssuer;
use tower_machine_auth::{AuthError, MachineAuthLayer, MachineVerifier};

fn issuer_app(issuer: &TestIssuer) -> axum::Router {
    app(MachineAuthLayer::new(issuer.verifier()))
}

#[tokio::test]
async fn a_jwt_is_accepted_by_the_layer_with_its_machine_and_scopes() {
    let issuer = TestIssuer::new();
    let token = issuer
        .jwt("mch_cron")
        .scopes(["mch_reports", "mch_billing"])
        .token_id("mt_nightly")
        .claims(json!({"team": "ops"}))
        .sign();
    let reply = send_bearer(&issuer_app(&issuer), "/whoami", &token).await;
    reply.assert_ok();
    assert_eq!(reply.body["machine_id"], "mch_cron", "{reply:?}");
    assert_eq!(reply.body["scopes"], json!(["mch_reports", "mch_billing"]));
    assert_eq!(reply.body["token_id"], "mt_nightly");
    assert_eq!(reply.body["token_format"], "jwt");
    assert_eq!(reply.body["issuer"], TestIssuer::ISSUER);
    assert_eq!(reply.body["claims"]["team"], "ops");
    let expires_at = reply.body["expires_at"].as_i64().unwrap();
    assert!((expires_at - (now() + 3600)).abs() <= 2, "{reply:?}");
}

#[tokio::test]
async fn a_jwt_carries_clerks_header_and_claims() {
    let issuer = TestIssuer::new();
    let token = issuer.jwt("mch_cron").scopes(["mch_reports"]).sign();
    let part = |n: usize| -> Value {
        let text = token.split('.').nth(n).unwrap();
        serde_json::from_slice(&base64_url(text)).unwrap()
    };
    let header = part(0);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["cat"], M2M_CATEGORY);
    assert!(header["kid"].as_str().unwrap().starts_with("ins_"));
    let claims = part(1);
    assert_eq!(claims["sub"], "mch_cron");
    assert_eq!(claims["scopes"], "mch_reports");
    assert_eq!(claims["iss"], TestIssuer::ISSUER);
    assert!(claims["jti"].as_str().unwrap().starts_with("mt_"));
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - now()).abs() <= 2);
    assert_eq!(claims["nbf"], iat - 5);
    assert_eq!(claims["exp"], iat + 3600);
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn an_expired_jwt_is_refused_as_expired() {
    let issuer = TestIssuer::new();
    let app = issuer_app(&issuer);
    let minute = Duration::from_secs(60);
    let expired = issuer
        .jwt("mch_cron")
        .expires_at(issuer.now() - minute)
        .sign();
    send_bearer(&app, "/whoami", &expired)
        .await
        .assert_rejected(401, "token-expired", Some(&expired));
    let old = issuer
        .jwt("mch_cron")
        .issued_at(issuer.now() - 2 * minute)
        .expires_in(minute)
        .sign();
    send_bearer(&app, "/whoami", &old)
        .await
        .assert_rejected(401, "token-expired", Some(&old));
}

#[tokio::test]
async fn a_jwt_not_valid_yet_is_refused_as_not_active() {
    let issuer = TestIssuer::new();
    let app = issuer_app(&issuer);
    let minute = Duration::from_secs(60);
    for token in [
        issuer
            .jwt("mch_cron")
            .not_before(issuer.now() + minute)
            .sign(),
        issuer
            .jwt("mch_cron")
            .issued_at(issuer.now() + minute)
            .sign(),
    ] {
        send_bearer(&app, "/whoami", &token).await.assert_rejected(
            401,
            "token-not-active",
            Some(&token),
        );
    }
}

#[tokio::test]
async fn replaced_claims_make_tokens_the_layer_refuses() {
    let issuer = TestIssuer::new();
    let app = issuer_app(&issuer);
    let user = issuer
        .jwt("mch_cron")
        .claims(json!({"sub": "user_123"}))
        .sign();
    send_bearer(&app, "/whoami", &user).await.assert_rejected(
        401,
        "token-type-mismatch",
        Some(&user),
    );
    let no_expiry = issuer.jwt("mch_cron").claims(json!({"exp": null})).sign();
    let reply = send_bearer(&app, "/whoami", &no_expiry).await;
    assert_eq!(reply.status, 401, "{reply:?}");
}

#[tokio::test]
async fn an_opaque_token_is_accepted_then_refused_once_revoked() {
    let issuer = TestIssuer::new();
    let app = issuer_app(&issuer);
    let token = issuer
        .opaque("mch_cron")
        .scopes(["mch_reports"])
        .claims(json!({"team": "ops"}))
        .create();
    assert!(token.starts_with("mt_"));
    let reply = send_bearer(&app, "/whoami", &token).await;
    reply.assert_ok();
    assert_eq!(reply.body["machine_id"], "mch_cron", "{reply:?}");
    assert_eq!(reply.body["scopes"], json!(["mch_reports"]));
    assert_eq!(reply.body["token_format"], "opaque");
    assert_eq!(reply.body["claims"], json!({"team": "ops"}));
    assert!(reply.body["token_id"].as_str().unwrap().starts_with("mt_"));

    assert!(issuer.revoke(&token));
    send_bearer(&app, "/whoami", &token)
        .await
        .assert_rejected(401, "token-invalid", Some(&token));
    assert!(issuer.revoke(&token), "revoking twice is harmless");
    assert!(!issuer.revoke(&opaque_token()), "not one of its tokens");
}

#[tokio::test]
async fn an_expired_opaque_token_is_refused() {
    let issuer = TestIssuer::new();
    let token = issuer
        .opaque("mch_cron")
        .expires_at(issuer.now() - Duration::from_secs(1))
        .create();
    send_bearer(&issuer_app(&issuer), "/whoami", &token)
        .await
        .assert_rejected(401, "token-invalid", Some(&token));
}

#[tokio::test]
async fn tokens_of_another_issuer_are_refused() {
    let ours = TestIssuer::new();
    let theirs = TestIssuer::new();
    let app = issuer_app(&ours);
    // Their verifier too, so that their loopback server runs while ours is asked.
    let _their_verifier = theirs.verifier();
    let jwt = theirs.jwt("mch_cron").scopes(["mch_reports"]).sign();
    send_bearer(&app, "/whoami", &jwt)
        .await
        .assert_rejected(401, "token-invalid", Some(&jwt));
    let opaque = theirs.opaque("mch_cron").scopes(["mch_reports"]).create();
    send_bearer(&app, "/whoami", &opaque).await.assert_rejected(
        401,
        "token-invalid",
        Some(&opaque),
    );
    // Each is accepted by its own issuer's verifier.
    send_bearer(&issuer_app(&theirs), "/whoami", &opaque)
        .await
        .assert_ok();
}

#[tokio::test]
async fn the_receiver_check_applies_to_its_tokens() {
    let issuer = TestIssuer::new();
    let verifier = issuer
        .verifier_builder()
        .own_machine_id("mch_reports")
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    for (token, accepted) in [
        (issuer.jwt("mch_cron").scopes(["mch_reports"]).sign(), true),
        (issuer.jwt("mch_cron").scopes(["mch_billing"]).sign(), false),
        (
            issuer.opaque("mch_cron").scopes(["mch_reports"]).create(),
            true,
        ),
        (
            issuer.opaque("mch_cron").scopes(["mch_billing"]).create(),
            false,
        ),
    ] {
        let reply = send_bearer(&app, "/whoami", &token).await;
        if accepted {
            reply.assert_ok();
        } else {
            assert_eq!(reply.status, 401, "{reply:?}");
        }
    }
}

/// The stand-in answers as Clerk's Backend API: paths with and without `/v1`, the resource with
/// `Content-Type: application/json` exactly, 404 for unknown and revoked tokens, 401 for a
/// missing or wrong key, Clerk's error shape.
#[tokio::test]
async fn the_loopback_server_answers_as_clerk() {
    let issuer = TestIssuer::new();
    let api = issuer.api_url();
    assert!(api.starts_with("http://127.0.0.1:"), "{api}");
    let token = issuer
        .opaque("mch_cron")
        .scopes(["mch_reports"])
        .token_id("mt_0123456789abcdef0123456789abcdef")
        .expires_in(Duration::from_secs(60))
        .create();
    let client = reqwest::Client::new();
    let verify = |path: &str, key: Option<&str>, token: &str| {
        let mut request = client
            .post(format!("{api}{path}"))
            .header("content-type", "application/json")
            .body(json!({ "token": token }).to_string());
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (status, content_type, body)
        }
    };
    let key = Some(issuer.machine_secret_key());
    for path in ["/v1/m2m_tokens/verify", "/m2m_tokens/verify"] {
        let (status, content_type, body) = verify(path, key, &token).await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        assert_eq!(body["object"], "machine_to_machine_token");
        assert_eq!(body["id"], "mt_0123456789abcdef0123456789abcdef");
        assert_eq!(body["subject"], "mch_cron");
        assert_eq!(body["scopes"], json!(["mch_reports"]));
        assert_eq!(body["claims"], Value::Null);
        assert_eq!(body["revoked"], false);
        assert_eq!(body["revocation_reason"], Value::Null);
        assert_eq!(body["expired"], false);
        assert_eq!(
            body["expiration"].as_i64().unwrap() - body["created_at"].as_i64().unwrap(),
            60_000
        );
        assert!(body["last_used_at"].is_i64());
        assert!(
            body.get("token").is_none(),
            "verify never returns the token"
        );
    }

    let (status, content_type, body) = verify("/v1/m2m_tokens/verify", key, &opaque_token()).await;
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
    assert_eq!(body["errors"][0]["code"], "resource_not_found");
    assert!(body["errors"][0]["long_message"].is_string());

    for wrong in [None, Some("ak_someone_else"), Some("sk_test_instance")] {
        let (status, _, body) = verify("/v1/m2m_tokens/verify", wrong, &token).await;
        assert_eq!(status, 401, "{wrong:?}");
        assert_eq!(body["errors"][0]["code"], "machine_secret_key_invalid");
    }

    issuer.revoke(&token);
    let (status, _, body) = verify("/v1/m2m_tokens/verify", key, &token).await;
    assert_eq!(status, 404);
    assert_eq!(body["errors"][0]["code"], "resource_not_found");

    let other_route = client
        .get(format!("{api}/v1/m2m_tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(other_route.status(), 404);
    let not_json = client
        .post(format!("{api}/v1/m2m_tokens/verify"))
        .bearer_auth(issuer.machine_secret_key())
        .body("token=mt_1")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
}

/// An application configured by Clerk's variables trusts the issuer as its own verifier does.
#[tokio::test]
async fn an_application_configured_by_clerks_variables_accepts_its_tokens() {
    let issuer = TestIssuer::new();
    let vars = [
        ("CLERK_JWT_KEY", issuer.public_key_pem().to_owned()),
        ("CLERK_API_URL", issuer.api_url()),
        (
            "CLERK_MACHINE_SECRET_KEY",
            issuer.machine_secret_key().to_owned(),
        ),
    ];
    let verifier = MachineVerifier::builder()
        .env_from(|name| {
            vars.iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| value.clone())
        })
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    for token in [
        issuer.jwt("mch_cron").sign(),
        issuer.opaque("mch_cron").create(),
    ] {
        send_bearer(&app, "/whoami", &token).await.assert_ok();
    }
}

/// Paused time: the issuer, its verifier and its loopback server all read Tokio's clock.
#[tokio::test(start_paused = true)]
async fn paused_time_expires_jwts_and_opaque_tokens() {
    let issuer = TestIssuer::with_clock(TokioClock::new());
    let app = issuer_app(&issuer);
    let minute = Duration::from_secs(60);
    let jwt = issuer.jwt("mch_cron").expires_in(minute).sign();
    let opaque = issuer.opaque("mch_cron").expires_in(minute).create();
    for token in [&jwt, &opaque] {
        send_bearer(&app, "/whoami", token).await.assert_ok();
    }
    tokio::time::advance(2 * minute).await;
    send_bearer(&app, "/whoami", &jwt)
        .await
        .assert_rejected(401, "token-expired", Some(&jwt));
    send_bearer(&app, "/whoami", &opaque).await.assert_rejected(
        401,
        "token-invalid",
        Some(&opaque),
    );
    // Minted after the advance, on the same clock: valid.
    let fresh = issuer.jwt("mch_cron").expires_in(minute).sign();
    send_bearer(&app, "/whoami", &fresh).await.assert_ok();
}

/// Outside a runtime the verifier checks JWTs only; opaque tokens are not its to verify.
#[test]
fn a_verifier_made_outside_a_runtime_verifies_jwts_only() {
    let issuer = TestIssuer::new();
    let verifier = issuer.verifier();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let jwt = issuer.jwt("mch_cron").sign();
        assert!(verifier.verify(&jwt).await.is_ok());
        let opaque = issuer.opaque("mch_cron").create();
        assert!(matches!(
            verifier.verify(&opaque).await,
            Err(AuthError::TokenTypeMismatch(_))
        ));
        // Made inside the runtime, a verifier checks both.
        assert!(issuer.verifier().verify(&opaque).await.is_ok());
    });
}

/// Dropping the issuer stops its server: its port refuses connections.
#[tokio::test]
async fn dropping_the_issuer_stops_its_server() {
    let issuer = TestIssuer::new();
    let verifier = issuer.verifier();
    let token = issuer.opaque("mch_cron").create();
    assert!(verifier.verify(&token).await.is_ok(), "a pooled connection");
    let addr = issuer.api_url().strip_prefix("http://").unwrap().to_owned();
    drop(issuer);
    let mut refused = false;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the server still accepts connections at {addr}");
    // The verifier's pooled connection was closed too: the call fails, it does not hang.
    let outcome = tokio::time::timeout(Duration::from_secs(10), verifier.verify(&token)).await;
    assert!(
        matches!(outcome, Ok(Err(AuthError::Unavailable { .. }))),
        "{outcome:?}"
    );
}

/// The README's "Testing" example, as it stands there (the README marks it `ignore`: rustdoc
/// does not compile `#[tokio::test]` functions).
mod readme_testing_example {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::{Router, routing::post};
    use tower::ServiceExt; // oneshot
    use tower_machine_auth::test_util::TestIssuer;
    use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};

    /// The application's router; production passes `MachineVerifier::builder().env().build()?`.
    fn app(verifier: MachineVerifier) -> Router {
        Router::new()
            .route("/cron/run", post(run_cron))
            .layer(MachineAuthLayer::new(verifier))
    }

    async fn run_cron(machine: AuthenticatedMachine) -> String {
        format!("run by {}", machine.machine_id())
    }

    #[tokio::test]
    async fn the_cron_machine_may_run_the_cron() {
        let issuer = TestIssuer::new();
        let app = app(issuer.verifier());

        let token = issuer.jwt("mch_cron").scopes(["mch_reports"]).sign();
        let request = Request::post("/cron/run")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(body, "run by mch_cron");
    }
}
