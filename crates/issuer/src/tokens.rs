//! The M2M token resource and the create request, in Clerk's wire format.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::IssuerError;
use super::redact::Redacted;
use super::store::TokenRow;

/// The SHA-256 digest of an opaque token: what the store keeps and looks tokens up by.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Claims a create request cannot set: those the issuer sets on every M2M JWT, and those that
/// say who the token is for or on whose behalf it acts (`aud`, `azp`, `act`, `client_id`,
/// `sid`), which a machine could otherwise use to widen where its token is accepted, and the
/// header names `typ` and `cat`. Requests that set one are refused with 422.
///
/// ```
/// use machine_auth_issuer::{CreateTokenRequest, RESERVED_CLAIMS};
///
/// assert!(RESERVED_CLAIMS.contains(&"aud"));
/// let error = CreateTokenRequest::from_json(br#"{"claims":{"aud":"mch_billing"}}"#).unwrap_err();
/// assert_eq!(error.status(), 422);
/// ```
pub const RESERVED_CLAIMS: [&str; 14] = [
    "iss",
    "sub",
    "jti",
    "iat",
    "nbf",
    "exp",
    "scopes",
    "aud",
    "azp",
    "act",
    "client_id",
    "sid",
    "typ",
    "cat",
];

/// The most a create request's `claims` may take, as JSON, in bytes (16 KiB); more is refused
/// with 422.
pub const MAX_CLAIMS_BYTES: usize = 16 * 1024;

/// Clerk's `machine_to_machine_token` resource (times in Unix milliseconds).
///
/// ```
/// use machine_auth_issuer::M2mToken;
///
/// let token: M2mToken = serde_json::from_str(r#"{
///     "object": "machine_to_machine_token", "id": "mt_0123", "subject": "mch_cron",
///     "claims": null, "scopes": [], "revoked": false, "revocation_reason": null,
///     "expired": false, "expiration": null, "last_used_at": null,
///     "created_at": 1767222000000, "updated_at": 1767222000000
/// }"#)?;
/// assert_eq!(token.subject, "mch_cron");
/// assert!(token.token.is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// `Debug` shows `[redacted]` in place of the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct M2mToken {
    /// Always `"machine_to_machine_token"`.
    pub object: String,
    /// `mt_` and 32 hex digits (for a JWT, its `jti`).
    pub id: String,
    /// The machine the token was issued to.
    pub subject: String,
    /// The custom claims given at creation.
    pub claims: Option<Map<String, Value>>,
    /// The machine ids the token may reach.
    pub scopes: Vec<String>,
    /// The token itself; only in the reply to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Why it was revoked.
    pub revocation_reason: Option<String>,
    /// Whether it has expired.
    pub expired: bool,
    /// When it expires; `None` never.
    pub expiration: Option<i64>,
    /// When it was last verified.
    pub last_used_at: Option<i64>,
    /// When it was created.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

