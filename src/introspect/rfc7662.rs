//! RFC 7662 OAuth 2.0 token introspection.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use serde_json::{Map, Value};

use super::{
    IntrospectedToken, IntrospectionFuture, Introspector, MAX_REPLY_BYTES, call_failed,
    credentials_rejected, endpoint_not_found, reply_rejected,
};
use crate::clock::from_unix_millis;
use crate::error::{AuthError, ConfigError, InvalidToken};
use crate::expected_claims::check_issuer_and_audiences;
use crate::fetch::{self, FetchError, Timeouts};
use machine_auth_core::strict_json;

/// Members of a reply that become fields of the token rather than claims.
const MAPPED_MEMBERS: [&str; 7] = ["active", "sub", "exp", "iat", "nbf", "iss", "jti"];
/// 9999-12-31T23:59:59Z: later times are not valid NumericDates here.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;
/// The `token_type` values of access tokens, compared ignoring ASCII case: the bearer type of
/// RFC 6750 (what RFC 7662 §2.2 suggests), the `token_type_hint` name, and the URN of RFC 8693
/// for access tokens (used with RFC 9068).
const ACCESS_TOKEN_TYPES: [&str; 3] = [
    "bearer",
    "access_token",
    "urn:ietf:params:oauth:token-type:access_token",
];

/// Verifies opaque tokens at an RFC 7662 introspection endpoint.
///
/// The request is `POST` with `token=…&token_type_hint=access_token` (form-encoded), authenticated
/// with HTTP Basic client credentials or a bearer credential. A reply is valid only if `active`
/// is the JSON boolean `true`; then `sub` (else `client_id`) is the machine id, `jti` the token
/// id, `scope` (split on spaces) the scopes, `exp`/`iat`/`nbf` the token's times, `iss` its issuer,
/// and every other member (including `client_id`, `scope`, `aud` and `token_type`) a claim. `iss`
/// and `aud` are checked strictly when configured.
///
/// Only access tokens are accepted: a reply whose `token_type` is present must name one
/// (`Bearer`, `access_token` or `urn:ietf:params:oauth:token-type:access_token`, in any case), so
/// an active refresh token, ID token or `DPoP`-bound token is `token-invalid`.
/// [`allow_token_types`](Rfc7662IntrospectorBuilder::allow_token_types) admits other types.
///
/// - `active: false`: `token-invalid`;
/// - a reply that is not an introspection response, or is larger than 64 KiB: `token-invalid`,
///   with a warning in the log (what the reply holds depends on the token, which the caller
///   chose); so is any status but 200, 401, 403, 404, 408, 429 and 5xx;
/// - 401 or 403: the endpoint refused our client credentials: 503 and an error in the log;
/// - 404: no introspection endpoint at that URL (an RFC 7662 endpoint answers 200 about every
///   token): 503 and an error in the log;
/// - 5xx, 408, 429, a redirect, a timeout, or no connection: 503.
///
/// ```
/// use tower_machine_auth::introspect::Rfc7662Introspector;
///
/// let introspector = Rfc7662Introspector::builder("https://auth.example.com/oauth2/introspect")
///     .client_credentials("my-api", "client-secret")
///     .issuer("https://auth.example.com")
///     .build()?;
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
pub struct Rfc7662Introspector {
    url: Url,
    shown: String,
    authorization: Option<HeaderValue>,
    issuer: Option<String>,
    audiences: Vec<String>,
    token_types: Vec<String>,
    client: reqwest::Client,
}

impl fmt::Debug for Rfc7662Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc7662Introspector")
            .field("url", &self.shown)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("token_types", &self.token_types)
            .finish_non_exhaustive()
    }
}

