//! Configuration of a [`MachineVerifier`], checked when it is built.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::algorithm::Algorithm;

use super::opaque::{IntrospectionRoute, OpaqueVerification};
use super::{Inner, MachineVerifier};
use crate::algorithm::AlgorithmSet;
use crate::cache::TokenCache;
use crate::clerk_api::{self, KeyKind};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::fetch::{ALLOW_HTTP_HOST_VAR, PlainHttp, Timeouts, check_range, redacted};
use crate::introspect::{ClerkIntrospector, Introspector};
use crate::jwt::JwtRules;
use crate::keys::{
    JwksEndpoint, JwksSettings, JwksSource, KeySource, frontend_api_jwks_url, key_from_pem,
    same_public_key,
};
use crate::machine::MachineId;
use crate::stats::Counters;

/// Clerk's Backend API, the default for `CLERK_API_URL` and
/// [`MachineVerifierBuilder::clerk_api_url`].
///
/// ```
/// assert_eq!(tower_machine_auth::DEFAULT_CLERK_API_URL, "https://api.clerk.com");
/// ```
pub const DEFAULT_CLERK_API_URL: &str = "https://api.clerk.com";
/// The largest clock skew [`MachineVerifierBuilder::clock_skew`] accepts: 300 s.
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::{MAX_CLOCK_SKEW, MachineVerifier};
///
/// let pem = include_str!("../../tests/data/rsa_public.pem");
/// let builder = MachineVerifier::builder().pem_key(pem);
/// assert!(builder.clone().clock_skew(MAX_CLOCK_SKEW).build().is_ok());
/// assert!(builder.clock_skew(MAX_CLOCK_SKEW + Duration::from_secs(1)).build().is_err());
/// ```
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

#[derive(Clone)]
enum KeySourceConfig {
    Pem(String),
    JwksUrl(String),
    ClerkBackendApi {
        secret_key: String,
    },
    /// Clerk's publishable key: the Frontend API's JWKS.
    ClerkFrontendApi {
        publishable_key: String,
    },
}

impl fmt::Debug for KeySourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem(_) => f.write_str("Pem"),
            Self::JwksUrl(url) => f.debug_tuple("JwksUrl").field(&redacted(url)).finish(),
            Self::ClerkBackendApi { .. } => {
                f.write_str("ClerkBackendApi { secret_key: [redacted] }")
            }
            Self::ClerkFrontendApi { .. } => f.write_str("ClerkFrontendApi"),
        }
    }
}

/// Builds a [`MachineVerifier`]. Every setter is optional but one key source; mistakes are
/// reported by [`build`](Self::build) with a message that says what to change.
///
/// The key sources may be set in any order, with the same result. JWT keys come from the first
/// of these that is set:
///
/// | key source | JWT keys | also |
/// |---|---|---|
/// | [`pem_key`](Self::pem_key) (`CLERK_JWT_KEY`) | that PEM key, no network | |
/// | [`jwks_url`](Self::jwks_url) (`CLERK_JWKS_URL`) | that JWKS | |
/// | [`clerk_secret_key`](Self::clerk_secret_key) (`CLERK_SECRET_KEY`) | the JWKS of Clerk's Backend API | verifies opaque `mt_…` tokens (also when a source above gives the JWT keys) |
/// | [`clerk_publishable_key`](Self::clerk_publishable_key) (`CLERK_PUBLISHABLE_KEY`) | the JWKS of Clerk's Frontend API | |
///
/// A publishable key beside a source above is not used, as in Clerk's SDKs (applications keep it
/// for their front end). A PEM key and a JWKS URL together name two different sets of keys:
/// [`build`](Self::build) refuses them with an error naming both. The JWKS settings
/// ([`jwks_refresh_interval`](Self::jwks_refresh_interval), [`jwks_cooldown`](Self::jwks_cooldown),
/// [`jwks_max_stale`](Self::jwks_max_stale), [`http_timeouts`](Self::http_timeouts)) are used,
/// and checked, only with a JWKS source. `Debug` output never shows the PEM key or the secret
/// key.
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::{Algorithm, MachineVerifier};
///
/// let pem = include_str!("../../tests/data/rsa_public.pem");
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
    pem_key: Option<String>,
    jwks_url: Option<String>,
    clerk_publishable_key: Option<String>,
    /// A contradiction among the environment variables, reported by `build`.
    env_error: Option<ConfigError>,
    clerk_api_url: String,
    /// The keys for Clerk's `/m2m_tokens/verify`: a machine secret key wins over the instance's.
    clerk_machine_secret_key: Option<String>,
    clerk_instance_secret_key: Option<String>,
    introspector: Option<Arc<dyn Introspector>>,
    opaque_cache_ttl: Duration,
    algorithms: Vec<Algorithm>,
    clock_skew: Duration,
    issuer: Option<String>,
    audiences: Vec<String>,
    max_token_lifetime: Option<Duration>,
    own_machine_id: Option<String>,
    /// One more host plain http may go to, besides loopback.
    allow_http_host: Option<String>,
    cache_capacity: u64,
    cache_ttl: Duration,
    jwks: JwksSettings,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MachineVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineVerifierBuilder")
            .field("key_source", &self.key_source())
            .field(
                "clerk_machine_secret_key",
                &self.clerk_machine_secret_key.as_ref().map(|_| "[redacted]"),
            )
            .field("introspector", &self.introspector)
            .field("opaque_cache_ttl", &self.opaque_cache_ttl)
            .field("clerk_api_url", &redacted(&self.clerk_api_url))
            .field("algorithms", &self.algorithms)
            .field("clock_skew", &self.clock_skew)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("own_machine_id", &self.own_machine_id)
            .field(
                "allow_http_host",
                &self.allow_http_host.as_deref().map(crate::fetch::typed),
            )
            .finish_non_exhaustive()
    }
}

