//! Tokens for your own tests (feature `test-util`): [`TestIssuer`] mints M2M JWTs and opaque
//! `mt_…` tokens the way Clerk does, and gives a [`MachineVerifier`] that accepts them and
//! nothing else.
//!
//! It is the light way to test code behind [`MachineAuthLayer`](crate::MachineAuthLayer): a
//! fresh RS256 key per issuer (generated in memory with `aws-lc-rs`, which also signs the JWTs;
//! no key is stored anywhere), and, for opaque tokens, a small HTTP server on `127.0.0.1`
//! standing in for Clerk's `POST /m2m_tokens/verify`. No database, no web framework, no
//! network beyond loopback. (The full local issuer, with its HTTP API, JWKS, machines and
//! SQLite store, is the crate `machine-auth-issuer`.)
//!
//! ```
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use axum::{Router, routing::post};
//! use tower::ServiceExt; // oneshot
//! use tower_machine_auth::test_util::TestIssuer;
//! use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer};
//!
//! async fn run_cron(machine: AuthenticatedMachine) -> String {
//!     format!("run by {}", machine.machine_id())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let issuer = TestIssuer::new();
//! let app = Router::new()
//!     .route("/cron/run", post(run_cron))
//!     .layer(MachineAuthLayer::new(issuer.verifier()));
//!
//! let token = issuer.jwt("mch_cron").scopes(["mch_reports"]).sign();
//! let request = Request::post("/cron/run")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Body::empty())
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//! assert_eq!(body, "run by mch_cron");
//! # }
//! ```
//!
//! Expiry without sleeping: with Tokio's paused time (`#[tokio::test(start_paused = true)]`,
//! which needs Tokio's `test-util` feature in your dev-dependencies), make the issuer with
//! [`TestIssuer::with_clock`] and a [`TokioClock`](crate::clock::TokioClock). Its tokens are then
//! minted on Tokio's clock, its verifier and its loopback server read the same clock, and
//! `tokio::time::advance` expires tokens at once:
//!
//! ```
//! use std::time::Duration;
//! use tower_machine_auth::AuthError;
//! use tower_machine_auth::clock::TokioClock;
//! use tower_machine_auth::test_util::TestIssuer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let issuer = TestIssuer::with_clock(TokioClock::new());
//! let verifier = issuer.verifier();
//! let token = issuer.jwt("mch_cron").expires_in(Duration::from_secs(60)).sign();
//! assert!(verifier.verify(&token).await.is_ok());
//! tokio::time::advance(Duration::from_secs(120)).await;
//! assert_eq!(verifier.verify(&token).await, Err(AuthError::Expired));
//! # }
//! ```

mod server;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::{Clock, SystemClock, to_unix_millis};
use crate::{MachineVerifier, MachineVerifierBuilder};
use machine_auth_core::clerk::M2M_TOKEN_CATEGORY;
use server::{OpaqueRecord, Server, TokenStore};

/// How long a token is valid when neither `expires_in` nor `expires_at` is set: an hour, the
/// default lifetime of a Clerk machine's tokens.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// How far before `iat` a JWT's `nbf` lies by default, as Clerk writes it (its clock skew).
const NOT_BEFORE_MARGIN: Duration = Duration::from_secs(5);

