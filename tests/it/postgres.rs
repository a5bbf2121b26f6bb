//! What only PostgreSQL has: statement timeouts, a server that goes away and comes back, TLS,
//! Unix sockets, `migrate` and `check` against a live catalog, very large groups. The mapping
//! shapes shared with SQLite are in `mapping.rs`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use scim_sidecar::backend::sql::pg_pool::{PgPool, PoolError};
use serde_json::json;

use crate::support::client::patch_body;
use crate::support::postgres::{self, Cluster};
use crate::support::{Sidecar, Tweak, example_database};

const BIN: &str = env!("CARGO_BIN_EXE_scim-sidecar");

/// A minimal helpdesk user (the app requires a display name).
fn user(name: &str) -> serde_json::Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "displayName": name})
}

/// Sets the PostgreSQL backend's options before the sidecar starts.
fn pg_options(
    f: impl Fn(&mut std::time::Duration, &mut Option<std::path::PathBuf>) + 'static,
) -> Option<Tweak> {
    Some(Box::new(move |c| {
        crate::support::with_postgres(c, |o| f(&mut o.statement_timeout, &mut o.ca_file));
    }))
}

/// A private cluster (for tests that stop it or reconfigure it), or `None` to skip.
fn private_cluster() -> Option<Cluster> {
    postgres::cluster()?;
    Some(Cluster::start().expect("a second cluster"))
}

/// A server restarted by a test finds its port taken for a moment (another socket of the run
/// was given it while the server was down): it is started again until it binds, and what
/// answers on the port afterwards is that server, with its data.
#[tokio::test]
async fn a_restart_waits_for_its_port() {
    let Some(cluster) = private_cluster() else {
        return;
    };
    let db = cluster.database("restart").await;
    db.exec("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before')")
        .await;
    cluster.stop();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", cluster.port)).expect("the port");
    let gone = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(squatter);
    });
    cluster.run().expect("restart once the port is free");
    gone.join().expect("squatter");
    assert_eq!(db.rows("SELECT v FROM kept").await, vec![vec!["before"]]);
}

/// A statement that outlives `statement_timeout` (here: waiting on a table the app locked) is
/// 503 with Retry-After and writes nothing; once the lock is gone the same request succeeds.
#[tokio::test]
async fn statement_timeout_is_503() {
    let Some(s) = Sidecar::example(
        "postgres",
        crate::support::Store::Postgres,
        pg_options(|t, _| *t = Duration::from_millis(300)),
    )
    .await
    else {
        return;
    };
    let db = s.pg.as_ref().expect("pg");
    let mut app = db.client().await;
    let tx = app.transaction().await.expect("begin");
    tx.batch_execute("LOCK TABLE principals IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let started = Instant::now();
    let r = s.client.post("/scim/v2/Users", &user("waiting")).await;
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    let d = r.scim_error(503, None);
    assert!(d.contains("unavailable"), "{d}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout did not apply"
    );
    s.client
        .get("/scim/v2/Users?filter=userName%20eq%20%22waiting%22")
        .await
        .scim_error(503, None);
    tx.rollback().await.expect("unlock");
    s.client
        .post("/scim/v2/Users", &user("waiting"))
        .await
        .expect(201);
    assert_eq!(
        db.rows("SELECT count(*) FROM principals WHERE login = 'waiting'")
            .await,
        vec![vec!["1"]]
    );
}

/// PostgreSQL stopped under load: every request that fails is 503 with Retry-After (never a
/// 500), no user is half-written, /readyz says so, and the sidecar serves again by itself once
/// the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restart_under_load() {
    let Some(cluster) = private_cluster() else {
        return;
    };
    let db = example_database(&cluster, "postgres").await;
    let s = Sidecar::example_on("postgres", Some(db), None).await;
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
    tokio::task::block_in_place(|| cluster.stop());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ready = s.admin_client().get("/readyz").await;
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.text());
    let down = s.client.post("/scim/v2/Users", &user("while-down")).await;
    assert_eq!(down.header("retry-after").as_deref(), Some("5"));
    down.scim_error(503, None);
    tokio::task::block_in_place(|| cluster.run()).expect("restart");
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
    assert!(refused > 0, "the database was never seen down");
    assert!(!created.is_empty());
    let db = s.pg.as_ref().expect("pg");
    // Every user the sidecar confirmed is there, with its e-mail; no user lacks its e-mail.
    let ids = created.join(",");
    assert_eq!(
        db.rows(&format!("SELECT count(*) FROM principals p JOIN user_emails e ON e.user_id = p.id WHERE p.id IN ({ids})")).await,
        vec![vec![created.len().to_string()]]
    );
    assert_eq!(
        db.rows("SELECT count(*) FROM principals p WHERE kind = 'U' AND login LIKE 'load-%' AND NOT EXISTS (SELECT 1 FROM user_emails e WHERE e.user_id = p.id)").await,
        vec![vec!["0"]]
    );
}

