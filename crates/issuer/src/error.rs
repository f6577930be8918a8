//! The issuer's errors, in Clerk's Backend API shape.

use serde_json::{Value, json};

/// An error of the issuer, answered as Clerk does:
/// `{"errors":[{"code", "message", "long_message", "meta"?}]}` with an HTTP status.
///
/// ```
/// use machine_auth_issuer::IssuerError;
///
/// let error = IssuerError::not_found("the token");
/// assert_eq!(error.status(), 404);
/// assert_eq!(error.body()["errors"][0]["code"], "resource_not_found");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{long_message}")]
pub struct IssuerError {
    status: u16,
    code: &'static str,
    message: String,
    long_message: String,
    param: Option<String>,
}

impl IssuerError {
    fn new(status: u16, code: &'static str, message: &str, long_message: String) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
            long_message,
            param: None,
        }
    }

    /// 400: a request parameter is missing, unknown, ill-typed or out of range.
    pub fn invalid_param(code: &'static str, param: &str, long_message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::new(400, code, "is invalid", long_message.into())
        }
    }

    /// 422: a request parameter has the right type but a value the issuer refuses (a reserved
    /// claim, claims too large, a lifetime out of range); `long_message` says why.
    ///
    /// ```
    /// use machine_auth_issuer::IssuerError;
    ///
    /// let error = IssuerError::unprocessable("claims", "claims cannot set `aud`");
    /// assert_eq!(error.status(), 422);
    /// assert_eq!(error.body()["errors"][0]["code"], "form_param_value_invalid");
    /// assert_eq!(error.body()["errors"][0]["meta"]["param_name"], "claims");
    /// ```
    pub fn unprocessable(param: &str, long_message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            ..Self::new(
                422,
                "form_param_value_invalid",
                "is invalid",
                long_message.into(),
            )
        }
    }

    /// 413: the request body is longer than the route takes (`limit` bytes).
    ///
    /// ```
    /// use machine_auth_issuer::IssuerError;
    ///
    /// let error = IssuerError::body_too_large(65536);
    /// assert_eq!(error.status(), 413);
    /// assert_eq!(error.code(), "request_body_too_large");
    /// ```
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "request_body_too_large",
            "Request body too large",
            format!("the request body must be at most {limit} bytes"),
        )
    }

    /// 409: the request conflicts with the issuer's state (e.g. retiring the current signing
    /// key).
    ///
    /// ```
    /// use machine_auth_issuer::IssuerError;
    ///
    /// let error = IssuerError::conflict("signing_key_in_use", "rotate first");
    /// assert_eq!((error.status(), error.code()), (409, "signing_key_in_use"));
    /// ```
    pub fn conflict(code: &'static str, long_message: impl Into<String>) -> Self {
        Self::new(409, code, "Conflict", long_message.into())
    }

    /// 400: the request body is not the JSON the endpoint takes.
    pub fn malformed_body(long_message: impl Into<String>) -> Self {
        Self::new(
            400,
            "request_body_invalid",
            "Request body invalid",
            long_message.into(),
        )
    }

    /// 401: the key is missing or wrong.
    pub fn unauthorized(code: &'static str, long_message: impl Into<String>) -> Self {
        Self::new(401, code, "Unauthorized request", long_message.into())
    }

    /// 401 for a secret key that is not one of the instance's, in the shape Clerk's SDK tests
    /// expect: the same sentence as `message` and `long_message`.
    pub fn invalid_key(code: &'static str, sentence: &'static str) -> Self {
        Self::new(401, code, sentence, sentence.to_owned())
    }

    /// 404: no such resource (or not one this key may see).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            404,
            "resource_not_found",
            "not found",
            format!("{what} was not found"),
        )
    }

    /// 404: no such route. Its code differs from [`not_found`](Self::not_found)'s, which is about
    /// a resource: a verifier with a wrong API path tells the two apart.
    pub fn route_not_found() -> Self {
        Self::new(
            404,
            "route_not_found",
            "route not found",
            "this route was not found: check the API URL's path".to_owned(),
        )
    }

    /// 500: the issuer failed (its store, its keys).
    pub fn internal(long_message: impl Into<String>) -> Self {
        Self::new(
            500,
            "internal_clerk_error",
            "Internal error",
            long_message.into(),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The error code, e.g. `"machine_secret_key_invalid"`.
    pub fn code(&self) -> &str {
        self.code
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "long_message": self.long_message,
        });
        if let Some(param) = &self.param {
            error["meta"] = json!({ "param_name": param });
        }
        json!({ "errors": [error] })
    }
}

impl From<rusqlite::Error> for IssuerError {
    fn from(error: rusqlite::Error) -> Self {
        tracing::error!(%error, "the issuer's token store failed");
        Self::internal(format!("the token store failed: {error}"))
    }
}

/// A configuration the issuer cannot run with: its `Display` text names the setting and what to
/// change.
///
/// ```
/// use machine_auth_issuer::IssuerConfig;
///
/// let error = IssuerConfig::from_json(r#"{"instance_secret_key": 5}"#).unwrap_err();
/// assert!(error.to_string().contains("instance_secret_key"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