/// An issuer of machine tokens for tests, and the verifier that trusts it.
///
/// - [`jwt`](Self::jwt) mints an M2M JWT as Clerk does: header
///   `{"typ":"JWT","alg":"RS256","kid":"ins_…","cat":"cl_B7d4PD333AAA"}`, claims `iss`, `sub`
///   (the machine id), `jti` (`mt_…`), `iat`, `nbf` (`iat` − 5 s), `exp` (`iat` + 1 h), `scopes`
///   (space-separated) and any others you add.
/// - [`opaque`](Self::opaque) creates an opaque `mt_…` token, known to a small HTTP server on
///   `127.0.0.1` (started the first time it is needed) that answers
///   `POST /v1/m2m_tokens/verify` (and `/m2m_tokens/verify`) as Clerk's Backend API does: 200
///   and the `machine_to_machine_token` resource for a valid token; 404 for a token it does not
///   know, a [revoked](Self::revoke) one and an expired one; 401 for a call without this issuer's
///   [machine secret key](Self::machine_secret_key).
/// - [`verifier`](Self::verifier) accepts exactly this issuer's tokens: its JWTs through its
///   public key (PEM, no network), and, when made inside a Tokio runtime, its opaque tokens
///   through the loopback server. Tokens of another `TestIssuer` are refused.
///
/// Each issuer has a key of its own, generated when it is made (RSA-2048, about a tenth of a
/// second); the private key never leaves memory.
///
/// The loopback server runs on the Tokio runtime that starts it and ends when the issuer is
/// dropped (or when that runtime shuts down). `#[tokio::test]` gives every test a runtime of its
/// own: an issuer that mints opaque tokens belongs in one test. An issuer of JWTs only can be
/// shared by many tests (in a `static` `LazyLock`, say), since nothing of it runs.
///
/// ```
/// use tower_machine_auth::test_util::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::new();
/// let verifier = issuer.verifier();
///
/// let jwt = issuer.jwt("mch_cron").scopes(["mch_reports"]).sign();
/// let machine = verifier.verify(&jwt).await.unwrap();
/// assert_eq!(machine.machine_id().as_str(), "mch_cron");
/// assert_eq!(machine.scopes(), ["mch_reports"]);
///
/// let opaque = issuer.opaque("mch_cron").scopes(["mch_reports"]).create();
/// assert!(verifier.verify(&opaque).await.is_ok());
/// issuer.revoke(&opaque);
/// assert!(verifier.verify(&opaque).await.is_err());
///
/// let stranger = TestIssuer::new().jwt("mch_cron").sign();
/// assert!(verifier.verify(&stranger).await.is_err());
/// # }
/// ```
pub struct TestIssuer {
    signing_key: aws_lc_rs::rsa::KeyPair,
    public_key_pem: String,
    /// The `kid` of its JWTs: an instance id (`ins_…`), as Clerk's are.
    kid: String,
    clock: Arc<dyn Clock>,
    /// Its opaque tokens, shared with the loopback server.
    store: Arc<TokenStore>,
    /// The loopback server, once started.
    server: Mutex<Option<Server>>,
}

