use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower::Service;
use tracing::Span;

use super::body::MachineAuthBody;
use super::decision::admit;
use super::layer::LayerSettings;
use super::observe;
use super::rejection::rejection;
use crate::error::AuthError;
use crate::machine::AuthenticatedMachine;

type Verification = Pin<Box<dyn Future<Output = Result<AuthenticatedMachine, AuthError>> + Send>>;

pin_project! {
    /// The response future of [`MachineAuth`](super::MachineAuth).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
        // The request's span, entered while the inner service works.
        span: Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        // Waiting for a key fetch or an introspection before the token can be verified. Boxed:
        // the request and the inner service would otherwise make every response future, the
        // cache hits' too, as large as this rare state.
        Verifying {
            waiting: Box<Waiting<S, ReqBody>>,
        },
        Inner {
            #[pin]
            future: S::Future,
            // The caller, for the response's extensions.
            caller: Option<AuthenticatedMachine>,
        },
        Rejected {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

/// A request waiting for its token to be verified, with the service that will answer it.
pub(crate) struct Waiting<S, ReqBody> {
    verification: Verification,
    request: Option<Request<ReqBody>>,
    inner: S,
    settings: Arc<LayerSettings>,
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn inner(
        future: S::Future,
        caller: Option<AuthenticatedMachine>,
        span: Span,
    ) -> Self {
        Self {
            state: State::Inner { future, caller },
            span,
        }
    }

    pub(crate) fn rejected(response: Response<Full<Bytes>>, span: Span) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
            span,
        }
    }

    pub(crate) fn verifying(
        verification: Verification,
        request: Request<ReqBody>,
        inner: S,
        settings: Arc<LayerSettings>,
        span: Span,
    ) -> Self {
        Self {
            state: State::Verifying {
                waiting: Box::new(Waiting {
                    verification,
                    request: Some(request),
                    inner,
                    settings,
                }),
            },
            span,
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<MachineAuthBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.as_mut().project();
        let _entered = observe::enter(this.span);
        loop {
            match this.state.as_mut().project() {
                StateProj::Verifying { waiting } => {
                    let Waiting {
                        verification,
                        request,
                        inner,
                        settings,
                    } = &mut **waiting;
                    let verified = ready!(verification.as_mut().poll(cx));
                    let mut request = request.take().expect("future polled after completion");
                    match verified {
                        Ok(machine) => {
                            let caller = admit(&mut request, Some(machine));
                            let future = inner.call(request);
                            this.state.set(State::Inner { future, caller });
                        }
                        Err(error) => {
                            let response = rejection(&error, settings, request.headers());
                            this.state.set(State::Rejected { response: None });
                            return Poll::Ready(Ok(response.map(MachineAuthBody::rejection)));
                        }
                    }
                }
                StateProj::Inner { future, caller } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(caller) = caller.take() {
                        response.extensions_mut().insert(caller);
                    }
                    return Poll::Ready(Ok(response.map(MachineAuthBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().expect("future polled after completion");
                    return Poll::Ready(Ok(response.map(MachineAuthBody::rejection)));
                }
            }
        }
    }
}
