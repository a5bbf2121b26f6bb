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

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{
    BackendError, Change, CheckFn, CmpOp, DeleteMode, EditFn, Found, Paging, Predicate, Row,
    Search, Table, Value,
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

    /// The ids of `resource_type` resources whose kept `name` meets `cond` (`None`: has a
    /// value at all).
    async fn find(
        &self,
        resource_type: &str,
        name: &str,
        cond: Option<&Cond>,
    ) -> Result<Vec<String>, BackendError>;
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
}

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
        }
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
        let names = self.kept_names();
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

#[async_trait]
impl Table for Overlay {
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
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
        let Some(row) = self
            .inner
            .fetch(key, members)
            .await
            .map_err(|e| self.lift(e))?
        else {
            return Ok(None);
        };
        let kept = self.load(std::slice::from_ref(&row.key)).await?;
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
        let lowered = Search {
            predicate: self.lower(&search.predicate).await?,
            sort: crate::backend::Sort {
                field: sort_field,
                ..search.sort
            },
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
        let kept = self.load(&[key.to_owned()]).await?;
        let slots = self.slots.clone();
        let kept_set: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let out = kept_set.clone();
        let merged_kept = kept.clone();
        let overlay_slots = slots.clone();
        let wrapped: EditFn = Box::new(move |row: &Row| {
            let merged = merge_with(&overlay_slots, row.clone(), &merged_kept);
            let Change { set, members } = edit(&merged)?;
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

    async fn delete(
        &self,
        key: &str,
        mode: DeleteMode,
        check: CheckFn,
    ) -> Result<(), BackendError> {
        let kept = self.load(&[key.to_owned()]).await?;
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
        }
        Ok(())
    }

    fn paging(&self) -> Paging {
        self.inner.paging()
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
