//! Every row of the response contract, through the real layer in an Axum app with real keys.

use crate::common::*;
use axum::body::Body;
use axum::http::Request;
use serde_json::json;
use tower::{Service, ServiceExt};
use tower_machine_auth::{AuthError, MachineAuthLayer, MachineVerifier, Reason};

fn token(claims: &serde_json::Value) -> String {
    TestKey::shared_rsa().token("ins_test", claims)
}

fn default_app() -> axum::Router {
    app(MachineAuthLayer::new(pem_verifier()))
}

#[tokio::test]
async fn valid_machine_token_reaches_the_handler_with_its_identity() {
    let claims = with(claims(), "role", json!("svc"));
    let reply = send_bearer(&default_app(), "/whoami", &token(&claims)).await;
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
    let reply = send_bearer(&default_app(), "/cron/run", &token(&claims)).await;
    assert_eq!(reply.body, json!({"message": "Success"}));
}

#[tokio::test]
async fn no_authorization_header_is_token_missing() {
    let reply = send(&default_app(), "/cron/run", &[]).await;
    reply.assert_rejected(401, "token-missing", None);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body["error"], "unauthorized");
}

#[tokio::test]
async fn other_schemes_and_bare_tokens_are_token_missing() {
    let jwt = token(&claims());
    for value in [
        "Basic dXNlcjpwYXNz".to_owned(),
        "Digest x".to_owned(),
        jwt.clone(),
    ] {
        let reply = send(&default_app(), "/cron/run", &[&value]).await;
        reply.assert_rejected(401, "token-missing", Some(&jwt));
    }
}

#[tokio::test]
async fn several_authorization_headers_are_malformed() {
    let jwt = token(&claims());
    let bearer = format!("Bearer {jwt}");
    let reply = send(&default_app(), "/cron/run", &[&bearer, &bearer]).await;
    reply.assert_rejected(400, "malformed-request", Some(&jwt));
}

#[tokio::test]
async fn empty_or_ill_formed_bearer_credentials_are_malformed() {
    let jwt = token(&claims());
    for value in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {jwt} extra"),
        format!("Bearer\t{jwt}"),
        format!("Bearer {jwt}, Bearer {jwt}"),
    ] {
        let reply = send(&default_app(), "/cron/run", &[&value]).await;
        reply.assert_rejected(400, "malformed-request", Some(&jwt));
    }
}

#[tokio::test]
async fn token_in_header_and_query_is_malformed_and_query_alone_is_missing() {
    let jwt = token(&claims());
    let both = send(
        &default_app(),
        &format!("/cron/run?access_token={jwt}"),
        &[&format!("Bearer {jwt}")],
    )
    .await;
    both.assert_rejected(400, "malformed-request", Some(&jwt));
    let query_only = send(
        &default_app(),
        &format!("/cron/run?access_token={jwt}"),
        &[],
    )
    .await;
    query_only.assert_rejected(401, "token-missing", Some(&jwt));
}

#[tokio::test]
async fn non_machine_tokens_are_type_mismatches() {
    let user_token = token(&with(claims(), "sub", json!("user_2abc")));
    for credential in [
        user_token.as_str(),
        "ak_live_machine_secret_sent_by_mistake",
        "oat_some_oauth_token",
        "sk_test_instance_secret",
        "mt_0123456789abcdef0123456789abcdef",
    ] {
        let reply = send_bearer(&default_app(), "/cron/run", credential).await;
        reply.assert_rejected(401, "token-type-mismatch", Some(credential));
    }
}

#[tokio::test]
async fn bad_signature_is_token_invalid() {
    let other_key = TestKey::rsa();
    let forged = other_key.token("ins_test", &claims());
    let reply = send_bearer(&default_app(), "/cron/run", &forged).await;
    reply.assert_rejected(401, "token-invalid", Some(&forged));
    assert_eq!(
        reply.body["message"],
        "invalid token: the token's signature is invalid"
    );
}

#[tokio::test]
async fn header_checks_are_token_invalid() {
    let key = TestKey::shared_rsa();
    let payload = claims().to_string();
    for header in [
        json!({"alg":"RS512","typ":"JWT"}),
        json!({"alg":"none"}),
        json!({"alg":"RS256","typ":"at+jwt"}),
        json!({"alg":"RS256","cat":"cl_B7d4PD111AAA"}),
        json!({"alg":"RS256","crit":["exp"]}),
    ] {
        let alg = header["alg"].as_str().unwrap();
        let signing_alg = if alg == "none" { "RS256" } else { alg };
        let token = key.sign_raw(signing_alg, &header.to_string(), &payload);
        let reply = send_bearer(&default_app(), "/cron/run", &token).await;
        reply.assert_rejected(401, "token-invalid", Some(&token));
    }
}

