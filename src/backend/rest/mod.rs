//! The REST store: users and groups provisioned through the application's own admin HTTP
//! API, so that its business rules (audit rows, derived grants) run as they do for its own
//! admin screens.
//!
//! - **Config** ([`Rest`], registered in [`crate::backend::kind::KINDS`]): `[backend.NAME]`
//!   `type = "rest"` with `base_url`, authentication (`headers = { "X-API-Key" = "…" }`, their
//!   secrets from files with `headers_file = { "X-API-Key" = "/run/secrets/key" }`, or
//!   `basic = { username, password | password_file }`, or `oauth2 = { token_url, client_id,
//!   client_secret | client_secret_file, scope }`), `tls = { ca }` for `https`,
//!   `connect_timeout`, `timeout` (one attempt), `max_concurrency`, `retries`, and
//!   `duplicate` (texts of a 409/422 that mean a unique value is taken).
//! - **Addressing** (a `[resource.X]`): `collection = "/users"` and `suffix = ".json"` give
//!   every operation's default path (`POST /users.json`, `GET /users/{id}.json`, …); `create`,
//!   `get`, `list`, `update`, `delete` override one (`{ method, path, query, headers, body }`).
//!   `wrap = "user"` and `items = "users"` say where the resource sits in a single answer and
//!   in a list (dotted paths); `id = "id"`; `paging = { style = "page" | "offset" | "cursor" |
//!   "next", page | offset | cursor, size, max, total, first, next }`; `filter = { userName =
//!   { param = "search", fuzzy = true } }`; `scan_limit`; `update_sends = "changed" | "all"`;
//!   `update_method = "PUT" | "PATCH"`; `etag = false` (no `If-Match`). A map entry is a
//!   JSON path in the resource object (`"login"`, `"profile.title"`), or `{ field, json =
//!   "integer" }`. A group's `members = { read = "users", id = "id", query = { include =
//!   "users" }, concurrency, add = { …, exists, missing }, remove = { …, absent } }`. Bodies
//!   are templates ([`template`]); without one, `{ wrap: { field: value, … } }`.
//! - **Requests** (`table`) and the HTTP client ([`client`], with the one status mapping).
//!
//! Kept values (`externalId`) and soft-delete tombstones live in the `[state] backend` (an
//! SQL store), through [`crate::backend::state::Overlay`]: an API has no place for them.

mod answer;
pub mod client;
mod table;
pub mod template;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::backend::{
    Backend, BackendError, FieldInfo, FieldSource, FieldType, Loc, Location, Opened, Refused,
    SpecPart, SpecProblem, StoreConfig, StoreKind, TableSpec,
};
use crate::config::Cx;
use crate::config::raw::{NumOrStr, RawValue, S};
use crate::mapping::Origin;
use client::{Client, ClientConfig, Req, StatusRules};
use template::{BodyT, Part, PathT, Ref};

// === The kind ===

/// `type = "rest"`: an application's admin HTTP API.
pub struct Rest;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRest {
    #[serde(rename = "type")]
    _kind: S,
    base_url: Option<S>,
    headers: Option<IndexMap<String, S>>,
    headers_file: Option<IndexMap<String, S>>,
    basic: Option<toml::Spanned<RawBasic>>,
    oauth2: Option<toml::Spanned<RawOAuth2>>,
    tls: Option<toml::Spanned<RawTls>>,
    connect_timeout: Option<S>,
    timeout: Option<S>,
    max_concurrency: Option<NumOrStr>,
    retries: Option<NumOrStr>,
    duplicate: Option<Vec<S>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    username: S,
    password: Option<S>,
    password_file: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: S,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth2 {
    token_url: S,
    client_id: S,
    client_secret: Option<S>,
    client_secret_file: Option<S>,
    scope: Option<S>,
}

/// `oauth2 = { … }`, parsed.
#[derive(Clone)]
struct OAuth2Config {
    https: bool,
    host: String,
    port: u16,
    path: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
}

/// A REST backend's settings.
#[derive(Clone)]
pub struct RestConfig {
    /// The base URL as written (for messages).
    pub base_url: String,
    https: bool,
    host: String,
    port: u16,
    prefix: String,
    /// Headers of every request (secrets: never shown).
    headers: Vec<(HeaderName, HeaderValue)>,
    ca_file: Option<std::path::PathBuf>,
    oauth2: Option<OAuth2Config>,
    /// Connecting may take this long.
    pub connect_timeout: Duration,
    /// One attempt may take this long.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Further attempts of idempotent requests.
    pub retries: u32,
    /// Texts of a 409/422 answer that mean a unique value is taken.
    pub duplicate: Vec<String>,
}

impl std::fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the header values: they hold the credentials.
        f.debug_struct("RestConfig")
            .field("base_url", &self.base_url)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("ca_file", &self.ca_file)
            .field("max_concurrency", &self.max_concurrency)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// Splits `http(s)://host[:port][/prefix]`; `Err` says what is wrong.
fn split_url(u: &str) -> Result<(bool, String, u16, String), String> {
    let (https, rest) = if let Some(r) = u.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = u.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "base_url \"{u}\" is not an http:// or https:// URL"
        ));
    };
    if rest.contains(['?', '#', '@']) {
        return Err(format!(
            "base_url \"{u}\" must not hold a query, a fragment or credentials"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let uri: http::uri::Authority = authority
        .parse()
        .map_err(|_| format!("base_url \"{u}\" has no valid host"))?;
    let host = uri.host().to_owned();
    if host.is_empty() {
        return Err(format!("base_url \"{u}\" has no host"));
    }
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok((https, host, port, path.to_owned()))
}

/// A secret from a `*_file` key: the file's content without its final line break.
fn read_secret(cx: &mut Cx<'_>, f: &S, what: &str) -> Option<String> {
    let fo = cx.origin(f.span());
    let p = cx.path(f, what)?;
    cx.files.push(p.clone());
    match std::fs::read_to_string(&p) {
        Ok(s) => Some(s.trim_end_matches(['\r', '\n']).to_owned()),
        Err(e) => {
            cx.error(&fo, format!("cannot read {}: {e}", p.display()), None);
            None
        }
    }
}

fn header(
    cx: &mut Cx<'_>,
    at: &Origin,
    name: &str,
    value: &str,
) -> Option<(HeaderName, HeaderValue)> {
    let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
        cx.error(at, format!("\"{name}\" is not an HTTP header name"), None);
        return None;
    };
    match HeaderValue::from_str(value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some((n, v))
        }
        Err(_) => {
            // Never the value: it is a secret.
            cx.error(
                at,
                format!("the value of header {name} holds characters a header cannot carry"),
                None,
            );
            None
        }
    }
}

