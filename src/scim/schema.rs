//! SCIM schemas (RFC 7643 §7) and resource types (§6): the model every other part of `scim`
//! consults to know what an attribute is.
//!
//! The RFC's core User, Group and Enterprise User schema documents live in
//! `config/schemas/*.json` and are compiled into the binary. The mapping layer builds each
//! [`ResourceType`] from them, keeping only the attributes it really stores; discovery publishes
//! exactly that, and request bodies are normalised against it.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::filter::AttrPath;

/// URN of the core User schema.
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// URN of the core Group schema.
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// URN of the Enterprise User extension.
pub const ENTERPRISE_USER_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The data type of an attribute (RFC 7643 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttrType {
    /// A JSON string.
    String,
    /// `true` or `false`.
    Boolean,
    /// A real number.
    Decimal,
    /// A whole number.
    Integer,
    /// An `xsd:dateTime` string, e.g. `2008-01-23T04:56:22Z`.
    DateTime,
    /// Base64-encoded bytes.
    Binary,
    /// A URI to a resource.
    Reference,
    /// A singular or multi-valued object of sub-attributes.
    Complex,
}

impl AttrType {
    /// The type name as RFC 7643 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }

    /// Whether values of this type are compared as strings (and `caseExact` applies).
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            AttrType::String | AttrType::Reference | AttrType::Binary
        )
    }
}

/// When and whether an attribute may be changed (RFC 7643 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    /// Never written by clients; values in requests are ignored.
    ReadOnly,
    /// Freely updated.
    #[default]
    ReadWrite,
    /// Set once (on create, or when it had no value) and never changed.
    Immutable,
    /// Written but never returned (passwords).
    WriteOnly,
}

/// When an attribute is returned (RFC 7643 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    /// Always, even when `attributes` or `excludedAttributes` say otherwise.
    Always,
    /// Never.
    Never,
    /// Unless excluded, or unless `attributes` lists others.
    #[default]
    Default,
    /// Only when named in `attributes`.
    Request,
}

/// How the service provider enforces uniqueness (RFC 7643 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Uniqueness {
    /// No uniqueness.
    #[default]
    None,
    /// Unique within this service provider.
    Server,
    /// Globally unique.
    Global,
}

/// One attribute definition, serialised exactly as RFC 7643 §7 publishes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    /// Attribute name, in its canonical case.
    pub name: String,
    /// Data type.
    #[serde(rename = "type")]
    pub ty: AttrType,
    /// Whether the attribute holds an array of values.
    pub multi_valued: bool,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
    /// Whether a value must be present on create and replace.
    #[serde(default)]
    pub required: bool,
    /// Whether string comparison is case-sensitive.
    #[serde(default)]
    pub case_exact: bool,
    /// Suggested values (e.g. `work`, `home` for an email's `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canonical_values: Vec<String>,
    /// Mutability.
    #[serde(default)]
    pub mutability: Mutability,
    /// Returned characteristic.
    #[serde(default)]
    pub returned: Returned,
    /// Uniqueness.
    #[serde(default)]
    pub uniqueness: Uniqueness,
    /// Resource types a reference may point to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_types: Vec<String>,
    /// Sub-attributes of a complex attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_attributes: Vec<Attribute>,
}

impl Attribute {
    /// A plain single-valued readWrite attribute of the given type.
    pub fn new(name: &str, ty: AttrType) -> Self {
        Attribute {
            name: name.to_owned(),
            ty,
            multi_valued: false,
            description: String::new(),
            required: false,
            case_exact: false,
            canonical_values: Vec::new(),
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            reference_types: Vec::new(),
            sub_attributes: Vec::new(),
        }
    }

    /// The sub-attribute `name`, matched case-insensitively (RFC 7643 §2.1).
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Whether this is a complex attribute.
    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }
}

/// A schema document (RFC 7643 §7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// The schema URN.
    pub id: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: String,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
    /// Attribute definitions.
    pub attributes: Vec<Attribute>,
}

impl Schema {
    /// The attribute `name`, matched case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

static BUILTIN: LazyLock<Vec<Schema>> = LazyLock::new(|| {
    [
        include_str!("../../config/schemas/user.json"),
        include_str!("../../config/schemas/group.json"),
        include_str!("../../config/schemas/enterprise-user.json"),
    ]
    .iter()
    // The documents are part of the source tree and checked by a unit test; a broken one is
    // dropped rather than taking the process down.
    .filter_map(|doc| serde_json::from_str(doc).ok())
    .collect()
});

/// The RFC 7643 schema with this URN (core User, core Group, Enterprise User), if built in.
pub fn builtin(urn: &str) -> Option<&'static Schema> {
    BUILTIN.iter().find(|s| s.id.eq_ignore_ascii_case(urn))
}

