//! [`MachineVerifier::ready`]: a startup check that the verifier can verify, with a message that
//! says what to fix when it cannot.

use std::time::Duration;

use tokio::time::Instant;

use super::MachineVerifier;
use super::opaque::{Endpoint, IntrospectionRoute};
use super::probe::Probe;
use crate::keys::{JwksSource, KeySource, NotLoaded};

/// The longest wait [`MachineVerifier::ready`] takes (a year): longer timeouts are cut to it.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);
/// The first pause between two probes of an endpoint that could not be reached.
const FIRST_PROBE_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two probes.
const MAX_PROBE_PAUSE: Duration = Duration::from_secs(5);

/// Why [`MachineVerifier::ready`] found that the verifier cannot verify tokens yet.
///
/// Its `Display` text says what failed and what to do; it never holds a secret key or a token
/// (URLs are shown without their credentials and query). [`timed_out`](Self::timed_out) tells
/// an endpoint that did not answer in time (a later check may pass) from one that answered in a
/// way no wait changes (a refused key, a wrong URL).
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::MachineVerifier;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The local issuer, standing in for Clerk's Backend API.
/// let issuer = machine_auth_issuer::Issuer::builder(machine_auth_issuer::IssuerConfig::demo()).build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let api_url = format!("http://{}", listener.local_addr()?);
/// tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
///
/// let verifier = MachineVerifier::builder()
///     .clerk_api_url(&api_url)
///     .clerk_secret_key("sk_test_not_this_instances_key")
///     .build()?;
/// let error = verifier.ready(Duration::from_secs(10)).await.unwrap_err();
/// assert!(!error.timed_out());
/// assert!(error.to_string().contains("refused CLERK_SECRET_KEY"));
/// assert!(!error.to_string().contains("sk_test_not_this_instances_key"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotReady {
    message: String,
    timed_out: bool,
}

impl NotReady {
    fn answered(message: String) -> Self {
        Self {
            message,
            timed_out: false,
        }
    }

    fn timed_out_with(message: String) -> Self {
        Self {
            message,
            timed_out: true,
        }
    }

    /// Whether the check ran out of time waiting for an endpoint (unreachable, failing, or slow),
    /// rather than being told something no wait changes (a refused key, a wrong URL, a key set
    /// without a usable key). With several failures, whether every one of them timed out.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A port that refuses connections: every fetch fails, and the check waits for nothing.
    /// let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    /// let verifier = MachineVerifier::from_jwks_url(&format!("http://{closed}/jwks"))?;
    /// let error = verifier.ready(Duration::from_secs(3)).await.unwrap_err();
    /// assert!(error.timed_out());
    /// assert!(error.to_string().contains("within 3s"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl MachineVerifier {
    /// Waits, at most `timeout`, until this verifier can verify tokens: for a start-up check or a
    /// readiness probe, so that a wrong key or URL shows at deployment rather than as 401s and
    /// 503s later.
    ///
    /// - With a PEM key (and no opaque tokens), it returns `Ok` at once: no network is needed.
    /// - With a JWKS (`CLERK_SECRET_KEY`, `CLERK_JWKS_URL`, `CLERK_PUBLISHABLE_KEY`), it waits
    ///   for the first key set. The endpoint refusing the request (401 or 403: a wrong secret
    ///   key), answering 404 (a wrong URL) or serving a document that is not a usable JWKS fails
    ///   at once; any other failure (no connection, a timeout, a 5xx) is retried by the
    ///   background refresh until the timeout.
    /// - With opaque tokens (`CLERK_MACHINE_SECRET_KEY`, `CLERK_SECRET_KEY`, an
    ///   [`introspector`](crate::MachineVerifierBuilder::introspector)), it asks each
    ///   endpoint once about a made-up `mt_…` token. "No such token" (Clerk's 404 with its
    ///   token-not-found code, RFC 7662's `{"active": false}`) means the key was accepted: `Ok`.
    ///   A refused key (401, 403), a 404 without that code (a wrong API path) or a reply that is
    ///   not the endpoint's fails at once; an endpoint that cannot be reached, or fails, is asked
    ///   again (every 0.5 s, doubling up to 5 s) until the timeout. These probes bypass the
    ///   circuit breaker and count in no statistics.
    ///
    /// The JWKS and the introspection endpoints are checked at the same time; the error names
    /// every one that failed. Nothing is cached by the check: verification does not depend on it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// verifier.ready(Duration::from_secs(5)).await?; // a PEM key: ready at once
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// At start-up, against Clerk:
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_env()?;
    /// if let Err(error) = verifier.ready(Duration::from_secs(10)).await {
    ///     eprintln!("machine auth is not ready: {error}");
    ///     std::process::exit(1);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn ready(&self, timeout: Duration) -> Result<(), NotReady> {
        let timeout = timeout.min(MAX_WAIT);
        let deadline = Instant::now() + timeout;
        let jwks = async {
            match &self.inner.keys {
                Some(KeySource::Jwks(source)) => jwks_ready(source, deadline, timeout).await,
                Some(KeySource::Static(_)) | None => Ok(()),
            }
        };
        // A verifier has at most two endpoints: Clerk's, and another introspector.
        let mut routes = self.inner.opaque.routes();
        let (jwks, first, second) = tokio::join!(
            jwks,
            probe(routes.next(), deadline, timeout),
            probe(routes.next(), deadline, timeout)
        );
        let mut failures: Vec<NotReady> =
            [jwks.err(), first, second].into_iter().flatten().collect();
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(NotReady {
                timed_out: failures.iter().all(NotReady::timed_out),
                message: failures
                    .iter()
                    .map(|error| error.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; and "),
            }),
        }
    }
}

