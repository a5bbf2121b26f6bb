//! What only MySQL and MariaDB have, or have differently: WordPress on its own MySQL schema
//! (no unique login, zero dates, GET_LOCK), collations that fold case by themselves or not at
//! all, legacy character sets that cannot hold every character, MyISAM tables without
//! transactions, the statement timeout, a server that stops or freezes under load, TLS and
//! Unix sockets, `migrate` and `check` against the live catalog. The mapping shapes shared
//! with SQLite and PostgreSQL run on MariaDB through `both!` in their own files.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::mariadb::{self, Server};
use crate::support::{Sidecar, Store, Tweak, example_my_database};

const BIN: &str = env!("CARGO_BIN_EXE_scim-sidecar");

/// A minimal helpdesk user (the app requires a display name).
fn user(name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "displayName": name})
}

/// `GET /Users?filter=…`, the filter form-encoded.
fn filtered(filter: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    format!("/scim/v2/Users?filter={encoded}")
}

/// The sidecar of an example on the shared MariaDB, or a skip without MariaDB.
macro_rules! on_mariadb {
    ($example:expr) => {
        on_mariadb!($example, None)
    };
    ($example:expr, $tweak:expr) => {
        match Sidecar::example($example, Store::Mariadb, $tweak).await {
            Some(s) => s,
            None => return,
        }
    };
}

/// A private server (for tests that stop, freeze or reconfigure it), or `None` to skip.
fn private_server() -> Option<Server> {
    mariadb::server()?;
    Some(Server::start().expect("a second server"))
}

/// Sets the MySQL backend's options before the sidecar starts.
fn my_options(
    f: impl Fn(&mut scim_sidecar::backend::sql::mysql::MyOptions) + 'static,
) -> Option<Tweak> {
    Some(Box::new(move |c| crate::support::with_mysql(c, &f)))
}

// === WordPress on its own schema ===

/// WordPress's `wp_users` has no unique index on `user_login`: twenty racing creates of one
/// name, in differing case, give one 201, nineteen 409 `uniqueness` and one row. The
/// sidecar's own check under `GET_LOCK` is all that keeps them apart; `user_login`'s
/// `utf8mb4_unicode_520_ci` collation makes the spellings one name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wordpress_concurrent_creates_of_one_login_make_one_user() {
    let s = on_mariadb!("wordpress-mysql");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = s.client.clone();
            let name = if i % 2 == 0 { "RaceUser" } else { "raceuser" };
            let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                              "userName": name, "name": {"givenName": "Race", "familyName": "User"}});
            tokio::spawn(async move { client.post("/scim/v2/Users", &body).await })
        })
        .collect();
    let (mut created, mut conflicts) = (0, 0);
    for t in tasks {
        let r = t.await.expect("task");
        match r.status.as_u16() {
            201 => created += 1,
            409 => {
                r.scim_error(409, Some("uniqueness"));
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!((created, conflicts), (1, 19));
    assert_eq!(
        s.one("SELECT count(*) FROM wp_users WHERE user_login = 'raceuser'")
            .await,
        "1"
    );
    // Only the winner's meta rows: no half-written user.
    assert_eq!(
        s.one(
            "SELECT count(*) FROM wp_usermeta WHERE meta_key = 'first_name' AND meta_value = 'Race'"
        )
        .await,
        "1"
    );
    // No advisory lock outlives its write: one more create of the name is refused at once
    // (a lock still held would make it wait out the statement timeout, and answer 503).
    let body =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "RACEUSER"});
    s.client
        .post("/scim/v2/Users", &body)
        .await
        .scim_error(409, Some("uniqueness"));
}