impl StoreKind for Rest {
    fn name(&self) -> &'static str {
        "rest"
    }

    fn backend(
        &self,
        name: &str,
        raw: &RawValue<'_>,
        cx: &mut Cx<'_>,
    ) -> Option<Arc<dyn StoreConfig>> {
        let o = cx.origin(raw.span());
        let b: RawRest = cx.deserialize(raw, &format!("[backend.{name}]"))?;
        let url = b.base_url.as_ref().and_then(|u| cx.string(u, "base_url"));
        let parts = match &url {
            None => {
                cx.error(
                    &o,
                    format!("[backend.{name}] needs base_url = \"${{REST_BASE_URL}}\""),
                    Some("e.g. http://127.0.0.1:3000 or https://app.example.com/api"),
                );
                None
            }
            Some(u) => match split_url(u) {
                Ok(p) => Some(p),
                Err(e) => {
                    let uo = b
                        .base_url
                        .as_ref()
                        .map_or(o.clone(), |s| cx.origin(s.span()));
                    cx.error(&uo, e, None);
                    None
                }
            },
        };
        let mut headers = Vec::new();
        for (k, v) in b.headers.iter().flatten() {
            let at = cx.origin(v.span());
            if let Some(val) = cx.string(v, &format!("header {k}")) {
                headers.extend(header(cx, &at, k, &val));
            }
        }
        for (k, f) in b.headers_file.iter().flatten() {
            let at = cx.origin(f.span());
            if b.headers.as_ref().is_some_and(|h| h.contains_key(k)) {
                cx.error(
                    &at,
                    format!("header {k} is given in headers and headers_file"),
                    Some("keep one of the two"),
                );
                continue;
            }
            if let Some(val) = read_secret(cx, f, &format!("headers_file {k}")) {
                headers.extend(header(cx, &at, k, &val));
            }
        }
        if let Some(basic) = &b.basic {
            let bo = cx.origin(basic.span());
            let basic = basic.get_ref();
            let user = cx.string(&basic.username, "basic.username");
            let password = match (&basic.password, &basic.password_file) {
                (Some(_), Some(_)) | (None, None) => {
                    cx.error(
                        &bo,
                        "basic needs password or password_file (one of the two)",
                        Some("basic = { username = \"sidecar\", password_file = \"/run/secrets/app-password\" }"),
                    );
                    None
                }
                (Some(p), None) => cx.string(p, "basic.password"),
                (None, Some(f)) => read_secret(cx, f, "basic.password_file"),
            };
            if headers
                .iter()
                .any(|(n, _)| *n == http::header::AUTHORIZATION)
            {
                cx.error(
                    &bo,
                    "basic and an Authorization header cannot both be given",
                    None,
                );
            } else if let (Some(u), Some(p)) = (user, password) {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                headers.extend(header(cx, &bo, "authorization", &format!("Basic {token}")));
            }
        }
        let oauth2 = b.oauth2.as_ref().and_then(|raw| {
            let oo = cx.origin(raw.span());
            let r = raw.get_ref();
            let url = cx.string(&r.token_url, "oauth2.token_url");
            let parts = url.as_deref().and_then(|u| match split_url(u) {
                Ok(p) => Some(p),
                Err(e) => {
                    let uo = cx.origin(r.token_url.span());
                    cx.error(&uo, format!("oauth2.token_url: {e}"), None);
                    None
                }
            });
            let client_id = cx.string(&r.client_id, "oauth2.client_id");
            let secret = match (&r.client_secret, &r.client_secret_file) {
                (Some(_), Some(_)) | (None, None) => {
                    cx.error(
                        &oo,
                        "oauth2 needs client_secret or client_secret_file (one of the two)",
                        Some("oauth2 = { token_url = \"…\", client_id = \"…\", client_secret_file = \"/run/secrets/oauth\" }"),
                    );
                    None
                }
                (Some(p), None) => cx.string(p, "oauth2.client_secret"),
                (None, Some(f)) => read_secret(cx, f, "oauth2.client_secret_file"),
            };
            let scope = cx.opt_string(&r.scope, "oauth2.scope");
            if headers.iter().any(|(n, _)| *n == http::header::AUTHORIZATION) {
                cx.error(&oo, "oauth2 and an Authorization header (or basic) cannot both be given", None);
            }
            let (https, host, port, path) = parts?;
            Some(OAuth2Config {
                https,
                host,
                port,
                path: if path.is_empty() { "/".into() } else { path },
                client_id: client_id?,
                client_secret: secret?,
                scope,
            })
        });
        let ca_file = match &b.tls {
            Some(t) => {
                let to = cx.origin(t.span());
                let p = cx.path(&t.get_ref().ca, "backend tls.ca");
                if let Some(p) = &p {
                    if let Err(e) = crate::tls::client_config(p) {
                        cx.error(&to, e, None);
                    }
                    cx.files.push(p.clone());
                }
                p
            }
            None => None,
        };
        let any_https =
            parts.as_ref().is_some_and(|p| p.0) || oauth2.as_ref().is_some_and(|o| o.https);
        if any_https && ca_file.is_none() {
            cx.error(
                &o,
                format!(
                    "[backend.{name}] uses https and needs the CA that signed the app's certificate"
                ),
                Some("add tls = { ca = \"/etc/ssl/app-ca.pem\" }"),
            );
        }
        let connect_timeout = cx.duration(
            &b.connect_timeout,
            "backend connect_timeout",
            Duration::from_secs(5),
        );
        let timeout = cx.duration(&b.timeout, "backend timeout", Duration::from_secs(10));
        for (d, what) in [(connect_timeout, "connect_timeout"), (timeout, "timeout")] {
            if d.is_zero() {
                cx.error(&o, format!("backend {what} must be more than 0s"), None);
            }
        }
        let max_concurrency = cx.number(
            &b.max_concurrency,
            &o,
            "backend max_concurrency",
            (1, 256),
            8,
        ) as usize;
        let retries = cx.number(&b.retries, &o, "backend retries", (0, 10), 2) as u32;
        let duplicate = b
            .duplicate
            .iter()
            .flatten()
            .filter_map(|d| cx.string(d, "backend duplicate"))
            .collect::<Vec<_>>();
        let (https, host, port, prefix) = parts?;
        Some(Arc::new(RestConfig {
            base_url: url.unwrap_or_default(),
            https,
            host,
            port,
            prefix,
            headers,
            ca_file,
            oauth2,
            connect_timeout,
            timeout,
            max_concurrency,
            retries,
            duplicate: if duplicate.is_empty() {
                vec!["already been taken".into(), "already exists".into()]
            } else {
                duplicate
            },
        }))
    }

    fn resource(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
        parse_resource(raw, what, cx).map(|r| Arc::new(r) as Loc)
    }

    fn field(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
        if let Some(s) = raw.get_ref().as_str() {
            let path = json_path(cx, &toml::Spanned::new(raw.span(), s.to_owned()), what)?;
            return Some(Arc::new(RestField {
                path,
                ty: FieldType::Text { max_len: None },
            }));
        }
        let f: RawField = cx.deserialize(raw, what)?;
        let path = json_path(cx, &f.field, what)?;
        let ty = match f
            .json
            .as_ref()
            .and_then(|j| cx.string(j, "json"))
            .as_deref()
        {
            None | Some("string") => FieldType::Text { max_len: None },
            Some("integer") => FieldType::Integer,
            Some("number") => FieldType::Real,
            Some("boolean") => FieldType::Boolean,
            Some(other) => {
                let jo = f
                    .json
                    .as_ref()
                    .map_or(cx.origin(raw.span()), |j| cx.origin(j.span()));
                cx.error(
                    &jo,
                    format!("{what}: json = \"{other}\" is not string, integer, number or boolean"),
                    None,
                );
                return None;
            }
        };
        Some(Arc::new(RestField { path, ty }))
    }

    fn members(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
        let o = cx.origin(raw.span());
        let m: RawMembers = cx.deserialize(raw, what)?;
        let read = json_path(cx, &m.read, "members.read")?;
        let id = match &m.id {
            Some(i) => json_path(cx, i, "members.id")?,
            None => vec!["id".to_owned()],
        };
        let query = params(cx, m.query.as_ref(), "members.query");
        let add = member_op(cx, &m.add, "members.add", Method::POST);
        let remove = member_op(cx, &m.remove, "members.remove", Method::DELETE);
        let concurrency = cx.number(&m.concurrency, &o, "members.concurrency", (1, 64), 4) as usize;
        Some(Arc::new(RestMembers {
            read,
            id,
            query,
            add: add?,
            remove: remove?,
            concurrency,
        }))
    }

    fn set_target(&self, key: &S, cx: &mut Cx<'_>) -> Option<Loc> {
        let path = json_path(cx, key, "set key")?;
        Some(Arc::new(RestField {
            path,
            ty: FieldType::Text { max_len: None },
        }))
    }
}

