//! `MachineTokenSource`: creates machine tokens and reuses each until shortly before it expires.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinHandle;

use super::create::{CreateFailure, CreateRequest, create};
use super::m2m_tokens::M2mTokens;
use super::{InsecureDestination, MachineToken, TokenError};
use crate::TokenFormat;
use crate::clerk_api::{self, KeyKind};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::fetch::{self, ALLOW_HTTP_HOST_VAR, PlainHttp, Timeouts};
use crate::verifier::DEFAULT_CLERK_API_URL;

/// Machine A's tokens: created through the issuer's API (`POST {CLERK_API_URL}/m2m_tokens` with
/// `CLERK_MACHINE_SECRET_KEY`, against Clerk or `machine-auth dev`), and reused.
///
/// - [`token`](Self::token) hands out the current token. When less than a share of its life is
///   left (a fifth by default) it starts creating the next one in the background and keeps
///   handing out the current one meanwhile: no caller waits while a valid token exists.
/// - Many callers asking at once while no valid token exists cause one creation call. It runs in
///   a task of its own: a caller who stops waiting does not cancel it.
/// - A failed creation is retried with exponential backoff and jitter (1 s doubling to 60 s by
///   default) while the current token is valid. Once it has expired callers get
///   [`TokenError::Unavailable`]. A token stops being handed out once its expiry is nearer than
///   2 s, or than a tenth of its life when that is shorter (a token that lives 10 s is handed out
///   until 1 s before it expires). A reply whose token could not be used for a while (an `expiration` not after
///   `created_at`, out of range, or too close) is such a failure, and the current token stays.
/// - A token's life is counted on this machine's clock from when it was asked for, so a clock
///   that is off the issuer's does not make it look expired (a creation per call) or valid for
///   too long.
/// - A 401 from the issuer (a wrong machine key) or another 4xx is a configuration error: it is
///   logged, reported by every later call, and not retried.
///
/// Cheap to clone; clones share the token.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = machine_auth_issuer::Issuer::builder(
///     machine_auth_issuer::IssuerConfig::demo()).build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let api_url = format!("http://{}", listener.local_addr()?);
/// tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
/// use std::time::Duration;
/// use tower_machine_auth::TokenFormat;
/// use tower_machine_auth::client::MachineTokenSource;
///
/// let source = MachineTokenSource::builder()
///     .api_url(&api_url)
///     .machine_secret_key("ak_demo_cron_service_do_not_use_in_production")
///     .format(TokenFormat::Opaque)
///     .lifetime(Duration::from_secs(600))
///     .build()?;
/// let first = source.token().await?;
/// let second = source.token().await?;
/// assert_eq!(first.id(), second.id(), "reused");
/// assert_eq!(source.stats().created, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MachineTokenSource {
    inner: Arc<Inner>,
}

struct Inner {
    /// What each creation asks for: the API, the format, the lifetime and the claims.
    request: CreateRequest,
    refresh_share: f64,
    backoff: Backoff,
    rejection_cooldown: Duration,
    /// Where plain http may carry tokens and the machine secret key.
    plain_http: PlainHttp,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Held while a creation call is in flight: the single flight. A background refresh takes it
    /// before it is spawned and holds it to the end (released even if its task is dropped).
    creating: Arc<tokio::sync::Mutex<()>>,
    created: AtomicU64,
    failed: AtomicU64,
    reused: AtomicU64,
}

#[derive(Default)]
struct State {
    current: Option<MachineToken>,
    /// Creation calls finished, to tell waiters whether one happened while they waited.
    attempts: u64,
    consecutive_failures: u32,
    last_failure: Option<TokenError>,
    next_attempt_at: Option<SystemTime>,
    /// A configuration error: reported from now on, never retried.
    fatal: Option<TokenError>,
    last_rejection: Option<SystemTime>,
}

/// Counters of a source.
///
/// ```
/// use tower_machine_auth::client::TokenSourceStats;
///
/// let stats = TokenSourceStats::default();
/// assert_eq!((stats.created, stats.reused, stats.failed), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenSourceStats {
    /// Tokens created.
    pub created: u64,
    /// Calls of [`token`](MachineTokenSource::token) answered with the current token, created
    /// before (each request through the layer or `send()` is one call).
    pub reused: u64,
    /// Creation calls that failed.
    pub failed: u64,
}