impl fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api_url = self.lock_server().as_ref().map(Server::url);
        f.debug_struct("TestIssuer")
            .field("kid", &self.kid)
            .field("api_url", &api_url)
            .finish_non_exhaustive()
    }
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIssuer {
    /// The `iss` of its JWTs, unless [`JwtBuilder::issuer`] sets another.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let verifier = issuer.verifier_builder().issuer(TestIssuer::ISSUER).build().unwrap();
    /// let machine = verifier.verify(&issuer.jwt("mch_cron").sign()).await.unwrap();
    /// assert_eq!(machine.issuer(), Some(TestIssuer::ISSUER));
    /// # }
    /// ```
    pub const ISSUER: &'static str = "https://clerk.test-issuer.invalid";

    /// An issuer with a fresh signing key, on the system clock. Same as `TestIssuer::default()`.
    ///
    /// # Panics
    ///
    /// If the key cannot be generated (aws-lc-rs failing).
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// let (one, two) = (TestIssuer::new(), TestIssuer::new());
    /// assert_ne!(one.public_key_pem(), two.public_key_pem());
    /// ```
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }

    /// An issuer with a fresh signing key that reads the time from `clock`: for the times it
    /// writes into tokens, for its loopback server (which answers 404 for an expired opaque
    /// token), and for the verifiers it makes. With a
    /// [`TokioClock`](crate::clock::TokioClock) and Tokio's paused time, `tokio::time::advance`
    /// moves everything forward together (see the [module](self) documentation).
    ///
    /// # Panics
    ///
    /// If the key cannot be generated (aws-lc-rs failing).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_machine_auth::clock::Clock;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// #[derive(Debug)]
    /// struct Fixed(SystemTime);
    ///
    /// impl Clock for Fixed {
    ///     fn now(&self) -> SystemTime {
    ///         self.0
    ///     }
    /// }
    ///
    /// let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    /// let issuer = TestIssuer::with_clock(Fixed(new_year));
    /// assert_eq!(issuer.now(), new_year);
    /// ```
    pub fn with_clock(clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let signing_key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("TestIssuer: generating an RSA-2048 key");
        let public_key_pem = public_key_pem(&signing_key);
        Self {
            signing_key,
            public_key_pem,
            kid: format!("ins_test_{}", random_hex(12)),
            store: Arc::new(TokenStore::new(
                format!("ak_test_{}", random_hex(24)),
                Arc::clone(&clock),
            )),
            clock,
            server: Mutex::new(None),
        }
    }

    /// The time on the issuer's clock: when a token minted now is issued.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// let issuer = TestIssuer::new();
    /// let an_hour_ago = issuer.now() - Duration::from_secs(3600);
    /// let token = issuer.jwt("mch_cron").issued_at(an_hour_ago).sign();
    /// # let _ = token;
    /// ```
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// A verifier that accepts this issuer's tokens, as [`verifier_builder`](Self::verifier_builder)
    /// configures it.
    ///
    /// Made inside a Tokio runtime, it verifies opaque tokens too (this starts the loopback server
    /// if it is not running yet); made outside one, it verifies JWTs only, and opaque tokens get
    /// 401 `token-type-mismatch`.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let verifier = issuer.verifier();
    /// let machine = verifier.verify(&issuer.jwt("mch_cron").sign()).await.unwrap();
    /// assert_eq!(machine.machine_id().as_str(), "mch_cron");
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If the loopback server cannot listen on `127.0.0.1`.
    pub fn verifier(&self) -> MachineVerifier {
        self.verifier_builder()
            .build()
            .expect("TestIssuer: the verifier's configuration")
    }

    /// The builder of [`verifier`](Self::verifier), to add settings of your own (an own machine
    /// id, required claims, another clock skew, …) before `build()`. It holds:
    ///
    /// - [`pem_key`](MachineVerifierBuilder::pem_key): this issuer's public key (JWTs, RS256);
    /// - [`clock`](MachineVerifierBuilder::clock): this issuer's clock;
    /// - inside a Tokio runtime,
    ///   [`clerk_api_url`](MachineVerifierBuilder::clerk_api_url) (the loopback server, started
    ///   if need be) and
    ///   [`clerk_machine_secret_key`](MachineVerifierBuilder::clerk_machine_secret_key) (this
    ///   issuer's key): opaque `mt_…` tokens.
    ///
    /// ```
    /// use tower_machine_auth::AuthError;
    /// use tower_machine_auth::error::ClaimMismatch;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let reports_api = issuer.verifier_builder().own_machine_id("mch_reports").build().unwrap();
    /// let to_reports = issuer.jwt("mch_cron").scopes(["mch_reports"]).sign();
    /// let to_billing = issuer.jwt("mch_cron").scopes(["mch_billing"]).sign();
    /// assert!(reports_api.verify(&to_reports).await.is_ok());
    /// assert!(reports_api.verify(&to_billing).await.is_err());
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If the loopback server cannot listen on `127.0.0.1`.
    pub fn verifier_builder(&self) -> MachineVerifierBuilder {
        let builder = MachineVerifier::builder()
            .pem_key(self.public_key_pem.clone())
            .clock(SharedClock(Arc::clone(&self.clock)));
        match self.try_api_url() {
            Some(api_url) => builder
                .clerk_api_url(api_url)
                .clerk_machine_secret_key(self.machine_secret_key()),
            None => builder,
        }
    }

    /// The public key that verifies this issuer's JWTs, as an SPKI PEM: what Clerk's dashboard
    /// shows as the JWT public key, and what an application configured by `CLERK_JWT_KEY` reads.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let pem = issuer.public_key_pem().to_owned();
    /// assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    /// let lookup = |name: &str| (name == "CLERK_JWT_KEY").then(|| pem.clone());
    /// let verifier = MachineVerifier::builder().env_from(lookup).build().unwrap();
    /// assert!(verifier.verify(&issuer.jwt("mch_cron").sign()).await.is_ok());
    /// # }
    /// ```
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The machine secret key (`ak_test_…`) the loopback server requires, as
    /// `Authorization: Bearer <key>`: what an application configured by
    /// `CLERK_MACHINE_SECRET_KEY` reads. It sees every opaque token of this issuer.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// let issuer = TestIssuer::new();
    /// assert!(issuer.machine_secret_key().starts_with("ak_"));
    /// ```
    pub fn machine_secret_key(&self) -> &str {
        self.store.machine_secret_key()
    }

    /// The base URL of the loopback server (`http://127.0.0.1:<port>`), started if it is not
    /// running yet: what an application configured by `CLERK_API_URL` reads. It answers
    /// `POST /v1/m2m_tokens/verify` and `POST /m2m_tokens/verify`.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or if the server cannot listen on `127.0.0.1`.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let (api_url, key) = (issuer.api_url(), issuer.machine_secret_key().to_owned());
    /// let lookup = |name: &str| match name {
    ///     "CLERK_API_URL" => Some(api_url.clone()),
    ///     "CLERK_MACHINE_SECRET_KEY" => Some(key.clone()),
    ///     _ => None,
    /// };
    /// let verifier = MachineVerifier::builder().env_from(lookup).build().unwrap();
    /// let token = issuer.opaque("mch_cron").create();
    /// assert!(verifier.verify(&token).await.is_ok());
    /// # }
    /// ```
    pub fn api_url(&self) -> String {
        self.try_api_url().expect(
            "TestIssuer::api_url starts the loopback server: call it inside a Tokio runtime",
        )
    }

    /// Starts minting a JWT for the machine `machine_id` (its `sub`; normally `mch_…`, though
    /// anything goes, to test what the verifier refuses). See [`JwtBuilder`] for the claims and
    /// how to change them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serde_json::json;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// let issuer = TestIssuer::new();
    /// let token: String = issuer
    ///     .jwt("mch_cron")
    ///     .scopes(["mch_reports"])
    ///     .expires_in(Duration::from_secs(60))
    ///     .claims(json!({"team": "ops"}))
    ///     .sign();
    /// assert_eq!(token.split('.').count(), 3);
    /// ```
    pub fn jwt(&self, machine_id: impl Into<String>) -> JwtBuilder<'_> {
        JwtBuilder {
            issuer: self,
            subject: machine_id.into(),
            scopes: None,
            issued_at: None,
            not_before: None,
            expiry: Expiry::default(),
            token_id: None,
            iss: Self::ISSUER.to_owned(),
            claims: Map::new(),
        }
    }

    /// Starts creating an opaque token (`mt_…`) for the machine `machine_id` (its `subject`),
    /// known to this issuer's loopback server. See [`OpaqueTokenBuilder`].
    ///
    /// Creating the token needs no runtime; verifying it needs a verifier made by
    /// [`verifier`](Self::verifier) inside a Tokio runtime (or one configured with
    /// [`api_url`](Self::api_url) and [`machine_secret_key`](Self::machine_secret_key)).
    ///
    /// ```
    /// use tower_machine_auth::TokenFormat;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let token = issuer.opaque("mch_cron").scopes(["mch_reports"]).create();
    /// assert!(token.starts_with("mt_"));
    /// let machine = issuer.verifier().verify(&token).await.unwrap();
    /// assert_eq!(machine.token_format(), TokenFormat::Opaque);
    /// assert_eq!(machine.scopes(), ["mch_reports"]);
    /// # }
    /// ```
    pub fn opaque(&self, machine_id: impl Into<String>) -> OpaqueTokenBuilder<'_> {
        OpaqueTokenBuilder {
            issuer: self,
            subject: machine_id.into(),
            scopes: Vec::new(),
            claims: None,
            expiry: Expiry::default(),
            token_id: None,
        }
    }

    /// Revokes an opaque token of this issuer (the token itself, not its id): from now on the
    /// loopback server answers 404 for it, as Clerk does, and verifiers refuse it with 401
    /// `token-invalid`. Returns whether this issuer created the token (revoking twice is
    /// harmless). JWTs cannot be revoked, as with Clerk: they are valid until they expire.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    /// use tower_machine_auth::{AuthError, error::InvalidToken};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let verifier = issuer.verifier();
    /// let token = issuer.opaque("mch_cron").create();
    /// assert!(verifier.verify(&token).await.is_ok());
    /// assert!(issuer.revoke(&token));
    /// assert_eq!(
    ///     verifier.verify(&token).await,
    ///     Err(AuthError::InvalidToken(InvalidToken::NotActiveAtIssuer))
    /// );
    /// assert!(!issuer.revoke("mt_never_issued"));
    /// # }
    /// ```
    pub fn revoke(&self, token: &str) -> bool {
        self.store.revoke(token)
    }

    /// The loopback server's URL, starting the server on the current Tokio runtime if it is not
    /// running; `None` outside a runtime.
    fn try_api_url(&self) -> Option<String> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut server = self.lock_server();
        if server.is_none() {
            let started = Server::start(Arc::clone(&self.store), &runtime)
                .expect("TestIssuer: the loopback server cannot listen on 127.0.0.1");
            *server = Some(started);
        }
        server.as_ref().map(Server::url)
    }

    fn lock_server(&self) -> MutexGuard<'_, Option<Server>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// When a token expires.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// This long after it is issued.
    In(Duration),
    /// At this time.
    At(SystemTime),
}

