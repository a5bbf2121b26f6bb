//! The flows every SQL store runs, written once over a driver's connection.
//!
//! A driver (SQLite, PostgreSQL, MySQL) opens a transaction and hands [`Conn`] to one of these
//! functions; each is one [`crate::backend::Table`] operation, in one fixed order of steps:
//!
//! - **insert**: uniqueness checks the store cannot make → the row (with its child rows) →
//!   members → read back.
//! - **update**: read and lock the row → the caller's edit → uniqueness checks → the row's own
//!   columns → child rows → members → read back.
//! - **delete**: read and lock the row → the caller's check → hard: child rows, memberships,
//!   the row; soft: the row's columns, then child rows (the same order as an update).
//!
//! What differs between stores is in [`Conn`] (how a statement runs, how a value is locked)
//! and in the statements [`Model`] builds for the dialect; where a dialect can do a step in
//! one statement (PostgreSQL's writable CTEs) the flow asks [`Dialect::writable_ctes`], but
//! the steps and their order stay the same.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::config::Event;
use super::model::{self, Field, Members, Model, Moment};
use super::{Dialect, Sql, compile_predicate, order_by};
use crate::backend::{
    BackendError, Change, CheckFn, DeleteMode, EditFn, Found, MemberChange, Row, Search, Value,
};

/// A connection (inside the transaction the driver opened) as the flows use it.
///
/// Futures of these methods need not be `Send`: SQLite runs a whole flow on one blocking
/// thread ([`run_ready`]); PostgreSQL's are `Send` because its connection is.
pub(crate) trait Conn {
    /// The table's compiled model.
    fn model(&self) -> &Model;
    /// The column of each field, for messages.
    fn names(&self) -> &[String];
    /// Runs a statement; the number of rows it changed.
    fn exec(&self, sql: &Sql) -> impl Future<Output = Result<u64, BackendError>>;
    /// Runs an `INSERT` of one row; the key the store generated for it (an `AUTO_INCREMENT`
    /// or rowid), where the driver reports one. Used where the dialect has no `RETURNING`.
    fn exec_insert(&self, sql: &Sql) -> impl Future<Output = Result<Option<i64>, BackendError>>;
    /// Runs a query whose columns are the key and the model's fields.
    fn rows(&self, sql: &Sql) -> impl Future<Output = Result<Vec<Row>, BackendError>>;
    /// [`Conn::rows`] for the last statement of a flow in a transaction, one whose success
    /// is the flow's: where the store can, the transaction commits with it (PostgreSQL:
    /// `COMMIT` goes out right behind it and both are answered in one round trip).
    fn rows_last(&self, sql: &Sql) -> impl Future<Output = Result<Vec<Row>, BackendError>> {
        self.rows(sql)
    }
    /// Runs a query; every column as text (`NULL` as empty).
    fn strings(&self, sql: &Sql) -> impl Future<Output = Result<Vec<Vec<String>>, BackendError>>;
    /// [`Conn::strings`] of `first`, then [`Conn::rows`] (or [`Conn::rows_last`], when
    /// `last`) of `then`. `then` must change nothing when `first` returns rows, or fails:
    /// where the store can, both go out together (PostgreSQL: in one write, answered in one
    /// round trip), so `then` runs whatever `first` returned. Here, one after the other, and
    /// `then` not at all after rows.
    fn strings_then_rows(
        &self,
        first: &Sql,
        then: &Sql,
        last: bool,
    ) -> impl Future<Output = Result<(Vec<Vec<String>>, Vec<Row>), BackendError>> {
        async move {
            let before = self.strings(first).await?;
            if !before.is_empty() {
                return Ok((before, Vec::new()));
            }
            let rows = match last {
                true => self.rows_last(then).await?,
                false => self.rows(then).await?,
            };
            Ok((before, rows))
        }
    }
    /// Serialises writers of one value until the transaction ends, where the store does not
    /// already serialise every write (PostgreSQL: a transaction-scoped advisory lock).
    fn lock(&self, key: &str) -> impl Future<Output = Result<(), BackendError>>;
}

/// Runs a flow whose awaits never wait (SQLite: every step is a blocking call already made
/// on this thread) to its end.
pub(crate) fn run_ready<T>(
    flow: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let mut flow = pin!(flow);
    match flow.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(BackendError::Internal(
            "a store step waited on a connection that never waits".into(),
        )),
    }
}

