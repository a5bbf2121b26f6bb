//! The sidecar's own state in an SQL database: one table (`scim_sidecar_attributes` in SQLite
//! and MySQL, `scim_sidecar.attributes` in PostgreSQL, created by `scim-sidecar migrate`) of
//! `(resource_type, resource_id, name, value)` rows, all text, keyed by the first three.
//!
//! Resource types of the same database read and write it as a child table of their own rows,
//! in their own transactions ([`super::config::rel_spec`]). This module is the
//! [`StateStore`] other stores use through [`crate::backend::state::Overlay`]; each driver
//! runs its statements ([`Exec`]).

use std::future::Future;

use async_trait::async_trait;

use super::{Dialect, Sql};
use crate::backend::state::{Cond, StateStore};
use crate::backend::{BackendError, FieldType, Value};

/// Runs statements on a driver's pool.
pub(crate) trait Exec: Send + Sync {
    /// Runs every statement in one transaction.
    fn write(&self, stmts: Vec<Sql>) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Runs a query; every column as text.
    fn read(&self, sql: Sql)
    -> impl Future<Output = Result<Vec<Vec<String>>, BackendError>> + Send;
    /// Runs a query answered from the primary key (a few rows, microseconds of work): a
    /// driver whose calls block may run it on the caller's thread rather than hand it to
    /// another. The default is [`Exec::read`].
    fn read_by_key(
        &self,
        sql: Sql,
    ) -> impl Future<Output = Result<Vec<Vec<String>>, BackendError>> + Send {
        self.read(sql)
    }
}

/// Lists up to this long are sent as one SQLite parameter per value.
const FEW: usize = 32;

/// The state table of one SQL database.
pub(crate) struct SqlStateStore<E> {
    /// How statements run.
    pub exec: E,
    /// The dialect.
    pub d: Dialect,
    /// The table, quoted.
    pub table: String,
    /// How to name it in messages.
    pub shown: String,
}

impl<E> SqlStateStore<E> {
    /// `WHERE resource_type = ? AND resource_id …` for one resource.
    fn of(&self, sql: &mut Sql, resource_type: &str, id: &str) {
        sql.push(" WHERE resource_type = ")
            .param(self.d, Value::Text(resource_type.to_owned()))
            .push(" AND resource_id = ")
            .param(self.d, Value::Text(id.to_owned()));
    }

    /// ` IN (…)` over text values: ` = ?` for one (a read of one resource, the common case),
    /// one `?` each for a few, else one parameter whatever their number (SQLite's
    /// `json_each`, which costs a temporary index of the list first; PostgreSQL's arrays).
    fn any_of(&self, sql: &mut Sql, values: &[String]) {
        if let [one] = values {
            sql.push(" = ").param(self.d, Value::Text(one.clone()));
            return;
        }
        let few = values.len() <= FEW;
        match self.d {
            Dialect::Sqlite if !few => {
                sql.push(" IN (SELECT value FROM json_each(")
                    .param(
                        self.d,
                        Value::Text(serde_json::Value::from(values.to_vec()).to_string()),
                    )
                    .push("))");
            }
            Dialect::Postgres => {
                sql.push(" = ANY(").param_array(values.to_vec()).push(")");
            }
            // One `?` per value (callers ask for a page's ids).
            Dialect::Mysql | Dialect::Sqlite => {
                sql.push(" IN (");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.param(self.d, Value::Text(v.clone()));
                }
                if values.is_empty() {
                    sql.push("NULL");
                }
                sql.push(")");
            }
        }
    }
}

#[async_trait]
impl<E: Exec> StateStore for SqlStateStore<E> {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn load(
        &self,
        resource_type: &str,
        ids: &[String],
        names: &[String],
    ) -> Result<Vec<(String, String, Value)>, BackendError> {
        let mut sql = Sql::default();
        sql.push("SELECT resource_id, name, value FROM ")
            .push(&self.table)
            .push(" WHERE resource_type = ")
            .param(self.d, Value::Text(resource_type.to_owned()))
            .push(" AND resource_id");
        self.any_of(&mut sql, ids);
        // A resource keeps a few values: read them all by the key's prefix and keep the
        // names asked for here, rather than make the database match a second list.
        Ok(self
            .exec
            .read_by_key(sql)
            .await?
            .into_iter()
            .filter_map(|mut r| {
                let value = r.pop()?;
                let name = r.pop()?;
                let id = r.pop()?;
                names
                    .contains(&name)
                    .then_some((id, name, Value::Text(value)))
            })
            .collect())
    }

