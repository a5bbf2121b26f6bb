//! What the Entra ID and Okta replay tests share: the two example apps they run against, one
//! test per app, and reading the apps' group tables.
#![allow(dead_code)]

use super::{Sidecar, Store};

/// Which example app a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `examples/quickstart` on SQLite: `accounts`, `roles`, `account_roles`; hard delete.
    Quickstart,
    /// `examples/postgres` on PostgreSQL: `principals`, `user_emails`, `group_members`;
    /// users are soft-deleted.
    Helpdesk,
}

/// One test per app: `per_target!(name)` runs `async fn name(target)` as `name::sqlite` (the
/// quickstart) and `name::postgres` (the helpdesk, skipped when PostgreSQL is not installed).
macro_rules! per_target {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(crate::support::idp::Target::Quickstart).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(crate::support::idp::Target::Helpdesk).await
            }
        }
    )*};
}

/// The target's sidecar, or returns from the test (PostgreSQL not installed: skipped).
macro_rules! start_target {
    ($target:expr) => {
        match crate::support::idp::start($target).await {
            Some(s) => s,
            None => return,
        }
    };
}

/// The target's sidecar, or `None` when PostgreSQL is not installed.
pub async fn start(target: Target) -> Option<Sidecar> {
    match target {
        Target::Quickstart => Some(Sidecar::quickstart().await),
        Target::Helpdesk => Sidecar::example("postgres", Store::Postgres, None).await,
    }
}

/// A group's name in the app, or `None` when the row is gone.
pub async fn group_name(s: &Sidecar, t: Target, id: &str) -> Option<String> {
    let q = match t {
        Target::Quickstart => format!("SELECT name FROM roles WHERE id = {id}"),
        Target::Helpdesk => {
            format!("SELECT display_name FROM principals WHERE id = {id} AND kind = 'G'")
        }
    };
    s.rows(&q).await.into_iter().next().map(|mut r| r.remove(0))
}

/// A group's member ids in the app's join table, in id order.
pub async fn members(s: &Sidecar, t: Target, id: &str) -> Vec<String> {
    let q = match t {
        Target::Quickstart => {
            format!("SELECT account_id FROM account_roles WHERE role_id = {id} ORDER BY 1")
        }
        Target::Helpdesk => {
            format!("SELECT member_id FROM group_members WHERE group_id = {id} ORDER BY 1")
        }
    };
    s.rows(&q)
        .await
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect()
}

/// Owned strings, for comparing with rows.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
