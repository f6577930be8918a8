//! The `machine-auth` command line, run as a process: against its own `dev` issuer (the demo, a
//! configuration file, a data directory), against a recording stand-in for Clerk's API, and with
//! missing or wrong configuration.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The root crate's test helpers (keys, tokens, loopback servers), shared rather than copied.
#[path = "../../../tests/it/common.rs"]
mod common;

use common::TestKey;

const BINARY: &str = env!("CARGO_BIN_EXE_machine-auth");

/// The last line `dev` prints on standard output.
const LAST_DEV_LINE: &str = "# Ctrl-C stops the issuer.";

/// The titles of the blocks `dev` prints: machine B's, machine A's, the other machines'.
const MACHINE_B_TITLE: &str = "# === Machine B (the server that verifies) ===";
const MACHINE_A_TITLE: &str = "# === Machine A (the caller that creates tokens) ===";
const OTHER_MACHINES_TITLE: &str =
    "# === The other machines (each key belongs on its own machine only) ===";

/// One machine's block of lines: from its title to the next blank line.
#[derive(Default)]
struct Block {
    text: String,
    /// The variables of its `export` lines, unquoted.
    exports: HashMap<String, String>,
    /// The variables of its commented `# export NAME=VALUE` lines, unquoted.
    commented: HashMap<String, String>,
}

impl Block {
    /// `(name, value)` pairs of its export lines: the block, pasted into a shell.
    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .exports
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        env.sort();
        env
    }

    /// Its exported variables' names, sorted.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.exports.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// A running `machine-auth dev` (killed when dropped), and what it printed.
struct Dev {
    _child: tokio::process::Child,
    /// The URL of the `listening on` line.
    url: String,
    /// Machine B's block: the server that verifies.
    server: Block,
    /// Machine A's block: the caller that creates tokens.
    client: Block,
    /// The other machines' commented `# export CLERK_MACHINE_SECRET_KEY=…  # mch_…` lines:
    /// (key, comment).
    other_machines: Vec<(String, String)>,
    stdout: String,
    /// Standard error so far (read on a task).
    stderr: tokio::sync::watch::Receiver<String>,
}

impl Dev {
    /// Standard error once it contains `text`, or as it is after 10 s.
    async fn stderr_with(&self, text: &str) -> String {
        let mut stderr = self.stderr.clone();
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            stderr.wait_for(|so_far| so_far.contains(text)),
        )
        .await
        .map(|found| found.map(|so_far| so_far.clone()));
        // Timed out, or standard error closed without it: as it is.
        waited
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| self.stderr.borrow().clone())
    }

    /// Its port.
    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

/// `(name, value)` pairs of these variables of `block`'s export lines.
fn pick(block: &Block, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|name| ((*name).to_owned(), block.exports[*name].clone()))
        .collect()
}

async fn start_dev(arguments: &[&str]) -> Dev {
    try_start_dev(arguments)
        .await
        .unwrap_or_else(|stdout| panic!("dev exited: {stdout}"))
}

/// Starts `machine-auth dev`, or returns what it printed before it exited.
async fn try_start_dev(arguments: &[&str]) -> Result<Dev, String> {
    let mut child = tokio::process::Command::new(BINARY)
        .arg("dev")
        .args(["--port", "0"])
        .args(arguments)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (record, stderr) = tokio::sync::watch::channel(String::new());
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            record.send_modify(|so_far| {
                so_far.push_str(&line);
                so_far.push('\n');
            });
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("dev printed no `{LAST_DEV_LINE}` line: {stdout}"))
            .unwrap();
        let Some(line) = line else {
            return Err(stdout);
        };
        stdout.push_str(&line);
        stdout.push('\n');
        if line == LAST_DEV_LINE {
            break;
        }
    }
    let url = stdout
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("listening on "))
        .unwrap_or_else(|| panic!("the first line is not `listening on …`: {stdout}"))
        .to_owned();
    let mut server = None;
    let mut client = None;
    let mut other_machines = Vec::new();
    for text in stdout.split("\n\n") {
        let title = text.lines().next().unwrap_or_default();
        let block = || {
            let (exports, commented) = parse_exports(text);
            Block {
                text: text.to_owned(),
                exports,
                commented,
            }
        };
        if title == MACHINE_B_TITLE {
            assert!(server.replace(block()).is_none(), "two B blocks: {stdout}");
        } else if title == MACHINE_A_TITLE {
            assert!(client.replace(block()).is_none(), "two A blocks: {stdout}");
        } else if title == OTHER_MACHINES_TITLE {
            for line in text.lines().skip(1) {
                let rest = line
                    .strip_prefix("# export CLERK_MACHINE_SECRET_KEY=")
                    .unwrap_or_else(|| panic!("not a commented machine key: {line}"));
                let (key, comment) = rest.split_once("  # ").expect("a machine comment");
                other_machines.push((unquote(key), comment.to_owned()));
            }
        } else {
            // Nothing to paste outside the blocks.
            assert!(
                !text.lines().any(|line| line.contains("export ")),
                "export lines outside the blocks: {stdout}"
            );
        }
    }
    Ok(Dev {
        _child: child,
        url,
        server: server.unwrap_or_else(|| panic!("no {MACHINE_B_TITLE}: {stdout}")),
        client: client.unwrap_or_else(|| panic!("no {MACHINE_A_TITLE}: {stdout}")),
        other_machines,
        stdout,
        stderr,
    })
}

/// The `export NAME=VALUE` lines (a single-quoted value may span lines, as the PEM does), and the
/// commented `# export NAME=VALUE` lines.
fn parse_exports(text: &str) -> (HashMap<String, String>, HashMap<String, String>) {
    let mut exports = HashMap::new();
    let mut commented = HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# export ") {
            let (name, value) = rest.split_once('=').unwrap();
            commented.insert(name.to_owned(), unquote(value));
            continue;
        }
        let Some(rest) = line.strip_prefix("export ") else {
            continue;
        };
        let (name, value) = rest.split_once('=').unwrap();
        let mut value = value.to_owned();
        if value.starts_with('\'') {
            while value.len() < 2 || !value.ends_with('\'') {
                value.push('\n');
                value.push_str(lines.next().expect("an unterminated quote"));
            }
        }
        assert!(
            !value.contains(" #"),
            "an export line with a trailing comment: {line}"
        );
        assert!(
            exports.insert(name.to_owned(), unquote(&value)).is_none(),
            "{name} exported twice in one block: {text}"
        );
    }
    (exports, commented)
}

fn unquote(word: &str) -> String {
    match word.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')) {
        Some(inner) => inner.replace(r"'\''", "'"),
        None => word.to_owned(),
    }
}

