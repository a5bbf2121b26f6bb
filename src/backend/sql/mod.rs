//! SQL stores: statement building shared by every SQL dialect, and the dialects themselves.
//!
//! Everything a client sends reaches SQL as a bound parameter. Identifiers (table and column
//! names) come only from the mapping file, are checked by [`valid_ident`] at config load and
//! against the live schema at start-up, and are quoted by [`Dialect::quote`] (double quotes;
//! backticks in MySQL). [`model`] compiles a mapped table against the live schema; this module
//! compiles filters and sort orders over it. A dialect differs only in placeholders, casts,
//! case folding and pattern matching: PostgreSQL and MySQL are other [`Dialect`]s, not other
//! compilers.
//!
//! PostgreSQL parameters are always sent as text and cast in SQL to the column's type
//! (`$1::text::bigint`), and values are read back as text: one encoding for integers,
//! booleans, enums, `citext`, timestamps and `uuid` alike. MySQL parameters are `?`, sent
//! typed by the binary protocol; a text column's collation decides its case folding there
//! (a `_ci` column folds by itself), and its character set what it can hold.

pub mod config;
pub mod hooks;
pub mod model;
#[cfg(feature = "mysql")]
pub mod mysql;
pub(crate) mod ops;
#[cfg(feature = "postgres")]
pub mod pg_pool;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub(crate) mod state;

use super::{CmpOp, FieldType, Predicate, Sort, Value};
use model::{Col, Field, Members, Model};

/// The SQL dialects the compiler speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.35+ (RETURNING, NULLS LAST, JSON1).
    Sqlite,
    /// PostgreSQL 12+.
    Postgres,
    /// MariaDB 10.3+ and MySQL 5.7+ (`?` placeholders, backticks, no `RETURNING`).
    Mysql,
}

impl Dialect {
    /// Quotes an identifier (each part of `schema.table`), doubling embedded quotes: double
    /// quotes, backticks in MySQL (whose double quotes are string literals by default).
    pub fn quote(self, id: &str) -> String {
        match self {
            Dialect::Mysql => id
                .split('.')
                .map(|p| format!("`{}`", p.replace('`', "``")))
                .collect::<Vec<_>>()
                .join("."),
            _ => quote_ident(id),
        }
    }

    /// The placeholder sigil; MySQL's `?` carries no number.
    fn sigil(self) -> &'static str {
        match self {
            Dialect::Sqlite | Dialect::Mysql => "?",
            Dialect::Postgres => "$",
        }
    }
}

/// A bound parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// A single value (PostgreSQL: sent as text, cast in the statement).
    Value(Value),
    /// A single value whose type the database infers from where the placeholder stands (a
    /// hook's `:name`): encoded as that type.
    Inferred(Value),
    /// A text array (PostgreSQL `= ANY($n)` and `unnest($n)`).
    TextArray(Vec<String>),
}

/// A statement under construction: SQL text plus its bound parameters, in order.
///
/// Every placeholder the builder writes is recorded (where its number sits in the text and
/// which parameter it binds), so that [`Sql::append`] can renumber the placeholders of another
/// statement from those records: never by searching the text, where a quoted identifier may
/// contain `$1` or `?`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sql {
    text: String,
    params: Vec<Param>,
    /// The byte range of each placeholder's number in `text`, in order.
    marks: Vec<std::ops::Range<usize>>,
}

