//! Resource bodies: normalising what clients send and rendering what they get back.
//!
//! [`Normalizer`] turns a request body (POST, PUT, or a PATCH value) into the canonical form
//! the rest of the crate relies on: attribute names in their schema case, extension attributes
//! under their URN, values type-checked, read-only attributes dropped (RFC 7644 §3.5.1),
//! attributes the service provider does not store ignored or rejected by policy, strings
//! checked and put in NFC ([`super::text`]), and the membership attribute split out. [`render`] builds the response representation from a
//! stored resource: `schemas`, `id`, attributes, members with `$ref`, and `meta` with
//! `location` and `version`.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use super::dialect::{self, KeyPath};
use super::error::ScimError;
use super::schema::{
    AttrType, Attribute, GROUP_URN, Home, Mutability, ResolveError, Resolved, ResourceType,
    Uniqueness,
};
use super::text;

/// A JSON object: a resource's attributes in canonical form.
pub type Object = Map<String, Value>;

/// What to do with attributes a request carries that the mapping does not store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnknownPolicy {
    /// Drop them (logged at debug level and counted): identity providers send their whole
    /// attribute set whether or not the application has a place for it.
    #[default]
    Ignore,
    /// Answer 400 `invalidValue` naming the attribute.
    Reject,
}

/// A resource as the store hands it to the protocol layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The SCIM `id`: the store's own key.
    pub id: String,
    /// Canonical attributes; `meta` may carry `created` and `lastModified`.
    pub attrs: Object,
    /// Members, when the resource type has a membership attribute and they were asked for.
    pub members: Option<Vec<Member>>,
}

/// One value of a membership attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's SCIM id.
    pub value: String,
    /// The member's resource type name (`User`, `Group`), shared by the members of a list.
    pub resource_type: Option<std::sync::Arc<str>>,
    /// A display name, when the store provides one.
    pub display: Option<String>,
}

/// Normalises request bodies against one resource type; collects the attributes it ignored.
pub struct Normalizer<'a> {
    rt: &'a ResourceType,
    policy: UnknownPolicy,
    /// Paths of attributes that were ignored because they are not stored.
    pub ignored: Vec<String>,
}

/// One normalised key of a body: an attribute with its value (`None`: no value), or the
/// membership attribute's ids.
#[derive(Debug)]
pub enum Entry<'a> {
    /// An attribute or sub-attribute and its normalised value.
    Attr(Resolved<'a>, Option<Value>),
    /// The membership attribute's member ids.
    Members(Vec<String>),
}

/// A normalised POST or PUT body.
#[derive(Debug, Default)]
pub struct Input {
    /// Canonical attributes.
    pub attrs: Object,
    /// Member ids, when the body carried the membership attribute.
    pub members: Option<Vec<String>>,
}

impl<'a> Normalizer<'a> {
    /// A normaliser for `rt` with the given policy for unknown attributes.
    pub fn new(rt: &'a ResourceType, policy: UnknownPolicy) -> Self {
        Normalizer {
            rt,
            policy,
            ignored: Vec::new(),
        }
    }

    /// Normalises a full resource body (POST, PUT). The body must be an object listing the
    /// resource type's core schema in `schemas` (RFC 7643 §3); other URNs there are ignored.
    pub fn resource(&mut self, body: Value) -> Result<Input, ScimError> {
        let obj = message(body, &self.rt.schema.id, "the request body")?;
        let mut input = Input::default();
        self.attributes(obj, &mut input)?;
        Ok(input)
    }

    /// Normalises an object of attributes into `into`: a body, or the value of a path-less
    /// PATCH operation (whose keys may be dotted or URN-qualified, see [`dialect::split_key`]).
    pub fn attributes(&mut self, obj: Object, into: &mut Input) -> Result<(), ScimError> {
        for entry in self.entries(obj)? {
            match entry {
                Entry::Attr(r, v) => put(&mut into.attrs, &r, v),
                Entry::Members(ids) => into.members = Some(ids),
            }
        }
        Ok(())
    }

