//! Clerk parity through the real layer: `null` optional claims, other Clerk token kinds, and the
//! receiver check, with real keys and (for opaque tokens) a real loopback stand-in for Clerk.

use crate::common::*;
use serde_json::{Value, json};
use tower_machine_auth::{
    AuthenticatedMachine, MachineAuthLayer, MachineVerifier, MachineVerifierBuilder,
};

const OWN_ID: &str = "mch_reports_api";

fn key() -> &'static TestKey {
    TestKey::shared_rsa()
}

fn pem_builder() -> MachineVerifierBuilder {
    MachineVerifier::builder().pem_key(key().public_pem())
}

fn layer_app(builder: MachineVerifierBuilder) -> axum::Router {
    app(MachineAuthLayer::new(builder.build().unwrap()))
}

fn signed(header: &Value, claims: &Value) -> String {
    key().sign_raw("RS256", &header.to_string(), &claims.to_string())
}

fn m2m_header() -> Value {
    json!({"alg": "RS256", "kid": "ins_test", "typ": "JWT", "cat": M2M_CATEGORY})
}

async fn assert_reason(app: &axum::Router, token: &str, status: u16, reason: &str) {
    send_bearer(app, "/cron/run", token)
        .await
        .assert_rejected(status, reason, Some(token));
}

// -------------------------------------------------------------------------------------------
// 1. `null` optional claims mean "absent"
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn null_optional_claims_are_accepted_as_absent() {
    let app = layer_app(pem_builder());
    for name in ["jti", "iss", "aud", "scopes", "nbf", "iat", "azp"] {
        let token = key().token("k", &with(claims(), name, Value::Null));
        let reply = send_bearer(&app, "/whoami", &token).await;
        reply.assert_ok();
        assert_eq!(reply.body["machine_id"], "mch_cron_service", "{name}");
    }
    // `jti: null` is an empty token id, as with no `jti`; `scopes: null` falls back to `aud`.
    let token = key().token("k", &with(claims(), "jti", Value::Null));
    assert_eq!(
        send_bearer(&app, "/whoami", &token).await.body["token_id"],
        ""
    );
    let claims = with(
        with(claims(), "scopes", Value::Null),
        "aud",
        json!([OWN_ID]),
    );
    let reply = send_bearer(&app, "/whoami", &key().token("k", &claims)).await;
    assert_eq!(reply.body["scopes"], json!([OWN_ID]));
}

#[tokio::test]
async fn null_required_claims_and_null_configured_claims_are_refused() {
    let app = layer_app(pem_builder());
    let no_exp = key().token("k", &with(claims(), "exp", Value::Null));
    assert_reason(&app, &no_exp, 401, "token-invalid").await;
    let no_sub = key().token("k", &with(claims(), "sub", Value::Null));
    assert_reason(&app, &no_sub, 401, "token-type-mismatch").await;

    let strict = layer_app(
        pem_builder()
            .issuer("https://clerk.example.test")
            .audiences([OWN_ID]),
    );
    let good = with(claims(), "aud", json!(OWN_ID));
    send_bearer(&strict, "/cron/run", &key().token("k", &good))
        .await
        .assert_ok();
    for name in ["iss", "aud"] {
        let token = key().token("k", &with(good.clone(), name, Value::Null));
        assert_reason(&strict, &token, 401, "token-verification-failed").await;
    }
    for name in ["jti", "scopes", "nbf", "iat", "azp"] {
        let token = key().token("k", &with(good.clone(), name, Value::Null));
        send_bearer(&strict, "/cron/run", &token).await.assert_ok();
    }
}

// -------------------------------------------------------------------------------------------
// 2. Other Clerk token kinds are a type mismatch
// -------------------------------------------------------------------------------------------

fn session_token(header: &Value, signer: &TestKey) -> String {
    let now = now();
    let claims = json!({
        "sub": "user_2abc", "sid": "sess_2abc", "iss": "https://clerk.example.test",
        "azp": "http://localhost:3000", "iat": now, "nbf": now - 5, "exp": now + 60, "v": 2,
    });
    signer.sign_raw("RS256", &header.to_string(), &claims.to_string())
}