impl Sql {
    /// The SQL text, placeholders included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parameters, bound in order to the placeholders.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Appends SQL text (never client data).
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Binds a parameter and appends its placeholder (`?N`, `?` in MySQL, or `$N::text` in
    /// PostgreSQL).
    pub fn param(&mut self, d: Dialect, v: Value) -> &mut Self {
        self.params.push(Param::Value(v));
        self.placeholder(d);
        if d == Dialect::Postgres {
            self.text.push_str("::text");
        }
        self
    }

    /// Binds a value whose type the database infers, and appends `?N` / `$N` / `?` (no cast).
    pub fn param_inferred(&mut self, d: Dialect, v: Value) -> &mut Self {
        self.params.push(Param::Inferred(v));
        self.placeholder(d);
        self
    }

    /// Binds a text array (PostgreSQL) and appends `$N::text[]`.
    pub fn param_array(&mut self, values: Vec<String>) -> &mut Self {
        self.params.push(Param::TextArray(values));
        self.placeholder(Dialect::Postgres);
        self.text.push_str("::text[]");
        self
    }

    /// Writes the dialect's sigil and the number of the last parameter, recording where the
    /// number is. MySQL's placeholders are positional, unnumbered: nothing to renumber.
    fn placeholder(&mut self, d: Dialect) {
        self.text.push_str(d.sigil());
        if d == Dialect::Mysql {
            return;
        }
        let start = self.text.len();
        push_number(&mut self.text, self.params.len());
        self.marks.push(start..self.text.len());
    }

    /// Appends another statement's text and parameters, its placeholders renumbered after
    /// this statement's own (MySQL's `?` have no numbers: order alone binds them).
    pub fn append(&mut self, other: &Sql) {
        self.append_text(other);
        self.params.extend(other.params.iter().cloned());
    }

    /// [`Sql::append`] of a statement built only to be appended: its parameters are moved,
    /// not copied.
    pub fn append_owned(&mut self, other: Sql) {
        self.append_text(&other);
        self.params.extend(other.params);
    }

    /// The text half of [`Sql::append`], placeholders renumbered from `params.len() + 1`.
    fn append_text(&mut self, other: &Sql) {
        let offset = self.params.len();
        let mut last = 0;
        for (i, mark) in other.marks.iter().enumerate() {
            self.text.push_str(&other.text[last..mark.start]);
            let start = self.text.len();
            push_number(&mut self.text, offset + i + 1);
            self.marks.push(start..self.text.len());
            last = mark.end;
        }
        self.text.push_str(&other.text[last..]);
    }
}

/// Appends `n` in decimal (itoa: a statement has dozens of placeholders, and `write!`'s
/// formatting machinery cost more than the rest of writing them).
fn push_number(text: &mut String, n: usize) {
    text.push_str(itoa::Buffer::new().format(n));
}

/// Where a store writes down its statements while `explain` runs a request
/// ([`crate::explain`]): taken when a unit of work starts, and carried to the thread that
/// runs it.
#[derive(Clone)]
pub(crate) struct Tap {
    recording: std::sync::Arc<crate::explain::Recording>,
    store: std::sync::Arc<str>,
}

impl Tap {
    /// The tap of the current request, when `explain` runs it.
    pub(crate) fn current(store: &std::sync::Arc<str>) -> Option<Tap> {
        crate::explain::current().map(|recording| Tap {
            recording,
            store: store.clone(),
        })
    }