impl Rfc7662Introspector {
    /// Starts an introspector for the endpoint at `url` (https, or http on a loopback host).
    pub fn builder(url: impl Into<String>) -> Rfc7662IntrospectorBuilder {
        Rfc7662IntrospectorBuilder {
            url: url.into(),
            authorization: None,
            issuer: None,
            audiences: Vec::new(),
            token_types: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Configures an [`Rfc7662Introspector`].
///
/// ```
/// use std::time::Duration;
/// use tower_machine_auth::introspect::Rfc7662Introspector;
///
/// let introspector = Rfc7662Introspector::builder("https://auth.example.com/introspect")
///     .bearer_credential("resource-server-token")
///     .audiences(["https://api.example.com"])
///     .http_timeouts(Duration::from_millis(500), Duration::from_secs(2))
///     .build()?;
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct Rfc7662IntrospectorBuilder {
    url: String,
    authorization: Option<String>,
    issuer: Option<String>,
    audiences: Vec<String>,
    token_types: Vec<String>,
    timeouts: Timeouts,
}

impl fmt::Debug for Rfc7662IntrospectorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc7662IntrospectorBuilder")
            .field("url", &fetch::redacted(&self.url))
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("token_types", &self.token_types)
            .finish()
    }
}

impl Rfc7662IntrospectorBuilder {
    /// Authenticates with HTTP Basic client credentials (RFC 6749 §2.3.1: both parts
    /// form-encoded before base64).
    pub fn client_credentials(mut self, client_id: &str, client_secret: &str) -> Self {
        let encode =
            |part: &str| url::form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", encode(client_id), encode(client_secret));
        self.authorization = Some(format!("Basic {}", STANDARD.encode(pair)));
        self
    }

    /// Authenticates with `Authorization: Bearer <credential>`.
    pub fn bearer_credential(mut self, credential: &str) -> Self {
        self.authorization = Some(format!("Bearer {}", credential.trim()));
        self
    }

    /// Requires `iss` to be exactly this string.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to name one of these audiences.
    pub fn audiences<I: IntoIterator<Item = S>, S: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Also accepts tokens whose `token_type` is one of these (compared ignoring ASCII case),
    /// besides access tokens (`Bearer`, `access_token`,
    /// `urn:ietf:params:oauth:token-type:access_token`), which are always accepted. Replaces the
    /// types given before.
    ///
    /// ```
    /// use tower_machine_auth::introspect::Rfc7662Introspector;
    ///
    /// let introspector = Rfc7662Introspector::builder("https://auth.example.com/introspect")
    ///     .allow_token_types(["urn:example:token-type:machine"])
    ///     .build()?;
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn allow_token_types<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        token_types: I,
    ) -> Self {
        self.token_types = token_types.into_iter().map(Into::into).collect();
        self
    }

    /// Connect and total timeouts of each call (default 2 s and 5 s).
    pub fn http_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.timeouts = Timeouts { connect, total };
        self
    }

    /// Checks the configuration and builds the introspector.
    pub fn build(self) -> Result<Rfc7662Introspector, ConfigError> {
        let url = fetch::checked_url(&self.url, "the introspection URL")?;
        self.timeouts.check("the introspection")?;
        let authorization = self
            .authorization
            .map(|value| {
                let mut value = HeaderValue::try_from(value).map_err(|_| {
                    ConfigError::new(
                        "the introspection credentials hold characters not allowed in a header",
                    )
                })?;
                value.set_sensitive(true);
                Ok::<_, ConfigError>(value)
            })
            .transpose()?;
        Ok(Rfc7662Introspector {
            shown: fetch::shown(&url),
            url,
            authorization,
            issuer: self.issuer,
            audiences: self.audiences,
            token_types: self.token_types,
            client: fetch::client(self.timeouts)?,
        })
    }
}

impl Introspector for Rfc7662Introspector {
    fn introspect<'a>(&'a self, token: &'a str) -> IntrospectionFuture<'a> {
        Box::pin(async move {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .append_pair("token_type_hint", "access_token")
                .finish();
            let mut request = self
                .client
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .body(form);
            if let Some(authorization) = &self.authorization {
                request = request.header(AUTHORIZATION, authorization.clone());
            }
            let (status, body) = fetch::send_retrying_connect(request, MAX_REPLY_BYTES)
                .await
                .map_err(|error| call_failed(&self.shown, &error))?;
            match status.as_u16() {
                200 => self
                    .token(&body)
                    .unwrap_or_else(|error| Err(reply_rejected(&self.shown, &error))),
                401 | 403 => Err(credentials_rejected(
                    &self.shown,
                    "the introspection client credentials",
                )),
                // RFC 7662 answers 200 for every token it is asked about.
                404 => Err(endpoint_not_found(
                    &self.shown,
                    "the introspection URL's path is probably wrong",
                )),
                code => Err(call_failed(&self.shown, &FetchError::Status(code))),
            }
        })
    }
}

