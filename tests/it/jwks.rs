//! The JWKS source against a real loopback server: fetch limits, cooldown, single-flight, stale
//! window, key removal (also racing a verification), and Clerk's Backend API. Timing runs on
//! Tokio's paused clock, except where a verification is held on another thread.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tower::{Layer, Service};
use tower_machine_auth::clock::{Clock, TokioClock};
use tower_machine_auth::{AuthError, MachineAuthLayer, MachineVerifier, MachineVerifierBuilder};

/// Claims valid at the clock's current time.
fn claims_now(clock: &TokioClock) -> serde_json::Value {
    claims_at(clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64)
}

fn builder(server: &JwksServer, clock: TokioClock) -> MachineVerifierBuilder {
    MachineVerifier::builder()
        .jwks_url(server.url())
        .clock(clock)
}

/// Lets background tasks (the refresher, the server) run until they are idle.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn clerk_backend_api_path_and_headers() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("ins_2abc", Some("RS256"))])).await;
    for api_url in [
        format!("http://{}", server.addr),
        format!("http://{}/v1/", server.addr),
    ] {
        let verifier = MachineVerifier::builder()
            .clerk_secret_key("sk_test_instance")
            .clerk_api_url(api_url)
            .build()
            .unwrap();
        let machine = verifier
            .verify(&key.token("ins_2abc", &claims()))
            .await
            .unwrap();
        assert_eq!(machine.machine_id().as_str(), "mch_cron_service");
        assert_eq!(server.last_path().as_deref(), Some("/v1/jwks"));
        let headers = server.last_headers();
        assert_eq!(headers["authorization"], "Bearer sk_test_instance");
        assert_eq!(headers["clerk-api-version"], "2026-05-12");
    }
}

#[tokio::test]
async fn clerk_env_variables_select_the_backend_api() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("ins_2abc", None)])).await;
    let api_url = format!("http://{}", server.addr);
    let verifier = MachineVerifier::builder()
        .env_from(|name| match name {
            "CLERK_SECRET_KEY" => Some("sk_test_from_env".to_owned()),
            "CLERK_API_URL" => Some(api_url.clone()),
            _ => None,
        })
        .build()
        .unwrap();
    verifier
        .verify(&key.token("ins_2abc", &claims()))
        .await
        .unwrap();
    assert_eq!(
        server.last_headers()["authorization"],
        "Bearer sk_test_from_env"
    );
}

#[tokio::test]
async fn plain_jwks_url_sends_no_credentials() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("k1", None)])).await;
    let verifier = MachineVerifier::from_jwks_url(&server.url()).unwrap();
    verifier.verify(&key.token("k1", &claims())).await.unwrap();
    assert!(server.last_headers().get("authorization").is_none());
    assert!(server.last_headers().get("clerk-api-version").is_none());
}

#[tokio::test(start_paused = true)]
async fn first_requests_wait_for_the_initial_fetch_instead_of_failing() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("k1", None)])).await;
    let clock = TokioClock::new();
    let app = app(MachineAuthLayer::new(
        builder(&server, clock).build().unwrap(),
    ));
    let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_unknown_kids_costs_at_most_one_fetch_per_cooldown() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("k1", None)])).await;
    let clock = TokioClock::new();
    let verifier = builder(&server, clock).build().unwrap();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock)))
        .await
        .assert_ok();
    assert_eq!(server.hits(), 1);

    let mut expected_hits = 1;
    for (advance, fetches) in [(0, 1), (10, 0), (15, 0), (10, 1), (29, 0), (1, 1)] {
        tokio::time::advance(Duration::from_secs(advance)).await;
        for i in 0..50 {
            let token = key.token(&format!("made-up-{advance}-{i}"), &claims_now(&clock));
            send_bearer(&app, "/cron/run", &token)
                .await
                .assert_rejected(401, "token-invalid", None);
        }
        expected_hits += fetches;
        assert_eq!(server.hits(), expected_hits, "after advancing {advance}s");
    }
    assert!(verifier.stats().jwks_fetches_skipped > 0);
    // Known keys kept working all along.
    send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock)))
        .await
        .assert_ok();
}

