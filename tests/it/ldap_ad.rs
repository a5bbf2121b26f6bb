//! The LDAP store's Active Directory flavour against a real Samba AD domain controller
//! (`tests/support/samba.rs`), through HTTP with `examples/active-directory/scim-sidecar.toml`
//! unchanged: what an identity provider sees, and what the domain then holds — ids that are
//! objectGUIDs, accounts created disabled until they have a password, `active` as one bit of
//! `userAccountControl`, passwords as `unicodePwd`, groups whose members' `memberOf` AD
//! computes, long member lists read in ranges.

use serde_json::{Value, json};

use crate::support::client::{patch_body, user};
use crate::support::{Sidecar, samba};

/// `userAccountControl` ACCOUNTDISABLE.
const DISABLED: u32 = 2;
/// DONT_EXPIRE_PASSWORD: a flag another tool set, which the sidecar must keep.
const DONT_EXPIRE: u32 = 0x10000;

/// A test's sidecar on its own OU of the shared DC.
struct Ad {
    sidecar: Sidecar,
    dc: &'static samba::Dc,
    tree: samba::Subtree,
}

/// The example's sidecar on a fresh OU, or `None` (the test skips) without Samba.
async fn ad(name: &str) -> Option<Ad> {
    let (sidecar, tree) = samba::example(name).await?;
    let dc = samba::server().await?;
    Some(Ad { sidecar, dc, tree })
}

impl Ad {
    /// The `userAccountControl` flags of the user entry named `cn`.
    async fn flags(&self, cn: &str) -> u32 {
        self.dc
            .value(
                &self.tree.users,
                &format!("(cn={cn})"),
                "userAccountControl",
            )
            .await
            .expect("userAccountControl")
            .parse()
            .expect("a number")
    }

    /// Creates a user and returns its SCIM body.
    async fn create(&self, body: Value) -> Value {
        self.sidecar
            .client
            .post("/scim/v2/Users", &body)
            .await
            .expect(201)
            .json()
    }
}

/// The canonical lower-case GUID string: 8-4-4-4-12 hex digits.
fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// A user created without a password is a disabled account (514: a normal account with
/// ACCOUNTDISABLE) even when the identity provider asks for an active one, and says so:
/// `active` is false. Its id is its objectGUID as a GUID string, by which it is read back.
/// Setting a password and `active` true in one PATCH enables it; the password is never shown.
#[tokio::test]
async fn created_disabled_until_a_password_is_set() {
    let Some(ad) = ad("uac").await else { return };
    let mut body = user("alice@example.test");
    body["active"] = json!(true);
    body["externalId"] = json!("alice");
    body["displayName"] = json!("Alice Liddell");
    let created = ad.create(body).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(is_guid(&id), "{id}");
    assert_eq!(created["active"], json!(false), "{created}");
    assert_eq!(ad.flags("alice@example.test").await, 512 | DISABLED);
    assert_eq!(
        ad.dc
            .value(&ad.tree.users, "(cn=alice@example.test)", "sAMAccountName")
            .await
            .as_deref(),
        Some("alice")
    );

    let got = ad
        .sidecar
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["userName"], "alice@example.test");
    assert_eq!(got["displayName"], "Alice Liddell");

    let patched = ad
        .sidecar
        .client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([
                {"op": "replace", "path": "password", "value": "Corr3ct-Horse-Battery"},
                {"op": "replace", "path": "active", "value": true}
            ])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(patched["active"], json!(true), "{patched}");
    assert!(patched.get("password").is_none(), "{patched}");
    assert_eq!(ad.flags("alice@example.test").await, 512);
    let pwd_set = ad
        .dc
        .value(&ad.tree.users, "(cn=alice@example.test)", "pwdLastSet")
        .await
        .expect("pwdLastSet");
    assert_ne!(pwd_set, "0", "the password was set");
}

/// A user created with a password and `active` true is enabled at once; one with a password
/// the domain's policy refuses is not created, and the error names `password` with AD's own
/// reason.
#[tokio::test]
async fn created_with_a_password() {
    let Some(ad) = ad("pwd").await else { return };
    let mut body = user("bob@example.test");
    body["active"] = json!(true);
    body["password"] = json!("Corr3ct-Horse-Battery");
    let created = ad.create(body).await;
    assert_eq!(created["active"], json!(true), "{created}");
    assert!(created.get("password").is_none());
    assert_eq!(ad.flags("bob@example.test").await, 512);

    let mut weak = user("carol@example.test");
    weak["active"] = json!(true);
    weak["password"] = json!("abc");
    let detail = ad
        .sidecar
        .client
        .post("/scim/v2/Users", &weak)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(detail.contains("password"), "{detail}");
    assert!(
        ad.dc
            .entries(&ad.tree.users, "(cn=carol@example.test)")
            .await
            .is_empty(),
        "nothing was created"
    );
}

