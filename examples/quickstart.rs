//! The whole story on one machine, no account needed:
//!
//! 1. an issuer key pair is generated (Clerk holds yours; `CLERK_JWT_KEY` is its public half);
//! 2. machine B, the seed's cron server, starts with `MachineAuthLayer` and only the public key;
//! 3. machine A calls `POST /cron/run` with a valid machine token, an expired one, a user token,
//!    a tampered one, and none, and prints what machine B answered.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

#[path = "shared/cron.rs"]
mod cron;

use std::error::Error;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower_machine_auth::MachineVerifier;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("\nsome answers were not what the response contract says: see above");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("quickstart failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn Error>> {
    println!("1. The issuer signs machine tokens with a private key (RSA-2048, RS256).");
    let key_pair = KeyPair::generate(KeySize::Rsa2048)?;
    let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", key_pair.as_der()?.as_ref()));
    let public_pem = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        key_pair.public_key().as_der()?.as_ref(),
    ));
    let signing_key = EncodingKey::from_rsa_pem(private_pem.as_bytes())?;
    println!("   Machine B only needs the public key, as CLERK_JWT_KEY:");
    println!(
        "   {}",
        public_pem.lines().take(2).collect::<Vec<_>>().join("\n   ")
    );
    println!("   …\n");

    println!("2. Machine B: the cron server behind MachineAuthLayer, verifying locally.");
    let verifier = MachineVerifier::from_pem(&public_pem)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, cron::cron_app(verifier)).await });
    println!("   listening on {base_url}\n");

    println!("3. Machine A calls POST /cron/run with `Authorization: Bearer <token>`:");
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let machine = json!({
        "iss": "https://clerk.quickstart.example",
        "sub": "mch_cron_service",
        "jti": "mt_0123456789abcdef0123456789abcdef",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 3600,
        "scopes": "mch_reports_api",
    });
    let sign = |claims: &Value| -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("ins_quickstart".to_owned());
        header.extras.insert("cat", "cl_B7d4PD333AAA");
        jsonwebtoken::encode(&header, claims, &signing_key)
    };
    let valid = sign(&machine)?;
    let mut expired_claims = machine.clone();
    expired_claims["iat"] = json!(now - 7200);
    expired_claims["nbf"] = json!(now - 7200);
    expired_claims["exp"] = json!(now - 3600);
    let mut user_claims = machine.clone();
    user_claims["sub"] = json!("user_2abcUserSession");
    let tampered = tamper(&valid, "mch_admin")?;

    let client = reqwest::Client::new();
    let cases = [
        ("a valid machine token", Some(valid.clone()), 200, None),
        (
            "an expired machine token",
            Some(sign(&expired_claims)?),
            401,
            Some("token-expired"),
        ),
        (
            "a user session token (sub: user_…)",
            Some(sign(&user_claims)?),
            401,
            Some("token-type-mismatch"),
        ),
        (
            "a tampered token (sub edited, signature kept)",
            Some(tampered),
            401,
            Some("token-invalid"),
        ),
        ("no token at all", None, 401, Some("token-missing")),
    ];
    let mut as_expected = true;
    for (label, token, expected_status, expected_reason) in cases {
        let mut request = client.post(format!("{base_url}/cron/run"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.bytes().await?)?;
        let reason = body["reason"].as_str();
        let shown = reason.map_or_else(|| body.to_string(), |reason| format!("reason: {reason}"));
        let ok = status == expected_status && reason == expected_reason;
        as_expected &= ok;
        println!(
            "   {label:<48} → {status} {shown}{}",
            if ok { "" } else { "   (unexpected!)" }
        );
    }

    println!("\n4. What the handler sees for the valid token (GET /whoami):");
    let whoami = client
        .get(format!("{base_url}/whoami"))
        .bearer_auth(&valid)
        .send();
    let identity: Value = serde_json::from_slice(&whoami.await?.bytes().await?)?;
    println!(
        "   {}",
        serde_json::to_string_pretty(&identity)?.replace('\n', "\n   ")
    );
    as_expected &= identity["machine_id"] == "mch_cron_service";
    Ok(as_expected)
}

/// Replaces the token's `sub` and keeps its signature: what a forger would try.
fn tamper(token: &str, sub: &str) -> Result<String, Box<dyn Error>> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (
        parts.next().ok_or("no header")?,
        parts.next().ok_or("no payload")?,
        parts.next().ok_or("no signature")?,
    );
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    claims["sub"] = json!(sub);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    Ok(format!("{header}.{payload}.{signature}"))
}
