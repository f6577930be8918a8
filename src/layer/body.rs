//! [`MachineAuthBody`]: the inner service's response body, or the layer's rejection.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of [`MachineAuth`](super::MachineAuth): the inner service's body for
    /// requests that reached it, or the layer's own for rejections (a small JSON document, or
    /// nothing for a gRPC rejection, whose status travels in headers).
    ///
    /// Any body whose data is [`Bytes`] works: Axum's, Tonic's, `http_body_util::Full<Bytes>`,
    /// `BoxBody<Bytes, E>`, `String`. Errors are the inner body's own; a rejection never fails.
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::from("ok")))
    /// });
    /// let response = MachineAuthLayer::new(verifier).layer(inner).oneshot(http::Request::new(())).await?;
    /// assert_eq!(response.status(), 401);
    /// let body = response.into_body().collect().await?.to_bytes();
    /// assert!(body.starts_with(br#"{"error":"unauthorized""#));
    /// # Ok(())
    /// # }
    /// ```
    pub struct MachineAuthBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Rejection { #[pin] body: Full<Bytes> },
    }
}

impl<B> MachineAuthBody<B> {
    /// The inner service's body.
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A rejection's body.
    pub(crate) fn rejection(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Rejection { body },
        }
    }

    /// The inner service's body, or `None` for a rejection.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// use tower_machine_auth::{MachineAuthLayer, MachineVerifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = MachineVerifier::from_pem(include_str!("../../tests/data/rsa_public.pem"))?;
    /// let inner = tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
    /// });
    /// let service = MachineAuthLayer::new(verifier).optional().layer(inner);
    /// let response = service.oneshot(http::Request::new(())).await?;
    /// assert_eq!(response.body().as_inner().map(String::as_str), Some("ok"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn as_inner(&self) -> Option<&B> {
        match &self.kind {
            Kind::Inner { body } => Some(body),
            Kind::Rejection { .. } => None,
        }
    }
}

impl<B> Body for MachineAuthBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            // A rejection's body cannot fail.
            KindProj::Rejection { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { body } => body.size_hint(),
        }
    }
}

impl<B> std::fmt::Debug for MachineAuthBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Rejection { .. } => "Rejection",
        };
        f.debug_tuple("MachineAuthBody").field(&kind).finish()
    }
}