/// A create writes what WordPress's own `wp_insert_user()` would, in its own tables; the
/// administrator WordPress installed, whose `user_registered` an old install may hold as the
/// zero date, reads back with no `meta.created` rather than a year-zero date or an error.
#[tokio::test]
async fn wordpress_rows_and_zero_dates() {
    let s = on_mariadb!("wordpress-mysql");
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "BJensen", "externalId": "0b6f5c1e", "displayName": "Barbara Jensen",
        "nickName": "Babs", "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}]});
    let id = s.created("/scim/v2/Users", &body).await;
    assert_eq!(
        s.rows(&format!(
            "SELECT user_login, user_nicename, user_email, display_name, user_status, user_pass, \
             user_registered > now() - interval 1 hour FROM wp_users WHERE ID = {id}"
        ))
        .await,
        vec![vec![
            "BJensen",
            "bjensen",
            "bjensen@example.com",
            "Barbara Jensen",
            "0",
            "!",
            "1"
        ]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT meta_key, meta_value FROM wp_usermeta WHERE user_id = {id} \
             AND meta_key IN ('first_name', 'last_name', 'nickname') ORDER BY meta_key"
        ))
        .await,
        vec![
            vec!["first_name", "Barbara"],
            vec!["last_name", "Jensen"],
            vec!["nickname", "Babs"]
        ]
    );
    let got = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert!(got["meta"]["created"].as_str().is_some(), "{got}");
    // The installer's administrator, with the zero date an old WordPress leaves.
    s.exec("SET SESSION sql_mode = ''; UPDATE wp_users SET user_registered = '0000-00-00 00:00:00' WHERE ID = 1;")
        .await;
    let admin = s.client.get("/scim/v2/Users/1").await.expect(200).json();
    assert_eq!(admin["userName"], "admin");
    assert!(admin["meta"].get("created").is_none(), "{admin}");
    // `pr` agrees: a zero date is no value.
    let j = s
        .client
        .get(&filtered("meta.created pr"))
        .await
        .expect(200)
        .json();
    assert_eq!(j["totalResults"], 1, "{j}");
    // The sidecar's writes never wrote a zero date: only the admin has one.
    assert_eq!(
        s.one("SELECT count(*) FROM wp_users WHERE user_registered = '0000-00-00 00:00:00'")
            .await,
        "1"
    );
}

// === Collations and character sets ===

/// The helpdesk's `login` is `utf8mb4_unicode_ci`: `userName eq` finds the user in any case
/// through the column's own collation (and its unique index refuses another case with 409);
/// `externalId`, case-exact in SCIM, is kept in the sidecar's own `utf8mb4_bin` table and
/// matches only exactly. A login column with a binary collation is folded by the sidecar,
/// so `userName` still compares case-insensitively, exactly once.
#[tokio::test]
async fn case_is_folded_exactly_once() {
    let s = on_mariadb!("postgres");
    let mut body = user("Zoe.Smith");
    body["externalId"] = json!("AbC-1");
    let id = s.created("/scim/v2/Users", &body).await;
    for name in ["zoe.smith", "ZOE.SMITH", "Zoe.Smith"] {
        let j = s
            .client
            .get(&filtered(&format!("userName eq \"{name}\"")))
            .await
            .expect(200)
            .json();
        assert_eq!(j["totalResults"], 1, "{name}: {j}");
    }
    s.client
        .post("/scim/v2/Users", &user("ZOE.smith"))
        .await
        .scim_error(409, Some("uniqueness"));
    let exact = |v: &str| filtered(&format!("externalId eq \"{v}\""));
    let j = s.client.get(&exact("AbC-1")).await.expect(200).json();
    assert_eq!(j["Resources"][0]["id"], json!(id), "{j}");
    let j = s.client.get(&exact("abc-1")).await.expect(200).json();
    assert_eq!(j["totalResults"], 0, "externalId is case-exact: {j}");

    // The same column with a binary collation: the sidecar lowers both sides.
    s.exec("ALTER TABLE principals MODIFY login varchar(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;")
        .await;
    let s2 = Sidecar::example_on_mariadb("postgres", reuse(&s), None).await;
    let j = s2
        .client
        .get(&filtered("userName eq \"ZOE.SMITH\""))
        .await
        .expect(200)
        .json();
    assert_eq!(j["totalResults"], 1, "{j}");
    let j = s2
        .client
        .get(&filtered("userName sw \"zoe\""))
        .await
        .expect(200)
        .json();
    assert_eq!(j["totalResults"], 1, "{j}");
}

