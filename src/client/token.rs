//! A machine token handed out by the source.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

use super::create::Created;
use crate::TokenFormat;
use crate::credential::is_b64token;

/// A token machine A sends as `Authorization: Bearer …`: the token, its id, and when it expires.
///
/// Cheap to clone. Its `Debug` output shows the id and times, never the token.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = machine_auth_issuer::Issuer::builder(
///     machine_auth_issuer::IssuerConfig::demo()).build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let api_url = format!("http://{}", listener.local_addr()?);
/// tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
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

/// A token stops being handed out once its expiry is nearer than this, or than a tenth of its
/// life when that is shorter: it must still be valid when machine B reads it.
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

impl MachineToken {
    /// The token of the issuer's reply, or why it cannot be used.
    ///
    /// The issuer's `created_at` and `expires_at` give the token's life, taken as at most
    /// `asked_life` (what the source asked for: an issuer that says more, an expiry in the wrong
    /// unit say, does not keep a token in use for longer). That life is counted on this machine's
    /// clock from `requested_at` (just before the creation call, so never later than the issuer's
    /// start), which keeps renewal on time when this machine's clock differs from the issuer's.
    /// `refresh_share` is the share of the life left when a new one should be made.
    pub(crate) fn new(
        created: Created,
        format: TokenFormat,
        (requested_at, asked_life): (SystemTime, Duration),
        refresh_share: f64,
    ) -> Result<Self, &'static str> {
        let mut authorization = Some(&created.token)
            .filter(|token| is_b64token(token.as_bytes()))
            .and_then(|token| HeaderValue::try_from(format!("Bearer {token}")).ok())
            .ok_or("the token is not an RFC 6750 bearer token")?;
        authorization.set_sensitive(true);
        let (refresh_at, usable_until) = match created.expires_at {
            None => (None, None),
            Some(expires_at) => {
                let life = expires_at
                    .duration_since(created.created_at.unwrap_or(requested_at))
                    .ok()
                    .filter(|life| !life.is_zero())
                    .ok_or("the token expires no later than it was created")?
                    .min(asked_life);
                let expiry_here = requested_at
                    .checked_add(life)
                    .ok_or("the token's expiry is out of range")?;
                let margin = EXPIRY_MARGIN.min(life / 10);
                let usable_until = expiry_here - margin;
                // Never later than leaves the refresh one margin to finish in.
                let refresh_at =
                    (expiry_here - life.mul_f64(refresh_share)).min(usable_until - margin);
                (Some(refresh_at), Some(usable_until))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                authorization,
                id: created.id,
                format,
                expires_at: created.expires_at,
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

    const CREATED: SystemTime = SystemTime::UNIX_EPOCH;
    /// The lifetime the source asked for.
    const ASKED: Duration = Duration::from_secs(3600);

    fn reply(token: &str, created_at: Option<u64>, expires_at: Option<u64>) -> Created {
        let at = |secs| CREATED + Duration::from_secs(1_000_000 + secs);
        Created {
            token: token.to_owned(),
            id: "mt_id".into(),
            created_at: created_at.map(at),
            expires_at: expires_at.map(at),
        }
    }

    /// The token of `reply`, asked for at `requested` (for an hour).
    fn kept(
        reply: Created,
        requested: SystemTime,
        share: f64,
    ) -> Result<MachineToken, &'static str> {
        MachineToken::new(reply, TokenFormat::Opaque, (requested, ASKED), share)
    }

    /// A token created at 1 000 000 s with `life` seconds to live, and its creation time.
    fn made(life: u64, share: f64) -> (MachineToken, SystemTime) {
        let requested = CREATED + Duration::from_secs(1_000_000);
        let token = kept(reply("mt_secret", Some(0), Some(life)), requested, share).unwrap();
        (token, requested)
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
    fn a_small_share_still_refreshes_while_the_token_is_handed_out() {
        // A hundredth of 60 s is 0.6 s, less than the 2 s margin: the refresh is due at 56 s,
        // leaving it the 2 s before the token stops being handed out at 58 s.
        let (token, created) = made(60, 0.01);
        assert!(!token.refresh_due_at(created + Duration::from_millis(55_900)));
        assert!(token.refresh_due_at(created + Duration::from_secs(56)));
        assert!(token.usable_at(created + Duration::from_millis(57_900)));
    }

    #[test]
    fn the_life_is_counted_on_this_machines_clock() {
        let ten_minutes = Duration::from_secs(600);
        let issuer_created = CREATED + Duration::from_secs(1_000_000);
        // This machine's clock ten minutes behind the issuer's, then ten minutes ahead.
        for requested in [issuer_created - ten_minutes, issuer_created + ten_minutes] {
            let reply = reply("mt_secret", Some(0), Some(100));
            let issuer_expires = reply.expires_at;
            let token = kept(reply, requested, 0.2).unwrap();
            assert_eq!(token.expires_at(), issuer_expires, "the issuer's expiry");
            assert!(!token.refresh_due_at(requested + Duration::from_secs(79)));
            assert!(token.refresh_due_at(requested + Duration::from_secs(80)));
            assert!(token.usable_at(requested + Duration::from_secs(97)));
            assert!(!token.usable_at(requested + Duration::from_secs(98)));
        }
    }

    #[test]
    fn impossible_lifetimes_are_refused() {
        let requested = CREATED + Duration::from_secs(1_000_000);
        // The issuer's times, then no creation time and an expiry before the request was sent.
        for (created_at, expires_at) in [
            (Some(100), Some(99)),
            (Some(100), Some(100)),
            (None, Some(0)),
        ] {
            let reply = reply("mt_secret", created_at, expires_at);
            let requested = requested + Duration::from_secs(1);
            let error = kept(reply, requested, 0.2).unwrap_err();
            assert!(error.contains("no later than it was created"), "{error}");
        }
        let never = kept(reply("mt_secret", Some(0), None), requested, 0.2).unwrap();
        assert!(never.usable_at(SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX.into())));
        assert!(
            !never.refresh_due_at(SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX.into()))
        );
    }

    #[test]
    fn a_life_longer_than_asked_for_counts_as_asked() {
        // An expiry a thousand times too far: milliseconds read as seconds, say.
        let requested = CREATED + Duration::from_secs(1_000_000);
        let reply = reply("mt_secret", Some(0), Some(3_600_000));
        let token = kept(reply, requested, 0.2).unwrap();
        assert!(token.refresh_due_at(requested + Duration::from_secs(2880)));
        assert!(!token.usable_at(requested + Duration::from_secs(3598)));
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
        let make = |text: &str| kept(reply(text, None, None), CREATED, 0.2);
        for bad in ["", "bad\ntoken", "two words", "t\u{f8}ken", "a,b", "=="] {
            assert!(make(bad).is_err(), "{bad:?}");
        }
        for good in ["mt_0123abcdef", "eyJh.eyJz.c2ln", "a+b/c~d==", "ak-_."] {
            assert_eq!(
                make(good).map(|t| t.as_str().to_owned()).as_deref(),
                Ok(good)
            );
        }
    }
}
