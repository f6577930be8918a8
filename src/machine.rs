//! The identity a verified machine token yields: [`AuthenticatedMachine`] and [`MachineId`].

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::bearer_token::BearerToken;
use machine_auth_core::strict_json;

pub use machine_auth_core::{MAX_MACHINE_ID_LEN, MachineId};

/// How the machine token was presented. It serializes as [`as_str`](Self::as_str).
///
/// ```
/// use tower_machine_auth::TokenFormat;
///
/// assert_eq!(serde_json::to_string(&TokenFormat::Jwt)?, r#""jwt""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    /// A signed JWT, verified locally.
    Jwt,
    /// An opaque token (Clerk's `mt_…`, or any token an RFC 7662 endpoint knows), verified by
    /// its issuer.
    Opaque,
}

impl TokenFormat {
    /// `"jwt"` or `"opaque"`.
    ///
    /// ```
    /// use tower_machine_auth::TokenFormat;
    ///
    /// assert_eq!(TokenFormat::Jwt.as_str(), "jwt");
    /// assert_eq!(TokenFormat::Opaque.as_str(), "opaque");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Opaque => "opaque",
        }
    }
}

/// Which token formats a layer accepts, like the `acceptsToken` option of Clerk's
/// `authenticateRequest`. A token of another format gets 401 `token-type-mismatch`.
///
/// ```
/// use tower_machine_auth::{AcceptedTokens, TokenFormat};
///
/// assert!(AcceptedTokens::Any.allows(TokenFormat::Opaque));
/// assert!(!AcceptedTokens::Jwt.allows(TokenFormat::Opaque));
/// assert_eq!(AcceptedTokens::default(), AcceptedTokens::Any);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AcceptedTokens {
    /// Every format the verifier can verify (the default).
    #[default]
    Any,
    /// JWTs only: no introspection call is ever made.
    Jwt,
    /// Opaque tokens only.
    Opaque,
}

impl AcceptedTokens {
    /// Whether tokens of `format` are accepted.
    ///
    /// ```
    /// use tower_machine_auth::{AcceptedTokens, TokenFormat};
    ///
    /// assert!(AcceptedTokens::Opaque.allows(TokenFormat::Opaque));
    /// assert!(!AcceptedTokens::Opaque.allows(TokenFormat::Jwt));
    /// ```
    pub fn allows(self, format: TokenFormat) -> bool {
        matches!(
            (self, format),
            (Self::Any, _) | (Self::Jwt, TokenFormat::Jwt) | (Self::Opaque, TokenFormat::Opaque)
        )
    }
}

