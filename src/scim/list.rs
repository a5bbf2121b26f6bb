//! Query parameters of list and search requests (RFC 7644 §3.4.2, §3.4.3): `filter`,
//! `sortBy`, `sortOrder`, `startIndex`, `count`, `attributes`, `excludedAttributes`, from a
//! query string or a `SearchRequest` body; and the `ListResponse` they produce.

use serde_json::{Value, json};

use super::error::ScimError;
use super::filter::{AttrPath, Filter, parse_attr_path, parse_filter};

/// The SearchRequest message URN.
pub const SEARCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// The ListResponse message URN.
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Parsed list parameters (before paging limits are applied).
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// The filter, parsed.
    pub filter: Option<Filter>,
    /// `sortBy`, parsed.
    pub sort_by: Option<AttrPath>,
    /// `sortOrder=descending`.
    pub descending: bool,
    /// 1-based `startIndex` (values below 1 read as 1, RFC 7644 §3.4.2.4).
    pub start_index: u64,
    /// `count` as asked (negative reads as 0); `None` when absent.
    pub count: Option<u64>,
    /// `attributes`, comma-separated.
    pub attributes: Option<String>,
    /// `excludedAttributes`, comma-separated.
    pub excluded: Option<String>,
}

/// Parameters that apply to any request returning resources (`attributes`,
/// `excludedAttributes`), read from a query string.
pub fn projection_params(query: Option<&str>) -> (Option<String>, Option<String>) {
    let mut attributes = None;
    let mut excluded = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k.eq_ignore_ascii_case("attributes") {
            attributes = Some(v.into_owned());
        } else if k.eq_ignore_ascii_case("excludedAttributes") {
            excluded = Some(v.into_owned());
        }
    }
    (attributes, excluded)
}

impl ListParams {
    /// Parses a query string. It is form-decoded, so `+` is a space: Entra sends
    /// `filter=userName+eq+%22x%22`. Parameter names are matched case-insensitively; unknown
    /// ones (such as Entra's `aadOptscim062020` flag) are ignored.
    pub fn from_query(query: Option<&str>) -> Result<Self, ScimError> {
        let mut p = ListParams {
            start_index: 1,
            ..Default::default()
        };
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.as_ref();
            match k.to_ascii_lowercase().as_str() {
                "filter" => p.filter = Some(filter(v)?),
                "sortby" => p.sort_by = Some(sort_by(v)?),
                "sortorder" => p.descending = sort_order(v)?,
                "startindex" => p.start_index = start_index(integer("startIndex", v)?),
                "count" => p.count = Some(count(integer("count", v)?)),
                "attributes" => p.attributes = Some(v.to_owned()),
                "excludedattributes" => p.excluded = Some(v.to_owned()),
                _ => {}
            }
        }
        Ok(p)
    }

    /// Parses a `POST /.search` body (RFC 7644 §3.4.3).
    pub fn from_search(body: Value) -> Result<Self, ScimError> {
        let obj = super::resource::message(body, SEARCH_URN, "a search body")?;
        let mut p = ListParams {
            start_index: 1,
            ..Default::default()
        };
        let text = |name: &str, v: &Value| -> Result<String, ScimError> {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| ScimError::invalid_value(format!("\"{name}\" must be a string")))
        };
        let list = |name: &str, v: &Value| -> Result<String, ScimError> {
            match v {
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.join(","))
                    .ok_or_else(|| {
                        ScimError::invalid_value(format!("\"{name}\" must be a list of strings"))
                    }),
                Value::String(s) => Ok(s.clone()),
                _ => Err(ScimError::invalid_value(format!(
                    "\"{name}\" must be a list of strings"
                ))),
            }
        };
        let number = |name: &str, v: &Value| -> Result<i64, ScimError> {
            match v {
                Value::Number(n) => n.as_i64().ok_or_else(|| {
                    ScimError::invalid_value(format!("\"{name}\" must be an integer"))
                }),
                Value::String(s) => integer(name, s),
                _ => Err(ScimError::invalid_value(format!(
                    "\"{name}\" must be an integer"
                ))),
            }
        };
        for (k, v) in &obj {
            match k.to_ascii_lowercase().as_str() {
                "filter" => p.filter = Some(filter(&text("filter", v)?)?),
                "sortby" => p.sort_by = Some(sort_by(&text("sortBy", v)?)?),
                "sortorder" => p.descending = sort_order(&text("sortOrder", v)?)?,
                "startindex" => p.start_index = start_index(number("startIndex", v)?),
                "count" => p.count = Some(count(number("count", v)?)),
                "attributes" => p.attributes = Some(list("attributes", v)?),
                "excludedattributes" => p.excluded = Some(list("excludedAttributes", v)?),
                _ => {}
            }
        }
        Ok(p)
    }
}

