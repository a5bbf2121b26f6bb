//! The REST store end to end: the sidecar started from `examples/rest/scim-sidecar.toml`
//! (unchanged) in front of the legacy admin API (`tests/support/rest_app.rs`), driven over
//! SCIM, with what the app holds read from its own database and its request counts.

use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::rest_app::RestApp;
use crate::support::{self, Options, Sidecar};

/// The app, the sidecar in front of it, and the sidecar's state database.
struct Rig {
    app: RestApp,
    s: Sidecar,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let app = RestApp::start().await;
    rig_with(app, None).await
}

async fn rig_with(app: RestApp, key: Option<&str>) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.db");
    std::fs::write(&state, "").expect("state db");
    let s = Sidecar::start(Options {
        config: Some(support::example_config("rest")),
        env: vec![
            ("REST_BASE_URL", app.base_url.clone()),
            ("REST_API_KEY", key.unwrap_or(&app.api_key).to_owned()),
            ("SCIM_SIDECAR_STATE", state.display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    Rig { app, s, _dir: dir }
}

/// The example with `on_delete = "soft"` for users, in front of a new app; with the config
/// file and the environment it was started with (for `explain`).
async fn soft_rig() -> (Rig, std::path::PathBuf, Vec<(&'static str, String)>) {
    let app = RestApp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(support::example_config("rest"))
        .expect("example")
        .replacen("on_delete = \"hard\"", "on_delete = \"soft\"", 1);
    let config = dir.path().join("soft.toml");
    std::fs::write(&config, text).expect("config");
    let state = dir.path().join("state.db");
    std::fs::write(&state, "").expect("state db");
    let env = vec![
        ("REST_BASE_URL", app.base_url.clone()),
        ("REST_API_KEY", app.api_key.clone()),
        ("SCIM_SIDECAR_STATE", state.display().to_string()),
    ];
    let s = Sidecar::start(Options {
        config: Some(config.clone()),
        env: env.clone(),
        migrate: true,
        ..Default::default()
    })
    .await;
    (Rig { app, s, _dir: dir }, config, env)
}

fn alice(login: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": login,
        "externalId": format!("ext-{login}"),
        "name": {"givenName": "Alice", "familyName": "Ng"},
        "emails": [{"type": "work", "value": format!("{login}@example.com")}],
        "active": true
    })
}

impl Rig {
    async fn create_user(&self, login: &str) -> String {
        let r = self
            .s
            .client
            .post("/scim/v2/Users", &alice(login))
            .await
            .expect(201);
        r.json()["id"].as_str().expect("id").to_owned()
    }

    fn app_user(&self, id: &str) -> Vec<String> {
        self.app
            .sql(&format!(
                "SELECT login, firstname, lastname, mail, status FROM users WHERE id = {}",
                id.parse::<i64>().expect("numeric id")
            ))
            .into_iter()
            .next()
            .unwrap_or_default()
    }
}

/// A create is one POST of the wrapped, mapped fields: the app holds the row with the value
/// map applied (`active` → status 1), the SCIM id is the app's own (a number, as text), the
/// kept `externalId` comes back from the sidecar's state, and a read returns it all.
#[tokio::test]
async fn users_are_created_read_and_listed_through_the_api() {
    let r = rig().await;
    let id = r.create_user("alice").await;
    assert!(id.parse::<i64>().is_ok(), "{id}");
    assert_eq!(
        r.app_user(&id),
        vec!["alice", "Alice", "Ng", "alice@example.com", "1"]
    );
    let got =
        r.s.client
            .get(&format!("/scim/v2/Users/{id}"))
            .await
            .expect(200)
            .json();
    assert_eq!(got["userName"], "alice");
    assert_eq!(got["name"]["familyName"], "Ng");
    assert_eq!(got["emails"][0]["value"], "alice@example.com");
    assert_eq!(got["active"], true);
    assert_eq!(got["externalId"], "ext-alice");
    r.create_user("bob").await;
    let list =
        r.s.client
            .get("/scim/v2/Users?startIndex=2&count=1")
            .await
            .expect(200)
            .json();
    assert_eq!(list["totalResults"], 2);
    assert_eq!(list["Resources"][0]["userName"], "bob");
    r.s.client.get("/scim/v2/Users/999999").await.expect(404);
}

/// `userName eq "x"` (what Entra sends before every create) is ONE request to the app: its
/// fuzzy `search`, of which the sidecar keeps only the exact, case-insensitive match — not
/// `alice2` nor `malice`, which the app's substring search also returns.
#[tokio::test]
async fn username_eq_is_one_request_keeping_exact_matches() {
    let r = rig().await;
    let id = r.create_user("alice").await;
    r.create_user("alice2").await;
    r.create_user("malice").await;
    r.app.reset_hits();
    let list =
        r.s.client
            .get("/scim/v2/Users?filter=userName%20eq%20%22ALICE%22")
            .await
            .expect(200)
            .json();
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], id.as_str());
    assert_eq!(r.app.hits("GET /users.json"), 1);
    assert_eq!(r.app.hits("GET /users/{id}.json"), 0);
    let none =
        r.s.client
            .get("/scim/v2/Users?filter=userName%20eq%20%22alic%22")
            .await
            .expect(200)
            .json();
    assert_eq!(none["totalResults"], 0);
}

/// A filter the API has no parameter for is refused naming the attribute, never answered by
/// a silent scan.
#[tokio::test]
async fn filters_the_api_cannot_answer_are_refused() {
    let r = rig().await;
    r.create_user("alice").await;
    let msg =
        r.s.client
            .get("/scim/v2/Users?filter=name.familyName%20eq%20%22Ng%22")
            .await
            .scim_error(400, Some("invalidFilter"));
    assert!(msg.contains("name.familyName"), "{msg}");
}

