//! The whole story on one machine, no account needed:
//!
//! 1. a local Clerk-compatible issuer starts (the `machine-auth-issuer` crate; `machine-auth dev` runs the same);
//! 2. machine B (`mch_reports_api`), a cron server, starts behind `MachineAuthLayer`,
//!    reading the issuer's JWKS for JWTs and asking it about opaque tokens, and accepting only
//!    tokens scoped to its own machine id;
//! 3. machine A's (`mch_cron_service`) `MachineTokenSource`s create a JWT and an opaque token
//!    through the issuer's HTTP API (and would reuse each until shortly before it expires);
//!    machine A calls machine B with each, and with tokens that must be refused, among them one
//!    of a third machine (`mch_backup_job`) that may not call machine B;
//! 4. machine A's opaque token is revoked: the next call with it is refused, while the JWT stays
//!    valid until it expires. That is the trade-off between the two formats.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

#[path = "shared/cron.rs"]
mod cron;
#[path = "shared/issuer.rs"]
mod issuer;

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use tower_machine_auth::client::MachineTokenSource;
use tower_machine_auth::{MachineVerifier, TokenFormat};

/// Machine B's own machine id: the demo's machine A may call it, its third machine may not.
const MACHINE_B: &str = "mch_reports_api";
/// The demo's third machine, whose tokens are scoped to machine A only.
const BACKUP_JOB: &str = "mch_backup_job";

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

/// Machine A: talks to the issuer with its machine secret key, and to machine B with tokens.
struct MachineA {
    http: reqwest::Client,
    issuer_url: String,
    secret_key: String,
    cron_url: String,
    as_expected: bool,
}

/// A token source (the `client` feature) of the machine whose secret key is `secret_key`:
/// creates tokens with `POST /m2m_tokens`, as Clerk's SDK sends it, and reuses them.
fn token_source(
    issuer_url: &str,
    secret_key: &str,
    format: TokenFormat,
    lifetime: Option<u64>,
) -> Result<MachineTokenSource, Box<dyn Error + Send + Sync>> {
    let mut builder = MachineTokenSource::builder()
        .api_url(issuer_url)
        .machine_secret_key(secret_key)
        .format(format);
    if let Some(seconds) = lifetime {
        builder = builder.lifetime(Duration::from_secs(seconds));
    }
    Ok(builder.build()?)
}

impl MachineA {
    /// A token source of machine A.
    fn source(
        &self,
        format: TokenFormat,
        lifetime: Option<u64>,
    ) -> Result<MachineTokenSource, Box<dyn Error + Send + Sync>> {
        token_source(&self.issuer_url, &self.secret_key, format, lifetime)
    }

