//! The sidecar's own state: values of attributes the application has no place for (mapped
//! with `kept = true`, typically `externalId`), keyed by resource type, resource id and the
//! attribute's canonical path.
//!
//! An SQL store holds it (`scim-sidecar migrate` creates its table). Where it is the same
//! store as the resource's own, the store reads and writes kept values in the same
//! transactions as the resource's rows ([`super::FieldSource::Kept`]). For a resource in any
//! other store (a directory, a REST API, another database), [`Overlay`] wraps that store's
//! [`Table`] and keeps the values in the [`StateStore`] named by `[state] backend`:
//!
//! - reads add the kept values of the rows read (one query per page);
//! - a filter on a kept value is answered by the state store first and becomes a condition
//!   on the resources' ids ([`Predicate::KeyIn`]); a sort by one is refused (`Unsupported`);
//! - writes go to the resource's store first, then to the state store. Two stores cannot
//!   share one transaction: a create whose kept values cannot be written is undone (the new
//!   resource is deleted again) and answers the error; an update whose kept values cannot be
//!   written has changed the resource but not them, and answers 503 so the identity
//!   provider sends it again (updates are idempotent, so the retry converges). A create
//!   always writes every kept attribute (absent ones as removals), so values left behind by
//!   a resource deleted earlier under a reused id never resurface.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{
    BackendError, Change, CheckFn, CmpOp, DeleteMode, EditFn, Found, PageRequest, Paging,
    Predicate, Row, Search, Table, Value,
};

/// A comparison on a kept value.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    /// The operator (`Ne` is not used: the caller negates `Eq`).
    pub op: CmpOp,
    /// The right-hand side.
    pub value: Value,
    /// Compare text case-insensitively.
    pub fold_case: bool,
}

/// Where the sidecar keeps attribute values the application cannot hold.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Where it is, for messages (`[backend.state]`).
    fn describe(&self) -> String;

    /// The values kept for resources `ids` of `resource_type`, restricted to `names`:
    /// `(id, name, value)` triples, in no particular order.
    async fn load(
        &self,
        resource_type: &str,
        ids: &[String],
        names: &[String],
    ) -> Result<Vec<(String, String, Value)>, BackendError>;

    /// Sets the kept values of one resource (a `Null` value removes it), in one transaction.
    async fn save(
        &self,
        resource_type: &str,
        id: &str,
        values: &[(String, Value)],
    ) -> Result<(), BackendError>;

    /// Removes every value kept for one resource.
    async fn forget(&self, resource_type: &str, id: &str) -> Result<(), BackendError>;

    /// Every resource of `resource_type` something is kept for.
    async fn owners(&self, resource_type: &str) -> Result<Vec<String>, BackendError>;

    /// The ids of `resource_type` resources whose kept `name` meets `cond` (`None`: has a
    /// value at all).
    async fn find(
        &self,
        resource_type: &str,
        name: &str,
        cond: Option<&Cond>,
    ) -> Result<Vec<String>, BackendError>;

    /// Whether any resource of `resource_type` has a value kept for `name`: [`Self::find`]
    /// stopped at the first one.
    async fn any(&self, resource_type: &str, name: &str) -> Result<bool, BackendError> {
        Ok(!self.find(resource_type, name, None).await?.is_empty())
    }
}

/// Where one field of an [`Overlay`] lives.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// Field `i` of the wrapped table.
    Inner(usize),
    /// A kept value with this name.
    Kept(String),
}

/// A resource's own [`Table`] plus the values the sidecar keeps for it elsewhere; see the
/// module doc for what is and is not atomic.
pub struct Overlay {
    inner: Arc<dyn Table>,
    state: Arc<dyn StateStore>,
    resource_type: String,
    slots: Vec<Slot>,
    /// Soft deletes leave tombstones here ([`super::TableSpec::tombstones`]).
    tombstones: bool,
    /// Outer fields whose values are unique, with their case folding: what a create may
    /// clash with a tombstoned resource on.
    unique: Vec<(usize, bool)>,
    /// The resource type has members.
    membership: bool,
    /// The member type, when its soft deletes leave tombstones here too: a tombstoned
    /// resource is no member to add.
    member_tombstones: Option<String>,
}

