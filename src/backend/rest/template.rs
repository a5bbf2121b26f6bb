//! Request templates of the REST store: URL paths with `{name}` placeholders, and JSON bodies
//! written as TOML trees whose string leaves may be placeholders.
//!
//! Parsed when the config is read ([`PathT::parse`], [`BodyT::from_toml`]), their names
//! resolved against the resource's mapped fields when the table is opened
//! ([`PathT::resolve`], [`BodyT::resolve`]), rendered on every request. Rendering never
//! builds text that is parsed again:
//!
//! - a path placeholder's value is percent-encoded as one path segment ([`segment`]), so
//!   `../`, `/`, `?` and `#` in a value stay inside that segment;
//! - a body is built as a [`serde_json::Value`] leaf by leaf: a leaf that is exactly one
//!   placeholder takes the value's own JSON type (a number stays a number), a leaf mixing
//!   text and placeholders is a string; a value can never add keys or close an object.
//!
//! A placeholder is `{name}` or `{name|number}` / `{name|string}` (cast the value: an id the
//! sidecar holds as text that the API wants as a JSON number). Names are map keys
//! (`userName`), a field's JSON path (`login`), or the request's own `id` and `member`.

use serde_json::Value as Json;

use crate::backend::Value;

/// What a placeholder stands for, once resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ref {
    /// Field `i` of the table.
    Field(usize),
    /// The addressed resource's id.
    Id,
    /// The member id of a member operation.
    Member,
}

/// A cast of a placeholder's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cast {
    /// The value's own type.
    None,
    /// A JSON number (text that is a number becomes one; other text stays text).
    Number,
    /// A JSON string.
    String,
}

/// A placeholder as written: a name and a cast, resolved later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The name as written.
    pub name: String,
    /// What it resolves to, once [`resolve`](PathT::resolve)d.
    pub to: Option<Ref>,
    /// Its cast.
    pub cast: Cast,
}

/// Text with placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A placeholder.
    Slot(Slot),
}

/// Values a template is rendered from.
pub struct Vars<'a> {
    /// Field values by index; `None` for a field that is not part of this request (an update
    /// of other fields): a body key holding only it is left out.
    pub fields: &'a [Option<Value>],
    /// The resource id.
    pub id: Option<&'a str>,
    /// The member id.
    pub member: Option<&'a str>,
}

impl Vars<'_> {
    fn get(&self, r: Ref) -> Option<Value> {
        match r {
            Ref::Field(i) => self.fields.get(i).cloned().flatten(),
            Ref::Id => self.id.map(|s| Value::Text(s.to_owned())),
            Ref::Member => self.member.map(|s| Value::Text(s.to_owned())),
        }
    }
}

/// Splits `text` into literal parts and placeholders. `Err` says what is malformed.
pub fn parse_parts(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("'}}' without '{{' in \"{text}\""));
        }
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("unclosed '{{' in \"{text}\""));
        };
        let inner = rest[open + 1..open + close].trim();
        let (name, cast) = match inner.split_once('|') {
            None => (inner, Cast::None),
            Some((n, "number")) => (n.trim(), Cast::Number),
            Some((n, "string")) => (n.trim(), Cast::String),
            Some((_, other)) => {
                return Err(format!(
                    "unknown cast '{other}' in \"{text}\" (use |number or |string)"
                ));
            }
        };
        if name.is_empty() || name.contains('{') {
            return Err(format!("empty or nested placeholder in \"{text}\""));
        }
        parts.push(Part::Slot(Slot {
            name: name.to_owned(),
            to: None,
            cast,
        }));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// Resolves every placeholder of `parts` with `lookup`; returns the names it could not.
fn resolve_parts(parts: &mut [Part], lookup: &dyn Fn(&str) -> Option<Ref>) -> Vec<String> {
    let mut unknown = Vec::new();
    for p in parts {
        if let Part::Slot(s) = p {
            s.to = lookup(&s.name);
            if s.to.is_none() {
                unknown.push(s.name.clone());
            }
        }
    }
    unknown
}

/// A URL path template (`/users/{id}.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathT {
    parts: Vec<Part>,
    text: String,
}

impl PathT {
    /// Parses a path; it must start with `/` and hold no `?` or `#` (query parameters are
    /// given as `query`, so that they are encoded too).
    pub fn parse(text: &str) -> Result<PathT, String> {
        if !text.starts_with('/') {
            return Err(format!("path \"{text}\" must start with '/'"));
        }
        if text.contains(['?', '#']) {
            return Err(format!(
                "path \"{text}\" holds '?' or '#'; give query parameters as query = {{ … }}"
            ));
        }
        Ok(PathT {
            parts: parse_parts(text)?,
            text: text.to_owned(),
        })
    }

