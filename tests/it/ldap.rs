//! The LDAP store against a real slapd (`tests/support/ldap.rs`), on the backend API — no
//! HTTP: users created, read, searched, paged, renamed, deleted; values holding every
//! character that means something in a filter or a DN stored and found literally; filters the
//! directory cannot evaluate refused naming the attribute; a directory restart survived.
//! `externalId` is kept by the sidecar in an SQLite state database, as an LDAP deployment
//! keeps it in its `[state] backend`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use scim_sidecar::backend::{
    BackendError, Change, CmpOp, DeleteMode, Predicate, Row, Sort, Table, Value,
};
use scim_sidecar::mapping::{self, MappedResource};

use crate::support::{self, ldap};

/// The users of one test's subtree.
struct Dir {
    users: Arc<dyn Table>,
    res: MappedResource,
    tree: ldap::Subtree,
    _dir: tempfile::TempDir,
}

/// The mapping under test: inetOrgPerson entries named by uid.
fn resources(people: &str) -> String {
    format!(
        r#"
[resource.User]
backend = "dir"
base = "{people}"
rdn = "uid={{userName}}"
object_classes = ["inetOrgPerson"]

[resource.User.map]
userName = {{ attribute = "uid", case_exact = false }}
displayName = "displayName"
title = {{ attribute = "title", ordering = false }}
externalId = {{ kept = true }}

[resource.User.set]
cn = "scim"
sn = "scim"
"#
    )
}

async fn dir(name: &str) -> Option<Dir> {
    support::init();
    let tree = ldap::subtree(name).await?;
    Some(open(tree).await)
}

/// The users of `tree`, through a config as an integrator writes it.
async fn open(tree: ldap::Subtree) -> Dir {
    let url = tree.url.clone();
    open_with(tree, &url, "")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The users of `tree` through `url`, with `extra` lines in `[backend.dir]`; `Err` is the
/// start-up report.
async fn open_with(tree: ldap::Subtree, url: &str, extra: &str) -> Result<Dir, String> {
    open_as(tree, url, extra, (ldap::ADMIN_DN, ldap::ADMIN_PASSWORD)).await
}

/// [`open_with`], bound as `bind` (DN and password).
async fn open_as(
    tree: ldap::Subtree,
    url: &str,
    extra: &str,
    bind: (&str, &str),
) -> Result<Dir, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_db = dir.path().join("state.db");
    std::fs::write(&state_db, "").expect("state db");
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n\n[auth]\nbearer_tokens = [\"ldap-token-0123456789\"]\n\n\
         [backend.dir]\ntype = \"ldap\"\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\npool_size = 2\n{extra}\n\n\
         [state]\nbackend = \"state\"\n\n[backend.state]\ntype = \"sqlite\"\npath = \"{}\"\n{}",
        url,
        bind.0,
        bind.1,
        state_db.display(),
        resources(&tree.people)
    );
    let path = dir.path().join("ldap.toml");
    std::fs::write(&path, text).expect("config");
    let config = support::load(&path, &Default::default());
    let backends = scim_sidecar::app::open_backends(&config)
        .await
        .map_err(|p| scim_sidecar::config::report(&p))?;
    support::migrate_config(&config).await;
    let settings = mapping::Settings {
        unknown_attributes: scim_sidecar::scim::UnknownPolicy::Ignore,
        retry_after: 1,
        observer: Arc::new(mapping::NoObserver),
        max_members: None,
    };
    let spec = &config.resources[0];
    let backend = backends.iter().find(|b| b.name() == "dir").expect("dir");
    let state = backends
        .iter()
        .find(|b| b.name() == "state")
        .and_then(|b| b.state());
    let (res, _) = mapping::build(spec, backend.as_ref(), &config.resources, &settings, state)
        .await
        .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    Ok(Dir {
        users: res.table(),
        res,
        tree,
        _dir: dir,
    })
}

impl Dir {
    fn field(&self, key: &str) -> usize {
        self.res
            .field(key)
            .unwrap_or_else(|| panic!("no field {key}"))
    }

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

    fn cmp(&self, key: &str, op: CmpOp, value: &str) -> Predicate {
        Predicate::Cmp {
            field: self.field(key),
            op,
            value: Value::Text(value.into()),
            fold_case: true,
        }
    }

    async fn names(&self, p: Predicate) -> BTreeSet<String> {
        let (_, rows) =
            mapping::paging::page(self.users.as_ref(), p, Sort::default(), 0, 1000, false)
                .await
                .expect("search");
        rows.iter()
            .map(|r| text(r, self.field("userName")).expect("userName"))
            .collect()
    }
}