    /// Writes down a statement and its values.
    pub(crate) fn sql(&self, sql: &Sql) {
        let params = sql
            .params()
            .iter()
            .map(|p| match p {
                Param::Value(v) | Param::Inferred(v) => crate::explain::literal(v),
                Param::TextArray(a) => format!(
                    "ARRAY[{}]",
                    a.iter()
                        .map(|v| crate::explain::literal(&Value::Text(v.clone())))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect();
        self.recording.record(&self.store, sql.text(), params);
    }

    /// Writes down a statement without values (`BEGIN`, `ROLLBACK`).
    pub(crate) fn text(&self, text: &str) {
        self.recording.record(&self.store, text, Vec::new());
    }
}

/// A statement cut to one line of reasonable length, for messages.
pub(crate) fn shorten(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
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

/// Double-quotes an identifier (each part of `schema.table`), doubling embedded quotes; see
/// [`Dialect::quote`] for MySQL's backticks.
pub fn quote_ident(id: &str) -> String {
    id.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
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

/// Ids that can be keys of `key`'s type, and those that cannot (which exist nowhere).
pub(crate) fn split_ids(key: &Col, ids: &[String]) -> (Vec<String>, Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .partition(|id| key.ty != FieldType::Integer || id.parse::<i64>().is_ok())
}

/// The field whose column a store's message mentions (a CHECK constraint's expression or
/// name: `status IN ('A','D')`, `accounts_status_check`), the longest match winning, so
/// `display_name` is found before `name`.
pub(crate) fn field_mentioned(message: &str, columns: &[String]) -> Option<usize> {
    let text = message.to_ascii_lowercase();
    let bounded = |at: usize, len: usize| {
        let before = text[..at].chars().next_back();
        let after = text[at + len..].chars().next();
        let sep = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
        sep(before) && sep(after)
    };
    columns
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let c = c.to_ascii_lowercase();
            !c.is_empty() && text.match_indices(&c).any(|(at, _)| bounded(at, c.len()))
        })
        .max_by_key(|(_, c)| c.len())
        .map(|(i, _)| i)
}

/// A value the application's database refused, in the product's words; the database's own
/// message (which may quote the app's schema) goes to the log, not to the client.
pub(crate) fn refused(
    field: Option<usize>,
    why: &str,
    store_message: &str,
) -> crate::backend::BackendError {
    tracing::info!(store_message, "the database refused a value: {why}");
    crate::backend::BackendError::Rejected {
        field,
        detail: why.to_owned(),
    }
}

/// The 400 for member ids that do not exist.
pub(crate) fn missing_members(missing: &[String]) -> crate::backend::BackendError {
    crate::backend::missing_members(missing)
}

/// A random (version 4) UUID, for text keys nothing else generates.
pub(crate) fn uuid_v4() -> Result<String, crate::backend::BackendError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| {
        crate::backend::BackendError::Internal("no randomness for a new key".into())
    })?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Appends the SQL condition for `p` over the model's rows (alias `t`) to `sql`.
///
/// Negation is pushed down to the leaves, so SQL's three-valued logic never surfaces: `not
/// (title eq "x")` matches rows whose title is empty, as SCIM expects. Conditions on values
/// kept in other tables are `EXISTS` subqueries, so the store can use its indexes.
pub fn compile_predicate(m: &Model, p: &Predicate, sql: &mut Sql) {
    compile(m, p, false, sql);
}

fn constant(truth: bool, sql: &mut Sql) {
    sql.push(if truth { "1=1" } else { "1=0" });
}

fn compile(m: &Model, p: &Predicate, neg: bool, sql: &mut Sql) {
    let d = m.d;
    match p {
        Predicate::True => constant(!neg, sql),
        Predicate::False => constant(neg, sql),
        Predicate::Not(inner) => compile(m, inner, !neg, sql),
        Predicate::And(items) | Predicate::Or(items) => {
            let is_and = matches!(p, Predicate::And(_)) != neg;
            if items.is_empty() {
                constant(is_and, sql);
                return;
            }
            sql.push("(");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    sql.push(if is_and { " AND " } else { " OR " });
                }
                compile(m, item, neg, sql);
            }
            sql.push(")");
        }
        Predicate::Present(f) => match m.fields.get(*f) {
            None => constant(neg, sql),
            Some(Field::Column(c)) => {
                let e = format!("t.{}", c.name);
                // MySQL's zero date ('0000-00-00') reads as no value, so it is not present.
                let zero_date = d == Dialect::Mysql && c.ty == FieldType::Timestamp;
                sql.push(&match (c.ty.is_text(), neg) {
                    (true, false) => format!("({e} IS NOT NULL AND {e}::text <> '')")
                        .replace("::text", text_cast(d)),
                    (true, true) => {
                        format!("({e} IS NULL OR {e}::text = '')").replace("::text", text_cast(d))
                    }
                    (false, false) if zero_date => {
                        format!("({e} IS NOT NULL AND {e} > '0000-00-00')")
                    }
                    (false, true) if zero_date => format!("({e} IS NULL OR {e} <= '0000-00-00')"),
                    (false, false) => format!("{e} IS NOT NULL"),
                    (false, true) => format!("{e} IS NULL"),
                });
            }
            Some(Field::Child(ch)) => {
                child_exists(m, ch, neg, sql, |sql| {
                    let e = format!("c.{}", ch.col.name);
                    sql.push(&e).push(" IS NOT NULL");
                    if ch.col.ty.is_text() {
                        sql.push(" AND ").push(&e).push(text_cast(d)).push(" <> ''");
                    }
                });
            }
        },
        Predicate::KeyEq(id) => match m.key_value(id) {
            Some(v) => {
                sql.push("t.")
                    .push(&m.key.name)
                    .push(if neg { " <> " } else { " = " });
                m.key.param(d, sql, v);
            }
            None => constant(neg, sql),
        },
        Predicate::KeyIn(ids) => {
            let (valid, _) = split_ids(&m.key, ids);
            if valid.is_empty() {
                constant(neg, sql);
                return;
            }
            sql.push(if neg { "NOT (t." } else { "(t." })
                .push(&m.key.name);
            m.push_in(sql, &m.key, valid);
            sql.push(")");
        }
        Predicate::HasMember(member) => {
            let Some(members) = &m.members else {
                constant(neg, sql);
                return;
            };
            let value = match member {
                Some(id) => match model_key_value(members.member_key(), id) {
                    Some(v) => Some(v),
                    None => {
                        constant(neg, sql);
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
            match members {
                Members::Join {
                    table,
                    group,
                    member,
                    ..
                } => {
                    sql.push(table)
                        .push(" j WHERE j.")
                        .push(&group.name)
                        .push(" = t.")
                        .push(&m.key.name);
                    if let Some(v) = value {
                        sql.push(" AND j.").push(&member.name).push(" = ");
                        member.param(d, sql, v);
                    }
                }
                Members::Column {
                    member_table,
                    member_key,
                    column,
                    member_filter,
                } => {
                    sql.push(member_table)
                        .push(" j WHERE j.")
                        .push(&column.name)
                        .push(" = t.")
                        .push(&m.key.name);
                    if let Some(v) = value {
                        sql.push(" AND j.").push(&member_key.name).push(" = ");
                        member_key.param(d, sql, v);
                    }
                    m.push_fixed(sql, "j", member_filter);
                }
            }
            sql.push(")");
        }
        Predicate::Cmp {
            field,
            op,
            value,
            fold_case,
        } => match m.fields.get(*field) {
            None => constant(neg, sql),
            Some(Field::Column(c)) => {
                let e = format!("t.{}", c.name);
                let fold = *fold_case && c.ty.is_text();
                match (op, neg) {
                    // SCIM `ne`: a field without a value is not equal either.
                    (CmpOp::Ne, false) => {
                        sql.push("(").push(&e).push(" IS NULL OR NOT (");
                        comparison(d, &e, c, CmpOp::Eq, value, fold, sql);
                        sql.push("))");
                    }
                    (CmpOp::Ne, true) => comparison(d, &e, c, CmpOp::Eq, value, fold, sql),
                    (op, false) => comparison(d, &e, c, *op, value, fold, sql),
                    (op, true) => {
                        sql.push("(").push(&e).push(" IS NULL OR NOT (");
                        comparison(d, &e, c, *op, value, fold, sql);
                        sql.push("))");
                    }
                }
            }
            Some(Field::Child(ch)) => {
                // One child row per resource: "no row with an equal value" is SCIM's `ne`.
                let (op, neg) = if *op == CmpOp::Ne {
                    (CmpOp::Eq, !neg)
                } else {
                    (*op, neg)
                };
                let fold = *fold_case && ch.col.ty.is_text();
                child_exists(m, ch, neg, sql, |sql| {
                    comparison(
                        d,
                        &format!("c.{}", ch.col.name),
                        &ch.col,
                        op,
                        value,
                        fold,
                        sql,
                    );
                });
            }
        },
    }
}

fn text_cast(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite | Dialect::Mysql => "",
        Dialect::Postgres => "::text",
    }
}

/// Whether a column of MySQL character set `charset` can hold `s`: `latin1` (MySQL's is
/// Windows-1252), `ascii`, and `utf8`/`utf8mb3` (no character beyond the Basic Multilingual
/// Plane: no emoji) cannot hold everything; `utf8mb4` and binary strings can. Other
/// character sets are left to the server, which refuses what they cannot hold (strict mode).
pub fn charset_holds(charset: &str, s: &str) -> bool {
    // The 27 characters Windows-1252 has in 0x80–0x9F, and the five code points MySQL's
    // latin1 keeps as themselves there.
    const CP1252: &str = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ\u{81}\u{8d}\u{8f}\u{90}\u{9d}";
    match charset.to_ascii_lowercase().as_str() {
        "latin1" => s.chars().all(|c| {
            (c as u32) < 0x80 || (0xa0..=0xff).contains(&(c as u32)) || CP1252.contains(c)
        }),
        "ascii" => s.is_ascii(),
        "utf8" | "utf8mb3" => s.chars().all(|c| (c as u32) <= 0xffff),
        _ => true,
    }
}

/// Whether column `c` can hold `v` (MySQL: its character set; other dialects hold any text).
pub(crate) fn column_holds(d: Dialect, c: &Col, v: &Value) -> bool {
    match (d, &c.charset, v) {
        (Dialect::Mysql, Some(cs), Value::Text(s)) => charset_holds(cs, s),
        _ => true,
    }
}

/// A key parameter for a member id, by the member key column's type.
fn model_key_value(key: &Col, id: &str) -> Option<Value> {
    key_value(id, key.ty == FieldType::Integer)
}

/// `t.key [NOT] IN (SELECT link FROM child c WHERE selector AND <cond>)`: an IN-subquery
/// rather than a correlated EXISTS, so SQLite (like PostgreSQL) can drive it from an index on
/// the child table instead of probing once per parent row.
fn child_exists(
    m: &Model,
    ch: &model::Child,
    neg: bool,
    sql: &mut Sql,
    cond: impl FnOnce(&mut Sql),
) {
    sql.push("t.").push(&m.key.name).push(if neg {
        " NOT IN (SELECT "
    } else {
        " IN (SELECT "
    });
    sql.push(&m.link_as_key(ch, "c"))
        .push(" FROM ")
        .push(&ch.table)
        .push(" c WHERE c.")
        .push(&ch.link.name);
    sql.push(" IS NOT NULL");
    m.push_fixed(sql, "c", &ch.select);
    sql.push(" AND ");
    cond(sql);
    sql.push(")");
}

/// One positive comparison `e op value`, `e` being column `c`.
pub(crate) fn comparison(
    d: Dialect,
    e: &str,
    c: &Col,
    op: CmpOp,
    value: &Value,
    fold: bool,
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
                    sql.push(e)
                        .push(" LIKE ")
                        .param(d, Value::Text(like_pattern(s, pre, post)));
                    sql.push(" ESCAPE '\\'");
                }
                (Dialect::Sqlite, false) => {
                    sql.push(e)
                        .push(" GLOB ")
                        .param(d, Value::Text(glob_pattern(s, pre, post)));
                }
                (Dialect::Postgres, fold) => {
                    sql.push(e)
                        .push("::text")
                        .push(if fold { " ILIKE " } else { " LIKE " });
                    sql.param(d, Value::Text(like_pattern(s, pre, post)))
                        .push(" ESCAPE '\\'");
                }
                // A `_ci` collation folds by itself; otherwise both sides are lowered. An exact
                // match on a `_ci` column compares under the character set's binary collation.
                (Dialect::Mysql, fold) => {
                    let pattern = Value::Text(like_pattern(s, pre, post));
                    match (fold, c.ci) {
                        (true, false) => {
                            sql.push("LOWER(").push(e).push(") LIKE LOWER(");
                            sql.param(d, pattern).push(")");
                        }
                        (false, true) => {
                            sql.push(e).push(&binary_collation(c)).push(" LIKE ");
                            sql.param(d, pattern);
                        }
                        _ => {
                            sql.push(e).push(" LIKE ");
                            sql.param(d, pattern);
                        }
                    }
                    // In MySQL's string literals a backslash escapes: '\\' is one backslash.
                    sql.push(" ESCAPE '\\\\'");
                }
            }
            return;
        }
    };
    // A value the column's character set cannot hold equals no stored value (and MySQL
    // would refuse to compare them at all: "illegal mix of collations").
    if !column_holds(d, c, value) {
        sql.push("1=0");
        return;
    }
    match (d, fold) {
        // Explicit in both directions: the column may be declared NOCASE or not.
        (Dialect::Sqlite, true) => {
            sql.push(e)
                .push(" ")
                .push(rel)
                .push(" ")
                .param(d, value.clone())
                .push(" COLLATE NOCASE");
        }
        (Dialect::Sqlite, false) if c.ty.is_text() => {
            sql.push(e)
                .push(" ")
                .push(rel)
                .push(" ")
                .param(d, value.clone())
                .push(" COLLATE BINARY");
        }
        // citext compares case-insensitively by itself (and its index is on the column).
        (Dialect::Postgres, true) if c.ci => {
            sql.push(e).push(" ").push(rel).push(" ");
            c.param(d, sql, value.clone());
        }
        // A `_ci` collation compares case-insensitively by itself, and its index serves it.
        (Dialect::Mysql, true) if c.ci => {
            sql.push(e).push(" ").push(rel).push(" ");
            c.param(d, sql, value.clone());
        }
        (Dialect::Mysql, true) => {
            sql.push("LOWER(")
                .push(e)
                .push(") ")
                .push(rel)
                .push(" LOWER(")
                .param(d, value.clone())
                .push(")");
        }
        // Exact on a `_ci` column: the binary collation decides; for equality the column's
        // own comparison goes first, so its index narrows the rows.
        (Dialect::Mysql, false) if c.ci && c.ty.is_text() => {
            if op == CmpOp::Eq || op == CmpOp::Ne {
                sql.push("(").push(e).push(" = ");
                c.param(d, sql, value.clone());
                sql.push(" AND ");
            }
            sql.push(e)
                .push(&binary_collation(c))
                .push(" ")
                .push(rel)
                .push(" ");
            c.param(d, sql, value.clone());
            if op == CmpOp::Eq || op == CmpOp::Ne {
                sql.push(")");
            }
        }
        (Dialect::Postgres, true) => {
            // An enum has no lower(): compare its label as text.
            let cast = if matches!(c.ty, FieldType::Enum(_)) {
                "::text"
            } else {
                ""
            };
            sql.push("lower(")
                .push(e)
                .push(cast)
                .push(") ")
                .push(rel)
                .push(" lower(")
                .param(d, value.clone())
                .push(")");
        }
        _ => {
            sql.push(e).push(" ").push(rel).push(" ");
            c.param(d, sql, value.clone());
        }
    }
}

