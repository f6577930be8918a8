//! The [`TestIssuer`](super::TestIssuer)'s stand-in for Clerk's `POST /m2m_tokens/verify`: a
//! Hyper server on `127.0.0.1`, port chosen by the system, that knows the issuer's opaque tokens.
//!
//! It is bounded: at most [`MAX_CONNECTIONS`] connections at once (more are closed at once),
//! request bodies of at most [`MAX_BODY_BYTES`]. It is drop-safe: the accept loop owns its
//! connection tasks, and dropping the [`Server`] aborts the loop, which aborts them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};

use crate::clock::{Clock, unix_millis};

/// The most connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// The largest request body read (Clerk's verify body is `{"token": …}`).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// An opaque token as the server knows it (times in milliseconds, as Clerk's resource has them).
#[derive(Debug, Clone)]
pub(super) struct OpaqueRecord {
    pub(super) id: String,
    pub(super) subject: String,
    pub(super) scopes: Vec<String>,
    pub(super) claims: Option<Map<String, Value>>,
    pub(super) expiration_ms: i64,
    pub(super) created_at_ms: i64,
    pub(super) revoked: bool,
    pub(super) last_used_at_ms: Option<i64>,
}

/// The issuer's opaque tokens, by token, and what the server needs to answer for them.
#[derive(Debug)]
pub(super) struct TokenStore {
    machine_secret_key: String,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<String, OpaqueRecord>>,
}

impl TokenStore {
    pub(super) fn new(machine_secret_key: String, clock: Arc<dyn Clock>) -> Self {
        Self {
            machine_secret_key,
            clock,
            tokens: Mutex::default(),
        }
    }

    pub(super) fn machine_secret_key(&self) -> &str {
        &self.machine_secret_key
    }

    pub(super) fn insert(&self, token: String, record: OpaqueRecord) {
        self.lock().insert(token, record);
    }

    /// Marks `token` revoked; whether it is one of the issuer's.
    pub(super) fn revoke(&self, token: &str) -> bool {
        match self.lock().get_mut(token) {
            Some(record) => {
                record.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Clerk's resource for a valid token, recording its use; `None` for a token that is
    /// unknown, revoked or expired (Clerk answers 404 for all three).
    fn verify(&self, token: &str) -> Option<Value> {
        let now_ms = unix_millis(&*self.clock);
        let mut tokens = self.lock();
        let record = tokens.get_mut(token)?;
        if record.revoked || record.expiration_ms <= now_ms {
            return None;
        }
        record.last_used_at_ms = Some(now_ms);
        Some(json!({
            "object": "machine_to_machine_token",
            "id": record.id,
            "subject": record.subject,
            "claims": record.claims,
            "scopes": record.scopes,
            "revoked": false,
            "revocation_reason": null,
            "expired": false,
            "expiration": record.expiration_ms,
            "last_used_at": record.last_used_at_ms,
            "created_at": record.created_at_ms,
            "updated_at": record.created_at_ms,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, OpaqueRecord>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running server; dropping it stops it.
#[derive(Debug)]
pub(super) struct Server {
    addr: SocketAddr,
    task: AbortHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Listens on `127.0.0.1` (port chosen by the system) and serves on `runtime`.
    pub(super) fn start(
        store: Arc<TokenStore>,
        runtime: &tokio::runtime::Handle,
    ) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let task = runtime.spawn(serve(listener, store)).abort_handle();
        Ok(Self { addr, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Accepts connections until aborted. The connections live in a `JoinSet` owned here, so they
/// end with the loop.
async fn serve(listener: TcpListener, store: Arc<TokenStore>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, or a connection reset before it was accepted: wait
                // a little rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            continue; // `stream` is dropped: the connection is closed.
        }
        let store = Arc::clone(&store);
        connections.spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&store), request));
            // A connection that fails (the client hung up mid-request) concerns no one else.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers one request as Clerk's Backend API answers `POST /m2m_tokens/verify`.
async fn answer(
    store: Arc<TokenStore>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let route = matches!(
        request.uri().path(),
        "/m2m_tokens/verify" | "/v1/m2m_tokens/verify"
    );
    if !route || request.method() != Method::POST {
        // Not "resource_not_found", which is about a token: a verifier tells a wrong API path by
        // the difference.
        return Ok(clerk_error(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "route not found",
            "this route was not found",
        ));
    }
    // Clerk checks the key before the body.
    let key = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if key != Some(store.machine_secret_key()) {
        let sentence = "The provided Machine Secret Key is invalid. Make sure that your Machine \
                        Secret Key is correct.";
        return Ok(clerk_error(
            StatusCode::UNAUTHORIZED,
            "machine_secret_key_invalid",
            sentence,
            sentence,
        ));
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(bad_request("the request body could not be read"));
        }
    };
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body.get("token")?.as_str().map(str::to_owned));
    let Some(token) = token else {
        return Ok(bad_request(
            "the body must be a JSON object with `token`, a string",
        ));
    };
    Ok(match store.verify(&token) {
        Some(resource) => json_response(StatusCode::OK, &resource),
        None => clerk_error(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            "not found",
            "the machine token was not found",
        ),
    })
}

fn bad_request(long_message: &str) -> Response<Full<Bytes>> {
    clerk_error(
        StatusCode::BAD_REQUEST,
        "request_body_invalid",
        "Request body invalid",
        long_message,
    )
}

/// Clerk's error reply: `{"errors": [{"code", "message", "long_message"}]}`.
fn clerk_error(
    status: StatusCode,
    code: &str,
    message: &str,
    long_message: &str,
) -> Response<Full<Bytes>> {
    let body = json!({
        "errors": [{"code": code, "message": message, "long_message": long_message}],
    });
    json_response(status, &body)
}

/// A JSON reply with `Content-Type: application/json` exactly, as Clerk sends it.
fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
