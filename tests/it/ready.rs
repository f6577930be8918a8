//! `MachineVerifier::ready`: the start-up check, against real loopback servers standing in for a
//! JWKS, Clerk's Backend API and an RFC 7662 endpoint.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use tokio::time::Instant;
use tower_machine_auth::introspect::Rfc7662Introspector;
use tower_machine_auth::{MachineVerifier, MachineVerifierBuilder, NotReady};

const MACHINE_KEY: &str = "ak_test_machine_s3cr3t";
const INSTANCE_KEY: &str = "sk_test_instance_s3cr3t";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the check, and how long it took on Tokio's clock.
async fn check(verifier: &MachineVerifier) -> (Result<(), NotReady>, Duration) {
    let start = Instant::now();
    let outcome = verifier.ready(TIMEOUT).await;
    (outcome, start.elapsed())
}

/// Fails at once (no timeout, no wait on the clock), with a message holding `words` and no
/// secret.
async fn fails_at_once(verifier: &MachineVerifier, words: &[&str]) {
    let (outcome, took) = check(verifier).await;
    let error = outcome.expect_err("the check passed");
    let text = error.to_string();
    assert!(!error.timed_out(), "{text}");
    assert!(took < Duration::from_secs(1), "took {took:?}: {text}");
    for word in words {
        assert!(text.contains(word), "`{text}` does not mention `{word}`");
    }
    assert!(!text.contains("s3cr3t"), "{text}");
}

/// A loopback server that accepts connections and never answers.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

fn clerk_jwks(api_url: String) -> MachineVerifierBuilder {
    MachineVerifier::builder()
        .clerk_secret_key(INSTANCE_KEY)
        .clerk_api_url(api_url)
}

fn clerk_opaque(server: &IntrospectionServer) -> MachineVerifierBuilder {
    MachineVerifier::builder()
        .clerk_machine_secret_key(MACHINE_KEY)
        .clerk_api_url(server.base_url())
}

#[tokio::test(start_paused = true)]
async fn a_pem_key_is_ready_at_once() {
    let (outcome, took) = check(&pem_verifier()).await;
    outcome.unwrap();
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_jwks_that_serves_keys_is_ready() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("k", Some("RS256"))])).await;
    let verifier = MachineVerifier::from_jwks_url(&server.url()).unwrap();
    let (outcome, took) = check(&verifier).await;
    outcome.unwrap();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let machine = verifier.verify(&key.token("k", &claims())).await.unwrap();
    assert_eq!(machine.machine_id().as_str(), "mch_cron_service");
}

/// The local issuer with `config`, serving on loopback: its URL.
async fn local_issuer(config: machine_auth_issuer::IssuerConfig) -> String {
    let issuer = machine_auth_issuer::Issuer::builder(config)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
    url
}

/// The local issuer, with its instance key: its JWKS loads, and its verify endpoint takes the
/// key (the made-up token is "not found").
#[tokio::test]
async fn the_local_issuer_with_its_instance_key_is_ready() {
    let config = machine_auth_issuer::IssuerConfig::demo();
    let instance_key = config.instance_secret_key.clone();
    let api_url = local_issuer(config).await;
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(instance_key)
        .clerk_api_url(api_url)
        .build()
        .unwrap();
    verifier.ready(TIMEOUT).await.unwrap();
}

/// The local issuer behind a wrong API path (`…/api`): its machine key is fine, but no route
/// answers, and both the start-up check and a request say so instead of refusing every token.
#[tokio::test]
async fn the_local_issuer_behind_a_wrong_api_path_is_named() {
    let config = machine_auth_issuer::IssuerConfig::demo();
    let machine_key = config.machines[0].secret_key.clone();
    let api_url = format!("{}/api", local_issuer(config).await);
    let verifier = MachineVerifier::builder()
        .clerk_machine_secret_key(machine_key)
        .clerk_api_url(&api_url)
        .build()
        .unwrap();
    let error = verifier.ready(TIMEOUT).await.unwrap_err();
    assert!(!error.timed_out(), "{error}");
    assert!(
        error.to_string().contains("path is probably wrong"),
        "{error}"
    );
    let request = crate::common::app(tower_machine_auth::MachineAuthLayer::new(verifier));
    send_bearer(&request, "/cron/run", &opaque_token())
        .await
        .assert_rejected(503, "verifier-unavailable", None);
}