impl Default for Expiry {
    fn default() -> Self {
        Self::In(DEFAULT_LIFETIME)
    }
}

impl Expiry {
    fn time(self, issued_at: SystemTime) -> SystemTime {
        match self {
            Self::In(lifetime) => issued_at + lifetime,
            Self::At(time) => time,
        }
    }
}

/// A JWT being minted by [`TestIssuer::jwt`]; [`sign`](Self::sign) makes it.
///
/// Its claims, unless changed:
///
/// | claim | value | set by |
/// |---|---|---|
/// | `iss` | [`TestIssuer::ISSUER`] | [`issuer`](Self::issuer) |
/// | `sub` | the machine id given to [`TestIssuer::jwt`] | |
/// | `jti` | `mt_` and 32 random hex digits | [`token_id`](Self::token_id) |
/// | `iat` | now, on the issuer's clock | [`issued_at`](Self::issued_at) |
/// | `nbf` | `iat` − 5 s | [`not_before`](Self::not_before) |
/// | `exp` | `iat` + 1 h | [`expires_in`](Self::expires_in), [`expires_at`](Self::expires_at) |
/// | `scopes` | absent | [`scopes`](Self::scopes) |
///
/// Times are whole seconds (NumericDate), rounded down. [`claims`](Self::claims) adds others,
/// and can replace any of these, to make tokens a verifier must refuse.
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::AuthError;
/// use tower_machine_auth::test_util::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::new();
/// let verifier = issuer.verifier();
/// let minute = Duration::from_secs(60);
///
/// let expired = issuer.jwt("mch_cron").expires_at(issuer.now() - minute).sign();
/// assert_eq!(verifier.verify(&expired).await, Err(AuthError::Expired));
///
/// let early = issuer.jwt("mch_cron").not_before(issuer.now() + minute).sign();
/// assert_eq!(verifier.verify(&early).await, Err(AuthError::NotYetActive));
/// # }
/// ```
#[must_use = "a JwtBuilder does nothing until `sign()`"]
pub struct JwtBuilder<'a> {
    issuer: &'a TestIssuer,
    subject: String,
    scopes: Option<Vec<String>>,
    issued_at: Option<SystemTime>,
    not_before: Option<SystemTime>,
    expiry: Expiry,
    token_id: Option<String>,
    iss: String,
    claims: Map<String, Value>,
}

