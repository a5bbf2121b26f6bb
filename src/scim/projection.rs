//! Attribute projection (RFC 7644 §3.4.2.5, §3.9): `attributes` and `excludedAttributes`,
//! together with each attribute's `returned` characteristic (RFC 7643 §2.2).
//!
//! Applied to every resource the service returns, after [`super::resource::render`].

use serde_json::Value;

use super::error::ScimError;
use super::filter::parse_attr_path;
use super::resource::Object;
use super::schema::{Attribute, Home, Resolved, ResourceType, Returned};

/// A resolved `attributes` / `excludedAttributes` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sel {
    /// The top-level key: attribute name, or the extension URN.
    key: String,
    /// Within an extension: the attribute name.
    ext_attr: Option<String>,
    /// The sub-attribute, if named.
    sub: Option<String>,
}

/// What the client asked to see.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    include: Vec<Sel>,
    exclude: Vec<Sel>,
}

impl Projection {
    /// Builds a projection from the comma-separated parameter values. Names that do not
    /// resolve are ignored (a client may ask for `members` on a type that stores none); a
    /// name that does not parse is 400 `invalidValue`.
    pub fn new(
        rt: &ResourceType,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Self, ScimError> {
        Ok(Projection {
            include: parse_list(rt, attributes)?,
            exclude: parse_list(rt, excluded)?,
        })
    }

    /// Builds a projection from already split lists (a `.search` body's arrays).
    pub fn from_lists(
        rt: &ResourceType,
        attributes: &[String],
        excluded: &[String],
    ) -> Result<Self, ScimError> {
        Self::new(rt, Some(&attributes.join(",")), Some(&excluded.join(",")))
    }

    /// Whether this shows each attribute as its `returned` says, once `name` (a top-level
    /// attribute the resource is read without) is left out: no `attributes`, and
    /// `excludedAttributes` naming at most `name` (Entra reads groups with
    /// `excludedAttributes=members`).
    pub fn is_default_without(&self, name: Option<&str>) -> bool {
        self.include.is_empty()
            && self
                .exclude
                .iter()
                .all(|s| s.ext_attr.is_none() && Some(s.key.as_str()) == name)
    }

    /// Whether the attribute `name` (top level) will be in the output: lets callers skip
    /// loading what nobody will see, such as a group's member list.
    pub fn wants(&self, rt: &ResourceType, name: &str) -> bool {
        let Some(attr) = rt.schema.attribute(name) else {
            return false;
        };
        let named = |list: &[Sel]| {
            list.iter()
                .any(|s| s.ext_attr.is_none() && s.key == attr.name)
        };
        match attr.returned {
            Returned::Never => false,
            Returned::Always => true,
            Returned::Request => named(&self.include),
            Returned::Default => {
                if !self.include.is_empty() {
                    named(&self.include)
                } else {
                    !self
                        .exclude
                        .iter()
                        .any(|s| s.ext_attr.is_none() && s.sub.is_none() && s.key == attr.name)
                }
            }
        }
    }

    /// Applies the projection to a rendered resource.
    pub fn apply(&self, rt: &ResourceType, obj: &mut Object) {
        // In place, in the rendered order: no key is copied, and what stays keeps its place.
        obj.retain(|key, value| {
            if key == "schemas" {
                return true;
            }
            if let Some(ext) = rt.extension(key) {
                let Value::Object(inner) = value else {
                    return true;
                };
                inner.retain(|name, value| {
                    let Some(attr) = ext.schema.attribute(name) else {
                        return true;
                    };
                    apply_keep(self.decide(key, Some(&attr.name), attr), value)
                });
                return !inner.is_empty();
            }
            let attr = rt
                .common_attribute(key)
                .or_else(|| rt.schema.attribute(key));
            let Some(attr) = attr else { return true };
            apply_keep(self.decide(&attr.name, None, attr), value)
        });
        // `schemas` lists only extensions still present.
        let present: Vec<Value> = rt
            .schema_urns()
            .enumerate()
            .filter(|(i, u)| *i == 0 || obj.contains_key(*u))
            .map(|(_, u)| Value::String(u.to_owned()))
            .collect();
        match obj.get_mut("schemas") {
            Some(s) => *s = Value::Array(present),
            None => {
                obj.insert("schemas".into(), Value::Array(present));
            }
        }
    }

    fn decide(&self, key: &str, ext_attr: Option<&str>, attr: &Attribute) -> Keep {
        match attr.returned {
            Returned::Never => return Keep::Nothing,
            Returned::Always => return Keep::All,
            _ => {}
        }
        if !self.include.is_empty() {
            let inc = hits(&self.include, key, ext_attr);
            if inc.is_empty() {
                return Keep::Nothing;
            }
            // A selection of the whole attribute (or the whole extension) keeps everything.
            if inc.iter().any(|s| s.sub.is_none()) {
                return Keep::All;
            }
            return Keep::Subs(inc.iter().filter_map(|s| s.sub.clone()).collect(), false);
        }
        if attr.returned == Returned::Request {
            return Keep::Nothing;
        }
        let exc = hits(&self.exclude, key, ext_attr);
        if exc.iter().any(|s| s.sub.is_none()) {
            return Keep::Nothing;
        }
        let subs: Vec<String> = exc.iter().filter_map(|s| s.sub.clone()).collect();
        if subs.is_empty() {
            Keep::All
        } else {
            Keep::Subs(subs, true)
        }
    }
}

/// The selections that concern attribute `ext_attr` of `key` (or the top-level `key`).
fn hits<'l>(list: &'l [Sel], key: &str, ext_attr: Option<&str>) -> Vec<&'l Sel> {
    list.iter()
        .filter(|s| s.key == key && (s.ext_attr.is_none() || s.ext_attr.as_deref() == ext_attr))
        .collect()
}