    /// Resolves and normalises every key of an object, keeping explicit `null`s as `None`
    /// (PATCH `replace` uses them to clear). Unknown keys are ignored or rejected by policy;
    /// read-only ones are dropped.
    pub fn entries(&mut self, obj: Object) -> Result<Vec<Entry<'a>>, ScimError> {
        let mut out = Vec::with_capacity(obj.len());
        for (key, value) in obj {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            let rt = self.rt;
            let is_schema = |u: &str| rt.schema_urns().any(|s| s.eq_ignore_ascii_case(u));
            match dialect::split_key(&key, is_schema) {
                KeyPath::Urn(urn) => self.extension_object(urn, value, &mut out)?,
                KeyPath::Qualified { urn, name, sub } => {
                    self.attribute(Some(urn), name, sub, value, &mut out)?
                }
                KeyPath::Plain { name, sub } => self.attribute(None, name, sub, value, &mut out)?,
            }
        }
        Ok(out)
    }

    /// The object under a schema URN key: the extension's attributes (or, rarely, the core's).
    fn extension_object(
        &mut self,
        urn: &str,
        value: Value,
        out: &mut Vec<Entry<'a>>,
    ) -> Result<(), ScimError> {
        let served = self.rt.schema_urns().any(|s| s.eq_ignore_ascii_case(urn));
        if !served {
            // RFC 7644 §3.3 lets clients send extensions the server does not know; Entra and
            // Okta send their full attribute set. Ignore (or reject) the whole object.
            return self.skip(urn.to_owned(), ResolveError::UnknownSchema(urn.to_owned()));
        }
        match value {
            Value::Null => Ok(()),
            Value::Object(obj) => {
                for (name, v) in obj {
                    let (name, sub) = match name.split_once('.') {
                        Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
                        None => (name, None),
                    };
                    self.attribute(Some(urn), &name, sub.as_deref(), v, out)?;
                }
                Ok(())
            }
            _ => Err(ScimError::invalid_syntax(format!(
                "\"{urn}\" must be a JSON object"
            ))),
        }
    }

    /// One attribute (or sub-attribute) of the body.
    fn attribute(
        &mut self,
        urn: Option<&str>,
        name: &str,
        sub: Option<&str>,
        value: Value,
        out: &mut Vec<Entry<'a>>,
    ) -> Result<(), ScimError> {
        let rt = self.rt;
        let r = match rt.resolve_parts(urn, name, sub) {
            Ok(r) => r,
            Err(why) => {
                let shown = match sub {
                    Some(s) => format!("{name}.{s}"),
                    None => name.to_owned(),
                };
                return self.skip(shown, why);
            }
        };
        // RFC 7644 §3.5.1: read-only attributes in a request body are ignored (`id`, `meta`,
        // `groups`); so are read-only sub-attributes (`manager.displayName`).
        if r.attr.mutability == Mutability::ReadOnly
            || r.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
        {
            return Ok(());
        }
        if rt.membership.as_deref() == Some(r.attr.name.as_str()) && r.home != Home::Common {
            if r.sub.is_some() {
                return Err(ScimError::invalid_value(format!(
                    "'{}' must be given as a list of members",
                    r.attr.name
                )));
            }
            out.push(Entry::Members(member_ids(&r.attr.name, value)?));
            return Ok(());
        }
        let normalized = self.value(&r, value)?;
        out.push(Entry::Attr(r, normalized));
        Ok(())
    }

    /// Normalises a value for a resolved attribute path: type checks, dialect coercions, and
    /// sub-attribute filtering of complex values. `Ok(None)` means "no value" (JSON `null` or
    /// an empty array, RFC 7643 §2.5).
    pub fn value(&mut self, r: &Resolved<'_>, value: Value) -> Result<Option<Value>, ScimError> {
        match r.sub {
            Some(sub) => self.single(r, sub, value, self.identifier(sub, false)),
            None => self.attr_value(r, r.attr, value),
        }
    }

    /// Whether `attr` identifies its resource, so its strings get [`text::check`]'s strict
    /// rules: `userName`, `externalId`, a Group's `displayName` (each at the top level), and
    /// anything unique.
    fn identifier(&self, attr: &Attribute, top: bool) -> bool {
        attr.uniqueness != Uniqueness::None
            || top
                && (attr.name == "userName"
                    || attr.name == "externalId"
                    || attr.name == "displayName" && self.rt.schema.id == GROUP_URN)
    }

    /// Whether an empty string is refused for `attr` (an identifier the resource cannot be
    /// without: `userName`, a Group's `displayName`, or a required identifier).
    fn must_have_text(&self, attr: &Attribute) -> bool {
        attr.required
            || attr.name == "userName"
            || attr.name == "displayName" && self.rt.schema.id == GROUP_URN
    }

    /// A whole attribute's value, multi-valued or not.
    fn attr_value(
        &mut self,
        shown: &dyn fmt::Display,
        attr: &Attribute,
        value: Value,
    ) -> Result<Option<Value>, ScimError> {
        if value.is_null() {
            return Ok(None);
        }
        let identifier = self.identifier(attr, true);
        if !attr.multi_valued {
            return self.single(shown, attr, value, identifier);
        }
        let items = match value {
            Value::Array(items) => items,
            // Lenient: one value where an array is expected is an array of one.
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let item = if attr.is_complex() {
                dialect::coerce_multi_complex_item(item, attr.sub("value").is_some())
            } else {
                item
            };
            if let Some(v) = self.single(shown, attr, item, identifier)? {
                out.push(v);
            }
        }
        Ok(if out.is_empty() {
            None
        } else {
            Some(Value::Array(out))
        })
    }

    /// One value of `attr` (a single-valued attribute, one element of a multi-valued one, or a
    /// sub-attribute). Strings are checked by [`text::check`] (strictly when `identifier`)
    /// and come out in NFC.
    fn single(
        &mut self,
        shown: &dyn fmt::Display,
        attr: &Attribute,
        value: Value,
        identifier: bool,
    ) -> Result<Option<Value>, ScimError> {
        if value.is_null() {
            return Ok(None);
        }
        let value = match value {
            Value::String(s) if attr.ty.is_textual() => {
                let required = identifier && self.must_have_text(attr);
                match text::check(&s, identifier, required) {
                    Ok(Cow::Borrowed(_)) => Value::String(s),
                    Ok(Cow::Owned(nfc)) => Value::String(nfc),
                    Err(why) => {
                        return Err(ScimError::invalid_value(format!(
                            "attribute '{shown}' {why}"
                        )));
                    }
                }
            }
            other => other,
        };
        let value = if attr.is_complex() && !attr.multi_valued {
            dialect::coerce_single_complex(value, attr.sub("value").is_some())
        } else {
            value
        };
        let ok = match attr.ty {
            AttrType::String | AttrType::Reference | AttrType::Binary => value.is_string(),
            AttrType::Boolean => {
                return match dialect::coerce_bool(&value) {
                    Some(b) => Ok(Some(Value::Bool(b))),
                    None => Err(type_error(shown, "a boolean", &value)),
                };
            }
            AttrType::Integer => value.is_i64() || value.is_u64() && value.as_i64().is_some(),
            AttrType::Decimal => value.is_number(),
            AttrType::DateTime => match &value {
                Value::String(s) => parse_datetime(s).is_some(),
                _ => false,
            },
            AttrType::Complex => {
                let Value::Object(obj) = value else {
                    return Err(type_error(shown, "a JSON object", &value));
                };
                let mut out = Object::new();
                for (k, v) in obj {
                    let Some(sub) = attr.sub(&k) else {
                        self.skip(format!("{shown}.{k}"), ResolveError::Unknown(k.clone()))?;
                        continue;
                    };
                    if sub.mutability == Mutability::ReadOnly {
                        continue;
                    }
                    let strict = self.identifier(sub, false);
                    if let Some(v) = self.single(&Dotted(shown, &sub.name), sub, v, strict)? {
                        out.insert(sub.name.clone(), v);
                    }
                }
                return Ok(if out.is_empty() {
                    None
                } else {
                    Some(Value::Object(out))
                });
            }
        };
        if ok {
            Ok(Some(value))
        } else {
            let want = match attr.ty {
                AttrType::Integer => "an integer",
                AttrType::Decimal => "a number",
                AttrType::DateTime => "a dateTime string such as \"2024-05-01T12:00:00Z\"",
                _ => "a string",
            };
            Err(type_error(shown, want, &value))
        }
    }

    /// Records (or, by policy, rejects) an attribute that is not stored: `Ok` to go on
    /// without it, or the 400 the reject policy asks for.
    pub fn skip(&mut self, shown: String, why: ResolveError) -> Result<(), ScimError> {
        match self.policy {
            UnknownPolicy::Ignore => {
                self.ignored.push(shown);
                Ok(())
            }
            UnknownPolicy::Reject => Err(ScimError::invalid_value(match why {
                ResolveError::Unknown(_) => format!("unknown attribute '{shown}'"),
                ResolveError::UnknownSchema(u) => format!("schema '{u}' is not served here"),
                ResolveError::NotStored(_) => {
                    format!("attribute '{shown}' is not stored by this service provider")
                }
            })),
        }
    }
}