impl fmt::Debug for JwtBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBuilder")
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .field("issued_at", &self.issued_at)
            .field("not_before", &self.not_before)
            .field("expiry", &self.expiry)
            .field("token_id", &self.token_id)
            .field("iss", &self.iss)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl JwtBuilder<'_> {
    /// The machines the token may reach: the `scopes` claim, space-separated as Clerk writes it.
    /// Replaces the scopes set before. Without it the token has no `scopes` claim.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let token = issuer.jwt("mch_cron").scopes(["mch_reports", "mch_billing"]).sign();
    /// let machine = issuer.verifier().verify(&token).await.unwrap();
    /// assert_eq!(machine.scopes(), ["mch_reports", "mch_billing"]);
    /// assert_eq!(machine.claim("scopes"), Some(&"mch_reports mch_billing".into()));
    /// # }
    /// ```
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Adds the members of `claims` (a JSON object) to the payload, after the standard claims:
    /// a member named like one of them replaces it (`"sub": "user_1"`, `"exp": null`, `"aud": …`),
    /// which is how to make tokens a verifier must refuse. Members added before stay unless
    /// replaced.
    ///
    /// # Panics
    ///
    /// If `claims` is not a JSON object.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_machine_auth::test_util::TestIssuer;
    /// use tower_machine_auth::{AuthError, error::TypeMismatch};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let verifier = issuer.verifier();
    /// let token = issuer.jwt("mch_cron").claims(json!({"team": "ops"})).sign();
    /// let machine = verifier.verify(&token).await.unwrap();
    /// assert_eq!(machine.claim("team"), Some(&json!("ops")));
    ///
    /// let user = issuer.jwt("mch_cron").claims(json!({"sub": "user_1"})).sign();
    /// assert!(matches!(verifier.verify(&user).await, Err(AuthError::TokenTypeMismatch(_))));
    /// # }
    /// ```
    pub fn claims(mut self, claims: Value) -> Self {
        let Value::Object(claims) = claims else {
            panic!("JwtBuilder::claims takes a JSON object, such as json!({{\"team\": \"ops\"}})");
        };
        self.claims.extend(claims);
        self
    }

    /// The token expires this long after it is issued (`exp` = `iat` + `lifetime`; default an
    /// hour). Replaces [`expires_at`](Self::expires_at).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let token = issuer.jwt("mch_cron").expires_in(Duration::from_secs(60)).sign();
    /// let machine = issuer.verifier().verify(&token).await.unwrap();
    /// let left = machine.expires_at().unwrap().duration_since(issuer.now()).unwrap();
    /// assert!(left <= Duration::from_secs(60));
    /// # }
    /// ```
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expiry = Expiry::In(lifetime);
        self
    }

    /// The token expires at `time` (`exp`), whenever it is issued. A time more than the
    /// verifier's clock skew (5 s by default) in the past makes an expired token. Replaces
    /// [`expires_in`](Self::expires_in).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::AuthError;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let expired = issuer.jwt("mch_cron").expires_at(issuer.now() - Duration::from_secs(60)).sign();
    /// assert_eq!(issuer.verifier().verify(&expired).await, Err(AuthError::Expired));
    /// # }
    /// ```
    pub fn expires_at(mut self, time: SystemTime) -> Self {
        self.expiry = Expiry::At(time);
        self
    }

    /// When the token was issued (`iat`; default now, on the issuer's clock). The defaults of
    /// `nbf` and `exp` follow it. A time more than the verifier's clock skew in the future makes
    /// a token that is not valid yet; an hour or more in the past, with the default lifetime, an
    /// expired one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::AuthError;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let verifier = issuer.verifier();
    /// let hour = Duration::from_secs(3600);
    /// let old = issuer.jwt("mch_cron").issued_at(issuer.now() - 2 * hour).sign();
    /// assert_eq!(verifier.verify(&old).await, Err(AuthError::Expired));
    /// let future = issuer.jwt("mch_cron").issued_at(issuer.now() + hour).sign();
    /// assert_eq!(verifier.verify(&future).await, Err(AuthError::NotYetActive));
    /// # }
    /// ```
    pub fn issued_at(mut self, time: SystemTime) -> Self {
        self.issued_at = Some(time);
        self
    }

    /// The token is not valid before `time` (`nbf`; default 5 s before `iat`, as Clerk writes
    /// it). A time more than the verifier's clock skew in the future makes a token that is not
    /// valid yet (401 `token-not-active`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::AuthError;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let later = issuer.jwt("mch_cron").not_before(issuer.now() + Duration::from_secs(60)).sign();
    /// assert_eq!(issuer.verifier().verify(&later).await, Err(AuthError::NotYetActive));
    /// # }
    /// ```
    pub fn not_before(mut self, time: SystemTime) -> Self {
        self.not_before = Some(time);
        self
    }

    /// The token's id (`jti`; default `mt_` and 32 random hex digits, as Clerk's), which handlers
    /// read as [`AuthenticatedMachine::token_id`](crate::AuthenticatedMachine::token_id).
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let token = issuer.jwt("mch_cron").token_id("mt_first").sign();
    /// assert_eq!(issuer.verifier().verify(&token).await.unwrap().token_id(), "mt_first");
    /// # }
    /// ```
    pub fn token_id(mut self, id: impl Into<String>) -> Self {
        self.token_id = Some(id.into());
        self
    }

    /// Who issued the token (`iss`; default [`TestIssuer::ISSUER`]): for a verifier that
    /// requires an issuer of its own ([`MachineVerifierBuilder::issuer`]).
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let verifier = issuer.verifier_builder().issuer("https://clerk.example.com").build().unwrap();
    /// let token = issuer.jwt("mch_cron").issuer("https://clerk.example.com").sign();
    /// assert!(verifier.verify(&token).await.is_ok());
    /// assert!(verifier.verify(&issuer.jwt("mch_cron").sign()).await.is_err());
    /// # }
    /// ```
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.iss = iss.into();
        self
    }

    /// Signs the token (RS256, with the issuer's key) and returns it, ready for
    /// `Authorization: Bearer <token>`.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// let issuer = TestIssuer::new();
    /// let token = issuer.jwt("mch_cron").sign();
    /// assert!(token.starts_with("eyJ"));
    /// ```
    pub fn sign(self) -> String {
        let issued_at = self.issued_at.unwrap_or_else(|| self.issuer.now());
        let not_before = self
            .not_before
            .unwrap_or_else(|| issued_at - NOT_BEFORE_MARGIN);
        let expires_at = self.expiry.time(issued_at);
        let mut claims = Map::new();
        claims.insert("iss".into(), self.iss.into());
        claims.insert("sub".into(), self.subject.into());
        let token_id = self
            .token_id
            .unwrap_or_else(|| format!("mt_{}", random_hex(16)));
        claims.insert("jti".into(), token_id.into());
        claims.insert("iat".into(), unix_seconds(issued_at).into());
        claims.insert("nbf".into(), unix_seconds(not_before).into());
        claims.insert("exp".into(), unix_seconds(expires_at).into());
        if let Some(scopes) = self.scopes {
            claims.insert("scopes".into(), scopes.join(" ").into());
        }
        claims.extend(self.claims);

        let header = JwtHeader {
            typ: "JWT",
            alg: "RS256",
            kid: &self.issuer.kid,
            cat: M2M_TOKEN_CATEGORY,
        };
        let header = serde_json::to_vec(&header).expect("TestIssuer: a JWT header as JSON");
        let claims = serde_json::to_vec(&claims).expect("TestIssuer: JWT claims as JSON");
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = sign_rs256(&self.issuer.signing_key, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }
}