/// Whether [`insert_unless_tombstoned`] can stand for [`insert`], outside a transaction: the
/// store writes the row, its child rows and reads it back in one statement (PostgreSQL), and
/// nothing else is written or read with it.
pub(crate) fn insert_is_one_statement(m: &Model, members: &[String], load_members: bool) -> bool {
    m.d.writable_ctes()
        && members.is_empty()
        && m.unique_checks.is_empty()
        && !load_members
        && m.hooks.is_empty()
}

/// [`insert`] in one statement, atomic by itself: the row as stored, or `None` (nothing
/// written) when a tombstoned resource holds one of the new row's unique values, and
/// [`insert`] in a transaction is to revive it. For a type that soft-deletes, that check
/// rides in the insert (`WHERE NOT EXISTS`): one round trip where a look-up `FOR UPDATE`,
/// the insert and the transaction around them took three.
pub(crate) async fn insert_unless_tombstoned<C: Conn>(
    c: &C,
    values: &[Value],
) -> Result<Option<Row>, BackendError> {
    let m = c.model();
    let uuid = if m.key_uuid {
        Some(super::uuid_v4()?)
    } else {
        None
    };
    let sql = insert_with_children(m, values, m.insert_unless_tombstoned(values, uuid));
    let Some(mut row) = c.rows(&sql).await?.into_iter().next() else {
        return Ok(None);
    };
    fill_children(m, &mut row, values);
    Ok(Some(row))
}

/// Inserts a row with its child rows and initial members and returns it as stored.
pub(crate) async fn insert<C: Conn>(
    c: &C,
    values: Vec<Value>,
    members: Vec<String>,
    load_members: bool,
) -> Result<Row, BackendError> {
    let m = c.model();
    // RFC 7644 §3.6: a deleted resource takes no part in conflicts. A soft-deleted row that
    // holds a unique value of the new one is brought back instead, under its own key.
    if let Some(clash) = m.tombstoned_clash(&values) {
        let found = c
            .strings(&clash)
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next());
        if let Some(key) = found.and_then(|k| m.key_value(&k)) {
            return revive(c, &key, values, members, load_members).await;
        }
    }
    let indexed: Vec<(usize, &Value)> = values.iter().enumerate().collect();
    check_unique(c, &indexed, None).await?;
    let uuid = if m.key_uuid {
        Some(super::uuid_v4()?)
    } else {
        None
    };
    let mut row = if m.d.writable_ctes() {
        // One statement: the row, its child rows in CTEs, and the row read back.
        let mut row = c
            .rows(&insert_with_children(m, &values, m.insert(&values, uuid)))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::Internal("insert returned no row".into()))?;
        fill_children(m, &mut row, &values);
        row
    } else {
        let key = if m.d.returning_inserts() {
            let mut sql = m.insert(&values, uuid);
            sql.push(" RETURNING ").push(&m.key.name);
            c.strings(&sql)
                .await?
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .and_then(|k| m.key_value(&k))
        } else {
            // MySQL: the key is the one the sidecar made, or the one the insert generated
            // (LAST_INSERT_ID, reported with the insert), read back below in this transaction.
            let generated = c.exec_insert(&m.insert(&values, uuid.clone())).await?;
            match uuid {
                Some(u) => Some(Value::Text(u)),
                None => generated.map(Value::Int),
            }
        }
        .ok_or_else(|| BackendError::Internal("insert returned no key".into()))?;
        // A new row has no child rows yet: each is inserted, with no update tried first.
        for (i, v) in values.iter().enumerate() {
            if matches!(m.fields[i], Field::Child(_)) && !v.is_null() {
                if let Some(sql) = m.child_insert(i, &key, v) {
                    c.exec(&sql).await?;
                }
            }
        }
        fetch(c, &key, false)
            .await?
            .ok_or_else(|| BackendError::Internal("inserted row not found".into()))?
    };
    let key = m
        .key_value(&row.key)
        .ok_or_else(|| BackendError::Internal("insert returned a key of another type".into()))?;
    if !members.is_empty() {
        change_members(c, &key, &[MemberChange::Add(members)], Some(&row)).await?;
    }
    run_hooks(c, Event::Create, &key, Some(&row)).await?;
    if load_members {
        members_after_write(c, &mut row).await?;
    }
    Ok(row)
}

