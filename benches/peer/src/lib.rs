//! A benchmark, not a library: `tower-machine-auth`'s `MachineAuthLayer` against
//! [`jwt-authorizer`](https://crates.io/crates/jwt-authorizer) 0.15, the JWT layer for Axum
//! 0.7, on the same route and the same RS256 tokens.
//!
//! ```sh
//! cargo bench -p machine-auth-peer-bench
//! ```
//!
//! The measurements and the ratios printed after them are described in `benches/peer.rs`. The
//! crate is unpublished and lives apart from the published ones so that Axum 0.7 and
//! jwt-authorizer's dependencies (jsonwebtoken 9, reqwest 0.12) stay out of their builds: it is
//! not a default member of the workspace and cargo-deny leaves it out of its graph.
