//! The issuer's HTTP API end to end on loopback, persistence and key rotation.

use std::time::Duration;

use crate::common::*;
use machine_auth_issuer::{Issuer, IssuerBuilder, IssuerConfig, SigningAlgorithm};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_machine_auth::{Algorithm, MachineAuthLayer, MachineVerifier};

const CRON_KEY: &str = "ak_demo_cron_service_do_not_use_in_production";
const REPORTS_KEY: &str = "ak_demo_reports_api_do_not_use_in_production";
const BACKUP_KEY: &str = "ak_demo_backup_job_do_not_use_in_production";
const INSTANCE_KEY: &str = "sk_test_demo_instance_do_not_use_in_production";

/// Builds the issuer with its URL as `iss`, and serves it on a loopback port.
async fn start(builder: IssuerBuilder) -> (Issuer, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issuer = builder.issuer_url(&url).build().unwrap();
    let router = issuer.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (issuer, url)
}

async fn demo() -> (Issuer, String) {
    start(Issuer::builder(IssuerConfig::demo())).await
}

/// A reply: status, `content-type`, JSON body.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl Answer {
    fn error_code(&self) -> &str {
        self.body["errors"][0]["code"].as_str().unwrap_or("")
    }

    fn param(&self) -> &str {
        self.body["errors"][0]["meta"]["param_name"]
            .as_str()
            .unwrap_or("")
    }
}

async fn call(method: &str, url: &str, key: Option<&str>, body: Option<&str>) -> Answer {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

async fn create(url: &str, key: &str, body: Value) -> Answer {
    call(
        "POST",
        &format!("{url}/m2m_tokens"),
        Some(key),
        Some(&body.to_string()),
    )
    .await
}

fn assert_resource(resource: &Value) {
    assert_eq!(resource["object"], "machine_to_machine_token");
    let id = resource["id"].as_str().unwrap();
    assert!(
        id.len() == 35 && id.starts_with("mt_") && id[3..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    for field in [
        "subject",
        "scopes",
        "claims",
        "revoked",
        "revocation_reason",
        "expired",
        "expiration",
        "last_used_at",
        "created_at",
        "updated_at",
    ] {
        assert!(
            resource.get(field).is_some(),
            "{field} missing from {resource}"
        );
    }
}

#[tokio::test]
async fn jwks_routes_and_their_keys() {
    let (_, url) = demo().await;
    let private = call("GET", &format!("{url}/v1/jwks"), Some(INSTANCE_KEY), None).await;
    assert_eq!(private.status, 200);
    assert_eq!(private.content_type, "application/json");
    let key = &private.body["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert!(key["kid"].as_str().unwrap().starts_with("ins_"));
    assert!(key.get("d").is_none(), "private material in the JWKS");

    let public = call("GET", &format!("{url}/.well-known/jwks.json"), None, None).await;
    assert_eq!(
        (public.status, public.body.clone()),
        (StatusCode::OK, private.body)
    );

    for key in [None, Some(CRON_KEY), Some("sk_test_wrong_instance_key")] {
        let answer = call("GET", &format!("{url}/v1/jwks"), key, None).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::UNAUTHORIZED, "clerk_key_invalid")
        );
    }
}

#[tokio::test]
async fn creating_an_opaque_token() {
    let (_, url) = demo().await;
    for path in ["/m2m_tokens", "/v1/m2m_tokens"] {
        let body = json!({"seconds_until_expiration": null, "claims": {"team": "billing"}, "token_format": "opaque"});
        let answer = call(
            "POST",
            &format!("{url}{path}"),
            Some(CRON_KEY),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        assert_eq!(answer.content_type, "application/json");
        let token = &answer.body;
        assert_resource(token);
        assert_eq!(token["subject"], "mch_cron_service");
        assert_eq!(token["scopes"], json!(["mch_reports_api"]));
        assert_eq!(token["claims"], json!({"team": "billing"}));
        assert_eq!(
            (token["revoked"].as_bool(), token["expired"].as_bool()),
            (Some(false), Some(false))
        );
        let lifetime =
            token["expiration"].as_i64().unwrap() - token["created_at"].as_i64().unwrap();
        assert_eq!(
            lifetime, 3_600_000,
            "the machine's default TTL, in milliseconds"
        );
        let secret = token["token"].as_str().unwrap();
        assert!(secret.starts_with("mt_") && secret.len() > 40);
    }
}

#[tokio::test]
async fn creating_a_jwt_that_the_layer_accepts() {
    let (_, url) = demo().await;
    let answer = create(&url, CRON_KEY, json!({"token_format": "jwt", "seconds_until_expiration": 120, "claims": {"job": "nightly"}})).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_resource(&answer.body);
    let jwt = answer.body["token"].as_str().unwrap();
    let segments: Vec<&str> = jwt.split('.').collect();
    let decode = |segment: &str| -> Value {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment)
                .unwrap(),
        )
        .unwrap()
    };
    let header = decode(segments[0]);
    assert_eq!(
        (
            header["alg"].as_str(),
            header["typ"].as_str(),
            header["cat"].as_str()
        ),
        (Some("RS256"), Some("JWT"), Some(M2M_CATEGORY))
    );
    let claims = decode(segments[1]);
    assert_eq!(claims["iss"], url);
    assert_eq!(claims["sub"], "mch_cron_service");
    assert_eq!(claims["jti"], answer.body["id"]);
    assert_eq!(claims["scopes"], "mch_reports_api");
    assert_eq!(claims["job"], "nightly");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );

    let verifier = MachineVerifier::builder()
        .clerk_secret_key(INSTANCE_KEY)
        .clerk_api_url(&url)
        .build()
        .unwrap();
    let reply = send_bearer(&app(MachineAuthLayer::new(verifier)), "/whoami", jwt).await;
    reply.assert_ok();
    assert_eq!(reply.body["token_id"], answer.body["id"]);
    assert_eq!(reply.body["issuer"], url);
}

