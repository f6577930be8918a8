//! Misconfiguration fails when the verifier is built, with a message that says what to set; every
//! accepted form of key loads.

use std::time::Duration;

use crate::common::*;
use tower_machine_auth::{Algorithm, ConfigError, MachineVerifier};

fn build_pem(pem: &str) -> Result<MachineVerifier, ConfigError> {
    MachineVerifier::from_pem(pem)
}

fn assert_error_mentions(result: Result<MachineVerifier, ConfigError>, words: &[&str]) {
    let error = result
        .expect_err("the configuration was accepted")
        .to_string();
    for word in words {
        assert!(error.contains(word), "`{error}` does not mention `{word}`");
    }
}

async fn accepts(verifier: MachineVerifier, key: &TestKey) {
    let machine = verifier.verify(&key.token("k", &claims())).await.unwrap();
    assert_eq!(machine.machine_id().as_str(), "mch_cron_service");
}

#[test]
fn no_key_source_says_what_to_set() {
    assert_error_mentions(
        MachineVerifier::builder().build(),
        &["CLERK_JWT_KEY", "CLERK_SECRET_KEY", "CLERK_JWKS_URL"],
    );
    assert_error_mentions(
        MachineVerifier::builder()
            .env_from(|_| Some("   ".to_owned()))
            .build(),
        &["no key source"],
    );
}

#[tokio::test]
async fn pem_keys_load_in_every_form_clerk_shows_them() {
    let key = TestKey::shared_rsa();
    let pem = key.public_pem();
    let body = pem_body(&pem);
    for text in [
        pem.clone(),
        format!("\n   {pem}\n"),
        pem.replace('\n', "\r\n"),
        pem.replace('\n', "\\n"),
        body.clone(),
        body.chars()
            .collect::<Vec<_>>()
            .chunks(64)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("\n"),
    ] {
        accepts(
            build_pem(&text).unwrap_or_else(|e| panic!("{e}: {text:?}")),
            key,
        )
        .await;
    }
    accepts(
        build_pem(include_str!("../data/rsa_public.pem"))
            .map(|_| pem_verifier())
            .unwrap(),
        key,
    )
    .await;
}

#[tokio::test]
async fn ec_and_ed25519_pem_keys_need_their_algorithm_allowed() {
    for (key, algorithm) in [
        (TestKey::p256(), Algorithm::ES256),
        (TestKey::ed25519(), Algorithm::EdDSA),
    ] {
        let pem = key.public_pem();
        assert_error_mentions(
            build_pem(&pem),
            &["none of the allowed algorithms", &format!("{algorithm:?}")],
        );
        let verifier = MachineVerifier::builder()
            .pem_key(&pem)
            .algorithms([algorithm])
            .build()
            .unwrap();
        accepts(verifier, &key).await;
    }
}

#[test]
fn private_keys_are_refused_where_the_public_key_belongs() {
    for key in [TestKey::rsa(), TestKey::p256(), TestKey::ed25519()] {
        let private = key.private_pem();
        assert_error_mentions(build_pem(&private), &["private key"]);
        assert_error_mentions(build_pem(&pem_body(&private)), &["private key"]);
    }
    assert_error_mentions(
        build_pem(include_str!("../data/rsa_private.pem")),
        &["private key"],
    );
}

#[test]
fn unreadable_or_unsuitable_pems_are_refused() {
    let pem = TestKey::shared_rsa().public_pem();
    let truncated = &pem[..pem.len() / 2];
    for (text, words) in [
        ("", &["empty"][..]),
        ("hello world", &["neither PEM nor base64"][..]),
        (truncated, &["cannot be read"][..]),
        (
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            &["not an RSA"][..],
        ),
        (
            include_str!("../data/certificate.pem"),
            &["CERTIFICATE", "PUBLIC KEY"][..],
        ),
        (
            include_str!("../data/rsa_1024_public.pem"),
            &["1024-bit", "2048 to 4096"][..],
        ),
    ] {
        assert_error_mentions(build_pem(text), words);
    }
    let TestKey::Rsa(pair) = TestKey::shared_rsa() else {
        unreachable!()
    };
    use aws_lc_rs::signature::KeyPair;
    let pkcs1 = pem::encode(&pem::Pem::new(
        "RSA PUBLIC KEY",
        pair.public_key().as_ref().to_vec(),
    ));
    assert_error_mentions(build_pem(&pkcs1), &["PKCS#1", "SPKI"]);
}

#[test]
fn symmetric_algorithms_cannot_be_named_and_empty_allowlists_are_refused() {
    let pem = TestKey::shared_rsa().public_pem();
    for name in ["HS256", "HS384", "HS512"] {
        let error = name.parse::<Algorithm>().unwrap_err();
        assert!(error.to_string().contains("symmetric"), "{error}");
    }
    let result = MachineVerifier::builder()
        .pem_key(&pem)
        .algorithms([])
        .build();
    assert_error_mentions(result, &["allowlist is empty"]);
}

