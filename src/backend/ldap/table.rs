//! One resource type's entries in a directory: the [`Table`] operations as LDAP operations.
//!
//! - **Reads**: a search under the resource's `base` for entries with all its object classes
//!   and the compiled filter ([`super::filter`]), asking only for the mapped attributes and the
//!   id attribute. A search reads at most `max_results` entries (the request's size limit);
//!   one matching more is refused with [`BackendError::TooLarge`], never truncated. Sorting
//!   and paging are done on those entries by the sidecar ([`Paging::Offset`]): the Simple
//!   Paged Results control cannot jump to an offset and slapd sorts only with an overlay, so
//!   a bounded read is the one way to answer any page in any order exactly.
//! - **Writes**: a create is one add (the DN from the `rdn` template, every value escaped by
//!   [`super::escape::dn_value`]), read back for its id. An update is one modify, preceded by
//!   a modify DN when the naming value changes (the id attribute stays with the entry); if the
//!   modify then fails, the entry is renamed back. Values that must be unique are checked by
//!   a search first (LDAP has no unique constraint besides the DN): two sidecars racing on
//!   one value can both pass that check; the DN itself cannot be taken twice.
//! - **Passwords**: a `userPassword` field is never read and never written as an attribute:
//!   it is set by the Password Modify operation (RFC 3062) after the add or modify, so the
//!   directory hashes it; if that is refused the add is undone by a delete, the modify by
//!   writing back the values read before it (and the rename by a rename back).
//! - **Numbers** (`allocate`): a new entry's `uidNumber` is taken from a counter entry by one
//!   modify deleting the value read and adding the next (the delete asserts the value, so a
//!   concurrent taker makes it fail and this one reads again). A number taken by an add that
//!   then fails is skipped, not reused. Numbers written into entries by other tools are not
//!   looked at: the counter must start above them.
//! - **Groups**: members are DNs in an attribute of the group's entry (`member`). Member ids
//!   are resolved to DNs in one search per hundred ids, and DNs back to ids the same way (by
//!   `entryDN`, an OpenLDAP operational attribute). A member change is one modify, together
//!   with the group's own field changes, so it is atomic. It never reads the member list
//!   (reads ask for the member attribute only when they show members). The modify is first
//!   sent optimistically: members added are taken to be absent and members removed present
//!   (slapd 2.5 does not offer Permissive Modify); only whether the group holds the
//!   placeholder is read, with the entry itself, by a Matched Values filter (RFC 3876)
//!   naming it. When the guess is wrong (a member added twice) or another writer changed the
//!   same values, the modify fails (attributeOrValueExists or noSuchAttribute) changing
//!   nothing, and is sent once more after asking which of the DNs it names are members
//!   already, with the Matched Values control. So a member add is three operations (the
//!   group read, the member id resolved, the modify): a change of members only is not read
//!   back, as the group's mapped values are those read before it (unless it maps an
//!   attribute the directory changes on every modify, such as `modifyTimestamp`). Active
//!   Directory answers differently to those values (entryAlreadyExists, unwillingToPerform),
//!   so there the members are always asked first. A group with no member holds the
//!   configured placeholder DN instead, as `groupOfNames` requires one. With `value = "uid"`
//!   (`posixGroup`) the group lists the members' `uid`s instead of DNs, resolved the same way.
//! - **What follows a write** (several operations; LDAP has no transaction): a deleted entry
//!   is removed from the groups listing it, after its delete; a renamed entry (or one whose
//!   listed value changed) is replaced in them, after its rename and modify. A failure there
//!   is logged and not undone — the entry's own change stands and is what the client was
//!   told: a group then lists a name that resolves to no id (not shown as a member) or, for
//!   a failed rename follow-up, loses that member until it is added again.
//! - **Errors**: result codes map to [`BackendError`] in [`result_error`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::MatchedValues;
use ldap3::{Mod, Scope, SearchEntry, SearchOptions};

use super::ad::{self, Ad};
use super::escape::{dn_value, filter_value};
use super::filter::{self, FieldAttr};
use super::pool::{Conn, Pool, code_name, unavailable};
use super::{LdapField, LdapResource};
use crate::backend::{
    BackendError, CheckFn, ConstSpec, ConstValue, DeleteMode, EditFn, FieldInfo, FieldType, Found,
    MemberChange, Predicate, Row, Search, Sort, Table, Value, When,
};

/// A mapped field: where it lives and whether it must be unique.
#[derive(Clone, Debug)]
pub struct Field {
    /// Its map key.
    pub name: String,
    /// Its attribute.
    pub loc: LdapField,
    /// Values must be unique among the resource's entries.
    pub unique: bool,
}

impl Field {
    /// What the directory says of it (without reading the subschema yet: text or bytes).
    pub fn info(&self) -> FieldInfo {
        FieldInfo {
            ty: if self.loc.binary {
                FieldType::Binary
            } else {
                FieldType::Text { max_len: None }
            },
            nullable: true,
            has_default: false,
            // The table enforces it itself (a search before each write, see the module doc).
            unique: self.unique,
            multi_valued: false,
        }
    }
}

/// A group's membership.
#[derive(Clone, Debug)]
pub struct MembersCfg {
    /// The attribute holding member DNs.
    pub attr: String,
    /// The placeholder DN of an empty group.
    pub empty: Option<String>,
    /// The members' attribute the group lists (`uid`), or `None` for their DNs.
    pub value: Option<String>,
    /// Where members live.
    pub member: LdapResource,
}

impl MembersCfg {
    /// A listed value compared loosely, as the member attribute's matching rule would.
    fn norm(&self, v: &str) -> String {
        norm_member(self.value.as_deref(), v)
    }
}

/// A member value compared loosely: a DN by [`norm_dn`], another value case-folded.
fn norm_member(value: Option<&str>, v: &str) -> String {
    match value {
        None => norm_dn(v),
        Some(_) => v.to_lowercase(),
    }
}

/// Groups that list entries of this resource type.
#[derive(Clone, Debug)]
pub struct MemberOfCfg {
    /// Their member attribute.
    pub attr: String,
    /// Their placeholder DN.
    pub empty: Option<String>,
    /// The attribute of ours they list, or `None` for our DNs.
    pub value: Option<String>,
    /// Where they live.
    pub group: LdapResource,
}

/// An opened resource type of an LDAP store.
pub struct LdapTable {
    pool: Arc<Pool>,
    res: LdapResource,
    fields: Vec<Field>,
    attrs: Vec<FieldAttr>,
    rdn_field: usize,
    max_results: usize,
    constants: Vec<(String, ConstValue, When)>,
    /// `(objectClass=a)(objectClass=b)`: the resource's entries, inside an `(&…)`.
    classes: String,
    /// The attributes every read asks for.
    wanted: Vec<String>,
    /// The same without the member attribute: what most reads ask for (a group's member
    /// list can be long and is shown only when asked). Kept beside `wanted` so that a read
    /// does not copy the list.
    wanted_plain: Vec<String>,
    /// Membership, for a group type.
    members: Option<MembersCfg>,
    /// Groups listing entries of this type.
    member_of: Vec<MemberOfCfg>,
    /// Active Directory's ways, when the backend's flavour is AD ([`super::ad`]).
    ad: Option<Ad>,
    /// A mapped attribute the directory itself changes on every modify (`modifyTimestamp`):
    /// an update is then always read back, as the row changes even when no field is written.
    volatile: bool,
}

/// Attributes a directory maintains itself and changes on every modify of an entry.
const VOLATILE: [&str; 5] = [
    "modifyTimestamp",
    "modifiersName",
    "entryCSN",
    "whenChanged",
    "uSNChanged",
];

impl LdapTable {
    /// A table over `res` with `fields`; `rdn_field` indexes the field naming entries.
    pub fn new(
        pool: Arc<Pool>,
        res: LdapResource,
        fields: Vec<Field>,
        rdn_field: usize,
        max_results: usize,
        constants: Vec<ConstSpec>,
    ) -> Self {
        let attrs = fields
            .iter()
            .map(|f| FieldAttr {
                attr: f.loc.attr.clone(),
                ordering: f.loc.ordering,
                binary: f.loc.binary,
                ad: false,
                secret: f.loc.is_password(),
            })
            .collect();
        let constants = constants
            .into_iter()
            .filter_map(|c| {
                let f = c.target.as_any().downcast_ref::<LdapField>()?;
                Some((f.attr.clone(), c.value, c.on))
            })
            .collect();
        let classes = res
            .object_classes
            .iter()
            .map(|c| format!("(objectClass={})", filter_value(c.as_bytes())))
            .collect();
        let mut wanted = vec![res.id_attr.clone()];
        // A password is never read back (RFC 7643 §4.1.1: returned "never").
        for f in fields.iter().filter(|f| !f.loc.is_password()) {
            if !wanted.iter().any(|w| w.eq_ignore_ascii_case(&f.loc.attr)) {
                wanted.push(f.loc.attr.clone());
            }
        }
        let volatile = fields
            .iter()
            .any(|f| VOLATILE.iter().any(|v| v.eq_ignore_ascii_case(&f.loc.attr)));
        LdapTable {
            pool,
            res,
            fields,
            attrs,
            rdn_field,
            max_results,
            constants,
            classes,
            wanted_plain: wanted.clone(),
            wanted,
            members: None,
            member_of: Vec::new(),
            ad: None,
            volatile,
        }
    }

