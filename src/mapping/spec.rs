//! What a mapping file says about one resource type, parsed and checked for shape but not yet
//! checked against the store. The config loader builds these; [`super::build`] turns each into
//! a served resource once the store has confirmed that what the mapping names exists. Where a
//! value lives in the store is a [`Loc`] the store's kind parsed: nothing here reads it.

use std::fmt;
use std::sync::Arc;

use crate::backend::{Loc, Value};
use crate::scim::filter::PatchPath;
use crate::scim::schema::{AttrType, Mutability, Returned, Uniqueness};

/// Where a setting was written: file and line, for every message about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The config file.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A problem with the configuration or the store it describes, with the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where it was written.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: Option<String>,
    /// Warnings are reported but do not stop start-up.
    pub warning: bool,
}

impl Problem {
    /// An error.
    pub fn error(origin: &Origin, message: impl Into<String>, fix: Option<String>) -> Self {
        Problem {
            origin: origin.clone(),
            message: message.into(),
            fix,
            warning: false,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.warning { "warning" } else { "error" };
        write!(f, "{}: {kind}: {}", self.origin, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n    fix: {fix}")?;
        }
        Ok(())
    }
}

/// How `DELETE` deprovisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDelete {
    /// Remove the row.
    Hard,
    /// Keep the row and store `active = false` through its mapping.
    Soft,
}

/// One `[resource.X]` table.
#[derive(Clone, Debug)]
pub struct ResourceSpec {
    /// Resource type name (`User`).
    pub name: String,
    /// Endpoint (`/Users`).
    pub endpoint: String,
    /// Description for `/ResourceTypes`.
    pub description: String,
    /// Core schema URN.
    pub schema: String,
    /// Name of the `[backend.NAME]` holding the resource.
    pub backend: String,
    /// Where the resource lives in that store (its table, key and discriminator; …).
    pub store: Loc,
    /// Delete mode.
    pub on_delete: OnDelete,
    /// Attribute mappings, in file order.
    pub attrs: Vec<AttrSpec>,
    /// Values the sidecar writes by itself (`[resource.X.set]`).
    pub set: Vec<SetSpec>,
    /// Group membership, when this type has members.
    pub members: Option<MemberMap>,
    /// `groups = "Group"`: the group type whose memberships this type's read-only `groups`
    /// attribute shows, and where the key is written.
    pub groups: Option<(String, Origin)>,
    /// Where the `[resource.X]` table starts.
    pub origin: Origin,
}

impl ResourceSpec {
    /// Whether the sidecar keeps state for this type: kept attributes, or the tombstones of
    /// soft deletes.
    pub fn keeps_state(&self) -> bool {
        self.on_delete == OnDelete::Soft || self.attrs.iter().any(|a| a.source.is_kept())
    }
}

/// One entry of `[resource.X.map]`.
#[derive(Clone, Debug)]
pub struct AttrSpec {
    /// The key as written (`emails[type eq "work"].value`).
    pub key: String,
    /// The key, parsed.
    pub path: PatchPath,
    /// Where the value is kept.
    pub source: AttrSource,
    /// Override of the schema's `caseExact`.
    pub case_exact: Option<bool>,
    /// Override of `required`.
    pub required: Option<bool>,
    /// Override of `mutability`.
    pub mutability: Option<Mutability>,
    /// Override of `returned`.
    pub returned: Option<Returned>,
    /// Override of `uniqueness`.
    pub uniqueness: Option<Uniqueness>,
    /// The SCIM type, for attributes of schemas that are not built in.
    pub ty: Option<AttrType>,
    /// Description, for attributes of schemas that are not built in.
    pub description: Option<String>,
    /// Value map: SCIM value (JSON) and a store value it is kept as. A SCIM value may have
    /// several: the first is written, every one reads as it.
    pub values: Vec<(serde_json::Value, Value)>,
    /// What a stored value the value map does not list reads as (`fallback`).
    pub fallback: Option<serde_json::Value>,
    /// What is written when the attribute is absent (`default`).
    pub default: Option<AttrDefault>,
    /// A text longer than its column is cut to fit (`overflow = "truncate"`) instead of
    /// refused.
    pub truncate: bool,
    /// Where it was written.
    pub origin: Origin,
}

/// `default` of a map entry: written when a create or replace leaves the attribute absent.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrDefault {
    /// A SCIM value (converted like one the client sent: a value map applies).
    Value(serde_json::Value),
    /// Text built from the resource's other attributes: `"{name.givenName} {name.familyName}"`.
    Template(String),
}

/// Where a mapped attribute's value is kept.
#[derive(Clone, Debug)]
pub enum AttrSource {
    /// In the resource's store, where the store's kind parsed it to be.
    Store(Loc),
    /// In the sidecar's own state (`{ kept = true }`), created by `scim-sidecar migrate`.
    Kept,
    /// Stored nowhere: computed on every read from the resource's other attributes
    /// (`{ template = "…" }`), and read-only.
    Derived(String),
}

impl AttrSource {
    /// Whether the sidecar keeps the value itself.
    pub fn is_kept(&self) -> bool {
        matches!(self, AttrSource::Kept)
    }

    /// Where the value is, for messages.
    pub fn describe(&self) -> String {
        match self {
            AttrSource::Store(loc) => loc.describe(),
            AttrSource::Kept => "the sidecar's own state".into(),
            AttrSource::Derived(t) => format!("the template \"{t}\""),
        }
    }
}

/// One entry of `[resource.X.set]`: a value the sidecar writes by itself.
#[derive(Clone, Debug)]
pub struct SetSpec {
    /// Where it goes, as the store parsed the key.
    pub target: Loc,
    /// The key as written, for messages.
    pub shown: String,
    /// What is written.
    pub value: SetValue,
    /// On insert only, or on every write.
    pub on: crate::backend::When,
    /// Where it was written.
    pub origin: Origin,
}

/// What a `[resource.X.set]` entry writes.
#[derive(Clone, Debug)]
pub enum SetValue {
    /// A constant.
    Value(Value),
    /// The current time.
    Now,
    /// A text built from attributes: `"{name.givenName} {name.familyName}"`.
    Template(String),
}

/// `members = { … }`: how a group's members are kept.
#[derive(Clone, Debug)]
pub struct MemberMap {
    /// Where, as the store parsed the table.
    pub loc: Loc,
    /// The resource type members are (`User`).
    pub member_type: String,
    /// Where it was written.
    pub origin: Origin,
}
