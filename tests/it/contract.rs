//! The store contract: what every kind of store must do behind the backend API, tested on the
//! `Table` handles a store opens — no HTTP, no SCIM JSON. One body of tests, run once per
//! subject: SQLite, PostgreSQL, MariaDB (`schema.mysql.sql`: the login unique through its
//! `_ci` collation), and SQLite with the sidecar's kept values in a second database (the
//! path an LDAP or REST store takes for `externalId`), and slapd (`resources.ldap.toml`: the
//! same map keys in a directory's addressing, kept values in an SQLite state database), a
//! Samba AD DC (`resources.ad.toml`), and the legacy admin API through the REST store
//! (`resources.rest.toml`: kept values likewise). A new kind of store
//! proves itself by adding a subject: its own schema and `[backend.app]`, the same resources
//! (`tests/fixtures/contract/resources.toml`), and these tests unchanged.
//!
//! Fields are named by their map keys: `userName` (unique, case-insensitive), `displayName`,
//! `title` (a child table's row), `externalId` (kept by the sidecar); groups have
//! `displayName` and members.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use scim_sidecar::backend::{
    BackendError, Change, CmpOp, DeleteMode, MemberChange, Predicate, Row, Sort, Table, Value,
};
use scim_sidecar::mapping::{self, MappedResource};

use crate::support::{self, ldap, mariadb, postgres, rest_app, samba};

/// A store under contract: the users' and groups' tables and the field index of each key.
struct Subject {
    users: Arc<dyn Table>,
    groups: Arc<dyn Table>,
    user_res: MappedResource,
    group_res: MappedResource,
    _dir: tempfile::TempDir,
    _pg: Option<postgres::Db>,
    _my: Option<mariadb::Db>,
    _ldap: Option<ldap::Subtree>,
    _rest: Option<rest_app::RestApp>,
    /// Active Directory: a case-exact comparison of a directory attribute is refused (AD
    /// compares strings ignoring case), never answered ignoring case.
    no_case_exact: bool,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Postgres,
    /// MariaDB.
    Mariadb,
    /// SQLite, with kept values in another SQLite database (`[state]`).
    StateElsewhere,
    /// OpenLDAP's slapd, with kept values in an SQLite database (`[state]`).
    Ldap,
    /// A Samba AD domain controller (`flavour = "active-directory"`), kept values likewise.
    ActiveDirectory,
    /// The legacy admin API (`examples/legacy-admin-api`) through the REST store, kept values
    /// likewise.
    Rest,
}

/// One test per subject: `contract!(name)` runs `async fn name(&Subject)` as `name::sqlite`,
/// `name::postgres` (skipped without PostgreSQL), `name::mariadb` (skipped without MariaDB)
/// `name::state_elsewhere` and `name::ldap` (skipped without slapd).
macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let s = super::subject(super::Kind::Sqlite).await.expect("sqlite");
                super::$name(&s).await
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(s) = super::subject(super::Kind::Postgres).await {
                    super::$name(&s).await
                }
            }
            #[tokio::test]
            async fn mariadb() {
                if let Some(s) = super::subject(super::Kind::Mariadb).await {
                    super::$name(&s).await
                }
            }
            #[tokio::test]
            async fn ldap() {
                if let Some(s) = super::subject(super::Kind::Ldap).await {
                    super::$name(&s).await
                }
            }
            #[tokio::test]
            async fn active_directory() {
                if let Some(s) = super::subject(super::Kind::ActiveDirectory).await {
                    super::$name(&s).await
                }
            }
            #[tokio::test]
            async fn rest() {
                let s = super::subject(super::Kind::Rest).await.expect("rest");
                super::$name(&s).await
            }
            #[tokio::test]
            async fn state_elsewhere() {
                let s = super::subject(super::Kind::StateElsewhere).await.expect("sqlite");
                super::$name(&s).await
            }
        }
    )*};
}

contract!(
    inserted_rows_read_back,
    every_predicate_kind_selects_the_right_rows,
    pages_cover_every_row_once_in_order,
    updates_write_what_changed_and_nothing_else,
    deletes_remove_the_row_and_its_memberships,
    membership_changes,
    uniqueness_is_enforced_case_insensitively,
);

