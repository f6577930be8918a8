//! A JWKS kept fresh in the background, so the request path only reads.
//!
//! - Keys live in an [`ArcSwap`]; a lookup is a pointer load and a hash lookup.
//! - A background task refreshes the set every `refresh_interval` (default 5 min, Clerk's cache
//!   TTL), and after a failure retries with exponential backoff (1 s to 30 s, with jitter).
//! - An unknown `kid` may trigger a fetch at most once per `cooldown` (default 30 s). Concurrent
//!   requests share one fetch (single-flight): every fetch, background or on demand, runs under one
//!   lock, a request that finds a fetch in flight waits for it, and a waiter whose fetch already
//!   happened does not fetch again. The first requests wait for the initial fetch instead of
//!   failing while it runs. A flood of made-up kids
//!   therefore costs at most one fetch per cooldown, and the background refresh does not count
//!   against the cooldown.
//! - A failed fetch never removes keys; only a successful fetch that omits a key does. The last
//!   good set is served for up to `max_stale` (default 24 h) after the last success, then requests
//!   get 503 until a fetch succeeds.
//! - Fetches never overlap, so each result replaces the one before it and no late reply can put
//!   back a key a newer one removed. When a key leaves, the new set is stored first and then
//!   `on_keys_removed` runs (the verifier clears its token cache and starts a new cache
//!   generation): a verification that looked its key up in the old set cannot cache its token.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use reqwest::Url;
use tokio::time::Instant;

use super::{KeyLookup, VerifyingKey, parse_jwk_set};
use crate::algorithm::AlgorithmSet;
use crate::clerk_api;
use crate::error::{AuthError, ConfigError, InvalidToken, Unavailable};
use crate::fetch::{self, FetchError, PlainHttp, Timeouts};
use crate::metrics;
use crate::stats::Counters;

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// `Retry-After` for requests answered 503 because no keys are usable.
const RETRY_AFTER: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where to fetch a JWKS, and the credential to send.
pub(crate) struct JwksEndpoint {
    pub(crate) url: Url,
    /// The URL without credentials or query, for logs.
    shown: String,
    /// Clerk's Backend API's `Authorization: Bearer <secret>`, marked sensitive; `None` for a
    /// JWKS fetched without credentials.
    pub(crate) authorization: Option<HeaderValue>,
}

impl JwksEndpoint {
    /// Any JWKS URL, fetched without credentials.
    pub(crate) fn url(url: &str, plain_http: &PlainHttp) -> Result<Self, ConfigError> {
        let url = fetch::checked_url_allowing(clerk_api::setting(url), "the JWKS URL", plain_http)?;
        Ok(Self {
            shown: fetch::shown(&url),
            url,
            authorization: None,
        })
    }

    /// Clerk's Backend API: `GET {api_url}/v1/jwks` with the instance secret key.
    pub(crate) fn clerk(
        api_url: &str,
        secret_key: &str,
        plain_http: &PlainHttp,
    ) -> Result<Self, ConfigError> {
        let url = clerk_api::v1_endpoint(api_url, "/jwks", plain_http)?;
        let authorization = clerk_api::bearer(
            secret_key,
            "CLERK_SECRET_KEY",
            "CLERK_SECRET_KEY is empty: set it to the instance secret key (sk_…)",
        )?;
        Ok(Self {
            shown: fetch::shown(&url),
            url,
            authorization: Some(authorization),
        })
    }
}

impl JwksEndpoint {
    /// The URL without credentials or query, for messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for JwksEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksEndpoint")
            .field("url", &self.shown)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Why [`JwksSource::wait_loaded`] stopped waiting without keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotLoaded {
    /// A fetch was answered with this status (401, 403 or 404): no retry will change it.
    Refused(u16),
    /// A fetch succeeded, and no key in the set is usable.
    NoUsableKey,
    /// A fetch was answered with a document that is not a usable JWKS, for this reason.
    Unusable(String),
}

/// Timing and limits of a JWKS source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JwksSettings {
    pub(crate) refresh_interval: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) timeouts: Timeouts,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(300),
            cooldown: Duration::from_secs(30),
            max_stale: Duration::from_secs(24 * 3600),
            timeouts: Timeouts::default(),
        }
    }
}

