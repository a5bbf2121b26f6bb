//! The LDAP store: users (and, next, groups) as entries of the application's own directory
//! (OpenLDAP, 389 DS, AD LDS; Active Directory as a flavour).
//!
//! - **Config** ([`Ldap`], registered in [`crate::backend::kind::KINDS`]): `[backend.NAME]`
//!   `type = "ldap"` with `url` (`ldap://` or `ldaps://`), `bind_dn`, `bind_password` (or
//!   `bind_password_file`), `tls = { ca, starttls }`, `pool_size`, `connect_timeout`,
//!   `operation_timeout`, `max_results`, `page_size`, `flavour` (`"active-directory"`). A `[resource.X]` says `base` (the DN its entries live
//!   under), `rdn = "uid={userName}"` (the naming attribute and the map key whose value names
//!   the entry), `object_classes`, `id` (the stable id attribute: `entryUUID` by default, never
//!   the DN, which changes on rename), `scope` (`one` or `sub`, default `one`) and
//!   `allocate = { uidNumber = "<counter DN>" }` (numbers for new entries, taken from a
//!   counter entry by an atomic delete-old/add-new modify, see [`table`]) and
//!   `disabled_base` (where `on_delete = "soft"` moves entries). A map entry
//!   is an attribute name, or `{ attribute, ordering, binary }`. A group's `members =
//!   { attribute = "member", empty = "cn=nobody" }` keeps member DNs in an attribute
//!   (`member`, `uniqueMember`), or with `value = "uid"` the members' own values of that
//!   attribute (`posixGroup`'s `memberUid`);
//!   `empty` is the placeholder DN written when a group has no member and its object class
//!   requires one (`groupOfNames`), never shown as a member.
//! - **Connections** ([`pool`]): a few bound connections, each multiplexing requests; one
//!   found closed (a directory restart) is replaced on the next checkout, so the sidecar
//!   recovers without a restart.
//! - **Requests** ([`table`]): entries read and written with one LDAP operation each where
//!   LDAP allows; what takes two (a rename and a modify) is compensated on failure.
//! - **Filters** ([`filter`]) and **escaping** ([`escape`]): RFC 4515 and RFC 4514.
//! - **Active Directory** ([`ad`]): `flavour = "active-directory"` on the backend gives the
//!   same store AD's ways (objectGUID ids, `active` as a bit of `userAccountControl`,
//!   `password` as `unicodePwd`, ranged member reads), at a few hooks in [`table`] and
//!   [`filter`].
//!
//! Kept values (`externalId`) live in the `[state] backend` (an SQL store): a directory has
//! no place for the sidecar's own state.

pub mod ad;
#[cfg(test)]
mod ber_tests;
#[cfg(test)]
mod entry_tests;
pub mod escape;
pub mod filter;
#[cfg(test)]
mod filter_parser_tests;
mod pool;
mod schema;
mod table;

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::backend::{
    Backend, BackendError, FieldSource, Loc, Location, Opened, Refused, SpecPart, SpecProblem,
    StoreConfig, StoreKind, TableSpec,
};
use crate::config::Cx;
use crate::config::raw::{BoolOrStr, NumOrStr, RawValue, S};

/// The Simple Paged Results control (RFC 2696).
const PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";

// === The kind ===

/// `type = "ldap"`: an LDAP directory.
pub struct Ldap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdap {
    #[serde(rename = "type")]
    _kind: S,
    url: Option<S>,
    bind_dn: Option<S>,
    bind_password: Option<S>,
    bind_password_file: Option<S>,
    tls: Option<toml::Spanned<RawTls>>,
    pool_size: Option<NumOrStr>,
    connect_timeout: Option<S>,
    operation_timeout: Option<S>,
    max_results: Option<NumOrStr>,
    page_size: Option<NumOrStr>,
    flavour: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: Option<S>,
    starttls: Option<BoolOrStr>,
}