/// PATCH and PUT become a read and one PUT of the changed fields (204 from the app); the
/// value map turns `active: false` into status 3.
#[tokio::test]
async fn updates_send_the_changed_fields() {
    let r = rig().await;
    let id = r.create_user("alice").await;
    r.app.reset_hits();
    r.s.client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await
        .expect(200);
    assert_eq!(r.app_user(&id)[4], "3");
    assert_eq!(r.app.hits("PUT /users/{id}.json"), 1);
    // `active` has a query parameter (status=3): one request, the API's answer taken as is.
    r.app.reset_hits();
    let locked =
        r.s.client
            .get("/scim/v2/Users?filter=active%20eq%20false")
            .await
            .expect(200)
            .json();
    assert_eq!(locked["totalResults"], 1, "{locked}");
    assert_eq!(locked["Resources"][0]["id"], id.as_str());
    assert_eq!(r.app.hits("GET /users.json"), 1);
    let mut body = alice("alice");
    body["name"]["familyName"] = json!("Ngata");
    let got =
        r.s.client
            .put(&format!("/scim/v2/Users/{id}"), &body)
            .await
            .expect(200)
            .json();
    assert_eq!(got["name"]["familyName"], "Ngata");
    assert_eq!(got["active"], true);
    assert_eq!(
        r.app_user(&id),
        vec!["alice", "Alice", "Ngata", "alice@example.com", "1"]
    );
    // The lock_version moved on with each write: the If-Match of each read matched.
    assert_eq!(
        r.app
            .sql(&format!("SELECT lock_version FROM users WHERE id = {id}")),
        vec![vec!["2".to_owned()]]
    );
}

/// DELETE is the app's DELETE; afterwards the user is gone from the app and every SCIM read.
#[tokio::test]
async fn deletes_remove_the_user_in_the_app() {
    let r = rig().await;
    let id = r.create_user("alice").await;
    r.s.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    assert!(r.app_user(&id).is_empty());
    r.s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(404);
    r.s.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(404);
}

/// The app's 422 "has already been taken" is a 409 uniqueness; its other 422s are 400
/// invalidValue carrying the app's own words.
#[tokio::test]
async fn app_validation_becomes_scim_errors() {
    let r = rig().await;
    r.create_user("alice").await;
    r.s.client
        .post("/scim/v2/Users", &alice("ALICE"))
        .await
        .scim_error(409, Some("uniqueness"));
    let mut bad = alice("carol");
    bad["emails"][0]["value"] = json!("not-an-address");
    let msg =
        r.s.client
            .post("/scim/v2/Users", &bad)
            .await
            .scim_error(400, Some("invalidValue"));
    assert!(msg.contains("Email is invalid"), "{msg}");
    assert_eq!(
        r.app.sql("SELECT count(*) FROM users"),
        vec![vec!["1".to_owned()]]
    );
}

/// Groups: a create with members and PATCH add/remove go through the app's member endpoints,
/// so its audit rows are written; a member already there or already gone is success; a
/// member id the app does not know is a 400 naming it, and changes nothing.
#[tokio::test]
async fn group_members_go_through_the_apps_member_endpoints() {
    let r = rig().await;
    let a = r.create_user("alice").await;
    let b = r.create_user("bob").await;
    let g =
        r.s.client
            .post(
                "/scim/v2/Groups",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "Staff", "members": [{"value": a}]}),
            )
            .await
            .expect(201)
            .json();
    let gid = g["id"].as_str().expect("id").to_owned();
    let audit = || {
        r.app
            .sql("SELECT event, user_id FROM audit ORDER BY id")
            .into_iter()
            .map(|row| row.join(" "))
            .collect::<Vec<_>>()
    };
    assert_eq!(audit(), vec![format!("member_added {a}")]);
    let path = format!("/scim/v2/Groups/{gid}");
    let patch = |op: &str, ids: &[&str]| {
        patch_body(json!([{"op": op, "path": "members",
            "value": ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>()}]))
    };
    r.s.client
        .patch(&path, &patch("add", &[&b, &a]))
        .await
        .expect_success();
    assert_eq!(
        audit(),
        vec![format!("member_added {a}"), format!("member_added {b}")]
    );
    let got = r.s.client.get(&path).await.expect(200).json();
    let mut members: Vec<String> = got["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["value"].as_str().unwrap_or_default().to_owned())
        .collect();
    members.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(members, want);
    r.s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}])),
        )
        .await
        .expect_success();
    assert_eq!(audit().last(), Some(&format!("member_removed {a}")));
    let msg =
        r.s.client
            .patch(&path, &patch("add", &["999999"]))
            .await
            .scim_error(400, Some("invalidValue"));
    assert!(msg.contains("999999"), "{msg}");
    assert_eq!(
        r.app.sql(&format!(
            "SELECT user_id FROM members WHERE group_id = {gid}"
        )),
        vec![vec![b.clone()]]
    );
    let list =
        r.s.client
            .get("/scim/v2/Groups?filter=displayName%20eq%20%22staff%22")
            .await
            .expect(200)
            .json();
    assert_eq!(list["totalResults"], 1);
    r.s.client.delete(&path).await.expect(204);
    assert!(
        r.app
            .sql(&format!("SELECT id FROM groups WHERE id = {gid}"))
            .is_empty()
    );
}

/// The app down is a 503 with Retry-After (the identity provider retries), not a 500.
#[tokio::test]
async fn app_down_is_503() {
    let mut r = rig().await;
    let id = r.create_user("alice").await;
    r.app.stop().await;
    let resp = r.s.client.get(&format!("/scim/v2/Users/{id}")).await;
    assert!(resp.header("retry-after").is_some());
    resp.scim_error(503, None);
    r.app.restart().await;
    r.s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200);
}

/// A read the app answers 503 twice is sent again, with a pause, and succeeds.
#[tokio::test]
async fn reads_are_retried_on_503() {
    let r = rig().await;
    let id = r.create_user("alice").await;
    r.app.reset_hits();
    r.app.faults().fail_next(2, 503);
    let got =
        r.s.client
            .get(&format!("/scim/v2/Users/{id}"))
            .await
            .expect(200)
            .json();
    assert_eq!(got["userName"], "alice");
    assert_eq!(r.app.hits("GET /users/{id}.json"), 3);
}

