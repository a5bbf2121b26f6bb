//! The audit log: one JSON line per write to a store, apart from the diagnostic log.
//!
//! Each line says who (which credential), which request (`X-Request-Id`), what (the resource
//! type, its id, the operation) and what changed from what to what, attribute by attribute,
//! with membership changes. Attributes that are never returned (`password`) are named as
//! set, never shown. Only writes that succeeded are recorded: a refused write changed
//! nothing. `[audit] output` is `"stdout"` (the container's log, next to stderr's
//! diagnostics) or a file path (appended to). Lines are written whole, one at a time.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use crate::scim::patch::MemberOp;
use crate::scim::resource::Object;
use crate::scim::service::Change;

/// Where audit lines go (`[audit] output`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The process's standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// The audit log's writer.
pub struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
}

/// What a line says about the request besides the change.
pub struct Context<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// Which credential (`token:1a2b3c4d`, `jwt:<issuer> sub=<subject>`, `oauth:<client>`).
    pub credential: &'a str,
    /// The client's address.
    pub client: IpAddr,
    /// HTTP method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Response status.
    pub status: u16,
    /// Resource type.
    pub resource_type: &'a str,
    /// Operation (create, replace, patch, delete).
    pub operation: &'a str,
}

/// At most this many member ids are listed per kind of membership change; the count is
/// always given.
const MAX_IDS: usize = 1000;

impl Sink {
    /// Opens `output` (a file is created if missing, and appended to).
    pub fn open(output: &Output) -> std::io::Result<Sink> {
        let out: Box<dyn Write + Send> = match output {
            Output::Stdout => Box::new(std::io::stdout()),
            Output::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        Ok(Sink {
            out: Mutex::new(out),
        })
    }

    /// Writes the line for one write. A failure to write is logged, never fails the request
    /// (the write has happened).
    pub fn record(&self, cx: &Context<'_>, change: &Change) {
        let mut line = serde_json::to_vec(&entry(cx, change)).unwrap_or_default();
        line.push(b'\n');
        let written = match self.out.lock() {
            Ok(mut out) => out.write_all(&line).and_then(|()| out.flush()),
            Err(_) => Ok(()),
        };
        if let Err(e) = written {
            tracing::error!(error = %e, request_id = cx.request_id, "the audit line could not be written");
        }
    }
}

/// The JSON of one audit line.
pub fn entry(cx: &Context<'_>, change: &Change) -> Value {
    let time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut line = json!({
        "time": time,
        "request_id": cx.request_id,
        "credential": cx.credential,
        "client": cx.client.to_string(),
        "method": cx.method,
        "path": cx.path,
        "status": cx.status,
        "resource_type": cx.resource_type,
        "operation": cx.operation,
        "id": change.id,
        "changes": diff(change.before.as_ref(), change.after.as_ref(), &change.secrets),
    });
    if !change.members.is_empty() {
        line["members"] = members(&change.members);
    }
    line
}

/// Attribute by attribute, what changed: `{"name": {"from": …, "to": …}}`, one level into
/// extension objects (`urn:…:User:department`); `meta` is left out (it changes with every
/// write). A secret is `"(set; not shown)"`.
pub fn diff(before: Option<&Object>, after: Option<&Object>, secrets: &[String]) -> Value {
    let empty = Object::new();
    let (b, a) = (
        flat(before.unwrap_or(&empty)),
        flat(after.unwrap_or(&empty)),
    );
    let mut out = Map::new();
    for (k, from) in &b {
        let to = a.get(k).cloned().unwrap_or(Value::Null);
        if *from != to {
            out.insert(k.clone(), json!({"from": from, "to": to}));
        }
    }
    for (k, to) in &a {
        if !b.contains_key(k) {
            out.insert(k.clone(), json!({"from": null, "to": to}));
        }
    }
    for s in secrets {
        out.insert(s.clone(), Value::String("(set; not shown)".into()));
    }
    Value::Object(out)
}

/// The attributes of a resource, extension objects opened one level (`urn:…:department`),
/// without `meta`, `id` and `schemas`.
fn flat(attrs: &Object) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in attrs {
        if matches!(k.as_str(), "meta" | "id" | "schemas") {
            continue;
        }
        match v {
            Value::Object(o) if k.starts_with("urn:") => {
                for (sk, sv) in o {
                    out.insert(format!("{k}:{sk}"), sv.clone());
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// Membership changes: ids added and removed (at most [`MAX_IDS`] each, with counts), or
/// the new whole list, or "all" removed.
fn members(ops: &[MemberOp]) -> Value {
    let mut out = Map::new();
    let mut list = |key: &str, ids: &[String]| {
        let shown: Vec<&String> = ids.iter().take(MAX_IDS).collect();
        out.insert(key.to_owned(), json!({"count": ids.len(), "ids": shown}));
    };
    for op in ops {
        match op {
            MemberOp::Add(ids) => list("added", ids),
            MemberOp::Remove(ids) => list("removed", ids),
            MemberOp::Replace(ids) => list("replaced_with", ids),
            MemberOp::RemoveAll => list("removed_all", &[]),
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    /// What changed, attribute by attribute, extension attributes by their URN; meta left
    /// out; a secret named, its value nowhere.
    #[test]
    fn diff_names_what_changed_and_hides_secrets() {
        let before = obj(json!({"userName": "a", "active": true, "title": "x",
            "meta": {"lastModified": "1"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Tours"}}));
        let after = obj(json!({"userName": "a", "active": false, "nickName": "b",
            "meta": {"lastModified": "2"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Retail"}}));
        let d = diff(Some(&before), Some(&after), &["password".into()]);
        assert_eq!(
            d,
            json!({
                "active": {"from": true, "to": false},
                "title": {"from": "x", "to": null},
                "nickName": {"from": null, "to": "b"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": {"from": "Tours", "to": "Retail"},
                "password": "(set; not shown)"
            })
        );
    }
}
