//! `machine-auth`: run the local issuer, create and revoke machine tokens, verify and inspect them.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand, ValueEnum};
use machine_auth_issuer::{
    Issuer, IssuerConfig, IssuerError, MachineConfig, SHORTCODE_ROOTS, Template,
};
use serde_json::{Value, json};
use tower_machine_auth::client::{M2mApiError, M2mTokens};
use tower_machine_auth::{DEFAULT_CLERK_API_URL, MachineVerifier, Reason, TokenFormat};

/// The token was rejected, the API refused the request, or the input is wrong.
const EXIT_REJECTED: u8 = 1;
/// Misconfigured (missing or bad variables, a bad `--config`), or the verifier or API could not
/// be reached. Clap's usage errors exit with 2 as well.
const EXIT_UNAVAILABLE: u8 = 2;

/// `machine-auth dev`'s port when `--port` is not given.
const DEFAULT_DEV_PORT: u16 = 8787;

/// The variable that lets the verifier and the client use plain http to one non-loopback host.
const ALLOW_HTTP_HOST_VARIABLE: &str = "MACHINE_AUTH_ALLOW_HTTP_HOST";

/// Longest token accepted on standard input (the verifier caps tokens at 8 KiB anyway).
const MAX_STDIN_TOKEN: u64 = 64 * 1024;