fn access_token(header: &Value, signer: &TestKey) -> String {
    let now = now();
    let claims = json!({
        "sub": "user_2abc", "client_id": "client_2abc", "scope": "email profile",
        "iss": "https://clerk.example.test", "iat": now, "exp": now + 60, "jti": "oat_1",
    });
    signer.sign_raw("RS256", &header.to_string(), &claims.to_string())
}

#[tokio::test]
async fn session_and_oauth_tokens_are_type_mismatches_whatever_their_header() {
    let app = layer_app(pem_builder());
    let stranger = TestKey::rsa();
    let session_headers = [
        json!({"alg": "RS256", "kid": "ins_test", "typ": "JWT", "cat": "cl_B7d4PD111AAA"}),
        json!({"alg": "RS256", "kid": "ins_test", "typ": "JWT", "cat": "cl_B7d4PD222AAA"}),
        json!({"alg": "RS256", "kid": "ins_test", "typ": "JWT"}),
        // Headers that would break the M2M rules: the kind still decides the reason.
        json!({"alg": "RS256", "typ": "JWT", "cat": "cl_B7d4PD111AAA", "crit": ["x"]}),
        json!({"alg": "HS256", "typ": "JWT", "cat": "cl_B7d4PD111AAA"}),
    ];
    for header in &session_headers {
        for signer in [key(), &stranger] {
            let token = session_token(header, signer);
            assert_reason(&app, &token, 401, "token-type-mismatch").await;
        }
    }
    for header in [
        json!({"alg": "RS256", "kid": "ins_test", "typ": "at+jwt"}),
        json!({"alg": "RS256", "kid": "ins_test", "typ": "application/at+jwt"}),
        json!({"alg": "PS256", "typ": "at+jwt", "zip": "DEF"}),
    ] {
        for signer in [key(), &stranger] {
            let token = access_token(&header, signer);
            assert_reason(&app, &token, 401, "token-type-mismatch").await;
        }
    }
    let reply = send_bearer(
        &app,
        "/cron/run",
        &session_token(&session_headers[0], key()),
    )
    .await;
    assert!(
        reply.body["message"].as_str().unwrap().contains("session"),
        "{}",
        reply.text
    );
    let oauth = json!({"alg": "RS256", "typ": "at+jwt"});
    let reply = send_bearer(&app, "/cron/run", &access_token(&oauth, key())).await;
    assert!(
        reply.body["message"].as_str().unwrap().contains("OAuth"),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn a_machine_token_that_breaks_the_header_rules_stays_invalid() {
    let app = layer_app(pem_builder());
    for header in [
        json!({"alg": "RS256", "typ": "at+jwt"}),
        json!({"alg": "RS256", "typ": "JWT", "cat": "cl_B7d4PD111AAA"}),
        json!({"alg": "RS256", "typ": "JWT", "crit": ["exp"]}),
    ] {
        // A session-like `sid` beside a machine subject does not make it a session token.
        let claims = with(claims(), "sid", json!("sess_2abc"));
        assert_reason(&app, &signed(&header, &claims), 401, "token-invalid").await;
    }
    // The kind never leads to acceptance: a machine token with a foreign signature is invalid.
    let forged = TestKey::rsa().token("k", &claims());
    assert_reason(&app, &forged, 401, "token-invalid").await;
    // And a machine token with a `sid` and Clerk's M2M header is a machine token.
    let with_sid = signed(&m2m_header(), &with(claims(), "sid", json!("sess_2abc")));
    send_bearer(&app, "/cron/run", &with_sid).await.assert_ok();
}

// -------------------------------------------------------------------------------------------
// 3. The receiver check
// -------------------------------------------------------------------------------------------

fn receiver_app() -> axum::Router {
    layer_app(pem_builder().own_machine_id(OWN_ID))
}

/// `claims()` with `scopes` and `aud` as given (`None`: absent).
fn addressed(scopes: Option<Value>, aud: Option<Value>) -> Value {
    let mut claims = without(claims(), "scopes");
    if let Some(scopes) = scopes {
        claims = with(claims, "scopes", scopes);
    }
    if let Some(aud) = aud {
        claims = with(claims, "aud", aud);
    }
    claims
}

#[tokio::test]
async fn a_jwt_is_accepted_only_when_its_scopes_name_this_machine() {
    let app = receiver_app();
    for (label, scopes, aud) in [
        ("scopes string", Some(json!(OWN_ID)), None),
        (
            "scopes among others",
            Some(json!("mch_billing mch_reports_api")),
            None,
        ),
        ("aud string", None, Some(json!(OWN_ID))),
        ("aud array", None, Some(json!(["mch_billing", OWN_ID]))),
        (
            "scopes null, aud array",
            Some(Value::Null),
            Some(json!([OWN_ID])),
        ),
    ] {
        let token = key().token("k", &addressed(scopes, aud));
        let reply = send_bearer(&app, "/cron/run", &token).await;
        assert_eq!(reply.status, 200, "{label}: {}", reply.text);
        // A second time, from the verified-token cache.
        send_bearer(&app, "/cron/run", &token).await.assert_ok();
    }
    for (label, scopes, aud) in [
        (
            "scopes of other machines",
            Some(json!("mch_billing mch_audit")),
            None,
        ),
        ("empty scopes", Some(json!("")), None),
        ("scopes absent, no aud", None, None),
        ("scopes null, no aud", Some(Value::Null), None),
        ("aud null", None, Some(Value::Null)),
        ("empty aud array", None, Some(json!([]))),
        (
            "scopes win over aud",
            Some(json!("mch_billing")),
            Some(json!([OWN_ID])),
        ),
        ("a longer id", Some(json!("mch_reports_api_v2")), None),
        ("a shorter id", Some(json!("mch_reports")), None),
        ("another case", Some(json!("mch_Reports_API")), None),
        ("upper-case prefix", Some(json!("MCH_reports_api")), None),
        (
            "aud with another case",
            None,
            Some(json!(["MCH_REPORTS_API"])),
        ),
    ] {
        let token = key().token("k", &addressed(scopes, aud));
        for _ in 0..2 {
            let reply = send_bearer(&app, "/cron/run", &token).await;
            assert_eq!(reply.status, 401, "{label}: {}", reply.text);
            assert_eq!(reply.reason(), "token-invalid-receiver", "{label}");
            assert!(
                !reply.text.contains(OWN_ID),
                "{label}: the own id was echoed"
            );
        }
    }
}

#[tokio::test]
async fn a_prefix_of_an_id_is_not_the_id() {
    let short = layer_app(pem_builder().own_machine_id("mch_a"));
    let long = layer_app(pem_builder().own_machine_id("mch_ab"));
    let for_ab = key().token("k", &with(claims(), "scopes", json!("mch_ab")));
    let for_a = key().token("k", &with(claims(), "scopes", json!("mch_a")));
    assert_reason(&short, &for_ab, 401, "token-invalid-receiver").await;
    send_bearer(&long, "/cron/run", &for_ab).await.assert_ok();
    assert_reason(&long, &for_a, 401, "token-invalid-receiver").await;
    send_bearer(&short, "/cron/run", &for_a).await.assert_ok();
}

#[tokio::test]
async fn without_an_own_id_every_machine_is_accepted() {
    let app = layer_app(pem_builder());
    let token = key().token("k", &with(claims(), "scopes", json!("mch_billing")));
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
}

#[tokio::test]
async fn an_own_id_that_is_not_a_machine_id_is_a_configuration_error() {
    for bad in [
        "reports_api",
        "MCH_reports",
        "mch_",
        "mch_reports-api",
        " mch_reports",
        "",
    ] {
        let error = pem_builder().own_machine_id(bad).build().unwrap_err();
        assert!(
            error.to_string().contains("CLERK_MACHINE_ID"),
            "{bad:?}: {error}"
        );
    }
    let from_env = |id: &'static str| {
        let pem = key().public_pem();
        MachineVerifier::builder().env_from(move |name| match name {
            "CLERK_JWT_KEY" => Some(pem.clone()),
            "CLERK_MACHINE_ID" => Some(id.to_owned()),
            _ => None,
        })
    };
    assert!(from_env("not-a-machine").build().is_err());
    let verifier = from_env(OWN_ID).build().unwrap();
    let for_billing = key().token("k", &with(claims(), "scopes", json!("mch_billing")));
    assert_eq!(
        verifier
            .verify(&for_billing)
            .await
            .unwrap_err()
            .reason()
            .as_str(),
        "token-invalid-receiver"
    );
}

#[tokio::test]
async fn an_opaque_token_is_accepted_only_when_its_scopes_name_this_machine() {
    let scopes = [
        Some(json!(["mch_billing", OWN_ID])),
        Some(json!(["mch_billing"])),
        Some(json!([
            "mch_reports_api_v2",
            "mch_reports",
            "MCH_REPORTS_API"
        ])),
        Some(json!([])),
        Some(Value::Null),
        None,
    ];
    let tokens: Vec<String> = scopes.iter().map(|_| opaque_token()).collect();
    let answers = tokens
        .iter()
        .zip(&scopes)
        .enumerate()
        .map(|(index, (token, scopes))| {
            let mut resource = clerk_resource(&format!("mt_{index:032x}"), "mch_cron_service");
            match scopes {
                Some(scopes) => resource["scopes"] = scopes.clone(),
                None => drop(resource.as_object_mut().unwrap().remove("scopes")),
            }
            (token.clone(), resource)
        });
    let server = IntrospectionServer::start(Introspection::Clerk(answers.collect())).await;
    let builder = MachineVerifier::builder()
        .clerk_machine_secret_key("ak_test_reports_api")
        .clerk_api_url(server.base_url());
    let receiver = layer_app(builder.clone().own_machine_id(OWN_ID));
    let everyone = layer_app(builder);
    send_bearer(&receiver, "/cron/run", &tokens[0])
        .await
        .assert_ok();
    for token in &tokens[1..] {
        assert_reason(&receiver, token, 401, "token-invalid-receiver").await;
    }
    // Without an own id, every one of them is a valid token (`null` scopes are none).
    for token in &tokens {
        send_bearer(&everyone, "/cron/run", token).await.assert_ok();
    }
}

// -------------------------------------------------------------------------------------------
// 5. The identity handlers get: the verified token, for forwarding
// -------------------------------------------------------------------------------------------

/// A handler that forwards the caller's token: it answers with what it would send on.
async fn forward(machine: AuthenticatedMachine) -> String {
    let token = machine.token().expect("the layer attaches the token");
    assert!(!format!("{machine:?}").contains(token.as_str()));
    assert!(!format!("{token:?}").contains(token.as_str()));
    let authorization = token.to_authorization().unwrap();
    assert!(authorization.is_sensitive());
    authorization.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn handlers_get_the_verified_token_and_nothing_prints_it() {
    let token = key().token("k", &claims());
    let opaque = opaque_token();
    let answers = [(opaque.clone(), clerk_resource("mt_1", "mch_cron_service"))];
    let server = IntrospectionServer::start(Introspection::Clerk(answers.into())).await;
    let verifier = pem_builder()
        .clerk_machine_secret_key("ak_test_reports_api")
        .clerk_api_url(server.base_url())
        .build()
        .unwrap();
    let router = axum::Router::new()
        .route("/forward", axum::routing::get(forward))
        .route(
            "/whoami",
            axum::routing::get(|machine: AuthenticatedMachine| async move { axum::Json(machine) }),
        )
        .layer(MachineAuthLayer::new(verifier.clone()));
    // JWT (verified, then from the cache) and opaque (introspected on the waiting path).
    for token in [&token, &token, &opaque] {
        for authorization in [format!("Bearer {token}"), format!("bearer    {token}")] {
            let reply = send(&router, "/forward", &[&authorization]).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(reply.text, format!("Bearer {token}"));
        }
        let whoami = send_bearer(&router, "/whoami", token).await;
        assert!(
            !whoami.text.contains(token.as_str()),
            "the identity's JSON shows the token"
        );
    }
    // Without Tower too.
    let machine = verifier.verify(&token).await.unwrap();
    assert_eq!(machine.token().unwrap().as_str(), token);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer  {opaque}").parse().unwrap(),
    );
    let machine = verifier.authenticate(&headers).await.unwrap();
    assert_eq!(machine.token().unwrap().as_str(), opaque);
    assert!(!serde_json::to_string(&machine).unwrap().contains(&opaque));
}
