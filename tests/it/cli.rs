//! The `scim-sidecar` command: `check` validates a config and its live store, printing every
//! problem with file, line and fix; `run` refuses to start on the same problems.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scim-sidecar");

/// A copy of the quickstart in a temp dir, with `edit` applied to the config text.
fn quickstart_copy(dir: &Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    std::fs::copy(src.join("schema.sql"), dir.join("schema.sql")).expect("schema");
    let text = std::fs::read_to_string(src.join("scim-sidecar.toml")).expect("config");
    let path = dir.join("scim-sidecar.toml");
    std::fs::write(&path, edit(text)).expect("write");
    path
}

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .env_remove("SCIM_TOKEN")
        .env("QUICKSTART_DB", config.with_file_name("app.db"))
        .output()
        .expect("run check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The quickstart checks clean, and says what it serves.
#[test]
fn check_accepts_the_quickstart() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| t);
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    assert!(
        out.contains("OK") && out.contains("/Users") && out.contains("/Groups"),
        "{out}"
    );
}

/// Mistakes against the live store are all reported at once, each with the file, its line
/// and a fix: a misspelt column (with a suggestion), an unknown table, an unknown attribute,
/// a missing join table; the exit status is non-zero.
#[test]
fn check_reports_every_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| {
        t.replace(
            "\"name.givenName\" = \"first_name\"",
            "\"name.givenName\" = \"frist_name\"",
        )
        .replace("table = \"roles\"", "table = \"rolez\"")
        .replace(
            "title = \"job_title\"",
            "title = \"job_title\"\nshoeSize = \"mobile\"",
        )
        .replace(
            "members = { table = \"account_roles\"",
            "members = { table = \"account_role\"",
        )
    });
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    let file = config.display().to_string();
    assert!(
        out.contains("column 'frist_name' does not exist in table 'accounts'")
            && out.contains("did you mean \"first_name\""),
        "{out}"
    );
    assert!(
        out.contains("table 'rolez' does not exist") && out.contains("did you mean \"roles\""),
        "{out}"
    );
    assert!(out.contains("unknown attribute 'shoeSize'"), "{out}");
    assert!(
        out.contains("table 'account_role' (members) does not exist")
            && out.contains("did you mean \"account_roles\""),
        "{out}"
    );
    assert!(out.contains(&format!("{file}:")), "{out}");
    let lines = out
        .lines()
        .filter(|l| l.starts_with(&file) && l.contains("error:"))
        .count();
    assert!(lines >= 4, "every problem on its own line:\n{out}");
}

/// Hooks and cascades are checked against the live database without being run: a statement
/// that names a missing table, a parameter that is no attribute, an event that does not exist
/// and a cascade into a missing table each get their own line, pointing at the hook.
#[test]
fn check_reports_hook_mistakes() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| {
        t.replace(
            "members = { table = \"account_roles\", group = \"role_id\", member = \"account_id\" }\n",
            "members = { table = \"account_roles\", group = \"role_id\", member = \"account_id\" }\n\
             cascade = [{ table = \"role_grants\", column = \"role_id\" }]\n\n\
             [[resource.Group.hook]]\n\
             on = \"member_add\"\n\
             sql = \"INSERT INTO audit_log (who) VALUES (:member)\"\n\n\
             [[resource.Group.hook]]\n\
             on = \"create\"\n\
             sql = \"UPDATE roles SET name = :shoeSize WHERE id = :id\"\n",
        )
    });
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    for expected in [
        "no such table: audit_log",
        "parameter :shoeSize is not :id, :member or a mapped attribute",
        "table 'role_grants' does not exist",
    ] {
        assert!(out.contains(expected), "{expected}:\n{out}");
    }
    let file = config.display().to_string();
    let lines = out
        .lines()
        .filter(|l| l.starts_with(&file) && l.contains("error:"))
        .count();
    assert!(lines >= 3, "every problem on its own line:\n{out}");

    let config = quickstart_copy(dir.path(), |t| {
        t + "\n[[resource.Group.hook]]\non = \"renamed\"\nsql = \"SELECT 1\"\n"
    });
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("hook on \"renamed\" is not an event")
            && out.contains("events: create, update, delete, member_add, member_remove"),
        "{out}"
    );
}