/// How many holders of a create's unique values are read to find a tombstoned one among them
/// (a unique value has one live holder at most; more than this many is not expected).
const CLASH_CANDIDATES: u64 = 16;

/// The most member ids a request may name for [`Table::update_named`] to read their
/// tombstones one by one (bound parameters of one query) instead of every tombstone.
const NAMED_LOOKUP_MAX: usize = 1000;

/// The name of a tombstone among a resource's kept values.
pub const TOMBSTONE: &str = "meta.deleted";

impl Overlay {
    /// Wraps `inner`, whose fields are the `None` entries of `fields` in order; the `Some`
    /// entries are kept values of that name.
    pub fn new(
        inner: Arc<dyn Table>,
        state: Arc<dyn StateStore>,
        resource_type: &str,
        fields: Vec<Option<String>>,
    ) -> Self {
        let mut next = 0;
        let slots = fields
            .into_iter()
            .map(|f| match f {
                Some(name) => Slot::Kept(name),
                None => {
                    next += 1;
                    Slot::Inner(next - 1)
                }
            })
            .collect();
        Overlay {
            inner,
            state,
            resource_type: resource_type.to_owned(),
            slots,
            tombstones: false,
            unique: Vec::new(),
            membership: false,
            member_tombstones: None,
        }
    }

    /// The resource type has members; `member_tombstones` names the member type when it
    /// soft-deletes through this state store too.
    pub fn with_members(mut self, member_tombstones: Option<String>) -> Self {
        self.membership = true;
        self.member_tombstones = member_tombstones;
        self
    }

    /// Soft deletes leave a tombstone in the state store: the resource is gone for every
    /// read and write, and a create that clashes with it on one of the `unique` fields
    /// (outer indices, with case folding) brings it back.
    pub fn with_tombstones(mut self, unique: Vec<(usize, bool)>) -> Self {
        self.tombstones = true;
        self.unique = unique;
        self
    }

    /// Whether `key` is tombstoned, from what [`Overlay::load`] read.
    fn dead(&self, key: &str, kept: &[(String, String, Value)]) -> bool {
        self.tombstones && kept.iter().any(|(id, n, _)| id == key && n == TOMBSTONE)
    }

    /// The ids of tombstoned resources.
    async fn dead_ids(&self) -> Result<Vec<String>, BackendError> {
        if !self.tombstones {
            return Ok(Vec::new());
        }
        self.state.find(&self.resource_type, TOMBSTONE, None).await
    }