async fn subject(kind: Kind) -> Option<Subject> {
    support::init();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contract");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut my = None;
    let mut tree = None;
    let mut rest = None;
    let mut env = std::collections::HashMap::new();
    let (backend, pg) = match kind {
        Kind::Rest => {
            // A fresh app, its own in-memory database.
            let app = rest_app::RestApp::start().await;
            let backend = format!(
                "type = \"rest\"\nbase_url = \"{}\"\nheaders = {{ \"X-API-Key\" = \"{}\" }}\nduplicate = [\"has already been taken\"]",
                app.base_url, app.api_key
            );
            rest = Some(app);
            (backend, None)
        }
        Kind::Ldap => {
            // A fresh subtree: ou=people and ou=groups of its own.
            let t = ldap::subtree("contract").await?;
            env.insert("LDAP_PEOPLE".to_owned(), t.people.clone());
            env.insert("LDAP_GROUPS".to_owned(), t.groups.clone());
            let backend = format!(
                "type = \"ldap\"\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\npool_size = 2",
                t.url,
                ldap::ADMIN_DN,
                ldap::ADMIN_PASSWORD
            );
            tree = Some(t);
            (backend, None)
        }
        Kind::ActiveDirectory => {
            // A fresh OU with OU=Users and OU=Groups, over LDAPS.
            let dc = samba::server().await?;
            let t = dc.subtree("contract").await;
            env.insert("LDAP_PEOPLE".to_owned(), t.users.clone());
            env.insert("LDAP_GROUPS".to_owned(), t.groups.clone());
            let backend = format!(
                "type = \"ldap\"\nflavour = \"active-directory\"\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\ntls = {{ ca = \"{}\" }}\npool_size = 2",
                dc.url,
                samba::ADMIN_DN,
                samba::ADMIN_PASSWORD,
                dc.ca_file.display()
            );
            (backend, None)
        }
        Kind::Postgres => {
            // A fresh database holding tests/fixtures/contract/schema.sql.
            let db = support::pg_database("contract").await?;
            (
                format!("type = \"postgres\"\nurl = \"{}\"\npool_size = 4", db.url),
                Some(db),
            )
        }
        Kind::Mariadb => {
            // A fresh database holding tests/fixtures/contract/schema.mysql.sql.
            let db = support::my_database("contract").await?;
            let backend = format!("type = \"mysql\"\nurl = \"{}\"\npool_size = 4", db.url);
            my = Some(db);
            (backend, None)
        }
        Kind::Sqlite | Kind::StateElsewhere => (
            format!(
                "type = \"sqlite\"\npath = \"{}\"\ncreate_from = \"{}\"",
                dir.path().join("app.db").display(),
                fixtures.join("schema.sqlite.sql").display()
            ),
            None,
        ),
    };
    let state = match kind {
        Kind::StateElsewhere | Kind::Ldap | Kind::ActiveDirectory | Kind::Rest => {
            let state_db = dir.path().join("state.db");
            std::fs::write(&state_db, "").expect("state db");
            format!(
                "[state]\nbackend = \"state\"\n\n[backend.state]\ntype = \"sqlite\"\npath = \"{}\"\n",
                state_db.display()
            )
        }
        _ => String::new(),
    };
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n\n[auth]\nbearer_tokens = [\"contract-token-0123456789\"]\n\n[backend.app]\n{backend}\n\n{state}\n{}",
        std::fs::read_to_string(fixtures.join(match kind {
            Kind::Ldap => "resources.ldap.toml",
            Kind::ActiveDirectory => "resources.ad.toml",
            Kind::Rest => "resources.rest.toml",
            _ => "resources.toml",
        }))
        .expect("resources")
    );
    let path = dir.path().join("contract.toml");
    std::fs::write(&path, text).expect("config");
    let config = support::load(&path, &env);
    support::migrate_config(&config).await;
    let backends = scim_sidecar::app::open_backends(&config)
        .await
        .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    let settings = mapping::Settings {
        unknown_attributes: scim_sidecar::scim::UnknownPolicy::Ignore,
        retry_after: 1,
        observer: Arc::new(mapping::NoObserver),
        max_members: None,
    };
    let mut built = Vec::new();
    for spec in &config.resources {
        let backend = backends
            .iter()
            .find(|b| b.name() == spec.backend)
            .expect("backend");
        let holder = config.state_backend(&spec.backend);
        let state = (holder != spec.backend).then(|| {
            backends
                .iter()
                .find(|b| b.name() == holder)
                .and_then(|b| b.state())
                .expect("state store")
        });
        let (r, _) = mapping::build(spec, backend.as_ref(), &config.resources, &settings, state)
            .await
            .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
        built.push(r);
    }
    let group_res = built.pop().expect("groups");
    let user_res = built.pop().expect("users");
    Some(Subject {
        users: user_res.table(),
        groups: group_res.table(),
        user_res,
        group_res,
        _dir: dir,
        _pg: pg,
        _my: my,
        _ldap: tree,
        _rest: rest,
        no_case_exact: matches!(kind, Kind::ActiveDirectory),
    })
}

