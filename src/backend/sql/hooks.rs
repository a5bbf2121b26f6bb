//! Hooks: the app's own logic as SQL statements the mapping declares, run in the transaction
//! of the write that triggers them (a group membership that grants project roles, an audit
//! row, a counter), and cascades: rows of other tables removed with a deleted row.
//!
//! A hook's statements name their parameters (`:id`, `:member`, `:userName`); each becomes a
//! bound placeholder when the mapping is compiled, so a value never becomes SQL text. A
//! parameter's type is the one the database infers from where it is used (PostgreSQL), or
//! the value's own (SQLite): `WHERE user_id = :member` binds an integer to an integer
//! column. Statements must be idempotent: a member added twice runs `member_add` twice.

use super::config::{Event, Hook};
use super::{Dialect, Sql};
use crate::backend::{BackendError, Row, Value};
use crate::mapping::Origin;

/// Where a hook parameter's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The resource's key.
    Key,
    /// The member's key (member hooks).
    Member,
    /// Field `i` of the resource's row after the write.
    Field(usize),
}

/// Part of a compiled statement.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Param(Source),
}

/// One statement with its parameters located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    parts: Vec<Part>,
    /// The statement as configured, for messages.
    pub shown: String,
    /// Where its hook is written.
    pub origin: Origin,
}

/// A hook, compiled against the resource's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// When it runs.
    pub on: Vec<Event>,
    /// Its statements.
    pub statements: Vec<Statement>,
    /// Where it is written.
    pub origin: Origin,
}

/// Compiles a hook: every `:name` must be `id`, `member` (only in member hooks) or a field's
/// name (`names`, one per field). `Err` says which name and what would do.
pub fn compile(hook: &Hook, names: &[String]) -> Result<Compiled, String> {
    let member_only = hook
        .on
        .iter()
        .all(|e| matches!(e, Event::MemberAdd | Event::MemberRemove));
    let mut statements = Vec::new();
    for text in &hook.sql {
        let mut parts = Vec::new();
        for piece in split(text) {
            match piece {
                Piece::Text(t) => parts.push(Part::Text(t)),
                Piece::Name(n) => {
                    let source = if n.eq_ignore_ascii_case("id") {
                        Source::Key
                    } else if n.eq_ignore_ascii_case("member") {
                        if !member_only {
                            return Err(
                                ":member is only known in member_add and member_remove hooks"
                                    .into(),
                            );
                        }
                        Source::Member
                    } else if let Some(i) = names.iter().position(|f| f.eq_ignore_ascii_case(&n)) {
                        Source::Field(i)
                    } else {
                        return Err(format!(
                            "parameter :{n} is not :id, :member or a mapped attribute (mapped: {})",
                            names.join(", ")
                        ));
                    };
                    parts.push(Part::Param(source));
                }
            }
        }
        statements.push(Statement {
            parts,
            shown: text.clone(),
            origin: hook.origin.clone(),
        });
    }
    Ok(Compiled {
        on: hook.on.clone(),
        statements,
        origin: hook.origin.clone(),
    })
}

impl Statement {
    /// The statement with its parameters bound: the key, the member's key, the row's values.
    pub fn bind(&self, d: Dialect, key: &Value, member: Option<&Value>, row: Option<&Row>) -> Sql {
        let mut sql = Sql::default();
        for p in &self.parts {
            match p {
                Part::Text(t) => {
                    sql.push(t);
                }
                Part::Param(s) => {
                    let v = match s {
                        Source::Key => key.clone(),
                        Source::Member => member.cloned().unwrap_or(Value::Null),
                        Source::Field(i) => row
                            .and_then(|r| r.values.get(*i))
                            .map_or(Value::Null, |v| v.first().clone()),
                    };
                    sql.param_inferred(d, v);
                }
            }
        }
        sql
    }

