//! The examples' public interface: `axum_cron` and `machine_client` configured by env, and the exit codes and output of those that take no configuration.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The example binary, built with this test's features (`cargo test` built it already, but
/// another build with other features may have replaced the copy in `target/…/examples` since).
fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = deps.parent().unwrap().join("examples").join(name);
    let mut built = BUILT.lock().unwrap();
    if !built.iter().any(|done| done == name) {
        let features = [
            ("axum", cfg!(feature = "axum")),
            ("client", cfg!(feature = "client")),
            ("fuzzing", cfg!(feature = "fuzzing")),
            ("metrics", cfg!(feature = "metrics")),
            ("test-util", cfg!(feature = "test-util")),
            ("tonic", cfg!(feature = "tonic")),
            ("tower-http", cfg!(feature = "tower-http")),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(feature, _)| *feature)
        .collect::<Vec<_>>()
        .join(",");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", name, "--no-default-features"])
            .args(["--features", &features])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build example {name}");
        built.push(name.to_owned());
    }
    path
}

/// Starts `axum_cron` with exactly these variables and waits for `listening on <addr>`.
async fn start_cron(vars: &[(&str, String)]) -> (Child, String) {
    let mut command = Command::new(example("axum_cron"));
    command
        .env_clear()
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("no `listening on` line within 20 s")
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    (child, format!("http://{addr}"))
}