/// `ORDER BY …` for a sort, with the key as the tie-breaker so pages are stable.
pub fn order_by(m: &Model, sort: &Sort, sql: &mut Sql) {
    let d = m.d;
    let dir = if sort.descending { "DESC" } else { "ASC" };
    sql.push(" ORDER BY ");
    if let Some(f) = sort.field.and_then(|f| m.fields.get(f)) {
        // The value to sort by: a column of the row, or a child row's value.
        let (mut expr, c) = match f {
            Field::Column(c) => {
                let mut e = Sql::default();
                e.push(&format!("t.{}", c.name));
                (e, c)
            }
            Field::Child(ch) => {
                let mut sub = Sql::default();
                sub.push("(SELECT c.")
                    .push(&ch.col.name)
                    .push(" FROM ")
                    .push(&ch.table)
                    .push(" c WHERE ");
                sub.push(&m.link_cond(ch, "c", "t"));
                m.push_fixed(&mut sub, "c", &ch.select);
                sub.push(" LIMIT 1)");
                (sub, &ch.col)
            }
        };
        if !sort.ranks.is_empty() {
            // A value map: rank the stored codes in the order of their SCIM values.
            let mut case = Sql::default();
            case.push("CASE");
            for (i, v) in sort.ranks.iter().enumerate() {
                case.push(" WHEN ");
                case.append(&expr);
                case.push(" = ");
                c.param(d, &mut case, v.clone());
                case.push(&format!(" THEN {i}"));
            }
            case.push(" WHEN ");
            case.append(&expr);
            case.push(&format!(" IS NOT NULL THEN {} END", sort.ranks.len()));
            expr = case;
        } else if sort.fold_case && c.ty.is_text() {
            match d {
                Dialect::Sqlite => {
                    expr.push(" COLLATE NOCASE");
                }
                Dialect::Postgres if !c.ci => {
                    let mut lower = Sql::default();
                    lower.push("lower(");
                    lower.append(&expr);
                    // An enum has no lower(): its label as text.
                    if matches!(c.ty, FieldType::Enum(_)) {
                        lower.push("::text");
                    }
                    lower.push(")");
                    expr = lower;
                }
                Dialect::Postgres => {}
                Dialect::Mysql if !c.ci => {
                    let mut lower = Sql::default();
                    lower.push("LOWER(");
                    lower.append(&expr);
                    lower.push(")");
                    expr = lower;
                }
                Dialect::Mysql => {}
            }
        }
        // RFC 7644 §3.4.2.3: resources without a value sort last. MySQL has no NULLS LAST:
        // sorting by `IS NULL` first does it.
        if d == Dialect::Mysql {
            sql.append(&expr);
            sql.push(" IS NULL, ");
            sql.append(&expr);
            sql.push(" ").push(dir).push(", ");
        } else {
            sql.append(&expr);
            sql.push(" ").push(dir).push(" NULLS LAST, ");
        }
    }
    sql.push("t.").push(&m.key.name).push(" ").push(dir);
}