/// The keys as of the last successful fetch.
#[derive(Default)]
struct KeySetState {
    keys: HashMap<String, Arc<VerifyingKey>>,
    /// When the last successful fetch completed; `None` until the first one.
    loaded_at: Option<Instant>,
}

/// A remote JWKS with background refresh, cooldown-bounded on-demand fetches and a stale window.
pub(crate) struct JwksSource {
    endpoint: JwksEndpoint,
    client: reqwest::Client,
    settings: JwksSettings,
    allowlist: AlgorithmSet,
    state: ArcSwap<KeySetState>,
    /// Held for the whole of every fetch: at most one is in flight.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Completed fetches, successful or not; lets waiters see that a fetch happened meanwhile.
    fetches_completed: AtomicU64,
    /// Becomes `true` when the first (background) fetch has completed.
    first_fetch_done: tokio::sync::watch::Sender<bool>,
    /// How the last fetch ended (`None` before the first); sent after every fetch.
    last_fetch: tokio::sync::watch::Sender<Option<Result<(), FetchError>>>,
    /// When the last on-demand (unknown-kid) fetch started.
    last_on_demand: Mutex<Option<Instant>>,
    counters: Arc<Counters>,
    on_keys_removed: Box<dyn Fn() + Send + Sync>,
}

/// The state of a JWKS source, for [`MachineVerifier::health`](crate::MachineVerifier::health).
#[derive(Debug, Clone)]
pub(crate) struct KeySetStatus {
    pub(crate) keys: usize,
    /// Since the last successful fetch; `None` before the first.
    pub(crate) age: Option<Duration>,
    /// The age past which the keys are no longer used.
    pub(crate) max_stale: Duration,
    pub(crate) last_error: Option<String>,
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSource")
            .field("endpoint", &self.endpoint)
            .field("settings", &self.settings)
            .field("keys", &self.state.load().keys.len())
            .finish_non_exhaustive()
    }
}

