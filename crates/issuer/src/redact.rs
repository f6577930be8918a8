//! What `Debug` shows in place of a secret key, a private key or a token.

use std::fmt;

/// Prints `[redacted]`, for the secret fields of hand-written `Debug` implementations.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