#[derive(Parser)]
#[command(
    name = "machine-auth",
    version,
    propagate_version = true,
    about = "Machine-to-machine tokens: a local Clerk-compatible issuer, token creation and \
             revocation, verification and inspection.",
    after_help = "Examples:\n  \
        machine-auth dev                          # terminal 1: the issuer on 127.0.0.1:8787\n  \
        # terminal 2 (machine A): paste the \"Machine A\" block that `dev` printed, then\n  \
        machine-auth token create --format jwt\n  \
        # terminal 3 (machine B): paste the \"Machine B\" block, then\n  \
        printf '%s' \"$TOKEN\" | machine-auth verify   # the token on standard input, not in `ps`\n  \
        printf '%s' \"$TOKEN\" | machine-auth inspect\n\n\
        Exit status:\n  \
        0  success\n  \
        1  the token was rejected, the API refused the request, or the input is malformed\n  \
        2  misconfigured (a variable or --config is missing or wrong), the verifier or the API \
        could not be reached, or a usage error\n\n\
        Logs go to standard error; RUST_LOG sets their level (e.g. RUST_LOG=debug)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local Clerk-compatible issuer on 127.0.0.1 (or --host) and print the
    /// `export CLERK_…=…` lines for machine B (the server that verifies) and machine A (the
    /// caller that creates tokens).
    #[command(
        long_about = "Run the local Clerk-compatible issuer on 127.0.0.1, or the address of \
        --host (Clerk's Backend API routes for M2M tokens and the JWKS) until Ctrl-C.\n\nWhen \
        it is ready it prints `listening on http://ADDRESS:PORT`, then two blocks of `export …` lines, each to paste \
        into one machine's shell, with only what that machine needs.\n\n\
        \"Machine B (the server that verifies)\": CLERK_API_URL; CLERK_JWT_KEY (the public key, \
        for networkless JWT verification); CLERK_MACHINE_ID (B's own machine id: the first scope \
        of the first machine, i.e. the machine A may call; B then accepts only tokens scoped to \
        it, others get 401 token-invalid-receiver; when the first machine has no scopes, only a \
        commented hint); CLERK_MACHINE_SECRET_KEY, B's own key, for opaque tokens (the instance \
        key CLERK_SECRET_KEY follows as a commented alternative; when B is not a configured \
        machine, the instance key is exported instead).\n\n\
        \"Machine A (the caller that creates tokens)\": CLERK_API_URL and CLERK_MACHINE_SECRET_KEY \
        (the first machine's key). Machine A's key must never go to machine B: B verifies opaque \
        tokens with its own machine's key, and with A's it refuses valid ones (401).\n\n\
        The other machines' keys follow as comments. These are the only secret keys machine-auth \
        ever prints.\n\n\
        To be reached from other machines or containers (docker compose, CI), give --host \
        0.0.0.0, :: or one of this machine's addresses. It then warns on standard error: \
        anyone who can reach it can use it, and it serves tokens and receives secret keys over \
        plain http (for development and CI only). Both blocks then name it by the --host \
        address, or, on every interface, by the first --allowed-host name, else by this \
        machine's host name (else <this-host>, to replace), and set \
        MACHINE_AUTH_ALLOW_HTTP_HOST to that host: it lets the verifier and the client use \
        plain http to that one host.\n\n\
        It answers only requests addressed to localhost, 127.0.0.1 or [::1], to the --host \
        address or the host name it printed, and to the names given with --allowed-host \
        (their Host header, with or without the port): others get 421 Misdirected Request, so \
        that a web page whose name was made to resolve to this issuer (DNS rebinding) cannot \
        use it.",
        after_help = "Without --config, a built-in demo: machines mch_cron_service (machine A, \
        which may call mch_reports_api), mch_reports_api (machine B) and mch_backup_job (which \
        may call mch_cron_service only, so machine B refuses its tokens), with public demo \
        keys.\n\n\
        Examples:\n  \
        machine-auth dev\n  \
        machine-auth dev --port 0 --data-dir .machine-auth\n  \
        machine-auth dev --config machines.json\n  \
        machine-auth dev --allowed-host issuer.dev.test   # also answer to that name\n  \
        machine-auth dev --host 0.0.0.0 --allowed-host issuer   # docker compose: other \
        containers use http://issuer:8787\n\n\
        machines.json (ids may be left out: they are derived from the names):\n  \
        {\"instance_secret_key\": \"sk_test_0123456789\",\n   \
        \"machines\": [{\"id\": \"mch_cron\", \"name\": \"Cron\", \"secret_key\": \
        \"ak_cron_0123456789\", \"scopes\": [\"mch_api\"]},\n                \
        {\"id\": \"mch_api\", \"name\": \"API\", \"secret_key\": \"ak_api_0123456789\"}]}\n\n\
        Exit status:\n  \
        0  stopped by Ctrl-C (or SIGTERM)\n  \
        2  the configuration is wrong, the address or the port cannot be used, or the data \
        directory cannot be used"
    )]
    Dev {
        /// The address to listen on: 127.0.0.1, another loopback address, or, to be reached from
        /// other machines or containers, 0.0.0.0 (every IPv4 interface), :: (every interface) or
        /// one of this machine's addresses. Not loopback, the issuer serves tokens and receives
        /// secret keys over plain http, from anyone who can reach it: for development and CI
        /// only (a warning says so).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1",
              value_parser = parse_bind_address)]
        host: IpAddr,
        /// The port to listen on (0 picks a free one).
        #[arg(long, default_value_t = DEFAULT_DEV_PORT)]
        port: u16,
        /// Keep keys and opaque tokens in DIR/issuer.sqlite3, so that they survive restarts
        /// (default: in memory).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// A JSON configuration of the instance and its machines (default: the built-in demo).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Another host name to answer to (with or without the listening port), besides
        /// localhost, 127.0.0.1 and ::1; repeatable. Requests for other names get 421.
        #[arg(long = "allowed-host", visible_alias = "host-name", value_name = "NAME",
              value_parser = parse_host_name)]
        allowed_hosts: Vec<String>,
    },
    /// Create or revoke M2M tokens at CLERK_API_URL with CLERK_MACHINE_SECRET_KEY (works against
    /// Clerk itself and against `machine-auth dev`).
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        machine-auth token create --format jwt --expires-in 600\n  \
        machine-auth token revoke mt_0123456789abcdef0123456789abcdef --reason leaked"
    )]
    Token(TokenCommand),
    /// Verify a token with the same verifier as the layer, configured from the same environment
    /// variables.
    #[command(
        long_about = "Verify a token with the same verifier as the layer \
        (MachineVerifier::from_env), configured from the same environment variables: \
        CLERK_JWT_KEY (PEM public key, networkless), CLERK_SECRET_KEY (JWKS from \
        CLERK_API_URL), CLERK_JWKS_URL, CLERK_MACHINE_SECRET_KEY (opaque mt_… tokens, checked at \
        CLERK_API_URL), CLERK_API_URL (default https://api.clerk.com) and CLERK_MACHINE_ID \
        (this machine's own id, mch_…: when set, only tokens with it among their scopes are \
        valid, others are rejected with token-invalid-receiver; unset, tokens of every machine \
        are accepted and a warning says so).\n\nThe token comes from MACHINE_AUTH_TOKEN when it is \
        set, else from standard input: an argument works too, but other users see it in `ps` \
        and the shell's history keeps it (a warning says so).\n\nPrints the \
        authenticated machine as JSON; a rejection prints its reason and message on standard \
        error, e.g. `rejected: token-expired: the token has expired`.",
        after_help = "Examples:\n  \
        printf '%s' \"$TOKEN\" | machine-auth verify\n  \
        machine-auth verify < token.txt\n  \
        MACHINE_AUTH_TOKEN=\"$TOKEN\" machine-auth verify\n\n\
        Exit status:\n  \
        0  the token is valid\n  \
        1  the token was rejected\n  \
        2  the verifier is misconfigured or unavailable (keys or the issuer unreachable)"
    )]
    Verify {
        /// The token. Better left out: it is then read from MACHINE_AUTH_TOKEN when set, else
        /// from standard input (`-` reads standard input); an argument shows in `ps` and the
        /// shell's history.
        token: Option<String>,
    },
    /// Decode a JWT's header and claims WITHOUT verifying anything, for debugging.
    #[command(
        long_about = "Decode a JWT's header and claims WITHOUT verifying anything (no signature, \
        expiry or issuer check), for debugging. Prints {\"unverified\": true, \"header\": …, \
        \"claims\": …}. Opaque mt_… tokens carry nothing to decode: only their issuer knows \
        them (use `machine-auth verify`).\n\nThe token comes from MACHINE_AUTH_TOKEN when it \
        is set, else from standard input, as for `machine-auth verify`.",
        after_help = "Examples:\n  \
        printf '%s' \"$TOKEN\" | machine-auth inspect\n  \
        machine-auth inspect < token.txt\n  \
        MACHINE_AUTH_TOKEN=\"$TOKEN\" machine-auth inspect\n\n\
        Exit status:\n  \
        0  decoded\n  \
        1  not a JWT (malformed, or an opaque token)"
    )]
    Inspect {
        /// The token. Better left out: it is then read from MACHINE_AUTH_TOKEN when set, else
        /// from standard input (`-` reads standard input); an argument shows in `ps` and the
        /// shell's history.
        token: Option<String>,
    },
    /// Try a JWT template (the shortcode language of Clerk's JWT templates) before saving it.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        machine-auth template render template.json --subject maria.json\n  \
        machine-auth template render template.json --subject maria.json --sign"
    )]
    Template(TemplateCommand),
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Render a JWT template for a subject: the full claim set it would produce, or a signed token.
    #[command(
        long_about = "Render a JWT template for a subject, to try it before saving it: prints, \
        as JSON, the full claim set a token of it would carry (the template's claims, then the \
        default claims azp, exp, iat, iss, jti, nbf and sub, which the template cannot set), or \
        with --sign a token signed with a fresh key (its public key PEM goes to standard \
        error).\n\nTEMPLATE.json is a JSON object of claims with static values and shortcodes \
        (`{{user.first_name}}`, `{{user.public_metadata.plan || 'free'}}`); `//` and `/* */` \
        comments are allowed. SUBJECT.json holds the data the shortcodes read, by root object: \
        {\"user\": {…}, \"org\": {…}, \"membership\": {…}, \"session\": {…}, \
        \"machine\": {…}}, with fields named as the shortcodes name them (first_name, \
        public_metadata, …).",
        after_help = "Examples:\n  \
        machine-auth template render template.json --subject maria.json\n  \
        machine-auth template render template.json --subject maria.json --sign --lifetime 300\n\n\
        template.json:\n  \
        {\"name\": \"{{user.first_name}} {{user.last_name}}\", \"plan\": \
        \"{{user.public_metadata.plan || 'free'}}\"}\n\
        maria.json:\n  \
        {\"user\": {\"id\": \"user_2abc\", \"first_name\": \"Maria\", \"last_name\": \
        \"Doe\", \"public_metadata\": {}}}\n\n\
        Exit status:\n  \
        0  rendered (or signed)\n  \
        1  the template or the subject is wrong (the claim's path and the offending text are \
        printed), or a file cannot be read\n  \
        2  a usage error (e.g. --lifetime outside 30 to 315360000)"
    )]
    Render {
        /// The template: a JSON object of claims, or `-` to read it from standard input.
        #[arg(value_name = "TEMPLATE.json")]
        template: PathBuf,
        /// The data the shortcodes read: {"user": {…}, "org": {…}, "session": {…}, …}.
        #[arg(long, value_name = "SUBJECT.json")]
        subject: PathBuf,
        /// Print a signed token instead of the claims.
        #[arg(long)]
        sign: bool,
        /// Seconds from `iat` to `exp`.
        #[arg(long, value_name = "SECONDS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(30..=315_360_000))]
        lifetime: u64,
        /// Seconds `nbf` lies before `iat`.
        #[arg(long, value_name = "SECONDS", default_value_t = 5,
              value_parser = clap::value_parser!(u64).range(0..=300))]
        allowed_clock_skew: u64,
        /// The `sub` claim (default: the subject's user.id, else its machine.id).
        #[arg(long)]
        sub: Option<String>,
        /// The `azp` claim, which Clerk takes from the request's Origin (default: none).
        #[arg(long, value_name = "ORIGIN")]
        azp: Option<String>,
        /// The `iss` claim.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8787")]
        issuer: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token: POST {CLERK_API_URL}/m2m_tokens. Prints the token resource (with `token`).
    #[command(
        long_about = "Create a token for the machine whose secret key is \
        CLERK_MACHINE_SECRET_KEY: POST {CLERK_API_URL}/m2m_tokens with the body Clerk's SDK \
        sends. Prints the created token resource as JSON; the token itself is its `token`, and \
        its `id` is what `token revoke` takes.",
        after_help = "Examples:\n  \
        machine-auth token create\n  \
        machine-auth token create --format jwt --expires-in 600 --claims '{\"job\":\"nightly\"}'\n  \
        TOKEN=$(machine-auth token create --format jwt | jq -r .token)\n\n\
        Exit status:\n  \
        0  created\n  \
        1  the API refused the request (its message is printed), or --claims is not an object\n  \
        2  CLERK_MACHINE_SECRET_KEY or CLERK_API_URL is missing or wrong, or the API could not \
        be reached"
    )]
    Create {
        /// The token format (Clerk's default is opaque).
        #[arg(long, value_enum, default_value_t = Format::Opaque)]
        format: Format,
        /// Custom claims, as a JSON object.
        #[arg(long, value_name = "JSON")]
        claims: Option<String>,
        /// The lifetime in seconds (default: the machine's, at Clerk one hour).
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke a token: POST {CLERK_API_URL}/m2m_tokens/{ID}/revoke. Prints the token resource.
    #[command(
        long_about = "Revoke a token with CLERK_MACHINE_SECRET_KEY: POST \
        {CLERK_API_URL}/m2m_tokens/{ID}/revoke. Opaque tokens are refused at once; a JWT stays \
        valid where it is verified locally until it expires. Prints the revoked token resource.",
        after_help = "Examples:\n  \
        machine-auth token revoke mt_0123456789abcdef0123456789abcdef\n  \
        machine-auth token revoke mt_0123456789abcdef0123456789abcdef --reason leaked\n\n\
        Exit status:\n  \
        0  revoked\n  \
        1  the API refused the request (e.g. 404: no such token for this machine)\n  \
        2  CLERK_MACHINE_SECRET_KEY or CLERK_API_URL is missing or wrong, or the API could not \
        be reached"
    )]
    Revoke {
        /// The token's id (`mt_…`, the `id` of the created resource, not the token itself).
        id: String,
        /// Why, kept with the token.
        #[arg(long, value_name = "TEXT")]
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

/// Where the token commands send their requests. The machine secret key is read from
/// CLERK_MACHINE_SECRET_KEY only, never from the command line (where `ps` and the shell's history
/// would show it).
#[derive(clap::Args)]
struct Api {
    /// Clerk's Backend API, or `machine-auth dev`'s URL.
    #[arg(long, env = "CLERK_API_URL", default_value = DEFAULT_CLERK_API_URL, value_name = "URL")]
    api_url: String,
}

/// A failure, and the exit status it gets.
#[derive(Debug)]
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn rejected(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_REJECTED,
        }
    }

    fn unavailable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_UNAVAILABLE,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Dev { .. } => "warn,machine_auth=info,tower_machine_auth=info",
        _ => "warn",
    };
    // Logs go to standard error: standard output is for results (and `dev`'s export lines).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .try_init();
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
                host,
                port,
                data_dir,
                config,
                allowed_hosts,
            } => dev(host, port, data_dir, config, allowed_hosts).await,
            Command::Token(TokenCommand::Create {
                format,
                claims,
                expires_in,
                api,
            }) => create(format, claims, expires_in, &api).await,
            Command::Token(TokenCommand::Revoke { id, reason, api }) => {
                revoke(&id, reason, &api).await
            }
            Command::Verify { token } => verify(&read_token(token.as_deref(), "verify")?).await,
            Command::Inspect { token } => inspect(&read_token(token.as_deref(), "inspect")?),
            Command::Template(TemplateCommand::Render {
                template,
                subject,
                sign,
                lifetime,
                allowed_clock_skew,
                sub,
                azp,
                issuer,
            }) => render_template(
                &template,
                &subject,
                &Rendering {
                    sign,
                    lifetime,
                    allowed_clock_skew,
                    sub,
                    azp,
                    issuer,
                },
            ),
        }
    });
    // Background tasks (JWKS refresh, idle connections) must not delay the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("machine-auth: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The variable `verify` and `inspect` read the token from when it is not an argument.