impl JwksSource {
    /// Creates the source and starts its background refresh on the current Tokio runtime.
    ///
    /// `on_keys_removed` runs whenever a successful fetch drops a key or changes the key behind a
    /// `kid`.
    pub(crate) fn start(
        endpoint: JwksEndpoint,
        settings: JwksSettings,
        allowlist: AlgorithmSet,
        counters: Arc<Counters>,
        on_keys_removed: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Arc<Self>, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "a JWKS key source refreshes in the background: build the verifier inside a Tokio \
                 runtime (for example in `#[tokio::main]`)",
            )
        })?;
        let source = Arc::new(Self {
            client: fetch::client(settings.timeouts)?,
            endpoint,
            settings,
            allowlist,
            state: ArcSwap::from_pointee(KeySetState::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches_completed: AtomicU64::new(0),
            first_fetch_done: tokio::sync::watch::Sender::new(false),
            last_fetch: tokio::sync::watch::Sender::new(None),
            last_on_demand: Mutex::new(None),
            counters,
            on_keys_removed,
        });
        runtime.spawn(refresh_in_background(Arc::downgrade(&source)));
        Ok(source)
    }

    /// How many keys are loaded, how old they are, and why the last fetch failed.
    pub(crate) fn status(&self) -> KeySetStatus {
        let state = self.state.load();
        KeySetStatus {
            keys: state.keys.len(),
            age: state.loaded_at.map(|at| at.elapsed()),
            max_stale: self.settings.max_stale,
            last_error: self.last_fetch_error().map(|error| error.to_string()),
        }
    }

    /// Where the keys come from.
    pub(crate) fn endpoint(&self) -> &JwksEndpoint {
        &self.endpoint
    }

    /// Waits until a key set is loaded (at once if one is). Fails without waiting further when a
    /// fetch is answered in a way no retry changes: 401 or 403 (the credential is refused, or the
    /// URL needs one), 404 (a wrong URL), or a document that is not a usable JWKS. Other
    /// failures are retried by the background refresh, and this keeps waiting: bound it with a
    /// timeout.
    pub(crate) async fn wait_loaded(&self) -> Result<(), NotLoaded> {
        let mut last_fetch = self.last_fetch.subscribe();
        loop {
            // The fetch's outcome first, then the keys: a fetch that completes in between is
            // seen in the keys, never marked seen while its keys are not.
            let last = last_fetch.borrow_and_update().clone();
            let state = self.state.load();
            if state.loaded_at.is_some() {
                return if state.keys.is_empty() {
                    Err(NotLoaded::NoUsableKey)
                } else {
                    Ok(())
                };
            }
            match &last {
                Some(Err(FetchError::Status(status @ (401 | 403 | 404)))) => {
                    return Err(NotLoaded::Refused(*status));
                }
                Some(Err(FetchError::Invalid(reason))) => {
                    return Err(NotLoaded::Unusable(reason.clone()));
                }
                _ => {}
            }
            if last_fetch.changed().await.is_err() {
                // Cannot happen while `self` holds the sender; wait for the caller's timeout.
                std::future::pending::<()>().await;
            }
        }
    }

    /// How the last fetch failed, if it did.
    pub(crate) fn last_fetch_error(&self) -> Option<FetchError> {
        match &*self.last_fetch.borrow() {
            Some(Err(error)) => Some(error.clone()),
            _ => None,
        }
    }

    /// The key for `kid`, without waiting.
    pub(crate) fn lookup(&self, kid: &str) -> KeyLookup {
        let state = self.state.load();
        let problem = match state.loaded_at {
            None => unavailable(Unavailable::KeysNotLoaded),
            Some(at) if at.elapsed() > self.settings.max_stale => {
                unavailable(Unavailable::KeysStale)
            }
            Some(_) => match state.keys.get(kid) {
                Some(key) => return KeyLookup::Found(Arc::clone(key)),
                None => AuthError::InvalidToken(InvalidToken::UnknownKeyId),
            },
        };
        // Wait for a fetch in flight (the first one included) rather than fail; start one if the
        // cooldown allows.
        let fetch_in_flight =
            !*self.first_fetch_done.borrow() || self.fetch_lock.try_lock().is_err();
        if fetch_in_flight || self.on_demand_fetch_allowed() {
            KeyLookup::FetchMayHelp
        } else {
            self.counters.add(&self.counters.jwks_fetches_skipped);
            KeyLookup::Failed(problem)
        }
    }

    /// Like [`lookup`](Self::lookup), after waiting for (or running) one on-demand fetch.
    pub(crate) async fn lookup_after_fetch(
        &self,
        kid: &str,
    ) -> Result<Arc<VerifyingKey>, AuthError> {
        let mut first_fetch_done = self.first_fetch_done.subscribe();
        if !*first_fetch_done.borrow_and_update() {
            // The background task is fetching for the first time: its result is ours. The fetch
            // is bounded by the HTTP timeouts.
            let _ = first_fetch_done.wait_for(|done| *done).await;
        } else {
            let seen = self.fetches_completed.load(Ordering::Acquire);
            let _fetching = self.fetch_lock.lock().await;
            // Whoever held the lock fetched: use their result rather than fetch again.
            if self.fetches_completed.load(Ordering::Acquire) == seen
                && self.claim_on_demand_fetch()
            {
                self.fetch_and_apply().await;
            }
        }
        let state = self.state.load();
        match state.loaded_at {
            None => Err(unavailable(Unavailable::KeysNotLoaded)),
            Some(at) if at.elapsed() > self.settings.max_stale => {
                Err(unavailable(Unavailable::KeysStale))
            }
            Some(_) => state
                .keys
                .get(kid)
                .cloned()
                .ok_or(AuthError::InvalidToken(InvalidToken::UnknownKeyId)),
        }
    }

    fn on_demand_fetch_allowed(&self) -> bool {
        let last = self
            .last_on_demand
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        last.is_none_or(|at| at.elapsed() >= self.settings.cooldown)
    }

    /// Takes the cooldown slot if it is free.
    fn claim_on_demand_fetch(&self) -> bool {
        let mut last = self
            .last_on_demand
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < self.settings.cooldown) {
            self.counters.add(&self.counters.jwks_fetches_skipped);
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Fetches the JWKS and installs it. Callers hold `fetch_lock`. Returns whether it succeeded.
    async fn fetch_and_apply(&self) -> bool {
        let outcome = match self.fetch().await {
            Ok(keys) => {
                metrics::jwks_fetch(true, Some(keys.len()));
                self.install(keys);
                Ok(())
            }
            Err(error) => {
                metrics::jwks_fetch(false, None);
                self.counters.add(&self.counters.jwks_fetch_failures);
                let has_keys = self.state.load().loaded_at.is_some();
                tracing::warn!(
                    url = %self.endpoint.shown,
                    %error,
                    keeping_last_good_keys = has_keys,
                    "JWKS fetch failed"
                );
                Err(error)
            }
        };
        let succeeded = outcome.is_ok();
        self.fetches_completed.fetch_add(1, Ordering::AcqRel);
        self.first_fetch_done.send_replace(true);
        self.last_fetch.send_replace(Some(outcome));
        succeeded
    }

    async fn fetch(&self) -> Result<Vec<VerifyingKey>, FetchError> {
        self.counters.add(&self.counters.jwks_fetches);
        let request = match &self.endpoint.authorization {
            Some(authorization) => clerk_api::request(
                &self.client,
                http::Method::GET,
                &self.endpoint.url,
                authorization,
            ),
            None => self
                .client
                .get(self.endpoint.url.clone())
                .header(http::header::ACCEPT, "application/json"),
        };
        let (status, body) = fetch::send(request, MAX_JWKS_BYTES).await?;
        if status != reqwest::StatusCode::OK {
            if status == reqwest::StatusCode::UNAUTHORIZED && self.endpoint.authorization.is_some()
            {
                tracing::error!(
                    url = %self.endpoint.shown,
                    "Clerk refused CLERK_SECRET_KEY (401): check that the secret key belongs to this instance"
                );
            }
            return Err(FetchError::Status(status.as_u16()));
        }
        let parsed = parse_jwk_set(&body, self.allowlist)
            .map_err(|error| FetchError::Invalid(error.to_string()))?;
        for (kid, reason) in &parsed.skipped {
            tracing::warn!(url = %self.endpoint.shown, ?kid, reason, "skipping unusable JWKS key");
        }
        Ok(parsed.keys)
    }

    fn install(&self, keys: Vec<VerifyingKey>) {
        let keys: HashMap<String, Arc<VerifyingKey>> = keys
            .into_iter()
            .filter_map(|key| Some((key.kid.clone()?, Arc::new(key))))
            .collect();
        let previous = self.state.load();
        let removed = previous.keys.iter().any(|(kid, old)| {
            keys.get(kid)
                .is_none_or(|new| new.fingerprint != old.fingerprint)
        });
        tracing::debug!(url = %self.endpoint.shown, keys = keys.len(), removed, "JWKS loaded");
        self.state.store(Arc::new(KeySetState {
            keys,
            loaded_at: Some(Instant::now()),
        }));
        // After the store: whoever sees the callback's effect looks keys up in the new set.
        if removed {
            (self.on_keys_removed)();
        }
    }
}

