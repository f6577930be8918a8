//! [`MachineVerifier`]: verifies machine tokens, with or without Tower.
//!
//! ```
//! use tower_machine_auth::{AuthError, MachineVerifier, Reason};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pem = include_str!("../../tests/data/rsa_public.pem");
//! let verifier = MachineVerifier::from_pem(pem)?;
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", "Bearer not-a-jwt".parse()?);
//! let error = verifier.authenticate(&headers).await.unwrap_err();
//! assert_eq!(error.reason(), Reason::TokenTypeMismatch);
//! # Ok(())
//! # }
//! ```

mod builder;
mod health;
mod not_found_watch;
mod opaque;
mod probe;
mod ready;

pub use builder::{DEFAULT_CLERK_API_URL, MAX_CLOCK_SKEW, MachineVerifierBuilder};
pub use health::{KeySourceKind, Readiness, VerifierHealth};
pub use ready::NotReady;

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;

use crate::bearer_token::BearerToken;
use crate::cache::{Generation, TokenCache};
use crate::clock::{Clock, unix_millis};
use crate::credential::{self, MAX_TOKEN_LEN, TokenKind};
use crate::error::{AuthError, ConfigError, InvalidToken, TypeMismatch};
use crate::jwt::{JwtRules, UnverifiedJwt};
use crate::keys::{KeyLookup, KeySource, VerifyingKey};
use crate::machine::{AcceptedTokens, AuthenticatedMachine, MachineId, TokenFormat};
use crate::metrics::{self, TokenType};
use crate::stats::{Counters, VerifierStats};
use opaque::{IntrospectionRoute, OpaqueVerification};

/// Verifies machine tokens: the core of [`MachineAuthLayer`](crate::MachineAuthLayer), usable on
/// its own.
///
/// Cloning is cheap and clones share keys, caches and counters. Build one per key source with
/// [`builder`](Self::builder), [`from_env`](Self::from_env), [`from_pem`](Self::from_pem),
/// [`from_jwks_url`](Self::from_jwks_url) or
/// [`from_clerk_secret_key`](Self::from_clerk_secret_key).
///
/// JWTs are verified locally: with a PEM key the network is never touched; with a JWKS the keys
/// are fetched and refreshed in the background, and only a token with an unknown `kid` can wait
/// for a fetch (at most one per cooldown). Opaque tokens are verified by their issuer (Clerk's
/// `/m2m_tokens/verify` or an RFC 7662 endpoint), one call per token at a time.
#[derive(Clone)]
pub struct MachineVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// How JWTs are verified; `None` when only opaque tokens are.
    keys: Option<KeySource>,
    rules: JwtRules,
    /// The receiver check: when set, a token must name this id among its scopes.
    own_machine_id: Option<MachineId>,
    opaque: OpaqueVerification,
    cache: Arc<TokenCache>,
    jwt_cache_ttl_ms: i64,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
}

impl fmt::Debug for MachineVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineVerifier")
            .field("keys", &self.inner.keys)
            .field("rules", &self.inner.rules)
            .field("own_machine_id", &self.inner.own_machine_id)
            .finish_non_exhaustive()
    }
}

/// How a token reached the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented {
    /// In an `Authorization: Bearer` header: characters outside RFC 6750's `b64token` make the
    /// request malformed.
    InHeader,
    /// Passed to [`MachineVerifier::verify`].
    Directly,
}

impl Presented {
    /// The token as text, and its kind.
    fn read(self, token: &[u8]) -> Result<(&str, Classified), AuthError> {
        // The usual case in one pass: JWT characters are all `b64token` characters.
        if let Some(jwt) = credential::jwt_shaped(token) {
            return Ok((jwt, Ok(TokenKind::Jwt)));
        }
        let text = match self {
            Self::InHeader => credential::b64token(token)?,
            Self::Directly => std::str::from_utf8(token)
                .map_err(|_| AuthError::TokenTypeMismatch(TypeMismatch::UnknownFormat))?,
        };
        Ok((text, credential::classify(text)))
    }
}

/// A token's kind, or why it is none the verifier knows.
type Classified = Result<TokenKind, TypeMismatch>;

