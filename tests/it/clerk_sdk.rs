//! Interoperability with Clerk's own SDK: `@clerk/backend` (pinned in `tests/clerk-sdk/package.json`
//! and its lock file, installed by these tests with `npm ci` when it is missing) is the client of the
//! local issuer, and our layer accepts what it created. The SDK is also the reference verifier:
//! token by token, its decision and our layer's must agree, or differ only as the test's list of
//! expected differences says.
//!
//! Each test starts an issuer on loopback behind a recorder of the HTTP exchanges, runs one Node
//! script from `tests/clerk-sdk/` against it and reads the JSON document the script prints. Where
//! the SDK expects something of Clerk's Backend API, the tests assert what the SDK expects, not what
//! the issuer happens to do. Without `node` and `npm` on PATH, or when the SDK cannot be
//! installed, each test prints `SKIPPED:` and why, and passes, unless `CLERK_SDK_TESTS_REQUIRED`
//! is set (`.ci/run` sets it): then it fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::common::*;
use axum::extract::Request;
use axum::middleware::{self, Next};
use machine_auth_issuer::{CreateTokenRequest, Issuer, IssuerConfig, TokenFormatParam};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tower_machine_auth::clock::Clock;
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

/// Set (as `.ci/run` does) to make a test that cannot run fail instead of being skipped.
const REQUIRED: &str = "CLERK_SDK_TESTS_REQUIRED";

