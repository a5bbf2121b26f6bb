//! The legacy admin API: a small Redmine-style HTTP API over SQLite, the kind of application
//! the REST store provisions through. Shared by the runnable example (`main.rs`), the tests
//! (`tests/support/rest_app.rs`) and the REST bench, so all three drive the same program.
//!
//! Its quirks are the ones real admin APIs have and a mapping must declare:
//!
//! - `X-API-Key` header auth; a wrong key is `401 {"errors":["Invalid API key"]}`.
//! - Bodies wrapped as `{"user": {...}}` / `{"group": {...}}`; `PUT` answers `204` with no body;
//!   `POST` answers `201` with the new resource and a `Location`.
//! - Lists are page based (`page`, `per_page` clamped to 1..=100) with `total_count`.
//! - Search is fuzzy: `search=q` matches a case-insensitive substring of login, first name, last
//!   name or mail (groups: name). There is no exact `login=` parameter.
//! - Validation errors are `422 {"errors": ["Login has already been taken", ...]}`, every problem
//!   listed; a duplicate member is `422`, removing an absent member is `404`.
//! - Optimistic concurrency: `ETag: "<lock_version>"` on a user's `GET`, honoured in `If-Match` on
//!   `PUT` (`412` when stale).
//! - Business rules the store would skip if written directly: every membership change writes an
//!   audit row (`GET /audit.json`), deleting a user or a group removes its memberships.
//!
//! Routes: `GET/POST /users.json`, `GET/PUT/DELETE /users/{id}.json`, `GET/POST /groups.json`,
//! `GET/PUT/DELETE /groups/{id}.json`, `POST /groups/{id}/users.json`,
//! `DELETE /groups/{id}/users/{user_id}.json`, `GET /audit.json`. `?include=groups` on a user
//! and `?include=users` on a group add the memberships.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;
/// Largest page.
const MAX_PER_PAGE: i64 = 100;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    login           TEXT NOT NULL UNIQUE COLLATE NOCASE,
    firstname       TEXT,
    lastname        TEXT,
    mail            TEXT UNIQUE COLLATE NOCASE,
    status          INTEGER NOT NULL DEFAULT 1,
    admin           INTEGER NOT NULL DEFAULT 0,
    hashed_password TEXT,
    created_on      TEXT NOT NULL,
    updated_on      TEXT NOT NULL,
    lock_version    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS groups (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE
);
CREATE TABLE IF NOT EXISTS members (
    group_id INTEGER NOT NULL REFERENCES groups(id),
    user_id  INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (group_id, user_id)
);
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    event    TEXT NOT NULL,
    group_id INTEGER,
    user_id  INTEGER,
    at       TEXT NOT NULL
);
";

/// Failures a test injects: the next `n` requests answer `status`, every request waits
/// `delay` first.
#[derive(Default)]
pub struct Faults {
    fail: AtomicU32,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

impl Faults {
    /// The next `n` requests answer `status` (with a JSON error body) without being handled.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.status.store(status, Ordering::SeqCst);
        self.fail.store(n, Ordering::SeqCst);
    }

    /// Every request waits `delay` before it is handled.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn take(&self) -> Option<u16> {
        self.fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| self.status.load(Ordering::SeqCst))
    }
}

/// The application: its database, its key, and what tests inject or count.
pub struct Api {
    db: Mutex<Connection>,
    key: String,
    /// Failures injected by tests.
    pub faults: Faults,
    hits: Mutex<BTreeMap<String, u64>>,
}