/// ` COLLATE <charset>_bin`: exact comparison of a MySQL text column.
fn binary_collation(c: &Col) -> String {
    format!(" COLLATE {}_bin", c.charset.as_deref().unwrap_or("utf8mb4"))
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
    use super::config::{ChildSpec, FieldSpec, MembersSpec, RelSpec, Source};
    use super::model::{Catalog, ColumnInfo, TableInfo, UniqueInfo};
    use super::*;

    fn col(name: &str, ty: FieldType, pk: bool) -> ColumnInfo {
        ColumnInfo {
            default_sql: None,
            name: name.into(),
            ty: ty.clone(),
            cast: match ty {
                FieldType::Integer => Some("bigint".into()),
                _ => None,
            },
            notnull: pk,
            has_default: false,
            pk,
            generated: pk,
            ci: false,
            charset: None,
        }
    }

    fn catalog() -> Catalog {
        let text = FieldType::Text { max_len: None };
        let accounts = TableInfo {
            columns: vec![
                col("id", FieldType::Integer, true),
                col("login", text.clone(), false),
                col("age", FieldType::Integer, false),
            ],
            uniques: vec![UniqueInfo {
                columns: vec![None],
                fold: true,
                lower_of: Some("login".into()),
                partial: false,
                predicate: None,
            }],
            indexed: vec![vec!["id".into()]],
            referenced_by: vec![],
        };
        let emails = TableInfo {
            columns: vec![
                col("user_id", FieldType::Integer, false),
                col("address", text.clone(), false),
                col("kind", text, false),
            ],
            uniques: vec![],
            indexed: vec![vec!["user_id".into()]],
            referenced_by: vec![],
        };
        let join = TableInfo {
            columns: vec![
                col("role_id", FieldType::Integer, true),
                col("account_id", FieldType::Integer, true),
            ],
            uniques: vec![],
            indexed: vec![vec!["role_id".into()]],
            referenced_by: vec![],
        };
        Catalog {
            tables: [
                ("accounts".to_string(), Some(accounts)),
                ("emails".to_string(), Some(emails)),
                ("account_roles".to_string(), Some(join)),
            ]
            .into_iter()
            .collect(),
            all: vec!["accounts".into(), "emails".into(), "account_roles".into()],
            store: "db".into(),
            kept_table: "scim_sidecar_attributes".into(),
        }
    }

    fn model(d: Dialect) -> Model {
        let spec = RelSpec {
            table: "accounts".into(),
            key: "id".into(),
            filter: vec![],
            fields: vec![
                FieldSpec {
                    name: "userName".into(),
                    source: Source::Column("login".into()),
                    unique: true,
                    fold_case: true,
                    lowered_copy_of: None,
                },
                FieldSpec {
                    name: "age".into(),
                    source: Source::Column("age".into()),
                    unique: false,
                    fold_case: false,
                    lowered_copy_of: None,
                },
                FieldSpec {
                    name: "email".into(),
                    source: Source::Child(ChildSpec {
                        table: "emails".into(),
                        link: "user_id".into(),
                        column: "address".into(),
                        select: vec![("kind".into(), Value::Text("work".into()))],
                        set: vec![],
                    }),
                    unique: false,
                    fold_case: true,
                    lowered_copy_of: None,
                },
            ],
            constants: vec![],
            members: Some(MembersSpec::Join {
                table: "account_roles".into(),
                group_column: "role_id".into(),
                member_column: "account_id".into(),
                member_table: "accounts".into(),
                member_key: "id".into(),
                member_filter: vec![],
            }),
            member_of: vec![],
            max_members: None,
            tombstone: None,
            member_tombstone: None,
            cascade: vec![],
            hard_delete: true,
            hooks: vec![],
        };
        match Model::build(d, &spec, &catalog()) {
            Ok((m, _, _)) => m,
            Err(p) => panic!("{p:?}"),
        }
    }

    fn cmp(field: usize, op: CmpOp, value: Value, fold_case: bool) -> Predicate {
        Predicate::Cmp {
            field,
            op,
            value,
            fold_case,
        }
    }

    fn values(sql: &Sql) -> Vec<Value> {
        sql.params
            .iter()
            .filter_map(|p| match p {
                Param::Value(v) | Param::Inferred(v) => Some(v.clone()),
                Param::TextArray(_) => None,
            })
            .collect()
    }

    /// Client values only ever appear as parameters; identifiers are quoted; PostgreSQL
    /// parameters are text cast to the column's type.
    #[test]
    fn values_are_bound() {
        let evil = "x' OR '1'='1";
        let mut sql = Sql::default();
        compile_predicate(
            &model(Dialect::Sqlite),
            &cmp(0, CmpOp::Eq, Value::Text(evil.into()), true),
            &mut sql,
        );
        assert_eq!(sql.text, "t.\"login\" = ?1 COLLATE NOCASE");
        assert_eq!(values(&sql), vec![Value::Text(evil.into())]);
        let mut sql = Sql::default();
        compile_predicate(
            &model(Dialect::Postgres),
            &cmp(0, CmpOp::Eq, Value::Text(evil.into()), true),
            &mut sql,
        );
        assert_eq!(sql.text, "lower(t.\"login\") = lower($1::text)");
        let mut sql = Sql::default();
        compile_predicate(
            &model(Dialect::Postgres),
            &cmp(1, CmpOp::Gt, Value::Int(3), false),
            &mut sql,
        );
        assert_eq!(sql.text, "t.\"age\" > $1::text::bigint");
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
        let m = model(Dialect::Sqlite);
        let p = Predicate::Not(Box::new(Predicate::And(vec![
            cmp(0, CmpOp::Eq, Value::Text("a".into()), false),
            Predicate::Present(1),
        ])));
        let mut sql = Sql::default();
        compile_predicate(&m, &p, &mut sql);
        assert_eq!(
            sql.text,
            "((t.\"login\" IS NULL OR NOT (t.\"login\" = ?1 COLLATE BINARY)) OR t.\"age\" IS NULL)"
        );
        let mut sql = Sql::default();
        compile_predicate(&m, &cmp(1, CmpOp::Ne, Value::Int(3), false), &mut sql);
        assert_eq!(sql.text, "(t.\"age\" IS NULL OR NOT (t.\"age\" = ?1))");
    }

    /// Values kept in child tables are filtered with EXISTS, `ne` as NOT EXISTS.
    #[test]
    fn child_fields() {
        let m = model(Dialect::Postgres);
        let mut sql = Sql::default();
        compile_predicate(
            &m,
            &cmp(2, CmpOp::Eq, Value::Text("a@x".into()), true),
            &mut sql,
        );
        assert_eq!(
            sql.text,
            "t.\"id\" IN (SELECT c.\"user_id\" FROM \"emails\" c WHERE c.\"user_id\" IS NOT NULL AND c.\"kind\" = $1::text AND lower(c.\"address\") = lower($2::text))"
        );
        let mut sql = Sql::default();
        compile_predicate(
            &m,
            &cmp(2, CmpOp::Ne, Value::Text("a@x".into()), true),
            &mut sql,
        );
        assert!(sql.text.starts_with("t.\"id\" NOT IN"), "{}", sql.text);
    }

    /// Substring operators escape pattern characters of the value.
    #[test]
    fn patterns() {
        let m = model(Dialect::Sqlite);
        let mut sql = Sql::default();
        compile_predicate(
            &m,
            &cmp(0, CmpOp::Contains, Value::Text("50%_a".into()), true),
            &mut sql,
        );
        assert_eq!(sql.text, "t.\"login\" LIKE ?1 ESCAPE '\\'");
        assert_eq!(values(&sql), vec![Value::Text("%50\\%\\_a%".into())]);
        let mut sql = Sql::default();
        compile_predicate(
            &m,
            &cmp(0, CmpOp::StartsWith, Value::Text("a*[".into()), false),
            &mut sql,
        );
        assert_eq!(values(&sql), vec![Value::Text("a[*][[]*".into())]);
    }

    /// Membership tests are EXISTS subqueries; an id that cannot be a key matches nothing;
    /// sorting ends with the key.
    #[test]
    fn membership_and_keys() {
        let m = model(Dialect::Sqlite);
        let mut sql = Sql::default();
        compile_predicate(&m, &Predicate::HasMember(Some("7".into())), &mut sql);
        assert_eq!(
            sql.text,
            "EXISTS (SELECT 1 FROM \"account_roles\" j WHERE j.\"role_id\" = t.\"id\" AND j.\"account_id\" = ?1)"
        );
        let mut sql = Sql::default();
        compile_predicate(&m, &Predicate::KeyEq("abc".into()), &mut sql);
        assert_eq!(sql.text, "1=0");
        let mut sql = Sql::default();
        order_by(
            &m,
            &Sort {
                field: Some(0),
                fold_case: true,
                descending: true,
                ranks: Vec::new(),
            },
            &mut sql,
        );
        assert_eq!(
            sql.text,
            " ORDER BY t.\"login\" COLLATE NOCASE DESC NULLS LAST, t.\"id\" DESC"
        );
    }

    /// MySQL: `?` placeholders carry no number, so appending only concatenates; identifiers
    /// are backticked; a `_ci` column compares as it is (folding once), a binary-collated one
    /// is lowered, an exact comparison on a `_ci` column adds its binary collation, and a
    /// value its character set cannot hold matches nothing.
    #[test]
    fn mysql_dialect() {
        let d = Dialect::Mysql;
        let mut a = Sql::default();
        a.push("SELECT ").param(d, Value::Int(1));
        let mut b = Sql::default();
        b.push(" FROM `t?1` WHERE x = ").param(d, Value::Int(2));
        a.append(&b);
        assert_eq!(a.text, "SELECT ? FROM `t?1` WHERE x = ?");
        assert_eq!(a.params.len(), 2);
        assert_eq!(d.quote("app.wp_users"), "`app`.`wp_users`");
        assert_eq!(d.quote("a`b"), "`a``b`");
        let mut c = model::Col {
            name: "`login`".into(),
            raw: "login".into(),
            ty: FieldType::Text { max_len: Some(60) },
            cast: None,
            ci: true,
            charset: Some("latin1".into()),
            notnull: true,
            default_sql: None,
        };
        let v = Value::Text("Ann".into());
        let mut sql = Sql::default();
        comparison(d, "t.`login`", &c, CmpOp::Eq, &v, true, &mut sql);
        assert_eq!(sql.text, "t.`login` = ?");
        let mut sql = Sql::default();
        comparison(d, "t.`login`", &c, CmpOp::Eq, &v, false, &mut sql);
        assert_eq!(
            sql.text,
            "(t.`login` = ? AND t.`login` COLLATE latin1_bin = ?)"
        );
        let mut sql = Sql::default();
        comparison(d, "t.`login`", &c, CmpOp::StartsWith, &v, true, &mut sql);
        assert_eq!(sql.text, "t.`login` LIKE ? ESCAPE '\\\\'");
        let mut sql = Sql::default();
        let cyrillic = Value::Text("Жанна".into());
        comparison(d, "t.`login`", &c, CmpOp::Eq, &cyrillic, true, &mut sql);
        assert_eq!(sql.text, "1=0");
        c.ci = false;
        let mut sql = Sql::default();
        comparison(d, "t.`login`", &c, CmpOp::Eq, &v, true, &mut sql);
        assert_eq!(sql.text, "LOWER(t.`login`) = LOWER(?)");
    }

    /// Appending renumbers placeholders from their recorded positions, so text that looks
    /// like a placeholder (a quoted identifier may contain `$1` or `?2`) is never touched.
    #[test]
    fn append_renumbers() {
        let mut a = Sql::default();
        a.push("a = ").param(Dialect::Postgres, Value::Int(1));
        let mut b = Sql::default();
        b.push(" AND b = ").param(Dialect::Postgres, Value::Int(2));
        a.append(&b);
        assert_eq!(a.text, "a = $1::text AND b = $2::text");
        assert_eq!(a.params.len(), 2);

        for d in [Dialect::Sqlite, Dialect::Postgres] {
            let mut a = Sql::default();
            a.push("SELECT ").param(d, Value::Int(1));
            let mut b = Sql::default();
            b.push(" FROM \"t$1\" WHERE \"c?2\" = ")
                .param(d, Value::Int(2))
                .push(" AND \"$3x\" = ")
                .param(d, Value::Int(3));
            a.append(&b);
            let (p, c) = match d {
                Dialect::Sqlite => ("?", ""),
                Dialect::Postgres => ("$", "::text"),
                Dialect::Mysql => unreachable!("not in this loop"),
            };
            assert_eq!(
                a.text,
                format!(
                    "SELECT {p}1{c} FROM \"t$1\" WHERE \"c?2\" = {p}2{c} AND \"$3x\" = {p}3{c}"
                )
            );
            assert_eq!(a.params.len(), 3);
            // Appending twice keeps counting.
            let mut twice = Sql::default();
            twice.append(&a);
            twice.append(&a);
            assert_eq!(twice.params.len(), 6);
            assert!(
                twice.text.ends_with(&format!("= {p}6{c}")),
                "{}",
                twice.text
            );
            // An owned append moves the parameters and numbers as a borrowed one does.
            let mut owned = Sql::default();
            owned.append(&a);
            owned.append_owned(a.clone());
            assert_eq!(owned.text, twice.text);
            assert_eq!(owned.params.len(), 6);
        }
    }

    /// Placeholder numbers are written in decimal, past one digit too.
    #[test]
    fn placeholder_numbers() {
        let mut sql = Sql::default();
        for i in 0..12 {
            sql.push(if i == 0 { "" } else { "," })
                .param_inferred(Dialect::Postgres, Value::Int(i));
        }
        let expected: Vec<String> = (1..=12).map(|i| format!("${i}")).collect();
        assert_eq!(sql.text, expected.join(","));
    }
}