/// Another handle on the database a sidecar uses (for a second sidecar on it).
fn reuse(s: &Sidecar) -> mariadb::Db {
    let db = s.my.as_ref().expect("mariadb");
    mariadb::Db {
        url: db.url.clone(),
        name: db.name.clone(),
        socket: db.socket.clone(),
    }
}

/// Legacy tables: a `latin1` column cannot hold Cyrillic, a `utf8` (utf8mb3) one cannot hold
/// an emoji. Such a value is a 400 `invalidValue` naming the attribute, for a create and a
/// PATCH, and nothing is written: never a row with `?` in place of the characters. What
/// the character set holds (accents in latin1, Cyrillic in utf8mb3) is written as sent, and
/// a filter on a value the column cannot hold matches nothing instead of failing.
#[tokio::test]
async fn values_a_legacy_charset_cannot_hold_are_refused() {
    let s = on_mariadb!("postgres");
    s.exec(
        "ALTER TABLE principals MODIFY first_name varchar(64) CHARACTER SET latin1,
                                MODIFY job_title varchar(128) CHARACTER SET utf8mb3;",
    )
    .await;
    let s = Sidecar::example_on_mariadb("postgres", reuse(&s), None).await;
    let before = s.rows("SELECT count(*) FROM principals").await;
    let mut body = user("jeanne");
    body["name"] = json!({"givenName": "Жанна"});
    let d = s
        .client
        .post("/scim/v2/Users", &body)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("name.givenName"), "{d}");
    let mut body = user("party");
    body["title"] = json!("Head of 🎉");
    let d = s
        .client
        .post("/scim/v2/Users", &body)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("title"), "{d}");
    assert_eq!(s.rows("SELECT count(*) FROM principals").await, before);

    let mut body = user("zoe");
    body["name"] = json!({"givenName": "Zoë"});
    body["title"] = json!("Руководитель");
    let id = s.created("/scim/v2/Users", &body).await;
    let path = format!("/scim/v2/Users/{id}");
    let d = s
        .client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "title", "value": "🎉"}])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("title"), "{d}");
    assert_eq!(
        s.rows(&format!(
            "SELECT first_name, job_title FROM principals WHERE id = {id}"
        ))
        .await,
        vec![vec!["Zoë", "Руководитель"]]
    );
    let j = s
        .client
        .get(&filtered("name.givenName eq \"Жанна\""))
        .await
        .expect(200)
        .json();
    assert_eq!(j["totalResults"], 0, "{j}");
}

// === Engines ===

/// A MyISAM table has no transactions: `check` warns, naming the table, what can then be
/// left half-written and the `ALTER TABLE` that fixes it; the sidecar still serves.
#[tokio::test]
async fn check_warns_about_myisam() {
    let s = on_mariadb!("values");
    s.exec("ALTER TABLE account_emails ENGINE=MyISAM;").await;
    let config = s.example_config("values");
    let (_, warnings) = scim_sidecar::app::build(
        &config,
        std::sync::Arc::new(scim_sidecar::metrics::Metrics::new()),
    )
    .await
    .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    let w: Vec<_> = warnings
        .iter()
        .filter(|w| w.message.contains("account_emails") && w.message.contains("MyISAM"))
        .collect();
    assert_eq!(w.len(), 1, "{warnings:?}");
    assert!(w[0].message.contains("no transactions"), "{:?}", w[0]);
    assert!(
        w[0].fix
            .as_deref()
            .is_some_and(|f| f.contains("ENGINE=InnoDB")),
        "{:?}",
        w[0]
    );
}

// === Timeouts and faults ===

