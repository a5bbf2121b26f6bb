//! SQL stores: statement building shared by every SQL dialect, and the dialects themselves.
//!
//! Everything a client sends reaches SQL as a bound parameter. Identifiers (table and column
//! names) come only from the mapping file, are checked by [`valid_ident`] at config load, and
//! are double-quoted by [`quote_ident`]. A dialect differs only in placeholders, case-folding
//! comparisons and pattern matching; PostgreSQL is another [`Dialect`], not another compiler.

#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::fmt::Write as _;

use super::{CmpOp, FieldType, Predicate, Sort, Value};

/// The SQL dialects the compiler speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.35+ (RETURNING, NULLS LAST).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A statement under construction: SQL text plus its bound parameters, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sql {
    /// The SQL text.
    pub text: String,
    /// Parameters, bound in order to the placeholders in `text`.
    pub params: Vec<Value>,
}

impl Sql {
    /// Appends SQL text (never client data).
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Binds a parameter and appends its placeholder.
    pub fn param(&mut self, d: Dialect, v: Value) -> &mut Self {
        self.params.push(v);
        let n = self.params.len();
        let _ = match d {
            Dialect::Sqlite => write!(self.text, "?{n}"),
            Dialect::Postgres => write!(self.text, "${n}"),
        };
        self
    }
}

/// Whether `id` is an acceptable identifier: one or two dot-separated parts (`schema.table`),
/// each `[A-Za-z_][A-Za-z0-9_$]*` and at most 63 bytes (PostgreSQL's limit).
pub fn valid_ident(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            let mut chars = p.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                && p.len() <= 63
        })
}

/// Double-quotes an identifier (each part of `schema.table`), doubling embedded quotes.
pub fn quote_ident(id: &str) -> String {
    id.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// A column as the compiler needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The quoted, table-qualified name (`"t"."login"`).
    pub qualified: String,
    /// Its type.
    pub ty: FieldType,
}

impl Column {
    fn is_text(&self) -> bool {
        matches!(self.ty, FieldType::Text { .. })
    }
}

/// What the predicate compiler needs to know about a table.
#[derive(Clone, Debug)]
pub struct Shape<'a> {
    /// The table's quoted name.
    pub table: &'a str,
    /// The quoted, table-qualified key column.
    pub key: &'a str,
    /// Whether the key is an integer (SCIM ids that are not integers then match nothing).
    pub int_key: bool,
    /// The fields, by index.
    pub columns: &'a [Column],
    /// Membership join table: (quoted table, quoted group column, quoted member column,
    /// integer member key).
    pub members: Option<(&'a str, &'a str, &'a str, bool)>,
}

/// A key parameter from a SCIM id: `None` when the id cannot be a key of this table (an
/// integer key and a non-numeric id), which matches no row.
pub fn key_value(id: &str, int_key: bool) -> Option<Value> {
    if int_key {
        id.parse::<i64>().ok().map(Value::Int)
    } else {
        Some(Value::Text(id.to_owned()))
    }
}

/// Appends the SQL condition for `p` to `sql`.
///
/// Negation is pushed down to the leaves, so SQL's three-valued logic never surfaces: `not
/// (title eq "x")` matches rows whose title is empty, as SCIM expects.
pub fn compile_predicate(d: Dialect, shape: &Shape<'_>, p: &Predicate, sql: &mut Sql) {
    compile(d, shape, p, false, sql);
}