#[tokio::test(start_paused = true)]
async fn rotation_is_picked_up_with_a_single_fetch_for_concurrent_requests() {
    let old = TestKey::shared_rsa();
    let new = TestKey::rsa();
    let server = JwksServer::start(key_set(&[old.jwk("old", None)])).await;
    let clock = TokioClock::new();
    let app = app(MachineAuthLayer::new(
        builder(&server, clock).build().unwrap(),
    ));
    send_bearer(&app, "/cron/run", &old.token("old", &claims_now(&clock)))
        .await
        .assert_ok();
    assert_eq!(server.hits(), 1);

    server.set(key_set(&[old.jwk("old", None), new.jwk("new", None)]));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let app = app.clone();
        let token = new.token("new", &claims_now(&clock));
        requests.spawn(async move { send_bearer(&app, "/cron/run", &token).await.status });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(
        server.hits(),
        2,
        "100 concurrent requests with a new kid caused more than one fetch"
    );
}

#[tokio::test(start_paused = true)]
async fn last_good_keys_survive_an_outage_for_the_stale_window_then_503() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("k1", None)])).await;
    let clock = TokioClock::new();
    let verifier = builder(&server, clock).build().unwrap();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock)))
        .await
        .assert_ok();

    server.set(JwksReply::Status(500));
    for _ in 0..23 {
        tokio::time::advance(Duration::from_secs(3600)).await;
        settle().await;
        let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock))).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    assert!(verifier.stats().jwks_fetch_failures >= 23);

    tokio::time::advance(Duration::from_secs(3601)).await;
    settle().await;
    let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock))).await;
    reply.assert_rejected(503, "verifier-unavailable", None);

    server.set(key_set(&[key.jwk("k1", None)]));
    tokio::time::advance(Duration::from_secs(31)).await;
    settle().await;
    let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test(start_paused = true)]
async fn cold_start_with_the_endpoint_down_answers_503_then_recovers_by_itself() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(JwksReply::Status(503)).await;
    let clock = TokioClock::new();
    let app = app(MachineAuthLayer::new(
        builder(&server, clock).build().unwrap(),
    ));
    let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock))).await;
    reply.assert_rejected(503, "verifier-unavailable", None);

    server.set(key_set(&[key.jwk("k1", None)]));
    let hits_before = server.hits();
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert!(
        server.hits() > hits_before,
        "no background retry within 30 s"
    );
    let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims_now(&clock))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test(start_paused = true)]
async fn keys_are_refreshed_in_the_background_without_requests() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("k1", None)])).await;
    let verifier = builder(&server, TokioClock::new())
        .jwks_refresh_interval(Duration::from_secs(120))
        .build()
        .unwrap();
    settle().await;
    assert_eq!(server.hits(), 1);
    for expected in 2..5 {
        tokio::time::advance(Duration::from_secs(120)).await;
        settle().await;
        assert_eq!(server.hits(), expected);
    }
    drop(verifier);
    tokio::time::advance(Duration::from_secs(600)).await;
    settle().await;
    assert_eq!(server.hits(), 4, "the refresher outlived its verifier");
}

#[tokio::test(start_paused = true)]
async fn a_removed_key_stops_verifying_even_for_cached_tokens() {
    let removed = TestKey::shared_rsa();
    let kept = TestKey::rsa();
    let server = JwksServer::start(key_set(&[
        removed.jwk("removed", None),
        kept.jwk("kept", None),
    ]))
    .await;
    let clock = TokioClock::new();
    let verifier = builder(&server, clock).build().unwrap();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    let token = removed.token("removed", &claims_now(&clock));
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    assert_eq!(verifier.stats().cache_hits, 1);

    server.set(key_set(&[kept.jwk("kept", None)]));
    tokio::time::advance(Duration::from_secs(300)).await;
    settle().await;
    send_bearer(&app, "/cron/run", &token)
        .await
        .assert_rejected(401, "token-invalid", Some(&token));
    send_bearer(&app, "/cron/run", &kept.token("kept", &claims_now(&clock)))
        .await
        .assert_ok();
}