    fn kept_names(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Kept(n) => Some(n.clone()),
                Slot::Inner(_) => None,
            })
            .collect()
    }

    /// The outer index of inner field `i`.
    fn outer_of(&self, i: usize) -> Option<usize> {
        self.slots.iter().position(|s| *s == Slot::Inner(i))
    }

    /// An error of the wrapped table, its field index made an outer one.
    fn lift(&self, e: BackendError) -> BackendError {
        match e {
            BackendError::Conflict { field, detail } => BackendError::Conflict {
                field: field.and_then(|f| self.outer_of(f)),
                detail,
            },
            BackendError::Rejected { field, detail } => BackendError::Rejected {
                field: field.and_then(|f| self.outer_of(f)),
                detail,
            },
            BackendError::Unsupported { field, detail } => BackendError::Unsupported {
                field: field.and_then(|f| self.outer_of(f)),
                detail,
            },
            other => other,
        }
    }

    /// Outer values: the inner row's, with kept values filled in from `kept`.
    fn merge(&self, row: Row, kept: &[(String, String, Value)]) -> Row {
        merge_with(&self.slots, row, kept)
    }

    /// Splits outer values into the inner table's and the kept ones (by name).
    fn split(&self, values: Vec<Value>) -> (Vec<Value>, Vec<(String, Value)>) {
        let mut inner = Vec::new();
        let mut kept = Vec::new();
        for (s, v) in self.slots.iter().zip(values) {
            match s {
                Slot::Inner(_) => inner.push(v),
                Slot::Kept(n) => kept.push((n.clone(), v)),
            }
        }
        (inner, kept)
    }

    async fn load(&self, ids: &[String]) -> Result<Vec<(String, String, Value)>, BackendError> {
        let mut names = self.kept_names();
        if self.tombstones {
            names.push(TOMBSTONE.to_owned());
        }
        if ids.is_empty() || names.is_empty() {
            return Ok(Vec::new());
        }
        self.state.load(&self.resource_type, ids, &names).await
    }

    /// The predicate over the inner table: conditions on kept values answered by the state
    /// store as sets of ids.
    async fn lower(&self, p: &Predicate) -> Result<Predicate, BackendError> {
        Ok(match p {
            Predicate::And(items) | Predicate::Or(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(Box::pin(self.lower(i)).await?);
                }
                if matches!(p, Predicate::And(_)) {
                    Predicate::And(out)
                } else {
                    Predicate::Or(out)
                }
            }
            Predicate::Not(inner) => Predicate::Not(Box::new(Box::pin(self.lower(inner)).await?)),
            Predicate::Present(f) => match self.slots.get(*f) {
                Some(Slot::Inner(i)) => Predicate::Present(*i),
                Some(Slot::Kept(name)) => {
                    Predicate::KeyIn(self.state.find(&self.resource_type, name, None).await?)
                }
                None => Predicate::False,
            },
            Predicate::Cmp {
                field,
                op,
                value,
                fold_case,
            } => match self.slots.get(*field) {
                Some(Slot::Inner(i)) => Predicate::Cmp {
                    field: *i,
                    op: *op,
                    value: value.clone(),
                    fold_case: *fold_case,
                },
                Some(Slot::Kept(name)) => {
                    // SCIM `ne` matches resources without the value too.
                    let (op, negate) = if *op == CmpOp::Ne {
                        (CmpOp::Eq, true)
                    } else {
                        (*op, false)
                    };
                    let cond = Cond {
                        op,
                        value: value.clone(),
                        fold_case: *fold_case,
                    };
                    let ids = self
                        .state
                        .find(&self.resource_type, name, Some(&cond))
                        .await?;
                    if negate {
                        Predicate::Not(Box::new(Predicate::KeyIn(ids)))
                    } else {
                        Predicate::KeyIn(ids)
                    }
                }
                None => Predicate::False,
            },
            other => other.clone(),
        })
    }
}

impl Overlay {
    /// A tombstoned resource a create of `values` would clash with on a unique field.
    async fn tombstoned_clash(&self, values: &[Value]) -> Result<Option<String>, BackendError> {
        if !self.tombstones || self.unique.is_empty() {
            return Ok(None);
        }
        let mut conds: Vec<Predicate> = self
            .unique
            .iter()
            .filter_map(|&(f, fold)| {
                let v = values.get(f)?;
                (!v.is_null()).then(|| Predicate::Cmp {
                    field: f,
                    op: CmpOp::Eq,
                    value: v.clone(),
                    fold_case: fold,
                })
            })
            .collect();
        if conds.is_empty() {
            return Ok(None);
        }
        // Most creates come where nothing was ever soft-deleted (an identity provider's first
        // cycle): one look at the state store's index saves them a search in the store.
        if !self.state.any(&self.resource_type, TOMBSTONE).await? {
            return Ok(None);
        }
        // The few resources holding one of these values, tombstoned or not, and of those the
        // tombstoned one: a cost that does not grow with the number of soft deletes. A store
        // that cannot search on such a field (or finds more holders than expected) is asked
        // among the tombstoned ids instead.
        let either = if conds.len() == 1 {
            conds.remove(0)
        } else {
            Predicate::Or(conds)
        };
        let lowered = self.lower(&either).await?;
        let holders = self
            .inner
            .search_retired(Search {
                predicate: lowered.clone(),
                sort: Default::default(),
                page: PageRequest::Offset {
                    offset: 0,
                    limit: CLASH_CANDIDATES,
                },
                members: false,
            })
            .await;
        match holders {
            Ok(found) if found.next.is_none() && found.rows.len() < CLASH_CANDIDATES as usize => {
                let ids: Vec<String> = found.rows.into_iter().map(|r| r.key).collect();
                let kept = self.load(&ids).await?;
                return Ok(ids.into_iter().find(|k| self.dead(k, &kept)));
            }
            Ok(_) | Err(BackendError::Unsupported { .. } | BackendError::TooLarge { .. }) => {}
            Err(e) => return Err(self.lift(e)),
        }
        let dead = self.dead_ids().await?;
        if dead.is_empty() {
            return Ok(None);
        }
        let found = self
            .inner
            .search_retired(Search {
                predicate: Predicate::And(vec![Predicate::KeyIn(dead), lowered]),
                sort: Default::default(),
                page: PageRequest::Offset {
                    offset: 0,
                    limit: 1,
                },
                members: false,
            })
            .await
            .map_err(|e| self.lift(e))?;
        Ok(found.rows.into_iter().next().map(|r| r.key))
    }

