//! A local, Clerk-compatible issuer of machine tokens, for `tower-machine-auth`.
//!
//! It mints M2M JWTs and opaque `mt_…` tokens for configured machines, verifies, lists and
//! revokes opaque tokens, and publishes its JWKS, over the same HTTP API as Clerk's Backend API
//! (see [`Issuer::router`]). It backs `machine-auth dev`, the quickstart and the tests, and can
//! stand in for Clerk in development and CI.
//!
//! ```
//! use machine_auth_issuer::{CreateTokenRequest, Issuer, IssuerConfig, TokenFormatParam};
//! use tower_machine_auth::MachineVerifier;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = Issuer::builder(IssuerConfig::demo()).build()?;
//! let created = issuer.create_token(
//!     "ak_demo_cron_service_do_not_use_in_production",
//!     CreateTokenRequest { token_format: Some(TokenFormatParam::Jwt), ..Default::default() },
//! )?;
//!
//! let verifier = MachineVerifier::from_pem(&issuer.public_key_pem()?)?;
//! let machine = verifier.verify(created.token.as_deref().unwrap()).await?;
//! assert_eq!(machine.machine_id().as_str(), "mch_cron_service");
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, rust_2018_idioms)]

mod config;
mod data_dir;
mod error;
mod http;
mod jwt_templates;
mod keys;
mod redact;
mod request_log;
mod store;
mod template;
mod tokens;

pub use config::{
    DEFAULT_MAX_TOKEN_TTL, DEFAULT_TOKEN_TTL, IssuerConfig, JwtTemplateConfig, MAX_TOKEN_TTL,
    MachineConfig, SessionConfig, SigningAlgorithm, machine_id_from_seed,
};
pub use error::{ConfigError, IssuerError};
pub use jwt_templates::{JwtTemplate, TemplateFields};
pub use template::{
    DEFAULT_CLAIMS, SESSION_BOUND_CLAIMS, SHORTCODE_ROOTS, Template, TemplateError,
};
pub use tokens::{
    CreateTokenRequest, M2mToken, MAX_CLAIMS_BYTES, RESERVED_CLAIMS, TokenFormatParam,
};

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value, json};

use keys::SigningKey;
use machine_auth_core::clock::{Clock, SystemClock, unix_millis};
use store::{KeyRow, Store, TokenFilter, TokenRow};

/// The `iss` of issued JWTs when neither the configuration nor the builder names one.
pub const DEFAULT_ISSUER: &str = "http://127.0.0.1";

/// How long a stored opaque token is kept after it expires (so that it can still be listed with
/// `expired=true`), in milliseconds: an hour. Later it is deleted.
const EXPIRED_TOKENS_KEPT_MS: i64 = 3_600_000;
/// The most expired tokens one purge deletes, so that no request waits on a long delete.
const PURGE_BATCH: u32 = 100;

/// The local issuer. Cheap to clone; clones share keys and the token store.
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

struct Inner {
    config: IssuerConfig,
    issuer: String,
    store: Store,
    /// The current key first, then retired keys whose tokens may still be valid.
    keys: RwLock<Vec<(SigningKey, KeyRow)>>,
    templates: RwLock<jwt_templates::CompiledTemplates>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.inner.issuer)
            .field("machines", &self.inner.config.machines.len())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Issuer`].
///
/// ```
/// use machine_auth_issuer::{Issuer, IssuerConfig};
///
/// let dir = std::env::temp_dir().join(format!("machine-auth-doc-{}", std::process::id()));
/// let issuer = Issuer::builder(IssuerConfig::demo())
///     .data_dir(&dir)
///     .issuer_url("http://127.0.0.1:8080")
///     .build()?;
/// assert_eq!(issuer.issuer_url(), "http://127.0.0.1:8080");
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct IssuerBuilder {
    config: IssuerConfig,
    data_dir: Option<PathBuf>,
    issuer_url: Option<String>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerBuilder")
            .field("data_dir", &self.data_dir)
            .field("issuer_url", &self.issuer_url)
            .finish_non_exhaustive()
    }
}

