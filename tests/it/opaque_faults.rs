//! Opaque tokens when something goes wrong: cancelled calls, hostile introspection replies,
//! skewed clocks, tokens of the wrong type, and secret keys sent by mistake. Real layer, real
//! loopback servers.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use serde_json::{Value, json};
use tower_machine_auth::clock::Clock;
use tower_machine_auth::introspect::{Rfc7662Introspector, Rfc7662IntrospectorBuilder};
use tower_machine_auth::{MachineAuthLayer, MachineVerifier, MachineVerifierBuilder};

const MACHINE_KEY: &str = "ak_test_machine_secret_key_0123";

fn clerk_builder(server: &IntrospectionServer) -> MachineVerifierBuilder {
    MachineVerifier::builder()
        .clerk_machine_secret_key(MACHINE_KEY)
        .clerk_api_url(server.base_url())
}

async fn clerk_server(tokens: &[(&str, Value)]) -> IntrospectionServer {
    let tokens = tokens
        .iter()
        .map(|(token, resource)| ((*token).to_owned(), resource.clone()))
        .collect();
    IntrospectionServer::start(Introspection::Clerk(tokens)).await
}

async fn rfc7662_server(tokens: &[(&str, Value)]) -> IntrospectionServer {
    let tokens = tokens
        .iter()
        .map(|(token, reply)| ((*token).to_owned(), reply.clone()))
        .collect();
    IntrospectionServer::start(Introspection::Rfc7662(tokens)).await
}

fn rfc7662_verifier(
    server: &IntrospectionServer,
    configure: impl FnOnce(Rfc7662IntrospectorBuilder) -> Rfc7662IntrospectorBuilder,
) -> MachineVerifier {
    let introspector = configure(Rfc7662Introspector::builder(format!(
        "{}/oauth2/introspect",
        server.base_url()
    )))
    .build()
    .unwrap();
    MachineVerifier::builder()
        .introspector(introspector)
        .build()
        .unwrap()
}

/// An active RFC 7662 reply for `mch_cron_service`.
fn active() -> Value {
    json!({"active": true, "sub": "mch_cron_service", "exp": now() + 600, "iat": now()})
}

/// A JSON value nested `depth` arrays deep: valid JSON that a parser with a depth limit refuses.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(0), |inner, _| json!([inner]))
}

mod breaker {
    use super::*;

