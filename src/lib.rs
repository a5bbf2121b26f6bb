//! scim-sidecar: a reverse-proxy sidecar that adds SCIM 2.0 (RFC 7643/7644) to applications
//! that have none.
//!
//! # Layout
//!
//! A request travels top-down through four layers, each knowing only the one below it:
//!
//! ```text
//! IdP ──► server (listener, TLS, router)  ── path outside /scim/v2 ──► proxy ──► the app
//!            │ auth (bearer tokens, JWTs, own OAuth tokens; read-only scope)
//!            ▼
//!         scim   (protocol: schemas, filters, PATCH, paging, errors, discovery)
//!            │ Provider trait
//!            ▼
//!         mapping (TOML mapping: attribute ⇄ field, value maps, filter → predicate)
//!            │ Table trait
//!            ▼
//!         backend (sql: SQLite and PostgreSQL, one shared flow) ──► the app's own tables
//! ```
//!
//! - [`server::router`] reads as the request flow; [`server`] owns listeners and shutdown.
//!   Plain HTTP/1.1 pass-through is relayed before hyper sees it ([`server::fast`]); the
//!   first request that needs more hands its connection to hyper and the router.
//! - [`scim`] is usable as a library with any store; [`backend`] is testable without HTTP.
//!   Each kind of store parses and checks its own part of the config ([`backend::kind`]).
//! - [`k8s`] adds the sidecar to Kubernetes pods: `inject` for manifests, `webhook` at
//!   admission. It only builds pod specs; nothing on the serving path uses it.
//! - [`config`] turns the TOML file into a validated [`config::Config`] (every problem at
//!   once, with file and line); [`app::build`], the composition root, opens the stores,
//!   checks the mappings against them and builds the swappable [`app::App`].
//! - [`admin`] serves `/healthz`, `/readyz` and `/metrics` ([`metrics`]) on its own port;
//!   [`reload`] swaps in a changed config file while the server runs; [`explain`] runs one
//!   request with the stores recording their statements and rolling back.
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod config;
pub mod explain;
pub mod http_client;
pub mod k8s;
pub mod mapping;
pub mod memory;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod scim;
pub mod server;
pub mod tls;