fn compile(d: Dialect, shape: &Shape<'_>, p: &Predicate, neg: bool, sql: &mut Sql) {
    match p {
        Predicate::True => {
            sql.push(if neg { "1=0" } else { "1=1" });
        }
        Predicate::False => {
            sql.push(if neg { "1=1" } else { "1=0" });
        }
        Predicate::Not(inner) => compile(d, shape, inner, !neg, sql),
        Predicate::And(items) | Predicate::Or(items) => {
            let is_and = matches!(p, Predicate::And(_)) != neg;
            if items.is_empty() {
                sql.push(if is_and { "1=1" } else { "1=0" });
                return;
            }
            sql.push("(");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    sql.push(if is_and { " AND " } else { " OR " });
                }
                compile(d, shape, item, neg, sql);
            }
            sql.push(")");
        }
        Predicate::Present(f) => {
            let Some(col) = shape.columns.get(*f) else {
                sql.push(if neg { "1=1" } else { "1=0" });
                return;
            };
            let c = &col.qualified;
            let text = match (col.is_text(), neg) {
                (true, false) => format!("({c} IS NOT NULL AND {c} <> '')"),
                (true, true) => format!("({c} IS NULL OR {c} = '')"),
                (false, false) => format!("{c} IS NOT NULL"),
                (false, true) => format!("{c} IS NULL"),
            };
            sql.push(&text);
        }
        Predicate::KeyEq(id) => match key_value(id, shape.int_key) {
            Some(v) => {
                sql.push(shape.key)
                    .push(if neg { " <> " } else { " = " })
                    .param(d, v);
            }
            None => {
                sql.push(if neg { "1=1" } else { "1=0" });
            }
        },
        Predicate::HasMember(member) => {
            let Some((join, g, m, int_member)) = shape.members else {
                sql.push(if neg { "1=1" } else { "1=0" });
                return;
            };
            let value = match member {
                Some(id) => match key_value(id, int_member) {
                    Some(v) => Some(v),
                    None => {
                        sql.push(if neg { "1=1" } else { "1=0" });
                        return;
                    }
                },
                None => None,
            };
            sql.push(if neg {
                "NOT EXISTS (SELECT 1 FROM "
            } else {
                "EXISTS (SELECT 1 FROM "
            });
            sql.push(join)
                .push(" j WHERE j.")
                .push(g)
                .push(" = ")
                .push(shape.key);
            if let Some(v) = value {
                sql.push(" AND j.").push(m).push(" = ").param(d, v);
            }
            sql.push(")");
        }
        Predicate::Cmp {
            field,
            op,
            value,
            fold_case,
        } => {
            let Some(col) = shape.columns.get(*field) else {
                sql.push(if neg { "1=1" } else { "1=0" });
                return;
            };
            let c = col.qualified.as_str();
            let fold = *fold_case && col.is_text();
            match (op, neg) {
                // SCIM `ne`: a field without a value is not equal either.
                (CmpOp::Ne, false) => {
                    sql.push("(").push(c).push(" IS NULL OR NOT (");
                    comparison(d, c, CmpOp::Eq, value, fold, col.is_text(), sql);
                    sql.push("))");
                }
                (CmpOp::Ne, true) => comparison(d, c, CmpOp::Eq, value, fold, col.is_text(), sql),
                (op, false) => comparison(d, c, *op, value, fold, col.is_text(), sql),
                (op, true) => {
                    sql.push("(").push(c).push(" IS NULL OR NOT (");
                    comparison(d, c, *op, value, fold, col.is_text(), sql);
                    sql.push("))");
                }
            }
        }
    }
}