/// An LDAP backend's settings.
#[derive(Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// The DN the sidecar binds as; empty for an anonymous bind.
    pub bind_dn: String,
    /// Its password.
    pub bind_password: String,
    /// CA certificates (PEM) trusted for `ldaps://` and StartTLS; the system's roots without.
    pub ca_file: Option<PathBuf>,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// Connections kept open.
    pub pool_size: usize,
    /// How long connecting and binding may take.
    pub connect_timeout: Duration,
    /// How long one LDAP operation may take.
    pub operation_timeout: Duration,
    /// The most entries one search reads (its size limit): a search matching more is refused
    /// with a message to narrow the filter, never truncated.
    pub max_results: usize,
    /// Entries per page when a search is read with the Simple Paged Results control (RFC
    /// 2696), so a directory's per-search size limit (Active Directory's MaxPageSize, 1000;
    /// OpenLDAP's `sizelimit`, 500 by default) does not cut a list short; 0 sends searches
    /// unpaged. Used only when the directory's root DSE offers the control.
    pub page_size: usize,
    /// A standard directory, or Active Directory ([`ad`]).
    pub flavour: ad::Flavour,
}

impl LdapConfig {
    /// Whether connections are encrypted (LDAPS, or StartTLS).
    pub fn encrypted(&self) -> bool {
        self.url.starts_with("ldaps://") || self.starttls
    }
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("ca_file", &self.ca_file)
            .field("starttls", &self.starttls)
            .field("pool_size", &self.pool_size)
            .field("flavour", &self.flavour)
            .finish_non_exhaustive()
    }
}