    /// The path as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Resolves placeholders; `Err` lists the unknown names.
    pub fn resolve(&mut self, lookup: &dyn Fn(&str) -> Option<Ref>) -> Result<(), Vec<String>> {
        let unknown = resolve_parts(&mut self.parts, lookup);
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(unknown)
        }
    }

    /// Whether a placeholder of the path stands for `r`.
    pub fn uses(&self, r: Ref) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Slot(s) if s.to == Some(r)))
    }

    /// The path with every placeholder's value percent-encoded as a path segment. `Err`
    /// names a placeholder without a value (or an empty one: `/users/.json` would address
    /// another resource).
    pub fn render(&self, vars: &Vars<'_>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Slot(s) => {
                    let v =
                        s.to.and_then(|r| vars.get(r))
                            .map(|v| text_of(&v))
                            .filter(|t| !t.is_empty())
                            .ok_or_else(|| format!("no value for {{{}}} in the path", s.name))?;
                    out.push_str(&segment(&v));
                }
            }
        }
        Ok(out)
    }
}

/// A value as text in a URL (numbers in decimal, booleans as `true`/`false`, list items
/// joined by commas).
pub fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::List(l) => l.iter().map(text_of).collect::<Vec<_>>().join(","),
    }
}

/// Percent-encodes `s` as one path segment (RFC 3986 §3.3): only unreserved characters stay
/// as they are, so `/`, `?`, `#`, `%` and `.` of `..` cannot change the path's shape.
pub fn segment(s: &str) -> String {
    // `.` and `..` are segments of their own meaning: a value that is exactly one of those is
    // encoded whole.
    if s == "." || s == ".." {
        return s.replace('.', "%2E");
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON body template.
#[derive(Clone, Debug, PartialEq)]
pub enum BodyT {
    /// An object; entries whose value renders to nothing are left out.
    Object(Vec<(String, BodyT)>),
    /// An array.
    Array(Vec<BodyT>),
    /// A constant.
    Const(Json),
    /// A string leaf with placeholders.
    Text(Vec<Part>),
}

impl BodyT {
    /// The template of a TOML tree: tables are objects, arrays arrays, strings with `{…}`
    /// placeholders templates, every other value a constant. `Err` names what is malformed.
    pub fn from_toml(v: &toml::Value) -> Result<BodyT, String> {
        Ok(match v {
            toml::Value::Table(t) => BodyT::Object(
                t.iter()
                    .map(|(k, v)| Ok((k.clone(), BodyT::from_toml(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            toml::Value::Array(a) => {
                BodyT::Array(a.iter().map(BodyT::from_toml).collect::<Result<_, _>>()?)
            }
            toml::Value::String(s) => {
                let parts = parse_parts(s)?;
                if parts.iter().all(|p| matches!(p, Part::Text(_))) {
                    BodyT::Const(Json::String(s.clone()))
                } else {
                    BodyT::Text(parts)
                }
            }
            toml::Value::Integer(i) => BodyT::Const(Json::from(*i)),
            toml::Value::Float(f) => BodyT::Const(
                serde_json::Number::from_f64(*f)
                    .map(Json::Number)
                    .unwrap_or(Json::Null),
            ),
            toml::Value::Boolean(b) => BodyT::Const(Json::Bool(*b)),
            toml::Value::Datetime(d) => BodyT::Const(Json::String(d.to_string())),
        })
    }

    /// The default body: `{ wrap: { path: {field}, … } }` (dotted paths nested; no wrap
    /// when `wrap` is empty).
    pub fn default_for(wrap: &[String], paths: &[(usize, Vec<String>)]) -> BodyT {
        let mut root = BodyT::Object(Vec::new());
        for (i, path) in paths {
            insert(
                &mut root,
                path,
                BodyT::Text(vec![Part::Slot(Slot {
                    name: path.join("."),
                    to: Some(Ref::Field(*i)),
                    cast: Cast::None,
                })]),
            );
        }
        for w in wrap.iter().rev() {
            root = BodyT::Object(vec![(w.clone(), root)]);
        }
        root
    }

    /// Resolves placeholders; `Err` lists the unknown names.
    pub fn resolve(&mut self, lookup: &dyn Fn(&str) -> Option<Ref>) -> Result<(), Vec<String>> {
        let mut unknown = Vec::new();
        self.walk(&mut |parts| unknown.extend(resolve_parts(parts, lookup)));
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(unknown)
        }
    }

    fn walk(&mut self, f: &mut dyn FnMut(&mut [Part])) {
        match self {
            BodyT::Object(o) => o.iter_mut().for_each(|(_, v)| v.walk(f)),
            BodyT::Array(a) => a.iter_mut().for_each(|v| v.walk(f)),
            BodyT::Const(_) => {}
            BodyT::Text(parts) => f(parts),
        }
    }

    /// The fields the template writes.
    pub fn fields(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut t = self.clone();
        t.walk(&mut |parts| {
            for p in parts.iter() {
                if let Part::Slot(Slot {
                    to: Some(Ref::Field(i)),
                    ..
                }) = p
                {
                    out.push(*i);
                }
            }
        });
        out
    }

    /// Renders the body. A placeholder without a value (a field this request does not write)
    /// makes its leaf render to nothing, and an object entry holding nothing is left out.
    pub fn render(&self, vars: &Vars<'_>) -> Json {
        self.render_opt(vars).unwrap_or(Json::Null)
    }

    fn render_opt(&self, vars: &Vars<'_>) -> Option<Json> {
        match self {
            BodyT::Object(entries) => {
                let mut m = serde_json::Map::new();
                let mut any = entries.is_empty();
                for (k, v) in entries {
                    if let Some(j) = v.render_opt(vars) {
                        m.insert(k.clone(), j);
                        any = true;
                    }
                }
                any.then_some(Json::Object(m))
            }
            BodyT::Array(a) => Some(Json::Array(
                a.iter().filter_map(|v| v.render_opt(vars)).collect(),
            )),
            BodyT::Const(c) => Some(c.clone()),
            BodyT::Text(parts) => {
                if let [Part::Slot(s)] = parts.as_slice() {
                    let v = vars.get(s.to?)?;
                    return Some(cast(json_of(&v), s.cast));
                }
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Text(t) => out.push_str(t),
                        Part::Slot(s) => out.push_str(&text_of(&vars.get(s.to?)?)),
                    }
                }
                Some(Json::String(out))
            }
        }
    }
}

/// Puts `leaf` at `path` under an object template, creating objects on the way.
fn insert(node: &mut BodyT, path: &[String], leaf: BodyT) {
    let BodyT::Object(entries) = node else { return };
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        entries.push((head.clone(), leaf));
        return;
    }
    let i = match entries.iter().position(|(k, _)| k == head) {
        Some(i) => i,
        None => {
            entries.push((head.clone(), BodyT::Object(Vec::new())));
            entries.len() - 1
        }
    };
    insert(&mut entries[i].1, rest, leaf);
}

/// A store value as JSON: bytes as text, lists as arrays.
pub fn json_of(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Real(r) => serde_json::Number::from_f64(*r)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Text(t) => Json::String(t.clone()),
        Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(l) => Json::Array(l.iter().map(json_of).collect()),
    }
}

fn cast(j: Json, c: Cast) -> Json {
    match (c, j) {
        (Cast::Number, Json::String(s)) => match s.parse::<i64>() {
            Ok(i) => Json::from(i),
            Err(_) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Json::String(s), Json::Number),
        },
        (Cast::Number, Json::Bool(b)) => Json::from(i64::from(b)),
        (Cast::String, Json::String(s)) => Json::String(s),
        (Cast::String, Json::Null) => Json::Null,
        (Cast::String, Json::Array(a)) => Json::Array(a),
        (Cast::String, other) => Json::String(other.to_string()),
        (_, j) => j,
    }
}

/// The value at a dotted path of a JSON document (`data.items`); the document itself for an
/// empty path.
pub fn at<'j>(doc: &'j Json, path: &[String]) -> Option<&'j Json> {
    path.iter().try_fold(doc, |j, k| j.get(k.as_str()))
}