    /// Refuses member ids that name tombstoned resources: they are no one.
    async fn check_members_alive(&self, ids: &[String]) -> Result<(), BackendError> {
        let Some(member_type) = &self.member_tombstones else {
            return Ok(());
        };
        if ids.is_empty() {
            return Ok(());
        }
        // The tombstones of these ids only.
        let dead = self
            .state
            .load(member_type, ids, &[TOMBSTONE.to_owned()])
            .await?;
        let gone: Vec<String> = ids
            .iter()
            .filter(|i| dead.iter().any(|(id, _, _)| id == *i))
            .cloned()
            .collect();
        if gone.is_empty() {
            Ok(())
        } else {
            Err(super::missing_members(&gone))
        }
    }

    /// Brings back tombstoned resource `key` as a create of `values` would have written it.
    async fn revive(
        &self,
        key: &str,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        self.check_members_alive(&members).await?;
        let (inner, mut kept) = self.split(values);
        let row = self
            .inner
            .revive(key, inner, members, load_members)
            .await
            .map_err(|e| self.lift(e))?;
        kept.push((TOMBSTONE.to_owned(), Value::Null));
        self.state.save(&self.resource_type, key, &kept).await?;
        let kept: Vec<(String, String, Value)> = kept
            .into_iter()
            .map(|(n, v)| (row.key.clone(), n, v))
            .collect();
        Ok(self.merge(row, &kept))
    }

    /// Every tombstoned member id, for an update that may add any member.
    async fn all_dead_members(&self) -> Result<HashSet<String>, BackendError> {
        Ok(match &self.member_tombstones {
            Some(t) => self
                .state
                .find(t, TOMBSTONE, None)
                .await?
                .into_iter()
                .collect(),
            None => HashSet::new(),
        })
    }

