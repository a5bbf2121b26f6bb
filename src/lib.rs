//! scim-sidecar: a reverse-proxy sidecar that adds SCIM 2.0 to applications that have none.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod backend;
pub mod mapping;
pub mod proxy;
pub mod scim;