/// A member of a JSON object by name, matched case-insensitively (clients send `Operations`
/// and `operations`, `schemas` and `Schemas`).
pub fn field<'a>(obj: &'a Object, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A request body that must be a JSON object listing `urn` in its `schemas` (RFC 7643 §3,
/// RFC 7644 §3.5.2, §3.4.3); `what` names it in the error. Other URNs listed are ignored.
pub fn message(body: Value, urn: &str, what: &str) -> Result<Object, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(format!(
            "{what} must be a JSON object"
        )));
    };
    let listed = match field(&obj, "schemas") {
        Some(Value::Array(items)) => items
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn))),
        _ => false,
    };
    if !listed {
        return Err(ScimError::invalid_syntax(format!(
            "{what} must list \"{urn}\" in \"schemas\""
        )));
    }
    Ok(obj)
}

/// Puts a normalised value at a resolved path in `out`, merging complex values with what is
/// already there (so `name` and `name.familyName` in one body combine). `None` removes.
pub fn put(out: &mut Object, r: &Resolved<'_>, value: Option<Value>) {
    let container = match r.home {
        Home::Common | Home::Core => &mut *out,
        Home::Extension(urn) => {
            let slot = out
                .entry(urn.to_owned())
                .or_insert_with(|| Value::Object(Object::new()));
            if !slot.is_object() {
                *slot = Value::Object(Object::new());
            }
            match slot.as_object_mut() {
                Some(o) => o,
                None => return,
            }
        }
    };
    let name = &r.attr.name;
    match (r.sub, value) {
        (None, Some(Value::Object(new))) if !r.attr.multi_valued => {
            match container.get_mut(name).and_then(Value::as_object_mut) {
                Some(existing) => existing.extend(new),
                None => {
                    container.insert(name.clone(), Value::Object(new));
                }
            }
        }
        (None, Some(v)) => {
            container.insert(name.clone(), v);
        }
        (None, None) => {
            container.remove(name);
        }
        (Some(sub), Some(v)) => {
            let slot = container
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Object::new()));
            if !slot.is_object() {
                *slot = Value::Object(Object::new());
            }
            if let Some(o) = slot.as_object_mut() {
                o.insert(sub.name.clone(), v);
            }
        }
        (Some(sub), None) => {
            if let Some(o) = container.get_mut(name).and_then(Value::as_object_mut) {
                o.remove(&sub.name);
                if o.is_empty() {
                    container.remove(name);
                }
            }
        }
    }
    if let Home::Extension(urn) = r.home {
        if out
            .get(urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            out.remove(urn);
        }
    }
}