/// A schema extension of a resource type.
#[derive(Clone, Debug, PartialEq)]
pub struct Extension {
    /// The extension schema, holding only the stored attributes.
    pub schema: Schema,
    /// Whether every resource must carry the extension.
    pub required: bool,
}

/// Where a resolved attribute lives in a resource's JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home<'a> {
    /// A common attribute (`id`, `externalId`, `meta`): a top-level key.
    Common,
    /// An attribute of the core schema: a top-level key.
    Core,
    /// An attribute of an extension: a key inside the object under this URN.
    Extension(&'a str),
}

/// An attribute path resolved against a resource type: canonical names and definitions.
#[derive(Clone, Copy, Debug)]
pub struct Resolved<'a> {
    /// Where the attribute lives.
    pub home: Home<'a>,
    /// The attribute's definition.
    pub attr: &'a Attribute,
    /// The sub-attribute's definition, when the path names one.
    pub sub: Option<&'a Attribute>,
}

impl<'a> Resolved<'a> {
    /// The effective definition: the sub-attribute if there is one, else the attribute.
    pub fn leaf(&self) -> &'a Attribute {
        self.sub.unwrap_or(self.attr)
    }
}

/// The canonical dotted path, URN-qualified for extensions (for messages and lookups),
/// written where it is needed without a string of its own.
impl std::fmt::Display for Resolved<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Home::Extension(urn) = self.home {
            f.write_str(urn)?;
            f.write_str(":")?;
        }
        f.write_str(&self.attr.name)?;
        if let Some(sub) = self.sub {
            f.write_str(".")?;
            f.write_str(&sub.name)?;
        }
        Ok(())
    }
}

/// A resource type as this service provider serves it (RFC 7643 §6).
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// Name, e.g. `User`.
    pub name: String,
    /// Endpoint relative to the base URL, e.g. `/Users`.
    pub endpoint: String,
    /// Human-readable description.
    pub description: String,
    /// The core schema, holding only stored attributes.
    pub schema: Schema,
    /// Schema extensions, holding only stored attributes.
    pub extensions: Vec<Extension>,
    /// Common attributes this resource type serves: always `id` and `meta`, `externalId` when
    /// stored.
    pub common: Vec<Attribute>,
    /// The multi-valued attribute whose values are memberships handled by the store directly
    /// (`members` of a Group), if any.
    pub membership: Option<String>,
    /// The resource type whose memberships list resources of this one (`Group` for users),
    /// when this type's read-only `groups` attribute is computed from them: `groups =
    /// "Group"` in its `[resource.X]`.
    pub groups_from: Option<String>,
    /// The unfiltered schemas, so messages can tell "not stored" from "unknown".
    pub known: Vec<Schema>,
}

/// Why an attribute path did not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The path names a schema URN this resource type does not have.
    UnknownSchema(String),
    /// The attribute exists in the SCIM schema but this service provider does not store it.
    NotStored(String),
    /// No such attribute in any schema of the resource type.
    Unknown(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::UnknownSchema(u) => write!(f, "unknown schema '{u}'"),
            ResolveError::NotStored(a) => {
                write!(f, "attribute '{a}' is not stored by this service provider")
            }
            ResolveError::Unknown(a) => write!(f, "unknown attribute '{a}'"),
        }
    }
}