/// The same problem at several places is said once, with the other lines (the sidecar's
/// table, missing for each attribute it keeps); warnings show next to errors, so fixing the
/// errors brings no surprise.
#[test]
fn check_says_each_problem_once_and_warnings_with_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| {
        t.replacen("externalId = \"external_ref\"", "externalId = { kept = true }", 1)
            .replace("title = \"job_title\"", "title = { column = \"job_title\", uniqueness = \"server\" }\nnickName = { kept = true }\n\"name.middleName\" = { kept = true }")
            .replace("\"name.givenName\" = \"first_name\"", "\"name.givenName\" = \"frist_name\"")
    });
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    let missing: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("error:") && l.contains("scim_sidecar_attributes"))
        .collect();
    assert_eq!(missing.len(), 1, "said once:\n{out}");
    assert!(out.contains("(also at line"), "{out}");
    assert!(out.contains("frist_name"), "{out}");
    assert!(out.contains(": 2 problem(s)"), "counted once:\n{out}");
    assert!(
        out.lines().any(|l| l.contains("warning:")
            && l.contains("no unique index")
            && l.contains("job_title")),
        "the warning shows with the errors:\n{out}"
    );
}

/// `migrate` as an init container runs it: without the token's variable (it reads only the
/// stores), and with `--prune`, which lists then removes what the sidecar keeps for rows the
/// app deleted itself (`--dry-run` only lists). A store's own variable is still required.
#[test]
fn migrate_needs_only_the_stores_and_prunes_what_the_app_deleted() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| {
        t.replace("${SCIM_TOKEN:-quickstart-token-change-me}", "${SCIM_TOKEN}")
            .replacen(
                "externalId = \"external_ref\"",
                "externalId = { kept = true }",
                1,
            )
    });
    let db = dir.path().join("app.db");
    let migrate = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("migrate")
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("SCIM_TOKEN")
            .env("QUICKSTART_DB", &db)
            .output()
            .expect("migrate");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = migrate(&[]);
    assert!(ok, "{out}");
    let conn = rusqlite::Connection::open(&db).expect("db");
    conn.execute_batch(
        "INSERT INTO scim_sidecar_attributes (resource_type, resource_id, name, value) VALUES
            ('User', '1', 'externalId', 'kept-for-1'), ('User', '999', 'externalId', 'kept-for-999');",
    )
    .expect("kept values");
    let kept = || -> Vec<String> {
        let mut st = conn
            .prepare("SELECT resource_id FROM scim_sidecar_attributes ORDER BY 1")
            .expect("prepare");
        st.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let (ok, out) = migrate(&["--prune", "--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains("1 id(s)") && out.contains("999"), "{out}");
    assert_eq!(kept(), vec!["1", "999"]);
    let (ok, out) = migrate(&["--prune"]);
    assert!(ok, "{out}");
    assert!(out.contains("removed"), "{out}");
    assert_eq!(kept(), vec!["1"]);

    let broken = quickstart_copy(dir.path(), |t| {
        t.replace("${QUICKSTART_DB:-app.db}", "${APP_DB_PATH}")
    });
    let out = Command::new(BIN)
        .args(["migrate", "--config"])
        .arg(&broken)
        .env_remove("APP_DB_PATH")
        .output()
        .expect("migrate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("APP_DB_PATH"),
        "{err}"
    );

    // The app's own database is the app's: a wrong path is an error, never a new empty file
    // (a store that holds only the sidecar's state is created: tests/it/ldap.rs).
    let no_schema = quickstart_copy(dir.path(), |t| {
        t.replace("create_from = \"schema.sql\"", "").replacen(
            "externalId = \"external_ref\"",
            "externalId = { kept = true }",
            1,
        )
    });
    let missing = dir.path().join("typo.db");
    let out = Command::new(BIN)
        .args(["migrate", "--config"])
        .arg(&no_schema)
        .env("QUICKSTART_DB", &missing)
        .output()
        .expect("migrate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not exist"),
        "{err}"
    );
    assert!(!missing.exists(), "migrate created the app's database");
}

/// A broken file (a setting that does not exist, a variable that is not set) is refused by
/// `run` before it listens, with the line and a fix, and a non-zero exit.
#[test]
fn run_refuses_a_broken_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| {
        t.replace("${SCIM_TOKEN:-quickstart-token-change-me}", "${SCIM_TOKEN}")
            .replace("[scim]", "[scim]\nbase_pth = \"/x\"")
    });
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("SCIM_TOKEN")
        .env("SCIM_SIDECAR_LISTEN", "127.0.0.1:0")
        .env("SCIM_SIDECAR_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    assert!(started.elapsed() < Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("base_pth"), "{err}");
    assert!(
        err.contains("not started") || err.contains("nothing was started"),
        "{err}"
    );
}

/// `check` finds a variable that is not set, naming it and how to give it a default.
#[test]
fn check_names_unset_variables() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| {
        t.replace("${SCIM_TOKEN:-quickstart-token-change-me}", "${SCIM_TOKEN}")
    });
    let (ok, out) = check(&config);
    assert!(!ok);
    assert!(
        out.contains("environment variable SCIM_TOKEN is not set")
            && out.contains("${SCIM_TOKEN:-default}"),
        "{out}"
    );
}

