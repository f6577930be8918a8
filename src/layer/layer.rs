use std::sync::Arc;

use tower::Layer;

use super::policy::RoutePolicy;
use super::rejection::RejectionHook;
use super::{AuthMode, MachineAuth};
use crate::error::{AuthError, ConfigError};
use crate::machine::{AcceptedTokens, MachineId};
use crate::verifier::MachineVerifier;

/// The realm of `WWW-Authenticate` challenges unless set with [`MachineAuthLayer::realm`]. It is
/// also the realm of rejections that Axum builds from an [`AuthError`](crate::AuthError) outside
/// the layer (the [`AuthenticatedMachine`](crate::AuthenticatedMachine) extractor's, for one).
///
/// ```
/// use tower_machine_auth::layer::DEFAULT_REALM;
///
/// assert_eq!(DEFAULT_REALM, "api");
/// ```
pub const DEFAULT_REALM: &str = "api";

/// The verifier and settings shared by every service a layer makes: one reference count for a
/// service's clone to write (Tower services are cloned for every request, by every thread).
#[derive(Debug, Clone)]
pub(crate) struct LayerSettings {
    pub(crate) verifier: MachineVerifier,
    pub(crate) policy: RoutePolicy,
    pub(crate) mode: AuthMode,
    pub(crate) realm: String,
    pub(crate) accepted: AcceptedTokens,
    /// Whether gRPC requests get gRPC rejections.
    pub(crate) grpc_rejections: bool,
    /// Builds the other rejections, instead of [`AuthError::to_response`](crate::AuthError::to_response).
    pub(crate) rejection_hook: Option<RejectionHook>,
}

/// Authenticates machine requests; see the [module docs](crate::layer) for an Axum example.
///
/// Requests without a valid machine token are answered by the layer (401, 400, 403 or 503, see
/// [`AuthError`](crate::AuthError)) and never reach the inner service; the others reach it with
/// an [`AuthenticatedMachine`](crate::AuthenticatedMachine) in their extensions. Under
/// [`AuthMode::Optional`], requests without a bearer credential also reach it, with no identity.
///
/// - A token is read only from `Authorization: Bearer <token>`; a request that also has an
///   `access_token` query parameter is rejected (400).
/// - The `Authorization` header is marked sensitive before the request goes on, so inner
///   services do not print it in `Debug` output.
/// - A JWT is verified without waiting, except when a JWKS has no key for the token's `kid` yet
///   (an unknown `kid`, or the first fetch still running): then the request may wait for a fetch
///   (see [`MachineVerifier`]). An opaque token waits for its introspection call (one call for
///   concurrent requests with the same token).
/// - Cloning is cheap: the verifier and the settings are shared.
///
/// Each setter replaces the value set before.
///
/// ```
/// use tower::{Layer, ServiceExt};
/// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
/// let inner = tower::service_fn(|_: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
/// });
/// let service = MachineAuthLayer::new(verifier).layer(inner);
/// let response = service.oneshot(http::Request::new(String::new())).await?;
/// assert_eq!(response.status(), 401);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MachineAuthLayer {
    settings: Arc<LayerSettings>,
}