/// A self-signed CA and a server certificate for 127.0.0.1 and localhost, as PEM files in
/// the cluster's data directory (owned by its OS user).
fn server_pki(cluster: &Cluster, dir: &Path) -> std::path::PathBuf {
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
    let data = cluster.dir.join("data");
    for (name, pem) in [
        ("server.crt", leaf.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        let p = data.join(name);
        std::fs::write(&p, pem).expect("write");
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&p).expect("meta").permissions(),
            0o600,
        );
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        cluster.give(&p);
    }
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).expect("ca");
    ca_file
}

/// TLS to PostgreSQL through rustls, verify-full: the app's role may connect over TLS only.
/// With the CA the sidecar connects and serves; without TLS, with `sslmode=verify-full` but no
/// CA, or with the wrong CA, it refuses to start and says why.
#[tokio::test]
async fn tls_verify_full() {
    let Some(cluster) = private_cluster() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = server_pki(&cluster, tmp.path());
    let db = example_database(&cluster, "postgres").await;
    db.exec("CREATE ROLE app LOGIN SUPERUSER").await;
    cluster.stop();
    let data = cluster.dir.join("data");
    let hba = "local all all trust\n\
               hostssl all app 127.0.0.1/32 trust\n\
               hostnossl all app 127.0.0.1/32 reject\n\
               host all postgres 127.0.0.1/32 trust\n";
    std::fs::write(data.join("pg_hba.conf"), hba).expect("hba");
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .expect("conf");
    std::io::Write::write_all(
        &mut conf,
        b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
    )
    .expect("conf");
    cluster.run().expect("restart with ssl");

    let app_url = db.url.replace("postgres://postgres@", "postgres://app@");
    let (url, ca2) = (app_url.clone(), ca.clone());
    let tweak: Tweak = Box::new(move |c| {
        crate::support::with_postgres(c, |o| {
            o.url.0 = url.clone();
            o.ca_file = Some(ca2.clone());
        });
    });
    let s = Sidecar::example_on("postgres", Some(db), Some(tweak)).await;
    s.client
        .post("/scim/v2/Users", &user("over-tls"))
        .await
        .expect(201);
    let db = s.pg.as_ref().expect("pg");
    let ssl = db
        .rows("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'scim-sidecar' AND s.ssl AND a.usename = 'app'")
        .await;
    assert_ne!(ssl, vec![vec!["0"]], "no TLS connection from the sidecar");

    let (ok, out) = run_cli("check", &[("DATABASE_URL", app_url.clone())], None);
    assert!(!ok && out.contains("no encryption"), "{out}");
    let (ok, out) = run_cli(
        "check",
        &[("DATABASE_URL", app_url.clone() + "?sslmode=verify-full")],
        None,
    );
    assert!(!ok && out.contains("tls = { ca"), "{out}");
    let (ok, out) = run_cli(
        "check",
        &[("DATABASE_URL", app_url.clone())],
        Some(&server_pki_ca_only(tmp.path())),
    );
    assert!(!ok && out.to_lowercase().contains("certificate"), "{out}");
    let (ok, out) = run_cli(
        "check",
        &[("DATABASE_URL", app_url + "?sslmode=verify-full")],
        Some(&ca),
    );
    assert!(ok, "{out}");
}

fn server_pki_ca_only(dir: &Path) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let p = dir.join("other-ca.pem");
    std::fs::write(&p, ca.self_signed(&key).expect("ca").pem()).expect("write");
    p
}

