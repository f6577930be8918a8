//! The local Clerk-compatible issuer with the demo configuration, on a loopback port: shared by
//! the examples that need no account (`quickstart`, `grpc_cron`, `hyper_server`).

use std::error::Error;

use machine_auth_issuer::{Issuer, IssuerConfig};

/// Starts the demo issuer on `127.0.0.1` (a port the system picks); its URL and configuration.
pub async fn start_demo_issuer() -> Result<(String, IssuerConfig), Box<dyn Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer_url = format!("http://{}", listener.local_addr()?);
    let config = IssuerConfig::demo();
    let issuer = Issuer::builder(config.clone())
        .issuer_url(&issuer_url)
        .build()?;
    let router = issuer.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((issuer_url, config))
}