impl MachineAuthLayer {
    /// A layer that requires a valid machine token on every request: [`AuthMode::Required`], every
    /// machine admitted, no required scopes, realm [`DEFAULT_REALM`].
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 60;
    /// let claims = serde_json::json!({"sub": "mch_cron", "exp": exp, "scopes": "mch_reports"});
    /// let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)?;
    /// let inner = tower::service_fn(|request: http::Request<String>| async move {
    ///     let machine = request.extensions().get::<AuthenticatedMachine>().unwrap();
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(machine.machine_id().to_string()))
    /// });
    /// let request = http::Request::builder()
    ///     .header("authorization", format!("Bearer {token}"))
    ///     .body(String::new())?;
    /// let response = MachineAuthLayer::new(verifier).layer(inner).oneshot(request).await?;
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.body().as_inner().map(String::as_str), Some("mch_cron"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(verifier: MachineVerifier) -> Self {
        Self {
            settings: Arc::new(LayerSettings {
                verifier,
                policy: RoutePolicy::default(),
                mode: AuthMode::Required,
                realm: DEFAULT_REALM.to_owned(),
                accepted: AcceptedTokens::Any,
                grpc_rejections: true,
                rejection_hook: None,
            }),
        }
    }

    /// Sets the mode: [`AuthMode::Required`] (the default) or [`AuthMode::Optional`].
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{AuthMode, MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let layer = MachineAuthLayer::new(verifier).mode(AuthMode::Optional);
    /// let response = layer.layer(inner).oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(response.status(), 200); // no credential: passed on, with no identity
    /// # Ok(())
    /// # }
    /// ```
    pub fn mode(mut self, mode: AuthMode) -> Self {
        Arc::make_mut(&mut self.settings).mode = mode;
        self
    }

    /// Shorthand for `mode(AuthMode::Optional)`: requests without a bearer credential (no
    /// `Authorization` header, or another scheme) pass with no identity; requests with a malformed
    /// or invalid one are still rejected.
    ///
    /// The rules of [`allow_machines`](Self::allow_machines) and
    /// [`require_scopes`](Self::require_scopes) apply only to requests that carry a token: a
    /// request without one passes them.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let service = MachineAuthLayer::new(verifier).optional().layer(inner);
    /// let anonymous = http::Request::new(String::new());
    /// assert_eq!(service.clone().oneshot(anonymous).await?.status(), 200);
    /// let invalid = http::Request::builder()
    ///     .header("authorization", "Bearer not.a.jwt")
    ///     .body(String::new())?;
    /// assert_eq!(service.oneshot(invalid).await?.status(), 401);
    /// # Ok(())
    /// # }
    /// ```
    pub fn optional(self) -> Self {
        self.mode(AuthMode::Optional)
    }

    /// Admits only these machines (others get 403 `insufficient-scope`), compared exactly with the
    /// token's `sub`. Replaces any list set before. By default every machine is admitted.
    ///
    /// Fails with a [`ConfigError`] if an id is not a machine id (see
    /// [`MachineId::is_valid`](crate::MachineId::is_valid)), or if the list is empty (a route that
    /// admits no machine is almost certainly a mistake).
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 60;
    /// let claims = serde_json::json!({"sub": "mch_cron", "exp": exp, "scopes": "mch_reports"});
    /// let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// assert!(MachineAuthLayer::new(verifier.clone()).allow_machines(["user_123"]).is_err());
    ///
    /// let layer = MachineAuthLayer::new(verifier).allow_machines(["mch_billing"])?;
    /// let request = http::Request::builder()
    ///     .header("authorization", format!("Bearer {token}")) // a token of mch_cron
    ///     .body(String::new())?;
    /// assert_eq!(layer.layer(inner).oneshot(request).await?.status(), 403);
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow_machines<I, S>(mut self, machine_ids: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let ids = machine_ids
            .into_iter()
            .map(|id| {
                MachineId::parse(id.as_ref()).ok_or_else(|| {
                    ConfigError::new(format!(
                        "`{}` is not a machine id: machine ids are `mch_` followed by ASCII letters, digits or `_`",
                        id.as_ref().escape_debug()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(ConfigError::new(
                "allow_machines needs at least one machine id; to admit every machine, do not call it",
            ));
        }
        Arc::make_mut(&mut self.settings).policy.allowed_machines = Some(ids);
        Ok(self)
    }

    /// Admits this machine, besides any admitted before: the infallible form of
    /// [`allow_machines`](Self::allow_machines), for ids already checked when their
    /// [`MachineId`] was made. Once any machine is admitted this way or by `allow_machines`, the
    /// others get 403 `insufficient-scope`.
    ///
    /// ```
    /// use tower_machine_auth::{MachineAuthLayer, MachineId, MachineVerifier};
    ///
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let billing = MachineId::parse("mch_billing").expect("a machine id");
    /// let reports = MachineId::parse("mch_reports").expect("a machine id");
    /// let layer = MachineAuthLayer::new(verifier).allow_machine(billing).allow_machine(reports);
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn allow_machine(mut self, machine_id: MachineId) -> Self {
        Arc::make_mut(&mut self.settings)
            .policy
            .allowed_machines
            .get_or_insert_with(Vec::new)
            .push(machine_id);
        self
    }

    /// Requires every one of these scopes (others get 403 `insufficient-scope`, with the required
    /// scopes in the challenge's `scope` parameter). Scopes are compared exactly with
    /// [`AuthenticatedMachine::scopes`](crate::AuthenticatedMachine::scopes) and not validated.
    /// Replaces any list set before; an empty list (the default) requires nothing.
    ///
    /// For Clerk tokens the scopes are the machine ids the caller may reach, so a server usually
    /// requires its own.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../../tests/data/rsa_private.pem"))?;
    /// let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 60;
    /// let claims = serde_json::json!({"sub": "mch_cron", "exp": exp, "scopes": "mch_reports"});
    /// let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let layer = MachineAuthLayer::new(verifier).require_scopes(["mch_payroll"]);
    /// let request = http::Request::builder()
    ///     .header("authorization", format!("Bearer {token}")) // scopes: mch_reports
    ///     .body(String::new())?;
    /// let response = layer.layer(inner).oneshot(request).await?;
    /// assert_eq!(response.status(), 403);
    /// assert_eq!(
    ///     response.headers()["www-authenticate"],
    ///     r#"Bearer realm="api", error="insufficient_scope", scope="mch_payroll""#
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn require_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Arc::make_mut(&mut self.settings).policy.required_scopes =
            scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The `realm` of the layer's `WWW-Authenticate` challenges (default [`DEFAULT_REALM`],
    /// `"api"`). `"` and `\` are escaped; characters other than printable ASCII and spaces are
    /// dropped.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let layer = MachineAuthLayer::new(verifier).realm("cron");
    /// let response = layer.layer(inner).oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="cron""#);
    /// # Ok(())
    /// # }
    /// ```
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.settings).realm = realm.into();
        self
    }

    /// Which token formats this layer accepts (default [`AcceptedTokens::Any`]: every format
    /// the verifier can verify), like Clerk's `acceptsToken`. Others get 401
    /// `token-type-mismatch`; with [`AcceptedTokens::Jwt`] no introspection call is ever made.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{AcceptedTokens, MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let layer = MachineAuthLayer::new(verifier).accept(AcceptedTokens::Opaque);
    /// let request = http::Request::builder()
    ///     .header("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    ///     .body(String::new())?;
    /// let response = layer.layer(inner).oneshot(request).await?;
    /// assert_eq!(response.status(), 401); // a JWT, where only opaque tokens are accepted
    /// # Ok(())
    /// # }
    /// ```
    pub fn accept(mut self, accepted: AcceptedTokens) -> Self {
        Arc::make_mut(&mut self.settings).accepted = accepted;
        self
    }

    /// Whether a gRPC request (`Content-Type: application/grpc…`) is rejected the way gRPC
    /// reports errors (on by default): HTTP 200 with `grpc-status` and `grpc-message` headers
    /// and no body (see [`AuthError::to_grpc_response`](crate::AuthError::to_grpc_response)),
    /// so that gRPC clients see `UNAUTHENTICATED`, `PERMISSION_DENIED` or `UNAVAILABLE`. Off,
    /// gRPC requests get the same HTTP rejections as the others.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let grpc_call = || {
    ///     http::Request::post("/cron.v1.CronService/Run")
    ///         .header("content-type", "application/grpc")
    ///         .body(String::new())
    /// };
    /// let layer = MachineAuthLayer::new(verifier);
    /// let response = layer.clone().layer(inner.clone()).oneshot(grpc_call()?).await?;
    /// assert_eq!((response.status(), &response.headers()["grpc-status"]), (http::StatusCode::OK, &"16".parse()?));
    ///
    /// let response = layer.grpc_rejections(false).layer(inner).oneshot(grpc_call()?).await?;
    /// assert_eq!(response.status(), 401);
    /// # Ok(())
    /// # }
    /// ```
    pub fn grpc_rejections(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.settings).grpc_rejections = enabled;
        self
    }

    /// Builds the layer's rejections with `build` instead of the JSON body of
    /// [`AuthError::to_response`]: your API's own error shape, for one. `build` gets the
    /// [`AuthError`] (its [`reason`](AuthError::reason), [`status`](AuthError::status) and
    /// `Display` message) and returns the response, with the status it sets (use
    /// `error.status()`; a status below 400, such as the 200 of a new response, is replaced by
    /// the error's).
    ///
    /// Whatever the body, the layer then sets the headers of the response contract: the
    /// `WWW-Authenticate` challenge and `Cache-Control: no-store` (replacing any), for 503 a
    /// `Retry-After` (unless `build` set one), and puts the error in the response's extensions.
    /// gRPC requests still get gRPC's rejections (see [`grpc_rejections`](Self::grpc_rejections)).
    /// [`problem_details`](Self::problem_details) is a ready-made `build`.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{AuthError, MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let layer = MachineAuthLayer::new(verifier).on_rejection(|error: &AuthError| {
    ///     let body = serde_json::json!({"code": error.reason(), "detail": error.to_string()});
    ///     let mut response = http::Response::new(body.to_string());
    ///     *response.status_mut() = error.status();
    ///     response
    /// });
    /// let response = layer.layer(inner).oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="api""#);
    /// let body = http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes();
    /// assert_eq!(body, r#"{"code":"token-missing","detail":"no bearer token: send `Authorization: Bearer <token>`"}"#);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_rejection<F, B>(mut self, build: F) -> Self
    where
        F: Fn(&AuthError) -> http::Response<B> + Send + Sync + 'static,
        B: Into<String>,
    {
        Arc::make_mut(&mut self.settings).rejection_hook = Some(RejectionHook::new(build));
        self
    }

    /// Answers rejections with RFC 9457 problem documents (`application/problem+json`, see
    /// [`AuthError::to_problem_response`]) instead of the default JSON body; the headers are
    /// the same. Shorthand for an [`on_rejection`](Self::on_rejection) hook.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let layer = MachineAuthLayer::new(verifier).realm("cron").problem_details();
    /// let response = layer.layer(inner).oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["content-type"], "application/problem+json");
    /// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="cron""#);
    /// # Ok(())
    /// # }
    /// ```
    pub fn problem_details(self) -> Self {
        // The realm is the layer's: it sets the challenge after the hook.
        self.on_rejection(|error| error.to_problem_response::<String>(""))
    }

    /// This layer's authentication for `tower-http`'s `AsyncRequireAuthorizationLayer`, with
    /// rejections in the inner service's body type `ResBody` (feature `tower-http`; see
    /// [`MachineAuthorizer`](super::MachineAuthorizer)).
    ///
    /// ```
    /// use tower_http::auth::AsyncRequireAuthorizationLayer;
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let layer = AsyncRequireAuthorizationLayer::new(
    ///     MachineAuthLayer::new(verifier).authorizer::<axum::body::Body>(),
    /// );
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    #[cfg(feature = "tower-http")]
    pub fn authorizer<ResBody>(&self) -> super::MachineAuthorizer<ResBody> {
        super::MachineAuthorizer::new(Arc::clone(&self.settings))
    }
}

impl<S> Layer<S> for MachineAuthLayer {
    type Service = MachineAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MachineAuth::new(inner, Arc::clone(&self.settings))
    }
}
