//! The outgoing Tower layer: attaches machine A's token to every request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use tower::{BoxError, Layer, Service};

use super::MachineTokenSource;

/// A Tower layer for clients (Hyper, a Tonic `Channel` with the `tonic` feature, or any
/// `Service<http::Request<B>>`) that sends machine A's token as `Authorization: Bearer …` on every
/// request, replacing any `Authorization` header (for gRPC, the `authorization` metadata).
///
/// If machine B answers 401 (or gRPC's `UNAUTHENTICATED`), the token is dropped (see [`MachineTokenSource::reject`]) and the
/// request is sent once more with a fresh token, when its body can be sent again
/// ([`ReplayBody`]: buffered bodies yes, streams no). The service's error is a [`BoxError`]
/// holding the inner service's error or a [`TokenError`](super::TokenError).
///
/// A request whose URI names a scheme must go over https, or plain http to a loopback host:
/// another is refused with an [`InsecureDestination`](super::InsecureDestination) error before a
/// token is made, unless the source allows it
/// ([`allow_insecure_http_to_any_host`](super::MachineTokenSourceBuilder::allow_insecure_http_to_any_host)).
/// A URI without a scheme (`/path`, origin-form) is left to the inner service's connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let issuer = machine_auth_issuer::Issuer::builder(
///     machine_auth_issuer::IssuerConfig::demo()).build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let api_url = format!("http://{}", listener.local_addr()?);
/// tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
/// use http_body_util::Full;
/// use tower::{Layer, Service};
/// use tower_machine_auth::client::{MachineTokenLayer, MachineTokenSource};
///
/// let source = MachineTokenSource::builder()
///     .api_url(&api_url)
///     .machine_secret_key("ak_demo_cron_service_do_not_use_in_production")
///     .build()?;
/// // Any client service; this one answers with what it was sent.
/// let client = tower::service_fn(|request: http::Request<Full<bytes::Bytes>>| async move {
///     let sent = request.headers()["authorization"].as_bytes().starts_with(b"Bearer ey");
///     Ok::<_, std::convert::Infallible>(http::Response::new(sent))
/// });
/// let mut client = MachineTokenLayer::new(source).layer(client);
/// let response = client.call(http::Request::new(Full::default())).await?;
/// assert!(*response.body(), "a JWT was attached");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MachineTokenLayer {
    source: MachineTokenSource,
    retry_unauthorized: bool,
}

impl MachineTokenLayer {
    /// Attaches `source`'s tokens; retries a 401 once with a fresh token.
    pub fn new(source: MachineTokenSource) -> Self {
        Self {
            source,
            retry_unauthorized: true,
        }
    }

    /// Whether a 401 is retried once with a fresh token (default `true`). Without the retry, a
    /// 401 still drops the token, so the next request gets a fresh one.
    ///
    /// ```
    /// let source = tower_machine_auth::client::MachineTokenSource::builder()
    ///     .machine_secret_key("ak_x").build()?;
    /// use tower_machine_auth::client::MachineTokenLayer;
    ///
    /// let layer = MachineTokenLayer::new(source).retry_unauthorized(false);
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn retry_unauthorized(mut self, retry: bool) -> Self {
        self.retry_unauthorized = retry;
        self
    }
}

impl<S> Layer<S> for MachineTokenLayer {
    type Service = AttachMachineToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttachMachineToken {
            inner,
            source: self.source.clone(),
            retry_unauthorized: self.retry_unauthorized,
        }
    }
}

/// The service of [`MachineTokenLayer`].
#[derive(Debug, Clone)]
pub struct AttachMachineToken<S> {
    inner: S,
    source: MachineTokenSource,
    retry_unauthorized: bool,
}

/// The future of [`AttachMachineToken`].
pub type ResponseFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, B, ResBody> Service<Request<B>> for AttachMachineToken<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: ReplayBody + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<Response<ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is not ready; the ready one goes into the future.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        let retry_unauthorized = self.retry_unauthorized;
        let destination = source.check_uri(request.uri());
        Box::pin(async move {
            destination?;
            let token = source.token().await?;
            let replay = retry_unauthorized
                .then(|| replay_request(&request))
                .flatten();
            request
                .headers_mut()
                .insert(AUTHORIZATION, token.authorization());
            let response = inner.call(request).await.map_err(Into::into)?;
            if !refused(&response) || !source.reject(&token) {
                return Ok(response);
            }
            let Some(mut replay) = replay else {
                return Ok(response);
            };
            // The refusal is not read: let its connection go rather than hold it through the retry.
            drop(response);
            let fresh = source.token().await?;
            replay
                .headers_mut()
                .insert(AUTHORIZATION, fresh.authorization());
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            inner.call(replay).await.map_err(Into::into)
        })
    }
}

/// Whether machine B refused the token: HTTP 401, or gRPC's `UNAUTHENTICATED` (16) in a
/// trailers-only response.
fn refused<B>(response: &Response<B>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        || response
            .headers()
            .get("grpc-status")
            .is_some_and(|status| status == "16")
}

/// A copy of `request` to send again, if its body can be replayed.
fn replay_request<B: ReplayBody>(request: &Request<B>) -> Option<Request<B>> {
    let mut copy = Request::new(request.body().replay()?);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// A request body that may be sent again after a 401: buffered bodies can, streams cannot.
///
/// Implemented for the common body types; implement it for your own (return `None` for a
/// stream).
///
/// ```
/// use http_body_util::{BodyExt, Full};
/// use tower_machine_auth::client::ReplayBody;
///
/// let buffered = Full::new(bytes::Bytes::from_static(b"{}"));
/// assert!(buffered.replay().is_some());
/// assert!(buffered.boxed().replay().is_none(), "a boxed body may be a stream");
/// ```
pub trait ReplayBody: Sized {
    /// A copy to send again, or `None` if the body cannot be replayed.
    fn replay(&self) -> Option<Self>;
}

impl<D: Clone> ReplayBody for http_body_util::Full<D> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for http_body_util::Empty<D> {
    fn replay(&self) -> Option<Self> {
        Some(Self::new())
    }
}

impl<S> ReplayBody for http_body_util::StreamBody<S> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

impl ReplayBody for String {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for Bytes {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for () {
    fn replay(&self) -> Option<Self> {
        Some(())
    }
}

/// Buffered reqwest bodies replay; streaming ones do not.
impl ReplayBody for reqwest::Body {
    fn replay(&self) -> Option<Self> {
        self.as_bytes()
            .map(|bytes| Self::from(Bytes::copy_from_slice(bytes)))
    }
}

/// Tonic's body is a stream of messages: never replayed (a refused call drops its token, and the
/// next call gets a fresh one).
#[cfg(feature = "tonic")]
impl ReplayBody for tonic::body::Body {
    fn replay(&self) -> Option<Self> {
        None
    }
}

/// Axum's body may be a stream: never replayed.
#[cfg(feature = "axum")]
impl ReplayBody for axum_core::body::Body {
    fn replay(&self) -> Option<Self> {
        None
    }
}
