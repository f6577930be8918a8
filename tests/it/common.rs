//! Shared test kit: real key pairs, real signed tokens, a real JWKS server on loopback, and the real
//! layer in an Axum app.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};

pub const M2M_CATEGORY: &str = "cl_B7d4PD333AAA";

/// A private key that signs tokens, and its public half in every form a verifier reads.
pub enum TestKey {
    Rsa(aws_lc_rs::rsa::KeyPair),
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl TestKey {
    pub fn rsa() -> Self {
        Self::rsa_bits(aws_lc_rs::rsa::KeySize::Rsa2048)
    }

    pub fn rsa_bits(size: aws_lc_rs::rsa::KeySize) -> Self {
        Self::Rsa(aws_lc_rs::rsa::KeyPair::generate(size).expect("RSA key generation"))
    }

    pub fn p256() -> Self {
        Self::P256(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    pub fn ed25519() -> Self {
        Self::Ed25519(Ed25519KeyPair::generate().unwrap())
    }

    /// The process-wide RSA key most tests sign with (generating RSA keys takes ~150 ms).
    pub fn shared_rsa() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(TestKey::rsa)
    }

    /// The algorithm this key signs with by default.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "RS256",
            Self::P256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
        }
    }

    /// The SPKI DER of the public key.
    pub fn public_der(&self) -> Vec<u8> {
        match self {
            Self::Rsa(key) => key.public_key().as_der().unwrap().as_ref().to_vec(),
            Self::P256(key) => key.public_key().as_der().unwrap().as_ref().to_vec(),
            Self::Ed25519(key) => key.public_key().as_der().unwrap().as_ref().to_vec(),
        }
    }

    /// The public key as a `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn public_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.public_der()))
    }

    /// The private key as a PKCS#8 `PRIVATE KEY` PEM.
    pub fn private_pem(&self) -> String {
        let der = match self {
            Self::Rsa(key) => key.as_der().unwrap().as_ref().to_vec(),
            Self::P256(key) => key.to_pkcs8v1().unwrap().as_ref().to_vec(),
            Self::Ed25519(key) => key.to_pkcs8().unwrap().as_ref().to_vec(),
        };
        pem::encode(&pem::Pem::new("PRIVATE KEY", der))
    }

    /// The public JWK with this `kid` and, when given, `alg`.
    pub fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let mut jwk = match self {
            Self::Rsa(key) => {
                let components =
                    aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public_key());
                json!({"kty":"RSA","n":b64(&components.n),"e":b64(&components.e),"use":"sig"})
            }
            Self::P256(key) => {
                let point = key.public_key().as_ref();
                json!({"kty":"EC","crv":"P-256","x":b64(&point[1..33]),"y":b64(&point[33..65])})
            }
            Self::Ed25519(key) => {
                json!({"kty":"OKP","crv":"Ed25519","x":b64(key.public_key().as_ref())})
            }
        };
        jwk["kid"] = json!(kid);
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    /// Signs `header.payload` (both raw JSON text, so tests can send anything) with `alg`.
    pub fn sign_raw(&self, alg: &str, header: &str, payload: &str) -> String {
        let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let signature = self.signature(alg, signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature))
    }

    pub fn signature(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(key) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    other => panic!("the test key cannot sign {other}"),
                };
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(padding, &rng, message, &mut signature).unwrap();
                signature
            }
            Self::P256(key) => key.sign(&rng, message).unwrap().as_ref().to_vec(),
            Self::Ed25519(key) => key.sign(message).as_ref().to_vec(),
        }
    }

    /// A token with Clerk's M2M header (`kid` given) and these claims.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "kid": kid, "typ": "JWT", "cat": M2M_CATEGORY});
        self.sign_raw(self.alg(), &header.to_string(), &claims.to_string())
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a valid Clerk M2M token for `mch_cron_service`, issued now, valid for an hour.
pub fn claims() -> Value {
    claims_at(now())
}

pub fn claims_at(now: i64) -> Value {
    json!({
        "iss": "https://clerk.example.test",
        "sub": "mch_cron_service",
        "jti": format!("mt_{:032x}", rand_u128()),
        "iat": now,
        "nbf": now - 5,
        "exp": now + 3600,
        "scopes": "mch_reports_api mch_billing",
    })
}

pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

pub fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    u128::from_le_bytes(bytes)
}

/// A verifier for the shared RSA key's PEM.
pub fn pem_verifier() -> MachineVerifier {
    MachineVerifier::from_pem(&TestKey::shared_rsa().public_pem()).unwrap()
}

/// A verifier of opaque tokens at `server` (a stand-in for Clerk's verify endpoint), with a
/// machine secret key.
pub fn clerk_opaque_verifier(server: &IntrospectionServer) -> MachineVerifier {
    MachineVerifier::builder()
        .clerk_machine_secret_key("ak_test_machine_secret_key_0123")
        .clerk_api_url(server.base_url())
        .build()
        .unwrap()
}

