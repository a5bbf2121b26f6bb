//! A resource's attributes as a store row gives them, written straight to the JSON a list
//! response sends, without first becoming a [`serde_json`] object.
//!
//! A [`Shape`] holds the same entries, in the same order, as the [`Object`] the mapping would
//! build from the row, its keys borrowed from the mapping. [`write_resource`] writes it as
//! [`render_attrs`](super::resource::render_attrs) followed by the default projection and
//! serialisation would: the same bytes, including `meta.version` over the same canonical
//! serialisation. A filter by `userName` spent about a third of its user-space instructions
//! on the object: a hashed `String` key per attribute, the version's walk, the render's key
//! moves, the projection's lookups, the serialiser's walk and the drop (`scripts/instructions.sh`).

use std::borrow::Cow;

use serde_json::Value as Json;

use super::list::LIST_URN;
use super::projection::Projection;
use super::resource::{BaseUrl, Fnv, Object};
use super::schema::{Attribute, ResourceType, Returned};

/// A key: the mapping's own name, or a key of a JSON object a store value held.
pub type Key<'k> = Cow<'k, str>;

/// The entries of an object, in insertion order.
pub type Entries<'k> = Vec<(Key<'k>, Node<'k>)>;

/// One value of a [`Shape`].
#[derive(Clone, Debug, PartialEq)]
pub enum Node<'k> {
    /// A value as the store gave it.
    Value(Json),
    /// A complex value built from several fields.
    Object(Entries<'k>),
    /// A multi-valued attribute built from several fields.
    List(Vec<Node<'k>>),
}

/// A resource's attributes, as [`Object`] would hold them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape<'k> {
    /// The top-level entries.
    pub entries: Entries<'k>,
}

/// Sets `key` to `node`: in its place when present (as [`Object::insert`] does), else last.
pub fn insert<'k>(entries: &mut Entries<'k>, key: &'k str, node: Node<'k>) {
    match entries.iter().position(|(k, _)| k == key) {
        Some(i) => entries[i].1 = node,
        None => entries.push((Cow::Borrowed(key), node)),
    }
}

/// The value of `key`, made by `make` (and added last) when absent.
pub fn slot<'e, 'k>(
    entries: &'e mut Entries<'k>,
    key: &'k str,
    make: impl FnOnce() -> Node<'k>,
) -> &'e mut Node<'k> {
    let i = match entries.iter().position(|(k, _)| k == key) {
        Some(i) => i,
        None => {
            entries.push((Cow::Borrowed(key), make()));
            entries.len() - 1
        }
    };
    &mut entries[i].1
}

impl<'k> Node<'k> {
    /// The entries, when this is an object (a JSON object from the store becomes one).
    pub fn as_object_mut(&mut self) -> Option<&mut Entries<'k>> {
        if let Node::Value(Json::Object(o)) = self {
            let o = std::mem::take(o);
            *self = Node::Object(
                o.into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Node::Value(v)))
                    .collect(),
            );
        }
        match self {
            Node::Object(e) => Some(e),
            _ => None,
        }
    }

    /// The values, when this is a list (a JSON array from the store becomes one).
    pub fn as_list_mut(&mut self) -> Option<&mut Vec<Node<'k>>> {
        if let Node::Value(Json::Array(a)) = self {
            let a = std::mem::take(a);
            *self = Node::List(a.into_iter().map(Node::Value).collect());
        }
        match self {
            Node::List(l) => Some(l),
            _ => None,
        }
    }

    /// The string value of `key`, when this is an object that has one.
    pub fn str_of(&self, key: &str) -> Option<&str> {
        match self {
            Node::Object(e) => e.iter().find(|(k, _)| k == key).and_then(|(_, n)| match n {
                Node::Value(Json::String(s)) => Some(s.as_str()),
                _ => None,
            }),
            Node::Value(Json::Object(o)) => o.get(key).and_then(Json::as_str),
            _ => None,
        }
    }

    /// As JSON.
    pub fn into_json(self) -> Json {
        match self {
            Node::Value(v) => v,
            Node::Object(e) => Json::Object(into_object(e)),
            Node::List(l) => Json::Array(l.into_iter().map(Node::into_json).collect()),
        }
    }

    /// Compact JSON, as `serde_json` writes the same value.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Node::Value(v) => value(out, v),
            Node::Object(entries) => write_entries(out, entries, None),
            Node::List(items) => {
                out.push(b'[');
                for (i, n) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    n.write(out);
                }
                out.push(b']');
            }
        }
    }
}

