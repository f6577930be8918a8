//! Interoperability with Clerk's own SDK: `@clerk/backend` (pinned in `tests/clerk-sdk/package.json`
//! and its lock file, installed by these tests with `npm ci` when it is missing) is the client of the
//! local issuer, and our layer accepts what it created.
//!
//! Each test starts an issuer on loopback behind a recorder of the HTTP exchanges, runs one Node
//! script from `tests/clerk-sdk/` against it and reads the JSON document the script prints. Where
//! the SDK expects something of Clerk's Backend API, the tests assert what the SDK expects, not what
//! the issuer happens to do. Without `node` and `npm` on PATH the tests say so and pass.
#![cfg(feature = "issuer")]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::middleware::{self, Next};
use common::*;
use serde_json::{Value, json};
use tower_machine_auth::clock::Clock;
use tower_machine_auth::issuer::{CreateTokenRequest, Issuer, IssuerConfig, TokenFormatParam};
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

/// How long one Node script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clerk-sdk")
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The exact version of `@clerk/backend` that `tests/clerk-sdk/package.json` pins.
fn pinned_version() -> String {
    let manifest =
        read_json(&sdk_dir().join("package.json")).expect("tests/clerk-sdk/package.json");
    let version = manifest["dependencies"]["@clerk/backend"]
        .as_str()
        .expect("package.json depends on @clerk/backend")
        .to_owned();
    assert!(
        version.split('.').count() == 3 && version.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
        "package.json must pin an exact version of @clerk/backend, not `{version}`"
    );
    version
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Installs the pinned SDK from the lock file (`npm ci`) unless that version is installed already.
/// Tests run in parallel: one installs, the others wait for it.
fn install_sdk() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let pinned = pinned_version();
    let installed = read_json(&sdk_dir().join("node_modules/@clerk/backend/package.json"))
        .and_then(|manifest| manifest["version"].as_str().map(str::to_owned));
    if installed.as_deref() == Some(pinned.as_str()) {
        return;
    }
    eprintln!(
        "installing @clerk/backend {pinned} with `npm ci` in {}",
        sdk_dir().display()
    );
    let output = Command::new("npm")
        .args([
            "ci",
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(sdk_dir())
        .output()
        .expect("npm runs");
    assert!(
        output.status.success(),
        "`npm ci` failed in {}:\n{}{}",
        sdk_dir().display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A wall clock that the test can set back, for tokens that are already expired.
#[derive(Debug, Clone, Default)]
struct ShiftedClock(Arc<AtomicI64>);

impl ShiftedClock {
    fn shift(&self, by: Duration, back: bool) {
        let ms = i64::try_from(by.as_millis()).unwrap();
        self.0.store(if back { -ms } else { ms }, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> SystemTime {
        let shift = self.0.load(Ordering::SeqCst);
        let by = Duration::from_millis(shift.unsigned_abs());
        if shift < 0 {
            SystemTime::now() - by
        } else {
            SystemTime::now() + by
        }
    }
}

/// One HTTP exchange between a client and the issuer, as the recorder saw it.
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    /// Path and query.
    target: String,
    authorization: Option<String>,
    user_agent: Option<String>,
    api_version: Option<String>,
    status: u16,
    content_type: Option<String>,
}

fn header(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The issuer on loopback, behind a recorder of its exchanges.
struct LocalIssuer {
    issuer: Issuer,
    config: IssuerConfig,
    url: String,
    clock: ShiftedClock,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

impl LocalIssuer {
    /// Installs the SDK and starts the issuer, or says why not and returns `None`.
    async fn start() -> Option<Self> {
        if !on_path("node") || !on_path("npm") {
            eprintln!(
                "SKIPPED: Clerk's SDK (@clerk/backend) needs Node.js and npm, and `node` or `npm` \
                 is not on PATH"
            );
            return None;
        }
        tokio::task::spawn_blocking(install_sdk).await.unwrap();

        let config = IssuerConfig::demo();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let clock = ShiftedClock::default();
        let issuer = Issuer::builder(config.clone())
            .issuer_url(&url)
            .clock(clock.clone())
            .build()
            .unwrap();
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let recorder = exchanges.clone();
        let router =
            issuer
                .router()
                .layer(middleware::from_fn(move |request: Request, next: Next| {
                    let recorder = recorder.clone();
                    async move {
                        let mut exchange = Exchange {
                            method: request.method().to_string(),
                            target: request.uri().to_string(),
                            authorization: header(request.headers(), "authorization"),
                            user_agent: header(request.headers(), "user-agent"),
                            api_version: header(request.headers(), "clerk-api-version"),
                            status: 0,
                            content_type: None,
                        };
                        let response = next.run(request).await;
                        exchange.status = response.status().as_u16();
                        exchange.content_type = response
                            .headers()
                            .get("content-type")
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_owned);
                        recorder.lock().unwrap().push(exchange);
                        response
                    }
                }));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Some(Self {
            issuer,
            config,
            url,
            clock,
            exchanges,
        })
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().unwrap().clone()
    }

    /// Runs `node tests/clerk-sdk/<script>` with `env` and parses what it prints.
    async fn run(&self, script: &str, env: &[(&str, &str)]) -> Value {
        let mut node = tokio::process::Command::new("node");
        node.arg(sdk_dir().join(script))
            .current_dir(sdk_dir())
            .kill_on_drop(true);
        // Nothing from the outer environment configures the SDK behind the test's back.
        for (name, _) in std::env::vars() {
            if name.starts_with("CLERK_") {
                node.env_remove(name);
            }
        }
        node.envs(env.iter().copied());
        let output = tokio::time::timeout(SCRIPT_TIMEOUT, node.output())
            .await
            .unwrap_or_else(|_| panic!("{script} ran for more than {SCRIPT_TIMEOUT:?}"))
            .expect("node runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{script} failed:\n{stderr}");
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "{script} did not print one JSON document ({error}):\n{}\n{stderr}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}

/// The value a script step produced, or a panic that shows the SDK's error.
fn step<'a>(sdk: &'a Value, name: &str) -> &'a Value {
    assert_eq!(
        sdk[name]["ok"], true,
        "{name} failed in the SDK: {}",
        sdk[name]
    );
    &sdk[name]["value"]
}

/// The error a script step threw, or a panic that shows what it returned instead.
fn step_error<'a>(sdk: &'a Value, name: &str) -> &'a Value {
    assert_eq!(
        sdk[name]["ok"], false,
        "{name} succeeded in the SDK: {}",
        sdk[name]
    );
    &sdk[name]["error"]
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerks_sdk_drives_the_issuer_and_our_layer_accepts_its_tokens() {
    let Some(local) = LocalIssuer::start().await else {
        return;
    };
    let config = &local.config;
    let (machine_a, machine_b) = (&config.machines[0], &config.machines[1]);
    assert_eq!(
        (machine_a.id.as_str(), machine_a.scopes.as_slice()),
        ("mch_cron_service", &["mch_reports_api".to_owned()][..]),
        "the demo's machine A may call machine B"
    );
    let jwt_key = local.issuer.public_key_pem().unwrap();
    let closed_url = closed_port_url();
    let sdk = local
        .run(
            "interop.mjs",
            &[
                ("API_URL", &local.url),
                ("CLOSED_URL", &closed_url),
                ("SECRET_KEY", &config.instance_secret_key),
                ("MACHINE_A_SECRET_KEY", &machine_a.secret_key),
                ("MACHINE_B_SECRET_KEY", &machine_b.secret_key),
                ("JWT_KEY", &jwt_key),
            ],
        )
        .await;
    let exchanges = local.exchanges();

    // Creation, as the SDK reads the issuer's 201 replies.
    let jwt = step(&sdk, "jwt");
    assert_eq!(jwt["subject"], "mch_cron_service");
    assert_eq!(jwt["scopes"], json!(["mch_reports_api"]));
    assert_eq!(jwt["revoked"], false);
    assert_eq!(text(&jwt["token"]).split('.').count(), 3, "{jwt}");
    let opaque = step(&sdk, "opaque");
    assert_eq!(opaque["subject"], "mch_cron_service");
    assert_eq!(opaque["claims"], json!({"job": "interop"}));
    assert!(text(&opaque["token"]).starts_with("mt_"), "{opaque}");
    assert_eq!(
        opaque["expiration"].as_i64().unwrap() - opaque["createdAt"].as_i64().unwrap(),
        600_000,
        "secondsUntilExpiration: 600, in milliseconds: {opaque}"
    );
    let to_revoke = step(&sdk, "toRevoke");
    assert!(
        text(&to_revoke["token"]).starts_with("mt_"),
        "the SDK's default format is opaque"
    );
    assert_eq!(to_revoke["claims"], Value::Null);

    // `m2m.verify`: the JWT locally with the JWKS, the opaque token at `/m2m_tokens/verify`.
    let verified_jwt = step(&sdk, "verifyJwt");
    assert_eq!(
        (
            &verified_jwt["id"],
            &verified_jwt["subject"],
            &verified_jwt["scopes"]
        ),
        (&jwt["id"], &jwt["subject"], &jwt["scopes"])
    );
    let verified_opaque = step(&sdk, "verifyOpaque");
    assert_eq!(verified_opaque["id"], opaque["id"]);
    assert_eq!(verified_opaque["claims"], json!({"job": "interop"}));
    assert_eq!(verified_opaque["revoked"], false);
    assert!(verified_opaque.get("token").is_none_or(Value::is_null));

    // `authenticateRequest(…, { acceptsToken: 'm2m_token' })`, by machine B (JWKS with the
    // instance key; opaque tokens with its machine key), by a client holding only the PEM key, and
    // by one holding only the instance key.
    for (name, token) in [
        ("authenticateJwt", jwt),
        ("authenticateOpaque", opaque),
        ("authenticateBeforeRevoke", to_revoke),
        ("authenticateJwtNetworkless", jwt),
        ("authenticateOpaqueWithInstanceKey", opaque),
        ("authenticateOpaqueAfterRevoke", opaque),
    ] {
        let state = step(&sdk, name);
        assert_eq!(
            (
                state["status"].as_str(),
                state["isAuthenticated"].as_bool(),
                state["reason"].as_str()
            ),
            (Some("signed-in"), Some(true), None),
            "{name}: {state}"
        );
        assert_eq!(state["tokenType"], "m2m_token", "{name}");
        assert_eq!(state["machineId"], "mch_cron_service", "{name}");
        assert_eq!(state["subject"], "mch_cron_service", "{name}");
        assert_eq!(state["scopes"], json!(["mch_reports_api"]), "{name}");
        assert_eq!(state["id"], token["id"], "{name}");
    }
    assert_eq!(
        step(&sdk, "authenticateOpaque")["claims"],
        json!({"job": "interop"})
    );
    let stranger = step(&sdk, "authenticateOpaqueWithUnknownKey");
    assert_eq!(
        (stranger["status"].as_str(), stranger["reason"].as_str()),
        (Some("signed-out"), Some("secret-key-invalid")),
        "an unknown machine secret key is a 401 for the SDK: {stranger}"
    );

    // Revocation, seen by the SDK at once.
    let revoked = step(&sdk, "revoke");
    assert_eq!(revoked["id"], to_revoke["id"]);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["revocationReason"], "interop test");
    let error = step_error(&sdk, "verifyRevoked");
    assert_eq!(error["status"], 404, "{error}");
    let state = step(&sdk, "authenticateRevoked");
    assert_eq!(
        (
            state["status"].as_str(),
            state["isAuthenticated"].as_bool(),
            state["reason"].as_str()
        ),
        (Some("signed-out"), Some(false), Some("token-invalid")),
        "{state}"
    );

    // The wire, as the issuer saw it: every request came from the pinned SDK and carried its API
    // version; every reply was exactly `application/json` (the SDK parses nothing else); the m2m
    // routes were called without `/v1`, the JWKS at `/v1/jwks` with the instance secret key.
    let user_agent = format!("@clerk/backend@{}", pinned_version());
    assert!(!exchanges.is_empty());
    for exchange in &exchanges {
        assert_eq!(
            exchange.user_agent.as_deref(),
            Some(user_agent.as_str()),
            "{exchange:?}"
        );
        assert!(exchange.api_version.is_some(), "{exchange:?}");
        assert_eq!(
            exchange.content_type.as_deref(),
            Some("application/json"),
            "{exchange:?}"
        );
        assert!(
            exchange.target == "/v1/jwks" || exchange.target.starts_with("/m2m_tokens"),
            "a route the SDK should not call: {exchange:?}"
        );
    }
    let jwks: Vec<_> = exchanges
        .iter()
        .filter(|e| e.target == "/v1/jwks")
        .collect();
    assert!(
        !jwks.is_empty(),
        "the SDK never fetched the JWKS: {exchanges:#?}"
    );
    let instance_key = format!("Bearer {}", config.instance_secret_key);
    for exchange in jwks {
        assert_eq!(
            (
                exchange.method.as_str(),
                exchange.authorization.as_deref(),
                exchange.status
            ),
            ("GET", Some(instance_key.as_str()), 200),
            "{exchange:?}"
        );
    }

    // Observations for the record (not asserted, see the report of these tests).
    eprintln!(
        "observed: createToken() with the SDK's default `seconds_until_expiration: null` expires \
         after {} s; createToken({{ minRemainingTtlSeconds: 60 }}) -> {}",
        (to_revoke["expiration"].as_i64().unwrap_or(0)
            - to_revoke["createdAt"].as_i64().unwrap_or(0))
            / 1000,
        sdk["reuse"]
    );

    // Our layer accepts what the SDK created, and refuses what it revoked.
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(&config.instance_secret_key)
        .clerk_api_url(&local.url)
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    for (token, format) in [(jwt, "jwt"), (opaque, "opaque")] {
        let reply = send_bearer(&app, "/whoami", text(&token["token"])).await;
        reply.assert_ok();
        assert_eq!(reply.body["token_format"], format, "{reply:?}");
        assert_eq!(reply.body["token_id"], token["id"], "{reply:?}");
        assert_eq!(reply.body["machine_id"], "mch_cron_service", "{reply:?}");
        assert_eq!(
            reply.body["scopes"],
            json!(["mch_reports_api"]),
            "{reply:?}"
        );
    }
    let reply = send_bearer(&app, "/whoami", text(&opaque["token"])).await;
    assert_eq!(reply.body["claims"], json!({"job": "interop"}), "{reply:?}");
    let revoked_token = text(&to_revoke["token"]);
    send_bearer(&app, "/whoami", revoked_token)
        .await
        .assert_rejected(401, "token-invalid", Some(revoked_token));
}

/// `clerkClient.m2m.list`: the SDK documents `revoked` and `expired` as "Whether to include
/// revoked [expired] M2M tokens. Defaults to `false`." and sends only true flags (its query
/// builder drops `false`), so the Backend API must leave revoked and expired tokens out unless
/// asked to include them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerks_sdk_lists_tokens_as_it_documents() {
    let Some(local) = LocalIssuer::start().await else {
        return;
    };
    let machine = &local.config.machines[0];
    // A token that expired a minute ago.
    local.clock.shift(Duration::from_secs(120), true);
    let expired = local
        .issuer
        .create_token(
            &machine.secret_key,
            CreateTokenRequest {
                seconds_until_expiration: Some(60),
                token_format: Some(TokenFormatParam::Opaque),
                ..Default::default()
            },
        )
        .unwrap();
    local.clock.shift(Duration::ZERO, false);

    let sdk = local
        .run(
            "list.mjs",
            &[
                ("API_URL", &local.url),
                ("MACHINE_A_ID", &machine.id),
                ("MACHINE_A_SECRET_KEY", &machine.secret_key),
            ],
        )
        .await;
    let live = text(&step(&sdk, "live")["id"]).to_owned();
    let revoked = text(&step(&sdk, "revoked")["id"]).to_owned();
    assert_eq!(step(&sdk, "revoke")["revoked"], true);
    let name = |id: &str| {
        if id == live {
            "live".to_owned()
        } else if id == revoked {
            "revoked".to_owned()
        } else if id == expired.id {
            "expired".to_owned()
        } else {
            id.to_owned()
        }
    };

    let mut gaps = Vec::new();
    for (case, expected) in [
        ("default", &["live"][..]),
        ("notRevokedNotExpired", &["live"]),
        ("withRevoked", &["live", "revoked"]),
        ("withExpired", &["live", "expired"]),
        ("withRevokedAndExpired", &["live", "revoked", "expired"]),
    ] {
        let page = &sdk["lists"][case];
        assert_eq!(page["ok"], true, "list {case} failed in the SDK: {page}");
        let got: BTreeSet<String> = page["value"]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| name(text(id)))
            .collect();
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        let total = page["value"]["totalCount"].as_u64();
        if got != expected || total != Some(expected.len() as u64) {
            gaps.push(format!(
                "list {case}: the SDK expects {expected:?} (totalCount {}), the issuer answered \
                 {got:?} (totalCount {total:?})",
                expected.len()
            ));
        }
    }
    let queries: Vec<String> = local
        .exchanges()
        .into_iter()
        .filter(|e| e.method == "GET")
        .map(|e| e.target)
        .collect();
    assert!(
        gaps.is_empty(),
        "the issuer's GET /m2m_tokens does not filter as Clerk's SDK documents:\n  {}\nqueries the \
         SDK sent: {queries:#?}",
        gaps.join("\n  ")
    );
}

/// The error replies, as the SDK surfaces them (`ClerkAPIResponseError.errors[0]`), match what
/// Clerk's own SDK tests expect of the Backend API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerks_sdk_reads_the_issuers_errors_as_clerks() {
    let Some(local) = LocalIssuer::start().await else {
        return;
    };
    let sdk = local
        .run(
            "errors.mjs",
            &[
                ("API_URL", &local.url),
                ("SECRET_KEY", &local.config.instance_secret_key),
            ],
        )
        .await;
    let error = step_error(&sdk, "createWithInstanceKey");
    assert_eq!(error["name"], "ClerkAPIResponseError", "{error}");
    assert_eq!(error["status"], 401, "{error}");
    assert_eq!(
        error["errors"][0]["code"], "machine_secret_key_invalid",
        "{error}"
    );
    assert_eq!(
        error["errors"][0]["message"],
        "The provided Machine Secret Key is invalid. Make sure that your Machine Secret Key is \
         correct.",
        "Clerk's SDK tests expect this sentence as the error's `message`: {error}"
    );
}