impl Default for MachineVerifierBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MachineVerifierBuilder {
    /// The defaults: no key source, RS256 only, 5 s skew, no issuer, audience or lifetime check,
    /// a 10 000-token cache kept up to 5 min, JWKS refreshed every 5 min (cooldown 30 s, served
    /// stale up to 24 h, fetched with 2 s / 5 s timeouts), Clerk's API at
    /// [`DEFAULT_CLERK_API_URL`], and the [`SystemClock`]. Same as
    /// [`MachineVerifier::builder`] and `MachineVerifierBuilder::default()`.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifierBuilder;
    ///
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// assert!(MachineVerifierBuilder::new().build().is_err()); // no key source yet
    /// let verifier = MachineVerifierBuilder::new().pem_key(pem).build()?;
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn new() -> Self {
        Self {
            pem_key: None,
            jwks_url: None,
            clerk_publishable_key: None,
            env_error: None,
            clerk_api_url: DEFAULT_CLERK_API_URL.to_owned(),
            clerk_machine_secret_key: None,
            clerk_instance_secret_key: None,
            introspector: None,
            opaque_cache_ttl: Duration::ZERO,
            algorithms: vec![Algorithm::RS256],
            clock_skew: Duration::from_secs(5),
            issuer: None,
            audiences: Vec::new(),
            max_token_lifetime: None,
            own_machine_id: None,
            allow_http_host: None,
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(300),
            jwks: JwksSettings::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads Clerk's environment variables:
    ///
    /// | variable | same as | effect |
    /// |---|---|---|
    /// | `CLERK_JWT_KEY`, or `CLERK_PEM_PUBLIC_KEY` | [`pem_key`](Self::pem_key) | JWTs: this PEM public key, no network (first choice for JWTs) |
    /// | `CLERK_JWKS_URL` | [`jwks_url`](Self::jwks_url) | JWTs: any JWKS URL (our addition; [`build`](Self::build) refuses it beside a PEM key) |
    /// | `CLERK_SECRET_KEY` | [`clerk_secret_key`](Self::clerk_secret_key) | JWTs: `GET {CLERK_API_URL}/v1/jwks` with this key, unless a source above is set; opaque `mt_…` tokens: `{CLERK_API_URL}/m2m_tokens/verify`, always |
    /// | `CLERK_PUBLISHABLE_KEY` | [`clerk_publishable_key`](Self::clerk_publishable_key) | JWTs: the Frontend API's `https://<frontend api>/.well-known/jwks.json`, unless a source above is set |
    /// | `CLERK_MACHINE_SECRET_KEY` | [`clerk_machine_secret_key`](Self::clerk_machine_secret_key) | opaque `mt_…` tokens at `{CLERK_API_URL}/m2m_tokens/verify` (this key rather than `CLERK_SECRET_KEY`) |
    /// | `CLERK_API_URL` | [`clerk_api_url`](Self::clerk_api_url) | Clerk's Backend API, default `https://api.clerk.com` |
    /// | `CLERK_MACHINE_ID` | [`own_machine_id`](Self::own_machine_id) | this machine's own id: the receiver check |
    /// | `MACHINE_AUTH_ALLOW_HTTP_HOST` | [`allow_http_host`](Self::allow_http_host) | one host (not loopback) that plain `http://` may reach, such as a dev issuer in another container |
    ///
    /// Values may be wrapped in quotes (`CLERK_SECRET_KEY="sk_test_…"`, as some environment files
    /// pass them through): one pair of matching `"` or `'` around a key, PEM or URL is dropped.
    /// Empty (or whitespace-only) variables count as unset. Each variable that is set replaces the
    /// value of its setter; the others leave what was set before. Which key source gives the JWT
    /// keys does not depend on the order of calls (see [`MachineVerifierBuilder`]).
    /// `CLERK_JWT_KEY` and `CLERK_PEM_PUBLIC_KEY` both set to different keys make
    /// [`build`](Self::build) fail with an error naming both.
    ///
    /// ```no_run
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_machine_auth::ConfigError> {
    /// // A JWKS source (CLERK_SECRET_KEY, CLERK_JWKS_URL) needs a Tokio runtime.
    /// let verifier = MachineVerifier::builder().env().issuer("https://clerk.example.com").build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn env(self) -> Self {
        self.env_from(|name| std::env::var(name).ok())
    }

    /// Like [`env`](Self::env), reading variables through `lookup` (for tests and custom sources).
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let lookup = |name: &str| (name == "CLERK_JWT_KEY").then(|| pem.to_owned());
    /// assert!(MachineVerifier::builder().env_from(lookup).build().is_ok());
    ///
    /// let error = MachineVerifier::builder().env_from(|_| None).build().unwrap_err();
    /// assert!(error.to_string().contains("CLERK_SECRET_KEY"));
    /// ```
    pub fn env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        if let Some(api_url) = get("CLERK_API_URL") {
            self.clerk_api_url = api_url;
        }
        let secret_key = get("CLERK_SECRET_KEY");
        let pem = match (get("CLERK_JWT_KEY"), get("CLERK_PEM_PUBLIC_KEY")) {
            (Some(jwt_key), Some(pem_key)) if !same_public_key(&jwt_key, &pem_key) => {
                self.env_error = Some(ConfigError::new(
                    "CLERK_JWT_KEY and CLERK_PEM_PUBLIC_KEY are both set, to different keys: \
                     they name the same PEM public key, so set only one of them",
                ));
                None
            }
            (jwt_key, pem_key) => jwt_key.or(pem_key),
        };
        if pem.is_some() {
            self.pem_key = pem;
        }
        if let Some(url) = get("CLERK_JWKS_URL") {
            self.jwks_url = Some(url);
        }
        if secret_key.is_some() {
            self.clerk_instance_secret_key = secret_key;
        }
        if let Some(publishable_key) = get("CLERK_PUBLISHABLE_KEY") {
            self.clerk_publishable_key = Some(publishable_key);
        }
        if let Some(machine_secret_key) = get("CLERK_MACHINE_SECRET_KEY") {
            self.clerk_machine_secret_key = Some(machine_secret_key);
        }
        if let Some(machine_id) = get("CLERK_MACHINE_ID") {
            self.own_machine_id = Some(machine_id);
        }
        if let Some(host) = get(ALLOW_HTTP_HOST_VAR) {
            self.allow_http_host = Some(host);
        }
        self
    }

    /// Verifies with one PEM public key (SPKI, with or without the armour lines; literal `\n`
    /// sequences, as in some environment files, count as line breaks). The token's `kid` is
    /// ignored, as Clerk's `jwtKey` does. No network is used.
    ///
    /// The key may be RSA (2048 to 4096 bits), EC P-256, EC P-384 or Ed25519.
    /// [`build`](Self::build) fails if the PEM cannot be read, holds a private key or a PKCS#1
    /// `RSA PUBLIC KEY`, is a weak RSA key, or suits none of the [`algorithms`](Self::algorithms).
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// assert!(MachineVerifier::builder().pem_key(pem).build().is_ok());
    ///
    /// let private = include_str!("../../tests/data/rsa_private.pem");
    /// let error = MachineVerifier::builder().pem_key(private).build().unwrap_err();
    /// assert!(error.to_string().contains("private key"));
    /// ```
    pub fn pem_key(mut self, pem: impl Into<String>) -> Self {
        self.pem_key = Some(pem.into());
        self
    }

    /// Verifies with the keys of a JWKS URL, fetched without credentials and refreshed in the
    /// background. The URL must be https, or http on a loopback host (`localhost`, `127.0.0.0/8`,
    /// `::1`); [`build`](Self::build) fails otherwise, and outside a Tokio runtime.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let https = MachineVerifier::builder().jwks_url("https://clerk.example.com/.well-known/jwks.json");
    /// assert!(https.build().is_ok());
    /// let plain = MachineVerifier::builder().jwks_url("http://clerk.example.com/.well-known/jwks.json");
    /// assert!(plain.build().is_err());
    /// # }
    /// ```
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Verifies opaque `mt_…` tokens at Clerk's `POST {clerk_api_url}/m2m_tokens/verify` with the
    /// instance secret key (unless a [`clerk_machine_secret_key`](Self::clerk_machine_secret_key)
    /// is set), and, unless a [`pem_key`](Self::pem_key) or a [`jwks_url`](Self::jwks_url) is set,
    /// JWTs with the JWKS of Clerk's Backend API (`GET {clerk_api_url}/v1/jwks`), fetched with the
    /// key as `Authorization: Bearer <key>` (surrounding whitespace, and quotes as pasted from an
    /// environment file, are dropped). [`build`](Self::build) fails if the key holds characters
    /// not allowed in a header, if it is a machine secret key (`ak_…`, which belongs in
    /// [`clerk_machine_secret_key`](Self::clerk_machine_secret_key)) or a publishable key
    /// (`pk_…`), and outside a Tokio runtime.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(MachineVerifier::builder().clerk_secret_key("sk_test_123").build().is_ok());
    /// assert!(MachineVerifier::builder().clerk_secret_key("\"sk_test_123\"").build().is_ok());
    /// assert!(MachineVerifier::builder().clerk_secret_key("sk_test\n123").build().is_err());
    ///
    /// let misplaced = MachineVerifier::builder().clerk_secret_key("ak_machine").build().unwrap_err();
    /// assert!(misplaced.to_string().contains("it belongs in CLERK_MACHINE_SECRET_KEY"));
    /// # }
    /// ```
    pub fn clerk_secret_key(mut self, secret_key: impl Into<String>) -> Self {
        self.clerk_instance_secret_key = Some(secret_key.into());
        self
    }

    /// Verifies with the JWKS of the Clerk Frontend API that a publishable key (`pk_test_…` or
    /// `pk_live_…`, Clerk's `CLERK_PUBLISHABLE_KEY`) names: `https://<frontend api>/.well-known/jwks.json`,
    /// fetched without credentials and refreshed in the background (`http://` for a loopback
    /// Frontend API, as a local issuer serves it). A publishable key is public and verifies JWTs
    /// only: without [`clerk_secret_key`](Self::clerk_secret_key) or
    /// [`clerk_machine_secret_key`](Self::clerk_machine_secret_key), opaque `mt_…` tokens get 401
    /// `token-type-mismatch`, and `build` logs that once. [`build`](Self::build) fails if the key
    /// is malformed, and outside a Tokio runtime.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // The base64 of `clerk.example.com$`.
    /// let builder = MachineVerifier::builder().clerk_publishable_key("pk_live_Y2xlcmsuZXhhbXBsZS5jb20k");
    /// assert!(builder.build().is_ok());
    /// let error = MachineVerifier::builder().clerk_publishable_key("sk_live_oops").build().unwrap_err();
    /// assert!(error.to_string().contains("CLERK_PUBLISHABLE_KEY"));
    /// # }
    /// ```
    pub fn clerk_publishable_key(mut self, publishable_key: impl Into<String>) -> Self {
        self.clerk_publishable_key = Some(publishable_key.into());
        self
    }

    /// Verifies Clerk's opaque machine tokens (`mt_…`) at `POST {clerk_api_url}/m2m_tokens/verify`
    /// with this machine secret key (`ak_…`, Clerk's `CLERK_MACHINE_SECRET_KEY`), which wins over
    /// the instance secret key of [`clerk_secret_key`](Self::clerk_secret_key). See
    /// [`ClerkIntrospector`](crate::introspect::ClerkIntrospector) for what each answer means.
    /// Surrounding whitespace and quotes are dropped. [`build`](Self::build) fails if the key is
    /// the instance secret key (`sk_…`, which belongs in
    /// [`clerk_secret_key`](Self::clerk_secret_key)) or a publishable key (`pk_…`).
    ///
    /// With this key Clerk knows only the opaque tokens meant for this machine (with its id in
    /// their scopes): when every opaque token is unknown to Clerk for a while, the verifier logs
    /// a warning (at most once a minute) saying so, since machine B given machine A's key is a
    /// common mistake.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// // Opaque tokens only: JWTs get 401 `token-type-mismatch`.
    /// let verifier = MachineVerifier::builder().clerk_machine_secret_key("ak_machine").build()?;
    ///
    /// let misplaced = MachineVerifier::builder().clerk_machine_secret_key("sk_live_1").build().unwrap_err();
    /// assert!(misplaced.to_string().contains("it belongs in CLERK_SECRET_KEY"));
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn clerk_machine_secret_key(mut self, secret_key: impl Into<String>) -> Self {
        self.clerk_machine_secret_key = Some(secret_key.into());
        self
    }

    /// Verifies every opaque token that is not Clerk's (not `mt_…`, and `mt_…` too when no Clerk
    /// key is set) with this introspector, typically an
    /// [`Rfc7662Introspector`](crate::introspect::Rfc7662Introspector). A JWT-shaped token is never
    /// sent to it, even when it fails the JWT checks, nor a Clerk key sent by mistake (`ak_…`,
    /// `sk_test_…`, `sk_live_…`, `pk_test_…`, `pk_live_…`: 401 `token-type-mismatch` without any
    /// call).
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    /// use tower_machine_auth::introspect::Rfc7662Introspector;
    ///
    /// let introspection = Rfc7662Introspector::builder("https://auth.example.com/introspect")
    ///     .client_credentials("api", "secret")
    ///     .build()?;
    /// let verifier = MachineVerifier::builder().introspector(introspection).build()?;
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn introspector(mut self, introspector: impl Introspector) -> Self {
        self.introspector = Some(Arc::new(introspector));
        self
    }

    /// Reuses a valid introspection result for up to `ttl` (never past the token's expiry), in
    /// the token cache of [`token_cache`](Self::token_cache). Off by default: opaque tokens exist
    /// so that a revocation takes effect at once, and with a TTL it takes effect within the TTL.
    /// Failures are never cached.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// let verifier = MachineVerifier::builder()
    ///     .clerk_machine_secret_key("ak_machine")
    ///     .opaque_token_cache(Duration::from_secs(10))
    ///     .build()?;
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn opaque_token_cache(mut self, ttl: Duration) -> Self {
        self.opaque_cache_ttl = ttl;
        self
    }

    /// Clerk's Backend API URL (default [`DEFAULT_CLERK_API_URL`]; a trailing `/` or `/v1` is
    /// accepted): where the JWKS of [`clerk_secret_key`](Self::clerk_secret_key) is fetched
    /// (`/v1/jwks`) and where opaque `mt_…` tokens are verified (`/m2m_tokens/verify`, with
    /// [`clerk_secret_key`](Self::clerk_secret_key) or
    /// [`clerk_machine_secret_key`](Self::clerk_machine_secret_key)). Like a JWKS URL, it must be
    /// https, or http on a loopback host (or the host of [`allow_http_host`](Self::allow_http_host)).
    /// Errors quote the URL as it was given (without credentials): a URL without its scheme,
    /// such as `localhost:8787`, is told what to write.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let clerk = MachineVerifier::builder().clerk_secret_key("sk_test_123");
    /// assert!(clerk.clone().clerk_api_url("https://api.clerk.com/v1/").build().is_ok());
    /// let error = clerk.clone().clerk_api_url("http://api.clerk.com").build().unwrap_err();
    /// assert!(error.to_string().contains("CLERK_API_URL"));
    /// let error = clerk.clerk_api_url("localhost:8787").build().unwrap_err();
    /// assert!(error.to_string().contains("has no scheme: write `http://localhost:8787`"));
    /// # }
    /// ```
    pub fn clerk_api_url(mut self, url: impl Into<String>) -> Self {
        self.clerk_api_url = url.into();
        self
    }

    /// Lets the verifier's calls (the JWKS, Clerk's `/m2m_tokens/verify`) use plain `http://` to
    /// this one host as well as to loopback hosts: a host name or an IP address alone, such as
    /// `issuer` for a dev issuer at `http://issuer:8787` in a docker compose network
    /// (`MACHINE_AUTH_ALLOW_HTTP_HOST` in [`env`](Self::env)). The secret key and tokens then
    /// cross that network unencrypted: use it only on a network you trust entirely, never for
    /// Clerk itself. [`build`](Self::build) logs a warning when it is set, and fails if `host` is
    /// not a host name (a URL or a port, say). Every other host still needs https.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = || MachineVerifier::builder().clerk_secret_key("sk_test_1").clerk_api_url("http://issuer:8787");
    /// assert!(dev().build().unwrap_err().to_string().contains("MACHINE_AUTH_ALLOW_HTTP_HOST"));
    /// assert!(dev().allow_http_host("issuer").build().is_ok());
    /// assert!(dev().allow_http_host("issuer").clerk_api_url("http://other:8787").build().is_err());
    /// # }
    /// ```
    pub fn allow_http_host(mut self, host: impl Into<String>) -> Self {
        self.allow_http_host = Some(host.into());
        self
    }

    /// The signature algorithms tokens may use (default: RS256 only), replacing the list set
    /// before. Supported: RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA. A token with another
    /// `alg` is rejected as `token-invalid`.
    ///
    /// [`build`](Self::build) fails if the list is empty, or, with a PEM key, if no listed
    /// algorithm suits the key. Symmetric `HS*` algorithms are not [`Algorithm`]s at all: keys
    /// here are public keys.
    ///
    /// ```
    /// use tower_machine_auth::{Algorithm, MachineVerifier};
    ///
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let builder = MachineVerifier::builder().pem_key(pem);
    /// assert!(builder.clone().algorithms([Algorithm::RS256, Algorithm::PS256]).build().is_ok());
    /// assert!(builder.algorithms([Algorithm::ES256]).build().is_err()); // an RSA key
    /// ```
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Allowed clock skew for `exp`, `nbf` and `iat` (default 5 s; [`build`](Self::build) fails
    /// above [`MAX_CLOCK_SKEW`], 300 s). A token is expired once `exp` is at or before now minus
    /// the skew, and not yet active while `nbf` or `iat` is after now plus the skew.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::{AuthError, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let sign = |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key);
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    /// let token = sign(serde_json::json!({"sub": "mch_cron", "exp": now - 2}))?; // expired 2 s ago
    /// let lenient = MachineVerifier::builder().pem_key(pem).build()?; // 5 s
    /// assert!(lenient.verify(&token).await.is_ok());
    /// let strict = MachineVerifier::builder().pem_key(pem).clock_skew(Duration::ZERO).build()?;
    /// assert_eq!(strict.verify(&token).await, Err(AuthError::Expired));
    /// # Ok(())
    /// # }
    /// ```
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Requires `iss` to be exactly this string (no normalisation, not even of a trailing `/`);
    /// a token without `iss` is rejected too. By default `iss` is not checked.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_machine_auth::error::ClaimMismatch;
    /// use tower_machine_auth::{AuthError, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let sign = |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key);
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    /// let verifier = MachineVerifier::builder().pem_key(pem).issuer("https://clerk.example.com").build()?;
    /// let token = sign(json!({"sub": "mch_cron", "exp": now + 60, "iss": "https://clerk.example.com/"}))?;
    /// assert_eq!(verifier.verify(&token).await, Err(AuthError::ClaimMismatch(ClaimMismatch::Issuer)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` (a string or an array of strings) to name at least one of these audiences,
    /// compared exactly; a token without `aud` is rejected too. Replaces the list set before; an
    /// empty list (the default) turns the check off.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_machine_auth::error::ClaimMismatch;
    /// use tower_machine_auth::{AuthError, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let sign = |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key);
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    /// let verifier = MachineVerifier::builder().pem_key(pem).audiences(["mch_reports"]).build()?;
    /// let token = sign(json!({"sub": "mch_cron", "exp": now + 60, "aud": ["mch_billing", "mch_reports"]}))?;
    /// assert!(verifier.verify(&token).await.is_ok());
    /// let token = sign(json!({"sub": "mch_cron", "exp": now + 60}))?;
    /// assert_eq!(verifier.verify(&token).await, Err(AuthError::ClaimMismatch(ClaimMismatch::Audience)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn audiences<I: IntoIterator<Item = S>, S: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Rejects tokens whose `exp` lies further ahead of the verification time than this (no limit
    /// by default). It is measured from now, not from `iat`, and without clock skew.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serde_json::json;
    /// use tower_machine_auth::error::ClaimMismatch;
    /// use tower_machine_auth::{AuthError, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let sign = |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key);
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    /// let verifier = MachineVerifier::builder()
    ///     .pem_key(pem)
    ///     .max_token_lifetime(Duration::from_secs(600))
    ///     .build()?;
    /// let token = sign(json!({"sub": "mch_cron", "exp": now + 3600}))?;
    /// let expected = AuthError::ClaimMismatch(ClaimMismatch::LifetimeTooLong);
    /// assert_eq!(verifier.verify(&token).await, Err(expected));
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = Some(lifetime);
        self
    }

    /// This machine's own id (`mch_…`, Clerk's `CLERK_MACHINE_ID`): the receiver check. A token
    /// is then accepted only if this id is among its scopes (a JWT's `scopes` claim split on
    /// spaces, else its `aud`, a string or an array; an opaque token's `scopes`), compared exactly
    /// and case-sensitively. Other tokens get 401 `token-invalid-receiver`
    /// ([`AuthError::NotForThisMachine`](crate::AuthError::NotForThisMachine)).
    ///
    /// In Clerk's model machine A may call machine B only when B is among A's scoped machines,
    /// and A's tokens carry those ids. Without this setting every machine of the instance is
    /// accepted, and [`build`](Self::build) logs a warning saying so. `build` fails if `id` is
    /// not a machine id.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_machine_auth::{AuthError, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let sign = |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key);
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    /// let verifier = MachineVerifier::builder()
    ///     .pem_key(pem)
    ///     .own_machine_id("mch_reports_api")
    ///     .build()?;
    /// let for_us = sign(json!({"sub": "mch_cron", "exp": now + 60, "scopes": "mch_reports_api"}))?;
    /// assert!(verifier.verify(&for_us).await.is_ok());
    /// let for_billing = sign(json!({"sub": "mch_cron", "exp": now + 60, "scopes": "mch_billing"}))?;
    /// assert_eq!(verifier.verify(&for_billing).await, Err(AuthError::NotForThisMachine));
    ///
    /// assert!(MachineVerifier::builder().pem_key(pem).own_machine_id("reports").build().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn own_machine_id(mut self, id: impl Into<String>) -> Self {
        self.own_machine_id = Some(id.into());
        self
    }