/// Runs `machine-auth` with only these variables (and PATH) set, `stdin` as its input, for at
/// most 20 s.
fn run<N: AsRef<str>, V: AsRef<str>>(
    arguments: &[&str],
    env: &[(N, V)],
    stdin: Option<&str>,
) -> Output {
    let mut child = Command::new(BINARY)
        .args(arguments)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(n, v)| (n.as_ref(), v.as_ref())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    // Read the pipes on threads so that a hung child cannot hang the test.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut buffer).ok();
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut buffer).ok();
        buffer
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("machine-auth {arguments:?} did not finish in 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

const NO_ENV: &[(&str, &str)] = &[];

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "stdout is not JSON: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    )
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "machine-auth-cli-{tag}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_whole_cycle_against_the_demo() {
    let dev = start_dev(&[]).await;
    let (server, client_block) = (&dev.server, &dev.client);
    assert!(dev.url.starts_with("http://127.0.0.1:"), "{}", dev.url);
    assert_eq!(server.exports["CLERK_API_URL"], dev.url);
    assert_eq!(client_block.exports["CLERK_API_URL"], dev.url);
    let machine_key = client_block.exports["CLERK_MACHINE_SECRET_KEY"].clone();
    assert!(machine_key.starts_with("ak_demo_cron"), "{}", dev.stdout);
    let server_key = server.exports["CLERK_MACHINE_SECRET_KEY"].clone();
    assert!(server_key.starts_with("ak_demo_reports"), "{}", dev.stdout);
    let instance_key = server.commented["CLERK_SECRET_KEY"].clone();
    assert!(instance_key.starts_with("sk_"), "{}", dev.stdout);
    let pem = &server.exports["CLERK_JWT_KEY"];
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
            && pem.ends_with("-----END PUBLIC KEY-----"),
        "{pem}"
    );

    // Machine B is printed first. Each block holds only what its machine needs: B never gets
    // A's key (it verifies with its own), A never the instance key nor B's key; a one-line
    // warning stands before A's key.
    assert!(
        dev.stdout.find(MACHINE_B_TITLE) < dev.stdout.find(MACHINE_A_TITLE),
        "{}",
        dev.stdout
    );
    assert_eq!(
        server.names(),
        [
            "CLERK_API_URL",
            "CLERK_JWT_KEY",
            "CLERK_MACHINE_ID",
            "CLERK_MACHINE_SECRET_KEY"
        ]
    );
    assert_eq!(
        client_block.names(),
        ["CLERK_API_URL", "CLERK_MACHINE_SECRET_KEY"]
    );
    assert!(!server.text.contains(&machine_key), "{}", server.text);
    for absent in [&instance_key, &server_key, pem] {
        assert!(
            !client_block.text.contains(absent.as_str()),
            "{}",
            client_block.text
        );
    }
    let warning = client_block
        .text
        .lines()
        .find(|line| line.starts_with("# WARNING:"))
        .unwrap_or_else(|| panic!("no warning: {}", client_block.text));
    assert!(
        warning.contains("never give machine A's key to machine B")
            && warning.contains("its own machine's key"),
        "{warning}"
    );

    // Secret keys go to standard output only, never to the log.
    let logs = dev.stderr_with("issuer ready").await;
    assert!(logs.contains("issuer ready"), "{logs}");
    for secret in [&machine_key, &server_key, &instance_key] {
        assert!(!logs.contains(secret.as_str()), "{logs}");
    }

    assert_eq!(dev.other_machines.len(), 1, "{}", dev.stdout);
    let (backup_key, backup_comment) = &dev.other_machines[0];
    assert_eq!(
        backup_comment, "mch_backup_job (Backup job, may call mch_cron_service)",
        "{}",
        dev.stdout
    );
    for block in [server, client_block] {
        assert!(!block.text.contains(backup_key.as_str()), "{}", block.text);
    }
    assert!(client_block.text.contains("mch_cron_service"));
    // Machine B is the machine the client may call: its own id, after a comment that says what
    // it does.
    assert_eq!(server.exports["CLERK_MACHINE_ID"], "mch_reports_api");
    let lines: Vec<&str> = server.text.lines().collect();
    let at = lines
        .iter()
        .position(|line| *line == "export CLERK_MACHINE_ID=mch_reports_api")
        .unwrap_or_else(|| panic!("no CLERK_MACHINE_ID line: {}", dev.stdout));
    let mut comment: Vec<&str> = lines[..at]
        .iter()
        .rev()
        .map_while(|line| line.strip_prefix("# "))
        .collect();
    comment.reverse();
    let comment = comment.join(" ");
    assert!(
        comment.contains("own machine id")
            && comment.contains("only tokens scoped to it")
            && comment.contains("token-invalid-receiver"),
        "{comment}"
    );

    // Each block pasted into its machine's shell, as is.
    let client = client_block.env();
    let pasted_server = server.env();
    // B's alternatives: the JWKS with the instance key (the commented line), or the PEM alone.
    let api_url = ("CLERK_API_URL".to_owned(), dev.url.clone());
    let layer = vec![
        api_url.clone(),
        ("CLERK_SECRET_KEY".to_owned(), instance_key.clone()),
        pick(server, &["CLERK_MACHINE_ID"]).remove(0),
    ];
    let networkless = pick(server, &["CLERK_JWT_KEY"]);
    // The old mistake: B's lines with A's key pasted after them.
    let mut with_a_key: Vec<(String, String)> = pasted_server
        .iter()
        .filter(|(name, _)| name != "CLERK_MACHINE_SECRET_KEY")
        .cloned()
        .collect();
    with_a_key.push(("CLERK_MACHINE_SECRET_KEY".to_owned(), machine_key.clone()));

    // A JWT, with claims and a lifetime.
    let created = run(
        &[
            "token",
            "create",
            "--format",
            "jwt",
            "--expires-in",
            "600",
            "--claims",
            r#"{"job":"nightly"}"#,
        ],
        &client,
        None,
    );
    assert_exit(&created, 0);
    assert!(
        !all_output(&created).contains(&machine_key),
        "the key was printed"
    );
    let resource = stdout_json(&created);
    assert_eq!(resource["object"], "machine_to_machine_token");
    assert_eq!(resource["subject"], "mch_cron_service");
    assert_eq!(resource["claims"]["job"], "nightly");
    let jwt = resource["token"].as_str().unwrap().to_owned();
    assert_eq!(jwt.split('.').count(), 3);

    // Verified by B's block as printed, with the JWKS (instance key), with the PEM alone, and
    // read from standard input.
    for env in [&pasted_server, &layer, &networkless, &with_a_key] {
        let verified = run(&["verify", &jwt], env, None);
        assert_exit(&verified, 0);
        let machine = stdout_json(&verified);
        assert_eq!(machine["machine_id"], "mch_cron_service");
        assert_eq!(machine["token_format"], "jwt");
        assert_eq!(machine["claims"]["job"], "nightly");
    }
    let from_stdin = run(&["verify", "-"], &layer, Some(&format!("  {jwt}\n")));
    assert_exit(&from_stdin, 0);
    assert_eq!(stdout_json(&from_stdin)["machine_id"], "mch_cron_service");

    // Opaque tokens: the default format, and asked for.
    let default_format = stdout_json(&run(&["token", "create"], &client, None));
    assert!(default_format["token"].as_str().unwrap().starts_with("mt_"));
    let opaque = run(&["token", "create", "--format", "opaque"], &client, None);
    assert_exit(&opaque, 0);
    let opaque = stdout_json(&opaque);
    let opaque_token = opaque["token"].as_str().unwrap().to_owned();
    let opaque_id = opaque["id"].as_str().unwrap().to_owned();
    assert!(opaque_token.starts_with("mt_"));
    assert_ne!(opaque_token, opaque_id);

    // B's block as printed verifies it with B's own key (the machine the token is meant for,
    // its scope); the instance key too.
    for env in [&pasted_server, &layer] {
        let verified = run(&["verify", &opaque_token], env, None);
        assert_exit(&verified, 0);
        assert_eq!(stdout_json(&verified)["token_format"], "opaque");
        assert_eq!(stdout_json(&verified)["machine_id"], "mch_cron_service");
    }
    // With A's key in B's shell, the valid token is refused, and the message says why.
    let wrong_machine = run(&["verify", &opaque_token], &with_a_key, None);
    assert_exit(&wrong_machine, 1);
    assert!(
        stderr(&wrong_machine).contains("meant for that machine"),
        "{}",
        stderr(&wrong_machine)
    );

    // Revoked: refused at once.
    let revoked = run(
        &["token", "revoke", &opaque_id, "--reason", "leaked"],
        &client,
        None,
    );
    assert_exit(&revoked, 0);
    let revoked = stdout_json(&revoked);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["revocation_reason"], "leaked");
    for env in [&pasted_server, &layer] {
        let after = run(&["verify", &opaque_token], env, None);
        assert_exit(&after, 1);
        assert!(
            stderr(&after).contains("rejected: token-invalid"),
            "{}",
            stderr(&after)
        );
        assert!(
            !all_output(&after).contains(&opaque_token),
            "the token was echoed"
        );
    }

    // The backup job's tokens are scoped to the cron service, not to machine B (the reports
    // API): B refuses them, in both formats, and says why (with B's own key, the issuer does not
    // even show B the opaque one); without CLERK_MACHINE_ID they pass.
    let backup = [
        ("CLERK_API_URL", dev.url.as_str()),
        ("CLERK_MACHINE_SECRET_KEY", backup_key.as_str()),
    ];
    let any_receiver = vec![
        api_url.clone(),
        ("CLERK_SECRET_KEY".to_owned(), instance_key.clone()),
    ];
    let networkless_b = pick(server, &["CLERK_JWT_KEY", "CLERK_MACHINE_ID"]);
    for format in ["jwt", "opaque"] {
        let created = run(&["token", "create", "--format", format], &backup, None);
        assert_exit(&created, 0);
        let created = stdout_json(&created);
        assert_eq!(created["subject"], "mch_backup_job");
        assert_eq!(created["scopes"], json!(["mch_cron_service"]));
        let token = created["token"].as_str().unwrap();
        let mut refusers = vec![&layer, &with_a_key];
        if format == "jwt" {
            refusers.extend([&networkless_b, &pasted_server]);
        } else {
            let unknown = run(&["verify", token], &pasted_server, None);
            assert_exit(&unknown, 1);
            assert!(
                stderr(&unknown).contains("rejected: token-invalid"),
                "{}",
                stderr(&unknown)
            );
        }
        for env in refusers {
            let refused = run(&["verify", token], env, None);
            assert_exit(&refused, 1);
            assert!(
                stderr(&refused).contains("rejected: token-invalid-receiver")
                    && stderr(&refused).contains("CLERK_MACHINE_ID"),
                "{format}: {}",
                stderr(&refused)
            );
            assert!(
                !all_output(&refused).contains(token),
                "the token was echoed"
            );
        }
        let accepted = run(&["verify", token], &any_receiver, None);
        assert_exit(&accepted, 0);
        assert_eq!(stdout_json(&accepted)["machine_id"], "mch_backup_job");
    }

    // Garbage, tampering, and ids that do not exist.
    let garbage = run(&["verify", "not-a-token"], &layer, None);
    assert_exit(&garbage, 1);
    assert!(stderr(&garbage).contains("token-type-mismatch"));
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let tampered = run(&["verify", &parts.join(".")], &networkless, None);
    assert_exit(&tampered, 1);
    assert!(
        stderr(&tampered).contains("token-invalid"),
        "{}",
        stderr(&tampered)
    );
    let empty = run(&["verify", "-"], &layer, Some("\n"));
    assert_exit(&empty, 1);
    assert!(stderr(&empty).contains("empty"));
    let unknown = run(
        &["token", "revoke", "mt_00000000000000000000000000000000"],
        &client,
        None,
    );
    assert_exit(&unknown, 1);
    assert!(stderr(&unknown).contains("404"), "{}", stderr(&unknown));
    let not_an_id = run(&["token", "revoke", "mt_../../jwks"], &client, None);
    assert_exit(&not_an_id, 1);
    assert!(
        stderr(&not_an_id).contains("`id`"),
        "{}",
        stderr(&not_an_id)
    );

    // A wrong key: Clerk's message and the status, never the key.
    let wrong_key = "ak_wrong_machine_key_0123456789";
    let refused = run(
        &["token", "create"],
        &[
            ("CLERK_API_URL", dev.url.as_str()),
            ("CLERK_MACHINE_SECRET_KEY", wrong_key),
        ],
        None,
    );
    assert_exit(&refused, 1);
    assert!(stderr(&refused).contains("401"), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("Machine Secret Key is invalid"),
        "{}",
        stderr(&refused)
    );
    assert!(!all_output(&refused).contains(wrong_key));
    let zero_lifetime = run(&["token", "create", "--expires-in", "0"], &client, None);
    assert_exit(&zero_lifetime, 1);
    assert!(
        stderr(&zero_lifetime).contains("seconds_until_expiration"),
        "{}",
        stderr(&zero_lifetime)
    );

    // inspect: decoded, marked unverified, nothing checked.
    let inspected = run(&["inspect", &jwt], NO_ENV, None);
    assert_exit(&inspected, 0);
    assert!(stderr(&inspected).contains("NOT VERIFIED"));
    let inspected = stdout_json(&inspected);
    assert_eq!(inspected["unverified"], true);
    assert_eq!(inspected["header"]["cat"], "cl_B7d4PD333AAA");
    assert_eq!(inspected["header"]["alg"], "RS256");
    assert_eq!(inspected["claims"]["sub"], "mch_cron_service");
    assert_eq!(inspected["claims"]["job"], "nightly");
    let from_stdin = run(&["inspect", "-"], NO_ENV, Some(&jwt));
    assert_exit(&from_stdin, 0);
    assert_eq!(stdout_json(&from_stdin)["claims"]["jti"], resource["id"]);
    let opaque_inspected = run(&["inspect", &opaque_token], NO_ENV, None);
    assert_exit(&opaque_inspected, 1);
    assert!(
        stderr(&opaque_inspected).contains("opaque")
            && stderr(&opaque_inspected).contains("issuer"),
        "{}",
        stderr(&opaque_inspected)
    );
    for malformed in ["a.b", "a.b.c", "e30.bm90IGpzb24.c2ln", "a.b.c.d.e"] {
        let output = run(&["inspect", malformed], NO_ENV, None);
        assert_exit(&output, 1);
        assert!(output.stdout.is_empty(), "{malformed}: printed something");
    }
}

