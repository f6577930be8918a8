//! What the issuer logs about requests and its data directory: request-supplied text escaped,
//! never raw.

use crate::common::*;
use machine_auth_issuer::{Issuer, IssuerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request_line` and a few headers as raw bytes, so that nothing percent-encodes the path,
/// and returns the response's status line.
async fn send_raw(address: std::net::SocketAddr, request_line: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{request_line}\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    response.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn request_paths_and_data_directory_warnings_are_logged_escaped() {
    let captured = CapturedLogs::start();
    let issuer = Issuer::builder(IssuerConfig::demo()).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = issuer.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // A right-to-left override as raw UTF-8 in the path, and a newline percent-encoded.
    let status = send_raw(
        address,
        "POST /m2m_tokens/mt_\u{202e}%0Aevil\u{202c}/revoke HTTP/1.1",
    )
    .await;
    assert!(status.contains("401"), "{status}");
    let status = send_raw(address, "GET /v1/\u{2066}users HTTP/1.1").await;
    assert!(status.contains("404"), "{status}");

    let logs = captured.text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(" request ") && line.contains("path="))
        .collect();
    assert_eq!(lines.len(), 2, "one line per request:\n{logs}");
    assert!(
        lines[0].contains(r"/m2m_tokens/mt_\u{202e}%0Aevil\u{202c}/revoke")
            && lines[0].contains("POST")
            && lines[0].contains("401"),
        "{logs}"
    );
    assert!(lines[1].contains(r"/v1/\u{2066}users"), "{logs}");
    for raw in ['\u{202e}', '\u{202c}', '\u{2066}'] {
        assert!(
            !logs.contains(raw),
            "a raw direction override in the logs:\n{logs}"
        );
    }
    drop(captured);

    // A data directory others may read: accepted with a warning that names it, escaped.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "machine-auth-issuer-logs-\u{202e}-{}",
            opaque_token()
        ));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let captured = CapturedLogs::start();
        Issuer::builder(IssuerConfig::demo())
            .data_dir(&dir)
            .build()
            .unwrap();
        let logs = captured.text();
        assert!(logs.contains("WARN"), "{logs}");
        assert!(logs.contains("0755"), "{logs}");
        assert!(
            logs.contains(r"machine-auth-issuer-logs-\u{202e}-"),
            "{logs}"
        );
        assert!(!logs.contains('\u{202e}'), "{logs}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