/// Runs the binary on the helpdesk example (optionally with `tls = { ca }` added to its
/// backend); returns success and stdout + stderr.
fn run_cli(cmd: &str, env: &[(&str, String)], ca: Option<&Path>) -> (bool, String) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres/scim-sidecar.toml");
    let tmp = tempfile::tempdir().expect("tmp");
    let config = match ca {
        None => example,
        Some(ca) => {
            let text = std::fs::read_to_string(&example).expect("config");
            let text = text.replace(
                "statement_timeout = \"10s\"",
                &format!(
                    "statement_timeout = \"10s\"\ntls = {{ ca = \"{}\" }}",
                    ca.display()
                ),
            );
            let p = tmp.path().join("scim-sidecar.toml");
            std::fs::write(&p, text).expect("write");
            p
        }
    };
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

/// The url may name a Unix-socket directory instead of a TCP host.
#[tokio::test]
async fn unix_socket_host() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let db = example_database(cluster, "postgres").await;
    let url = format!(
        "postgresql:///{}?host={}&port={}&user=postgres",
        db.name,
        cluster.dir.display(),
        cluster.port
    );
    let s = Sidecar::example_on(
        "postgres",
        Some(db),
        Some(Box::new(move |c| {
            crate::support::with_postgres(c, |o| o.url.0 = url.clone());
        })),
    )
    .await;
    s.client
        .post("/scim/v2/Users", &user("via-socket"))
        .await
        .expect(201);
    let db = s.pg.as_ref().expect("pg");
    let tcp = db.rows("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scim-sidecar' AND client_addr IS NULL").await;
    assert_ne!(tcp, vec![vec!["0"]], "the sidecar did not use the socket");
}

/// `migrate` is explicit: before it, `check` and `run` name the missing table and the command
/// that creates it; it creates the sidecar's own schema and table, and is idempotent.
#[tokio::test]
async fn migrate_is_explicit_and_idempotent() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let db = example_database(cluster, "postgres").await;
    let env = [("DATABASE_URL", db.url.clone())];
    let (ok, out) = run_cli("check", &env, None);
    assert!(!ok, "{out}");
    assert!(out.contains("scim-sidecar migrate"), "{out}");
    assert!(
        out.contains("scim-sidecar.toml:"),
        "no file and line: {out}"
    );
    let (ok, out) = run_cli("run", &env, None);
    assert!(!ok && out.contains("scim-sidecar migrate"), "{out}");
    assert!(
        db.rows("SELECT nspname FROM pg_namespace WHERE nspname = 'scim_sidecar'")
            .await
            .is_empty(),
        "run created the schema"
    );
    let (ok, out) = run_cli("migrate", &env, None);
    assert!(ok, "{out}");
    assert!(out.contains("scim_sidecar.attributes"), "{out}");
    let (ok, out) = run_cli("migrate", &env, None);
    assert!(ok && out.contains("up to date"), "{out}");
    let (ok, out) = run_cli("check", &env, None);
    assert!(ok, "{out}");
    assert!(out.contains("OK"), "{out}");
}

/// `check` against the live catalog reports every problem at once with file and line: the
/// missing sidecar table, an unknown column, an unknown child table, a value map storing a
/// label the enum does not have, a column whose type cannot hold the attribute.
#[tokio::test]
async fn check_reports_catalog_problems() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let db = example_database(cluster, "postgres").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres/scim-sidecar.toml");
    let text = std::fs::read_to_string(example)
        .expect("config")
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
        let line = line_of(needle.trim_end());
        let wanted = format!("scim-sidecar.toml:{line}:");
        assert!(
            all.lines().any(|l| l.contains(&wanted) && l.contains(what)),
            "{what} at line {line} not reported:\n{all}"
        );
    }
}

