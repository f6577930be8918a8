//! [`BearerToken`]: the text of a verified token, for a handler that forwards it.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use http::header::InvalidHeaderValue;

/// The text of the token a request was authenticated with, as Clerk's `getToken()` gives it: for
/// a handler that forwards the caller's token to another service (machine B calling machine C on
/// machine A's behalf). Get it from [`AuthenticatedMachine::token`](crate::AuthenticatedMachine::token).
///
/// It is a credential: its `Debug` output is `BearerToken([redacted])`, it has no `Display` and is
/// not serialized with the identity, so that it reaches neither logs nor responses by accident.
///
/// ```
/// use tower_machine_auth::{AuthenticatedMachine, MachineId};
///
/// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap())
///     .token("mt_0123456789abcdef")
///     .build();
/// let token = machine.token().unwrap();
/// assert_eq!(token.as_str(), "mt_0123456789abcdef");
/// assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
/// let header = token.to_authorization()?;
/// assert_eq!(header, "Bearer mt_0123456789abcdef");
/// assert!(header.is_sensitive());
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
#[derive(Clone)]
pub struct BearerToken(Repr);

#[derive(Clone)]
enum Repr {
    /// The tail of the request's `Authorization` value: sharing it costs no copy.
    Header {
        value: HeaderValue,
        start: usize,
    },
    Text(Arc<str>),
}

impl BearerToken {
    /// The token at the end of an `Authorization` value: its last `token_len` bytes, already
    /// checked to be RFC 6750 `b64token` characters.
    pub(crate) fn from_header(value: &HeaderValue, token_len: usize) -> Self {
        let start = value.len().saturating_sub(token_len);
        Self(Repr::Header {
            value: value.clone(),
            start,
        })
    }

    pub(crate) fn from_text(text: &str) -> Self {
        Self(Repr::Text(text.into()))
    }

    /// The token, without the `Bearer ` prefix.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap()).token("a.b.c").build();
    /// assert_eq!(machine.token().unwrap().as_str(), "a.b.c");
    /// ```
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only b64token characters (ASCII) are ever verified from a header.
            Repr::Header { value, start } => {
                std::str::from_utf8(&value.as_bytes()[*start..]).unwrap_or_default()
            }
            Repr::Text(text) => text,
        }
    }

    /// `Bearer <token>` as a header value marked sensitive (HTTP/2 never indexes it, and `http`'s
    /// `Debug` hides it), ready for the `Authorization` header of a forwarded request. Fails only
    /// for a token holding characters a header cannot carry, which a token verified from an
    /// `Authorization` header never does.
    ///
    /// ```
    /// use tower_machine_auth::{AuthenticatedMachine, MachineId};
    /// let machine = AuthenticatedMachine::builder(MachineId::parse("mch_cron").unwrap()).token("a.b.c").build();
    /// let mut request = http::Request::new(());
    /// let authorization = machine.token().unwrap().to_authorization()?;
    /// request.headers_mut().insert(http::header::AUTHORIZATION, authorization);
    /// # Ok::<(), http::header::InvalidHeaderValue>(())
    /// ```
    pub fn to_authorization(&self) -> Result<HeaderValue, InvalidHeaderValue> {
        let mut value = HeaderValue::try_from(format!("Bearer {}", self.as_str()))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl PartialEq for BearerToken {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for BearerToken {}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_form_is_the_tail_of_the_value() {
        let value = HeaderValue::from_static("Bearer   abc.def.ghi");
        let token = BearerToken::from_header(&value, "abc.def.ghi".len());
        assert_eq!(token.as_str(), "abc.def.ghi");
        assert_eq!(token, BearerToken::from_text("abc.def.ghi"));
        assert_eq!(token.to_authorization().unwrap(), "Bearer abc.def.ghi");
        assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_an_error() {
        assert!(BearerToken::from_text("a\nb").to_authorization().is_err());
    }
}