impl Api {
    /// The API over the SQLite file `db` (created with its tables if new), or an in-memory
    /// database, accepting `key` in `X-API-Key`.
    pub fn open(db: Option<&Path>, key: &str) -> Result<Api, String> {
        let conn = match db {
            Some(path) => Connection::open(path),
            None => Connection::open_in_memory(),
        }
        .map_err(|e| format!("cannot open the database: {e}"))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| format!("cannot create the tables: {e}"))?;
        Ok(Api {
            db: Mutex::new(conn),
            key: key.to_owned(),
            faults: Faults::default(),
            hits: Mutex::new(BTreeMap::new()),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `query` against the app's database and returns every row as text (`NULL` as
    /// `"NULL"`), for tests that check what the app holds.
    pub fn sql(&self, query: &str) -> Vec<Vec<String>> {
        let db = self.db();
        let Ok(mut stmt) = db.prepare(query) else {
            return Vec::new();
        };
        let n = stmt.column_count();
        let rows = stmt.query_map([], |row| {
            (0..n)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => v.to_string(),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        });
        match rows {
            Ok(rows) => rows.filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// How many requests matched `route` (`"GET /users.json"`, `"PUT /users/{id}.json"`: the
    /// method and the path with every number replaced by `{id}`).
    pub fn hits(&self, route: &str) -> u64 {
        let hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        hits.get(route).copied().unwrap_or(0)
    }

    /// Forgets the request counts.
    pub fn reset_hits(&self) {
        self.hits.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn count(&self, method: &Method, path: &str) {
        let route: Vec<String> = path
            .split('/')
            .map(|seg| {
                let (stem, ext) = seg.split_once('.').unwrap_or((seg, ""));
                if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
                    if ext.is_empty() {
                        "{id}".to_owned()
                    } else {
                        format!("{{id}}.{ext}")
                    }
                } else {
                    seg.to_owned()
                }
            })
            .collect();
        let key = format!("{method} {}", route.join("/"));
        *self
            .hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(0) += 1;
    }
}

/// Serves `api` on `listener` (HTTP/1.1, keep-alive) until `stop` turns true; then the
/// listener and every open connection are closed.
pub async fn serve(listener: TcpListener, api: Arc<Api>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let api = api.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(handle(&api, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

/// One request, start to end.
pub async fn handle(api: &Api, req: Request<Incoming>) -> Reply {
    let delay = api.faults.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    api.count(req.method(), req.uri().path());
    if let Some(status) = api.faults.take() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return errors(status, &["Service unavailable"]);
    }
    let key_ok = req
        .headers()
        .get("x-api-key")
        .is_some_and(|k| k.as_bytes() == api.key.as_bytes());
    if !key_ok {
        return errors(StatusCode::UNAUTHORIZED, &["Invalid API key"]);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_owned());
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return errors(StatusCode::PAYLOAD_TOO_LARGE, &["Request is too large"]),
    };
    let body = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v,
            Err(_) => return errors(StatusCode::BAD_REQUEST, &["Malformed JSON"]),
        }
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let db = api.db();
    let now = now();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["users.json"]) => list_users(&db, &query),
        (&Method::POST, ["users.json"]) => create_user(&db, &body, &now),
        (m, ["users", file]) => match id_of(file) {
            None => not_found(),
            Some(id) => match *m {
                Method::GET => get_user(&db, id, query.has("include", "groups")),
                Method::PUT => update_user(&db, id, &body, if_match.as_deref(), &now),
                Method::DELETE => delete_user(&db, id, &now),
                _ => not_found(),
            },
        },
        (&Method::GET, ["groups.json"]) => list_groups(&db, &query),
        (&Method::POST, ["groups.json"]) => create_group(&db, &body, &now),
        (m, ["groups", file]) => match id_of(file) {
            None => not_found(),
            Some(id) => match *m {
                Method::GET => get_group(&db, id, query.has("include", "users")),
                Method::PUT => update_group(&db, id, &body, &now),
                Method::DELETE => delete_group(&db, id, &now),
                _ => not_found(),
            },
        },
        (&Method::POST, ["groups", gid, "users.json"]) => match gid.parse() {
            Ok(gid) => add_member(&db, gid, &body, &now),
            Err(_) => not_found(),
        },
        (&Method::DELETE, ["groups", gid, "users", file]) => match (gid.parse(), id_of(file)) {
            (Ok(gid), Some(uid)) => remove_member(&db, gid, uid, &now),
            _ => not_found(),
        },
        (&Method::GET, ["audit.json"]) => audit(&db),
        _ => not_found(),
    }
}

// === users ===

const USER_COLUMNS: &str =
    "id, login, firstname, lastname, mail, status, admin, created_on, updated_on, lock_version";

fn user_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": row.get::<_, i64>(0)?,
        "login": row.get::<_, String>(1)?,
        "firstname": row.get::<_, Option<String>>(2)?,
        "lastname": row.get::<_, Option<String>>(3)?,
        "mail": row.get::<_, Option<String>>(4)?,
        "status": row.get::<_, i64>(5)?,
        "admin": row.get::<_, bool>(6)?,
        "created_on": row.get::<_, String>(7)?,
        "updated_on": row.get::<_, String>(8)?,
        "lock_version": row.get::<_, i64>(9)?,
    }))
}

