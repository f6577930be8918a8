//! `machine-auth`: run the local issuer, create and revoke machine tokens, verify and inspect them.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tower_machine_auth::issuer::{Issuer, IssuerConfig};
use tower_machine_auth::{DEFAULT_CLERK_API_URL, MachineVerifier, Reason};

const EXIT_REJECTED: u8 = 1;
const EXIT_UNAVAILABLE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "machine-auth",
    version,
    about = "Machine-to-machine tokens: a local Clerk-compatible issuer, token creation and \
             revocation, verification and inspection.",
    after_help = "Examples:\n  machine-auth dev                          # terminal 1: the issuer; run its export lines in terminal 2\n  machine-auth token create --format jwt    # terminal 2\n  machine-auth verify \"$TOKEN\"\n  machine-auth inspect \"$TOKEN\""
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local Clerk-compatible issuer on 127.0.0.1 (Clerk's Backend API routes for M2M
    /// tokens and the JWKS), printing the `export CLERK_…=…` lines that point the layer and the
    /// client at it.
    #[command(
        after_help = "Without --config, a built-in demo: machines mch_cron_service (which \
        may call mch_reports_api) and mch_reports_api, with public demo keys.\n\nExamples:\n  \
        machine-auth dev\n  machine-auth dev --port 0 --data-dir .machine-auth\n  \
        machine-auth dev --config machines.json\n\nmachines.json:\n  {\"instance_secret_key\": \
        \"sk_test_…\", \"machines\": [{\"id\": \"mch_cron\", \"name\": \"Cron\", \"secret_key\": \
        \"ak_…\", \"scopes\": [\"mch_api\"]}]}"
    )]
    Dev {
        /// The port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Keep keys and opaque tokens here (issuer.sqlite3), so that they survive restarts;
        /// without it, everything lives in memory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A JSON configuration of the instance and its machines (default: the demo).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create or revoke M2M tokens at CLERK_API_URL with CLERK_MACHINE_SECRET_KEY (works against
    /// Clerk and against `machine-auth dev`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Verify a token with the same verifier as the layer, configured from the same environment
    /// variables (CLERK_JWT_KEY, CLERK_SECRET_KEY, CLERK_MACHINE_SECRET_KEY, CLERK_API_URL).
    #[command(
        after_help = "Prints the authenticated machine as JSON.\n\nExit status: 0 valid, 1 \
        rejected, 2 verifier unavailable or misconfigured.\n\nExamples:\n  machine-auth verify \
        \"$TOKEN\"\n  echo \"$TOKEN\" | machine-auth verify -"
    )]
    Verify {
        /// The token, or `-` to read it from standard input.
        token: String,
    },
    /// Decode a JWT's header and claims WITHOUT verifying anything, for debugging.
    #[command(
        after_help = "Examples:\n  machine-auth inspect \"$TOKEN\"\n  machine-auth inspect - \
        < token.txt"
    )]
    Inspect {
        /// The token, or `-` to read it from standard input.
        token: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token: POST {CLERK_API_URL}/m2m_tokens. Prints the token resource (with `token`).
    #[command(
        after_help = "Examples:\n  machine-auth token create\n  machine-auth token create \
        --format jwt --expires-in 600 --claims '{\"job\":\"nightly\"}'"
    )]
    Create {
        /// The token format (Clerk's default is opaque).
        #[arg(long, value_enum, default_value_t = Format::Opaque)]
        format: Format,
        /// Custom claims, as a JSON object.
        #[arg(long)]
        claims: Option<String>,
        /// The lifetime in seconds (default: the machine's).
        #[arg(long)]
        expires_in: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke an opaque token: POST {CLERK_API_URL}/m2m_tokens/{ID}/revoke.
    #[command(
        after_help = "Example:\n  machine-auth token revoke mt_0123456789abcdef0123456789abcdef \
        --reason leaked"
    )]
    Revoke {
        /// The token's id (`mt_…`, the `id` of the created resource, not the token itself).
        id: String,
        /// Why, kept with the token.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jwt,
    Opaque,
}

