//! The `machine-auth` command line, run as a process against its own `dev` issuer.
#![cfg(feature = "cli")]

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};

use common::opaque_token;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const BINARY: &str = env!("CARGO_BIN_EXE_machine-auth");

/// A running `machine-auth dev`, and the variables its export lines set.
struct Dev {
    _child: tokio::process::Child,
    url: String,
    exports: HashMap<String, String>,
}

async fn start_dev(arguments: &[&str]) -> Dev {
    let mut child = tokio::process::Command::new(BINARY)
        .arg("dev")
        .args(["--port", "0"])
        .args(arguments)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut exports = HashMap::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await
    {
        if let Some(rest) = line.strip_prefix("listening on ") {
            url = Some(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("export ") {
            let (name, value) = rest.split_once('=').unwrap();
            let value = value.split("  #").next().unwrap().trim();
            exports
                .entry(name.to_owned())
                .or_insert_with(|| value.to_owned());
        } else if line.contains("CLERK_JWT_KEY") {
            break; // the last line about the keys
        }
    }
    Dev {
        _child: child,
        url: url.expect("no `listening on` line"),
        exports,
    }
}

/// Runs `machine-auth` with only these variables (and PATH) set.
fn run(arguments: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(arguments)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "stdout is not JSON: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_whole_cycle_against_dev() {
    let dev = start_dev(&[]).await;
    assert_eq!(dev.exports["CLERK_API_URL"], dev.url);
    let env = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), dev.exports[*n].clone()))
            .collect()
    };
    let client_env = env(&["CLERK_API_URL", "CLERK_MACHINE_SECRET_KEY"]);
    let client_env: Vec<(&str, &str)> = client_env
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let server_env = env(&["CLERK_API_URL", "CLERK_SECRET_KEY"]);
    let server_env: Vec<(&str, &str)> = server_env
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();

    let jwt = run(
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
        &client_env,
        None,
    );
    assert!(jwt.status.success(), "{}", stderr(&jwt));
    let jwt = stdout_json(&jwt);
    assert_eq!(jwt["claims"]["job"], "nightly");
    let jwt_token = jwt["token"].as_str().unwrap().to_owned();

    let verified = run(&["verify", &jwt_token], &server_env, None);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert_eq!(stdout_json(&verified)["machine_id"], "mch_cron_service");
    let from_stdin = run(
        &["verify", "-"],
        &server_env,
        Some(&format!("{jwt_token}\n")),
    );
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));

    let opaque = stdout_json(&run(&["token", "create"], &client_env, None));
    let opaque_token = opaque["token"].as_str().unwrap().to_owned();
    assert!(
        run(&["verify", &opaque_token], &server_env, None)
            .status
            .success()
    );
    let revoked = run(
        &[
            "token",
            "revoke",
            opaque["id"].as_str().unwrap(),
            "--reason",
            "test",
        ],
        &client_env,
        None,
    );
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_eq!(stdout_json(&revoked)["revocation_reason"], "test");
    let after = run(&["verify", &opaque_token], &server_env, None);
    assert_eq!(after.status.code(), Some(1));
    assert!(
        stderr(&after).contains("token-invalid"),
        "{}",
        stderr(&after)
    );

    let garbage = run(&["verify", "not-a-token"], &server_env, None);
    assert_eq!(garbage.status.code(), Some(1));
    assert!(stderr(&garbage).contains("token-type-mismatch"));

    let unknown = run(
        &["token", "revoke", "mt_00000000000000000000000000000000"],
        &client_env,
        None,
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("404"), "{}", stderr(&unknown));

    let inspected = run(&["inspect", &jwt_token], &[], None);
    assert!(inspected.status.success());
    let inspected = stdout_json(&inspected);
    assert_eq!(inspected["unverified"], true);
    assert_eq!(inspected["header"]["cat"], "cl_B7d4PD333AAA");
    assert_eq!(inspected["claims"]["sub"], "mch_cron_service");
    assert!(stderr(&run(&["inspect", &jwt_token], &[], None)).contains("NOT VERIFIED"));
    assert_eq!(
        run(&["inspect", &opaque_token], &[], None).status.code(),
        Some(1)
    );
    assert_eq!(run(&["inspect", "a.b"], &[], None).status.code(), Some(1));
}

#[test]
fn missing_configuration_is_exit_2_with_what_to_set() {
    let verify = run(&["verify", "x.y.z"], &[], None);
    assert_eq!(verify.status.code(), Some(2));
    assert!(
        stderr(&verify).contains("CLERK_JWT_KEY"),
        "{}",
        stderr(&verify)
    );
    let create = run(&["token", "create"], &[], None);
    assert_eq!(create.status.code(), Some(2));
    assert!(
        stderr(&create).contains("CLERK_MACHINE_SECRET_KEY"),
        "{}",
        stderr(&create)
    );
    let claims = run(
        &["token", "create", "--claims", "[1]"],
        &[("CLERK_MACHINE_SECRET_KEY", "ak_x")],
        None,
    );
    assert_eq!(claims.status.code(), Some(1));
    assert!(stderr(&claims).contains("JSON object"));
}

#[tokio::test]
async fn an_unreachable_verifier_is_exit_2() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}");
    let output = run(
        &["verify", &opaque_token()],
        &[
            ("CLERK_MACHINE_SECRET_KEY", "ak_machine_key"),
            ("CLERK_API_URL", &url),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("verifier-unavailable"));
}

#[tokio::test]
async fn dev_keeps_tokens_in_a_data_directory_and_reads_a_config_file() {
    let dir = std::env::temp_dir().join(format!("machine-auth-cli-{}", opaque_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("machines.json");
    std::fs::write(
        &config,
        r#"{"instance_secret_key": "sk_test_cli_instance", "machines": [
            {"name": "Billing", "secret_key": "ak_test_cli_billing", "scopes": []}]}"#,
    )
    .unwrap();
    let data = dir.join("data");
    let token = {
        let dev = start_dev(&[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .await;
        assert_eq!(
            dev.exports["CLERK_MACHINE_SECRET_KEY"],
            "ak_test_cli_billing"
        );
        let env = [
            ("CLERK_API_URL", dev.url.as_str()),
            ("CLERK_MACHINE_SECRET_KEY", "ak_test_cli_billing"),
        ];
        let created = stdout_json(&run(&["token", "create"], &env, None));
        assert!(
            created["subject"].as_str().unwrap().starts_with("mch_"),
            "a generated id: {created}"
        );
        created["token"].as_str().unwrap().to_owned()
    };
    let dev = start_dev(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .await;
    let env = [
        ("CLERK_API_URL", dev.url.as_str()),
        ("CLERK_SECRET_KEY", "sk_test_cli_instance"),
    ];
    let verified = run(&["verify", &token], &env, None);
    assert!(
        verified.status.success(),
        "the token did not survive the restart: {}",
        stderr(&verified)
    );

    std::fs::write(&config, r#"{"instance_secret_key": "sk_test_cli_instance", "machines": [{"id": "billing", "name": "B", "secret_key": "ak_test_cli_billing"}]}"#).unwrap();
    let bad = run(
        &["dev", "--port", "0", "--config", config.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("machines[0].id"), "{}", stderr(&bad));
    drop(dev);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_command_has_help_with_an_example() {
    for command in [
        &["--help"][..],
        &["dev", "--help"],
        &["token", "create", "--help"],
        &["token", "revoke", "--help"],
        &["verify", "--help"],
        &["inspect", "--help"],
    ] {
        let output = run(command, &[], None);
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Example"), "{command:?}: {help}");
    }
}