/// A create the app answers 503 is not sent again (a POST is not idempotent): 503.
#[tokio::test]
async fn creates_are_not_retried() {
    let r = rig().await;
    r.app.reset_hits();
    r.app.faults().fail_next(1, 503);
    r.s.client
        .post("/scim/v2/Users", &alice("alice"))
        .await
        .scim_error(503, None);
    assert_eq!(r.app.hits("POST /users.json"), 1);
    assert_eq!(
        r.app.sql("SELECT count(*) FROM users"),
        vec![vec!["0".to_owned()]]
    );
}

/// The app refusing the sidecar's key (401) is a 503 for the client — the fault is the
/// sidecar's configuration, not the request — and is not retried.
#[tokio::test]
async fn refused_credentials_are_503() {
    let r = rig().await;
    let id = r.create_user("alice").await;
    r.app.reset_hits();
    r.app.faults().fail_next(1, 401);
    r.s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .scim_error(503, None);
    assert_eq!(r.app.hits("GET /users/{id}.json"), 1);
}

/// A wrong API key stops the start-up, naming the resource and the credentials.
#[tokio::test]
async fn a_wrong_key_stops_the_start() {
    let app = RestApp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = std::collections::HashMap::new();
    env.insert("REST_BASE_URL".to_owned(), app.base_url.clone());
    env.insert("REST_API_KEY".to_owned(), "wrong".to_owned());
    env.insert("SCIM_TOKEN".to_owned(), support::TOKEN.to_owned());
    let state = dir.path().join("s.db");
    std::fs::write(&state, "").expect("state db");
    env.insert("SCIM_SIDECAR_STATE".to_owned(), state.display().to_string());
    let config = support::load(&support::example_config("rest"), &env);
    let backends = scim_sidecar::app::open_backends(&config)
        .await
        .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    let settings = scim_sidecar::mapping::Settings {
        unknown_attributes: scim_sidecar::scim::UnknownPolicy::Ignore,
        retry_after: 1,
        observer: std::sync::Arc::new(scim_sidecar::mapping::NoObserver),
        max_members: None,
    };
    let backend = backends.iter().find(|b| b.name() == "app").expect("app");
    let state = backends
        .iter()
        .find(|b| b.name() == "state")
        .and_then(|b| b.state());
    let Err(problems) = scim_sidecar::mapping::build(
        &config.resources[0],
        backend.as_ref(),
        &config.resources,
        &settings,
        state,
    )
    .await
    else {
        panic!("a wrong key must stop the start");
    };
    let report = scim_sidecar::config::report(&problems);
    assert!(report.contains("credentials"), "{report}");
    assert!(report.contains("scim-sidecar.toml"), "{report}");
}

/// `on_delete = "soft"`: DELETE is a PUT of `active = false` (status 3, Redmine's "locked"),
/// the user stays in the app but is gone from every SCIM read (a tombstone in the sidecar's
/// state) and out of its groups (through the groups' member endpoints, found by
/// `member_of`), and a later create of the same userName brings the same app user back.
#[tokio::test]
async fn soft_deletes_lock_the_user_and_a_create_brings_it_back() {
    let (r, _, _) = soft_rig().await;
    let id = r.create_user("alice").await;
    let g =
        r.s.client
            .post(
                "/scim/v2/Groups",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "Staff", "members": [{"value": id}]}),
            )
            .await
            .expect(201)
            .json();
    let gid = g["id"].as_str().expect("id").to_owned();
    r.app.reset_hits();
    r.s.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    assert_eq!(r.app.hits("DELETE /users/{id}.json"), 0);
    assert_eq!(r.app_user(&id)[4], "3");
    // Out of its groups in the app too (the app's own endpoint: an audit row).
    assert!(
        r.app
            .sql(&format!(
                "SELECT user_id FROM members WHERE group_id = {gid}"
            ))
            .is_empty()
    );
    assert_eq!(
        r.app
            .sql("SELECT event FROM audit ORDER BY id DESC LIMIT 1"),
        vec![vec!["member_removed".to_owned()]]
    );
    r.s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(404);
    let list =
        r.s.client
            .get("/scim/v2/Users?filter=userName%20eq%20%22alice%22")
            .await
            .expect(200)
            .json();
    assert_eq!(list["totalResults"], 0, "{list}");
    let again = r.create_user("alice").await;
    assert_eq!(again, id);
    assert_eq!(r.app_user(&id)[4], "1");
    r.s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200);
}