/// A statement that outlives the statement timeout (here: waiting on a row the app holds
/// locked) is 503 with Retry-After and writes nothing; once the lock is gone the same request
/// succeeds.
#[tokio::test]
async fn statement_timeout_is_503() {
    let s = on_mariadb!(
        "postgres",
        my_options(|o| o.statement_timeout = Duration::from_millis(1500))
    );
    let db = s.my.as_ref().expect("mariadb");
    let id = s.created("/scim/v2/Users", &user("held")).await;
    let mut app = db.conn().await;
    app.query_drop(format!(
        "START TRANSACTION; SELECT * FROM principals WHERE id = {id} FOR UPDATE"
    ))
    .await
    .expect("lock");
    let started = Instant::now();
    let r = s
        .client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "title", "value": "waited"}])),
        )
        .await;
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    r.scim_error(503, None);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the timeout did not apply"
    );
    app.query_drop("ROLLBACK").await.expect("unlock");
    s.client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "title", "value": "waited"}])),
        )
        .await
        .expect(200);
    assert_eq!(
        s.one(&format!("SELECT job_title FROM principals WHERE id = {id}"))
            .await,
        "waited"
    );
}

/// MariaDB stopped under load: every request that fails is 503 with Retry-After (never a
/// 500), no user is half-written, /readyz says so, and the sidecar serves again by itself
/// once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_under_load() {
    let Some(server) = private_server() else {
        return;
    };
    let db = example_my_database(&server, "postgres").await;
    let s = Sidecar::example_on_mariadb("postgres", db, None).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let client = s.client.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut created, mut refused, mut others) = (Vec::new(), 0, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                i += 1;
                let mut body = user(&format!("load-{w}-{i}"));
                body["emails"] =
                    json!([{"type": "work", "value": format!("load-{w}-{i}@example.com")}]);
                let r = client.post("/scim/v2/Users", &body).await;
                match r.status.as_u16() {
                    201 => created.push(r.json()["id"].as_str().expect("id").to_owned()),
                    503 if r.header("retry-after").is_some() => refused += 1,
                    _ => others.push(format!("{} {}", r.status, r.text())),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (created, refused, others)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ready = s.admin_client().get("/readyz").await;
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.text());
    let down = s.client.post("/scim/v2/Users", &user("while-down")).await;
    assert_eq!(down.header("retry-after").as_deref(), Some("5"));
    down.scim_error(503, None);
    tokio::task::block_in_place(|| server.run()).expect("restart");
    // It recovers on its own: no restart of the sidecar.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s
            .client
            .post("/scim/v2/Users", &user("after-restart"))
            .await;
        if r.status.as_u16() == 201 {
            break;
        }
        assert_eq!(r.status.as_u16(), 503, "{}", r.text());
        assert!(
            Instant::now() < deadline,
            "no recovery within 20 s: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.admin_client().get("/readyz").await.expect(200);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut created, mut refused) = (Vec::new(), 0);
    for w in workers {
        let (c, r, others) = w.await.expect("worker");
        assert!(
            others.is_empty(),
            "answers other than 201 and 503 + Retry-After: {others:?}"
        );
        created.extend(c);
        refused += r;
    }
    assert!(refused > 0, "the server was never seen down");
    assert!(!created.is_empty());
    // Every user the sidecar confirmed is there, with its e-mail; no user lacks its e-mail.
    let ids = created.join(",");
    assert_eq!(
        s.one(&format!("SELECT count(*) FROM principals p JOIN user_emails e ON e.user_id = p.id WHERE p.id IN ({ids})")).await,
        created.len().to_string()
    );
    assert_eq!(
        s.one("SELECT count(*) FROM principals p WHERE kind = 'U' AND login LIKE 'load-%' AND NOT EXISTS (SELECT 1 FROM user_emails e WHERE e.user_id = p.id)").await,
        "0"
    );
}

/// Thaws a frozen server when the test ends, even by a failed assertion.
struct Thaw<'a>(&'a Server);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