fn unavailable(cause: Unavailable) -> AuthError {
    AuthError::Unavailable {
        cause,
        retry_after: RETRY_AFTER,
    }
}

/// Refreshes the key set until the source is dropped.
async fn refresh_in_background(source: Weak<JwksSource>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(strong) = source.upgrade() else {
            return;
        };
        let wake_at = {
            let _fetching = strong.fetch_lock.lock().await;
            let interval = strong.settings.refresh_interval;
            match strong.state.load().loaded_at {
                // An on-demand fetch refreshed the keys meanwhile: refresh an interval after it.
                Some(loaded_at) if loaded_at.elapsed() < interval && backoff == MIN_BACKOFF => {
                    loaded_at + interval
                }
                _ if strong.fetch_and_apply().await => {
                    backoff = MIN_BACKOFF;
                    Instant::now() + interval
                }
                _ => {
                    let delay = with_jitter(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    Instant::now() + delay
                }
            }
        };
        drop(strong);
        tokio::time::sleep_until(wake_at).await;
    }
}

/// Somewhere between half of `delay` and all of it.
fn with_jitter(delay: Duration) -> Duration {
    let mut random = [0u8; 2];
    let fraction = match aws_lc_rs::rand::fill(&mut random) {
        Ok(()) => f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX),
        Err(_) => 1.0,
    };
    delay.mul_f64(0.5 + fraction / 2.0)
}
