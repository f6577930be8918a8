//! What a verifier can say about itself: [`MachineVerifier::health`], and a readiness endpoint
//! built on it ([`Readiness`]).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use serde::Serialize;

use super::MachineVerifier;
use crate::introspect::BreakerState;
use crate::keys::KeySource;

/// Where a verifier's JWT keys come from, as [`VerifierHealth`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeySourceKind {
    /// The verifier verifies no JWTs (opaque tokens only).
    None,
    /// One PEM key: always loaded, never stale.
    Pem,
    /// A JWKS fetched and refreshed in the background.
    Jwks,
}

/// A verifier's state: whether its keys are loaded and how old they are, why the last JWKS fetch
/// failed, the introspection circuit breaker, the cache. Read with [`MachineVerifier::health`].
///
/// ```
/// use tower_machine_auth::MachineVerifier;
/// use tower_machine_auth::KeySourceKind;
///
/// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
/// let health = verifier.health();
/// assert_eq!(health.key_source, KeySourceKind::Pem);
/// assert!(health.keys_loaded() && health.is_ready());
/// assert_eq!(health.breaker, None); // no introspection endpoint
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifierHealth {
    /// Where the JWT keys come from.
    pub key_source: KeySourceKind,
    /// Keys loaded: 1 for a PEM key, the JWKS's usable keys, 0 before the first fetch.
    pub keys: usize,
    /// Time since the last successful JWKS fetch (`None` for a PEM key, or before the first).
    #[serde(rename = "key_set_age_seconds", serialize_with = "seconds")]
    pub key_set_age: Option<Duration>,
    /// The age past which the JWKS is no longer used (requests then get 503 `keys-stale`).
    #[serde(rename = "max_key_set_age_seconds", serialize_with = "seconds")]
    pub max_key_set_age: Option<Duration>,
    /// Why the last JWKS fetch failed; `None` when it succeeded (the last good keys are kept).
    pub last_fetch_error: Option<String>,
    /// The introspection circuit breaker (the worst, with two endpoints); `None` when opaque
    /// tokens are not verified.
    pub breaker: Option<BreakerState>,
    /// Verified tokens in the cache.
    pub cached_tokens: usize,
}

fn seconds<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => s.serialize_u64(duration.as_secs()),
        None => s.serialize_none(),
    }
}

impl VerifierHealth {
    /// Whether JWTs can be verified now: there is no JWT key source, a PEM key, or a JWKS that
    /// has loaded and is not older than [`max_key_set_age`](Self::max_key_set_age).
    ///
    /// ```
    /// let verifier = tower_machine_auth::MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// assert!(verifier.health().keys_loaded());
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn keys_loaded(&self) -> bool {
        self.is_ready_within(self.max_key_set_age.unwrap_or(Duration::MAX))
    }

    /// Whether the verifier is ready to serve: its keys are loaded (see
    /// [`keys_loaded`](Self::keys_loaded)). The circuit breaker does not count: an outage of
    /// the introspection endpoint is every replica's, and is answered with 503s by the layer.
    ///
    /// ```
    /// let verifier = tower_machine_auth::MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// assert!(verifier.health().is_ready());
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn is_ready(&self) -> bool {
        self.keys_loaded()
    }

    /// Like [`is_ready`](Self::is_ready), with a JWKS older than `max_age` counted as not
    /// ready (a limit tighter than the verifier's own, to be told before requests fail).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let verifier = tower_machine_auth::MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// assert!(verifier.health().is_ready_within(Duration::from_secs(60))); // a PEM key never ages
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn is_ready_within(&self, max_age: Duration) -> bool {
        match self.key_source {
            KeySourceKind::None | KeySourceKind::Pem => true,
            KeySourceKind::Jwks => self
                .key_set_age
                .is_some_and(|age| self.keys > 0 && age <= max_age),
        }
    }
}