fn text(row: &Row, i: usize) -> Option<String> {
    match row.values[i].first() {
        Value::Null => None,
        Value::Text(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// A created user is an inetOrgPerson entry named `uid=<userName>` under the base, its id the
/// directory's `entryUUID`; it reads back by id with every value, the kept `externalId`
/// included; an id that names nothing (or is no UUID at all) is absent, not an error.
#[tokio::test]
async fn users_are_entries_named_by_uid_with_entryuuid_ids() {
    let Some(d) = dir("create").await else { return };
    let ann = d
        .add(&[
            ("userName", "ann"),
            ("displayName", "Ann Archer"),
            ("title", "Boss"),
            ("externalId", "e-1"),
        ])
        .await;
    let entries = ldap::server()
        .expect("server")
        .entries(&d.tree.people, "(uid=ann)")
        .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].dn, format!("uid=ann,{}", d.tree.people));
    assert_eq!(entries[0].attrs["entryUUID"], vec![ann.key.clone()]);
    let again = d
        .users
        .fetch(&ann.key, false)
        .await
        .expect("fetch")
        .expect("found");
    for (k, v) in [
        ("userName", "ann"),
        ("displayName", "Ann Archer"),
        ("title", "Boss"),
        ("externalId", "e-1"),
    ] {
        assert_eq!(text(&again, d.field(k)).as_deref(), Some(v), "{k}");
    }
    for missing in ["no-such-id", "00000000-0000-0000-0000-000000000000", "*"] {
        assert!(
            d.users
                .fetch(missing, false)
                .await
                .expect("fetch")
                .is_none(),
            "{missing}"
        );
    }
}

/// The SCIM filters LDAP can evaluate select exactly the right entries; a value holding
/// `*()\` and NUL is matched literally and never widens the search; ordering comparisons use
/// the directory-string ordering rules (uid has no ORDERING rule of its own), and one on an
/// attribute whose map entry says `ordering = false` is refused naming the field.
#[tokio::test]
async fn filters_select_the_right_entries_and_never_widen() {
    let Some(d) = dir("filters").await else {
        return;
    };
    d.add(&[
        ("userName", "ann"),
        ("displayName", "Ann Archer"),
        ("title", "Boss"),
    ])
    .await;
    d.add(&[("userName", "bob"), ("displayName", "Bob Builder")])
        .await;
    let carol = d
        .add(&[
            ("userName", "CAROL"),
            ("displayName", "50%_off*(x)\\y"),
            ("externalId", "e-3"),
        ])
        .await;
    let weird = "a,b=c+d<e>f#g;h\"i\\j k*l(m)n";
    d.add(&[("userName", weird)]).await;
    let cases: Vec<(&str, Predicate, BTreeSet<String>)> = vec![
        (
            "eq folded",
            d.cmp("userName", CmpOp::Eq, "carol"),
            set(&["CAROL"]),
        ),
        (
            "eq star is literal",
            d.cmp("userName", CmpOp::Eq, "*"),
            set(&[]),
        ),
        (
            "eq special",
            d.cmp("userName", CmpOp::Eq, weird),
            set(&[weird]),
        ),
        (
            "ne",
            d.cmp("displayName", CmpOp::Ne, "Ann Archer"),
            set(&["bob", "CAROL", weird]),
        ),
        (
            "co literal",
            d.cmp("displayName", CmpOp::Contains, "off*(x)\\"),
            set(&["CAROL"]),
        ),
        (
            "co star",
            d.cmp("displayName", CmpOp::Contains, "*"),
            set(&["CAROL"]),
        ),
        (
            "sw",
            d.cmp("userName", CmpOp::StartsWith, "AN"),
            set(&["ann"]),
        ),
        (
            "ew",
            d.cmp("userName", CmpOp::EndsWith, "OB"),
            set(&["bob"]),
        ),
        (
            "gt by order, folded",
            d.cmp("userName", CmpOp::Gt, "BOB"),
            set(&["CAROL"]),
        ),
        (
            "le by order, folded",
            d.cmp("userName", CmpOp::Le, "bob"),
            set(&["ann", "bob", weird]),
        ),
        ("pr", Predicate::Present(d.field("title")), set(&["ann"])),
        (
            "not pr",
            Predicate::Not(Box::new(Predicate::Present(d.field("title")))),
            set(&["bob", "CAROL", weird]),
        ),
        (
            "eq kept",
            d.cmp("externalId", CmpOp::Eq, "e-3"),
            set(&["CAROL"]),
        ),
        (
            "or",
            Predicate::Or(vec![
                d.cmp("userName", CmpOp::Eq, "ann"),
                d.cmp("userName", CmpOp::Eq, "bob"),
            ]),
            set(&["ann", "bob"]),
        ),
        (
            "key eq",
            Predicate::KeyEq(carol.key.clone()),
            set(&["CAROL"]),
        ),
        (
            "key in",
            Predicate::KeyIn(vec![carol.key.clone(), "nope".into()]),
            set(&["CAROL"]),
        ),
    ];
    for (what, p, want) in cases {
        assert_eq!(d.names(p).await, want, "{what}");
    }
    let refused = mapping::paging::page(
        d.users.as_ref(),
        d.cmp("title", CmpOp::Gt, "b"),
        Sort::default(),
        0,
        10,
        false,
    )
    .await;
    match refused {
        Err(BackendError::Unsupported { field, detail }) => {
            assert_eq!(field, Some(d.field("title")));
            assert!(detail.contains("title"), "{detail}");
        }
        other => panic!("gt on title must be refused: {other:?}"),
    }
}

/// Pages cover every entry once in the asked order (case-folded, both directions), with an
/// exact total.
#[tokio::test]
async fn pages_cover_every_entry_once_in_order() {
    let Some(d) = dir("pages").await else { return };
    let mut want = Vec::new();
    for i in 0..13 {
        let name = if i % 2 == 0 {
            format!("User{i:02}")
        } else {
            format!("user{i:02}")
        };
        d.add(&[("userName", &name)]).await;
        want.push(name);
    }
    for descending in [false, true] {
        let sort = Sort {
            field: Some(d.field("userName")),
            fold_case: true,
            descending,
            ranks: Vec::new(),
        };
        let mut got = Vec::new();
        for offset in (0..15).step_by(5) {
            let (total, rows) = mapping::paging::page(
                d.users.as_ref(),
                Predicate::True,
                sort.clone(),
                offset,
                5,
                false,
            )
            .await
            .expect("page");
            assert_eq!(total, 13);
            got.extend(
                rows.iter()
                    .map(|r| text(r, d.field("userName")).expect("name")),
            );
        }
        let mut expected = want.clone();
        expected.sort_by_key(|n| n.to_lowercase());
        if descending {
            expected.reverse();
        }
        assert_eq!(got, expected, "descending: {descending}");
    }
}

/// An update writes what changed; a new userName renames the entry (modify DN) and the id
/// stays; clearing a value removes the attribute; a userName taken by another entry, in any
/// case, is a conflict on that field and changes nothing.
#[tokio::test]
async fn updates_rename_and_keep_the_id() {
    let Some(d) = dir("update").await else { return };
    let ann = d.add(&[("userName", "ann"), ("title", "Boss")]).await;
    d.add(&[("userName", "bob")]).await;
    let (un, title) = (d.field("userName"), d.field("title"));
    let row = d
        .users
        .update(
            &ann.key,
            false,
            Box::new(move |_| {
                Ok(Change {
                    set: vec![
                        (un, Value::Text("ann, the 2nd".into())),
                        (title, Value::Null),
                    ],
                    members: vec![],
                })
            }),
        )
        .await
        .expect("update");
    assert_eq!(row.key, ann.key);
    assert_eq!(text(&row, un).as_deref(), Some("ann, the 2nd"));
    assert_eq!(text(&row, title), None);
    // The entry was renamed (slapd writes the comma back as \2C), and its entryUUID stayed.
    let server = ldap::server().expect("server");
    let renamed = server
        .entries(&d.tree.people, "(uid=ann\\2c the 2nd)")
        .await;
    assert_eq!(renamed.len(), 1);
    assert!(
        renamed[0].dn.starts_with("uid=ann\\2C the 2nd,"),
        "{}",
        renamed[0].dn
    );
    assert_eq!(renamed[0].attrs["entryUUID"], vec![ann.key.clone()]);
    assert!(server.entries(&d.tree.people, "(uid=ann)").await.is_empty());

    let taken = d
        .users
        .update(
            &ann.key,
            false,
            Box::new(move |_| {
                Ok(Change {
                    set: vec![(un, Value::Text("BOB".into()))],
                    members: vec![],
                })
            }),
        )
        .await;
    assert!(
        matches!(taken, Err(BackendError::Conflict { field: Some(f), .. }) if f == un),
        "{taken:?}"
    );
    let dup = d
        .users
        .insert(d.user(&[("userName", "Bob")]), vec![], false)
        .await;
    assert!(
        matches!(dup, Err(BackendError::Conflict { field: Some(f), .. }) if f == un),
        "{dup:?}"
    );
    assert_eq!(
        d.names(Predicate::True).await,
        set(&["ann, the 2nd", "bob"])
    );
}

/// A delete removes the entry; deleting again, or an unknown id, is `NotFound`.
#[tokio::test]
async fn deletes_remove_the_entry() {
    let Some(d) = dir("delete").await else { return };
    let ann = d.add(&[("userName", "ann"), ("externalId", "e-1")]).await;
    d.users
        .delete(&ann.key, DeleteMode::Hard, Box::new(|_| Ok(())))
        .await
        .expect("delete");
    assert!(
        d.users
            .fetch(&ann.key, false)
            .await
            .expect("fetch")
            .is_none()
    );
    assert!(
        ldap::server()
            .expect("server")
            .entries(&d.tree.people, "(uid=ann)")
            .await
            .is_empty()
    );
    let again = d
        .users
        .delete(&ann.key, DeleteMode::Hard, Box::new(|_| Ok(())))
        .await;
    assert!(matches!(again, Err(BackendError::NotFound)), "{again:?}");
}

/// A directory that limits each search of its service account (Active Directory's
/// MaxPageSize, OpenLDAP's `sizelimit`; 5 here) still lists every user: the sidecar reads
/// with the Simple Paged Results control. Sent unpaged (`page_size = 0`), the same search is
/// refused naming the directory's limit, never cut short to a wrong list.
#[tokio::test]
async fn a_size_limited_directory_is_read_in_pages() {
    support::init();
    let Some(server) = ldap::private_limited(5) else {
        return;
    };
    let tree = server.subtree("paged").await;
    let url = tree.url.clone();
    let svc = (ldap::SVC_DN, ldap::SVC_PASSWORD);
    let d = open_as(tree.clone(), &url, "page_size = 4", svc)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let want: BTreeSet<String> = (0..12).map(|i| format!("user{i:02}")).collect();
    for name in &want {
        d.add(&[("userName", name)]).await;
    }
    assert_eq!(d.names(Predicate::True).await, want);
    // The sidecar's own limit still holds across pages.
    let capped = open_as(tree.clone(), &url, "page_size = 4\nmax_results = 10", svc)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = mapping::paging::page(
        capped.users.as_ref(),
        Predicate::True,
        Sort::default(),
        0,
        100,
        false,
    )
    .await
    .expect_err("more than max_results");
    assert!(
        matches!(&err, BackendError::TooLarge { detail, .. } if detail.contains("more than 10")),
        "{err:?}"
    );
    let unpaged = open_as(tree, &url, "page_size = 0", svc)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = mapping::paging::page(
        unpaged.users.as_ref(),
        Predicate::True,
        Sort::default(),
        0,
        100,
        false,
    )
    .await
    .expect_err("the directory's limit");
    assert!(
        matches!(&err, BackendError::TooLarge { detail, .. } if detail.contains("directory stopped the search after 5 entries")),
        "{err:?}"
    );
}

/// A directory that goes down answers `Unavailable` (503 with Retry-After), not an error
/// of the request; once it is back, the same opened store works again without being
/// reopened: its pool drops the dead connections and binds new ones.
#[tokio::test]
async fn a_directory_restart_is_survived() {
    support::init();
    // A server of its own: the shared one stays up for the other tests.
    let Some(server) = ldap::private() else {
        return;
    };
    let tree = server.subtree("restart").await;
    let d = open(tree).await;
    d.add(&[("userName", "before")]).await;
    server.stop();
    let down = d
        .users
        .insert(d.user(&[("userName", "during")]), vec![], false)
        .await;
    assert!(
        matches!(down, Err(BackendError::Unavailable(_))),
        "{down:?}"
    );
    let down = d.users.fetch("x", false).await;
    assert!(
        matches!(down, Err(BackendError::Unavailable(_))),
        "{down:?}"
    );
    server.restart();
    d.add(&[("userName", "after")]).await;
    assert_eq!(d.names(Predicate::True).await, set(&["before", "after"]));
}

/// LDAPS and StartTLS verify the directory's certificate against `tls.ca` (rustls with
/// ring): with the CA the store works; without it (the system's roots) it does not start,
/// and says why.
#[tokio::test]
async fn ldaps_and_starttls_verify_the_directory() {
    support::init();
    let Some(server) = ldap::private_tls() else {
        return;
    };
    let ca = server.ca_file.clone().expect("ca");
    let ldaps = server.ldaps_url.clone().expect("ldaps");
    let tls = format!("tls = {{ ca = \"{}\" }}", ca.display());
    let d = open_with(server.subtree("ldaps").await, &ldaps, &tls)
        .await
        .expect("ldaps with the CA");
    d.add(&[("userName", "over-ldaps")]).await;
    assert_eq!(d.names(Predicate::True).await, set(&["over-ldaps"]));

    let starttls = format!("tls = {{ ca = \"{}\", starttls = true }}", ca.display());
    let url = server.url.clone();
    let d = open_with(server.subtree("starttls").await, &url, &starttls)
        .await
        .expect("StartTLS with the CA");
    d.add(&[("userName", "over-starttls")]).await;

    let refused = open_with(server.subtree("no-ca").await, &ldaps, "").await;
    match refused {
        Err(report) => assert!(report.contains("cannot bind"), "{report}"),
        Ok(_) => panic!("a certificate from an unknown CA must be refused"),
    }
}

/// The LDAP example end to end, through HTTP as an identity provider drives it: a create
/// (Entra's `userName eq` lookup first), a filter the directory cannot evaluate refused as
/// `400 invalidFilter` naming the attribute, a PATCH renaming the user (same id), a group
/// with the user as member, a duplicate `409 uniqueness`, and a delete that leaves the group
/// empty but alive.
#[tokio::test]
async fn the_example_serves_scim_on_a_directory() {
    let Some(tree) = ldap::subtree("example").await else {
        return;
    };
    let state = tempfile::tempdir().expect("tempdir");
    let state_db = state.path().join("state.db");
    std::fs::write(&state_db, "").expect("state db");
    let s = support::Sidecar::start(support::Options {
        config: Some(support::example_config("ldap")),
        env: vec![
            ("LDAP_URL", tree.url.clone()),
            ("LDAP_BIND_DN", ldap::ADMIN_DN.to_owned()),
            ("LDAP_BIND_PASSWORD", ldap::ADMIN_PASSWORD.to_owned()),
            ("LDAP_BASE_DN", tree.dn.clone()),
            ("SCIM_SIDECAR_STATE", state_db.display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    let c = &s.client;
    let found = c
        .get("/scim/v2/Users?filter=userName%20eq%20%22ann%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 0);
    let ann = c
        .post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "ann",
                "externalId": "e-ann",
                "name": { "givenName": "Ann", "familyName": "Archer" },
                "emails": [{ "type": "work", "value": "ann@example.test", "primary": true }]
            }),
        )
        .await
        .expect(201)
        .json();
    let id = ann["id"].as_str().expect("id").to_owned();
    let found = c
        .get("/scim/v2/Users?filter=userName%20eq%20%22ANN%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["Resources"][0]["id"], id.as_str());
    assert_eq!(found["Resources"][0]["externalId"], "e-ann");
    let entries = ldap::server()
        .expect("server")
        .entries(&tree.people, "(uid=ann)")
        .await;
    assert_eq!(
        entries[0].attrs["mail"],
        vec!["ann@example.test".to_owned()]
    );
    assert_eq!(entries[0].attrs["sn"], vec!["Archer".to_owned()]);

    let refused = c
        .get("/scim/v2/Users?filter=emails.value%20gt%20%22a%22")
        .await
        .scim_error(400, Some("invalidFilter"));
    assert!(refused.to_lowercase().contains("email"), "{refused}");

    c.post(
        "/scim/v2/Users",
        &serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "Ann",
            "name": { "familyName": "Other" }
        }),
    )
    .await
    .scim_error(409, Some("uniqueness"));

    let renamed = c
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &support::client::patch_body(serde_json::json!([
                { "op": "replace", "path": "userName", "value": "ann.archer" }
            ])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(renamed["id"], id.as_str());
    assert_eq!(renamed["userName"], "ann.archer");

    let group = c
        .post(
            "/scim/v2/Groups",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "staff",
                "members": [{ "value": id }]
            }),
        )
        .await
        .expect(201)
        .json();
    let gid = group["id"].as_str().expect("gid").to_owned();
    assert_eq!(group["members"][0]["value"], id.as_str());

    c.delete(&format!("/scim/v2/Users/{id}")).await.expect(204);
    c.get(&format!("/scim/v2/Users/{id}")).await.expect(404);
    let group = c
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    assert!(
        group["members"].as_array().is_none_or(|m| m.is_empty()),
        "{group}"
    );
}

/// `examples/ldap/slapd.sh` as a user runs it: it starts a directory loaded with the example's
/// `base.ldif`, prints the `LDAP_*` exports the example config reads and a stop command;
/// the example served on those values creates a user in `ou=people` that reads back by
/// `userName`, and the stop command removes the directory and its temp dir.
#[tokio::test]
async fn the_example_script_starts_a_directory_the_example_serves() {
    support::init();
    if ldap::server().is_none() {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ldap/slapd.sh");
    let out = std::process::Command::new(&script)
        .output()
        .expect("run slapd.sh");
    assert!(
        out.status.success(),
        "slapd.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let exports: std::collections::HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            // One pair of shell quotes around the value.
            let unquoted = ['\'', '"']
                .iter()
                .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)));
            (k.to_owned(), unquoted.unwrap_or(v).to_owned())
        })
        .collect();
    let stop = exports.get("SLAPD_STOP").cloned().expect("SLAPD_STOP");
    let dir = exports.get("SLAPD_DIR").cloned().expect("SLAPD_DIR");
    // Whatever happens below, the directory goes.
    struct Stop(String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("bash")
                .args(["-c", &self.0])
                .status();
        }
    }
    let stopper = Stop(stop);
    for k in [
        "LDAP_URL",
        "LDAP_BIND_DN",
        "LDAP_BIND_PASSWORD",
        "LDAP_BASE_DN",
    ] {
        assert!(exports.contains_key(k), "slapd.sh printed no {k}: {text}");
    }
    assert!(exports["LDAP_URL"].starts_with("ldap://127.0.0.1:"));
    let state = tempfile::tempdir().expect("tempdir");
    let state_db = state.path().join("state.db");
    std::fs::write(&state_db, "").expect("state db");
    let s = support::Sidecar::start(support::Options {
        config: Some(support::example_config("ldap")),
        env: vec![
            ("LDAP_URL", exports["LDAP_URL"].clone()),
            ("LDAP_BIND_DN", exports["LDAP_BIND_DN"].clone()),
            ("LDAP_BIND_PASSWORD", exports["LDAP_BIND_PASSWORD"].clone()),
            ("LDAP_BASE_DN", exports["LDAP_BASE_DN"].clone()),
            ("SCIM_SIDECAR_STATE", state_db.display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    let c = &s.client;
    let bo = c
        .post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "bo",
                "name": { "familyName": "Brown" }
            }),
        )
        .await
        .expect(201)
        .json();
    let found = c
        .get("/scim/v2/Users?filter=userName%20eq%20%22bo%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["id"], bo["id"]);
    drop(s);
    drop(stopper);
    assert!(
        !std::path::Path::new(&dir).exists(),
        "the stop command leaves {dir}"
    );
}

/// The LDAP example on a fresh subtree of the shared slapd, served over HTTP.
async fn example_on(tree: &ldap::Subtree) -> (support::Sidecar, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("tempdir");
    let state_db = state.path().join("state.db");
    std::fs::write(&state_db, "").expect("state db");
    let s = support::Sidecar::start(support::Options {
        config: Some(support::example_config("ldap")),
        env: vec![
            ("LDAP_URL", tree.url.clone()),
            ("LDAP_BIND_DN", ldap::ADMIN_DN.to_owned()),
            ("LDAP_BIND_PASSWORD", ldap::ADMIN_PASSWORD.to_owned()),
            ("LDAP_BASE_DN", tree.dn.clone()),
            ("SCIM_SIDECAR_STATE", state_db.display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    (s, state)
}

/// Whether `dn` binds with `password`.
async fn binds(url: &str, dn: &str, password: &str) -> bool {
    let (conn, mut l) = ldap3::LdapConnAsync::new(url).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.drive().await;
    });
    l.simple_bind(dn, password).await.is_ok_and(|r| r.rc == 0)
}

/// `password` maps to `userPassword` write-only: a create and a PATCH set it through the
/// Password Modify operation, so the directory holds it hashed (`{SSHA}`, never the clear
/// text) and the user binds with it; no response carries it, a PUT without it keeps it, and
/// a filter on it is refused.
#[tokio::test]
async fn passwords_are_hashed_by_the_directory_and_never_returned() {
    let Some(tree) = ldap::subtree("password").await else {
        return;
    };
    let (s, _state) = example_on(&tree).await;
    let c = &s.client;
    let user = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "pat",
        "password": "Tr0ub4dor&3",
        "name": { "familyName": "Pat" }
    });
    let created = c.post("/scim/v2/Users", &user).await.expect(201).json();
    assert!(created.get("password").is_none(), "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let dn = format!("uid=pat,{}", tree.people);
    let entry = &ldap::server()
        .expect("server")
        .entries(&tree.people, "(uid=pat)")
        .await[0];
    let stored = entry
        .attrs
        .get("userPassword")
        .or_else(|| {
            entry
                .bin_attrs
                .get("userPassword")
                .map(|_| &entry.attrs["uid"])
        })
        .expect("userPassword");
    assert!(stored[0].starts_with("{SSHA}"), "{stored:?}");
    assert!(binds(&tree.url, &dn, "Tr0ub4dor&3").await);

    let got = c
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert!(got.get("password").is_none(), "{got}");
    let got = c
        .get(&format!("/scim/v2/Users/{id}?attributes=password"))
        .await
        .expect(200)
        .json();
    assert!(got.get("password").is_none(), "{got}");

    c.patch(
        &format!("/scim/v2/Users/{id}"),
        &support::client::patch_body(serde_json::json!([
            { "op": "replace", "path": "password", "value": "correct horse" }
        ])),
    )
    .await
    .expect(200);
    assert!(binds(&tree.url, &dn, "correct horse").await);
    assert!(!binds(&tree.url, &dn, "Tr0ub4dor&3").await);

    // A PUT without a password keeps the one set.
    let mut put = user.clone();
    put.as_object_mut().expect("object").remove("password");
    put["displayName"] = "Pat P".into();
    c.put(&format!("/scim/v2/Users/{id}"), &put)
        .await
        .expect(200);
    assert!(binds(&tree.url, &dn, "correct horse").await);

    c.get("/scim/v2/Users?filter=password%20eq%20%22correct%20horse%22")
        .await
        .scim_error(400, Some("invalidFilter"));
}

/// What the directory refuses comes back as `400 invalidValue` naming the SCIM attribute and
/// carrying the directory's own message (inetOrgPerson requires `sn`); a value the
/// attribute's syntax does not allow likewise; `409 uniqueness` for a taken userName; `404`
/// for an id that names nothing.
#[tokio::test]
async fn directory_refusals_name_the_attribute() {
    let Some(tree) = ldap::subtree("refusals").await else {
        return;
    };
    let resources = format!(
        r#"
[resource.User]
backend = "dir"
base = "{people}"
rdn = "uid={{userName}}"
object_classes = ["inetOrgPerson"]

[resource.User.map]
userName = "uid"
"name.familyName" = "sn"
'phoneNumbers[type eq "work"].value' = "telephoneNumber"

[resource.User.set]
cn = {{ template = "{{userName}}" }}
"#,
        people = tree.people
    );
    let (s, _state) = serve(&tree, &resources).await;
    let c = &s.client;
    let detail = c
        .post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "nosn"
            }),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(detail.contains("name.familyName"), "{detail}");
    assert!(detail.contains("'sn'"), "{detail}");
    let detail = c
        .post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "badphone",
                "name": { "familyName": "B" },
                "phoneNumbers": [{ "type": "work", "value": "not a phone ✆" }]
            }),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(detail.contains("phoneNumbers"), "{detail}");
    assert!(detail.contains("telephoneNumber"), "{detail}");
    c.get("/scim/v2/Users/00000000-0000-0000-0000-000000000000")
        .await
        .expect(404);
    c.patch(
        "/scim/v2/Users/00000000-0000-0000-0000-000000000000",
        &support::client::patch_body(serde_json::json!([
            { "op": "replace", "path": "displayName", "value": "x" }
        ])),
    )
    .await
    .expect(404);
}