const TOKEN_VARIABLE: &str = "MACHINE_AUTH_TOKEN";

/// The token of `machine-auth COMMAND`: the argument (with a warning: `ps` shows it), standard
/// input for `-`, else MACHINE_AUTH_TOKEN, else standard input; trimmed, and never empty.
fn read_token(argument: Option<&str>, command: &str) -> Result<String, Failure> {
    let token = match argument {
        Some("-") => read_stdin_token()?,
        Some(token) => {
            eprintln!(
                "machine-auth: warning: the token is an argument: other users can see it in `ps`, \
                 and the shell's history keeps it; pipe it (printf '%s' \"$TOKEN\" | \
                 machine-auth {command}) or set {TOKEN_VARIABLE}"
            );
            token.to_owned()
        }
        None => match std::env::var_os(TOKEN_VARIABLE) {
            Some(token) => token
                .into_string()
                .map_err(|_| Failure::rejected(format!("{TOKEN_VARIABLE} is not valid UTF-8")))?,
            None => read_stdin_token()?,
        },
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(Failure::rejected(format!(
            "the token is empty: pipe it on standard input (printf '%s' \"$TOKEN\" | \
             machine-auth {command}) or set {TOKEN_VARIABLE}"
        )));
    }
    Ok(token.to_owned())
}

/// The token on standard input: all of it, or its first line when it is a terminal.
fn read_stdin_token() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let mut token = String::new();
    let read = if stdin.is_terminal() {
        eprintln!("machine-auth: paste the token, then press Enter");
        stdin.lock().take(MAX_STDIN_TOKEN).read_line(&mut token)
    } else {
        stdin
            .lock()
            .take(MAX_STDIN_TOKEN)
            .read_to_string(&mut token)
    };
    read.map_err(|error| {
        Failure::rejected(format!(
            "cannot read the token from standard input: {error}"
        ))
    })?;
    Ok(token)
}

/// Writes `text` to standard output and flushes it; a closed pipe (`| head`) is not an error.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// A result, as pretty JSON on standard output.
fn emit_json(value: &impl serde::Serialize) {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    emit(&text);
}

// ---------------------------------------------------------------------------------------------
// dev

/// The demo, or the configuration file, parsed (unknown fields refused) and validated.
fn load_config(path: Option<&Path>) -> Result<IssuerConfig, Failure> {
    let Some(path) = path else {
        return Ok(IssuerConfig::demo());
    };
    let text = std::fs::read_to_string(path).map_err(|error| {
        Failure::unavailable(format!(
            "cannot read the configuration {}: {error}",
            path.display()
        ))
    })?;
    // `from_json` names the failing field (`machines[0].id`, …) and validates.
    IssuerConfig::from_json(&text).map_err(|error| {
        Failure::unavailable(format!(
            "{}: {error} (see `machine-auth dev --help` for an example)",
            path.display()
        ))
    })
}

async fn dev(
    host: IpAddr,
    port: u16,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    allowed_hosts: Vec<String>,
) -> Result<(), Failure> {
    let demo = config.is_none();
    let config = load_config(config.as_deref())?;
    let bind = SocketAddr::new(host, port);
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|error| {
        let hint = match error.kind() {
            std::io::ErrorKind::AddrInUse => "choose another --port, or --port 0 for a free one",
            std::io::ErrorKind::AddrNotAvailable => {
                "--host must be an address of this machine, or 0.0.0.0 or :: for all of them"
            }
            _ => "choose another --host or --port",
        };
        Failure::unavailable(format!("cannot listen on {bind}: {error} ({hint})"))
    })?;
    let address = listener
        .local_addr()
        .map_err(|error| Failure::unavailable(format!("no local address: {error}")))?;
    let listening = format!("http://{address}");
    let reach = Reach::new(address, &allowed_hosts, this_host_name().as_deref());
    // The `iss` of its JWTs: the URL other machines use, when it is known.
    let issuer_url = if reach.kind == ReachKind::Placeholder {
        &listening
    } else {
        &reach.url
    };
    let mut builder = Issuer::builder(config.clone()).issuer_url(issuer_url);
    if let Some(dir) = &data_dir {
        builder = builder.data_dir(dir);
    }
    let issuer = builder.build().map_err(|error| match &data_dir {
        Some(dir) => Failure::unavailable(format!(
            "cannot start the issuer with the data directory {}: {error}",
            dir.display()
        )),
        None => Failure::unavailable(format!("cannot start the issuer: {error}")),
    })?;
    let public_key = issuer
        .public_key_pem()
        .map_err(|error| Failure::unavailable(format!("no public key: {error}")))?;

    if !address.ip().is_loopback() {
        eprint!("{}", exposure_warning(address, demo));
    }
    emit(&export_lines(
        &listening,
        &reach,
        &config,
        &public_key,
        data_dir.is_none(),
    ));
    tracing::info!(
        issuer = %issuer.issuer_url(),
        machines = config.machines.len(),
        data_dir = ?data_dir,
        "issuer ready; Ctrl-C stops it"
    );
    let mut names = allowed_hosts;
    names.extend(reach.name_to_answer().map(str::to_owned));
    let hosts = Arc::new(AllowedHosts::new(names, address.port()));
    let app = issuer
        .router()
        .layer(axum::middleware::from_fn_with_state(hosts, check_host));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|error| Failure::unavailable(format!("the issuer stopped: {error}")))?;
    tracing::info!("stopped");
    Ok(())
}

/// What `dev` prints on standard error when it listens on a non-loopback address.
fn exposure_warning(address: SocketAddr, demo: bool) -> String {
    let mut warning = format!(
        "machine-auth: WARNING: listening on {ip}, not a loopback address: anyone who can reach \
         this machine on port {port} can use this issuer, which serves tokens and receives \
         secret keys over plain http (unencrypted, readable on the network).\n\
         machine-auth: WARNING: for development and CI only, on a network you trust; never in \
         production.\n",
        ip = address.ip(),
        port = address.port(),
    );
    if demo {
        warning.push_str(
            "machine-auth: WARNING: the built-in demo's keys are public: anyone who reaches this \
             issuer can create tokens with them (--config sets your own).\n",
        );
    }
    warning
}

