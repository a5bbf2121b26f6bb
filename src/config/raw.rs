//! The config file as written: plain serde types, unknown keys refused, positions kept.
//!
//! Nothing here interprets a value; [`super::validate`] does that, reporting every problem at
//! once with its line.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// A string with its position in the file.
pub type S = Spanned<String>;

/// A number written as a number or as a string (so `"${POOL_SIZE:-4}"` works).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum NumOrStr {
    /// `4`
    Num(i64),
    /// `"${N:-4}"`
    Str(String),
}

/// A boolean written as a boolean or as a string.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum BoolOrStr {
    /// `true`
    Bool(bool),
    /// `"${FLAG:-true}"`
    Str(String),
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[listen]`
    pub listen: Option<Spanned<RawListen>>,
    /// `[upstream]`
    pub upstream: Option<Spanned<RawUpstream>>,
    /// `[scim]`
    pub scim: Option<Spanned<RawScim>>,
    /// `[auth]`
    pub auth: Option<Spanned<RawAuth>>,
    /// `[admin]`
    pub admin: Option<Spanned<RawAdmin>>,
    /// `[log]`
    pub log: Option<Spanned<RawLog>>,
    /// `[backend.NAME]`
    #[serde(default)]
    pub backend: IndexMap<String, Spanned<RawBackend>>,
    /// `[resource.NAME]`
    #[serde(default)]
    pub resource: IndexMap<String, Spanned<RawResource>>,
}

/// `[listen]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// `host:port`
    pub addr: Option<S>,
    /// `{ cert, key }`
    pub tls: Option<Spanned<RawTls>>,
    /// Grace period for in-flight requests on SIGTERM.
    pub shutdown_timeout: Option<S>,
    /// Time to keep accepting after SIGTERM while `/readyz` answers 503.
    pub drain_delay: Option<S>,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Option<S>,
}

/// `tls = { cert, key }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert: S,
    /// PEM private key.
    pub key: S,
}

/// `[upstream]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `http://host:port`
    pub url: S,
    /// Connect timeout.
    pub connect_timeout: Option<S>,
    /// Time to wait for response headers.
    pub timeout: Option<S>,
    /// Keep the client's Host header.
    pub preserve_host: Option<BoolOrStr>,
    /// Idle keep-alive connections are closed after this.
    pub pool_idle_timeout: Option<S>,
    /// Idle keep-alive connections kept.
    pub pool_max_idle: Option<NumOrStr>,
}

/// `[scim]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScim {
    /// Path prefix of SCIM requests.
    pub base_path: Option<S>,
    /// Absolute base URL for `meta.location`.
    pub public_url: Option<S>,
    /// Request body limit.
    pub max_body_bytes: Option<NumOrStr>,
    /// Page size when `count` is absent.
    pub default_count: Option<NumOrStr>,
    /// Page size cap.
    pub max_count: Option<NumOrStr>,
    /// `ignore` or `reject`.
    pub unknown_attributes: Option<S>,
    /// `Retry-After` on 503, in seconds.
    pub retry_after: Option<NumOrStr>,
    /// Published in `/ServiceProviderConfig`.
    pub documentation_uri: Option<S>,
}

/// `[auth]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Accepted bearer tokens.
    #[serde(default)]
    pub bearer_tokens: Vec<S>,
    /// Files each holding one bearer token.
    #[serde(default)]
    pub bearer_token_files: Vec<S>,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `host:port`
    pub addr: S,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: Option<S>,
    /// A tracing filter, e.g. `info` or `scim_sidecar=debug`; `RUST_LOG` wins.
    pub level: Option<S>,
}

/// `[backend.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// `sqlite`
    #[serde(rename = "type")]
    pub kind: S,
    /// SQLite: database file.
    pub path: Option<S>,
    /// SQLite: schema to create the database from when the file does not exist.
    pub create_from: Option<S>,
    /// SQLite: reader connections.
    pub readers: Option<NumOrStr>,
    /// SQLite: how long a write waits for a lock held by another process.
    pub busy_timeout: Option<S>,
}

/// `[resource.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    /// `[backend.NAME]` holding the table.
    pub backend: S,
    /// Table.
    pub table: S,
    /// Key column.
    pub key: Option<S>,
    /// Core schema URN.
    pub schema: Option<S>,
    /// Endpoint path.
    pub endpoint: Option<S>,
    /// Description.
    pub description: Option<S>,
    /// `hard` or `soft`.
    pub on_delete: Option<S>,
    /// Group membership.
    pub members: Option<Spanned<RawMembers>>,
    /// Attribute mappings.
    #[serde(default)]
    pub map: IndexMap<S, Spanned<RawAttr>>,
}

/// `members = { table, group, member, type }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMembers {
    /// Join table.
    pub table: S,
    /// Column with the group's key.
    pub group: S,
    /// Column with the member's key.
    pub member: S,
    /// Member resource type (default `User`).
    #[serde(rename = "type")]
    pub kind: Option<S>,
}

/// One map entry: `"column"` or `{ column = …, … }`.
#[derive(Debug)]
pub struct RawAttr(pub RawAttrTable);

/// The table form of a map entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttrTable {
    /// Column.
    pub column: S,
    /// Case-sensitive comparison.
    pub case_exact: Option<bool>,
    /// Required on create.
    pub required: Option<bool>,
    /// `readWrite`, `immutable`, `writeOnly`, `readOnly`.
    pub mutability: Option<S>,
    /// `default`, `always`, `request`, `never`.
    pub returned: Option<S>,
    /// `none`, `server`, `global`.
    pub uniqueness: Option<S>,
    /// SCIM type, for attributes of custom schemas.
    #[serde(rename = "type")]
    pub ty: Option<S>,
    /// Description, for attributes of custom schemas.
    pub description: Option<S>,
    /// Value map: SCIM value → stored value.
    pub values: Option<IndexMap<String, toml::Value>>,
}

impl<'de> Deserialize<'de> for RawAttr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawAttr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a column name, or a table such as { column = \"login\", case_exact = false }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawAttr, E> {
                Ok(RawAttr(RawAttrTable {
                    column: Spanned::new(0..0, v.to_owned()),
                    case_exact: None,
                    required: None,
                    mutability: None,
                    returned: None,
                    uniqueness: None,
                    ty: None,
                    description: None,
                    values: None,
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawAttr, A::Error> {
                RawAttrTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawAttr)
            }
        }
        d.deserialize_any(V)
    }
}