/// Waits for the first key set of `source`.
async fn jwks_ready(
    source: &JwksSource,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), NotReady> {
    let url = source.endpoint().shown();
    let clerk = source.endpoint().authorization.is_some();
    let outcome = match tokio::time::timeout_at(deadline, source.wait_loaded()).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => {
            let last = source.last_fetch_error().map_or_else(
                || "no fetch has finished".to_owned(),
                |error| format!("the last fetch: {error}"),
            );
            return Err(NotReady::timed_out_with(format!(
                "no JWKS was loaded from `{url}` within {timeout:?} ({last}): check that it is \
                 reachable from here and serves the issuer's keys"
            )));
        }
    };
    let message = match outcome {
        Ok(()) => return Ok(()),
        Err(NotLoaded::Refused(status @ (401 | 403))) if clerk => format!(
            "Clerk's API refused CLERK_SECRET_KEY (HTTP {status}) when the JWKS was fetched from \
             `{url}`: set CLERK_SECRET_KEY to the secret key (`sk_…`, Clerk's dashboard: API keys) \
             of the instance whose Backend API CLERK_API_URL names"
        ),
        Err(NotLoaded::Refused(status @ (401 | 403))) => format!(
            "the JWKS endpoint `{url}` refused the request (HTTP {status}): a JWKS URL must \
             serve its keys without credentials; check CLERK_JWKS_URL (or the publishable key)"
        ),
        Err(NotLoaded::Refused(404)) if clerk => format!(
            "`{url}` answered 404: CLERK_API_URL's path is probably wrong: set it to the Backend \
             API's base URL, such as https://api.clerk.com or the URL `machine-auth dev` prints \
             (the JWKS is read at {{CLERK_API_URL}}/v1/jwks)"
        ),
        Err(NotLoaded::Refused(status)) => format!(
            "the JWKS endpoint `{url}` answered HTTP {status}: the URL is probably wrong; check \
             CLERK_JWKS_URL (or the publishable key)"
        ),
        Err(NotLoaded::Unusable(reason)) => format!(
            "the JWKS at `{url}` cannot be used ({reason}): check that it is the issuer's JWKS, \
             and the allowed algorithms (`algorithms(…)`)"
        ),
        Err(NotLoaded::NoUsableKey) => format!(
            "the JWKS at `{url}` holds no key this verifier can use (the log says why each was \
             skipped): check that it is the issuer's JWKS, and the allowed algorithms \
             (`algorithms(…)`)"
        ),
    };
    Err(NotReady::answered(message))
}

