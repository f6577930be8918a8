//! The identity a verified machine token yields: [`AuthenticatedMachine`] and [`MachineId`].

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

/// The longest machine id accepted, prefix included.
pub const MAX_MACHINE_ID_LEN: usize = 96;

/// A machine id: `mch_` followed by 1 to 92 ASCII letters, digits or `_`.
///
/// Clerk issues mixed-case ids such as `mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk`; the comparison is exact
/// and case-sensitive.
///
/// ```
/// use tower_machine_auth::MachineId;
///
/// let id = MachineId::parse("mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk").unwrap();
/// assert_eq!(id.as_str(), "mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk");
/// assert!(MachineId::parse("user_123").is_none());
/// assert!(MachineId::parse("mch_").is_none());
/// assert!(MachineId::parse("mch_a-b").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MachineId(Box<str>);

impl MachineId {
    /// The prefix every machine id starts with.
    pub const PREFIX: &'static str = "mch_";

    /// Parses a machine id, or returns `None` if `value` does not follow the grammar.
    pub fn parse(value: &str) -> Option<Self> {
        Self::is_valid(value).then(|| Self(value.into()))
    }

    /// Like [`parse`](Self::parse), keeping the string's allocation.
    pub(crate) fn from_string(value: String) -> Option<Self> {
        Self::is_valid(&value).then(|| Self(value.into_boxed_str()))
    }

    /// Whether `value` follows the machine-id grammar.
    pub fn is_valid(value: &str) -> bool {
        value.len() <= MAX_MACHINE_ID_LEN
            && value.strip_prefix(Self::PREFIX).is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MachineId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How the machine token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    /// A signed JWT, verified locally.
    Jwt,
    /// An opaque `mt_…` token, verified by the issuer.
    Opaque,
}

impl TokenFormat {
    /// `"jwt"` or `"opaque"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Opaque => "opaque",
        }
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
/// The fields mirror what Clerk's `toAuth()` returns for an M2M token: `claims` holds every claim
/// except `iss`, `sub`, `exp`, `nbf`, `iat` and `jti` (so `aud` and `scopes` stay in it).
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
pub struct AuthenticatedMachine(Arc<Identity>);

#[derive(Debug, PartialEq, Serialize)]
struct Identity {
    machine_id: MachineId,
    token_id: String,
    token_format: TokenFormat,
    scopes: Vec<String>,
    claims: Map<String, Value>,
    expires_at: Option<u64>,
    issued_at: Option<u64>,
    issuer: Option<String>,
}

impl AuthenticatedMachine {
    /// Starts an identity for `machine_id` (a JWT with no other data). Verifiers build these;
    /// the builder exists for tests of handlers and for custom verification paths.
    pub fn builder(machine_id: MachineId) -> AuthenticatedMachineBuilder {
        AuthenticatedMachineBuilder(Identity {
            machine_id,
            token_id: String::new(),
            token_format: TokenFormat::Jwt,
            scopes: Vec::new(),
            claims: Map::new(),
            expires_at: None,
            issued_at: None,
            issuer: None,
        })
    }

    /// The machine's id: the token's `sub`.
    pub fn machine_id(&self) -> &MachineId {
        &self.0.machine_id
    }

    /// The token's id: `jti` for a JWT (empty when absent), the `mt_…` id for an opaque token.
    pub fn token_id(&self) -> &str {
        &self.0.token_id
    }

    /// Whether the token was a JWT or an opaque token.
    pub fn token_format(&self) -> TokenFormat {
        self.0.token_format
    }

    /// The token's scopes: `scopes` split on spaces, else `aud`, else empty. For Clerk these are
    /// the machine ids this machine may call.
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    /// Whether `scope` is among [`scopes`](Self::scopes).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| s == scope)
    }

    /// Every claim except `iss`, `sub`, `exp`, `nbf`, `iat` and `jti`.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }

    /// One claim from [`claims`](Self::claims).
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.0.claims.get(name)
    }

    /// When the token expires, in Unix seconds (`None` for an opaque token that never expires).
    pub fn expires_at(&self) -> Option<u64> {
        self.0.expires_at
    }

    /// When the token was issued, in Unix seconds, if it says.
    pub fn issued_at(&self) -> Option<u64> {
        self.0.issued_at
    }

    /// The token's issuer (`iss`), if it has one.
    pub fn issuer(&self) -> Option<&str> {
        self.0.issuer.as_deref()
    }
}

impl fmt::Debug for AuthenticatedMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatedMachine")
            .field("machine_id", &self.0.machine_id)
            .field("token_id", &self.0.token_id)
            .field("token_format", &self.0.token_format)
            .field("scopes", &self.0.scopes)
            .field("expires_at", &self.0.expires_at)
            .finish_non_exhaustive()
    }
}

impl Serialize for AuthenticatedMachine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Builds an [`AuthenticatedMachine`]; see [`AuthenticatedMachine::builder`].
#[derive(Debug)]
#[must_use]
pub struct AuthenticatedMachineBuilder(Identity);

impl AuthenticatedMachineBuilder {
    /// Sets the token id.
    pub fn token_id(mut self, token_id: impl Into<String>) -> Self {
        self.0.token_id = token_id.into();
        self
    }

    /// Sets the token format.
    pub fn token_format(mut self, format: TokenFormat) -> Self {
        self.0.token_format = format;
        self
    }

    /// Sets the scopes.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.0.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the claims.
    pub fn claims(mut self, claims: Map<String, Value>) -> Self {
        self.0.claims = claims;
        self
    }

    /// Sets the expiry, in Unix seconds.
    pub fn expires_at(mut self, unix_seconds: Option<u64>) -> Self {
        self.0.expires_at = unix_seconds;
        self
    }

    /// Sets the issue time, in Unix seconds.
    pub fn issued_at(mut self, unix_seconds: Option<u64>) -> Self {
        self.0.issued_at = unix_seconds;
        self
    }

    /// Sets the issuer.
    pub fn issuer(mut self, issuer: Option<String>) -> Self {
        self.0.issuer = issuer;
        self
    }

    /// Finishes the identity.
    pub fn build(self) -> AuthenticatedMachine {
        AuthenticatedMachine(Arc::new(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_grammar() {
        for good in [
            "mch_a",
            "mch_2xhFjEI5X2qWRvtV13BzSj8H6Dk",
            "mch_cron_service",
        ] {
            assert!(MachineId::is_valid(good), "{good}");
        }
        let longest = format!("mch_{}", "a".repeat(MAX_MACHINE_ID_LEN - 4));
        assert!(MachineId::is_valid(&longest));
        let too_long = format!("{longest}a");
        for bad in [
            "",
            "mch_",
            "MCH_a",
            "user_a",
            "mch_a-b",
            "mch_a.b",
            "mch_a b",
            "mch_a\0",
            "m\u{441}h_a",
            "mch_\u{e9}",
            too_long.as_str(),
        ] {
            assert!(!MachineId::is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn serializes_every_field() {
        let machine = AuthenticatedMachine::builder(MachineId::parse("mch_a").unwrap())
            .token_id("mt_1")
            .scopes(["mch_b"])
            .expires_at(Some(20))
            .issued_at(Some(10))
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
