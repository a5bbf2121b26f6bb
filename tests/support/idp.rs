//! What the Entra ID and Okta replay tests share: the example apps they run against, one
//! test per app, what each app has a place for, and reading the apps' group tables.
#![allow(dead_code)]

use serde_json::Value;

use super::{Sidecar, Store};

/// The enterprise extension's URN.
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Which example app a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `examples/quickstart` on SQLite: `accounts`, `roles`, `account_roles`; hard delete.
    Quickstart,
    /// `examples/postgres` on PostgreSQL: `principals`, `user_emails`, `group_members`;
    /// users are soft-deleted.
    Helpdesk,
    /// The same helpdesk app on MariaDB (`tests/fixtures/postgres.mysql.sql`), through the
    /// same mapping file.
    HelpdeskMariadb,
    /// `examples/redmine` on PostgreSQL: Redmine's `users` (users and groups, by `type`),
    /// `email_addresses`, `groups_users`, user custom fields in `custom_values`; users are
    /// locked on delete.
    Redmine,
    /// `examples/phpbb` on PostgreSQL: phpBB's `phpbb_users`, `phpbb_groups`,
    /// `phpbb_user_group`; users are deactivated on delete. No names, phones or titles.
    Phpbb,
    /// `examples/ldap` on slapd: inetOrgPerson entries under `ou=people`, groupOfNames under
    /// `ou=groups`, `active` in `employeeType`; users are deleted. No mobile, department
    /// or manager.
    Ldap,
    /// `examples/rest` through the legacy admin API (`examples/legacy-admin-api`): its
    /// `users`, `groups` and `members` tables, read directly; users are deleted. No display
    /// name, phones, title, department, employee number or manager.
    Rest,
    /// `examples/active-directory` on a Samba AD domain controller: `user` entries under
    /// `OU=Users`, `group` entries under `OU=Groups`, ids that are objectGUIDs, `active` as
    /// `userAccountControl`'s ACCOUNTDISABLE bit; users are deleted. Accounts created without
    /// a password are created disabled. No mobile or manager.
    ActiveDirectory,
}

impl Target {
    /// Whether the app has a place for this attribute, as the replays name them:
    /// `userName`, `name.givenName`, `name.familyName`, `displayName`, `emails.work`,
    /// `phoneNumbers.work`, `phoneNumbers.mobile`, `title`, `department`, `employeeNumber`,
    /// `manager`, `externalId`, `active`. What an app has no place for is ignored on input
    /// and never read back.
    pub fn stores(self, attr: &str) -> bool {
        match self {
            Target::Quickstart | Target::Helpdesk | Target::HelpdeskMariadb => true,
            // A Redmine name is shown from firstname and lastname; there is no display name.
            Target::Redmine => attr != "displayName",
            Target::Phpbb => matches!(attr, "userName" | "emails.work" | "externalId" | "active"),
            Target::Ldap => !matches!(attr, "department" | "manager"),
            Target::ActiveDirectory => attr != "manager",
            Target::Rest => matches!(
                attr,
                "userName"
                    | "name.givenName"
                    | "name.familyName"
                    | "emails.work"
                    | "externalId"
                    | "active"
            ),
        }
    }

    /// Users and groups the app had before any identity provider came: the quickstart's and
    /// the helpdesk's administrator and group, Redmine's administrator. phpBB's founder is
    /// one of its built-in accounts, outside SCIM, as its built-in groups are.
    pub fn own(self, resource: &str) -> usize {
        match (self, resource) {
            (Target::Quickstart | Target::Helpdesk | Target::HelpdeskMariadb, _) => 1,
            (Target::Redmine, "Users") => 1,
            _ => 0,
        }
    }

    /// `values`, one per attribute of `names`, with `NULL` for what the app has no place
    /// for: the app's row as a replay expects to read it.
    pub fn row(self, names: &[&str], values: &[&str]) -> Vec<String> {
        assert_eq!(names.len(), values.len());
        names
            .iter()
            .zip(values)
            .map(|(n, v)| if self.stores(n) { v } else { "NULL" }.to_string())
            .collect()
    }

    /// Asserts attribute `name` (named as in [`Target::stores`]) of resource `u` is `want`,
    /// or absent where the app has no place for it.
    #[track_caller]
    pub fn expect(self, u: &Value, name: &str, want: impl Into<Value>) {
        let got = attr(u, name);
        if self.stores(name) {
            assert_eq!(got, &want.into(), "{name}: {u}");
        } else {
            assert_eq!(
                got,
                &Value::Null,
                "{name}: {self:?} has no place for it: {u}"
            );
        }
    }
}

