//! A configured URL's credentials (`user:s3cr3t@`) never appear in an error, a log line or a
//! `Debug` output, whichever way the verifier, the introspectors, the token source or sending
//! fails: refused at build (plain http elsewhere than loopback, another scheme, not a URL),
//! unreachable, or answered with a bad status. Also: opting in to plain http to any host warns
//! once, when the source is built. Logs are captured per thread (`CapturedLogs`).

use crate::common::*;
use machine_auth_issuer::{Issuer, IssuerConfig};
use tower_machine_auth::MachineVerifier;
use tower_machine_auth::client::{MachineTokenSource, SendError};
use tower_machine_auth::introspect::{ClerkIntrospector, Rfc7662Introspector};

const SECRET: &str = "s3cr3t";
const CRON_KEY: &str = "ak_demo_cron_service_do_not_use_in_production";

/// `http://user:s3cr3t@127.0.0.1:<port>` for a loopback address.
fn with_credentials(addr: std::net::SocketAddr) -> String {
    format!("http://user:{SECRET}@{addr}")
}

#[tokio::test]
async fn url_credentials_never_appear_in_errors_or_logs() {
    let logs = CapturedLogs::start();
    let mut shown = Vec::new();

    // Refused when built.
    for url in [
        "http://user:s3cr3t@example.com",
        "http://user:s3cr3t@example.com/jwks?k=v",
        "ftp://user:s3cr3t@127.0.0.1/jwks",
        "http://user:s3cr3t@exa mple.com/jwks",
        "http://user:s3cr3t@[::1/jwks",
        "user:s3cr3t@example.com",
    ] {
        let errors = [
            MachineVerifier::builder()
                .jwks_url(url)
                .build()
                .unwrap_err(),
            MachineVerifier::builder()
                .clerk_secret_key("sk_test_x")
                .clerk_api_url(url)
                .build()
                .unwrap_err(),
            MachineVerifier::builder()
                .clerk_machine_secret_key("ak_x")
                .clerk_api_url(url)
                .build()
                .unwrap_err(),
            ClerkIntrospector::new(url, "ak_x").unwrap_err(),
            Rfc7662Introspector::builder(url).build().unwrap_err(),
            MachineTokenSource::builder()
                .machine_secret_key("ak_x")
                .api_url(url)
                .build()
                .unwrap_err(),
        ];
        for error in errors {
            shown.push(error.to_string());
            shown.push(format!("{error:?}"));
        }
    }
    let refusal = MachineVerifier::builder()
        .jwks_url("http://user:s3cr3t@example.com/jwks")
        .build()
        .unwrap_err()
        .to_string();
    assert!(refusal.contains("`http://example.com/jwks`"), "{refusal}");

    // Unreachable (a loopback port nobody listens on), answering 500, answering 401.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let failing = JwksServer::start(JwksReply::Status(500)).await;
    let refusing = JwksServer::start(JwksReply::Status(401)).await;
    let jwt = TestKey::shared_rsa().token("k1", &claims());
    for base in [closed, failing.addr, refusing.addr].map(with_credentials) {
        let jwks = MachineVerifier::from_jwks_url(&format!("{base}/jwks")).unwrap();
        let backend_api = MachineVerifier::builder()
            .clerk_secret_key("sk_test_x")
            .clerk_api_url(&base)
            .build()
            .unwrap();
        let clerk_introspection = MachineVerifier::builder()
            .clerk_machine_secret_key("ak_x")
            .clerk_api_url(&base)
            .build()
            .unwrap();
        let rfc7662 = Rfc7662Introspector::builder(format!("{base}/introspect"))
            .bearer_credential("resource-server")
            .build()
            .unwrap();
        shown.push(format!("{rfc7662:?}"));
        let rfc7662 = MachineVerifier::builder()
            .introspector(rfc7662)
            .build()
            .unwrap();
        for (verifier, token) in [
            (&jwks, jwt.clone()),
            (&backend_api, jwt.clone()),
            (&clerk_introspection, opaque_token()),
            (&rfc7662, opaque_token()),
        ] {
            let error = verifier.verify(&token).await.unwrap_err();
            shown.push(error.to_string());
            shown.push(format!("{error:?}"));
            shown.push(format!("{verifier:?}"));
        }
        let source = MachineTokenSource::builder()
            .machine_secret_key("ak_x")
            .api_url(&base)
            .build()
            .unwrap();
        let error = source.token().await.unwrap_err();
        shown.push(error.to_string());
        shown.push(format!("{error:?} {source:?}"));
    }

    // Sending to machine B: refused over plain http elsewhere than loopback, or unreachable.
    let issuer = Issuer::builder(IssuerConfig::demo()).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, issuer.router()).await.unwrap() });
    let source = MachineTokenSource::builder()
        .api_url(&issuer_url)
        .machine_secret_key(CRON_KEY)
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    for url in [
        "http://user:s3cr3t@reports.internal/cron/run".to_owned(),
        format!("{}/cron/run", with_credentials(closed)),
    ] {
        let error = source.send(http.post(&url)).await.unwrap_err();
        assert!(
            matches!(
                error,
                SendError::InsecureDestination(_) | SendError::Http(_)
            ),
            "{error:?}"
        );
        shown.push(error.to_string());
        shown.push(format!("{error:?}"));
    }

    // Opting in to plain http anywhere: one warning per source, when it is built, not per request.
    let insecure = MachineTokenSource::builder()
        .api_url(&issuer_url)
        .machine_secret_key(CRON_KEY)
        .allow_insecure_http_to_any_host()
        .build()
        .unwrap();
    MachineTokenSource::builder()
        .api_url("http://user:s3cr3t@issuer.internal:8787")
        .machine_secret_key(CRON_KEY)
        .allow_insecure_http_to_any_host()
        .build()
        .unwrap();
    for _ in 0..3 {
        let url = format!("{}/cron/run", with_credentials(closed));
        let error = insecure.send(http.post(&url)).await.unwrap_err();
        shown.push(error.to_string());
    }
    let warnings = logs
        .text()
        .matches("WARN tower_machine_auth::client::source: allow_insecure_http_to_any_host")
        .count();
    assert_eq!(warnings, 2, "{}", logs.text());

    for text in &shown {
        assert!(!text.contains(SECRET), "credentials shown: {text}");
    }
    let logged = logs.text();
    for expected in [
        "JWKS fetch failed",
        "Clerk refused CLERK_SECRET_KEY",
        "token introspection failed",
        "the token introspection endpoint refused",
        "no valid machine token",
    ] {
        assert!(
            logged.contains(expected),
            "not logged: {expected}\n{logged}"
        );
    }
    assert!(
        !logged.contains(SECRET),
        "credentials in the logs:\n{logged}"
    );
}
