//! A machine token handed out by the source.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

use crate::TokenFormat;

/// A token machine A sends as `Authorization: Bearer …`: the token, its id, and when it expires.
///
/// Cheap to clone. Its `Debug` output shows the id and times, never the token.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let issuer = tower_machine_auth::issuer::Issuer::builder(
/// #     tower_machine_auth::issuer::IssuerConfig::demo()).build()?;
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let api_url = format!("http://{}", listener.local_addr()?);
/// # tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
/// use tower_machine_auth::client::MachineTokenSource;
///
/// let source = MachineTokenSource::builder()
///     .api_url(&api_url)
///     .machine_secret_key("ak_demo_cron_service_do_not_use_in_production")
///     .build()?;
/// let token = source.token().await?;
/// assert!(token.id().starts_with("mt_"));
/// assert!(!format!("{token:?}").contains(token.as_str()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MachineToken {
    inner: Arc<Inner>,
}

struct Inner {
    authorization: HeaderValue,
    id: String,
    format: TokenFormat,
    expires_at: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
    usable_until: Option<SystemTime>,
}

/// A token is not handed out closer to its expiry than this (or a tenth of its life, if shorter):
/// it must still be valid when machine B reads it.
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

impl MachineToken {
    /// A token from the issuer's reply. `refresh_share` is the share of its life left when a new
    /// one should be made.
    pub(crate) fn new(
        token: &str,
        id: String,
        format: TokenFormat,
        created_at: SystemTime,
        expires_at: Option<SystemTime>,
        refresh_share: f64,
    ) -> Option<Self> {
        let mut authorization = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
        authorization.set_sensitive(true);
        let life = expires_at.map(|expires_at| {
            expires_at
                .duration_since(created_at)
                .unwrap_or(Duration::ZERO)
        });
        let (refresh_at, usable_until) = match (expires_at, life) {
            (Some(expires_at), Some(life)) => (
                Some(expires_at - life.mul_f64(refresh_share)),
                Some(expires_at - EXPIRY_MARGIN.min(life / 10)),
            ),
            _ => (None, None),
        };
        Some(Self {
            inner: Arc::new(Inner {
                authorization,
                id,
                format,
                expires_at,
                refresh_at,
                usable_until,
            }),
        })
    }

    /// The token itself. It is a credential: never log it.
    pub fn as_str(&self) -> &str {
        let value = self.inner.authorization.to_str().unwrap_or_default();
        value.strip_prefix("Bearer ").unwrap_or_default()
    }

    /// `Bearer <token>`, marked sensitive (so HTTP/2 never indexes it and `Debug` hides it).
    pub fn authorization(&self) -> HeaderValue {
        self.inner.authorization.clone()
    }

    /// The token's id at the issuer (`mt_…`), for revocation and logs.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// JWT or opaque.
    pub fn format(&self) -> TokenFormat {
        self.inner.format
    }

    /// When the issuer says it expires (`None`: it does not).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner.expires_at
    }

    /// Whether it may still be sent at `now`.
    pub(crate) fn usable_at(&self, now: SystemTime) -> bool {
        self.inner.usable_until.is_none_or(|until| now < until)
    }

    /// Whether a new token should be made at `now`.
    pub(crate) fn refresh_due_at(&self, now: SystemTime) -> bool {
        self.inner.refresh_at.is_some_and(|at| now >= at)
    }

    /// Whether both are the same token.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for MachineToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineToken")
            .field("id", &self.inner.id)
            .field("format", &self.inner.format)
            .field("expires_at", &self.inner.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(life: u64, share: f64) -> (MachineToken, SystemTime) {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = created + Duration::from_secs(life);
        let token = MachineToken::new(
            "mt_secret",
            "mt_id".into(),
            TokenFormat::Opaque,
            created,
            Some(expires),
            share,
        )
        .unwrap();
        (token, created)
    }

    #[test]
    fn refresh_is_due_when_the_share_is_left_and_it_is_unusable_near_expiry() {
        let (token, created) = made(100, 0.2);
        assert!(!token.refresh_due_at(created + Duration::from_secs(79)));
        assert!(token.refresh_due_at(created + Duration::from_secs(80)));
        assert!(token.usable_at(created + Duration::from_secs(97)));
        assert!(!token.usable_at(created + Duration::from_secs(98)));
        let (short, created) = made(10, 0.2);
        assert!(short.usable_at(created + Duration::from_millis(8_900)));
        assert!(!short.usable_at(created + Duration::from_secs(9)));
    }

    #[test]
    fn the_token_never_shows_in_debug_and_header_values_are_sensitive() {
        let (token, _) = made(100, 0.2);
        assert_eq!(token.as_str(), "mt_secret");
        assert!(token.authorization().is_sensitive());
        assert!(!format!("{token:?}").contains("mt_secret"));
        assert!(
            MachineToken::new(
                "bad\ntoken",
                "mt_id".into(),
                TokenFormat::Jwt,
                SystemTime::UNIX_EPOCH,
                None,
                0.2
            )
            .is_none()
        );
    }
}