fn json_path(cx: &mut Cx<'_>, s: &S, what: &str) -> Option<Vec<String>> {
    let v = cx.string(s, what)?;
    let path = template::split_path(&v);
    if path.is_empty() || path.iter().any(String::is_empty) {
        let o = cx.origin(s.span());
        cx.error(
            &o,
            format!("{what}: \"{v}\" is not a JSON path"),
            Some("name a key of the resource's JSON, dotted for nested ones: login, profile.title"),
        );
        return None;
    }
    Some(path)
}

// === Addressing ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    collection: Option<S>,
    suffix: Option<S>,
    id: Option<S>,
    wrap: Option<S>,
    items: Option<S>,
    paging: Option<toml::Spanned<RawPaging>>,
    filter: Option<IndexMap<String, toml::Spanned<RawFilter>>>,
    scan_limit: Option<NumOrStr>,
    update_sends: Option<S>,
    update_method: Option<S>,
    etag: Option<bool>,
    member_of: Option<toml::Spanned<RawMemberOf>>,
    create: Option<toml::Spanned<RawOp>>,
    get: Option<toml::Spanned<RawOp>>,
    list: Option<toml::Spanned<RawOp>>,
    update: Option<toml::Spanned<RawOp>>,
    delete: Option<toml::Spanned<RawOp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemberOf {
    read: S,
    id: Option<S>,
    query: Option<IndexMap<String, S>>,
}

