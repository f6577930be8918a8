//! The integration tests of `tower-machine-auth`, one binary: real keys, real loopback servers,
//! the real layer. `common` holds the shared helpers (also used by the issuer's and the
//! command's tests).

mod common;

mod cache;
mod clerk_sdk;
mod client;
mod config;
mod contract;
mod credential_faults;
mod examples;
mod grpc;
mod health;
mod jwks;
mod key_sources;
mod logging;
mod opaque;
mod opaque_faults;
mod opaque_logs;
mod parity;
mod ready;
mod rejection_hook;
mod request_logs;
mod soak;
mod startup_logs;
mod test_util;
mod threats;
mod tower_http_layers;
mod url_credentials;
mod vectors;