fn filter(v: &str) -> Result<Filter, ScimError> {
    parse_filter(v).map_err(|e| ScimError::invalid_filter(format!("filter: {e}")))
}

fn sort_by(v: &str) -> Result<AttrPath, ScimError> {
    parse_attr_path(v).map_err(|e| ScimError::invalid_value(format!("sortBy: {e}")))
}

fn sort_order(v: &str) -> Result<bool, ScimError> {
    if v.eq_ignore_ascii_case("ascending") {
        Ok(false)
    } else if v.eq_ignore_ascii_case("descending") {
        Ok(true)
    } else {
        Err(ScimError::invalid_value(format!(
            "sortOrder must be \"ascending\" or \"descending\", got \"{v}\""
        )))
    }
}

fn integer(name: &str, v: &str) -> Result<i64, ScimError> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, got \"{v}\"")))
}

/// RFC 7644 §3.4.2.4: a `startIndex` below 1 is read as 1.
fn start_index(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0).max(1)
}

/// RFC 7644 §3.4.2.4: a negative `count` is read as 0.
fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A `ListResponse` body (RFC 7644 §3.4.2).
pub fn list_response(total: u64, start_index: u64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
        "Resources": resources,
    })
}

/// A ListResponse (RFC 7644 §3.4.2) of resources serialised as they are written, in the
/// same form as [`list_response`].
pub struct ListResponse<T> {
    /// `totalResults`.
    pub total: u64,
    /// `startIndex` (1-based).
    pub start_index: u64,
    /// The page.
    pub resources: Vec<T>,
}

impl<T: serde::Serialize> serde::Serialize for ListResponse<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("schemas", &[LIST_URN])?;
        map.serialize_entry("totalResults", &self.total)?;
        map.serialize_entry("itemsPerPage", &self.resources.len())?;
        map.serialize_entry("startIndex", &self.start_index)?;
        map.serialize_entry("Resources", &self.resources)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entra's wire form: `+` for spaces; unknown flags ignored; limits read as the RFC says.
    #[test]
    fn query_strings() {
        let p = ListParams::from_query(Some(
            "aadOptscim062020&filter=userName+eq+%22Test_User%22&startIndex=0&count=-5&SORTBY=userName&sortOrder=Descending",
        ))
        .expect("parses");
        assert_eq!(
            p.filter.map(|f| f.to_string()).as_deref(),
            Some("userName eq \"Test_User\"")
        );
        assert_eq!(p.start_index, 1);
        assert_eq!(p.count, Some(0));
        assert!(p.descending);
        assert_eq!(
            p.sort_by.map(|s| s.to_string()).as_deref(),
            Some("userName")
        );
    }

    /// Bad parameters get precise 400s.
    #[test]
    fn bad_params() {
        let e = ListParams::from_query(Some("filter=userName+eq")).expect_err("filter");
        assert_eq!(e.scim_type, Some(crate::scim::ScimType::InvalidFilter));
        let e = ListParams::from_query(Some("count=ten")).expect_err("count");
        assert_eq!(e.detail, "count must be an integer, got \"ten\"");
        let e = ListParams::from_query(Some("sortOrder=up")).expect_err("order");
        assert!(e.detail.contains("\"up\""));
    }

    /// A SearchRequest body carries the same parameters, lists as arrays.
    #[test]
    fn search_body() {
        let p = ListParams::from_search(serde_json::json!({
            "schemas": [SEARCH_URN], "filter": "displayName sw \"A\"",
            "attributes": ["displayName", "id"], "startIndex": 3, "count": 2
        }))
        .expect("parses");
        assert_eq!(p.attributes.as_deref(), Some("displayName,id"));
        assert_eq!((p.start_index, p.count), (3, Some(2)));
        assert!(ListParams::from_search(serde_json::json!({"filter": "a pr"})).is_err());
    }
}