/// `active` false sets ACCOUNTDISABLE and nothing else: a flag another tool set on the
/// account (DONT_EXPIRE_PASSWORD) is still there after disabling and enabling again. A filter
/// on `active` finds accounts by that bit.
#[tokio::test]
async fn active_keeps_the_other_flags() {
    let Some(ad) = ad("flags").await else { return };
    let mut body = user("dave@example.test");
    body["active"] = json!(true);
    body["password"] = json!("Corr3ct-Horse-Battery");
    let id = ad.create(body).await["id"].as_str().expect("id").to_owned();
    let dn = format!("CN=dave@example.test,{}", ad.tree.users);
    ad.dc
        .replace(
            &dn,
            "userAccountControl",
            &[&(512 | DONT_EXPIRE).to_string()],
        )
        .await
        .expect("set a flag");

    let off = ad
        .sidecar
        .client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(off["active"], json!(false));
    assert_eq!(
        ad.flags("dave@example.test").await,
        512 | DONT_EXPIRE | DISABLED
    );

    let list = ad
        .sidecar
        .client
        .get("/scim/v2/Users?filter=active%20eq%20false")
        .await
        .expect(200)
        .json();
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], id.as_str());
    let list = ad
        .sidecar
        .client
        .get("/scim/v2/Users?filter=active%20eq%20true")
        .await
        .expect(200)
        .json();
    assert_eq!(list["totalResults"], 0, "{list}");

    ad.sidecar
        .client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "active", "value": true}])),
        )
        .await
        .expect(200);
    assert_eq!(ad.flags("dave@example.test").await, 512 | DONT_EXPIRE);
}