/// A value holding every character that means something in a DN or a filter
/// (`*()\,=+<>#;"`), as userName (so in the entry's RDN) and as displayName: the create
/// stores it exactly, the read returns it exactly, `eq` finds that one user, and a filter
/// made of those characters finds nothing it should not (`*` is no wildcard). NUL is refused
/// at the SCIM edge (`400 invalidValue`, as every control character is) before any LDAP
/// operation; below that edge the store keeps it exactly
/// (`nul_is_stored_and_found_literally`).
#[tokio::test]
async fn special_characters_round_trip_and_never_widen_a_search() {
    let Some(tree) = ldap::subtree("special").await else {
        return;
    };
    let (s, _state) = example_on(&tree).await;
    let c = &s.client;
    let weird = "a*(b)\\c,d=e+f<g>h#i;j\"k l";
    c.post(
        "/scim/v2/Users",
        &serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "nul\u{0}",
            "name": { "familyName": "F" }
        }),
    )
    .await
    .scim_error(400, Some("invalidValue"));
    for (name, display) in [("plain", "plain"), (weird, weird)] {
        c.post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name,
                "displayName": display,
                "name": { "familyName": "F" }
            }),
        )
        .await
        .expect(201);
    }
    let q = |f: String| format!("/scim/v2/Users?filter={}", urlencode(&f));
    let esc = serde_json::to_string(weird).expect("json");
    let found = c
        .get(&q(format!("userName eq {esc}")))
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["userName"], weird);
    assert_eq!(found["Resources"][0]["displayName"], weird);
    let id = found["Resources"][0]["id"].as_str().expect("id").to_owned();
    let got = c
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["userName"], weird);
    assert_eq!(got["displayName"], weird);
    for (filter, n) in [
        ("userName eq \"*\"".to_owned(), 0),
        ("displayName co \"*\"".to_owned(), 1),
        ("displayName co \"(\"".to_owned(), 1),
        ("userName sw \"a*\"".to_owned(), 1),
        ("userName eq \"a*)(uid=*\"".to_owned(), 0),
        ("displayName eq \"plain)(|(uid=*\"".to_owned(), 0),
    ] {
        let found = c.get(&q(filter.clone())).await.expect(200).json();
        assert_eq!(found["totalResults"], n, "{filter}: {found}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Below the SCIM edge (which refuses control characters), NUL in a naming value and in
/// another attribute is written, read and matched exactly by the store, and a filter holding
/// it matches only that value (RFC 4515 `\00`).
#[tokio::test]
async fn nul_is_stored_and_found_literally() {
    let Some(d) = dir("nul").await else { return };
    let name = "n\u{0}ul*";
    let shown = "x\u{0}(y)";
    let row = d.add(&[("userName", name), ("displayName", shown)]).await;
    d.add(&[("userName", "n"), ("displayName", "x")]).await;
    let again = d
        .users
        .fetch(&row.key, false)
        .await
        .expect("fetch")
        .expect("found");
    assert_eq!(text(&again, d.field("userName")).as_deref(), Some(name));
    assert_eq!(text(&again, d.field("displayName")).as_deref(), Some(shown));
    assert_eq!(
        d.names(d.cmp("userName", CmpOp::Eq, name)).await,
        set(&[name])
    );
    assert_eq!(
        d.names(d.cmp("displayName", CmpOp::StartsWith, "x\u{0}"))
            .await,
        set(&[name])
    );
    assert_eq!(
        d.names(d.cmp("userName", CmpOp::Eq, "n")).await,
        set(&["n"])
    );
}

/// A config over `tree` with `resources` (TOML `[resource.…]` tables), served over HTTP.
async fn serve(tree: &ldap::Subtree, resources: &str) -> (support::Sidecar, tempfile::TempDir) {
    serve_with(tree, "", resources).await
}

/// [`serve`], with `backend` lines added to `[backend.dir]`.
async fn serve_with(
    tree: &ldap::Subtree,
    backend: &str,
    resources: &str,
) -> (support::Sidecar, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_db = dir.path().join("state.db");
    std::fs::write(&state_db, "").expect("state db");
    let text = format!(
        "[listen]\naddr = \"${{SCIM_SIDECAR_LISTEN}}\"\n\n[upstream]\nurl = \"${{UPSTREAM_URL}}\"\n\n\
         [admin]\naddr = \"${{SCIM_SIDECAR_ADMIN_LISTEN}}\"\n\n[auth]\nbearer_tokens = [\"${{SCIM_TOKEN}}\"]\n\n\
         [backend.dir]\ntype = \"ldap\"\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\n{backend}\n\n\
         [backend.state]\ntype = \"sqlite\"\npath = \"{}\"\n\n[state]\nbackend = \"state\"\n\n{resources}",
        tree.url,
        ldap::ADMIN_DN,
        ldap::ADMIN_PASSWORD,
        state_db.display(),
    );
    let path = dir.path().join("scim-sidecar.toml");
    std::fs::write(&path, text).expect("config");
    let s = support::Sidecar::start(support::Options {
        config: Some(path),
        migrate: true,
        ..Default::default()
    })
    .await;
    (s, dir)
}

/// posixAccount users: `uidNumber` allocated from a counter entry, distinct under twelve
/// concurrent creates and the counter advanced by exactly twelve; `gidNumber` a constant and
/// `homeDirectory` built from the userName by a template. `active` lives in a status
/// attribute through a value map, and `DELETE` deprovisions by it (`on_delete = "soft"`): the
/// entry stays, marked disabled, the resource is gone (404, out of lists); a later create of
/// the same userName brings the same entry back enabled, with its id.
#[tokio::test]
async fn posix_accounts_get_unique_numbers_and_deletes_disable() {
    let Some(tree) = ldap::subtree("posix").await else {
        return;
    };
    let server = ldap::server().expect("server");
    let counter = format!("cn=uidNext,{}", tree.dn);
    server
        .add(
            &counter,
            &[
                ("objectClass", &["organizationalRole", "extensibleObject"]),
                ("cn", &["uidNext"]),
                ("uidNumber", &["10000"]),
            ],
        )
        .await
        .expect("counter");
    let resources = format!(
        r#"
[resource.User]
backend = "dir"
base = "{people}"
rdn = "uid={{userName}}"
object_classes = ["inetOrgPerson", "posixAccount"]
allocate = {{ uidNumber = "{counter}" }}
on_delete = "soft"

[resource.User.map]
userName = "uid"
"name.familyName" = "sn"
active = {{ attribute = "employeeType", values = {{ true = "active", false = "disabled" }} }}

[resource.User.set]
cn = {{ template = "{{userName}}" }}
gidNumber = "10000"
homeDirectory = {{ template = "/home/{{userName}}" }}
"#,
        people = tree.people
    );
    let (s, _dir) = serve(&tree, &resources).await;
    let c = &s.client;
    let user = |name: String| {
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
            "active": true,
            "name": { "familyName": "P" }
        })
    };
    let creates: Vec<_> = (0..12)
        .map(|i| {
            let body = user(format!("p{i}"));
            let c = c.clone();
            tokio::spawn(async move { c.post("/scim/v2/Users", &body).await.expect(201).json() })
        })
        .collect();
    let mut created = Vec::new();
    for t in creates {
        created.push(t.await.expect("create"));
    }
    let entries = server
        .entries(&tree.people, "(objectClass=posixAccount)")
        .await;
    assert_eq!(entries.len(), 12);
    let numbers: BTreeSet<String> = entries
        .iter()
        .map(|e| e.attrs["uidNumber"][0].clone())
        .collect();
    let expected: BTreeSet<String> = (10000..10012).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected);
    let next = server.entries(&counter, "(objectClass=*)").await;
    assert_eq!(next[0].attrs["uidNumber"], vec!["10012".to_owned()]);
    let p0 = entries
        .iter()
        .find(|e| e.attrs["uid"].contains(&"p0".to_owned()))
        .expect("p0");
    assert_eq!(p0.attrs["homeDirectory"], vec!["/home/p0".to_owned()]);
    assert_eq!(p0.attrs["gidNumber"], vec!["10000".to_owned()]);
    assert_eq!(p0.attrs["employeeType"], vec!["active".to_owned()]);

    let id = created
        .iter()
        .find(|u| u["userName"] == "p0")
        .and_then(|u| u["id"].as_str())
        .expect("id")
        .to_owned();
    c.delete(&format!("/scim/v2/Users/{id}")).await.expect(204);
    c.get(&format!("/scim/v2/Users/{id}")).await.expect(404);
    let list = c
        .get("/scim/v2/Users?filter=userName%20eq%20%22p0%22")
        .await
        .expect(200)
        .json();
    assert_eq!(list["totalResults"], 0);
    let kept = server.entries(&tree.people, "(uid=p0)").await;
    assert_eq!(kept.len(), 1, "a soft delete keeps the entry");
    assert_eq!(kept[0].attrs["employeeType"], vec!["disabled".to_owned()]);

    let back = c
        .post("/scim/v2/Users", &user("p0".into()))
        .await
        .expect(201)
        .json();
    assert_eq!(back["id"], id.as_str());
    assert_eq!(back["active"], true);
    let kept = server.entries(&tree.people, "(uid=p0)").await;
    assert_eq!(kept[0].attrs["employeeType"], vec!["active".to_owned()]);
    assert_eq!(kept[0].attrs["uidNumber"], p0.attrs["uidNumber"]);
}