/// A machine that presented a valid token: what handlers receive.
///
/// It is cheap to clone (one reference count) and serializes to the JSON that
/// `examples/axum_cron.rs` returns from `/whoami`:
///
/// ```json
/// {"machine_id":"mch_cron_service","token_id":"mt_…","token_format":"jwt",
///  "scopes":["mch_reports_api"],"claims":{"scopes":"mch_reports_api"},
///  "expires_at":1767225600,"issued_at":1767222000,"issuer":"https://clerk.example.com"}
/// ```
///
/// The fields mirror what Clerk's `toAuth()` returns for an M2M token:
///
/// | Clerk's `toAuth()` | here |
/// |---|---|
/// | `isAuthenticated` | having an `AuthenticatedMachine` at all (`Option<AuthenticatedMachine>` in optional mode) |
/// | `machineId`, `subject` | [`machine_id`](Self::machine_id) (the `sub`) |
/// | `id` | [`token_id`](Self::token_id) (`jti`, or the `mt_…` id) |
/// | `scopes` | [`scopes`](Self::scopes), [`has_scope`](Self::has_scope) |
/// | `claims` | [`claims`](Self::claims), [`claim`](Self::claim) (empty rather than `null`) |
/// | `tokenType` (`m2m_token`) | always a machine token; [`token_format`](Self::token_format) says JWT or opaque |
/// | `getToken()` | [`token`](Self::token): the verified token text, for forwarding |
///
/// and adds [`expires_at`](Self::expires_at), [`issued_at`](Self::issued_at) and
/// [`issuer`](Self::issuer). The times are [`SystemTime`]s here and Unix seconds in the JSON. `claims` holds every claim except `iss`, `sub`, `exp`, `nbf`, `iat`
/// and `jti` (so `aud` and `scopes` stay in it). The `nbf` value is checked during verification
/// but not kept. Its `Debug` output shows the machine id, token id, format, scopes and expiry,
/// but neither the claims nor the token; the JSON leaves the token out too.
///
/// The layer puts it in the request extensions; with the `axum` feature, Axum handlers can take it
/// (or `Option<AuthenticatedMachine>`) as an extractor. A Tonic service method reads it from
/// `request.extensions()`:
///
/// ```
/// use tower_machine_auth::AuthenticatedMachine;
///
/// fn caller<T>(request: &tonic::Request<T>) -> Option<&AuthenticatedMachine> {
///     request.extensions().get::<AuthenticatedMachine>()
/// }
/// ```
///
/// ```
/// use tower_machine_auth::{AuthenticatedMachine, MachineId, TokenFormat};
///
/// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
///     .scopes(["mch_reports"])
///     .build();
/// assert_eq!(machine.machine_id().as_str(), "mch_cron");
/// assert!(machine.has_scope("mch_reports"));
/// assert_eq!(machine.token_format(), TokenFormat::Jwt);
/// ```
#[derive(Clone, PartialEq)]
pub struct AuthenticatedMachine {
    identity: Arc<Identity>,
    /// Kept beside the identity, not in it: verified identities are cached, tokens never are.
    token: Option<BearerToken>,
}

#[derive(Debug, PartialEq, Serialize)]
struct Identity {
    machine_id: MachineId,
    token_id: String,
    token_format: TokenFormat,
    scopes: Vec<String>,
    claims: Claims,
    expires_at: Option<u64>,
    issued_at: Option<u64>,
    issuer: Option<String>,
}

/// The claims that are not read into the identity's own fields: given as a map, or read from a
/// verified JWT's payload the first time they are asked for (most handlers never ask, and a cached
/// identity then keeps only the payload's bytes).
struct Claims {
    /// The decoded JWT payload the map is read from, if it was not given.
    payload: Option<Box<[u8]>>,
    map: OnceLock<Map<String, Value>>,
}

/// The claims with accessors of their own, left out of [`AuthenticatedMachine::claims`].
const OWN_FIELD_CLAIMS: [&str; 6] = ["iss", "sub", "exp", "nbf", "iat", "jti"];

impl Claims {
    fn from_map(map: Map<String, Value>) -> Self {
        Self {
            payload: None,
            map: OnceLock::from(map),
        }
    }

    fn from_payload(payload: Vec<u8>) -> Self {
        Self {
            payload: Some(payload.into()),
            map: OnceLock::new(),
        }
    }

    fn get(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| {
            // Verification checked the payload already: a JSON object, no repeated names.
            let mut map = self
                .payload
                .as_deref()
                .and_then(|payload| strict_json::parse_object(payload).ok())
                .unwrap_or_default();
            for name in OWN_FIELD_CLAIMS {
                map.remove(name);
            }
            map
        })
    }
}

impl PartialEq for Claims {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl Serialize for Claims {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(serializer)
    }
}