/// Reads the value at a resolved path (attribute, or sub-attribute of a single complex).
pub fn get<'v>(attrs: &'v Object, r: &Resolved<'_>) -> Option<&'v Value> {
    let container = match r.home {
        Home::Common | Home::Core => attrs,
        Home::Extension(urn) => attrs.get(urn)?.as_object()?,
    };
    let v = container.get(&r.attr.name)?;
    match r.sub {
        None => Some(v),
        Some(sub) => v.as_object()?.get(&sub.name),
    }
}

/// The member ids of a membership value: `[{"value": "id", …}, …]` (`$ref`, `type` and
/// `display` are ignored; a bare id string is accepted, see [`dialect`]).
pub fn member_ids(attr: &str, value: Value) -> Result<Vec<String>, ScimError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        match dialect::coerce_multi_complex_item(item, true) {
            Value::Object(o) => {
                let v = o
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("value"))
                    .map(|(_, v)| v);
                match v {
                    Some(Value::String(s)) if !s.is_empty() => ids.push(s.clone()),
                    _ => {
                        return Err(ScimError::invalid_value(format!(
                            "each of '{attr}' needs a non-empty string \"value\" (the member's id)"
                        )));
                    }
                }
            }
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "'{attr}' must be a list of objects with a \"value\""
                )));
            }
        }
    }
    Ok(ids)
}

/// `parent.sub`, as an attribute is named in a message: formatted only when one is written.
struct Dotted<'a>(&'a dyn fmt::Display, &'a str);

impl fmt::Display for Dotted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

fn type_error(shown: &dyn fmt::Display, want: &str, got: &Value) -> ScimError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ScimError::invalid_value(format!("attribute '{shown}' must be {want}, got {got}"))
}