    /// Size and TTL of the verified-token cache (default 10 000 tokens, 5 min). A capacity of 0,
    /// or a TTL of zero, turns it off. Only successful verifications are cached, keyed by the
    /// token itself (a hit needs every byte to match); when it is full, tokens seen only once go
    /// first (S3-FIFO). Each entry holds the token and its identity: about 2 KB for a 1 KB Clerk
    /// JWT with a few custom claims (`cargo bench --bench cache`), so the default takes about 20 MB
    /// when full. An entry never
    /// outlives its token's `exp` (a reused expired token gets `token-expired`), and the whole cache
    /// is cleared when a key leaves the JWKS. A cached token skips the signature check; only its
    /// `exp` is checked again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let sign = |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key);
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    /// let verifier = MachineVerifier::builder()
    ///     .pem_key(pem)
    ///     .token_cache(0, Duration::from_secs(300))
    ///     .build()?;
    /// let token = sign(serde_json::json!({"sub": "mch_cron", "exp": now + 60}))?;
    /// verifier.verify(&token).await?;
    /// verifier.verify(&token).await?;
    /// assert_eq!(verifier.stats().signature_checks, 2); // no cache: verified in full twice
    /// # Ok(())
    /// # }
    /// ```
    pub fn token_cache(mut self, capacity: u64, ttl: Duration) -> Self {
        self.cache_capacity = capacity;
        self.cache_ttl = ttl;
        self
    }