#[tokio::test]
async fn malformed_jwt_is_token_invalid() {
    let jwt = token(&claims());
    let (head, _) = jwt.split_once('.').unwrap();
    for malformed in [
        format!("{head}.bm90anNvbg.c2ln"),
        "eyJh.eyJh.eyJh".to_owned(),
    ] {
        let reply = send_bearer(&default_app(), "/cron/run", &malformed).await;
        reply.assert_rejected(401, "token-invalid", None);
    }
}

#[tokio::test]
async fn expired_token_is_token_expired() {
    let now = now();
    let expired = token(&with(claims_at(now - 7200), "exp", json!(now - 60)));
    let reply = send_bearer(&default_app(), "/cron/run", &expired).await;
    reply.assert_rejected(401, "token-expired", Some(&expired));
}

#[tokio::test]
async fn future_nbf_is_token_not_active() {
    let early = token(&with(claims(), "nbf", json!(now() + 600)));
    let reply = send_bearer(&default_app(), "/cron/run", &early).await;
    reply.assert_rejected(401, "token-not-active", Some(&early));
}

#[tokio::test]
async fn forged_and_expired_token_says_invalid_not_expired() {
    let now = now();
    let forged = TestKey::rsa().token(
        "ins_test",
        &with(claims_at(now - 7200), "exp", json!(now - 60)),
    );
    let reply = send_bearer(&default_app(), "/cron/run", &forged).await;
    reply.assert_rejected(401, "token-invalid", Some(&forged));
    assert!(!reply.text.contains("expired"), "{}", reply.text);
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_token_verification_failed() {
    let verifier = MachineVerifier::builder()
        .pem_key(TestKey::shared_rsa().public_pem())
        .issuer("https://clerk.example.test")
        .audiences(["mch_reports_api"])
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    let good = with(claims(), "aud", json!(["mch_reports_api"]));
    send_bearer(&app, "/cron/run", &token(&good))
        .await
        .assert_ok();
    for claims in [
        with(good.clone(), "iss", json!("https://evil.example.test")),
        with(good.clone(), "aud", json!("mch_other")),
        without(good.clone(), "aud"),
    ] {
        let reply = send_bearer(&app, "/cron/run", &token(&claims)).await;
        reply.assert_rejected(401, "token-verification-failed", None);
    }
}

#[tokio::test]
async fn machine_outside_the_allow_list_is_insufficient_scope() {
    let layer = MachineAuthLayer::new(pem_verifier())
        .allow_machines(["mch_reports_api"])
        .unwrap();
    let reply = send_bearer(&app(layer), "/cron/run", &token(&claims())).await;
    reply.assert_rejected(403, "insufficient-scope", None);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="insufficient_scope""#)
    );

    let layer = MachineAuthLayer::new(pem_verifier())
        .allow_machines(["mch_cron_service"])
        .unwrap();
    send_bearer(&app(layer), "/cron/run", &token(&claims()))
        .await
        .assert_ok();
}

#[tokio::test]
async fn missing_scope_is_insufficient_scope_with_the_scope_named() {
    let layer = MachineAuthLayer::new(pem_verifier()).require_scopes(["mch_payroll"]);
    let reply = send_bearer(&app(layer), "/cron/run", &token(&claims())).await;
    reply.assert_rejected(403, "insufficient-scope", None);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="mch_payroll""#)
    );
    let layer = MachineAuthLayer::new(pem_verifier()).require_scopes(["mch_reports_api"]);
    send_bearer(&app(layer), "/cron/run", &token(&claims()))
        .await
        .assert_ok();
}

#[tokio::test]
async fn allow_list_rejects_ids_that_are_not_machine_ids() {
    let error = MachineAuthLayer::new(pem_verifier())
        .allow_machines(["user_123"])
        .unwrap_err();
    assert!(error.to_string().contains("not a machine id"), "{error}");
    let error = MachineAuthLayer::new(pem_verifier())
        .allow_machines(Vec::<String>::new())
        .unwrap_err();
    assert!(error.to_string().contains("at least one"), "{error}");
}

#[tokio::test]
async fn keys_unavailable_is_503_with_retry_after() {
    let server = JwksServer::start(JwksReply::Status(500)).await;
    let verifier = MachineVerifier::from_jwks_url(&server.url()).unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    let jwt = token(&claims());
    let reply = send_bearer(&app, "/cron/run", &jwt).await;
    reply.assert_rejected(503, "verifier-unavailable", Some(&jwt));
    assert_eq!(reply.body["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn optional_mode_passes_missing_credentials_but_not_invalid_ones() {
    let layer = MachineAuthLayer::new(pem_verifier()).optional();
    let app = app(layer);
    let reply = send(&app, "/maybe", &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (200, "anonymous")
    );
    let reply = send_bearer(&app, "/maybe", &token(&claims())).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text.as_str()),
        (200, "mch_cron_service")
    );
    let forged = TestKey::rsa().token("ins_test", &claims());
    send_bearer(&app, "/maybe", &forged)
        .await
        .assert_rejected(401, "token-invalid", None);
    send(&app, "/maybe", &["Bearer"])
        .await
        .assert_rejected(400, "malformed-request", None);
    // The non-optional extractor still refuses a request that carried no credential.
    send(&app, "/whoami", &[])
        .await
        .assert_rejected(401, "token-missing", None);
}