/// `disabled_base`: `DELETE` of a soft-deleting type moves the entry out of the base into
/// the disabled OU (keeping its entryUUID) and out of the groups listing it; the resource is
/// gone for SCIM (404) and no longer under the base the app reads. A later create of the
/// same userName moves the same entry back, with the same id.
#[tokio::test]
async fn deletes_can_move_entries_to_a_disabled_ou() {
    let Some(tree) = ldap::subtree("disabled").await else {
        return;
    };
    let server = ldap::server().expect("server");
    let disabled = format!("ou=disabled,{}", tree.dn);
    server
        .add(
            &disabled,
            &[
                ("objectClass", &["organizationalUnit"]),
                ("ou", &["disabled"]),
            ],
        )
        .await
        .expect("ou=disabled");
    let resources = format!(
        r#"
[resource.User]
backend = "dir"
base = "{people}"
rdn = "uid={{userName}}"
object_classes = ["inetOrgPerson"]
on_delete = "soft"
disabled_base = "{disabled}"

[resource.User.map]
userName = "uid"
"name.familyName" = "sn"

[resource.User.set]
cn = {{ template = "{{userName}}" }}

[resource.Group]
backend = "dir"
base = "{groups}"
rdn = "cn={{displayName}}"
object_classes = ["groupOfNames"]
members = {{ attribute = "member", empty = "cn=nobody" }}

[resource.Group.map]
displayName = "cn"
"#,
        people = tree.people,
        groups = tree.groups,
    );
    let (s, _dir) = serve(&tree, &resources).await;
    let c = &s.client;
    let u = c
        .post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "gone",
                "name": { "familyName": "G" }
            }),
        )
        .await
        .expect(201)
        .json();
    let id = u["id"].as_str().expect("id").to_owned();
    let g = c
        .post(
            "/scim/v2/Groups",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "team",
                "members": [{ "value": id }]
            }),
        )
        .await
        .expect(201)
        .json();
    c.delete(&format!("/scim/v2/Users/{id}")).await.expect(204);
    c.get(&format!("/scim/v2/Users/{id}")).await.expect(404);
    assert!(server.entries(&tree.people, "(uid=gone)").await.is_empty());
    let moved = server.entries(&disabled, "(uid=gone)").await;
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].attrs["entryUUID"], vec![id.clone()]);
    let group = c
        .get(&format!(
            "/scim/v2/Groups/{}",
            g["id"].as_str().expect("gid")
        ))
        .await
        .expect(200)
        .json();
    assert!(
        group["members"].as_array().is_none_or(|m| m.is_empty()),
        "{group}"
    );
    // A create the directory refuses (no familyName: inetOrgPerson requires sn) is 400
    // with the directory's message, and leaves the entry where the delete put it: brought
    // back for the rewrite, it is moved out again when the rewrite fails.
    let refused = c
        .post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "gone"
            }),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(refused.contains("requires attribute 'sn'"), "{refused}");
    assert_eq!(server.entries(&disabled, "(uid=gone)").await.len(), 1);
    assert!(server.entries(&tree.people, "(uid=gone)").await.is_empty());
    // A create of the same userName brings the same entry back under the base (RFC 7644
    // §3.6 leaves it to the service; the sidecar revives rather than duplicates).
    let again = c
        .post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "gone",
                "name": { "familyName": "Back" }
            }),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(again["id"], id.as_str(), "{again}");
    assert_eq!(again["name"]["familyName"], "Back");
    assert!(server.entries(&disabled, "(uid=gone)").await.is_empty());
    let back = server.entries(&tree.people, "(uid=gone)").await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].attrs["entryUUID"], vec![id.clone()]);
    assert_eq!(back[0].attrs["sn"], vec!["Back".to_owned()]);
    c.get(&format!("/scim/v2/Users/{id}")).await.expect(200);
}