/// An opaque token being created by [`TestIssuer::opaque`]; [`create`](Self::create) makes it.
///
/// The loopback server describes it as Clerk's `machine_to_machine_token` resource: `id`
/// (`mt_` and 32 random hex digits unless [`token_id`](Self::token_id) sets it), `subject` (the
/// machine id), `scopes` (none unless [`scopes`](Self::scopes) sets them), `claims` (`null`
/// unless [`claims`](Self::claims) sets them), `expiration` (an hour after creation unless
/// [`expires_in`](Self::expires_in) or [`expires_at`](Self::expires_at) changes it),
/// `created_at` (now, on the issuer's clock), `revoked: false`, `expired: false`.
///
/// ```
/// use serde_json::json;
/// use tower_machine_auth::test_util::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::new();
/// let token = issuer
///     .opaque("mch_cron")
///     .scopes(["mch_reports"])
///     .claims(json!({"team": "ops"}))
///     .token_id("mt_nightly")
///     .create();
/// let machine = issuer.verifier().verify(&token).await.unwrap();
/// assert_eq!(machine.machine_id().as_str(), "mch_cron");
/// assert_eq!(machine.token_id(), "mt_nightly");
/// assert_eq!(machine.claim("team"), Some(&json!("ops")));
/// # }
/// ```
#[must_use = "an OpaqueTokenBuilder does nothing until `create()`"]
pub struct OpaqueTokenBuilder<'a> {
    issuer: &'a TestIssuer,
    subject: String,
    scopes: Vec<String>,
    claims: Option<Map<String, Value>>,
    expiry: Expiry,
    token_id: Option<String>,
}