#[tokio::test]
async fn machines_admitted_one_by_one() {
    let id = |id: &str| tower_machine_auth::MachineId::parse(id).unwrap();
    let jwt = token(&claims());
    let others = app(MachineAuthLayer::new(pem_verifier()).allow_machine(id("mch_billing")));
    send_bearer(&others, "/whoami", &jwt)
        .await
        .assert_rejected(403, "insufficient-scope", None);
    let both = app(MachineAuthLayer::new(pem_verifier())
        .allow_machine(id("mch_billing"))
        .allow_machine(id("mch_cron_service")));
    send_bearer(&both, "/whoami", &jwt).await.assert_ok();
}

/// A route that uses the extractors with no layer in front of it is a server bug: 500 and an
/// error naming the route, never a 401 that blames a valid token.
#[tokio::test(flavor = "current_thread")]
async fn extractors_without_the_layer_answer_500_and_say_why() {
    let captured = CapturedLogs::start();
    let unguarded = routes();
    let jwt = token(&claims());
    for path in ["/whoami", "/maybe"] {
        let reply = send_bearer(&unguarded, path, &jwt).await;
        assert_eq!(reply.status.as_u16(), 500, "{path}: {}", reply.text);
        assert_eq!(reply.body["error"], "server_error", "{path}");
        assert!(!reply.text.contains(&jwt));
    }
    let logs = captured.text();
    for path in ["/whoami", "/maybe"] {
        assert!(
            logs.contains("without MachineAuthLayer in front of it") && logs.contains(path),
            "no error naming {path}:\n{logs}"
        );
    }
    assert!(logs.contains("ERROR"), "{logs}");
    assert!(!logs.contains(&jwt));
}

#[tokio::test]
async fn rejections_carry_the_typed_error_in_their_extensions() {
    let mut service = tower::ServiceBuilder::new()
        .layer(MachineAuthLayer::new(pem_verifier()))
        .service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        });
    let request = Request::get("/").body(Body::empty()).unwrap();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let error = response.extensions().get::<AuthError>().unwrap();
    assert_eq!(error.reason(), Reason::TokenMissing);
}

#[tokio::test]
async fn works_with_a_plain_hyper_style_service_and_string_bodies() {
    let service = tower::ServiceBuilder::new()
        .layer(MachineAuthLayer::new(pem_verifier()).realm("cron"))
        .service_fn(|request: Request<String>| async move {
            let machine = request
                .extensions()
                .get::<tower_machine_auth::AuthenticatedMachine>()
                .cloned();
            Ok::<_, std::convert::Infallible>(http::Response::new(
                machine.unwrap().machine_id().to_string(),
            ))
        });
    let request = Request::get("/")
        .header("authorization", format!("Bearer {}", token(&claims())))
        .body(String::new())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.body().as_inner().map(String::as_str),
        Some("mch_cron_service")
    );
    let request = Request::get("/").body(String::new()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="cron""#
    );
}

#[tokio::test]
async fn verifier_works_without_tower() {
    let verifier = pem_verifier();
    let jwt = token(&claims());
    assert_eq!(
        verifier.verify(&jwt).await.unwrap().machine_id().as_str(),
        "mch_cron_service"
    );
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("bearer  {jwt}").parse().unwrap());
    assert!(verifier.authenticate(&headers).await.is_ok());
    assert_eq!(
        verifier
            .authenticate(&http::HeaderMap::new())
            .await
            .unwrap_err(),
        AuthError::MissingCredential
    );
}

#[tokio::test]
async fn the_credential_is_marked_sensitive_for_inner_services() {
    let jwt = token(&claims());
    let service = tower::ServiceBuilder::new()
        .layer(MachineAuthLayer::new(pem_verifier()))
        .service_fn(|request: Request<String>| async move {
            Ok::<_, std::convert::Infallible>(http::Response::new(format!(
                "{:?}",
                request.headers()
            )))
        });
    let request = Request::get("/")
        .header("authorization", format!("Bearer {jwt}"))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response
        .body()
        .as_inner()
        .expect("the inner service's body");
    assert!(headers.contains("Sensitive"), "{headers}");
    assert!(!headers.contains(&jwt));
}