/// A group of 100,000 members takes 1,000 more in one PATCH (Entra's batch), counted without
/// loading the list; removing them with Entra's value array takes them all out again; a
/// thousand ids with one unknown among them changes nothing.
#[tokio::test]
async fn large_group_membership() {
    let Some(s) = Sidecar::postgres("postgres", None).await else {
        return;
    };
    let db = s.pg.as_ref().expect("pg");
    db.exec(
        "INSERT INTO principals (kind, login, display_name, password_hash)
           SELECT 'U', 'bulk' || g, 'Bulk ' || g, '!' FROM generate_series(1, 101000) g;
         INSERT INTO principals (kind, display_name, password_hash) VALUES ('G', 'Everyone', '!');
         INSERT INTO group_members (group_id, member_id)
           SELECT (SELECT id FROM principals WHERE display_name = 'Everyone'), p.id
             FROM principals p WHERE login LIKE 'bulk%' ORDER BY p.id LIMIT 100000;
         ANALYZE;",
    )
    .await;
    let g = &db
        .rows("SELECT id FROM principals WHERE display_name = 'Everyone'")
        .await[0][0];
    let fresh: Vec<String> = db
        .rows("SELECT id FROM principals p WHERE login LIKE 'bulk%' AND NOT EXISTS (SELECT 1 FROM group_members m WHERE m.member_id = p.id) ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(fresh.len(), 1000);
    let count = format!("SELECT count(*) FROM group_members WHERE group_id = {g}");
    let values: Vec<_> = fresh.iter().map(|id| json!({"value": id})).collect();
    let path = format!("/scim/v2/Groups/{g}");
    let stamp = format!("SELECT updated_at::text FROM principals WHERE id = {g}");
    let before = db.rows(&stamp).await;
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
    // Refused whole: no member added, and the group's own row not touched either.
    assert_eq!(db.rows(&count).await, vec![vec!["100000"]]);
    assert_eq!(db.rows(&stamp).await, before);
    let r = s
        .client
        .send(
            http::Method::PATCH,
            &format!("{path}?excludedAttributes=members"),
            &[],
            Some(
                serde_json::to_vec(&patch_body(
                    json!([{"op": "Add", "path": "members", "value": values}]),
                ))
                .expect("json")
                .into(),
            ),
        )
        .await
        .expect(200);
    assert!(r.json().get("members").is_none());
    assert_eq!(db.rows(&count).await, vec![vec!["101000"]]);
    assert_ne!(db.rows(&stamp).await, before);
    let r = s
        .client
        .get("/scim/v2/Groups?filter=displayName%20eq%20%22Everyone%22&excludedAttributes=members")
        .await
        .expect(200)
        .json();
    assert_eq!(r["totalResults"], 1);
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "Remove", "path": "members", "value": values}])),
        )
        .await
        .expect(204);
    assert_eq!(db.rows(&count).await, vec![vec!["100000"]]);
}

/// A group's member add or remove goes out on the wire with the group row's own `UPDATE` and
/// `COMMIT`, before the change is answered. When the store refuses the add itself (here a
/// constraint of the app's), nothing of the PATCH is written: not the member, not the group's
/// `updated_at`. A refused add leaves nothing behind on the connection: the next add and the
/// remove write both.
#[tokio::test]
async fn a_member_add_the_store_refuses_writes_nothing() {
    let Some(s) = Sidecar::postgres("postgres", None).await else {
        return;
    };
    let db = s.pg.as_ref().expect("pg");
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Night shift"});
    let g = s.created("/scim/v2/Groups", &group).await;
    let ann = s.created("/scim/v2/Users", &user("ann")).await;
    let bob = s.created("/scim/v2/Users", &user("bob")).await;
    db.exec(&format!(
        "ALTER TABLE group_members ADD CONSTRAINT no_bob CHECK (member_id <> {bob})"
    ))
    .await;
    let path = format!("/scim/v2/Groups/{g}");
    let stamp = format!("SELECT updated_at::text FROM principals WHERE id = {g}");
    let members =
        format!("SELECT string_agg(member_id::text, ',') FROM group_members WHERE group_id = {g}");
    let change = |op: &str, id: &str| {
        patch_body(json!([{"op": op, "path": "members", "value": [{"value": id}]}]))
    };
    let before = db.rows(&stamp).await;
    let refused = s.client.patch(&path, &change("Add", &bob)).await;
    assert!(refused.status.is_client_error(), "{}", refused.text());
    assert_eq!(db.rows(&stamp).await, before);
    assert_eq!(db.rows(&members).await, vec![vec!["NULL"]]);
    // An unknown member: refused by the sidecar's own check, sent the same way.
    s.client
        .patch(&path, &change("Add", "987654321"))
        .await
        .scim_error(400, Some("invalidValue"));
    assert_eq!(db.rows(&stamp).await, before);
    assert_eq!(db.rows(&members).await, vec![vec!["NULL"]]);

    // `updated_at` is written to the millisecond: each write below gets a new one.
    let tick = || tokio::time::sleep(Duration::from_millis(3));
    tick().await;
    s.client
        .patch(&path, &change("Add", &ann))
        .await
        .expect(204);
    let added = db.rows(&stamp).await;
    assert_ne!(added, before);
    assert_eq!(db.rows(&members).await, vec![vec![ann.as_str()]]);
    tick().await;
    s.client
        .patch(&path, &change("Remove", &ann))
        .await
        .expect(204);
    assert_ne!(db.rows(&stamp).await, added);
    assert_eq!(db.rows(&members).await, vec![vec!["NULL"]]);
}

