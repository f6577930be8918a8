//! [`MachineAuthorizer`]: the layer's decisions for `tower-http`'s
//! `AsyncRequireAuthorizationLayer`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use tower_http::auth::AsyncAuthorizeRequest;

use super::decision::{Decision, admit, hide_credential};
use super::layer::LayerSettings;
use super::observe;
use super::rejection::rejection;

/// [`MachineAuthLayer`](super::MachineAuthLayer)'s authentication as a `tower-http`
/// [`AsyncAuthorizeRequest`], for stacks that build their auth with
/// `tower_http::auth::AsyncRequireAuthorizationLayer` (feature `tower-http`). Get one from
/// [`MachineAuthLayer::authorizer`](super::MachineAuthLayer::authorizer): the same verifier,
/// route policy, mode and realm, the same `AuthenticatedMachine` in the request's extensions,
/// and the same rejections (JSON, or gRPC's form for gRPC requests).
///
/// The rejection body is the inner service's own body type, `ResBody`, built from the JSON text
/// (`From<String>`) or empty for gRPC (`Default`): Axum's body, `Full<Bytes>` and `String` are
/// both. [`MachineAuthLayer`](super::MachineAuthLayer) itself needs neither.
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use tower::ServiceExt;
/// use tower_http::auth::AsyncRequireAuthorizationLayer;
/// use tower_machine_auth::{AuthenticatedMachine, MachineAuthLayer, MachineVerifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
/// let authorizer = MachineAuthLayer::new(verifier).realm("cron").authorizer();
/// let app = Router::new()
///     .route("/whoami", get(|Extension(machine): Extension<AuthenticatedMachine>| async move {
///         machine.machine_id().to_string()
///     }))
///     .layer(AsyncRequireAuthorizationLayer::new(authorizer));
///
/// let response = app.oneshot(http::Request::get("/whoami").body(axum::body::Body::empty())?).await?;
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="cron""#);
/// # Ok(())
/// # }
/// ```
pub struct MachineAuthorizer<ResBody> {
    settings: Arc<LayerSettings>,
    body: PhantomData<fn() -> ResBody>,
}

impl<ResBody> MachineAuthorizer<ResBody> {
    pub(crate) fn new(settings: Arc<LayerSettings>) -> Self {
        Self {
            settings,
            body: PhantomData,
        }
    }
}

impl<ResBody> Clone for MachineAuthorizer<ResBody> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.settings))
    }
}

impl<ResBody> std::fmt::Debug for MachineAuthorizer<ResBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineAuthorizer")
            .field("settings", &self.settings)
            .finish()
    }
}

/// The future of [`MachineAuthorizer`]: the request to pass on, or the rejection.
pub type AuthorizeFuture<B, ResBody> =
    Pin<Box<dyn Future<Output = Result<Request<B>, Response<ResBody>>> + Send>>;

impl<B, ResBody> AsyncAuthorizeRequest<B> for MachineAuthorizer<ResBody>
where
    B: Send + 'static,
    ResBody: From<String> + Default + 'static,
{
    type RequestBody = B;
    type ResponseBody = ResBody;
    type Future = AuthorizeFuture<B, ResBody>;

    fn authorize(&mut self, mut request: Request<B>) -> Self::Future {
        let span = observe::request_span(&request);
        let decision = self.settings.decide(&request, &span);
        hide_credential(&mut request);
        let settings = Arc::clone(&self.settings);
        Box::pin(async move {
            let machine = match decision {
                Decision::Pass(machine) => Ok(machine),
                Decision::Reject(error) => Err(error),
                Decision::Wait(token) => settings.verify_waiting(token, &span).await.map(Some),
            };
            match machine {
                Ok(machine) => {
                    admit(&mut request, machine);
                    Ok(request)
                }
                Err(error) => Err(rejection(&error, &settings, request.headers())),
            }
        })
    }
}
