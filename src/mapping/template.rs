//! Templates for computed columns: `display_name = { template = "{name.givenName} {name.familyName}" }`,
//! `user_nicename = { template = "{userName|lower}" }`.
//!
//! A template is text with `{path}` placeholders, each a SCIM attribute path optionally
//! followed by filters (`lower`, `upper`, `trim`). It is parsed and its paths resolved at
//! start-up; on every write it is rendered from the resource's attributes. Missing attributes
//! render as empty text; the result is trimmed.

use serde_json::Value as Json;

use crate::scim::filter::{eval, parse_patch_path};
use crate::scim::resource::Object;
use crate::scim::schema::{Home, ResourceType};

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Value { at: At, filters: Vec<Filter> },
}

/// Where a placeholder's value is in a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
struct At {
    ext: Option<String>,
    attr: String,
    sub: Option<String>,
    /// For `emails[type eq "work"].value`: the element's type.
    type_value: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    Lower,
    Upper,
    Trim,
}

impl Template {
    /// A template that renders nothing.
    pub fn empty() -> Self {
        Template { parts: Vec::new() }
    }

    /// Parses `text`, resolving each path against `rt` (the full schemas). Errors name the
    /// placeholder.
    pub fn parse(text: &str, rt: &ResourceType) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("unclosed '{{' in template \"{text}\""));
            };
            let inner = &rest[open + 1..open + close];
            parts.push(Self::placeholder(inner, rt)?);
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Value { .. })) {
            return Err(format!(
                "template \"{text}\" names no attribute; write a constant as `column = \"value\"` instead"
            ));
        }
        Ok(Template { parts })
    }

    fn placeholder(inner: &str, rt: &ResourceType) -> Result<Part, String> {
        let mut pieces = inner.split('|');
        let path = pieces.next().unwrap_or("").trim();
        let filters = pieces
            .map(|f| match f.trim() {
                "lower" => Ok(Filter::Lower),
                "upper" => Ok(Filter::Upper),
                "trim" => Ok(Filter::Trim),
                other => Err(format!(
                    "unknown template filter '{other}' in {{{inner}}} (use lower, upper, trim)"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let p = parse_patch_path(path).map_err(|e| format!("{{{inner}}}: {e}"))?;
        let r = rt
            .resolve(&p.attr)
            .map_err(|e| format!("{{{inner}}}: {e}"))?;
        let ext = match r.home {
            Home::Extension(u) => Some(u.to_owned()),
            _ => None,
        };
        let type_value = match &p.filter {
            None => None,
            Some(f) => match eval::equalities(f).as_deref() {
                Some([(k, Json::String(v))]) if k.eq_ignore_ascii_case("type") => Some(v.clone()),
                _ => return Err(format!("{{{inner}}}: only [type eq \"…\"] selects a value")),
            },
        };
        let sub = match (&type_value, r.sub, &p.sub) {
            (Some(_), _, Some(s)) => Some(
                r.attr
                    .sub(s)
                    .map(|d| d.name.clone())
                    .ok_or_else(|| format!("{{{inner}}}: no sub-attribute '{s}'"))?,
            ),
            (Some(_), _, None) => Some("value".to_owned()),
            (None, Some(s), _) => Some(s.name.clone()),
            (None, None, _) if r.attr.is_complex() && r.attr.sub("value").is_some() => {
                Some("value".to_owned())
            }
            (None, None, _) if r.attr.is_complex() => {
                return Err(format!("{{{inner}}} is complex; name a sub-attribute"));
            }
            (None, None, _) => None,
        };
        Ok(Part::Value {
            at: At {
                ext,
                attr: r.attr.name.clone(),
                sub,
                type_value,
            },
            filters,
        })
    }

    /// The text for a resource's attributes.
    pub fn render(&self, attrs: &Object) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Value { at, filters } => {
                    let mut v = lookup(attrs, at).unwrap_or_default();
                    for f in filters {
                        v = match f {
                            Filter::Lower => v.to_lowercase(),
                            Filter::Upper => v.to_uppercase(),
                            Filter::Trim => v.trim().to_owned(),
                        };
                    }
                    out.push_str(&v);
                }
            }
        }
        out.trim().to_owned()
    }
}

fn lookup(attrs: &Object, at: &At) -> Option<String> {
    let container = match &at.ext {
        None => attrs,
        Some(u) => attrs.get(u)?.as_object()?,
    };
    let v = container.get(&at.attr)?;
    let v = match (&at.type_value, &at.sub) {
        (Some(t), Some(sub)) => v
            .as_array()?
            .iter()
            .find(|e| {
                e.get("type")
                    .and_then(Json::as_str)
                    .is_some_and(|x| x.eq_ignore_ascii_case(t))
            })?
            .get(sub)?,
        (None, Some(sub)) => v.get(sub)?,
        _ => v,
    };
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt() -> ResourceType {
        crate::scim::resource::tests::user_type()
    }

    fn obj(v: Json) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    /// Placeholders with filters, typed values and extension attributes render; missing ones
    /// are empty and the result is trimmed.
    #[test]
    fn renders() {
        let rt = rt();
        let t = Template::parse("{name.givenName} {name.familyName}", &rt).expect("parses");
        assert_eq!(
            t.render(&obj(
                json!({"name": {"givenName": "Ada", "familyName": "Lovelace"}})
            )),
            "Ada Lovelace"
        );
        assert_eq!(
            t.render(&obj(json!({"name": {"familyName": "Lovelace"}}))),
            "Lovelace"
        );
        let t = Template::parse("{userName|lower}", &rt).expect("parses");
        assert_eq!(
            t.render(&obj(json!({"userName": "Ada@Example.COM"}))),
            "ada@example.com"
        );
        let t = Template::parse("{emails[type eq \"work\"].value|upper} / {urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department}", &rt)
            .expect("parses");
        let a = obj(json!({"emails": [{"type": "work", "value": "a@x"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}}));
        assert_eq!(t.render(&a), "A@X / R&D");
    }

    /// Bad templates are refused with the placeholder at fault.
    #[test]
    fn errors() {
        let rt = rt();
        assert!(
            Template::parse("{shoeSize}", &rt)
                .expect_err("unknown")
                .contains("shoeSize")
        );
        assert!(
            Template::parse("{userName|reverse}", &rt)
                .expect_err("filter")
                .contains("reverse")
        );
        assert!(
            Template::parse("{userName", &rt)
                .expect_err("open")
                .contains("unclosed")
        );
        assert!(
            Template::parse("fixed", &rt)
                .expect_err("constant")
                .contains("names no attribute")
        );
        assert!(
            Template::parse("{name}", &rt)
                .expect_err("complex")
                .contains("complex")
        );
    }
}