impl IssuerBuilder {
    /// Keeps keys and opaque tokens in `<dir>/issuer.sqlite3`, so that they survive restarts
    /// (default: in memory). On Unix a missing directory is created `0700` and the database
    /// `0600`; [`build`](Self::build) refuses a directory its group or other users may write,
    /// and warns about one they may read.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The `iss` of issued JWTs, unless the configuration names one (default
    /// [`DEFAULT_ISSUER`]); usually the URL the issuer is served at.
    pub fn issuer_url(mut self, url: impl Into<String>) -> Self {
        self.issuer_url = Some(url.into());
        self
    }

    /// The clock for token times (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration, opens the store, loads (or creates) the signing key, and
    /// deletes stored tokens that expired over an hour ago.
    pub fn build(self) -> Result<Issuer, IssuerBuildError> {
        self.config.validate()?;
        let store = Store::open(self.data_dir.as_deref())?;
        let issuer = self
            .config
            .issuer
            .clone()
            .or(self.issuer_url)
            .unwrap_or_else(|| DEFAULT_ISSUER.to_owned());
        let issuer = Issuer {
            inner: Arc::new(Inner {
                config: self.config,
                issuer,
                store,
                keys: RwLock::new(Vec::new()),
                templates: RwLock::default(),
                clock: self.clock,
            }),
        };
        issuer.load_keys()?;
        issuer.load_templates()?;
        issuer.purge_expired_tokens()?;
        let current = issuer.inner.keys.read().unwrap_or_else(|e| e.into_inner())[0]
            .0
            .algorithm;
        if current != issuer.inner.config.signing_algorithm {
            issuer.rotate_signing_key()?;
        }
        Ok(issuer)
    }
}

/// Why an [`Issuer`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IssuerBuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store or the keys could not be opened.
    #[error(transparent)]
    Store(#[from] IssuerError),
}

impl Issuer {
    /// Starts an issuer for `config`.
    pub fn builder(config: IssuerConfig) -> IssuerBuilder {
        IssuerBuilder {
            config,
            data_dir: None,
            issuer_url: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The `iss` of the JWTs it issues.
    pub fn issuer_url(&self) -> &str {
        &self.inner.issuer
    }

    /// Its configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.inner.config
    }

    fn now_ms(&self) -> i64 {
        unix_millis(&*self.inner.clock)
    }

    /// Reads the stored keys; creates the first one if there is none.
    fn load_keys(&self) -> Result<(), IssuerError> {
        let rows = self.inner.store.signing_keys()?;
        if !rows.iter().any(|row| row.retired_at.is_none()) {
            return self.rotate_signing_key().map(|_| ());
        }
        let now_ms = self.now_ms();
        let mut keys = Vec::new();
        for row in rows.into_iter().rev() {
            if row.retired_at.is_some() && row.last_expiry <= now_ms {
                continue;
            }
            let algorithm = SigningAlgorithm::parse(&row.algorithm).ok_or_else(|| {
                IssuerError::internal("a stored signing key has an unknown algorithm")
            })?;
            keys.push((SigningKey::from_pem(algorithm, &row.private_pem)?, row));
        }
        // The current key (not retired) first.
        keys.sort_by_key(|(_, row)| row.retired_at.is_some());
        *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// Makes a new signing key current. The old key stays in the JWKS until the last token it
    /// signed expires. Returns the new `kid`.
    ///
    /// ```
    /// use machine_auth_issuer::{Issuer, IssuerConfig};
    ///
    /// let issuer = Issuer::builder(IssuerConfig::demo()).build()?;
    /// let before = issuer.jwks()["keys"][0]["kid"].clone();
    /// let kid = issuer.rotate_signing_key()?;
    /// assert_ne!(before, kid.as_str());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rotate_signing_key(&self) -> Result<String, IssuerError> {
        let key = SigningKey::generate(self.inner.config.signing_algorithm)?;
        let row = KeyRow {
            kid: key.kid.clone(),
            algorithm: key.algorithm.as_str().to_owned(),
            private_pem: key.private_pem.clone(),
            created_at: self.now_ms(),
            retired_at: None,
            last_expiry: 0,
        };
        self.inner.store.add_current_key(&row)?;
        let kid = key.kid.clone();
        let mut keys = self.inner.keys.write().unwrap_or_else(|e| e.into_inner());
        for (_, old) in keys.iter_mut() {
            old.retired_at.get_or_insert(row.created_at);
        }
        keys.insert(0, (key, row));
        Ok(kid)
    }

    /// Withdraws the signing key `kid` now: it leaves the JWKS (`/v1/jwks`,
    /// `/.well-known/jwks.json`) at once, so verifiers that fetch the JWKS afresh refuse the
    /// tokens it signed, and its private key is deleted from the store. Verifiers that cached the
    /// JWKS, or were given the PEM, accept them until they refresh.
    ///
    /// The current key, the one that signs, cannot be withdrawn (409 `signing_key_in_use`):
    /// [rotate](Self::rotate_signing_key) first. An unknown `kid` is a 404.
    ///
    /// ```
    /// use machine_auth_issuer::{Issuer, IssuerConfig};
    ///
    /// let issuer = Issuer::builder(IssuerConfig::demo()).build()?;
    /// let old = issuer.jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
    /// assert_eq!(issuer.retire_signing_key(&old).unwrap_err().status(), 409);
    /// let new = issuer.rotate_signing_key()?;
    /// issuer.retire_signing_key(&old)?;
    /// assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 1);
    /// assert_eq!(issuer.jwks()["keys"][0]["kid"], new.as_str());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retire_signing_key(&self, kid: &str) -> Result<(), IssuerError> {
        let mut keys = self.inner.keys.write().unwrap_or_else(|e| e.into_inner());
        let loaded = keys.iter().position(|(key, _)| key.kid == kid);
        if let Some(index) = loaded
            && keys[index].1.retired_at.is_none()
        {
            return Err(IssuerError::conflict(
                "signing_key_in_use",
                format!(
                    "the signing key {kid} is the current one, which signs every new token: make \
                     another current with rotate_signing_key, then retire it"
                ),
            ));
        }
        let deleted = self.inner.store.delete_retired_key(kid)?;
        match loaded {
            Some(index) => {
                keys.remove(index);
                Ok(())
            }
            None if deleted => Ok(()),
            None => Err(IssuerError::not_found("the signing key")),
        }
    }