/// Says that a test did not run, and why, where it shows (past the harness's output capture);
/// fails the test instead when [`REQUIRED`] is set.
fn skip(why: &str) {
    if std::env::var_os(REQUIRED).is_some() {
        panic!("{REQUIRED} is set, but Clerk's SDK cannot run: {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {why} (set {REQUIRED} to fail instead)"
    );
}

/// Installs the pinned SDK from the lock file (`npm ci`) unless that version is installed
/// already, or says why it cannot. Tests run in parallel: one installs, the others wait for it.
fn install_sdk() -> Result<(), String> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let pinned = pinned_version();
    let installed = read_json(&sdk_dir().join("node_modules/@clerk/backend/package.json"))
        .and_then(|manifest| manifest["version"].as_str().map(str::to_owned));
    if installed.as_deref() == Some(pinned.as_str()) {
        return Ok(());
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
        .map_err(|error| format!("npm does not run: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "the SDK is not installed: `npm ci` failed in {}:\n{}{}",
            sdk_dir().display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
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
    /// Installs the SDK and starts the issuer with the demo configuration, or says why not and
    /// returns `None`.
    async fn start() -> Option<Self> {
        Self::start_with(IssuerConfig::demo()).await
    }

    /// Installs the SDK and starts the issuer with `config`, or says why not and returns `None`.
    async fn start_with(config: IssuerConfig) -> Option<Self> {
        if !on_path("node") || !on_path("npm") {
            skip(
                "Clerk's SDK (@clerk/backend) needs Node.js and npm, and `node` or `npm` is not \
                 on PATH",
            );
            return None;
        }
        if let Err(why) = tokio::task::spawn_blocking(install_sdk).await.unwrap() {
            skip(&why);
            return None;
        }

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
        self.run_with_input(script, env, &[]).await
    }

    /// Runs `node tests/clerk-sdk/<script>` with `env` and `input` on its standard input, and
    /// parses what it prints.
    async fn run_with_input(&self, script: &str, env: &[(&str, &str)], input: &[u8]) -> Value {
        let mut node = tokio::process::Command::new("node");
        node.arg(sdk_dir().join(script))
            .current_dir(sdk_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // Nothing from the outer environment configures the SDK behind the test's back.
        for (name, _) in std::env::vars() {
            if name.starts_with("CLERK_") {
                node.env_remove(name);
            }
        }
        node.envs(env.iter().copied());
        let run = async {
            let mut child = node.spawn()?;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            // The scripts read all of their input before they print anything.
            stdin.write_all(input).await?;
            drop(stdin);
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(SCRIPT_TIMEOUT, run)
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

// ---------------------------------------------------------------------------------------------
// Token by token: what Clerk's SDK decides, what our layer decides.
// ---------------------------------------------------------------------------------------------

/// Machine B of the comparison: the receiving machine, `own_machine_id` on our side.
const MACHINE_B: &str = "mch_reports_api";
/// The `iss` of the hand-made tokens (`crate::common::claims`), and the issuer one of our verifiers wants.
const HAND_MADE_ISSUER: &str = "https://clerk.example.test";
/// The `kid` of the hand-made tokens (with a PEM key, neither side looks it up).
const HAND_MADE_KID: &str = "ins_interop_pem";

/// What one side decided about one token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Let through: `signed-in` for the SDK, 200 from our layer.
    Accepted,
    /// Refused, with the HTTP status and the reason. Clerk's SDK gives no status: its framework
    /// adapters answer 401 for every signed-out machine request, so its refusals count as 401.
    Rejected(u16, String),
}

impl Outcome {
    fn rejected(reason: &str) -> Self {
        Self::Rejected(401, reason.to_owned())
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accepted => f.write_str("200 accepted"),
            Self::Rejected(status, reason) => write!(f, "{status} {reason}"),
        }
    }
}

/// The differences between Clerk's SDK and our layer that are expected, each with its reason.
/// A disagreement not named by its case fails the test, and so does a named difference that does
/// not show (the list, and the README section built from it, would be out of date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Difference {
    /// Finer reasons for JWT failures.
    FinerJwtReason,
    /// `nbf: null`, `iat: null`.
    NullTimeClaimIsAbsent,
    /// A configured issuer.
    IssuerChecked,
    /// The receiver check where Clerk's SDK has none.
    ReceiverChecked,
    /// The receiver check where Clerk's API refuses too, under another reason.
    ReceiverReasonNamed,
}

impl Difference {
    const ALL: [Self; 5] = [
        Self::FinerJwtReason,
        Self::NullTimeClaimIsAbsent,
        Self::IssuerChecked,
        Self::ReceiverChecked,
        Self::ReceiverReasonNamed,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::FinerJwtReason => "finer-jwt-reason",
            Self::NullTimeClaimIsAbsent => "null-time-claim-is-absent",
            Self::IssuerChecked => "issuer-checked",
            Self::ReceiverChecked => "receiver-checked",
            Self::ReceiverReasonNamed => "receiver-reason-named",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::FinerJwtReason => {
                "Clerk's SDK answers every M2M JWT failure with token-verification-failed; we name \
                 it (token-invalid for a missing claim or a rejected header)"
            }
            Self::NullTimeClaimIsAbsent => {
                "JSON null in nbf or iat means absent for us, as in the other optional claims; \
                 Clerk's SDK 3.25.0 refuses it (\"Expected number\", token-verification-failed): \
                 here we are more lenient"
            }
            Self::IssuerChecked => {
                "with an issuer configured, iss must be exactly that string (absent, null or \
                 another issuer: token-verification-failed); Clerk's SDK does not check iss on the \
                 M2M path"
            }
            Self::ReceiverChecked => {
                "with own_machine_id set, a token must name this machine among its scopes \
                 (token-invalid-receiver); Clerk's SDK accepts any machine's JWT it verifies \
                 locally, and any opaque token it verifies with the instance secret key"
            }
            Self::ReceiverReasonNamed => {
                "an opaque token not scoped to this machine: Clerk's API hides it from machine \
                 B's own key (404, token-invalid); verifying with the instance key, we see it and \
                 say why we refuse it (token-invalid-receiver)"
            }
        }
    }
}

/// What a case expects of the two sides.
#[derive(Debug, Clone)]
enum Want {
    /// Both decide this.
    Agree(Outcome),
    /// They differ, for a listed reason.
    Differ {
        clerk: Outcome,
        ours: Outcome,
        why: Difference,
    },
}

/// How Clerk's SDK is configured (the clients of `tests/clerk-sdk/compare.mjs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SdkClient {
    /// `jwtKey`: the PEM of the key the hand-made tokens are signed with.
    Pem,
    /// Machine B: the instance secret key (JWKS) and B's machine secret key (opaque tokens).
    MachineB,
    /// Only the instance secret key.
    Instance,
}

impl SdkClient {
    fn name(self) -> &'static str {
        match self {
            Self::Pem => "pem",
            Self::MachineB => "machineB",
            Self::Instance => "instance",
        }
    }
}

/// How our layer is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OurVerifier {
    /// The same PEM key, nothing else.
    Pem,
    /// The PEM key, and `issuer` set to [`HAND_MADE_ISSUER`].
    PemIssuer,
    /// The PEM key, and `own_machine_id` set to [`MACHINE_B`].
    PemReceiver,
    /// The instance secret key (JWKS, and opaque tokens at the issuer), `own_machine_id` B.
    InstanceKeyReceiver,
    /// The instance secret key for the JWKS, B's machine secret key for opaque tokens,
    /// `own_machine_id` B.
    MachineKeyReceiver,
}