    /// Adds Active Directory's ways ([`super::ad`]).
    pub fn with_ad(mut self, ad: Option<Ad>) -> Self {
        for a in &mut self.attrs {
            a.ad = ad.is_some();
            // unicodePwd is written only: no filter may test it.
            a.secret |= a.ad && a.attr.eq_ignore_ascii_case(ad::PASSWORD);
        }
        if let (Some(_), Some(m)) = (&ad, &self.members) {
            // Members are read a range at a time, the first with the entry.
            for w in self.wanted.iter_mut() {
                if w.eq_ignore_ascii_case(&m.attr) {
                    *w = ad::first_range(&m.attr);
                }
            }
        }
        self.ad = ad;
        self.wanted_plain = self.plain_attrs();
        self
    }

    /// The attribute an entry's own DN is searched by.
    fn dn_attr(&self) -> &'static str {
        if self.ad.is_some() {
            ad::DN_ATTR
        } else {
            "entryDN"
        }
    }

    /// Adds membership: this type's own, and the groups that list its entries.
    pub fn with_members(
        mut self,
        members: Option<MembersCfg>,
        member_of: Vec<MemberOfCfg>,
    ) -> Self {
        if let Some(m) = &members {
            if !self.wanted.iter().any(|w| w.eq_ignore_ascii_case(&m.attr)) {
                self.wanted.push(m.attr.clone());
            }
        }
        self.members = members;
        self.member_of = member_of;
        self.wanted_plain = self.plain_attrs();
        self
    }

    /// Searches `base` with `filter` for at most `limit` entries, asking for `attrs`.
    async fn find_in(
        &self,
        base: &str,
        subtree: bool,
        filter: &str,
        attrs: &[String],
        limit: usize,
    ) -> Result<Vec<SearchEntry>, BackendError> {
        self.find_in_vr(base, subtree, filter, attrs, limit, None)
            .await
    }

    /// [`Self::find_in`], with the Matched Values control (RFC 3876) when `vr` gives its
    /// filter: only the values it matches come back (attributes it does not name, none).
    ///
    /// Read in pages (the Simple Paged Results control, on one connection) when the pool
    /// pages searches, so the directory's per-search size limit does not apply; either way
    /// at most `limit + 1` entries are read, and the caller refuses more than `limit`.
    async fn find_in_vr(
        &self,
        base: &str,
        subtree: bool,
        filter: &str,
        attrs: &[String],
        limit: usize,
        vr: Option<String>,
    ) -> Result<Vec<SearchEntry>, BackendError> {
        let mut c = self.pool.get().await?;
        let scope = if subtree {
            Scope::Subtree
        } else {
            Scope::OneLevel
        };
        let sizelimit = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
        let op_timeout = self.pool.op_timeout;
        // Options hold for one operation: set again for each search.
        let prepare = |ldap: &mut ldap3::Ldap, size: i32| {
            let l = ldap.with_timeout(op_timeout);
            if let Some(vr) = &vr {
                l.with_controls(MatchedValues::new(vr.clone()));
            }
            l.with_search_options(SearchOptions::new().sizelimit(size));
        };
        let page = self.pool.page_size();
        // Most searches (a userName lookup, an id) match a few entries: a plain search of at
        // most one page answers them without the paged-results control, which costs the
        // directory and the sidecar more per search (bench: 9 % of the filter throughput).
        // One that fills the page, or meets the directory's own limit, is read again in pages.
        let first = page.map_or(sizelimit, |p| p.min(sizelimit));
        prepare(&mut c.ldap, first);
        let r = c.ldap.search(base, scope, filter, &attrs).await;
        let r = self.transport(&c, r).await?;
        let page = match page {
            Some(p) if r.1.rc == 4 && r.0.len() <= limit => p,
            _ => {
                check_search(r.1.rc, &r.1.text, r.0.len(), limit)?;
                return Ok(r
                    .0
                    .into_iter()
                    .filter(|e| !e.is_ref() && !e.is_intermediate())
                    .map(SearchEntry::construct)
                    .collect());
            }
        };
        prepare(&mut c.ldap, sizelimit);
        let l = &mut c.ldap;
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(page.min(sizelimit))),
        ];
        let stream = l
            .streaming_search_with(adapters, base, scope, filter, attrs.to_vec())
            .await;
        let mut stream = self.transport(&c, stream).await?;
        let mut entries = Vec::new();
        loop {
            let next = stream.next().await;
            match self.transport(&c, next).await? {
                Some(e) => {
                    entries.push(SearchEntry::construct(e));
                    if entries.len() > limit {
                        // Enough to refuse: the rest is abandoned, not read.
                        let id = stream.ldap_handle().last_id();
                        let _ = stream.finish().await;
                        let _ = stream.ldap_handle().abandon(id).await;
                        return Ok(entries);
                    }
                }
                None => break,
            }
        }
        let r = stream.finish().await;
        check_search(r.rc, &r.text, entries.len(), limit)?;
        Ok(entries)
    }

    /// What a group lists for the member entries with these ids: their DNs, or their
    /// values of attribute `value` (ids without an entry left out). One search per hundred
    /// ids.
    async fn member_dns(
        &self,
        m: &LdapResource,
        value: Option<&str>,
        ids: &[String],
    ) -> Result<HashMap<String, String>, BackendError> {
        let mut out = HashMap::new();
        let classes: String = m
            .object_classes
            .iter()
            .map(|c| format!("(objectClass={})", filter_value(c.as_bytes())))
            .collect();
        for chunk in ids.chunks(100) {
            let f = filter::compile(&Predicate::KeyIn(chunk.to_vec()), &[], &m.id_attr)?;
            let found = self
                .find_in(
                    &m.base,
                    m.subtree,
                    &format!("(&{classes}{f})"),
                    &std::iter::once(m.id_attr.clone())
                        .chain(value.map(str::to_owned))
                        .collect::<Vec<_>>(),
                    chunk.len(),
                )
                .await?;
            for e in found {
                if let Some(id) = id_of(&e, &m.id_attr) {
                    let listed = match value {
                        None => Some(e.dn),
                        Some(a) => match values_of(&e, a, false).into_iter().next() {
                            Some(Value::Text(v)) => Some(v),
                            _ => None,
                        },
                    };
                    if let Some(v) = listed {
                        out.insert(id, v);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The ids of the member entries a group lists by these DNs (or values of `value`),
    /// keyed by the normalised listed value.
    async fn member_ids(
        &self,
        m: &LdapResource,
        value: Option<&str>,
        dns: &[String],
    ) -> Result<HashMap<String, String>, BackendError> {
        let mut out = HashMap::new();
        let by = value.unwrap_or(self.dn_attr());
        for chunk in dns.chunks(100) {
            let mut f = String::from("(|");
            for dn in chunk {
                f.push_str(&format!("({by}={})", filter_value(dn.as_bytes())));
            }
            f.push(')');
            let attrs: Vec<String> = std::iter::once(m.id_attr.clone())
                .chain(value.map(str::to_owned))
                .collect();
            // A value may name several entries (two entries with one uid): at most all.
            let found = self
                .find_in(&m.base, m.subtree, &f, &attrs, self.max_results)
                .await?;
            for e in found {
                if let Some(id) = id_of(&e, &m.id_attr) {
                    match value {
                        None => {
                            out.insert(norm_dn(&e.dn), id);
                        }
                        Some(a) => {
                            for v in values_of(&e, a, false) {
                                if let Value::Text(v) = v {
                                    out.insert(norm_member(value, &v), id.clone());
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Fills in the member ids of `rows` from their entries' member DNs.
    async fn load_members(
        &self,
        rows: &mut [Row],
        entries: &[SearchEntry],
    ) -> Result<(), BackendError> {
        let Some(m) = &self.members else {
            return Ok(());
        };
        let mut per_row: Vec<Vec<String>> = Vec::with_capacity(entries.len());
        for e in entries {
            // AD returns a long member list in ranges: read to the end.
            let dns = match &self.ad {
                Some(_) => ad::all_values(&self.pool, e, &m.attr).await?,
                None => values_of(e, &m.attr, false)
                    .into_iter()
                    .filter_map(|v| match v {
                        Value::Text(dn) => Some(dn),
                        _ => None,
                    })
                    .collect(),
            };
            per_row.push(
                dns.into_iter()
                    .filter(|dn| m.empty.as_deref().is_none_or(|p| m.norm(p) != m.norm(dn)))
                    .collect(),
            );
        }
        let all: Vec<String> = per_row
            .iter()
            .flatten()
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let ids = self.member_ids(&m.member, m.value.as_deref(), &all).await?;
        for (row, dns) in rows.iter_mut().zip(per_row) {
            let mut seen = HashSet::new();
            row.members = Some(
                dns.iter()
                    .filter_map(|dn| ids.get(&m.norm(dn)).cloned())
                    .filter(|id| seen.insert(id.clone()))
                    .collect(),
            );
        }
        Ok(())
    }

    /// Which of `dns` (normalised) group `group_dn` lists in `attr`, read with the Matched
    /// Values control so only those values come back.
    async fn listed(
        &self,
        group_dn: &str,
        m: &MembersCfg,
        dns: &[String],
    ) -> Result<HashSet<String>, BackendError> {
        if self.ad.is_some() {
            return self.listed_by_member_of(group_dn, dns).await;
        }
        let attr = m.attr.as_str();
        let mut out = HashSet::new();
        for chunk in dns.chunks(100) {
            let mut f = String::from("(");
            for dn in chunk {
                f.push_str(&format!("({attr}={})", filter_value(dn.as_bytes())));
            }
            f.push(')');
            let mut c = self.pool.get().await?;
            let r = c
                .ldap
                .with_timeout(self.pool.op_timeout)
                .with_controls(MatchedValues::new(f))
                .search(group_dn, Scope::Base, "(objectClass=*)", vec![attr])
                .await;
            let r = self.transport(&c, r).await?;
            if r.1.rc != 0 {
                return Err(result_error(r.1.rc, &r.1.text, None));
            }
            let wanted: HashSet<String> = chunk.iter().map(|d| m.norm(d)).collect();
            for e in r.0.into_iter().map(SearchEntry::construct) {
                for v in values_of(&e, attr, false) {
                    if let Value::Text(dn) = v {
                        let n = m.norm(&dn);
                        if wanted.contains(&n) {
                            out.insert(n);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// [`Self::listed`] in Active Directory, which has no Matched Values control: the members
    /// among `dns` whose `memberOf` (computed by AD) names the group.
    async fn listed_by_member_of(
        &self,
        group_dn: &str,
        dns: &[String],
    ) -> Result<HashSet<String>, BackendError> {
        let Some(m) = &self.members else {
            return Ok(HashSet::new());
        };
        let mut out = HashSet::new();
        for chunk in dns.chunks(100) {
            let mut f = format!("(&(memberOf={})(|", filter_value(group_dn.as_bytes()));
            for dn in chunk {
                f.push_str(&format!(
                    "({}={})",
                    ad::DN_ATTR,
                    filter_value(dn.as_bytes())
                ));
            }
            f.push_str("))");
            let found = self
                .find_in(
                    &m.member.base,
                    m.member.subtree,
                    &f,
                    &no_attrs(),
                    chunk.len(),
                )
                .await?;
            out.extend(found.iter().map(|e| norm_dn(&e.dn)));
        }
        Ok(out)
    }

    /// The modify that applies member changes to group `group_dn`, or the missing member
    /// ids (an add of an id without an entry refuses the whole change). With `guess` (the
    /// placeholder, when the group holds it) the group is not read: values removed are taken
    /// to be listed and values added not, so the modify fails (changing nothing) when that
    /// is wrong and the caller asks again without a guess. The member ids are resolved into
    /// `resolved` unless it holds them already.
    async fn member_mods(
        &self,
        group_dn: &str,
        changes: &[MemberChange],
        guess: Option<&HashSet<String>>,
        resolved: &mut Option<HashMap<String, String>>,
    ) -> Result<Vec<Mod<Vec<u8>>>, BackendError> {
        let Some(m) = &self.members else {
            return Err(BackendError::Unsupported {
                field: None,
                detail: "this resource has no members".into(),
            });
        };
        let mut ids: Vec<String> = Vec::new();
        for c in changes {
            match c {
                MemberChange::Add(v) | MemberChange::Remove(v) | MemberChange::Replace(v) => {
                    ids.extend(v.iter().cloned())
                }
                MemberChange::Clear => {}
            }
        }
        // Resolved once per request: a second try reuses them.
        let dns = match resolved.take() {
            Some(d) => d,
            None => self.member_dns(&m.member, m.value.as_deref(), &ids).await?,
        };
        let dns = &*resolved.insert(dns);
        let missing: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                MemberChange::Add(v) | MemberChange::Replace(v) => Some(v),
                _ => None,
            })
            .flatten()
            .filter(|id| !dns.contains_key(*id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(crate::backend::missing_members(&missing));
        }
        // Which of the named DNs (and the placeholder) are members now, simulated through
        // the changes in order.
        let mut listed = match guess {
            Some(g) => {
                // A value is guessed absent when the changes first add it, present when they
                // first remove it; after a replace or a clear the simulation knows.
                let mut l = g.clone();
                let mut seen = HashSet::new();
                for c in changes {
                    match c {
                        MemberChange::Add(v) => {
                            seen.extend(v.iter().filter_map(|id| dns.get(id)).map(|d| m.norm(d)));
                        }
                        MemberChange::Remove(v) => {
                            for n in v.iter().filter_map(|id| dns.get(id)).map(|d| m.norm(d)) {
                                if seen.insert(n.clone()) {
                                    l.insert(n);
                                }
                            }
                        }
                        MemberChange::Replace(_) | MemberChange::Clear => break,
                    }
                }
                l
            }
            None => {
                let mut named: Vec<String> = dns.values().cloned().collect();
                named.extend(m.empty.iter().cloned());
                self.listed(group_dn, m, &named).await?
            }
        };
        let attr = m.attr.as_bytes().to_vec();
        let one = |dn: &str| HashSet::from([dn.as_bytes().to_vec()]);
        let mut mods = Vec::new();
        let drop_placeholder = |listed: &mut HashSet<String>, mods: &mut Vec<Mod<Vec<u8>>>| {
            if let Some(e) = &m.empty {
                if listed.remove(&m.norm(e)) {
                    mods.push(Mod::Delete(attr.clone(), one(e)));
                }
            }
        };
        for c in changes {
            match c {
                MemberChange::Add(v) => {
                    let mut add = HashSet::new();
                    for dn in v.iter().filter_map(|id| dns.get(id)) {
                        if listed.insert(m.norm(dn)) {
                            add.insert(dn.as_bytes().to_vec());
                        }
                    }
                    if !add.is_empty() {
                        mods.push(Mod::Add(attr.clone(), add));
                        drop_placeholder(&mut listed, &mut mods);
                    }
                }
                MemberChange::Remove(v) => {
                    let mut del = HashSet::new();
                    for dn in v.iter().filter_map(|id| dns.get(id)) {
                        if listed.remove(&m.norm(dn)) {
                            del.insert(dn.as_bytes().to_vec());
                        }
                    }
                    if !del.is_empty() {
                        mods.push(Mod::Delete(attr.clone(), del));
                    }
                }
                MemberChange::Replace(v) => {
                    let set: HashSet<Vec<u8>> = v
                        .iter()
                        .filter_map(|id| dns.get(id))
                        .map(|d| d.as_bytes().to_vec())
                        .collect();
                    listed = v
                        .iter()
                        .filter_map(|id| dns.get(id))
                        .map(|d| m.norm(d))
                        .collect();
                    if set.is_empty() {
                        let empty: HashSet<Vec<u8>> =
                            m.empty.iter().map(|e| e.as_bytes().to_vec()).collect();
                        listed.extend(m.empty.iter().map(|e| m.norm(e)));
                        mods.push(Mod::Replace(attr.clone(), empty));
                    } else {
                        mods.push(Mod::Replace(attr.clone(), set));
                    }
                }
                MemberChange::Clear => {
                    let empty: HashSet<Vec<u8>> =
                        m.empty.iter().map(|e| e.as_bytes().to_vec()).collect();
                    listed = m.empty.iter().map(|e| m.norm(e)).collect();
                    mods.push(Mod::Replace(attr.clone(), empty));
                }
            }
        }
        Ok(mods)
    }

    /// What each group type of [`Self::member_of`] lists entry `dn` by: its DN, or its
    /// value of that type's `value` attribute (read now; `None` when it has none).
    async fn listed_as(&self, dn: &str) -> Result<Vec<Option<String>>, BackendError> {
        let attrs: Vec<String> = self
            .member_of
            .iter()
            .filter_map(|g| g.value.clone())
            .collect();
        let entry = if attrs.is_empty() {
            None
        } else {
            let mut c = self.pool.get().await?;
            let r = c
                .ldap
                .with_timeout(self.pool.op_timeout)
                .search(dn, Scope::Base, "(objectClass=*)", attrs)
                .await;
            let r = self.transport(&c, r).await?;
            r.0.into_iter().next().map(SearchEntry::construct)
        };
        Ok(self
            .member_of
            .iter()
            .map(|g| match &g.value {
                None => Some(dn.to_owned()),
                Some(a) => entry.as_ref().and_then(|e| {
                    values_of(e, a, false).into_iter().find_map(|v| match v {
                        Value::Text(t) => Some(t),
                        _ => None,
                    })
                }),
            })
            .collect())
    }

    /// Removes the entry from every group listing it; `names` from [`Self::listed_as`].
    async fn leave_groups(&self, names: &[Option<String>]) {
        for (g, name) in self.member_of.iter().zip(names) {
            if let Some(name) = name {
                self.relist(g, name, None).await;
            }
        }
    }

    /// In every group of type `g` listing `old`: `old` replaced by `new`, or removed. A
    /// failure is logged: the write it follows has happened (see the module doc).
    async fn relist(&self, g: &MemberOfCfg, old: &str, new: Option<&str>) {
        let f = format!("({}={})", g.attr, filter_value(old.as_bytes()));
        let groups = match self
            .find_in(
                &g.group.base,
                g.group.subtree,
                &f,
                &no_attrs(),
                self.max_results,
            )
            .await
        {
            Ok(gs) => gs,
            Err(e) => {
                tracing::error!(member = %old, error = %e, "LDAP: the groups listing an entry could not be read; they still list its old name");
                crate::metrics::partial_write("ldap", "group_follow");
                return;
            }
        };
        for group in groups {
            let a = g.attr.as_bytes().to_vec();
            let mut mods = vec![Mod::Delete(
                a.clone(),
                HashSet::from([old.as_bytes().to_vec()]),
            )];
            if let Some(n) = new {
                mods.push(Mod::Add(a, HashSet::from([n.as_bytes().to_vec()])));
            }
            if let Err(e) = self
                .modify_members(&group.dn, mods, g.empty.as_deref(), &g.attr)
                .await
            {
                tracing::error!(group = %group.dn, member = %old, error = %e, "LDAP: a group could not follow its member's change");
                crate::metrics::partial_write("ldap", "group_follow");
            }
        }
    }

    /// One modify with Permissive Modify; when it would leave a group without the member
    /// its object class requires, again with the placeholder added.
    async fn modify_members(
        &self,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
        empty: Option<&str>,
        attr: &str,
    ) -> Result<(), BackendError> {
        if mods.is_empty() {
            return Ok(());
        }
        let (rc, text) = self.modify_raw(dn, mods.clone()).await?;
        match (rc, empty) {
            (0, _) => Ok(()),
            // objectClassViolation: the last member went.
            (65, Some(e)) => {
                let mut again = mods;
                again.push(Mod::Add(
                    attr.as_bytes().to_vec(),
                    HashSet::from([e.as_bytes().to_vec()]),
                ));
                match self.modify_raw(dn, again).await? {
                    (0, _) => Ok(()),
                    (rc, text) => Err(result_error(rc, &text, None)),
                }
            }
            _ => Err(result_error(rc, &text, None)),
        }
    }

    async fn modify_raw(
        &self,
        dn: &str,
        mods: Vec<Mod<Vec<u8>>>,
    ) -> Result<(u32, String), BackendError> {
        let mut c = self.pool.get().await?;
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .modify(dn, mods)
            .await;
        let r = self.transport(&c, r).await?;
        Ok((r.rc, r.text))
    }

    /// The search filter of `p`, with its membership conditions resolved.
    async fn compile(&self, p: &Predicate) -> Result<String, BackendError> {
        let Some(m) = &self.members else {
            return filter::compile(p, &self.attrs, &self.res.id_attr);
        };
        let mut ids = Vec::new();
        filter::member_ids(p, &mut ids);
        let dns = if ids.is_empty() {
            HashMap::new()
        } else {
            self.member_dns(&m.member, m.value.as_deref(), &ids).await?
        };
        let members = filter::Members {
            attr: &m.attr,
            empty: m.empty.as_deref(),
            dns,
        };
        filter::compile_with(p, &self.attrs, &self.res.id_attr, Some(&members))
    }

    /// `(&<classes><f>)`.
    fn full_filter(&self, f: &str) -> String {
        let mut out = String::with_capacity(3 + self.classes.len() + f.len());
        out.push_str("(&");
        out.push_str(&self.classes);
        out.push_str(f);
        out.push(')');
        out
    }

    /// The attributes a read asks for: the id, the mapped ones, and the member attribute
    /// only when `members` (a group's member list can be long; most reads do not show it).
    fn attrs_for(&self, members: bool) -> &[String] {
        if members {
            &self.wanted
        } else {
            &self.wanted_plain
        }
    }

    /// `wanted` without the member attribute (with its range option, on AD).
    fn plain_attrs(&self) -> Vec<String> {
        match &self.members {
            Some(m) => self
                .wanted
                .iter()
                .filter(|w| {
                    let base = w.split(';').next().unwrap_or(w);
                    !base.eq_ignore_ascii_case(&m.attr)
                })
                .cloned()
                .collect(),
            None => self.wanted.clone(),
        }
    }

    /// Runs a search under the base asking for `attrs`; `Err(TooLarge)` when more than
    /// `limit` entries match.
    async fn find(
        &self,
        filter: &str,
        limit: usize,
        attrs: &[String],
        vr: Option<String>,
    ) -> Result<Vec<SearchEntry>, BackendError> {
        let entries = self
            .find_in_vr(&self.res.base, self.res.subtree, filter, attrs, limit, vr)
            .await
            .map_err(|e| match e {
                BackendError::NotFound => {
                    BackendError::Internal(format!("base '{}' does not exist", self.res.base))
                }
                e => e,
            })?;
        if entries.len() > limit {
            return Err(too_many(limit));
        }
        Ok(entries)
    }

    /// A transport failure discards the connection and is a 503.
    async fn transport<T>(
        &self,
        c: &Conn,
        r: Result<T, ldap3::LdapError>,
    ) -> Result<T, BackendError> {
        match r {
            Ok(t) => Ok(t),
            Err(e) => {
                self.pool.discard(c).await;
                Err(unavailable(e))
            }
        }
    }

    /// The entry with id `key`: its DN and row (with its members when asked).
    async fn lookup(
        &self,
        key: &str,
        members: bool,
    ) -> Result<Option<(String, Row)>, BackendError> {
        let Some(e) = self
            .lookup_entry(key, self.attrs_for(members), None)
            .await?
        else {
            return Ok(None);
        };
        let mut rows = vec![self.row(&e)];
        if members {
            self.load_members(&mut rows, std::slice::from_ref(&e))
                .await?;
        }
        Ok(rows.pop().map(|r| (e.dn, r)))
    }

    /// The entry with id `key`, read with `attrs` (and the Matched Values filter `vr`).
    async fn lookup_entry(
        &self,
        key: &str,
        attrs: &[String],
        vr: Option<String>,
    ) -> Result<Option<SearchEntry>, BackendError> {
        let f = filter::compile(
            &Predicate::KeyEq(key.to_owned()),
            &self.attrs,
            &self.res.id_attr,
        )?;
        let mut found = self
            .find(&self.full_filter(&f), 1, attrs, vr)
            .await
            .map_err(|e| match e {
                BackendError::TooLarge { .. } => {
                    BackendError::Internal(format!("two entries have {} '{key}'", self.res.id_attr))
                }
                e => e,
            })?;
        Ok(found.pop())
    }

    /// The row of an entry that is read again afterwards (its DN, its members).
    fn row(&self, e: &SearchEntry) -> Row {
        let attrs = e.attrs.iter().map(|(k, vs)| (k, Cow::Borrowed(&vs[..])));
        let bin_attrs = e
            .bin_attrs
            .iter()
            .map(|(k, vs)| (k, Cow::Borrowed(&vs[..])));
        let mut row = self.row_of(self.key_of(e), attrs, bin_attrs);
        if let Some(ad) = &self.ad {
            ad.read_row(e, &mut row);
        }
        row
    }

    /// The row of an entry that is not needed afterwards: its values are moved into the row,
    /// not copied (on a filter, a copy of every value was a tenth of the allocations).
    fn row_taking(&self, e: SearchEntry) -> Row {
        if self.ad.is_some() {
            // AD reads the account flags from the entry after the row is made.
            return self.row(&e);
        }
        let key = self.key_of(&e);
        let attrs = e.attrs.into_iter().map(|(k, vs)| (k, Cow::Owned(vs)));
        let bin_attrs = e.bin_attrs.into_iter().map(|(k, vs)| (k, Cow::Owned(vs)));
        self.row_of(key, attrs, bin_attrs)
    }

    /// The SCIM id of an entry (an AD objectGUID as its string; empty when it has none).
    fn key_of(&self, e: &SearchEntry) -> String {
        ad::key_of(e, &self.res.id_attr).unwrap_or_else(|| {
            values_of(e, &self.res.id_attr, false)
                .into_iter()
                .next()
                .map(|v| match v {
                    Value::Text(s) => s,
                    other => String::from_utf8_lossy(&filter::value_bytes(&other)).into_owned(),
                })
                .unwrap_or_default()
        })
    }

    /// The row of an entry's attributes: one pass over them, each name's options cut off
    /// once, giving the same values in the same order as `values_of` per field. A value is
    /// copied only when a second field maps the same attribute.
    fn row_of<'a, K: AsRef<str>>(
        &self,
        key: String,
        attrs: impl Iterator<Item = (K, Cow<'a, [String]>)>,
        bin_attrs: impl Iterator<Item = (K, Cow<'a, [Vec<u8>]>)>,
    ) -> Row {
        // Each field's values go straight into its place in the row: most fields have one
        // value, and a list of one per field would be an allocation each.
        let mut values = vec![Value::Null; self.fields.len()];
        for (k, vs) in attrs {
            self.fill(k.as_ref(), vs, &mut values, |f, v| match f.loc.binary {
                true => Value::Bytes(v.into_bytes()),
                false => Value::Text(v),
            });
        }
        for (k, vs) in bin_attrs {
            self.fill(k.as_ref(), vs, &mut values, |_, v| Value::Bytes(v));
        }
        Row {
            key,
            values,
            members: None,
        }
    }

    /// Adds the values `vs` of the entry's attribute `k` to the row's value of every field
    /// mapping it: moved into the last such field's, copied into any before it. A field
    /// with one value holds it; with more, a list of them in the entry's order.
    fn fill<T: Clone>(
        &self,
        k: &str,
        vs: Cow<'_, [T]>,
        values: &mut [Value],
        value: impl Fn(&Field, T) -> Value,
    ) {
        let base = attr_base(k);
        let mut matching = self
            .fields
            .iter()
            .zip(values.iter_mut())
            .filter(|(f, _)| names_attr(k, base, &f.loc.attr))
            .peekable();
        while let Some((f, slot)) = matching.next() {
            if matching.peek().is_some() {
                for v in vs.iter() {
                    add_value(slot, value(f, v.clone()));
                }
            } else {
                for v in vs.into_owned() {
                    add_value(slot, value(f, v));
                }
                return;
            }
        }
    }

    /// Refuses a value of a unique field that another entry (not `except`) already has.
    async fn check_unique(
        &self,
        values: &[(usize, &Value)],
        except: Option<&str>,
    ) -> Result<(), BackendError> {
        for (i, v) in values {
            let f = &self.fields[*i];
            if !f.unique || v.is_null() {
                continue;
            }
            let mut cond = format!(
                "({}={})",
                f.loc.attr,
                filter_value(&filter::value_bytes(v.first()))
            );
            if let Some(k) = except {
                let not_this = filter::compile(
                    &Predicate::KeyEq(k.to_owned()),
                    &self.attrs,
                    &self.res.id_attr,
                )?;
                cond.push_str(&format!("(!{not_this})"));
            }
            let found = self
                .find(&self.full_filter(&cond), 1, &no_attrs(), None)
                .await;
            match found {
                Ok(v) if v.is_empty() => {}
                Ok(_) | Err(BackendError::TooLarge { .. }) => {
                    return Err(BackendError::Conflict {
                        field: Some(*i),
                        detail: format!("another entry has this {}", f.loc.attr),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The constants written at `when`.
    fn constants_for(&self, when: &[When]) -> Vec<(String, Vec<Vec<u8>>)> {
        self.constants
            .iter()
            .filter(|(_, _, on)| when.contains(on))
            .map(|(a, v, _)| {
                let bytes = match v {
                    ConstValue::Value(v) => encode(v),
                    ConstValue::Now => vec![generalized_time().into_bytes()],
                };
                (a.clone(), bytes)
            })
            .collect()
    }

    async fn modify(&self, dn: &str, mods: Vec<Mod<Vec<u8>>>) -> Result<(), BackendError> {
        if mods.is_empty() {
            return Ok(());
        }
        let mut c = self.pool.get().await?;
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .modify(dn, mods)
            .await;
        let r = self.transport(&c, r).await?;
        match r.rc {
            0 => Ok(()),
            rc => Err(result_error(rc, &r.text, None)),
        }
    }

    /// A refusal naming no field, given the mapped field whose attribute the directory's
    /// message names (slapd: "object class 'inetOrgPerson' requires attribute 'sn'",
    /// "mail: value #0 invalid per syntax"), so the client is told which SCIM attribute.
    fn blame(&self, e: BackendError) -> BackendError {
        let BackendError::Rejected {
            field: None,
            detail,
        } = e
        else {
            return e;
        };
        let text = detail.split_once(": ").map_or(detail.as_str(), |(_, t)| t);
        let named = |a: &str| {
            text.to_ascii_lowercase()
                .contains(&format!("'{}'", a.to_ascii_lowercase()))
                || text
                    .split_once(':')
                    .is_some_and(|(first, _)| first.trim().eq_ignore_ascii_case(a))
        };
        let field = self
            .fields
            .iter()
            .position(|f| !f.loc.is_password() && named(&f.loc.attr));
        BackendError::Rejected { field, detail }
    }

    /// Takes the next number of `attr` from entry `counter`: reads its value N, then one
    /// modify deletes exactly N and adds N+1. The delete is an assertion: when another
    /// writer (another request, another sidecar replica, another tool) took N first, the value
    /// is gone and the modify fails with noSuchAttribute, changing nothing; then it reads
    /// again. So no two entries get one number without a lock.
    async fn allocate(&self, attr: &str, counter: &str) -> Result<i64, BackendError> {
        for _ in 0..50 {
            let mut c = self.pool.get().await?;
            let r = c
                .ldap
                .with_timeout(self.pool.op_timeout)
                .search(counter, Scope::Base, "(objectClass=*)", vec![attr])
                .await;
            let r = self.transport(&c, r).await?;
            let n: i64 = match r.1.rc {
                0 => {
                    r.0.into_iter()
                        .map(SearchEntry::construct)
                        .flat_map(|e| values_of(&e, attr, false))
                        .find_map(|v| match v {
                            Value::Text(t) => t.trim().parse().ok(),
                            _ => None,
                        })
                        .ok_or_else(|| {
                            BackendError::Internal(format!(
                                "counter '{counter}' holds no number in {attr}"
                            ))
                        })?
                }
                32 => {
                    return Err(BackendError::Internal(format!(
                        "counter '{counter}' for {attr} does not exist"
                    )));
                }
                rc => return Err(result_error(rc, &r.1.text, None)),
            };
            let a = attr.as_bytes().to_vec();
            let mods = vec![
                Mod::Delete(a.clone(), HashSet::from([n.to_string().into_bytes()])),
                Mod::Add(a, HashSet::from([(n + 1).to_string().into_bytes()])),
            ];
            let r = c
                .ldap
                .with_timeout(self.pool.op_timeout)
                .modify(counter, mods)
                .await;
            let r = self.transport(&c, r).await?;
            match r.rc {
                0 => return Ok(n),
                // Taken by another writer: read again.
                16 => continue,
                rc => return Err(result_error(rc, &r.text, None)),
            }
        }
        Err(BackendError::Unavailable(format!(
            "counter '{counter}' for {attr} is too contended; retry"
        )))
    }

    /// Deletes entry `dn`.
    /// Moves entry `dn` under `to`, named `rdn`.
    async fn move_entry(&self, dn: &str, rdn: &str, to: &str) -> Result<(), BackendError> {
        let mut c = self.pool.get().await?;
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .modifydn(dn, rdn, true, Some(to))
            .await;
        let r = self.transport(&c, r).await?;
        match r.rc {
            0 => Ok(()),
            rc => Err(result_error(rc, &r.text, Some(self.rdn_field))),
        }
    }

    async fn delete_entry(&self, dn: &str) -> Result<(), BackendError> {
        let mut c = self.pool.get().await?;
        let r = c.ldap.with_timeout(self.pool.op_timeout).delete(dn).await;
        let r = self.transport(&c, r).await?;
        match r.rc {
            0 => Ok(()),
            rc => Err(result_error(rc, &r.text, None)),
        }
    }

    /// Sets the password of entry `dn` (field `field`) with the Password Modify operation
    /// (RFC 3062): the directory hashes it as its policy says (slapd: `password-hash`,
    /// `{SSHA}` by default), where a plain modify would store the clear text.
    async fn set_password(&self, dn: &str, field: usize, pw: &str) -> Result<(), BackendError> {
        let mut c = self.pool.get().await?;
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .extended(ldap3::exop::PasswordModify {
                user_id: Some(dn),
                old_pass: None,
                new_pass: Some(pw),
            })
            .await;
        let r = self.transport(&c, r).await?;
        match r.1.rc {
            0 => Ok(()),
            rc => Err(match result_error(rc, &r.1.text, None) {
                BackendError::Rejected { detail, .. } => BackendError::Rejected {
                    field: Some(field),
                    detail,
                },
                e => e,
            }),
        }
    }

    async fn rename(&self, dn: &str, rdn: &str) -> Result<(), BackendError> {
        let mut c = self.pool.get().await?;
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .modifydn(dn, rdn, true, None)
            .await;
        let r = self.transport(&c, r).await?;
        match r.rc {
            0 => Ok(()),
            rc => Err(result_error(rc, &r.text, Some(self.rdn_field))),
        }
    }

    /// The RDN naming an entry whose naming field holds `v`.
    fn rdn_of(&self, v: &Value) -> Result<String, BackendError> {
        let text = match v.first() {
            Value::Null => String::new(),
            Value::Text(s) => s.clone(),
            other => String::from_utf8_lossy(&filter::value_bytes(other)).into_owned(),
        };
        if text.is_empty() {
            return Err(BackendError::Rejected {
                field: Some(self.rdn_field),
                detail: format!("{} names the entry and cannot be empty", self.res.rdn_attr),
            });
        }
        Ok(format!("{}={}", self.res.rdn_attr, dn_value(&text)))
    }
}

/// The attribute list of a search that needs no attributes, only DNs (RFC 4511 §4.5.1.8).
fn no_attrs() -> [String; 1] {
    ["1.1".to_owned()]
}

/// The SCIM id of an entry whose id attribute is `id_attr` (an AD objectGUID as its string).
fn id_of(e: &SearchEntry, id_attr: &str) -> Option<String> {
    ad::key_of(e, id_attr).or_else(|| match values_of(e, id_attr, false).into_iter().next() {
        Some(Value::Text(id)) => Some(id),
        _ => None,
    })
}

/// The values of attribute `attr` of an entry (case-insensitive name, options ignored).
pub(super) fn values_of(e: &SearchEntry, attr: &str, binary: bool) -> Vec<Value> {
    let same = |k: &String| names_attr(k, attr_base(k), attr);
    let mut out = Vec::new();
    for (k, vs) in &e.attrs {
        if same(k) {
            for v in vs {
                out.push(if binary {
                    Value::Bytes(v.clone().into_bytes())
                } else {
                    Value::Text(v.clone())
                });
            }
        }
    }
    for (k, vs) in &e.bin_attrs {
        if same(k) {
            out.extend(vs.iter().map(|v| Value::Bytes(v.clone())));
        }
    }
    out
}

/// An attribute description without its options (`member` of `member;range=0-1499`).
fn attr_base(k: &str) -> &str {
    k.as_bytes()
        .iter()
        .position(|&b| b == b';')
        .map_or(k, |i| &k[..i])
}

/// Adds one value read from the directory to a field's value: `Null` becomes the value, one
/// value becomes a list of two, a list grows.
fn add_value(slot: &mut Value, v: Value) {
    match slot {
        Value::Null => *slot = v,
        Value::List(list) => list.push(v),
        one => {
            let first = std::mem::replace(one, Value::Null);
            *one = Value::List(vec![first, v]);
        }
    }
}

/// Whether the entry's attribute `k` (`base` without its options) is the mapping's `attr`,
/// which may name options of its own (`userCertificate;binary`).
fn names_attr(k: &str, base: &str, attr: &str) -> bool {
    base.eq_ignore_ascii_case(attr) || (base.len() < k.len() && k.eq_ignore_ascii_case(attr))
}

/// The clear-text password a value holds, if any.
fn password_of(v: &Value) -> Option<String> {
    match v.first() {
        Value::Null => None,
        Value::Text(s) => Some(s.clone()),
        other => Some(String::from_utf8_lossy(&filter::value_bytes(other)).into_owned()),
    }
}

/// A value as the attribute values it is written as (none for `Null`).
fn encode(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Null => Vec::new(),
        Value::List(l) => l.iter().flat_map(encode).collect(),
        v => vec![filter::value_bytes(v)],
    }
}

/// Now in LDAP's GeneralizedTime (`20240501100000Z`).
fn generalized_time() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The result of a search that read `found` entries of at most `limit + 1`: a size limit hit
/// before the sidecar's own is the directory's, and named as such.
fn check_search(rc: u32, text: &str, found: usize, limit: usize) -> Result<(), BackendError> {
    match rc {
        0 => Ok(()),
        4 if found > limit => Err(too_many(limit)),
        4 => Err(BackendError::TooLarge {
            detail: format!(
                "the directory stopped the search after {found} entries (its size limit for the \
                 bind DN); narrow the filter, or raise the limit (OpenLDAP: `limits` with \
                 size.prtotal; Active Directory: MaxPageSize with paged searches)"
            ),
            members: false,
        }),
        rc => Err(result_error(rc, text, None)),
    }
}

fn too_many(limit: usize) -> BackendError {
    BackendError::TooLarge {
        members: false,
        detail: format!(
            "more than {limit} directory entries match; narrow the filter (the backend's max_results)"
        ),
    }
}

/// An LDAP result code as a [`BackendError`]; `naming` is the field a DN clash is about.
pub fn result_error(rc: u32, text: &str, naming: Option<usize>) -> BackendError {
    let detail = if text.is_empty() {
        code_name(rc).to_owned()
    } else {
        format!("{}: {text}", code_name(rc))
    };
    match rc {
        32 => BackendError::NotFound,
        68 => BackendError::Conflict {
            field: naming,
            detail,
        },
        // Schema and value problems: the client's data does not fit the directory.
        16 | 17 | 19 | 20 | 21 | 34 | 64 | 65 | 67 | 69 => BackendError::Rejected {
            field: None,
            detail,
        },
        3 | 11 | 51 | 52 => BackendError::Unavailable(detail),
        _ => BackendError::Internal(detail),
    }
}

/// Orders rows as `sort` says (ties by key).
fn sort_rows(rows: &mut [(Row, usize)], sort: &Sort) {
    let key_of = |r: &Row| -> (usize, String) {
        match sort.field {
            None => (0, r.key.clone()),
            Some(i) => {
                let v = r
                    .values
                    .get(i)
                    .map(Value::first)
                    .cloned()
                    .unwrap_or(Value::Null);
                let rank = if sort.ranks.is_empty() {
                    0
                } else {
                    sort.ranks
                        .iter()
                        .position(|x| *x == v)
                        .unwrap_or(sort.ranks.len())
                };
                let text = String::from_utf8_lossy(&filter::value_bytes(&v)).into_owned();
                (
                    rank,
                    if sort.fold_case {
                        text.to_lowercase()
                    } else {
                        text
                    },
                )
            }
        }
    };
    rows.sort_by(|(a, _), (b, _)| {
        let o = key_of(a).cmp(&key_of(b));
        let o = if sort.descending { o.reverse() } else { o };
        o.then_with(|| a.key.cmp(&b.key))
    });
}

#[async_trait]
impl Table for LdapTable {
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        let mut values = values;
        let naming = values.get(self.rdn_field).cloned().unwrap_or(Value::Null);
        let rdn = self.rdn_of(&naming)?;
        let given: Vec<(usize, &Value)> = values.iter().enumerate().collect();
        self.check_unique(&given, None).await?;
        if let Some(ad) = &self.ad {
            ad.prepare_insert(&mut values)?;
        }
        // Numbers for the attributes the request and the constants leave without a value.
        let constants = self.constants_for(&[When::Insert, When::Always]);
        let mut allocated = Vec::new();
        for (a, counter) in &self.res.allocate {
            let given = self
                .fields
                .iter()
                .zip(&values)
                .any(|(f, v)| f.loc.attr.eq_ignore_ascii_case(a) && !v.is_null())
                || constants.iter().any(|(c, _)| c.eq_ignore_ascii_case(a));
            if !given {
                allocated.push((a.clone(), self.allocate(a, counter).await?));
            }
        }
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = Vec::new();
        let mut put = |a: &str, vs: Vec<Vec<u8>>| {
            if vs.is_empty() {
                return;
            }
            match attrs
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(a.as_bytes()))
            {
                Some((_, set)) => set.extend(vs),
                None => attrs.push((a.as_bytes().to_vec(), vs.into_iter().collect())),
            }
        };
        put(
            "objectClass",
            self.res
                .object_classes
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
        );
        let mut password = None;
        for (i, (f, v)) in self.fields.iter().zip(&values).enumerate() {
            if f.loc.is_password() {
                password = password_of(v).map(|p| (i, p));
                continue;
            }
            put(&f.loc.attr, encode(v));
        }
        // The naming value is an attribute value of the entry too (RFC 4512 §2.3).
        put(&self.res.rdn_attr, encode(naming.first()));
        for (a, vs) in constants {
            put(&a, vs);
        }
        for (a, n) in allocated {
            put(&a, vec![n.to_string().into_bytes()]);
        }
        match &self.members {
            Some(m) => {
                let dns = self
                    .member_dns(&m.member, m.value.as_deref(), &members)
                    .await?;
                let missing: Vec<String> = members
                    .iter()
                    .filter(|id| !dns.contains_key(*id))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    return Err(crate::backend::missing_members(&missing));
                }
                let mut vs: Vec<Vec<u8>> = dns.values().map(|d| d.as_bytes().to_vec()).collect();
                if vs.is_empty() {
                    vs.extend(m.empty.iter().map(|e| e.as_bytes().to_vec()));
                }
                put(&m.attr, vs);
            }
            None if !members.is_empty() => {
                return Err(BackendError::Unsupported {
                    field: None,
                    detail: "this resource has no members".into(),
                });
            }
            None => {}
        }
        let dn = format!("{rdn},{}", self.res.base);
        let mut c = self.pool.get().await?;
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .add(&dn, attrs)
            .await;
        let r = self.transport(&c, r).await?;
        if r.rc != 0 {
            let e = match self.blame(result_error(r.rc, &r.text, Some(self.rdn_field))) {
                // The base itself is missing: a configuration fault, not a missing resource.
                BackendError::NotFound => {
                    BackendError::Internal(format!("base '{}' does not exist", self.res.base))
                }
                e => e,
            };
            let written: Vec<usize> = (0..values.len())
                .filter(|i| !values[*i].is_null())
                .collect();
            return Err(match &self.ad {
                Some(ad) => ad.blame(e, &written),
                None => e,
            });
        }
        drop(c);
        if let Some((i, pw)) = password {
            // A second operation: the entry goes again if the password is refused, so the
            // create changes nothing.
            if let Err(e) = self.set_password(&dn, i, &pw).await {
                if let Err(undo) = self.delete_entry(&dn).await {
                    tracing::error!(dn = %dn, error = %undo, "LDAP: an entry whose password was refused could not be removed");
                    crate::metrics::partial_write("ldap", "undo_create");
                }
                return Err(e);
            }
        }
        let mut c = self.pool.get().await?;
        // Read back for the id the directory gave it.
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .search(
                &dn,
                Scope::Base,
                "(objectClass=*)",
                self.attrs_for(load_members),
            )
            .await;
        let r = self.transport(&c, r).await?;
        let entry = r
            .0
            .into_iter()
            .next()
            .map(SearchEntry::construct)
            .ok_or_else(|| BackendError::Internal("the new entry cannot be read back".into()))?;
        let mut rows = vec![self.row(&entry)];
        if load_members {
            self.load_members(&mut rows, std::slice::from_ref(&entry))
                .await?;
        }
        let row = rows
            .pop()
            .ok_or_else(|| BackendError::Internal("no row".into()))?;
        if row.key.is_empty() {
            return Err(BackendError::Internal(format!(
                "the new entry has no {} attribute",
                self.res.id_attr
            )));
        }
        Ok(row)
    }

    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError> {
        Ok(self.lookup(key, members).await?.map(|(_, r)| r))
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        if search.predicate == Predicate::False {
            return Ok(Found {
                total: Some(0),
                rows: Vec::new(),
                next: None,
            });
        }
        let f = self.compile(&search.predicate).await?;
        let entries = self
            .find(
                &self.full_filter(&f),
                self.max_results,
                self.attrs_for(search.members),
                None,
            )
            .await?;
        // The entries are read again only to load members; else their values move into the
        // rows instead of being copied.
        let (mut rows, entries): (Vec<(Row, usize)>, Vec<SearchEntry>) = if search.members {
            let rows = entries.iter().enumerate().map(|(i, e)| (self.row(e), i));
            (rows.collect(), entries)
        } else {
            let rows = entries.into_iter().enumerate();
            (
                rows.map(|(i, e)| (self.row_taking(e), i)).collect(),
                Vec::new(),
            )
        };
        sort_rows(&mut rows, &search.sort);
        let total = rows.len() as u64;
        let (offset, limit) = search.page.offset_limit();
        let page: Vec<(Row, usize)> = rows
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        let picked: Option<Vec<SearchEntry>> = search
            .members
            .then(|| page.iter().map(|(_, i)| entries[*i].clone()).collect());
        let mut rows: Vec<Row> = page.into_iter().map(|(r, _)| r).collect();
        if let Some(picked) = picked {
            self.load_members(&mut rows, &picked).await?;
        }
        Ok(Found {
            total: Some(total),
            rows,
            next: None,
        })
    }

    async fn update(
        &self,
        key: &str,
        load_members: bool,
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        // The entry without its member list. Outside Active Directory (whose answers to a
        // value already there, or not there, differ) the member changes are written
        // optimistically: values added are taken to be absent and values removed present,
        // and a modify finding otherwise fails without changing anything and is sent again
        // from a read of those values ([`Self::listed`]). Only the placeholder's presence is
        // read with the entry (a Matched Values filter naming it, and every other attribute
        // read in full by a presence item).
        let mut attrs = self.attrs_for(false).to_vec();
        let mut vr = None;
        let optimistic = self.ad.is_none() && self.members.is_some();
        if let (true, Some(m)) = (optimistic, &self.members) {
            if let Some(e) = &m.empty {
                let mut f = format!("(({}={})", m.attr, filter_value(e.as_bytes()));
                for a in &attrs {
                    f.push_str(&format!("({a}=*)"));
                }
                f.push(')');
                vr = Some(f);
                attrs.push(m.attr.clone());
            }
        }
        let Some(entry) = self.lookup_entry(key, &attrs, vr).await? else {
            return Err(BackendError::NotFound);
        };
        let guess: Option<HashSet<String>> = match (optimistic, &self.members) {
            (true, Some(m)) => Some(match &m.empty {
                Some(e)
                    if values_of(&entry, &m.attr, false)
                        .iter()
                        .any(|v| matches!(v, Value::Text(t) if m.norm(t) == m.norm(e))) =>
                {
                    HashSet::from([m.norm(e)])
                }
                _ => HashSet::new(),
            }),
            _ => None,
        };
        let current = self.row(&entry);
        let dn = entry.dn;
        let change = edit(&current)?;
        let changed: Vec<(usize, Value)> = change
            .set
            .into_iter()
            .filter(|(i, v)| {
                current.values.get(*i).is_some_and(|c| match (c, v) {
                    // An attribute holding several values shows its first: unchanged when
                    // that one is what is written back.
                    (Value::List(_), v) if !matches!(v, Value::List(_)) => c.first() != v,
                    _ => c != v,
                })
            })
            .collect();
        let refs: Vec<(usize, &Value)> = changed.iter().map(|(i, v)| (*i, v)).collect();
        self.check_unique(&refs, Some(key)).await?;
        let mut changed = changed;
        if let Some(ad) = &self.ad {
            ad.prepare_update(&self.pool, &dn, &mut changed).await?;
        }
        // Member ids resolved (and unknown ones refused) before anything is written.
        let mut resolved = None;
        let member_mods = if change.members.is_empty() {
            Vec::new()
        } else {
            self.member_mods(&dn, &change.members, guess.as_ref(), &mut resolved)
                .await?
        };
        // Groups list the entry by its DN or by one of its values: when this change touches
        // that, they follow it after the write.
        let follows = !self.member_of.is_empty()
            && changed.iter().any(|(i, _)| {
                *i == self.rdn_field
                    || self.member_of.iter().any(|g| {
                        g.value
                            .as_deref()
                            .is_some_and(|a| a.eq_ignore_ascii_case(&self.fields[*i].loc.attr))
                    })
            });
        let before = if follows {
            Some(self.listed_as(&dn).await?)
        } else {
            None
        };
        // A new naming value renames the entry first; its id stays.
        let mut dn = dn;
        let mut renamed_from = None;
        if let Some((_, v)) = changed.iter().find(|(i, _)| *i == self.rdn_field) {
            let rdn = self.rdn_of(v)?;
            let old_rdn = self.rdn_of(&current.values[self.rdn_field])?;
            self.rename(&dn, &rdn).await?;
            renamed_from = Some(old_rdn);
            dn = format!("{rdn},{}", parent(&dn));
        }
        let password = changed
            .iter()
            .find(|(i, _)| self.fields[*i].loc.is_password())
            .and_then(|(i, v)| password_of(v).map(|p| (*i, p)));
        // The rename already wrote the naming attribute's new value (and took the old one
        // out: `deleteoldrdn`); Active Directory refuses any modify of an RDN attribute
        // (`notAllowedOnRDN`), so it is not written again. See: issue #10.
        let written_by_rename = |i: usize| {
            renamed_from.is_some()
                && i == self.rdn_field
                && self.fields[i]
                    .loc
                    .attr
                    .eq_ignore_ascii_case(&self.res.rdn_attr)
        };
        let mut mods: Vec<Mod<Vec<u8>>> = Vec::new();
        for (i, v) in changed
            .iter()
            .filter(|(i, _)| !self.fields[*i].loc.is_password() && !written_by_rename(*i))
        {
            let attr = self.fields[*i].loc.attr.as_bytes().to_vec();
            match &current.values[*i] {
                // A directory attribute with several values (two `mail`s written by another
                // tool) shows its first as the SCIM value: a new value replaces that one and
                // keeps the others, rather than dropping them.
                Value::List(l)
                    if l.len() > 1 && !matches!(v, Value::List(_)) && *i != self.rdn_field =>
                {
                    mods.push(Mod::Delete(
                        attr.clone(),
                        encode(&l[0]).into_iter().collect(),
                    ));
                    let new = encode(v);
                    if !new.is_empty() {
                        mods.push(Mod::Add(attr, new.into_iter().collect()));
                    }
                }
                _ => mods.push(Mod::Replace(attr, encode(v).into_iter().collect())),
            }
        }
        if !mods.is_empty() || renamed_from.is_some() {
            for (a, vs) in self.constants_for(&[When::Always]) {
                mods.push(Mod::Replace(a.into_bytes(), vs.into_iter().collect()));
            }
        }
        let field_mods = mods.clone();
        mods.extend(member_mods);
        let mut written = match &self.members {
            Some(m) => {
                self.modify_members(&dn, mods, m.empty.as_deref(), &m.attr)
                    .await
            }
            None => self.modify(&dn, mods).await,
        };
        // Another writer changed the same members between the read and the modify: once
        // more, from a fresh read.
        if let (Err(BackendError::Rejected { detail, .. }), Some(m)) = (&written, &self.members) {
            if !change.members.is_empty()
                && (detail.starts_with("noSuchAttribute")
                    || detail.starts_with("attributeOrValueExists"))
            {
                let mut mods = field_mods;
                mods.extend(
                    self.member_mods(&dn, &change.members, None, &mut resolved)
                        .await?,
                );
                written = self
                    .modify_members(&dn, mods, m.empty.as_deref(), &m.attr)
                    .await;
            }
        }
        // The password last, through its own operation; refused, the modify is written
        // back with the values read before it.
        if let (Ok(()), Some((i, pw))) = (&written, &password) {
            if let Err(e) = self.set_password(&dn, *i, pw).await {
                let undo: Vec<Mod<Vec<u8>>> = changed
                    .iter()
                    .filter(|(i, _)| !self.fields[*i].loc.is_password() && !written_by_rename(*i))
                    .map(|(i, _)| {
                        Mod::Replace(
                            self.fields[*i].loc.attr.as_bytes().to_vec(),
                            encode(&current.values[*i]).into_iter().collect(),
                        )
                    })
                    .collect();
                if let Err(undo) = self.modify(&dn, undo).await {
                    tracing::error!(dn = %dn, error = %undo, "LDAP: an update whose password was refused could not be undone");
                    crate::metrics::partial_write("ldap", "undo_update");
                }
                written = Err(e);
            }
        }
        if let Err(e) = written.map_err(|e| self.blame(e)) {
            let e = match &self.ad {
                Some(ad) => ad.blame(e, &changed.iter().map(|(i, _)| *i).collect::<Vec<_>>()),
                None => e,
            };
            if let Some(old) = renamed_from {
                // Undo the rename: the request changes nothing or everything.
                if let Err(undo) = self.rename(&dn, &old).await {
                    tracing::error!(dn = %dn, error = %undo, "LDAP: a failed update's rename could not be undone");
                    crate::metrics::partial_write("ldap", "undo_rename");
                }
            }
            return Err(e);
        }
        if let Some(before) = before {
            match self.listed_as(&dn).await {
                Ok(after) => {
                    for ((g, old), new) in self.member_of.iter().zip(before).zip(after) {
                        if let Some(old) = old {
                            if new.as_deref().map(|n| norm_member(g.value.as_deref(), n))
                                != Some(norm_member(g.value.as_deref(), &old))
                            {
                                self.relist(g, &old, new.as_deref()).await;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(dn = %dn, error = %e, "LDAP: the groups of a renamed entry could not follow it");
                    crate::metrics::partial_write("ldap", "group_follow");
                }
            }
        }
        // Only members changed (a group PATCH, answered 204): the entry's mapped values are
        // the ones read before, so it is not read again.
        if changed.is_empty() && !load_members && !self.volatile {
            return Ok(current);
        }
        self.lookup(key, load_members)
            .await?
            .map(|(_, r)| r)
            .ok_or(BackendError::NotFound)
    }

    async fn delete(
        &self,
        key: &str,
        mode: DeleteMode,
        check: CheckFn,
    ) -> Result<(), BackendError> {
        let Some((dn, current)) = self.lookup(key, false).await? else {
            return Err(BackendError::NotFound);
        };
        check(&current)?;
        match mode {
            DeleteMode::Hard => {
                let names = self.listed_as(&dn).await?;
                self.delete_entry(&dn).await?;
                self.leave_groups(&names).await;
                Ok(())
            }
            DeleteMode::Soft(sets) => {
                let mut mods: Vec<Mod<Vec<u8>>> = sets
                    .iter()
                    .filter_map(|(i, v)| {
                        let f = self.fields.get(*i)?;
                        Some(Mod::Replace(
                            f.loc.attr.as_bytes().to_vec(),
                            encode(v).into_iter().collect(),
                        ))
                    })
                    .collect();
                for (a, vs) in self.constants_for(&[When::Delete]) {
                    mods.push(Mod::Replace(a.into_bytes(), vs.into_iter().collect()));
                }
                self.modify(&dn, mods).await?;
                if let Some(to) = &self.res.disabled_base {
                    // Out of the base: the app (and any LDAP-bound login) no longer sees it.
                    // The entry keeps its id; a later create of the same name moves it back
                    // ([`Table::revive`]).
                    let rdn = self.rdn_of(&current.values[self.rdn_field])?;
                    let names = self.listed_as(&dn).await?;
                    self.move_entry(&dn, &rdn, to).await?;
                    self.leave_groups(&names).await;
                }
                Ok(())
            }
        }
    }

    async fn search_retired(&self, search: Search) -> Result<Found, BackendError> {
        let Some(retired) = self.res.disabled_base.clone() else {
            return self.search(search).await;
        };
        let f = self.compile(&search.predicate).await?;
        let mut found = self.search(search).await?;
        let moved = self
            .find_in(
                &retired,
                false,
                &self.full_filter(&f),
                self.attrs_for(false),
                self.max_results,
            )
            .await?;
        if moved.len() > self.max_results {
            return Err(too_many(self.max_results));
        }
        found.total = found.total.map(|t| t + moved.len() as u64);
        found
            .rows
            .extend(moved.into_iter().map(|e| self.row_taking(e)));
        Ok(found)
    }

    async fn revive(
        &self,
        key: &str,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        // An entry a soft delete moved to `disabled_base` comes back under the base first,
        // under its old name; the rewrite renames it if the create names it otherwise.
        let mut moved_back = None;
        if let Some(retired) = &self.res.disabled_base {
            let f = filter::compile(
                &Predicate::KeyEq(key.to_owned()),
                &self.attrs,
                &self.res.id_attr,
            )?;
            let found = self
                .find_in(
                    retired,
                    false,
                    &self.full_filter(&f),
                    std::slice::from_ref(&self.res.id_attr),
                    1,
                )
                .await?;
            if let Some(e) = found.first() {
                let rdn = rdn_part(&e.dn);
                self.move_entry(&e.dn, rdn, &self.res.base).await?;
                moved_back = Some((format!("{rdn},{}", self.res.base), rdn.to_owned()));
            }
        }
        let revived = crate::backend::rewrite(self, key, values, members, load_members).await;
        if let (Err(e), Some((dn, rdn)), Some(retired)) =
            (&revived, &moved_back, &self.res.disabled_base)
        {
            // Back where the delete left it: a failed create changes nothing.
            if let Err(u) = self.move_entry(dn, rdn, retired).await {
                tracing::error!(%dn, error = %u, cause = %e, "a soft-deleted entry brought back for a create that failed could not be moved back to disabled_base");
                crate::metrics::partial_write("ldap", "undo_revive");
            }
        }
        revived
    }

    async fn present(&self, keys: &[String]) -> Result<Vec<String>, BackendError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let f = filter::compile(
                &Predicate::KeyIn(chunk.to_vec()),
                &self.attrs,
                &self.res.id_attr,
            )?;
            let attrs = std::slice::from_ref(&self.res.id_attr);
            for e in self
                .find(&self.full_filter(&f), chunk.len(), attrs, None)
                .await?
            {
                out.push(self.key_of(&e));
            }
        }
        Ok(out)
    }
}

/// A DN compared loosely: ASCII case folded, spaces around separators dropped (what
/// distinguishedNameMatch ignores in the common cases).
fn norm_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            out.push(c.to_ascii_lowercase());
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                out.push(c);
            }
            ' ' if out.ends_with([',', '=']) => {}
            ',' | '=' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
            }
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// The DN above `dn`: everything after its first unescaped comma.
/// The first RDN of `dn` (`uid=a\\,b` of `uid=a\\,b,ou=people,dc=x`).
fn rdn_part(dn: &str) -> &str {
    let rest = parent(dn);
    if rest.is_empty() {
        dn
    } else {
        &dn[..dn.len() - rest.len() - 1]
    }
}

fn parent(dn: &str) -> &str {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => return &dn[i + 1..],
            _ => {}
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parent DN skips commas escaped inside the RDN value.
    #[test]
    fn parents() {
        assert_eq!(parent("uid=a\\,b,ou=people,dc=x"), "ou=people,dc=x");
        assert_eq!(parent("uid=a\\\\,ou=people"), "ou=people");
        assert_eq!(parent("dc=x"), "");
        assert_eq!(rdn_part("uid=a\\,b,ou=people,dc=x"), "uid=a\\,b");
        assert_eq!(rdn_part("dc=x"), "dc=x");
    }

    /// An entry's attribute answers a mapping's name case-insensitively, with its options
    /// (a range, `;binary`) ignored unless the mapping names them itself.
    #[test]
    fn attribute_names() {
        let is = |k: &str, attr: &str| names_attr(k, attr_base(k), attr);
        assert!(is("mail", "mail"));
        assert!(is("MAIL", "mail"));
        assert!(is("member;range=0-1499", "member"));
        assert!(is("userCertificate;binary", "usercertificate;BINARY"));
        assert!(is("userCertificate;binary", "userCertificate"));
        assert!(!is("mailbox", "mail"));
        assert!(!is("mail", "mail;lang-de"));
        assert!(!is("cn;x", "cn;y"));
        assert_eq!(attr_base("a;b;c"), "a");
    }

    /// Result codes become the errors the layer above answers with.
    #[test]
    fn result_codes() {
        assert!(matches!(
            result_error(68, "", Some(0)),
            BackendError::Conflict { field: Some(0), .. }
        ));
        assert!(matches!(result_error(32, "", None), BackendError::NotFound));
        assert!(matches!(
            result_error(65, "x", None),
            BackendError::Rejected { .. }
        ));
        assert!(matches!(
            result_error(52, "", None),
            BackendError::Unavailable(_)
        ));
    }
}