/// Brings back soft-deleted row `key` as an insert of `values` would have written it: its
/// fields rewritten (absent ones cleared, or set to the column's default), its members
/// replaced, its tombstone (when this table keeps them) removed.
pub(crate) async fn revive<C: Conn>(
    c: &C,
    key: &Value,
    values: Vec<Value>,
    members: Vec<String>,
    load_members: bool,
) -> Result<Row, BackendError> {
    let m = c.model();
    let indexed: Vec<(usize, &Value)> = values.iter().enumerate().collect();
    check_unique(c, &indexed, Some(key)).await?;
    if let Some(upd) = m.revive_update(&values, key) {
        c.exec(&upd).await?;
    }
    for (i, v) in values.iter().enumerate() {
        if matches!(m.fields[i], Field::Child(_)) {
            write_child(c, i, key, v).await?;
        }
    }
    if let Some(t) = m.tombstone_delete(key) {
        c.exec(&t).await?;
    }
    let mut row = fetch(c, key, false)
        .await?
        .ok_or_else(|| BackendError::Internal("revived row not found".into()))?;
    if m.members.is_some() {
        change_members(c, key, &[MemberChange::Replace(members)], Some(&row)).await?;
    }
    run_hooks(c, Event::Create, key, Some(&row)).await?;
    if load_members {
        members_after_write(c, &mut row).await?;
    }
    Ok(row)
}

/// The child fields of a row read back by [`insert_with_children`]: as written.
fn fill_children(m: &Model, row: &mut Row, values: &[Value]) {
    for (i, f) in m.fields.iter().enumerate() {
        if matches!(f, Field::Child(_)) {
            row.values[i] = values[i].clone();
        }
    }
}

/// PostgreSQL's insert: `WITH t AS (<insert> RETURNING *), c1 AS (INSERT child …) SELECT …`.
/// The child rows are written for each row `insert` writes: none when it writes none.
fn insert_with_children(m: &Model, values: &[Value], insert: Sql) -> Sql {
    let text = m.insert_returning();
    let mut sql = Sql::default();
    sql.push("WITH t AS (");
    sql.append_owned(insert);
    sql.push(" RETURNING *)");
    for (i, (f, v)) in m.fields.iter().zip(values).enumerate() {
        if let (Field::Child(ch), false) = (f, v.is_null()) {
            sql.push(&text.child_heads[i]);
            ch.col.param(m.d, &mut sql, v.clone());
            ch.push_insert_values(m.d, &mut sql);
            sql.push(" FROM t)");
        }
    }
    // Child fields read as NULL: the caller fills them in from `values`.
    sql.push(&text.tail);
    sql
}

/// Reads one row by key (`lock`: and locks it for the rest of the transaction, where the
/// store locks rows).
pub(crate) async fn fetch<C: Conn>(
    c: &C,
    key: &Value,
    lock: bool,
) -> Result<Option<Row>, BackendError> {
    Ok(c.rows(&c.model().fetch(key, lock))
        .await?
        .into_iter()
        .next())
}

/// Reads one row and, when asked, its members.
/// Which of `keys` have a row of this type (soft-deleted ones included), as text.
pub(crate) async fn present<C: Conn>(c: &C, keys: &[String]) -> Result<Vec<String>, BackendError> {
    let m = c.model();
    let mut out = Vec::new();
    for chunk in keys.chunks(1000) {
        out.extend(
            c.strings(&m.present(chunk))
                .await?
                .into_iter()
                .filter_map(|r| r.into_iter().next()),
        );
    }
    Ok(out)
}

pub(crate) async fn fetch_with_members<C: Conn>(
    c: &C,
    key: &Value,
    members: bool,
) -> Result<Option<Row>, BackendError> {
    let Some(mut row) = fetch(c, key, false).await? else {
        return Ok(None);
    };
    if members {
        load_members_of(c, std::slice::from_mut(&mut row)).await?;
    }
    Ok(Some(row))
}

/// Runs a search: the page in one statement, and a count only when the page does not tell it.
pub(crate) async fn search<C: Conn>(c: &C, search: &Search) -> Result<Found, BackendError> {
    let m = c.model();
    let (offset, limit) = search.page.offset_limit();
    let mut filter = Sql::default();
    compile_predicate(m, &search.predicate, &mut filter);
    if limit == 0 {
        return Ok(Found {
            total: Some(count(c, &filter).await?),
            rows: Vec::new(),
            next: None,
        });
    }
    let mut q = Sql::default();
    m.select_from(&mut q);
    q.push(" AND ");
    q.append(&filter);
    order_by(m, &search.sort, &mut q);
    m.d.limit_offset(&mut q, limit, offset);
    let mut rows = c.rows(&q).await?;
    // The common case (a lookup by userName, a short list) needs no count query.
    let total = if offset == 0 && (rows.len() as u64) < limit {
        rows.len() as u64
    } else {
        count(c, &filter).await?
    };
    if search.members {
        load_members_of(c, &mut rows).await?;
    }
    Ok(Found {
        total: Some(total),
        rows,
        next: None,
    })
}