impl OurVerifier {
    const ALL: [Self; 5] = [
        Self::Pem,
        Self::PemIssuer,
        Self::PemReceiver,
        Self::InstanceKeyReceiver,
        Self::MachineKeyReceiver,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Pem => "pem",
            Self::PemIssuer => "pem+issuer",
            Self::PemReceiver => "pem+own_id",
            Self::InstanceKeyReceiver => "sk+own_id",
            Self::MachineKeyReceiver => "sk+ak_B+own_id",
        }
    }

    fn checks_receiver(self) -> bool {
        matches!(
            self,
            Self::PemReceiver | Self::InstanceKeyReceiver | Self::MachineKeyReceiver
        )
    }
}

/// One token, the configurations that judge it, and what is expected.
struct Case {
    name: String,
    token: String,
    sdk: SdkClient,
    ours: OurVerifier,
    want: Want,
    /// Text that Clerk's message must contain: the SDK refuses for this cause, not another.
    clerk_says: Option<&'static str>,
}

impl Case {
    fn clerk_says(mut self, text: &'static str) -> Self {
        self.clerk_says = Some(text);
        self
    }
}

fn case(name: &str, token: &str, sdk: SdkClient, ours: OurVerifier, want: Want) -> Case {
    Case {
        name: name.to_owned(),
        token: token.to_owned(),
        sdk,
        ours,
        want,
        clerk_says: None,
    }
}

fn agree(outcome: Outcome) -> Want {
    Want::Agree(outcome)
}

fn differ(clerk: Outcome, ours: Outcome, why: Difference) -> Want {
    Want::Differ { clerk, ours, why }
}

/// What both sides saw of one token.
struct Observed {
    clerk: Outcome,
    /// The SDK's `toAuth()`: `machineId`, `id`, `scopes`, and its message when refused.
    clerk_auth: Value,
    ours: Outcome,
    /// Our `/whoami` body (the identity) or the rejection body.
    ours_body: Value,
}

/// Clerk's decision, from `authenticate` in `tests/clerk-sdk/sdk.mjs`.
fn clerk_outcome(name: &str, attempt: &Value) -> (Outcome, Value) {
    assert_eq!(
        attempt["ok"], true,
        "{name}: authenticateRequest threw in the SDK: {attempt}"
    );
    let state = &attempt["value"];
    let outcome = match (state["status"].as_str(), state["isAuthenticated"].as_bool()) {
        (Some("signed-in"), Some(true)) => Outcome::Accepted,
        (Some("signed-out"), Some(false)) => Outcome::rejected(text(&state["reason"])),
        _ => panic!("{name}: an SDK state neither signed in nor out: {state}"),
    };
    (outcome, state.clone())
}

/// Scopes as the SDK reports them, without the empty strings its `split(' ')` leaves for
/// repeated spaces (we drop those). The SDK passes a string `aud` through unchanged
/// (`scopes?.split(' ') ?? aud ?? []`), so its `scopes` may be a string: it counts as that one
/// scope, as we read it.
fn sdk_scopes(state: &Value) -> Vec<String> {
    let scopes = match &state["scopes"] {
        Value::String(scope) => vec![scope.clone()],
        Value::Array(scopes) => scopes.iter().map(|scope| text(scope).to_owned()).collect(),
        _ => Vec::new(),
    };
    scopes
        .into_iter()
        .filter(|scope| !scope.is_empty())
        .collect()
}