#[derive(clap::Args)]
struct Api {
    /// Clerk's Backend API, or `machine-auth dev`.
    #[arg(long, env = "CLERK_API_URL", default_value = DEFAULT_CLERK_API_URL)]
    api_url: String,
    /// The machine secret key (ak_…).
    #[arg(long, env = "CLERK_MACHINE_SECRET_KEY", hide_env_values = true)]
    machine_secret_key: Option<String>,
}

/// A failure, and the exit status it gets.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,tower_machine_auth=warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("machine-auth: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Dev {
                port,
                data_dir,
                config,
            } => dev(port, data_dir, config).await,
            Command::Token(TokenCommand::Create {
                format,
                claims,
                expires_in,
                api,
            }) => create(format, claims, expires_in, api).await,
            Command::Token(TokenCommand::Revoke { id, reason, api }) => {
                revoke(&id, reason, api).await
            }
            Command::Verify { token } => verify(&read_token(&token)?).await,
            Command::Inspect { token } => inspect(&read_token(&token)?),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("machine-auth: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The token argument, or standard input for `-`.
fn read_token(argument: &str) -> Result<String, Failure> {
    if argument != "-" {
        return Ok(argument.trim().to_owned());
    }
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .map_err(|error| {
            Failure::new(
                EXIT_REJECTED,
                format!("cannot read the token from standard input: {error}"),
            )
        })?;
    Ok(token.trim().to_owned())
}

async fn dev(port: u16, data_dir: Option<PathBuf>, config: Option<PathBuf>) -> Result<(), Failure> {
    let config = match &config {
        None => IssuerConfig::demo(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                Failure::new(
                    EXIT_UNAVAILABLE,
                    format!("cannot read {}: {error}", path.display()),
                )
            })?;
            IssuerConfig::from_json(&text).map_err(|error| {
                Failure::new(EXIT_UNAVAILABLE, format!("{}: {error}", path.display()))
            })?
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|error| {
            Failure::new(
                EXIT_UNAVAILABLE,
                format!("cannot listen on 127.0.0.1:{port}: {error} (choose another --port)"),
            )
        })?;
    let address = listener
        .local_addr()
        .map_err(|error| Failure::new(EXIT_UNAVAILABLE, error.to_string()))?;
    let url = format!("http://{address}");
    let mut builder = Issuer::builder(config.clone()).issuer_url(&url);
    if let Some(dir) = &data_dir {
        builder = builder.data_dir(dir);
    }
    let issuer = builder
        .build()
        .map_err(|error| Failure::new(EXIT_UNAVAILABLE, error.to_string()))?;
    let public_key = issuer
        .public_key_pem()
        .map_err(|error| Failure::new(EXIT_UNAVAILABLE, error.to_string()))?;

    println!("listening on {url}");
    println!("# Point the layer (machine B) and the client (machine A) at this issuer:");
    println!("export CLERK_API_URL={url}");
    println!("export CLERK_SECRET_KEY={}", config.instance_secret_key);
    for (index, machine) in config.machines.iter().enumerate() {
        let comment = if index == 0 { "" } else { "# " };
        println!(
            "{comment}export CLERK_MACHINE_SECRET_KEY={}  # {}",
            machine.secret_key, machine.id
        );
    }
    println!(
        "# Networkless JWT verification instead of the JWKS (until the key is rotated):\n# export CLERK_JWT_KEY='{}'",
        public_key.trim().replace('\n', "\\n")
    );
    if data_dir.is_none() {
        println!("# Tokens and keys live in memory: pass --data-dir to keep them across restarts.");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, issuer.router())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|error| Failure::new(EXIT_UNAVAILABLE, format!("the issuer stopped: {error}")))
}

fn http_client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| {
            Failure::new(
                EXIT_UNAVAILABLE,
                format!("cannot build the HTTP client: {error}"),
            )
        })
}