impl ResourceType {
    /// The core schema URN plus every extension URN.
    pub fn schema_urns(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.schema.id.as_str())
            .chain(self.extensions.iter().map(|e| e.schema.id.as_str()))
    }

    /// Every top-level attribute of the core schema and the extensions, with where it lives;
    /// the common attributes first when `common`.
    pub fn attributes_with_home(
        &self,
        common: bool,
    ) -> impl Iterator<Item = (Home<'_>, &Attribute)> {
        let common = self
            .common
            .iter()
            .filter(move |_| common)
            .map(|a| (Home::Common, a));
        let core = self.schema.attributes.iter().map(|a| (Home::Core, a));
        let ext = self.extensions.iter().flat_map(|e| {
            e.schema
                .attributes
                .iter()
                .map(move |a| (Home::Extension(&e.schema.id), a))
        });
        common.chain(core).chain(ext)
    }

    /// The extension whose URN is `urn` (case-insensitive).
    pub fn extension(&self, urn: &str) -> Option<&Extension> {
        self.extensions
            .iter()
            .find(|e| e.schema.id.eq_ignore_ascii_case(urn))
    }

    /// The common attribute `name`, if served.
    pub fn common_attribute(&self, name: &str) -> Option<&Attribute> {
        self.common
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Resolves a path against this resource type (RFC 7643 §2.1: names are case-insensitive;
    /// an unqualified name refers to a common or core attribute, and, failing that, to an
    /// extension attribute with that name).
    pub fn resolve(&self, path: &AttrPath) -> Result<Resolved<'_>, ResolveError> {
        self.resolve_parts(path.urn.as_deref(), &path.name, path.sub.as_deref())
    }

    /// [`ResourceType::resolve`] on separate parts.
    pub fn resolve_parts(
        &self,
        urn: Option<&str>,
        name: &str,
        sub: Option<&str>,
    ) -> Result<Resolved<'_>, ResolveError> {
        let (home, attr) = match urn {
            Some(urn) if urn.eq_ignore_ascii_case(&self.schema.id) => {
                let attr = self
                    .schema
                    .attribute(name)
                    .or_else(|| self.common_attribute(name))
                    .ok_or_else(|| self.missing(Some(urn), name, None))?;
                (Home::Core, attr)
            }
            Some(urn) => {
                let ext = self.extension(urn).ok_or_else(|| {
                    if self.known.iter().any(|s| s.id.eq_ignore_ascii_case(urn)) {
                        ResolveError::NotStored(format!("{urn}:{name}"))
                    } else {
                        ResolveError::UnknownSchema(urn.to_owned())
                    }
                })?;
                let attr = ext
                    .schema
                    .attribute(name)
                    .ok_or_else(|| self.missing(Some(urn), name, None))?;
                (Home::Extension(ext.schema.id.as_str()), attr)
            }
            None => {
                if let Some(a) = self.common_attribute(name) {
                    (Home::Common, a)
                } else if let Some(a) = self.schema.attribute(name) {
                    (Home::Core, a)
                } else if let Some((e, a)) = self
                    .extensions
                    .iter()
                    .find_map(|e| e.schema.attribute(name).map(|a| (e, a)))
                {
                    (Home::Extension(e.schema.id.as_str()), a)
                } else {
                    return Err(self.missing(None, name, None));
                }
            }
        };
        let sub = match sub {
            None => None,
            Some(s) => Some(
                attr.sub(s)
                    .ok_or_else(|| self.missing(urn, name, Some(s)))?,
            ),
        };
        Ok(Resolved { home, attr, sub })
    }

    /// The error for a path that is not served: "not stored" when the full schema knows it.
    fn missing(&self, urn: Option<&str>, name: &str, sub: Option<&str>) -> ResolveError {
        let shown = match (urn, sub) {
            (Some(u), Some(s)) => format!("{u}:{name}.{s}"),
            (Some(u), None) => format!("{u}:{name}"),
            (None, Some(s)) => format!("{name}.{s}"),
            (None, None) => name.to_owned(),
        };
        let known = self.known.iter().any(|schema| {
            if let Some(u) = urn {
                if !schema.id.eq_ignore_ascii_case(u) {
                    return false;
                }
            }
            match (schema.attribute(name), sub) {
                (Some(a), Some(s)) => a.sub(s).is_some(),
                (Some(_), None) => true,
                (None, _) => false,
            }
        }) || (name.eq_ignore_ascii_case("externalId") && sub.is_none());
        if known {
            ResolveError::NotStored(shown)
        } else {
            ResolveError::Unknown(shown)
        }
    }
}