    /// How often the JWKS is refreshed in the background (default 5 min). With a JWKS source,
    /// [`build`](Self::build) fails outside 1 s to 1 h; ignored with a PEM key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let jwks = MachineVerifier::builder().jwks_url("https://clerk.example.com/.well-known/jwks.json");
    /// assert!(jwks.clone().jwks_refresh_interval(Duration::from_secs(60)).build().is_ok());
    /// assert!(jwks.jwks_refresh_interval(Duration::from_secs(7200)).build().is_err());
    /// # }
    /// ```
    pub fn jwks_refresh_interval(mut self, interval: Duration) -> Self {
        self.jwks.refresh_interval = interval;
        self
    }

    /// The least time between two fetches caused by unknown `kid`s (default 30 s); background
    /// refreshes do not count. With a JWKS source, [`build`](Self::build) fails outside 1 s to
    /// 10 min; ignored with a PEM key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let jwks = MachineVerifier::builder().jwks_url("https://clerk.example.com/.well-known/jwks.json");
    /// assert!(jwks.clone().jwks_cooldown(Duration::from_secs(60)).build().is_ok());
    /// assert!(jwks.jwks_cooldown(Duration::ZERO).build().is_err());
    /// # }
    /// ```
    pub fn jwks_cooldown(mut self, cooldown: Duration) -> Self {
        self.jwks.cooldown = cooldown;
        self
    }