/// Drives one kind of group through HTTP: `class` and `members` (the TOML of the group's
/// membership), checking what the directory's `attr` holds for each member with `listed`
/// (from the member's userName and DN).
async fn group_kind(
    name: &str,
    class: &str,
    members: &str,
    attr: &str,
    set: &str,
    listed: fn(&str, &str) -> String,
) {
    let Some(tree) = ldap::subtree(name).await else {
        return;
    };
    let server = ldap::server().expect("server");
    let resources = format!(
        r#"
[resource.User]
backend = "dir"
base = "{people}"
rdn = "uid={{userName}}"
object_classes = ["inetOrgPerson", "posixAccount"]

[resource.User.map]
userName = "uid"
"name.familyName" = "sn"

[resource.User.set]
cn = {{ template = "{{userName}}" }}
uidNumber = "1000"
gidNumber = "1000"
homeDirectory = {{ template = "/home/{{userName}}" }}

[resource.Group]
backend = "dir"
base = "{groups}"
rdn = "cn={{displayName}}"
object_classes = ["{class}"]
members = {members}

[resource.Group.map]
displayName = "cn"

[resource.Group.set]
{set}
"#,
        people = tree.people,
        groups = tree.groups,
    );
    let (s, _dir) = serve(&tree, &resources).await;
    let c = &s.client;
    let mut ids = Vec::new();
    for u in ["ann", "bob", "cy"] {
        let r = c
            .post(
                "/scim/v2/Users",
                &serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": u,
                    "name": { "familyName": u }
                }),
            )
            .await
            .expect(201)
            .json();
        ids.push(r["id"].as_str().expect("id").to_owned());
    }
    let dn = |u: &str| format!("uid={u},{}", tree.people);
    let holds =
        |vs: &[&str]| -> BTreeSet<String> { vs.iter().map(|u| listed(u, &dn(u))).collect() };
    let in_dir = || async {
        let e = server.entries(&tree.groups, "(cn=team)").await;
        e[0].attrs
            .get(attr)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !v.starts_with("cn=nobody"))
            .collect::<BTreeSet<String>>()
    };
    let ids_of = |g: &serde_json::Value| -> BTreeSet<String> {
        g["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["value"].as_str().expect("value").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let g = c
        .post(
            "/scim/v2/Groups",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "team",
                "members": []
            }),
        )
        .await
        .expect(201)
        .json();
    let gid = g["id"].as_str().expect("gid").to_owned();
    assert!(in_dir().await.is_empty());
    // One PATCH adding two members and one removing one: what the directory holds follows.
    c.patch(
        &format!("/scim/v2/Groups/{gid}"),
        &support::client::patch_body(serde_json::json!([
            { "op": "add", "path": "members", "value": [{ "value": ids[0] }, { "value": ids[1] }, { "value": ids[2] }] },
            { "op": "remove", "path": format!("members[value eq \"{}\"]", ids[2]) }
        ])),
    )
    .await
    .expect_success();
    assert_eq!(in_dir().await, holds(&["ann", "bob"]));
    let got = c
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    assert_eq!(ids_of(&got), ids[..2].iter().cloned().collect());
    let by_member = c
        .get(&format!(
            "/scim/v2/Groups?filter=members.value%20eq%20%22{}%22",
            ids[1]
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(by_member["totalResults"], 1);

    // A rename: the group follows, so the member stays a member.
    c.patch(
        &format!("/scim/v2/Users/{}", ids[0]),
        &support::client::patch_body(serde_json::json!([
            { "op": "replace", "path": "userName", "value": "anna" }
        ])),
    )
    .await
    .expect(200);
    assert_eq!(in_dir().await, holds(&["anna", "bob"]));
    let got = c
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    assert_eq!(ids_of(&got), ids[..2].iter().cloned().collect());

    // A delete: the group no longer lists it; the last member out leaves an empty group.
    c.delete(&format!("/scim/v2/Users/{}", ids[1]))
        .await
        .expect(204);
    assert_eq!(in_dir().await, holds(&["anna"]));
    c.patch(
        &format!("/scim/v2/Groups/{gid}"),
        &support::client::patch_body(serde_json::json!([
            { "op": "remove", "path": "members" }
        ])),
    )
    .await
    .expect_success();
    assert!(in_dir().await.is_empty());
    let got = c
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    assert!(ids_of(&got).is_empty(), "{got}");
}

/// `groupOfUniqueNames`: members are DNs in `uniqueMember`; membership PATCHes, a member's
/// rename (the group follows the new DN), a member's delete and emptying the group (the
/// placeholder keeps the schema happy, never shown) all read back as sent.
#[tokio::test]
async fn group_of_unique_names_keeps_member_dns() {
    group_kind(
        "uniq",
        "groupOfUniqueNames",
        r#"{ attribute = "uniqueMember", empty = "cn=nobody" }"#,
        "uniqueMember",
        "",
        |_, dn| dn.to_owned(),
    )
    .await;
}

/// `posixGroup`: members are the users' `uid` values in `memberUid`, not DNs; member ids
/// resolve to uids, uids back to ids, a rename replaces the old uid, a delete removes it; an
/// empty posixGroup needs no placeholder.
#[tokio::test]
async fn posix_groups_list_member_uids() {
    group_kind(
        "posixgroup",
        "posixGroup",
        r#"{ attribute = "memberUid", value = "uid" }"#,
        "memberUid",
        r#"gidNumber = "2000""#,
        |uid, _| uid.to_owned(),
    )
    .await;
}

/// `scim-sidecar check` on the LDAP example against a live slapd: clean as shipped; with
/// mistakes, every one is reported on its own line with the config file and line, checked
/// against the directory's subschema: an unknown object class, an unknown attribute (with a
/// suggestion), an attribute the classes do not allow, and an attribute a class requires
/// that nothing writes; the exit status is non-zero.
#[tokio::test]
async fn check_reads_the_directory_schema() {
    let Some(tree) = ldap::subtree("check").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(support::example_config("ldap")).expect("example");
    std::fs::write(dir.path().join("state.db"), "").expect("state db");
    let run = |text: String| {
        let path = dir.path().join("scim-sidecar.toml");
        std::fs::write(&path, text).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-sidecar"))
            .args(["check", "--config"])
            .arg(&path)
            .env("LDAP_URL", &tree.url)
            .env("LDAP_BIND_DN", ldap::ADMIN_DN)
            .env("LDAP_BIND_PASSWORD", ldap::ADMIN_PASSWORD)
            .env("LDAP_BASE_DN", &tree.dn)
            .env("SCIM_TOKEN", "check-token-0123456789")
            .env("SCIM_SIDECAR_STATE", dir.path().join("state.db"))
            .output()
            .expect("run check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
            path.display().to_string(),
        )
    };
    let (ok, out, _) = run(text.clone());
    assert!(ok, "{out}");
    let broken = text
        .replace(
            "object_classes = [\"groupOfNames\"]",
            "object_classes = [\"groupOfNamez\"]",
        )
        .replace(
            "title = \"title\"",
            "title = \"titel\"\nnickName = \"uidNumber\"",
        )
        .replace(
            "\"name.familyName\" = { attribute = \"sn\", default = { template = \"{userName}\" } }",
            "",
        );
    let (ok, out, file) = run(broken);
    assert!(!ok, "{out}");
    let lower = out.to_lowercase();
    for needle in [
        "object class 'groupofnamez' is not in the directory's schema",
        "did you mean 'groupofnames'",
        "attribute 'titel' is not in the directory's schema",
        "did you mean 'title'",
        "attribute 'uidnumber' is not allowed",
        "requires attribute 'sn', which the mapping never writes",
    ] {
        assert!(lower.contains(needle), "{needle}:\n{out}");
    }
    let lines = out
        .lines()
        .filter(|l| l.starts_with(&format!("{file}:")) && l.contains("error"))
        .count();
    assert!(lines >= 4, "every problem on its own line:\n{out}");
}

/// The directory going down while the sidecar serves: requests answer `503` with a
/// `Retry-After` header (an IdP retries later, nothing is lost), and once slapd is back on
/// the same port the same sidecar serves again without a restart.
#[tokio::test]
async fn a_directory_down_is_503_with_retry_after() {
    support::init();
    let Some(server) = ldap::private() else {
        return;
    };
    let tree = server.subtree("down").await;
    let resources = format!(
        r#"
[resource.User]
backend = "dir"
base = "{people}"
rdn = "uid={{userName}}"
object_classes = ["inetOrgPerson"]

[resource.User.map]
userName = "uid"
"name.familyName" = "sn"

[resource.User.set]
cn = {{ template = "{{userName}}" }}
"#,
        people = tree.people
    );
    let (s, _dir) = serve(&tree, &resources).await;
    let c = &s.client;
    let list = "/scim/v2/Users?filter=userName%20eq%20%22x%22";
    c.get(list).await.expect(200);
    server.stop();
    let down = c.get(list).await;
    assert!(
        down.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{:?}",
        down.headers
    );
    down.scim_error(503, None);
    server.restart();
    c.get(list).await.expect(200);
}

/// A directory answer garbled on its way (a broken directory, or a device between it and the
/// sidecar). A search result whose element overruns the message around it, or that nests a
/// hundred thousand levels deep, is a 503 at once: not a wait for `operation_timeout` on
/// bytes that never come (upstream ldap3 waits), nor a stack overflow that ends the process
/// (upstream recurses without a bound); the connection is dropped. So is a well-formed message
/// that is no readable entry (a DN and no attribute list, a DN that is not UTF-8) or not an
/// answer a search takes (a modify's result): upstream ldap3 panicked reading those, in the
/// request (a 500) or in the task that drives the connection. Each time the next request, on a
/// fresh connection, is served.
#[tokio::test]
async fn a_garbled_directory_answer_is_an_error_and_the_next_is_served() {
    // Long enough that an answer within the client's wait cannot be the timeout's.
    let backend = "operation_timeout = \"120s\"";
    let Some((relay, s, _dir)) = serve_relayed("garbled", backend).await else {
        return;
    };
    let c = &s.client;
    c.post("/scim/v2/Users", &support::client::user("garbled"))
        .await
        .expect(201);
    let list = "/scim/v2/Users?filter=userName%20eq%20%22garbled%22";
    let found = |r: support::client::Resp| r.expect(200).json()["totalResults"].clone();
    assert_eq!(found(c.get(list).await), 1);

    let mut deep = vec![0x64, 0x84];
    deep.extend_from_slice(&(6 * 100_000u32).to_be_bytes());
    for level in 0..100_000u32 {
        deep.extend_from_slice(&[0x30, 0x84]);
        deep.extend_from_slice(&(6 * (100_000 - 1 - level)).to_be_bytes());
    }
    let cases: [(&[u8], u16); 6] = [
        (b"\x64\x04\x04\x05ab", 503), // a DN overrunning the entry
        (&deep, 503),
        (b"\x64\x03\x04\x01a", 503), // a DN and no attribute list
        (b"\x64\x05\x04\x01\xff\x30\x00", 503), // a DN that is not UTF-8
        (b"\x64\x09\x04\x01a\x30\x04\x30\x02\x04\x00", 503), // an attribute without values
        (b"\x67\x07\x0a\x01\x00\x04\x00\x04\x00", 503), // a modify's result, for a search
    ];
    for (garbled, status) in cases {
        relay.garble_next_entry(garbled.to_vec());
        let answer = tokio::time::timeout(Duration::from_secs(30), c.get(list))
            .await
            .expect("answered without waiting for the operation timeout");
        answer.scim_error(status, None);
        assert!(relay.garbled(), "the answer went through the relay");
        assert_eq!(found(c.get(list).await), 1);
    }
}

/// A directory that stops answering: a request that meets it is a 503 after
/// `operation_timeout`, not before and not much after, and a create writes nothing. Each
/// connection keeps its timers for all of its operations and moves one on only when it fires
/// before the current operation's deadline, so a quick request after a pause longer than the
/// timeout (the timer fired while the connection was idle) is served, and each stalled one
/// is cut at its own deadline.
#[tokio::test]
async fn a_directory_that_stops_answering_is_503_after_the_timeout() {
    // One connection per shard thread: the requests of one client share it, and its timers.
    let backend = "operation_timeout = \"300ms\"\nconnect_timeout = \"300ms\"\npool_size = 1";
    let Some((relay, s, _dir)) = serve_relayed("stalled", backend).await else {
        return;
    };
    let c = &s.client;
    c.post("/scim/v2/Users", &support::client::user("steady"))
        .await
        .expect(201);
    let found = |r: support::client::Resp| r.expect(200).json()["totalResults"].clone();
    let list = |name: &str| format!("/scim/v2/Users?filter=userName%20eq%20%22{name}%22");
    for pause_ms in [0, 400, 0] {
        assert_eq!(found(c.get(&list("steady")).await), 1);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        assert_eq!(found(c.get(&list("steady")).await), 1);
        relay.stall(true);
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(10), c.get(&list("steady")))
            .await
            .expect("the stalled request was cut by the operation timeout")
            .scim_error(503, None);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
            "an operation timeout of 300 ms took {took:?}"
        );
        relay.stall(false);
    }
    relay.stall(true);
    c.post("/scim/v2/Users", &support::client::user("stalled"))
        .await
        .scim_error(503, None);
    relay.stall(false);
    assert_eq!(found(c.get(&list("stalled")).await), 0);
    assert_eq!(found(c.get(&list("steady")).await), 1);
}

