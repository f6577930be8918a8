//! The JWT threats of `research/security.md` §2, one named test each, through the real layer.

use crate::common::*;
use aws_lc_rs::signature::KeyPair;
use serde_json::{Value, json};
use tower_machine_auth::{Algorithm, MachineAuthLayer, MachineVerifier};

fn key() -> &'static TestKey {
    TestKey::shared_rsa()
}

fn default_app() -> axum::Router {
    app(MachineAuthLayer::new(pem_verifier()))
}

fn header() -> Value {
    json!({"alg":"RS256","kid":"ins_test","typ":"JWT","cat":M2M_CATEGORY})
}

fn signed(header: &Value, claims: &Value) -> String {
    key().sign_raw("RS256", &header.to_string(), &claims.to_string())
}

async fn assert_rejected(app: &axum::Router, token: &str, status: u16, reason: &str) {
    send_bearer(app, "/cron/run", token)
        .await
        .assert_rejected(status, reason, Some(token));
}

/// HMAC-SHA256 of `message` under `secret`.
fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
}

fn hs256_token(secret: &[u8], claims: &Value) -> String {
    let header = json!({"alg":"HS256","typ":"JWT"});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = hmac_sha256(secret, input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

#[tokio::test]
async fn alg_none_in_any_case_is_rejected() {
    for alg in ["none", "None", "nOnE", "NONE"] {
        let header = json!({"alg": alg, "typ":"JWT"});
        let unsigned = format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        // An empty signature is not JWT-shaped; the same with a junk signature reaches the alg check.
        assert_rejected(&default_app(), &unsigned, 401, "token-type-mismatch").await;
        assert_rejected(
            &default_app(),
            &format!("{unsigned}AAAA"),
            401,
            "token-invalid",
        )
        .await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_in_any_encoding_is_rejected() {
    let pem = key().public_pem();
    let spki_der = key().public_der();
    let TestKey::Rsa(pair) = key() else {
        unreachable!()
    };
    let pkcs1_der = pair.public_key().as_ref().to_vec();
    let pkcs1_pem = pem::encode(&pem::Pem::new("RSA PUBLIC KEY", pkcs1_der.clone()));
    let jwk_n = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key()).n;
    let secrets: Vec<Vec<u8>> = vec![
        pem.clone().into_bytes(),
        format!("  \n{pem}").into_bytes(),
        pkcs1_pem.into_bytes(),
        spki_der,
        pkcs1_der,
        jwk_n.clone(),
        b64(&jwk_n).into_bytes(),
    ];
    // Also with HS256 nowhere allowed and with every asymmetric algorithm allowed.
    let lenient = MachineVerifier::builder()
        .pem_key(&pem)
        .algorithms([Algorithm::RS256, Algorithm::RS384, Algorithm::PS256])
        .build()
        .unwrap();
    for secret in secrets {
        let token = hs256_token(&secret, &claims());
        assert_rejected(&default_app(), &token, 401, "token-invalid").await;
        assert_rejected(
            &app(MachineAuthLayer::new(lenient.clone())),
            &token,
            401,
            "token-invalid",
        )
        .await;
    }
}

#[tokio::test]
async fn hs256_can_never_be_allowed_with_public_keys() {
    // No `Algorithm` names a symmetric algorithm, so no allowlist can hold one.
    assert!(Algorithm::ALL.iter().all(|a| !a.as_str().starts_with("HS")));
    let error = "HS256".parse::<Algorithm>().unwrap_err();
    assert!(error.to_string().contains("symmetric"), "{error}");
}

#[tokio::test]
async fn alg_outside_the_allowlist_is_rejected_even_if_correctly_signed() {
    for alg in ["RS384", "RS512", "PS256"] {
        let header = json!({"alg": alg, "typ":"JWT"});
        let token = key().sign_raw(alg, &header.to_string(), &claims().to_string());
        assert_rejected(&default_app(), &token, 401, "token-invalid").await;
    }
}

#[tokio::test]
async fn alg_different_from_the_jwk_alg_is_rejected() {
    let server = JwksServer::start(key_set(&[key().jwk("k1", Some("RS256"))])).await;
    let verifier = MachineVerifier::builder()
        .jwks_url(server.url())
        .algorithms([Algorithm::RS256, Algorithm::PS256])
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    let ps256 = key().sign_raw(
        "PS256",
        &json!({"alg":"PS256","kid":"k1"}).to_string(),
        &claims().to_string(),
    );
    assert_rejected(&app, &ps256, 401, "token-invalid").await;
    let rs256 = key().token("k1", &claims());
    send_bearer(&app, "/cron/run", &rs256).await.assert_ok();
}

#[tokio::test]
async fn kid_missing_with_a_jwks_is_rejected_and_ignored_with_a_pem() {
    let server = JwksServer::start(key_set(&[key().jwk("k1", None)])).await;
    let jwks_app = app(MachineAuthLayer::new(
        MachineVerifier::from_jwks_url(&server.url()).unwrap(),
    ));
    let no_kid = signed(&json!({"alg":"RS256","typ":"JWT"}), &claims());
    assert_rejected(&jwks_app, &no_kid, 401, "token-invalid").await;
    send_bearer(&default_app(), "/cron/run", &no_kid)
        .await
        .assert_ok();
    send_bearer(
        &default_app(),
        "/cron/run",
        &key().token("anything", &claims()),
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn hostile_kids_are_only_map_keys() {
    let server = JwksServer::start(key_set(&[key().jwk("k1", None)])).await;
    let app = app(MachineAuthLayer::new(
        MachineVerifier::from_jwks_url(&server.url()).unwrap(),
    ));
    for kid in [
        json!("../../../../etc/passwd"),
        json!("' OR 1=1 --"),
        json!("k1\r\nX-Injected: 1"),
        json!("k1\u{0}"),
        json!("k".repeat(300)),
        json!(5),
        json!(null),
    ] {
        let token = signed(&json!({"alg":"RS256","kid": kid}), &claims());
        assert_rejected(&app, &token, 401, "token-invalid").await;
    }
    assert!(
        server.hits() <= 2,
        "hostile kids caused {} fetches",
        server.hits()
    );
}

#[tokio::test]
async fn attacker_supplied_jwk_jku_x5u_are_never_used_or_fetched() {
    let attacker_server = JwksServer::start(key_set(&[])).await;
    let attacker = TestKey::rsa();
    let header = json!({
        "alg":"RS256","kid":"ins_test",
        "jwk": attacker.jwk("ins_test", Some("RS256")),
        "jku": attacker_server.url(),
        "x5u": attacker_server.url(),
    });
    let token = attacker.sign_raw("RS256", &header.to_string(), &claims().to_string());
    assert_rejected(&default_app(), &token, 401, "token-invalid").await;
    // A token signed by the trusted key that merely carries `jku` is accepted; the header is ignored.
    let benign = signed(
        &json!({"alg":"RS256","jku": attacker_server.url()}),
        &claims(),
    );
    send_bearer(&default_app(), "/cron/run", &benign)
        .await
        .assert_ok();
    assert_eq!(attacker_server.hits(), 0);
}

#[tokio::test]
async fn crit_in_any_form_is_rejected() {
    for crit in [
        json!([]),
        json!(["exp"]),
        json!(["b64"]),
        json!("x"),
        json!(null),
    ] {
        let token = signed(&with(header(), "crit", crit), &claims());
        assert_rejected(&default_app(), &token, 401, "token-invalid").await;
    }
    let unencoded = signed(
        &with(with(header(), "b64", json!(false)), "crit", json!(["b64"])),
        &claims(),
    );
    assert_rejected(&default_app(), &unencoded, 401, "token-invalid").await;
}

#[tokio::test]
async fn foreign_typ_values_are_rejected() {
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "dpop+jwt",
        "secevent+jwt",
        "logout+jwt",
        "JOSE+JSON",
    ] {
        let token = signed(&with(header(), "typ", json!(typ)), &claims());
        assert_rejected(&default_app(), &token, 401, "token-invalid").await;
    }
    let lower = signed(&with(header(), "typ", json!("jwt")), &claims());
    send_bearer(&default_app(), "/cron/run", &lower)
        .await
        .assert_ok();
}

#[tokio::test]
async fn session_and_template_categories_are_rejected() {
    for cat in ["cl_B7d4PD111AAA", "cl_B7d4PD222AAA", "cl_I7d4PD111III"] {
        let token = signed(&with(header(), "cat", json!(cat)), &claims());
        assert_rejected(&default_app(), &token, 401, "token-invalid").await;
    }
}

#[tokio::test]
async fn compressed_encrypted_and_jwe_tokens_are_rejected() {
    for (name, value) in [("zip", json!("DEF")), ("enc", json!("A256GCM"))] {
        let token = signed(&with(header(), name, value), &claims());
        assert_rejected(&default_app(), &token, 401, "token-invalid").await;
    }
    let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d";
    assert_rejected(&default_app(), jwe, 401, "token-type-mismatch").await;
}

#[tokio::test]
async fn ill_formed_compact_serialisations_are_rejected() {
    let good = signed(&header(), &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    for (token, reason) in [
        (format!("{h}.{p}"), "token-type-mismatch"),
        (format!("{h}.{p}.{s}.{s}"), "token-type-mismatch"),
        (format!("{h}.{p}.{s}="), "token-type-mismatch"),
        (format!("{h}.{p}+.{s}"), "token-type-mismatch"),
        (format!("{h}.{p}/.{s}"), "token-type-mismatch"),
        ("........".to_owned(), "token-type-mismatch"),
        (format!("{h}..{s}"), "token-type-mismatch"),
        // A payload ending in a non-canonical base64 symbol.
        (format!("{h}.{}B.{s}", &p[..p.len() - 1]), "token-invalid"),
        (format!("{h}.{p}.{}", &s[..s.len() - 2]), "token-invalid"),
    ] {
        assert_rejected(&default_app(), &token, 401, reason).await;
    }
    let json_serialisation = json!({"payload": p, "protected": h, "signature": s}).to_string();
    let reply = send_bearer(&default_app(), "/cron/run", &json_serialisation).await;
    assert_eq!(reply.status, 400, "{reply:?}");
}

#[tokio::test]
async fn duplicate_header_or_claim_names_are_rejected() {
    let claims_text = claims().to_string();
    let header_text = r#"{"alg":"RS256","alg":"RS256","typ":"JWT"}"#;
    let token = key().sign_raw("RS256", header_text, &claims_text);
    assert_rejected(&default_app(), &token, 401, "token-invalid").await;

    let escalated = format!(
        "{},\"scopes\":\"mch_admin\"}}",
        &claims_text[..claims_text.len() - 1]
    );
    let token = key().sign_raw("RS256", &header().to_string(), &escalated);
    assert_rejected(&default_app(), &token, 401, "token-invalid").await;

    let duplicate_sub = format!(
        "{},\"sub\":\"mch_admin\"}}",
        &claims_text[..claims_text.len() - 1]
    );
    let token = key().sign_raw("RS256", &header().to_string(), &duplicate_sub);
    assert_rejected(&default_app(), &token, 401, "token-invalid").await;
}

#[tokio::test]
async fn deeply_nested_claims_are_rejected_without_crashing() {
    let claims_text = claims().to_string();
    let nested = format!(
        "{},\"deep\":{}{}}}",
        &claims_text[..claims_text.len() - 1],
        "[".repeat(2000),
        "]".repeat(2000)
    );
    let token = key().sign_raw("RS256", &header().to_string(), &nested);
    assert_rejected(&default_app(), &token, 401, "token-invalid").await;
}

#[tokio::test]
async fn oversized_tokens_are_rejected_before_parsing() {
    let big = with(claims(), "padding", json!("x".repeat(9 * 1024)));
    let token = signed(&header(), &big);
    assert_rejected(&default_app(), &token, 401, "token-invalid").await;
}

#[tokio::test]
async fn exp_of_the_wrong_type_or_out_of_range_is_rejected() {
    for exp in [
        json!("9999999999"),
        json!(null),
        json!(true),
        json!(-1),
        json!(1e300),
        json!(u64::MAX),
        json!(18_446_744_073_709_551_616.0_f64),
        json!([now() + 60]),
    ] {
        let token = signed(&header(), &with(claims(), "exp", exp));
        assert_rejected(&default_app(), &token, 401, "token-invalid").await;
    }
    let token = signed(&header(), &without(claims(), "exp"));
    assert_rejected(&default_app(), &token, 401, "token-invalid").await;
    let fractional = signed(
        &header(),
        &with(claims(), "exp", json!(now() as f64 + 600.5)),
    );
    send_bearer(&default_app(), "/cron/run", &fractional)
        .await
        .assert_ok();
}

#[tokio::test]
async fn nbf_and_iat_are_checked() {
    let now = now();
    for (name, value, reason) in [
        ("nbf", json!("0"), "token-invalid"),
        ("iat", json!("0"), "token-invalid"),
        ("nbf", json!(now + 60), "token-not-active"),
        ("iat", json!(now + 365 * 86400), "token-not-active"),
    ] {
        let token = signed(&header(), &with(claims(), name, value));
        assert_rejected(&default_app(), &token, 401, reason).await;
    }
}

#[tokio::test]
async fn clock_skew_is_five_seconds_by_default_and_configurable() {
    let now = now();
    let just_expired = signed(
        &header(),
        &with(claims_at(now - 600), "exp", json!(now - 2)),
    );
    send_bearer(&default_app(), "/cron/run", &just_expired)
        .await
        .assert_ok();
    let long_expired = signed(
        &header(),
        &with(claims_at(now - 600), "exp", json!(now - 30)),
    );
    assert_rejected(&default_app(), &long_expired, 401, "token-expired").await;
    let lenient = MachineVerifier::builder()
        .pem_key(key().public_pem())
        .clock_skew(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    send_bearer(
        &app(MachineAuthLayer::new(lenient)),
        "/cron/run",
        &long_expired,
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn issuer_must_be_an_exact_string() {
    let verifier = MachineVerifier::builder()
        .pem_key(key().public_pem())
        .issuer("https://clerk.example.test")
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    for iss in [
        json!(["evil", "https://clerk.example.test"]),
        json!(["https://clerk.example.test"]),
        json!(1),
    ] {
        let token = signed(&header(), &with(claims(), "iss", iss));
        assert_rejected(&app, &token, 401, "token-invalid").await;
    }
    for iss in [
        json!("https://clerk.example.tes"),
        json!("https://clerk.example.test.evil"),
        json!("HTTPS://CLERK.EXAMPLE.TEST"),
    ] {
        let token = signed(&header(), &with(claims(), "iss", iss));
        assert_rejected(&app, &token, 401, "token-verification-failed").await;
    }
    let token = signed(&header(), &without(claims(), "iss"));
    assert_rejected(&app, &token, 401, "token-verification-failed").await;
}

#[tokio::test]
async fn audience_must_be_present_and_match_when_configured() {
    let verifier = MachineVerifier::builder()
        .pem_key(key().public_pem())
        .audiences(["mch_reports_api"])
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    for (aud, reason) in [
        (Some(json!([])), "token-verification-failed"),
        (None, "token-verification-failed"),
        (Some(json!("mch_reports")), "token-verification-failed"),
        (Some(json!(7)), "token-invalid"),
        (Some(json!([7])), "token-invalid"),
    ] {
        let claims = match aud {
            Some(aud) => with(claims(), "aud", aud),
            None => claims(),
        };
        assert_rejected(&app, &signed(&header(), &claims), 401, reason).await;
    }
}

#[tokio::test]
async fn subjects_that_are_not_machine_ids_are_type_mismatches() {
    let long = format!("mch_{}", "a".repeat(93));
    for sub in [
        "user_2abc",
        "MCH_abc",
        "m\u{441}h_abc",
        "mch_",
        "mch_a\u{0}user_b",
        "mch_a-b",
        long.as_str(),
    ] {
        let token = signed(&header(), &with(claims(), "sub", json!(sub)));
        assert_rejected(&default_app(), &token, 401, "token-type-mismatch").await;
    }
    let escaped = signed(&header(), &with(claims(), "sub", json!("mch\u{5f}escaped")));
    send_bearer(&default_app(), "/cron/run", &escaped)
        .await
        .assert_ok();
    // As in Clerk's SDK, a JWT is a machine token only when its `sub` is a string starting with
    // `mch_`: a missing, `null` or non-string `sub` is another kind of token.
    for sub in [None, Some(json!(42)), Some(json!(null))] {
        let claims = match sub {
            Some(sub) => with(claims(), "sub", sub),
            None => without(claims(), "sub"),
        };
        assert_rejected(
            &default_app(),
            &signed(&header(), &claims),
            401,
            "token-type-mismatch",
        )
        .await;
    }
}

#[tokio::test]
async fn optional_mode_still_rejects_a_wrong_issuer() {
    let verifier = MachineVerifier::builder()
        .pem_key(key().public_pem())
        .issuer("https://clerk.example.test")
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier).optional());
    let token = signed(
        &header(),
        &with(claims(), "iss", json!("https://evil.example")),
    );
    send_bearer(&app, "/maybe", &token).await.assert_rejected(
        401,
        "token-verification-failed",
        Some(&token),
    );
}

#[tokio::test]
async fn psychic_ecdsa_signature_is_rejected() {
    let ec = TestKey::p256();
    let verifier = MachineVerifier::builder()
        .pem_key(ec.public_pem())
        .algorithms([Algorithm::ES256])
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    let header = json!({"alg":"ES256","typ":"JWT"}).to_string();
    let good = ec.sign_raw("ES256", &header, &claims().to_string());
    send_bearer(&app, "/cron/run", &good).await.assert_ok();
    let (input, _) = good.rsplit_once('.').unwrap();
    let zero = format!("{input}.{}", b64(&[0u8; 64]));
    assert_rejected(&app, &zero, 401, "token-invalid").await;
}

#[tokio::test]
async fn ed25519_keys_verify_eddsa_tokens() {
    let ed = TestKey::ed25519();
    let verifier = MachineVerifier::builder()
        .pem_key(ed.public_pem())
        .algorithms([Algorithm::EdDSA])
        .build()
        .unwrap();
    let app = app(MachineAuthLayer::new(verifier));
    let token = ed.token("k", &claims());
    send_bearer(&app, "/cron/run", &token).await.assert_ok();
    assert_rejected(
        &app,
        &TestKey::ed25519().token("k", &claims()),
        401,
        "token-invalid",
    )
    .await;
}
