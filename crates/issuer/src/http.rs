//! The issuer's HTTP API: the subset of Clerk's Backend API that machine tokens use.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::tokens::{revoke_request, verify_request};
use super::{CreateTokenRequest, Issuer, IssuerError, TemplateFields, TokenQuery};

/// The longest body the `m2m_tokens` routes read (64 KiB); longer is a 413.
const MAX_TOKEN_BODY_BYTES: usize = 64 * 1024;

impl Issuer {
    /// The HTTP API, with the paths, bodies, statuses and JSON of Clerk's Backend API:
    ///
    /// | route | key | success |
    /// |---|---|---|
    /// | `GET /v1/jwks` | instance | 200 `{"keys": […]}` |
    /// | `GET /.well-known/jwks.json` | none | 200 `{"keys": […]}` |
    /// | `POST /m2m_tokens` | machine | 201 token resource with `token` |
    /// | `POST /m2m_tokens/verify` | machine or instance | 200 token resource |
    /// | `POST /m2m_tokens/{id}/revoke` | machine (its own tokens) or instance | 200 token resource |
    /// | `GET /m2m_tokens` | machine (its own tokens) or instance | 200 `{"m2m_tokens": […], "total_count": n}` |
    /// | `POST /v1/jwt_templates`, `GET` (list) | instance | 200 template resource / array |
    /// | `GET`, `PATCH`, `DELETE /v1/jwt_templates/{id}` | instance | 200 template resource / `{"deleted": true}` |
    /// | `POST /v1/sessions/{session_id}/tokens/{template_name}` | instance | 200 `{"object": "token", "jwt": …}` |
    ///
    /// The `m2m_tokens` routes answer with and without the `/v1` prefix, and read bodies of at
    /// most 64 KiB. Keys are sent as `Authorization: Bearer <key>`. Errors are `{"errors":
    /// [{code, message, long_message, meta?}]}`: 400 for bad JSON, unknown fields, wrong types or
    /// out-of-range query values (with `meta.param_name`), 422 `form_param_value_invalid` for a
    /// create request's refused values (a reserved claim, claims over 16 KiB, a lifetime under a
    /// second or over the configuration's `max_token_ttl`), 401 for a wrong or missing key, 404
    /// for an unknown token, 413 `request_body_too_large` for a longer body, 500 when the store
    /// fails.
    ///
    /// Each request is logged once at `info` (method, path escaped, status, time); bodies and
    /// keys never are.
    ///
    /// ```
    /// use axum::body::Body;
    /// use axum::http::Request;
    /// use machine_auth_issuer::{Issuer, IssuerConfig};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = Issuer::builder(IssuerConfig::demo()).build()?;
    /// let request = Request::get("/.well-known/jwks.json").body(Body::empty())?;
    /// let response = issuer.router().oneshot(request).await?;
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["content-type"], "application/json");
    /// # Ok(())
    /// # }
    /// ```
    pub fn router(&self) -> Router {
        let m2m = Router::new()
            .route("/m2m_tokens", post(create).get(list))
            .route("/m2m_tokens/verify", post(verify))
            .route("/m2m_tokens/{id}/revoke", post(revoke))
            .layer(DefaultBodyLimit::max(MAX_TOKEN_BODY_BYTES));
        Router::new()
            .route("/v1/jwks", get(jwks))
            .route(
                "/v1/jwt_templates",
                post(create_template).get(list_templates),
            )
            .route(
                "/v1/jwt_templates/{id}",
                get(get_template)
                    .patch(update_template)
                    .delete(delete_template),
            )
            .route(
                "/v1/sessions/{session_id}/tokens/{template_name}",
                post(session_token),
            )
            .route("/.well-known/jwks.json", get(public_jwks))
            .merge(m2m.clone())
            .nest("/v1", m2m)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn(super::request_log::log_request))
            .with_state(self.clone())
    }
}

fn error_response(error: &IssuerError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(error.body())).into_response()
}

fn reply(status: StatusCode, result: Result<Value, IssuerError>) -> Response {
    match result {
        Ok(body) => (status, axum::Json(body)).into_response(),
        Err(error) => error_response(&error),
    }
}

/// The Bearer key of a request, or a 401 with `code`.
fn bearer_key<'a>(headers: &'a HeaderMap, code: &'static str) -> Result<&'a str, IssuerError> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            IssuerError::unauthorized(code, "send the secret key as `Authorization: Bearer <key>`")
        })
}

/// The body of a token route, or a 413 when it is longer than the route reads.
fn token_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, IssuerError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            IssuerError::body_too_large(MAX_TOKEN_BODY_BYTES)
        } else {
            IssuerError::malformed_body("the request body could not be read")
        }
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, IssuerError> {
    serde_json::to_value(value).map_err(|_| IssuerError::internal("cannot encode the reply"))
}

async fn jwks(State(issuer): State<Issuer>, headers: HeaderMap) -> Response {
    let result = bearer_key(&headers, "clerk_key_invalid").and_then(|key| {
        if issuer.is_instance_secret_key(key) {
            Ok(issuer.jwks())
        } else {
            Err(IssuerError::unauthorized(
                "clerk_key_invalid",
                "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is \
                 correct.",
            ))
        }
    });
    reply(StatusCode::OK, result)
}

async fn public_jwks(State(issuer): State<Issuer>) -> Response {
    reply(StatusCode::OK, Ok(issuer.jwks()))
}

async fn create(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = bearer_key(&headers, "machine_secret_key_invalid").and_then(|key| {
        issuer.machine(key)?;
        let request = CreateTokenRequest::from_json(&token_body(body)?)?;
        to_json(&issuer.create_token(key, request)?)
    });
    reply(StatusCode::CREATED, result)
}

