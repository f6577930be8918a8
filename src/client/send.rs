//! The reqwest integration: send a request with machine A's token.

use http::StatusCode;
use http::header::AUTHORIZATION;

use super::{MachineTokenSource, SendError};

impl MachineTokenSource {
    /// Sends a reqwest request with the token as `Authorization: Bearer …` (replacing any
    /// `Authorization` it had). On a 401 the token is dropped (see [`reject`](Self::reject)) and
    /// the request is sent once more with a fresh token, if its body can be sent again (reqwest
    /// cannot clone a streaming body; such a request is not retried).
    ///
    /// The request must go over https, or plain http to a loopback host: another URL is refused
    /// with [`SendError::InsecureDestination`] before a token is made or anything is sent (see
    /// [`allow_insecure_http_to_any_host`](super::MachineTokenSourceBuilder::allow_insecure_http_to_any_host)).
    /// Errors never show the URL's user info.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = machine_auth_issuer::Issuer::builder(
    ///     machine_auth_issuer::IssuerConfig::demo()).build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let api_url = format!("http://{}", listener.local_addr()?);
    /// tokio::spawn(async move { axum::serve(listener, issuer.router()).await });
    /// use tower_machine_auth::client::MachineTokenSource;
    ///
    /// let source = MachineTokenSource::builder()
    ///     .api_url(&api_url)
    ///     .machine_secret_key("ak_demo_cron_service_do_not_use_in_production")
    ///     .build()?;
    /// let http = reqwest::Client::new();
    /// // Here the issuer's own API stands in for machine B.
    /// let response = source.send(http.get(format!("{api_url}/v1/jwks"))).await?;
    /// assert_eq!(response.status(), 401, "a machine token is not the instance key");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SendError> {
        let (client, request) = request.build_split();
        let mut request = request.map_err(without_credentials)?;
        self.check_destination(request.url())?;
        let token = self.token().await?;
        let replay = request.try_clone();
        request
            .headers_mut()
            .insert(AUTHORIZATION, token.authorization());
        let response = client.execute(request).await.map_err(without_credentials)?;
        if response.status() != StatusCode::UNAUTHORIZED || !self.reject(&token) {
            return Ok(response);
        }
        let Some(mut replay) = replay else {
            return Ok(response);
        };
        // The refusal is not read: let its connection go rather than hold it through the retry.
        drop(response);
        let fresh = self.token().await?;
        replay
            .headers_mut()
            .insert(AUTHORIZATION, fresh.authorization());
        Ok(client.execute(replay).await.map_err(without_credentials)?)
    }
}

/// `error` with no user info in the URL it carries.
fn without_credentials(mut error: reqwest::Error) -> reqwest::Error {
    if let Some(url) = error.url_mut() {
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    error
}
