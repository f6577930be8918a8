//! Verifying one M2M JWT against one key: header checks, the signature, then the claims.
//!
//! The order matters. The token's kind comes first, read from the unverified header and payload
//! only to choose the reason of a rejection: a JWT that is plainly another kind of Clerk token (a
//! session token, an OAuth access token, any `sub` that is not `mch_…`) is `token-type-mismatch`,
//! as in Clerk's SDK, even when its header breaks the M2M rules. Header checks (`alg`, `typ`, `cat`,
//! `crit`) run next because they decide which key may be used; the signature runs before any claim
//! is checked, so a forged token never learns whether its claims would have passed (a forged,
//! expired token is `token-invalid`).
//!
//! Signatures are checked by `aws-lc-rs` with keys parsed once (see `keys::VerifyingKey`).
//! Parsing is our own: each part is decoded once, every JSON object is checked in full for
//! repeated member names, and only the members the rules read are built (the other claims become
//! a map only when a handler asks for them).

mod claims;
mod header;
mod kind;

pub(crate) use header::JwtHeader;

use base64_simd::{AsOut, URL_SAFE_NO_PAD};

use claims::RegisteredClaims;
use header::HeaderMembers;

use crate::algorithm::AlgorithmSet;
use crate::error::{AuthError, InvalidToken};
use crate::keys::VerifyingKey;
use crate::machine::AuthenticatedMachine;
use machine_auth_core::strict_json::{self, MemberReader, StrictJsonError};

pub(crate) use machine_auth_core::clerk::M2M_TOKEN_CATEGORY;

/// What an M2M JWT must satisfy, besides its signature.
#[derive(Debug, Clone)]
pub(crate) struct JwtRules {
    /// Algorithms a token may use.
    pub(crate) algorithms: AlgorithmSet,
    /// Allowed clock skew, in milliseconds.
    pub(crate) leeway_ms: i64,
    /// The required `iss`, if configured.
    pub(crate) issuer: Option<String>,
    /// Accepted audiences; a token must name one of them when the list is not empty.
    pub(crate) audiences: Vec<String>,
    /// The longest accepted `exp - now`, in milliseconds.
    pub(crate) max_lifetime_ms: Option<i64>,
}

/// A verified token, ready for the cache.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedJwt {
    pub(crate) machine: AuthenticatedMachine,
    pub(crate) expires_at_ms: i64,
}

/// An M2M JWT whose header has been checked but whose signature has not.
#[derive(Debug)]
pub(crate) struct UnverifiedJwt<'a> {
    pub(crate) header: JwtHeader,
    /// The claims verification reads and the decoded payload (or why it could not be decoded),
    /// not to be trusted before the signature is checked.
    claims: Result<(RegisteredClaims, Vec<u8>), InvalidToken>,
    /// The whole token.
    token: &'a str,
    signing_input: &'a str,
    signature: &'a str,
}

impl<'a> UnverifiedJwt<'a> {
    /// Splits a JWT-shaped token, decodes its header and payload, tells its kind (another kind of
    /// token is [`AuthError::TokenTypeMismatch`]) and checks its header.
    pub(crate) fn parse(token: &'a str, rules: &JwtRules) -> Result<Self, AuthError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(InvalidToken::Malformed)?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or(InvalidToken::Malformed)?;
        let header = decode(header)?;
        let header = read_header(&header)?;
        // A payload that is not a JSON object tells no kind; like any claim, it is only judged
        // after the signature.
        let claims = decode(payload).and_then(|payload| {
            let claims = RegisteredClaims::read(&payload)?;
            Ok((claims, payload))
        });
        if let Ok((claims, _)) = &claims {
            kind::require_machine_token(&header, claims).map_err(AuthError::TokenTypeMismatch)?;
        }
        Ok(Self {
            header: JwtHeader::parse(&header, rules)?,
            claims,
            token,
            signing_input,
            signature,
        })
    }

    /// The whole token.
    pub(crate) fn token(&self) -> &'a str {
        self.token
    }

    /// Checks the signature with `key`, then the claims at `now_ms` (Unix milliseconds).
    /// `on_signature_check` runs when the signature is actually checked.
    pub(crate) fn verify(
        self,
        key: &VerifyingKey,
        rules: &JwtRules,
        now_ms: i64,
        on_signature_check: impl FnOnce(),
    ) -> Result<VerifiedJwt, AuthError> {
        let algorithm = self.header.algorithm;
        if !key.supports(algorithm) {
            return Err(AuthError::InvalidToken(InvalidToken::KeyAlgorithmMismatch));
        }
        on_signature_check();
        // The largest signature is RSA-4096's 512 bytes; anything longer is not a signature.
        let mut signature = [0u8; 512];
        let signature = URL_SAFE_NO_PAD
            .decoded_length(self.signature.as_bytes())
            .ok()
            .and_then(|len| signature.get_mut(..len))
            .and_then(|out| {
                URL_SAFE_NO_PAD
                    .decode(self.signature.as_bytes(), out.as_out())
                    .ok()
            });
        if !signature.is_some_and(|signature| {
            key.verify(algorithm, self.signing_input.as_bytes(), signature)
        }) {
            return Err(AuthError::InvalidToken(InvalidToken::BadSignature));
        }
        let (claims, payload) = self.claims?;
        claims::machine_from_claims(claims, payload, rules, now_ms)
    }
}

/// Decodes a base64url segment (no padding, no stray bits) into a buffer of its exact length.
fn decode(segment: &str) -> Result<Vec<u8>, InvalidToken> {
    URL_SAFE_NO_PAD
        .decode_to_vec(segment)
        .map_err(|_| InvalidToken::Malformed)
}

fn read_header(decoded: &[u8]) -> Result<HeaderMembers<'_>, InvalidToken> {
    let mut header = HeaderMembers::default();
    read_members(decoded, &mut header)?;
    Ok(header)
}

/// Reads a decoded JSON object into `members`, repeated member names refused (RFC 7515 §4 and
/// RFC 7519 §4 allow it).
fn read_members<'de>(
    bytes: &'de [u8],
    members: &mut impl MemberReader<'de>,
) -> Result<(), InvalidToken> {
    strict_json::read_object(bytes, members).map_err(|error| match error {
        StrictJsonError::DuplicateMember => InvalidToken::DuplicateMember,
        StrictJsonError::Syntax | StrictJsonError::NotAnObject => InvalidToken::Malformed,
    })
}