impl AuthenticatedMachine {
    /// Starts an identity for `machine_id` (a JWT with no other data). Verifiers build these;
    /// the builder exists for tests of handlers and for custom verification paths.
    ///
    /// The defaults: empty token id, [`TokenFormat::Jwt`], no scopes, no claims, and no expiry,
    /// issue time or issuer. The builder checks nothing beyond the [`MachineId`] itself.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    ///
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap()).build();
    /// assert_eq!(machine.token_id(), "");
    /// assert!(machine.scopes().is_empty());
    /// assert_eq!(machine.expires_at(), None);
    /// ```
    pub fn builder(machine_id: MachineId) -> AuthenticatedMachineBuilder {
        AuthenticatedMachineBuilder {
            token: None,
            identity: Identity {
                machine_id,
                token_id: String::new(),
                token_format: TokenFormat::Jwt,
                scopes: Vec::new(),
                claims: Claims::from_map(Map::new()),
                expires_at: None,
                issued_at: None,
                issuer: None,
            },
        }
    }

    /// The machine's id: the token's `sub`.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    ///
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap()).build();
    /// assert_eq!(machine.machine_id().as_str(), "mch_cron");
    /// ```
    #[doc(alias = "subject")]
    #[doc(alias = "machineId")]
    pub fn machine_id(&self) -> &MachineId {
        &self.identity.machine_id
    }

    /// The token's id: `jti` for a JWT (empty when absent), the `mt_…` id for an opaque token.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .token_id("mt_2xhFjEI5X2qWRvtV13BzSj8H6Dk")
    ///     .build();
    /// assert_eq!(machine.token_id(), "mt_2xhFjEI5X2qWRvtV13BzSj8H6Dk");
    /// ```
    #[doc(alias = "id")]
    pub fn token_id(&self) -> &str {
        &self.identity.token_id
    }

    /// Whether the token was a JWT or an opaque token.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId, TokenFormat};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap()).build();
    /// assert_eq!(machine.token_format(), TokenFormat::Jwt);
    /// ```
    #[doc(alias = "tokenType")]
    pub fn token_format(&self) -> TokenFormat {
        self.identity.token_format
    }

    /// The token's scopes: the `scopes` claim split on spaces (empty pieces dropped) when the
    /// token has one, else the `aud` claim (a string or an array of strings), else empty. For
    /// Clerk these are the machine ids this machine may call.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .scopes(["mch_reports", "mch_billing"])
    ///     .build();
    /// assert_eq!(machine.scopes(), ["mch_reports", "mch_billing"]);
    /// ```
    pub fn scopes(&self) -> &[String] {
        &self.identity.scopes
    }

    /// Whether `scope` is among [`scopes`](Self::scopes) (exact, case-sensitive comparison).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .scopes(["mch_reports"])
    ///     .build();
    /// assert!(machine.has_scope("mch_reports"));
    /// assert!(!machine.has_scope("mch_Reports"));
    /// ```
    pub fn has_scope(&self, scope: &str) -> bool {
        self.identity.scopes.iter().any(|s| s == scope)
    }

    /// Every claim except `iss`, `sub`, `exp`, `nbf`, `iat` and `jti` (which have their own
    /// accessors, except `nbf`); `aud` and `scopes` stay here. Empty when the token has no other
    /// claims. For a verified JWT the map is built from the token's payload the first time it is
    /// asked for, and kept (verification checks the whole payload but builds only what it reads).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let claims = serde_json::json!({"role": "cron"}).as_object().unwrap().clone();
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .claims(claims)
    ///     .build();
    /// assert_eq!(machine.claims().len(), 1);
    /// ```
    pub fn claims(&self) -> &Map<String, Value> {
        self.identity.claims.get()
    }

    /// One claim from [`claims`](Self::claims), or `None` if absent (always `None` for `iss`,
    /// `sub`, `exp`, `nbf`, `iat` and `jti` on a verified token).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let claims = serde_json::json!({"role": "cron"}).as_object().unwrap().clone();
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .claims(claims)
    ///     .build();
    /// assert_eq!(machine.claim("role"), Some(&serde_json::json!("cron")));
    /// assert_eq!(machine.claim("team"), None);
    /// ```
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims().get(name)
    }

    /// When the token expires (`exp`, or the opaque token's expiration), to the whole second
    /// (rounded down). Always `Some` for a verified JWT, since `exp` is required; `None` for an
    /// opaque token that never expires and for identities built without one.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .expires_at(Some(new_year))
    ///     .build();
    /// assert_eq!(machine.expires_at(), Some(new_year));
    /// ```
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.identity.expires_at.map(from_unix_seconds)
    }

    /// When the token was issued (`iat`, or the opaque token's creation), to the whole second
    /// (rounded down); `None` if the token does not say.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let issued = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_222_000_750);
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .issued_at(Some(issued))
    ///     .build();
    /// let whole_second = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_222_000);
    /// assert_eq!(machine.issued_at(), Some(whole_second));
    /// ```
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.identity.issued_at.map(from_unix_seconds)
    }

    /// The text of the token this machine was authenticated with, for forwarding it to another
    /// service (Clerk's `getToken()`). Always `Some` for identities from the layer,
    /// [`MachineVerifier::verify`](crate::MachineVerifier::verify) and
    /// [`MachineVerifier::authenticate`](crate::MachineVerifier::authenticate); `None` for
    /// identities built without one. Its `Debug` output hides it.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .token("mt_0123456789abcdef")
    ///     .build();
    /// assert_eq!(machine.token().map(|t| t.as_str()), Some("mt_0123456789abcdef"));
    /// assert!(!format!("{machine:?}").contains("mt_0123456789abcdef"));
    /// ```
    #[doc(alias = "getToken")]
    pub fn token(&self) -> Option<&BearerToken> {
        self.token.as_ref()
    }

    /// The same identity, carrying the token it was verified from.
    pub(crate) fn with_token(self, token: BearerToken) -> Self {
        Self {
            token: Some(token),
            ..self
        }
    }

    /// The same identity, without its token: what a response may carry.
    pub(crate) fn without_token(&self) -> Self {
        Self {
            identity: Arc::clone(&self.identity),
            token: None,
        }
    }

    /// The token's issuer (`iss`), if it has one.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .issuer(Some("https://clerk.example.com".to_owned()))
    ///     .build();
    /// assert_eq!(machine.issuer(), Some("https://clerk.example.com"));
    /// ```
    pub fn issuer(&self) -> Option<&str> {
        self.identity.issuer.as_deref()
    }
}