/// One positive comparison `c op value`.
fn comparison(
    d: Dialect,
    c: &str,
    op: CmpOp,
    value: &Value,
    fold: bool,
    text: bool,
    sql: &mut Sql,
) {
    let rel = match op {
        CmpOp::Eq | CmpOp::Ne => "=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Contains | CmpOp::StartsWith | CmpOp::EndsWith => {
            let Value::Text(s) = value else {
                sql.push("1=0");
                return;
            };
            let (pre, post) = match op {
                CmpOp::Contains => (true, true),
                CmpOp::StartsWith => (false, true),
                _ => (true, false),
            };
            match (d, fold) {
                // SQLite's LIKE ignores ASCII case; GLOB does not.
                (Dialect::Sqlite, true) => {
                    sql.push(c)
                        .push(" LIKE ")
                        .param(d, Value::Text(like_pattern(s, pre, post)));
                    sql.push(" ESCAPE '\\'");
                }
                (Dialect::Sqlite, false) => {
                    sql.push(c)
                        .push(" GLOB ")
                        .param(d, Value::Text(glob_pattern(s, pre, post)));
                }
                (Dialect::Postgres, fold) => {
                    sql.push(c).push(if fold { " ILIKE " } else { " LIKE " });
                    sql.param(d, Value::Text(like_pattern(s, pre, post)))
                        .push(" ESCAPE '\\'");
                }
            }
            return;
        }
    };
    match (d, fold) {
        (Dialect::Sqlite, true) => {
            sql.push(c)
                .push(" ")
                .push(rel)
                .push(" ")
                .param(d, value.clone())
                .push(" COLLATE NOCASE");
        }
        (Dialect::Sqlite, false) if text => {
            sql.push(c)
                .push(" ")
                .push(rel)
                .push(" ")
                .param(d, value.clone())
                .push(" COLLATE BINARY");
        }
        (Dialect::Postgres, true) => {
            sql.push("lower(")
                .push(c)
                .push(") ")
                .push(rel)
                .push(" lower(")
                .param(d, value.clone())
                .push(")");
        }
        _ => {
            sql.push(c)
                .push(" ")
                .push(rel)
                .push(" ")
                .param(d, value.clone());
        }
    }
}

/// `ORDER BY …` for a sort, with the key as the tie-breaker so pages are stable.
pub fn order_by(d: Dialect, shape: &Shape<'_>, sort: &Sort, sql: &mut Sql) {
    let dir = if sort.descending { "DESC" } else { "ASC" };
    sql.push(" ORDER BY ");
    if let Some(col) = sort.field.and_then(|f| shape.columns.get(f)) {
        let fold = sort.fold_case && col.is_text();
        match (d, fold) {
            (Dialect::Sqlite, true) => sql.push(&col.qualified).push(" COLLATE NOCASE"),
            (Dialect::Postgres, true) => sql.push("lower(").push(&col.qualified).push(")"),
            _ => sql.push(&col.qualified),
        };
        // RFC 7644 §3.4.2.3: resources without a value sort last.
        sql.push(" ").push(dir).push(" NULLS LAST, ");
    }
    sql.push(shape.key).push(" ").push(dir);
}

/// A LIKE pattern matching `s` literally, with `%` before and/or after.
fn like_pattern(s: &str, pre: bool, post: bool) -> String {
    let mut p = String::with_capacity(s.len() + 4);
    if pre {
        p.push('%');
    }
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    if post {
        p.push('%');
    }
    p
}