    async fn revoke(&self, id: &str) -> Result<(), Box<dyn Error + Send + Sync>> {
        self.http
            .post(format!("{}/m2m_tokens/{id}/revoke", self.issuer_url))
            .bearer_auth(&self.secret_key)
            .body(json!({"revocation_reason": "quickstart"}).to_string())
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Calls `POST /cron/run` with `token` (machine A's, or another machine's) and prints the
    /// answer next to what the contract expects.
    async fn call(
        &mut self,
        label: &str,
        token: Option<&str>,
        expected: (u16, Option<&str>),
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        let mut request = self.http.post(format!("{}/cron/run", self.cron_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.bytes().await?)?;
        let reason = body["reason"].as_str();
        let shown = reason.map_or_else(|| body.to_string(), |reason| format!("reason: {reason}"));
        let ok = (status, reason) == expected;
        self.as_expected &= ok;
        println!(
            "   {label:<50} → {status} {shown}{}",
            if ok { "" } else { "   (unexpected!)" }
        );
        Ok(())
    }
}

async fn run() -> Result<bool, Box<dyn Error + Send + Sync>> {
    println!("1. A local Clerk-compatible issuer (the demo configuration).");
    let (issuer_url, config) = issuer::start_demo_issuer().await?;
    println!("   listening on {issuer_url}; its machines:");
    for (index, machine) in config.machines.iter().enumerate() {
        let role = match index {
            0 => " (machine A)",
            _ if machine.id == MACHINE_B => " (machine B)",
            _ => "",
        };
        let callees = if machine.scopes.is_empty() {
            "no other machine".to_owned()
        } else {
            machine.scopes.join(", ")
        };
        println!(
            "   {:<31} may call {callees}",
            format!("{}{role}", machine.id)
        );
    }
    println!();

    println!("2. Machine B: the cron server behind MachineAuthLayer.");
    println!(
        "   JWTs: verified locally with the issuer's JWKS. Opaque tokens: asked at the issuer."
    );
    println!("   Its own machine id is {MACHINE_B}: it accepts only tokens scoped to it.");
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(&config.instance_secret_key)
        .clerk_api_url(&issuer_url)
        .own_machine_id(MACHINE_B)
        .clock_skew(Duration::from_secs(1))
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cron_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, cron::cron_app(verifier)).await });
    println!("   listening on {cron_url}\n");

    let mut machine_a = MachineA {
        http: reqwest::Client::new(),
        issuer_url,
        secret_key: config.machines[0].secret_key.clone(),
        cron_url,
        as_expected: true,
    };
    println!(
        "3. Machine A's token sources, and mch_backup_job's, create tokens (POST /m2m_tokens);"
    );
    println!("   each machine calls POST /cron/run:");
    let jwt_source = machine_a.source(TokenFormat::Jwt, None)?;
    let opaque_source = machine_a.source(TokenFormat::Opaque, None)?;
    let short_source = machine_a.source(TokenFormat::Jwt, Some(1))?;
    let opaque = opaque_source.token().await?;
    let jwt_token = jwt_source.token().await?.as_str().to_owned();
    let opaque_token = opaque.as_str().to_owned();
    let short_token = short_source.token().await?.as_str().to_owned();
    machine_a
        .call("a JWT (verified locally)", Some(&jwt_token), (200, None))
        .await?;
    machine_a
        .call(
            "an opaque token (verified at the issuer)",
            Some(&opaque_token),
            (200, None),
        )
        .await?;
    let backup_key = &config
        .machines
        .iter()
        .find(|machine| machine.id == BACKUP_JOB)
        .ok_or("the demo configuration has no mch_backup_job")?
        .secret_key;
    let backup_source = token_source(&machine_a.issuer_url, backup_key, TokenFormat::Jwt, None)?;
    let backup_token = backup_source.token().await?.as_str().to_owned();
    machine_a
        .call(
            "a JWT of mch_backup_job (not scoped to machine B)",
            Some(&backup_token),
            (401, Some("token-invalid-receiver")),
        )
        .await?;
    machine_a
        .call("no token at all", None, (401, Some("token-missing")))
        .await?;
    let tampered = tamper(&jwt_token, MACHINE_B)?;
    machine_a
        .call(
            "a tampered JWT (sub edited, signature kept)",
            Some(&tampered),
            (401, Some("token-invalid")),
        )
        .await?;
    machine_a
        .call(
            "the machine secret key sent by mistake",
            Some(&machine_a.secret_key.clone()),
            (401, Some("token-type-mismatch")),
        )
        .await?;
    machine_a
        .call(
            "an opaque token the issuer never issued",
            Some("mt_0123456789abcdef"),
            (401, Some("token-invalid")),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    machine_a
        .call(
            "a JWT past its expiry (1 s lifetime)",
            Some(&short_token),
            (401, Some("token-expired")),
        )
        .await?;

    println!("\n4. The issuer revokes the opaque token (POST /m2m_tokens/{{id}}/revoke):");
    machine_a.revoke(opaque.id()).await?;
    machine_a
        .call(
            "the revoked opaque token, next call",
            Some(&opaque_token),
            (401, Some("token-invalid")),
        )
        .await?;
    machine_a
        .call(
            "the JWT: valid until it expires",
            Some(&jwt_token),
            (200, None),
        )
        .await?;
    let fresh = opaque_source.send(
        machine_a
            .http
            .post(format!("{}/cron/run", machine_a.cron_url)),
    );
    let fresh = fresh.await?.status().as_u16();
    machine_a.as_expected &= fresh == 200;
    println!(
        "   {:<50} → {fresh}",
        "send(): refused, so a new token, retried once"
    );
    println!(
        "   (tokens created: {} JWT, {} opaque, for all these calls)\n",
        jwt_source.stats().created,
        opaque_source.stats().created
    );
    println!("   Opaque tokens can be revoked at once but cost a call to the issuer per request;");
    println!("   JWTs cost no network at all but stay valid until they expire.");
    Ok(machine_a.as_expected)
}

/// Replaces a JWT's `sub` and keeps its signature: what a forger would try.
fn tamper(token: &str, sub: &str) -> Result<String, Box<dyn Error + Send + Sync>> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
