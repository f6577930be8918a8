use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::body::MachineAuthBody;
use super::decision::{Decision, admit, hide_credential};
use super::future::ResponseFuture;
use super::layer::LayerSettings;
use super::observe;
use super::rejection::rejection;

/// The service [`MachineAuthLayer`](super::MachineAuthLayer) wraps around an inner service.
///
/// ```
/// use tower::Layer;
/// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
///
/// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
/// let inner = tower::service_fn(|_: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
/// });
/// let mut service = MachineAuthLayer::new(verifier).layer(inner);
/// let _inner: &_ = service.get_ref();
/// let _inner: &mut _ = service.get_mut();
/// let _inner = service.into_inner();
/// # Ok::<(), tower_machine_auth::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MachineAuth<S> {
    inner: S,
    settings: Arc<LayerSettings>,
}

impl<S> MachineAuth<S> {
    pub(crate) fn new(inner: S, settings: Arc<LayerSettings>) -> Self {
        Self { inner, settings }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MachineAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<MachineAuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let span = observe::request_span(&request);
        let decision = self.settings.decide(&request, &span);
        hide_credential(&mut request);
        match decision {
            Decision::Pass(machine) => {
                let caller = admit(&mut request, machine);
                let future = {
                    let _entered = observe::enter(&span);
                    self.inner.call(request)
                };
                ResponseFuture::inner(future, caller, span)
            }
            Decision::Reject(error) => {
                let response = rejection(&error, &self.settings, request.headers());
                ResponseFuture::rejected(response, span)
            }
            Decision::Wait(token) => {
                // The ready service goes with the request; keep a fresh clone for later calls
                // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let settings = Arc::clone(&self.settings);
                let waiting_span = span.clone();
                let verification =
                    Box::pin(async move { settings.verify_waiting(token, &waiting_span).await });
                let settings = Arc::clone(&self.settings);
                ResponseFuture::verifying(verification, request, inner, settings, span)
            }
        }
    }
}