impl fmt::Debug for AuthenticatedMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatedMachine")
            .field("machine_id", &self.identity.machine_id)
            .field("token_id", &self.identity.token_id)
            .field("token_format", &self.identity.token_format)
            .field("scopes", &self.identity.scopes)
            .field("expires_at", &self.identity.expires_at)
            .finish_non_exhaustive()
    }
}

impl Serialize for AuthenticatedMachine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.identity.serialize(serializer)
    }
}

/// Builds an [`AuthenticatedMachine`]; see [`AuthenticatedMachine::builder`] for the defaults.
///
/// Each setter replaces the value set before; nothing is validated.
///
/// ```
/// use tower_machine_auth::{AuthenticatedMachine, MachineId, TokenFormat};
///
/// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
///     .token_id("mt_1")
///     .scopes(["mch_reports"])
///     .expires_at(Some(std::time::SystemTime::now()))
///     .build();
/// assert_eq!(machine.token_id(), "mt_1");
/// ```
#[derive(Debug)]
#[must_use]
pub struct AuthenticatedMachineBuilder {
    identity: Identity,
    token: Option<BearerToken>,
}

impl AuthenticatedMachineBuilder {
    /// Sets the token id (default empty).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .token_id("mt_1")
    ///     .build();
    /// assert_eq!(machine.token_id(), "mt_1");
    /// ```
    pub fn token_id(mut self, token_id: impl Into<String>) -> Self {
        self.identity.token_id = token_id.into();
        self
    }

    /// Sets the token format (default [`TokenFormat::Jwt`]).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId, TokenFormat};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .token_format(TokenFormat::Opaque)
    ///     .build();
    /// assert_eq!(machine.token_format(), TokenFormat::Opaque);
    /// ```
    pub fn token_format(mut self, format: TokenFormat) -> Self {
        self.identity.token_format = format;
        self
    }