/// The placeholder host of the printed URL when `dev` listens on every interface and knows no
/// name for this machine.
const HOST_PLACEHOLDER: &str = "<this-host>";

/// Where other machines reach `dev`: the URL its export lines print.
#[derive(Debug, PartialEq)]
struct Reach {
    /// `http://HOST:PORT`.
    url: String,
    /// The URL's host (an IPv6 address in brackets).
    host: String,
    kind: ReachKind,
}

/// How the printed URL's host was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ReachKind {
    /// The loopback address `dev` listens on (plain http to it is allowed without more ado).
    Loopback,
    /// The non-loopback address given with `--host`.
    Address,
    /// `dev` listens on every interface (0.0.0.0, ::): the first `--allowed-host` name.
    AllowedHost,
    /// `dev` listens on every interface: this machine's host name.
    HostName,
    /// `dev` listens on every interface, and knows no name for this machine:
    /// [`HOST_PLACEHOLDER`], for the user to replace.
    Placeholder,
}

impl Reach {
    fn new(address: SocketAddr, allowed_hosts: &[String], host_name: Option<&str>) -> Self {
        let ip = address.ip();
        let literal = match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let (host, kind) = if ip.is_loopback() {
            (literal, ReachKind::Loopback)
        } else if !ip.is_unspecified() {
            (literal, ReachKind::Address)
        } else if let Some(name) = allowed_hosts.first() {
            (name.clone(), ReachKind::AllowedHost)
        } else if let Some(name) = host_name {
            (name.to_owned(), ReachKind::HostName)
        } else {
            (HOST_PLACEHOLDER.to_owned(), ReachKind::Placeholder)
        };
        Self {
            url: format!("http://{host}:{}", address.port()),
            host,
            kind,
        }
    }

    /// The name the `Host` check answers to besides loopback names and `--allowed-host`'s: the
    /// URL's host, when `dev` chose it. (An address literal cannot serve DNS rebinding.)
    fn name_to_answer(&self) -> Option<&str> {
        match self.kind {
            ReachKind::Loopback | ReachKind::Address | ReachKind::HostName => Some(&self.host),
            ReachKind::AllowedHost | ReachKind::Placeholder => None,
        }
    }
}

/// This machine's host name, for the URL other machines use when `dev` listens on every
/// interface: the kernel's (Linux), /etc/hostname's, or HOSTNAME; not `localhost`.
fn this_host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .find(|name| {
            parse_host_name(name).is_ok()
                && !name.starts_with('[')
                && !name
                    .split('.')
                    .next()
                    .is_some_and(|label| label.eq_ignore_ascii_case("localhost"))
        })
}

/// `--host`'s value: an IP address to listen on (an IPv6 one with or without brackets), or
/// `localhost` for 127.0.0.1.
fn parse_bind_address(value: &str) -> Result<IpAddr, String> {
    if value.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    let inner = value
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(value);
    inner
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| BIND_ADDRESS_EXPECTED.to_owned())
}

/// What `--host` takes, for its error message.
const BIND_ADDRESS_EXPECTED: &str = "an IP address of this machine to listen on, without a \
    port: 127.0.0.1 (the default), 0.0.0.0 or :: (every interface, to be reached from other \
    machines or containers), or one of its addresses; a name other machines use for it goes in \
    --allowed-host";

/// The title of the block of lines for machine B, the server that verifies tokens.
const MACHINE_B_TITLE: &str = "# === Machine B (the server that verifies) ===";
/// The title of the block of lines for machine A, the caller that creates tokens.
const MACHINE_A_TITLE: &str = "# === Machine A (the caller that creates tokens) ===";
/// The title of the commented keys of the machines that are neither A nor B.
const OTHER_MACHINES_TITLE: &str =
    "# === The other machines (each key belongs on its own machine only) ===";

/// What `dev` prints on standard output once it listens: the `listening on` line (the address
/// it listens on), then one block of lines to paste into the shell of machine B (the server that
/// verifies), one for machine A (the caller that creates tokens), and the other machines' keys as
/// comments. Machine A is the first machine, and machine B the machine A may call: A's first
/// scope, B's `CLERK_MACHINE_ID`. Each block holds only what its machine needs: A's secret key is
/// never in B's block (B verifies opaque tokens with its own machine's key), nor the instance key
/// in A's. Both point at `reach`'s URL, and allow plain http to its host when it is not loopback.
fn export_lines(
    listening: &str,
    reach: &Reach,
    config: &IssuerConfig,
    public_key_pem: &str,
    in_memory: bool,
) -> String {
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    let client = config.machines.first();
    let scopes = client.map_or(&[][..], |client| client.scopes.as_slice());
    // Machine B, when machine A may call one; and B's own key, when it is a configured machine
    // other than A.
    let server_id = scopes.first();
    let server = server_id.and_then(|id| config.machines.iter().find(|machine| &machine.id == id));
    let server_key = server.filter(|server| client.is_none_or(|client| client.id != server.id));
    let url = [
        format!("export CLERK_API_URL={}", shell_quote(&reach.url)),
        format!(
            "# Allows plain http to this one host (the issuer's); every other host still needs \
             https:\nexport {ALLOW_HTTP_HOST_VARIABLE}={}",
            shell_quote(&reach.host)
        ),
    ];
    let api_url = if reach.kind == ReachKind::Loopback {
        &url[..1]
    } else {
        &url[..]
    };

    line(&format!("listening on {listening}"));
    match reach.kind {
        ReachKind::Loopback | ReachKind::Address => {}
        ReachKind::AllowedHost => {
            line("");
            line(&format!(
                "# Other machines reach this issuer as {} (the first --allowed-host): that name",
                printable(&reach.host)
            ));
            line("# must resolve to this machine where they run.");
        }
        ReachKind::HostName => {
            line("");
            line(&format!(
                "# Other machines reach this issuer by this machine's host name, {}. If they know",
                printable(&reach.host)
            ));
            line("# it by another name (e.g. its docker compose service's), put that name in both");
            line("# blocks, and give it to `dev` with --allowed-host (other names get 421).");
        }
        ReachKind::Placeholder => {
            line("");
            line(&format!(
                "# Replace {HOST_PLACEHOLDER} in both blocks with the name other machines reach this one by"
            ));
            line("# (e.g. its docker compose service's), and give that name to `dev` with");
            line("# --allowed-host (other names get 421).");
        }
    }

    line("");
    line(MACHINE_B_TITLE);
    match (server_id, server) {
        (Some(_), Some(server)) => line(&format!(
            "# {} ({}), the machine that machine A may call. Paste into its shell:",
            printable(&server.id),
            printable(&server.name)
        )),
        (Some(id), None) => line(&format!(
            "# {}, the machine that machine A may call (not a machine of this configuration, so \
             no key of its own here). Paste into its shell:",
            printable(id)
        )),
        (None, _) => line("# The server machine A would call. Paste into its shell:"),
    }
    for text in api_url {
        line(text);
    }
    line("# The public key: JWTs verified without network.");
    line(&format!(
        "export CLERK_JWT_KEY={}",
        shell_quote(public_key_pem.trim())
    ));
    match scopes {
        [server_id, others @ ..] => {
            line(
                "# Its own machine id: it accepts only tokens scoped to it (others: 401 \
                 token-invalid-receiver).",
            );
            line(&format!(
                "export CLERK_MACHINE_ID={}",
                shell_quote(server_id)
            ));
            if !others.is_empty() {
                line(&format!(
                    "# (Machine A may also call {}: each of those servers sets its own id and key.)",
                    printable(&others.join(", "))
                ));
            }
        }
        [] => {
            line("# Its own machine id: none yet, machine A may call no machine. Add the server's");
            line(
                "# id to machine A's scopes, then set it here (the server then accepts only tokens",
            );
            line("# scoped to it):");
            line("# export CLERK_MACHINE_ID=mch_…");
        }
    }
    let instance_key = format!(
        "export CLERK_SECRET_KEY={}",
        shell_quote(&config.instance_secret_key)
    );
    match server_key {
        Some(server) => {
            line(
                "# Its own machine secret key: it verifies the opaque tokens (mt_…) meant for it.",
            );
            line(&format!(
                "export CLERK_MACHINE_SECRET_KEY={}",
                shell_quote(&server.secret_key)
            ));
            line("# Or, to fetch the JWKS rather than pin the public key, unset CLERK_JWT_KEY and");
            line("# set the instance key. It is the whole instance's key (it verifies and revokes");
            line("# every machine's tokens): only on servers that need it.");
            line(&format!("# {instance_key}"));
        }
        None => {
            line("# The instance key: it verifies opaque tokens (mt_…) of every machine, and");
            line("# fetches the JWKS when CLERK_JWT_KEY is unset.");
            line(&instance_key);
        }
    }

    line("");
    line(MACHINE_A_TITLE);
    match client {
        Some(client) => {
            line(&format!("# {}. Paste into its shell:", describe(client)));
            for text in api_url {
                line(text);
            }
            line(
                "# WARNING: never give machine A's key to machine B: B uses its own machine's key \
                 (with A's, it answers 401 to valid opaque tokens).",
            );
            line(&format!(
                "export CLERK_MACHINE_SECRET_KEY={}",
                shell_quote(&client.secret_key)
            ));
        }
        None => line("# No machine is configured: add one to create tokens."),
    }

    let others: Vec<&MachineConfig> = config
        .machines
        .iter()
        .skip(1)
        .filter(|machine| server_key.is_none_or(|server| server.id != machine.id))
        .collect();
    if !others.is_empty() {
        line("");
        line(OTHER_MACHINES_TITLE);
        for machine in others {
            let export = format!(
                "export CLERK_MACHINE_SECRET_KEY={}",
                shell_quote(&machine.secret_key)
            );
            line(&format!(
                "# {}  # {}",
                printable(&export),
                describe(machine)
            ));
        }
    }

    line("");
    if in_memory {
        line("# Keys and tokens live in memory: pass --data-dir to keep them across restarts.");
    }
    line("# Ctrl-C stops the issuer.");
    out
}