impl MachineVerifier {
    /// The verifier's state now: for dashboards, health endpoints and startup checks (see
    /// [`readiness`](Self::readiness) for a ready-made endpoint). Cheap: no network.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_machine_auth::ConfigError> {
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// // Nothing listens there: the first fetch fails.
    /// let verifier = MachineVerifier::from_jwks_url("http://127.0.0.1:9/jwks.json")?;
    /// let health = verifier.health();
    /// assert_eq!(health.keys, 0);
    /// assert!(!health.is_ready()); // not before the first successful fetch
    /// # Ok(())
    /// # }
    /// ```
    pub fn health(&self) -> VerifierHealth {
        let inner = &*self.inner;
        let mut health = VerifierHealth {
            key_source: KeySourceKind::None,
            keys: 0,
            key_set_age: None,
            max_key_set_age: None,
            last_fetch_error: None,
            breaker: inner.opaque.breaker_state(),
            cached_tokens: inner.cache.len(),
        };
        match &inner.keys {
            None => {}
            Some(KeySource::Static(_)) => {
                health.key_source = KeySourceKind::Pem;
                health.keys = 1;
            }
            Some(KeySource::Jwks(source)) => {
                let status = source.status();
                health.key_source = KeySourceKind::Jwks;
                health.keys = status.keys;
                health.key_set_age = status.age;
                health.max_key_set_age = Some(status.max_stale);
                health.last_fetch_error = status.last_error;
            }
        }
        health
    }

    /// A readiness endpoint (a Tower service, for `/readyz`): 200 once the verifier's keys are
    /// loaded, 503 before and when they are stale; the body is the [`health`](Self::health) as
    /// JSON, with `"ready"`. Mount it outside [`MachineAuthLayer`](crate::MachineAuthLayer):
    /// probes carry no token.
    ///
    /// ```
    /// use axum::Router;
    /// use tower::ServiceExt;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let app: Router = Router::new().route_service("/readyz", verifier.readiness());
    ///
    /// let response = app.oneshot(http::Request::get("/readyz").body(axum::body::Body::empty())?).await?;
    /// assert_eq!(response.status(), 200);
    /// # Ok(())
    /// # }
    /// ```
    pub fn readiness(&self) -> Readiness {
        Readiness {
            verifier: self.clone(),
            max_key_set_age: None,
        }
    }
}

/// The readiness endpoint of [`MachineVerifier::readiness`]: a Tower service answering any
/// request with 200 or 503 and the verifier's health as JSON.
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceExt;
/// use tower_machine_auth::MachineVerifier;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
/// let readiness = verifier.readiness().max_key_set_age(Duration::from_secs(3600));
/// let response = readiness.oneshot(http::Request::new(())).await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// let body: serde_json::Value = serde_json::from_str(response.body())?;
/// assert_eq!(body["ready"], true);
/// assert_eq!(body["key_source"], "pem");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Readiness {
    verifier: MachineVerifier,
    max_key_set_age: Option<Duration>,
}

impl Readiness {
    /// Answers 503 once the JWKS is older than `max_age`, before the verifier itself stops
    /// using it (its own limit still applies when it is shorter).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let verifier = tower_machine_auth::MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let readiness = verifier.readiness().max_key_set_age(Duration::from_secs(600));
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    #[must_use]
    pub fn max_key_set_age(mut self, max_age: Duration) -> Self {
        self.max_key_set_age = Some(max_age);
        self
    }

    fn answer(&self) -> Response<String> {
        let health = self.verifier.health();
        let ready = health.is_ready()
            && self
                .max_key_set_age
                .is_none_or(|max_age| health.is_ready_within(max_age));
        #[derive(Serialize)]
        struct Body<'a> {
            ready: bool,
            #[serde(flatten)]
            health: &'a VerifierHealth,
        }
        let body = serde_json::to_string(&Body {
            ready,
            health: &health,
        })
        .unwrap_or_default();
        let mut response = Response::new(body);
        if !ready {
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl<B> tower::Service<Request<B>> for Readiness {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        ready(Ok(self.answer()))
    }
}