enum Keep {
    All,
    Nothing,
    /// Keep (false) or drop (true) these sub-attributes.
    Subs(Vec<String>, bool),
}

/// Applies a decision to one value: whether it stays (trimmed to the sub-attributes kept).
fn apply_keep(keep: Keep, value: &mut Value) -> bool {
    match keep {
        Keep::All => true,
        Keep::Nothing => false,
        Keep::Subs(subs, drop) => {
            trim_subs(Some(value), &subs, drop);
            true
        }
    }
}

fn trim_subs(v: Option<&mut Value>, subs: &[String], drop: bool) {
    let trim = |o: &mut Object| o.retain(|k, _| subs.iter().any(|s| s == k) != drop);
    match v {
        Some(Value::Object(o)) => trim(o),
        Some(Value::Array(items)) => {
            for item in items.iter_mut() {
                if let Value::Object(o) = item {
                    trim(o);
                }
            }
        }
        _ => {}
    }
}

fn parse_list(rt: &ResourceType, list: Option<&str>) -> Result<Vec<Sel>, ScimError> {
    let mut out = Vec::new();
    for raw in list
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        // A bare extension URN selects the whole extension.
        if let Some(ext) = rt.extension(raw) {
            out.push(Sel {
                key: ext.schema.id.clone(),
                ext_attr: None,
                sub: None,
            });
            continue;
        }
        let path = parse_attr_path(raw).map_err(|e| {
            ScimError::invalid_value(format!("attribute list entry \"{raw}\": {e}"))
        })?;
        let Ok(r) = rt.resolve(&path) else { continue };
        out.push(sel(&r));
    }
    Ok(out)
}

fn sel(r: &Resolved<'_>) -> Sel {
    let sub = r.sub.map(|s| s.name.clone());
    match r.home {
        Home::Extension(urn) => Sel {
            key: urn.to_owned(),
            ext_attr: Some(r.attr.name.clone()),
            sub,
        },
        _ => Sel {
            key: r.attr.name.clone(),
            ext_attr: None,
            sub,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::ENTERPRISE_USER_URN as ENT;
    use serde_json::json;

    fn rendered() -> Object {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "id": "1", "userName": "a", "active": true,
            "name": {"givenName": "G", "familyName": "F"},
            "emails": [{"type": "work", "value": "a@x"}],
            ENT: {"department": "D"},
            "meta": {"resourceType": "User"}
        })
        .as_object()
        .cloned()
        .expect("object")
    }

    fn project(attrs: Option<&str>, excl: Option<&str>) -> Object {
        let rt = crate::scim::resource::tests::user_type();
        let p = Projection::new(&rt, attrs, excl).expect("parses");
        let mut o = rendered();
        p.apply(&rt, &mut o);
        o
    }

    /// `attributes` keeps the named attributes plus `id` (returned always) and `schemas`.
    #[test]
    fn attributes_param() {
        let o = project(Some("userName,name.givenName"), None);
        assert_eq!(
            serde_json::Value::Object(o),
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1",
                   "userName": "a", "name": {"givenName": "G"}})
        );
        let o = project(Some(&format!("{ENT}:department")), None);
        assert_eq!(o[ENT], json!({"department": "D"}));
        assert_eq!(
            o["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENT])
        );
        let o = project(Some("EMAILS.value"), None);
        assert_eq!(o["emails"], json!([{"value": "a@x"}]));
    }

    /// `excludedAttributes` drops the named attributes, never `id`.
    #[test]
    fn excluded_param() {
        let o = project(None, Some("emails,id,name.familyName,meta"));
        assert!(o.get("emails").is_none() && o.get("meta").is_none());
        assert_eq!(o["id"], "1");
        assert_eq!(o["name"], json!({"givenName": "G"}));
        let o = project(None, Some(ENT));
        assert!(o.get(ENT).is_none());
        assert_eq!(
            o["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
        );
    }

    /// Whether members would be shown decides whether they are loaded.
    #[test]
    fn wants() {
        let rt = crate::scim::resource::tests::user_type();
        let p = Projection::new(&rt, None, Some("emails")).expect("p");
        assert!(!p.wants(&rt, "emails"));
        assert!(p.wants(&rt, "userName"));
        let p = Projection::new(&rt, Some("userName"), None).expect("p");
        assert!(!p.wants(&rt, "emails"));
    }

    /// Only no selection, or the exclusion of just the attribute a read leaves out, counts
    /// as the default.
    #[test]
    fn default_without() {
        let rt = crate::scim::resource::tests::user_type();
        let p = |a: Option<&str>, e: Option<&str>| Projection::new(&rt, a, e).expect("p");
        assert!(p(None, None).is_default_without(None));
        assert!(p(None, None).is_default_without(Some("emails")));
        assert!(p(None, Some("EMAILS")).is_default_without(Some("emails")));
        assert!(!p(None, Some("emails")).is_default_without(None));
        assert!(!p(None, Some("emails,userName")).is_default_without(Some("emails")));
        assert!(!p(Some("emails"), None).is_default_without(Some("emails")));
        let dept = format!("{ENT}:department");
        assert!(!p(None, Some(&dept)).is_default_without(Some("department")));
    }
}