async fn count<C: Conn>(c: &C, filter: &Sql) -> Result<u64, BackendError> {
    let m = c.model();
    let mut q = Sql::default();
    q.push("SELECT ")
        .push(m.d.count_expr())
        .push(" FROM ")
        .push(&m.table)
        .push(" t WHERE 1=1");
    m.push_scope(&mut q, "t");
    q.push(" AND ");
    q.append(filter);
    let n = c
        .strings(&q)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next());
    Ok(n.and_then(|n| n.parse().ok()).unwrap_or(0))
}

/// Locks the row, runs `edit`, writes what changed, and returns the row as it now reads.
pub(crate) async fn update<C: Conn>(
    c: &C,
    key: &Value,
    load_members: bool,
    edit: EditFn,
) -> Result<Row, BackendError> {
    let m = c.model();
    let current = fetch(c, key, true).await?.ok_or(BackendError::NotFound)?;
    let Change { set, members } = edit(&current)?;
    let refs: Vec<(usize, &Value)> = set.iter().map(|(i, v)| (*i, v)).collect();
    check_unique(c, &refs, Some(key)).await?;
    let children = set
        .iter()
        .any(|(i, _)| matches!(m.fields.get(*i), Some(Field::Child(_))));
    let touched = !set.is_empty() || !members.is_empty();
    // Where the UPDATE reads the row back (PostgreSQL) and no hooks run, the membership
    // changes first, so that the UPDATE can be the last statement (below).
    let members_first =
        !members.is_empty() && m.hooks.is_empty() && m.d.returning_updates() && !children;
    let mut upd = m.update(&set, key, touched);
    // One add or one remove (Entra's and Okta's incremental PATCH of a group) goes out with
    // the UPDATE (PostgreSQL): one round trip fewer. Any other change runs first, alone.
    let ahead = match upd.as_mut() {
        Some(u) if members_first => members_ahead(m, key, &members, u),
        _ => None,
    };
    if members_first && ahead.is_none() {
        change_members(c, key, &members, Some(&current)).await?;
    }
    // Nothing runs after an UPDATE that reads the row back: it may commit with it (a PATCH
    // of a user, or of a group's members: one round trip fewer).
    let last = (members.is_empty() || members_first)
        && !load_members
        && m.hooks_on(Event::Update).next().is_none();
    let read_back = async |sql: &Sql| match &ahead {
        Some(first) => {
            let (missing, rows) = c.strings_then_rows(first, sql, last).await?;
            refuse_missing(first_column(missing).collect())?;
            Ok(rows)
        }
        None if last => c.rows_last(sql).await,
        None => c.rows(sql).await,
    };
    let mut row = None;
    if let Some(mut upd) = upd {
        // One UPDATE that returns the row as it now reads, when nothing else changes it.
        match m.returning_list() {
            Some(list) if m.d.returning_updates() && !children => {
                upd.push(" RETURNING ").push(list);
                row = read_back(&upd).await?.into_iter().next();
            }
            // With child fields (read by subqueries), in a CTE: one round trip fewer than
            // the UPDATE and the read after it (PATCH bench: five statements to four). Not
            // when hooks run on a membership change: they may write the row.
            None if m.d.writable_ctes()
                && !children
                && (members.is_empty() || m.hooks.is_empty()) =>
            {
                row = read_back(&m.returning_rows(&upd)).await?.into_iter().next();
            }
            _ => {
                // Not reached with `ahead` (it is PostgreSQL's, which reads the row back);
                // were it, the membership change still runs, before the UPDATE.
                if let Some(first) = &ahead {
                    refuse_missing(first_column(c.strings(first).await?).collect())?;
                }
                c.exec(&upd).await?;
            }
        }
    }
    for (i, v) in &set {
        if matches!(m.fields.get(*i), Some(Field::Child(_))) {
            write_child(c, *i, key, v).await?;
        }
    }
    if !members_first {
        change_members(c, key, &members, Some(&current)).await?;
    }
    let mut row = match row {
        Some(r) => r,
        None => fetch(c, key, false).await?.ok_or(BackendError::NotFound)?,
    };
    if !set.is_empty() {
        run_hooks(c, Event::Update, key, Some(&row)).await?;
    }
    if load_members {
        members_after_write(c, &mut row).await?;
    }
    Ok(row)
}