/// A JWT past its expiry and the verifier's clock skew, signed with a key of the test's own: the
/// command says `token-expired`, without waiting for a fresh token to age.
#[test]
fn an_expired_jwt_is_rejected_as_expired() {
    let key = TestKey::shared_rsa();
    let issued = common::now() - 3600;
    let claims = common::with(common::claims_at(issued), "exp", json!(issued + 60));
    let token = key.token("ins_test", &claims);
    let expired = run(
        &["verify", &token],
        &[("CLERK_JWT_KEY", key.public_pem().as_str())],
        None,
    );
    assert_exit(&expired, 1);
    assert!(
        stderr(&expired).contains("rejected: token-expired: the token has expired"),
        "{}",
        stderr(&expired)
    );
    assert!(
        !stderr(&expired).contains(&token),
        "the token appears in the output"
    );
}

#[test]
fn misconfiguration_is_exit_2_and_says_what_to_set() {
    let verify = run(&["verify", "x.y.z"], NO_ENV, None);
    assert_exit(&verify, 2);
    assert!(
        stderr(&verify).contains("CLERK_JWT_KEY"),
        "{}",
        stderr(&verify)
    );

    let bad_pem = run(
        &["verify", "x.y.z"],
        &[("CLERK_JWT_KEY", "not a key")],
        None,
    );
    assert_exit(&bad_pem, 2);

    for command in [&["token", "create"][..], &["token", "revoke", "mt_0123"]] {
        let output = run(command, NO_ENV, None);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains("set CLERK_MACHINE_SECRET_KEY")
                && stderr(&output).contains("machine-auth dev"),
            "{}",
            stderr(&output)
        );
    }

    // The key must not travel in the clear.
    let cleartext = run(
        &["token", "create"],
        &[
            ("CLERK_API_URL", "http://api.example.com"),
            ("CLERK_MACHINE_SECRET_KEY", "ak_test_0123456789"),
        ],
        None,
    );
    assert_exit(&cleartext, 2);
    assert!(
        stderr(&cleartext).contains("https"),
        "{}",
        stderr(&cleartext)
    );

    let key = [("CLERK_MACHINE_SECRET_KEY", "ak_test_0123456789")];
    for claims in ["[1]", "\"x\"", "{"] {
        let output = run(&["token", "create", "--claims", claims], &key, None);
        assert_exit(&output, 1);
        assert!(
            stderr(&output).contains("JSON object"),
            "{}",
            stderr(&output)
        );
    }

    let usage = run(&["token", "create", "--format", "paseto"], NO_ENV, None);
    assert_exit(&usage, 2);
}