/// Attribute `name` of resource `u` (named as in [`Target::stores`]); `Null` when absent.
pub fn attr<'a>(u: &'a Value, name: &str) -> &'a Value {
    let typed = |multi: &str, ty: &str| {
        u[multi]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["type"] == ty))
            .map_or(&Value::Null, |e| &e["value"])
    };
    match name {
        "emails.work" => typed("emails", "work"),
        "phoneNumbers.work" => typed("phoneNumbers", "work"),
        "phoneNumbers.mobile" => typed("phoneNumbers", "mobile"),
        "department" | "employeeNumber" => &u[ENT][name],
        "manager" => &u[ENT]["manager"]["value"],
        _ => match name.split_once('.') {
            Some((a, b)) => &u[a][b],
            None => &u[name],
        },
    }
}

/// One test per app: `per_target!(name)` runs `async fn name(target)` as `name::sqlite` (the
/// quickstart), `name::postgres` (the helpdesk), `name::mariadb` (the helpdesk on MariaDB),
/// `name::redmine`, `name::phpbb`, `name::ldap` (slapd), `name::rest` and `name::ad` (a Samba
/// AD domain controller), the server ones skipped when their server is not installed.
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
            #[tokio::test]
            async fn mariadb() {
                super::$name(crate::support::idp::Target::HelpdeskMariadb).await
            }
            #[tokio::test]
            async fn redmine() {
                super::$name(crate::support::idp::Target::Redmine).await
            }
            #[tokio::test]
            async fn phpbb() {
                super::$name(crate::support::idp::Target::Phpbb).await
            }
            #[tokio::test]
            async fn ldap() {
                super::$name(crate::support::idp::Target::Ldap).await
            }
            #[tokio::test]
            async fn rest() {
                super::$name(crate::support::idp::Target::Rest).await
            }
            #[tokio::test]
            async fn ad() {
                super::$name(crate::support::idp::Target::ActiveDirectory).await
            }
        }
    )*};
}

/// The target's sidecar, or returns from the test (its server not installed: skipped).
macro_rules! start_target {
    ($target:expr) => {
        match crate::support::idp::start($target).await {
            Some(s) => s,
            None => return,
        }
    };
}

/// The target's sidecar, or `None` when its server (PostgreSQL, MariaDB, slapd, Samba) is not
/// installed.
pub async fn start(target: Target) -> Option<Sidecar> {
    match target {
        Target::Quickstart => Some(Sidecar::quickstart().await),
        Target::Helpdesk => Sidecar::example("postgres", Store::Postgres, None).await,
        Target::HelpdeskMariadb => Sidecar::example("postgres", Store::Mariadb, None).await,
        Target::Redmine => Sidecar::example("redmine", Store::Postgres, None).await,
        Target::Phpbb => Sidecar::example("phpbb", Store::Postgres, None).await,
        Target::Ldap => super::ldap::example().await,
        Target::Rest => Some(super::rest_app::example().await),
        Target::ActiveDirectory => super::samba::example("idp").await.map(|(s, _)| s),
    }
}

/// A group's name in the app, or `None` when the row is gone.
pub async fn group_name(s: &Sidecar, t: Target, id: &str) -> Option<String> {
    let q = match t {
        Target::Ldap => {
            return super::ldap::row(id, &[Some("cn")]).await.into_iter().next();
        }
        Target::ActiveDirectory => {
            return super::samba::row(id, &[Some("cn")])
                .await
                .into_iter()
                .next();
        }
        Target::Quickstart => format!("SELECT name FROM roles WHERE id = {id}"),
        Target::Rest => format!("SELECT name FROM groups WHERE id = {id}"),
        Target::Helpdesk | Target::HelpdeskMariadb => {
            format!("SELECT display_name FROM principals WHERE id = {id} AND kind = 'G'")
        }
        Target::Redmine => {
            format!("SELECT lastname FROM users WHERE id = {id} AND type = 'Group'")
        }
        Target::Phpbb => format!(
            "SELECT group_name::text FROM phpbb_groups WHERE group_id = {id} AND group_type = 1"
        ),
    };
    s.rows(&q).await.into_iter().next().map(|mut r| r.remove(0))
}

/// A group's member ids in the app's join table, in id order.
pub async fn members(s: &Sidecar, t: Target, id: &str) -> Vec<String> {
    let q = match t {
        Target::Ldap => return super::ldap::member_ids(id).await,
        Target::ActiveDirectory => return super::samba::member_ids(id).await,
        Target::Quickstart => {
            format!("SELECT account_id FROM account_roles WHERE role_id = {id} ORDER BY 1")
        }
        Target::Rest => format!("SELECT user_id FROM members WHERE group_id = {id} ORDER BY 1"),
        Target::Helpdesk | Target::HelpdeskMariadb => {
            format!("SELECT member_id FROM group_members WHERE group_id = {id} ORDER BY 1")
        }
        Target::Redmine => {
            format!("SELECT user_id FROM groups_users WHERE group_id = {id} ORDER BY 1")
        }
        Target::Phpbb => {
            format!("SELECT user_id FROM phpbb_user_group WHERE group_id = {id} ORDER BY 1")
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