/// The statement of a group's membership change that can go out with `upd`, the UPDATE of
/// the group's own row (PostgreSQL): one add, or one remove, of ids that can all be keys.
/// An add's statement returns the ids that are not members-to-be, and writes nothing then;
/// `upd` is made to write nothing then too (its transaction may commit with it).
fn members_ahead(m: &Model, key: &Value, members: &[MemberChange], upd: &mut Sql) -> Option<Sql> {
    let mm = m.members.as_ref().filter(|_| m.d.writable_ctes())?;
    match members {
        [MemberChange::Add(ids)] => {
            let (valid, invalid) = super::split_ids(mm.member_key(), ids);
            if valid.is_empty() || !invalid.is_empty() {
                return None;
            }
            upd.push(" AND ").push(model::NOT_REFUSED);
            Some(add_members_statement(m, mm, key, &valid))
        }
        [MemberChange::Remove(ids)] => {
            let (valid, _) = super::split_ids(mm.member_key(), ids);
            (!valid.is_empty()).then(|| m.members_remove(mm, key, &valid))
        }
        _ => None,
    }
}

/// Locks the row, runs `check`, and deletes it as `mode` says.
pub(crate) async fn delete<C: Conn>(
    c: &C,
    key: &Value,
    mode: DeleteMode,
    check: CheckFn,
) -> Result<(), BackendError> {
    let m = c.model();
    let current = fetch(c, key, true).await?.ok_or(BackendError::NotFound)?;
    check(&current)?;
    match mode {
        DeleteMode::Hard => {
            // The app's logic first, while the row still exists: it leaves its groups (their
            // member_remove hooks), its own members leave it (its member_remove hooks, while
            // what they inherited can still be traced to it), then its delete hooks.
            leave_groups(c, key, true).await?;
            if m.members.is_some() {
                change_members(c, key, &[MemberChange::Clear], Some(&current)).await?;
            }
            run_hooks(c, Event::Delete, key, Some(&current)).await?;
            for sql in m.delete(key) {
                c.exec(&sql).await?;
            }
        }
        DeleteMode::Soft(set) => {
            if let Some(sql) = m.update_at(&set, key, true, Moment::Delete) {
                c.exec(&sql).await?;
            }
            for (i, v) in &set {
                if matches!(m.fields.get(*i), Some(Field::Child(_))) {
                    write_child(c, *i, key, v).await?;
                }
            }
            // RFC 7644 §3.6: gone for SCIM, though the row stays in the app; a deleted
            // resource is no SCIM group's member, and a deleted group grants nothing. The
            // app's own groups keep it, as they keep the row.
            leave_groups(c, key, false).await?;
            if m.members.is_some() {
                change_members(c, key, &[MemberChange::Clear], Some(&current)).await?;
            }
            if let Some(t) = m.tombstone_insert(key) {
                c.exec(&t).await?;
            }
            run_hooks(c, Event::Delete, key, Some(&current)).await?;
        }
    }
    Ok(())
}

/// Loads a written row's members for the answer. The write stands whatever the answer: a
/// group with more members than one response carries answers without them.
async fn members_after_write<C: Conn>(c: &C, row: &mut Row) -> Result<(), BackendError> {
    match load_members_of(c, std::slice::from_mut(row)).await {
        Err(BackendError::TooLarge { .. }) => {
            row.members = None;
            Ok(())
        }
        other => other,
    }
}

/// Loads the members of these rows, one statement for all of them.
async fn load_members_of<C: Conn>(c: &C, rows: &mut [Row]) -> Result<(), BackendError> {
    let m = c.model();
    let Some(mm) = &m.members else {
        return Ok(());
    };
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<Value> = rows.iter().filter_map(|r| m.key_value(&r.key)).collect();
    let pairs = c.strings(&m.members_of(mm, &keys)).await?;
    if let Some(max) = m.max_members {
        if pairs.len() as u64 > max {
            return Err(BackendError::TooLarge {
                members: true,
                detail: format!(
                    "{} hold{} more than {max} members in all",
                    if rows.len() == 1 {
                        "the group"
                    } else {
                        "the groups of this page"
                    },
                    if rows.len() == 1 { "s" } else { "" }
                ),
            });
        }
    }
    // Member ids are moved, not copied: a 100,000-member group holds each id once.
    let mut by_group: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::with_capacity(rows.len());
    for pair in pairs {
        let mut it = pair.into_iter();
        if let (Some(group), Some(member)) = (it.next(), it.next()) {
            by_group.entry(group).or_default().push(member);
        }
    }
    for r in rows.iter_mut() {
        r.members = Some(by_group.remove(&r.key).unwrap_or_default());
    }
    Ok(())
}

