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
        (
            truncated,
            &[
                "CLERK_JWT_KEY",
                "no `-----END PUBLIC KEY-----` line",
                "paste",
            ][..],
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            &["not to a public key", "damaged", "paste"][..],
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

/// A Clerk key given where another kind belongs is refused at build time, naming where it
/// belongs and never the key.
#[tokio::test]
async fn misplaced_clerk_keys_say_where_they_belong() {
    let env = |name: &'static str, value: &'static str| {
        move |wanted: &str| (wanted == name).then(|| value.to_owned())
    };
    for (builder, belongs) in [
        (
            MachineVerifier::builder().clerk_secret_key("ak_cron_s3cr3t"),
            "CLERK_SECRET_KEY (clerk_secret_key) holds a machine secret key (`ak_…`): it belongs \
             in CLERK_MACHINE_SECRET_KEY",
        ),
        (
            MachineVerifier::builder().env_from(env("CLERK_SECRET_KEY", "'ak_cron_s3cr3t'")),
            "it belongs in CLERK_MACHINE_SECRET_KEY",
        ),
        (
            MachineVerifier::builder().clerk_machine_secret_key("sk_test_s3cr3t"),
            "CLERK_MACHINE_SECRET_KEY (clerk_machine_secret_key) holds an instance secret key \
             (`sk_…`): it belongs in CLERK_SECRET_KEY",
        ),
        (
            MachineVerifier::builder().env_from(env("CLERK_MACHINE_SECRET_KEY", "sk_live_s3cr3t")),
            "it belongs in CLERK_SECRET_KEY",
        ),
        (
            MachineVerifier::builder().clerk_secret_key("pk_test_s3cr3t"),
            "it belongs in CLERK_PUBLISHABLE_KEY",
        ),
        (
            MachineVerifier::builder()
                .pem_key(TestKey::shared_rsa().public_pem())
                .clerk_machine_secret_key("pk_live_s3cr3t"),
            "it belongs in CLERK_PUBLISHABLE_KEY",
        ),
    ] {
        let error = builder.build().unwrap_err().to_string();
        assert!(error.contains(belongs), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }
    // Keys of other issuers (no Clerk prefix) are taken as they are.
    assert!(
        MachineVerifier::builder()
            .clerk_machine_secret_key("local-machine-key")
            .build()
            .is_ok()
    );
}

#[test]
fn machine_a_refuses_the_instance_key_as_its_machine_key() {
    use tower_machine_auth::client::MachineTokenSource;
    for key in ["sk_test_s3cr3t", "\"sk_live_s3cr3t\""] {
        let error = MachineTokenSource::builder()
            .env_from(|name| (name == "CLERK_MACHINE_SECRET_KEY").then(|| key.to_owned()))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("CLERK_MACHINE_SECRET_KEY (machine_secret_key) holds an instance")
                && error.contains("it belongs in CLERK_SECRET_KEY"),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");
    }
}

/// Keys pasted from an environment file with their quotes reach Clerk without them.
#[tokio::test]
async fn quoted_secret_keys_are_sent_without_their_quotes() {
    let key = TestKey::shared_rsa();
    let jwks = JwksServer::start(key_set(&[key.jwk("k", Some("RS256"))])).await;
    for quoted in [
        "\"sk_test_quoted\"",
        "'sk_test_quoted'",
        " \"sk_test_quoted\"\n",
    ] {
        let verifier = MachineVerifier::builder()
            .env_from(|name| match name {
                "CLERK_SECRET_KEY" => Some(quoted.to_owned()),
                "CLERK_API_URL" => Some(format!("\"http://{}\"", jwks.addr)),
                _ => None,
            })
            .build()
            .unwrap();
        accepts(verifier, key).await;
        assert_eq!(
            jwks.last_headers()["authorization"],
            "Bearer sk_test_quoted"
        );
        assert_eq!(jwks.last_path().as_deref(), Some("/v1/jwks"));
    }

    let token = opaque_token();
    let server = IntrospectionServer::start(Introspection::Clerk(
        [(token.clone(), clerk_resource("mt_1", "mch_cron_service"))].into(),
    ))
    .await;
    let verifier = MachineVerifier::builder()
        .clerk_machine_secret_key("'ak_quoted'")
        .clerk_api_url(server.base_url())
        .build()
        .unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.last().headers["authorization"], "Bearer ak_quoted");
}

#[tokio::test]
async fn quoted_pem_keys_load() {
    let key = TestKey::shared_rsa();
    let pem = key.public_pem();
    for text in [
        format!("\"{pem}\""),
        format!("'{}'", pem.trim_end().replace('\n', "\\n")),
        format!("\"{}\"", pem_body(&pem)),
    ] {
        accepts(
            build_pem(&text).unwrap_or_else(|e| panic!("{e}: {text:?}")),
            key,
        )
        .await;
    }
}

/// A damaged PEM says what is wrong with it and what to do, quoting none of it.
#[test]
fn damaged_pems_say_what_is_wrong() {
    let pem = TestKey::shared_rsa().public_pem();
    let body = pem_body(&pem);
    let without_end = pem
        .lines()
        .filter(|line| !line.starts_with("-----END"))
        .collect::<Vec<_>>()
        .join("\n");
    let bad_character = pem.replacen('M', "*", 1);
    let cut_short = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        &body[..body.len() / 2 / 4 * 4]
    );
    let p521 = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    )
    .unwrap();
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let p521_pem = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        p521.public_key().as_der().unwrap().as_ref().to_vec(),
    ));
    for (text, words) in [
        (
            without_end.as_str(),
            &[
                "CLERK_JWT_KEY: the PEM has a BEGIN line but no `-----END PUBLIC KEY-----` line",
                "paste the whole key again",
            ][..],
        ),
        (
            bad_character.as_str(),
            &["CLERK_JWT_KEY: the key's base64", "is damaged", "paste"][..],
        ),
        (
            cut_short.as_str(),
            &[
                "CLERK_JWT_KEY: the key's base64 decodes, but not to a public key",
                "cut short",
            ][..],
        ),
        (
            &body[..body.len() - 3],
            &["CLERK_JWT_KEY: the key's base64 is damaged or cut short"][..],
        ),
        (
            p521_pem.as_str(),
            &["an EC P-521 key", "RSA (2048 to 4096 bits), EC P-256"][..],
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END RSA PUBLIC KEY-----\n",
            &["BEGIN and END lines name different blocks"][..],
        ),
    ] {
        assert_error_mentions(build_pem(text), words);
        let error = build_pem(text).unwrap_err().to_string();
        let key_lines = text
            .lines()
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"));
        for line in key_lines {
            assert!(!error.contains(line), "the error quotes `{line}`: {error}");
        }
    }
}

