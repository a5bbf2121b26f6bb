//! The integration tests: one binary (linking is the expensive part on two cores), one module
//! per area. Each test starts the real sidecar on 127.0.0.1:0 in front of a real HTTP app and
//! a fresh SQLite database (see `tests/support`).

#[path = "../support/mod.rs"]
#[macro_use]
mod support;

mod admin;
mod audit;
mod auth;
mod cli;
mod connections;
mod contract;
mod derived;
mod discovery;
mod edge;
mod entra;
mod errors;
mod explain;
mod filters;
mod groups;
mod identity;
mod kubernetes;
mod ldap;
mod ldap_ad;
mod mapping;
mod mariadb;
mod okta;
mod patch;
mod phpbb;
mod postgres;
mod proxy;
mod redmine;
mod reload;
mod rendering;
mod replicas;
mod rest;
mod schema_fuzz;
mod swap;
mod tls;
mod uniqueness;
mod users;
mod values;
mod wordpress;
