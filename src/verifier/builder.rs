//! Configuration of a [`MachineVerifier`], checked when it is built.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::{Inner, MachineVerifier};
use crate::cache::TokenCache;
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::fetch::Timeouts;
use crate::jwt::{AlgorithmSet, JwtRules};
use crate::keys::{JwksEndpoint, JwksSettings, JwksSource, KeySource, key_from_pem};
use crate::stats::Counters;

/// Clerk's Backend API, the default for `CLERK_API_URL`.
pub const DEFAULT_CLERK_API_URL: &str = "https://api.clerk.com";
/// The largest clock skew accepted.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

#[derive(Clone)]
enum KeySourceConfig {
    Pem(String),
    JwksUrl(String),
    ClerkBackendApi { secret_key: String },
}

impl fmt::Debug for KeySourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem(_) => f.write_str("Pem"),
            Self::JwksUrl(url) => f.debug_tuple("JwksUrl").field(url).finish(),
            Self::ClerkBackendApi { .. } => {
                f.write_str("ClerkBackendApi { secret_key: [redacted] }")
            }
        }
    }
}

/// Builds a [`MachineVerifier`]. Every setter is optional but one key source; mistakes are
/// reported by [`build`](Self::build) with a message that says what to change.
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::{Algorithm, MachineVerifier};
///
/// # let pem = include_str!("../../tests/data/rsa_public.pem");
/// let verifier = MachineVerifier::builder()
///     .pem_key(pem)
///     .algorithms([Algorithm::RS256, Algorithm::PS256])
///     .clock_skew(Duration::from_secs(10))
///     .issuer("https://clerk.example.com")
///     .build()?;
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct MachineVerifierBuilder {
    key_source: Option<KeySourceConfig>,
    clerk_api_url: String,
    algorithms: Vec<Algorithm>,
    clock_skew: Duration,
    issuer: Option<String>,
    audiences: Vec<String>,
    max_token_lifetime: Option<Duration>,
    cache_capacity: u64,
    cache_ttl: Duration,
    jwks: JwksSettings,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MachineVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineVerifierBuilder")
            .field("key_source", &self.key_source)
            .field("clerk_api_url", &self.clerk_api_url)
            .field("algorithms", &self.algorithms)
            .field("clock_skew", &self.clock_skew)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl Default for MachineVerifierBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MachineVerifierBuilder {
    /// The defaults: no key source, RS256 only, 5 s skew, a 10 000-token cache kept up to 5 min.
    pub fn new() -> Self {
        Self {
            key_source: None,
            clerk_api_url: DEFAULT_CLERK_API_URL.to_owned(),
            algorithms: vec![Algorithm::RS256],
            clock_skew: Duration::from_secs(5),
            issuer: None,
            audiences: Vec::new(),
            max_token_lifetime: None,
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(300),
            jwks: JwksSettings::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads Clerk's environment variables:
    ///
    /// | variable | effect |
    /// |---|---|
    /// | `CLERK_JWT_KEY` | PEM public key: networkless verification (wins over the others) |
    /// | `CLERK_SECRET_KEY` | JWKS from `GET {CLERK_API_URL}/v1/jwks` with this key |
    /// | `CLERK_API_URL` | Clerk's Backend API, default `https://api.clerk.com` |
    /// | `CLERK_JWKS_URL` | any JWKS URL (our addition; used when neither key above is set) |
    ///
    /// Empty variables count as unset.
    pub fn env(self) -> Self {
        self.env_from(|name| std::env::var(name).ok())
    }

    /// Like [`env`](Self::env), reading variables through `lookup` (for tests and custom sources).
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// let error = MachineVerifier::builder().env_from(|_| None).build().unwrap_err();
    /// assert!(error.to_string().contains("CLERK_SECRET_KEY"));
    /// ```
    pub fn env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        if let Some(api_url) = get("CLERK_API_URL") {
            self.clerk_api_url = api_url;
        }
        if let Some(pem) = get("CLERK_JWT_KEY") {
            self.key_source = Some(KeySourceConfig::Pem(pem));
        } else if let Some(secret_key) = get("CLERK_SECRET_KEY") {
            self.key_source = Some(KeySourceConfig::ClerkBackendApi { secret_key });
        } else if let Some(url) = get("CLERK_JWKS_URL") {
            self.key_source = Some(KeySourceConfig::JwksUrl(url));
        }
        self
    }

    /// Verifies with one PEM public key (SPKI, with or without the armour lines). The token's
    /// `kid` is ignored, as Clerk's `jwtKey` does.
    pub fn pem_key(mut self, pem: impl Into<String>) -> Self {
        self.key_source = Some(KeySourceConfig::Pem(pem.into()));
        self
    }

    /// Verifies with the keys of a JWKS URL (https, or http on a loopback host).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.key_source = Some(KeySourceConfig::JwksUrl(url.into()));
        self
    }

    /// Verifies with the JWKS of Clerk's Backend API, fetched with the instance secret key.
    pub fn clerk_secret_key(mut self, secret_key: impl Into<String>) -> Self {
        self.key_source = Some(KeySourceConfig::ClerkBackendApi {
            secret_key: secret_key.into(),
        });
        self
    }

    /// Clerk's Backend API URL (default `https://api.clerk.com`; a trailing `/v1` is accepted).
    pub fn clerk_api_url(mut self, url: impl Into<String>) -> Self {
        self.clerk_api_url = url.into();
        self
    }

    /// The signature algorithms tokens may use (default: RS256 only). Symmetric `HS*` algorithms
    /// are refused: keys here are public keys.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Allowed clock skew for `exp`, `nbf` and `iat` (default 5 s, at most 300 s).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Requires `iss` to be exactly this string.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to name one of these audiences.
    pub fn audiences<I: IntoIterator<Item = S>, S: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Rejects tokens whose `exp` lies further ahead than this (no limit by default).
    pub fn max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = Some(lifetime);
        self
    }

    /// Size and TTL of the verified-token cache (default 10 000 tokens, 5 min). A capacity of 0
    /// turns it off. An entry never outlives its token's `exp`.
    pub fn token_cache(mut self, capacity: u64, ttl: Duration) -> Self {
        self.cache_capacity = capacity;
        self.cache_ttl = ttl;
        self
    }

    /// How often the JWKS is refreshed in the background (default 5 min; 1 s to 1 h).
    pub fn jwks_refresh_interval(mut self, interval: Duration) -> Self {
        self.jwks.refresh_interval = interval;
        self
    }

    /// The least time between two fetches caused by unknown `kid`s (default 30 s; 1 s to 10 min).
    pub fn jwks_cooldown(mut self, cooldown: Duration) -> Self {
        self.jwks.cooldown = cooldown;
        self
    }

    /// How long the last good JWKS is served while refreshes fail (default 24 h; at least the
    /// refresh interval). After that, requests get 503 until a fetch succeeds.
    pub fn jwks_max_stale(mut self, max_stale: Duration) -> Self {
        self.jwks.max_stale = max_stale;
        self
    }

    /// Connect and total timeouts of JWKS fetches (default 2 s and 5 s).
    pub fn http_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.jwks.timeouts = Timeouts { connect, total };
        self
    }

    /// The clock for `exp`, `nbf` and `iat` (default: the system clock). Tests can pass
    /// [`TokioClock`](crate::clock::TokioClock) to drive expiry with Tokio's paused time.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the verifier. A JWKS source starts its background
    /// refresh, so it must be built inside a Tokio runtime; it does not wait for the first fetch.
    pub fn build(self) -> Result<MachineVerifier, ConfigError> {
        let algorithms = self.checked_algorithms()?;
        if self.clock_skew > MAX_CLOCK_SKEW {
            return Err(ConfigError::new(format!(
                "the clock skew is {:?}; it must be at most 300 s",
                self.clock_skew
            )));
        }
        let rules = JwtRules {
            algorithms,
            leeway_ms: millis(self.clock_skew),
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            max_lifetime_ms: self.max_token_lifetime.map(millis),
        };
        let cache = Arc::new(TokenCache::new(self.cache_capacity, self.cache_ttl));
        let counters = Arc::new(Counters::default());
        let keys = match self.key_source.clone() {
            None => {
                return Err(ConfigError::new(
                    "no key source: set CLERK_JWT_KEY (the PEM public key, networkless), \
                     CLERK_SECRET_KEY (JWKS from Clerk's Backend API) or CLERK_JWKS_URL, or call \
                     pem_key / clerk_secret_key / jwks_url on the builder",
                ));
            }
            Some(KeySourceConfig::Pem(pem)) => {
                KeySource::Static(Arc::new(key_from_pem(&pem, algorithms)?))
            }
            Some(KeySourceConfig::JwksUrl(url)) => {
                self.start_jwks(JwksEndpoint::url(&url)?, algorithms, &cache, &counters)?
            }
            Some(KeySourceConfig::ClerkBackendApi { secret_key }) => {
                let endpoint = JwksEndpoint::clerk(&self.clerk_api_url, &secret_key)?;
                self.start_jwks(endpoint, algorithms, &cache, &counters)?
            }
        };
        Ok(MachineVerifier {
            inner: Arc::new(Inner {
                keys,
                rules,
                cache,
                clock: self.clock,
                counters,
            }),
        })
    }

    fn checked_algorithms(&self) -> Result<AlgorithmSet, ConfigError> {
        let set = AlgorithmSet::of(&self.algorithms);
        if set.is_empty() {
            return Err(ConfigError::new(
                "the algorithm allowlist is empty: allow at least RS256",
            ));
        }
        if set.has_unsupported() {
            return Err(ConfigError::new(
                "HS256/HS384/HS512 are symmetric algorithms and cannot be used with public keys \
                 (PEM or JWKS): allowing them would open the door to algorithm confusion; remove \
                 them from `algorithms(…)`",
            ));
        }
        Ok(set)
    }

    fn start_jwks(
        &self,
        endpoint: JwksEndpoint,
        algorithms: AlgorithmSet,
        cache: &Arc<TokenCache>,
        counters: &Arc<Counters>,
    ) -> Result<KeySource, ConfigError> {
        let settings = self.jwks;
        check_range(
            "the JWKS refresh interval",
            settings.refresh_interval,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        check_range(
            "the JWKS cooldown",
            settings.cooldown,
            Duration::from_secs(1),
            Duration::from_secs(600),
        )?;
        check_range(
            "the JWKS stale window",
            settings.max_stale,
            settings.refresh_interval,
            Duration::from_secs(30 * 24 * 3600),
        )?;
        check_range(
            "the HTTP connect timeout",
            settings.timeouts.connect,
            Duration::from_millis(10),
            settings.timeouts.total,
        )?;
        check_range(
            "the HTTP total timeout",
            settings.timeouts.total,
            Duration::from_millis(10),
            Duration::from_secs(60),
        )?;
        let cache = Arc::clone(cache);
        let source = JwksSource::start(
            endpoint,
            settings,
            algorithms,
            Arc::clone(counters),
            Box::new(move || cache.clear()),
        )?;
        Ok(KeySource::Jwks(source))
    }
}

fn check_range(
    what: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(format!(
            "{what} is {value:?}; it must be between {min:?} and {max:?}"
        )));
    }
    Ok(())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
