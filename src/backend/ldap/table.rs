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
//! - **Errors**: result codes map to [`BackendError`] in [`result_error`].

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use ldap3::{Mod, Scope, SearchEntry, SearchOptions};

use super::escape::{dn_value, filter_value};
use super::filter::{self, FieldAttr};
use super::pool::{Conn, Pool, code_name, unavailable};
use super::{LdapField, LdapResource};
use crate::backend::{
    BackendError, CheckFn, ConstSpec, ConstValue, DeleteMode, EditFn, FieldInfo, FieldType, Found,
    Predicate, Row, Search, Sort, Table, Value, When,
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
            unique: false,
            multi_valued: false,
        }
    }
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
}

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
        for f in &fields {
            if !wanted.iter().any(|w| w.eq_ignore_ascii_case(&f.loc.attr)) {
                wanted.push(f.loc.attr.clone());
            }
        }
        LdapTable {
            pool,
            res,
            fields,
            attrs,
            rdn_field,
            max_results,
            constants,
            classes,
            wanted,
        }
    }

    fn scope(&self) -> Scope {
        if self.res.subtree {
            Scope::Subtree
        } else {
            Scope::OneLevel
        }
    }

    /// `(&<classes><f>)`.
    fn full_filter(&self, f: &str) -> String {
        format!("(&{}{f})", self.classes)
    }

    /// Runs a search under the base; `Err(TooLarge)` when more than `limit` entries match.
    async fn find(&self, filter: &str, limit: usize) -> Result<Vec<SearchEntry>, BackendError> {
        let mut c = self.pool.get().await?;
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .with_search_options(
                SearchOptions::new()
                    .sizelimit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX)),
            )
            .search(&self.res.base, self.scope(), filter, self.wanted.clone())
            .await;
        let r = self.transport(&c, r).await?;
        match r.1.rc {
            0 => {}
            4 => return Err(too_many(limit)),
            32 => {
                return Err(BackendError::Internal(format!(
                    "base '{}' does not exist",
                    self.res.base
                )));
            }
            rc => return Err(result_error(rc, &r.1.text, None)),
        }
        let entries: Vec<SearchEntry> =
            r.0.into_iter()
                .filter(|e| !e.is_ref() && !e.is_intermediate())
                .map(SearchEntry::construct)
                .collect();
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

    /// The entry with id `key`: its DN and row.
    async fn lookup(&self, key: &str) -> Result<Option<(String, Row)>, BackendError> {
        let f = filter::compile(
            &Predicate::KeyEq(key.to_owned()),
            &self.attrs,
            &self.res.id_attr,
        )?;
        let mut found = self
            .find(&self.full_filter(&f), 1)
            .await
            .map_err(|e| match e {
                BackendError::TooLarge { .. } => {
                    BackendError::Internal(format!("two entries have {} '{key}'", self.res.id_attr))
                }
                e => e,
            })?;
        Ok(found.pop().map(|e| {
            let row = self.row(&e);
            (e.dn, row)
        }))
    }

    /// The row of an entry.
    fn row(&self, e: &SearchEntry) -> Row {
        let key = values_of(e, &self.res.id_attr, false)
            .into_iter()
            .next()
            .map(|v| match v {
                Value::Text(s) => s,
                other => String::from_utf8_lossy(&filter::value_bytes(&other)).into_owned(),
            })
            .unwrap_or_default();
        let values = self
            .fields
            .iter()
            .map(|f| {
                let mut vs = values_of(e, &f.loc.attr, f.loc.binary);
                match vs.len() {
                    0 => Value::Null,
                    1 => vs.remove(0),
                    _ => Value::List(vs),
                }
            })
            .collect();
        Row {
            key,
            values,
            members: None,
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
                cond.push_str(&format!(
                    "(!({}={}))",
                    self.res.id_attr,
                    filter_value(k.as_bytes())
                ));
            }
            let found = self.find(&self.full_filter(&cond), 1).await;
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

/// The values of attribute `attr` of an entry (case-insensitive name, options ignored).
fn values_of(e: &SearchEntry, attr: &str, binary: bool) -> Vec<Value> {
    let same = |k: &String| {
        let base = k.split(';').next().unwrap_or(k);
        base.eq_ignore_ascii_case(attr) || k.eq_ignore_ascii_case(attr)
    };
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

fn too_many(limit: usize) -> BackendError {
    BackendError::TooLarge {
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
fn sort_rows(rows: &mut [Row], sort: &Sort) {
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
    rows.sort_by(|a, b| {
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
        _load_members: bool,
    ) -> Result<Row, BackendError> {
        if !members.is_empty() {
            return Err(BackendError::Unsupported {
                field: None,
                detail: "members are not stored in this directory".into(),
            });
        }
        let naming = values.get(self.rdn_field).cloned().unwrap_or(Value::Null);
        let rdn = self.rdn_of(&naming)?;
        let given: Vec<(usize, &Value)> = values.iter().enumerate().collect();
        self.check_unique(&given, None).await?;
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
        for (f, v) in self.fields.iter().zip(&values) {
            put(&f.loc.attr, encode(v));
        }
        // The naming value is an attribute value of the entry too (RFC 4512 §2.3).
        put(&self.res.rdn_attr, encode(naming.first()));
        for (a, vs) in self.constants_for(&[When::Insert, When::Always]) {
            put(&a, vs);
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
            return Err(match result_error(r.rc, &r.text, Some(self.rdn_field)) {
                // The base itself is missing: a configuration fault, not a missing resource.
                BackendError::NotFound => {
                    BackendError::Internal(format!("base '{}' does not exist", self.res.base))
                }
                e => e,
            });
        }
        // Read back for the id the directory gave it.
        let r = c
            .ldap
            .with_timeout(self.pool.op_timeout)
            .search(&dn, Scope::Base, "(objectClass=*)", self.wanted.clone())
            .await;
        let r = self.transport(&c, r).await?;
        let entry = r
            .0
            .into_iter()
            .next()
            .map(SearchEntry::construct)
            .ok_or_else(|| BackendError::Internal("the new entry cannot be read back".into()))?;
        let row = self.row(&entry);
        if row.key.is_empty() {
            return Err(BackendError::Internal(format!(
                "the new entry has no {} attribute",
                self.res.id_attr
            )));
        }
        Ok(row)
    }

    async fn fetch(&self, key: &str, _members: bool) -> Result<Option<Row>, BackendError> {
        Ok(self.lookup(key).await?.map(|(_, r)| r))
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        if search.predicate == Predicate::False {
            return Ok(Found {
                total: Some(0),
                rows: Vec::new(),
                next: None,
            });
        }
        let f = filter::compile(&search.predicate, &self.attrs, &self.res.id_attr)?;
        let entries = self.find(&self.full_filter(&f), self.max_results).await?;
        let mut rows: Vec<Row> = entries.iter().map(|e| self.row(e)).collect();
        sort_rows(&mut rows, &search.sort);
        let total = rows.len() as u64;
        let (offset, limit) = search.page.offset_limit();
        let rows = rows
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        Ok(Found {
            total: Some(total),
            rows,
            next: None,
        })
    }

    async fn update(
        &self,
        key: &str,
        _load_members: bool,
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let Some((dn, current)) = self.lookup(key).await? else {
            return Err(BackendError::NotFound);
        };
        let change = edit(&current)?;
        if !change.members.is_empty() {
            return Err(BackendError::Unsupported {
                field: None,
                detail: "members are not stored in this directory".into(),
            });
        }
        let changed: Vec<(usize, Value)> = change
            .set
            .into_iter()
            .filter(|(i, v)| current.values.get(*i).is_some_and(|c| c != v))
            .collect();
        let refs: Vec<(usize, &Value)> = changed.iter().map(|(i, v)| (*i, v)).collect();
        self.check_unique(&refs, Some(key)).await?;
        // A new naming value renames the entry first; its id stays.
        let mut dn = dn;
        let mut renamed_from = None;
        if let Some((_, v)) = changed.iter().find(|(i, _)| *i == self.rdn_field) {
            let rdn = self.rdn_of(v)?;
            self.rename(&dn, &rdn).await?;
            let old_rdn = self.rdn_of(&current.values[self.rdn_field])?;
            renamed_from = Some(old_rdn);
            dn = format!("{rdn},{}", parent(&dn));
        }
        let mut mods: Vec<Mod<Vec<u8>>> = changed
            .iter()
            .map(|(i, v)| {
                Mod::Replace(
                    self.fields[*i].loc.attr.as_bytes().to_vec(),
                    encode(v).into_iter().collect(),
                )
            })
            .collect();
        if !mods.is_empty() {
            for (a, vs) in self.constants_for(&[When::Always]) {
                mods.push(Mod::Replace(a.into_bytes(), vs.into_iter().collect()));
            }
        }
        if let Err(e) = self.modify(&dn, mods).await {
            if let Some(old) = renamed_from {
                // Undo the rename: the request changes nothing or everything.
                if let Err(undo) = self.rename(&dn, &old).await {
                    tracing::error!(dn = %dn, error = %undo, "LDAP: a failed update's rename could not be undone");
                }
            }
            return Err(e);
        }
        self.lookup(key)
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
        let Some((dn, current)) = self.lookup(key).await? else {
            return Err(BackendError::NotFound);
        };
        check(&current)?;
        match mode {
            DeleteMode::Hard => {
                let mut c = self.pool.get().await?;
                let r = c.ldap.with_timeout(self.pool.op_timeout).delete(&dn).await;
                let r = self.transport(&c, r).await?;
                match r.rc {
                    0 => Ok(()),
                    rc => Err(result_error(rc, &r.text, None)),
                }
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
                self.modify(&dn, mods).await
            }
        }
    }

    async fn present(&self, keys: &[String]) -> Result<Vec<String>, BackendError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let f = filter::compile(
                &Predicate::KeyIn(chunk.to_vec()),
                &self.attrs,
                &self.res.id_attr,
            )?;
            for e in self.find(&self.full_filter(&f), chunk.len()).await? {
                out.push(self.row(&e).key);
            }
        }
        Ok(out)
    }
}

/// The DN above `dn`: everything after its first unescaped comma.
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
