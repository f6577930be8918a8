//! Machine A's token source, outgoing layer and reqwest sending, against the crate's real issuer
//! on loopback, and machine B's real `MachineAuthLayer`. Time is tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full, StreamBody};
use machine_auth_issuer::{Issuer, IssuerConfig};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};
use tower_machine_auth::client::{
    InsecureDestination, MachineTokenLayer, MachineTokenSource, MachineTokenSourceBuilder,
    SendError, TokenError,
};
use tower_machine_auth::clock::{Clock, TokioClock};
use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier, TokenFormat};

const CRON_KEY: &str = "ak_demo_cron_service_do_not_use_in_production";
const REPORTS_KEY: &str = "ak_demo_reports_api_do_not_use_in_production";
const INSTANCE_KEY: &str = "sk_test_demo_instance_do_not_use_in_production";

/// The real issuer on loopback, with a count of creation calls and switches that make creation
/// fail (503), slow, or edit its reply (an issuer that misbehaves).
struct LocalIssuer {
    issuer: Issuer,
    url: String,
    creations: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    reply_edit: Arc<Mutex<Option<ReplyEdit>>>,
}

/// A change to the JSON of the issuer's creation reply.
type ReplyEdit = fn(&mut Value);

impl LocalIssuer {
    async fn start(clock: impl Clock) -> Self {
        let issuer = Issuer::builder(IssuerConfig::demo())
            .clock(clock)
            .build()
            .unwrap();
        let creations = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let reply_edit = Arc::new(Mutex::new(None::<ReplyEdit>));
        let (count, fail, delay, edit) = (
            creations.clone(),
            failing.clone(),
            delay_ms.clone(),
            reply_edit.clone(),
        );
        let router =
            issuer
                .router()
                .layer(middleware::from_fn(move |request: Request, next: Next| {
                    let (count, fail, delay) = (count.clone(), fail.clone(), delay.clone());
                    let edit = *edit.lock().unwrap();
                    async move {
                        let creation =
                            request.method() == "POST" && request.uri().path() == "/m2m_tokens";
                        if !creation {
                            return next.run(request).await;
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        let delay = delay.load(Ordering::SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        if fail.load(Ordering::SeqCst) {
                            return (StatusCode::SERVICE_UNAVAILABLE, "down for the test")
                                .into_response();
                        }
                        let response = next.run(request).await;
                        let Some(edit) = edit else {
                            return response;
                        };
                        let (status, mut body) = json_of(response).await;
                        edit(&mut body);
                        (status, axum::Json(body)).into_response()
                    }
                }));
        let url = serve(router).await;
        Self {
            issuer,
            url,
            creations,
            failing,
            delay_ms,
            reply_edit,
        }
    }

    fn creations(&self) -> usize {
        self.creations.load(Ordering::SeqCst)
    }

    fn source(&self, clock: TokioClock, format: TokenFormat) -> MachineTokenSource {
        self.source_builder(clock, format).build().unwrap()
    }

    /// Machine A's source of 60 s tokens, to configure further.
    fn source_builder(&self, clock: TokioClock, format: TokenFormat) -> MachineTokenSourceBuilder {
        MachineTokenSource::builder()
            .api_url(&self.url)
            .machine_secret_key(CRON_KEY)
            .format(format)
            .lifetime(Duration::from_secs(60))
            .clock(clock)
    }

    /// Machine B: `POST /cron/run` behind `MachineAuthLayer`, verifying JWTs with the issuer's
    /// public key and opaque tokens at the issuer with its own machine key. Counts requests.
    fn machine_b(&self, clock: impl Clock) -> (Router, Arc<AtomicUsize>) {
        let verifier = MachineVerifier::builder()
            .pem_key(self.issuer.public_key_pem().unwrap())
            .clerk_api_url(&self.url)
            .clerk_machine_secret_key(REPORTS_KEY)
            .clock(clock)
            .build()
            .unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let router = Router::new()
            .route(
                "/cron/run",
                post(|machine: AuthenticatedMachine| async move {
                    axum::Json(json!({
                        "machine": machine.machine_id().as_str(),
                        "token_id": machine.token_id(),
                        "format": machine.token_format(),
                    }))
                }),
            )
            .layer(MachineAuthLayer::new(verifier))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                counter.fetch_add(1, Ordering::SeqCst);
                next.run(request)
            }));
        (router, seen)
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// Lets the runtime run until `done`, without moving the paused clock: loopback calls take real
/// time, which a paused-clock `sleep` does not wait for. At most 10 s of real time.
async fn until(what: &str, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::task::yield_now().await;
    }
}