impl StoreKind for Ldap {
    fn name(&self) -> &'static str {
        "ldap"
    }

    fn backend(
        &self,
        name: &str,
        raw: &RawValue<'_>,
        cx: &mut Cx<'_>,
    ) -> Option<Arc<dyn StoreConfig>> {
        let o = cx.origin(raw.span());
        let b: RawLdap = cx.deserialize(raw, &format!("[backend.{name}]"))?;
        let url = b.url.as_ref().and_then(|u| cx.string(u, "backend url"));
        match &url {
            None => cx.error(
                &o,
                format!("[backend.{name}] needs url = \"${{LDAP_URL}}\""),
                Some("e.g. ldap://127.0.0.1:389 or ldaps://ldap.example.com:636"),
            ),
            Some(u) if !(u.starts_with("ldap://") || u.starts_with("ldaps://")) => {
                let uo = b
                    .url
                    .as_ref()
                    .map(|s| cx.origin(s.span()))
                    .unwrap_or(o.clone());
                cx.error(
                    &uo,
                    format!("backend url \"{u}\" is not an ldap:// or ldaps:// URL"),
                    None,
                );
            }
            Some(_) => {}
        }
        let bind_dn = cx
            .opt_string(&b.bind_dn, "backend bind_dn")
            .unwrap_or_default();
        let bind_password = match (&b.bind_password, &b.bind_password_file) {
            (Some(_), Some(f)) => {
                let fo = cx.origin(f.span());
                cx.error(
                    &fo,
                    "give bind_password or bind_password_file, not both",
                    None,
                );
                String::new()
            }
            (Some(p), None) => cx.string(p, "backend bind_password").unwrap_or_default(),
            (None, Some(f)) => {
                let fo = cx.origin(f.span());
                match cx.path(f, "backend bind_password_file") {
                    Some(p) => {
                        cx.files.push(p.clone());
                        match std::fs::read_to_string(&p) {
                            Ok(s) => s.trim_end_matches(['\r', '\n']).to_owned(),
                            Err(e) => {
                                cx.error(&fo, format!("cannot read {}: {e}", p.display()), None);
                                String::new()
                            }
                        }
                    }
                    None => String::new(),
                }
            }
            (None, None) => String::new(),
        };
        if !bind_dn.is_empty() && bind_password.is_empty() {
            cx.error(
                &o,
                format!("[backend.{name}] has a bind_dn but no password"),
                Some("add bind_password = \"${LDAP_BIND_PASSWORD}\" or bind_password_file"),
            );
        }
        let (ca_file, starttls) = match &b.tls {
            Some(t) => {
                let to = cx.origin(t.span());
                let t = t.get_ref();
                let ca = t.ca.as_ref().and_then(|c| cx.path(c, "backend tls.ca"));
                if let Some(p) = &ca {
                    if !p.exists() {
                        cx.error(&to, format!("CA file {} does not exist", p.display()), None);
                    }
                }
                (
                    ca,
                    cx.boolean(&t.starttls, &to, "backend tls.starttls", false),
                )
            }
            None => (None, false),
        };
        if starttls && url.as_deref().is_some_and(|u| u.starts_with("ldaps://")) {
            cx.error(
                &o,
                "tls.starttls is for ldap:// URLs; ldaps:// is TLS already",
                None,
            );
        }
        let pool_size = cx.number(&b.pool_size, &o, "backend pool_size", (1, 64), 4) as usize;
        let connect_timeout = cx.duration(
            &b.connect_timeout,
            "backend connect_timeout",
            Duration::from_secs(5),
        );
        let operation_timeout = cx.duration(
            &b.operation_timeout,
            "backend operation_timeout",
            Duration::from_secs(10),
        );
        let max_results = cx.number(
            &b.max_results,
            &o,
            "backend max_results",
            (1, 1_000_000),
            10_000,
        ) as usize;
        let page_size =
            cx.number(&b.page_size, &o, "backend page_size", (0, 100_000), 500) as usize;
        let flavour = match &b.flavour {
            None => ad::Flavour::Standard,
            Some(f) => {
                let fo = cx.origin(f.span());
                match cx.string(f, "backend flavour") {
                    Some(v) => ad::Flavour::parse(&v).unwrap_or_else(|| {
                        cx.error(
                            &fo,
                            format!("flavour \"{v}\" is not \"ldap\" or \"active-directory\""),
                            Some("write flavour = \"active-directory\" for Active Directory or Samba AD; leave it out for any other directory"),
                        );
                        ad::Flavour::Standard
                    }),
                    None => ad::Flavour::Standard,
                }
            }
        };
        Some(Arc::new(LdapConfig {
            flavour,
            url: url?,
            bind_dn,
            bind_password,
            ca_file,
            starttls,
            pool_size,
            connect_timeout,
            operation_timeout,
            max_results,
            page_size,
        }))
    }

    fn resource(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
        parse_resource(raw, what, cx)
    }

    fn field(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
        parse_field(raw, what, cx)
    }

    fn members(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
        let m: RawMembers = cx.deserialize(raw, what)?;
        let attr = attribute(cx, &m.attribute, "members.attribute")?;
        let empty = cx.opt_string(&m.empty, "members.empty");
        let value = match &m.value {
            Some(v) => Some(attribute(cx, v, "members.value")?),
            None => None,
        };
        Some(Arc::new(LdapMembers { attr, empty, value }))
    }

    fn set_target(&self, key: &S, cx: &mut Cx<'_>) -> Option<Loc> {
        attribute(cx, key, "set attribute").map(|a| {
            Arc::new(LdapField {
                attr: a,
                ordering: false,
                binary: false,
            }) as Loc
        })
    }
}

#[async_trait]
impl StoreConfig for LdapConfig {
    fn kind(&self) -> &'static str {
        "ldap"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Backend>, String> {
        let pool = pool::Pool::new(self)?;
        // Start-up checks that the directory answers and the bind works.
        pool.check()
            .await
            .map_err(|e| format!("cannot bind to {} as '{}': {e}", self.url, self.bind_dn))?;
        if self.page_size > 0 {
            match pool.supports_control(PAGED_RESULTS).await {
                Ok(true) => pool.set_page_size(i32::try_from(self.page_size).unwrap_or(i32::MAX)),
                Ok(false) => tracing::info!(
                    backend = name,
                    "the directory does not offer the Simple Paged Results control: searches are \
                     read in one piece, up to its own size limit"
                ),
                Err(e) => return Err(format!("cannot read the root DSE of {}: {e}", self.url)),
            }
        }
        Ok(Arc::new(LdapBackend {
            name: name.to_owned(),
            pool: Arc::new(pool),
            max_results: self.max_results,
            deadline: self.connect_timeout + self.operation_timeout * 3,
            flavour: self.flavour,
            encrypted: self.encrypted(),
        }))
    }
}