/// The three behaviours of the layer's contract, token by token against Clerk's SDK: JSON `null`
/// in an optional claim means absent; other Clerk token kinds are a type mismatch; and the
/// receiver check (`own_machine_id`). Hand-made JWTs are signed with a test key whose PEM both
/// sides get; the issuer's own JWTs and opaque tokens come from the local issuer on loopback, which
/// Clerk's SDK and our layer both call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerks_sdk_and_our_layer_decide_alike_token_by_token() {
    // The demo's machines A (`mch_cron_service`, scoped to B) and B, and three more machines whose
    // tokens are not meant for B: one scoped to an id that B's id is a prefix of, one scoped to
    // B's id in another case, and B itself (scoped to nobody).
    let mut config = IssuerConfig::demo();
    for (id, scope) in [
        ("mch_billing_worker", "mch_reports_api_v2"),
        ("mch_audit_worker", "mch_Reports_Api"),
    ] {
        config.machines.push(machine_auth_issuer::MachineConfig {
            id: id.to_owned(),
            name: id.to_owned(),
            secret_key: format!("ak_interop_{id}_secret"),
            scopes: vec![scope.to_owned()],
            default_token_ttl: 3600,
            template: None,
        });
    }
    let Some(local) = LocalIssuer::start_with(config).await else {
        return;
    };
    let config = &local.config;
    let machine = |id: &str| {
        config
            .machines
            .iter()
            .find(|machine| machine.id == id)
            .unwrap_or_else(|| panic!("machine {id} is configured"))
    };
    let machine_b = machine(MACHINE_B);
    assert_eq!(
        machine("mch_cron_service").scopes,
        [MACHINE_B],
        "the demo's machine A may call machine B"
    );
    let issue = |id: &str, format: TokenFormatParam| {
        local
            .issuer
            .create_token(
                &machine(id).secret_key,
                CreateTokenRequest {
                    token_format: Some(format),
                    ..Default::default()
                },
            )
            .unwrap()
            .token
            .unwrap()
    };

    let key = TestKey::shared_rsa();
    let m2m = |claims: Value| key.token(HAND_MADE_KID, &claims);
    let signed = |header: Value, claims: Value| {
        key.sign_raw("RS256", &header.to_string(), &claims.to_string())
    };
    let null = Value::Null;
    let accepted = || Outcome::Accepted;
    let rejected = Outcome::rejected;
    use Difference::*;
    use OurVerifier as Ours;
    use SdkClient as Sdk;

    let mut cases = Vec::new();

    // 1. JSON null in an optional claim means absent; exp and sub stay required.
    for name in ["jti", "iss", "aud", "scopes", "azp"] {
        cases.push(case(
            &format!("{name}: null"),
            &m2m(with(claims(), name, null.clone())),
            Sdk::Pem,
            Ours::Pem,
            agree(accepted()),
        ));
    }
    for (name, says) in [
        ("nbf", "(nbf) null. Expected number."),
        ("iat", "(iat) null. Expected number."),
    ] {
        cases.push(
            case(
                &format!("{name}: null"),
                &m2m(with(claims(), name, null.clone())),
                Sdk::Pem,
                Ours::Pem,
                differ(
                    rejected("token-verification-failed"),
                    accepted(),
                    NullTimeClaimIsAbsent,
                ),
            )
            .clerk_says(says),
        );
    }
    let mut all_null = claims();
    for name in ["jti", "iss", "aud", "scopes", "azp"] {
        all_null[name] = Value::Null;
    }
    cases.extend([
        case(
            "a valid M2M JWT (control)",
            &m2m(claims()),
            Sdk::Pem,
            Ours::Pem,
            agree(accepted()),
        ),
        case(
            "jti, iss, aud, scopes, azp all null",
            &m2m(all_null),
            Sdk::Pem,
            Ours::Pem,
            agree(accepted()),
        ),
        case(
            "exp: null",
            &m2m(with(claims(), "exp", null.clone())),
            Sdk::Pem,
            Ours::Pem,
            differ(
                rejected("token-verification-failed"),
                rejected("token-invalid"),
                FinerJwtReason,
            ),
        )
        .clerk_says("(exp) null. Expected number."),
        // Clerk's SDK tells token kinds apart by `sub` before verifying anything: a JWT without a
        // string `sub` is not a machine token.
        case(
            "sub: null",
            &m2m(with(claims(), "sub", null.clone())),
            Sdk::Pem,
            Ours::Pem,
            agree(rejected("token-type-mismatch")),
        ),
        case(
            "issuer configured, iss matches",
            &m2m(claims()),
            Sdk::Pem,
            Ours::PemIssuer,
            agree(accepted()),
        ),
    ]);
    for (name, claims) in [
        (
            "issuer configured, iss: null",
            with(claims(), "iss", null.clone()),
        ),
        ("issuer configured, no iss", without(claims(), "iss")),
        (
            "issuer configured, another iss",
            with(claims(), "iss", json!("https://other.example.test")),
        ),
    ] {
        cases.push(case(
            name,
            &m2m(claims),
            Sdk::Pem,
            Ours::PemIssuer,
            differ(
                accepted(),
                rejected("token-verification-failed"),
                IssuerChecked,
            ),
        ));
    }

    // 2. Other Clerk token kinds, signed by the right key, are a type mismatch; M2M tokens (sub
    // `mch_…`) with another kind's header break the header rules.
    let now = now();
    let session_claims = json!({
        "azp": "http://localhost:3000", "exp": now + 60, "fva": [0, -1], "iat": now,
        "iss": HAND_MADE_ISSUER, "nbf": now - 5, "sid": "sess_2abcdefghijklmnopqrstuvwxyz",
        "sub": "user_2abcdefghijklmnopqrstuvwxyz", "v": 2,
    });
    let oauth_claims = json!({
        "client_id": "client_2abcdefghijklmnopqrstuvwxyz", "exp": now + 3600, "iat": now,
        "iss": HAND_MADE_ISSUER, "jti": "oat_0123456789abcdef0123456789abcdef", "nbf": now - 5,
        "scope": "profile email", "sub": "user_2abcdefghijklmnopqrstuvwxyz",
    });
    let session_header =
        json!({"alg": "RS256", "kid": HAND_MADE_KID, "typ": "JWT", "cat": "cl_B7d4PD111AAA"});
    let oauth_header = json!({"alg": "RS256", "kid": HAND_MADE_KID, "typ": "at+jwt"});
    cases.extend([
        case(
            "session token (cat cl_B7d4PD111AAA, sid, sub user_)",
            &signed(session_header.clone(), session_claims),
            Sdk::Pem,
            Ours::Pem,
            agree(rejected("token-type-mismatch")),
        ),
        case(
            "OAuth access token (typ at+jwt, client_id, sub user_)",
            &signed(oauth_header.clone(), oauth_claims),
            Sdk::Pem,
            Ours::Pem,
            agree(rejected("token-type-mismatch")),
        ),
        case(
            "sub mch_ with typ at+jwt",
            &signed(oauth_header, claims()),
            Sdk::Pem,
            Ours::Pem,
            differ(
                rejected("token-verification-failed"),
                rejected("token-invalid"),
                FinerJwtReason,
            ),
        )
        .clerk_says(r#"Invalid JWT type "at+jwt""#),
        case(
            "sub mch_ with cat cl_B7d4PD111AAA",
            &signed(session_header, claims()),
            Sdk::Pem,
            Ours::Pem,
            agree(rejected("token-invalid")),
        )
        .clerk_says("Invalid M2M JWT category."),
    ]);

    // 3. The receiver check, with machine B's id as our own: JWTs (Clerk's SDK has no such check)…
    let for_b = |name: &str, value: Value| with(without(claims(), "scopes"), name, value);
    let receiver_jwts = [
        (
            "scopes string naming B",
            for_b("scopes", json!("mch_billing mch_reports_api")),
            true,
        ),
        (
            "scopes string, B with repeated spaces",
            for_b("scopes", json!("mch_billing  mch_reports_api")),
            true,
        ),
        (
            "scopes string without B",
            for_b("scopes", json!("mch_billing")),
            false,
        ),
        ("aud string B", for_b("aud", json!(MACHINE_B)), true),
        (
            "aud string, another machine",
            for_b("aud", json!("mch_billing")),
            false,
        ),
        (
            "aud array naming B",
            for_b("aud", json!(["mch_billing", MACHINE_B])),
            true,
        ),
        (
            "aud array without B",
            for_b("aud", json!(["mch_billing", "mch_cron_service"])),
            false,
        ),
        ("aud empty array", for_b("aud", json!([])), false),
        ("scopes empty string", for_b("scopes", json!("")), false),
        (
            "scopes absent, aud absent",
            without(claims(), "scopes"),
            false,
        ),
        (
            "scopes null, aud absent",
            for_b("scopes", null.clone()),
            false,
        ),
        ("aud null, scopes absent", for_b("aud", null.clone()), false),
        (
            "scopes null, aud B",
            with(for_b("scopes", null.clone()), "aud", json!(MACHINE_B)),
            true,
        ),
        (
            "scopes without B win over aud B",
            with(
                for_b("scopes", json!("mch_billing")),
                "aud",
                json!(MACHINE_B),
            ),
            false,
        ),
        (
            "scopes empty string wins over aud B",
            with(for_b("scopes", json!("")), "aud", json!([MACHINE_B])),
            false,
        ),
        (
            "scope mch_reports_api_v2 (B's id a prefix of it)",
            for_b("scopes", json!("mch_reports_api_v2")),
            false,
        ),
        (
            "scope mch_reports_ap (a prefix of B's id)",
            for_b("scopes", json!("mch_reports_ap")),
            false,
        ),
        (
            "aud string mch_reports_api_v2 (B's id a prefix of it)",
            for_b("aud", json!("mch_reports_api_v2")),
            false,
        ),
        (
            "aud array [mch_reports_api_v2] (B's id a prefix of it)",
            for_b("aud", json!(["mch_reports_api_v2"])),
            false,
        ),
        (
            "scope MCH_REPORTS_API (case)",
            for_b("scopes", json!("MCH_REPORTS_API")),
            false,
        ),
        (
            "scope mch_Reports_Api (case)",
            for_b("scopes", json!("mch_Reports_Api")),
            false,
        ),
        (
            "aud mch_Reports_Api (case)",
            for_b("aud", json!("mch_Reports_Api")),
            false,
        ),
    ];
    for (name, claims, for_us) in receiver_jwts {
        let want = if for_us {
            agree(accepted())
        } else {
            differ(
                accepted(),
                rejected("token-invalid-receiver"),
                ReceiverChecked,
            )
        };
        cases.push(case(
            &format!("receiver, JWT: {name}"),
            &m2m(claims),
            Sdk::Pem,
            Ours::PemReceiver,
            want,
        ));
    }
    // …the issuer's own JWTs, verified with its JWKS on both sides…
    let jwt_a = issue("mch_cron_service", TokenFormatParam::Jwt);
    let jwt_billing = issue("mch_billing_worker", TokenFormatParam::Jwt);
    cases.extend([
        case(
            "receiver, issuer's JWT of A (scoped to B)",
            &jwt_a,
            Sdk::MachineB,
            Ours::InstanceKeyReceiver,
            agree(accepted()),
        ),
        case(
            "receiver, issuer's JWT of mch_billing_worker (scoped to mch_reports_api_v2)",
            &jwt_billing,
            Sdk::MachineB,
            Ours::InstanceKeyReceiver,
            differ(
                accepted(),
                rejected("token-invalid-receiver"),
                ReceiverChecked,
            ),
        ),
    ]);
    // …and opaque tokens: Clerk's API shows machine B's key only the tokens scoped to B.
    let opaque_a = issue("mch_cron_service", TokenFormatParam::Opaque);
    for (ours, label) in [
        (Ours::InstanceKeyReceiver, "our sk"),
        (Ours::MachineKeyReceiver, "our ak_B"),
    ] {
        cases.push(case(
            &format!("receiver, opaque of A (scoped to B), SDK ak_B, {label}"),
            &opaque_a,
            Sdk::MachineB,
            ours,
            agree(accepted()),
        ));
    }
    cases.push(case(
        "receiver, opaque of A (scoped to B), SDK sk, our sk",
        &opaque_a,
        Sdk::Instance,
        Ours::InstanceKeyReceiver,
        agree(accepted()),
    ));
    for (owner, scoped_to) in [
        ("mch_billing_worker", "mch_reports_api_v2"),
        ("mch_audit_worker", "mch_Reports_Api"),
        (MACHINE_B, "nobody"),
    ] {
        let token = issue(owner, TokenFormatParam::Opaque);
        let name =
            |how: &str| format!("receiver, opaque of {owner} (scoped to {scoped_to}), {how}");
        cases.extend([
            case(
                &name("SDK ak_B, our sk"),
                &token,
                Sdk::MachineB,
                Ours::InstanceKeyReceiver,
                differ(
                    rejected("token-invalid"),
                    rejected("token-invalid-receiver"),
                    ReceiverReasonNamed,
                ),
            )
            .clerk_says("status=404"),
            case(
                &name("SDK ak_B, our ak_B"),
                &token,
                Sdk::MachineB,
                Ours::MachineKeyReceiver,
                agree(rejected("token-invalid")),
            )
            .clerk_says("status=404"),
            case(
                &name("SDK sk, our sk"),
                &token,
                Sdk::Instance,
                Ours::InstanceKeyReceiver,
                differ(
                    accepted(),
                    rejected("token-invalid-receiver"),
                    ReceiverChecked,
                ),
            ),
        ]);
    }
    let names: BTreeSet<&str> = cases.iter().map(|case| case.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");

    // Clerk's SDK: one Node process for every token.
    let input = json!({
        "cases": cases
            .iter()
            .map(|case| json!({"name": case.name, "client": case.sdk.name(), "token": case.token}))
            .collect::<Vec<_>>(),
    });
    let closed_url = closed_port_url();
    let pem = key.public_pem();
    let sdk = local
        .run_with_input(
            "compare.mjs",
            &[
                ("API_URL", &local.url),
                ("CLOSED_URL", &closed_url),
                ("SECRET_KEY", &config.instance_secret_key),
                ("MACHINE_B_SECRET_KEY", &machine_b.secret_key),
                ("JWT_KEY", &pem),
            ],
            input.to_string().as_bytes(),
        )
        .await;

    // Our layer, configured the ways the cases name.
    let verifier = |which: OurVerifier| {
        let builder = MachineVerifier::builder();
        let builder = match which {
            Ours::Pem => builder.pem_key(&pem),
            Ours::PemIssuer => builder.pem_key(&pem).issuer(HAND_MADE_ISSUER),
            Ours::PemReceiver => builder.pem_key(&pem).own_machine_id(MACHINE_B),
            Ours::InstanceKeyReceiver => builder
                .clerk_secret_key(&config.instance_secret_key)
                .clerk_api_url(&local.url)
                .own_machine_id(MACHINE_B),
            Ours::MachineKeyReceiver => builder
                .clerk_secret_key(&config.instance_secret_key)
                .clerk_machine_secret_key(&machine_b.secret_key)
                .clerk_api_url(&local.url)
                .own_machine_id(MACHINE_B),
        };
        app(MachineAuthLayer::new(builder.build().unwrap()))
    };
    let apps: std::collections::HashMap<OurVerifier, axum::Router> = OurVerifier::ALL
        .into_iter()
        .map(|which| (which, verifier(which)))
        .collect();
    let mut observed = Vec::new();
    for case in &cases {
        let (clerk, clerk_auth) = clerk_outcome(&case.name, &sdk[&case.name]);
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            send_bearer(&apps[&case.ours], "/whoami", &case.token),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: our layer took more than 10 s", case.name));
        let ours = if reply.status.as_u16() == 200 {
            Outcome::Accepted
        } else {
            reply.assert_rejected(reply.status.as_u16(), reply.reason(), Some(&case.token));
            Outcome::Rejected(reply.status.as_u16(), reply.reason().to_owned())
        };
        observed.push(Observed {
            clerk,
            clerk_auth,
            ours,
            ours_body: reply.body,
        });
    }

    // The record: every token, both decisions.
    let mut table = format!(
        "{:<92} | {:<8} | {:<29} | {:<14} | {:<29} | expected difference\n",
        "token", "SDK", "Clerk's SDK", "our layer", "ours"
    );
    for (case, seen) in cases.iter().zip(&observed) {
        let difference = match &case.want {
            Want::Agree(_) => "",
            Want::Differ { why, .. } => why.name(),
        };
        table.push_str(&format!(
            "{:<92} | {:<8} | {:<29} | {:<14} | {:<29} | {difference}\n",
            case.name,
            case.sdk.name(),
            seen.clerk.to_string(),
            case.ours.name(),
            seen.ours.to_string(),
        ));
    }
    eprintln!("{table}");
    for (case, seen) in cases.iter().zip(&observed) {
        let scopes = &seen.clerk_auth["scopes"];
        if seen.clerk == Outcome::Accepted && !scopes.is_array() {
            eprintln!(
                "observed: for {}, Clerk's SDK reports `scopes` as {scopes}, not an array",
                case.name
            );
        }
    }
    eprintln!("Clerk's SDK's messages:");
    for (case, seen) in cases.iter().zip(&observed) {
        if seen.clerk != Outcome::Accepted {
            eprintln!("  {}: {}", case.name, seen.clerk_auth["message"]);
        }
    }
    eprintln!("expected differences:");
    for difference in Difference::ALL {
        eprintln!("  {}: {}", difference.name(), difference.reason());
    }

    let mut failures = Vec::new();
    for difference in Difference::ALL {
        let used = cases
            .iter()
            .any(|case| matches!(case.want, Want::Differ { why, .. } if why == difference));
        if !used {
            failures.push(format!(
                "the expected difference `{}` is named by no token",
                difference.name()
            ));
        }
    }
    for (case, seen) in cases.iter().zip(&observed) {
        let (clerk_wanted, ours_wanted) = match &case.want {
            Want::Agree(outcome) => (outcome, outcome),
            Want::Differ { clerk, ours, .. } => (clerk, ours),
        };
        if seen.clerk != *clerk_wanted || seen.ours != *ours_wanted {
            let listed = match &case.want {
                Want::Agree(_) if seen.clerk != seen.ours => {
                    "an unexpected disagreement".to_owned()
                }
                Want::Agree(_) => "both sides agree, on something else".to_owned(),
                Want::Differ { why, .. } if seen.clerk == seen.ours => format!(
                    "the listed difference `{}` did not show: both sides agree",
                    why.name()
                ),
                Want::Differ { why, .. } => format!("not the listed difference `{}`", why.name()),
            };
            failures.push(format!(
                "{}: {listed}: expected Clerk's SDK {clerk_wanted} and ours {ours_wanted}, got \
                 Clerk's SDK {} ({}) and ours {} ({})",
                case.name, seen.clerk, seen.clerk_auth["message"], seen.ours, seen.ours_body
            ));
            continue;
        }
        if let Some(says) = case.clerk_says {
            let message = seen.clerk_auth["message"].as_str().unwrap_or_default();
            if !message.contains(says) {
                failures.push(format!(
                    "{}: Clerk's SDK refused for another cause: {message:?} does not say {says:?}",
                    case.name
                ));
            }
        }
        // Where both accept, they read the same identity from the token.
        if seen.clerk == Outcome::Accepted && seen.ours == Outcome::Accepted {
            let clerk_identity = (
                seen.clerk_auth["machineId"].clone(),
                seen.clerk_auth["id"].clone(),
                sdk_scopes(&seen.clerk_auth),
            );
            let our_identity = (
                seen.ours_body["machine_id"].clone(),
                seen.ours_body["token_id"].clone(),
                sdk_scopes(&json!({"scopes": seen.ours_body["scopes"]})),
            );
            if clerk_identity != our_identity {
                failures.push(format!(
                    "{}: (machine id, token id, scopes) differ: Clerk's SDK {clerk_identity:?}, \
                     ours {our_identity:?}",
                    case.name
                ));
            }
        }
        // Where the SDK accepts and we check the receiver, our decision is whether B is among the
        // scopes the SDK itself reports.
        if case.ours.checks_receiver() && seen.clerk == Outcome::Accepted {
            let named = sdk_scopes(&seen.clerk_auth).iter().any(|s| s == MACHINE_B);
            if named != (seen.ours == Outcome::Accepted) {
                failures.push(format!(
                    "{}: Clerk's SDK reads the scopes {:?}, and we {} the token",
                    case.name,
                    sdk_scopes(&seen.clerk_auth),
                    if seen.ours == Outcome::Accepted {
                        "accept"
                    } else {
                        "refuse"
                    }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "Clerk's SDK and our layer, token by token:\n{table}\n{} failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