#[test]
fn an_unreachable_issuer_is_exit_2() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}");
    let env = [
        ("CLERK_MACHINE_SECRET_KEY", "ak_test_0123456789"),
        ("CLERK_API_URL", url.as_str()),
    ];
    let verify = run(
        &[
            "verify",
            "mt_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
        &env,
        None,
    );
    assert_exit(&verify, 2);
    assert!(
        stderr(&verify).contains("verifier-unavailable"),
        "{}",
        stderr(&verify)
    );
    let create = run(&["token", "create"], &env, None);
    assert_exit(&create, 2);
    assert!(
        stderr(&create).contains("cannot reach"),
        "{}",
        stderr(&create)
    );
}

/// What the stand-in for Clerk's API saw: method, path, headers, body.
type Seen = Arc<Mutex<Vec<(String, String, HeaderMap, Value)>>>;

/// A stand-in for Clerk's Backend API that records requests: `/m2m_tokens` creates, `…/revoke`
/// revokes; under `/fail` Clerk's 422, under `/redirect` a redirect, under `/text` a 200 that
/// is not JSON.
async fn recording_api() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new().fallback(
        move |method: axum::http::Method, uri: Uri, headers: HeaderMap, body: String| {
            let record = record.clone();
            async move {
                let path = uri.path().to_owned();
                record.lock().unwrap().push((
                    method.to_string(),
                    path.clone(),
                    headers,
                    serde_json::from_str(&body).unwrap_or(Value::Null),
                ));
                let resource = json!({"object": "machine_to_machine_token", "id": "mt_1",
                    "subject": "mch_x", "revoked": path.ends_with("/revoke")});
                if path.starts_with("/fail") {
                    let errors = json!({"errors": [{"code": "form_param_invalid",
                        "message": "short", "long_message": "the long message", "meta": {}}]});
                    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(errors)).into_response()
                } else if path.starts_with("/text") {
                    (StatusCode::OK, "<html>not an API</html>").into_response()
                } else if path.starts_with("/redirect") {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [("location", "/m2m_tokens")],
                        "",
                    )
                        .into_response()
                } else if path.ends_with("/m2m_tokens") {
                    (StatusCode::CREATED, axum::Json(resource)).into_response()
                } else if path.ends_with("/revoke") {
                    (StatusCode::OK, axum::Json(resource)).into_response()
                } else {
                    (StatusCode::NOT_FOUND, "not found").into_response()
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_commands_send_what_clerks_sdk_sends() {
    let (url, seen) = recording_api().await;
    let key = "ak_recorded_0123456789";
    let env = [
        ("CLERK_API_URL", url.as_str()),
        ("CLERK_MACHINE_SECRET_KEY", key),
    ];
    let run_here = |arguments: &[&str], env: &[(&str, &str)]| {
        let arguments: Vec<String> = arguments.iter().map(|a| (*a).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
            run(&arguments, &env, None)
        })
    };

    assert_exit(&run_here(&["token", "create"], &env).await.unwrap(), 0);
    let created = run_here(
        &[
            "token",
            "create",
            "--format",
            "jwt",
            "--expires-in",
            "90",
            "--claims",
            r#"{"a":[1]}"#,
        ],
        &env,
    )
    .await
    .unwrap();
    assert_exit(&created, 0);
    assert_eq!(stdout_json(&created)["id"], "mt_1");
    let revoked = run_here(&["token", "revoke", "mt_1", "--reason", "leaked"], &env)
        .await
        .unwrap();
    assert_exit(&revoked, 0);
    assert_eq!(stdout_json(&revoked)["revoked"], true);
    assert_exit(
        &run_here(&["token", "revoke", "mt_1"], &env).await.unwrap(),
        0,
    );
    // A trailing `/v1` (and `/`) is kept, as Clerk's SDK does.
    let v1 = format!("{url}/v1/");
    let env_v1 = [
        ("CLERK_API_URL", v1.as_str()),
        ("CLERK_MACHINE_SECRET_KEY", key),
    ];
    assert_exit(&run_here(&["token", "create"], &env_v1).await.unwrap(), 0);

    {
        let seen = seen.lock().unwrap();
        let bodies: Vec<(&str, &str, &Value)> = seen
            .iter()
            .map(|(method, path, _, body)| (method.as_str(), path.as_str(), body))
            .collect();
        assert_eq!(
            bodies,
            [
                (
                    "POST",
                    "/m2m_tokens",
                    &json!({"seconds_until_expiration": null, "claims": null,
                        "token_format": "opaque"})
                ),
                (
                    "POST",
                    "/m2m_tokens",
                    &json!({"seconds_until_expiration": 90, "claims": {"a": [1]},
                        "token_format": "jwt"})
                ),
                (
                    "POST",
                    "/m2m_tokens/mt_1/revoke",
                    &json!({"revocation_reason": "leaked"})
                ),
                (
                    "POST",
                    "/m2m_tokens/mt_1/revoke",
                    &json!({"revocation_reason": null})
                ),
                (
                    "POST",
                    "/v1/m2m_tokens",
                    &json!({"seconds_until_expiration": null, "claims": null,
                        "token_format": "opaque"})
                ),
            ]
        );
        for (_, _, headers, _) in seen.iter() {
            assert_eq!(headers["authorization"], format!("Bearer {key}").as_str());
            assert_eq!(headers["content-type"], "application/json");
            assert_eq!(headers["clerk-api-version"], "2026-05-12");
        }
    }

    // Clerk's error: the long message and the status, exit 1, never the key.
    let fail = format!("{url}/fail");
    let env_fail = [
        ("CLERK_API_URL", fail.as_str()),
        ("CLERK_MACHINE_SECRET_KEY", key),
    ];
    let refused = run_here(&["token", "revoke", "mt_2"], &env_fail)
        .await
        .unwrap();
    assert_exit(&refused, 1);
    assert!(
        stderr(&refused).contains("422") && stderr(&refused).contains("the long message"),
        "{}",
        stderr(&refused)
    );
    assert!(!all_output(&refused).contains(key));

    // Redirects are not followed (the key would go with them).
    seen.lock().unwrap().clear();
    let redirect = format!("{url}/redirect");
    let env_redirect = [
        ("CLERK_API_URL", redirect.as_str()),
        ("CLERK_MACHINE_SECRET_KEY", key),
    ];
    let redirected = run_here(&["token", "create"], &env_redirect).await.unwrap();
    assert_exit(&redirected, 1);
    assert!(
        stderr(&redirected).contains("307"),
        "{}",
        stderr(&redirected)
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "the redirect was followed");

    // A success that is not JSON is not taken for one.
    let text = format!("{url}/text");
    let env_text = [
        ("CLERK_API_URL", text.as_str()),
        ("CLERK_MACHINE_SECRET_KEY", key),
    ];
    let not_json = run_here(&["token", "create"], &env_text).await.unwrap();
    assert_exit(&not_json, 2);
    assert!(
        stderr(&not_json).contains("not a JSON object"),
        "{}",
        stderr(&not_json)
    );
}

#[tokio::test]
async fn dev_keeps_tokens_in_a_data_directory_and_reads_a_config_file() {
    let dir = TempDir::new("data");
    let config = dir.path().join("machines.json");
    std::fs::write(
        &config,
        r#"{
            "instance_secret_key": "sk_test_cli_instance",
            "machines": [
                {"name": "Billing worker", "secret_key": "ak_test_cli_billing", "scopes": ["mch_cli_ledger"]},
                {"id": "mch_cli_ledger", "name": "Ledger", "secret_key": "ak_test_cli_ledger"}
            ]
        }"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let arguments = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];

    let (jwt, opaque, pem) = {
        let dev = start_dev(&arguments).await;
        assert_eq!(
            dev.server.commented["CLERK_SECRET_KEY"],
            "sk_test_cli_instance"
        );
        assert!(!dev.client.text.contains("sk_test_cli_instance"));
        assert_eq!(
            dev.client.exports["CLERK_MACHINE_SECRET_KEY"],
            "ak_test_cli_billing"
        );
        // Machine B is the machine the first machine may call: the ledger, with its own key.
        assert_eq!(dev.server.exports["CLERK_MACHINE_ID"], "mch_cli_ledger");
        assert_eq!(
            dev.server.exports["CLERK_MACHINE_SECRET_KEY"],
            "ak_test_cli_ledger"
        );
        assert!(!dev.server.text.contains("ak_test_cli_billing"));
        assert!(dev.server.text.contains("# mch_cli_ledger (Ledger)"));
        assert!(dev.other_machines.is_empty(), "{}", dev.stdout);
        assert!(!dev.stdout.contains("live in memory"), "{}", dev.stdout);
        let client = dev.client.env();
        let created = run(&["token", "create", "--format", "jwt"], &client, None);
        assert_exit(&created, 0);
        let created = stdout_json(&created);
        let subject = created["subject"].as_str().unwrap();
        assert!(
            subject.starts_with("mch_") && subject != "mch_cli_ledger",
            "an id derived from the name: {created}"
        );
        assert_eq!(created["scopes"], json!(["mch_cli_ledger"]));
        let opaque = stdout_json(&run(&["token", "create"], &client, None));
        (
            created["token"].as_str().unwrap().to_owned(),
            opaque["token"].as_str().unwrap().to_owned(),
            dev.server.exports["CLERK_JWT_KEY"].clone(),
        )
    };

    // Restarted on the same data directory: same key, tokens still valid.
    let dev = start_dev(&arguments).await;
    assert_eq!(
        dev.server.exports["CLERK_JWT_KEY"], pem,
        "the signing key changed"
    );
    // Machine B's block as printed (its own key), and the instance key of the commented line.
    let layer = vec![
        ("CLERK_API_URL".to_owned(), dev.url.clone()),
        (
            "CLERK_SECRET_KEY".to_owned(),
            dev.server.commented["CLERK_SECRET_KEY"].clone(),
        ),
        pick(&dev.server, &["CLERK_MACHINE_ID"]).remove(0),
    ];
    for env in [&dev.server.env(), &layer] {
        for token in [&jwt, &opaque] {
            let verified = run(&["verify", token], env, None);
            assert_exit(&verified, 0);
            assert_eq!(
                stdout_json(&verified)["scopes"],
                json!(["mch_cli_ledger"]),
                "the token did not survive the restart"
            );
        }
    }
    drop(dev);
}

#[test]
fn a_bad_config_names_the_file_and_the_field() {
    let dir = TempDir::new("config");
    let config = dir.path().join("machines.json");
    let shown = config.display().to_string();
    for (text, field) in [
        (
            r#"{"instance_secret_key": "sk_test_cli_instance", "machines": [{"id": "billing", "name": "B", "secret_key": "ak_test_cli_billing"}]}"#,
            "machines[0].id",
        ),
        (
            r#"{"instance_secret_key": "sk_test_cli_instance", "machines": [{"name": "B", "secret_key": "ak_test_cli_billing", "scope": []}]}"#,
            "scope",
        ),
        (
            r#"{"instance_secret_key": "sk_test_cli_instance", "machines": [{"name": "B", "secret_key": 5}]}"#,
            "machines[0].secret_key",
        ),
        (
            r#"{"instance_secret_key": "pk_test", "machines": []}"#,
            "instance_secret_key",
        ),
        (r#"{"instance_secret_key": "#, "EOF"),
    ] {
        std::fs::write(&config, text).unwrap();
        let output = run(&["dev", "--port", "0", "--config", &shown], NO_ENV, None);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains(&shown) && stderr(&output).contains(field),
            "{text}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{text}: printed exports");
    }
    let missing = dir.path().join("missing.json");
    let output = run(
        &["dev", "--port", "0", "--config", missing.to_str().unwrap()],
        NO_ENV,
        None,
    );
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("missing.json"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_command_has_help_with_an_example_and_its_exit_status() {
    for command in [
        &["--help"][..],
        &["dev", "--help"],
        &["token", "--help"],
        &["token", "create", "--help"],
        &["token", "revoke", "--help"],
        &["verify", "--help"],
        &["inspect", "--help"],
        &["template", "--help"],
        &["template", "render", "--help"],
        &["help", "verify"],
    ] {
        let output = run(command, NO_ENV, None);
        assert_exit(&output, 0);
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Example"), "{command:?}: {help}");
        assert!(help.contains("machine-auth "), "{command:?}: {help}");
        if command != ["token", "--help"] && command != ["template", "--help"] {
            assert!(help.contains("Exit status"), "{command:?}: {help}");
        }
    }
    let dev_help =
        String::from_utf8_lossy(&run(&["dev", "--help"], NO_ENV, None).stdout).into_owned();
    assert!(
        dev_help.contains("[default: 8787]")
            && dev_help.contains("--host <ADDR>")
            && dev_help.contains("[default: 127.0.0.1]")
            && dev_help.contains("MACHINE_AUTH_ALLOW_HTTP_HOST"),
        "{dev_help}"
    );
    assert!(
        dev_help.contains("CLERK_MACHINE_ID") && dev_help.contains("mch_backup_job"),
        "{dev_help}"
    );
    let verify_help =
        String::from_utf8_lossy(&run(&["verify", "--help"], NO_ENV, None).stdout).into_owned();
    assert!(
        verify_help.contains("CLERK_MACHINE_ID") && verify_help.contains("token-invalid-receiver"),
        "{verify_help}"
    );
    for command in [&["--version"][..], &["verify", "--version"]] {
        let output = run(command, NO_ENV, None);
        assert_exit(&output, 0);
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")),
            "{command:?}"
        );
    }
}

/// `template render`: the claims a template produces for a subject (template claims, then the
/// default claims), a signed token that verifies with the printed public key, and errors that
/// name the claim and the text.
#[test]
fn template_render_prints_the_claims_or_a_signed_token() {
    let dir = TempDir::new("template");
    let template = dir.0.join("template.json");
    std::fs::write(
        &template,
        r#"{
            // comments are allowed, as the documentation writes templates
            "aud": "https://my-site.com",
            "name": "{{user.last_name}} {{user.first_name}}",
            "age": "{{user.public_metadata.age}}",
            "plan": "{{user.public_metadata.plan || 'free'}}",
            "org": {"slug": "{{org.slug}}", "nothing": "{{user.unknown}}"}
        }"#,
    )
    .unwrap();
    let subject = dir.0.join("subject.json");
    std::fs::write(
        &subject,
        r#"{"user": {"id": "user_2maria", "first_name": "Maria", "last_name": null,
                     "public_metadata": {"age": 31}},
            "org": {"slug": "acme"}}"#,
    )
    .unwrap();
    let (template, subject) = (template.to_str().unwrap(), subject.to_str().unwrap());

    let rendered = run(
        &[
            "template",
            "render",
            template,
            "--subject",
            subject,
            "--lifetime",
            "120",
            "--azp",
            "https://app.example",
        ],
        NO_ENV,
        None,
    );
    assert_exit(&rendered, 0);
    let claims = stdout_json(&rendered);
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - common::now()).abs() < 60, "{claims}");
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert_eq!(
        claims,
        json!({
            "aud": "https://my-site.com",
            "name": "null Maria",
            "age": 31,
            "plan": "free",
            "org": {"slug": "acme", "nothing": null},
            "azp": "https://app.example",
            "exp": iat + 120,
            "iat": iat,
            "iss": "http://127.0.0.1:8787",
            "jti": jti,
            "nbf": iat - 5,
            "sub": "user_2maria",
        })
    );

    let signed = run(
        &[
            "template",
            "render",
            template,
            "--subject",
            subject,
            "--sign",
            "--sub",
            "user_other",
            "--issuer",
            "https://clerk.example.test",
        ],
        NO_ENV,
        None,
    );
    assert_exit(&signed, 0);
    let token = String::from_utf8(signed.stdout.clone()).unwrap();
    let errors = stderr(&signed);
    let pem_start = errors
        .find("-----BEGIN PUBLIC KEY-----")
        .expect("the public key");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&errors.as_bytes()[pem_start..]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&["https://clerk.example.test"]);
    validation.set_audience(&["https://my-site.com"]);
    let verified = jsonwebtoken::decode::<Value>(token.trim(), &key, &validation).unwrap();
    assert_eq!(verified.claims["sub"], "user_other");
    assert_eq!(verified.claims["name"], "null Maria");
    assert_eq!(
        verified.claims["exp"].as_i64().unwrap() - verified.claims["iat"].as_i64().unwrap(),
        60
    );

    let from_stdin = |template: &str| {
        run(
            &["template", "render", "-", "--subject", subject],
            NO_ENV,
            Some(template),
        )
    };
    for (template, expected) in [
        (
            r#"{"a": {"b": ["{{user.id"]}}"#,
            "claim `a.b[0]`: unclosed shortcode (missing `}}`): `{{user.id`",
        ),
        (
            r#"{"sub": "{{user.id}}"}"#,
            "claim `sub`: is a default claim",
        ),
        (r#"{"sid": "x"}"#, "claim `sid`: is a session-bound claim"),
        (r#"{"a": "{{ user.id || }}"}"#, "claim `a`"),
        (r#"{"a": "{{ account.id }}"}"#, "claim `a`"),
        (
            r#"["not", "an object"]"#,
            "a template is a JSON object of claims",
        ),
    ] {
        let output = from_stdin(template);
        assert_exit(&output, 1);
        assert!(output.stdout.is_empty(), "{template}: printed something");
        assert!(
            stderr(&output).contains(&format!("standard input: {expected}")),
            "{template}: {}",
            stderr(&output)
        );
    }

    let no_user = dir.0.join("no-user.json");
    std::fs::write(&no_user, r#"{"org": {"slug": "acme"}}"#).unwrap();
    let unknown_root = dir.0.join("unknown-root.json");
    std::fs::write(&unknown_root, r#"{"users": {}}"#).unwrap();
    for (subject, expected) in [
        (no_user.to_str().unwrap(), "no user.id (or machine.id)"),
        (unknown_root.to_str().unwrap(), "`users` is not a root"),
        (
            "/nonexistent/subject.json",
            "cannot read /nonexistent/subject.json",
        ),
    ] {
        let output = run(
            &["template", "render", template, "--subject", subject],
            NO_ENV,
            None,
        );
        assert_exit(&output, 1);
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
    let out_of_range = run(
        &[
            "template",
            "render",
            template,
            "--subject",
            subject,
            "--lifetime",
            "10",
        ],
        NO_ENV,
        None,
    );
    assert_exit(&out_of_range, 2);
}

/// Sends `GET /.well-known/jwks.json` to `url` over a fresh connection with these `Host` header
/// lines (none, one or several), and returns the status and the body.
async fn get_with_hosts(url: &str, hosts: &[&str]) -> (u16, String) {
    request_with_hosts(url, "GET /.well-known/jwks.json", hosts).await
}

/// Sends `request_line` (`METHOD /path`) to `url` over a fresh connection with these `Host`
/// header lines, and returns the status and the body.
async fn request_with_hosts(url: &str, request_line: &str, hosts: &[&str]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!("{request_line} HTTP/1.1\r\n");
    for host in hosts {
        request.push_str(&format!("Host: {host}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("no reply in 10 s")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A web page the browser loaded from another name, resolved to 127.0.0.1 (DNS rebinding), sends
/// that name as `Host`: `dev` answers only loopback names, and the ones given with
/// `--allowed-host`.
#[tokio::test]
async fn dev_answers_only_loopback_and_allowed_host_names() {
    let dev = start_dev(&["--allowed-host", "Issuer.Example.test"]).await;
    let port = dev.port();
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("localhost:{port}"),
        "LOCALHOST".to_owned(),
        format!("[::1]:{port}"),
        "[::1]".to_owned(),
        "issuer.example.test".to_owned(),
        format!("issuer.example.TEST:{port}"),
    ] {
        let (status, body) = get_with_hosts(&dev.url, &[&host]).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains("\"keys\""), "{host}: {body}");
    }
    let attacker_with_port = format!("attacker.example:{port}");
    for hosts in [
        &["attacker.example"][..],
        &[attacker_with_port.as_str()],
        &["localhost.attacker.example"],
        &["127.0.0.1.nip.io"],
        &["localhost:1"],
        &["127.0.0.1:80"],
        &["[::1]:1"],
        &["issuer.example.test:1"],
        &["127.0.0.2"],
        &["0.0.0.0"],
        &[""],
        &["localhost:"],
        &["user@localhost"],
        &[],
        &["localhost", "attacker.example"],
    ] {
        let (status, body) = get_with_hosts(&dev.url, hosts).await;
        assert_eq!(status, 421, "{hosts:?}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
        let error = &body["errors"][0];
        assert_eq!(error["code"], "host_invalid", "{body}");
        assert!(
            error["long_message"]
                .as_str()
                .unwrap()
                .contains("--allowed-host"),
            "{body}"
        );
        assert!(!body.to_string().contains("attacker"), "{body}");
    }
    // Every route, and the routes that do not exist, behind the same check.
    for request_line in [
        "POST /m2m_tokens",
        "GET /v1/jwks",
        "GET /no/such/route",
        "GET http://localhost/.well-known/jwks.json",
    ] {
        let (status, body) =
            request_with_hosts(&dev.url, request_line, &["attacker.example"]).await;
        assert_eq!(status, 421, "{request_line}: {body}");
    }
    let (status, body) = request_with_hosts(
        &dev.url,
        "GET http://attacker.example/.well-known/jwks.json",
        &["localhost"],
    )
    .await;
    assert_eq!(status, 421, "an absolute target for another host: {body}");
    let help = String::from_utf8_lossy(&run(&["dev", "--help"], NO_ENV, None).stdout).into_owned();
    assert!(
        help.contains("--allowed-host") && help.contains("421"),
        "{help}"
    );
    let bad = run(
        &["dev", "--port", "0", "--allowed-host", "a b"],
        NO_ENV,
        None,
    );
    assert_exit(&bad, 2);
}

/// The variable that allows plain http to one non-loopback host, printed with `--host 0.0.0.0`.
const ALLOW_HTTP_HOST: &str = "MACHINE_AUTH_ALLOW_HTTP_HOST";

/// `block`'s variables, with CLERK_API_URL replaced by `url`.
fn pointed_at(block: &Block, url: &str) -> Vec<(String, String)> {
    let mut env = block.env();
    for (name, value) in &mut env {
        if name == "CLERK_API_URL" {
            *value = url.to_owned();
        }
    }
    env
}

/// Connects to `address`, for at most 5 s.
async fn connect(address: (&str, u16)) -> std::io::Result<tokio::net::TcpStream> {
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .expect("no answer to a connection in 5 s")
}

/// `--host 127.0.0.2`, another loopback address: no warning, no plain-http allowance; it serves
/// there (and not on 127.0.0.1), and the blocks, pasted as printed, work end to end.
#[tokio::test]
async fn dev_listens_on_another_loopback_address() {
    if std::net::TcpListener::bind("127.0.0.2:0").is_err() {
        eprintln!("skipped: 127.0.0.2 cannot be listened on here");
        return;
    }
    let dev = start_dev(&["--host", "127.0.0.2"]).await;
    let port = dev.port();
    let url = format!("http://127.0.0.2:{port}");
    assert_eq!(dev.url, url);
    for block in [&dev.server, &dev.client] {
        assert_eq!(block.exports["CLERK_API_URL"], url, "{}", dev.stdout);
    }
    assert!(!dev.stdout.contains(ALLOW_HTTP_HOST), "{}", dev.stdout);
    let logs = dev.stderr_with("issuer ready").await;
    assert!(
        logs.contains("issuer ready") && !logs.contains("WARNING"),
        "{logs}"
    );

    // A real connection to 127.0.0.2, named as the printed URL names it; none on 127.0.0.1.
    let (status, body) = get_with_hosts(&url, &[&format!("127.0.0.2:{port}")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"keys\""), "{body}");
    assert!(
        connect(("127.0.0.1", port)).await.is_err(),
        "it listens on 127.0.0.1 too"
    );

    // Machine A's block creates tokens, machine B's verifies them, both over 127.0.0.2.
    for format in ["jwt", "opaque"] {
        let created = run(
            &["token", "create", "--format", format],
            &dev.client.env(),
            None,
        );
        assert_exit(&created, 0);
        let token = stdout_json(&created)["token"].as_str().unwrap().to_owned();
        let verified = run(&["verify", &token], &dev.server.env(), None);
        assert_exit(&verified, 0);
        assert_eq!(stdout_json(&verified)["machine_id"], "mch_cron_service");
        assert_eq!(stdout_json(&verified)["token_format"], format);
    }
}

/// `--host 0.0.0.0`, to be reached from other containers: a loud warning on standard error; both
/// blocks name the issuer as other machines can (the first --allowed-host name, else this
/// machine's host name, else `<this-host>` to replace) and allow plain http to that one host.
#[tokio::test]
async fn dev_on_every_interface_warns_and_prints_a_url_other_machines_reach() {
    let dev = start_dev(&["--host", "0.0.0.0", "--allowed-host", "issuer.test"]).await;
    let port = dev.port();
    assert_eq!(dev.url, format!("http://0.0.0.0:{port}"));
    let warning = dev.stderr_with("development and CI only").await;
    for part in [
        "machine-auth: WARNING: listening on 0.0.0.0, not a loopback address",
        "plain http",
        "secret keys",
        "development and CI only",
        "demo's keys are public",
    ] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
    assert!(
        !dev.stdout.contains("not a loopback address"),
        "{}",
        dev.stdout
    );
    let url = format!("http://issuer.test:{port}");
    for block in [&dev.server, &dev.client] {
        assert_eq!(block.exports["CLERK_API_URL"], url, "{}", block.text);
        assert_eq!(
            block.exports[ALLOW_HTTP_HOST], "issuer.test",
            "{}",
            block.text
        );
        let lines: Vec<&str> = block.text.lines().collect();
        let at = lines
            .iter()
            .position(|line| line.starts_with(&format!("export {ALLOW_HTTP_HOST}=")))
            .unwrap();
        assert!(
            lines[at - 1].contains("plain http to this one host"),
            "{}",
            block.text
        );
    }
    // Still one machine's lines per block.
    let client_key = &dev.client.exports["CLERK_MACHINE_SECRET_KEY"];
    let instance_key = &dev.server.commented["CLERK_SECRET_KEY"];
    assert!(!dev.server.text.contains(client_key.as_str()));
    assert!(!dev.client.text.contains(instance_key.as_str()));

    // It listens on every interface: here through 127.0.0.1, named as other machines name it,
    // or as localhost; other names still get 421.
    let local = format!("http://127.0.0.1:{port}");
    for host in [format!("issuer.test:{port}"), "localhost".to_owned()] {
        let (status, body) = get_with_hosts(&local, &[&host]).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, body) = get_with_hosts(&local, &["attacker.example"]).await;
    assert_eq!(status, 421, "{body}");
    // The blocks' keys work through it (issuer.test resolves nowhere: 127.0.0.1 in its place).
    let created = run(
        &["token", "create", "--format", "opaque"],
        &pointed_at(&dev.client, &local),
        None,
    );
    assert_exit(&created, 0);
    let token = stdout_json(&created)["token"].as_str().unwrap().to_owned();
    let verified = run(&["verify", &token], &pointed_at(&dev.server, &local), None);
    assert_exit(&verified, 0);
    drop(dev);

    // Without --allowed-host: this machine's host name (answered to), or a placeholder.
    let dev = start_dev(&["--host", "0.0.0.0"]).await;
    let port = dev.port();
    let host = dev.server.exports[ALLOW_HTTP_HOST].clone();
    assert!(!host.is_empty() && host != "0.0.0.0", "{}", dev.stdout);
    for block in [&dev.server, &dev.client] {
        assert_eq!(block.exports[ALLOW_HTTP_HOST], host, "{}", dev.stdout);
        assert_eq!(
            block.exports["CLERK_API_URL"],
            format!("http://{host}:{port}"),
            "{}",
            dev.stdout
        );
    }
    if host == "<this-host>" {
        assert!(
            dev.stdout.contains("# Replace <this-host> in both blocks"),
            "{}",
            dev.stdout
        );
    } else {
        assert!(
            dev.stdout.contains(&format!("host name, {host}.")),
            "{}",
            dev.stdout
        );
        let (status, body) = get_with_hosts(
            &format!("http://127.0.0.1:{port}"),
            &[&format!("{host}:{port}")],
        )
        .await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    assert!(
        dev.stderr_with("WARNING").await.contains("WARNING"),
        "no warning"
    );
}

/// `--host` takes an IP address of this machine: anything else is a usage error that says what
/// to give, and an address of no interface here fails with the address and a hint.
#[test]
fn dev_refuses_a_host_it_cannot_listen_on() {
    for bad in [
        "issuer.test",
        "300.1.1.1",
        "127.0.0.1:8787",
        "[::1]:8787",
        "",
        "http://0.0.0.0",
    ] {
        let output = run(&["dev", "--port", "0", "--host", bad], NO_ENV, None);
        assert_exit(&output, 2);
        assert!(output.stdout.is_empty(), "{bad}: printed exports");
        let errors = stderr(&output);
        assert!(
            errors.contains("--host")
                && errors.contains("0.0.0.0")
                && errors.contains("--allowed-host"),
            "{bad}: {errors}"
        );
    }
    // TEST-NET-1: no interface has it (unless this system lets programs listen on any address).
    if std::net::TcpListener::bind("192.0.2.1:0").is_err() {
        let output = run(&["dev", "--port", "0", "--host", "192.0.2.1"], NO_ENV, None);
        assert_exit(&output, 2);
        assert!(output.stdout.is_empty(), "printed exports");
        let errors = stderr(&output);
        assert!(
            errors.contains("cannot listen on 192.0.2.1:0") && errors.contains("--host"),
            "{errors}"
        );
    }
}

/// The lines `dev` prints are pasted into shells: a machine name with a newline, a carriage
/// return or a bidi override must not leave its comment line.
#[tokio::test]
async fn dev_prints_machine_names_escaped_inside_their_comments() {
    let dir = TempDir::new("names");
    let config = dir.path().join("machines.json");
    let hostile = "Cron\n rm -rf ~\r\u{202e}evil\u{2028}x\u{85}y";
    std::fs::write(
        &config,
        json!({
            "instance_secret_key": "sk_test_cli_instance",
            "machines": [
                {"name": hostile, "secret_key": "ak_test_cli_client", "scopes": ["mch_cli_api"]},
                {"id": "mch_cli_api", "name": hostile, "secret_key": "ak_test_cli_api"},
                {"name": format!("{hostile} 2"), "secret_key": "ak_test_cli_other"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let output = match try_start_dev(&["--config", config.to_str().unwrap()]).await {
        Ok(output) => output,
        // A configuration that refuses such names prints nothing to paste, and names the field.
        Err(stdout) => {
            assert!(!stdout.contains("export"), "{stdout}");
            let refused = run(
                &["dev", "--port", "0", "--config", config.to_str().unwrap()],
                NO_ENV,
                None,
            );
            assert_exit(&refused, 2);
            assert!(stderr(&refused).contains(".name"), "{}", stderr(&refused));
            return;
        }
    };
    let mut lines = output.stdout.split('\n');
    while let Some(line) = lines.next() {
        if line.is_empty() || line.starts_with("# ") || line.starts_with("listening on ") {
        } else if let Some(rest) = line.strip_prefix("export ") {
            // A single-quoted value (the PEM) may span lines.
            let mut value = rest.split_once('=').unwrap().1.to_owned();
            while value.starts_with('\'') && (value.len() < 2 || !value.ends_with('\'')) {
                value.push('\n');
                value.push_str(lines.next().expect("an unterminated quote"));
            }
        } else {
            panic!(
                "a line that is neither a comment nor an export: {line:?}\n{}",
                output.stdout
            );
        }
    }
    for bad in ['\r', '\u{202e}', '\u{2028}', '\u{85}'] {
        assert!(
            !output.stdout.contains(bad),
            "{bad:?} printed: {}",
            output.stdout
        );
    }
    assert!(
        output
            .stdout
            .contains(r"Cron\n rm -rf ~\r\u{202e}evil\u{2028}x\u{85}y"),
        "{}",
        output.stdout
    );
    // Machine B's name, in its block's description, too.
    assert!(
        output.server.text.contains(
            r"# mch_cli_api (Cron\n rm -rf ~\r\u{202e}evil\u{2028}x\u{85}y), the machine"
        ),
        "{}",
        output.server.text
    );
    assert_eq!(output.other_machines.len(), 1, "{}", output.stdout);
}

/// A token on the command line shows in `ps` and the shell's history: `verify` and `inspect` read
/// it from standard input (no argument, or `-`) or MACHINE_AUTH_TOKEN, and warn when it is an
/// argument.
#[test]
fn verify_and_inspect_read_the_token_from_stdin_or_the_environment() {
    let key = TestKey::shared_rsa();
    let token = key.token("ins_test", &common::claims());
    let pem = key.public_pem();
    let layer = [("CLERK_JWT_KEY", pem.as_str())];
    let with_env = [
        ("CLERK_JWT_KEY", pem.as_str()),
        ("MACHINE_AUTH_TOKEN", token.as_str()),
    ];
    let piped = format!("{token}\n");
    let warning = "warning: the token is an argument";
    for command in ["verify", "inspect"] {
        for (arguments, env, stdin) in [
            (&[command][..], &layer[..], Some(piped.as_str())),
            (&[command, "-"], &layer, Some(piped.as_str())),
            (&[command], &with_env, None),
        ] {
            let output = run(arguments, env, stdin);
            assert_exit(&output, 0);
            assert!(
                !stderr(&output).contains(warning),
                "{arguments:?}: {}",
                stderr(&output)
            );
            assert!(!stderr(&output).contains(&token));
        }
        let argument = run(&[command, &token], &layer, None);
        assert_exit(&argument, 0);
        assert!(
            stderr(&argument).contains(warning) && stderr(&argument).contains("MACHINE_AUTH_TOKEN"),
            "{}",
            stderr(&argument)
        );
        assert!(!stderr(&argument).contains(&token));
        let nothing = run(&[command], &layer, Some(""));
        assert_exit(&nothing, 1);
        assert!(
            stderr(&nothing).contains("MACHINE_AUTH_TOKEN"),
            "{}",
            stderr(&nothing)
        );
        let help =
            String::from_utf8_lossy(&run(&[command, "--help"], NO_ENV, None).stdout).into_owned();
        assert!(
            help.contains("MACHINE_AUTH_TOKEN")
                && help.contains(&format!("| machine-auth {command}"))
                && !help.contains(&format!("machine-auth {command} \"$TOKEN\"")),
            "{help}"
        );
    }
    let top = String::from_utf8_lossy(&run(&["--help"], NO_ENV, None).stdout).into_owned();
    assert!(!top.contains("verify \"$TOKEN\""), "{top}");
}

/// `token create` to a plain-http issuer on another host (a docker compose service) is refused
/// unless MACHINE_AUTH_ALLOW_HTTP_HOST names that host, as `machine-auth dev --host` prints.
#[test]
fn token_create_over_plain_http_to_another_host_needs_it_named() {
    let env = [
        ("CLERK_API_URL", "http://issuer.invalid:9"),
        ("CLERK_MACHINE_SECRET_KEY", "ak_test_0123456789abcdef"),
    ];
    let refused = run(&["token", "create"], &env, None);
    assert_exit(&refused, 2);
    assert!(
        stderr(&refused).contains(ALLOW_HTTP_HOST),
        "{}",
        stderr(&refused)
    );

    let allowed = [env[0], env[1], (ALLOW_HTTP_HOST, "issuer.invalid")];
    let attempted = run(&["token", "create"], &allowed, None);
    assert_exit(&attempted, 2);
    let stderr = stderr(&attempted);
    assert!(
        stderr.contains("cannot reach http://issuer.invalid:9/m2m_tokens"),
        "{stderr}"
    );
    assert!(
        stderr.contains("plain http is allowed to `issuer.invalid`"),
        "{stderr}"
    );
    assert!(!stderr.contains("ak_test_0123456789abcdef"), "{stderr}");
}