/// The outcome of verifying without waiting.
pub(crate) enum Attempt {
    Done(Result<AuthenticatedMachine, AuthError>),
    /// The token needs the network: a JWKS fetch may find its key, or it must be introspected.
    Pending,
}

impl MachineVerifier {
    /// A builder with the defaults: RS256 only, 5 s clock skew, a 10 000-token cache.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// let verifier = MachineVerifier::builder().pem_key(pem).build()?;
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn builder() -> MachineVerifierBuilder {
        MachineVerifierBuilder::new()
    }

    /// A verifier configured from Clerk's environment variables; see
    /// [`MachineVerifierBuilder::env`].
    ///
    /// ```no_run
    /// // CLERK_JWT_KEY="-----BEGIN PUBLIC KEY-----…", or CLERK_SECRET_KEY=sk_live_…
    /// let verifier = tower_machine_auth::MachineVerifier::from_env()?;
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder().env().build()
    }

    /// A networkless verifier for one PEM public key (Clerk's `CLERK_JWT_KEY`), with or without
    /// the `-----BEGIN PUBLIC KEY-----` lines.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// assert!(MachineVerifier::from_pem(pem).is_ok());
    /// assert!(MachineVerifier::from_pem("not a key").is_err());
    /// ```
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        Self::builder().pem_key(pem).build()
    }

    /// A verifier for any JWKS URL, such as a Clerk Frontend API's `/.well-known/jwks.json`.
    /// Must be called inside a Tokio runtime. It does not wait for the first fetch.
    ///
    /// ```
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let verifier = MachineVerifier::from_jwks_url("https://clerk.example.com/.well-known/jwks.json");
    /// assert!(verifier.is_ok());
    /// let refused = MachineVerifier::from_jwks_url("http://clerk.example.com/.well-known/jwks.json");
    /// assert!(refused.unwrap_err().to_string().contains("https"));
    /// # }
    /// ```
    pub fn from_jwks_url(url: &str) -> Result<Self, ConfigError> {
        Self::builder().jwks_url(url).build()
    }

    /// A verifier that reads the JWKS from Clerk's Backend API (`GET https://api.clerk.com/v1/jwks`)
    /// with the instance secret key (`CLERK_SECRET_KEY`). Must be called inside a Tokio runtime.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_machine_auth::ConfigError> {
    /// let verifier = tower_machine_auth::MachineVerifier::from_clerk_secret_key("sk_live_…")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_clerk_secret_key(secret_key: &str) -> Result<Self, ConfigError> {
        Self::builder().clerk_secret_key(secret_key).build()
    }

    /// Verifies the bearer token of a request's headers, with the layer's rules: a missing or
    /// non-Bearer `Authorization` is [`AuthError::MissingCredential`], a repeated or ill-formed one
    /// [`AuthError::MalformedRequest`].
    ///
    /// ```
    /// use tower_machine_auth::{AuthError, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let headers = http::HeaderMap::new();
    /// assert_eq!(verifier.authenticate(&headers).await, Err(AuthError::MissingCredential));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<AuthenticatedMachine, AuthError> {
        let bearer = credential::bearer_credential(headers)?;
        let token = bearer.token;
        let machine = match self.try_verify_now(token, Presented::InHeader, AcceptedTokens::Any) {
            Attempt::Done(result) => result,
            Attempt::Pending => self.verify_pending(token, AcceptedTokens::Any).await,
        }?;
        Ok(machine.with_token(bearer.to_bearer_token()))
    }

    /// Verifies one token (without the `Bearer ` prefix).
    ///
    /// ```
    /// use tower_machine_auth::{MachineVerifier, Reason};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let error = verifier.verify("ak_machine_secret_key").await.unwrap_err();
    /// assert_eq!(error.reason(), Reason::TokenTypeMismatch);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn verify(&self, token: &str) -> Result<AuthenticatedMachine, AuthError> {
        let bytes = token.as_bytes();
        let machine = match self.try_verify_now(bytes, Presented::Directly, AcceptedTokens::Any) {
            Attempt::Done(result) => result,
            Attempt::Pending => self.verify_pending(bytes, AcceptedTokens::Any).await,
        }?;
        Ok(machine.with_token(BearerToken::from_text(token)))
    }

    /// This machine's own id, when the receiver check is on (see
    /// [`MachineVerifierBuilder::own_machine_id`]).
    ///
    /// ```
    /// let pem = include_str!("../../tests/data/rsa_public.pem");
    /// use tower_machine_auth::MachineVerifier;
    ///
    /// let verifier = MachineVerifier::builder().pem_key(pem).own_machine_id("mch_reports").build()?;
    /// assert_eq!(verifier.own_machine_id().map(|id| id.as_str()), Some("mch_reports"));
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn own_machine_id(&self) -> Option<&MachineId> {
        self.inner.own_machine_id.as_ref()
    }

    /// Counters of signature checks, cache hits and JWKS fetches so far.
    ///
    /// ```
    /// let verifier = tower_machine_auth::MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// assert_eq!(verifier.stats().signature_checks, 0);
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn stats(&self) -> VerifierStats {
        self.inner.counters.snapshot()
    }

    /// Verifies without waiting, unless the token's key must be fetched first.
    pub(crate) fn try_verify_now(
        &self,
        token: &[u8],
        presented: Presented,
        accepted: AcceptedTokens,
    ) -> Attempt {
        let inner = &*self.inner;
        if token.len() > MAX_TOKEN_LEN {
            return Attempt::Done(Err(AuthError::InvalidToken(InvalidToken::TooLong)));
        }
        let started = metrics::start();
        // A hit is a token verified before: its characters and kind need no checking either.
        let now_ms = unix_millis(&*inner.clock);
        if let Some(hit) = inner.cache.get(token, now_ms, inner.rules.leeway_ms) {
            inner.counters.cache_hits.add();
            if started.is_some() {
                let token_type = hit.as_ref().map_or_else(
                    |_| TokenType::of(token),
                    |machine| machine.token_format().into(),
                );
                metrics::verified(started, token_type, true);
            }
            return Attempt::Done(hit.and_then(|machine| accepted_format(machine, accepted)));
        }
        let kind = presented
            .read(token)
            .and_then(|(token, classified)| Ok((token, self.route(classified, accepted)?)));
        match kind {
            Ok((token, TokenRoute::Jwt(keys))) => {
                let attempt = self.try_verify_jwt_now(keys, token, now_ms);
                if let Attempt::Done(_) = attempt {
                    metrics::verified(started, TokenType::Jwt, false);
                }
                attempt
            }
            Ok((_, TokenRoute::Opaque(_))) => Attempt::Pending,
            Err(error) => Attempt::Done(Err(error)),
        }
    }

    /// Where a token of this kind goes: the JWT path, an introspection endpoint, or nowhere.
    fn route(
        &self,
        classified: Classified,
        accepted: AcceptedTokens,
    ) -> Result<TokenRoute<'_>, AuthError> {
        let inner = &*self.inner;
        let mismatch = AuthError::TokenTypeMismatch;
        match classified {
            // A key sent by mistake never reaches an introspection endpoint.
            Ok(TokenKind::ClerkKey(kind)) => Err(mismatch(kind)),
            Ok(TokenKind::Jwt) if accepted.allows(TokenFormat::Jwt) => inner
                .keys
                .as_ref()
                .map(TokenRoute::Jwt)
                .ok_or(mismatch(TypeMismatch::JwtNotAccepted)),
            // A JWT-shaped token never falls back to introspection.
            Ok(TokenKind::Jwt) => Err(mismatch(TypeMismatch::JwtNotAccepted)),
            Ok(TokenKind::OpaqueMachineToken) if !accepted.allows(TokenFormat::Opaque) => {
                Err(mismatch(TypeMismatch::OpaqueNotAccepted))
            }
            Err(other) if !accepted.allows(TokenFormat::Opaque) => Err(mismatch(other)),
            classified => inner
                .opaque
                .route(classified)
                .map(TokenRoute::Opaque)
                .map_err(mismatch),
        }
    }

    fn try_verify_jwt_now(&self, keys: &KeySource, token: &str, now_ms: i64) -> Attempt {
        let inner = &*self.inner;
        let rejected = |error| Attempt::Done(Err(error));
        let jwt = match UnverifiedJwt::parse(token, &inner.rules) {
            Ok(jwt) => jwt,
            Err(error) => return rejected(error),
        };
        let generation = inner.cache.generation();
        match keys.lookup(jwt.header.kid.as_deref()) {
            KeyLookup::Found(key) => Attempt::Done(self.finish(jwt, &key, now_ms, generation)),
            KeyLookup::FetchMayHelp => Attempt::Pending,
            KeyLookup::Failed(error) => rejected(error),
        }
    }

    /// The slow path of a token [`try_verify_now`](Self::try_verify_now) left pending: a JWT whose
    /// key must be fetched, or an opaque token to introspect.
    pub(crate) async fn verify_pending(
        &self,
        token: &[u8],
        accepted: AcceptedTokens,
    ) -> Result<AuthenticatedMachine, AuthError> {
        let started = metrics::start();
        // Only a token whose characters were checked gets here.
        let (text, classified) = Presented::Directly.read(token)?;
        match self.route(classified, accepted)? {
            TokenRoute::Jwt(keys) => {
                let verified = self.verify_jwt_after_key_fetch(keys, text).await;
                metrics::verified(started, TokenType::Jwt, false);
                verified
            }
            TokenRoute::Opaque(route) => {
                let verified = self.verify_opaque(route, text).await;
                metrics::verified(started, TokenType::Opaque, false);
                verified
            }
        }
    }

    async fn verify_jwt_after_key_fetch(
        &self,
        keys: &KeySource,
        token: &str,
    ) -> Result<AuthenticatedMachine, AuthError> {
        let inner = &*self.inner;
        let jwt = UnverifiedJwt::parse(token, &inner.rules)?;
        // Read before the key: a fetch that removes keys meanwhile leaves this token uncached.
        let generation = inner.cache.generation();
        let key = match (keys, jwt.header.kid.as_deref()) {
            (KeySource::Jwks(source), Some(kid)) => source.lookup_after_fetch(kid).await?,
            (KeySource::Static(key), _) => Arc::clone(key),
            (KeySource::Jwks(_), None) => {
                return Err(AuthError::InvalidToken(InvalidToken::MissingKeyId));
            }
        };
        self.finish(jwt, &key, unix_millis(&*inner.clock), generation)
    }

    /// Verifies `jwt` with `key` and caches the result under `generation`, the cache's generation
    /// read before `key` was looked up.
    fn finish(
        &self,
        jwt: UnverifiedJwt<'_>,
        key: &VerifyingKey,
        now_ms: i64,
        generation: Generation,
    ) -> Result<AuthenticatedMachine, AuthError> {
        let inner = &*self.inner;
        let jwt_token = jwt.token();
        let verified = jwt
            .verify(key, &inner.rules, now_ms, || {
                inner.counters.add(&inner.counters.signature_checks);
            })
            .and_then(|verified| self.check_receiver(&verified.machine).map(|()| verified))?;
        if inner.jwt_cache_ttl_ms > 0 {
            inner.cache.insert_jwt(
                jwt_token.as_bytes(),
                verified.machine.clone(),
                verified.expires_at_ms,
                now_ms.saturating_add(inner.jwt_cache_ttl_ms),
                generation,
            );
        }
        Ok(verified.machine)
    }
}

impl MachineVerifier {
    /// The receiver check: with an own machine id configured, `machine`'s token must name it
    /// among its scopes. Runs before a token is cached, so cache hits have passed it.
    pub(super) fn check_receiver(&self, machine: &AuthenticatedMachine) -> Result<(), AuthError> {
        match &self.inner.own_machine_id {
            Some(own) if !machine.has_scope(own.as_str()) => Err(AuthError::NotForThisMachine),
            _ => Ok(()),
        }
    }
}

/// Where a token goes.
enum TokenRoute<'a> {
    Jwt(&'a KeySource),
    Opaque(&'a IntrospectionRoute),
}

/// A cached identity, if the layer accepts its format.
fn accepted_format(
    machine: AuthenticatedMachine,
    accepted: AcceptedTokens,
) -> Result<AuthenticatedMachine, AuthError> {
    match machine.token_format() {
        format if accepted.allows(format) => Ok(machine),
        TokenFormat::Jwt => Err(AuthError::TokenTypeMismatch(TypeMismatch::JwtNotAccepted)),
        TokenFormat::Opaque => Err(AuthError::TokenTypeMismatch(
            TypeMismatch::OpaqueNotAccepted,
        )),
    }
}
