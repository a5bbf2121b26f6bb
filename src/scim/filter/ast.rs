//! The SCIM filter and path syntax tree (RFC 7644 §3.4.2.2 and §3.5.2).
//!
//! Built by [`super::parse`], printed back by the `Display` impls (the printed form parses to
//! the same tree), resolved against a schema by `scim::resolve`, and compiled to a store query by
//! the mapping layer. Names are kept as the client wrote them; resolution canonicalises them.

use std::fmt;

/// An attribute reference: `[URI ":"] ATTRNAME ["." subAttr]`.
///
/// `urn` is the schema URN prefix without the trailing `:`, e.g.
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User` for
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// Schema URN the attribute is qualified with, if any.
    pub urn: Option<String>,
    /// Attribute name, as written.
    pub name: String,
    /// Sub-attribute name, as written (`givenName` in `name.givenName`).
    pub sub: Option<String>,
}

/// A comparison value: the JSON literals RFC 7644 allows on the right of an operator.
#[derive(Clone, Debug, PartialEq)]
pub enum CompValue {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A JSON number.
    Number(serde_json::Number),
    /// A JSON string (escapes already decoded).
    Str(String),
}

/// The attribute operators of RFC 7644 §3.4.2.2, except `pr` which is [`Filter::Present`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal to
    Ge,
    /// less than
    Lt,
    /// less than or equal to
    Le,
}

/// A filter expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `attrPath pr`
    Present(AttrPath),
    /// `attrPath compareOp compValue`
    Compare(AttrPath, CompareOp, CompValue),
    /// `attrPath "[" valFilter "]"`: some value of the multi-valued (or complex) attribute
    /// matches the inner filter, whose paths name sub-attributes. The outer path has no `sub`.
    ValuePath(AttrPath, Box<Filter>),
    /// `filter and filter`
    And(Box<Filter>, Box<Filter>),
    /// `filter or filter`
    Or(Box<Filter>, Box<Filter>),
    /// `not "(" filter ")"`
    Not(Box<Filter>),
}

/// A PATCH `path` (RFC 7644 §3.5.2): `attrPath` or `valuePath ["." subAttr]`.
///
/// `members[value eq "2819c223"]` is `{attr: members, filter: Some(..), sub: None}`;
/// `emails[type eq "work"].value` is `{attr: emails, filter: Some(..), sub: Some("value")}`;
/// `name.familyName` is `{attr: name.familyName, filter: None, sub: None}`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    /// The attribute addressed. Its `sub` is set only when there is no filter.
    pub attr: AttrPath,
    /// The value selection filter, if the path is a valuePath.
    pub filter: Option<Filter>,
    /// The sub-attribute after a valuePath (`.value` in `emails[type eq "work"].value`).
    pub sub: Option<String>,
}

impl CompareOp {
    /// The operator as written in a filter (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Number(n) => write!(f, "{n}"),
            // JSON string escaping gives a literal the parser reads back unchanged.
            CompValue::Str(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
        }
    }
}

/// Binding strength of a filter when printed: `or` 0, `and` 1, everything else 2.
fn precedence(filter: &Filter) -> u8 {
    match filter {
        Filter::Or(..) => 0,
        Filter::And(..) => 1,
        _ => 2,
    }
}

/// Writes `operand`, parenthesised if it binds less tightly than `min`.
fn write_operand(f: &mut fmt::Formatter<'_>, operand: &Filter, min: u8) -> fmt::Result {
    if precedence(operand) < min {
        write!(f, "({operand})")
    } else {
        write!(f, "{operand}")
    }
}

/// Prints the filter in RFC 7644 syntax with lower-case keywords and the fewest parentheses
/// that keep the tree (`and` binds tighter than `or`; both are left-associative).
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Compare(path, op, value) => write!(f, "{path} {op} {value}"),
            Filter::ValuePath(path, inner) => write!(f, "{path}[{inner}]"),
            Filter::And(left, right) => {
                write_operand(f, left, 1)?;
                f.write_str(" and ")?;
                write_operand(f, right, 2)
            }
            Filter::Or(left, right) => {
                write_operand(f, left, 0)?;
                f.write_str(" or ")?;
                write_operand(f, right, 1)
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
        }
    }
}

/// Prints the path as `attr`, `attr[filter]` or `attr[filter].sub`.
impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}