/// A dotted path split into its keys (`profile.title` → `["profile", "title"]`); empty for
/// `""`.
pub fn split_path(p: &str) -> Vec<String> {
    if p.is_empty() {
        Vec::new()
    } else {
        p.split('.').map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<Ref> {
        match name {
            "login" => Some(Ref::Field(0)),
            "status" => Some(Ref::Field(1)),
            "id" => Some(Ref::Id),
            "member" => Some(Ref::Member),
            _ => None,
        }
    }

    fn body(toml_text: &str) -> BodyT {
        let v: toml::Table = toml::from_str(toml_text).expect("toml");
        let mut b = BodyT::from_toml(&toml::Value::Table(v)).expect("template");
        b.resolve(&lookup).expect("resolves");
        b
    }

    /// A value holding JSON syntax stays one string: it cannot close the object or add keys.
    #[test]
    fn values_cannot_inject_json() {
        let b = body(r#"user = { login = "{login}", status = "{status}", note = "by {login}" }"#);
        let evil = r#"x"},"admin":true,"x":{""#.to_owned();
        let fields = [Some(Value::Text(evil.clone())), Some(Value::Int(1))];
        let j = b.render(&Vars {
            fields: &fields,
            id: None,
            member: None,
        });
        assert_eq!(
            j,
            serde_json::json!({"user": {"login": evil, "status": 1, "note": format!("by {evil}")}})
        );
        assert!(j["user"].get("admin").is_none());
        assert!(j.get("admin").is_none());
    }

    /// One placeholder keeps the value's type; a cast turns an id into a number; constants
    /// stay typed; fields the request does not write are left out.
    #[test]
    fn leaves_are_typed_and_absent_fields_left_out() {
        let b = body(
            r#"user_id = "{member|number}"
admin = false
n = 3
user = { login = "{login}", status = "{status}" }"#,
        );
        let fields = [None, Some(Value::Int(3))];
        let j = b.render(&Vars {
            fields: &fields,
            id: None,
            member: Some("42"),
        });
        assert_eq!(
            j,
            serde_json::json!({"user_id": 42, "admin": false, "n": 3, "user": {"status": 3}})
        );
        let fields = [Some(Value::Null), None];
        let j = b.render(&Vars {
            fields: &fields,
            id: None,
            member: Some("x7"),
        });
        assert_eq!(j["user_id"], serde_json::json!("x7"));
        assert_eq!(j["user"], serde_json::json!({"login": null}));
    }

    #[test]
    fn default_body_nests_dotted_paths_under_the_wrap() {
        let b = BodyT::default_for(
            &["user".to_owned()],
            &[
                (0, split_path("login")),
                (1, split_path("profile.title")),
                (2, split_path("profile.dept")),
            ],
        );
        let fields = [
            Some(Value::Text("a".into())),
            Some(Value::Text("t".into())),
            Some(Value::Bool(true)),
        ];
        let j = b.render(&Vars {
            fields: &fields,
            id: None,
            member: None,
        });
        assert_eq!(
            j,
            serde_json::json!({"user": {"login": "a", "profile": {"title": "t", "dept": true}}})
        );
        assert_eq!(b.fields(), vec![0, 1, 2]);
    }

    /// Every value in a path is one segment: separators, dot segments, query and fragment
    /// characters, spaces and non-ASCII are encoded.
    #[test]
    fn path_values_are_percent_encoded_segments() {
        let mut p = PathT::parse("/groups/{id}/users/{member}.json").expect("path");
        p.resolve(&lookup).expect("resolves");
        let render = |id: &str, m: &str| {
            p.render(&Vars {
                fields: &[],
                id: Some(id),
                member: Some(m),
            })
            .expect("renders")
        };
        assert_eq!(render("3", "7"), "/groups/3/users/7.json");
        assert_eq!(render("..", "a/b"), "/groups/%2E%2E/users/a%2Fb.json");
        assert_eq!(
            render("../admin", "x?y#z"),
            "/groups/..%2Fadmin/users/x%3Fy%23z.json"
        );
        assert_eq!(render("a b%", "é"), "/groups/a%20b%25/users/%C3%A9.json");
        assert!(
            p.render(&Vars {
                fields: &[],
                id: Some(""),
                member: Some("1")
            })
            .is_err()
        );
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(PathT::parse("users/{id}").is_err());
        assert!(PathT::parse("/users?x={id}").is_err());
        assert!(parse_parts("/users/{id").is_err());
        assert!(parse_parts("/users/id}").is_err());
        assert!(parse_parts("{}").is_err());
        assert!(parse_parts("{id|lower}").is_err());
        let mut p = PathT::parse("/users/{nope}.json").expect("parses");
        assert_eq!(p.resolve(&lookup), Err(vec!["nope".to_owned()]));
    }

    #[test]
    fn dotted_paths_read_nested_values() {
        let doc = serde_json::json!({"data": {"items": [1]}});
        assert_eq!(
            at(&doc, &split_path("data.items")),
            Some(&serde_json::json!([1]))
        );
        assert_eq!(at(&doc, &split_path("")), Some(&doc));
        assert_eq!(at(&doc, &split_path("data.nope")), None);
    }
}
