//! The verified-token cache: reuse skips the signature check, and nothing outlives its token.

use std::time::{Duration, UNIX_EPOCH};

use crate::common::*;
use serde_json::json;
use tower_machine_auth::clock::{Clock, TokioClock};
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

fn now_of(clock: &TokioClock) -> i64 {
    clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn verifier(clock: TokioClock) -> MachineVerifier {
    MachineVerifier::builder()
        .pem_key(TestKey::shared_rsa().public_pem())
        .clock(clock)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_reused_token_is_verified_once() {
    let verifier = pem_verifier();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    let token = TestKey::shared_rsa().token("k", &claims());
    for _ in 0..10 {
        send_bearer(&app, "/cron/run", &token).await.assert_ok();
    }
    let stats = verifier.stats();
    assert_eq!((stats.signature_checks, stats.cache_hits), (1, 9));
}

#[tokio::test(start_paused = true)]
async fn a_cached_token_is_never_served_past_its_expiry() {
    let clock = TokioClock::new();
    let verifier = verifier(clock);
    let app = app(MachineAuthLayer::new(verifier.clone()));
    let now = now_of(&clock);
    let token = TestKey::shared_rsa().token("k", &with(claims_at(now), "exp", json!(now + 20)));
    send_bearer(&app, "/cron/run", &token).await.assert_ok();

    // Still valid within the 5 s skew after exp...
    tokio::time::advance(Duration::from_secs(24)).await;
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    // ...and expired from then on, straight from the cache.
    tokio::time::advance(Duration::from_secs(1)).await;
    send_bearer(&app, "/cron/run", &token)
        .await
        .assert_rejected(401, "token-expired", Some(&token));
    assert_eq!(verifier.stats().signature_checks, 1);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_configured_ttl() {
    let clock = TokioClock::new();
    let verifier = MachineVerifier::builder()
        .pem_key(TestKey::shared_rsa().public_pem())
        .clock(clock)
        .token_cache(100, Duration::from_secs(10))
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    let token = TestKey::shared_rsa().token("k", &claims_at(now_of(&clock)));
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    tokio::time::advance(Duration::from_secs(9)).await;
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    assert_eq!(verifier.stats().signature_checks, 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    assert_eq!(verifier.stats().signature_checks, 2);
}

#[tokio::test]
async fn a_disabled_cache_verifies_every_request() {
    let verifier = MachineVerifier::builder()
        .pem_key(TestKey::shared_rsa().public_pem())
        .token_cache(0, Duration::from_secs(300))
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    let token = TestKey::shared_rsa().token("k", &claims());
    for _ in 0..3 {
        send_bearer(&app, "/cron/run", &token).await.assert_ok();
    }
    assert_eq!(verifier.stats().signature_checks, 3);
    assert_eq!(verifier.stats().cache_hits, 0);
}

#[tokio::test]
async fn rejections_are_never_cached() {
    let verifier = pem_verifier();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    let forged = TestKey::rsa().token("k", &claims());
    for _ in 0..3 {
        send_bearer(&app, "/cron/run", &forged)
            .await
            .assert_rejected(401, "token-invalid", None);
    }
    assert_eq!(verifier.stats().signature_checks, 3);
    assert_eq!(verifier.stats().cache_hits, 0);
}

#[tokio::test]
async fn a_tampered_copy_of_a_cached_token_is_not_a_hit() {
    let verifier = pem_verifier();
    let app = app(MachineAuthLayer::new(verifier.clone()));
    let token = TestKey::shared_rsa().token("k", &claims());
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    let (input, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{input}.{flipped}{}", &signature[1..]);
    send_bearer(&app, "/cron/run", &tampered)
        .await
        .assert_rejected(401, "token-invalid", None);
    let admin = with(claims(), "sub", json!("mch_admin"));
    let swapped_payload = format!(
        "{}.{}.{signature}",
        input.split('.').next().unwrap(),
        b64(admin.to_string().as_bytes())
    );
    send_bearer(&app, "/cron/run", &swapped_payload)
        .await
        .assert_rejected(401, "token-invalid", None);
}

#[tokio::test]
async fn route_policy_applies_to_cached_tokens_too() {
    let verifier = pem_verifier();
    let open = app(MachineAuthLayer::new(verifier.clone()));
    let restricted = app(MachineAuthLayer::new(verifier.clone())
        .allow_machines(["mch_other"])
        .unwrap());
    let token = TestKey::shared_rsa().token("k", &claims());
    send_bearer(&open, "/cron/run", &token).await.assert_ok();
    send_bearer(&restricted, "/cron/run", &token)
        .await
        .assert_rejected(403, "insufficient-scope", None);
    assert_eq!(verifier.stats().cache_hits, 1);
}