// === Addressing ===

/// `[resource.X]` of an LDAP store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapResource {
    /// The DN entries live under.
    pub base: String,
    /// The naming attribute (`uid`).
    pub rdn_attr: String,
    /// The map key whose value names an entry (`userName`).
    pub rdn_field: String,
    /// Object classes of new entries; a search selects entries having all of them.
    pub object_classes: Vec<String>,
    /// The attribute holding the SCIM id.
    pub id_attr: String,
    /// Search the whole subtree under `base` (`sub`) or its children only (`one`).
    pub subtree: bool,
    /// Attributes a new entry gets a number for, and the counter entry each is taken from
    /// (`allocate = { uidNumber = "cn=uidNext,dc=example,dc=com" }`).
    pub allocate: Vec<(String, String)>,
    /// Where a soft delete moves entries (`disabled_base = "ou=disabled,…"`), if anywhere.
    pub disabled_base: Option<String>,
}

/// Where a mapped value lives: an attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapField {
    /// Attribute name.
    pub attr: String,
    /// `gt`/`lt` filters may compare it with the directory-string ordering rules (default;
    /// `ordering = false` for an attribute of another syntax refuses them).
    pub ordering: bool,
    /// Values are bytes (`jpegPhoto`, `objectGUID`).
    pub binary: bool,
}

/// `members = { attribute = "member" }`: member DNs in an attribute of the group's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapMembers {
    /// The attribute.
    pub attr: String,
    /// The placeholder DN an empty group holds.
    pub empty: Option<String>,
    /// Members are named by this attribute of theirs (`posixGroup`'s `memberUid` holds
    /// `uid`s), not by DN.
    pub value: Option<String>,
}