/// `{"key":value,…}`; with `spans`, where each `"key":value` is in `out`.
fn write_entries(out: &mut Vec<u8>, entries: &Entries<'_>, mut spans: Option<&mut Vec<Span>>) {
    out.push(b'{');
    for (i, (k, n)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let start = out.len();
        string(out, k);
        out.push(b':');
        n.write(out);
        if let Some(spans) = spans.as_deref_mut() {
            spans.push(Span {
                start,
                end: out.len(),
            });
        }
    }
    out.push(b'}');
}

fn into_object(entries: Entries<'_>) -> Object {
    let mut o = Object::with_capacity(entries.len());
    for (k, n) in entries {
        o.insert(k.into_owned(), n.into_json());
    }
    o
}

impl From<Object> for Shape<'static> {
    /// The entries of `attrs`, moved (not copied).
    fn from(attrs: Object) -> Self {
        Shape {
            entries: attrs
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), Node::Value(v)))
                .collect(),
        }
    }
}

impl Shape<'_> {
    /// Room for `n` top-level entries.
    pub fn with_capacity(n: usize) -> Self {
        Shape {
            entries: Vec::with_capacity(n),
        }
    }

    /// The attributes as an [`Object`] (for everything but the list response).
    pub fn into_object(self) -> Object {
        into_object(self.entries)
    }
}

/// Appends `v` as compact JSON (writing to a `Vec` cannot fail).
fn json(out: &mut Vec<u8>, v: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `v` as compact JSON, as `serde_json` writes it; strings and literals without its
/// serialiser.
fn value(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::String(s) => string(out, s),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Null => out.extend_from_slice(b"null"),
        v => json(out, v),
    }
}