/// The cron app of the seed behind `layer`: `/whoami` returns the identity, `/cron/run` succeeds.
pub fn app(layer: MachineAuthLayer) -> Router {
    routes().layer(layer)
}

/// The cron app's routes, with no authentication in front of them.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|machine: AuthenticatedMachine| async move { axum::Json(machine) }),
        )
        .route(
            "/cron/run",
            get(|| async { axum::Json(json!({"message": "Success"})) })
                .post(|| async { axum::Json(json!({"message": "Success"})) }),
        )
        .route(
            "/maybe",
            get(|machine: Option<AuthenticatedMachine>| async move {
                machine.map_or("anonymous".to_owned(), |m| m.machine_id().to_string())
            }),
        )
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts the request was let through to the handler.
    pub fn assert_ok(&self) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
    }

    /// Asserts a rejection's status, reason and challenge, and that the body never echoes `token`.
    pub fn assert_rejected(&self, status: u16, reason: &str, token: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.reason(), reason, "{self:?}");
        if let Some(token) = token {
            assert!(!self.text.contains(token), "the body echoes the token");
        }
        match status {
            503 => {
                assert!(
                    self.header("retry-after").is_some(),
                    "503 without Retry-After"
                );
                assert!(self.header("www-authenticate").is_none());
            }
            401 if reason == "token-missing" => {
                assert_eq!(
                    self.header("www-authenticate"),
                    Some(r#"Bearer realm="api""#)
                );
            }
            401 => assert_eq!(
                self.header("www-authenticate"),
                Some(r#"Bearer realm="api", error="invalid_token""#)
            ),
            400 => assert_eq!(
                self.header("www-authenticate"),
                Some(r#"Bearer realm="api", error="invalid_request""#)
            ),
            403 => assert!(
                self.header("www-authenticate")
                    .unwrap()
                    .starts_with(r#"Bearer realm="api", error="insufficient_scope""#)
            ),
            _ => {}
        }
    }
}

/// Sends `GET path` with these `Authorization` values through `app`.
pub async fn send(app: &Router, path: &str, authorization: &[&str]) -> Reply {
    let mut request = Request::get(path);
    for value in authorization {
        request = request.header("authorization", *value);
    }
    send_request(app, request.body(Body::empty()).unwrap()).await
}

pub async fn send_request(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

pub async fn send_bearer(app: &Router, path: &str, token: &str) -> Reply {
    send(app, path, &[&format!("Bearer {token}")]).await
}

/// What the loopback JWKS server answers.
#[derive(Clone)]
pub enum JwksReply {
    Keys(Value),
    Status(u16),
    Redirect(String),
    Raw(String),
}

/// A real HTTP server on 127.0.0.1 serving a JWKS that tests can change, counting requests.
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    reply: Arc<Mutex<JwksReply>>,
    hits: Arc<AtomicUsize>,
    last_headers: Arc<Mutex<Option<HeaderMap>>>,
    last_path: Arc<Mutex<Option<String>>>,
}

impl JwksServer {
    /// Starts a server answering every path with `reply`.
    pub async fn start(reply: JwksReply) -> Self {
        let server = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            reply: Arc::new(Mutex::new(reply)),
            hits: Arc::default(),
            last_headers: Arc::default(),
            last_path: Arc::default(),
        };
        let state = server.clone();
        let app = Router::new().fallback(move |request: Request<Body>| {
            let state = state.clone();
            async move {
                state.hits.fetch_add(1, Ordering::SeqCst);
                *state.last_headers.lock().unwrap() = Some(request.headers().clone());
                *state.last_path.lock().unwrap() = Some(request.uri().path().to_owned());
                let reply = state.reply.lock().unwrap().clone();
                match reply {
                    JwksReply::Keys(keys) => {
                        ([("content-type", "application/json")], keys.to_string()).into_response()
                    }
                    JwksReply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
                    JwksReply::Redirect(location) => {
                        (StatusCode::FOUND, [("location", location)]).into_response()
                    }
                    JwksReply::Raw(body) => {
                        ([("content-type", "application/json")], body).into_response()
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, ..server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    pub fn set(&self, reply: JwksReply) {
        *self.reply.lock().unwrap() = reply;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last_headers(&self) -> HeaderMap {
        self.last_headers
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_default()
    }

    pub fn last_path(&self) -> Option<String> {
        self.last_path.lock().unwrap().clone()
    }
}

/// `{"keys": [...]}`.
pub fn key_set(keys: &[Value]) -> JwksReply {
    JwksReply::Keys(json!({ "keys": keys }))
}

/// The base64 body of a PEM without its armour lines, as Clerk's dashboard can show it.
pub fn pem_body(pem: &str) -> String {
    let block = pem::parse(pem).unwrap();
    STANDARD.encode(block.contents())
}

/// A request an [`IntrospectionServer`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

/// How an [`IntrospectionServer`] answers.
#[derive(Clone)]
pub enum Introspection {
    /// Clerk's `/m2m_tokens/verify`: the resource of a known token, 404 for others.
    Clerk(std::collections::HashMap<String, Value>),
    /// RFC 7662: the reply for a known token, `{"active": false}` for others.
    Rfc7662(std::collections::HashMap<String, Value>),
    /// This status with an empty JSON object.
    Status(u16),
    /// This status with a body of this many bytes.
    StatusWithBody(u16, usize),
    /// 200 with this body.
    Raw(String),
}

/// A real HTTP server on 127.0.0.1 standing in for Clerk's Backend API or an RFC 7662 endpoint.
#[derive(Clone)]
pub struct IntrospectionServer {
    pub addr: SocketAddr,
    answer: Arc<Mutex<Introspection>>,
    delay: Arc<Mutex<std::time::Duration>>,
    hits: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl IntrospectionServer {
    pub async fn start(answer: Introspection) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            answer: Arc::new(Mutex::new(answer)),
            delay: Arc::default(),
            hits: Arc::default(),
            received: Arc::default(),
        };
        let state = server.clone();
        let app = Router::new().fallback(move |request: Request<Body>| {
            let state = state.clone();
            async move { state.answer(request).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
    }

    async fn answer(&self, request: Request<Body>) -> axum::response::Response {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = request.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        self.received.lock().unwrap().push(Received {
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body: body.clone(),
        });
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let json = |status: StatusCode, value: &Value| {
            (
                status,
                [("content-type", "application/json")],
                value.to_string(),
            )
                .into_response()
        };
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Introspection::Clerk(tokens) => {
                let token = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|b| b["token"].as_str().map(str::to_owned));
                match token.and_then(|t| tokens.get(&t).cloned()) {
                    Some(resource) => json(StatusCode::OK, &resource),
                    None => json(
                        StatusCode::NOT_FOUND,
                        &json!({"errors": [{"code": "resource_not_found", "message": "not found", "long_message": "Machine token not found"}]}),
                    ),
                }
            }
            Introspection::Rfc7662(tokens) => {
                let token = url::form_urlencoded::parse(body.as_bytes())
                    .find(|(name, _)| name == "token")
                    .map(|(_, value)| value.into_owned());
                let reply = token
                    .and_then(|t| tokens.get(&t).cloned())
                    .unwrap_or(json!({"active": false}));
                json(StatusCode::OK, &reply)
            }
            Introspection::Status(code) => json(StatusCode::from_u16(code).unwrap(), &json!({})),
            Introspection::StatusWithBody(code, len) => {
                (StatusCode::from_u16(code).unwrap(), "x".repeat(len)).into_response()
            }
            Introspection::Raw(body) => {
                ([("content-type", "application/json")], body).into_response()
            }
        }
    }

    pub fn set(&self, answer: Introspection) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Answers each request only after this long (Tokio time).
    pub fn set_delay(&self, delay: std::time::Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request received")
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Clerk's `machine_to_machine_token` resource for a valid token of `subject`, expiring in an hour.
pub fn clerk_resource(id: &str, subject: &str) -> Value {
    let now_ms = now() * 1000;
    json!({
        "object": "machine_to_machine_token",
        "id": id,
        "subject": subject,
        "scopes": ["mch_reports_api"],
        "claims": {"team": "billing"},
        "revoked": false,
        "revocation_reason": null,
        "expired": false,
        "expiration": now_ms + 3_600_000,
        "last_used_at": null,
        "created_at": now_ms - 1000,
        "updated_at": now_ms - 1000,
    })
}

/// A random opaque machine token, `mt_` and 32 hex digits.
pub fn opaque_token() -> String {
    format!("mt_{:032x}", rand_u128())
}

/// Every log event of this thread, from [`CapturedLogs::start`] until it is dropped.
///
/// One subscriber, installed globally the first time, formats every event of the process and
/// writes it to the capture active on the emitting thread, if any. (A subscriber per test, set as
/// the thread's default, loses events: a call site's interest is cached process-wide, so another
/// test's thread can decide it for all.) Tests that capture run on a current-thread runtime, so
/// the tasks they spawn log on their thread too.
pub struct CapturedLogs {
    buffer: LogBuffer,
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    /// The capture active on this thread.
    static CAPTURE: std::cell::RefCell<Option<LogBuffer>> = const { std::cell::RefCell::new(None) };
}

/// Writes an event to the capture of the thread it is emitted on, or nowhere.
struct ThreadCapture;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ThreadCapture {
    type Writer = Box<dyn std::io::Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match CAPTURE.with(|capture| capture.borrow().clone()) {
            Some(buffer) => Box::new(buffer),
            None => Box::new(std::io::sink()),
        }
    }
}

impl CapturedLogs {
    /// Captures this thread's events at every level.
    pub fn start() -> Self {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(ThreadCapture)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the tests");
        });
        let buffer = LogBuffer::default();
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(buffer.clone()));
        Self { buffer }
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.buffer.0.lock().unwrap().clone()).unwrap()
    }
}

impl Drop for CapturedLogs {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}