// === Helpers ===

/// Whether `p` compares a directory attribute (any field but `kept`) case-exactly, by
/// equality or order.
fn exact_on_store(p: &Predicate, kept: usize) -> bool {
    match p {
        // Substring filters are case-insensitive in every directory (and so in SCIM's `co`).
        Predicate::Cmp {
            field,
            fold_case,
            op,
            ..
        } => {
            !fold_case
                && *field != kept
                && !matches!(op, CmpOp::Contains | CmpOp::StartsWith | CmpOp::EndsWith)
        }
        Predicate::And(ps) | Predicate::Or(ps) => ps.iter().any(|p| exact_on_store(p, kept)),
        Predicate::Not(p) => exact_on_store(p, kept),
        _ => false,
    }
}

impl Subject {
    fn field(&self, key: &str) -> usize {
        self.user_res
            .field(key)
            .unwrap_or_else(|| panic!("no field {key}"))
    }

    fn group_field(&self, key: &str) -> usize {
        self.group_res
            .field(key)
            .unwrap_or_else(|| panic!("no field {key}"))
    }

    /// A user's values, by map key; unnamed fields empty.
    fn user(&self, fields: &[(&str, &str)]) -> Vec<Value> {
        let mut v = vec![Value::Null; 4];
        for (k, text) in fields {
            v[self.field(k)] = Value::Text((*text).to_owned());
        }
        v
    }

    async fn add(&self, fields: &[(&str, &str)]) -> Row {
        self.users
            .insert(self.user(fields), vec![], false)
            .await
            .expect("insert")
    }

    async fn add_group(&self, name: &str, members: &[&Row]) -> Row {
        let mut v = vec![Value::Null; 1];
        v[self.group_field("displayName")] = Value::Text(name.into());
        self.groups
            .insert(v, members.iter().map(|r| r.key.clone()).collect(), true)
            .await
            .expect("insert group")
    }

    fn cmp(&self, key: &str, op: CmpOp, value: &str, fold_case: bool) -> Predicate {
        Predicate::Cmp {
            field: self.field(key),
            op,
            value: Value::Text(value.into()),
            fold_case,
        }
    }

    /// The userNames of the users matching `p` (every page).
    async fn names(&self, p: Predicate) -> BTreeSet<String> {
        let (_, rows) = mapping::paging::page(self.users.as_ref(), p, by_key(), 0, 1000, false)
            .await
            .expect("search");
        rows.iter()
            .map(|r| text(r, self.field("userName")).expect("userName"))
            .collect()
    }

    async fn members(&self, group: &Row) -> BTreeSet<String> {
        let row = self
            .groups
            .fetch(&group.key, true)
            .await
            .expect("fetch group")
            .expect("group exists");
        row.members.expect("members loaded").into_iter().collect()
    }
}