/// `s` as a JSON string, byte for byte as `serde_json` writes it: copied whole when it holds
/// nothing to escape (no `"`, `\` or control character), as nearly every attribute value
/// and key does; else through `serde_json`. Its escaping, one byte at a time behind a
/// serialiser set up for each string, was half of writing a resource.
fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        return json(out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Whether `b` holds a byte JSON escapes: below 0x20, `"` or `\`. Eight bytes at a time:
/// `(x - 0x20…) & !x & 0x80…` is non-zero exactly when some byte of `x` is below 0x20, and
/// the same over `x ^ 0x22…` (`x ^ 0x5c…`) when some byte is `"` (`\`).
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH != 0;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        if below(x, 0x20) || below(x ^ (ONES * 0x22), 1) || below(x ^ (ONES * 0x5c), 1) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// A byte range of the canonical serialisation: one `"key":value` entry.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

/// Buffers reused across the resources of one response.
pub struct Scratch {
    canon: Vec<u8>,
    top: Vec<Span>,
    /// For each top-level entry, where its object's entries are in `inner` (`first..last`).
    nested: Vec<(usize, usize)>,
    inner: Vec<Span>,
    /// What the default projection keeps of each top-level entry.
    kept: Vec<Kept>,
}

impl Default for Scratch {
    /// Sized for a typical resource: growing them cost more than writing into them.
    fn default() -> Self {
        Scratch {
            canon: Vec::with_capacity(1024),
            top: Vec::with_capacity(16),
            nested: Vec::with_capacity(16),
            inner: Vec::with_capacity(16),
            kept: Vec::with_capacity(16),
        }
    }
}

/// Whether the default projection (RFC 7643 §2.2 `returned`) keeps an attribute.
fn shown(attr: Option<&Attribute>) -> bool {
    !matches!(
        attr.map(|a| a.returned),
        Some(Returned::Never | Returned::Request)
    )
}

/// What the default projection keeps of one top-level entry.
enum Kept {
    Nothing,
    All,
    /// An extension with some of its attributes dropped.
    Some,
}

/// One page of a list response with the default projection and no members: each
/// resource's JSON, comma-separated, as [`ListResponse`](super::list::ListResponse) would
/// write the rendered resources.
#[derive(Debug)]
pub struct JsonPage {
    /// Number of resources matching the filter.
    pub total: u64,
    /// Resources in `json`.
    pub count: usize,
    /// The resources, comma-separated.
    pub json: Vec<u8>,
}

impl JsonPage {
    /// An empty page of a result of `total` resources.
    pub fn new(total: u64) -> Self {
        JsonPage {
            total,
            count: 0,
            json: Vec::with_capacity(1024),
        }
    }

    fn next(&mut self) {
        if self.count > 0 {
            self.json.push(b',');
        }
        self.count += 1;
    }

    /// Adds resource `id` with attributes `attrs` (see [`write_resource`]); its version.
    pub fn push_stored(
        &mut self,
        rt: &ResourceType,
        id: &str,
        attrs: Object,
        base: &BaseUrl,
        scratch: &mut Scratch,
    ) -> String {
        self.push_shape(rt, id, Shape::from(attrs), base, scratch)
    }

    /// Adds resource `id` from its attributes as the row gave them (see [`write_resource`]);
    /// its version.
    pub fn push_shape(
        &mut self,
        rt: &ResourceType,
        id: &str,
        shape: Shape<'_>,
        base: &BaseUrl,
        scratch: &mut Scratch,
    ) -> String {
        self.next();
        if !shape
            .entries
            .iter()
            .any(|(k, _)| k == "schemas" || k == "id")
        {
            return write_resource(rt, id, shape, base, scratch, &mut self.json);
        }
        // Rendered, projected and serialised as the service does with any other projection.
        let attrs = shape.into_object();
        let version = super::resource::version(&attrs);
        let mut obj = super::resource::render_attrs(rt, id, attrs, version.clone(), base);
        Projection::default().apply(rt, &mut obj);
        json(&mut self.json, &obj);
        version
    }

    /// The `ListResponse` body (RFC 7644 §3.4.2) with this page at `start_index`.
    pub fn list_response(self, start_index: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json.len() + 160);
        out.extend_from_slice(b"{\"schemas\":[");
        json(&mut out, LIST_URN);
        out.extend_from_slice(b"],\"totalResults\":");
        json(&mut out, &self.total);
        out.extend_from_slice(b",\"itemsPerPage\":");
        json(&mut out, &self.count);
        out.extend_from_slice(b",\"startIndex\":");
        json(&mut out, &start_index);
        out.extend_from_slice(b",\"Resources\":[");
        out.extend_from_slice(&self.json);
        out.extend_from_slice(b"]}");
        out
    }
}