/// Parses an RFC 3339 / `xsd:dateTime` timestamp.
pub fn parse_datetime(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Checks that every required attribute of the core schema and extensions is present
/// (RFC 7643 §2.2 `required`), for POST and PUT.
pub fn check_required(rt: &ResourceType, attrs: &Object, members: bool) -> Result<(), ScimError> {
    for (home, attr) in rt.attributes_with_home(false) {
        if !attr.required || attr.mutability == Mutability::ReadOnly {
            continue;
        }
        if rt.membership.as_deref() == Some(attr.name.as_str()) {
            if !members {
                return Err(required_error(home, attr));
            }
            continue;
        }
        let r = Resolved {
            home,
            attr,
            sub: None,
        };
        if get(attrs, &r).is_none() {
            return Err(required_error(home, attr));
        }
    }
    Ok(())
}

/// For PATCH: a required attribute the resource had may not be removed (RFC 7643 §2.2); one
/// it never had (a row the app wrote without it) does not block other changes, such as the
/// identity provider's disable.
pub fn check_required_kept(
    rt: &ResourceType,
    before: &Object,
    after: &Object,
) -> Result<(), ScimError> {
    for (home, attr) in rt.attributes_with_home(false) {
        if !attr.required
            || attr.mutability == Mutability::ReadOnly
            || rt.membership.as_deref() == Some(attr.name.as_str())
        {
            continue;
        }
        let r = Resolved {
            home,
            attr,
            sub: None,
        };
        if get(after, &r).is_none() && get(before, &r).is_some() {
            return Err(required_error(home, attr));
        }
    }
    Ok(())
}

fn required_error(home: Home<'_>, attr: &Attribute) -> ScimError {
    let shown = match home {
        Home::Extension(u) => format!("{u}:{}", attr.name),
        _ => attr.name.clone(),
    };
    ScimError::invalid_value(format!("attribute '{shown}' is required"))
}

/// The resource's version for `meta.version` and `ETag` (RFC 7644 §3.14): a weak validator
/// over the stored attributes. Members are excluded so that a group's version can be known
/// without loading a 100,000-member list; a membership change the sidecar makes still moves
/// the version when `meta.lastModified` is mapped, but one made elsewhere (the app, the
/// directory, a member's deletion) does not. So a GET that returns a group's members is never
/// answered 304, and `If-Match` on a group does not see membership changes.
pub fn version(attrs: &Object) -> String {
    // Hashed as it is serialised: no buffer to grow and copy.
    let mut h = Fnv::new();
    let _ = serde_json::to_writer(&mut h, attrs);
    h.version()
}

/// FNV-1a over the canonical (compact) serialisation: stable across processes and releases,
/// which std's SipHash keys are not. Collisions only cost a spurious 304/412 on one resource.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn eat(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The version: `W/"{:016x}"`, without the formatting machinery (a tenth of the cost).
    pub(crate) fn version(&self) -> String {
        let mut buf = [0u8; 32];
        buf[..3].copy_from_slice(b"W/\"");
        let len = push_hex(&mut buf, 3, self.0, 16);
        buf[len] = b'"';
        // ASCII by construction.
        std::str::from_utf8(&buf[..=len])
            .unwrap_or_default()
            .to_owned()
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.eat(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `v` in lower-case hex, at least `min` digits, into `buf` at `at`; the new length.
/// For the ETag here and the request ids the router makes: `format!`'s machinery cost more
/// than the rest of a pass-through request's own work.
pub fn push_hex(buf: &mut [u8; 32], at: usize, v: u64, min: usize) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = ((64 - v.leading_zeros() as usize).div_ceil(4)).max(min);
    for i in 0..digits {
        buf[at + i] = DIGITS[((v >> (4 * (digits - 1 - i))) & 0xf) as usize];
    }
    at + digits
}

/// The pieces of a response URL: `https://host/scim/v2`.
#[derive(Clone, Debug)]
pub struct BaseUrl(pub String);

impl BaseUrl {
    /// The absolute URL of a resource: `{base}{endpoint}/{id}` with `id` percent-encoded.
    pub fn location(&self, endpoint: &str, id: &str) -> String {
        let mut s = String::with_capacity(self.0.len() + endpoint.len() + id.len() + 1);
        s.push_str(&self.0);
        s.push_str(endpoint);
        s.push('/');
        encode_segment(id, &mut s);
        s
    }
}

/// Percent-encodes a path segment (RFC 3986 §3.3: unreserved characters stay as they are).
pub fn encode_segment(seg: &str, out: &mut String) {
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Builds the full representation of a stored resource (before projection): `schemas`, `id`,
/// attributes, `members` with `$ref`, and `meta`. `endpoint_of` gives the endpoint of a
/// member's resource type.
pub fn render(
    rt: &ResourceType,
    stored: &Stored,
    base: &BaseUrl,
    endpoint_of: &dyn Fn(&str) -> Option<String>,
) -> Object {
    let mut out = render_without_members(rt, stored, base);
    if let (Some(attr), Some(members)) = (&rt.membership, &stored.members) {
        let list = members
            .iter()
            .map(|m| member_json(m, base, endpoint_of))
            .collect();
        insert_before_meta(&mut out, attr, Value::Array(list));
    }
    out
}

/// One member as JSON: `value`, `$ref`, `type`, `display`.
fn member_json(m: &Member, base: &BaseUrl, endpoint_of: &dyn Fn(&str) -> Option<String>) -> Value {
    let mut o = Object::new();
    o.insert("value".into(), Value::String(m.value.clone()));
    if let Some(t) = &m.resource_type {
        if let Some(ep) = endpoint_of(t) {
            o.insert("$ref".into(), Value::String(base.location(&ep, &m.value)));
        }
        o.insert("type".into(), Value::String(t.to_string()));
    }
    if let Some(d) = &m.display {
        o.insert("display".into(), Value::String(d.clone()));
    }
    Value::Object(o)
}

/// Inserts `key` just before `meta` (where it would be had it been rendered in order).
fn insert_before_meta(out: &mut Object, key: &str, value: Value) {
    let meta = out.remove("meta");
    out.insert(key.to_owned(), value);
    if let Some(m) = meta {
        out.insert("meta".into(), m);
    }
}

/// [`render`] without the membership attribute.
pub fn render_without_members(rt: &ResourceType, stored: &Stored, base: &BaseUrl) -> Object {
    render_attrs(
        rt,
        &stored.id,
        stored.attrs.clone(),
        version(&stored.attrs),
        base,
    )
}

/// [`render_without_members`] from attributes the caller gives up (moved into the output, not
/// copied), with their [`version`].
pub fn render_attrs(
    rt: &ResourceType,
    id: &str,
    attrs: Object,
    version: String,
    base: &BaseUrl,
) -> Object {
    // The attributes' own map becomes the resource, `schemas` and `id` put in front and `meta`
    // at the end: no key is hashed or copied a second time.
    let mut out = attrs;
    let mut schemas = vec![Value::String(rt.schema.id.clone())];
    for ext in &rt.extensions {
        if out.contains_key(&ext.schema.id) {
            schemas.push(Value::String(ext.schema.id.clone()));
        }
    }
    let mut meta = match out.shift_remove("meta") {
        Some(Value::Object(m)) => m,
        _ => Object::with_capacity(3),
    };
    out.shift_insert(0, "schemas".into(), Value::Array(schemas));
    out.shift_insert(1, "id".into(), Value::String(id.to_owned()));
    meta.shift_insert(0, "resourceType".into(), Value::String(rt.name.clone()));
    meta.insert(
        "location".into(),
        Value::String(base.location(&rt.endpoint, id)),
    );
    meta.insert("version".into(), Value::String(version));
    out.insert("meta".into(), Value::Object(meta));
    out
}

/// A resource ready to serialise: its attributes, and its members written straight from the
/// stored list when they are sent whole. A 100,000-member group costs the bytes it is sent
/// as, not a JSON object per member (several allocations each) held until serialisation.
pub struct Rendered<'a> {
    /// Every attribute but the membership (after projection); when `members` is set, the
    /// membership attribute is in it as a placeholder that marks its position.
    pub obj: Object,
    /// The membership attribute's name and values, written in place of the placeholder.
    pub members: Option<MembersOut<'a>>,
}

/// A membership list written as it is serialised.
pub struct MembersOut<'a> {
    /// The attribute's name (`members`).
    pub attr: &'a str,
    /// The members.
    pub list: &'a [Member],
    /// The base URL for `$ref`.
    pub base: &'a BaseUrl,
    /// Each resource type's endpoint, by name (`User` → `/Users`).
    pub endpoints: &'a [(String, String)],
}

/// `$ref` of a member, written into the output without a string of its own.
struct Ref<'a>(&'a BaseUrl, &'a str, &'a str);