fn run_request(body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post("/cron/run")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// One request through a client service (machine A's layer over machine B).
async fn call<S, B>(client: &mut S, request: http::Request<B>) -> Result<Response, tower::BoxError>
where
    S: Service<http::Request<B>, Response = Response, Error = tower::BoxError>,
{
    ServiceExt::<http::Request<B>>::ready(client)
        .await?
        .call(request)
        .await
}

/// The status and JSON body of a reqwest response.
async fn reqwest_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One token serves many requests; the next is made in the background when a fifth of its life
/// is left, while callers keep getting the current one at once; no request ever reaches machine
/// B with an expired token.
#[tokio::test(start_paused = true)]
async fn one_creation_serves_many_requests_and_refresh_comes_before_expiry() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let source = local.source(clock, TokenFormat::Jwt);
    let (machine_b, seen) = local.machine_b(clock);
    let mut client = MachineTokenLayer::new(source.clone()).layer(machine_b);

    let first = source.token().await.unwrap();
    for _ in 0..47 {
        let response = call(&mut client, run_request("{}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(local.creations(), 1, "47 requests over 47 s, one token");

    // At 48 s a fifth of the 60 s life is left: the refresh starts, and a slow issuer does not
    // hold callers up.
    tokio::time::advance(Duration::from_secs(1)).await;
    local.delay_ms.store(3_000, Ordering::SeqCst);
    let asked = tokio::time::Instant::now();
    let during = source.token().await.unwrap();
    assert_eq!(
        asked.elapsed(),
        Duration::ZERO,
        "the caller waited on the refresh"
    );
    assert_eq!(during.id(), first.id());
    until("the refresh reaches the issuer", || local.creations() == 2).await;
    assert_eq!(source.token().await.unwrap().id(), first.id());
    tokio::time::advance(Duration::from_secs(3)).await;
    until("the refresh ends", || source.stats().created == 2).await;
    let refreshed = source.token().await.unwrap();
    assert_ne!(refreshed.id(), first.id());
    assert!(refreshed.expires_at() > first.expires_at());
    local.delay_ms.store(0, Ordering::SeqCst);

    // Three more lifetimes of one request a second: every one accepted by machine B.
    let before = seen.load(Ordering::SeqCst);
    for second in 0..180 {
        let response = call(&mut client, run_request("{}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "at {second} s");
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(
        seen.load(Ordering::SeqCst) - before,
        180,
        "no request was retried"
    );
    let creations = local.creations();
    assert!(
        (5..=6).contains(&creations),
        "one creation per 48 s of use: {creations}"
    );
    assert_eq!(source.stats().created as usize, creations);
    assert_eq!(source.stats().failed, 0);
}

/// Tokio's paused clock, shifted by a number of seconds: a machine whose clock is off.
#[derive(Debug, Clone, Copy)]
struct ShiftedClock(TokioClock, i64);

impl Clock for ShiftedClock {
    fn now(&self) -> SystemTime {
        let shift = Duration::from_secs(self.1.unsigned_abs());
        if self.1 < 0 {
            self.0.now() - shift
        } else {
            self.0.now() + shift
        }
    }
}

/// Machine A's clock ten minutes behind, then ahead of, the issuer's and machine B's: a token's
/// life is counted on machine A's own clock, so one creation still serves 48 s of requests and
/// the next comes before machine B would refuse the current one.
#[tokio::test(start_paused = true)]
async fn a_machine_whose_clock_is_off_still_reuses_and_renews_in_time() {
    for shift in [600, -600] {
        let clock = TokioClock::new();
        let issuer_clock = ShiftedClock(clock, shift);
        let local = LocalIssuer::start(issuer_clock).await;
        let (machine_b, seen) = local.machine_b(issuer_clock);
        let source = local.source(clock, TokenFormat::Jwt);
        let mut client = MachineTokenLayer::new(source).layer(machine_b);
        for second in 0..150 {
            let response = call(&mut client, run_request("{}")).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{shift} s, at {second} s"
            );
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(
            seen.load(Ordering::SeqCst),
            150,
            "{shift} s: nothing refused"
        );
        let creations = local.creations();
        assert!(
            (3..=4).contains(&creations),
            "{shift} s: {creations} creations"
        );
    }
}

/// 100 callers asking at once with no token: one creation call.
#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_creation() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    local.delay_ms.store(500, Ordering::SeqCst);
    let source = local.source(clock, TokenFormat::Opaque);
    let ids = |tasks: Vec<tokio::task::JoinHandle<Result<_, TokenError>>>| async move {
        let mut ids = Vec::new();
        for task in tasks {
            let token: tower_machine_auth::client::MachineToken = task.await.unwrap().unwrap();
            ids.push(token.id().to_owned());
        }
        ids.dedup();
        ids
    };
    let spawn_100 = || {
        (0..100)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { source.token().await })
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(spawn_100()).await.len(), 1);
    assert_eq!(local.creations(), 1);

    // Past its expiry, the same again.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(ids(spawn_100()).await.len(), 1);
    assert_eq!(local.creations(), 2);
}

/// While the issuer fails, refresh attempts back off exponentially and callers keep the valid
/// token; once it has expired they get a clear error and nothing is sent; when the issuer is
/// back, the next attempt after the backoff recovers.
#[tokio::test(start_paused = true)]
async fn creation_failures_back_off_and_recover() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let source = local.source(clock, TokenFormat::Jwt);
    let (machine_b, seen) = local.machine_b(clock);
    let mut client = MachineTokenLayer::new(source.clone()).layer(machine_b);
    let first = source.token().await.unwrap();

    local.failing.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(48)).await;
    // 48 s to 58 s (the token stops being handed out 2 s before its expiry): a call every 100 ms.
    for _ in 0..100 {
        assert_eq!(source.token().await.unwrap().id(), first.id());
        tokio::time::advance(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
    }
    until("the last attempt ends", || {
        source.stats().failed as usize == local.creations() - 1
    })
    .await;
    // Attempts at 48 s, then after 0.5–1 s, 1–2 s, 2–4 s, 4–8 s: four or five by 58 s, or three
    // when the loopback calls are slow in real time while the paused clock moves on.
    let attempts = local.creations() - 1;
    assert!((3..=5).contains(&attempts), "{attempts} attempts in 10 s");
    assert_eq!(source.stats().failed as usize, attempts);

    // Expired: a clear error, and machine B never sees a request.
    let before = seen.load(Ordering::SeqCst);
    let error = source.token().await.unwrap_err();
    let TokenError::Unavailable { cause, retry_in } = &error else {
        panic!("{error:?}")
    };
    assert!(cause.contains("503"), "{cause}");
    assert!(*retry_in <= Duration::from_secs(16));
    let failed = call(&mut client, run_request("{}")).await;
    let failed = failed.unwrap_err();
    assert!(
        failed.downcast_ref::<TokenError>().is_some(),
        "the layer's error is the token error: {failed}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), before);
    let attempts_while_backing_off = local.creations();
    assert!(source.token().await.is_err());
    assert_eq!(
        local.creations(),
        attempts_while_backing_off,
        "no call during the backoff"
    );

    local.failing.store(false, Ordering::SeqCst);
    tokio::time::advance(*retry_in).await;
    let recovered = source.token().await.unwrap();
    assert_ne!(recovered.id(), first.id());
    let response = call(&mut client, run_request("{}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A reply whose token could not be used for a while (an expiry not after its creation, an
/// expiry in seconds rather than milliseconds, a negative one) is a failed creation: backed off,
/// never handed out; during a refresh the current token stays. An expiry far beyond the lifetime
/// asked for counts as that lifetime.
#[tokio::test(start_paused = true)]
async fn an_issuer_reply_with_an_unusable_token_is_a_failed_creation() {
    let edits: [(ReplyEdit, &str); 3] = [
        (
            |reply| reply["expiration"] = reply["created_at"].clone(),
            "no later than it was created",
        ),
        (
            |reply| reply["expiration"] = json!(reply["expiration"].as_i64().unwrap() / 1000),
            "no later than it was created",
        ),
        (|reply| reply["expiration"] = json!(-1), "out of range"),
    ];
    for (edit, expected) in edits {
        let clock = TokioClock::new();
        let local = LocalIssuer::start(clock).await;
        *local.reply_edit.lock().unwrap() = Some(edit);
        let source = local.source(clock, TokenFormat::Opaque);
        let error = source.token().await.unwrap_err();
        let TokenError::Unavailable { cause, .. } = &error else {
            panic!("{error:?}")
        };
        assert!(cause.contains(expected), "{cause}");
        assert!(source.token().await.is_err());
        assert_eq!(local.creations(), 1, "{expected}: backed off");
        assert_eq!((source.stats().created, source.stats().failed), (0, 1));
    }

    // During a refresh: the valid token stays, and the refresh is tried again after the backoff.
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let source = local.source(clock, TokenFormat::Jwt);
    let first = source.token().await.unwrap();
    *local.reply_edit.lock().unwrap() = Some(edits[0].0);
    tokio::time::advance(Duration::from_secs(48)).await;
    assert_eq!(source.token().await.unwrap().id(), first.id());
    until("the refresh fails", || source.stats().failed == 1).await;
    assert_eq!(local.creations(), 2);
    assert_eq!(source.token().await.unwrap().id(), first.id());
    *local.reply_edit.lock().unwrap() = None;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(source.token().await.unwrap().id(), first.id());
    until("the refresh ends", || source.stats().created == 2).await;
    let renewed = source.token().await.unwrap();
    assert_ne!(renewed.id(), first.id());

    // An expiry a thousand times too far: renewed as if it were the 60 s asked for.
    *local.reply_edit.lock().unwrap() = Some(|reply| {
        let created = reply["created_at"].as_i64().unwrap();
        let expiration = reply["expiration"].as_i64().unwrap();
        reply["expiration"] = json!(created + (expiration - created) * 1000);
    });
    tokio::time::advance(Duration::from_secs(48)).await;
    source.token().await.unwrap();
    until("the refresh ends", || source.stats().created == 3).await;
    let far = source.token().await.unwrap();
    assert_ne!(far.id(), renewed.id());
    let far_expiry = far.expires_at().unwrap();
    assert!(far_expiry > renewed.expires_at().unwrap() + Duration::from_secs(3600));
    tokio::time::advance(Duration::from_secs(48)).await;
    source.token().await.unwrap();
    until("the refresh ends", || source.stats().created == 4).await;
    assert_ne!(
        source.token().await.unwrap().id(),
        far.id(),
        "renewed after 48 s"
    );
}

/// A caller who stops waiting (a 300 ms timeout against an issuer that takes 1 s) does not cancel
/// the creation: the caller after it gets that token, and only one was made.
#[tokio::test(start_paused = true)]
async fn a_caller_who_stops_waiting_does_not_cancel_the_creation() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    local.delay_ms.store(1_000, Ordering::SeqCst);
    let source = local.source(clock, TokenFormat::Opaque);
    for _ in 0..3 {
        let gave_up = tokio::time::timeout(Duration::from_millis(300), source.token()).await;
        assert!(gave_up.is_err(), "the issuer takes 1 s");
    }
    source.token().await.unwrap();
    assert_eq!(local.creations(), 1);
    assert_eq!(source.stats().created, 1);
}

/// With a small share (a hundredth of a 60 s life, less than the 2 s margin before expiry) the
/// refresh still comes in the background while the token is handed out: no caller waits.
#[tokio::test(start_paused = true)]
async fn a_small_refresh_share_still_refreshes_in_the_background() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let source = local
        .source_builder(clock, TokenFormat::Jwt)
        .refresh_when_remaining(0.01)
        .build()
        .unwrap();
    let first = source.token().await.unwrap();
    local.delay_ms.store(1_000, Ordering::SeqCst);
    for step in 0..140 {
        let asked = tokio::time::Instant::now();
        source.token().await.unwrap();
        assert_eq!(
            asked.elapsed(),
            Duration::ZERO,
            "waited at {} ms",
            step * 500
        );
        tokio::time::advance(Duration::from_millis(500)).await;
    }
    until("the refresh ends", || source.stats().created == 2).await;
    assert_ne!(source.token().await.unwrap().id(), first.id());
    assert_eq!(local.creations(), 2);
}

/// A wrong machine key is a configuration error, reported and never retried.
#[tokio::test(start_paused = true)]
async fn a_wrong_machine_key_is_a_configuration_error() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let source = MachineTokenSource::builder()
        .api_url(&local.url)
        .machine_secret_key("ak_wrong_key_for_this_test")
        .clock(clock)
        .build()
        .unwrap();
    for _ in 0..3 {
        let error = source.token().await.unwrap_err();
        assert!(error.is_configuration(), "{error:?}");
        assert_eq!(
            error,
            TokenError::CredentialsRejected {
                code: "machine_secret_key_invalid".into()
            }
        );
        assert!(!error.to_string().contains("ak_wrong_key_for_this_test"));
        tokio::time::advance(Duration::from_secs(120)).await;
    }
    assert_eq!(local.creations(), 1);

    // A request the issuer refuses (a reserved claim) is one too.
    let refused = local
        .source_builder(clock, TokenFormat::Jwt)
        .claims(json!({"sub": "mch_someone_else"}))
        .build()
        .unwrap();
    let error = refused.token().await.unwrap_err();
    let TokenError::Refused {
        status: 422,
        message,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert!(message.contains("sub"), "{message}");
}

/// Machine B refuses a revoked opaque token: the layer gets a fresh token and retries once for a
/// buffered body; a streaming body is not retried, but the next request has a fresh token.
#[tokio::test(start_paused = true)]
async fn a_401_is_retried_once_with_a_fresh_token_only_for_replayable_bodies() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let source = local.source(clock, TokenFormat::Opaque);
    let (machine_b, seen) = local.machine_b(clock);
    let mut client = MachineTokenLayer::new(source.clone()).layer(machine_b.clone());

    let revoked = source.token().await.unwrap();
    local
        .issuer
        .revoke_token(INSTANCE_KEY, revoked.id(), Some("test"))
        .unwrap();
    let response = call(&mut client, run_request("{\"job\":1}")).await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["token_id"], revoked.id());
    assert_eq!(body["format"], "opaque");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "refused once, then retried once"
    );
    assert_eq!(local.creations(), 2);

    // A streaming body cannot be sent twice: the 401 comes back, the token is dropped.
    tokio::time::advance(Duration::from_secs(31)).await;
    let current = source.token().await.unwrap();
    local
        .issuer
        .revoke_token(INSTANCE_KEY, current.id(), None)
        .unwrap();
    let mut streaming = MachineTokenLayer::new(source.clone()).layer(machine_b.clone());
    let stream = stream_body(b"{\"job\":2}");
    let request = http::Request::post("/cron/run").body(stream).unwrap();
    let before = seen.load(Ordering::SeqCst);
    let response = call(&mut streaming, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.load(Ordering::SeqCst) - before, 1, "not retried");
    let next = source.token().await.unwrap();
    assert_ne!(next.id(), current.id(), "the refused token was dropped");

    // Within the cooldown a refusal keeps the token (machine B refusing every token must not
    // cost a creation per request).
    local
        .issuer
        .revoke_token(INSTANCE_KEY, next.id(), None)
        .unwrap();
    let response = call(&mut client, run_request("{}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(source.token().await.unwrap().id(), next.id());

    // Without retries, a 401 is returned as it is.
    tokio::time::advance(Duration::from_secs(31)).await;
    let mut no_retry = MachineTokenLayer::new(source.clone())
        .retry_unauthorized(false)
        .layer(machine_b);
    let before = seen.load(Ordering::SeqCst);
    let response = call(&mut no_retry, run_request("{}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.load(Ordering::SeqCst) - before, 1);
    assert_ne!(
        source.token().await.unwrap().id(),
        next.id(),
        "the refused token was dropped all the same"
    );
}

fn stream_body(body: &'static [u8]) -> StreamBody<one_chunk::Once> {
    StreamBody::new(one_chunk::Once(Some(body)))
}

/// A one-chunk stream, so the body is a real stream that cannot be replayed.
mod one_chunk {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body::Frame;

    pub struct Once(pub Option<&'static [u8]>);

    impl futures_core::Stream for Once {
        type Item = Result<Frame<Bytes>, std::io::Error>;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(
                self.0
                    .take()
                    .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk)))),
            )
        }
    }
}

/// Over real HTTP: machine A sends with reqwest to machine B on loopback, in both formats;
/// revoking the opaque token is seen by machine B at once, and `send` recovers with a fresh one.
#[tokio::test(start_paused = true)]
async fn end_to_end_over_http_in_both_formats_with_revocation_seen_at_once() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let (machine_b, _) = local.machine_b(clock);
    let target = format!("{}/cron/run", serve(machine_b).await);
    let http = reqwest::Client::new();

    for format in [TokenFormat::Jwt, TokenFormat::Opaque] {
        let source = local.source(clock, format);
        let response = source.send(http.post(&target).body("{}")).await.unwrap();
        let (status, body) = reqwest_json(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["machine"], "mch_cron_service");
        assert_eq!(body["format"], format.as_str());
        assert_eq!(body["token_id"], source.token().await.unwrap().id());
    }

    let source = local.source(clock, TokenFormat::Opaque);
    let response = source.send(http.post(&target).body("{}")).await.unwrap();
    assert_eq!(response.status(), 200);
    let token = source.token().await.unwrap();
    local
        .issuer
        .revoke_token(CRON_KEY, token.id(), Some("leaked"))
        .unwrap();
    let direct = http
        .post(&target)
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    let (status, body) = reqwest_json(direct).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token-invalid")),
        "the revocation is seen at once"
    );

    let response = source.send(http.post(&target).body("{}")).await.unwrap();
    let (status, body) = reqwest_json(response).await;
    assert_eq!(status, 200, "send retried with a fresh token");
    assert_ne!(body["token_id"], token.id());

    // A streaming reqwest body is not retried.
    tokio::time::advance(Duration::from_secs(31)).await;
    let current = source.token().await.unwrap();
    local
        .issuer
        .revoke_token(CRON_KEY, current.id(), None)
        .unwrap();
    let streaming = reqwest::Body::wrap(stream_body(b"{}"));
    let response = source
        .send(http.post(&target).body(streaming))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// `from_env` reads Clerk's variable names.
#[tokio::test(start_paused = true)]
async fn the_builder_reads_clerks_variables() {
    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let url = local.url.clone();
    let source = MachineTokenSource::builder()
        .env_from(|name| match name {
            "CLERK_API_URL" => Some(url.clone()),
            "CLERK_MACHINE_SECRET_KEY" => Some(CRON_KEY.to_owned()),
            _ => None,
        })
        .clock(clock)
        .build()
        .unwrap();
    let token = source.token().await.unwrap();
    assert_eq!(token.format(), TokenFormat::Jwt);
    let verifier = MachineVerifier::from_pem(&local.issuer.public_key_pem().unwrap()).unwrap();
    let machine = verifier.verify(token.as_str()).await.unwrap();
    assert_eq!(machine.machine_id().as_str(), "mch_cron_service");
}

/// Plain http carries the token only to loopback hosts: the issuer's URL is refused when the
/// source is built, a request to machine B when it is sent (by `send` and by the layer, before a
/// token is made), each naming the URL without its credentials; unless the source opts in.
#[tokio::test(start_paused = true)]
async fn plain_http_goes_only_to_loopback_unless_the_source_opts_in() {
    let builder = || {
        MachineTokenSource::builder()
            .api_url("http://user:s3cr3t@issuer.internal:8787")
            .machine_secret_key(CRON_KEY)
    };
    let error = builder().build().unwrap_err().to_string();
    assert!(
        error.contains("CLERK_API_URL `http://issuer.internal:8787` uses plain http"),
        "{error}"
    );
    assert!(!error.contains("s3cr3t"), "{error}");
    builder().allow_insecure_http_to_any_host().build().unwrap();

    let clock = TokioClock::new();
    let local = LocalIssuer::start(clock).await;
    let (machine_b, seen) = local.machine_b(clock);
    let machine_b_url = serve(machine_b.clone()).await;
    let port = machine_b_url.rsplit(':').next().unwrap().to_owned();
    // A name that is not loopback, resolved to machine B on loopback.
    let elsewhere = format!("http://user:s3cr3t@reports.internal:{port}/cron/run");
    let http = reqwest::Client::builder()
        .resolve("reports.internal", "127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();

    let source = local.source(clock, TokenFormat::Jwt);
    for url in [elsewhere.clone(), "ftp://127.0.0.1/cron/run".to_owned()] {
        let Err(SendError::InsecureDestination(refused)) = source.send(http.post(&url)).await
        else {
            panic!("{url} was not refused");
        };
        assert!(!refused.to_string().contains("s3cr3t"), "{refused}");
        assert!(!refused.url().contains("s3cr3t"), "{refused}");
    }
    let Err(SendError::InsecureDestination(refused)) = source.send(http.post(&elsewhere)).await
    else {
        panic!("sent");
    };
    assert_eq!(
        refused.url(),
        format!("http://reports.internal:{port}/cron/run")
    );
    assert!(
        refused.to_string().contains(refused.url()) && refused.to_string().contains("plain http"),
        "{refused}"
    );

    let mut client = MachineTokenLayer::new(source.clone()).layer(machine_b.clone());
    let request = |uri: &str| {
        http::Request::post(uri)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    let error = call(&mut client, request(&elsewhere)).await.unwrap_err();
    let refused = error.downcast_ref::<InsecureDestination>().unwrap();
    assert_eq!(
        refused.url(),
        format!("http://reports.internal:{port}/cron/run")
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0, "nothing reached machine B");
    assert_eq!(
        local.creations(),
        0,
        "no token was made for a refused request"
    );

    // Loopback hosts, https and scheme-less URIs are not refused.
    for uri in [
        "/cron/run".to_owned(),
        format!("http://127.0.0.1:{port}/cron/run"),
        format!("http://127.8.0.1:{port}/cron/run"),
        format!("http://localhost:{port}/cron/run"),
        format!("http://[::1]:{port}/cron/run"),
        "https://reports.internal/cron/run".to_owned(),
    ] {
        let response = call(&mut client, request(&uri)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
    let response = source
        .send(http.post(format!("{machine_b_url}/cron/run")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Opted in: the same requests go through, with the token.
    let insecure = local
        .source_builder(clock, TokenFormat::Jwt)
        .allow_insecure_http_to_any_host()
        .build()
        .unwrap();
    let response = insecure.send(http.post(&elsewhere)).await.unwrap();
    let (status, body) = reqwest_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["machine"], "mch_cron_service");
    let mut client = MachineTokenLayer::new(insecure).layer(machine_b);
    let response = call(&mut client, request(&elsewhere)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