#[tokio::test]
async fn create_errors_name_the_field() {
    let (_, url) = demo().await;
    const INVALID: StatusCode = StatusCode::BAD_REQUEST;
    const REFUSED: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
    for (body, status, code, param) in [
        (
            r#"{"seconds_until_expiration":0}"#,
            REFUSED,
            "form_param_value_invalid",
            "seconds_until_expiration",
        ),
        (
            r#"{"seconds_until_expiration":"60"}"#,
            INVALID,
            "form_param_format_invalid",
            "seconds_until_expiration",
        ),
        (
            r#"{"claims":"x"}"#,
            INVALID,
            "form_param_format_invalid",
            "claims",
        ),
        (
            r#"{"claims":{"exp":1}}"#,
            REFUSED,
            "form_param_value_invalid",
            "claims",
        ),
        (
            r#"{"token_format":"JWT"}"#,
            INVALID,
            "form_param_value_invalid",
            "token_format",
        ),
        (
            r#"{"secondsUntilExpiration":60}"#,
            INVALID,
            "form_param_unknown",
            "secondsUntilExpiration",
        ),
    ] {
        let answer = call(
            "POST",
            &format!("{url}/m2m_tokens"),
            Some(CRON_KEY),
            Some(body),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code(), answer.param()),
            (status, code, param),
            "{body}"
        );
        assert!(answer.body["errors"][0]["long_message"].is_string());
    }
    for body in ["not json", "[1]", "{"] {
        let answer = call(
            "POST",
            &format!("{url}/m2m_tokens"),
            Some(CRON_KEY),
            Some(body),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::BAD_REQUEST, "request_body_invalid"),
            "{body}"
        );
    }
    for key in [
        None,
        Some(INSTANCE_KEY),
        Some("ak_not_a_configured_machine_key"),
    ] {
        let answer = call("POST", &format!("{url}/m2m_tokens"), key, Some("{}")).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::UNAUTHORIZED, "machine_secret_key_invalid")
        );
    }
}

#[tokio::test]
async fn verifying_opaque_tokens_follows_who_may_see_them() {
    let (_, url) = demo().await;
    let created = create(&url, CRON_KEY, json!({})).await.body;
    let token = created["token"].as_str().unwrap();
    let verify = |key: &'static str| {
        let url = url.clone();
        let body = json!({ "token": token }).to_string();
        async move {
            call(
                "POST",
                &format!("{url}/m2m_tokens/verify"),
                Some(key),
                Some(&body),
            )
            .await
        }
    };
    // The target machine (in the token's scopes) and the instance see it; its own machine does not.
    for key in [REPORTS_KEY, INSTANCE_KEY] {
        let answer = verify(key).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_resource(&answer.body);
        assert!(answer.body.get("token").is_none(), "the secret was echoed");
        assert_eq!(answer.body["id"], created["id"]);
        assert!(answer.body["last_used_at"].is_i64());
    }
    assert_eq!(verify(CRON_KEY).await.status, 404);

    // The backup job may call the cron service, not the reports API: the cron service (in its
    // tokens' scopes) and the instance see its tokens, the reports API and the backup job do not.
    let backup = create(&url, BACKUP_KEY, json!({})).await.body;
    assert_eq!(backup["subject"], "mch_backup_job");
    assert_eq!(backup["scopes"], json!(["mch_cron_service"]));
    let backup_token = json!({"token": backup["token"]}).to_string();
    for (who, key, status) in [
        ("the cron service", CRON_KEY, 200),
        ("the instance", INSTANCE_KEY, 200),
        ("the reports API", REPORTS_KEY, 404),
        ("the backup job", BACKUP_KEY, 404),
    ] {
        let answer = call(
            "POST",
            &format!("{url}/m2m_tokens/verify"),
            Some(key),
            Some(&backup_token),
        )
        .await;
        assert_eq!(answer.status, status, "{who}: {}", answer.body);
    }

    let unknown = call(
        "POST",
        &format!("{url}/v1/m2m_tokens/verify"),
        Some(INSTANCE_KEY),
        Some(&json!({"token": opaque_token()}).to_string()),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (StatusCode::NOT_FOUND, "resource_not_found")
    );
    let missing = call(
        "POST",
        &format!("{url}/m2m_tokens/verify"),
        Some(INSTANCE_KEY),
        Some("{}"),
    )
    .await;
    assert_eq!(
        (missing.status, missing.param()),
        (StatusCode::BAD_REQUEST, "token")
    );
    let wrong_key = call(
        "POST",
        &format!("{url}/m2m_tokens/verify"),
        Some("sk_test_wrong_key"),
        Some("{}"),
    )
    .await;
    assert_eq!(wrong_key.status, 401);
}