/// The users of a fresh subtree `name` served through a [`Garbler`] in front of slapd, with
/// `backend` added to the directory's settings; `None` without slapd.
async fn serve_relayed(
    name: &str,
    backend: &str,
) -> Option<(Garbler, support::Sidecar, tempfile::TempDir)> {
    let tree = ldap::subtree(name).await?;
    let relay = Garbler::start(&tree.url).await;
    let relayed = ldap::Subtree {
        url: relay.url.clone(),
        ..tree.clone()
    };
    let (s, dir) = serve_with(&relayed, backend, &resources(&tree.people)).await;
    Some((relay, s, dir))
}

/// A TCP relay to slapd that passes every byte, except that once armed it replaces the
/// operation of the next search result entry from the directory (its message id kept), and
/// that while stalled it drops what the sidecar sends (a directory that has stopped
/// answering, which has seen none of it).
struct Garbler {
    url: String,
    next: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Garbler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Garbler {
    async fn start(directory: &str) -> Garbler {
        let target = directory
            .strip_prefix("ldap://")
            .expect("an ldap:// URL")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ldap://{}", listener.local_addr().expect("addr"));
        let next: Arc<std::sync::Mutex<Option<Vec<u8>>>> = Arc::default();
        let stalled: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (armed, stall) = (next.clone(), stalled.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (from_client, to_client) = client.into_split();
                let (from_server, to_server) = server.into_split();
                tokio::spawn(Self::requests(from_client, to_server, stall.clone()));
                tokio::spawn(Self::answers(from_server, to_client, armed.clone()));
            }
        });
        Garbler {
            url,
            next,
            stalled,
            task,
        }
    }

    /// Drops what the sidecar sends from now on (`true`), or passes it again.
    fn stall(&self, on: bool) {
        self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Copies the sidecar's requests to the directory, except while stalled.
    async fn requests(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        stalled: Arc<std::sync::atomic::AtomicBool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !stalled.load(std::sync::atomic::Ordering::SeqCst)
                && to.write_all(&chunk[..n]).await.is_err()
            {
                return;
            }
        }
    }

    /// Replaces the operation of the next search result entry with `op`.
    fn garble_next_entry(&self, op: Vec<u8>) {
        *self.next.lock().unwrap() = Some(op);
    }

    /// Whether the last replacement was made.
    fn garbled(&self) -> bool {
        self.next.lock().unwrap().is_none()
    }

    /// Copies the directory's messages to the client, one whole LDAPMessage at a time.
    async fn answers(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        next: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // A message: SEQUENCE { messageID INTEGER, protocolOp, controls }.
            while let Some((header, len)) = message_header(&buf) {
                if buf.len() < header + len {
                    break;
                }
                let message: Vec<u8> = buf.drain(..header + len).collect();
                let op_at = header + 2 + usize::from(message[header + 1]);
                let replacement = match message.get(op_at) {
                    Some(0x64) => next.lock().unwrap().take(),
                    _ => None,
                };
                let out = match replacement {
                    None => message,
                    Some(op) => {
                        let body = [&message[header..op_at], &op[..]].concat();
                        let mut out = vec![0x30, 0x84];
                        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                        out.extend_from_slice(&body);
                        out
                    }
                };
                if to.write_all(&out).await.is_err() {
                    return;
                }
            }
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// The header length and content length of the BER element at the start of `buf`, once its
/// header has arrived.
fn message_header(buf: &[u8]) -> Option<(usize, usize)> {
    let first = *buf.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7F);
    let bytes = buf.get(2..2 + n)?;
    Some((
        2 + n,
        bytes.iter().fold(0, |len, &b| (len << 8) | usize::from(b)),
    ))
}