/// Thaws a frozen cluster when the test ends, even by a failed assertion (a stopped server
/// would not stop when the cluster is dropped).
struct Thaw<'a>(&'a Cluster);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.signal_all(libc::SIGCONT);
    }
}

/// `/readyz` asks every store at once, under one deadline shorter than a Kubernetes probe's
/// one-second timeout: with three frozen databases it answers 503 naming each of them (an
/// answer the probe receives, with the reason) instead of asking one after another until the
/// probe gives up; once they are thawed it is 200 again. See: issue #8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r008_readiness_names_every_frozen_store_within_a_probe_timeout() {
    let Some(cluster) = private_cluster() else {
        return;
    };
    let db = example_database(&cluster, "postgres").await;
    let s = Sidecar::example_on(
        "postgres",
        Some(db),
        Some(Box::new(|c| {
            let pg = c.backends[0].clone();
            for name in ["reports", "audit"] {
                c.backends.push(scim_sidecar::config::BackendConfig {
                    name: name.into(),
                    ..pg.clone()
                });
            }
        })),
    )
    .await;
    let admin = s.admin_client();
    admin.get("/readyz").await.expect(200);

    cluster.signal_all(libc::SIGSTOP);
    let thaw = Thaw(&cluster);
    let r = tokio::time::timeout(Duration::from_secs(2), admin.get("/readyz"))
        .await
        .expect("/readyz answers while every store is frozen");
    let text = r.text();
    assert_eq!(r.status.as_u16(), 503, "{text}");
    for name in ["helpdesk", "reports", "audit"] {
        assert!(
            text.contains(&format!("backend {name}: no answer")),
            "{text}"
        );
    }

    drop(thaw);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = admin.get("/readyz").await;
        if r.status.as_u16() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready after thawing: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A frozen database (SIGSTOP: it neither answers nor refuses, so its own statement_timeout
/// cannot fire) costs a request at most the backend's connection wait plus statement
/// timeout: requests in flight and new ones answer 503 with Retry-After instead of hanging,
/// `/readyz` says so, and once the database is thawed the sidecar serves again by itself.
/// No user is half-written by a request cut off by the deadline. See: issue #14.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r014_frozen_database_answers_503_instead_of_hanging() {
    let Some(cluster) = private_cluster() else {
        return;
    };
    let db = example_database(&cluster, "postgres").await;
    let s = Sidecar::example_on(
        "postgres",
        Some(db),
        Some(Box::new(|c| {
            crate::support::with_postgres(c, |o| {
                o.statement_timeout = Duration::from_secs(1);
                o.connect_timeout = Duration::from_secs(1);
                o.pool_size = 4;
            });
        })),
    )
    .await;
    s.client
        .post("/scim/v2/Users", &user("before"))
        .await
        .expect(201);

    cluster.signal_all(libc::SIGSTOP);
    let thaw = Thaw(&cluster);
    let mut requests = Vec::new();
    for i in 0..8 {
        let client = s.client.clone();
        requests.push(tokio::spawn(async move {
            let mut body = user(&format!("frozen-{i}"));
            body["emails"] = json!([{"type": "work", "value": format!("frozen-{i}@example.com")}]);
            let r = if i % 2 == 0 {
                client.post("/scim/v2/Users", &body).await
            } else {
                client
                    .get("/scim/v2/Users?filter=userName%20eq%20%22before%22")
                    .await
            };
            (r.status.as_u16(), r.header("retry-after"))
        }));
        if i == 0 {
            // The first (a create) takes the one connection open, opened by "before".
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for r in requests {
        let (status, retry) = tokio::time::timeout(Duration::from_secs(15), r)
            .await
            .expect("a request answers while the database is frozen")
            .expect("request task");
        assert_eq!((status, retry.is_some()), (503, true));
    }
    let ready = tokio::time::timeout(Duration::from_secs(2), s.admin_client().get("/readyz"))
        .await
        .expect("/readyz answers");
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.text());

    drop(thaw);
    // The create that held the one open connection was cut off inside its transaction. It
    // was rolled back: the transaction does not stay open on the pooled connection once the
    // database wakes, where the next request's COMMIT would commit its writes with its own.
    let db = s.pg.as_ref().expect("pg");
    let open = "SELECT count(*) FROM pg_stat_activity \
                WHERE datname = current_database() AND state LIKE 'idle in transaction%'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.rows(open).await[0][0] != "0" {
        assert!(
            Instant::now() < deadline,
            "a transaction cut off by the deadline stayed open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.client.post("/scim/v2/Users", &user("after")).await;
        if r.status.as_u16() == 201 {
            break;
        }
        assert_eq!(r.status.as_u16(), 503, "{}", r.text());
        assert!(Instant::now() < deadline, "no recovery after thawing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Creates cut off by the deadline may have committed once the database woke up: if so,
    // whole (with the e-mail row written in the same statement).
    let all = s
        .client
        .get("/scim/v2/Users?filter=userName%20sw%20%22frozen-%22")
        .await
        .expect(200)
        .json();
    for u in all["Resources"].as_array().into_iter().flatten() {
        let name = u["userName"].as_str().expect("userName");
        assert_eq!(
            u["emails"][0]["value"],
            format!("{name}@example.com"),
            "{u}"
        );
    }
}

/// A thread with a single-threaded runtime of its own, as the server's shards have: what it
/// is given to run, it runs there, and what that opens lives there until it is dropped.
struct Shard {
    rt: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Shard {
    fn start() -> Shard {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async {
                let _ = stopped.await;
            });
        });
        Shard {
            rt: handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The PostgreSQL backend pid of a connection taken from `pool` on this thread, with
    /// the connection given back before it answers.
    async fn backend_pid(&self, pool: &PgPool) -> i32 {
        let pool = pool.clone();
        self.rt
            .spawn(async move {
                let c = pool.get().await.expect("a connection");
                c.query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .expect("pg_backend_pid()")
                    .get(0)
            })
            .await
            .expect("the shard's task")
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A pool of `size` on `db`, waiting up to `wait` for a connection.
fn pool_on(db: &postgres::Db, size: usize, wait: Duration) -> PgPool {
    let tls = scim_sidecar::tls::no_roots().expect("a TLS config");
    PgPool::new(
        scim_sidecar::backend::sql::postgres::parse_url(&db.url).expect("the url"),
        tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        size,
        wait,
        Duration::from_secs(5),
    )
}

/// A database connection does its I/O on the shard thread that opened it, so a shard reuses
/// its own: a second shard opens one of its own while the pool has room, instead of taking
/// the first shard's idle one and sending every statement and answer across threads (what
/// made a 24-statement group delete cost 3 ms of the sidecar's CPU and twice pgbench's time
/// at one client). Only when the pool is full does a shard borrow another's idle connection,
/// rather than wait. See: issue #9.
#[tokio::test]
async fn r009_database_connections_stay_on_the_shard_that_opened_them() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let db = cluster.database("pool_shards").await;
    let (a, b) = (Shard::start(), Shard::start());

    let pool = pool_on(&db, 2, Duration::from_secs(5));
    let on_a = a.backend_pid(&pool).await;
    assert_eq!(a.backend_pid(&pool).await, on_a, "shard A reuses its own");
    let on_b = b.backend_pid(&pool).await;
    assert_ne!(on_b, on_a, "shard B took shard A's connection");
    assert_eq!(b.backend_pid(&pool).await, on_b, "shard B reuses its own");
    assert_eq!(
        a.backend_pid(&pool).await,
        on_a,
        "shard A still has its own"
    );

    let full = pool_on(&db, 1, Duration::from_secs(5));
    let on_a = a.backend_pid(&full).await;
    let started = Instant::now();
    assert_eq!(
        b.backend_pid(&full).await,
        on_a,
        "a full pool lends its idle one"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it waited instead"
    );
}

/// When every connection is in use, a request waits for one to come back and gets it, and
/// gives up with a timeout (503 to the client) once the pool's wait has passed.
#[tokio::test]
async fn a_request_waits_for_a_connection_and_gives_up_after_the_pool_wait() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let db = cluster.database("pool_wait").await;
    let pool = pool_on(&db, 1, Duration::from_millis(300));
    let held = pool.get().await.expect("a connection");
    let started = Instant::now();
    let e = pool
        .get()
        .await
        .err()
        .expect("no connection while it is held");
    assert!(
        matches!(e, PoolError::Timeout { size: 1, .. }),
        "{e:?}: not a timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(300), "{e}");

    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the waiting request got the connection given back")
        .expect("its task")
        .expect("a connection");
}

/// A throwaway database `name` and a pool of one connection to it (`None`: no PostgreSQL).
async fn one_connection(name: &str) -> Option<(postgres::Db, PgPool)> {
    let db = postgres::cluster()?.database(name).await;
    let pool = pool_on(&db, 1, Duration::from_secs(5));
    Some((db, pool))
}

/// A pool of four connections on a database of its own, whose lent connections count as
/// running a slow statement after `stuck`.
async fn four_connections(name: &str, stuck: Duration) -> Option<(postgres::Db, PgPool)> {
    let db = postgres::cluster()?.database(name).await;
    let pool = pool_on(&db, 4, Duration::from_secs(5)).stuck_after(stuck);
    Some((db, pool))
}

/// The backend pid of `c`'s connection.
async fn pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid()")
        .get(0)
}

/// A task that reads its connection's backend pid on a shared connection of `pool`.
fn read_pid(pool: &PgPool) -> tokio::task::JoinHandle<i32> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let c = pool.shared().await.expect("a connection");
        pid(&c).await
    })
}