fn load_user(db: &Connection, id: i64) -> Option<Value> {
    db.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        [id],
        user_json,
    )
    .optional()
    .ok()
    .flatten()
}

fn list_users(db: &Connection, q: &Query) -> Reply {
    let (page, per_page) = q.paging();
    let mut cond = vec!["1 = 1".to_owned()];
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(s) = q.get("search").filter(|s| !s.is_empty()) {
        let like = format!("%{}%", like_escape(s));
        cond.push(
            "(login LIKE ?1 ESCAPE '\\' OR firstname LIKE ?1 ESCAPE '\\' \
             OR lastname LIKE ?1 ESCAPE '\\' OR mail LIKE ?1 ESCAPE '\\')"
                .into(),
        );
        args.push(like.into());
    }
    if let Some(status) = q.get("status").and_then(|s| s.parse::<i64>().ok()) {
        cond.push(format!("status = ?{}", args.len() + 1));
        args.push(status.into());
    }
    let cond = cond.join(" AND ");
    let total: i64 = db
        .query_row(
            &format!("SELECT count(*) FROM users WHERE {cond}"),
            rusqlite::params_from_iter(args.iter()),
            |r| r.get(0),
        )
        .unwrap_or(0);
    let users = query_all(
        db,
        &format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {cond} ORDER BY id LIMIT {per_page} OFFSET {}",
            (page - 1) * per_page
        ),
        &args,
        user_json,
    );
    reply(
        StatusCode::OK,
        json!({"users": users, "total_count": total, "page": page, "per_page": per_page}),
    )
}