    async fn save(
        &self,
        resource_type: &str,
        id: &str,
        values: &[(String, Value)],
    ) -> Result<(), BackendError> {
        let mut stmts = Vec::new();
        for (name, v) in values {
            let mut del = Sql::default();
            del.push("DELETE FROM ").push(&self.table);
            self.of(&mut del, resource_type, id);
            del.push(" AND name = ")
                .param(self.d, Value::Text(name.clone()));
            stmts.push(del);
            if v.is_null() {
                continue;
            }
            let mut ins = Sql::default();
            ins.push("INSERT INTO ")
                .push(&self.table)
                .push(" (resource_type, resource_id, name, value) VALUES (")
                .param(self.d, Value::Text(resource_type.to_owned()))
                .push(", ")
                .param(self.d, Value::Text(id.to_owned()))
                .push(", ")
                .param(self.d, Value::Text(name.clone()))
                .push(", ")
                .param(self.d, Value::Text(super::model::value_text(v)))
                .push(")");
            stmts.push(ins);
        }
        if stmts.is_empty() {
            return Ok(());
        }
        self.exec.write(stmts).await
    }

    async fn forget(&self, resource_type: &str, id: &str) -> Result<(), BackendError> {
        let mut sql = Sql::default();
        sql.push("DELETE FROM ").push(&self.table);
        self.of(&mut sql, resource_type, id);
        self.exec.write(vec![sql]).await
    }

    async fn owners(&self, resource_type: &str) -> Result<Vec<String>, BackendError> {
        let mut sql = Sql::default();
        sql.push("SELECT DISTINCT resource_id FROM ")
            .push(&self.table)
            .push(" WHERE resource_type = ")
            .param(self.d, Value::Text(resource_type.to_owned()));
        Ok(self
            .exec
            .read(sql)
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect())
    }

    async fn find(
        &self,
        resource_type: &str,
        name: &str,
        cond: Option<&Cond>,
    ) -> Result<Vec<String>, BackendError> {
        let mut sql = self.having("resource_id", resource_type, name);
        if let Some(c) = cond {
            sql.push(" AND ");
            self.compare(&mut sql, c)?;
        }
        Ok(self
            .exec
            .read(sql)
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect())
    }

    async fn any(&self, resource_type: &str, name: &str) -> Result<bool, BackendError> {
        // One probe of the `(resource_type, name, value)` index: as quick as a read by key.
        let mut sql = self.having("1", resource_type, name);
        sql.push(" LIMIT 1");
        Ok(!self.exec.read_by_key(sql).await?.is_empty())
    }
}

impl<E> SqlStateStore<E> {
    /// `SELECT <what>` of the rows of `resource_type` with a value kept for `name`.
    fn having(&self, what: &str, resource_type: &str, name: &str) -> Sql {
        let mut sql = Sql::default();
        sql.push("SELECT ")
            .push(what)
            .push(" FROM ")
            .push(&self.table)
            .push(" WHERE resource_type = ")
            .param(self.d, Value::Text(resource_type.to_owned()))
            .push(" AND name = ")
            .param(self.d, Value::Text(name.to_owned()))
            .push(" AND value IS NOT NULL AND value <> ''");
        sql
    }

    /// `value <op> ?` on the text column, as the predicate compiler compares text.
    fn compare(&self, sql: &mut Sql, c: &Cond) -> Result<(), BackendError> {
        let col = super::model::Col {
            name: "value".into(),
            raw: "value".into(),
            ty: FieldType::Text { max_len: None },
            cast: None,
            ci: false,
            charset: None,
            notnull: false,
            default_sql: None,
        };
        let value = Value::Text(super::model::value_text(&c.value));
        super::comparison(self.d, "value", &col, c.op, &value, c.fold_case, sql);
        Ok(())
    }
}