/// Drops the last of `held` and returns the pid `next` (a [`read_pid`] waiting for a place)
/// read on the place it took.
async fn free_a_place(
    held: &mut Vec<scim_sidecar::backend::sql::pg_pool::SharedClient>,
    next: tokio::task::JoinHandle<i32>,
) -> i32 {
    held.pop();
    tokio::time::timeout(Duration::from_secs(1), next)
        .await
        .expect("the waiting statement took the freed place")
        .expect("its task")
}

/// Statements that run alone (reads, a one-statement create) share a connection when every
/// one is in use, instead of waiting for one to come back: their statements are pipelined
/// on it, and one that fails leaves the others as they were.
#[tokio::test]
async fn statements_that_run_alone_share_a_connection_when_every_one_is_in_use() {
    let Some((_db, pool)) = one_connection("pool_shared").await else {
        return;
    };

    let a = pool.shared().await.expect("a connection");
    let b = tokio::time::timeout(Duration::from_secs(1), pool.shared())
        .await
        .expect("the second read joined the busy connection instead of waiting")
        .expect("a connection");
    assert_eq!(pid(&a).await, pid(&b).await, "not the same connection");

    let started = Instant::now();
    let (slow, failed, fast) = tokio::join!(
        a.query_one("SELECT pg_sleep(0.2)::text", &[]),
        b.query_one("SELECT 1 / 0", &[]),
        b.query_one("SELECT 'fast'::text", &[]),
    );
    slow.expect("the slow statement");
    let e = failed.expect_err("division by zero fails");
    let message = e.as_db_error().map(|d| d.message().to_owned());
    assert_eq!(message.as_deref(), Some("division by zero"), "{e:?}");
    assert_eq!(
        fast.expect("the statement after the failed one")
            .get::<_, String>(0),
        "fast"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Given back once both are done: a transaction gets it at once.
    drop((a, b));
    let own = tokio::time::timeout(Duration::from_secs(1), pool.get())
        .await
        .expect("the connection came back when its last reader finished")
        .expect("a connection");
    drop(own);
}

/// A connection is shared by at most `SHARED_DEPTH` statements: the next one waits, and
/// takes the place the first of them to finish leaves.
#[tokio::test]
async fn a_shared_connection_takes_at_most_its_depth_and_hands_freed_places_on() {
    let Some((_db, pool)) = one_connection("pool_shared_depth").await else {
        return;
    };

    let mut held = Vec::new();
    for _ in 0..scim_sidecar::backend::sql::pg_pool::SHARED_DEPTH {
        held.push(pool.shared().await.expect("a connection"));
    }
    let first = pid(&held[0]).await;
    let next = read_pid(&pool);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!next.is_finished(), "a statement joined a full connection");

    let got = free_a_place(&mut held, next).await;
    assert_eq!(got, first, "not the shared connection");
}