fn get_user(db: &Connection, id: i64, with_groups: bool) -> Reply {
    let Some(mut user) = load_user(db, id) else {
        return not_found();
    };
    if with_groups {
        let groups = query_all(
            db,
            "SELECT g.id, g.name FROM groups g JOIN members m ON m.group_id = g.id \
             WHERE m.user_id = ?1 ORDER BY g.id",
            &[id.into()],
            |r| Ok(json!({"id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?})),
        );
        user["groups"] = Value::Array(groups);
    }
    let etag = format!("\"{}\"", user["lock_version"]);
    let mut resp = reply(StatusCode::OK, json!({ "user": user }));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// A user as its fields will be after a create or an update: what the request sets over
/// what the row holds.
struct UserFields {
    login: Option<String>,
    firstname: Option<String>,
    lastname: Option<String>,
    mail: Option<String>,
    status: i64,
    admin: bool,
    password: Option<String>,
}

impl UserFields {
    fn from_row(user: &Value) -> UserFields {
        let text = |k: &str| user[k].as_str().map(str::to_owned);
        UserFields {
            login: text("login"),
            firstname: text("firstname"),
            lastname: text("lastname"),
            mail: text("mail"),
            status: user["status"].as_i64().unwrap_or(1),
            admin: user["admin"].as_bool().unwrap_or(false),
            password: None,
        }
    }

    /// Applies the fields present in `body`; a field of the wrong JSON type is a problem.
    fn apply(&mut self, body: &Map<String, Value>, problems: &mut Vec<String>) {
        for (key, slot, label) in [
            ("login", &mut self.login, "Login"),
            ("firstname", &mut self.firstname, "Firstname"),
            ("lastname", &mut self.lastname, "Lastname"),
            ("mail", &mut self.mail, "Email"),
            ("password", &mut self.password, "Password"),
        ] {
            match body.get(key) {
                None => {}
                Some(Value::Null) => *slot = None,
                // A blank text is no value, as the app's forms treat it.
                Some(Value::String(s)) => *slot = Some(s.clone()).filter(|s| !s.trim().is_empty()),
                Some(_) => problems.push(format!("{label} is invalid")),
            }
        }
        match body.get("status") {
            None => {}
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                self.status = n.as_i64().unwrap_or_default()
            }
            Some(Value::String(s)) if s.parse::<i64>().is_ok() => {
                self.status = s.parse().unwrap_or_default()
            }
            Some(_) => self.status = -1,
        }
        match body.get("admin") {
            None => {}
            Some(Value::Bool(b)) => self.admin = *b,
            Some(_) => problems.push("Admin is invalid".into()),
        }
    }

    /// Every problem with the fields, as the app words them.
    fn validate(&self, db: &Connection, id: Option<i64>, problems: &mut Vec<String>) {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        if blank(&self.login) {
            problems.push("Login cannot be blank".into());
        }
        for (value, label, max) in [
            (&self.login, "Login", 60),
            (&self.firstname, "Firstname", 30),
            (&self.lastname, "Lastname", 30),
            (&self.mail, "Email", 254),
        ] {
            if value.as_deref().is_some_and(|v| v.chars().count() > max) {
                problems.push(format!("{label} is too long (maximum is {max} characters)"));
            }
        }
        if let Some(login) = self.login.as_deref().filter(|s| !s.trim().is_empty()) {
            let valid = login
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-@.".contains(c));
            if !valid {
                problems.push("Login is invalid".into());
            } else if taken(db, "users", "login", login, id) {
                problems.push("Login has already been taken".into());
            }
        }
        if let Some(mail) = self.mail.as_deref().filter(|s| !s.trim().is_empty()) {
            let valid = match mail.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.is_empty()
                        && !domain.contains('@')
                        && !mail.contains(char::is_whitespace)
                }
                None => false,
            };
            if !valid {
                problems.push("Email is invalid".into());
            } else if taken(db, "users", "mail", mail, id) {
                problems.push("Email has already been taken".into());
            }
        }
        if self.status != 1 && self.status != 3 {
            problems.push("Status is not included in the list".into());
        }
        if self
            .password
            .as_deref()
            .is_some_and(|p| p.chars().count() < 8)
        {
            problems.push("Password is too short (minimum is 8 characters)".into());
        }
    }

    fn hashed_password(&self) -> Option<String> {
        self.password.as_deref().map(|p| {
            let digest = ring::digest::digest(&ring::digest::SHA256, p.as_bytes());
            digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        })
    }
}

/// The object under `key` of a wrapped body (`{"user": {...}}`).
fn wrapped<'a>(body: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    body.get(key).and_then(Value::as_object)
}

fn missing(key: &str) -> Reply {
    errors(
        StatusCode::UNPROCESSABLE_ENTITY,
        &[&format!("Missing '{key}'")],
    )
}

fn create_user(db: &Connection, body: &Value, now: &str) -> Reply {
    let fields = match wrapped(body, "user") {
        Some(f) => f,
        None => return missing("user"),
    };
    let mut user = UserFields::from_row(&json!({}));
    let mut problems = Vec::new();
    user.apply(fields, &mut problems);
    user.validate(db, None, &mut problems);
    if !problems.is_empty() {
        return unprocessable(problems);
    }
    let inserted = db.execute(
        "INSERT INTO users (login, firstname, lastname, mail, status, admin, hashed_password, \
         created_on, updated_on) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            user.login,
            user.firstname,
            user.lastname,
            user.mail,
            user.status,
            user.admin,
            user.hashed_password(),
            now
        ],
    );
    if inserted.is_err() {
        return unprocessable(vec!["Login has already been taken".into()]);
    }
    let id = db.last_insert_rowid();
    let Some(user) = load_user(db, id) else {
        return not_found();
    };
    created(json!({ "user": user }), &format!("/users/{id}.json"))
}

