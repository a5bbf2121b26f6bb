//! The config file as written: plain serde types, unknown keys refused, positions kept.
//!
//! Nothing here interprets a value; [`super::validate`] does that, reporting every problem at
//! once with its line.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// A string with its position in the file.
pub type S = Spanned<String>;

/// A part of the file as parsed, every value with its position: what a kind of store gets to
/// parse its own keys from ([`crate::backend::StoreKind`]).
pub type RawValue<'a> = Spanned<toml::de::DeValue<'a>>;

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
    /// `[backend.NAME]`: each parsed by its kind of store from the spanned document
    /// ([`super::mapping`]), so only its presence is read here.
    #[serde(default)]
    pub backend: IndexMap<String, serde::de::IgnoredAny>,
    /// `[resource.NAME]`: parsed from the spanned document, like `backend`.
    #[serde(default)]
    pub resource: IndexMap<String, serde::de::IgnoredAny>,
    /// `[state]`
    pub state: Option<Spanned<RawState>>,
    /// `[audit]`
    pub audit: Option<Spanned<RawAudit>>,
}

/// `[audit]`: the audit log of writes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// `"stdout"` or a file path.
    pub output: S,
}

/// `[state]`: where the sidecar keeps attributes the app has no place for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// An SQL `[backend.NAME]`.
    pub backend: S,
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
    /// Time a kept-alive connection may sit idle.
    pub idle_timeout: Option<S>,
    /// Time the TLS handshake may take.
    pub tls_handshake_timeout: Option<S>,
    /// Time a client may pause in the middle of a request body.
    pub body_idle_timeout: Option<S>,
    /// HTTP/2 keep-alive ping interval.
    pub http2_keepalive_interval: Option<S>,
    /// Connections open at once.
    pub max_connections: Option<NumOrStr>,
    /// Addresses or CIDR ranges of proxies whose `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<S>,
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
    /// Most members one response carries.
    pub max_members: Option<NumOrStr>,
    /// Most members held by responses at once.
    pub members_in_flight: Option<NumOrStr>,
    /// `ignore` or `reject`.
    pub unknown_attributes: Option<S>,
    /// `Retry-After` on 503, in seconds.
    pub retry_after: Option<NumOrStr>,
    /// Published in `/ServiceProviderConfig`.
    pub documentation_uri: Option<S>,
    /// Time a client has to send a whole SCIM request body.
    pub body_timeout: Option<S>,
    /// `Host` values that may be used in absolute URLs when `public_url` is not set.
    #[serde(default)]
    pub allowed_hosts: Vec<S>,
}

/// `[auth]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Accepted bearer tokens: `"${T}"` or `{ token = "${T}", read_only = true }`.
    #[serde(default)]
    pub bearer_tokens: Vec<Spanned<RawCredential>>,
    /// Files each holding one bearer token: `"/path"` or `{ file = "/path", read_only = true }`.
    #[serde(default)]
    pub bearer_token_files: Vec<Spanned<RawCredential>>,
    /// `[[auth.jwt]]`: external token issuers.
    #[serde(default)]
    pub jwt: Vec<Spanned<RawJwt>>,
    /// `[auth.oauth]`: the client-credentials token endpoint.
    pub oauth: Option<Spanned<RawOAuth>>,
}

/// A credential entry: a plain string, or a table.
#[derive(Debug, Default)]
pub struct RawCredential {
    /// The plain-string form.
    pub plain: Option<String>,
    /// The table form.
    pub table: RawCredentialTable,
}

/// The table form of a credential entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentialTable {
    /// The token (in `bearer_tokens`).
    pub token: Option<String>,
    /// The file (in `bearer_token_files`).
    pub file: Option<String>,
    /// Read and search only.
    pub read_only: Option<BoolOrStr>,
}

impl<'de> Deserialize<'de> for RawCredential {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawCredential;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a string, or a table such as { token = \"${SCIM_TOKEN}\", read_only = true }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawCredential, E> {
                Ok(RawCredential {
                    plain: Some(v.to_owned()),
                    ..Default::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawCredential, A::Error> {
                RawCredentialTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|table| RawCredential { plain: None, table })
            }
        }
        d.deserialize_any(V)
    }
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StrOrList {
    /// `"a"`
    One(String),
    /// `["a", "b"]`
    Many(Vec<String>),
}

/// `[[auth.jwt]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// `entra`: fills issuer, audience, jwks_url and algorithms from `tenant`.
    pub preset: Option<S>,
    /// Entra tenant id (with `preset = "entra"`).
    pub tenant: Option<S>,
    /// Exact `iss`.
    pub issuer: Option<S>,
    /// Accepted `aud` values.
    pub audience: Option<Spanned<StrOrList>>,
    /// Accepted `alg` values.
    pub algorithms: Option<Vec<S>>,
    /// Clock skew on `exp`/`nbf`.
    pub leeway: Option<S>,
    /// JWK set URL.
    pub jwks_url: Option<S>,
    /// JWK set file.
    pub jwks_file: Option<S>,
    /// CA bundle for an https `jwks_url`.
    pub ca: Option<S>,
    /// Least time between two fetches of `jwks_url`.
    pub jwks_refresh_min: Option<S>,
    /// Scope needed to write.
    pub write_scope: Option<S>,
    /// Every token of this issuer is read-only.
    pub read_only: Option<BoolOrStr>,
}