    /// Sets the scopes (default none), replacing any set before. The claims are not changed.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .scopes(["mch_reports"])
    ///     .build();
    /// assert!(machine.has_scope("mch_reports"));
    /// assert!(machine.claims().is_empty());
    /// ```
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.identity.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the claims (default none), replacing any set before. The scopes are not derived from
    /// them.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let claims = serde_json::json!({"scopes": "mch_reports"}).as_object().unwrap().clone();
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .claims(claims)
    ///     .build();
    /// assert!(machine.claim("scopes").is_some());
    /// assert!(!machine.has_scope("mch_reports"));
    /// ```
    pub fn claims(mut self, claims: Map<String, Value>) -> Self {
        self.identity.claims = Claims::from_map(claims);
        self
    }

    /// Sets the claims to those of a verified JWT's decoded `payload` (a JSON object without
    /// repeated member names), read when first asked for, without the ones with fields of their
    /// own.
    pub(crate) fn claims_of_payload(mut self, payload: Vec<u8>) -> Self {
        self.identity.claims = Claims::from_payload(payload);
        self
    }

    /// Sets the expiry (default `None`), kept to the whole second (rounded down; a time before
    /// the Unix epoch counts as the epoch).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let expiry = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_225_600_900);
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .expires_at(Some(expiry))
    ///     .build();
    /// assert_eq!(machine.expires_at(), Some(expiry - Duration::from_millis(900)));
    /// ```
    pub fn expires_at(mut self, time: Option<SystemTime>) -> Self {
        self.identity.expires_at = time.map(unix_seconds);
        self
    }

    /// Sets the issue time (default `None`), kept to the whole second (rounded down; a time
    /// before the Unix epoch counts as the epoch).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_222_000);
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .issued_at(Some(issued))
    ///     .build();
    /// assert_eq!(machine.issued_at(), Some(issued));
    /// ```
    pub fn issued_at(mut self, time: Option<SystemTime>) -> Self {
        self.identity.issued_at = time.map(unix_seconds);
        self
    }

    /// Sets the issuer (default `None`).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .issuer(Some("https://clerk.example.com".into()))
    ///     .build();
    /// assert_eq!(machine.issuer(), Some("https://clerk.example.com"));
    /// ```
    pub fn issuer(mut self, issuer: Option<String>) -> Self {
        self.identity.issuer = issuer;
        self
    }

    /// Sets the token text that [`AuthenticatedMachine::token`] returns (default none).
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
    ///     .token("mt_0123456789abcdef")
    ///     .build();
    /// assert_eq!(machine.token().unwrap().as_str(), "mt_0123456789abcdef");
    /// ```
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(BearerToken::from_text(token));
        self
    }

    /// Finishes the identity.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap()).build();
    /// assert_eq!(machine.machine_id().as_str(), "mch_cron");
    /// ```
    pub fn build(self) -> AuthenticatedMachine {
        AuthenticatedMachine {
            identity: Arc::new(self.identity),
            token: self.token,
        }
    }
}

/// Whole seconds since the Unix epoch, rounded down; 0 before it.
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The time `seconds` after the Unix epoch.
fn from_unix_seconds(seconds: u64) -> SystemTime {
    // The seconds came from a `SystemTime` or a NumericDate within `i64` milliseconds: they fit.
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_every_field() {
        let machine = AuthenticatedMachine::builder(MachineId::parse("mch_a").unwrap())
            .token_id("mt_1")
            .scopes(["mch_b"])
            .expires_at(Some(UNIX_EPOCH + Duration::from_secs(20)))
            .issued_at(Some(UNIX_EPOCH + Duration::from_secs(10)))
            .issuer(Some("https://issuer".into()))
            .build();
        assert_eq!(
            serde_json::to_value(&machine).unwrap(),
            serde_json::json!({
                "machine_id": "mch_a", "token_id": "mt_1", "token_format": "jwt",
                "scopes": ["mch_b"], "claims": {}, "expires_at": 20, "issued_at": 10,
                "issuer": "https://issuer"
            })
        );
    }
}