impl fmt::Debug for OpaqueTokenBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpaqueTokenBuilder")
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .field("claims", &self.claims)
            .field("expiry", &self.expiry)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

impl OpaqueTokenBuilder<'_> {
    /// The machines the token may reach (the resource's `scopes`). Replaces the scopes set
    /// before.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let token = issuer.opaque("mch_cron").scopes(["mch_reports", "mch_billing"]).create();
    /// let machine = issuer.verifier().verify(&token).await.unwrap();
    /// assert!(machine.has_scope("mch_billing"));
    /// # }
    /// ```
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Adds the members of `claims` (a JSON object) to the resource's `claims`, which handlers
    /// read as [`AuthenticatedMachine::claims`](crate::AuthenticatedMachine::claims).
    ///
    /// # Panics
    ///
    /// If `claims` is not a JSON object.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let token = issuer.opaque("mch_cron").claims(json!({"region": "eu"})).create();
    /// let machine = issuer.verifier().verify(&token).await.unwrap();
    /// assert_eq!(machine.claim("region"), Some(&json!("eu")));
    /// # }
    /// ```
    pub fn claims(mut self, claims: Value) -> Self {
        let Value::Object(claims) = claims else {
            panic!(
                "OpaqueTokenBuilder::claims takes a JSON object, such as json!({{\"team\": \"ops\"}})"
            );
        };
        self.claims.get_or_insert_with(Map::new).extend(claims);
        self
    }

    /// The token expires this long after it is created (default an hour). Replaces
    /// [`expires_at`](Self::expires_at).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let token = issuer.opaque("mch_cron").expires_in(Duration::from_secs(60)).create();
    /// let machine = issuer.verifier().verify(&token).await.unwrap();
    /// assert!(machine.expires_at().unwrap() <= issuer.now() + Duration::from_secs(60));
    /// # }
    /// ```
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expiry = Expiry::In(lifetime);
        self
    }

    /// The token expires at `time`. A time in the past makes a token the loopback server
    /// answers 404 for, as Clerk does for an expired token (401 `token-invalid`). Replaces
    /// [`expires_in`](Self::expires_in).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let expired = issuer.opaque("mch_cron").expires_at(issuer.now() - Duration::from_secs(1)).create();
    /// assert!(issuer.verifier().verify(&expired).await.is_err());
    /// # }
    /// ```
    pub fn expires_at(mut self, time: SystemTime) -> Self {
        self.expiry = Expiry::At(time);
        self
    }

    /// The token's id (the resource's `id`; default `mt_` and 32 random hex digits), which
    /// handlers read as [`AuthenticatedMachine::token_id`](crate::AuthenticatedMachine::token_id).
    /// It is not the token: the token is the secret [`create`](Self::create) returns.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::new();
    /// let token = issuer.opaque("mch_cron").token_id("mt_nightly").create();
    /// assert_ne!(token, "mt_nightly");
    /// assert_eq!(issuer.verifier().verify(&token).await.unwrap().token_id(), "mt_nightly");
    /// # }
    /// ```
    pub fn token_id(mut self, id: impl Into<String>) -> Self {
        self.token_id = Some(id.into());
        self
    }

    /// Creates the token and returns it (`mt_` and 64 random hex digits), ready for
    /// `Authorization: Bearer <token>`. No runtime is needed here; see [`TestIssuer::opaque`]
    /// for the verifier.
    ///
    /// ```
    /// use tower_machine_auth::test_util::TestIssuer;
    ///
    /// let issuer = TestIssuer::new();
    /// let token = issuer.opaque("mch_cron").create();
    /// assert_eq!(token.len(), 3 + 64);
    /// assert_ne!(token, issuer.opaque("mch_cron").create());
    /// ```
    pub fn create(self) -> String {
        let token = format!("mt_{}", random_hex(32));
        let created_at = self.issuer.now();
        let record = OpaqueRecord {
            id: self
                .token_id
                .unwrap_or_else(|| format!("mt_{}", random_hex(16))),
            subject: self.subject,
            scopes: self.scopes,
            claims: self.claims,
            expiration_ms: to_unix_millis(self.expiry.time(created_at)),
            created_at_ms: to_unix_millis(created_at),
            revoked: false,
            last_used_at_ms: None,
        };
        self.issuer.store.insert(token.clone(), record);
        token
    }
}