/// Refuses the write when another row holds a value that must be unique and no index
/// guarantees it: the value is locked first (where the store needs it), then looked up.
async fn check_unique<C: Conn>(
    c: &C,
    values: &[(usize, &Value)],
    except: Option<&Value>,
) -> Result<(), BackendError> {
    let m = c.model();
    for &(i, fold) in &m.unique_checks {
        let Some((_, v)) = values.iter().find(|(j, _)| *j == i) else {
            continue;
        };
        // No value (`''` is how a NOT NULL column says it) is no one's to take.
        if v.is_null() || matches!(v, Value::Text(t) if t.is_empty()) {
            continue;
        }
        let text = model::value_text(v);
        let name = c.names().get(i).map_or("", String::as_str);
        c.lock(&format!(
            "{}:{}:{}",
            m.table,
            name,
            if fold { text.to_lowercase() } else { text }
        ))
        .await?;
        if let Some(sql) = m.unique_taken(i, v, fold, except) {
            if !c.strings(&sql).await?.is_empty() {
                return Err(BackendError::Conflict {
                    field: Some(i),
                    detail: format!("another row has the same {name}"),
                });
            }
        }
    }
    Ok(())
}

/// Makes child field `i` of row `key` hold `v`: deletes its row for no value, else updates
/// it or inserts it when there is none.
async fn write_child<C: Conn>(c: &C, i: usize, key: &Value, v: &Value) -> Result<(), BackendError> {
    let m = c.model();
    let Some(sql) = m.child_write(i, key, v) else {
        return Ok(());
    };
    let changed = c.exec(&sql).await?;
    if changed == 0 && !v.is_null() && !m.d.writable_ctes() {
        if let Some(ins) = m.child_insert(i, key, v) {
            c.exec(&ins).await?;
        }
    }
    Ok(())
}

/// Runs membership changes in order.
async fn change_members<C: Conn>(
    c: &C,
    key: &Value,
    changes: &[MemberChange],
    row: Option<&Row>,
) -> Result<(), BackendError> {
    let m = c.model();
    let Some(mm) = &m.members else {
        return if changes.is_empty() {
            Ok(())
        } else {
            Err(BackendError::Internal(
                "membership change on a table without members".into(),
            ))
        };
    };
    let hooked = m.hooks_on(Event::MemberAdd).next().is_some()
        || m.hooks_on(Event::MemberRemove).next().is_some();
    for change in changes {
        match change {
            MemberChange::Add(ids) => {
                add_members(c, mm, key, ids).await?;
                member_hooks(c, Event::MemberAdd, key, ids, row).await?;
            }
            MemberChange::Replace(ids) if hooked => {
                // The hooks see the difference, not a clear and a refill: a member kept
                // keeps what the app derived from its membership.
                let before = current_members(c, mm, key).await?;
                let gone: Vec<String> = before
                    .iter()
                    .filter(|b| !ids.contains(b))
                    .cloned()
                    .collect();
                let new: Vec<String> = ids
                    .iter()
                    .filter(|i| !before.contains(i))
                    .cloned()
                    .collect();
                c.exec(&m.members_clear(mm, key)).await?;
                add_members(c, mm, key, ids).await?;
                member_hooks(c, Event::MemberRemove, key, &gone, row).await?;
                member_hooks(c, Event::MemberAdd, key, &new, row).await?;
            }
            MemberChange::Replace(ids) => {
                c.exec(&m.members_clear(mm, key)).await?;
                add_members(c, mm, key, ids).await?;
            }
            MemberChange::Clear => {
                let before = if hooked {
                    current_members(c, mm, key).await?
                } else {
                    Vec::new()
                };
                c.exec(&m.members_clear(mm, key)).await?;
                member_hooks(c, Event::MemberRemove, key, &before, row).await?;
            }
            MemberChange::Remove(ids) => {
                let (valid, _) = super::split_ids(mm.member_key(), ids);
                if !valid.is_empty() {
                    // One statement, but MySQL binds each id: a few thousand at a time.
                    let chunk = if m.d == Dialect::Mysql {
                        model::MYSQL_CHUNK
                    } else {
                        valid.len()
                    };
                    for part in valid.chunks(chunk) {
                        c.exec(&m.members_remove(mm, key, part)).await?;
                    }
                    member_hooks(c, Event::MemberRemove, key, &valid, row).await?;
                }
            }
        }
    }
    Ok(())
}