/// A frozen server (SIGSTOP: it neither answers nor refuses, so its own statement timeout
/// cannot fire) costs a request at most the connection wait plus the statement timeout:
/// requests answer 503 with Retry-After instead of hanging, `/readyz` says so, and once the
/// server is thawed the sidecar serves again by itself, with no advisory lock left behind by
/// the writes the deadline cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_answers_503_instead_of_hanging() {
    let Some(server) = private_server() else {
        return;
    };
    let db = example_my_database(&server, "wordpress-mysql").await;
    let s = Sidecar::example_on_mariadb(
        "wordpress-mysql",
        db,
        my_options(|o| {
            o.statement_timeout = Duration::from_secs(1);
            o.connect_timeout = Duration::from_secs(1);
            o.pool_size = 4;
        }),
    )
    .await;
    let body = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
    s.client
        .post("/scim/v2/Users", &body("before"))
        .await
        .expect(201);

    server.signal(libc::SIGSTOP);
    let thaw = Thaw(&server);
    let mut requests = Vec::new();
    for i in 0..6 {
        let client = s.client.clone();
        let b = body(&format!("frozen-{i}"));
        requests.push(tokio::spawn(async move {
            let r = if i % 2 == 0 {
                client.post("/scim/v2/Users", &b).await
            } else {
                client.get(&filtered("userName eq \"before\"")).await
            };
            (r.status.as_u16(), r.header("retry-after"))
        }));
    }
    for r in requests {
        let (status, retry) = tokio::time::timeout(Duration::from_secs(15), r)
            .await
            .expect("a request answers while the server is frozen")
            .expect("request task");
        assert_eq!((status, retry.is_some()), (503, true));
    }
    let ready = tokio::time::timeout(Duration::from_secs(2), s.admin_client().get("/readyz"))
        .await
        .expect("/readyz answers");
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.text());

    drop(thaw);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.client.post("/scim/v2/Users", &body("frozen-0")).await;
        // The cut-off create may have committed after the thaw: then it is there, whole.
        if matches!(r.status.as_u16(), 201 | 409) {
            break;
        }
        assert_eq!(r.status.as_u16(), 503, "{}", r.text());
        assert!(Instant::now() < deadline, "no recovery after thawing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The writes the deadline cut off held the name's lock; it is free again.
    s.client
        .post("/scim/v2/Users", &body("after"))
        .await
        .expect(201);
}

// === Connections ===

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM files the server's OS
/// user can read; returns the CA file.
fn server_pki(server: &Server, dir: &Path) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    for (name, pem) in [
        ("server.crt", leaf.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        let p = server.dir.join(name);
        std::fs::write(&p, pem).expect("write");
        server.give(&p);
    }
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).expect("ca");
    ca_file
}

/// TLS through rustls, the server verified against a CA file: an account that may connect
/// over TLS only is served; with another CA, or with a URL asking for TLS and no CA, the
/// sidecar refuses to start and says why.
#[tokio::test]
async fn tls_with_a_ca_file() {
    let Some(server) = private_server() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = server_pki(&server, tmp.path());
    server.stop();
    server.set_args(vec![
        format!("--ssl-cert={}", server.dir.join("server.crt").display()),
        format!("--ssl-key={}", server.dir.join("server.key").display()),
    ]);
    server.run().expect("restart with TLS");
    let db = example_my_database(&server, "postgres").await;
    db.exec(&format!(
        "CREATE USER 'tls'@'127.0.0.1' IDENTIFIED BY 'tls' REQUIRE SSL; GRANT ALL ON `{}`.* TO 'tls'@'127.0.0.1';",
        db.name
    ))
    .await;
    let url = format!("mysql://tls:tls@127.0.0.1:{}/{}", server.port, db.name);
    let (u, c) = (url.clone(), ca.clone());
    let s = Sidecar::example_on_mariadb(
        "postgres",
        db,
        my_options(move |o| {
            o.url.0 = u.clone();
            o.ca_file = Some(c.clone());
        }),
    )
    .await;
    s.client
        .post("/scim/v2/Users", &user("over-tls"))
        .await
        .expect(201);
    assert_eq!(
        s.one("SELECT count(*) FROM principals WHERE login = 'over-tls'")
            .await,
        "1"
    );

    let (ok, out) = run_cli("check", &[("DATABASE_URL", url.clone())], None);
    assert!(!ok && out.to_lowercase().contains("denied"), "{out}");
    let (ok, out) = run_cli(
        "check",
        &[("DATABASE_URL", url.clone() + "?require_ssl=true")],
        None,
    );
    assert!(!ok && out.contains("tls = { ca"), "{out}");
    let other = other_ca(tmp.path());
    let (ok, out) = run_cli("check", &[("DATABASE_URL", url.clone())], Some(&other));
    assert!(!ok && out.to_lowercase().contains("certificate"), "{out}");
    let (ok, out) = run_cli("check", &[("DATABASE_URL", url)], Some(&ca));
    assert!(ok, "{out}");
}