/// A GLOB pattern matching `s` literally, with `*` before and/or after.
fn glob_pattern(s: &str, pre: bool, post: bool) -> String {
    let mut p = String::with_capacity(s.len() + 4);
    if pre {
        p.push('*');
    }
    for ch in s.chars() {
        match ch {
            '*' => p.push_str("[*]"),
            '?' => p.push_str("[?]"),
            '[' => p.push_str("[[]"),
            other => p.push(other),
        }
    }
    if post {
        p.push('*');
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(columns: &[Column]) -> Shape<'_> {
        Shape {
            table: "\"accounts\"",
            key: "t.\"id\"",
            int_key: true,
            columns,
            members: Some(("\"account_roles\"", "\"role_id\"", "\"account_id\"", true)),
        }
    }

    fn cols() -> Vec<Column> {
        vec![
            Column {
                qualified: "t.\"login\"".into(),
                ty: FieldType::Text { max_len: None },
            },
            Column {
                qualified: "t.\"age\"".into(),
                ty: FieldType::Integer,
            },
        ]
    }

    fn cmp(field: usize, op: CmpOp, value: Value, fold_case: bool) -> Predicate {
        Predicate::Cmp {
            field,
            op,
            value,
            fold_case,
        }
    }

    /// Client values only ever appear as parameters; identifiers are quoted.
    #[test]
    fn values_are_bound() {
        let c = cols();
        let mut sql = Sql::default();
        let evil = "x' OR '1'='1";
        compile_predicate(
            Dialect::Sqlite,
            &shape(&c),
            &cmp(0, CmpOp::Eq, Value::Text(evil.into()), true),
            &mut sql,
        );
        assert_eq!(sql.text, "t.\"login\" = ?1 COLLATE NOCASE");
        assert_eq!(sql.params, vec![Value::Text(evil.into())]);
        let mut sql = Sql::default();
        compile_predicate(
            Dialect::Postgres,
            &shape(&c),
            &cmp(0, CmpOp::Eq, Value::Text(evil.into()), true),
            &mut sql,
        );
        assert_eq!(sql.text, "lower(t.\"login\") = lower($1)");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("app.users"), "\"app\".\"users\"");
        assert!(valid_ident("app.users") && valid_ident("_x1$"));
        assert!(
            !valid_ident("a;b") && !valid_ident("1a") && !valid_ident("a.b.c") && !valid_ident("")
        );
    }

    /// Negation is pushed to the leaves with SCIM's treatment of missing values.
    #[test]
    fn negation() {
        let c = cols();
        let p = Predicate::Not(Box::new(Predicate::And(vec![
            cmp(0, CmpOp::Eq, Value::Text("a".into()), false),
            Predicate::Present(1),
        ])));
        let mut sql = Sql::default();
        compile_predicate(Dialect::Sqlite, &shape(&c), &p, &mut sql);
        assert_eq!(
            sql.text,
            "((t.\"login\" IS NULL OR NOT (t.\"login\" = ?1 COLLATE BINARY)) OR t.\"age\" IS NULL)"
        );
        let mut sql = Sql::default();
        compile_predicate(
            Dialect::Sqlite,
            &shape(&c),
            &cmp(1, CmpOp::Ne, Value::Int(3), false),
            &mut sql,
        );
        assert_eq!(sql.text, "(t.\"age\" IS NULL OR NOT (t.\"age\" = ?1))");
    }

    /// Substring operators escape pattern characters of the value.
    #[test]
    fn patterns() {
        let c = cols();
        let mut sql = Sql::default();
        compile_predicate(
            Dialect::Sqlite,
            &shape(&c),
            &cmp(0, CmpOp::Contains, Value::Text("50%_a".into()), true),
            &mut sql,
        );
        assert_eq!(sql.text, "t.\"login\" LIKE ?1 ESCAPE '\\'");
        assert_eq!(sql.params, vec![Value::Text("%50\\%\\_a%".into())]);
        let mut sql = Sql::default();
        compile_predicate(
            Dialect::Sqlite,
            &shape(&c),
            &cmp(0, CmpOp::StartsWith, Value::Text("a*[".into()), false),
            &mut sql,
        );
        assert_eq!(sql.params, vec![Value::Text("a[*][[]*".into())]);
    }

    /// Membership tests are EXISTS subqueries; an id that cannot be a key matches nothing.
    #[test]
    fn membership_and_keys() {
        let c = cols();
        let mut sql = Sql::default();
        compile_predicate(
            Dialect::Sqlite,
            &shape(&c),
            &Predicate::HasMember(Some("7".into())),
            &mut sql,
        );
        assert_eq!(
            sql.text,
            "EXISTS (SELECT 1 FROM \"account_roles\" j WHERE j.\"role_id\" = t.\"id\" AND j.\"account_id\" = ?1)"
        );
        let mut sql = Sql::default();
        compile_predicate(
            Dialect::Sqlite,
            &shape(&c),
            &Predicate::KeyEq("abc".into()),
            &mut sql,
        );
        assert_eq!(sql.text, "1=0");
        let mut sql = Sql::default();
        order_by(
            Dialect::Sqlite,
            &shape(&c),
            &Sort {
                field: Some(0),
                fold_case: true,
                descending: true,
            },
            &mut sql,
        );
        assert_eq!(
            sql.text,
            " ORDER BY t.\"login\" COLLATE NOCASE DESC NULLS LAST, t.\"id\" DESC"
        );
    }
}