impl fmt::Debug for MachineTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineTokenSource")
            .field("api", &self.inner.request.api.shown())
            .field("format", &self.inner.request.format)
            .finish_non_exhaustive()
    }
}

impl MachineTokenSource {
    /// A builder: set at least the machine secret key.
    pub fn builder() -> MachineTokenSourceBuilder {
        MachineTokenSourceBuilder::default()
    }

    /// A source configured from Clerk's variables: `CLERK_MACHINE_SECRET_KEY` (required) and
    /// `CLERK_API_URL` (default `https://api.clerk.com`); JWT tokens living one hour. Use
    /// [`MachineTokenSourceBuilder::env`] to change the rest.
    ///
    /// ```no_run
    /// use tower_machine_auth::client::MachineTokenSource;
    ///
    /// let source = MachineTokenSource::from_env()?;
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder().env().build()
    }

    /// The token to send: the current one, or a new one if there is no valid token (one
    /// creation call however many callers wait).
    pub async fn token(&self) -> Result<MachineToken, TokenError> {
        let waited_after = {
            let mut state = self.state();
            let now = self.inner.clock.now();
            if let Some(current) = state.current.clone().filter(|t| t.usable_at(now)) {
                self.refresh_in_background_if_due(&mut state, &current, now);
                self.inner.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(current);
            }
            self.unavailable(&state, now)?;
            state.attempts
        };
        let flight = self.inner.creating.clone().lock_owned().await;
        {
            let state = self.state();
            let now = self.inner.clock.now();
            if let Some(current) = state.current.clone().filter(|t| t.usable_at(now)) {
                // Another caller's creation finished while this one waited.
                self.inner.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(current);
            }
            if state.attempts > waited_after {
                // A creation finished while this caller waited, and it failed.
                self.unavailable(&state, now)?;
            }
        }
        // In a task of its own, so that a caller who stops waiting (a timeout) neither cancels
        // the creation nor leaves the next caller to start another.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let _flight = flight;
            return self.create_and_keep().await;
        };
        self.spawn_creation(&runtime, flight)
            .await
            .unwrap_or_else(|_| {
                Err(TokenError::Unavailable {
                    cause: "the token creation was cancelled: the runtime is shutting down".into(),
                    retry_in: Duration::ZERO,
                })
            })
    }

    /// Machine B refused `token` (HTTP 401): stop handing it out, so that the next
    /// [`token`](Self::token) creates a new one. Returns whether the source no longer hands out
    /// `token`, that is whether a retry would send another token.
    ///
    /// To keep a machine B that refuses every token from costing a creation per request, a
    /// refusal drops the token at most once per cooldown (30 s by default); within it, this
    /// returns `false` and the token stays.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = machine_auth_issuer::Issuer::builder(
    ///     machine_auth_issuer::IssuerConfig::demo()).build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let api_url = format!("http://{}", listener.local_addr()?);
    /// tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
    /// let source = tower_machine_auth::client::MachineTokenSource::builder()
    ///     .api_url(&api_url)
    ///     .machine_secret_key("ak_demo_cron_service_do_not_use_in_production")
    ///     .build()?;
    /// let refused = source.token().await?;
    /// assert!(source.reject(&refused));
    /// let fresh = source.token().await?;
    /// assert_ne!(fresh.id(), refused.id());
    /// assert!(!source.reject(&fresh), "within the cooldown the token stays");
    /// # Ok(())
    /// # }
    /// ```
    pub fn reject(&self, token: &MachineToken) -> bool {
        let mut state = self.state();
        let Some(current) = &state.current else {
            return true;
        };
        if !current.same_as(token) {
            return true;
        }
        let now = self.inner.clock.now();
        if state
            .last_rejection
            .is_some_and(|last| now < last + self.inner.rejection_cooldown)
        {
            return false;
        }
        tracing::info!(
            token_id = token.id(),
            "machine B refused the token: dropping it"
        );
        state.current = None;
        state.last_rejection = Some(now);
        true
    }

    /// How many tokens were created, how many calls reused one, and how many creation calls
    /// failed.
    pub fn stats(&self) -> TokenSourceStats {
        TokenSourceStats {
            created: self.inner.created.load(Ordering::Relaxed),
            reused: self.inner.reused.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
        }
    }

    /// Refuses a request URL that would carry the token in clear: anything but https, or plain
    /// http to a loopback host (or the host of
    /// [`allow_http_host`](MachineTokenSourceBuilder::allow_http_host)), unless the source was
    /// built with
    /// [`allow_insecure_http_to_any_host`](MachineTokenSourceBuilder::allow_insecure_http_to_any_host).
    pub(crate) fn check_destination(&self, url: &reqwest::Url) -> Result<(), InsecureDestination> {
        match fetch::transport_refusal(url, &self.inner.plain_http) {
            None => Ok(()),
            Some(reason) => Err(InsecureDestination::new(fetch::shown(url), reason)),
        }
    }

    /// Like [`check_destination`](Self::check_destination) for a Tower request's URI. A URI
    /// without a scheme (`/path`) names no transport: the inner service's connection decides it.
    pub(crate) fn check_uri(&self, uri: &http::Uri) -> Result<(), InsecureDestination> {
        if uri.scheme().is_none() {
            return Ok(());
        }
        let text = uri.to_string();
        match reqwest::Url::parse(&text) {
            Ok(url) => self.check_destination(&url),
            Err(error) => Err(InsecureDestination::new(
                fetch::redacted(&text),
                format!("`{}` is not a valid URL: {error}", fetch::redacted(&text)),
            )),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err` when no creation may be tried now: a configuration error, or a backoff running.
    fn unavailable(&self, state: &State, now: SystemTime) -> Result<(), TokenError> {
        if let Some(fatal) = &state.fatal {
            return Err(fatal.clone());
        }
        if let (Some(TokenError::Unavailable { cause, .. }), Some(at)) =
            (&state.last_failure, state.next_attempt_at)
            && now < at
        {
            return Err(TokenError::Unavailable {
                cause: cause.clone(),
                retry_in: at.duration_since(now).unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn refresh_in_background_if_due(
        &self,
        state: &mut State,
        current: &MachineToken,
        now: SystemTime,
    ) {
        let due = current.refresh_due_at(now)
            && state.fatal.is_none()
            && state.next_attempt_at.is_none_or(|at| now >= at);
        if !due {
            return;
        }
        // Without a Tokio runtime there is no background: the token is renewed when it runs out.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Taken under the state lock: no other creation can start before this one.
        let Ok(flight) = self.inner.creating.clone().try_lock_owned() else {
            return; // a creation is already in flight
        };
        self.spawn_creation(&runtime, flight);
    }

    /// One creation in a task that holds the single flight until the outcome is recorded.
    fn spawn_creation(
        &self,
        runtime: &tokio::runtime::Handle,
        flight: OwnedMutexGuard<()>,
    ) -> JoinHandle<Result<MachineToken, TokenError>> {
        let source = self.clone();
        runtime.spawn(async move {
            let _flight = flight;
            source.create_and_keep().await
        })
    }

    /// One creation call; keeps the token, or records the failure. Call with the flight held.
    async fn create_and_keep(&self) -> Result<MachineToken, TokenError> {
        let requested_at = self.inner.clock.now();
        let outcome = create(&self.inner.request).await;
        let now = self.inner.clock.now();
        let mut state = self.state();
        state.attempts += 1;
        let failure = match outcome {
            Ok(created) => {
                let token = MachineToken::new(
                    created,
                    self.inner.request.format,
                    (requested_at, self.inner.request.lifetime),
                    self.inner.refresh_share,
                )
                .and_then(|token| {
                    // Else it would be renewed on every call (or sent expired).
                    if token.usable_at(now) && !token.refresh_due_at(now) {
                        Ok(token)
                    } else {
                        Err("the token would need renewing as soon as it arrived")
                    }
                });
                match token {
                    Ok(token) => {
                        self.inner.created.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(token_id = token.id(), "created a machine token");
                        state.current = Some(token.clone());
                        state.consecutive_failures = 0;
                        state.last_failure = None;
                        state.next_attempt_at = None;
                        return Ok(token);
                    }
                    Err(reason) => CreateFailure::Transient(format!(
                        "{} sent a token that cannot be used: {reason}",
                        self.inner.request.api.shown()
                    )),
                }
            }
            Err(failure) => failure,
        };
        self.inner.failed.fetch_add(1, Ordering::Relaxed);
        let error = match failure {
            CreateFailure::CredentialsRejected { code } => {
                let error = TokenError::CredentialsRejected { code };
                tracing::error!(api = %self.inner.request.api.shown(), "{error}");
                state.fatal = Some(error.clone());
                error
            }
            CreateFailure::Refused {
                status,
                code,
                message,
            } => {
                let error = TokenError::Refused {
                    status,
                    code,
                    message,
                };
                tracing::error!(api = %self.inner.request.api.shown(), "{error}");
                state.fatal = Some(error.clone());
                error
            }
            CreateFailure::Transient(cause) => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                let retry_in = self.inner.backoff.delay(state.consecutive_failures);
                state.next_attempt_at = Some(now + retry_in);
                let error = TokenError::Unavailable { cause, retry_in };
                tracing::warn!("{error}");
                error
            }
        };
        state.last_failure = Some(error.clone());
        Err(error)
    }
}

/// Exponential backoff with jitter: attempt `n` waits between half and all of
/// `min(initial * 2^(n-1), max)`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let ceiling = self.initial.saturating_mul(1 << exponent).min(self.max);
        ceiling.mul_f64(0.5 + random_fraction() / 2.0)
    }
}

/// A number in `[0, 1)`.
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Builds a [`MachineTokenSource`].
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::TokenFormat;
/// use tower_machine_auth::client::MachineTokenSource;
///
/// let source = MachineTokenSource::builder()
///     .machine_secret_key("ak_…")
///     .format(TokenFormat::Opaque)
///     .claims(serde_json::json!({"job": "nightly"}))
///     .lifetime(Duration::from_secs(3600))
///     .refresh_when_remaining(0.25)
///     .build()?;
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
#[must_use]
pub struct MachineTokenSourceBuilder {
    api_url: String,
    machine_secret_key: Option<String>,
    format: TokenFormat,
    claims: Option<Value>,
    lifetime: Duration,
    refresh_share: f64,
    backoff: Backoff,
    rejection_cooldown: Duration,
    timeouts: Timeouts,
    plain_http: PlainHttp,
    /// One more host plain http may go to, besides loopback.
    allow_http_host: Option<String>,
    clock: Arc<dyn Clock>,
}

impl Default for MachineTokenSourceBuilder {
    fn default() -> Self {
        Self {
            api_url: DEFAULT_CLERK_API_URL.to_owned(),
            machine_secret_key: None,
            format: TokenFormat::Jwt,
            claims: None,
            lifetime: DEFAULT_LIFETIME,
            refresh_share: 0.2,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            rejection_cooldown: Duration::from_secs(30),
            timeouts: Timeouts::default(),
            plain_http: PlainHttp::LoopbackOnly,
            allow_http_host: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for MachineTokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineTokenSourceBuilder")
            .field(
                "api_url",
                &reqwest::Url::parse(self.api_url.trim())
                    .map_or_else(|_| "(not a URL)".to_owned(), |url| fetch::shown(&url)),
            )
            .field("plain_http", &self.plain_http)
            .field(
                "allow_http_host",
                &self.allow_http_host.as_deref().map(fetch::typed),
            )
            .field("format", &self.format)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// How long a token lives unless [`MachineTokenSourceBuilder::lifetime`] says otherwise.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Longest lifetime that may be asked for: ten years, as the issuer allows.
const MAX_LIFETIME: Duration = Duration::from_secs(315_360_000);

impl MachineTokenSourceBuilder {
    /// Reads `CLERK_API_URL`, `CLERK_MACHINE_SECRET_KEY` and `MACHINE_AUTH_ALLOW_HTTP_HOST` (see
    /// [`allow_http_host`](Self::allow_http_host)); unset or empty variables are left alone.
    /// One pair of quotes around a value (`CLERK_MACHINE_SECRET_KEY="ak_…"`, as some environment
    /// files pass them through) is dropped.
    ///
    /// ```
    /// use tower_machine_auth::client::MachineTokenSource;
    ///
    /// let lookup = |name: &str| (name == "CLERK_MACHINE_SECRET_KEY").then(|| "\"ak_x\"".to_owned());
    /// assert!(MachineTokenSource::builder().env_from(lookup).build().is_ok());
    /// ```
    pub fn env(self) -> Self {
        self.env_from(|name| std::env::var(name).ok())
    }

    /// Like [`env`](Self::env), reading variables through `lookup`.
    pub fn env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        if let Some(api_url) = get("CLERK_API_URL") {
            self.api_url = api_url;
        }
        if let Some(key) = get("CLERK_MACHINE_SECRET_KEY") {
            self.machine_secret_key = Some(key);
        }
        if let Some(host) = get(ALLOW_HTTP_HOST_VAR) {
            self.allow_http_host = Some(host);
        }
        self
    }

    /// The issuer's API: Clerk's `https://api.clerk.com` (the default), or `machine-auth dev`'s
    /// URL. https, or http on a loopback host (or the host of
    /// [`allow_http_host`](Self::allow_http_host)). Ending in `/v1` calls `/v1/m2m_tokens`.
    /// [`build`](Self::build) quotes the URL as given when it refuses it, and says what to write
    /// when the scheme is missing (`localhost:8787`).
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// The machine's secret key (`ak_…`): tokens are created for that machine. Surrounding
    /// whitespace and quotes are dropped. [`build`](Self::build) refuses the instance secret key
    /// (`sk_…`) or a publishable key (`pk_…`) here, saying where it belongs: only a machine's
    /// key creates tokens.
    ///
    /// ```
    /// use tower_machine_auth::client::MachineTokenSource;
    ///
    /// let error = MachineTokenSource::builder().machine_secret_key("sk_test_1").build().unwrap_err();
    /// assert!(error.to_string().contains("it belongs in CLERK_SECRET_KEY"));
    /// ```
    pub fn machine_secret_key(mut self, key: impl Into<String>) -> Self {
        self.machine_secret_key = Some(key.into());
        self
    }

    /// JWT (the default: machine B verifies it without a network call) or opaque (revocable at
    /// once; machine B asks the issuer about it).
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// Custom claims for every token: a JSON object ([`build`](MachineTokenSourceBuilder::build)
    /// refuses anything else).
    pub fn claims(mut self, claims: Value) -> Self {
        self.claims = Some(claims);
        self
    }

    /// How long each token lives, in whole seconds (1 s to ten years). Default: one hour. It is
    /// always sent: left out, Clerk documents a token that never expires.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Create the next token when less than `share` of the current one's life is left
    /// (default 0.2, a fifth; between 0.01 and 0.9). However small the share, the refresh starts
    /// early enough to finish before the token stops being handed out (2 s, or a tenth of its
    /// life, before its expiry), so callers never wait on it.
    pub fn refresh_when_remaining(mut self, share: f64) -> Self {
        self.refresh_share = share;
        self
    }

    /// Backoff after a failed creation: `initial` doubling up to `max`, each delay drawn between
    /// half and all of it (default 1 s to 60 s).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// How often machine B's refusals may drop the token (default once per 30 s).
    pub fn rejection_cooldown(mut self, cooldown: Duration) -> Self {
        self.rejection_cooldown = cooldown;
        self
    }

    /// Connect and total timeouts of a creation call (default 2 s and 5 s).
    pub fn http_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.timeouts = Timeouts { connect, total };
        self
    }

    /// Lets tokens and the machine secret key travel over plain `http://` to any host: the
    /// issuer's API URL and the requests [`send`](MachineTokenSource::send) and
    /// [`MachineTokenLayer`](super::MachineTokenLayer) attach tokens to. Anyone on the network
    /// path can then read and replay them: use it only on a network you trust entirely (a private
    /// container network, say), never across the internet. Building such a source logs a
    /// warning.
    ///
    /// Without it, plain http is allowed only to loopback hosts (`localhost`, `127.0.0.0/8`,
    /// `::1`), and anything but https is refused elsewhere: an issuer URL when the source is
    /// built, a request when it is sent ([`InsecureDestination`]).
    ///
    /// ```
    /// use tower_machine_auth::client::MachineTokenSource;
    ///
    /// let builder = || MachineTokenSource::builder()
    ///     .api_url("http://issuer.internal:8787")
    ///     .machine_secret_key("ak_x");
    /// let error = builder().build().unwrap_err();
    /// assert!(error.to_string().contains("`http://issuer.internal:8787` uses plain http"));
    /// assert!(builder().allow_insecure_http_to_any_host().build().is_ok());
    /// ```
    pub fn allow_insecure_http_to_any_host(mut self) -> Self {
        self.plain_http = PlainHttp::AnyHost;
        self
    }

    /// Lets tokens and the machine secret key travel over plain `http://` to this one host as
    /// well as to loopback hosts: a host name or an IP address alone, such as `issuer` for a dev
    /// issuer at `http://issuer:8787` in a docker compose network (`MACHINE_AUTH_ALLOW_HTTP_HOST`
    /// in [`env`](Self::env)). It covers the issuer's API URL and the requests tokens are attached
    /// to. Use it only on a network you trust entirely; building such a source logs a warning,
    /// and [`build`](Self::build) fails if `host` is not a host name (a URL or a port, say).
    /// Every other host still needs https.
    ///
    /// ```
    /// use tower_machine_auth::client::MachineTokenSource;
    ///
    /// let dev = || MachineTokenSource::builder().api_url("http://issuer:8787").machine_secret_key("ak_x");
    /// assert!(dev().build().unwrap_err().to_string().contains("MACHINE_AUTH_ALLOW_HTTP_HOST"));
    /// assert!(dev().allow_http_host("issuer").build().is_ok());
    /// ```
    pub fn allow_http_host(mut self, host: impl Into<String>) -> Self {
        self.allow_http_host = Some(host.into());
        self
    }

    /// The clock that decides when tokens expire (tests use
    /// [`TokioClock`](crate::clock::TokioClock) with paused time, Tokio's `test-util` feature).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration. Needs no network; the first token is created on the first
    /// [`MachineTokenSource::token`].
    pub fn build(self) -> Result<MachineTokenSource, ConfigError> {
        self.timeouts.check("token creation")?;
        if let Some(kind) = self
            .machine_secret_key
            .as_deref()
            .and_then(clerk_api::key_kind)
            .filter(|kind| *kind != KeyKind::Machine)
        {
            return Err(ConfigError::new(format!(
                "CLERK_MACHINE_SECRET_KEY (machine_secret_key) holds {}; machine A creates tokens \
                 with its machine's secret key (`ak_…`, Clerk's dashboard: Machines)",
                kind.belongs()
            )));
        }
        let plain_http = match self.plain_http {
            PlainHttp::AnyHost => PlainHttp::AnyHost,
            _ => PlainHttp::loopback_and(self.allow_http_host.as_deref().map(clerk_api::setting))?,
        };
        let api = M2mTokens::with(
            &self.api_url,
            self.machine_secret_key.as_deref().unwrap_or_default(),
            self.timeouts,
            &plain_http,
        )?;
        let claims = match self.claims {
            None => None,
            Some(Value::Object(claims)) => Some(claims),
            Some(_) => {
                return Err(ConfigError::new("the token claims must be a JSON object"));
            }
        };
        fetch::check_range(
            "the token lifetime",
            self.lifetime,
            Duration::from_secs(1),
            MAX_LIFETIME,
        )?;
        if self.lifetime.subsec_nanos() != 0 {
            return Err(ConfigError::new(format!(
                "the token lifetime is {:?}; it must be whole seconds",
                self.lifetime
            )));
        }
        if !(0.01..=0.9).contains(&self.refresh_share) {
            return Err(ConfigError::new(format!(
                "refresh_when_remaining is {}; it must be between 0.01 and 0.9",
                self.refresh_share
            )));
        }
        fetch::check_range(
            "the initial retry backoff",
            self.backoff.initial,
            Duration::from_millis(10),
            self.backoff.max,
        )?;
        fetch::check_range(
            "the longest retry backoff",
            self.backoff.max,
            self.backoff.initial,
            Duration::from_secs(3600),
        )?;
        fetch::check_range(
            "the rejection cooldown",
            self.rejection_cooldown,
            Duration::ZERO,
            Duration::from_secs(3600),
        )?;
        if let Some(host) = plain_http.allowed_host() {
            tracing::warn!(
                api = %api.shown(),
                %host,
                "plain http is allowed to `{host}` ({ALLOW_HTTP_HOST_VAR} or allow_http_host): \
                 machine tokens and the machine secret key sent there cross the network \
                 unencrypted; use this only on a network you trust entirely, such as a docker \
                 compose network"
            );
        }
        if plain_http == PlainHttp::AnyHost {
            tracing::warn!(
                api = %api.shown(),
                "allow_insecure_http_to_any_host: machine tokens and the machine secret key may \
                 travel over plain http to any host, where anyone on the network path can read \
                 and replay them"
            );
        }
        Ok(MachineTokenSource {
            inner: Arc::new(Inner {
                request: CreateRequest {
                    api,
                    format: self.format,
                    lifetime: self.lifetime,
                    claims,
                },
                refresh_share: self.refresh_share,
                backoff: self.backoff,
                rejection_cooldown: self.rejection_cooldown,
                plain_http,
                clock: self.clock,
                state: Mutex::new(State::default()),
                creating: Arc::new(tokio::sync::Mutex::new(())),
                created: AtomicU64::new(0),
                reused: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for (failures, ceiling) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let ceiling = Duration::from_secs(ceiling);
            let delays: Vec<_> = (0..50).map(|_| backoff.delay(failures)).collect();
            assert!(
                delays.iter().all(|d| *d >= ceiling / 2 && *d <= ceiling),
                "{failures}: {delays:?}"
            );
            assert!(
                delays.iter().any(|d| *d != delays[0]),
                "{failures}: no jitter"
            );
        }
    }

    #[test]
    fn debug_output_shows_neither_the_key_nor_url_credentials() {
        let builder = MachineTokenSource::builder()
            .api_url("https://user:hunter2@api.example.com/?session=abc")
            .machine_secret_key("ak_secret_key");
        let shown = format!("{builder:?}");
        assert!(shown.contains("api.example.com"), "{shown}");
        for hidden in ["hunter2", "user", "abc", "ak_secret_key"] {
            assert!(!shown.contains(hidden), "{hidden}: {shown}");
        }
        // A query would swallow the path: refused, without echoing it or the credentials.
        let refused = MachineTokenSource::builder()
            .api_url("https://user:hunter2@api.example.com/?session=abc")
            .machine_secret_key("ak_secret_key")
            .build()
            .unwrap_err()
            .to_string();
        assert!(refused.contains("query"), "{refused}");
        assert!(
            !refused.contains("hunter2") && !refused.contains("abc"),
            "{refused}"
        );
        let source = builder
            .api_url("https://user:hunter2@api.example.com/")
            .build()
            .unwrap();
        assert!(!format!("{source:?}").contains("hunter2"));
    }

    #[test]
    fn the_builder_refuses_what_cannot_work() {
        let key = || MachineTokenSource::builder().machine_secret_key("ak_x");
        for (builder, expected) in [
            (MachineTokenSource::builder(), "CLERK_MACHINE_SECRET_KEY"),
            (key().api_url("http://example.com"), "https"),
            (key().claims(serde_json::json!(["a"])), "JSON object"),
            (key().lifetime(Duration::ZERO), "lifetime"),
            (key().lifetime(Duration::from_millis(1500)), "whole seconds"),
            (key().refresh_when_remaining(1.0), "refresh_when_remaining"),
            (
                key().refresh_when_remaining(f64::NAN),
                "refresh_when_remaining",
            ),
            (
                key().retry_backoff(Duration::from_secs(10), Duration::from_secs(1)),
                "backoff",
            ),
            (
                key().http_timeouts(Duration::from_secs(10), Duration::from_secs(1)),
                "timeout",
            ),
        ] {
            let error = builder.build().unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}