    /// What the client is told when this statement fails: a refusal by the app's own rule
    /// (a constraint a hook's write broke) is the app refusing the change, not the attribute
    /// the database happens to name; a fault is logged with the hook's place in the config.
    pub fn failed(&self, e: BackendError) -> BackendError {
        match e {
            BackendError::Rejected { detail, .. } | BackendError::Conflict { detail, .. } => {
                tracing::info!(hook = %self.origin, %detail, "a hook's statement was refused");
                BackendError::Rejected {
                    field: None,
                    detail: "the application refused the change (a rule of its own, run by \
                             the mapping's hook)"
                        .into(),
                }
            }
            BackendError::Internal(m) => {
                BackendError::Internal(format!("hook at {}: {m}", self.origin))
            }
            other => other,
        }
    }

    /// The statement with placeholders for every parameter, to check it against the live
    /// database without running it.
    pub fn placeholders(&self, d: Dialect) -> Sql {
        self.bind(d, &Value::Null, None, None)
    }
}

enum Piece {
    Text(String),
    Name(String),
}

/// Splits SQL text into text and `:name` parameters, leaving string literals, quoted
/// identifiers (MySQL's backticks too), comments and PostgreSQL's `::type` casts alone.
fn split(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                // A literal or a quoted identifier, up to its closing quote (doubled quotes
                // stay inside).
                cur.push(c);
                i += 1;
                while i < chars.len() {
                    cur.push(chars[i]);
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            cur.push(c);
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    cur.push(chars[i]);
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    cur.push(chars[i]);
                    i += 1;
                }
                cur.push_str("*/");
                i += 2;
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                cur.push_str("::");
                i += 2;
            }
            ':' if chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_') =>
            {
                let mut name = String::new();
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    name.push(chars[i]);
                    i += 1;
                }
                // A sentence may end a name: `:userName.` is `:userName` and a dot.
                let mut trailing = String::new();
                while name.ends_with('.') {
                    name.pop();
                    trailing.push('.');
                }
                if !cur.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut cur)));
                }
                out.push(Piece::Name(name));
                cur.push_str(&trailing);
            }
            other => {
                cur.push(other);
                i += 1;
            }
        }
    }
    if !cur.is_empty() {
        out.push(Piece::Text(cur));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(on: Vec<Event>, sql: &str) -> Hook {
        Hook {
            on,
            sql: vec![sql.into()],
            origin: Origin {
                file: "t.toml".into(),
                line: 1,
            },
        }
    }

    /// Named parameters become placeholders; literals, quoted names, comments and casts are
    /// left as written, so `':id'` in a string stays a string.
    #[test]
    fn parameters_are_placeholders() {
        let h = hook(
            vec![Event::MemberAdd],
            "INSERT INTO r (u, g, note) SELECT :member, :id::bigint, ':id' FROM \"a:b\" -- :x\nWHERE n = :userName.",
        );
        let c = compile(&h, &["userName".into()]).expect("compiles");
        let row = Row {
            key: "7".into(),
            values: vec![Value::Text("ann".into())],
            members: None,
        };
        let pg = c.statements[0].bind(
            Dialect::Postgres,
            &Value::Int(7),
            Some(&Value::Int(3)),
            Some(&row),
        );
        assert_eq!(
            pg.text(),
            "INSERT INTO r (u, g, note) SELECT $1, $2::bigint, ':id' FROM \"a:b\" -- :x\nWHERE n = $3."
        );
        assert_eq!(pg.params().len(), 3);
        let lite = c.statements[0].bind(
            Dialect::Sqlite,
            &Value::Int(7),
            Some(&Value::Int(3)),
            Some(&row),
        );
        assert!(
            lite.text().contains("SELECT ?1, ?2::bigint"),
            "{}",
            lite.text()
        );
    }

    /// Unknown names and `:member` outside member hooks are refused with what would do.
    #[test]
    fn unknown_names_are_refused() {
        let e = compile(
            &hook(vec![Event::Create], "SELECT :nope"),
            &["userName".into()],
        )
        .expect_err("unknown");
        assert!(e.contains(":nope") && e.contains("userName"), "{e}");
        let e = compile(&hook(vec![Event::Create], "SELECT :member"), &[]).expect_err("member");
        assert!(e.contains("member_add"), "{e}");
    }
}