/// Writes resource `id` with attributes `shape` as the list response sends it with the
/// default projection (no `attributes`/`excludedAttributes`, nothing added after rendering)
/// to `out`: `schemas`, `id`, the attributes, then `meta` with `resourceType`, `location`
/// and `version`; the version. For a shape that holds neither `schemas` nor `id` (which
/// [`render_attrs`] would move).
///
/// [`render_attrs`]: super::resource::render_attrs
fn write_resource(
    rt: &ResourceType,
    id: &str,
    mut shape: Shape<'_>,
    base: &BaseUrl,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> String {
    // A JSON object from the store is an object like one built from fields: its entries are
    // what `meta` and an extension are made of.
    for (_, n) in &mut shape.entries {
        if matches!(n, Node::Value(Json::Object(_))) {
            n.as_object_mut();
        }
    }
    // The canonical serialisation, which the version is over, with where each entry is.
    let Scratch {
        canon,
        top,
        nested,
        inner,
        kept,
    } = scratch;
    canon.clear();
    top.clear();
    nested.clear();
    inner.clear();
    kept.clear();
    canon.push(b'{');
    for (i, (k, n)) in shape.entries.iter().enumerate() {
        if i > 0 {
            canon.push(b',');
        }
        let start = canon.len();
        string(canon, k);
        canon.push(b':');
        let first = inner.len();
        match n {
            Node::Object(entries) => write_entries(canon, entries, Some(inner)),
            n => n.write(canon),
        }
        top.push(Span {
            start,
            end: canon.len(),
        });
        nested.push((first, inner.len()));
    }
    canon.push(b'}');
    let mut h = Fnv::new();
    h.eat(canon);
    let version = h.version();

    // What the default projection keeps.
    kept.extend(
        shape
            .entries
            .iter()
            .map(|(k, n)| match (rt.extension(k), n) {
                (Some(ext), Node::Object(entries)) => {
                    let keep = entries
                        .iter()
                        .filter(|(name, _)| shown(ext.schema.attribute(name)))
                        .count();
                    if keep == 0 {
                        Kept::Nothing
                    } else if keep == entries.len() {
                        Kept::All
                    } else {
                        Kept::Some
                    }
                }
                (Some(_), _) => Kept::All,
                (None, _) => {
                    if shown(rt.common_attribute(k).or_else(|| rt.schema.attribute(k))) {
                        Kept::All
                    } else {
                        Kept::Nothing
                    }
                }
            }),
    );
    let present = |urn: &str| {
        shape
            .entries
            .iter()
            .zip(kept.iter())
            .any(|((k, _), kept)| k == urn && !matches!(kept, Kept::Nothing))
    };

    out.extend_from_slice(b"{\"schemas\":[");
    for (i, urn) in rt.schema_urns().enumerate() {
        if i == 0 || present(urn) {
            if i > 0 {
                out.push(b',');
            }
            string(out, urn);
        }
    }
    out.extend_from_slice(b"],\"id\":");
    string(out, id);
    let mut meta = None;
    for (i, (k, n)) in shape.entries.iter().enumerate() {
        let span = top[i];
        if k == "meta" {
            meta = Some((i, n));
            continue;
        }
        match kept[i] {
            Kept::Nothing => {}
            Kept::All => {
                out.push(b',');
                out.extend_from_slice(&canon[span.start..span.end]);
            }
            Kept::Some => {
                let (Some(ext), Node::Object(entries)) = (rt.extension(k), n) else {
                    continue;
                };
                out.push(b',');
                string(out, k);
                out.extend_from_slice(b":{");
                let (first, last) = nested[i];
                let mut any = false;
                for (s, (name, _)) in inner[first..last].iter().zip(entries) {
                    if shown(ext.schema.attribute(name)) {
                        if any {
                            out.push(b',');
                        }
                        any = true;
                        out.extend_from_slice(&canon[s.start..s.end]);
                    }
                }
                out.push(b'}');
            }
        }
    }
    if shown(
        rt.common_attribute("meta")
            .or_else(|| rt.schema.attribute("meta")),
    ) {
        out.extend_from_slice(b",\"meta\":{\"resourceType\":");
        string(out, &rt.name);
        if let Some((i, Node::Object(_))) = meta {
            let (first, last) = nested[i];
            for s in &inner[first..last] {
                out.push(b',');
                out.extend_from_slice(&canon[s.start..s.end]);
            }
        }
        out.extend_from_slice(b",\"location\":");
        string(out, &base.location(&rt.endpoint, id));
        out.extend_from_slice(b",\"version\":");
        string(out, &version);
        out.push(b'}');
    }
    out.push(b'}');
    version
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::resource::tests::user_type;
    use crate::scim::schema::USER_URN;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn v(j: Json) -> Node<'static> {
        Node::Value(j)
    }

    fn shape(entries: Vec<(&'static str, Node<'static>)>) -> Shape<'static> {
        let entries = entries.into_iter().map(|(k, n)| (Cow::Borrowed(k), n));
        Shape {
            entries: entries.collect(),
        }
    }

    fn obj(entries: Vec<(&'static str, Node<'static>)>) -> Node<'static> {
        Node::Object(shape(entries).entries)
    }

    /// A User type that also stores `password` (never returned), `nickName` (returned only
    /// on request) and the enterprise `employeeNumber`, returned never here.
    fn user_type_with_secrets() -> ResourceType {
        let mut rt = user_type();
        let full = crate::scim::schema::builtin(USER_URN)
            .cloned()
            .expect("user");
        for name in ["password", "nickName"] {
            let mut a = full.attribute(name).cloned().expect("attribute");
            if name == "nickName" {
                a.returned = Returned::Request;
            }
            rt.schema.attributes.push(a);
        }
        let ent = crate::scim::schema::builtin(ENT).cloned().expect("ent");
        let mut number = ent.attribute("employeeNumber").cloned().expect("number");
        number.returned = Returned::Never;
        rt.extensions[0].schema.attributes.push(number);
        rt
    }

    /// The bytes of a page holding `shape` written straight, and the same page from the
    /// object the shape stands for, rendered, projected and serialised as any response is.
    fn both(rt: &ResourceType, id: &str, shape: Shape<'_>) -> (String, String) {
        let base = BaseUrl("https://idm.example/scim/v2".into());
        let mut direct = JsonPage::new(3);
        let mut scratch = Scratch::default();
        let second = format!("{id}-2");
        let v1 = direct.push_shape(rt, id, shape.clone(), &base, &mut scratch);
        // A second resource through the same scratch buffers, and one from an object.
        let v2 = direct.push_shape(rt, &second, shape.clone(), &base, &mut scratch);
        let v3 = direct.push_stored(rt, id, shape.clone().into_object(), &base, &mut scratch);
        // The general path: rendered, projected, serialised.
        let mut general = JsonPage::new(3);
        for id in [id, &second, id] {
            let attrs = shape.clone().into_object();
            let version = crate::scim::resource::version(&attrs);
            assert_eq!([&v1, &v2, &v3].map(|v| v == &version), [true; 3]);
            let mut obj = crate::scim::resource::render_attrs(rt, id, attrs, version, &base);
            Projection::default().apply(rt, &mut obj);
            general.next();
            json(&mut general.json, &obj);
        }
        let text = |p: JsonPage| String::from_utf8(p.list_response(1)).expect("utf-8");
        (text(direct), text(general))
    }

    /// Written straight, a resource is byte for byte what the general path sends: the same
    /// order, `schemas` listing only the extensions still shown, `meta` last with the
    /// stored dates between `resourceType` and `location`, and the same version.
    #[test]
    fn same_bytes_as_the_rendered_object() {
        let rt = user_type_with_secrets();
        let shape = shape(vec![
            ("userName", v(json!("bjensen \"B\" \\ é\u{1}"))),
            (
                "meta",
                obj(vec![
                    ("created", v(json!("2024-05-01T10:00:00Z"))),
                    ("lastModified", v(json!("2024-05-02T10:00:00Z"))),
                ]),
            ),
            ("password", v(json!("secret"))),
            ("name", obj(vec![("familyName", v(json!("Jensen")))])),
            ("nickName", v(json!("Babs"))),
            ("active", v(json!(true))),
            (
                "emails",
                Node::List(vec![
                    obj(vec![
                        ("type", v(json!("work"))),
                        ("value", v(json!("b@example.com"))),
                        ("primary", v(json!(true))),
                    ]),
                    v(json!({"type": "home", "value": 1.5})),
                ]),
            ),
            (
                ENT,
                obj(vec![
                    ("employeeNumber", v(json!("701984"))),
                    ("department", v(json!("Tours"))),
                ]),
            ),
            ("x-unknown", v(json!([null, {"a": []}]))),
        ]);
        let (direct, general) = both(&rt, "7/ä", shape);
        assert_eq!(direct, general);
        let page: Json = serde_json::from_str(&direct).expect("json");
        let r = &page["Resources"][0];
        assert_eq!(r["schemas"], json!([USER_URN, ENT]));
        assert_eq!(r[ENT], json!({"department": "Tours"}));
        assert!(r.get("password").is_none() && r.get("nickName").is_none());
        assert_eq!(
            r["meta"]["location"],
            "https://idm.example/scim/v2/Users/7%2F%C3%A4"
        );
        assert_eq!(page["itemsPerPage"], 3);
        assert_eq!(page["totalResults"], 3);
    }

    /// An extension whose attributes are all hidden is left out, with its URN; one that is
    /// not an object, a `meta` that is one as the store gave it, and no `meta` at all are
    /// written as the general path writes them.
    #[test]
    fn extensions_and_meta_in_every_form() {
        let rt = user_type_with_secrets();
        let hidden = shape(vec![
            ("userName", v(json!("a"))),
            (ENT, obj(vec![("employeeNumber", v(json!("1")))])),
        ]);
        let (direct, general) = both(&rt, "1", hidden);
        assert_eq!(direct, general);
        assert!(!direct.contains(ENT));
        let odd = shape(vec![
            (ENT, v(json!("not an object"))),
            ("meta", v(json!({"created": "2024-05-01T10:00:00Z"}))),
            ("userName", v(json!("b"))),
        ]);
        let (direct, general) = both(&rt, "2", odd);
        assert_eq!(direct, general);
        let json_ext = shape(vec![
            ("meta", v(json!(7))),
            (ENT, v(json!({"employeeNumber": "1", "department": "D"}))),
        ]);
        let (direct, general) = both(&rt, "3", json_ext);
        assert_eq!(direct, general);
        let (direct, general) = both(&rt, "4", Shape::default());
        assert_eq!(direct, general);
    }

    /// A shape that holds `schemas` or `id` (which rendering moves to the front) takes the
    /// general path, and so reads the same.
    #[test]
    fn reserved_keys_take_the_general_path() {
        let rt = user_type();
        let shape = shape(vec![
            ("userName", v(json!("a"))),
            ("id", v(json!("spoofed"))),
        ]);
        let (direct, general) = both(&rt, "5", shape);
        assert_eq!(direct, general);
    }

    /// Inserting as [`Object`] does: a key set twice keeps its first place; a JSON object or
    /// array from the store is opened up to take more entries.
    #[test]
    fn entries_behave_as_an_object() {
        let mut e: Entries<'_> = Vec::new();
        insert(&mut e, "a", v(json!(1)));
        insert(&mut e, "b", v(json!(2)));
        insert(&mut e, "a", v(json!(3)));
        let shape = Shape { entries: e };
        assert_eq!(
            serde_json::to_string(&shape.into_object()).expect("json"),
            r#"{"a":3,"b":2}"#
        );
        let mut n = v(json!({"type": "work"}));
        assert_eq!(n.str_of("type"), Some("work"));
        n.as_object_mut()
            .expect("object")
            .push((Cow::Borrowed("value"), v(json!("x"))));
        assert_eq!(n.str_of("type"), Some("work"));
        assert_eq!(n.clone().into_json(), json!({"type": "work", "value": "x"}));
        assert!(n.as_list_mut().is_none());
        let mut l = v(json!([1]));
        l.as_list_mut().expect("list").push(v(json!(2)));
        assert_eq!(l.into_json(), json!([1, 2]));
    }

    /// Strings and values are written exactly as `serde_json` writes them: every ASCII byte
    /// at every position of an eight-byte word and in the tail, and non-ASCII text.
    #[test]
    fn strings_as_serde_json_writes_them() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "userName".into(),
            "Zoë Ünïcode ✓ 𝄞".into(),
            "W/\"0123456789abcdef\"".into(),
            "\u{7f}\u{80}\u{ff}\u{2028}".into(),
        ];
        for c in 0u8..0x80 {
            for at in [0, 3, 7, 8, 12] {
                let mut t = "abcdefghijklm".to_owned();
                t.replace_range(at..at + 1, &char::from(c).to_string());
                cases.push(t);
            }
        }
        for t in &cases {
            let mut ours = Vec::new();
            string(&mut ours, t);
            assert_eq!(ours, serde_json::to_vec(t).expect("json"), "{t:?}");
        }
        for v in [
            json!(true),
            json!(false),
            json!(null),
            json!(1.5),
            json!(-3),
            json!("a\"b"),
        ] {
            let mut ours = Vec::new();
            value(&mut ours, &v);
            assert_eq!(ours, serde_json::to_vec(&v).expect("json"), "{v}");
        }
    }
}