impl fmt::Display for Ref<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.0)?;
        f.write_str(self.1)?;
        f.write_str("/")?;
        for b in self.2.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                fmt::Write::write_char(f, b as char)?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.obj.len()))?;
        for (k, v) in &self.obj {
            match &self.members {
                Some(m) if k == m.attr => map.serialize_entry(k, m)?,
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

impl serde::Serialize for MembersOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct One<'b>(&'b Member, &'b MembersOut<'b>);
        impl serde::Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                struct AsStr<T>(T);
                impl<T: fmt::Display> serde::Serialize for AsStr<T> {
                    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                        s.collect_str(&self.0)
                    }
                }
                let (m, out) = (self.0, self.1);
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("value", &m.value)?;
                if let Some(t) = &m.resource_type {
                    if let Some((_, ep)) = out.endpoints.iter().find(|(n, _)| **n == **t) {
                        map.serialize_entry("$ref", &AsStr(Ref(out.base, ep, &m.value)))?;
                    }
                    map.serialize_entry("type", &**t)?;
                }
                if let Some(d) = &m.display {
                    map.serialize_entry("display", d)?;
                }
                map.end()
            }
        }
        let mut seq = s.serialize_seq(Some(self.list.len()))?;
        for m in self.list {
            seq.serialize_element(&One(m, self))?;
        }
        seq.end()
    }
}