#[tokio::test]
async fn axum_cron_verifies_with_clerk_jwt_key() {
    let key = TestKey::shared_rsa();
    let (_child, url) = start_cron(&[("CLERK_JWT_KEY", key.public_pem())]).await;
    let client = reqwest::Client::new();
    let healthz = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);

    let token = key.token("k", &claims());
    let run = client
        .post(format!("{url}/cron/run"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 200);
    assert_eq!(run.text().await.unwrap(), r#"{"message":"Success"}"#);
    let whoami = client
        .get(format!("{url}/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let identity: serde_json::Value =
        serde_json::from_slice(&whoami.bytes().await.unwrap()).unwrap();
    assert_eq!(identity["machine_id"], "mch_cron_service");
    assert_eq!(identity["token_format"], "jwt");

    let anonymous = client.post(format!("{url}/cron/run")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn axum_cron_starts_while_the_jwks_endpoint_is_unreachable() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_child, url) = start_cron(&[
        ("CLERK_SECRET_KEY", "sk_test_unreachable".to_owned()),
        ("CLERK_API_URL", format!("http://{closed}")),
    ])
    .await;
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let token = TestKey::shared_rsa().token("k", &claims());
    let run = client
        .post(format!("{url}/cron/run"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 503);
    assert!(run.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn axum_cron_explains_a_missing_configuration() {
    let output = Command::new(example("axum_cron"))
        .env_clear()
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CLERK_JWT_KEY") && stderr.contains("CLERK_SECRET_KEY"),
        "{stderr}"
    );
}

/// Runs an example that takes no configuration; its output, once it exited zero.
async fn run_to_success(name: &str) -> String {
    let output = Command::new(example(name)).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn quickstart_runs_the_whole_story_and_exits_zero() {
    let stdout = run_to_success("quickstart").await;
    for expected in [
        "→ 200",
        "token-expired",
        "token-type-mismatch",
        "token-invalid",
        "token-missing",
        "token-invalid-receiver",
    ] {
        assert!(
            stdout.contains(expected),
            "the quickstart did not show {expected}:\n{stdout}"
        );
    }
    // The third machine's token, created by the same token-source code, is refused by machine B,
    // which checks its own machine id.
    let line = |label: &str| {
        stdout
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line:\n{stdout}"))
            .split_once('→')
            .unwrap_or_else(|| panic!("no `→` after `{label}`:\n{stdout}"))
            .1
            .trim()
            .to_owned()
    };
    assert_eq!(
        line("a JWT of mch_backup_job (not scoped to machine B)"),
        "401 reason: token-invalid-receiver"
    );
    assert_eq!(
        line("a JWT (verified locally)"),
        r#"200 {"message":"Success"}"#
    );
}

/// `axum_cron` reads CLERK_MACHINE_ID, its own machine id: only tokens scoped to it pass.
#[tokio::test]
async fn axum_cron_accepts_only_tokens_scoped_to_its_own_machine_id() {
    let key = TestKey::shared_rsa();
    let (_child, url) = start_cron(&[
        ("CLERK_JWT_KEY", key.public_pem()),
        ("CLERK_MACHINE_ID", "mch_reports_api".to_owned()),
    ])
    .await;
    let client = reqwest::Client::new();
    let run = |claims: serde_json::Value| {
        client
            .post(format!("{url}/cron/run"))
            .bearer_auth(key.token("k", &claims))
            .send()
    };
    // `claims()` are scoped to mch_reports_api and mch_billing.
    assert_eq!(run(claims()).await.unwrap().status(), 200);
    let elsewhere = run(with(
        claims(),
        "scopes",
        serde_json::json!("mch_cron_service"),
    ))
    .await
    .unwrap();
    assert_eq!(elsewhere.status(), 401);
    let body: serde_json::Value =
        serde_json::from_slice(&elsewhere.bytes().await.unwrap()).unwrap();
    assert_eq!(body["reason"], "token-invalid-receiver");

    let bad_id = Command::new(example("axum_cron"))
        .env_clear()
        .env("CLERK_JWT_KEY", key.public_pem())
        .env("CLERK_MACHINE_ID", "reports")
        .output()
        .await
        .unwrap();
    assert_eq!(bad_id.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_id.stderr);
    assert!(stderr.contains("CLERK_MACHINE_ID"), "{stderr}");
}

#[tokio::test]
async fn axum_cron_accepts_opaque_tokens_with_a_machine_secret_key() {
    let token = opaque_token();
    let tokens = std::collections::HashMap::from([(
        token.clone(),
        clerk_resource("mt_1", "mch_cron_service"),
    )]);
    let clerk = IntrospectionServer::start(Introspection::Clerk(tokens)).await;
    let (_child, url) = start_cron(&[
        ("CLERK_MACHINE_SECRET_KEY", "ak_example_machine".to_owned()),
        ("CLERK_API_URL", clerk.base_url()),
    ])
    .await;
    let client = reqwest::Client::new();
    let run = client
        .post(format!("{url}/cron/run"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 200);
    assert_eq!(run.text().await.unwrap(), r#"{"message":"Success"}"#);
    let whoami = client
        .get(format!("{url}/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let identity: serde_json::Value =
        serde_json::from_slice(&whoami.bytes().await.unwrap()).unwrap();
    assert_eq!(identity["token_format"], "opaque");
    assert_eq!(identity["token_id"], "mt_1");
    let unknown = client
        .post(format!("{url}/cron/run"))
        .bearer_auth(opaque_token())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
}

/// `machine_client` against `axum_cron`, both on the crate's issuer: one line per call, the
/// token created once and reused, in both formats; a wrong key and a missing target are exit 2.
#[tokio::test]
async fn machine_client_calls_axum_cron_on_a_schedule_reusing_its_token() {
    let config = machine_auth_issuer::IssuerConfig::demo();
    let issuer = machine_auth_issuer::Issuer::builder(config.clone())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
    let (_cron, cron_url) = start_cron(&[
        ("CLERK_API_URL", api_url.clone()),
        ("CLERK_SECRET_KEY", config.instance_secret_key.clone()),
    ])
    .await;
    let target = format!("{cron_url}/cron/run");
    let client = |vars: &[(&str, &str)]| {
        let mut command = Command::new(example("machine_client"));
        command
            .env_clear()
            .env("CLERK_API_URL", &api_url)
            .env("TARGET_URL", &target)
            .env("INTERVAL_SECS", "1")
            .env("CALLS", "2");
        for (name, value) in vars {
            command.env(name, value);
        }
        command.output()
    };
    let key = config.machines[0].secret_key.as_str();
    for format in ["jwt", "opaque"] {
        let output = client(&[("CLERK_MACHINE_SECRET_KEY", key), ("TOKEN_FORMAT", format)])
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                format!("call 1: {target} 200 OK (tokens created so far: 1)"),
                format!("call 2: {target} 200 OK (tokens created so far: 1)"),
            ],
            "{format}"
        );
    }

    let wrong_key = client(&[("CLERK_MACHINE_SECRET_KEY", "ak_not_a_key_of_this_issuer")])
        .await
        .unwrap();
    assert_eq!(wrong_key.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong_key.stderr);
    assert!(stderr.contains("CLERK_MACHINE_SECRET_KEY"), "{stderr}");
    assert!(!stderr.contains("ak_not_a_key_of_this_issuer"), "{stderr}");

    let no_target = Command::new(example("machine_client"))
        .env_clear()
        .env("CLERK_MACHINE_SECRET_KEY", key)
        .output()
        .await
        .unwrap();
    assert_eq!(no_target.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_target.stderr).contains("TARGET_URL"));
}

#[tokio::test]
async fn grpc_cron_calls_over_grpc_and_shows_the_refusals() {
    let stdout = run_to_success("grpc_cron").await;
    for expected in [
        "→ OK, ran_by: mch_cron_service",
        "no token at all                            → Unauthenticated: token-missing: ",
        "an opaque token the issuer never issued    → Unauthenticated: token-invalid: ",
    ] {
        assert!(
            stdout.contains(expected),
            "grpc_cron did not show {expected:?}:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn hyper_server_serves_machine_b_on_plain_hyper() {
    let stdout = run_to_success("hyper_server").await;
    for expected in [
        r#"with machine A's token   → 200 {"ran_by":"mch_cron_service"}"#,
        r#"without a token          → 401 {"error":"unauthorized","#,
        r#""reason":"token-missing""#,
    ] {
        assert!(
            stdout.contains(expected),
            "hyper_server did not show {expected:?}:\n{stdout}"
        );
    }
}

/// The value of the sample of `name` whose labels include all of `labels`, in Prometheus text.
#[cfg(feature = "metrics")]
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (labels_text, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(key, value)| {
                labels_text
                    .split(',')
                    .any(|pair| pair == format!("{key}=\"{value}\""))
            })
            .then(|| value.trim().parse().ok())?
    })
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn axum_cron_counts_requests_in_its_prometheus_metrics() {
    let key = TestKey::shared_rsa();
    let (_child, url) = start_cron(&[("CLERK_JWT_KEY", key.public_pem())]).await;
    let client = reqwest::Client::new();
    let run = |token: Option<String>| {
        let mut request = client.post(format!("{url}/cron/run"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status() }
    };
    let token = key.token("k", &claims());
    assert_eq!(run(Some(token.clone())).await, 200);
    assert_eq!(run(Some(token)).await, 200); // from the cache
    assert_eq!(run(None).await, 401);
    let expired = key.token(
        "k",
        &with(claims_at(now() - 7200), "exp", json!(now() - 60)),
    );
    assert_eq!(run(Some(expired)).await, 401);

    // The probes and the metrics are outside the layer: no token needed.
    let metrics = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    let requests =
        |labels: &[(&str, &str)]| sample(&metrics, "machine_auth_requests_total", labels);
    assert_eq!(
        requests(&[
            ("outcome", "accepted"),
            ("reason", "none"),
            ("token_type", "jwt")
        ]),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        requests(&[
            ("outcome", "rejected"),
            ("reason", "token-missing"),
            ("token_type", "none")
        ]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        requests(&[
            ("outcome", "rejected"),
            ("reason", "token-expired"),
            ("token_type", "jwt")
        ]),
        Some(1.0),
        "{metrics}"
    );
    // A histogram with buckets (not a summary), one sample per verification.
    let verified = |cached: &str| {
        sample(
            &metrics,
            "machine_auth_verify_duration_seconds_count",
            &[("token_type", "jwt"), ("cached", cached)],
        )
    };
    assert_eq!(
        (verified("false"), verified("true")),
        (Some(2.0), Some(1.0)),
        "{metrics}"
    );
    assert!(
        metrics.contains("machine_auth_verify_duration_seconds_bucket{"),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "machine_auth_cache_entries", &[]),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("mch_"),
        "a machine id in a label:\n{metrics}"
    );
}

#[tokio::test]
async fn axum_cron_is_ready_once_its_keys_are_loaded() {
    let key = TestKey::shared_rsa();
    let jwks = JwksServer::start(JwksReply::Status(503)).await;
    let (_child, url) = start_cron(&[
        ("CLERK_SECRET_KEY", "sk_test_readiness".to_owned()),
        ("CLERK_API_URL", format!("http://{}", jwks.addr)),
    ])
    .await;
    let client = reqwest::Client::new();
    let readyz = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    let health: serde_json::Value = serde_json::from_slice(&readyz.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (health["ready"].clone(), health["keys"].clone()),
        (json!(false), json!(0))
    );

    // The JWKS comes up; a token with a kid the verifier has not seen fetches it at once.
    jwks.set(key_set(&[key.jwk("k", Some("RS256"))]));
    let run = client
        .post(format!("{url}/cron/run"))
        .bearer_auth(key.token("k", &claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 200);
    let readyz = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    let health: serde_json::Value = serde_json::from_slice(&readyz.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (health["ready"].clone(), health["keys"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(health["key_source"], "jwks");
    assert_eq!(health["last_fetch_error"], serde_json::Value::Null);
}