/// With `scan_limit`, a filter the API has no parameter for is answered by the sidecar over
/// every page (here three API pages of at most 2), up to the limit; past it, 400 tooMany.
/// A filter on the kept `externalId` reads the matching users by id.
#[tokio::test]
async fn bounded_scans_and_kept_value_filters() {
    let app = RestApp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(support::example_config("rest"))
        .expect("example")
        .replacen("max = 100", "max = 2", 1)
        .replacen(
            "on_delete = \"hard\"",
            "on_delete = \"hard\"\nscan_limit = 5",
            1,
        );
    let config = dir.path().join("scan.toml");
    std::fs::write(&config, text).expect("config");
    let state = dir.path().join("state.db");
    std::fs::write(&state, "").expect("state db");
    let s = Sidecar::start(Options {
        config: Some(config),
        env: vec![
            ("REST_BASE_URL", app.base_url.clone()),
            ("REST_API_KEY", app.api_key.clone()),
            ("SCIM_SIDECAR_STATE", state.display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    let r = Rig { app, s, _dir: dir };
    let mut ids = Vec::new();
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        ids.push(r.create_user(name).await);
    }
    let mut body = alice("u4");
    body["name"]["familyName"] = json!("Other");
    r.s.client
        .put(&format!("/scim/v2/Users/{}", ids[3]), &body)
        .await
        .expect(200);
    r.app.reset_hits();
    let list =
        r.s.client
            .get("/scim/v2/Users?filter=name.familyName%20eq%20%22other%22")
            .await
            .expect(200)
            .json();
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], ids[3].as_str());
    assert_eq!(r.app.hits("GET /users.json"), 3);
    // Pages of the API's own order: a SCIM page across two API pages.
    let page =
        r.s.client
            .get("/scim/v2/Users?startIndex=2&count=2")
            .await
            .expect(200)
            .json();
    assert_eq!(page["totalResults"], 5);
    let names: Vec<&str> = page["Resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|u| u["userName"].as_str())
        .collect();
    assert_eq!(names, ["u2", "u3"]);
    let by_ext =
        r.s.client
            .get("/scim/v2/Users?filter=externalId%20eq%20%22ext-u2%22")
            .await
            .expect(200)
            .json();
    assert_eq!(by_ext["totalResults"], 1, "{by_ext}");
    assert_eq!(by_ext["Resources"][0]["userName"], "u2");
    r.create_user("u6").await;
    r.s.client
        .get("/scim/v2/Users?filter=name.familyName%20eq%20%22other%22")
        .await
        .scim_error(400, Some("tooMany"));
}

/// OAuth 2.0 client credentials: the sidecar asks the token endpoint once (with its id and
/// secret as HTTP Basic, RFC 6749 §2.3.1), sends the token as a bearer on every request,
/// fetches it once for many concurrent requests, and fetches a new one when the API
/// refuses it (a revoked token).
#[tokio::test]
async fn oauth2_tokens_are_fetched_once_and_renewed_when_refused() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use scim_sidecar::backend::{PageRequest, Predicate, Search};

    support::init();
    let issued = Arc::new(AtomicUsize::new(0));
    let valid_from = Arc::new(AtomicUsize::new(1));
    let (iss, from) = (issued.clone(), valid_from.clone());
    let server = support::upstream::Server::start(move |req: http::Request<hyper::body::Incoming>, _| {
        let (iss, from) = (iss.clone(), from.clone());
        async move {
            let reply = |status: u16, body: Value| {
                http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(scim_sidecar::proxy::full(body.to_string()))
                    .expect("response")
            };
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if req.uri().path() == "/oauth/token" {
                let body = req.into_body().collect().await.expect("body").to_bytes();
                let form = String::from_utf8_lossy(&body).into_owned();
                // base64("sidecar:s3cr3t")
                if auth != "Basic c2lkZWNhcjpzM2NyM3Q=" || !form.contains("grant_type=client_credentials") || !form.contains("scope=users") {
                    return reply(401, json!({"error": "invalid_client"}));
                }
                let n = iss.fetch_add(1, Ordering::SeqCst) + 1;
                return reply(200, json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": 3600}));
            }
            let n: usize = auth
                .strip_prefix("Bearer tok-")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if n < from.load(Ordering::SeqCst) {
                return reply(401, json!({"errors": ["invalid token"]}));
            }
            reply(200, json!({"users": [{"id": 1, "login": "alice"}], "total_count": 1}))
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"[listen]
addr = "127.0.0.1:0"

[auth]
bearer_tokens = ["t0123456789abcdefgh"]

[backend.app]
type = "rest"
base_url = "http://{addr}"
oauth2 = {{ token_url = "http://{addr}/oauth/token", client_id = "sidecar", client_secret = "s3cr3t", scope = "users" }}

[resource.User]
backend = "app"
collection = "/users"
suffix = ".json"
wrap = "user"
items = "users"
paging = {{ total = "total_count" }}

[resource.User.map]
userName = "login"
"#,
        addr = server.addr
    );
    let path = dir.path().join("oauth.toml");
    std::fs::write(&path, text).expect("config");
    let config = support::load(&path, &Default::default());
    let backends = scim_sidecar::app::open_backends(&config)
        .await
        .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    let settings = scim_sidecar::mapping::Settings {
        unknown_attributes: scim_sidecar::scim::UnknownPolicy::Ignore,
        retry_after: 1,
        observer: Arc::new(scim_sidecar::mapping::NoObserver),
        max_members: None,
    };
    let (res, _) = scim_sidecar::mapping::build(
        &config.resources[0],
        backends[0].as_ref(),
        &config.resources,
        &settings,
        None,
    )
    .await
    .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    let users = res.table();
    let search = || Search {
        predicate: Predicate::True,
        sort: Default::default(),
        page: PageRequest::Offset {
            offset: 0,
            limit: 10,
        },
        members: false,
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (t, s) = (users.clone(), search());
        tasks.push(tokio::spawn(async move { t.search(s).await }));
    }
    for t in tasks {
        let found = t.await.expect("task").expect("search");
        assert_eq!(found.rows.len(), 1);
    }
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    // The API stops taking token 1: the next request gets 401, and is sent again with a new
    // token.
    valid_from.store(2, Ordering::SeqCst);
    let found = users
        .search(search())
        .await
        .expect("search with a new token");
    assert_eq!(found.total, Some(1));
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

/// The users of a one-resource config `text`, through the backend API.
async fn open_users(text: &str) -> std::sync::Arc<dyn scim_sidecar::backend::Table> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("config");
    let config = support::load(&path, &Default::default());
    let backends = scim_sidecar::app::open_backends(&config)
        .await
        .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    let settings = scim_sidecar::mapping::Settings {
        unknown_attributes: scim_sidecar::scim::UnknownPolicy::Ignore,
        retry_after: 1,
        observer: std::sync::Arc::new(scim_sidecar::mapping::NoObserver),
        max_members: None,
    };
    let (res, _) = scim_sidecar::mapping::build(
        &config.resources[0],
        backends[0].as_ref(),
        &config.resources,
        &settings,
        None,
    )
    .await
    .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    res.table()
}

/// Cursor and next-link APIs (`paging.style = "cursor"` / `"next"`): the table pages by
/// cursor, each SCIM page is one API page, and following cursors (a body field) or links
/// (`Link: <…>; rel="next"`) reads every user exactly once, in order. Offset style
/// (`offset=N&limit=M`) reads any page directly.
#[tokio::test]
async fn cursor_next_link_and_offset_paging() {
    use scim_sidecar::backend::{PageRequest, Paging, Predicate, Search};

    support::init();
    // Users 1..=5; pages of `limit` from the query's `cursor`, `offset` or `after`.
    let server = support::upstream::Server::start(|req: http::Request<hyper::body::Incoming>, _| async move {
        let q: std::collections::HashMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let num = |k: &str, d: usize| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let limit = num("limit", 2);
        let start = match req.uri().path() {
            "/c/users" => num("cursor", 0),
            "/o/users" => num("offset", 0),
            _ => num("after", 0),
        };
        let users: Vec<Value> = (start + 1..=5.min(start + limit))
            .map(|i| json!({"id": i, "login": format!("u{i}")}))
            .collect();
        let end = start + users.len();
        let more = end < 5;
        let mut b = http::Response::builder().header("content-type", "application/json");
        if req.uri().path() == "/n/users" && more {
            b = b.header("link", format!("</n/users?after={end}&limit={limit}>; rel=\"next\""));
        }
        let body = json!({"data": {"items": users}, "meta": {"next": if more { json!(end.to_string()) } else { Value::Null }, "total": 5}});
        b.body(scim_sidecar::proxy::full(body.to_string())).expect("response")
    })
    .await;
    let config = |prefix: &str, paging: &str| {
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[auth]\nbearer_tokens = [\"t0123456789abcdefgh\"]\n\
             [backend.app]\ntype = \"rest\"\nbase_url = \"http://{}\"\n\
             [resource.User]\nbackend = \"app\"\ncollection = \"/{prefix}/users\"\nitems = \"data.items\"\n\
             paging = {paging}\n[resource.User.map]\nuserName = \"login\"\n",
            server.addr
        )
    };
    let all = Search {
        predicate: Predicate::True,
        sort: Default::default(),
        page: PageRequest::Cursor {
            after: None,
            limit: 2,
        },
        members: false,
    };
    for users in [
        open_users(&config(
            "c",
            "{ style = \"cursor\", next = \"meta.next\", max = 2 }",
        ))
        .await,
        open_users(&config("n", "{ style = \"next\", max = 2 }")).await,
    ] {
        assert_eq!(users.paging(), Paging::Cursor);
        let mut seen = Vec::new();
        let mut after = None;
        for _ in 0..5 {
            let found = users
                .search(Search {
                    page: PageRequest::Cursor { after, limit: 2 },
                    ..all.clone()
                })
                .await
                .expect("page");
            seen.extend(found.rows.iter().map(|r| r.key.clone()));
            after = found.next;
            if after.is_none() {
                break;
            }
        }
        assert_eq!(seen, ["1", "2", "3", "4", "5"]);
    }
    let users = open_users(&config(
        "o",
        "{ style = \"offset\", max = 2, total = \"meta.total\" }",
    ))
    .await;
    assert_eq!(users.paging(), Paging::Offset);
    let found = users
        .search(Search {
            page: PageRequest::Offset {
                offset: 3,
                limit: 2,
            },
            ..all
        })
        .await
        .expect("page");
    assert_eq!(found.total, Some(5));
    let keys: Vec<&str> = found.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["4", "5"]);
}

/// An app slower than `timeout` costs a request no more than the timeout (and the retries):
/// the client gets a 503, not a hung connection.
#[tokio::test]
async fn a_slow_app_is_503_after_the_timeout() {
    let app = RestApp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(support::example_config("rest"))
        .expect("example")
        .replacen("timeout = \"10s\"", "timeout = \"300ms\"", 1)
        .replacen("retries = 2", "retries = 1", 1);
    let config = dir.path().join("slow.toml");
    std::fs::write(&config, text).expect("config");
    let state = dir.path().join("state.db");
    std::fs::write(&state, "").expect("state db");
    let s = Sidecar::start(Options {
        config: Some(config),
        env: vec![
            ("REST_BASE_URL", app.base_url.clone()),
            ("REST_API_KEY", app.api_key.clone()),
            ("SCIM_SIDECAR_STATE", state.display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    let r = Rig { app, s, _dir: dir };
    let id = r.create_user("alice").await;
    let path = format!("/scim/v2/Users/{id}");
    // Each connection to the app keeps one timer for all of its requests, moved on when it
    // fires before the current request's deadline: slow answers after quick ones, after a
    // pause longer than the timeout, and twice in a row are each cut at their own deadline.
    for pause_ms in [0, 400, 0] {
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        r.s.client.get(&path).await.expect(200);
        r.app.faults().delay(std::time::Duration::from_secs(2));
        let started = std::time::Instant::now();
        r.s.client.get(&path).await.scim_error(503, None);
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(600)
                && took < std::time::Duration::from_millis(1500),
            "two attempts of 300 ms and a pause of 100 ms took {took:?}"
        );
        r.app.faults().delay(std::time::Duration::ZERO);
    }
}

/// `https` with `tls = { ca }`: the API reached through rustls, its certificate verified
/// against the CA file (here the app sits behind a TLS-terminating sidecar's pass-through,
/// a real HTTPS server).
#[tokio::test]
async fn https_apis_are_verified_against_the_ca_file() {
    let app = RestApp::start().await;
    let pki = crate::tls::Pki::new();
    let tls = pki.tls();
    let ca = tls.cert.clone();
    let front = Sidecar::start(Options {
        env: vec![("UPSTREAM_URL", app.base_url.clone())],
        tweak: Some(Box::new(move |c| c.listen.tls = Some(tls))),
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(support::example_config("rest"))
        .expect("example")
        .replacen(
            "retries = 2",
            "retries = 2\ntls = { ca = \"${REST_CA_FILE}\" }",
            1,
        );
    let config = dir.path().join("https.toml");
    std::fs::write(&config, text).expect("config");
    let state = dir.path().join("state.db");
    std::fs::write(&state, "").expect("state db");
    let s = Sidecar::start(Options {
        config: Some(config),
        env: vec![
            (
                "REST_BASE_URL",
                format!("https://127.0.0.1:{}", front.addr.port()),
            ),
            ("REST_API_KEY", app.api_key.clone()),
            ("REST_CA_FILE", ca.display().to_string()),
            ("SCIM_SIDECAR_STATE", state.display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    let r = Rig { app, s, _dir: dir };
    let id = r.create_user("alice").await;
    assert_eq!(r.app_user(&id)[0], "alice");
    r.s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200);
}

/// Templates are checked when the store opens: a placeholder naming no mapped field, a
/// filter on an unmapped key and a get path without `{id}` are each reported at their own
/// line of the file, together.
#[tokio::test]
async fn templates_naming_unmapped_fields_stop_the_start_with_their_lines() {
    let app = RestApp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"[listen]
addr = "127.0.0.1:0"
[auth]
bearer_tokens = ["t0123456789abcdefgh"]
[backend.app]
type = "rest"
base_url = "{}"
headers = {{ "X-API-Key" = "{}" }}
[resource.User]
backend = "app"
collection = "/users"
suffix = ".json"
wrap = "user"
items = "users"
create = {{ body = {{ user = {{ login = "{{userName}}", mail = "{{nope}}" }} }} }}
get = {{ path = "/users/{{userName}}.json" }}
filter = {{ title = {{ param = "search" }} }}
[resource.User.map]
userName = "login"
"#,
        app.base_url, app.api_key
    );
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("config");
    let config = support::load(&path, &Default::default());
    let backends = scim_sidecar::app::open_backends(&config)
        .await
        .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    let settings = scim_sidecar::mapping::Settings {
        unknown_attributes: scim_sidecar::scim::UnknownPolicy::Ignore,
        retry_after: 1,
        observer: std::sync::Arc::new(scim_sidecar::mapping::NoObserver),
        max_members: None,
    };
    let Err(problems) = scim_sidecar::mapping::build(
        &config.resources[0],
        backends[0].as_ref(),
        &config.resources,
        &settings,
        None,
    )
    .await
    else {
        panic!("a bad template must stop the start");
    };
    let report = scim_sidecar::config::report(&problems);
    for needle in [
        "bad.toml:15: error: create: {nope} is not a mapped field",
        "bad.toml:16: error: get's path does not hold {id}",
        "bad.toml:17: error: filter title: not a mapped field",
    ] {
        assert!(report.contains(needle), "{needle}\n{report}");
    }
}

/// What `migrate --prune` asks a store: which of these ids it still holds (one read each).
#[tokio::test]
async fn present_tells_which_ids_the_app_holds() {
    let r = rig().await;
    let id = r.create_user("alice").await;
    let users = open_users(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[auth]\nbearer_tokens = [\"t0123456789abcdefgh\"]\n\
         [backend.app]\ntype = \"rest\"\nbase_url = \"{}\"\nheaders = {{ \"X-API-Key\" = \"{}\" }}\n\
         [resource.User]\nbackend = \"app\"\ncollection = \"/users\"\nsuffix = \".json\"\nwrap = \"user\"\nitems = \"users\"\n\
         [resource.User.map]\nuserName = \"login\"\n",
        r.app.base_url, r.app.api_key
    ))
    .await;
    let present = users
        .present(&[id.clone(), "999999".to_owned()])
        .await
        .expect("present");
    assert_eq!(present, vec![id]);
}

/// `scim-sidecar migrate` then `check` on `examples/rest/scim-sidecar.toml`, as an
/// integrator runs them in CI, against the running app: OK with both resource types; with a
/// wrong key, `check` fails naming the credentials at the resources' lines.
#[tokio::test]
async fn the_example_passes_check_against_the_running_app() {
    let app = RestApp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.db");
    std::fs::write(&state, "").expect("state db");
    let run = |cmd: &'static str, key: String| {
        let (base, state) = (app.base_url.clone(), state.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_scim-sidecar"))
                .args([cmd, "--config"])
                .arg(support::example_config("rest"))
                .env("REST_BASE_URL", base)
                .env("REST_API_KEY", key)
                .env("SCIM_TOKEN", support::TOKEN)
                .env("SCIM_SIDECAR_STATE", state)
                .output()
                .expect("run scim-sidecar")
        })
    };
    let out = run("migrate", app.api_key.clone()).await.expect("migrate");
    assert!(out.status.success(), "{out:?}");
    let out = run("check", app.api_key.clone()).await.expect("check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("/Users") && text.contains("/Groups"),
        "{text}"
    );
    let out = run("check", "wrong".into()).await.expect("check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("scim-sidecar.toml:")
            && text.contains("refused the sidecar's credentials (401)"),
        "{text}"
    );
}

/// A sidecar in front of the API at `addr`: `[backend.app]` with the `backend` lines added,
/// and `[resource.User]` (collection `/v1/people`) followed by `resource` (its other keys and
/// its map).
async fn sidecar_for(
    addr: std::net::SocketAddr,
    backend: &str,
    resource: &str,
) -> (Sidecar, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scim-sidecar.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\naddr = \"${{SCIM_SIDECAR_LISTEN}}\"\n[admin]\naddr = \"${{SCIM_SIDECAR_ADMIN_LISTEN}}\"\n\
             [upstream]\nurl = \"${{UPSTREAM_URL}}\"\n[auth]\nbearer_tokens = [\"${{SCIM_TOKEN}}\"]\n\
             [backend.app]\ntype = \"rest\"\nbase_url = \"http://{addr}\"\n{backend}\
             [resource.User]\nbackend = \"app\"\ncollection = \"/v1/people\"\n{resource}"
        ),
    )
    .expect("config");
    let s = Sidecar::start(Options {
        config: Some(path),
        ..Default::default()
    })
    .await;
    (s, dir)
}

/// An API that answers a create with `201` and only a `Location` (no body), and changes a
/// user with a `PATCH` that must carry every mapped field (`update_method = "PATCH"`,
/// `update_sends = "all"`): the created user is read back from where `Location` points, a
/// SCIM PATCH of one attribute is one API `PATCH` holding all of them, and the user reads
/// back changed.
#[tokio::test]
async fn location_only_creates_and_patch_updates_of_every_field() {
    use std::sync::{Arc, Mutex};

    support::init();
    // The app: people by id, and every request it saw (method, path, body).
    type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;
    let people: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen: Seen = Arc::default();
    let (p, s) = (people.clone(), seen.clone());
    let server =
        support::upstream::Server::start(move |req: http::Request<hyper::body::Incoming>, _| {
            let (people, seen) = (p.clone(), s.clone());
            async move {
                use http_body_util::BodyExt;
                let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
                let bytes = req.into_body().collect().await.expect("body").to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                seen.lock()
                    .unwrap()
                    .push((method.clone(), path.clone(), body.clone()));
                let reply = |status: u16, v: &Value| {
                    http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(scim_sidecar::proxy::full(v.to_string()))
                        .expect("response")
                };
                let mut people = people.lock().unwrap();
                let id = path
                    .strip_prefix("/v1/people/")
                    .and_then(|i| i.parse::<usize>().ok());
                match (method.as_str(), id) {
                    ("GET", None) => reply(200, &json!({ "people": *people })),
                    ("POST", None) => {
                        let mut person = body;
                        person["id"] = json!(people.len() + 7);
                        let at = format!("/v1/people/{}", person["id"]);
                        people.push(person);
                        http::Response::builder()
                            .status(201)
                            .header("location", at)
                            .body(scim_sidecar::proxy::full(""))
                            .expect("response")
                    }
                    (m, Some(i)) => match people.iter_mut().find(|x| x["id"] == json!(i)) {
                        None => reply(404, &json!({ "error": "not found" })),
                        Some(person) if m == "GET" => reply(200, person),
                        Some(person) if m == "PATCH" => {
                            for (k, v) in body.as_object().into_iter().flatten() {
                                person[k] = v.clone();
                            }
                            reply(200, person)
                        }
                        Some(_) => reply(405, &json!({ "error": "no such method" })),
                    },
                    _ => reply(405, &json!({ "error": "no such method" })),
                }
            }
        })
        .await;
    let (s, _dir) = sidecar_for(
        server.addr,
        "",
        "items = \"people\"\nupdate_method = \"PATCH\"\nupdate_sends = \"all\"\n\
         [resource.User.map]\nuserName = \"login\"\n\"name.givenName\" = \"first\"\n\
         \"name.familyName\" = \"last\"\n",
    )
    .await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice",
        "name": {"givenName": "Alice", "familyName": "Ng"}
    });
    let created = s
        .client
        .post("/scim/v2/Users", &body)
        .await
        .expect(201)
        .json();
    assert_eq!(created["id"], "7", "{created}");
    assert_eq!(created["userName"], "alice");
    assert_eq!(created["name"]["familyName"], "Ng");
    let calls = |seen: &Seen| -> Vec<String> {
        seen.lock()
            .unwrap()
            .drain(..)
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect()
    };
    let made = calls(&seen);
    assert!(
        made.ends_with(&["POST /v1/people".to_owned(), "GET /v1/people/7".to_owned()]),
        "the create is read back from its Location: {made:?}"
    );

    let changed = s
        .client
        .patch(
            "/scim/v2/Users/7",
            &patch_body(json!([{"op": "replace", "path": "name.familyName", "value": "Ngata"}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(changed["name"]["familyName"], "Ngata", "{changed}");
    let writes: Vec<(String, String, Value)> = seen
        .lock()
        .unwrap()
        .drain(..)
        .filter(|(m, _, _)| m != "GET")
        .collect();
    assert_eq!(writes.len(), 1, "one write: {writes:?}");
    let (method, at, sent) = &writes[0];
    assert_eq!((method.as_str(), at.as_str()), ("PATCH", "/v1/people/7"));
    assert_eq!(sent["last"], "Ngata", "{sent}");
    assert_eq!(
        (&sent["login"], &sent["first"]),
        (&json!("alice"), &json!("Alice")),
        "update_sends = \"all\" sends the unchanged fields too: {sent}"
    );
    let read = s.client.get("/scim/v2/Users/7").await.expect(200).json();
    assert_eq!(read["name"]["familyName"], "Ngata", "{read}");
    assert_eq!(read["name"]["givenName"], "Alice");
}

/// `max_concurrency` bounds what the app sees: twenty SCIM reads at once through a backend
/// allowed three reach an app that takes 50 ms per request as at most three requests in
/// flight on at most three connections, and every read is answered.
#[tokio::test]
async fn max_concurrency_bounds_requests_and_connections_to_the_app_and_reuses_them() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    support::init();
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, p) = (now.clone(), peak.clone());
    let server =
        support::upstream::Server::start(move |req: http::Request<hyper::body::Incoming>, _| {
            let (now, peak) = (n.clone(), p.clone());
            async move {
                if req.uri().path() == "/v1/people" {
                    // The start-up check lists the users.
                    return http::Response::builder()
                        .header("content-type", "application/json")
                        .body(scim_sidecar::proxy::full("[]"))
                        .expect("response");
                }
                let inside = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(inside, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                let id = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(scim_sidecar::proxy::full(
                        json!({"id": id, "login": format!("u{id}")}).to_string(),
                    ))
                    .expect("response")
            }
        })
        .await;
    let (s, _dir) = sidecar_for(
        server.addr,
        "max_concurrency = 3\n",
        "[resource.User.map]\nuserName = \"login\"\n",
    )
    .await;
    let reads: Vec<_> = (1..=20)
        .map(|i| {
            let client = s.client.clone();
            tokio::spawn(async move {
                client
                    .get(&format!("/scim/v2/Users/{i}"))
                    .await
                    .expect(200)
                    .json()
            })
        })
        .collect();
    for (i, read) in reads.into_iter().enumerate() {
        let got = read.await.expect("read");
        assert_eq!(got["userName"], format!("u{}", i + 1), "{got}");
    }
    let (peak, conns) = (peak.load(Ordering::SeqCst), server.connection_count());
    assert!(peak <= 3, "{peak} requests at once reached the app");
    assert!(
        peak >= 2,
        "the reads were not sent in parallel (peak {peak})"
    );
    assert!(conns <= 3, "the app saw {conns} connections");
    // Idle connections are reused: reads one after another open none.
    for i in 1..=10 {
        s.client
            .get(&format!("/scim/v2/Users/{i}"))
            .await
            .expect(200);
    }
    assert_eq!(
        server.connection_count(),
        conns,
        "reads one after another opened connections"
    );
}

/// Soft-deleted users stay out of filtered reads without the sidecar reading every
/// tombstone for each one: a `userName eq` filter (what an IdP sends before each write) is
/// one API request and one read of the matched user's kept values, whatever the number of
/// soft-deleted users; a list that spans pages still counts and pages without them.
#[tokio::test]
async fn filters_skip_soft_deleted_users_without_reading_every_tombstone() {
    let (r, config, env) = soft_rig().await;
    let alice = r.create_user("alice").await;
    let mut gone = Vec::new();
    for i in 0..12 {
        let id = r.create_user(&format!("gone{i}")).await;
        r.s.client
            .delete(&format!("/scim/v2/Users/{id}"))
            .await
            .expect(204);
        gone.push(id);
    }
    let count = |q: &str| {
        let client = r.s.client.clone();
        let q = q.to_owned();
        async move {
            let list = client
                .get(&format!("/scim/v2/Users?{q}"))
                .await
                .expect(200)
                .json();
            let ids: Vec<String> = list["Resources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| u["id"].as_str().unwrap_or("").to_owned())
                .collect();
            (list["totalResults"].as_u64().unwrap_or(u64::MAX), ids)
        }
    };
    r.app.reset_hits();
    assert_eq!(
        count("filter=userName%20eq%20%22alice%22").await,
        (1, vec![alice.clone()])
    );
    assert_eq!(r.app.hits("GET /users.json"), 1, "one API search");
    assert_eq!(
        count("filter=userName%20eq%20%22gone3%22").await,
        (0, vec![])
    );
    // The API's search is fuzzy: "gone1" also matches gone10 and gone11, all deleted.
    assert_eq!(
        count("filter=userName%20eq%20%22gone1%22").await,
        (0, vec![])
    );
    // Pages of 5 over everything: one live user, on the first page, counted once.
    assert_eq!(count("count=5").await, (1, vec![alice.clone()]));
    assert_eq!(count("startIndex=2&count=5").await, (1, vec![]));

    // A soft-deleted user is no one to make a member of: refused, on create and on PATCH.
    let group = |members: Vec<&str>| {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Staff",
            "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>()})
    };
    let refused =
        r.s.client
            .post("/scim/v2/Groups", &group(vec![&alice, &gone[4]]))
            .await
            .expect(400)
            .json();
    assert!(
        refused["detail"].as_str().unwrap_or("").contains(&gone[4]),
        "{refused}"
    );
    let g =
        r.s.client
            .post("/scim/v2/Groups", &group(vec![&alice]))
            .await
            .expect(201)
            .json();
    let gid = g["id"].as_str().expect("id").to_owned();
    r.s.client
        .patch(
            &format!("/scim/v2/Groups/{gid}"),
            &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": gone[7]}]}])),
        )
        .await
        .expect(400);
    assert_eq!(
        r.app.sql(&format!(
            "SELECT user_id FROM members WHERE group_id = {gid}"
        )),
        vec![vec![alice.clone()]]
    );

    // What the filter sends, as `scim-sidecar explain` shows it.
    let mut vars: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    vars.insert("SCIM_TOKEN".into(), support::TOKEN.into());
    let loaded = support::load(&config, &vars);
    let (service, _) = scim_sidecar::app::service_only(&loaded)
        .await
        .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    let e = scim_sidecar::explain::run(
        &service,
        "http://localhost/scim/v2",
        &http::Method::GET,
        "/Users?filter=userName%20eq%20%22alice%22",
        bytes::Bytes::new(),
    )
    .await;
    let steps: Vec<String> = e
        .steps
        .iter()
        .map(|s| format!("{} {} {:?}", s.store, s.text, s.params))
        .collect();
    assert!(
        steps.iter().all(|s| !s.contains("meta.deleted")),
        "a tombstone search: {steps:#?}"
    );
}

/// With `on_delete = "soft"`, a create must find a soft-deleted user of the same userName to
/// bring it back. Where nothing was ever soft-deleted (an identity provider's first cycle) a
/// create is the app's POST alone; once something is, a create asks the app once by
/// userName (its own search, narrowed to the exact match), not every tombstoned user by id,
/// and a create of a tombstoned name in other case brings that user back.
#[tokio::test]
async fn a_create_looks_for_soft_deleted_users_only_when_there_are_some() {
    let (r, _, _) = soft_rig().await;
    r.create_user("first").await;
    r.app.reset_hits();
    r.create_user("second").await;
    assert_eq!(r.app.hits("POST /users.json"), 1);
    assert_eq!(
        r.app.hits("GET /users.json"),
        0,
        "a search with no tombstone"
    );

    let gone = r.create_user("gone").await;
    let other = r.create_user("gone.too").await;
    for id in [&gone, &other] {
        r.s.client
            .delete(&format!("/scim/v2/Users/{id}"))
            .await
            .expect(204);
    }
    r.app.reset_hits();
    r.create_user("third").await;
    assert_eq!(r.app.hits("GET /users.json"), 1);
    assert_eq!(
        r.app.hits("GET /users/{id}.json"),
        0,
        "tombstoned users read one by one"
    );
    r.app.reset_hits();
    assert_eq!(r.create_user("GONE").await, gone);
    assert_eq!(r.app.hits("POST /users.json"), 0, "a second app user");
    assert_eq!(r.app_user(&gone)[0], "GONE");
    assert_eq!(r.app_user(&gone)[4], "1");
}
