//! The small base shared by `tower-machine-auth` (the middleware) and `machine-auth-issuer` (the
//! local issuer): the machine id grammar, the clock, strict JSON parsing and Clerk's protocol
//! constants.
//!
//! It exists so that the issuer does not depend on the middleware: both depend on this crate, the
//! middleware re-exports what its users need ([`MachineId`], [`clock`]), and the types are the
//! same on both sides. Depend on `tower-machine-auth` or `machine-auth-issuer` rather than on this
//! crate directly.
//!
//! ```
//! use machine_auth_core::MachineId;
//!
//! let id = MachineId::parse("mch_reports_api").unwrap();
//! assert_eq!(id.as_str(), "mch_reports_api");
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, rust_2018_idioms)]

pub mod clerk;
pub mod clock;
mod machine_id;
pub mod strict_json;

pub use machine_id::{MAX_MACHINE_ID_LEN, MachineId};