#[tokio::test(start_paused = true)]
async fn a_kid_whose_key_changed_stops_verifying_old_tokens() {
    let first = TestKey::shared_rsa();
    let second = TestKey::rsa();
    let server = JwksServer::start(key_set(&[first.jwk("k1", None)])).await;
    let clock = TokioClock::new();
    let app = app(MachineAuthLayer::new(
        builder(&server, clock).build().unwrap(),
    ));
    let old_token = first.token("k1", &claims_now(&clock));
    send_bearer(&app, "/cron/run", &old_token).await.assert_ok();

    server.set(key_set(&[second.jwk("k1", None)]));
    tokio::time::advance(Duration::from_secs(300)).await;
    settle().await;
    send_bearer(&app, "/cron/run", &old_token)
        .await
        .assert_rejected(401, "token-invalid", None);
    send_bearer(&app, "/cron/run", &second.token("k1", &claims_now(&clock)))
        .await
        .assert_ok();
}

#[tokio::test]
async fn oversized_jwks_documents_are_refused() {
    let key = TestKey::shared_rsa();
    let mut jwk = key.jwk("k1", None);
    jwk["x-padding"] = json!("x".repeat(70 * 1024));
    let server = JwksServer::start(key_set(&[jwk])).await;
    let verifier = MachineVerifier::from_jwks_url(&server.url()).unwrap();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims())).await;
    reply.assert_rejected(503, "verifier-unavailable", None);
    assert!(verifier.stats().jwks_fetch_failures >= 1);
}

#[tokio::test]
async fn redirecting_jwks_endpoints_are_refused_and_not_followed() {
    let key = TestKey::shared_rsa();
    let target = JwksServer::start(key_set(&[key.jwk("k1", None)])).await;
    let server = JwksServer::start(JwksReply::Redirect(target.url())).await;
    let app = app(MachineAuthLayer::new(
        MachineVerifier::from_jwks_url(&server.url()).unwrap(),
    ));
    let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims())).await;
    reply.assert_rejected(503, "verifier-unavailable", None);
    assert!(server.hits() >= 1);
    assert_eq!(target.hits(), 0, "the redirect was followed");
}

#[tokio::test]
async fn garbage_jwks_documents_are_failed_fetches() {
    let key = TestKey::shared_rsa();
    for body in [
        "not json",
        "[]",
        r#"{"keys": 5}"#,
        r#"{"keys": []}"#,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k1"}]}"#,
    ] {
        let server = JwksServer::start(JwksReply::Raw(body.to_owned())).await;
        let app = app(MachineAuthLayer::new(
            MachineVerifier::from_jwks_url(&server.url()).unwrap(),
        ));
        let reply = send_bearer(&app, "/cron/run", &key.token("k1", &claims())).await;
        reply.assert_rejected(503, "verifier-unavailable", None);
    }
}