fn update_user(db: &Connection, id: i64, body: &Value, if_match: Option<&str>, now: &str) -> Reply {
    let Some(current) = load_user(db, id) else {
        return not_found();
    };
    let fields = match wrapped(body, "user") {
        Some(f) => f,
        None => return missing("user"),
    };
    if let Some(tag) = if_match
        && tag != "*"
        && Some(tag)
            != current["lock_version"]
                .as_i64()
                .map(|v| v.to_string())
                .as_deref()
    {
        return errors(StatusCode::PRECONDITION_FAILED, &["Stale object"]);
    }
    let mut user = UserFields::from_row(&current);
    let mut problems = Vec::new();
    user.apply(fields, &mut problems);
    user.validate(db, Some(id), &mut problems);
    if !problems.is_empty() {
        return unprocessable(problems);
    }
    let updated = db.execute(
        "UPDATE users SET login = ?1, firstname = ?2, lastname = ?3, mail = ?4, status = ?5, \
         admin = ?6, hashed_password = coalesce(?7, hashed_password), updated_on = ?8, \
         lock_version = lock_version + 1 WHERE id = ?9",
        params![
            user.login,
            user.firstname,
            user.lastname,
            user.mail,
            user.status,
            user.admin,
            user.hashed_password(),
            now,
            id
        ],
    );
    match updated {
        Ok(_) => no_content(),
        Err(_) => unprocessable(vec!["Login has already been taken".into()]),
    }
}

fn delete_user(db: &Connection, id: i64, now: &str) -> Reply {
    if load_user(db, id).is_none() {
        return not_found();
    }
    let groups: Vec<i64> = query_all(
        db,
        "SELECT group_id FROM members WHERE user_id = ?1",
        &[id.into()],
        |r| r.get(0),
    );
    for gid in groups {
        let _ = db.execute(
            "DELETE FROM members WHERE group_id = ?1 AND user_id = ?2",
            [gid, id],
        );
        record(db, "member_removed", gid, id, now);
    }
    let _ = db.execute("DELETE FROM users WHERE id = ?1", [id]);
    no_content()
}

// === groups ===