/// `mch_cron_service (Cron service, may call mch_reports_api)`, for a comment line.
fn describe(machine: &MachineConfig) -> String {
    let scopes = if machine.scopes.is_empty() {
        "no other machine".to_owned()
    } else {
        machine.scopes.join(", ")
    };
    printable(&format!(
        "{} ({}, may call {scopes})",
        machine.id, machine.name
    ))
}

/// `text` for a comment line that users paste into a shell: control characters (a newline would
/// end the comment and run the rest), line separators and the invisible characters that reorder
/// or hide text (bidi overrides, zero-width spaces) are written escaped, as `\n` or `\u{202e}`.
fn printable(text: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if hidden(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// `value` as one shell word: as is when that is safe, else in single quotes (which keep
/// newlines, so a PEM pastes as one value).
fn shell_quote(value: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_-.,:/@%+=".contains(&b);
    if !value.is_empty() && value.bytes().all(plain) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

// ---------------------------------------------------------------------------------------------
// dev: the Host check

/// The host names `dev` answers to: `localhost`, `127.0.0.1`, `[::1]`, those of `--allowed-host`
/// and the host of the URL it printed when it chose it ([`Reach::name_to_answer`]), each alone or
/// with the listening port. A web page on another site whose name was made to
/// resolve to 127.0.0.1 (DNS rebinding) sends its own name in `Host`, and is refused.
#[derive(Debug)]
struct AllowedHosts {
    /// Lowercase.
    names: Vec<String>,
    port: u16,
}

impl AllowedHosts {
    fn new(extra: Vec<String>, port: u16) -> Self {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        names.extend(extra.into_iter().map(|name| name.to_ascii_lowercase()));
        Self { names, port }
    }

    /// Whether `host` (a `Host` header, or a URI's authority) is one of the names, alone or with
    /// the listening port.
    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let (name, port) = match host.rfind(':') {
            // `[::1]` has colons of its own.
            Some(colon) if !host[colon..].contains(']') => {
                (&host[..colon], Some(&host[colon + 1..]))
            }
            _ => (host.as_str(), None),
        };
        let port_ok = port.is_none_or(|port| {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>() == Ok(self.port)
        });
        port_ok && self.names.iter().any(|allowed| allowed == name)
    }
}

/// `--allowed-host`'s value: a DNS name, an IPv4 address or a bracketed IPv6 address, without a
/// port.
fn parse_host_name(value: &str) -> Result<String, String> {
    let dns_name = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let ipv6 = value
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok());
    if dns_name || ipv6 {
        Ok(value.to_owned())
    } else {
        Err(
            "a host name such as issuer.dev.test (letters, digits, `-` and `.`), or an address \
             such as 10.0.0.5 or [fd00::5], without a port"
                .to_owned(),
        )
    }
}

/// Answers 421 Misdirected Request, in Clerk's error shape, to a request for another host name
/// than the allowed ones (or with no `Host`, or several).
async fn check_host(
    axum::extract::State(hosts): axum::extract::State<Arc<AllowedHosts>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut headers = request.headers().get_all(axum::http::header::HOST).iter();
    let header = match (headers.next(), headers.next()) {
        (Some(host), None) => Some(host.to_str().ok()),
        (None, _) => None,
        (Some(_), Some(_)) => Some(None),
    };
    // An absolute request target (`GET http://name/path`, or HTTP/2's `:authority`) names the
    // host as well: both must be allowed, and one must be there.
    let authority = request
        .uri()
        .authority()
        .map(|authority| authority.as_str());
    let allowed = match (header, authority) {
        (None, None) | (Some(None), _) => false,
        (Some(Some(host)), authority) => {
            hosts.allows(host) && authority.is_none_or(|authority| hosts.allows(authority))
        }
        (None, Some(authority)) => hosts.allows(authority),
    };
    if allowed {
        return next.run(request).await;
    }
    tracing::warn!(
        host = ?header.flatten().or(authority),
        "refused a request for another host name: add it with --allowed-host if it is yours"
    );
    let body = json!({"errors": [{
        "code": "host_invalid",
        "message": "Misdirected request",
        "long_message": "this issuer answers only to localhost, 127.0.0.1 and [::1], to the \
            host of the URL it printed, and to the names given with --allowed-host (with or \
            without its port)",
    }]});
    (
        axum::http::StatusCode::MISDIRECTED_REQUEST,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// token create / revoke

impl Api {
    /// Clerk's machine-token API at CLERK_API_URL, with the key of CLERK_MACHINE_SECRET_KEY.
    fn tokens(&self) -> Result<M2mTokens, Failure> {
        let key = std::env::var("CLERK_MACHINE_SECRET_KEY").unwrap_or_default();
        if key.trim().is_empty() {
            return Err(Failure::unavailable(
                "set CLERK_MACHINE_SECRET_KEY to the machine secret key (ak_…); `machine-auth dev` \
                 prints one",
            ));
        }
        let allowed_host = std::env::var(ALLOW_HTTP_HOST_VARIABLE).unwrap_or_default();
        let tokens = match allowed_host.trim() {
            "" => M2mTokens::new(&self.api_url, &key),
            host => M2mTokens::new_allowing_http_host(&self.api_url, &key, host),
        };
        tokens.map_err(|error| {
            Failure::unavailable(format!(
                "{error}: set CLERK_API_URL to Clerk's Backend API ({DEFAULT_CLERK_API_URL}, the \
                 default) or to the URL `machine-auth dev` prints"
            ))
        })
    }
}

/// Prints the resource Clerk answered with, or fails with what went wrong.
fn answered(reply: Result<serde_json::Map<String, Value>, M2mApiError>) -> Result<(), Failure> {
    match reply {
        Ok(resource) => {
            emit_json(&resource);
            Ok(())
        }
        Err(error @ M2mApiError::Refused { status: 401, .. }) => Err(Failure::rejected(format!(
            "{error} (check CLERK_MACHINE_SECRET_KEY: the machine secret key, ak_…, of this API)"
        ))),
        Err(error @ (M2mApiError::Refused { .. } | M2mApiError::NotATokenId)) => {
            Err(Failure::rejected(error.to_string()))
        }
        Err(error) => Err(Failure::unavailable(error.to_string())),
    }
}

async fn create(
    format: Format,
    claims: Option<String>,
    expires_in: Option<u64>,
    api: &Api,
) -> Result<(), Failure> {
    let claims = match claims {
        None => Value::Null,
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(claims @ Value::Object(_)) => claims,
            Ok(_) => {
                return Err(Failure::rejected(
                    "--claims must be a JSON object, e.g. --claims '{\"job\":\"nightly\"}'",
                ));
            }
            Err(error) => {
                return Err(Failure::rejected(format!(
                    "--claims is not JSON ({error}); it must be a JSON object, e.g. --claims \
                     '{{\"job\":\"nightly\"}}'"
                )));
            }
        },
    };
    let format = match format {
        Format::Jwt => TokenFormat::Jwt,
        Format::Opaque => TokenFormat::Opaque,
    };
    let claims = match claims {
        Value::Object(claims) => Some(claims),
        _ => None,
    };
    let tokens = api.tokens()?;
    // Exactly what Clerk's SDK sends (`m2m.createToken`).
    answered(
        tokens
            .create_token(format, expires_in.map(Duration::from_secs), claims.as_ref())
            .await,
    )
}

async fn revoke(id: &str, reason: Option<String>, api: &Api) -> Result<(), Failure> {
    let tokens = api.tokens()?;
    // Exactly what Clerk's SDK sends (`m2m.revokeToken`).
    answered(tokens.revoke_token(id, reason.as_deref()).await)
}

// ---------------------------------------------------------------------------------------------
// verify / inspect

async fn verify(token: &str) -> Result<(), Failure> {
    let verifier = MachineVerifier::from_env()
        .map_err(|error| Failure::unavailable(format!("misconfigured: {error}")))?;
    match verifier.verify(token).await {
        Ok(machine) => {
            emit_json(&machine);
            Ok(())
        }
        Err(error) if error.reason() == Reason::VerifierUnavailable => Err(Failure::unavailable(
            format!("unavailable: {}: {error}", error.reason()),
        )),
        Err(error) => {
            let mut message = format!("rejected: {}: {error}", error.reason());
            let machine_key =
                std::env::var("CLERK_MACHINE_SECRET_KEY").is_ok_and(|key| !key.trim().is_empty());
            if error.reason() == Reason::TokenInvalid && token.starts_with("mt_") && machine_key {
                message.push_str(
                    "\nmachine-auth: note: with CLERK_MACHINE_SECRET_KEY set, the issuer knows only \
                     the opaque tokens meant for that machine (in their `scopes`): verify with the \
                     receiving machine's key, or unset it to verify with CLERK_SECRET_KEY",
                );
            }
            if error.reason() == Reason::TokenInvalidReceiver {
                message.push_str(
                    "\nmachine-auth: note: CLERK_MACHINE_ID is set, and the token's scopes do not \
                     include it: the token is meant for another machine (unset CLERK_MACHINE_ID \
                     to verify it for any machine)",
                );
            }
            Err(Failure::rejected(message))
        }
    }
}

fn inspect(token: &str) -> Result<(), Failure> {
    if token.starts_with("mt_") {
        return Err(Failure::rejected(
            "this is an opaque machine token: it carries nothing to decode, and only its issuer \
             knows what it stands for; verify it at the issuer with `machine-auth verify`",
        ));
    }
    if token.starts_with("ak_") || token.starts_with("sk_") {
        return Err(Failure::rejected(
            "this is a secret key, not a token: keep it out of logs and tickets",
        ));
    }
    let segments: Vec<&str> = token.split('.').collect();
    let [header, payload, _signature] = segments[..] else {
        let count = segments.len();
        return Err(Failure::rejected(if count == 5 {
            "this looks like an encrypted JWT (JWE, five segments): its claims cannot be read \
             without the key"
                .to_owned()
        } else {
            format!(
                "not a JWT: a JWT has three base64url segments separated by dots, this has {count}"
            )
        }));
    };
    let decode = |segment: &str, what: &str| -> Result<Value, Failure> {
        let bytes = URL_SAFE_NO_PAD
            .decode(segment.trim_end_matches('='))
            .map_err(|_| Failure::rejected(format!("not a JWT: the {what} is not base64url")))?;
        match serde_json::from_slice(&bytes) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(Failure::rejected(format!(
                "not a JWT: the {what} is not a JSON object"
            ))),
        }
    };
    let decoded = json!({
        "unverified": true,
        "header": decode(header, "header")?,
        "claims": decode(payload, "payload")?,
    });
    eprintln!(
        "machine-auth: warning: NOT VERIFIED: nothing was checked (signature, expiry, issuer); \
         use `machine-auth verify` to verify"
    );
    emit_json(&decoded);
    Ok(())
}

/// How `template render` fills the default claims, and whether it signs.
struct Rendering {
    sign: bool,
    lifetime: u64,
    allowed_clock_skew: u64,
    sub: Option<String>,
    azp: Option<String>,
    issuer: String,
}

/// Longest template or subject file read.
const MAX_INPUT_FILE: u64 = 1024 * 1024;

fn render_template(template: &Path, subject: &Path, rendering: &Rendering) -> Result<(), Failure> {
    let (_, compiled) = Template::parse(&read_input(template)?)
        .map_err(|error| Failure::rejected(format!("{}: {error}", input_name(template))))?;
    let subject_data = read_subject(subject)?;
    let sub = match &rendering.sub {
        Some(sub) => sub.clone(),
        None => ["user", "machine"]
            .iter()
            .find_map(|root| subject_data[root]["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::rejected(format!(
                    "{}: no user.id (or machine.id) to use as the sub claim: add one, or pass \
                     --sub",
                    input_name(subject)
                ))
            })?,
    };
    let issuer = Issuer::builder(IssuerConfig::demo())
        .issuer_url(&rendering.issuer)
        .build()
        .map_err(|error| Failure::unavailable(format!("cannot start an issuer: {error}")))?;
    let (lifetime, skew, azp) = (
        rendering.lifetime,
        rendering.allowed_clock_skew,
        rendering.azp.as_deref(),
    );
    let internal = |error: IssuerError| Failure::unavailable(format!("cannot render: {error}"));
    if rendering.sign {
        let token = issuer
            .template_token(&compiled, &subject_data, &sub, lifetime, skew, azp)
            .map_err(internal)?;
        let public_key = issuer.public_key_pem().map_err(internal)?;
        eprintln!("machine-auth: signed with a fresh key; its public key:\n{public_key}");
        emit(&token);
    } else {
        let claims = issuer
            .template_claims(&compiled, &subject_data, &sub, lifetime, skew, azp)
            .map_err(internal)?;
        emit_json(&claims);
    }
    Ok(())
}