    /// Five failures open the circuit; ten seconds later the next call is the probe.
    async fn open_the_circuit(app: &axum::Router, server: &IntrospectionServer, token: &str) {
        server.set(Introspection::Status(500));
        for _ in 0..5 {
            send_bearer(app, "/cron/run", token).await.assert_rejected(
                503,
                "verifier-unavailable",
                None,
            );
        }
        send_bearer(app, "/cron/run", token).await.assert_rejected(
            503,
            "verifier-unavailable",
            None,
        );
        assert_eq!(server.hits(), 5, "the circuit did not open");
        tokio::time::advance(Duration::from_secs(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_lets_the_next_call_probe_again() {
        let token = opaque_token();
        let good = clerk_resource("mt_1", "mch_cron_service");
        let server = clerk_server(&[(&token, good.clone())]).await;
        let app = app(MachineAuthLayer::new(
            clerk_builder(&server).build().unwrap(),
        ));
        open_the_circuit(&app, &server, &token).await;

        // The probe reaches a slow endpoint and its request is dropped (the client hung up).
        server.set(Introspection::Clerk(HashMap::from([(
            token.clone(),
            good.clone(),
        )])));
        server.set_delay(Duration::from_secs(30));
        let cancelled = tokio::time::timeout(
            Duration::from_secs(1),
            send_bearer(&app, "/cron/run", &token),
        )
        .await;
        assert!(cancelled.is_err(), "the probe was not cancelled");
        assert_eq!(server.hits(), 6, "the cancelled probe reached the endpoint");

        server.set_delay(Duration::ZERO);
        send_bearer(&app, "/cron/run", &token).await.assert_ok();
        assert_eq!(
            server.hits(),
            7,
            "the next call was not let through as a probe"
        );
        send_bearer(&app, "/cron/run", &token).await.assert_ok();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_call_while_closed_changes_nothing() {
        let token = opaque_token();
        let server = clerk_server(&[(&token, clerk_resource("mt_1", "mch_cron_service"))]).await;
        let app = app(MachineAuthLayer::new(
            clerk_builder(&server).build().unwrap(),
        ));
        server.set_delay(Duration::from_secs(30));
        for _ in 0..10 {
            let cancelled = tokio::time::timeout(
                Duration::from_secs(1),
                send_bearer(&app, "/cron/run", &token),
            )
            .await;
            assert!(cancelled.is_err());
        }
        server.set_delay(Duration::ZERO);
        send_bearer(&app, "/cron/run", &token).await.assert_ok();
        assert_eq!(server.hits(), 11);
    }
}

mod hostile_replies {
    use super::*;

    /// The attack: a few requests with tokens whose verify replies the verifier cannot use, then
    /// one every ten seconds. Each is rejected alone; a legitimate token keeps working.
    async fn attack(app: &axum::Router, attackers: &[&str], legitimate: &str) {
        for _ in 0..3 {
            for attacker in attackers {
                send_bearer(app, "/cron/run", attacker)
                    .await
                    .assert_rejected(401, "token-invalid", Some(attacker));
            }
        }
        send_bearer(app, "/cron/run", legitimate).await.assert_ok();
        for round in 0..6 {
            tokio::time::advance(Duration::from_secs(10)).await;
            let attacker = attackers[round % attackers.len()];
            send_bearer(app, "/cron/run", attacker)
                .await
                .assert_rejected(401, "token-invalid", Some(attacker));
            send_bearer(app, "/cron/run", legitimate).await.assert_ok();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_or_unparseable_clerk_replies_reject_one_token_and_never_open_the_breaker() {
        let legitimate = opaque_token();
        let (huge, deep, ill_typed) = (opaque_token(), opaque_token(), opaque_token());
        let resource = || clerk_resource("mt_1", "mch_cron_service");
        let server = clerk_server(&[
            (&legitimate, resource()),
            // ~70 KB of claims: a verify reply over the 64 KiB read cap.
            (
                &huge,
                with(resource(), "claims", json!({"pad": "x".repeat(70 * 1024)})),
            ),
            // Claims nested past the JSON parser's depth limit.
            (&deep, with(resource(), "claims", json!({"n": nested(300)}))),
            (&ill_typed, with(resource(), "revoked", json!("no"))),
        ])
        .await;
        let verifier = clerk_builder(&server).build().unwrap();
        let app = app(MachineAuthLayer::new(verifier.clone()));
        attack(&app, &[&huge, &deep, &ill_typed], &legitimate).await;
        assert_eq!(verifier.stats().introspections, 9 + 1 + 12);
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_or_unparseable_rfc7662_replies_reject_one_token_and_never_open_the_breaker()
    {
        let server = rfc7662_server(&[
            ("legitimate", active()),
            ("huge", with(active(), "pad", json!("x".repeat(70 * 1024)))),
            ("deep", with(active(), "n", nested(300))),
            ("ill-typed", with(active(), "active", json!("true"))),
        ])
        .await;
        let app = app(MachineAuthLayer::new(rfc7662_verifier(&server, |b| b)));
        attack(&app, &["huge", "deep", "ill-typed"], "legitimate").await;
    }

    #[tokio::test(start_paused = true)]
    async fn statuses_the_endpoint_answers_for_one_token_never_open_the_breaker() {
        let token = opaque_token();
        let server = clerk_server(&[(&token, clerk_resource("mt_1", "mch_cron_service"))]).await;
        let app = app(MachineAuthLayer::new(
            clerk_builder(&server).build().unwrap(),
        ));
        for status in [400, 403, 405, 409, 413, 422] {
            server.set(Introspection::Status(status));
            for _ in 0..5 {
                send_bearer(&app, "/cron/run", &token)
                    .await
                    .assert_rejected(401, "token-invalid", Some(&token));
            }
        }
        server.set(Introspection::Clerk(HashMap::from([(
            token.clone(),
            clerk_resource("mt_1", "mch_cron_service"),
        )])));
        send_bearer(&app, "/cron/run", &token).await.assert_ok();
    }

    #[tokio::test(start_paused = true)]
    async fn signs_of_an_outage_still_open_the_breaker() {
        for status in [429, 500, 502, 503, 504] {
            let token = opaque_token();
            let server = IntrospectionServer::start(Introspection::Status(status)).await;
            let app = app(MachineAuthLayer::new(
                clerk_builder(&server).build().unwrap(),
            ));
            for _ in 0..7 {
                send_bearer(&app, "/cron/run", &token)
                    .await
                    .assert_rejected(503, "verifier-unavailable", None);
            }
            assert_eq!(server.hits(), 5, "status {status} did not open the breaker");
        }
    }

    #[tokio::test]
    async fn a_failing_status_with_a_large_body_is_still_an_outage() {
        let token = opaque_token();
        let server = IntrospectionServer::start(Introspection::StatusWithBody(500, 70_000)).await;
        let app = app(MachineAuthLayer::new(
            clerk_builder(&server).build().unwrap(),
        ));
        for _ in 0..7 {
            send_bearer(&app, "/cron/run", &token)
                .await
                .assert_rejected(503, "verifier-unavailable", None);
        }
        assert_eq!(server.hits(), 5, "a large 500 did not open the breaker");
    }
}

mod clock_skew {
    use super::*;

    /// 2026-01-01T00:00:05.400Z: an instant with a fraction of a second.
    const ISSUED_AT_MS: i64 = 1_767_225_605_400;

    /// A clock fixed at one instant.
    #[derive(Debug)]
    struct Fixed(i64);

    impl Clock for Fixed {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        }
    }

    fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    /// The system clock, `behind` the issuer's.
    #[derive(Debug)]
    struct Behind(Duration);

    impl Clock for Behind {
        fn now(&self) -> SystemTime {
            SystemTime::now() - self.0
        }
    }

    #[tokio::test]
    async fn a_fresh_opaque_token_passes_with_the_verifier_a_few_seconds_behind() {
        let token = opaque_token();
        let created = now_ms();
        let resource = with(
            with(
                clerk_resource("mt_1", "mch_cron_service"),
                "created_at",
                json!(created),
            ),
            "updated_at",
            json!(created),
        );
        let server = clerk_server(&[(&token, resource)]).await;
        for behind in [1, 3, 4] {
            let verifier = clerk_builder(&server)
                .clock(Behind(Duration::from_secs(behind)))
                .build()
                .unwrap();
            send_bearer(&app(MachineAuthLayer::new(verifier)), "/cron/run", &token)
                .await
                .assert_ok();
        }
    }

    /// A JWT and an opaque token issued at the same instant get the same verdict from a verifier
    /// whose clock is behind the issuer's, even by a few seconds plus a fraction.
    #[tokio::test]
    async fn opaque_and_jwt_tokens_issued_together_get_the_same_skew_verdict() {
        let token = opaque_token();
        let resource = json!({
            "object": "machine_to_machine_token", "id": "mt_1", "subject": "mch_cron_service",
            "scopes": [], "claims": null, "revoked": false, "revocation_reason": null,
            "expired": false, "expiration": ISSUED_AT_MS + 3_600_000, "last_used_at": null,
            "created_at": ISSUED_AT_MS, "updated_at": ISSUED_AT_MS,
        });
        let server = clerk_server(&[(&token, resource)]).await;
        let issued_at = ISSUED_AT_MS / 1000;
        let jwt = TestKey::shared_rsa().token(
            "k",
            &json!({"sub": "mch_cron_service", "jti": "mt_1", "iat": issued_at, "exp": issued_at + 3600}),
        );
        for (behind_ms, accepted) in [(0, true), (3_000, true), (5_200, true), (6_500, false)] {
            let verifier = clerk_builder(&server)
                .pem_key(TestKey::shared_rsa().public_pem())
                .clock(Fixed(ISSUED_AT_MS - behind_ms))
                .build()
                .unwrap();
            let app = app(MachineAuthLayer::new(verifier));
            for presented in [&jwt, &token] {
                let reply = send_bearer(&app, "/cron/run", presented).await;
                if accepted {
                    reply.assert_ok();
                } else {
                    reply.assert_rejected(401, "token-not-active", Some(presented));
                }
            }
        }
    }
}

mod token_type {
    use super::*;

    #[tokio::test]
    async fn only_access_token_types_are_accepted() {
        let accepted = [
            "access_token",
            "Bearer",
            "bearer",
            "BEARER",
            "urn:ietf:params:oauth:token-type:access_token",
        ];
        let refused = [
            "refresh_token",
            "Refresh",
            "urn:ietf:params:oauth:token-type:refresh_token",
            "id_token",
            "DPoP",
            "",
        ];
        // Each type's token is `type-<its index>`.
        let token = |i: usize| format!("type-{i}");
        let mut tokens = vec![("no-type".to_owned(), active())];
        for (i, token_type) in accepted.iter().chain(&refused).enumerate() {
            tokens.push((token(i), with(active(), "token_type", json!(token_type))));
        }
        let tokens: Vec<(&str, Value)> = tokens
            .iter()
            .map(|(t, v)| (t.as_str(), v.clone()))
            .collect();
        let server = rfc7662_server(&tokens).await;
        let app = app(MachineAuthLayer::new(rfc7662_verifier(&server, |b| b)));
        send_bearer(&app, "/cron/run", "no-type").await.assert_ok();
        for (i, token_type) in accepted.iter().enumerate() {
            let reply = send_bearer(&app, "/cron/run", &token(i)).await;
            assert_eq!(reply.status, 200, "{token_type}: {reply:?}");
        }
        for (i, token_type) in refused.iter().enumerate() {
            let reply = send_bearer(&app, "/cron/run", &token(accepted.len() + i)).await;
            assert_eq!(reply.status, 401, "{token_type}: {reply:?}");
            reply.assert_rejected(401, "token-invalid", None);
        }
    }

    #[tokio::test]
    async fn other_types_can_be_allowed() {
        let server = rfc7662_server(&[
            (
                "custom",
                with(active(), "token_type", json!("urn:example:machine")),
            ),
            (
                "refresh",
                with(active(), "token_type", json!("refresh_token")),
            ),
            ("bearer", with(active(), "token_type", json!("Bearer"))),
        ])
        .await;
        let verifier = rfc7662_verifier(&server, |b| b.allow_token_types(["URN:example:machine"]));
        let app = app(MachineAuthLayer::new(verifier));
        send_bearer(&app, "/cron/run", "custom").await.assert_ok();
        send_bearer(&app, "/cron/run", "bearer").await.assert_ok();
        send_bearer(&app, "/cron/run", "refresh")
            .await
            .assert_rejected(401, "token-invalid", None);
    }
}

mod secret_keys {
    use super::*;

    const KEYS: [&str; 7] = [
        "ak_0123456789abcdef0123456789abcdef",
        "ak_test_machine_secret",
        "sk_test_0123456789abcdefABCDEF",
        "sk_live_0123456789abcdefABCDEF",
        "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k",
        "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k",
        "sk_live_x",
    ];

    #[tokio::test]
    async fn clerk_keys_are_refused_without_reaching_the_introspection_endpoint() {
        let mut every_key_active: Vec<(&str, Value)> =
            KEYS.iter().map(|key| (*key, active())).collect();
        every_key_active.push(("an-opaque-token", active()));
        let server = rfc7662_server(&every_key_active).await;
        let verifier = rfc7662_verifier(&server, |b| b);
        let app = app(MachineAuthLayer::new(verifier.clone()));
        for key in KEYS {
            send_bearer(&app, "/cron/run", key).await.assert_rejected(
                401,
                "token-type-mismatch",
                Some(key),
            );
            let error = verifier.verify(key).await.unwrap_err();
            assert_eq!(error.reason().as_str(), "token-type-mismatch", "{key}");
        }
        assert_eq!(
            server.hits(),
            0,
            "a key was sent to the introspection endpoint"
        );
        send_bearer(&app, "/cron/run", "an-opaque-token")
            .await
            .assert_ok();
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn with_clerk_configured_too_keys_reach_neither_endpoint() {
        let clerk = clerk_server(&[]).await;
        let rfc7662 = rfc7662_server(&KEYS.map(|key| (key, active()))).await;
        let introspector = Rfc7662Introspector::builder(rfc7662.base_url())
            .build()
            .unwrap();
        let verifier = clerk_builder(&clerk)
            .introspector(introspector)
            .build()
            .unwrap();
        let app = app(MachineAuthLayer::new(verifier));
        for key in KEYS {
            send_bearer(&app, "/cron/run", key).await.assert_rejected(
                401,
                "token-type-mismatch",
                Some(key),
            );
        }
        assert_eq!((clerk.hits(), rfc7662.hits()), (0, 0));
    }

    #[tokio::test]
    async fn tokens_that_merely_start_like_a_key_prefix_still_reach_the_endpoint() {
        let server = rfc7662_server(&[("sk_other", active()), ("pk_x", active())]).await;
        let app = app(MachineAuthLayer::new(rfc7662_verifier(&server, |b| b)));
        send_bearer(&app, "/cron/run", "sk_other").await.assert_ok();
        send_bearer(&app, "/cron/run", "pk_x").await.assert_ok();
        assert_eq!(server.hits(), 2);
    }
}