/// The annotated reference config (`config/scim-sidecar.toml`) is a valid file: every key
/// it documents is a key the sidecar reads (unknown keys are errors).
#[test]
fn reference_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scim-sidecar.toml");
    let env: std::collections::HashMap<String, String> = [(
        "SCIM_TOKEN".to_string(),
        "reference-token-0123456789".to_string(),
    )]
    .into();
    match scim_sidecar::config::load(&path, &env) {
        Ok(c) => {
            assert_eq!(c.resources.len(), 2);
            assert!(c.upstream.is_some() && c.admin.is_some());
        }
        Err(p) => panic!("{}", scim_sidecar::config::report(&p)),
    }
}

/// A zero-length database file (what `sqlite3 app.db` leaves behind when run first) gets the
/// quickstart's schema like a missing one.
#[test]
fn empty_database_file_gets_the_schema() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| t);
    std::fs::write(config.with_file_name("app.db"), b"").expect("empty db");
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
}

/// The worker threads a running `scim-sidecar run` started with `args` and `env` reports in
/// its metrics, read once it says it is ready (the log line names the admin address).
fn worker_threads(args: &[&str], env: &[(&str, &str)]) -> usize {
    use std::io::{BufRead, Read, Write};
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| t);
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .args(args)
        .envs(env.iter().copied())
        .env("SCIM_SIDECAR_LISTEN", "127.0.0.1:0")
        .env("SCIM_SIDECAR_ADMIN_LISTEN", "127.0.0.1:0")
        .env("QUICKSTART_DB", config.with_file_name("app.db"))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let stderr = child.stderr.take().expect("stderr");
    let ready = std::io::BufReader::new(stderr)
        .lines()
        .take(200)
        .map_while(Result::ok)
        .find(|l| l.contains("scim-sidecar ready"));
    let admin = ready.as_deref().and_then(|l| {
        let at = l.find("admin=\"")? + 7;
        Some(l[at..].split('"').next()?.to_owned())
    });
    let metrics = admin.map(|a| {
        let mut s = std::net::TcpStream::connect(a).expect("admin");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    });
    let _ = child.kill();
    let _ = child.wait();
    let metrics = metrics.expect("the sidecar started and served /metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("scim_sidecar_runtime_workers "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no worker gauge in:\n{metrics}"))
}

/// `--workers N` and `SCIM_SIDECAR_WORKERS=N` size the runtime; without either it serves on
/// one thread, whatever the CPUs (issue #15: the least CPU per request). See: issue #8.
#[test]
fn r008_workers_sets_the_runtime_threads() {
    assert_eq!(worker_threads(&["--workers", "2"], &[]), 2);
    assert_eq!(worker_threads(&[], &[("SCIM_SIDECAR_WORKERS", "3")]), 3);
    assert_eq!(worker_threads(&[], &[]), 1);
}

/// `scim-sidecar explain` reads the request from the command line and the body from a file or
/// standard input, needs no token, prints the statements and the answer, and writes nothing;
/// its exit status follows the answer's.
#[test]
fn explain_prints_statements_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = quickstart_copy(dir.path(), |t| t);
    let db = dir.path().join("app.db");
    let explain = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .arg("explain")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("SCIM_TOKEN")
            .env("QUICKSTART_DB", &db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run explain");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("explain");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let user = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ann@example.com","active":true}"#;
    let (ok, out, err) = explain(&["POST", "/scim/v2/Users", "--body", "-"], user);
    assert!(ok, "{out}{err}");
    assert!(out.contains("INSERT INTO \"accounts\""), "{out}");
    assert!(out.contains("'ann@example.com'"), "{out}");
    assert!(
        out.contains("ROLLBACK;") && out.contains("201 Created"),
        "{out}"
    );

    let body = dir.path().join("user.json");
    std::fs::write(&body, user).expect("body");
    let (ok, out, _) = explain(
        &["get", "/Users?filter=userName eq \"ann@example.com\""],
        "",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("\"totalResults\": 0"),
        "the create was not kept: {out}"
    );
    let (ok, out, _) = explain(
        &["POST", "/Users", "--body", &body.display().to_string()],
        "",
    );
    assert!(ok && out.contains("201 Created"), "{out}");

    let (ok, out, _) = explain(&["PATCH", "/Users/999999", "--body"], "");
    assert!(!ok && out.is_empty(), "--body needs a value: {out}");
    let (ok, out, _) = explain(&["DELETE", "/Users/999999"], "");
    assert!(!ok, "a 404 exits non-zero: {out}");
    assert!(out.contains("404 Not Found"), "{out}");
    let (ok, _, err) = explain(&["POST", "/Users", "--body", "/nonexistent.json"], "");
    assert!(!ok && err.contains("/nonexistent.json"), "{err}");
}