impl Rfc7662Introspector {
    /// The token from a 200 reply: valid data, or the reason the token is not valid.
    pub(crate) fn token(
        &self,
        body: &[u8],
    ) -> Result<Result<IntrospectedToken, AuthError>, FetchError> {
        let invalid = |what: &str| FetchError::Invalid(what.to_owned());
        let mut reply = strict_json::parse_object(body)
            .map_err(|_| invalid("not an introspection response"))?;
        match reply.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                return Ok(Err(AuthError::InvalidToken(
                    InvalidToken::NotActiveAtIssuer,
                )));
            }
            _ => return Err(invalid("`active` is not a boolean")),
        }
        let string = |reply: &Map<String, Value>, name: &str| match reply.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(_) => Err(invalid(&format!("`{name}` is not a string"))),
        };
        let token_type = string(&reply, "token_type")?;
        let subject = string(&reply, "sub")?.or(string(&reply, "client_id")?);
        let issuer = string(&reply, "iss")?;
        let token_id = string(&reply, "jti")?.unwrap_or_default();
        let scopes = string(&reply, "scope")?
            .map(|scope| {
                scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let audiences: Vec<&str> = match reply.get("aud") {
            None => Vec::new(),
            Some(Value::String(aud)) => vec![aud],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| invalid("`aud` is not a string or list"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("`aud` is not a string or list")),
        };
        let date = |name: &str| match reply.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .filter(|s| s.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(s))
                .map(|seconds| Some((seconds * 1000.0).floor() as i64))
                .ok_or_else(|| invalid(&format!("`{name}` is not a NumericDate"))),
        };
        let (expires_at_ms, issued_at_ms, not_before_ms) =
            (date("exp")?, date("iat")?, date("nbf")?);

        if token_type.is_some_and(|token_type| !self.accepts_token_type(&token_type)) {
            return Ok(Err(AuthError::InvalidToken(InvalidToken::NotAnAccessToken)));
        }
        if let Err(mismatch) = check_issuer_and_audiences(
            self.issuer.as_deref(),
            &self.audiences,
            issuer.as_deref(),
            &audiences,
        ) {
            return Ok(Err(AuthError::ClaimMismatch(mismatch)));
        }
        for name in MAPPED_MEMBERS {
            reply.remove(name);
        }
        Ok(Ok(IntrospectedToken {
            subject: subject.unwrap_or_default(),
            token_id,
            scopes,
            claims: reply,
            expires_at: expires_at_ms.map(from_unix_millis),
            issued_at: issued_at_ms.map(from_unix_millis),
            not_before: not_before_ms.map(from_unix_millis),
            issuer,
        }))
    }

    /// Whether a reply's `token_type` names an access token or a type allowed by configuration.
    fn accepts_token_type(&self, token_type: &str) -> bool {
        ACCESS_TOKEN_TYPES
            .iter()
            .copied()
            .chain(self.token_types.iter().map(String::as_str))
            .any(|accepted| accepted.eq_ignore_ascii_case(token_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ClaimMismatch;
    use serde_json::json;

    fn introspector() -> Rfc7662Introspector {
        Rfc7662Introspector::builder("https://auth.example.com/introspect")
            .build()
            .unwrap()
    }

    fn parse(
        introspector: &Rfc7662Introspector,
        reply: Value,
    ) -> Result<Result<IntrospectedToken, AuthError>, FetchError> {
        introspector.token(reply.to_string().as_bytes())
    }

    #[test]
    fn maps_an_active_reply() {
        let reply = json!({
            "active": true, "sub": "mch_a", "client_id": "cron", "scope": "read  write",
            "exp": 1_767_225_600, "iat": 1_767_222_000, "nbf": 1_767_222_000.5,
            "iss": "https://auth.example.com", "aud": ["api"], "jti": "abc", "username": "x"
        });
        let token = parse(&introspector(), reply).unwrap().unwrap();
        assert_eq!(token.subject, "mch_a");
        assert_eq!(token.token_id, "abc");
        assert_eq!(token.scopes, ["read", "write"]);
        assert_eq!(token.expires_at, Some(from_unix_millis(1_767_225_600_000)));
        assert_eq!(token.not_before, Some(from_unix_millis(1_767_222_000_500)));
        assert_eq!(token.issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(
            Value::Object(token.claims),
            json!({"client_id": "cron", "scope": "read  write", "aud": ["api"], "username": "x"})
        );
    }

    #[test]
    fn client_id_stands_in_for_a_missing_sub() {
        let token = parse(
            &introspector(),
            json!({"active": true, "client_id": "mch_cron"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(token.subject, "mch_cron");
    }

    #[test]
    fn only_the_json_boolean_true_is_active() {
        assert_eq!(
            parse(&introspector(), json!({"active": false})).unwrap(),
            Err(AuthError::InvalidToken(InvalidToken::NotActiveAtIssuer))
        );
        for reply in [
            json!({"active": "true"}),
            json!({"active": 1}),
            json!({"sub": "mch_a"}),
            json!([true]),
        ] {
            assert!(parse(&introspector(), reply.clone()).is_err(), "{reply}");
        }
        assert!(
            introspector()
                .token(br#"{"active":true,"active":false}"#)
                .is_err()
        );
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let strict = Rfc7662Introspector::builder("https://auth.example.com/introspect")
            .issuer("https://auth.example.com")
            .audiences(["api"])
            .build()
            .unwrap();
        let good = json!({"active": true, "sub": "mch_a", "iss": "https://auth.example.com", "aud": "api"});
        assert!(parse(&strict, good.clone()).unwrap().is_ok());
        let mut wrong_iss = good.clone();
        wrong_iss["iss"] = json!("https://evil.example.com");
        assert_eq!(
            parse(&strict, wrong_iss).unwrap(),
            Err(AuthError::ClaimMismatch(ClaimMismatch::Issuer))
        );
        let mut no_aud = good;
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            parse(&strict, no_aud).unwrap(),
            Err(AuthError::ClaimMismatch(ClaimMismatch::Audience))
        );
    }

    #[test]
    fn only_access_token_types_are_accepted_unless_allowed() {
        let allowing = Rfc7662Introspector::builder("https://auth.example.com/introspect")
            .allow_token_types(["urn:example:machine"])
            .build()
            .unwrap();
        let reply =
            |token_type: &str| json!({"active": true, "sub": "mch_a", "token_type": token_type});
        let not_access = Err(AuthError::InvalidToken(InvalidToken::NotAnAccessToken));
        for token_type in [
            "Bearer",
            "bearer",
            "ACCESS_TOKEN",
            "urn:ietf:params:oauth:token-type:access_token",
        ] {
            assert!(
                parse(&introspector(), reply(token_type)).unwrap().is_ok(),
                "{token_type}"
            );
        }
        for token_type in [
            "refresh_token",
            "N_A",
            "DPoP",
            "",
            "Bearer ",
            "urn:example:machine",
        ] {
            assert_eq!(
                parse(&introspector(), reply(token_type)).unwrap(),
                not_access,
                "{token_type}"
            );
        }
        assert!(
            parse(&allowing, reply("URN:EXAMPLE:MACHINE"))
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            parse(&allowing, reply("refresh_token")).unwrap(),
            not_access
        );
    }

    #[test]
    fn ill_typed_members_are_unusable() {
        for reply in [
            json!({"active": true, "token_type": 1}),
            json!({"active": true, "sub": 5}),
            json!({"active": true, "exp": "soon"}),
            json!({"active": true, "exp": -1}),
            json!({"active": true, "aud": 5}),
            json!({"active": true, "scope": ["a"]}),
        ] {
            assert!(parse(&introspector(), reply.clone()).is_err(), "{reply}");
        }
    }

    #[test]
    fn basic_credentials_are_form_encoded_then_base64() {
        let builder =
            Rfc7662Introspector::builder("https://a.example").client_credentials("my id", "p:ss");
        assert_eq!(
            builder.authorization.as_deref(),
            Some(format!("Basic {}", STANDARD.encode("my+id:p%3Ass")).as_str())
        );
    }
}