/// `CLERK_API_URL` errors quote what was typed, and a missing scheme is named with what to
/// write.
#[tokio::test]
async fn api_url_errors_quote_what_was_typed() {
    let with_api_url = |url: &'static str| {
        MachineVerifier::builder()
            .env_from(move |name| match name {
                "CLERK_SECRET_KEY" => Some("sk_test_s3cr3t".to_owned()),
                "CLERK_API_URL" => Some(url.to_owned()),
                _ => None,
            })
            .build()
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        with_api_url("localhost:8787"),
        "CLERK_API_URL `localhost:8787` has no scheme: write `http://localhost:8787` (plain http \
         is allowed only for loopback) or `https://localhost:8787`"
    );
    let error = with_api_url("127.0.0.1:8787");
    assert!(
        error.starts_with(
            "CLERK_API_URL `127.0.0.1:8787` has no scheme: write `http://127.0.0.1:8787`"
        ),
        "{error}"
    );
    let error = with_api_url("http://issuer:8787/");
    assert!(
        error.starts_with("CLERK_API_URL `http://issuer:8787/` uses plain http")
            && error.contains("loopback addresses: 127.0.0.0/8, ::1, localhost")
            && error.contains("MACHINE_AUTH_ALLOW_HTTP_HOST"),
        "{error}"
    );
    for error in [
        with_api_url("localhost:8787"),
        with_api_url("http://issuer:8787/"),
    ] {
        assert!(
            !error.contains("jwks") && !error.contains("s3cr3t"),
            "{error}"
        );
    }
    // The same for machine A.
    let error = tower_machine_auth::client::MachineTokenSource::builder()
        .machine_secret_key("ak_x")
        .api_url("localhost:8787")
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("`localhost:8787` has no scheme"), "{error}");
}

/// Plain http to one more host (a dev issuer in another container) only when named, with a
/// warning at build; every other host still needs https.
#[tokio::test(flavor = "current_thread")]
async fn plain_http_to_a_named_host_only_when_allowed() {
    let env = |host: Option<&'static str>| {
        move |name: &str| match name {
            "CLERK_SECRET_KEY" => Some("sk_test_1".to_owned()),
            "CLERK_API_URL" => Some("http://issuer:8787".to_owned()),
            "MACHINE_AUTH_ALLOW_HTTP_HOST" => host.map(str::to_owned),
            _ => None,
        }
    };
    assert_error_mentions(
        MachineVerifier::builder().env_from(env(None)).build(),
        &["`http://issuer:8787`", "MACHINE_AUTH_ALLOW_HTTP_HOST"],
    );
    let logs = CapturedLogs::start();
    MachineVerifier::builder()
        .env_from(env(Some("issuer")))
        .build()
        .unwrap();
    let text = logs.text();
    assert_eq!(
        text.matches("plain http is allowed to `issuer`").count(),
        1,
        "{text}"
    );
    assert!(text.contains("WARN"), "{text}");
    drop(logs);
    assert!(
        MachineVerifier::builder()
            .env_from(env(Some("issuer")))
            .allow_http_host("other")
            .build()
            .is_err()
    );
    assert_error_mentions(
        MachineVerifier::builder()
            .env_from(env(Some("http://issuer:8787")))
            .build(),
        &["MACHINE_AUTH_ALLOW_HTTP_HOST", "is not a host name"],
    );
    // Machine A reads the same variable.
    use tower_machine_auth::client::MachineTokenSource;
    let source = |host: Option<&'static str>| {
        MachineTokenSource::builder()
            .env_from(move |name| match name {
                "CLERK_MACHINE_SECRET_KEY" => Some("ak_x".to_owned()),
                "CLERK_API_URL" => Some("http://issuer:8787".to_owned()),
                "MACHINE_AUTH_ALLOW_HTTP_HOST" => host.map(str::to_owned),
                _ => None,
            })
            .build()
    };
    assert!(source(None).is_err());
    assert!(source(Some("issuer")).is_ok());
}
