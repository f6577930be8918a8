//! Interoperability with Clerk's own SDK: `@clerk/backend` (pinned in `tests/clerk-sdk/`, installed
//! by this test with `npm ci`) drives the local issuer, and our layer accepts what it created.
#![cfg(feature = "issuer")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};
use tower_machine_auth::issuer::{Issuer, IssuerConfig};
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clerk-sdk")
}

fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs the pinned SDK from the lock file, unless it is there already.
fn install_sdk() {
    if sdk_dir()
        .join("node_modules/@clerk/backend/package.json")
        .exists()
    {
        return;
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(sdk_dir())
        .output()
        .expect("npm runs");
    assert!(
        output.status.success(),
        "npm ci failed in {}:\n{}",
        sdk_dir().display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerks_sdk_drives_the_issuer_and_our_layer_accepts_its_tokens() {
    if !available("node") || !available("npm") {
        eprintln!(
            "SKIPPED: Node.js and npm are needed to run Clerk's SDK (@clerk/backend), and are not on PATH"
        );
        return;
    }
    tokio::task::spawn_blocking(install_sdk).await.unwrap();

    let config = IssuerConfig::demo();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issuer = Issuer::builder(config.clone())
        .issuer_url(&url)
        .build()
        .unwrap();
    let router = issuer.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let script = sdk_dir().join("interop.mjs");
    let (machine_a, machine_b) = (&config.machines[0], &config.machines[1]);
    let mut node = tokio::process::Command::new("node");
    node.arg(&script)
        .env("API_URL", &url)
        .env("SECRET_KEY", &config.instance_secret_key)
        .env("MACHINE_A_SECRET_KEY", &machine_a.secret_key)
        .env("MACHINE_B_SECRET_KEY", &machine_b.secret_key);
    let output = node.output().await.expect("node runs");
    assert!(
        output.status.success(),
        "the SDK script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sdk: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)));
    let value = |step: &str| -> &Value {
        assert_eq!(
            sdk[step]["ok"], true,
            "{step} failed in the SDK: {}",
            sdk[step]
        );
        &sdk[step]["value"]
    };

    // Creation, as the SDK reads the issuer's replies.
    let jwt = value("jwt");
    assert_eq!(jwt["subject"], "mch_cron_service");
    assert_eq!(jwt["scopes"], json!(["mch_reports_api"]));
    let opaque = value("opaque");
    assert_eq!(opaque["claims"], json!({"job": "interop"}));
    assert!(opaque["token"].as_str().unwrap().starts_with("mt_"));
    assert!(opaque["expiration"].as_i64().unwrap() > 0);

    // Verification by machine B: the JWT locally with the issuer's JWKS, the opaque token at the issuer.
    assert_eq!(value("verifyJwt")["subject"], "mch_cron_service");
    assert_eq!(value("verifyOpaque")["id"], opaque["id"]);
    for step in [
        "authenticateJwt",
        "authenticateOpaque",
        "authenticateBeforeRevoke",
    ] {
        let state = value(step);
        assert_eq!(
            (state["status"].as_str(), state["isAuthenticated"].as_bool()),
            (Some("signed-in"), Some(true)),
            "{step}: {state}"
        );
        assert_eq!(state["machineId"], "mch_cron_service", "{step}");
        assert_eq!(state["scopes"], json!(["mch_reports_api"]), "{step}");
    }
    assert_eq!(value("authenticateJwt")["id"], jwt["id"]);

    // Revocation, seen by the SDK at once.
    assert_eq!(value("revoke")["revoked"], true);
    assert_eq!(value("revoke")["revocationReason"], "interop test");
    assert_eq!(
        sdk["verifyRevoked"]["ok"], false,
        "{}",
        sdk["verifyRevoked"]
    );
    assert_eq!(sdk["verifyRevoked"]["error"]["status"], 404);
    let revoked = value("authenticateRevoked");
    assert_eq!(
        (revoked["status"].as_str(), revoked["reason"].as_str()),
        (Some("signed-out"), Some("token-invalid")),
        "{revoked}"
    );
    let listed = value("list");
    assert_eq!(
        listed["totalCount"], 2,
        "the two opaque tokens (JWTs are not stored): {listed}"
    );

    // Our layer accepts what the SDK created, and refuses what it revoked.
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(&config.instance_secret_key)
        .clerk_api_url(&url)
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    for (token, format) in [(jwt, "jwt"), (opaque, "opaque")] {
        let reply = send_bearer(&app, "/whoami", token["token"].as_str().unwrap()).await;
        reply.assert_ok();
        assert_eq!(reply.body["token_format"], format);
        assert_eq!(reply.body["token_id"], token["id"]);
    }
    let revoked_token = value("toRevoke")["token"].as_str().unwrap().to_owned();
    send_bearer(&app, "/whoami", &revoked_token)
        .await
        .assert_rejected(401, "token-invalid", Some(&revoked_token));
}