fn other_ca(dir: &Path) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let p = dir.join("other-ca.pem");
    std::fs::write(&p, ca.self_signed(&key).expect("ca").pem()).expect("write");
    p
}

/// `socket = "…"` connects through the server's Unix socket instead of TCP.
#[tokio::test]
async fn unix_socket() {
    let Some(server) = mariadb::server() else {
        return;
    };
    let db = example_my_database(server, "postgres").await;
    let socket = server.socket();
    let url = format!("mysql://scim:scim@localhost/{}", db.name);
    let s = Sidecar::example_on_mariadb(
        "postgres",
        db,
        my_options(move |o| {
            o.url.0 = url.clone();
            o.socket = Some(socket.clone());
        }),
    )
    .await;
    s.client
        .post("/scim/v2/Users", &user("via-socket"))
        .await
        .expect(201);
    // The sidecar's sessions are the socket's (no client address).
    let tcp = s
        .one("SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = 'scim' AND HOST = 'localhost'")
        .await;
    assert_ne!(tcp, "0", "the sidecar did not use the socket");
}

// === The command line ===

/// Runs the binary on the WordPress MariaDB example (optionally with `tls = { ca }` added to
/// its backend); returns success and stdout + stderr.
fn run_cli(cmd: &str, env: &[(&str, String)], ca: Option<&Path>) -> (bool, String) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres/scim-sidecar.toml");
    let tmp = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(&example)
        .expect("config")
        .replace("type = \"postgres\"", "type = \"mysql\"");
    let text = match ca {
        None => text,
        Some(ca) => text.replace(
            "statement_timeout = \"10s\"",
            &format!(
                "statement_timeout = \"10s\"\ntls = {{ ca = \"{}\" }}",
                ca.display()
            ),
        ),
    };
    let config = tmp.path().join("scim-sidecar.toml");
    std::fs::write(&config, text).expect("write");
    let mut c = Command::new(BIN);
    c.args([cmd, "--config"])
        .arg(&config)
        .env("SCIM_TOKEN", "a-token-long-enough-for-no-warning-0123");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `migrate` is explicit: before it, `check` and `run` name the missing table and the