fn group_json(db: &Connection, id: i64, with_users: bool) -> Option<Value> {
    let name: String = db
        .query_row("SELECT name FROM groups WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .ok()
        .flatten()?;
    let mut group = json!({"id": id, "name": name});
    if with_users {
        let users = query_all(
            db,
            "SELECT u.id, coalesce(nullif(trim(coalesce(u.firstname, '') || ' ' || \
             coalesce(u.lastname, '')), ''), u.login) FROM users u \
             JOIN members m ON m.user_id = u.id WHERE m.group_id = ?1 ORDER BY u.id",
            &[id.into()],
            |r| Ok(json!({"id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?})),
        );
        group["users"] = Value::Array(users);
    }
    Some(group)
}

fn list_groups(db: &Connection, q: &Query) -> Reply {
    let (page, per_page) = q.paging();
    let like = format!("%{}%", like_escape(q.get("search").unwrap_or("")));
    let total: i64 = db
        .query_row(
            "SELECT count(*) FROM groups WHERE name LIKE ?1 ESCAPE '\\'",
            [&like],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let ids: Vec<i64> = query_all(
        db,
        &format!(
            "SELECT id FROM groups WHERE name LIKE ?1 ESCAPE '\\' ORDER BY id \
             LIMIT {per_page} OFFSET {}",
            (page - 1) * per_page
        ),
        &[like.into()],
        |r| r.get(0),
    );
    let groups: Vec<Value> = ids
        .into_iter()
        .filter_map(|id| group_json(db, id, false))
        .collect();
    reply(
        StatusCode::OK,
        json!({"groups": groups, "total_count": total, "page": page, "per_page": per_page}),
    )
}

fn get_group(db: &Connection, id: i64, with_users: bool) -> Reply {
    match group_json(db, id, with_users) {
        Some(group) => reply(StatusCode::OK, json!({ "group": group })),
        None => not_found(),
    }
}

/// `name` and `user_ids` of a group body; problems as the app words them.
fn group_fields(
    db: &Connection,
    body: &Map<String, Value>,
    id: Option<i64>,
    problems: &mut Vec<String>,
) -> (Option<String>, Option<Vec<i64>>) {
    let name = match body.get("name") {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() => {
            if s.chars().count() > 255 {
                problems.push("Name is too long (maximum is 255 characters)".into());
            } else if taken(db, "groups", "name", s, id) {
                problems.push("Name has already been taken".into());
            }
            Some(s.clone())
        }
        Some(_) => {
            problems.push("Name cannot be blank".into());
            None
        }
    };
    let user_ids = match body.get("user_ids") {
        None => None,
        Some(Value::Array(ids)) => {
            let ids: Option<Vec<i64>> = ids.iter().map(json_id).collect();
            match ids {
                Some(ids) if ids.iter().all(|&u| load_user(db, u).is_some()) => Some(ids),
                _ => {
                    problems.push("User ids are invalid".into());
                    None
                }
            }
        }
        Some(_) => {
            problems.push("User ids are invalid".into());
            None
        }
    };
    (name, user_ids)
}

fn create_group(db: &Connection, body: &Value, now: &str) -> Reply {
    let fields = match wrapped(body, "group") {
        Some(f) => f,
        None => return missing("group"),
    };
    let mut problems = Vec::new();
    let (name, user_ids) = group_fields(db, fields, None, &mut problems);
    if name.is_none() && !problems.iter().any(|p| p.starts_with("Name")) {
        problems.insert(0, "Name cannot be blank".into());
    }
    if !problems.is_empty() {
        return unprocessable(problems);
    }
    if db
        .execute("INSERT INTO groups (name) VALUES (?1)", [&name])
        .is_err()
    {
        return unprocessable(vec!["Name has already been taken".into()]);
    }
    let id = db.last_insert_rowid();
    set_members(db, id, &user_ids.unwrap_or_default(), now);
    match group_json(db, id, false) {
        Some(group) => created(json!({ "group": group }), &format!("/groups/{id}.json")),
        None => not_found(),
    }
}

fn update_group(db: &Connection, id: i64, body: &Value, now: &str) -> Reply {
    if group_json(db, id, false).is_none() {
        return not_found();
    }
    let fields = match wrapped(body, "group") {
        Some(f) => f,
        None => return missing("group"),
    };
    let mut problems = Vec::new();
    let (name, user_ids) = group_fields(db, fields, Some(id), &mut problems);
    if !problems.is_empty() {
        return unprocessable(problems);
    }
    if let Some(name) = name
        && db
            .execute(
                "UPDATE groups SET name = ?1 WHERE id = ?2",
                params![name, id],
            )
            .is_err()
    {
        return unprocessable(vec!["Name has already been taken".into()]);
    }
    if let Some(ids) = user_ids {
        set_members(db, id, &ids, now);
    }
    no_content()
}

/// Makes `ids` the members of group `gid`, auditing each change.
fn set_members(db: &Connection, gid: i64, ids: &[i64], now: &str) {
    let current: Vec<i64> = query_all(
        db,
        "SELECT user_id FROM members WHERE group_id = ?1",
        &[gid.into()],
        |r| r.get(0),
    );
    for &uid in current.iter().filter(|u| !ids.contains(u)) {
        let _ = db.execute(
            "DELETE FROM members WHERE group_id = ?1 AND user_id = ?2",
            [gid, uid],
        );
        record(db, "member_removed", gid, uid, now);
    }
    for &uid in ids {
        if !current.contains(&uid)
            && db
                .execute(
                    "INSERT OR IGNORE INTO members (group_id, user_id) VALUES (?1, ?2)",
                    [gid, uid],
                )
                .is_ok_and(|n| n == 1)
        {
            record(db, "member_added", gid, uid, now);
        }
    }
}

fn delete_group(db: &Connection, id: i64, now: &str) -> Reply {
    if group_json(db, id, false).is_none() {
        return not_found();
    }
    set_members(db, id, &[], now);
    let _ = db.execute("DELETE FROM groups WHERE id = ?1", [id]);
    no_content()
}

fn add_member(db: &Connection, gid: i64, body: &Value, now: &str) -> Reply {
    if group_json(db, gid, false).is_none() {
        return not_found();
    }
    let Some(uid) = body.get("user_id").and_then(json_id) else {
        return unprocessable(vec!["User not found".into()]);
    };
    if load_user(db, uid).is_none() {
        return unprocessable(vec!["User not found".into()]);
    }
    let added = db.execute(
        "INSERT OR IGNORE INTO members (group_id, user_id) VALUES (?1, ?2)",
        [gid, uid],
    );
    match added {
        Ok(1) => {
            record(db, "member_added", gid, uid, now);
            no_content()
        }
        _ => unprocessable(vec!["User is already a member of this group".into()]),
    }
}

fn remove_member(db: &Connection, gid: i64, uid: i64, now: &str) -> Reply {
    let removed = db.execute(
        "DELETE FROM members WHERE group_id = ?1 AND user_id = ?2",
        [gid, uid],
    );
    match removed {
        Ok(1) => {
            record(db, "member_removed", gid, uid, now);
            no_content()
        }
        _ => not_found(),
    }
}

fn record(db: &Connection, event: &str, gid: i64, uid: i64, now: &str) {
    let _ = db.execute(
        "INSERT INTO audit (event, group_id, user_id, at) VALUES (?1, ?2, ?3, ?4)",
        params![event, gid, uid, now],
    );
}

fn audit(db: &Connection) -> Reply {
    let events = query_all(
        db,
        "SELECT id, event, group_id, user_id, at FROM audit ORDER BY id",
        &[],
        |r| {
            Ok(json!({
                "id": r.get::<_, i64>(0)?,
                "event": r.get::<_, String>(1)?,
                "group_id": r.get::<_, Option<i64>>(2)?,
                "user_id": r.get::<_, Option<i64>>(3)?,
                "at": r.get::<_, String>(4)?,
            }))
        },
    );
    reply(StatusCode::OK, json!({ "events": events }))
}

// === helpers ===

/// The query string, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Query {
        Query(form_urlencoded::parse(q.as_bytes()).into_owned().collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, key: &str, item: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.split(',').any(|i| i.trim() == item))
    }

    /// `page` (1-based) and `per_page` (clamped), as the app reads them: junk is the default.
    fn paging(&self) -> (i64, i64) {
        let page = self
            .get("page")
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|&p| p >= 1)
            .unwrap_or(1);
        let per_page = self
            .get("per_page")
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(25)
            .clamp(1, MAX_PER_PAGE);
        (page, per_page)
    }
}

/// `7.json` → 7.
fn id_of(file: &str) -> Option<i64> {
    file.strip_suffix(".json")
        .unwrap_or(file)
        .parse()
        .ok()
        .filter(|&id| id > 0)
}

/// An id sent as a number or as a string of digits.
fn json_id(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn taken(db: &Connection, table: &str, column: &str, value: &str, except: Option<i64>) -> bool {
    db.query_row(
        &format!(
            "SELECT count(*) FROM {table} WHERE {column} = ?1 COLLATE NOCASE AND id IS NOT ?2"
        ),
        params![value, except],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn query_all<T>(
    db: &Connection,
    sql: &str,
    args: &[rusqlite::types::Value],
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    let Ok(mut stmt) = db.prepare(sql) else {
        return Vec::new();
    };
    match stmt.query_map(rusqlite::params_from_iter(args.iter()), f) {
        Ok(rows) => rows.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn created(body: Value, location: &str) -> Reply {
    let mut resp = reply(StatusCode::CREATED, body);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn no_content() -> Reply {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn not_found() -> Reply {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

fn errors(status: StatusCode, list: &[&str]) -> Reply {
    reply(status, json!({ "errors": list }))
}

fn unprocessable(list: Vec<String>) -> Reply {
    reply(StatusCode::UNPROCESSABLE_ENTITY, json!({ "errors": list }))
}