/// `member_of = { read = "groups", id = "id", query = { include = "groups" } }`: where a
/// read of a member lists the groups it belongs to (so a soft delete can leave them).
#[derive(Clone, Debug)]
pub struct MemberOfRead {
    /// Where the group list is in the resource object.
    pub read: Vec<String>,
    /// Where a group's id is in a list item.
    pub id: Vec<String>,
    /// Query parameters that make the read include them.
    pub query: Vec<(String, Vec<Part>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp {
    method: Option<S>,
    path: Option<S>,
    query: Option<IndexMap<String, S>>,
    headers: Option<IndexMap<String, S>>,
    body: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaging {
    style: Option<S>,
    page: Option<S>,
    offset: Option<S>,
    cursor: Option<S>,
    size: Option<S>,
    max: Option<NumOrStr>,
    total: Option<S>,
    first: Option<NumOrStr>,
    next: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    param: S,
    fuzzy: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    field: S,
    json: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMembers {
    read: S,
    id: Option<S>,
    query: Option<IndexMap<String, S>>,
    add: toml::Spanned<RawMemberOp>,
    remove: toml::Spanned<RawMemberOp>,
    concurrency: Option<NumOrStr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemberOp {
    method: Option<S>,
    path: S,
    query: Option<IndexMap<String, S>>,
    headers: Option<IndexMap<String, S>>,
    body: Option<toml::Value>,
    exists: Option<RawTolerate>,
    absent: Option<RawTolerate>,
    missing: Option<RawTolerate>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTolerate {
    Status(u16),
    Rule {
        status: u16,
        contains: Option<String>,
    },
}

/// One request of an operation, parsed: method, path template, query and header templates,
/// body template.
#[derive(Clone, Debug)]
pub struct Op {
    /// Method.
    pub method: Method,
    /// Path template.
    pub path: PathT,
    /// Query parameters, values templated.
    pub query: Vec<(String, Vec<Part>)>,
    /// Headers, constant.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body template, when given.
    pub body: Option<BodyT>,
    /// Where it is written.
    pub origin: Origin,
}

/// An answer a member operation takes as success (or as an unknown member).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tolerate {
    /// The status.
    pub status: StatusCode,
    /// Text the app's message must hold, if any.
    pub contains: Option<String>,
}

impl Tolerate {
    /// Whether `reply` is this answer.
    pub fn matches(&self, reply: &client::Reply) -> bool {
        reply.status == self.status
            && self.contains.as_ref().is_none_or(|c| {
                client::app_message(&reply.body).contains(c.as_str())
                    || String::from_utf8_lossy(&reply.body).contains(c.as_str())
            })
    }
}

/// A member operation (`members.add`, `members.remove`).
#[derive(Clone, Debug)]
pub struct MemberOp {
    /// The request.
    pub op: Op,
    /// Answer meaning "already a member" (add) — success.
    pub exists: Option<Tolerate>,
    /// Answer meaning "not a member" (remove) — success.
    pub absent: Option<Tolerate>,
    /// Answer meaning "no such member" — the missing-members error.
    pub missing: Option<Tolerate>,
}

/// How an API pages its lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Style {
    /// `page=N&per_page=M` (1-based unless `first = 0`).
    Page,
    /// `offset=N&limit=M` (0-based).
    Offset,
    /// `cursor=<the previous answer's next cursor>&limit=M`.
    Cursor,
    /// The previous answer's link to the next page (in the body at `next`, or a `Link:
    /// <…>; rel="next"` header), followed as it is.
    Next,
}

impl Style {
    /// Read in order from the first page only.
    pub fn by_cursor(&self) -> bool {
        matches!(self, Style::Cursor | Style::Next)
    }
}

/// How a list is paged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageStyle {
    /// The style.
    pub style: Style,
    /// The parameter of the page number, offset or cursor.
    pub page: String,
    /// Page size parameter.
    pub size: String,
    /// Largest page the API serves.
    pub max: u64,
    /// Where the answer says how many match, if it does.
    pub total: Option<Vec<String>>,
    /// The number of the first page (1).
    pub first: u64,
    /// Where the answer holds the next cursor or link.
    pub next: Option<Vec<String>>,
}

/// How one field can be asked for in a list's query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRule {
    /// The map key or JSON path it is written for.
    pub name: String,
    /// The query parameter.
    pub param: String,
    /// The API matches loosely (substring, any case): the sidecar keeps only exact matches.
    pub fuzzy: bool,
    /// Where it is written.
    pub origin: Origin,
}

/// `[resource.X]` of a REST store.
#[derive(Clone, Debug)]
pub struct RestResource {
    /// Create.
    pub create: Op,
    /// Read one.
    pub get: Op,
    /// List.
    pub list: Op,
    /// Replace or patch.
    pub update: Op,
    /// Delete.
    pub delete: Op,
    /// Where the id is in a resource object.
    pub id: Vec<String>,
    /// Where a single resource sits in an answer.
    pub wrap: Vec<String>,
    /// Where the list sits in a list answer.
    pub items: Vec<String>,
    /// Paging.
    pub paging: PageStyle,
    /// Query parameters for filters.
    pub filters: Vec<FilterRule>,
    /// Filters the API cannot answer are evaluated by the sidecar over at most this many
    /// resources; `None`: refused.
    pub scan_limit: Option<u64>,
    /// Updates send every mapped field, not only the changed ones.
    pub update_all: bool,
    /// Send the `ETag` of the read as `If-Match`.
    pub etag: bool,
    /// Where a read lists the groups the resource belongs to.
    pub member_of: Option<MemberOfRead>,
    /// Where it is written.
    pub origin: Origin,
}

/// Where a mapped value lives: a JSON path in the resource object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestField {
    /// The path.
    pub path: Vec<String>,
    /// The JSON type.
    pub ty: FieldType,
}

/// `members = { … }` of a REST group.
#[derive(Clone, Debug)]
pub struct RestMembers {
    /// Where the member list is in the group object.
    pub read: Vec<String>,
    /// Where a member's id is in a list item.
    pub id: Vec<String>,
    /// Query parameters a read of members adds to `get` (`include=users`).
    pub query: Vec<(String, Vec<Part>)>,
    /// Adds one member.
    pub add: MemberOp,
    /// Removes one member.
    pub remove: MemberOp,
    /// Member requests in flight at once for one change.
    pub concurrency: usize,
}

impl Location for RestResource {
    fn describe(&self) -> String {
        format!("the API's {}", self.list.path.text())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Location for RestField {
    fn describe(&self) -> String {
        format!("JSON field '{}'", self.path.join("."))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Location for RestMembers {
    fn describe(&self) -> String {
        format!("member list '{}'", self.read.join("."))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn params(
    cx: &mut Cx<'_>,
    m: Option<&IndexMap<String, S>>,
    what: &str,
) -> Vec<(String, Vec<Part>)> {
    let mut out = Vec::new();
    for (k, v) in m.into_iter().flatten() {
        let Some(text) = cx.string(v, &format!("{what} {k}")) else {
            continue;
        };
        match template::parse_parts(&text) {
            Ok(p) => out.push((k.clone(), p)),
            Err(e) => {
                let o = cx.origin(v.span());
                cx.error(&o, format!("{what} {k}: {e}"), None);
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn op(
    cx: &mut Cx<'_>,
    at: &Origin,
    method: Option<&S>,
    path: Option<&S>,
    query: Option<&IndexMap<String, S>>,
    headers: Option<&IndexMap<String, S>>,
    body: Option<&toml::Value>,
    what: &str,
    default: (Method, Option<String>),
) -> Option<Op> {
    let method = match method {
        None => default.0,
        Some(m) => {
            let t = cx
                .string(m, &format!("{what}.method"))?
                .to_ascii_uppercase();
            match Method::from_bytes(t.as_bytes()) {
                Ok(m)
                    if matches!(
                        m,
                        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE
                    ) =>
                {
                    m
                }
                _ => {
                    let o = cx.origin(m.span());
                    cx.error(
                        &o,
                        format!("{what}.method \"{t}\" is not GET, POST, PUT, PATCH or DELETE"),
                        None,
                    );
                    return None;
                }
            }
        }
    };
    let (path_text, po) = match path {
        Some(p) => (cx.string(p, &format!("{what}.path"))?, cx.origin(p.span())),
        None => match default.1 {
            Some(d) => (d, at.clone()),
            None => {
                cx.error(
                    at,
                    format!("{what} needs a path (or give the resource collection = \"/users\")"),
                    Some("e.g. path = \"/users/{id}.json\""),
                );
                return None;
            }
        },
    };
    let path = match PathT::parse(&path_text) {
        Ok(p) => p,
        Err(e) => {
            cx.error(&po, format!("{what}.path: {e}"), None);
            return None;
        }
    };
    let query = params(cx, query, &format!("{what}.query"));
    let mut hs = Vec::new();
    for (k, v) in headers.into_iter().flatten() {
        let o = cx.origin(v.span());
        if let Some(val) = cx.string(v, &format!("{what}.headers {k}")) {
            hs.extend(header(cx, &o, k, &val));
        }
    }
    let body = match body {
        None => None,
        Some(b) => match BodyT::from_toml(b) {
            Ok(t) => Some(t),
            Err(e) => {
                cx.error(at, format!("{what}.body: {e}"), None);
                return None;
            }
        },
    };
    Some(Op {
        method,
        path,
        query,
        headers: hs,
        body,
        origin: po,
    })
}

fn tolerate(t: Option<&RawTolerate>) -> Option<Tolerate> {
    let (status, contains) = match t? {
        RawTolerate::Status(s) => (*s, None),
        RawTolerate::Rule { status, contains } => (*status, contains.clone()),
    };
    Some(Tolerate {
        status: StatusCode::from_u16(status).ok()?,
        contains,
    })
}

fn member_op(
    cx: &mut Cx<'_>,
    raw: &toml::Spanned<RawMemberOp>,
    what: &str,
    method: Method,
) -> Option<MemberOp> {
    let at = cx.origin(raw.span());
    let r = raw.get_ref();
    let op = op(
        cx,
        &at,
        r.method.as_ref(),
        Some(&r.path),
        r.query.as_ref(),
        r.headers.as_ref(),
        r.body.as_ref(),
        what,
        (method, None),
    )?;
    for (t, key) in [
        (&r.exists, "exists"),
        (&r.absent, "absent"),
        (&r.missing, "missing"),
    ] {
        if t.is_some() && tolerate(t.as_ref()).is_none() {
            cx.error(&at, format!("{what}.{key} is not an HTTP status"), None);
        }
    }
    Some(MemberOp {
        op,
        exists: tolerate(r.exists.as_ref()),
        absent: tolerate(r.absent.as_ref()),
        missing: tolerate(r.missing.as_ref()),
    })
}

fn parse_resource(raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<RestResource> {
    let at = cx.origin(raw.span());
    let r: RawResource = cx.deserialize(raw, what)?;
    let collection = cx.opt_string(&r.collection, "collection");
    let suffix = cx.opt_string(&r.suffix, "suffix").unwrap_or_default();
    let coll = collection
        .as_deref()
        .map(|c| c.trim_end_matches('/').to_owned());
    let one = coll.as_ref().map(|c| format!("{c}/{{id}}{suffix}"));
    let all = coll.as_ref().map(|c| format!("{c}{suffix}"));
    let update_method = match cx.opt_string(&r.update_method, "update_method").as_deref() {
        None | Some("PUT") | Some("put") => Method::PUT,
        Some("PATCH") | Some("patch") => Method::PATCH,
        Some(other) => {
            cx.error(
                &at,
                format!("{what}: update_method \"{other}\" is not PUT or PATCH"),
                None,
            );
            Method::PUT
        }
    };
    let one_op = |cx: &mut Cx<'_>,
                  o: &Option<toml::Spanned<RawOp>>,
                  name: &str,
                  d: (Method, Option<String>)| {
        let (oat, raw_op) = match o {
            Some(s) => (cx.origin(s.span()), Some(s.get_ref())),
            None => (at.clone(), None),
        };
        op(
            cx,
            &oat,
            raw_op.and_then(|x| x.method.as_ref()),
            raw_op.and_then(|x| x.path.as_ref()),
            raw_op.and_then(|x| x.query.as_ref()),
            raw_op.and_then(|x| x.headers.as_ref()),
            raw_op.and_then(|x| x.body.as_ref()),
            &format!("{what} {name}"),
            d,
        )
    };
    let create = one_op(cx, &r.create, "create", (Method::POST, all.clone()));
    let get = one_op(cx, &r.get, "get", (Method::GET, one.clone()));
    let list = one_op(cx, &r.list, "list", (Method::GET, all.clone()));
    let update = one_op(cx, &r.update, "update", (update_method, one.clone()));
    let delete = one_op(cx, &r.delete, "delete", (Method::DELETE, one.clone()));
    let path_of = |cx: &mut Cx<'_>, s: &Option<S>, what: &str, default: &str| -> Vec<String> {
        match s {
            None => template::split_path(default),
            Some(s) => cx
                .string(s, what)
                .map(|t| template::split_path(&t))
                .unwrap_or_default(),
        }
    };
    let id = path_of(cx, &r.id, "id", "id");
    let wrap = path_of(cx, &r.wrap, "wrap", "");
    let items = path_of(cx, &r.items, "items", "");
    let paging = match &r.paging {
        None => PageStyle {
            style: Style::Page,
            page: "page".into(),
            size: "per_page".into(),
            max: 100,
            total: None,
            first: 1,
            next: None,
        },
        Some(p) => {
            let po = cx.origin(p.span());
            let p = p.get_ref();
            let style = match cx.opt_string(&p.style, "paging.style").as_deref() {
                None | Some("page") => Style::Page,
                Some("offset") => Style::Offset,
                Some("cursor") => Style::Cursor,
                Some("next") => Style::Next,
                Some(other) => {
                    cx.error(
                        &po,
                        format!(
                            "{what}: paging style \"{other}\" is not page, offset, cursor or next"
                        ),
                        None,
                    );
                    Style::Page
                }
            };
            let (param, key, default) = match style {
                Style::Page => (&p.page, "page", "page"),
                Style::Offset => (&p.offset, "offset", "offset"),
                Style::Cursor | Style::Next => (&p.cursor, "cursor", "cursor"),
            };
            for (given, k) in [
                (&p.page, "page"),
                (&p.offset, "offset"),
                (&p.cursor, "cursor"),
            ] {
                if given.is_some() && k != key {
                    cx.error(
                        &po,
                        format!("{what}: paging.{k} does not belong to style {key}"),
                        None,
                    );
                }
            }
            let next = cx
                .opt_string(&p.next, "paging.next")
                .map(|t| template::split_path(&t));
            if style == Style::Cursor && next.is_none() {
                cx.error(
                    &po,
                    format!("{what}: cursor paging needs next = \"<where the answer holds the next cursor>\""),
                    Some("e.g. next = \"meta.next_cursor\""),
                );
            }
            let default_size = if style == Style::Page {
                "per_page"
            } else {
                "limit"
            };
            PageStyle {
                page: cx
                    .opt_string(param, "paging parameter")
                    .unwrap_or_else(|| default.into()),
                size: cx
                    .opt_string(&p.size, "paging.size")
                    .unwrap_or_else(|| default_size.into()),
                max: cx.number(&p.max, &po, "paging.max", (1, 10_000), 100) as u64,
                total: cx
                    .opt_string(&p.total, "paging.total")
                    .map(|t| template::split_path(&t)),
                first: cx.number(&p.first, &po, "paging.first", (0, 1), 1) as u64,
                next,
                style,
            }
        }
    };
    let mut filters = Vec::new();
    for (k, f) in r.filter.iter().flatten() {
        let fo = cx.origin(f.span());
        if let Some(param) = cx.string(&f.get_ref().param, "filter param") {
            filters.push(FilterRule {
                name: k.clone(),
                param,
                fuzzy: f.get_ref().fuzzy.unwrap_or(false),
                origin: fo,
            });
        }
    }
    let scan_limit = r
        .scan_limit
        .as_ref()
        .map(|_| cx.number(&r.scan_limit, &at, "scan_limit", (1, 1_000_000), 1000) as u64);
    let update_all = match cx.opt_string(&r.update_sends, "update_sends").as_deref() {
        None | Some("changed") => false,
        Some("all") => true,
        Some(other) => {
            cx.error(
                &at,
                format!("{what}: update_sends \"{other}\" is not \"changed\" or \"all\""),
                None,
            );
            false
        }
    };
    Some(RestResource {
        create: create?,
        get: get?,
        list: list?,
        update: update?,
        delete: delete?,
        id,
        wrap,
        items,
        paging,
        filters,
        scan_limit,
        update_all,
        etag: r.etag.unwrap_or(true),
        member_of: r.member_of.as_ref().and_then(|m| {
            let m = m.get_ref();
            Some(MemberOfRead {
                read: json_path(cx, &m.read, "member_of.read")?,
                id: match &m.id {
                    Some(i) => json_path(cx, i, "member_of.id")?,
                    None => vec!["id".to_owned()],
                },
                query: params(cx, m.query.as_ref(), "member_of.query"),
            })
        }),
        origin: at,
    })
}

#[async_trait]
impl StoreConfig for RestConfig {
    fn kind(&self) -> &'static str {
        "rest"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Backend>, String> {
        let tls = match &self.ca_file {
            Some(p) => Some(crate::tls::client_config(p)?),
            _ => None,
        };
        let mut client = Client::new(ClientConfig {
            https: self.https,
            host: self.host.clone(),
            port: self.port,
            prefix: self.prefix.clone(),
            tls: tls.clone().filter(|_| self.https),
            headers: self.headers.clone(),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            max_concurrency: self.max_concurrency,
            retries: self.retries,
        })?;
        if let Some(o) = &self.oauth2 {
            let token_client = Client::new(ClientConfig {
                https: o.https,
                host: o.host.clone(),
                port: o.port,
                prefix: String::new(),
                tls: tls.filter(|_| o.https),
                headers: Vec::new(),
                connect_timeout: self.connect_timeout,
                timeout: self.timeout,
                max_concurrency: 2,
                retries: 0,
            })?;
            client = client.with_oauth(client::OAuth2 {
                client: Box::new(token_client),
                path: o.path.clone(),
                client_id: o.client_id.clone(),
                client_secret: o.client_secret.clone(),
                scope: o.scope.clone(),
                token: tokio::sync::Mutex::new(None),
            });
        }
        let backend = RestBackend {
            name: name.to_owned(),
            client: Arc::new(client),
            rules: StatusRules {
                duplicate: self.duplicate.clone(),
            },
            deadline: self.connect_timeout
                + (self.timeout + Duration::from_secs(2)) * (self.retries + 1) * 3,
        };
        // Start-up checks that the app answers at all; each resource's list checks the
        // credentials when it is opened.
        backend
            .ping()
            .await
            .map_err(|e| format!("{}: {e}", self.base_url))?;
        Ok(Arc::new(backend))
    }
}

// === The backend ===

/// An opened REST store.
pub struct RestBackend {
    name: String,
    client: Arc<Client>,
    rules: StatusRules,
    deadline: Duration,
}

fn problem(part: SpecPart, message: String, fix: Option<&str>) -> SpecProblem {
    SpecProblem {
        part,
        message,
        fix: fix.map(str::to_owned),
        warning: false,
    }
}

#[async_trait]
impl Backend for RestBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ping(&self) -> Result<(), BackendError> {
        // Any answer: the app is up (its root may well be a 404).
        self.client
            .send(&Req {
                method: Method::GET,
                path: "/".into(),
                headers: Vec::new(),
                body: None,
                form: None,
            })
            .await
            .map(|_| ())
    }

    fn deadline(&self) -> Duration {
        self.deadline
    }

    async fn open_table(&self, spec: TableSpec) -> Result<Opened, Refused> {
        let mut problems = Vec::new();
        let res = spec
            .resource
            .as_any()
            .downcast_ref::<RestResource>()
            .cloned();
        if res.is_none() {
            problems.push(foreign(&spec.resource, SpecPart::Table));
        }
        let mut fields = Vec::new();
        for (i, f) in spec.fields.iter().enumerate() {
            match &f.source {
                FieldSource::Store(loc) => match loc.as_any().downcast_ref::<RestField>() {
                    Some(l) => fields.push(table::Field {
                        name: f.name.clone(),
                        path: l.path.clone(),
                        ty: l.ty.clone(),
                        unique: f.unique,
                    }),
                    None => problems.push(foreign(loc, SpecPart::Field(i))),
                },
                FieldSource::Kept { name, .. } => problems.push(problem(
                    SpecPart::Field(i),
                    format!(
                        "'{name}' is kept by the sidecar, but a REST API cannot hold its state"
                    ),
                    Some("add [state] backend = \"<an SQL backend>\""),
                )),
            }
        }
        let mut constants = Vec::new();
        for (i, c) in spec.constants.iter().enumerate() {
            match c.target.as_any().downcast_ref::<RestField>() {
                Some(f) => constants.push(table::Constant {
                    path: f.path.clone(),
                    value: c.value.clone(),
                    on: c.on,
                }),
                None => problems.push(foreign(&c.target, SpecPart::Constant(i))),
            }
        }
        let members = match &spec.members {
            None => None,
            Some(m) => match m.loc.as_any().downcast_ref::<RestMembers>() {
                Some(how) => Some(how.clone()),
                None => {
                    problems.push(foreign(&m.loc, SpecPart::Members));
                    None
                }
            },
        };
        // Groups listing this resource: a soft delete leaves them through their remove.
        let mut groups: Vec<RestMembers> = spec
            .member_of
            .iter()
            .filter_map(|m| m.loc.as_any().downcast_ref::<RestMembers>().cloned())
            .collect();
        // Their remove requests name only the group and the member (the group's own table
        // reports any other placeholder).
        let ids_only = |name: &str| match name {
            "id" => Some(Ref::Id),
            "member" => Some(Ref::Member),
            _ => None,
        };
        groups.retain_mut(|g| {
            let path = g.remove.op.path.resolve(&ids_only).is_ok();
            let body = g
                .remove
                .op
                .body
                .as_mut()
                .is_none_or(|b| b.resolve(&ids_only).is_ok());
            for (_, q) in &mut g.remove.op.query {
                for p in q.iter_mut() {
                    if let Part::Slot(s) = p {
                        s.to = ids_only(&s.name);
                    }
                }
            }
            path && body
        });
        let Some(mut res) = res else {
            return Err(problems.into());
        };
        if !spec.hard_delete && !groups.is_empty() && res.member_of.is_none() {
            problems.push(SpecProblem {
                warning: true,
                ..problem(
                    SpecPart::Table,
                    format!(
                        "a soft-deleted {} stays a member of its groups in the app (the sidecar no longer lists it)",
                        spec.resource_type
                    ),
                    Some("add member_of = { read = \"groups\", id = \"id\", query = { include = \"groups\" } } where a read lists the groups"),
                )
            });
        }
        if problems.iter().any(|p| !p.warning) {
            return Err(problems.into());
        }
        // Every placeholder names a map key, a mapped JSON path, a `set` key, or the
        // request's own id (and member).
        let nf = fields.len();
        let lookup_with = |member: bool| {
            let fields = &fields;
            let constants = &constants;
            move |name: &str| -> Option<Ref> {
                if name == "id" {
                    return Some(Ref::Id);
                }
                if member && name == "member" {
                    return Some(Ref::Member);
                }
                fields
                    .iter()
                    .position(|f| f.name == name)
                    .or_else(|| fields.iter().position(|f| f.path.join(".") == name))
                    .or_else(|| {
                        constants
                            .iter()
                            .position(|c| c.path.join(".") == name)
                            .map(|i| nf + i)
                    })
                    .map(Ref::Field)
            }
        };
        let lookup = lookup_with(false);
        let known = || {
            let mut k: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
            k.push("id".into());
            k.join(", ")
        };
        let check_op = |o: &mut Op, what: &str, lookup: &dyn Fn(&str) -> Option<Ref>| {
            let mut out = Vec::new();
            let mut unknown = Vec::new();
            if let Err(u) = o.path.resolve(lookup) {
                unknown.extend(u);
            }
            for (_, q) in &mut o.query {
                for p in q.iter_mut() {
                    if let Part::Slot(s) = p {
                        s.to = lookup(&s.name);
                        if s.to.is_none() {
                            unknown.push(s.name.clone());
                        }
                    }
                }
            }
            if let Some(b) = &mut o.body {
                if let Err(u) = b.resolve(lookup) {
                    unknown.extend(u);
                }
            }
            for u in unknown {
                out.push(problem(
                    SpecPart::At(o.origin.clone()),
                    format!("{what}: {{{u}}} is not a mapped field"),
                    Some(&format!("use one of: {}", known())),
                ));
            }
            out
        };
        problems.extend(check_op(&mut res.create, "create", &lookup));
        problems.extend(check_op(&mut res.get, "get", &lookup));
        problems.extend(check_op(&mut res.list, "list", &lookup));
        problems.extend(check_op(&mut res.update, "update", &lookup));
        problems.extend(check_op(&mut res.delete, "delete", &lookup));
        for (o, name) in [
            (&res.get, "get"),
            (&res.update, "update"),
            (&res.delete, "delete"),
        ] {
            if !o.path.uses(Ref::Id) {
                problems.push(problem(
                    SpecPart::At(o.origin.clone()),
                    format!("{name}'s path does not hold {{id}}"),
                    Some("e.g. path = \"/users/{id}.json\""),
                ));
            }
        }
        let mut members = members;
        if let Some(m) = &mut members {
            let ml = lookup_with(true);
            problems.extend(check_op(&mut m.add.op, "members.add", &ml));
            problems.extend(check_op(&mut m.remove.op, "members.remove", &ml));
            for (_, q) in &mut m.query {
                for p in q.iter_mut() {
                    if let Part::Slot(s) = p {
                        s.to = lookup(&s.name);
                    }
                }
            }
        }
        let mut rules = Vec::new();
        for f in &res.filters {
            match fields
                .iter()
                .position(|x| x.name == f.name)
                .or_else(|| fields.iter().position(|x| x.path.join(".") == f.name))
            {
                Some(i) => rules.push((i, f.clone())),
                None => problems.push(problem(
                    SpecPart::At(f.origin.clone()),
                    format!("filter {}: not a mapped field", f.name),
                    Some(&format!("use one of: {}", known())),
                )),
            }
        }
        if problems.iter().any(|p| !p.warning) {
            return Err(problems.into());
        }
        let t = table::RestTable::new(
            self.client.clone(),
            spec.resource_type.clone(),
            res,
            fields,
            constants,
            members,
            rules,
            self.rules.clone(),
        )
        .leaving(groups);
        // The credentials and the list endpoint, with the smallest page.
        if let Err(e) = t.probe().await {
            return Err(vec![problem(
                SpecPart::Table,
                format!("listing {} failed: {e}", spec.resource_type),
                Some("check base_url, the credentials (headers, basic) and the list path"),
            )]
            .into());
        }
        let infos = t.infos();
        Ok(Opened {
            table: Arc::new(t),
            fields: infos,
            warnings: problems,
        })
    }
}

/// What the REST store says about a field: the declared JSON type, nullable, no uniqueness
/// it could enforce.
fn info(ty: &FieldType) -> FieldInfo {
    FieldInfo {
        ty: ty.clone(),
        nullable: true,
        has_default: true,
        unique: false,
        multi_valued: false,
    }
}

fn foreign(loc: &Loc, part: SpecPart) -> SpecProblem {
    problem(
        part,
        format!(
            "{} is not a REST location (it belongs to another kind of store)",
            loc.describe()
        ),
        Some("a resource and its map entries must use one backend"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Problems of `text` (a whole config file), as `(line, message)`.
    fn problems(text: &str) -> Vec<(usize, String)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        let env: std::collections::HashMap<String, String> = Default::default();
        match crate::config::load_stores(&path, &env) {
            Ok(_) => Vec::new(),
            Err(p) => p
                .into_iter()
                .filter(|p| !p.warning)
                .map(|p| (p.origin.line, p.message))
                .collect(),
        }
    }

    /// Basic credentials become one sensitive `Authorization` header; secrets come from files
    /// without their final line break; nothing secret is in the debug form.
    #[test]
    fn credentials_become_headers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "p\n").expect("secret");
        let key = dir.path().join("key");
        std::fs::write(&key, "k3y\n").expect("key");
        let text = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[auth]\nbearer_tokens = [\"t0123456789abcdefgh\"]\n\
             [backend.app]\ntype = \"rest\"\nbase_url = \"http://127.0.0.1:9/api/\"\n\
             basic = {{ username = \"u\", password_file = \"{}\" }}\n\
             headers_file = {{ \"X-API-Key\" = \"{}\" }}\n",
            secret.display(),
            key.display()
        );
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        let env: std::collections::HashMap<String, String> = Default::default();
        let config = crate::config::load_stores(&path, &env).expect("loads");
        let rest = config.backends[0]
            .store
            .as_any()
            .downcast_ref::<RestConfig>()
            .expect("rest");
        let get = |n: &str| {
            rest.headers
                .iter()
                .find(|(k, _)| k.as_str() == n)
                .map(|(_, v)| (v.to_str().unwrap_or_default().to_owned(), v.is_sensitive()))
        };
        // base64("u:p")
        assert_eq!(get("authorization"), Some(("Basic dTpw".into(), true)));
        assert_eq!(get("x-api-key"), Some(("k3y".into(), true)));
        assert_eq!(rest.prefix, "/api");
        let shown = format!("{rest:?}");
        assert!(!shown.contains("k3y") && !shown.contains("dTpw"), "{shown}");
    }

    /// Every problem of the store's part is reported at once, each at its own line.
    #[test]
    fn config_problems_are_reported_together_with_their_lines() {
        let text = r#"[auth]
bearer_tokens = ["t0123456789abcdef"]

[backend.app]
type = "rest"
base_url = "ftp://app"
headers_file = { "X-API-Key" = "/nonexistent/key" }
basic = { username = "u" }
retries = 99

[resource.User]
backend = "app"
collection = "/users"
create = { path = "users.json" }
update_sends = "some"
paging = { style = "cursor" }

[resource.User.map]
userName = { field = "login", json = "text" }
"#;
        let p = problems(text);
        let at = |line: usize, needle: &str| {
            assert!(
                p.iter().any(|(l, m)| *l == line && m.contains(needle)),
                "line {line}: {needle}\n{p:#?}"
            )
        };
        at(6, "not an http:// or https:// URL");
        at(7, "cannot read /nonexistent/key");
        at(8, "basic needs password or password_file");
        at(4, "retries must be a whole number from 0 to 10");
        at(14, "must start with '/'");
        at(11, "update_sends \"some\"");
        at(16, "cursor paging needs next");
        at(19, "json = \"text\"");
    }

    #[test]
    fn base_urls_split() {
        assert_eq!(
            split_url("http://127.0.0.1:3001").expect("ok"),
            (false, "127.0.0.1".into(), 3001, String::new())
        );
        assert_eq!(
            split_url("https://app.example.com/api/v2/").expect("ok"),
            (true, "app.example.com".into(), 443, "/api/v2".into())
        );
        assert!(split_url("ftp://x").is_err());
        assert!(split_url("http://user:pw@x").is_err());
        assert!(split_url("http://x/?a=1").is_err());
    }
}