#[tokio::test]
async fn revoking_keeps_the_reason_and_is_seen_at_once() {
    let (_, url) = demo().await;
    let created = create(&url, CRON_KEY, json!({})).await.body;
    let id = created["id"].as_str().unwrap();
    let revoke_path = format!("{url}/m2m_tokens/{id}/revoke");
    let other_machine = call(
        "POST",
        &revoke_path,
        Some(REPORTS_KEY),
        Some(r#"{"revocation_reason":"nope"}"#),
    )
    .await;
    assert_eq!(
        other_machine.status, 404,
        "a machine revoked another machine's token"
    );

    let revoked = call(
        "POST",
        &revoke_path,
        Some(CRON_KEY),
        Some(r#"{"revocation_reason":"leaked"}"#),
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(
        (
            revoked.body["revoked"].as_bool(),
            revoked.body["revocation_reason"].as_str()
        ),
        (Some(true), Some("leaked"))
    );
    let again = call(
        "POST",
        &format!("{url}/v1/m2m_tokens/{id}/revoke"),
        Some(INSTANCE_KEY),
        None,
    )
    .await;
    assert_eq!(
        (again.status, again.body["revocation_reason"].as_str()),
        (StatusCode::OK, Some("leaked"))
    );

    let verify = call(
        "POST",
        &format!("{url}/m2m_tokens/verify"),
        Some(INSTANCE_KEY),
        Some(&json!({"token": created["token"]}).to_string()),
    )
    .await;
    assert_eq!(verify.status, 404);
    let unknown = call(
        "POST",
        &format!("{url}/m2m_tokens/mt_00000000000000000000000000000000/revoke"),
        Some(INSTANCE_KEY),
        None,
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (StatusCode::NOT_FOUND, "resource_not_found")
    );
    let bad_body = call(
        "POST",
        &revoke_path,
        Some(INSTANCE_KEY),
        Some(r#"{"reason":"x"}"#),
    )
    .await;
    assert_eq!(
        (bad_body.status, bad_body.param()),
        (StatusCode::BAD_REQUEST, "reason")
    );
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let (_, url) = demo().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&url, CRON_KEY, json!({})).await.body["id"].clone());
    }
    create(&url, REPORTS_KEY, json!({})).await;
    create(&url, CRON_KEY, json!({"token_format": "jwt"})).await;
    call(
        "POST",
        &format!("{url}/m2m_tokens/{}/revoke", ids[0].as_str().unwrap()),
        Some(CRON_KEY),
        None,
    )
    .await;

    let list = |key: &'static str, query: &'static str| {
        let url = url.clone();
        async move { call("GET", &format!("{url}/m2m_tokens{query}"), Some(key), None).await }
    };
    let all = list(INSTANCE_KEY, "").await;
    assert_eq!(
        (all.status, all.body["total_count"].as_u64()),
        (StatusCode::OK, Some(3)),
        "live opaque tokens only: JWTs are not stored, revoked ones are left out by default"
    );
    let own = list(CRON_KEY, "").await;
    assert_eq!(own.body["total_count"], 2);
    assert!(
        own.body["m2m_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["subject"] == "mch_cron_service")
    );
    assert!(
        own.body["m2m_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );
    assert_eq!(
        list(CRON_KEY, "?subject=mch_reports_api").await.body["total_count"],
        0
    );
    assert_eq!(
        list(INSTANCE_KEY, "?subject=mch_reports_api").await.body["total_count"],
        1
    );
    let with_revoked = list(INSTANCE_KEY, "?revoked=true").await;
    assert_eq!(with_revoked.body["total_count"], 4);
    assert!(
        with_revoked.body["m2m_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == ids[0] && t["revoked"] == true)
    );
    assert_eq!(
        list(INSTANCE_KEY, "?expired=false&revoked=false")
            .await
            .body["total_count"],
        3
    );
    let page = list(INSTANCE_KEY, "?limit=2&offset=1").await;
    assert_eq!(
        (
            page.body["m2m_tokens"].as_array().unwrap().len(),
            page.body["total_count"].as_u64()
        ),
        (2, Some(3))
    );
    let bad = list(INSTANCE_KEY, "?limit=500").await;
    assert_eq!(
        (bad.status, bad.param()),
        (StatusCode::BAD_REQUEST, "limit")
    );
    assert_eq!(
        call("GET", &format!("{url}/v1/m2m_tokens"), None, None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_clerks_shape() {
    let (_, url) = demo().await;
    let missing = call("GET", &format!("{url}/v1/users"), Some(INSTANCE_KEY), None).await;
    assert_eq!(
        (
            missing.status,
            missing.error_code(),
            missing.content_type.as_str()
        ),
        (StatusCode::NOT_FOUND, "route_not_found", "application/json")
    );
    let method = call(
        "DELETE",
        &format!("{url}/m2m_tokens"),
        Some(INSTANCE_KEY),
        None,
    )
    .await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(method.body["errors"].is_array());
}

#[tokio::test]
async fn keys_tokens_and_revocations_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("machine-auth-issuer-test-{}", opaque_token()));
    let (kept, revoked, jwt, kid) = {
        let (issuer, url) = start(Issuer::builder(IssuerConfig::demo()).data_dir(&dir)).await;
        let kept = create(&url, CRON_KEY, json!({})).await.body;
        let revoked = create(&url, CRON_KEY, json!({})).await.body;
        call(
            "POST",
            &format!(
                "{url}/m2m_tokens/{}/revoke",
                revoked["id"].as_str().unwrap()
            ),
            Some(CRON_KEY),
            Some(r#"{"revocation_reason":"rotated"}"#),
        )
        .await;
        let jwt = create(&url, CRON_KEY, json!({"token_format": "jwt"}))
            .await
            .body["token"]
            .clone();
        (kept, revoked, jwt, issuer.jwks()["keys"][0]["kid"].clone())
    };
    let (issuer, url) = start(Issuer::builder(IssuerConfig::demo()).data_dir(&dir)).await;
    assert_eq!(
        issuer.jwks()["keys"][0]["kid"],
        kid,
        "the signing key changed across the restart"
    );
    let verify = |token: &Value| {
        let body = json!({"token": token}).to_string();
        let url = url.clone();
        async move {
            call(
                "POST",
                &format!("{url}/m2m_tokens/verify"),
                Some(INSTANCE_KEY),
                Some(&body),
            )
            .await
        }
    };
    assert_eq!(verify(&kept["token"]).await.status, 200);
    assert_eq!(verify(&revoked["token"]).await.status, 404);
    let listed = call(
        "GET",
        &format!("{url}/m2m_tokens?revoked=true"),
        Some(INSTANCE_KEY),
        None,
    )
    .await;
    let listed_revoked = listed.body["m2m_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == revoked["id"])
        .expect("revoked=true includes revoked tokens");
    assert_eq!(listed_revoked["revocation_reason"], "rotated");
    let verifier = MachineVerifier::from_pem(&issuer.public_key_pem().unwrap()).unwrap();
    verifier.verify(jwt.as_str().unwrap()).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_rotated_key_stays_published_until_its_last_token_expires() {
    let clock = tower_machine_auth::clock::TokioClock::new();
    let issuer = Issuer::builder(IssuerConfig::demo())
        .clock(clock)
        .build()
        .unwrap();
    let old = issuer
        .create_token(
            CRON_KEY,
            machine_auth_issuer::CreateTokenRequest {
                seconds_until_expiration: Some(600),
                token_format: Some(machine_auth_issuer::TokenFormatParam::Jwt),
                ..Default::default()
            },
        )
        .unwrap();
    let old_kid = issuer.jwks()["keys"][0]["kid"].clone();
    let new_kid = issuer.rotate_signing_key().unwrap();
    let kids = |issuer: &Issuer| -> Vec<Value> {
        issuer.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect()
    };
    assert_eq!(kids(&issuer), vec![json!(new_kid), old_kid.clone()]);

    let jwks = JwksServer::start(JwksReply::Keys(issuer.jwks())).await;
    let verifier = MachineVerifier::builder()
        .jwks_url(jwks.url())
        .clock(clock)
        .build()
        .unwrap();
    verifier
        .verify(old.token.as_deref().unwrap())
        .await
        .unwrap();

    tokio::time::advance(Duration::from_secs(601)).await;
    assert_eq!(
        kids(&issuer),
        vec![json!(new_kid)],
        "the old key outlived its tokens"
    );
}

#[tokio::test]
async fn es256_and_eddsa_issuers_sign_what_the_verifier_accepts() {
    for (algorithm, jwt_algorithm) in [
        (SigningAlgorithm::ES256, Algorithm::ES256),
        (SigningAlgorithm::EdDSA, Algorithm::EdDSA),
    ] {
        let config = IssuerConfig {
            signing_algorithm: algorithm,
            ..IssuerConfig::demo()
        };
        let (_, url) = start(Issuer::builder(config)).await;
        let jwt = create(&url, CRON_KEY, json!({"token_format": "jwt"}))
            .await
            .body["token"]
            .clone();
        let verifier = MachineVerifier::builder()
            .clerk_secret_key(INSTANCE_KEY)
            .clerk_api_url(&url)
            .algorithms([jwt_algorithm])
            .build()
            .unwrap();
        let machine = verifier.verify(jwt.as_str().unwrap()).await.unwrap();
        assert_eq!(machine.machine_id().as_str(), "mch_cron_service");
    }
}

#[tokio::test]
async fn a_failing_store_is_a_500_with_a_clear_message_never_a_silent_success() {
    let dir = std::env::temp_dir().join(format!("machine-auth-issuer-test-{}", opaque_token()));
    let (_issuer, url) = start(Issuer::builder(IssuerConfig::demo()).data_dir(&dir)).await;
    rusqlite::Connection::open(dir.join("issuer.sqlite3"))
        .unwrap()
        .execute_batch("DROP TABLE m2m_tokens")
        .unwrap();
    let answer = create(&url, CRON_KEY, json!({})).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal_clerk_error")
    );
    assert!(
        answer.body["errors"][0]["long_message"]
            .as_str()
            .unwrap()
            .contains("token store")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_configurations_are_refused_with_the_field_named() {
    let mut config = IssuerConfig::demo();
    config.machines[0].id = "cron".to_owned();
    let error = Issuer::builder(config).build().unwrap_err().to_string();
    assert!(error.contains("machines[0].id"), "{error}");
}

/// A fresh path under the system's temporary directory (not created).
fn temp_data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("machine-auth-issuer-test-{}", opaque_token()))
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_database_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let root = temp_data_dir();
    let dir = root.join("nested");
    let (_issuer, url) = start(Issuer::builder(IssuerConfig::demo()).data_dir(&dir)).await;
    assert_eq!(create(&url, CRON_KEY, json!({})).await.status, 201);
    assert_eq!(mode_of(&dir), 0o700, "the data directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode_of(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 1, "no database file in {}", dir.display());

    // A database left readable by an earlier version is made private again.
    let database = dir.join("issuer.sqlite3");
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _again = Issuer::builder(IssuerConfig::demo())
        .data_dir(&dir)
        .build()
        .unwrap();
    assert_eq!(mode_of(&database), 0o600);
    std::fs::remove_dir_all(&root).unwrap();
}

#[cfg(unix)]
#[test]
fn a_data_directory_others_may_write_is_refused_with_its_path_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    for mode in [0o777, 0o770, 0o702] {
        let dir = temp_data_dir();
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let error = Issuer::builder(IssuerConfig::demo())
            .data_dir(&dir)
            .build()
            .unwrap_err()
            .to_string();
        assert!(error.contains(&dir.display().to_string()), "{error}");
        assert!(error.contains(&format!("{mode:04o}")), "{error}");
        assert!(
            !dir.join("issuer.sqlite3").exists(),
            "the database was created in a directory others may write"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Readable by others: accepted (with a warning), and the database is still private.
    let dir = temp_data_dir();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    Issuer::builder(IssuerConfig::demo())
        .data_dir(&dir)
        .build()
        .unwrap();
    assert_eq!(mode_of(&dir.join("issuer.sqlite3")), 0o600);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn claims_cannot_set_what_decides_where_a_token_is_accepted() {
    let (issuer, url) = demo().await;
    for claim in [
        "aud",
        "azp",
        "act",
        "client_id",
        "sid",
        "typ",
        "cat",
        "sub",
        "scopes",
        "exp",
    ] {
        let answer = create(
            &url,
            CRON_KEY,
            json!({"token_format": "jwt", "claims": {"team": "billing", claim: "mch_billing"}}),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code(), answer.param()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                "claims"
            ),
            "{claim}: {}",
            answer.body
        );
        let message = answer.body["errors"][0]["long_message"].as_str().unwrap();
        assert!(message.contains(&format!("`{claim}`")), "{message}");

        // The Rust API refuses them too.
        let mut claims = serde_json::Map::new();
        claims.insert(claim.to_owned(), json!("mch_billing"));
        let error = issuer
            .create_token(
                CRON_KEY,
                machine_auth_issuer::CreateTokenRequest {
                    claims: Some(claims),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(error.status(), 422, "{claim}");
    }
}

#[tokio::test]
async fn verifying_with_a_key_that_may_not_see_a_token_leaves_it_untouched() {
    let (_, url) = demo().await;
    let created = create(&url, CRON_KEY, json!({})).await.body;
    let body = json!({"token": created["token"]}).to_string();
    // The backup job is not in the token's scopes: it may not see it.
    for key in [BACKUP_KEY, CRON_KEY] {
        let answer = call(
            "POST",
            &format!("{url}/m2m_tokens/verify"),
            Some(key),
            Some(&body),
        )
        .await;
        assert_eq!(answer.status, 404);
    }
    let listed = call(
        "GET",
        &format!("{url}/m2m_tokens"),
        Some(INSTANCE_KEY),
        None,
    )
    .await;
    let token = listed.body["m2m_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == created["id"])
        .unwrap()
        .clone();
    assert_eq!(
        token["last_used_at"],
        Value::Null,
        "a caller who may not see the token marked it used"
    );
    assert_eq!(token["updated_at"], created["updated_at"]);
}

#[tokio::test]
async fn huge_lifetimes_are_a_422_never_a_panic_or_a_wrap() {
    let (issuer, url) = demo().await;
    for seconds in [u64::MAX, i64::MAX as u64, u64::MAX / 1000, 1 << 53] {
        for format in [
            machine_auth_issuer::TokenFormatParam::Jwt,
            machine_auth_issuer::TokenFormatParam::Opaque,
        ] {
            let error = issuer
                .create_token(
                    CRON_KEY,
                    machine_auth_issuer::CreateTokenRequest {
                        seconds_until_expiration: Some(seconds),
                        token_format: Some(format),
                        ..Default::default()
                    },
                )
                .unwrap_err();
            assert_eq!(
                (
                    error.status(),
                    error.body()["errors"][0]["meta"]["param_name"].as_str()
                ),
                (422, Some("seconds_until_expiration")),
                "{seconds}"
            );
        }
    }
    for seconds in [
        "18446744073709551615",
        "9223372036854775807",
        "9223372036854776",
        "1e20",
        "1e300",
        "0",
        "-1",
    ] {
        let body = format!(r#"{{"seconds_until_expiration":{seconds}}}"#);
        let answer = call(
            "POST",
            &format!("{url}/m2m_tokens"),
            Some(CRON_KEY),
            Some(&body),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code(), answer.param()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "form_param_value_invalid",
                "seconds_until_expiration"
            ),
            "{seconds}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn claims_are_capped_at_16_kib() {
    let (_, url) = demo().await;
    // `{"note":"…"}` is 11 bytes around the text.
    let fits = "x".repeat(16 * 1024 - 11);
    let answer = create(&url, CRON_KEY, json!({"claims": {"note": fits}})).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let too_big = "x".repeat(16 * 1024 - 10);
    let answer = create(&url, CRON_KEY, json!({"claims": {"note": too_big}})).await;
    assert_eq!(
        (answer.status, answer.error_code(), answer.param()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_param_value_invalid",
            "claims"
        )
    );
    assert!(
        answer.body["errors"][0]["long_message"]
            .as_str()
            .unwrap()
            .contains("16384"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn token_route_bodies_are_capped_with_an_error_in_clerks_shape() {
    let (_, url) = demo().await;
    let big = "x".repeat(100 * 1024);
    let created = create(&url, CRON_KEY, json!({})).await.body;
    let id = created["id"].as_str().unwrap();
    for (path, key, body) in [
        (
            "/m2m_tokens".to_owned(),
            CRON_KEY,
            json!({"claims": {"note": big}}),
        ),
        (
            "/v1/m2m_tokens".to_owned(),
            CRON_KEY,
            json!({"claims": {"note": big}}),
        ),
        (
            "/m2m_tokens/verify".to_owned(),
            INSTANCE_KEY,
            json!({"token": big}),
        ),
        (
            format!("/m2m_tokens/{id}/revoke"),
            INSTANCE_KEY,
            json!({"revocation_reason": big}),
        ),
    ] {
        let answer = call(
            "POST",
            &format!("{url}{path}"),
            Some(key),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "request_body_too_large"),
            "{path}: {}",
            answer.body
        );
        assert!(answer.body["errors"][0]["long_message"].is_string());
    }
}

#[tokio::test(start_paused = true)]
async fn stored_tokens_are_purged_an_hour_after_they_expire() {
    use machine_auth_issuer::{CreateTokenRequest, TokenQuery};
    let clock = tower_machine_auth::clock::TokioClock::new();
    let issuer = Issuer::builder(IssuerConfig::demo())
        .clock(clock)
        .build()
        .unwrap();
    let opaque = |seconds: u64| CreateTokenRequest {
        seconds_until_expiration: Some(seconds),
        ..Default::default()
    };
    let early = issuer.create_token(CRON_KEY, opaque(60)).unwrap();
    let later = issuer.create_token(CRON_KEY, opaque(600)).unwrap();
    let revoked = issuer.create_token(CRON_KEY, opaque(60)).unwrap();
    issuer
        .revoke_token(INSTANCE_KEY, &revoked.id, Some("leaked"))
        .unwrap();
    let stored = |issuer: &Issuer| -> Vec<String> {
        let query = TokenQuery {
            include_expired: true,
            include_revoked: true,
            limit: 100,
            ..Default::default()
        };
        let (tokens, _) = issuer.list_tokens(INSTANCE_KEY, query).unwrap();
        tokens.into_iter().map(|token| token.id).collect()
    };
    assert_eq!(stored(&issuer).len(), 3);

    // An hour and a second after the first expiry: `later` expired 51 minutes ago.
    tokio::time::advance(Duration::from_secs(60 + 3600 + 1)).await;
    let fresh = issuer.create_token(CRON_KEY, opaque(60)).unwrap();
    let ids = stored(&issuer);
    assert!(
        !ids.contains(&early.id),
        "an expired token outlived the grace hour"
    );
    assert!(
        !ids.contains(&revoked.id),
        "a revoked token outlived the grace hour"
    );
    assert!(ids.contains(&later.id), "a token was purged too early");
    assert!(ids.contains(&fresh.id));
}

#[tokio::test]
async fn token_lifetimes_are_capped_by_the_configuration() {
    let (_, url) = demo().await;
    let at_cap = create(&url, CRON_KEY, json!({"seconds_until_expiration": 86_400})).await;
    assert_eq!(at_cap.status, 201, "{}", at_cap.body);
    for format in ["jwt", "opaque"] {
        let over = create(
            &url,
            CRON_KEY,
            json!({"seconds_until_expiration": 86_401, "token_format": format}),
        )
        .await;
        assert_eq!(
            (over.status, over.param()),
            (StatusCode::UNPROCESSABLE_ENTITY, "seconds_until_expiration"),
            "{}",
            over.body
        );
        let message = over.body["errors"][0]["long_message"].as_str().unwrap();
        assert!(
            message.contains("86400") && message.contains("max_token_ttl"),
            "{message}"
        );
    }

    let mut config = serde_json::to_value(IssuerConfig::demo()).unwrap();
    config["max_token_ttl"] = json!(600);
    for machine in config["machines"].as_array_mut().unwrap() {
        machine["default_token_ttl"] = json!(300);
    }
    let config = IssuerConfig::from_json(&config.to_string()).unwrap();
    let (_, url) = start(Issuer::builder(config)).await;
    assert_eq!(
        create(&url, CRON_KEY, json!({"seconds_until_expiration": 600}))
            .await
            .status,
        201
    );
    let over = create(&url, CRON_KEY, json!({"seconds_until_expiration": 601})).await;
    assert_eq!(over.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        over.body["errors"][0]["long_message"]
            .as_str()
            .unwrap()
            .contains("600"),
        "{}",
        over.body
    );
    // The machines' default lifetime (3600) is above the cap: the configuration is refused.
    let mut config = serde_json::to_value(IssuerConfig::demo()).unwrap();
    config["max_token_ttl"] = json!(60);
    let error = IssuerConfig::from_json(&config.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("machines[0].default_token_ttl") && error.contains("max_token_ttl"),
        "{error}"
    );
}

#[tokio::test]
async fn tokens_of_a_machine_removed_from_the_configuration_no_longer_verify() {
    let dir = temp_data_dir();
    let token = {
        let (_issuer, url) = start(Issuer::builder(IssuerConfig::demo()).data_dir(&dir)).await;
        create(&url, BACKUP_KEY, json!({})).await.body["token"].clone()
    };
    let verify = |url: String, key: &'static str| {
        let body = json!({ "token": token }).to_string();
        async move {
            call(
                "POST",
                &format!("{url}/m2m_tokens/verify"),
                Some(key),
                Some(&body),
            )
            .await
        }
    };
    let (_issuer, url) = start(Issuer::builder(IssuerConfig::demo()).data_dir(&dir)).await;
    assert_eq!(verify(url, INSTANCE_KEY).await.status, 200);

    let mut config = IssuerConfig::demo();
    config
        .machines
        .retain(|machine| machine.id != "mch_backup_job");
    let (_issuer, url) = start(Issuer::builder(config).data_dir(&dir)).await;
    for key in [INSTANCE_KEY, CRON_KEY] {
        let answer = verify(url.clone(), key).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::NOT_FOUND, "resource_not_found"),
            "{}",
            answer.body
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn secrets_and_tokens_never_appear_in_debug_output() {
    let config = IssuerConfig::demo();
    let issuer = Issuer::builder(config.clone()).build().unwrap();
    let token = issuer.create_token(CRON_KEY, Default::default()).unwrap();
    let jwt = issuer
        .create_token(
            CRON_KEY,
            machine_auth_issuer::CreateTokenRequest {
                token_format: Some(machine_auth_issuer::TokenFormatParam::Jwt),
                ..Default::default()
            },
        )
        .unwrap();
    let mut secrets: Vec<String> = config
        .machines
        .iter()
        .map(|machine| machine.secret_key.clone())
        .collect();
    secrets.push(config.instance_secret_key.clone());
    secrets.push(token.token.clone().unwrap());
    secrets.push(jwt.token.clone().unwrap());
    let printed = [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", config.machines[0]),
        format!("{:#?}", config.machines[0]),
        format!("{token:?}"),
        format!("{token:#?}"),
        format!("{jwt:?}"),
        format!("{jwt:#?}"),
        format!("{issuer:?}"),
        format!("{issuer:#?}"),
    ];
    for text in &printed {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret in {text}");
        }
    }
    for text in &printed[..8] {
        assert!(text.contains("[redacted]"), "{text}");
    }
    // What is not secret is still shown.
    assert!(printed[0].contains("mch_cron_service"));
    assert!(printed[4].contains(&token.id));
}

#[test]
fn machine_names_and_ids_with_control_or_direction_characters_are_refused() {
    for (name, shown) in [
        ("Cron\nexport X=1", "\\n"),
        ("Cron\u{1b}[2J", "\\u{1b}"),
        ("Cron\u{7f}", "\\u{7f}"),
        ("Cron\u{85}", "\\u{85}"),
        ("Cron \u{202e}lanrete", "\\u{202e}"),
        ("Cron \u{202a}x", "\\u{202a}"),
        ("Cron \u{2066}x", "\\u{2066}"),
        ("Cron \u{2069}x", "\\u{2069}"),
    ] {
        let mut config = IssuerConfig::demo();
        config.machines[0].name = name.to_owned();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("machines[0].name") && error.contains("mch_cron_service"),
            "{error}"
        );
        assert!(error.contains(shown), "{error}");
        assert!(
            !error.contains(name),
            "the raw name is in the error: {error}"
        );
        let error = Issuer::builder(config).build().unwrap_err().to_string();
        assert!(error.contains("machines[0].name"), "{error}");

        // A name read from a file, whose id is derived from it.
        let mut file = serde_json::to_value(IssuerConfig::demo()).unwrap();
        file["machines"][1]["name"] = json!(name);
        file["machines"][1].as_object_mut().unwrap().remove("id");
        let error = IssuerConfig::from_json(&file.to_string())
            .unwrap_err()
            .to_string();
        assert!(error.contains("machines[1].name"), "{error}");
    }
    let mut config = IssuerConfig::demo();
    config.machines[0].id = "mch_cron\u{202e}".to_owned();
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("machines[0].id") && error.contains("\\u{202e}"),
        "{error}"
    );
    // Other Unicode stays allowed.
    let mut config = IssuerConfig::demo();
    config.machines[0].name = "Tâches planifiées — nuit".to_owned();
    config.validate().unwrap();
}

#[tokio::test]
async fn a_retired_signing_key_leaves_the_jwks_at_once_and_for_good() {
    let dir = temp_data_dir();
    let (issuer, url) = start(Issuer::builder(IssuerConfig::demo()).data_dir(&dir)).await;
    let old_jwt = create(&url, CRON_KEY, json!({"token_format": "jwt"}))
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_kid = issuer.jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
    let refused = issuer.retire_signing_key(&old_kid).unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (409, "signing_key_in_use"),
        "the only key that signs was retired"
    );
    let new_kid = issuer.rotate_signing_key().unwrap();
    let kids = |body: &Value| -> Vec<String> {
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let published = call("GET", &format!("{url}/.well-known/jwks.json"), None, None).await;
    assert_eq!(kids(&published.body), [new_kid.clone(), old_kid.clone()]);

    issuer.retire_signing_key(&old_kid).unwrap();
    for (path, key) in [
        ("/v1/jwks", Some(INSTANCE_KEY)),
        ("/.well-known/jwks.json", None),
    ] {
        let answer = call("GET", &format!("{url}{path}"), key, None).await;
        assert_eq!(answer.status, 200);
        assert_eq!(kids(&answer.body), std::slice::from_ref(&new_kid), "{path}");
    }
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(INSTANCE_KEY)
        .clerk_api_url(&url)
        .build()
        .unwrap();
    verifier.verify(&old_jwt).await.unwrap_err();
    assert_eq!(
        issuer.retire_signing_key(&old_kid).unwrap_err().status(),
        404,
        "retired twice"
    );
    assert_eq!(
        issuer
            .retire_signing_key("ins_unknown")
            .unwrap_err()
            .status(),
        404
    );

    // After a restart it is still gone.
    drop(issuer);
    let again = Issuer::builder(IssuerConfig::demo())
        .data_dir(&dir)
        .build()
        .unwrap();
    assert_eq!(kids(&again.jwks()), [new_kid]);
    std::fs::remove_dir_all(&dir).unwrap();
}