/// An entry whose attributes hold several values (two `mail`s and two `title`s, written by
/// another tool): SCIM shows the first of each; a PUT that sends those back unchanged keeps
/// every value; a new e-mail replaces the one shown and keeps the other; removing the title
/// removes only the one shown.
#[tokio::test]
async fn attributes_with_several_values_keep_the_others() {
    let Some(tree) = ldap::subtree("multi").await else {
        return;
    };
    let server = ldap::server().expect("server");
    let dn = format!("uid=multi,{}", tree.people);
    server
        .add(
            &dn,
            &[
                ("objectClass", &["inetOrgPerson"]),
                ("uid", &["multi"]),
                ("cn", &["multi"]),
                ("sn", &["Multi"]),
                ("mail", &["first@example.test", "second@example.test"]),
                ("title", &["Boss", "Chief"]),
            ],
        )
        .await
        .expect("entry");
    let (s, _state) = example_on(&tree).await;
    let c = &s.client;
    let found = c
        .get("/scim/v2/Users?filter=userName%20eq%20%22multi%22")
        .await
        .expect(200)
        .json();
    let u = &found["Resources"][0];
    let id = u["id"].as_str().expect("id").to_owned();
    // Which value comes first is the directory's order (the harness adds them as a set).
    let shown_mail = u["emails"][0]["value"].as_str().expect("mail").to_owned();
    let other_mail = ["first@example.test", "second@example.test"]
        .into_iter()
        .find(|m| *m != shown_mail)
        .expect("other mail");
    let shown_title = u["title"].as_str().expect("title").to_owned();
    let other_title = ["Boss", "Chief"]
        .into_iter()
        .find(|t| *t != shown_title)
        .expect("other title");
    assert_ne!(other_mail, shown_mail);
    let mail = || async {
        let e = server.entries(&tree.people, "(uid=multi)").await;
        let mut v = e[0].attrs.get("mail").cloned().unwrap_or_default();
        v.sort();
        (v, e[0].attrs.get("title").cloned().unwrap_or_default())
    };
    let mut put = u.clone();
    put["displayName"] = "Multi Person".into();
    c.put(&format!("/scim/v2/Users/{id}"), &put)
        .await
        .expect(200);
    let (mails, titles) = mail().await;
    assert_eq!(mails, ["first@example.test", "second@example.test"]);
    assert_eq!(titles.len(), 2, "{titles:?}");

    c.patch(
        &format!("/scim/v2/Users/{id}"),
        &support::client::patch_body(serde_json::json!([
            { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@example.test" },
            { "op": "remove", "path": "title" }
        ])),
    )
    .await
    .expect(200);
    let (mails, titles) = mail().await;
    let mut want = vec!["new@example.test", other_mail];
    want.sort();
    assert_eq!(mails, want);
    assert_eq!(titles, [other_title]);
}

/// A search matching more entries than the backend's `max_results` is refused with `400
/// tooMany` telling the client to narrow the filter — never truncated, never an unbounded
/// read; a narrower filter is answered.
#[tokio::test]
async fn a_search_larger_than_max_results_is_refused() {
    let Some(tree) = ldap::subtree("toomany").await else {
        return;
    };
    let resources = format!(
        r#"
[resource.User]
backend = "dir"
base = "{people}"
rdn = "uid={{userName}}"
object_classes = ["inetOrgPerson"]

[resource.User.map]
userName = "uid"
"name.familyName" = "sn"

[resource.User.set]
cn = {{ template = "{{userName}}" }}
"#,
        people = tree.people
    );
    let (s, _dir) = serve_with(&tree, "max_results = 2", &resources).await;
    let c = &s.client;
    for u in ["a", "b", "c"] {
        c.post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": u,
                "name": { "familyName": u }
            }),
        )
        .await
        .expect(201);
    }
    let detail = c
        .get("/scim/v2/Users")
        .await
        .scim_error(400, Some("tooMany"));
    assert!(detail.contains("narrow the filter"), "{detail}");
    assert!(!detail.contains("members"), "{detail}");
    let found = c
        .get("/scim/v2/Users?filter=userName%20eq%20%22b%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1);
}