/// A wrong secret key: Clerk answers 401 (or 403), and no retry changes that.
#[tokio::test(start_paused = true)]
async fn a_refused_secret_key_fails_at_once() {
    for status in [401, 403] {
        let server = JwksServer::start(JwksReply::Status(status)).await;
        let verifier = clerk_jwks(format!("http://{}", server.addr))
            .build()
            .unwrap();
        fails_at_once(
            &verifier,
            &[
                "refused CLERK_SECRET_KEY",
                &format!("HTTP {status}"),
                &format!("http://{}/v1/jwks", server.addr),
            ],
        )
        .await;
    }
    // A JWKS URL that wants credentials is a wrong URL.
    let server = JwksServer::start(JwksReply::Status(401)).await;
    let verifier = MachineVerifier::from_jwks_url(&server.url()).unwrap();
    fails_at_once(
        &verifier,
        &["refused the request (HTTP 401)", "CLERK_JWKS_URL"],
    )
    .await;
}

/// The local issuer, asked with a key that is not its instance's.
#[tokio::test]
async fn the_local_issuer_refusing_the_secret_key_fails_at_once() {
    let api_url = local_issuer(machine_auth_issuer::IssuerConfig::demo()).await;
    let verifier = clerk_jwks(api_url).build().unwrap();
    fails_at_once(&verifier, &["refused CLERK_SECRET_KEY (HTTP 401)"]).await;
}

#[tokio::test(start_paused = true)]
async fn a_wrong_jwks_path_or_a_key_set_without_usable_keys_fails_at_once() {
    let server = JwksServer::start(JwksReply::Status(404)).await;
    let verifier = clerk_jwks(format!("http://{}/api", server.addr))
        .build()
        .unwrap();
    fails_at_once(
        &verifier,
        &["answered 404", "CLERK_API_URL's path is probably wrong"],
    )
    .await;

    // An RSA key marked for ES256: nothing this verifier can use.
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("k", Some("ES256"))])).await;
    let verifier = MachineVerifier::from_jwks_url(&server.url()).unwrap();
    fails_at_once(&verifier, &["cannot be used", "no usable signing key"]).await;
    server.set(JwksReply::Raw("<html>login</html>".to_owned()));
    let verifier = MachineVerifier::from_jwks_url(&server.url()).unwrap();
    fails_at_once(&verifier, &["cannot be used"]).await;
}

/// A JWKS endpoint that never answers: the check waits for the whole timeout (on Tokio's
/// paused clock), while fetches time out and are retried, then says what it last saw.
#[tokio::test(start_paused = true)]
async fn a_jwks_that_never_answers_fails_after_the_timeout() {
    let url = silent_server().await;
    let verifier = MachineVerifier::from_jwks_url(&format!("{url}/jwks")).unwrap();
    let (outcome, took) = check(&verifier).await;
    let error = outcome.unwrap_err();
    assert!(error.timed_out(), "{error}");
    assert!(
        took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(1),
        "took {took:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("no JWKS was loaded from `{url}/jwks` within 10s"))
            && text.contains("timed out"),
        "{text}"
    );
}