/// Why `route`, if there is one, is not ready.
async fn probe(
    route: Option<&IntrospectionRoute>,
    deadline: Instant,
    timeout: Duration,
) -> Option<NotReady> {
    endpoint_ready(route?, deadline, timeout).await.err()
}

/// Probes one introspection endpoint until it answers, or until `deadline`.
async fn endpoint_ready(
    route: &IntrospectionRoute,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), NotReady> {
    let endpoint = route.endpoint();
    let mut last_failure = None;
    let answered = tokio::time::timeout_at(deadline, async {
        let mut pause = FIRST_PROBE_PAUSE;
        loop {
            match route.probe().await {
                Probe::Accepted => return Ok(()),
                Probe::Refused(status) => {
                    return Err(NotReady::answered(refused(endpoint, status)));
                }
                Probe::NotFound => return Err(NotReady::answered(not_found(endpoint))),
                Probe::Unusable(what) => {
                    return Err(NotReady::answered(unusable_reply(endpoint, &what)));
                }
                Probe::Failed(what) => last_failure = Some(what),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PROBE_PAUSE);
        }
    })
    .await;
    answered.unwrap_or_else(|_elapsed| {
        let last = last_failure.map_or_else(
            || "no answer yet".to_owned(),
            |what| format!("the last probe: {what}"),
        );
        let what = match endpoint {
            Endpoint::Clerk { url, .. } => format!("Clerk's API at `{url}`"),
            Endpoint::Custom => "the introspection endpoint (`introspector`)".to_owned(),
        };
        Err(NotReady::timed_out_with(format!(
            "{what} did not answer within {timeout:?} ({last}; the log says more): check that \
             it is reachable from here"
        )))
    })
}

/// The message for an endpoint that refused the verifier's credentials.
fn refused(endpoint: &Endpoint, status: Option<u16>) -> String {
    let status = status.map_or_else(|| "HTTP 401 or 403".to_owned(), |s| format!("HTTP {s}"));
    match endpoint {
        Endpoint::Clerk {
            url,
            machine_key: true,
        } => format!(
            "Clerk's API at `{url}` refused CLERK_MACHINE_SECRET_KEY ({status}): set it to this \
             machine's secret key (`ak_…`, Clerk's dashboard: Machines) of the instance whose \
             Backend API CLERK_API_URL names"
        ),
        Endpoint::Clerk {
            url,
            machine_key: false,
        } => format!(
            "Clerk's API at `{url}` refused CLERK_SECRET_KEY ({status}): set it to the secret key \
             (`sk_…`, Clerk's dashboard: API keys) of the instance whose Backend API \
             CLERK_API_URL names"
        ),
        Endpoint::Custom => format!(
            "the introspection endpoint (`introspector`) refused the verifier's credentials \
             ({status}): check its client credentials"
        ),
    }
}

/// The message for an endpoint whose URL answered 404 without "no such token".
fn not_found(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Clerk { url, .. } => format!(
            "`{url}` answered 404 without Clerk's token-not-found error code: CLERK_API_URL's \
             path is probably wrong: set it to the Backend API's base URL, such as \
             https://api.clerk.com or the URL `machine-auth dev` prints (opaque tokens are \
             verified at {{CLERK_API_URL}}/m2m_tokens/verify)"
        ),
        Endpoint::Custom => "the introspection endpoint (`introspector`) answered 404: its URL's \
                             path is probably wrong"
            .to_owned(),
    }
}

/// The message for an endpoint whose answer about a made-up token could not be used.
fn unusable_reply(endpoint: &Endpoint, what: &str) -> String {
    match endpoint {
        Endpoint::Clerk { url, .. } => format!(
            "`{url}` answered a made-up token with something that is not Clerk's answer \
             ({what}): check that CLERK_API_URL is Clerk's Backend API, or the URL \
             `machine-auth dev` prints"
        ),
        Endpoint::Custom => format!(
            "the introspection endpoint (`introspector`) answered a made-up token with {what}: \
             check its URL"
        ),
    }
}
