//! Every key source of Clerk's manual verification guide, from the environment: the PEM key under
//! both of its names, the Backend API JWKS, and the Frontend API JWKS behind a publishable key,
//! served here by a real loopback server.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tower_machine_auth::{MachineAuthLayer, MachineVerifier, MachineVerifierBuilder};

/// The publishable key of a Frontend API at `host`: `pk_test_` and the base64 of `host$`.
fn publishable_key(host: &str) -> String {
    format!("pk_test_{}", STANDARD.encode(format!("{host}$")))
}

/// A builder reading only `vars`.
fn from_vars(vars: &[(&'static str, String)]) -> MachineVerifierBuilder {
    let vars = vars.to_vec();
    MachineVerifier::builder().env_from(move |name| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| value.clone())
    })
}

#[tokio::test]
async fn a_publishable_key_alone_verifies_jwts_with_the_frontend_api_jwks() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("ins_fapi", Some("RS256"))])).await;
    let pk = publishable_key(&server.addr.to_string());
    let verifier = from_vars(&[("CLERK_PUBLISHABLE_KEY", pk)]).build().unwrap();
    let machine = verifier
        .verify(&key.token("ins_fapi", &claims()))
        .await
        .unwrap();
    assert_eq!(machine.machine_id().as_str(), "mch_cron_service");
    assert_eq!(
        server.last_path().as_deref(),
        Some("/.well-known/jwks.json")
    );
    let headers = server.last_headers();
    assert!(
        headers.get("authorization").is_none(),
        "a credential was sent"
    );
    assert!(headers.get("clerk-api-version").is_none());
}

#[tokio::test]
async fn with_only_a_publishable_key_opaque_tokens_are_a_type_mismatch() {
    let key = TestKey::shared_rsa();
    let server = JwksServer::start(key_set(&[key.jwk("ins_fapi", Some("RS256"))])).await;
    let verifier = MachineVerifier::builder()
        .clerk_publishable_key(publishable_key(&server.addr.to_string()))
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    send_bearer(&app, "/cron/run", &opaque_token())
        .await
        .assert_rejected(401, "token-type-mismatch", None);
    send_bearer(&app, "/cron/run", &key.token("ins_fapi", &claims()))
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_malformed_publishable_key_is_a_configuration_error() {
    for bad in [
        "pk_test_".to_owned(),
        "sk_test_123".to_owned(),
        "pk_test_Zm9v!YmFy".to_owned(),
        format!("pk_live_{}", STANDARD.encode("clerk.example.com")),
        publishable_key("evil.example/x?"),
    ] {
        let error = from_vars(&[("CLERK_PUBLISHABLE_KEY", bad.clone())])
            .build()
            .unwrap_err()
            .to_string();
        assert!(error.contains("CLERK_PUBLISHABLE_KEY"), "{bad}: {error}");
        let encoded = bad.get(8..).unwrap_or_default();
        assert!(
            encoded.is_empty() || !error.contains(encoded),
            "{bad}: the key was echoed: {error}"
        );
    }
    // Plain http only to a loopback Frontend API.
    let verifier = MachineVerifier::builder()
        .clerk_publishable_key(publishable_key("clerk.example.com"))
        .build();
    assert!(verifier.is_ok());
}

#[tokio::test]
async fn the_pem_key_is_read_under_both_of_its_names() {
    let key = TestKey::shared_rsa();
    let pem = key.public_pem();
    for vars in [
        vec![("CLERK_PEM_PUBLIC_KEY", pem.clone())],
        vec![("CLERK_JWT_KEY", pem.clone())],
        // The same key twice, once without its armour lines: no conflict.
        vec![
            ("CLERK_JWT_KEY", pem.clone()),
            ("CLERK_PEM_PUBLIC_KEY", pem_body(&pem)),
        ],
    ] {
        let verifier = from_vars(&vars).build().unwrap();
        verifier.verify(&key.token("k", &claims())).await.unwrap();
        assert_eq!(verifier.stats().jwks_fetches, 0, "networkless");
    }
    let other = TestKey::rsa().public_pem();
    let error = from_vars(&[("CLERK_JWT_KEY", pem), ("CLERK_PEM_PUBLIC_KEY", other)])
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("CLERK_JWT_KEY") && error.contains("CLERK_PEM_PUBLIC_KEY"),
        "{error}"
    );
}

#[tokio::test]
async fn which_source_wins_when_several_are_set() {
    let key = TestKey::shared_rsa();
    let fapi = JwksServer::start(key_set(&[key.jwk("ins_fapi", Some("RS256"))])).await;
    let bapi = JwksServer::start(key_set(&[key.jwk("ins_bapi", Some("RS256"))])).await;
    let jwks = JwksServer::start(key_set(&[key.jwk("ins_jwks", Some("RS256"))])).await;
    let pk = publishable_key(&fapi.addr.to_string());
    let api_url = format!("http://{}", bapi.addr);

    let all = [
        ("CLERK_PEM_PUBLIC_KEY", key.public_pem()),
        ("CLERK_JWKS_URL", jwks.url()),
        ("CLERK_SECRET_KEY", "sk_test_x".to_owned()),
        ("CLERK_API_URL", api_url.clone()),
        ("CLERK_PUBLISHABLE_KEY", pk.clone()),
    ];
    // A PEM key and a JWKS URL name two key sets: refused, whatever else is set.
    let error = from_vars(&all).build().unwrap_err().to_string();
    assert!(
        error.contains("CLERK_JWT_KEY") && error.contains("CLERK_JWKS_URL"),
        "{error}"
    );
    // PEM over the rest: no server is asked.
    let without_jwks_url: Vec<_> = all
        .iter()
        .filter(|(name, _)| *name != "CLERK_JWKS_URL")
        .cloned()
        .collect();
    let verifier = from_vars(&without_jwks_url).build().unwrap();
    verifier
        .verify(&key.token("ins_any", &claims()))
        .await
        .unwrap();
    assert_eq!(verifier.stats().jwks_fetches, 0, "networkless");
    // Then CLERK_JWKS_URL, then the secret key (Backend API), then the publishable key.
    for (skip, server, kid) in [
        (1, &jwks, "ins_jwks"),
        (2, &bapi, "ins_bapi"),
        (4, &fapi, "ins_fapi"),
    ] {
        let verifier = from_vars(&all[skip..]).build().unwrap();
        let before = server.hits();
        verifier.verify(&key.token(kid, &claims())).await.unwrap();
        assert!(server.hits() > before, "{kid}: its server was not asked");
    }
    assert_eq!(bapi.last_path().as_deref(), Some("/v1/jwks"));
    assert_eq!(fapi.hits(), 1);
}