/// Statements that run alone spread over at most half the pool: beyond that they share the
/// connections they have (and wait for a place on one), and the other half stays for
/// transactions, which hold a connection across round trips.
#[tokio::test]
async fn statements_that_run_alone_take_at_most_half_the_pool() {
    // Lent connections never count as stuck here: the test holds them without statements.
    let Some((_db, pool)) = four_connections("pool_shared_half", Duration::from_secs(60)).await
    else {
        return;
    };
    assert_eq!(scim_sidecar::backend::sql::pg_pool::alone_limit(4), 2);
    let full = 2 * scim_sidecar::backend::sql::pg_pool::SHARED_DEPTH;

    let mut held = Vec::new();
    for _ in 0..full {
        held.push(pool.shared().await.expect("a connection"));
    }
    let mut pids = Vec::new();
    for c in &held {
        pids.push(pid(c).await);
    }
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        2,
        "{full} reads on {pids:?}: not two connections"
    );

    // Both lent connections are full: the next read waits for a place, though the pool has
    // room for two more connections...
    let next = read_pid(&pool);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!next.is_finished(), "one read more took a third connection");
    // ...which a transaction gets at once.
    let own = tokio::time::timeout(Duration::from_secs(1), pool.get())
        .await
        .expect("a transaction waited behind reads")
        .expect("a connection");
    assert!(!distinct.contains(&pid(&own).await), "a lent connection");

    let got = free_a_place(&mut held, next).await;
    assert_eq!(got, pids[full - 1], "not the place that was freed");
    drop(own);
}