impl fmt::Debug for M2mToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("M2mToken")
            .field("object", &self.object)
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("claims", &self.claims)
            .field("scopes", &self.scopes)
            .field("token", &self.token.as_ref().map(|_| Redacted))
            .field("revoked", &self.revoked)
            .field("revocation_reason", &self.revocation_reason)
            .field("expired", &self.expired)
            .field("expiration", &self.expiration)
            .field("last_used_at", &self.last_used_at)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl M2mToken {
    pub(crate) const OBJECT: &'static str = "machine_to_machine_token";

    pub(crate) fn from_row(row: TokenRow, now_ms: i64) -> Self {
        Self {
            object: Self::OBJECT.to_owned(),
            expired: row.expiration.is_some_and(|exp| exp <= now_ms),
            id: row.id,
            subject: row.subject,
            claims: row.claims,
            scopes: row.scopes,
            token: None,
            revoked: row.revoked,
            revocation_reason: row.revocation_reason,
            expiration: row.expiration,
            last_used_at: row.last_used_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The format of a token to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormatParam {
    /// An opaque `mt_…` token, stored (as a digest) so that it can be revoked (Clerk's default).
    #[default]
    Opaque,
    /// A signed JWT, verified locally; not stored, so it cannot be revoked or listed.
    Jwt,
}

/// The body of `POST /m2m_tokens`.
///
/// ```
/// use machine_auth_issuer::{CreateTokenRequest, TokenFormatParam};
///
/// let request = CreateTokenRequest::from_json(br#"{"token_format":"jwt","seconds_until_expiration":60}"#)?;
/// assert_eq!(request.token_format, Some(TokenFormatParam::Jwt));
/// let error = CreateTokenRequest::from_json(br#"{"tokenFormat":"jwt"}"#).unwrap_err();
/// assert_eq!(error.status(), 400);
/// let error = CreateTokenRequest::from_json(br#"{"seconds_until_expiration":0}"#).unwrap_err();
/// assert_eq!(error.status(), 422);
/// # Ok::<(), machine_auth_issuer::IssuerError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateTokenRequest {
    /// The token's lifetime in seconds (at least 1, at most the issuer's
    /// [`max_token_ttl`](super::IssuerConfig::max_token_ttl)); `None` for the machine's default.
    pub seconds_until_expiration: Option<u64>,
    /// Custom claims (for a JWT, merged into its claims; they cannot set [`RESERVED_CLAIMS`],
    /// and take at most [`MAX_CLAIMS_BYTES`] as JSON).
    pub claims: Option<Map<String, Value>>,
    /// Opaque (default) or JWT.
    pub token_format: Option<TokenFormatParam>,
}

impl CreateTokenRequest {
    /// Parses a request body strictly: unknown fields and wrong types are 400 errors, values the
    /// issuer refuses (see [`check`](Self::check)) 422 errors; both name the field.
    pub fn from_json(body: &[u8]) -> Result<Self, IssuerError> {
        let body = json_object(body)?;
        let mut request = Self::default();
        for (name, value) in body {
            match name.as_str() {
                "seconds_until_expiration" => {
                    request.seconds_until_expiration = match value {
                        Value::Null => None,
                        Value::Number(n) => match n.as_u64() {
                            Some(seconds) => Some(seconds),
                            None => return Err(lifetime_not_whole()),
                        },
                        _ => return Err(wrong_type(&name, "a number or null")),
                    }
                }
                "claims" => {
                    request.claims = match value {
                        Value::Null => None,
                        Value::Object(claims) => Some(claims),
                        _ => return Err(wrong_type(&name, "an object or null")),
                    }
                }
                "token_format" => {
                    request.token_format = match value {
                        Value::Null => None,
                        Value::String(format) if format == "opaque" => {
                            Some(TokenFormatParam::Opaque)
                        }
                        Value::String(format) if format == "jwt" => Some(TokenFormatParam::Jwt),
                        _ => {
                            return Err(IssuerError::invalid_param(
                                "form_param_value_invalid",
                                &name,
                                "token_format must be \"opaque\" or \"jwt\"",
                            ));
                        }
                    }
                }
                "min_remaining_ttl_seconds" => {
                    return Err(IssuerError::invalid_param(
                        "form_param_unknown",
                        &name,
                        "min_remaining_ttl_seconds is not supported by this issuer: it stores only \
                         digests of opaque tokens, so it cannot hand an existing one out again",
                    ));
                }
                _ => return Err(unknown_param(&name)),
            }
        }
        request.check()?;
        Ok(request)
    }

    /// Checks the values (422 errors that name the field): the lifetime is at least one second,
    /// the claims set none of [`RESERVED_CLAIMS`] and take at most [`MAX_CLAIMS_BYTES`] as JSON.
    /// The issuer also checks the lifetime against its
    /// [`max_token_ttl`](super::IssuerConfig::max_token_ttl).
    ///
    /// ```
    /// use machine_auth_issuer::CreateTokenRequest;
    /// use serde_json::json;
    ///
    /// let request = CreateTokenRequest {
    ///     claims: json!({"act": {"sub": "mch_admin"}}).as_object().cloned(),
    ///     ..Default::default()
    /// };
    /// let error = request.check().unwrap_err();
    /// assert_eq!(error.status(), 422);
    /// assert!(error.to_string().contains("`act`"));
    /// ```
    pub fn check(&self) -> Result<(), IssuerError> {
        if self.seconds_until_expiration == Some(0) {
            return Err(lifetime_not_whole());
        }
        if let Some(claims) = &self.claims {
            if let Some(reserved) = RESERVED_CLAIMS
                .iter()
                .find(|claim| claims.contains_key(**claim))
            {
                return Err(IssuerError::unprocessable(
                    "claims",
                    format!(
                        "claims cannot set `{reserved}`: the issuer sets it, or it is reserved"
                    ),
                ));
            }
            let size = serde_json::to_vec(claims).map_or(usize::MAX, |json| json.len());
            if size > MAX_CLAIMS_BYTES {
                return Err(IssuerError::unprocessable(
                    "claims",
                    format!(
                        "claims must take at most {MAX_CLAIMS_BYTES} bytes as JSON (these take \
                         {size})"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn lifetime_not_whole() -> IssuerError {
    IssuerError::unprocessable(
        "seconds_until_expiration",
        "seconds_until_expiration must be a whole number of seconds, at least 1",
    )
}

/// The body of `POST /m2m_tokens/verify`: `{"token": …}`.
pub(crate) fn verify_request(body: &[u8]) -> Result<String, IssuerError> {
    let mut token = None;
    for (name, value) in json_object(body)? {
        match (name.as_str(), value) {
            ("token", Value::String(value)) => token = Some(value),
            ("token", _) => return Err(wrong_type("token", "a string")),
            (other, _) => return Err(unknown_param(other)),
        }
    }
    token.ok_or_else(|| {
        IssuerError::invalid_param("form_param_missing", "token", "token is required")
    })
}

/// The body of `POST /m2m_tokens/{id}/revoke`: `{"revocation_reason": …}` (or no body).
pub(crate) fn revoke_request(body: &[u8]) -> Result<Option<String>, IssuerError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut reason = None;
    for (name, value) in json_object(body)? {
        match (name.as_str(), value) {
            ("revocation_reason", Value::Null) => reason = None,
            ("revocation_reason", Value::String(value)) if value.len() <= 1024 => {
                reason = Some(value)
            }
            ("revocation_reason", _) => {
                return Err(wrong_type(
                    "revocation_reason",
                    "a string of at most 1024 bytes, or null",
                ));
            }
            (other, _) => return Err(unknown_param(other)),
        }
    }
    Ok(reason)
}

pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, IssuerError> {
    machine_auth_core::strict_json::parse_object(body).map_err(|error| {
        IssuerError::malformed_body(match error {
            machine_auth_core::strict_json::StrictJsonError::DuplicateMember => {
                "the request body repeats a field".to_owned()
            }
            _ => "the request body must be a JSON object".to_owned(),
        })
    })
}

pub(crate) fn wrong_type(name: &str, expected: &str) -> IssuerError {
    IssuerError::invalid_param(
        "form_param_format_invalid",
        name,
        format!("{name} must be {expected}"),
    )
}

pub(crate) fn unknown_param(name: &str) -> IssuerError {
    IssuerError::invalid_param(
        "form_param_unknown",
        name,
        format!("{name} is not a parameter of this endpoint"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(error: IssuerError) -> (u16, String, String) {
        let body = error.body();
        (
            error.status(),
            body["errors"][0]["code"].as_str().unwrap().to_owned(),
            body["errors"][0]["meta"]["param_name"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        )
    }

    #[test]
    fn create_requests_are_parsed_strictly() {
        let request = CreateTokenRequest::from_json(
            br#"{"seconds_until_expiration":null,"claims":{"team":"billing"},"token_format":"opaque"}"#,
        )
        .unwrap();
        assert_eq!(request.seconds_until_expiration, None);
        assert_eq!(request.token_format, Some(TokenFormatParam::Opaque));
        assert_eq!(
            CreateTokenRequest::from_json(b"{}").unwrap(),
            CreateTokenRequest::default()
        );

        for (body, param) in [
            (
                r#"{"seconds_until_expiration":0}"#,
                "seconds_until_expiration",
            ),
            (
                r#"{"seconds_until_expiration":1.5}"#,
                "seconds_until_expiration",
            ),
            (
                r#"{"seconds_until_expiration":-1}"#,
                "seconds_until_expiration",
            ),
            (
                r#"{"seconds_until_expiration":1e20}"#,
                "seconds_until_expiration",
            ),
            (r#"{"claims":{"sub":"mch_admin"}}"#, "claims"),
            (r#"{"claims":{"aud":"mch_admin"}}"#, "claims"),
        ] {
            let error = CreateTokenRequest::from_json(body.as_bytes()).unwrap_err();
            assert_eq!(
                param_of(error),
                (422, "form_param_value_invalid".to_owned(), param.to_owned()),
                "{body}"
            );
        }
        for (body, code, param) in [
            (
                r#"{"seconds_until_expiration":"60"}"#,
                "form_param_format_invalid",
                "seconds_until_expiration",
            ),
            (r#"{"claims":[1]}"#, "form_param_format_invalid", "claims"),
            (
                r#"{"token_format":"paseto"}"#,
                "form_param_value_invalid",
                "token_format",
            ),
            (
                r#"{"tokenFormat":"jwt"}"#,
                "form_param_unknown",
                "tokenFormat",
            ),
            (
                r#"{"min_remaining_ttl_seconds":10}"#,
                "form_param_unknown",
                "min_remaining_ttl_seconds",
            ),
        ] {
            let error = CreateTokenRequest::from_json(body.as_bytes()).unwrap_err();
            assert_eq!(
                param_of(error),
                (400, code.to_owned(), param.to_owned()),
                "{body}"
            );
        }
        for body in ["", "[]", "{", r#"{"claims":null,"claims":null}"#] {
            let error = CreateTokenRequest::from_json(body.as_bytes()).unwrap_err();
            assert_eq!(error.status(), 400, "{body}");
        }
    }

    #[test]
    fn verify_and_revoke_bodies() {
        assert_eq!(verify_request(br#"{"token":"mt_x"}"#).unwrap(), "mt_x");
        assert_eq!(
            param_of(verify_request(b"{}").unwrap_err()).1,
            "form_param_missing"
        );
        assert_eq!(
            param_of(verify_request(br#"{"token":1}"#).unwrap_err()).2,
            "token"
        );
        assert_eq!(revoke_request(b"").unwrap(), None);
        assert_eq!(
            revoke_request(br#"{"revocation_reason":"leaked"}"#)
                .unwrap()
                .as_deref(),
            Some("leaked")
        );
        assert_eq!(
            revoke_request(br#"{"revocation_reason":null}"#).unwrap(),
            None
        );
        assert_eq!(
            param_of(revoke_request(br#"{"reason":"x"}"#).unwrap_err()).1,
            "form_param_unknown"
        );
    }
}