async fn verify(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = bearer_key(&headers, "authentication_invalid").and_then(|key| {
        issuer.caller(key)?;
        let token = verify_request(&token_body(body)?)?;
        to_json(&issuer.verify_token(key, &token)?)
    });
    reply(StatusCode::OK, result)
}

async fn revoke(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = bearer_key(&headers, "authentication_invalid").and_then(|key| {
        issuer.caller(key)?;
        let reason = revoke_request(&token_body(body)?)?;
        to_json(&issuer.revoke_token(key, &id, reason.as_deref())?)
    });
    reply(StatusCode::OK, result)
}

async fn list(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = bearer_key(&headers, "authentication_invalid").and_then(|key| {
        issuer.caller(key)?;
        let (tokens, total) =
            issuer.list_tokens(key, token_query(query.as_deref().unwrap_or(""))?)?;
        Ok(json!({ "m2m_tokens": to_json(&tokens)?, "total_count": total }))
    });
    reply(StatusCode::OK, result)
}

/// The query of `GET /m2m_tokens`, strictly: unknown or repeated parameters are errors.
fn token_query(query: &str) -> Result<TokenQuery, IssuerError> {
    let mut parsed = TokenQuery::default();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if !seen.insert(name.clone()) {
            return Err(IssuerError::invalid_param(
                "form_param_duplicate",
                &name,
                format!("{name} is given more than once"),
            ));
        }
        let flag = |value: &str| match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(IssuerError::invalid_param(
                "form_param_format_invalid",
                &name,
                format!("{name} must be true or false"),
            )),
        };
        let number = |value: &str, range: std::ops::RangeInclusive<u32>| {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    IssuerError::invalid_param(
                        "form_param_value_invalid",
                        &name,
                        format!(
                            "{name} must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                })
        };
        match &*name {
            "subject" => parsed.subject = Some(value.into_owned()),
            "revoked" => parsed.include_revoked = flag(&value)?,
            "expired" => parsed.include_expired = flag(&value)?,
            "limit" => parsed.limit = number(&value, 1..=100)?,
            "offset" => parsed.offset = number(&value, 0..=u32::MAX)?,
            _ => {
                return Err(IssuerError::invalid_param(
                    "form_param_unknown",
                    &name,
                    format!("{name} is not a parameter of this endpoint"),
                ));
            }
        }
    }
    Ok(parsed)
}

async fn create_template(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = instance_key(&issuer, &headers).and_then(|key| {
        to_json(&issuer.create_template(key, TemplateFields::from_json(&body, true)?)?)
    });
    reply(StatusCode::OK, result)
}

async fn list_templates(State(issuer): State<Issuer>, headers: HeaderMap) -> Response {
    let result = instance_key(&issuer, &headers).and_then(|key| to_json(&issuer.templates(key)?));
    reply(StatusCode::OK, result)
}

async fn get_template(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result =
        instance_key(&issuer, &headers).and_then(|key| to_json(&issuer.template(key, &id)?));
    reply(StatusCode::OK, result)
}

async fn update_template(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = instance_key(&issuer, &headers).and_then(|key| {
        to_json(&issuer.update_template(key, &id, TemplateFields::from_json(&body, false)?)?)
    });
    reply(StatusCode::OK, result)
}

async fn delete_template(
    State(issuer): State<Issuer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = instance_key(&issuer, &headers).and_then(|key| issuer.delete_template(key, &id));
    reply(StatusCode::OK, result)
}

async fn session_token(
    State(issuer): State<Issuer>,
    Path((session_id, template_name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = instance_key(&issuer, &headers).and_then(|key| {
        if !body.iter().all(u8::is_ascii_whitespace) {
            let fields = super::tokens::json_object(&body)?;
            if let Some(name) = fields.keys().next() {
                return Err(super::tokens::unknown_param(name));
            }
        }
        let origin = headers
            .get(axum::http::header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        let jwt = issuer.session_token(key, &session_id, &template_name, origin)?;
        Ok(json!({"object": "token", "jwt": jwt}))
    });
    reply(StatusCode::OK, result)
}

/// The instance secret key of a request, checked.
fn instance_key<'a>(issuer: &Issuer, headers: &'a HeaderMap) -> Result<&'a str, IssuerError> {
    let key = bearer_key(headers, "authentication_invalid")?;
    if issuer.is_instance_secret_key(key) {
        Ok(key)
    } else {
        Err(IssuerError::unauthorized(
            "authentication_invalid",
            "this endpoint needs the instance secret key (sk_…)",
        ))
    }
}

async fn not_found() -> Response {
    error_response(&IssuerError::route_not_found())
}

async fn method_not_allowed() -> Response {
    let mut response = error_response(&IssuerError::not_found("this method on this route"));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_are_strict() {
        let query =
            token_query("subject=mch_a&revoked=false&expired=true&limit=100&offset=5").unwrap();
        assert_eq!(
            query,
            TokenQuery {
                subject: Some("mch_a".into()),
                include_revoked: false,
                include_expired: true,
                limit: 100,
                offset: 5
            }
        );
        assert_eq!(token_query("").unwrap(), TokenQuery::default());
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "offset=-1",
            "revoked=yes",
            "order=asc",
            "limit=1&limit=2",
        ] {
            let error = token_query(bad).unwrap_err();
            assert_eq!(error.status(), 400, "{bad}");
            assert!(
                error.body()["errors"][0]["meta"]["param_name"].is_string(),
                "{bad}"
            );
        }
    }
}