#[tokio::test]
async fn one_bad_key_does_not_spoil_the_set() {
    let good = TestKey::shared_rsa();
    let other = TestKey::rsa();
    let ec = TestKey::p256();
    let mut private = good.jwk("private", None);
    private["d"] = json!("AQAB");
    let mut encryption = other.jwk("enc", None);
    encryption["use"] = json!("enc");
    let mut verify_ops = other.jwk("ops", None);
    verify_ops["key_ops"] = json!(["encrypt"]);
    let mut small = good.jwk("small", None);
    small["n"] = json!(b64(&[0xc5; 128]));
    let server = JwksServer::start(key_set(&[
        json!({"kty":"oct","k":"c2VjcmV0","kid":"hmac"}),
        json!({"kty":"AKP","alg":"ML-DSA-44","pub":"AAAA","kid":"pq"}),
        json!("not an object"),
        json!({"kty":"RSA","kid":"incomplete"}),
        private,
        encryption,
        verify_ops,
        small,
        ec.jwk("curve-mismatch", Some("ES384")),
        other.jwk("dup", None),
        good.jwk("dup", None),
        good.jwk("no-kid-below", None),
        json!({"kty":"RSA","n":good.jwk("x", None)["n"],"e":"AQAB"}),
        good.jwk("good", None),
    ]))
    .await;
    let app = app(MachineAuthLayer::new(
        MachineVerifier::from_jwks_url(&server.url()).unwrap(),
    ));
    send_bearer(&app, "/cron/run", &good.token("good", &claims()))
        .await
        .assert_ok();
    for kid in ["private", "dup", "small", "hmac"] {
        let reply = send_bearer(&app, "/cron/run", &good.token(kid, &claims())).await;
        reply.assert_rejected(401, "token-invalid", None);
    }
    for kid in ["enc", "ops"] {
        let reply = send_bearer(&app, "/cron/run", &other.token(kid, &claims())).await;
        reply.assert_rejected(401, "token-invalid", None);
    }
}

#[tokio::test]
async fn ec_and_ed25519_jwks_keys_verify_when_allowed() {
    let ec = TestKey::p256();
    let ed = TestKey::ed25519();
    let server =
        JwksServer::start(key_set(&[ec.jwk("ec", Some("ES256")), ed.jwk("ed", None)])).await;
    let verifier = MachineVerifier::builder()
        .jwks_url(server.url())
        .algorithms([
            tower_machine_auth::Algorithm::ES256,
            tower_machine_auth::Algorithm::EdDSA,
        ])
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    send_bearer(&app, "/cron/run", &ec.token("ec", &claims()))
        .await
        .assert_ok();
    send_bearer(&app, "/cron/run", &ed.token("ed", &claims()))
        .await
        .assert_ok();
    // The EC key verifies only ES256 tokens, even when signed by the right key.
    let wrong_kid = ed.token("ec", &claims());
    send_bearer(&app, "/cron/run", &wrong_kid)
        .await
        .assert_rejected(401, "token-invalid", None);
}

/// Bounds every wait of the tests below (real time: they run on a multi-thread runtime).
const PATIENCE: Duration = Duration::from_secs(10);

/// A JWKS server on loopback that holds each request until the test answers it, so a test
/// decides what a fetch gets, and when, after the fetch has started.
struct HeldJwksServer {
    url: String,
    requests: mpsc::UnboundedReceiver<oneshot::Sender<Value>>,
}

impl HeldJwksServer {
    async fn start() -> Self {
        let (sender, requests) = mpsc::unbounded_channel();
        let app = axum::Router::new().fallback(move || {
            let sender = sender.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                sender.send(reply).unwrap();
                let keys = answer.await.unwrap_or(json!({"keys": []}));
                ([("content-type", "application/json")], keys.to_string())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, requests }
    }

    /// Waits for the next fetch to arrive, and returns the means to answer it.
    async fn next_fetch(&mut self) -> oneshot::Sender<Value> {
        tokio::time::timeout(PATIENCE, self.requests.recv())
            .await
            .expect("no JWKS fetch came")
            .unwrap()
    }
}

/// Answers a held fetch with these keys.
fn answer(fetch: oneshot::Sender<Value>, keys: &[Value]) {
    fetch.send(json!({ "keys": keys })).unwrap();
}

/// The system clock, which can stop one thread at its next reading until the test lets it go.
#[derive(Debug, Clone, Default)]
struct GatedClock(Arc<Mutex<Option<Gate>>>);

#[derive(Debug)]
struct Gate {
    thread: ThreadId,
    entered: oneshot::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl GatedClock {
    /// Stops `thread` at its next reading of the clock: returns the signal that it got there and
    /// the means to let it go on.
    fn arm(&self, thread: ThreadId) -> (oneshot::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (entered, entered_signal) = oneshot::channel();
        let (release_sender, release) = std::sync::mpsc::channel();
        *self.0.lock().unwrap() = Some(Gate {
            thread,
            entered,
            release,
        });
        (entered_signal, release_sender)
    }
}

impl Clock for GatedClock {
    fn now(&self) -> SystemTime {
        let gate = {
            let mut gate = self.0.lock().unwrap();
            match &*gate {
                Some(armed) if armed.thread == std::thread::current().id() => gate.take(),
                _ => None,
            }
        };
        if let Some(gate) = gate {
            let _ = gate.entered.send(());
            let _ = gate.release.recv_timeout(PATIENCE);
        }
        SystemTime::now()
    }
}

/// Drives `future` to its end on a thread of its own; `polled` gets that thread's id once the
/// first poll has returned (the future is then waiting for something).
fn drive_on_own_thread<F>(
    future: F,
    polled: oneshot::Sender<ThreadId>,
) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut future = std::pin::pin!(future);
        let mut polled = Some(polled);
        runtime.block_on(std::future::poll_fn(|cx| {
            let poll = future.as_mut().poll(cx);
            if let Some(polled) = polled.take() {
                let _ = polled.send(std::thread::current().id());
            }
            poll
        }))
    })
}