    /// How long the last good JWKS is served, counted from the last successful fetch, while
    /// refreshes fail (default 24 h). After that, requests get 503 until a fetch succeeds. With a
    /// JWKS source, [`build`](Self::build) fails below the refresh interval or above 30 days;
    /// ignored with a PEM key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let jwks = MachineVerifier::builder().jwks_url("https://clerk.example.com/.well-known/jwks.json");
    /// assert!(jwks.clone().jwks_max_stale(Duration::from_secs(3600)).build().is_ok());
    /// assert!(jwks.jwks_max_stale(Duration::from_secs(60)).build().is_err()); // < 5 min refresh
    /// # }
    /// ```
    pub fn jwks_max_stale(mut self, max_stale: Duration) -> Self {
        self.jwks.max_stale = max_stale;
        self
    }

    /// Connect and total timeouts (default 2 s and 5 s) of the verifier's calls: JWKS fetches and
    /// Clerk's `/m2m_tokens/verify`. When either is configured, [`build`](Self::build) fails unless
    /// 10 ms ≤ `connect` ≤ `total` ≤ 60 s. An
    /// [`Rfc7662Introspector`](crate::introspect::Rfc7662Introspector) has timeouts of its own.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let jwks = MachineVerifier::builder().jwks_url("https://clerk.example.com/.well-known/jwks.json");
    /// let (one, three) = (Duration::from_secs(1), Duration::from_secs(3));
    /// assert!(jwks.clone().http_timeouts(one, three).build().is_ok());
    /// assert!(jwks.http_timeouts(three, one).build().is_err()); // connect > total
    /// # }
    /// ```
    pub fn http_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.jwks.timeouts = Timeouts { connect, total };
        self
    }

    /// The clock for `exp`, `nbf` and `iat`, and for the age of cache entries (default:
    /// [`SystemClock`]). Tests can pass [`TokioClock`](crate::clock::TokioClock) to drive expiry
    /// with Tokio's paused time (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`:
    /// Tokio's `test-util` feature, in your dev-dependencies).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::clock::TokioClock;
    /// use tower_machine_auth::{AuthError, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let sign = |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key);
    /// let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    /// let verifier = MachineVerifier::builder().pem_key(pem).clock(TokioClock::new()).build()?;
    /// let token = sign(serde_json::json!({"sub": "mch_cron", "exp": now + 60}))?;
    /// assert!(verifier.verify(&token).await.is_ok());
    /// tokio::time::advance(Duration::from_secs(120)).await;
    /// assert_eq!(verifier.verify(&token).await, Err(AuthError::Expired));
    /// # Ok(())
    /// # }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the verifier. A JWKS source starts its background
    /// refresh, so it must be built inside a Tokio runtime; it does not wait for the first fetch
    /// (requests wait for it, or get 503 if it fails).
    ///
    /// Fails with a [`ConfigError`] that says what to change when: there is no key source; the
    /// algorithm list is empty or holds `HS*`; the clock skew exceeds [`MAX_CLOCK_SKEW`]; the PEM
    /// key is unusable (see [`pem_key`](Self::pem_key)); a URL is invalid or not https (http only
    /// on loopback, or to the host of [`allow_http_host`](Self::allow_http_host)); a Clerk key is
    /// given in the place of another (an `ak_…` machine key as the instance secret key, an
    /// `sk_…` instance key as the machine secret key, a `pk_…` publishable key as either);
    /// the secret key cannot be sent in a header; or, for a JWKS source, a JWKS setting is out of
    /// range or no Tokio runtime is running.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// let error = MachineVerifier::builder().build().unwrap_err();
    /// assert!(error.to_string().starts_with("no key source"));
    ///
    /// // Outside a Tokio runtime:
    /// let jwks = MachineVerifier::builder().jwks_url("https://clerk.example.com/.well-known/jwks.json");
    /// assert!(jwks.build().unwrap_err().to_string().contains("Tokio runtime"));
    /// ```
    pub fn build(self) -> Result<MachineVerifier, ConfigError> {
        if let Some(error) = self.env_error.clone() {
            return Err(error);
        }
        self.check_key_placement()?;
        let plain_http = self.checked_plain_http()?;
        let algorithms = self.checked_algorithms()?;
        if self.clock_skew > MAX_CLOCK_SKEW {
            return Err(ConfigError::new(format!(
                "the clock skew is {:?}; it must be at most 300 s",
                self.clock_skew
            )));
        }
        let own_machine_id = self.checked_own_machine_id()?;
        let rules = JwtRules {
            algorithms,
            leeway_ms: millis(self.clock_skew),
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            max_lifetime_ms: self.max_token_lifetime.map(millis),
        };
        let cache = Arc::new(TokenCache::new(
            self.cache_capacity,
            self.cache_ttl.max(self.opaque_cache_ttl),
        ));
        let counters = Arc::new(Counters::default());
        let keys = match self.key_source()? {
            None => None,
            Some(KeySourceConfig::Pem(pem)) => {
                Some(KeySource::Static(Arc::new(key_from_pem(&pem, algorithms)?)))
            }
            Some(KeySourceConfig::JwksUrl(url)) => {
                let endpoint = JwksEndpoint::url(&url, &plain_http)?;
                Some(self.start_jwks(endpoint, algorithms, &cache, &counters)?)
            }
            Some(KeySourceConfig::ClerkBackendApi { secret_key }) => {
                let endpoint = JwksEndpoint::clerk(&self.clerk_api_url, &secret_key, &plain_http)?;
                Some(self.start_jwks(endpoint, algorithms, &cache, &counters)?)
            }
            Some(KeySourceConfig::ClerkFrontendApi { publishable_key }) => {
                let url = frontend_api_jwks_url(&publishable_key, &plain_http)?;
                let endpoint = JwksEndpoint::url(&url, &plain_http)?;
                Some(self.start_jwks(endpoint, algorithms, &cache, &counters)?)
            }
        };
        let opaque = self.opaque_verification(&plain_http)?;
        if keys.is_none() && !opaque.is_enabled() {
            return Err(ConfigError::new(
                "no key source: set CLERK_JWT_KEY (the PEM public key, networkless), \
                 CLERK_SECRET_KEY (JWKS from Clerk's Backend API), CLERK_JWKS_URL or \
                 CLERK_PUBLISHABLE_KEY (the Frontend API's JWKS) for JWTs, and/or \
                 CLERK_MACHINE_SECRET_KEY for opaque tokens; or call pem_key / clerk_secret_key / \
                 jwks_url / clerk_publishable_key / clerk_machine_secret_key / introspector on \
                 the builder",
            ));
        }
        if keys.is_some() && !opaque.is_enabled() {
            tracing::info!(
                "opaque machine tokens (mt_…) are refused with token-type-mismatch: verifying them \
                 needs a secret key (CLERK_SECRET_KEY or CLERK_MACHINE_SECRET_KEY)"
            );
        }
        if let Some(host) = plain_http.allowed_host() {
            tracing::warn!(
                %host,
                "plain http is allowed to `{host}` ({ALLOW_HTTP_HOST_VAR} or allow_http_host): \
                 the secret key and tokens sent there cross the network unencrypted, and anyone \
                 on the path could serve their own JWKS and so forge any token; use this only on \
                 a network you trust entirely, such as a docker compose network"
            );
        }
        if own_machine_id.is_none() {
            tracing::warn!(
                "no own machine id is set (CLERK_MACHINE_ID, or own_machine_id on the builder): \
                 tokens of every machine of the instance are accepted"
            );
        }
        Ok(MachineVerifier {
            inner: Arc::new(Inner {
                keys,
                rules,
                own_machine_id,
                opaque,
                cache,
                jwt_cache_ttl_ms: millis(self.cache_ttl),
                clock: self.clock,
                counters,
            }),
        })
    }

    /// Where JWT keys come from: the first key source set, in the order of the table on
    /// [`MachineVerifierBuilder`]; two that name different key sets are an error.
    fn key_source(&self) -> Result<Option<KeySourceConfig>, ConfigError> {
        if self.pem_key.is_some() && self.jwks_url.is_some() {
            return Err(ConfigError::new(
                "both a PEM key (pem_key, CLERK_JWT_KEY) and a JWKS URL (jwks_url, \
                 CLERK_JWKS_URL) are set: they name two different sets of keys for JWTs; set \
                 only one of them",
            ));
        }
        let source = if let Some(pem) = &self.pem_key {
            KeySourceConfig::Pem(pem.clone())
        } else if let Some(url) = &self.jwks_url {
            KeySourceConfig::JwksUrl(url.clone())
        } else if let Some(secret_key) = &self.clerk_instance_secret_key {
            KeySourceConfig::ClerkBackendApi {
                secret_key: secret_key.clone(),
            }
        } else if let Some(publishable_key) = &self.clerk_publishable_key {
            KeySourceConfig::ClerkFrontendApi {
                publishable_key: publishable_key.clone(),
            }
        } else {
            return Ok(None);
        };
        Ok(Some(source))
    }

    fn opaque_verification(
        &self,
        plain_http: &PlainHttp,
    ) -> Result<OpaqueVerification, ConfigError> {
        let with_machine_key = self.clerk_machine_secret_key.is_some();
        let clerk_key = self
            .clerk_machine_secret_key
            .as_ref()
            .or(self.clerk_instance_secret_key.as_ref());
        let machine_tokens = clerk_key
            .map(|key| {
                self.jwks.timeouts.check("the HTTP")?;
                let introspector = ClerkIntrospector::with_timeouts(
                    &self.clerk_api_url,
                    key,
                    self.jwks.timeouts,
                    plain_http,
                )?;
                Ok::<_, ConfigError>(IntrospectionRoute::clerk(introspector, with_machine_key))
            })
            .transpose()?;
        Ok(OpaqueVerification::new(
            machine_tokens,
            self.introspector.clone().map(IntrospectionRoute::new),
            millis(self.opaque_cache_ttl),
        ))
    }

    /// Refuses a Clerk key given where another kind belongs, naming where it belongs (never the
    /// key itself).
    fn check_key_placement(&self) -> Result<(), ConfigError> {
        let misplaced =
            |setting: &str, key: &Option<String>, expected: KeyKind, takes: &str| match key
                .as_deref()
                .and_then(clerk_api::key_kind)
            {
                Some(kind) if kind != expected => Err(ConfigError::new(format!(
                    "{setting} holds {}; this setting takes {takes}",
                    kind.belongs()
                ))),
                _ => Ok(()),
            };
        misplaced(
            "CLERK_SECRET_KEY (clerk_secret_key)",
            &self.clerk_instance_secret_key,
            KeyKind::Instance,
            "the instance secret key (`sk_test_…` or `sk_live_…`, Clerk's dashboard: API keys)",
        )?;
        misplaced(
            "CLERK_MACHINE_SECRET_KEY (clerk_machine_secret_key)",
            &self.clerk_machine_secret_key,
            KeyKind::Machine,
            "this machine's secret key (`ak_…`, Clerk's dashboard: Machines)",
        )
    }

    /// Where plain http may go: loopback, and the host of `allow_http_host` if one is set.
    fn checked_plain_http(&self) -> Result<PlainHttp, ConfigError> {
        PlainHttp::loopback_and(self.allow_http_host.as_deref().map(clerk_api::setting))
    }

    fn checked_own_machine_id(&self) -> Result<Option<MachineId>, ConfigError> {
        self.own_machine_id
            .as_deref()
            .map(|id| {
                MachineId::parse(id).ok_or_else(|| {
                    ConfigError::new(format!(
                        "the own machine id (CLERK_MACHINE_ID) `{id}` is not a machine id: \
                         `mch_` followed by 1 to 92 ASCII letters, digits or `_`"
                    ))
                })
            })
            .transpose()
    }

    fn checked_algorithms(&self) -> Result<AlgorithmSet, ConfigError> {
        let set = AlgorithmSet::of(&self.algorithms);
        if set.is_empty() {
            return Err(ConfigError::new(
                "the algorithm allowlist is empty: allow at least RS256",
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
        settings.timeouts.check("the HTTP")?;
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

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Setter = fn(MachineVerifierBuilder) -> MachineVerifierBuilder;

    const PEM: Setter = |b| b.pem_key("pem");
    const JWKS_URL: Setter = |b| b.jwks_url("https://keys.example.com/jwks.json");
    const SECRET_KEY: Setter = |b| b.clerk_secret_key("sk_test_1");
    const PUBLISHABLE_KEY: Setter = |b| b.clerk_publishable_key("pk_test_1");

    /// Every order of `setters`, applied to a fresh builder.
    fn every_order(setters: &[Setter]) -> Vec<MachineVerifierBuilder> {
        if setters.len() <= 1 {
            return vec![
                setters
                    .iter()
                    .fold(MachineVerifierBuilder::new(), |b, set| set(b)),
            ];
        }
        let mut builders = Vec::new();
        for (i, first) in setters.iter().enumerate() {
            let mut rest = setters.to_vec();
            rest.remove(i);
            for builder in every_order(&rest) {
                builders.push(first(builder));
            }
        }
        builders
    }

    /// What the builder's key source resolves to, as text (`Debug` hides the keys themselves).
    fn resolved(builder: &MachineVerifierBuilder) -> String {
        match builder.key_source() {
            Ok(source) => format!("{source:?}"),
            Err(error) => format!("error: {error}"),
        }
    }

    #[test]
    fn key_sources_give_the_same_result_in_any_order() {
        let all = [PEM, JWKS_URL, SECRET_KEY, PUBLISHABLE_KEY];
        // Every subset of the four sources, in every order.
        for mask in 0u8..16 {
            let chosen: Vec<Setter> = (0..4)
                .filter(|bit| mask & (1 << bit) != 0)
                .map(|bit| all[bit])
                .collect();
            let outcomes: Vec<String> = every_order(&chosen).iter().map(resolved).collect();
            assert!(
                outcomes.windows(2).all(|pair| pair[0] == pair[1]),
                "subset {mask:04b}: {outcomes:?}"
            );
        }
    }

    #[test]
    fn the_first_source_in_the_table_gives_the_jwt_keys() {
        let apply = |setters: &[Setter]| {
            resolved(
                &setters
                    .iter()
                    .fold(MachineVerifierBuilder::new(), |b, set| set(b)),
            )
        };
        assert_eq!(apply(&[]), "None");
        assert_eq!(apply(&[PUBLISHABLE_KEY]), "Some(ClerkFrontendApi)");
        assert_eq!(
            apply(&[PUBLISHABLE_KEY, SECRET_KEY]),
            "Some(ClerkBackendApi { secret_key: [redacted] })"
        );
        assert!(apply(&[SECRET_KEY, JWKS_URL]).starts_with("Some(JwksUrl("));
        assert_eq!(apply(&[SECRET_KEY, PEM, PUBLISHABLE_KEY]), "Some(Pem)");
        for conflict in [&[PEM, JWKS_URL][..], &[JWKS_URL, SECRET_KEY, PEM]] {
            let outcome = apply(conflict);
            assert!(outcome.starts_with("error: both a PEM key"), "{outcome}");
            assert!(outcome.contains("CLERK_JWKS_URL"), "{outcome}");
        }
    }

    #[test]
    fn the_environment_and_the_setters_agree() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let from_env = MachineVerifierBuilder::new().env_from(env(&[
            ("CLERK_SECRET_KEY", "sk_test_1"),
            ("CLERK_JWKS_URL", "https://keys.example.com/jwks.json"),
            ("CLERK_PUBLISHABLE_KEY", "pk_test_1"),
        ]));
        let from_setters = PUBLISHABLE_KEY(SECRET_KEY(JWKS_URL(MachineVerifierBuilder::new())));
        assert_eq!(resolved(&from_env), resolved(&from_setters));
        // A PEM key from the environment beside a JWKS URL set in code is the same conflict.
        let mixed =
            JWKS_URL(MachineVerifierBuilder::new()).env_from(env(&[("CLERK_JWT_KEY", "pem")]));
        assert!(resolved(&mixed).starts_with("error: both a PEM key"));
    }
}