/// `[auth.oauth]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    /// Path of the token endpoint.
    pub path: Option<S>,
    /// `[[auth.oauth.clients]]`
    #[serde(default)]
    pub clients: Vec<Spanned<RawOAuthClient>>,
    /// HMAC key for issued tokens.
    pub signing_key: Option<S>,
    /// Lifetime of issued tokens.
    pub token_lifetime: Option<S>,
    /// Failed attempts one client IP may make at once.
    pub failed_attempts_burst: Option<NumOrStr>,
    /// Failed attempts one client IP regains per minute.
    pub failed_attempts_per_minute: Option<NumOrStr>,
    /// Longest delay of a request from an address or for a client out of attempts.
    pub max_delay: Option<S>,
}

/// One `[[auth.oauth.clients]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuthClient {
    /// `client_id`.
    pub client_id: S,
    /// `client_secret`, as `${VAR}`.
    pub client_secret: S,
    /// Its tokens are read-only.
    pub read_only: Option<BoolOrStr>,
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

/// The keys every `[resource.NAME]` has, whatever its store; the others are the store's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    /// `[backend.NAME]` holding the resource.
    pub backend: S,
    /// Core schema URN.
    pub schema: Option<S>,
    /// Endpoint path.
    pub endpoint: Option<S>,
    /// Description.
    pub description: Option<S>,
    /// `hard` or `soft`.
    pub on_delete: Option<S>,
    /// The group type whose members this type's read-only `groups` shows.
    pub groups: Option<S>,
}

/// One `[resource.X.set]` entry: a constant, or `{ value | now | template, on }`.
#[derive(Debug)]
pub struct RawSet(pub RawSetTable);

/// The table form of a `set` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSetTable {
    /// A constant.
    pub value: Option<toml::Value>,
    /// The current time.
    pub now: Option<bool>,
    /// Text built from attributes.
    pub template: Option<S>,
    /// `insert` or `always`.
    pub on: Option<S>,
}

impl<'de> Deserialize<'de> for RawSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSet;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value, or a table such as { now = true, on = \"always\" } or { template = \"{userName|lower}\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSet, E> {
                Ok(RawSet(RawSetTable {
                    value: Some(toml::Value::String(v.to_owned())),
                    ..Default::default()
                }))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSet, E> {
                Ok(RawSet(RawSetTable {
                    value: Some(toml::Value::Integer(v)),
                    ..Default::default()
                }))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawSet, E> {
                Ok(RawSet(RawSetTable {
                    value: Some(toml::Value::Boolean(v)),
                    ..Default::default()
                }))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawSet, E> {
                Ok(RawSet(RawSetTable {
                    value: Some(toml::Value::Float(v)),
                    ..Default::default()
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawSet, A::Error> {
                RawSetTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawSet)
            }
        }
        d.deserialize_any(V)
    }
}

/// The key of `members = { … }` every store shares; the others are the store's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMembersCommon {
    /// Member resource type (default `User`).
    #[serde(rename = "type")]
    pub kind: Option<S>,
}

/// The keys of a `[resource.X.map]` entry that describe the SCIM attribute; the others say
/// where the store keeps it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttrCommon {
    /// Kept in the sidecar's own state.
    pub kept: Option<bool>,
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
    /// Value map: SCIM value → stored value, or a list of them (the first is written).
    pub values: Option<IndexMap<String, toml::Value>>,
    /// What a stored value the value map does not list reads as.
    pub fallback: Option<toml::Value>,
    /// Written when the attribute is absent: a value, or `{ template = "…" }`.
    pub default: Option<toml::Value>,
    /// `reject` (default) or `truncate`: a text longer than its column.
    pub overflow: Option<S>,
    /// A read-only attribute computed from others: `"{name.givenName} {name.familyName}"`.
    pub template: Option<S>,
}