/// The JWKS endpoint comes up while the check waits (a container starting beside this one).
#[tokio::test(start_paused = true)]
async fn a_jwks_that_comes_up_in_time_is_ready() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(JwksReply::Status(503)).await;
    let verifier = MachineVerifier::from_jwks_url(&server.url()).unwrap();
    let ready = tokio::spawn({
        let verifier = verifier.clone();
        async move { verifier.ready(TIMEOUT).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.set(key_set(&[key.jwk("k", Some("RS256"))]));
    ready.await.unwrap().unwrap();
}

/// Clerk's 404 "no such token" for the made-up token: the key was accepted.
#[tokio::test(start_paused = true)]
async fn an_accepted_machine_key_is_ready() {
    let server = IntrospectionServer::start(Introspection::Clerk(HashMap::new())).await;
    let verifier = clerk_opaque(&server).build().unwrap();
    let (outcome, took) = check(&verifier).await;
    outcome.unwrap();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let probe = server.last();
    assert_eq!(probe.path, "/m2m_tokens/verify");
    assert_eq!(
        probe.headers["authorization"],
        format!("Bearer {MACHINE_KEY}")
    );
    let body: serde_json::Value = serde_json::from_str(&probe.body).unwrap();
    assert!(body["token"].as_str().unwrap().starts_with("mt_"), "{body}");
    assert_eq!(server.hits(), 1, "one probe");
    assert_eq!(
        verifier.stats().introspections,
        0,
        "the probe is not a verification"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_machine_or_instance_key_fails_at_once() {
    for status in [401, 403] {
        let server = IntrospectionServer::start(Introspection::Status(status)).await;
        let verifier = clerk_opaque(&server).build().unwrap();
        fails_at_once(
            &verifier,
            &[
                "refused CLERK_MACHINE_SECRET_KEY",
                &format!("HTTP {status}"),
                "ak_…",
            ],
        )
        .await;
        let verifier = MachineVerifier::builder()
            .pem_key(TestKey::shared_rsa().public_pem())
            .clerk_secret_key(INSTANCE_KEY)
            .clerk_api_url(server.base_url())
            .build()
            .unwrap();
        fails_at_once(&verifier, &["refused CLERK_SECRET_KEY", "sk_…"]).await;
    }
}

/// `CLERK_API_URL=http://host/api`: the verify route is not there.
#[tokio::test(start_paused = true)]
async fn a_route_not_found_fails_at_once() {
    let server = IntrospectionServer::start(Introspection::Status(404)).await;
    let verifier = clerk_opaque(&server).build().unwrap();
    fails_at_once(
        &verifier,
        &[
            "answered 404 without Clerk's token-not-found error code",
            "CLERK_API_URL's path is probably wrong",
        ],
    )
    .await;
}

/// An endpoint that fails (5xx) is asked again until the timeout.
#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_asked_again_until_the_timeout() {
    let server = IntrospectionServer::start(Introspection::Status(503)).await;
    let verifier = clerk_opaque(&server).build().unwrap();
    let (outcome, took) = check(&verifier).await;
    let error = outcome.unwrap_err();
    assert!(error.timed_out(), "{error}");
    assert!(took >= TIMEOUT, "took {took:?}");
    assert!(
        error.to_string().contains("answered with HTTP status 503"),
        "{error}"
    );
    assert!(server.hits() > 2, "asked {} times", server.hits());
}

#[tokio::test(start_paused = true)]
async fn rfc_7662_inactive_means_ready_and_a_refusal_does_not() {
    let server = IntrospectionServer::start(Introspection::Rfc7662(HashMap::new())).await;
    let introspector = || {
        Rfc7662Introspector::builder(format!("{}/introspect", server.base_url()))
            .client_credentials("api", "client-s3cr3t")
            .build()
            .unwrap()
    };
    let verifier = MachineVerifier::builder()
        .introspector(introspector())
        .build()
        .unwrap();
    check(&verifier).await.0.unwrap();
    server.set(Introspection::Status(401));
    fails_at_once(&verifier, &["refused the verifier's credentials"]).await;
    server.set(Introspection::Status(404));
    fails_at_once(&verifier, &["answered 404", "path is probably wrong"]).await;
}

/// A JWKS and an opaque endpoint that both fail: both are named.
#[tokio::test(start_paused = true)]
async fn every_failure_is_named() {
    let jwks = JwksServer::start(JwksReply::Status(401)).await;
    let introspection = IntrospectionServer::start(Introspection::Status(404)).await;
    let verifier = MachineVerifier::builder()
        .jwks_url(jwks.url())
        .clerk_machine_secret_key(MACHINE_KEY)
        .clerk_api_url(introspection.base_url())
        .build()
        .unwrap();
    fails_at_once(
        &verifier,
        &[
            "refused the request (HTTP 401)",
            "; and ",
            "path is probably wrong",
        ],
    )
    .await;
}