    /// [`Table::update`] refusing to add any of `dead_members` (tombstoned: no one), and,
    /// when the request `named` its members ahead, any member it did not name.
    async fn update_checking(
        &self,
        key: &str,
        load_members: bool,
        dead_members: HashSet<String>,
        named: Option<HashSet<String>>,
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let kept = self.load(&[key.to_owned()]).await?;
        if self.dead(key, &kept) {
            return Err(BackendError::NotFound);
        }
        let slots = self.slots.clone();
        let kept_set: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let out = kept_set.clone();
        let merged_kept = kept.clone();
        let overlay_slots = slots.clone();
        let wrapped: EditFn = Box::new(move |row: &Row| {
            let merged = merge_with(&overlay_slots, row.clone(), &merged_kept);
            let Change { set, members } = edit(&merged)?;
            let added = members.iter().flat_map(|m| match m {
                super::MemberChange::Add(ids) | super::MemberChange::Replace(ids) => ids.as_slice(),
                _ => &[],
            });
            if let Some(named) = &named {
                if let Some(id) = added.clone().find(|i| !named.contains(*i)) {
                    // Its tombstone was not read: refused rather than added unchecked.
                    return Err(BackendError::Internal(format!(
                        "member '{id}' was not named before the update"
                    )));
                }
            }
            let gone: Vec<String> = added
                .filter(|i| dead_members.contains(*i))
                .cloned()
                .collect();
            if !gone.is_empty() {
                return Err(super::missing_members(&gone));
            }
            let mut inner_set = Vec::new();
            let mut kept = Vec::new();
            for (f, v) in set {
                match slots.get(f) {
                    Some(Slot::Inner(i)) => inner_set.push((*i, v)),
                    Some(Slot::Kept(n)) => kept.push((n.clone(), v)),
                    None => {}
                }
            }
            if let Ok(mut o) = out.lock() {
                *o = kept;
            }
            Ok(Change {
                set: inner_set,
                members,
            })
        });
        let row = self
            .inner
            .update(key, load_members, wrapped)
            .await
            .map_err(|e| self.lift(e))?;
        let changed: Vec<(String, Value)> = kept_set
            .lock()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default();
        if !changed.is_empty() {
            self.state
                .save(&self.resource_type, &row.key, &changed)
                .await
                .map_err(|e| match e {
                    BackendError::Unavailable(d) => BackendError::Unavailable(d),
                    other => BackendError::Unavailable(format!(
                        "the resource was updated but its kept values were not ({other}); a retry completes it"
                    )),
                })?;
        }
        let mut now: Vec<(String, String, Value)> = kept
            .into_iter()
            .filter(|(_, n, _)| !changed.iter().any(|(c, _)| c == n))
            .collect();
        now.extend(changed.into_iter().map(|(n, v)| (row.key.clone(), n, v)));
        Ok(self.merge(row, &now))
    }
}