impl Api {
    fn key(&self) -> Result<&str, Failure> {
        self.machine_secret_key.as_deref().filter(|key| !key.trim().is_empty()).ok_or_else(|| {
            Failure::new(
                EXIT_UNAVAILABLE,
                "set CLERK_MACHINE_SECRET_KEY to the machine secret key (ak_…); `machine-auth dev` \
                 prints one",
            )
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_url.trim_end_matches('/'))
    }

    /// POSTs `body` and prints the JSON reply, or fails with Clerk's error message.
    async fn post(&self, path: &str, body: Value) -> Result<(), Failure> {
        let response = http_client()?
            .post(self.url(path))
            .bearer_auth(self.key()?)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| {
                Failure::new(
                    EXIT_UNAVAILABLE,
                    format!("cannot reach {}: {error}", self.api_url),
                )
            })?;
        let status = response.status();
        let reply: Value = response
            .bytes()
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null);
        if !status.is_success() {
            let error = &reply["errors"][0];
            let message = error["long_message"]
                .as_str()
                .or(error["message"].as_str())
                .unwrap_or("no details");
            return Err(Failure::new(
                EXIT_REJECTED,
                format!("{} answered {status}: {message}", self.api_url),
            ));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
        Ok(())
    }
}

async fn create(
    format: Format,
    claims: Option<String>,
    expires_in: Option<u64>,
    api: Api,
) -> Result<(), Failure> {
    let claims = match claims {
        None => Value::Null,
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(claims @ Value::Object(_)) => claims,
            _ => {
                return Err(Failure::new(
                    EXIT_REJECTED,
                    "--claims must be a JSON object, e.g. '{\"job\":\"nightly\"}'",
                ));
            }
        },
    };
    let format = match format {
        Format::Jwt => "jwt",
        Format::Opaque => "opaque",
    };
    api.post(
        "/m2m_tokens",
        json!({"seconds_until_expiration": expires_in, "claims": claims, "token_format": format}),
    )
    .await
}

async fn revoke(id: &str, reason: Option<String>, api: Api) -> Result<(), Failure> {
    if !id.starts_with("mt_") || id.contains('/') {
        return Err(Failure::new(
            EXIT_REJECTED,
            "the id is the token resource's `id` (mt_…), not the token",
        ));
    }
    api.post(
        &format!("/m2m_tokens/{id}/revoke"),
        json!({ "revocation_reason": reason }),
    )
    .await
}

async fn verify(token: &str) -> Result<(), Failure> {
    let verifier = MachineVerifier::from_env()
        .map_err(|error| Failure::new(EXIT_UNAVAILABLE, format!("misconfigured: {error}")))?;
    match verifier.verify(token).await {
        Ok(machine) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&machine).unwrap_or_default()
            );
            Ok(())
        }
        Err(error) => {
            let code = if error.reason() == Reason::VerifierUnavailable {
                EXIT_UNAVAILABLE
            } else {
                EXIT_REJECTED
            };
            Err(Failure::new(
                code,
                format!("rejected: {}: {error}", error.reason()),
            ))
        }
    }
}

fn inspect(token: &str) -> Result<(), Failure> {
    if token.starts_with("mt_") {
        return Err(Failure::new(
            EXIT_REJECTED,
            "this is an opaque machine token: it carries nothing to decode; only its issuer can \
             say what it is (`machine-auth verify` asks it)",
        ));
    }
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(Failure::new(
            EXIT_REJECTED,
            "not a JWT: a JWT has three base64url segments separated by dots",
        ));
    };
    let decode = |segment: &str, what: &str| -> Result<Value, Failure> {
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| Failure::new(EXIT_REJECTED, format!("the {what} is not base64url")))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| Failure::new(EXIT_REJECTED, format!("the {what} is not JSON")))
    };
    let decoded = json!({
        "unverified": true,
        "header": decode(header, "header")?,
        "claims": decode(payload, "payload")?,
    });
    eprintln!(
        "machine-auth: NOT VERIFIED: the signature, the expiry and the issuer were not checked (use `machine-auth verify`)"
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&decoded).unwrap_or_default()
    );
    Ok(())
}