/// A file's text (at most 1 MiB), or standard input for `-`.
fn read_input(path: &Path) -> Result<String, Failure> {
    let unreadable = |error: std::io::Error| {
        Failure::rejected(format!("cannot read {}: {error}", input_name(path)))
    };
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_INPUT_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path)
            .map_err(unreadable)?
            .take(MAX_INPUT_FILE + 1)
            .read_to_string(&mut text)
    };
    read.map_err(unreadable)?;
    if text.len() as u64 > MAX_INPUT_FILE {
        return Err(Failure::rejected(format!(
            "{} is larger than 1 MiB",
            input_name(path)
        )));
    }
    Ok(text)
}

/// How an input file is named in messages.
fn input_name(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// The subject file: a JSON object whose keys are roots shortcodes can name.
fn read_subject(path: &Path) -> Result<Value, Failure> {
    let wrong = |problem: String| Failure::rejected(format!("{}: {problem}", input_name(path)));
    let subject: Value = serde_json::from_str(&read_input(path)?).map_err(|error| {
        wrong(format!(
            "not valid JSON (line {}, column {})",
            error.line(),
            error.column()
        ))
    })?;
    let Some(roots) = subject.as_object() else {
        return Err(wrong(
            "the subject is a JSON object by root, such as {\"user\": {\"id\": \"user_1\"}}".into(),
        ));
    };
    if let Some(unknown) = roots
        .keys()
        .find(|root| !SHORTCODE_ROOTS.contains(&root.as_str()))
    {
        return Err(wrong(format!(
            "`{unknown}` is not a root a shortcode can read (one of {})",
            SHORTCODE_ROOTS.join(", ")
        )));
    }
    Ok(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("ak_demo_123"), "ak_demo_123");
        assert_eq!(shell_quote("http://127.0.0.1:80"), "http://127.0.0.1:80");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$x"), "'$x'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_layer_gets_the_id_of_the_machine_the_client_may_call() {
        let exports = |config: &IssuerConfig| {
            export_lines("http://127.0.0.1:8787", &loopback(), config, "PEM", true)
        };
        let demo = exports(&IssuerConfig::demo());
        assert!(
            demo.contains("\nexport CLERK_MACHINE_ID=mch_reports_api\n"),
            "{demo}"
        );
        assert!(
            demo.contains("# mch_reports_api (Reports API), the machine that machine A may call."),
            "{demo}"
        );

        let mut config = IssuerConfig::demo();
        config.machines[0].scopes = vec!["mch_billing".to_owned(), "mch_ledger".to_owned()];
        let several = exports(&config);
        assert!(
            several.contains("\nexport CLERK_MACHINE_ID=mch_billing\n"),
            "{several}"
        );
        assert!(several.contains("also call mch_ledger"), "{several}");

        config.machines[0].scopes.clear();
        let none = exports(&config);
        assert!(!none.contains("\nexport CLERK_MACHINE_ID="), "{none}");
        assert!(
            none.contains("\n# export CLERK_MACHINE_ID=mch_…\n"),
            "{none}"
        );
    }

    /// Where `dev` is reached when it listens on 127.0.0.1:8787.
    fn loopback() -> Reach {
        Reach::new(SocketAddr::from(([127, 0, 0, 1], 8787)), &[], None)
    }

    #[test]
    fn host_takes_an_ip_address_without_a_port() {
        for (value, expected) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.2", "127.0.0.2"),
            ("localhost", "127.0.0.1"),
            ("LocalHost", "127.0.0.1"),
            ("0.0.0.0", "0.0.0.0"),
            ("10.0.0.5", "10.0.0.5"),
            ("::", "::"),
            ("[::]", "::"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("fd00::5", "fd00::5"),
            ("::ffff:127.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(
                parse_bind_address(value),
                Ok(expected.parse::<IpAddr>().unwrap()),
                "{value}"
            );
        }
        for value in [
            "",
            " ",
            "nope",
            "issuer.dev.test",
            "300.1.1.1",
            "127.0.0.1:80",
            "[::1]:80",
            "::1]",
            "http://0.0.0.0",
            "0.0.0.0/0",
            "*",
        ] {
            let error = parse_bind_address(value).unwrap_err();
            assert!(
                error.contains("0.0.0.0") && error.contains("--allowed-host"),
                "{value}: {error}"
            );
        }
    }

    #[test]
    fn the_printed_url_is_one_other_machines_can_reach() {
        let reach = |address: &str, allowed: &[&str], host_name: Option<&str>| {
            let allowed: Vec<String> = allowed.iter().map(|name| (*name).to_owned()).collect();
            Reach::new(address.parse().unwrap(), &allowed, host_name)
        };
        let cases = [
            (
                reach("127.0.0.1:8787", &["issuer.test"], Some("ci")),
                "127.0.0.1",
                ReachKind::Loopback,
            ),
            (
                reach("127.0.0.2:8787", &[], None),
                "127.0.0.2",
                ReachKind::Loopback,
            ),
            (reach("[::1]:8787", &[], None), "[::1]", ReachKind::Loopback),
            (
                reach("10.0.0.5:8787", &["issuer.test"], Some("ci")),
                "10.0.0.5",
                ReachKind::Address,
            ),
            (
                reach("[fd00::5]:8787", &[], None),
                "[fd00::5]",
                ReachKind::Address,
            ),
            (
                reach("0.0.0.0:8787", &["issuer.test", "other.test"], Some("ci")),
                "issuer.test",
                ReachKind::AllowedHost,
            ),
            (
                reach("[::]:8787", &[], Some("ci-runner")),
                "ci-runner",
                ReachKind::HostName,
            ),
            (
                reach("0.0.0.0:8787", &[], None),
                "<this-host>",
                ReachKind::Placeholder,
            ),
        ];
        for (reach, host, kind) in cases {
            assert_eq!(reach.host, host, "{reach:?}");
            assert_eq!(reach.url, format!("http://{host}:8787"), "{reach:?}");
            assert_eq!(reach.kind, kind, "{reach:?}");
            // The Host check answers to the host `dev` chose (an --allowed-host name already is).
            let answered = matches!(
                kind,
                ReachKind::Loopback | ReachKind::Address | ReachKind::HostName
            );
            assert_eq!(
                reach.name_to_answer(),
                answered.then_some(host),
                "{reach:?}"
            );
        }
        let hosts = AllowedHosts::new(
            reach("127.0.0.2:8787", &[], None)
                .name_to_answer()
                .map(str::to_owned)
                .into_iter()
                .collect(),
            8787,
        );
        assert!(hosts.allows("127.0.0.2:8787") && !hosts.allows("127.0.0.3:8787"));
        let hosts = AllowedHosts::new(vec!["[fd00::5]".to_owned()], 8787);
        assert!(hosts.allows("[fd00::5]:8787"));
    }

    #[test]
    fn a_non_loopback_url_comes_with_the_plain_http_allowance_in_both_blocks() {
        let demo = IssuerConfig::demo();
        let allowance = |printed: &str, title: &str| -> Vec<String> {
            exported(block(printed, title), ALLOW_HTTP_HOST_VARIABLE)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        let printed = export_lines("http://127.0.0.1:8787", &loopback(), &demo, "PEM", true);
        assert!(!printed.contains(ALLOW_HTTP_HOST_VARIABLE), "{printed}");

        let reach = Reach::new(
            "0.0.0.0:8787".parse().unwrap(),
            &["issuer.test".to_owned()],
            None,
        );
        let printed = export_lines("http://0.0.0.0:8787", &reach, &demo, "PEM", true);
        assert!(
            printed.starts_with("listening on http://0.0.0.0:8787\n"),
            "{printed}"
        );
        for title in [MACHINE_B_TITLE, MACHINE_A_TITLE] {
            let lines = block(&printed, title);
            assert_eq!(
                exported(lines, "CLERK_API_URL"),
                ["http://issuer.test:8787"]
            );
            assert_eq!(allowance(&printed, title), ["issuer.test"]);
            assert!(
                lines.contains(&format!(
                    "# Allows plain http to this one host (the issuer's); every other host still \
                     needs https:\nexport {ALLOW_HTTP_HOST_VARIABLE}=issuer.test\n"
                )),
                "{lines}"
            );
        }
        assert!(
            !block(&printed, MACHINE_A_TITLE).contains(&demo.instance_secret_key),
            "{printed}"
        );

        let reach = Reach::new("[::]:8787".parse().unwrap(), &[], None);
        let printed = export_lines("http://[::]:8787", &reach, &demo, "PEM", true);
        for title in [MACHINE_B_TITLE, MACHINE_A_TITLE] {
            // Quoted: `<` and `>` would redirect in a shell.
            assert!(
                block(&printed, title)
                    .contains("\nexport CLERK_API_URL='http://<this-host>:8787'\n"),
                "{printed}"
            );
            assert_eq!(allowance(&printed, title), ["'<this-host>'"]);
        }
        assert!(
            printed.contains("# Replace <this-host> in both blocks with the name"),
            "{printed}"
        );

        let reach = Reach::new("0.0.0.0:8787".parse().unwrap(), &[], Some("ci-runner"));
        let printed = export_lines("http://0.0.0.0:8787", &reach, &demo, "PEM", true);
        assert!(printed.contains("host name, ci-runner."), "{printed}");
        assert!(printed.contains("--allowed-host"), "{printed}");
        for title in [MACHINE_B_TITLE, MACHINE_A_TITLE] {
            assert_eq!(allowance(&printed, title), ["ci-runner"]);
        }
    }

    #[test]
    fn the_exposure_warning_says_who_can_reach_it_and_what_it_is_for() {
        let warning = exposure_warning("0.0.0.0:8787".parse().unwrap(), true);
        for part in [
            "WARNING",
            "0.0.0.0",
            "port 8787",
            "plain http",
            "secret keys",
            "development and CI only",
            "demo's keys are public",
        ] {
            assert!(warning.contains(part), "{part}: {warning}");
        }
        assert!(
            warning
                .lines()
                .all(|line| line.starts_with("machine-auth: WARNING: "))
        );
        assert!(!exposure_warning("10.0.0.5:8787".parse().unwrap(), false).contains("demo"));
    }

    /// The lines between `title` and the next blank line.
    fn block<'a>(printed: &'a str, title: &str) -> &'a str {
        let start = printed
            .find(&format!("\n{title}\n"))
            .unwrap_or_else(|| panic!("no {title}: {printed}"));
        let rest = &printed[start + 1..];
        &rest[..rest.find("\n\n").unwrap_or(rest.len())]
    }

    /// The values of the `export NAME=` lines (not commented) of `block`.
    fn exported<'a>(block: &'a str, name: &str) -> Vec<&'a str> {
        block
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("export {name}=")))
            .collect()
    }

    #[test]
    fn each_machine_gets_a_block_with_only_what_it_needs() {
        let demo = IssuerConfig::demo();
        let [cron, reports, backup] = &demo.machines[..] else {
            panic!("the demo has three machines");
        };
        let printed = export_lines("http://127.0.0.1:8787", &loopback(), &demo, "PEM", true);
        let server = block(&printed, MACHINE_B_TITLE);
        let client = block(&printed, MACHINE_A_TITLE);
        let others = block(&printed, OTHER_MACHINES_TITLE);
        assert!(
            printed.find(MACHINE_B_TITLE) < printed.find(MACHINE_A_TITLE),
            "{printed}"
        );

        // B: the URL, the public key, its own id and its own key; the instance key only as a
        // commented alternative; nothing of A's or of the other machines.
        assert_eq!(exported(server, "CLERK_API_URL"), ["http://127.0.0.1:8787"]);
        assert_eq!(exported(server, "CLERK_JWT_KEY"), ["PEM"]);
        assert_eq!(exported(server, "CLERK_MACHINE_ID"), ["mch_reports_api"]);
        assert_eq!(
            exported(server, "CLERK_MACHINE_SECRET_KEY"),
            [reports.secret_key.as_str()]
        );
        assert!(exported(server, "CLERK_SECRET_KEY").is_empty(), "{server}");
        let commented = format!("# export CLERK_SECRET_KEY={}", demo.instance_secret_key);
        assert!(server.lines().any(|line| line == commented), "{server}");
        for absent in [&cron.secret_key, &backup.secret_key] {
            assert!(!server.contains(absent.as_str()), "{absent}: {server}");
        }

        // A: the URL and its own key, after the one-line warning; no instance key, no PEM, no
        // other machine's key.
        assert_eq!(exported(client, "CLERK_API_URL"), ["http://127.0.0.1:8787"]);
        assert_eq!(
            exported(client, "CLERK_MACHINE_SECRET_KEY"),
            [cron.secret_key.as_str()]
        );
        let lines: Vec<&str> = client.lines().collect();
        let key_at = lines
            .iter()
            .position(|line| line.starts_with("export CLERK_MACHINE_SECRET_KEY="))
            .unwrap();
        assert!(
            lines[key_at - 1].starts_with("# WARNING: never give machine A's key to machine B")
                && lines[key_at - 1].contains("its own machine's key"),
            "{client}"
        );
        for absent in [
            &demo.instance_secret_key,
            &reports.secret_key,
            &backup.secret_key,
        ] {
            assert!(!client.contains(absent.as_str()), "{absent}: {client}");
        }
        assert!(!client.contains("CLERK_JWT_KEY") && !client.contains("CLERK_MACHINE_ID"));

        // The machines that are neither: commented, each with its id.
        assert_eq!(
            others.lines().skip(1).collect::<Vec<_>>(),
            [format!(
                "# export CLERK_MACHINE_SECRET_KEY={}  # mch_backup_job (Backup job, may call \
                 mch_cron_service)",
                backup.secret_key
            )]
        );
        // Every secret key is inside a block.
        let outside: Vec<&str> = printed
            .lines()
            .filter(|line| line.contains("export"))
            .filter(|line| ![server, client, others].iter().any(|b| b.contains(*line)))
            .collect();
        assert!(outside.is_empty(), "{outside:?}");

        // B is not a configured machine: it has no key of its own, the instance key verifies.
        let mut config = IssuerConfig::demo();
        config.machines[0].scopes = vec!["mch_billing".to_owned()];
        let printed = export_lines("http://127.0.0.1:8787", &loopback(), &config, "PEM", true);
        let server = block(&printed, MACHINE_B_TITLE);
        assert_eq!(
            exported(server, "CLERK_SECRET_KEY"),
            [demo.instance_secret_key.as_str()]
        );
        assert!(
            exported(server, "CLERK_MACHINE_SECRET_KEY").is_empty(),
            "{server}"
        );
        assert!(
            server.contains("not a machine of this configuration"),
            "{server}"
        );
        assert_eq!(block(&printed, OTHER_MACHINES_TITLE).lines().count(), 3);

        // A machine that may call itself: its key still stays out of B's block.
        config.machines[0].scopes = vec!["mch_cron_service".to_owned()];
        let printed = export_lines("http://127.0.0.1:8787", &loopback(), &config, "PEM", true);
        let server = block(&printed, MACHINE_B_TITLE);
        assert!(!server.contains(&cron.secret_key), "{server}");
        assert_eq!(
            exported(server, "CLERK_SECRET_KEY"),
            [demo.instance_secret_key.as_str()]
        );
    }

    #[test]
    fn machine_names_stay_inside_their_comment_lines() {
        let hostile = "Cron\n rm -rf ~\r\u{202e}evil\u{2028}\u{200b}\u{1b}[2J";
        let mut config = IssuerConfig::demo();
        for machine in &mut config.machines {
            machine.name = hostile.to_owned();
        }
        let printed = export_lines("http://127.0.0.1:8787", &loopback(), &config, "PEM", true);
        for line in printed.lines() {
            assert!(
                line.is_empty()
                    || line.starts_with("# ")
                    || line.starts_with("export ")
                    || line.starts_with("listening on "),
                "{line:?}"
            );
            assert!(!line.contains(['\r', '\u{202e}', '\u{2028}', '\u{200b}', '\u{1b}']));
        }
        assert!(
            printed.contains(r"(Cron\n rm -rf ~\r\u{202e}evil\u{2028}\u{200b}\u{1b}[2J, may call"),
            "{printed}"
        );
        assert_eq!(printable("Zoë's API"), "Zoë's API");
    }

    #[test]
    fn only_loopback_and_allowed_names_are_answered() {
        let hosts = AllowedHosts::new(vec!["Issuer.Dev.Test".to_owned()], 8787);
        for allowed in [
            "localhost",
            "LocalHost:8787",
            "127.0.0.1",
            "127.0.0.1:8787",
            "[::1]",
            "[::1]:8787",
            "issuer.dev.test",
            "issuer.dev.test:8787",
        ] {
            assert!(hosts.allows(allowed), "{allowed}");
        }
        for refused in [
            "",
            "attacker.example",
            "localhost:80",
            "localhost:",
            "localhost:08787x",
            "localhost.",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "::1",
            "[::1]:80",
            "[::2]",
            "0.0.0.0:8787",
            "issuer.dev.test:1",
            "user@localhost",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        for name in ["issuer.dev.test", "10.0.0.5", "[fd00::5]", "x"] {
            assert_eq!(parse_host_name(name).as_deref(), Ok(name));
        }
        for name in ["", "a b", "a:80", "a..b", "*.test", "fd00::5", "a/b"] {
            assert!(parse_host_name(name).is_err(), "{name}");
        }
    }
}