impl Rendered<'_> {
    /// Marks where the members go, before `meta`.
    pub fn place_members(obj: &mut Object, attr: &str) {
        insert_before_meta(obj, attr, Value::Array(Vec::new()));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The version is FNV-1a over the compact JSON: the same in every release, so ETags a
    /// client holds stay valid across an upgrade.
    #[test]
    fn versions_are_stable() {
        let attrs = serde_json::json!({"userName": "a", "active": true});
        let attrs = attrs.as_object().expect("object");
        assert_eq!(version(attrs), "W/\"427697da73bdc5f4\"");
    }
    use crate::scim::schema::{self, Extension, ResourceType};
    use serde_json::json;

    const ENT: &str = schema::ENTERPRISE_USER_URN;

    /// A User type storing userName, name.givenName/familyName, active, emails (value, type),
    /// externalId, and the enterprise department and manager.
    pub(crate) fn user_type() -> ResourceType {
        let full = schema::builtin(schema::USER_URN).cloned().expect("user");
        let ent_full = schema::builtin(ENT).cloned().expect("ent");
        let mut core = full.clone();
        core.attributes
            .retain(|a| ["userName", "name", "active", "emails"].contains(&a.name.as_str()));
        for a in &mut core.attributes {
            if a.name == "name" {
                a.sub_attributes
                    .retain(|s| s.name == "givenName" || s.name == "familyName");
            }
            if a.name == "emails" {
                a.sub_attributes
                    .retain(|s| s.name == "value" || s.name == "type");
            }
        }
        let mut ent = ent_full.clone();
        ent.attributes
            .retain(|a| a.name == "department" || a.name == "manager");
        ResourceType {
            name: "User".into(),
            endpoint: "/Users".into(),
            description: String::new(),
            schema: core,
            extensions: vec![Extension {
                schema: ent,
                required: false,
            }],
            common: schema::common_attributes(true),
            membership: None,
            groups_from: None,
            known: vec![full, ent_full],
        }
    }

    fn group_type() -> ResourceType {
        let full = schema::builtin(schema::GROUP_URN).cloned().expect("group");
        ResourceType {
            name: "Group".into(),
            endpoint: "/Groups".into(),
            description: String::new(),
            schema: full.clone(),
            extensions: vec![],
            common: schema::common_attributes(true),
            membership: Some("members".into()),
            groups_from: None,
            known: vec![full],
        }
    }

    /// A typical Entra create body normalises to canonical names; unknown and unstored
    /// attributes are ignored and listed; read-only ones (`id`, `meta`) dropped silently.
    #[test]
    fn entra_create_body() {
        let rt = user_type();
        let mut n = Normalizer::new(&rt, UnknownPolicy::Ignore);
        let body = json!({
            "schemas": [schema::USER_URN, ENT],
            "externalId": "jdoe", "USERNAME": "jdoe@example.com", "active": "True",
            "id": "forged", "meta": {"resourceType": "User"},
            "emails": [{"primary": true, "type": "work", "value": "jdoe@example.com"}],
            "name": {"formatted": "J Doe", "familyName": "Doe", "givenName": "J"},
            "title": "Boss", "roles": [],
            ENT: {"Department": "Sales", "manager": "m-1", "costCenter": "x"}
        });
        let input = n.resource(body).expect("normalises");
        let a = &input.attrs;
        assert_eq!(a["userName"], "jdoe@example.com");
        assert_eq!(a["active"], true);
        assert_eq!(a["externalId"], "jdoe");
        assert!(a.get("id").is_none() && a.get("meta").is_none());
        assert_eq!(
            a["emails"],
            json!([{"type": "work", "value": "jdoe@example.com"}])
        );
        assert_eq!(a["name"], json!({"familyName": "Doe", "givenName": "J"}));
        assert_eq!(
            a[ENT],
            json!({"department": "Sales", "manager": {"value": "m-1"}})
        );
        let mut ignored = n.ignored.clone();
        ignored.sort();
        assert_eq!(
            ignored,
            vec![
                "costCenter",
                "emails.primary",
                "name.formatted",
                "roles",
                "title"
            ]
        );
    }

    /// With the reject policy the first unstored attribute is a 400 invalidValue naming it.
    #[test]
    fn reject_policy() {
        let rt = user_type();
        let mut n = Normalizer::new(&rt, UnknownPolicy::Reject);
        let err = n
            .resource(json!({"schemas": [schema::USER_URN], "userName": "a", "title": "x"}))
            .expect_err("rejects");
        assert_eq!(err.status, 400);
        assert!(
            err.detail.contains("'title' is not stored"),
            "{}",
            err.detail
        );
    }

    /// Bodies without the core schema URN, non-objects and wrongly typed values are refused
    /// with precise errors.
    #[test]
    fn bad_bodies() {
        let rt = user_type();
        let mut n = Normalizer::new(&rt, UnknownPolicy::Ignore);
        let e = n
            .resource(json!({"userName": "a"}))
            .expect_err("no schemas");
        assert_eq!(e.scim_type, Some(crate::scim::ScimType::InvalidSyntax));
        assert!(e.detail.contains(schema::USER_URN));
        let e = n.resource(json!([1])).expect_err("array");
        assert_eq!(e.scim_type, Some(crate::scim::ScimType::InvalidSyntax));
        let e = n
            .resource(json!({"schemas": [schema::USER_URN], "userName": 5}))
            .expect_err("number");
        assert_eq!(
            e.detail,
            "attribute 'userName' must be a string, got a number"
        );
        let e = n
            .resource(json!({"schemas": [schema::USER_URN], "active": "maybe"}))
            .expect_err("bool");
        assert!(e.detail.contains("'active' must be a boolean"));
        let e = n
            .resource(json!({"schemas": [schema::USER_URN], "name": "x"}))
            .expect_err("complex");
        assert!(e.detail.contains("'name' must be a JSON object"));
    }

    /// Entra's path-less PATCH value shape: dotted and URN-qualified keys.
    #[test]
    fn dotted_and_qualified_keys() {
        let rt = user_type();
        let mut n = Normalizer::new(&rt, UnknownPolicy::Ignore);
        let mut input = Input::default();
        let obj = json!({
            "name.givenName": "Barbara", "name.familyName": "Jensen",
            format!("{ENT}:department"): "Ops", format!("{ENT}:manager"): "m2"
        });
        let Value::Object(obj) = obj else { panic!() };
        n.attributes(obj, &mut input).expect("ok");
        assert_eq!(
            input.attrs["name"],
            json!({"givenName": "Barbara", "familyName": "Jensen"})
        );
        assert_eq!(
            input.attrs[ENT],
            json!({"department": "Ops", "manager": {"value": "m2"}})
        );
    }

    /// Group members are split out as ids; malformed member lists are refused.
    #[test]
    fn members_split_out() {
        let rt = group_type();
        let mut n = Normalizer::new(&rt, UnknownPolicy::Ignore);
        let input = n
            .resource(json!({
                "schemas": [schema::GROUP_URN, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "displayName": "Admins",
                "members": [{"value": "1", "$ref": null}, {"value": "2", "display": "b"}]
            }))
            .expect("ok");
        assert_eq!(input.members, Some(vec!["1".to_string(), "2".to_string()]));
        assert!(input.attrs.get("members").is_none());
        let e = n
            .resource(json!({"schemas": [schema::GROUP_URN], "members": [{"display": "x"}]}))
            .expect_err("no value");
        assert!(e.detail.contains("\"value\""));
    }

    /// Required attributes are enforced on create.
    #[test]
    fn required() {
        let rt = user_type();
        let e = check_required(&rt, &Object::new(), false).expect_err("userName");
        assert_eq!(e.detail, "attribute 'userName' is required");
    }

    /// The rendered representation carries schemas, meta with location and a version that
    /// changes with the attributes.
    #[test]
    fn render_and_version() {
        let rt = group_type();
        let mut attrs = Object::new();
        attrs.insert("displayName".into(), json!("Admins"));
        let stored = Stored {
            id: "7".into(),
            attrs: attrs.clone(),
            members: Some(vec![Member {
                value: "42".into(),
                resource_type: Some("User".into()),
                display: None,
            }]),
        };
        let base = BaseUrl("https://h/scim/v2".into());
        let out = render(&rt, &stored, &base, &|t| {
            (t == "User").then(|| "/Users".to_string())
        });
        assert_eq!(out["schemas"], json!([schema::GROUP_URN]));
        assert_eq!(out["meta"]["location"], "https://h/scim/v2/Groups/7");
        assert_eq!(out["members"][0]["$ref"], "https://h/scim/v2/Users/42");
        let v1 = version(&attrs);
        attrs.insert("displayName".into(), json!("Admins2"));
        assert_ne!(v1, version(&attrs));
        assert!(v1.starts_with("W/\""));
        let mut s = String::new();
        encode_segment("a b/ü", &mut s);
        assert_eq!(s, "a%20b%2F%C3%BC");
    }
}