impl Location for LdapResource {
    fn describe(&self) -> String {
        format!("entries under '{}'", self.base)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Location for LdapField {
    fn describe(&self) -> String {
        format!("attribute '{}'", self.attr)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn takes_password(&self) -> bool {
        // Active Directory takes a cleartext unicodePwd and keeps only its hashes.
        self.is_password() || self.attr.eq_ignore_ascii_case(ad::PASSWORD)
    }
}

impl LdapField {
    /// `userPassword`: written through the Password Modify operation (RFC 3062), so the
    /// directory stores it hashed by its own policy, and never read back.
    pub fn is_password(&self) -> bool {
        self.attr.eq_ignore_ascii_case("userPassword")
    }
}

impl Location for LdapMembers {
    fn describe(&self) -> String {
        format!("member attribute '{}'", self.attr)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    base: S,
    rdn: S,
    object_classes: Vec<S>,
    id: Option<S>,
    scope: Option<S>,
    allocate: Option<std::collections::BTreeMap<String, S>>,
    disabled_base: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    attribute: S,
    ordering: Option<bool>,
    binary: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMembers {
    attribute: S,
    empty: Option<S>,
    value: Option<S>,
}

/// Whether `a` is an attribute description: a name (`uid`, `mail;lang-en`) or an OID.
pub fn valid_attribute(a: &str) -> bool {
    let mut parts = a.split(';');
    let name = parts.next().unwrap_or_default();
    let descr = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !name.is_empty()
        && name
            .split('.')
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    (descr || oid)
        && parts.all(|o| !o.is_empty() && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

fn attribute(cx: &mut Cx<'_>, s: &S, what: &str) -> Option<String> {
    let v = cx.string(s, what)?;
    if valid_attribute(&v) {
        Some(v)
    } else {
        let o = cx.origin(s.span());
        cx.error(
            &o,
            format!("{what} \"{v}\" is not an LDAP attribute name"),
            Some("use letters, digits and - (e.g. uid, mail, employeeNumber)"),
        );
        None
    }
}

fn parse_resource(raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
    let r: RawResource = cx.deserialize(raw, what)?;
    let base = cx.string(&r.base, "base");
    if base.as_deref().is_some_and(|b| b.trim().is_empty()) {
        let bo = cx.origin(r.base.span());
        cx.error(
            &bo,
            format!("{what}: base is empty"),
            Some("e.g. base = \"ou=people,dc=example,dc=com\""),
        );
    }
    let ro = cx.origin(r.rdn.span());
    let rdn = cx.string(&r.rdn, "rdn").and_then(|t| {
        // `attr={mapKey}`: the whole value is one map key's value.
        let (a, f) = t.split_once('=')?;
        let f = f.strip_prefix('{')?.strip_suffix('}')?;
        (valid_attribute(a) && !f.is_empty() && !f.contains(['{', '}']))
            .then(|| (a.to_owned(), f.to_owned()))
    });
    if rdn.is_none() {
        cx.error(
            &ro,
            format!("{what}: rdn must be attribute={{mapKey}}"),
            Some("e.g. rdn = \"uid={userName}\" or rdn = \"cn={displayName}\""),
        );
    }
    let mut object_classes = Vec::new();
    for c in &r.object_classes {
        if let Some(c) = attribute(cx, c, "object class") {
            object_classes.push(c);
        }
    }
    if object_classes.is_empty() {
        let o = cx.origin(raw.span());
        cx.error(
            &o,
            format!("{what}: object_classes is empty"),
            Some("e.g. object_classes = [\"inetOrgPerson\"]"),
        );
    }
    let id_attr = match &r.id {
        Some(i) => attribute(cx, i, "id")?,
        None => "entryUUID".to_owned(),
    };
    let subtree = match r
        .scope
        .as_ref()
        .and_then(|s| cx.string(s, "scope"))
        .as_deref()
    {
        None | Some("one") => false,
        Some("sub") => true,
        Some(other) => {
            if let Some(s) = &r.scope {
                let so = cx.origin(s.span());
                cx.error(
                    &so,
                    format!("{what}: scope \"{other}\" is not \"one\" or \"sub\""),
                    None,
                );
            }
            false
        }
    };
    let mut allocate = Vec::new();
    for (a, counter) in r.allocate.iter().flatten() {
        let a = attribute(
            cx,
            &toml::Spanned::new(counter.span(), a.clone()),
            "allocate",
        )?;
        let dn = cx.string(counter, "allocate counter")?;
        allocate.push((a, dn));
    }
    let (rdn_attr, rdn_field) = rdn?;
    Some(Arc::new(LdapResource {
        base: base?,
        rdn_attr,
        rdn_field,
        object_classes,
        id_attr,
        subtree,
        allocate,
        disabled_base: cx.opt_string(&r.disabled_base, "disabled_base"),
    }))
}

fn parse_field(raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
    if let Some(s) = raw.get_ref().as_str() {
        let a = attribute(
            cx,
            &toml::Spanned::new(raw.span(), s.to_owned()),
            "attribute",
        )?;
        return Some(Arc::new(LdapField {
            attr: a,
            ordering: true,
            binary: false,
        }));
    }
    let f: RawField = cx.deserialize(raw, what)?;
    let attr = attribute(cx, &f.attribute, "attribute")?;
    Some(Arc::new(LdapField {
        attr,
        ordering: f.ordering.unwrap_or(true),
        binary: f.binary.unwrap_or(false),
    }))
}

// === The backend ===

/// An opened LDAP store.
pub struct LdapBackend {
    name: String,
    pool: Arc<pool::Pool>,
    max_results: usize,
    deadline: Duration,
    flavour: ad::Flavour,
    encrypted: bool,
}

#[async_trait]
impl Backend for LdapBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.pool.check().await
    }

    fn deadline(&self) -> Duration {
        self.deadline
    }

    async fn open_table(&self, spec: TableSpec) -> Result<Opened, Refused> {
        let mut problems = Vec::new();
        let ad = self.flavour == ad::Flavour::ActiveDirectory;
        // AD has no entryUUID: a resource naming no id attribute is identified by objectGUID.
        let adapt = |mut r: LdapResource| {
            if ad && r.id_attr == "entryUUID" {
                r.id_attr = ad::GUID.to_owned();
            }
            r
        };
        let res = spec
            .resource
            .as_any()
            .downcast_ref::<LdapResource>()
            .cloned()
            .map(adapt);
        if res.is_none() {
            problems.push(foreign(&spec.resource, SpecPart::Table));
        }
        let mut fields = Vec::new();
        for (i, f) in spec.fields.iter().enumerate() {
            match &f.source {
                FieldSource::Store(loc) => match loc.as_any().downcast_ref::<LdapField>() {
                    Some(l) => fields.push(table::Field {
                        name: f.name.clone(),
                        loc: l.clone(),
                        unique: f.unique,
                    }),
                    None => problems.push(foreign(loc, SpecPart::Field(i))),
                },
                FieldSource::Kept { name, .. } => problems.push(SpecProblem {
                    part: SpecPart::Field(i),
                    message: format!(
                        "'{name}' is kept by the sidecar, but a directory cannot hold its state"
                    ),
                    fix: Some("add [state] backend = \"<an SQL backend>\"".into()),
                    warning: false,
                }),
            }
        }
        let members = match &spec.members {
            None => None,
            Some(m) => {
                let how = m.loc.as_any().downcast_ref::<LdapMembers>();
                let of = m.member.as_any().downcast_ref::<LdapResource>();
                match (how, of) {
                    (Some(how), Some(of)) => Some(table::MembersCfg {
                        attr: how.attr.clone(),
                        empty: how.empty.clone(),
                        value: how.value.clone(),
                        member: adapt(of.clone()),
                    }),
                    _ => {
                        problems.push(foreign(&m.loc, SpecPart::Members));
                        None
                    }
                }
            }
        };
        // Groups listing entries of this type: a deleted entry leaves them.
        let member_of = spec
            .member_of
            .iter()
            .filter_map(|m| {
                let how = m.loc.as_any().downcast_ref::<LdapMembers>()?;
                let group = m.group.as_any().downcast_ref::<LdapResource>()?;
                Some(table::MemberOfCfg {
                    attr: how.attr.clone(),
                    empty: how.empty.clone(),
                    value: how.value.clone(),
                    group: adapt(group.clone()),
                })
            })
            .collect();
        let Some(res) = res else {
            return Err(problems.into());
        };
        let rdn_field = fields.iter().position(|f| f.name == res.rdn_field);
        if rdn_field.is_none() {
            problems.push(SpecProblem {
                part: SpecPart::Table,
                message: format!(
                    "rdn names the entry by '{}', which is not mapped",
                    res.rdn_field
                ),
                fix: Some(format!(
                    "map {} to an attribute, or name entries by a mapped key",
                    res.rdn_field
                )),
                warning: false,
            });
        }
        if let Err(e) = self.pool.base_exists(&res.base).await {
            problems.push(SpecProblem {
                part: SpecPart::Table,
                message: format!("base '{}': {e}", res.base),
                fix: Some("create the entry, or correct base".into()),
                warning: false,
            });
        }
        if !ad {
            if let Some(f) = fields
                .iter()
                .find(|f| f.loc.attr.eq_ignore_ascii_case(ad::PASSWORD))
            {
                problems.push(SpecProblem {
                    part: spec
                        .fields
                        .iter()
                        .position(|s| s.name == f.name)
                        .map_or(SpecPart::Table, SpecPart::Field),
                    message: format!("{} is Active Directory's password attribute", ad::PASSWORD),
                    fix: Some("add flavour = \"active-directory\" to the backend".into()),
                    warning: false,
                });
            }
        }
        if let Some(d) = &res.disabled_base {
            if let Err(e) = self.pool.base_exists(d).await {
                problems.push(SpecProblem {
                    part: SpecPart::Table,
                    message: format!("disabled_base '{d}': {e}"),
                    fix: Some(
                        "create the entry (an organizationalUnit), or correct disabled_base".into(),
                    ),
                    warning: false,
                });
            }
        }
        let ad = ad.then(|| ad::Ad::new(&fields, self.encrypted));
        if let Some((i, message)) = ad.as_ref().and_then(ad::Ad::problems) {
            let part = spec
                .fields
                .iter()
                .position(|f| f.name == fields[i].name)
                .map_or(SpecPart::Table, SpecPart::Field);
            problems.push(SpecProblem {
                part,
                message,
                fix: Some("use an ldaps:// url, or tls = { starttls = true }".into()),
                warning: false,
            });
        }
        for (a, counter) in &res.allocate {
            if let Err(e) = self.pool.base_exists(counter).await {
                problems.push(SpecProblem {
                    part: SpecPart::Table,
                    message: format!("allocate {a}: counter entry '{counter}': {e}"),
                    fix: Some(format!(
                        "create it holding the first free number, e.g. an extensibleObject with {a}: 10000"
                    )),
                    warning: false,
                });
            }
        }
        match schema::Schema::read(&self.pool).await {
            Ok(schema) => check_schema(&schema, &res, &fields, &spec, &mut problems),
            Err(e) => problems.push(SpecProblem {
                part: SpecPart::Table,
                message: format!("the directory's schema was not checked: {e}"),
                fix: Some("let the bind DN read the subschema entry (cn=Subschema)".into()),
                warning: true,
            }),
        }
        let Some(rdn_field) = rdn_field else {
            return Err(problems.into());
        };
        if problems.iter().any(|p| !p.warning) {
            return Err(problems.into());
        }
        let mut infos: Vec<_> = fields.iter().map(table::Field::info).collect();
        if let Some(ad) = &ad {
            ad.adjust_infos(&mut infos);
        }
        let t = table::LdapTable::new(
            self.pool.clone(),
            res,
            fields,
            rdn_field,
            self.max_results,
            spec.constants,
        )
        .with_members(members, member_of)
        .with_ad(ad);
        Ok(Opened {
            table: Arc::new(t),
            fields: infos,
            warnings: problems,
        })
    }
}

/// Checks a resource's mapping against the directory's schema: its object classes and every
/// attribute it names exist, every attribute it writes is allowed by its classes (MAY or
/// MUST), and every attribute they require is written by something (a map entry, a `set`
/// value, the RDN, an allocated number, the membership).
fn check_schema(
    schema: &schema::Schema,
    res: &LdapResource,
    fields: &[table::Field],
    spec: &TableSpec,
    problems: &mut Vec<SpecProblem>,
) {
    let error = |part: SpecPart, message: String, fix: Option<String>| SpecProblem {
        part,
        message,
        fix,
        warning: false,
    };
    for c in &res.object_classes {
        if !schema.classes.contains_key(&c.to_ascii_lowercase()) {
            let hint = crate::backend::closest(c, schema.classes.keys().map(String::as_str))
                .map(|n| format!("did you mean '{n}'?"));
            problems.push(error(
                SpecPart::Table,
                format!("object class '{c}' is not in the directory's schema"),
                hint.or_else(|| {
                    Some("load its schema into the directory, or correct object_classes".into())
                }),
            ));
        }
    }
    let (must, may) = if schema.active_directory {
        // See Schema::active_directory: only existence is checked there.
        (Vec::new(), None)
    } else {
        schema.allowed(&res.object_classes)
    };
    // (part, attribute) of everything the mapping writes.
    let mut written: Vec<(SpecPart, String)> = fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            spec.fields
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s.source, FieldSource::Store(_)))
                .nth(i)
                .map(|(j, _)| (SpecPart::Field(j), f.loc.attr.clone()))
        })
        .collect();
    for (i, c) in spec.constants.iter().enumerate() {
        if let Some(f) = c.target.as_any().downcast_ref::<LdapField>() {
            written.push((SpecPart::Constant(i), f.attr.clone()));
        }
    }
    written.push((SpecPart::Table, res.rdn_attr.clone()));
    for (a, _) in &res.allocate {
        written.push((SpecPart::Table, a.clone()));
    }
    let members = spec
        .members
        .as_ref()
        .and_then(|m| m.loc.as_any().downcast_ref::<LdapMembers>());
    if let Some(m) = members {
        written.push((SpecPart::Members, m.attr.clone()));
    }
    for (part, a) in &written {
        let Some(name) = schema.attribute(a) else {
            let hint = crate::backend::closest(a, schema.attributes.values().map(String::as_str))
                .map(|n| format!("did you mean '{n}'?"));
            problems.push(error(
                part.clone(),
                format!("attribute '{a}' is not in the directory's schema"),
                hint,
            ));
            continue;
        };
        if let Some(may) = &may {
            if !may.contains(&name.to_ascii_lowercase()) {
                problems.push(error(
                    part.clone(),
                    format!(
                        "attribute '{a}' is not allowed by object classes {} (neither MUST nor MAY)",
                        res.object_classes.join(", ")
                    ),
                    Some("add an object class that allows it (e.g. an auxiliary class) to object_classes".into()),
                ));
            }
        }
    }
    if schema.attribute(&res.id_attr).is_none() {
        problems.push(error(
            SpecPart::Table,
            format!(
                "id attribute '{}' is not in the directory's schema",
                res.id_attr
            ),
            Some("OpenLDAP and 389 DS have entryUUID, Active Directory objectGUID".into()),
        ));
    }
    if let Some(m) = members {
        let attr = schema
            .attribute(&m.attr)
            .unwrap_or(&m.attr)
            .to_ascii_lowercase();
        if m.empty.is_none() && must.iter().any(|(n, _)| *n == attr) {
            problems.push(error(
                SpecPart::Members,
                format!(
                    "object classes {} require a {} value, so an empty group cannot be stored",
                    res.object_classes.join(", "),
                    m.attr
                ),
                Some(
                    "add empty = \"cn=nobody\" (a placeholder DN, never shown as a member)".into(),
                ),
            ));
        }
    }
    let is_written = |n: &str| {
        n == "objectclass"
            || written
                .iter()
                .any(|(_, a)| schema.attribute(a).unwrap_or(a).eq_ignore_ascii_case(n))
    };
    for (n, class) in must {
        if is_written(&n) {
            continue;
        }
        let shown = schema.attribute(&n).unwrap_or(&n).to_owned();
        problems.push(error(
            SpecPart::Table,
            format!(
                "object class '{class}' requires attribute '{shown}', which the mapping never writes"
            ),
            Some(format!(
                "map an attribute to {shown}, or write it with [resource.{}.set] {shown} = …",
                spec.resource_type
            )),
        ));
    }
}

fn foreign(loc: &Loc, part: SpecPart) -> SpecProblem {
    SpecProblem {
        part,
        message: format!(
            "{} is not an LDAP location (it belongs to another kind of store)",
            loc.describe()
        ),
        fix: Some("a resource and its map entries must use one backend".into()),
        warning: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names() {
        for ok in [
            "uid",
            "mail;lang-en",
            "employeeNumber",
            "2.5.4.3",
            "x-custom",
        ] {
            assert!(valid_attribute(ok), "{ok}");
        }
        for bad in ["", "1uid", "u id", "uid=", "a;", "2..5", "cn)(uid=*"] {
            assert!(!valid_attribute(bad), "{bad}");
        }
    }
}