/// The common attributes every resource has (RFC 7643 §3.1). `external_id` adds `externalId`.
pub fn common_attributes(external_id: bool) -> Vec<Attribute> {
    let mut id = Attribute::new("id", AttrType::String);
    id.case_exact = true;
    id.mutability = Mutability::ReadOnly;
    id.returned = Returned::Always;
    id.uniqueness = Uniqueness::Server;
    let mut meta = Attribute::new("meta", AttrType::Complex);
    meta.mutability = Mutability::ReadOnly;
    let mut sub = |name: &str, ty: AttrType| {
        let mut a = Attribute::new(name, ty);
        a.mutability = Mutability::ReadOnly;
        a.case_exact = true;
        meta.sub_attributes.push(a);
    };
    sub("resourceType", AttrType::String);
    sub("created", AttrType::DateTime);
    sub("lastModified", AttrType::DateTime);
    sub("location", AttrType::Reference);
    sub("version", AttrType::String);
    let mut out = vec![id];
    if external_id {
        let mut ext = Attribute::new("externalId", AttrType::String);
        ext.case_exact = true;
        out.push(ext);
    }
    out.push(meta);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in RFC 7643 schema documents parse and carry the characteristics the
    /// protocol relies on.
    #[test]
    fn builtin_schemas_parse() {
        let user = builtin(USER_URN).expect("user schema");
        let un = user.attribute("USERNAME").expect("userName");
        assert_eq!(un.name, "userName");
        assert!(un.required);
        assert_eq!(un.uniqueness, Uniqueness::Server);
        let pw = user.attribute("password").expect("password");
        assert_eq!(pw.returned, Returned::Never);
        assert_eq!(pw.mutability, Mutability::WriteOnly);
        let emails = user.attribute("emails").expect("emails");
        assert!(emails.multi_valued);
        assert_eq!(
            emails.sub("TYPE").map(|a| a.canonical_values.len()),
            Some(3)
        );
        assert!(
            builtin(GROUP_URN)
                .and_then(|g| g.attribute("members"))
                .is_some()
        );
        let ent = builtin(ENTERPRISE_USER_URN).expect("enterprise");
        assert!(
            ent.attribute("manager")
                .and_then(|m| m.sub("value"))
                .is_some()
        );
    }

    fn user_type() -> ResourceType {
        let user = builtin(USER_URN).cloned().expect("user");
        let ent = builtin(ENTERPRISE_USER_URN).cloned().expect("ent");
        let mut stored = user.clone();
        stored
            .attributes
            .retain(|a| a.name == "userName" || a.name == "name");
        let mut stored_ent = ent.clone();
        stored_ent.attributes.retain(|a| a.name == "department");
        ResourceType {
            name: "User".into(),
            endpoint: "/Users".into(),
            description: String::new(),
            schema: stored,
            extensions: vec![Extension {
                schema: stored_ent,
                required: false,
            }],
            common: common_attributes(false),
            membership: None,
            groups_from: None,
            known: vec![user, ent],
        }
    }

    fn path(urn: Option<&str>, name: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: urn.map(Into::into),
            name: name.into(),
            sub: sub.map(Into::into),
        }
    }

    /// Resolution is case-insensitive, finds extension attributes qualified or not, and tells
    /// attributes that exist but are not stored from ones that do not exist.
    #[test]
    fn resolve_paths() {
        let rt = user_type();
        let r = rt.resolve(&path(None, "username", None)).expect("userName");
        assert_eq!(r.attr.name, "userName");
        assert_eq!(r.home, Home::Core);
        let r = rt
            .resolve(&path(None, "NAME", Some("givenname")))
            .expect("name.givenName");
        assert_eq!(r.to_string(), "name.givenName");
        let r = rt
            .resolve(&path(Some(ENTERPRISE_USER_URN), "Department", None))
            .expect("department");
        assert_eq!(r.home, Home::Extension(ENTERPRISE_USER_URN));
        assert!(rt.resolve(&path(None, "department", None)).is_ok());
        assert_eq!(
            rt.resolve(&path(None, "title", None)).err(),
            Some(ResolveError::NotStored("title".into()))
        );
        assert_eq!(
            rt.resolve(&path(None, "shoeSize", None)).err(),
            Some(ResolveError::Unknown("shoeSize".into()))
        );
        assert_eq!(
            rt.resolve(&path(Some(ENTERPRISE_USER_URN), "manager", None))
                .err(),
            Some(ResolveError::NotStored(format!(
                "{ENTERPRISE_USER_URN}:manager"
            )))
        );
        assert!(matches!(
            rt.resolve(&path(Some("urn:x:y"), "a", None)),
            Err(ResolveError::UnknownSchema(_))
        ));
        assert_eq!(
            rt.resolve(&path(None, "externalId", None)).err(),
            Some(ResolveError::NotStored("externalId".into()))
        );
        assert!(
            rt.resolve(&path(None, "meta", Some("lastmodified")))
                .is_ok()
        );
    }
}
