//! A machine token handed out by the source.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

use crate::TokenFormat;
use crate::credential::is_b64token;

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
    /// A token from the issuer's reply, or `None` if the text is not an RFC 6750 `b64token`.
    ///
    /// `created_at` and `expires_at` are the issuer's; they give the token's life. That life is
    /// counted on this machine's clock from `requested_at` (just before the creation call, so
    /// never later than the issuer's start), which keeps renewal on time when this machine's
    /// clock differs from the issuer's. `refresh_share` is the share of the life left when a new
    /// one should be made.
    pub(crate) fn new(
        token: &str,
        id: String,
        format: TokenFormat,
        (created_at, expires_at): (SystemTime, Option<SystemTime>),
        requested_at: SystemTime,
        refresh_share: f64,
    ) -> Option<Self> {
        if !is_b64token(token.as_bytes()) {
            return None;
        }
        let mut authorization = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
        authorization.set_sensitive(true);
        let life = expires_at.map(|expires_at| {
            expires_at
                .duration_since(created_at)
                .unwrap_or(Duration::ZERO)
        });
        let (refresh_at, usable_until) = match life {
            Some(life) => {
                let expiry_here = requested_at + life;
                (
                    Some(expiry_here - life.mul_f64(refresh_share)),
                    Some(expiry_here - EXPIRY_MARGIN.min(life / 10)),
                )
            }
            None => (None, None),
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
        // Built from `Bearer ` and a b64token: ASCII, so both always succeed.
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

    /// When the issuer says it expires, on the issuer's clock (`None`: it does not). The source
    /// decides when to renew from the token's life counted on its own clock, not from this.
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
            (created, Some(expires)),
            created,
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
    fn the_life_is_counted_on_this_machines_clock() {
        let issuer_created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let issuer_expires = issuer_created + Duration::from_secs(100);
        let ten_minutes = Duration::from_secs(600);
        // This machine's clock ten minutes behind the issuer's, then ten minutes ahead.
        for requested in [issuer_created - ten_minutes, issuer_created + ten_minutes] {
            let token = MachineToken::new(
                "mt_secret",
                "mt_id".into(),
                TokenFormat::Opaque,
                (issuer_created, Some(issuer_expires)),
                requested,
                0.2,
            )
            .unwrap();
            assert_eq!(
                token.expires_at(),
                Some(issuer_expires),
                "the issuer's expiry"
            );
            assert!(!token.refresh_due_at(requested + Duration::from_secs(79)));
            assert!(token.refresh_due_at(requested + Duration::from_secs(80)));
            assert!(token.usable_at(requested + Duration::from_secs(97)));
            assert!(!token.usable_at(requested + Duration::from_secs(98)));
        }
    }

    #[test]
    fn the_token_never_shows_in_debug_and_header_values_are_sensitive() {
        let (token, _) = made(100, 0.2);
        assert_eq!(token.as_str(), "mt_secret");
        assert!(token.authorization().is_sensitive());
        assert!(!format!("{token:?}").contains("mt_secret"));
    }

    #[test]
    fn only_rfc_6750_tokens_are_kept() {
        let make = |text: &str| {
            MachineToken::new(
                text,
                "mt_id".into(),
                TokenFormat::Jwt,
                (SystemTime::UNIX_EPOCH, None),
                SystemTime::UNIX_EPOCH,
                0.2,
            )
        };
        for bad in ["", "bad\ntoken", "two words", "t\u{f8}ken", "a,b", "=="] {
            assert!(make(bad).is_none(), "{bad:?}");
        }
        for good in ["mt_0123abcdef", "eyJh.eyJz.c2ln", "a+b/c~d==", "ak-_."] {
            assert_eq!(
                make(good).map(|t| t.as_str().to_owned()).as_deref(),
                Some(good)
            );
        }
    }
}