/// `userName eq` finds the one account (what Entra asks before every create), whatever the
/// case; a value holding filter metacharacters matches only itself; a rename (new userName)
/// moves the entry to its new CN and keeps the id; DELETE removes the account, after which
/// the id answers 404.
#[tokio::test]
async fn filter_rename_delete() {
    let Some(ad) = ad("names").await else { return };
    let id = ad.create(user("erin@example.test")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    ad.create(user("frank@example.test")).await;
    let odd = ad.create(user("o*(d)\\d@example.test")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let c = &ad.sidecar.client;
    let found = c
        .get("/scim/v2/Users?filter=userName%20eq%20%22ERIN@example.test%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["id"], id.as_str());
    let q: String =
        form_urlencoded::byte_serialize(br#"userName eq "o*(d)\\d@example.test""#).collect();
    let found = c
        .get(&format!("/scim/v2/Users?filter={q}"))
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["id"], odd.as_str());
    let q: String = form_urlencoded::byte_serialize(br#"userName eq "*""#).collect();
    let found = c
        .get(&format!("/scim/v2/Users?filter={q}"))
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 0, "{found}");
    // An id that is no GUID is simply not found.
    c.get("/scim/v2/Users/not-a-guid").await.expect(404);

    let renamed = c
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(
                json!([{"op": "replace", "path": "userName", "value": "erin.new@example.test"}]),
            ),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(renamed["id"], id.as_str());
    assert_eq!(renamed["userName"], "erin.new@example.test");
    assert_eq!(
        ad.dc
            .entries(&ad.tree.users, "(cn=erin.new@example.test)")
            .await
            .len(),
        1
    );

    c.delete(&format!("/scim/v2/Users/{id}")).await.expect(204);
    c.get(&format!("/scim/v2/Users/{id}")).await.expect(404);
    assert!(
        ad.dc
            .entries(&ad.tree.users, "(cn=erin.new@example.test)")
            .await
            .is_empty()
    );
}

/// A group is created empty (AD allows it), members are added and removed by PATCH, and AD
/// computes each member's `memberOf`, which the sidecar never writes. A renamed member stays
/// listed; deleting a member account takes it out of the group.
#[tokio::test]
async fn groups_and_member_of() {
    let Some(ad) = ad("groups").await else { return };
    let c = &ad.sidecar.client;
    let u1 = ad.create(user("gina@example.test")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let u2 = ad.create(user("hank@example.test")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let g = c
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineers", "externalId": "eng-1"}),
        )
        .await
        .expect(201)
        .json();
    let gid = g["id"].as_str().expect("id").to_owned();
    assert!(is_guid(&gid), "{gid}");
    assert_eq!(g["externalId"], "eng-1");

    // A members-only PATCH answers 204: the sidecar does not read the member list back.
    c.patch(
        &format!("/scim/v2/Groups/{gid}"),
        &patch_body(
            json!([{"op": "add", "path": "members", "value": [{"value": u1}, {"value": u2}]}]),
        ),
    )
    .await
    .expect(204);
    let patched = c
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    let mut members: Vec<&str> = patched["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    members.sort();
    let mut want = vec![u1.as_str(), u2.as_str()];
    want.sort();
    assert_eq!(members, want);
    // Adding a member again changes nothing and is no error.
    c.patch(
        &format!("/scim/v2/Groups/{gid}"),
        &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": u1}]}])),
    )
    .await
    .expect(204);

    let group_dn = format!("CN=Engineers,{}", ad.tree.groups);
    let member_of = |e: &ldap3::SearchEntry| {
        e.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let gina = ad
        .dc
        .entries(&ad.tree.users, "(cn=gina@example.test)")
        .await;
    assert_eq!(member_of(&gina[0]), vec![group_dn.clone()]);

    c.patch(
        &format!("/scim/v2/Groups/{gid}"),
        &patch_body(json!([{"op": "remove", "path": format!("members[value eq \"{u1}\"]")}])),
    )
    .await
    .expect(204);
    let gina = ad
        .dc
        .entries(&ad.tree.users, "(cn=gina@example.test)")
        .await;
    assert!(member_of(&gina[0]).is_empty());
    let got = c
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["members"][0]["value"], u2.as_str(), "{got}");
    let q: String =
        form_urlencoded::byte_serialize(format!("members eq \"{u2}\"").as_bytes()).collect();
    let found = c
        .get(&format!("/scim/v2/Groups?filter={q}"))
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1, "{found}");

    // AD keeps member DNs linked: a renamed member stays in its groups.
    c.patch(
        &format!("/scim/v2/Users/{u2}"),
        &patch_body(json!([{"op": "replace", "path": "userName", "value": "henry@example.test"}])),
    )
    .await
    .expect(200);
    let got = c
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["members"][0]["value"], u2.as_str(), "{got}");

    c.delete(&format!("/scim/v2/Users/{u2}")).await.expect(204);
    let got = c
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    assert!(
        got.get("members")
            .is_none_or(|m| m.as_array().is_some_and(Vec::is_empty)),
        "{got}"
    );
    c.delete(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(204);
    c.get(&format!("/scim/v2/Groups/{gid}")).await.expect(404);
}

/// A group with more members than AD returns in one read (1500) is read whole: every member
/// is listed, the rest fetched in further ranges (`member;range=1500-2999`).
#[tokio::test]
async fn big_group_read_in_ranges() {
    let Some(ad) = ad("big").await else { return };
    let n = 1600;
    let l = ad.dc.admin().await.expect("admin");
    // Eight adds in flight at a time: one connection multiplexes them.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut l = l.clone();
        let users = ad.tree.users.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..n).step_by(8) {
                let upn = format!("u{i}@example.test");
                l.add(
                    &format!("CN=u{i},{users}"),
                    vec![
                        ("objectClass", ["user"].into()),
                        ("userPrincipalName", [upn.as_str()].into()),
                    ],
                )
                .await
                .and_then(|r| r.success())
                .expect("add a user");
            }
        }));
    }
    for t in tasks {
        t.await.expect("adds");
    }
    let mut l = l;
    let dns: Vec<String> = (0..n)
        .map(|i| format!("CN=u{i},{}", ad.tree.users))
        .collect();
    let gdn = format!("CN=Everyone,{}", ad.tree.groups);
    let members: std::collections::HashSet<&str> = dns.iter().map(String::as_str).collect();
    l.add(
        &gdn,
        vec![("objectClass", ["group"].into()), ("member", members)],
    )
    .await
    .and_then(|r| r.success())
    .expect("add the group");
    // One read returns at most 1500 of them: the sidecar must ask for the rest.
    let (raw, _) = l
        .search(
            &gdn,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["member;range=0-1499"],
        )
        .await
        .and_then(|r| r.success())
        .expect("read the group");
    let raw = ldap3::SearchEntry::construct(raw.into_iter().next().expect("the group"));
    assert_eq!(
        raw.attrs.get("member;range=0-1499").map(Vec::len),
        Some(1500),
        "{:?}",
        raw.attrs.keys().collect::<Vec<_>>()
    );

    let found = ad
        .sidecar
        .client
        .get("/scim/v2/Groups?filter=displayName%20eq%20%22Everyone%22")
        .await
        .expect(200)
        .json();
    let listed = found["Resources"][0]["members"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(listed, n, "every member is listed");
}