/// `groups = "Group"` on directory users: a user shows the groupOfNames entries whose
/// `member` lists its DN (one search of the group base), with their ids and names; a group
/// that does not list it, or the empty-group placeholder, does not show.
#[tokio::test]
async fn users_show_the_groups_listing_them() {
    let Some(tree) = ldap::subtree("usergroups").await else {
        return;
    };
    let resources = format!(
        r#"
[resource.User]
backend = "dir"
base = "{people}"
rdn = "uid={{userName}}"
object_classes = ["inetOrgPerson"]
groups = "Group"

[resource.User.map]
userName = "uid"
"name.familyName" = "sn"

[resource.User.set]
cn = {{ template = "{{userName}}" }}

[resource.Group]
backend = "dir"
base = "{groups}"
rdn = "cn={{displayName}}"
object_classes = ["groupOfNames"]
members = {{ attribute = "member", empty = "cn=nobody" }}

[resource.Group.map]
displayName = "cn"
"#,
        people = tree.people,
        groups = tree.groups,
    );
    let (s, _dir) = serve(&tree, &resources).await;
    let user = |name: &str| {
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
            "name": { "familyName": "F" }
        })
    };
    let ivy = s.created("/scim/v2/Users", &user("ivy")).await;
    let jo = s.created("/scim/v2/Users", &user("jo")).await;
    let group = |name: &str, members: &[&str]| {
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
            "members": members.iter().map(|m| serde_json::json!({"value": m})).collect::<Vec<_>>()
        })
    };
    let ops = s
        .created("/scim/v2/Groups", &group("ops", &[&ivy, &jo]))
        .await;
    s.created("/scim/v2/Groups", &group("empty", &[])).await;
    s.created("/scim/v2/Groups", &group("others", &[&jo])).await;
    let u = s
        .client
        .get(&format!("/scim/v2/Users/{ivy}"))
        .await
        .expect(200)
        .json();
    let groups = u["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{u}");
    assert_eq!(groups[0]["value"], ops.as_str());
    assert_eq!(groups[0]["display"], "ops");
    assert_eq!(groups[0]["type"], "direct");
    let j = s
        .client
        .get(&format!("/scim/v2/Users/{jo}"))
        .await
        .expect(200)
        .json();
    assert_eq!(j["groups"].as_array().map(Vec::len), Some(2), "{j}");
}

/// `scim-sidecar explain` on the LDAP example: a directory cannot take a write back, so a
/// POST, PATCH or DELETE is refused with a message naming the resource type and its store,
/// and the directory holds no new entry; a GET runs and shows the answer.
#[tokio::test]
async fn explain_refuses_writes_a_directory_cannot_take_back() {
    support::init();
    let Some(tree) = ldap::subtree("explain").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // Not there yet: `migrate` creates the state database, as the README's steps run it.
    let state = dir.path().join("state.db");
    let user = dir.path().join("user.json");
    std::fs::write(
        &user,
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "explained",
            "name": {"givenName": "Ex", "familyName": "Plained"}
        })
        .to_string(),
    )
    .expect("body");
    let explain = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-sidecar"))
            .arg("explain")
            .arg("--config")
            .arg(support::example_config("ldap"))
            .args(args)
            .env("LDAP_URL", &tree.url)
            .env("LDAP_BIND_DN", ldap::ADMIN_DN)
            .env("LDAP_BIND_PASSWORD", ldap::ADMIN_PASSWORD)
            .env("LDAP_BASE_DN", &tree.dn)
            .env("SCIM_SIDECAR_STATE", &state)
            .output()
            .expect("run explain");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = explain(&["GET", "/Users"]);
    assert!(!ok, "served without its state database");
    assert!(
        err.contains("does not exist") && err.contains("`scim-sidecar migrate` creates it"),
        "{err}"
    );
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_scim-sidecar"))
        .args(["migrate", "--config"])
        .arg(support::example_config("ldap"))
        .env("LDAP_URL", &tree.url)
        .env("LDAP_BIND_DN", ldap::ADMIN_DN)
        .env("LDAP_BIND_PASSWORD", ldap::ADMIN_PASSWORD)
        .env("LDAP_BASE_DN", &tree.dn)
        .env("SCIM_SIDECAR_STATE", &state)
        .env("SCIM_TOKEN", support::TOKEN)
        .output()
        .expect("migrate");
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let said = String::from_utf8_lossy(&migrate.stdout);
    assert!(
        said.contains(&format!(
            "[backend.state]: created the empty database {}",
            state.display()
        )),
        "{said}"
    );
    let body = user.display().to_string();
    for args in [
        vec!["POST", "/Users", "--body", body.as_str()],
        vec!["PATCH", "/scim/v2/Groups/x", "--body", body.as_str()],
        vec!["DELETE", "/Users/x"],
    ] {
        let (ok, out, err) = explain(&args);
        assert!(!ok, "{args:?} was explained: {out}");
        assert!(
            err.contains("[backend.directory] (ldap), which cannot take a write back"),
            "{args:?}: {err}"
        );
    }
    let server = ldap::server().expect("slapd");
    assert!(
        server
            .entries(&tree.people, "(uid=explained)")
            .await
            .is_empty(),
        "the refused create wrote the entry"
    );
    let (ok, out, err) = explain(&["GET", "/Users?filter=userName eq \"explained\""]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"totalResults\": 0"), "{out}");
}

/// A soft-deleting type whose backend reads at most `max_results` entries per search: a
/// filter that matches more than that only because soft-deleted entries still match it is
/// answered (the deleted ones are left out in the LDAP filter then), and a filter matching a
/// soft-deleted entry alone finds nothing.
#[tokio::test]
async fn soft_deleted_entries_do_not_count_against_max_results() {
    let Some(tree) = ldap::subtree("softmax").await else {
        return;
    };
    // The shared mapping, deleting softly.
    let resources = resources(&tree.people).replacen(
        "object_classes = [\"inetOrgPerson\"]\n",
        "object_classes = [\"inetOrgPerson\"]\non_delete = \"soft\"\n",
        1,
    );
    let (s, _dir) = serve_with(&tree, "max_results = 3", &resources).await;
    let c = &s.client;
    let mut ids = Vec::new();
    for i in 0..4 {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("m{i}")
        });
        let u = c.post("/scim/v2/Users", &body).await.expect(201).json();
        ids.push(u["id"].as_str().expect("id").to_owned());
    }
    for id in &ids[..2] {
        c.delete(&format!("/scim/v2/Users/{id}")).await.expect(204);
    }
    let names = |list: serde_json::Value| -> BTreeSet<String> {
        list["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| u["userName"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let list = c
        .get("/scim/v2/Users?filter=userName%20sw%20%22m%22")
        .await
        .expect(200)
        .json();
    assert_eq!(list["totalResults"], 2, "{list}");
    assert_eq!(names(list), set(&["m2", "m3"]));
    let none = c
        .get("/scim/v2/Users?filter=userName%20eq%20%22m0%22")
        .await
        .expect(200)
        .json();
    assert_eq!(none["totalResults"], 0, "{none}");
}