#[async_trait]
impl Table for Overlay {
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        if let Some(key) = self.tombstoned_clash(&values).await? {
            return self.revive(&key, values, members, load_members).await;
        }
        self.check_members_alive(&members).await?;
        let (inner, kept) = self.split(values);
        let row = self
            .inner
            .insert(inner, members, load_members)
            .await
            .map_err(|e| self.lift(e))?;
        if let Err(e) = self.state.save(&self.resource_type, &row.key, &kept).await {
            // Undo the create: a resource without its kept values would answer differently
            // from what the client was told failed.
            let undone = self
                .inner
                .delete(&row.key, DeleteMode::Hard, Box::new(|_| Ok(())))
                .await;
            if let Err(u) = undone {
                tracing::error!(resource_type = %self.resource_type, id = %row.key, error = %u, "could not undo a create whose kept values failed; the resource exists without them");
                crate::metrics::partial_write("state", "undo_create");
            }
            return Err(e);
        }
        let kept: Vec<(String, String, Value)> = kept
            .into_iter()
            .map(|(n, v)| (row.key.clone(), n, v))
            .collect();
        Ok(self.merge(row, &kept))
    }

    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError> {
        // The kept values are read while the store answers (two round trips at once when the
        // state is a database server). A store that answers under another spelling of the
        // key has them read again under its own.
        let ids = [key.to_owned()];
        let (row, kept) = tokio::join!(self.inner.fetch(key, members), self.load(&ids));
        let Some(row) = row.map_err(|e| self.lift(e))? else {
            return Ok(None);
        };
        let kept = if row.key == key {
            kept?
        } else {
            self.load(std::slice::from_ref(&row.key)).await?
        };
        if self.dead(&row.key, &kept) {
            return Ok(None);
        }
        Ok(Some(self.merge(row, &kept)))
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        let sort_field = match search.sort.field {
            None => None,
            Some(f) => match self.slots.get(f) {
                Some(Slot::Inner(i)) => Some(*i),
                _ => {
                    return Err(BackendError::Unsupported {
                        field: Some(f),
                        detail: format!(
                            "values the sidecar keeps in {} cannot be sorted on",
                            self.state.describe()
                        ),
                    });
                }
            },
        };
        let mut predicate = self.lower(&search.predicate).await?;
        let sort = crate::backend::Sort {
            field: sort_field,
            ..search.sort.clone()
        };
        if self.tombstones && predicate != Predicate::True && first_page(&search.page) {
            // A filter (userName eq, externalId eq: what an IdP sends before each write)
            // mostly matches a few resources: they are searched for as if none were
            // deleted, and the tombstoned ones dropped here, so that such a filter costs
            // the same with 100,000 soft-deleted resources as with none. Only when the
            // answer is not the whole result (more pages) are the tombstoned ids excluded
            // by the store itself below, to keep totals and pages exact.
            let found = match self
                .inner
                .search(Search {
                    predicate: predicate.clone(),
                    sort: sort.clone(),
                    page: search.page.clone(),
                    members: search.members,
                })
                .await
            {
                Ok(found) => Some(found),
                // More matches than the store reads at once, counting the deleted ones: the
                // search below may be within bounds without them.
                Err(BackendError::TooLarge { .. }) => None,
                Err(e) => return Err(self.lift(e)),
            };
            if let Some(found) = found.filter(|f| is_whole(&search.page, f)) {
                let ids: Vec<String> = found.rows.iter().map(|r| r.key.clone()).collect();
                let kept = self.load(&ids).await?;
                let rows: Vec<Row> = found
                    .rows
                    .into_iter()
                    .filter(|r| !self.dead(&r.key, &kept))
                    .map(|r| self.merge(r, &kept))
                    .collect();
                return Ok(Found {
                    total: Some(rows.len() as u64),
                    rows,
                    next: None,
                });
            }
        }
        let dead = self.dead_ids().await?;
        if !dead.is_empty() {
            predicate = Predicate::And(vec![
                predicate,
                Predicate::Not(Box::new(Predicate::KeyIn(dead))),
            ]);
        }
        let lowered = Search {
            predicate,
            sort,
            page: search.page,
            members: search.members,
        };
        let found = self.inner.search(lowered).await.map_err(|e| self.lift(e))?;
        let ids: Vec<String> = found.rows.iter().map(|r| r.key.clone()).collect();
        let kept = self.load(&ids).await?;
        Ok(Found {
            total: found.total,
            rows: found
                .rows
                .into_iter()
                .map(|r| self.merge(r, &kept))
                .collect(),
            next: found.next,
        })
    }

    async fn update(
        &self,
        key: &str,
        load_members: bool,
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let dead_members = self.all_dead_members().await?;
        self.update_checking(key, load_members, dead_members, None, edit)
            .await
    }

    async fn update_named(
        &self,
        key: &str,
        load_members: bool,
        named: &[String],
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let Some(member_type) = &self.member_tombstones else {
            return self
                .update_checking(key, load_members, HashSet::new(), None, edit)
                .await;
        };
        if named.len() > NAMED_LOOKUP_MAX {
            // A request naming thousands (a group's whole member list): one read of every
            // tombstone costs less than a lookup of each.
            let dead_members = self.all_dead_members().await?;
            return self
                .update_checking(key, load_members, dead_members, None, edit)
                .await;
        }
        // Only the ids the request names can be added: their tombstones only.
        let dead_members = if named.is_empty() {
            HashSet::new()
        } else {
            self.state
                .load(member_type, named, &[TOMBSTONE.to_owned()])
                .await?
                .into_iter()
                .map(|(id, _, _)| id)
                .collect()
        };
        let named = Some(named.iter().cloned().collect());
        self.update_checking(key, load_members, dead_members, named, edit)
            .await
    }

    async fn delete(
        &self,
        key: &str,
        mode: DeleteMode,
        check: CheckFn,
    ) -> Result<(), BackendError> {
        let kept = self.load(&[key.to_owned()]).await?;
        if self.dead(key, &kept) {
            return Err(BackendError::NotFound);
        }
        let slots = self.slots.clone();
        let wrapped: CheckFn =
            Box::new(move |row: &Row| check(&merge_with(&slots, row.clone(), &kept)));
        let mode = match mode {
            DeleteMode::Hard => DeleteMode::Hard,
            // Soft deletes write fields of the resource's own store only (its `active`).
            DeleteMode::Soft(set) => DeleteMode::Soft(
                set.into_iter()
                    .filter_map(|(f, v)| match self.slots.get(f) {
                        Some(Slot::Inner(i)) => Some((*i, v)),
                        _ => None,
                    })
                    .collect(),
            ),
        };
        let hard = mode == DeleteMode::Hard;
        self.inner
            .delete(key, mode, wrapped)
            .await
            .map_err(|e| self.lift(e))?;
        if hard {
            self.state.forget(&self.resource_type, key).await?;
        } else if self.tombstones {
            let now = super::timestamp_text(time::OffsetDateTime::now_utc()).unwrap_or_default();
            self.state
                .save(
                    &self.resource_type,
                    key,
                    &[(TOMBSTONE.to_owned(), Value::Text(now))],
                )
                .await
                .map_err(|e| {
                    BackendError::Unavailable(format!(
                        "the resource was disabled but not marked deleted ({e}); a retry completes it"
                    ))
                })?;
        }
        Ok(())
    }

    fn paging(&self) -> Paging {
        self.inner.paging()
    }

    async fn present(&self, keys: &[String]) -> Result<Vec<String>, BackendError> {
        self.inner.present(keys).await
    }
}

