//! `scim-sidecar explain`: what one SCIM request would do to the stores, without doing it.
//!
//! The request runs through the same service, mapping and store code as `run` serves it,
//! inside a [`Recording`]: while one is active, every store writes down each statement it
//! sends (with its bound values) and ends every transaction with a rollback instead of a
//! commit, and statements that would run outside a transaction run inside one. The stores
//! are really asked (so a uniqueness clash, a refused hook or a missing row shows exactly
//! as it would), and nothing stays written.
//!
//! The recording travels with the request's task ([`tokio::task_local`]); a store that hands
//! work to another thread takes [`current`] with it.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Method;

use crate::backend::Value;
use crate::scim::resource::BaseUrl;
use crate::scim::service::{Request, Response};

tokio::task_local! {
    static RECORDING: Arc<Recording>;
}

/// What the stores did for one request, in order.
#[derive(Debug, Default)]
pub struct Recording {
    steps: Mutex<Vec<Step>>,
}

/// One thing a store did.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The store (`[backend.NAME]`).
    pub store: String,
    /// The statement or operation, as sent.
    pub text: String,
    /// Its bound values, in order, as literals (`'alice'`, `42`, `NULL`).
    pub params: Vec<String>,
}

/// The recording of the current task, when `explain` runs it.
pub fn current() -> Option<Arc<Recording>> {
    RECORDING.try_with(Arc::clone).ok()
}

impl Recording {
    /// Writes down one statement of `store`.
    pub fn record(&self, store: &str, text: &str, params: Vec<String>) {
        if let Ok(mut steps) = self.steps.lock() {
            steps.push(Step {
                store: store.to_owned(),
                text: text.to_owned(),
                params,
            });
        }
    }

    /// The steps so far.
    pub fn steps(&self) -> Vec<Step> {
        self.steps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A value as an SQL literal, for reading (not for sending: statements bind their values).
pub fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Bytes(b) => {
            let mut out = String::from("x'");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
            out.push('\'');
            out
        }
        Value::List(l) => format!("[{}]", l.iter().map(literal).collect::<Vec<_>>().join(", ")),
    }
}

/// What `explain` found: the statements, then the answer the client would have had.
pub struct Explained {
    /// The statements, in the order they were sent.
    pub steps: Vec<Step>,
    /// The response.
    pub response: Response,
}

/// Why `method path` cannot be explained with `config`: it writes to a resource type whose
/// store cannot take a write back (an LDAP directory, a REST API), so running it would do
/// it. `None` for reads, and for writes that only reach SQL stores. `path` is below the
/// base path; `/Bulk` may write to any resource type.
pub fn refusal(config: &crate::config::Config, method: &Method, path: &str) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let segment = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let bulk = segment.eq_ignore_ascii_case("Bulk");
    config
        .resources
        .iter()
        .filter(|r| {
            bulk || r
                .endpoint
                .trim_start_matches('/')
                .eq_ignore_ascii_case(segment)
        })
        .find_map(|r| {
            let b = config.backends.iter().find(|b| b.name == r.backend)?;
            (!b.store.rolls_back()).then(|| {
                format!(
                    "[resource.{}] is kept in [backend.{}] ({}), which cannot take a write back, \
                     and explain takes back every write it shows: this {method} would really be \
                     done. Explain a GET, or point a copy of the config at a test instance of \
                     that store",
                    r.name,
                    b.name,
                    b.store.kind(),
                )
            })
        })
}

/// Runs one SCIM request against `scim` with the stores recording and rolling back.
/// `path` is below the base path (`/Users`, `/Groups/42?attributes=members`).
pub async fn run<P: crate::scim::service::Provider>(
    scim: &crate::scim::service::Service<P>,
    base: &str,
    method: &Method,
    path: &str,
    body: Bytes,
) -> Explained {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let recording = Arc::new(Recording::default());
    let request = Request {
        method,
        path,
        query,
        if_match: None,
        if_none_match: None,
        body,
        base: BaseUrl(base.to_owned()),
        audit: false,
    };
    let response = RECORDING
        .scope(recording.clone(), scim.handle(request))
        .await;
    Explained {
        steps: recording.steps(),
        response,
    }
}

/// The report `explain` prints: each statement with its values under it, then the status
/// and body the client would have had.
pub fn report(e: &Explained) -> String {
    let mut out = String::new();
    if e.steps.is_empty() {
        out.push_str("-- no statement sent to a store\n");
    }
    let mut store = "";
    for s in &e.steps {
        if s.store != store {
            store = &s.store;
            let _ = writeln!(out, "-- [backend.{store}]");
        }
        let _ = writeln!(out, "{};", s.text);
        // Named as the statement numbers them: PostgreSQL `$1`, SQLite `?1`.
        let sigil = if s.text.contains("$1") { '$' } else { '?' };
        for (i, p) in s.params.iter().enumerate() {
            let _ = writeln!(out, "--   {sigil}{} = {p}", i + 1);
        }
    }
    if e.steps.iter().any(|s| s.text == "ROLLBACK") {
        out.push_str("-- explain rolls every transaction back: nothing was written\n");
    }
    let _ = writeln!(out, "\n{}", e.response.status);
    if let Some(body) = &e.response.body {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
            }
            Err(_) => {
                let _ = writeln!(out, "{}", String::from_utf8_lossy(body));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_as_sql() {
        assert_eq!(literal(&Value::Text("O'Brien".into())), "'O''Brien'");
        assert_eq!(literal(&Value::Null), "NULL");
        assert_eq!(literal(&Value::Bytes(vec![0, 255])), "x'00ff'");
        assert_eq!(
            literal(&Value::List(vec![Value::Int(1), Value::Bool(true)])),
            "[1, true]"
        );
    }

    #[tokio::test]
    async fn the_recording_belongs_to_its_task() {
        assert!(current().is_none());
        let r = Arc::new(Recording::default());
        RECORDING
            .scope(r.clone(), async {
                if let Some(c) = current() {
                    c.record("db", "SELECT 1", vec![]);
                }
            })
            .await;
        assert!(current().is_none());
        assert_eq!(r.steps().len(), 1);
    }
}