/// Removes row `key` from its groups (every one when `all`, else those SCIM sees), running
/// each group type's `member_remove` hooks as a PATCH removing it would.
async fn leave_groups<C: Conn>(c: &C, key: &Value, all: bool) -> Result<(), BackendError> {
    let m = c.model();
    let sqls = m.memberships_clear(key, all);
    for (r, clear) in m.member_of.iter().zip(sqls) {
        let groups = match (r.hooks.is_empty(), m.groups_of(r, key)) {
            (false, Some(q)) => c.strings(&q).await?,
            _ => Vec::new(),
        };
        c.exec(&clear).await?;
        let Some(g) = &r.group else { continue };
        for group in groups.into_iter().filter_map(|r| r.into_iter().next()) {
            let Some(gk) = super::key_value(&group, g.ty == crate::backend::FieldType::Integer)
            else {
                continue;
            };
            for h in &r.hooks {
                for st in &h.statements {
                    hook(c, st, &gk, Some(key), None).await?;
                }
            }
        }
    }
    Ok(())
}

/// Every member id of group `key` (for hooks that must see who leaves).
async fn current_members<C: Conn>(
    c: &C,
    mm: &Members,
    key: &Value,
) -> Result<Vec<String>, BackendError> {
    let m = c.model();
    Ok(
        c.strings(&m.members_of_up_to(mm, std::slice::from_ref(key), None))
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().nth(1))
            .collect(),
    )
}

/// Runs the hooks of `event` for the resource `key` (its row after the write, when known).
async fn run_hooks<C: Conn>(
    c: &C,
    event: Event,
    key: &Value,
    row: Option<&Row>,
) -> Result<(), BackendError> {
    let m = c.model();
    for st in m.hooks_on(event) {
        hook(c, st, key, None, row).await?;
    }
    Ok(())
}

/// Runs one hook statement with its parameters bound.
async fn hook<C: Conn>(
    c: &C,
    st: &super::hooks::Statement,
    key: &Value,
    member: Option<&Value>,
    row: Option<&Row>,
) -> Result<(), BackendError> {
    c.exec(&st.bind(c.model().d, key, member, row))
        .await
        .map(drop)
        .map_err(|e| st.failed(e))
}

/// Runs the member hooks of `event` once per member id.
async fn member_hooks<C: Conn>(
    c: &C,
    event: Event,
    key: &Value,
    ids: &[String],
    row: Option<&Row>,
) -> Result<(), BackendError> {
    let m = c.model();
    let (Some(mm), true) = (&m.members, m.hooks_on(event).next().is_some()) else {
        return Ok(());
    };
    for id in ids {
        let Some(member) =
            super::key_value(id, mm.member_key().ty == crate::backend::FieldType::Integer)
        else {
            continue;
        };
        for st in m.hooks_on(event) {
            hook(c, st, key, Some(&member), row).await?;
        }
    }
    Ok(())
}

/// Adds members, refusing the whole change when any of them does not exist. With writable
/// CTEs, one statement finds the missing ids and inserts only when there are none.
async fn add_members<C: Conn>(
    c: &C,
    mm: &Members,
    key: &Value,
    ids: &[String],
) -> Result<(), BackendError> {
    if ids.is_empty() {
        return Ok(());
    }
    let m = c.model();
    let (valid, mut missing) = super::split_ids(mm.member_key(), ids);
    if !valid.is_empty() {
        if m.d == Dialect::Mysql {
            missing.extend(add_members_listed(c, mm, key, &valid).await?);
        } else if m.d.writable_ctes() {
            let sql = add_members_statement(m, mm, key, &valid);
            missing.extend(first_column(c.strings(&sql).await?));
        } else {
            let sql = m.missing_members(mm, &valid);
            missing.extend(first_column(c.strings(&sql).await?));
            if missing.is_empty() {
                c.exec(&m.members_add(mm, key, &valid, None)).await?;
            }
        }
    }
    refuse_missing(missing)
}

/// PostgreSQL's member add, in one statement: it finds the ids of `valid` that are not
/// members-to-be and inserts only when there are none. It returns those ids, each also
/// marking the transaction refused ([`model::NOT_REFUSED`]), so that a statement sent along
/// with it writes nothing either.
fn add_members_statement(m: &Model, mm: &Members, key: &Value, valid: &[String]) -> Sql {
    let mut sql = Sql::default();
    sql.push("WITH missing AS (");
    sql.append_owned(m.missing_members(mm, valid));
    sql.push("), ins AS (");
    sql.append_owned(m.members_add(mm, key, valid, Some("NOT EXISTS (SELECT 1 FROM missing)")));
    sql.push(" RETURNING 1) SELECT v, ")
        .push(model::REFUSE)
        .push(" FROM missing");
    sql
}