/// A verification that found its key before a fetch removed that key, and finished after the
/// token cache was cleared for the removal, must not leave its token verifiable: the token cache
/// entry it makes belongs to the generation before the removal and is never served.
///
/// The interleaving is forced: the JWKS server holds each fetch until the test answers it, and
/// the verifier's clock stops the request's thread right after it has looked its key up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_while_a_verification_is_in_flight_stays_removed() {
    let kept = TestKey::shared_rsa();
    let removed = TestKey::rsa();
    let mut server = HeldJwksServer::start().await;
    let clock = GatedClock::default();
    let verifier = MachineVerifier::builder()
        .jwks_url(&server.url)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut service = MachineAuthLayer::new(verifier.clone()).layer(tower::service_fn(
        |_: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
        },
    ));

    // The first fetch has started; the request is decided now: it must wait for the keys.
    let first_fetch = server.next_fetch().await;
    let token = removed.token("removed", &claims());
    let request = http::Request::get("/cron/run")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let (polled, request_thread) = oneshot::channel();
    let in_flight = drive_on_own_thread(service.call(request), polled);
    let request_thread = tokio::time::timeout(PATIENCE, request_thread)
        .await
        .unwrap()
        .unwrap();

    // The request gets its key from the first fetch and stops at its next clock reading, before
    // it checks the signature and caches the token.
    let (at_gate, release) = clock.arm(request_thread);
    answer(
        first_fetch,
        &[kept.jwk("kept", None), removed.jwk("removed", None)],
    );
    tokio::time::timeout(PATIENCE, at_gate)
        .await
        .unwrap()
        .unwrap();

    // Meanwhile the key leaves the set: a token with a new kid makes the verifier fetch again.
    let new_kid = kept.token("new", &claims());
    let probe = verifier.verify(&new_kid);
    let rotate = async { answer(server.next_fetch().await, &[kept.jwk("kept", None)]) };
    let (probe, ()) = tokio::time::timeout(PATIENCE, async { tokio::join!(probe, rotate) })
        .await
        .unwrap();
    assert!(
        matches!(probe, Err(AuthError::InvalidToken(_))),
        "{probe:?}"
    );

    // The request in flight finishes: it looked its key up before the key left.
    release.send(()).unwrap();
    let response = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);

    // From now on the token is refused, cache or no cache, and the key does not come back.
    for _ in 0..3 {
        let again = verifier.verify(&token).await;
        assert!(
            matches!(again, Err(AuthError::InvalidToken(_))),
            "a token signed by a removed key still verifies: {again:?}"
        );
    }
    assert_eq!(verifier.stats().cache_hits, 0);
    verifier
        .verify(&kept.token("kept", &claims()))
        .await
        .unwrap();
}