/// A password mapped over a connection that is not encrypted stops the start with a message
/// saying why, before anything is written.
#[tokio::test]
async fn password_needs_tls() {
    crate::support::init();
    let Some(dc) = samba::server().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("state.db");
    std::fs::write(&db, "").expect("state db");
    let env: std::collections::HashMap<String, String> = [
        ("SCIM_SIDECAR_STATE", db.display().to_string()),
        ("LDAP_URL", dc.plain_url.clone()),
        ("LDAP_BIND_DN", samba::ADMIN_DN.to_string()),
        ("LDAP_BIND_PASSWORD", samba::ADMIN_PASSWORD.to_string()),
        ("LDAP_BASE_DN", samba::SUFFIX.to_string()),
        ("LDAP_CA_FILE", dc.ca_file.display().to_string()),
        ("SCIM_TOKEN", crate::support::TOKEN.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let path = crate::support::example_config("active-directory");
    let text = std::fs::read_to_string(&path).expect("example");
    // The same mapping over ldap:// without StartTLS (the test DC allows a plain bind).
    let text = text.replace("tls = { ca = \"${LDAP_CA_FILE}\" }", "");
    let p = dir.path().join("ad.toml");
    std::fs::write(&p, text).expect("write");
    let config = crate::support::load(&p, &env);
    let report = match scim_sidecar::app::open_backends(&config).await {
        Err(p) => scim_sidecar::config::report(&p),
        Ok(backends) => {
            let res = config
                .resources
                .iter()
                .find(|r| r.name == "User")
                .expect("User");
            let b = backends
                .iter()
                .find(|b| b.name() == "ad")
                .expect("ad backend");
            let settings = scim_sidecar::mapping::Settings {
                unknown_attributes: scim_sidecar::scim::UnknownPolicy::Ignore,
                retry_after: 1,
                observer: std::sync::Arc::new(scim_sidecar::mapping::NoObserver),
                max_members: None,
            };
            match scim_sidecar::mapping::build(res, b.as_ref(), &config.resources, &settings, None)
                .await
            {
                Ok(_) => panic!("a password over ldap:// was accepted"),
                Err(p) => scim_sidecar::config::report(&p),
            }
        }
    };
    assert!(
        report.contains("unicodePwd") && report.contains("encrypted"),
        "{report}"
    );
}

/// A misspelt flavour stops the config load with the line and the values it may take, without
/// reaching any directory.
#[test]
fn a_wrong_flavour_is_named() {
    let text = std::fs::read_to_string(crate::support::example_config("active-directory"))
        .expect("example")
        .replace(
            "flavour = \"active-directory\"",
            "flavour = \"activedirectory\"",
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("ad.toml");
    std::fs::write(&p, text).expect("write");
    let env: std::collections::HashMap<String, String> = [
        ("LDAP_URL", "ldaps://127.0.0.1:636"),
        ("LDAP_BIND_DN", "CN=svc,DC=example,DC=test"),
        ("LDAP_BIND_PASSWORD", "x"),
        ("LDAP_BASE_DN", "DC=example,DC=test"),
        ("LDAP_CA_FILE", "/dev/null"),
        ("SCIM_TOKEN", crate::support::TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let report = match scim_sidecar::config::load(&p, &env) {
        Ok(_) => panic!("the config loaded"),
        Err(problems) => scim_sidecar::config::report(&problems),
    };
    assert!(
        report.contains("ad.toml:")
            && report
                .contains("flavour \"activedirectory\" is not \"ldap\" or \"active-directory\""),
        "{report}"
    );
}

/// A group's new `displayName` renames its entry (its `CN` is the RDN) and nothing else: AD
/// refuses a modify of an RDN attribute (`notAllowedOnRDN`), so the sidecar must not write
/// `cn` again after the modify-DN, by PATCH or by PUT. The id and the members stay.
// See: issue #10
#[tokio::test]
async fn r10_group_rename_is_a_modify_dn() {
    let Some(ad) = ad("rename").await else { return };
    let c = &ad.sidecar.client;
    let u = ad.create(user("ivy@example.test")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let gid = c
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Old Name",
                    "members": [{"value": u}]}),
        )
        .await
        .expect(201)
        .json()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = c
        .patch(
            &format!("/scim/v2/Groups/{gid}"),
            &patch_body(json!([{"op": "Replace", "path": "displayName", "value": "New Name"}])),
        )
        .await;
    assert!(
        matches!(r.status.as_u16(), 200 | 204),
        "{}: {}",
        r.status,
        r.text()
    );
    let cn = |name: &str| format!("(cn={name})");
    assert!(
        ad.dc
            .entries(&ad.tree.groups, &cn("Old Name"))
            .await
            .is_empty()
    );
    assert_eq!(
        ad.dc
            .value(&ad.tree.groups, &cn("New Name"), "cn")
            .await
            .as_deref(),
        Some("New Name")
    );
    assert_eq!(samba::member_ids(&gid).await, vec![u.clone()]);

    let put = c
        .put(
            &format!("/scim/v2/Groups/{gid}"),
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Third Name",
                    "members": [{"value": u}]}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(put["id"], gid.as_str());
    assert_eq!(put["displayName"], "Third Name");
    assert_eq!(
        ad.dc
            .value(&ad.tree.groups, &cn("Third Name"), "cn")
            .await
            .as_deref(),
        Some("Third Name")
    );
    assert!(
        ad.dc
            .entries(&ad.tree.groups, &cn("New Name"))
            .await
            .is_empty()
    );
    assert_eq!(samba::member_ids(&gid).await, vec![u]);
}

/// AD keeps a `userPrincipalName` and a `sAMAccountName` unique in the whole domain, not
/// only under the sidecar's OU where its own check looks: a create whose `userName` or
/// `externalId` another account of the domain holds is `409 uniqueness`, whether or not it
/// carries a password, never a refused password; nothing is created.
// See: issue #10
#[tokio::test]
async fn r10_a_value_taken_elsewhere_in_the_domain_is_a_conflict() {
    let Some(ad) = ad("taken").await else { return };
    let other = ad.dc.subtree("elsewhere").await;
    ad.dc
        .add(
            &format!("CN=jo,{}", other.users),
            &[
                ("objectClass", &["user"]),
                ("userPrincipalName", &["jo@example.test"]),
                ("sAMAccountName", &["jo-elsewhere"]),
            ],
        )
        .await
        .expect("an account outside the OU");
    let c = &ad.sidecar.client;
    for password in [None, Some("Corr3ct-Horse-Battery")] {
        let mut body = user("jo@example.test");
        body["externalId"] = json!("jo-here");
        if let Some(p) = password {
            body["password"] = json!(p);
        }
        c.post("/scim/v2/Users", &body)
            .await
            .scim_error(409, Some("uniqueness"));
        let mut body = user("jo.here@example.test");
        body["externalId"] = json!("jo-elsewhere");
        if let Some(p) = password {
            body["password"] = json!(p);
        }
        c.post("/scim/v2/Users", &body)
            .await
            .scim_error(409, Some("uniqueness"));
    }
    assert!(
        ad.dc
            .entries(&ad.tree.users, "(objectClass=user)")
            .await
            .is_empty(),
        "nothing was created"
    );
}

/// A `remove` of what AD will not let an account be without — `externalId` (the
/// `sAMAccountName`) and `active` (`userAccountControl`) — is `400 invalidValue` naming the
/// attribute, with AD's reason (as a NOT NULL column's is on SQL), not a 500; the account is
/// unchanged.
// See: issue #10
#[tokio::test]
async fn r10_removing_what_ad_keeps_is_refused_on_its_attribute() {
    let Some(ad) = ad("keeps").await else { return };
    let mut body = user("kim@example.test");
    body["externalId"] = json!("kim");
    let id = ad.create(body).await["id"].as_str().expect("id").to_owned();
    for attr in ["externalId", "active"] {
        let detail = ad
            .sidecar
            .client
            .patch(
                &format!("/scim/v2/Users/{id}"),
                &patch_body(json!([{"op": "remove", "path": attr}])),
            )
            .await
            .scim_error(400, Some("invalidValue"));
        assert!(detail.contains(attr), "{attr}: {detail}");
    }
    let got = ad
        .sidecar
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["externalId"], "kim", "{got}");
    assert_eq!(got["active"], json!(false), "{got}");
}