/// Field `i` of a row as text, `None` when it has no value.
fn text(row: &Row, i: usize) -> Option<String> {
    match row.values[i].first() {
        Value::Null => None,
        Value::Text(s) if s.is_empty() => None,
        Value::Text(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn by_key() -> Sort {
    Sort {
        field: None,
        fold_case: false,
        descending: false,
        ranks: Vec::new(),
    }
}

fn set<S: AsRef<str>>(names: &[S]) -> BTreeSet<String> {
    names.iter().map(|s| s.as_ref().to_owned()).collect()
}

// === The contract ===

/// An inserted row comes back with a key and the values as written — its own columns, a
/// child table's value and a kept value alike — and reads back the same; an id that names
/// nothing (or cannot be a key of this store) is absent, not an error.
async fn inserted_rows_read_back(s: &Subject) {
    let row = s
        .add(&[
            ("userName", "ann"),
            ("displayName", "Ann Archer"),
            ("title", "Boss"),
            ("externalId", "e-1"),
        ])
        .await;
    assert!(!row.key.is_empty());
    for (k, v) in [
        ("userName", "ann"),
        ("displayName", "Ann Archer"),
        ("title", "Boss"),
        ("externalId", "e-1"),
    ] {
        assert_eq!(text(&row, s.field(k)).as_deref(), Some(v), "{k} on insert");
    }
    let again = s
        .users
        .fetch(&row.key, false)
        .await
        .expect("fetch")
        .expect("found");
    for k in ["userName", "displayName", "title", "externalId"] {
        assert_eq!(
            text(&again, s.field(k)),
            text(&row, s.field(k)),
            "{k} on fetch"
        );
    }
    let bare = s.add(&[("userName", "bob")]).await;
    assert_eq!(text(&bare, s.field("title")), None);
    assert_eq!(text(&bare, s.field("externalId")), None);
    assert!(
        s.users
            .fetch("987654321", false)
            .await
            .expect("fetch")
            .is_none()
    );
    assert!(
        s.users
            .fetch("no-such-id", false)
            .await
            .expect("fetch")
            .is_none()
    );
}

/// Every kind of predicate, on every kind of field, selects exactly the rows SCIM's filter
/// semantics say: case folding where asked, `ne` and `not` including rows without a value,
/// pattern characters in a value taken literally, key and membership conditions.
async fn every_predicate_kind_selects_the_right_rows(s: &Subject) {
    let ann = s
        .add(&[
            ("userName", "ann"),
            ("displayName", "Ann Archer"),
            ("title", "Boss"),
            ("externalId", "e-1"),
        ])
        .await;
    let bob = s
        .add(&[("userName", "bob"), ("displayName", "Bob Builder")])
        .await;
    let carol = s
        .add(&[
            ("userName", "CAROL"),
            ("displayName", "50%_off*[x]"),
            ("title", "Dev"),
            ("externalId", "e-3"),
        ])
        .await;
    s.add(&[("userName", "dave")]).await;
    let team = s.add_group("team", &[&carol]).await;
    s.add_group("empty", &[]).await;

    let cases: Vec<(&str, Predicate, BTreeSet<String>)> = vec![
        (
            "true",
            Predicate::True,
            set(&["ann", "bob", "CAROL", "dave"]),
        ),
        ("false", Predicate::False, set::<&str>(&[])),
        (
            "eq folded",
            s.cmp("userName", CmpOp::Eq, "carol", true),
            set(&["CAROL"]),
        ),
        (
            "eq exact misses",
            s.cmp("displayName", CmpOp::Eq, "ann archer", false),
            set::<&str>(&[]),
        ),
        (
            "eq exact",
            s.cmp("displayName", CmpOp::Eq, "Ann Archer", false),
            set(&["ann"]),
        ),
        (
            "ne includes no value",
            s.cmp("displayName", CmpOp::Ne, "Ann Archer", false),
            set(&["bob", "CAROL", "dave"]),
        ),
        (
            "co literal",
            s.cmp("displayName", CmpOp::Contains, "%_off*[", false),
            set(&["CAROL"]),
        ),
        (
            "co folded",
            s.cmp("displayName", CmpOp::Contains, "BUILD", true),
            set(&["bob"]),
        ),
        (
            "sw",
            s.cmp("userName", CmpOp::StartsWith, "AN", true),
            set(&["ann"]),
        ),
        (
            "ew",
            s.cmp("userName", CmpOp::EndsWith, "OB", true),
            set(&["bob"]),
        ),
        (
            "gt",
            s.cmp("userName", CmpOp::Gt, "bob", true),
            set(&["CAROL", "dave"]),
        ),
        (
            "le",
            s.cmp("userName", CmpOp::Le, "bob", true),
            set(&["ann", "bob"]),
        ),
        (
            "pr child",
            Predicate::Present(s.field("title")),
            set(&["ann", "CAROL"]),
        ),
        (
            "not pr child",
            Predicate::Not(Box::new(Predicate::Present(s.field("title")))),
            set(&["bob", "dave"]),
        ),
        (
            "eq child",
            s.cmp("title", CmpOp::Eq, "dev", true),
            set(&["CAROL"]),
        ),
        (
            "eq kept",
            s.cmp("externalId", CmpOp::Eq, "e-3", false),
            set(&["CAROL"]),
        ),
        (
            "pr kept",
            Predicate::Present(s.field("externalId")),
            set(&["ann", "CAROL"]),
        ),
        (
            "ne kept",
            s.cmp("externalId", CmpOp::Ne, "e-1", false),
            set(&["bob", "CAROL", "dave"]),
        ),
        (
            "sw kept",
            s.cmp("externalId", CmpOp::StartsWith, "E-", true),
            set(&["ann", "CAROL"]),
        ),
        (
            "or",
            Predicate::Or(vec![
                s.cmp("userName", CmpOp::Eq, "ann", true),
                s.cmp("userName", CmpOp::Eq, "bob", true),
            ]),
            set(&["ann", "bob"]),
        ),
        (
            "and not",
            Predicate::And(vec![
                Predicate::Present(s.field("title")),
                Predicate::Not(Box::new(s.cmp("userName", CmpOp::Eq, "ANN", true))),
            ]),
            set(&["CAROL"]),
        ),
        ("key eq", Predicate::KeyEq(ann.key.clone()), set(&["ann"])),
        (
            "key eq unknown",
            Predicate::KeyEq("no-such-id".into()),
            set::<&str>(&[]),
        ),
        (
            "key in",
            Predicate::KeyIn(vec![ann.key.clone(), bob.key.clone(), "no-such-id".into()]),
            set(&["ann", "bob"]),
        ),
        (
            "not key in",
            Predicate::Not(Box::new(Predicate::KeyIn(vec![ann.key.clone()]))),
            set(&["bob", "CAROL", "dave"]),
        ),
    ];
    for (what, p, want) in cases {
        if s.no_case_exact && exact_on_store(&p, s.field("externalId")) {
            let refused = mapping::paging::page(s.users.as_ref(), p, by_key(), 0, 1000, false)
                .await
                .err();
            assert!(
                matches!(
                    refused,
                    Some(BackendError::Unsupported { field: Some(_), .. })
                ),
                "{what}: {refused:?}"
            );
            continue;
        }
        assert_eq!(s.names(p).await, want, "{what}");
    }

    // Membership conditions are on groups.
    let groups = |p| async move {
        let (_, rows) = mapping::paging::page(s.groups.as_ref(), p, by_key(), 0, 100, false)
            .await
            .expect("search groups");
        rows.iter()
            .map(|r| text(r, s.group_field("displayName")).expect("name"))
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(
        groups(Predicate::HasMember(Some(carol.key.clone()))).await,
        set(&["team"])
    );
    assert_eq!(
        groups(Predicate::HasMember(Some(ann.key.clone()))).await,
        set::<&str>(&[])
    );
    assert_eq!(groups(Predicate::HasMember(None)).await, set(&["team"]));
    assert_eq!(
        groups(Predicate::Not(Box::new(Predicate::HasMember(None)))).await,
        set(&["empty"])
    );
    assert_eq!(
        groups(Predicate::KeyEq(team.key.clone())).await,
        set(&["team"])
    );
}

/// Paging by the store's own means (offset or cursor) returns every row exactly once, in
/// the asked order (case-folded, either direction); the total is exact on the last page.
async fn pages_cover_every_row_once_in_order(s: &Subject) {
    let mut want = Vec::new();
    for i in 0..23 {
        // Mixed case, so a case-sensitive sort would differ.
        let name = if i % 2 == 0 {
            format!("User{i:02}")
        } else {
            format!("user{i:02}")
        };
        s.add(&[("userName", &name)]).await;
        want.push(name);
    }
    for descending in [false, true] {
        let sort = Sort {
            field: Some(s.field("userName")),
            fold_case: true,
            descending,
            ranks: Vec::new(),
        };
        let mut got = Vec::new();
        let mut last_total = 0;
        for offset in (0..30).step_by(10) {
            let (total, rows) = mapping::paging::page(
                s.users.as_ref(),
                Predicate::True,
                sort.clone(),
                offset,
                10,
                false,
            )
            .await
            .expect("page");
            assert!(
                total >= offset + rows.len() as u64,
                "total {total} at {offset}"
            );
            last_total = total;
            got.extend(
                rows.iter()
                    .map(|r| text(r, s.field("userName")).expect("name")),
            );
        }
        let mut expected = want.clone();
        expected.sort_by_key(|n| n.to_lowercase());
        if descending {
            expected.reverse();
        }
        assert_eq!(got, expected, "descending: {descending}");
        assert_eq!(last_total, 23);
    }
    // A count alone.
    let (total, rows) =
        mapping::paging::page(s.users.as_ref(), Predicate::True, by_key(), 0, 0, false)
            .await
            .expect("count");
    assert_eq!((total, rows.len()), (23, 0));
}

/// An update sees the current row inside the store's transaction, writes only the fields it
/// changes (a child row and a kept value included; empty clears them), and reads back as
/// written. An edit that fails changes nothing; an unknown id is `NotFound`.
async fn updates_write_what_changed_and_nothing_else(s: &Subject) {
    let ann = s
        .add(&[
            ("userName", "ann"),
            ("displayName", "Ann"),
            ("title", "Boss"),
            ("externalId", "e-1"),
        ])
        .await;
    let (dn, title, ext) = (
        s.field("displayName"),
        s.field("title"),
        s.field("externalId"),
    );
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    let row = s
        .users
        .update(
            &ann.key,
            false,
            Box::new(move |current: &Row| {
                *seen2.lock().expect("lock") = Some(current.clone());
                Ok(Change {
                    set: vec![
                        (dn, Value::Text("Ann Archer".into())),
                        (title, Value::Null),
                        (ext, Value::Text("e-9".into())),
                    ],
                    members: vec![],
                })
            }),
        )
        .await
        .expect("update");
    let current = seen.lock().expect("lock").clone().expect("edit ran");
    assert_eq!(text(&current, title).as_deref(), Some("Boss"));
    assert_eq!(text(&current, ext).as_deref(), Some("e-1"));
    assert_eq!(text(&row, dn).as_deref(), Some("Ann Archer"));
    assert_eq!(text(&row, title), None);
    assert_eq!(text(&row, ext).as_deref(), Some("e-9"));
    let again = s
        .users
        .fetch(&ann.key, false)
        .await
        .expect("fetch")
        .expect("found");
    assert_eq!(text(&again, s.field("userName")).as_deref(), Some("ann"));
    assert_eq!(text(&again, dn).as_deref(), Some("Ann Archer"));
    assert_eq!(text(&again, title), None);
    assert_eq!(text(&again, ext).as_deref(), Some("e-9"));
    assert_eq!(
        s.names(s.cmp("externalId", CmpOp::Eq, "e-1", false)).await,
        set::<&str>(&[])
    );
    assert_eq!(
        s.names(s.cmp("externalId", CmpOp::Eq, "e-9", false)).await,
        set(&["ann"])
    );

    // A failing edit changes nothing.
    let failed = s
        .users
        .update(
            &ann.key,
            false,
            Box::new(|_| Err(BackendError::Aborted("refused by the caller".into()))),
        )
        .await;
    assert!(
        matches!(failed, Err(BackendError::Aborted(_))),
        "{failed:?}"
    );
    let after = s
        .users
        .fetch(&ann.key, false)
        .await
        .expect("fetch")
        .expect("found");
    assert_eq!(after.values, again.values);

    let missing = s
        .users
        .update("987654321", false, Box::new(|_| Ok(Change::default())))
        .await;
    assert!(
        matches!(missing, Err(BackendError::NotFound)),
        "{missing:?}"
    );
}

/// A hard delete removes the row, its child rows, its kept values and its memberships; a
/// check that fails keeps it; deleting again or an unknown id is `NotFound`.
async fn deletes_remove_the_row_and_its_memberships(s: &Subject) {
    let ann = s
        .add(&[
            ("userName", "ann"),
            ("title", "Boss"),
            ("externalId", "e-1"),
        ])
        .await;
    let bob = s.add(&[("userName", "bob")]).await;
    let team = s.add_group("team", &[&ann, &bob]).await;

    let refused = s
        .users
        .delete(
            &ann.key,
            DeleteMode::Hard,
            Box::new(|_| Err(BackendError::Aborted("precondition failed".into()))),
        )
        .await;
    assert!(
        matches!(refused, Err(BackendError::Aborted(_))),
        "{refused:?}"
    );
    assert!(
        s.users
            .fetch(&ann.key, false)
            .await
            .expect("fetch")
            .is_some()
    );

    s.users
        .delete(&ann.key, DeleteMode::Hard, Box::new(|_| Ok(())))
        .await
        .expect("delete");
    assert!(
        s.users
            .fetch(&ann.key, false)
            .await
            .expect("fetch")
            .is_none()
    );
    assert_eq!(s.names(Predicate::True).await, set(&["bob"]));
    assert_eq!(
        s.names(s.cmp("externalId", CmpOp::Eq, "e-1", false)).await,
        set::<&str>(&[])
    );
    assert_eq!(s.members(&team).await, set(&[&bob.key]));
    let again = s
        .users
        .delete(&ann.key, DeleteMode::Hard, Box::new(|_| Ok(())))
        .await;
    assert!(matches!(again, Err(BackendError::NotFound)), "{again:?}");
    // A new user does not inherit anything the deleted one left.
    let cid = s.add(&[("userName", "carol")]).await;
    assert_eq!(text(&cid, s.field("title")), None);
    assert_eq!(text(&cid, s.field("externalId")), None);
}

/// Members are added (existing ones kept), removed (absent ones ignored), replaced and
/// cleared; adding an id that does not exist refuses the whole change and leaves the
/// membership as it was.
async fn membership_changes(s: &Subject) {
    let ann = s.add(&[("userName", "ann")]).await;
    let bob = s.add(&[("userName", "bob")]).await;
    let carol = s.add(&[("userName", "carol")]).await;
    let team = s.add_group("team", &[&ann, &bob]).await;
    assert_eq!(
        team.members
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        set(&[&ann.key, &bob.key])
    );
    // `read_back`: the members are read back with the row (a PATCH answered 200).
    let update = |read_back: bool, changes: Vec<MemberChange>| {
        let groups = s.groups.clone();
        let key = team.key.clone();
        async move {
            groups
                .update(
                    &key,
                    read_back,
                    Box::new(move |_| {
                        Ok(Change {
                            set: vec![],
                            members: changes,
                        })
                    }),
                )
                .await
        }
    };
    let change = |changes| update(true, changes);
    change(vec![MemberChange::Add(vec![
        carol.key.clone(),
        ann.key.clone(),
    ])])
    .await
    .expect("add");
    assert_eq!(
        s.members(&team).await,
        set(&[&ann.key, &bob.key, &carol.key])
    );
    change(vec![MemberChange::Remove(vec![
        bob.key.clone(),
        "no-such-id".into(),
    ])])
    .await
    .expect("remove");
    assert_eq!(s.members(&team).await, set(&[&ann.key, &carol.key]));
    // Removing a non-member and adding a member again change nothing, and are no error.
    change(vec![
        MemberChange::Remove(vec![bob.key.clone()]),
        MemberChange::Add(vec![carol.key.clone()]),
    ])
    .await
    .expect("remove a non-member, add a member");
    assert_eq!(s.members(&team).await, set(&[&ann.key, &carol.key]));

    // The same without the members read back (a PATCH answered 204), a flow of its own: on
    // PostgreSQL its last statement commits with it, so a refused add must write nothing
    // before it.
    let quiet = |changes| update(false, changes);
    let row = quiet(vec![MemberChange::Add(vec![bob.key.clone()])])
        .await
        .expect("add, members not read back");
    assert_eq!(
        (
            row.key.as_str(),
            text(&row, s.group_field("displayName")).as_deref()
        ),
        (team.key.as_str(), Some("team"))
    );
    assert_eq!(
        s.members(&team).await,
        set(&[&ann.key, &bob.key, &carol.key])
    );
    match quiet(vec![MemberChange::Add(vec![
        carol.key.clone(),
        "987654320".into(),
        "987654321".into(),
    ])])
    .await
    {
        Err(BackendError::Rejected { detail, .. }) => assert!(
            detail.contains("'987654320'")
                && detail.contains("'987654321'")
                && !detail.contains(&format!("'{}'", carol.key)),
            "{detail}"
        ),
        other => panic!("an unknown member must be refused: {other:?}"),
    }
    assert_eq!(
        s.members(&team).await,
        set(&[&ann.key, &bob.key, &carol.key])
    );
    let row = quiet(vec![MemberChange::Remove(vec![bob.key.clone()])])
        .await
        .expect("remove, members not read back");
    assert_eq!(row.key, team.key);
    assert_eq!(s.members(&team).await, set(&[&ann.key, &carol.key]));

    let refused = change(vec![
        MemberChange::Remove(vec![ann.key.clone()]),
        MemberChange::Add(vec![bob.key.clone(), "987654321".into()]),
    ])
    .await;
    match refused {
        Err(BackendError::Rejected { detail, .. }) => {
            assert!(detail.contains("987654321"), "{detail}")
        }
        other => panic!("an unknown member must be refused: {other:?}"),
    }
    assert_eq!(s.members(&team).await, set(&[&ann.key, &carol.key]));

    change(vec![MemberChange::Replace(vec![bob.key.clone()])])
        .await
        .expect("replace");
    assert_eq!(s.members(&team).await, set(&[&bob.key]));
    let row = change(vec![MemberChange::Clear]).await.expect("clear");
    assert_eq!(row.members, Some(vec![]));
    assert_eq!(s.members(&team).await, set::<&str>(&[]));
}

/// A value that must be unique cannot be taken twice, whatever its case, by an insert or an
/// update; the refusal names the field and writes nothing.
async fn uniqueness_is_enforced_case_insensitively(s: &Subject) {
    let ann = s.add(&[("userName", "ann")]).await;
    let bob = s.add(&[("userName", "bob")]).await;
    let user_name = s.field("userName");
    let dup = s
        .users
        .insert(s.user(&[("userName", "ANN")]), vec![], false)
        .await;
    match dup {
        Err(BackendError::Conflict { field, .. }) => assert_eq!(field, Some(user_name)),
        other => panic!("a taken userName must conflict: {other:?}"),
    }
    let taken = s
        .users
        .update(
            &bob.key,
            false,
            Box::new(move |_| {
                Ok(Change {
                    set: vec![(user_name, Value::Text("Ann".into()))],
                    members: vec![],
                })
            }),
        )
        .await;
    assert!(
        matches!(taken, Err(BackendError::Conflict { field: Some(f), .. }) if f == user_name),
        "{taken:?}"
    );
    assert_eq!(s.names(Predicate::True).await, set(&["ann", "bob"]));
    let same = s
        .users
        .fetch(&ann.key, false)
        .await
        .expect("fetch")
        .expect("ann");
    assert_eq!(text(&same, user_name).as_deref(), Some("ann"));
}