/// A statement is not pipelined behind slow ones: a lent connection on which nothing has
/// finished for a while is running one, so it is neither joined nor counted towards the
/// half of the pool, and the next read takes a connection of its own.
#[tokio::test]
async fn statements_that_run_alone_are_not_queued_behind_slow_ones() {
    let Some((_db, pool)) = four_connections("pool_shared_slow", Duration::from_millis(50)).await
    else {
        return;
    };

    let mut slow = Vec::new();
    let mut slow_pids = Vec::new();
    for _ in 0..2 {
        let c = pool.shared().await.expect("a connection");
        slow_pids.push(pid(&c).await);
        slow.push(tokio::spawn(async move {
            c.query_one("SELECT pg_sleep(3)::text", &[])
                .await
                .map(|_| ())
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let fast = tokio::time::timeout(Duration::from_secs(2), read_pid(&pool))
        .await
        .expect("a read queued behind the slow statements")
        .expect("its task");
    assert!(
        !slow_pids.contains(&fast),
        "pipelined on a connection running pg_sleep: {fast} in {slow_pids:?}"
    );
    assert!(
        slow.iter().all(|t| !t.is_finished()),
        "the slow statements ended first"
    );
    for t in slow {
        t.await.expect("its task").expect("the slow statement");
    }
}

/// Reads that keep arriving do not keep a transaction from its connection: while a request
/// waits for a connection of its own, reads stop joining the lent one, it comes back, and the
/// transaction gets it before the reads that came after it.
#[tokio::test]
async fn a_transaction_waiting_for_a_connection_is_not_kept_out_by_reads() {
    let Some((_db, pool)) = one_connection("pool_shared_writer").await else {
        return;
    };

    let reader = pool.shared().await.expect("a connection");
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished(), "the transaction did not wait");
    let late = read_pid(&pool);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !late.is_finished(),
        "a read joined while a transaction waited"
    );

    let reader_pid = pid(&reader).await;
    drop(reader);
    let writer = tokio::time::timeout(Duration::from_secs(1), writer)
        .await
        .expect("the transaction got the connection when the read finished")
        .expect("its task")
        .expect("a connection");
    assert_eq!(pid(&writer).await, reader_pid);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !late.is_finished(),
        "a read shared the transaction's connection"
    );

    drop(writer);
    let late_pid = tokio::time::timeout(Duration::from_secs(1), late)
        .await
        .expect("the read got the connection after the transaction")
        .expect("its task");
    assert_eq!(late_pid, reader_pid);
}