#[test]
fn clock_skew_is_capped_at_300_seconds() {
    let pem = TestKey::shared_rsa().public_pem();
    let too_much = MachineVerifier::builder()
        .pem_key(&pem)
        .clock_skew(Duration::from_secs(301))
        .build();
    assert_error_mentions(too_much, &["clock skew", "300"]);
    assert!(
        MachineVerifier::builder()
            .pem_key(&pem)
            .clock_skew(Duration::from_secs(300))
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn plain_http_jwks_urls_are_refused_unless_loopback() {
    for url in [
        "http://clerk.example.com/.well-known/jwks.json",
        "http://10.1.2.3/jwks",
    ] {
        assert_error_mentions(MachineVerifier::from_jwks_url(url), &["https", url]);
    }
    assert_error_mentions(
        MachineVerifier::from_jwks_url("ftp://127.0.0.1/jwks"),
        &["https"],
    );
    assert_error_mentions(
        MachineVerifier::builder()
            .clerk_secret_key("sk_test")
            .clerk_api_url("http://api.clerk.com")
            .build(),
        &["CLERK_API_URL", "https"],
    );
    assert!(MachineVerifier::from_jwks_url("http://127.0.0.1:9/jwks").is_ok());
    assert!(MachineVerifier::from_jwks_url("http://localhost:9/jwks").is_ok());
}

#[test]
fn a_jwks_source_needs_a_tokio_runtime() {
    assert_error_mentions(
        MachineVerifier::from_jwks_url("http://127.0.0.1:9/jwks"),
        &["Tokio runtime"],
    );
}

#[tokio::test]
async fn jwks_timing_settings_are_range_checked() {
    let base = || MachineVerifier::builder().jwks_url("http://127.0.0.1:9/jwks");
    assert_error_mentions(base().jwks_cooldown(Duration::ZERO).build(), &["cooldown"]);
    assert_error_mentions(
        base()
            .jwks_refresh_interval(Duration::from_secs(7200))
            .build(),
        &["refresh interval"],
    );
    assert_error_mentions(
        base().jwks_max_stale(Duration::from_secs(10)).build(),
        &["stale window"],
    );
    assert_error_mentions(
        base()
            .http_timeouts(Duration::from_secs(10), Duration::from_secs(5))
            .build(),
        &["connect timeout"],
    );
}

#[tokio::test]
async fn clerk_jwt_key_wins_over_the_secret_key_like_clerks_sdk() {
    let key = TestKey::shared_rsa();
    let pem = key.public_pem();
    // A closed loopback port: a JWKS fetch there would fail, and the token would get 503.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let verifier = MachineVerifier::builder()
        .env_from(|name| match name {
            "CLERK_JWT_KEY" => Some(pem.clone()),
            "CLERK_SECRET_KEY" => Some("sk_test_for_opaque_tokens".to_owned()),
            "CLERK_API_URL" => Some(format!("http://{closed}")),
            _ => None,
        })
        .build()
        .unwrap();
    accepts(verifier.clone(), key).await;
    assert_eq!(verifier.stats().jwks_fetches, 0);
}

#[tokio::test]
async fn debug_output_never_shows_the_secret_key() {
    let builder = MachineVerifier::builder()
        .clerk_secret_key("sk_live_very_secret")
        .clerk_api_url("http://127.0.0.1:9");
    assert!(!format!("{builder:?}").contains("very_secret"));
    let verifier = builder.build().unwrap();
    assert!(
        !format!("{verifier:?}").contains("very_secret"),
        "{verifier:?}"
    );
}

#[tokio::test]
async fn rsa_4096_keys_load_and_verify() {
    let key = TestKey::rsa_bits(aws_lc_rs::rsa::KeySize::Rsa4096);
    accepts(build_pem(&key.public_pem()).unwrap(), &key).await;
}

#[tokio::test]
async fn builder_debug_output_hides_url_credentials() {
    let verifier = MachineVerifier::builder()
        .jwks_url("https://user:s3cr3t@clerk.example.com/.well-known/jwks.json")
        .clerk_api_url("https://user:s3cr3t@api.clerk.example");
    let introspector = tower_machine_auth::introspect::Rfc7662Introspector::builder(
        "https://user:s3cr3t@auth.example.com/introspect",
    );
    for text in [
        format!("{verifier:?}"),
        format!("{verifier:#?}"),
        format!("{introspector:?}"),
        format!("{introspector:#?}"),
    ] {
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("example"), "the URL is still shown: {text}");
    }
}

/// Inputs the fuzzer found (fuzz/regressions/pem/): a PEM text the PEM reader cannot read once
/// gave an error that quoted its lines, key material of a private key among them.
#[test]
fn unreadable_pem_errors_never_quote_key_material() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/pem");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text =
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned();
        seen += 1;
        let Err(error) = build_pem(&text) else {
            continue;
        };
        let message = error.to_string();
        for line in text.lines().map(str::trim).filter(|line| line.len() >= 16) {
            if line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            {
                assert!(
                    !message.contains(line),
                    "the error quotes `{line}`: {message}"
                );
            }
        }
    }
    assert!(
        seen >= 2,
        "the regression inputs are missing from {}",
        dir.display()
    );
}