/// The refusal naming `missing` members, if any.
fn refuse_missing(missing: Vec<String>) -> Result<(), BackendError> {
    if missing.is_empty() {
        Ok(())
    } else {
        Err(super::missing_members(&missing))
    }
}

/// The first column of each row.
fn first_column(rows: Vec<Vec<String>>) -> impl Iterator<Item = String> {
    rows.into_iter().filter_map(|r| r.into_iter().next())
}

/// MySQL's member add, without a row source for a bound list: the ids that are members-to-be
/// are read back (one indexed lookup per chunk), the rest are missing; when none is, the new
/// pairs are inserted in multi-row inserts. Returns the missing ids.
async fn add_members_listed<C: Conn>(
    c: &C,
    mm: &Members,
    key: &Value,
    ids: &[String],
) -> Result<Vec<String>, BackendError> {
    let m = c.model();
    let mk = mm.member_key();
    let same = |a: &str, b: &str| {
        if mk.ty == crate::backend::FieldType::Integer {
            a.trim().parse::<i64>().ok() == b.trim().parse::<i64>().ok()
        } else if mk.ci {
            a.to_lowercase() == b.to_lowercase()
        } else {
            a == b
        }
    };
    let norm = |s: &str| {
        if mk.ty == crate::backend::FieldType::Integer {
            s.trim()
                .parse::<i64>()
                .map(|n| n.to_string())
                .unwrap_or_default()
        } else if mk.ci {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let mut found = std::collections::HashSet::new();
    for chunk in ids.chunks(model::MYSQL_CHUNK) {
        for row in c.strings(&m.existing_members(mm, chunk)).await? {
            if let Some(k) = row.into_iter().next() {
                found.insert(norm(&k));
            }
        }
    }
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !found.contains(&norm(id)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Ok(missing);
    }
    for chunk in ids.chunks(model::MYSQL_CHUNK) {
        let mut new: Vec<String> = chunk.to_vec();
        // A join table without a unique pair: leave out the pairs already there.
        if let Some(q) = m.joined_members(mm, key, chunk) {
            let there: Vec<String> = c
                .strings(&q)
                .await?
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
            new.retain(|id| !there.iter().any(|t| same(t, id)));
        }
        if !new.is_empty() {
            c.exec(&m.members_add(mm, key, &new, None)).await?;
        }
    }
    Ok(Vec::new())
}

impl Dialect {
    /// `INSERT … RETURNING` reads a generated key back (SQLite, PostgreSQL; MySQL has none).
    pub fn returning_inserts(self) -> bool {
        self != Dialect::Mysql
    }

    /// Data-modifying statements in `WITH` (PostgreSQL): a write and what depends on it in
    /// one statement.
    pub fn writable_ctes(self) -> bool {
        self == Dialect::Postgres
    }

    /// `UPDATE … RETURNING` is used to read the row back in the same statement.
    pub fn returning_updates(self) -> bool {
        self == Dialect::Postgres
    }

    /// The expression counting rows, as text or integer the driver reads.
    fn count_expr(self) -> &'static str {
        match self {
            Dialect::Sqlite | Dialect::Mysql => "count(*)",
            Dialect::Postgres => "count(*)::text",
        }
    }

    /// ` LIMIT … OFFSET …` for a page.
    fn limit_offset(self, q: &mut Sql, limit: u64, offset: u64) {
        let (limit, offset) = (
            i64::try_from(limit).unwrap_or(i64::MAX),
            i64::try_from(offset).unwrap_or(i64::MAX),
        );
        match self {
            // Integers the sidecar computed, never client text, written as literals: bound,
            // they make SQLite re-prepare the statement on every step (the limit can change
            // the plan), a full SQL parse per request.
            Dialect::Sqlite => {
                q.push(&format!(" LIMIT {limit} OFFSET {offset}"));
            }
            // Bound, so paging reuses one prepared statement.
            Dialect::Mysql => {
                q.push(" LIMIT ")
                    .param(self, Value::Int(limit))
                    .push(" OFFSET ")
                    .param(self, Value::Int(offset));
            }
            Dialect::Postgres => {
                q.push(" LIMIT ")
                    .param(self, Value::Int(limit))
                    .push("::bigint");
                q.push(" OFFSET ")
                    .param(self, Value::Int(offset))
                    .push("::bigint");
            }
        }
    }
}