/// The issuer's clock, shared with the verifiers it makes.
#[derive(Debug, Clone)]
struct SharedClock(Arc<dyn Clock>);

impl Clock for SharedClock {
    fn now(&self) -> SystemTime {
        self.0.now()
    }
}

/// `time` as a NumericDate: whole seconds since the Unix epoch, rounded down.
fn unix_seconds(time: SystemTime) -> i64 {
    to_unix_millis(time).div_euclid(1000)
}

/// `bytes` random bytes as lowercase hex.
fn random_hex(bytes: usize) -> String {
    let mut random = vec![0; bytes];
    aws_lc_rs::rand::fill(&mut random).expect("TestIssuer: random bytes");
    random.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The header of the issuer's JWTs, serialized with its members in this order:
/// `{"typ":"JWT","alg":"RS256","kid":"ins_…","cat":"cl_B7d4PD333AAA"}`.
#[derive(Serialize)]
struct JwtHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
    cat: &'static str,
}

/// The RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256) of `message`.
fn sign_rs256(key: &aws_lc_rs::rsa::KeyPair, message: &[u8]) -> Vec<u8> {
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        message,
        &mut signature,
    )
    .expect("TestIssuer: signing a JWT");
    signature
}

/// The public key as an SPKI PEM.
fn public_key_pem(key: &aws_lc_rs::rsa::KeyPair) -> String {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;

    let spki = key
        .public_key()
        .as_der()
        .expect("TestIssuer: encoding the public key");
    pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_is_signed_rs256_by_the_issuers_key() {
        let issuer = TestIssuer::new();
        let token = issuer.jwt("mch_cron").sign();
        let mut parts = token.split('.');
        let (header, claims, signature) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert_eq!(parts.next(), None);
        let header = URL_SAFE_NO_PAD.decode(header).unwrap();
        let expected = format!(
            r#"{{"typ":"JWT","alg":"RS256","kid":"{}","cat":"{}"}}"#,
            issuer.kid, M2M_TOKEN_CATEGORY
        );
        assert_eq!(String::from_utf8(header).unwrap(), expected);
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["sub"], "mch_cron");

        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert_eq!(signature.len(), 256);
        let message = &token[..token.rfind('.').unwrap()];
        let public_key = aws_lc_rs::signature::KeyPair::public_key(&issuer.signing_key);
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            public_key.as_ref(),
        )
        .verify(message.as_bytes(), &signature)
        .expect("the signature verifies with the issuer's public key");
    }

    #[test]
    fn numeric_dates_round_down() {
        let at = |ms: i64| crate::clock::from_unix_millis(ms);
        assert_eq!(unix_seconds(at(1_999)), 1);
        assert_eq!(unix_seconds(at(-1)), -1);
        assert_eq!(unix_seconds(at(0)), 0);
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let issuer = TestIssuer::new();
        let shown = format!("{issuer:?}");
        assert!(shown.contains(&issuer.kid), "{shown}");
        assert!(!shown.contains(issuer.machine_secret_key()), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