/// Whether `page` asks for the first page.
fn first_page(page: &PageRequest) -> bool {
    match page {
        PageRequest::Offset { offset, .. } => *offset == 0,
        PageRequest::Cursor { after, .. } => after.is_none(),
    }
}

/// Whether `found`, the answer to the first `page`, is the whole result.
fn is_whole(page: &PageRequest, found: &Found) -> bool {
    let (_, limit) = page.offset_limit();
    let shown = found.rows.len() as u64;
    found.next.is_none()
        && match found.total {
            Some(total) => total == shown,
            None => shown < limit,
        }
}

/// [`Overlay::merge`] for closures that cannot borrow the overlay.
fn merge_with(slots: &[Slot], row: Row, kept: &[(String, String, Value)]) -> Row {
    let values = slots
        .iter()
        .map(|s| match s {
            Slot::Inner(i) => row.values.get(*i).cloned().unwrap_or(Value::Null),
            Slot::Kept(name) => kept
                .iter()
                .find(|(id, n, _)| *id == row.key && n == name)
                .map_or(Value::Null, |(_, _, v)| v.clone()),
        })
        .collect();
    Row {
        key: row.key,
        values,
        members: row.members,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::backend::MemberChange;

    /// The tombstones of some users, and nothing else; counts the reads of every tombstone
    /// (`find`). The overlay under test keeps no values, so it writes none.
    struct Tombstones {
        users: Vec<String>,
        finds: AtomicUsize,
    }

    #[async_trait]
    impl StateStore for Tombstones {
        fn describe(&self) -> String {
            "tombstones in memory".into()
        }
        async fn load(
            &self,
            resource_type: &str,
            ids: &[String],
            names: &[String],
        ) -> Result<Vec<(String, String, Value)>, BackendError> {
            let wanted = resource_type == "User" && names.iter().any(|n| n == TOMBSTONE);
            Ok(self
                .users
                .iter()
                .filter(|u| wanted && ids.contains(u))
                .map(|u| {
                    (
                        u.clone(),
                        TOMBSTONE.into(),
                        Value::Text("2026-12-05".into()),
                    )
                })
                .collect())
        }
        async fn save(&self, _: &str, _: &str, _: &[(String, Value)]) -> Result<(), BackendError> {
            Err(BackendError::Internal("nothing to write".into()))
        }
        async fn forget(&self, _: &str, _: &str) -> Result<(), BackendError> {
            Err(BackendError::Internal("nothing to forget".into()))
        }
        async fn owners(&self, _: &str) -> Result<Vec<String>, BackendError> {
            Ok(self.users.clone())
        }
        async fn find(
            &self,
            resource_type: &str,
            name: &str,
            _: Option<&Cond>,
        ) -> Result<Vec<String>, BackendError> {
            self.finds.fetch_add(1, Ordering::SeqCst);
            let all = resource_type == "User" && name == TOMBSTONE;
            Ok(if all { self.users.clone() } else { Vec::new() })
        }
    }

    /// One group, key `g`, with no fields; an update applies the change's member adds.
    #[derive(Default)]
    struct Group {
        members: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Table for Group {
        async fn insert(
            &self,
            _: Vec<Value>,
            _: Vec<String>,
            _: bool,
        ) -> Result<Row, BackendError> {
            Err(BackendError::Internal("one group only".into()))
        }
        async fn fetch(&self, key: &str, _: bool) -> Result<Option<Row>, BackendError> {
            Ok((key == "g").then(|| Row {
                key: "g".into(),
                values: vec![],
                members: None,
            }))
        }
        async fn search(&self, _: Search) -> Result<Found, BackendError> {
            Ok(Found {
                total: Some(0),
                rows: vec![],
                next: None,
            })
        }
        async fn update(&self, key: &str, _: bool, edit: EditFn) -> Result<Row, BackendError> {
            let row = self
                .fetch(key, false)
                .await?
                .ok_or(BackendError::NotFound)?;
            let change = edit(&row)?;
            let mut m = self.members.lock().expect("lock");
            for c in change.members {
                if let MemberChange::Add(ids) = c {
                    m.extend(ids);
                }
            }
            Ok(row)
        }
        async fn delete(&self, _: &str, _: DeleteMode, _: CheckFn) -> Result<(), BackendError> {
            Err(BackendError::NotFound)
        }
    }

    fn add(ids: &[&str]) -> EditFn {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        Box::new(move |_| {
            Ok(Change {
                set: vec![],
                members: vec![MemberChange::Add(ids)],
            })
        })
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    /// A member add that names its members ahead reads their tombstones only, not every
    /// soft-deleted user's, and still refuses a tombstoned one; an add of a member it did
    /// not name is refused rather than made unchecked.
    #[tokio::test]
    async fn named_member_adds_read_only_their_own_tombstones() {
        let kept = Arc::new(Tombstones {
            users: ids(&["u1", "u2", "u3"]),
            finds: AtomicUsize::new(0),
        });
        let group = Arc::new(Group::default());
        let o = Overlay::new(group.clone(), kept.clone(), "Group", vec![])
            .with_members(Some("User".into()));

        o.update_named("g", false, &ids(&["u9"]), add(&["u9"]))
            .await
            .expect("a live user is added");
        let refused = o
            .update_named("g", false, &ids(&["u8", "u2"]), add(&["u8", "u2"]))
            .await
            .expect_err("a tombstoned user is no one to add");
        assert!(refused.to_string().contains("u2"), "{refused}");
        assert_eq!(
            kept.finds.load(Ordering::SeqCst),
            0,
            "every tombstone was read"
        );
        let unnamed = o
            .update_named("g", false, &ids(&["u7"]), add(&["u3"]))
            .await
            .expect_err("an unnamed member is not added unchecked");
        assert!(matches!(unnamed, BackendError::Internal(_)), "{unnamed}");

        // A request naming thousands reads every tombstone once instead.
        let many: Vec<String> = (0..=NAMED_LOOKUP_MAX).map(|i| format!("n{i}")).collect();
        o.update_named("g", false, &many, add(&["n5"]))
            .await
            .expect("added");
        assert_eq!(kept.finds.load(Ordering::SeqCst), 1);

        // Without names, every tombstone is read, and the same checks hold.
        o.update("g", false, add(&["u6"])).await.expect("added");
        o.update("g", false, add(&["u1"]))
            .await
            .expect_err("tombstoned");
        assert_eq!(kept.finds.load(Ordering::SeqCst), 3);
        assert_eq!(
            *group.members.lock().expect("lock"),
            ids(&["u9", "n5", "u6"])
        );
    }
}
