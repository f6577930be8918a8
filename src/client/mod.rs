//! Machine A: a token source that creates machine tokens and reuses them, an outgoing Tower
//! layer and a reqwest integration that attach them (feature `client`).
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_machine_auth::client::MachineTokenSource;
//!
//! // CLERK_MACHINE_SECRET_KEY, and CLERK_API_URL (default https://api.clerk.com).
//! let source = MachineTokenSource::from_env()?;
//! let http = reqwest::Client::new();
//! let response = source.send(http.post("https://reports.internal/cron/run")).await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
//!
//! Tokens and the machine secret key travel over https only, or plain http to a loopback host
//! (`localhost`, `127.0.0.0/8`, `::1`): a source refuses an `http://` issuer URL elsewhere when it
//! is built, and a request to one when it is sent
//! ([`InsecureDestination`]), unless it was built with
//! [`allow_http_host`](MachineTokenSourceBuilder::allow_http_host) for that one host
//! (`MACHINE_AUTH_ALLOW_HTTP_HOST`), or with
//! [`allow_insecure_http_to_any_host`](MachineTokenSourceBuilder::allow_insecure_http_to_any_host).

mod create;
mod error;
mod layer;
mod m2m_tokens;
mod send;
mod source;
mod token;

pub use error::{InsecureDestination, SendError, TokenError};
pub use layer::{AttachMachineToken, MachineTokenLayer, ReplayBody, ResponseFuture};
pub use m2m_tokens::{M2mApiError, M2mTokens};
pub use source::{MachineTokenSource, MachineTokenSourceBuilder, TokenSourceStats};
pub use token::MachineToken;

/// The `reqwest` this module's [`send`](MachineTokenSource::send) takes requests of (0.13):
/// build them with this one, so that a project that also depends on another `reqwest` release
/// does not hand `send()` a `RequestBuilder` of the wrong version.
///
/// ```no_run
/// use tower_machine_auth::client::{MachineTokenSource, reqwest};
///
/// # async fn call(source: MachineTokenSource) -> Result<(), Box<dyn std::error::Error>> {
/// let http = reqwest::Client::new();
/// source.send(http.post("https://reports.internal/cron/run")).await?;
/// # Ok(())
/// # }
/// ```
pub use reqwest;