/// command that creates it; it creates the sidecar's own table, and is idempotent; `check`
/// against the live catalog then passes, and reports every mistake of a changed mapping at
/// once with file and line.
#[tokio::test]
async fn migrate_and_check_against_the_catalog() {
    let Some(server) = mariadb::server() else {
        return;
    };
    let db = example_my_database(server, "postgres").await;
    let env = [("DATABASE_URL", db.url.clone())];
    let (ok, out) = run_cli("check", &env, None);
    assert!(!ok && out.contains("scim-sidecar migrate"), "{out}");
    assert!(
        out.contains("scim-sidecar.toml:"),
        "no file and line: {out}"
    );
    let (ok, out) = run_cli("run", &env, None);
    assert!(!ok && out.contains("scim-sidecar migrate"), "{out}");
    assert!(
        db.rows("SHOW TABLES LIKE 'scim_sidecar_attributes'")
            .await
            .is_empty(),
        "run created the table"
    );
    let (ok, out) = run_cli("migrate", &env, None);
    assert!(ok && out.contains("scim_sidecar_attributes"), "{out}");
    let (ok, out) = run_cli("migrate", &env, None);
    assert!(ok && out.contains("up to date"), "{out}");
    let (ok, out) = run_cli("check", &env, None);
    assert!(ok && out.contains("OK"), "{out}");

    // A changed mapping: a wrong column, a value map storing a label the enum lacks, a
    // missing child table, a column whose type cannot hold the attribute.
    let tmp = tempfile::tempdir().expect("tmp");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres/scim-sidecar.toml");
    let text = std::fs::read_to_string(example)
        .expect("config")
        .replace("type = \"postgres\"", "type = \"mysql\"")
        .replace("title = \"job_title\"", "title = \"jobtitle\"")
        .replace(
            "active = { column = \"state\", values = { true = \"active\", false = \"disabled\" } }",
            "active = { column = \"state\", values = { true = \"active\", false = \"gone\" } }",
        )
        .replace("table = \"user_emails\"", "table = \"user_mails\"")
        .replace(
            "\"name.familyName\" = \"last_name\"",
            "\"name.familyName\" = \"created_at\"",
        );
    let config = tmp.path().join("scim-sidecar.toml");
    std::fs::write(&config, &text).expect("write");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env("DATABASE_URL", &db.url)
        .env("SCIM_TOKEN", "a-token-long-enough-for-no-warning-0123")
        .output()
        .expect("check");
    let all =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{all}");
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).expect("line") + 1;
    for (needle, what) in [
        ("\"jobtitle\"", "jobtitle"),
        ("false = \"gone\"", "gone"),
        ("user_mails", "user_mails"),
        ("\"created_at\"", "created_at"),
    ] {
        let wanted = format!("scim-sidecar.toml:{}:", line_of(needle));
        assert!(
            all.lines().any(|l| l.contains(&wanted) && l.contains(what)),
            "{what} not reported at {wanted}:\n{all}"
        );
    }
}

// === Large groups ===

/// A group of 100,000 members takes 1,000 more in one PATCH (Entra's batch), and a thousand
/// ids with one unknown among them changes nothing; removing them with Entra's value array
/// takes them all out again. MySQL binds every id: the lists go in chunks, in one
/// transaction.
#[tokio::test]
async fn large_group_membership() {
    let s = on_mariadb!("postgres");
    s.exec(
        "INSERT INTO principals (kind, login, display_name, password_hash)
           SELECT 'U', concat('bulk', seq), concat('Bulk ', seq), '!' FROM seq_1_to_101000;
         INSERT INTO principals (kind, display_name, password_hash) VALUES ('G', 'Everyone', '!');
         INSERT INTO group_members (group_id, member_id)
           SELECT (SELECT id FROM principals WHERE display_name = 'Everyone' AND kind = 'G'), p.id
             FROM principals p WHERE login LIKE 'bulk%' ORDER BY p.id LIMIT 100000;",
    )
    .await;
    let g = s
        .one("SELECT id FROM principals WHERE display_name = 'Everyone' AND kind = 'G'")
        .await;
    let fresh: Vec<String> = s
        .rows("SELECT id FROM principals p WHERE login LIKE 'bulk%' AND NOT EXISTS (SELECT 1 FROM group_members m WHERE m.member_id = p.id) ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(fresh.len(), 1000);
    let count = format!("SELECT count(*) FROM group_members WHERE group_id = {g}");
    let values: Vec<_> = fresh.iter().map(|id| json!({"value": id})).collect();
    let path = format!("/scim/v2/Groups/{g}");
    let mut bad = values.clone();
    bad.push(json!({"value": "987654321"}));
    let d = s
        .client
        .patch(
            &path,
            &patch_body(json!([{"op": "add", "path": "members", "value": bad}])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("987654321"), "{d}");
    assert_eq!(s.one(&count).await, "100000");
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "Add", "path": "members", "value": values}])),
        )
        .await
        .expect(204);
    assert_eq!(s.one(&count).await, "101000");
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "Remove", "path": "members", "value": values}])),
        )
        .await
        .expect(204);
    assert_eq!(s.one(&count).await, "100000");
}