    /// The public keys, as a JWKS: the current key, and retired keys whose tokens may still be
    /// valid.
    pub fn jwks(&self) -> Value {
        let now_ms = self.now_ms();
        let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<&Value> = keys
            .iter()
            .filter(|(_, row)| row.retired_at.is_none() || row.last_expiry > now_ms)
            .map(|(key, _)| &key.public_jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// The current public key as an SPKI PEM (what Clerk's dashboard shows as the JWT public key).
    pub fn public_key_pem(&self) -> Result<String, IssuerError> {
        let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
        let (key, _) = keys
            .first()
            .ok_or_else(|| IssuerError::internal("no signing key"))?;
        Ok(key.public_pem.clone())
    }

    pub(crate) fn machine(&self, secret_key: &str) -> Result<&MachineConfig, IssuerError> {
        self.inner.config.machine_with_key(secret_key).ok_or_else(|| {
            IssuerError::invalid_key(
                "machine_secret_key_invalid",
                "The provided Machine Secret Key is invalid. Make sure that your Machine Secret \
                 Key is correct.",
            )
        })
    }

    /// Who is calling: the instance (`None`) or a machine.
    pub(crate) fn caller(&self, secret_key: &str) -> Result<Option<&MachineConfig>, IssuerError> {
        if self.inner.config.is_instance_key(secret_key) {
            return Ok(None);
        }
        self.inner
            .config
            .machine_with_key(secret_key)
            .map(Some)
            .ok_or_else(|| {
                IssuerError::unauthorized(
                    "authentication_invalid",
                    "The provided secret key is invalid: use the instance secret key (sk_…) or a \
                     machine secret key (ak_…)",
                )
            })
    }

    /// Creates a token for the machine whose secret key is `machine_secret_key`.
    ///
    /// The request is [checked](CreateTokenRequest::check), and its lifetime may not exceed the
    /// configuration's [`max_token_ttl`](IssuerConfig::max_token_ttl) (422 naming
    /// `seconds_until_expiration`). Creating an opaque token also deletes up to 100 stored
    /// tokens that expired over an hour ago.
    ///
    /// ```
    /// use machine_auth_issuer::{CreateTokenRequest, Issuer, IssuerConfig};
    ///
    /// let issuer = Issuer::builder(IssuerConfig::demo()).build()?;
    /// let key = &IssuerConfig::demo().machines[0].secret_key;
    /// let too_long = CreateTokenRequest {
    ///     seconds_until_expiration: Some(u64::MAX),
    ///     ..Default::default()
    /// };
    /// let error = issuer.create_token(key, too_long).unwrap_err();
    /// assert_eq!(error.status(), 422);
    /// assert!(error.to_string().contains("max_token_ttl"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_token(
        &self,
        machine_secret_key: &str,
        request: CreateTokenRequest,
    ) -> Result<M2mToken, IssuerError> {
        let machine = self.machine(machine_secret_key)?;
        request.check()?;
        let now_ms = self.now_ms();
        let lifetime = request
            .seconds_until_expiration
            .unwrap_or(machine.default_token_ttl);
        let cap = self.inner.config.max_token_ttl;
        let too_long = || {
            IssuerError::unprocessable(
                "seconds_until_expiration",
                format!(
                    "seconds_until_expiration must be at most {cap} seconds, this issuer's \
                     max_token_ttl"
                ),
            )
        };
        if lifetime > cap {
            return Err(too_long());
        }
        let expiration = i64::try_from(lifetime)
            .ok()
            .and_then(|seconds| seconds.checked_mul(1000))
            .and_then(|lifetime_ms| now_ms.checked_add(lifetime_ms))
            .ok_or_else(too_long)?;
        // The machine's template first; the request's claims override it.
        let claims = match (self.machine_template_claims(machine), request.claims) {
            (None, claims) => claims,
            (Some(mut template), Some(requested)) => {
                template.extend(requested);
                Some(template)
            }
            (Some(template), None) => Some(template),
        };
        let id = format!("mt_{}", random_hex(16)?);
        let mut resource = M2mToken::from_row(
            TokenRow {
                id,
                subject: machine.id.clone(),
                scopes: machine.scopes.clone(),
                claims,
                expiration: Some(expiration),
                revoked: false,
                revocation_reason: None,
                last_used_at: None,
                created_at: now_ms,
                updated_at: now_ms,
            },
            now_ms,
        );
        resource.token = Some(match request.token_format.unwrap_or_default() {
            TokenFormatParam::Jwt => self.sign_jwt(&resource, now_ms)?,
            TokenFormatParam::Opaque => {
                self.purge_expired_tokens()?;
                let token = format!("mt_{}", random_hex(32)?);
                let row = TokenRow {
                    id: resource.id.clone(),
                    subject: resource.subject.clone(),
                    scopes: resource.scopes.clone(),
                    claims: resource.claims.clone(),
                    expiration: resource.expiration,
                    revoked: false,
                    revocation_reason: None,
                    last_used_at: None,
                    created_at: now_ms,
                    updated_at: now_ms,
                };
                self.inner
                    .store
                    .insert_token(&row, &tokens::digest(&token))?;
                token
            }
        });
        Ok(resource)
    }

    fn sign_jwt(&self, token: &M2mToken, now_ms: i64) -> Result<String, IssuerError> {
        let now = now_ms / 1000;
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.inner.issuer));
        claims.insert("sub".into(), json!(token.subject));
        claims.insert("jti".into(), json!(token.id));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now - 5));
        claims.insert(
            "exp".into(),
            json!(token.expiration.unwrap_or(now_ms) / 1000),
        );
        claims.insert("scopes".into(), json!(token.scopes.join(" ")));
        // The request parser refuses custom claims that would override these.
        for (name, value) in token.claims.iter().flatten() {
            claims.entry(name.clone()).or_insert_with(|| value.clone());
        }
        self.sign_claims(&claims, machine_auth_core::clerk::M2M_TOKEN_CATEGORY)
    }

    /// Signs `claims` with the current key and the `cat` header `category`, and keeps the key
    /// published until the token's `exp`.
    pub(crate) fn sign_claims(
        &self,
        claims: &Map<String, Value>,
        category: &str,
    ) -> Result<String, IssuerError> {
        let expiry_ms = claims
            .get("exp")
            .and_then(Value::as_i64)
            .map_or(0, |exp| exp.saturating_mul(1000));
        let mut keys = self.inner.keys.write().unwrap_or_else(|e| e.into_inner());
        let (key, row) = keys
            .first_mut()
            .ok_or_else(|| IssuerError::internal("no signing key"))?;
        let jwt = key.sign(claims, category)?;
        self.inner.store.extend_key_expiry(&key.kid, expiry_ms)?;
        row.last_expiry = row.last_expiry.max(expiry_ms);
        Ok(jwt)
    }

    /// Deletes (a bounded batch of) stored tokens that expired over an hour ago.
    fn purge_expired_tokens(&self) -> Result<(), IssuerError> {
        let expired_by = self.now_ms().saturating_sub(EXPIRED_TOKENS_KEPT_MS);
        self.inner.store.purge_expired(expired_by, PURGE_BATCH)?;
        Ok(())
    }

    /// Verifies an opaque token and records it as used. A machine key sees only tokens that have
    /// that machine in their scopes; unknown, revoked and expired tokens, tokens this key may not
    /// see, and tokens of a machine no longer configured are all "not found", and are left
    /// untouched.
    pub fn verify_token(&self, secret_key: &str, token: &str) -> Result<M2mToken, IssuerError> {
        let caller = self.caller(secret_key)?;
        let now_ms = self.now_ms();
        let not_found = || IssuerError::not_found("the machine token");
        let row = self
            .inner
            .store
            .token_by_digest(&tokens::digest(token))?
            .ok_or_else(not_found)?;
        let visible = caller.is_none_or(|machine| row.scopes.contains(&machine.id));
        let configured = self
            .inner
            .config
            .machines
            .iter()
            .any(|machine| machine.id == row.subject);
        let mut resource = M2mToken::from_row(row, now_ms);
        if !visible || !configured || resource.revoked || resource.expired {
            return Err(not_found());
        }
        self.inner.store.mark_used(&resource.id, now_ms)?;
        resource.last_used_at = Some(now_ms);
        Ok(resource)
    }

    /// Revokes an opaque token by id. A machine key may revoke only its own tokens.
    pub fn revoke_token(
        &self,
        secret_key: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<M2mToken, IssuerError> {
        let caller = self.caller(secret_key)?;
        let not_found = || IssuerError::not_found("the machine token");
        let row = self.inner.store.token(id)?.ok_or_else(not_found)?;
        if caller.is_some_and(|machine| machine.id != row.subject) {
            return Err(not_found());
        }
        let now_ms = self.now_ms();
        let row = self
            .inner
            .store
            .revoke(id, reason, now_ms)?
            .ok_or_else(not_found)?;
        Ok(M2mToken::from_row(row, now_ms))
    }

    /// Lists opaque tokens, newest first: all of them for the instance key, its own for a
    /// machine key.
    pub fn list_tokens(
        &self,
        secret_key: &str,
        mut filter: TokenQuery,
    ) -> Result<(Vec<M2mToken>, u64), IssuerError> {
        if let Some(machine) = self.caller(secret_key)? {
            match &filter.subject {
                Some(subject) if *subject != machine.id => return Ok((Vec::new(), 0)),
                _ => filter.subject = Some(machine.id.clone()),
            }
        }
        let now_ms = self.now_ms();
        let (rows, total) = self.inner.store.list(
            &TokenFilter {
                subject: filter.subject,
                include_revoked: filter.include_revoked,
                include_expired: filter.include_expired,
                limit: filter.limit,
                offset: filter.offset,
            },
            now_ms,
        )?;
        Ok((
            rows.into_iter()
                .map(|row| M2mToken::from_row(row, now_ms))
                .collect(),
            total,
        ))
    }

    /// Whether `secret_key` is the instance secret key (which reads the JWKS at `/v1/jwks`).
    pub fn is_instance_secret_key(&self, secret_key: &str) -> bool {
        self.inner.config.is_instance_key(secret_key)
    }
}

/// Which tokens [`Issuer::list_tokens`] returns (`GET /m2m_tokens`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenQuery {
    /// Only this machine's tokens.
    pub subject: Option<String>,
    /// Whether revoked tokens are included too (`revoked=true`; default: left out), as Clerk's
    /// `m2m.list({ revoked })` documents it.
    pub include_revoked: bool,
    /// Whether expired tokens are included too (`expired=true`; default: left out).
    pub include_expired: bool,
    /// At most this many (1 to 100, default 10).
    pub limit: u32,
    /// After skipping this many.
    pub offset: u32,
}

impl Default for TokenQuery {
    fn default() -> Self {
        Self {
            subject: None,
            include_revoked: false,
            include_expired: false,
            limit: 10,
            offset: 0,
        }
    }
}

/// `bytes` random bytes from the system's secure generator, in hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, IssuerError> {
    let mut random = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| IssuerError::internal("the system random generator failed"))?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}
