//! The directory's own schema (its subschema entry, RFC 4512 §4.2), read once per start-up
//! by [`super::LdapBackend::open_table`] so a mapping naming an object class or attribute
//! the directory does not know, writing an attribute its classes do not allow, or never
//! writing one they require, stops the start (and `scim-sidecar check`) with the map entry's
//! file and line, instead of failing on the first create.

use std::collections::{HashMap, HashSet};

use ldap3::{Scope, SearchEntry};

use super::pool::Pool;

/// One object class: its names, superclasses and the attributes it requires and allows.
#[derive(Clone, Debug, Default)]
pub struct ObjectClass {
    /// SUP.
    pub sup: Vec<String>,
    /// MUST.
    pub must: Vec<String>,
    /// MAY.
    pub may: Vec<String>,
}

/// The parts of a subschema a mapping is checked against (names lower-cased).
#[derive(Debug, Default)]
pub struct Schema {
    /// Object classes by every name.
    pub classes: HashMap<String, ObjectClass>,
    /// Attribute type names (every alias) -> the type's first name.
    pub attributes: HashMap<String, String>,
}

impl Schema {
    /// Reads the subschema the root DSE names (`cn=Subschema` on slapd).
    pub async fn read(pool: &Pool) -> Result<Schema, String> {
        let mut c = pool.get().await.map_err(|e| e.to_string())?;
        let root = c
            .ldap
            .with_timeout(pool.op_timeout)
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec!["subschemaSubentry"],
            )
            .await
            .map_err(|e| e.to_string())?;
        let dn = root
            .0
            .into_iter()
            .map(SearchEntry::construct)
            .find_map(|e| {
                e.attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("subschemaSubentry"))
                    .and_then(|(_, v)| v.first().cloned())
            })
            .unwrap_or_else(|| "cn=Subschema".to_owned());
        let r = c
            .ldap
            .with_timeout(pool.op_timeout)
            .search(
                &dn,
                Scope::Base,
                "(objectClass=subschema)",
                vec!["objectClasses", "attributeTypes"],
            )
            .await
            .map_err(|e| e.to_string())?;
        let entry =
            r.0.into_iter()
                .map(SearchEntry::construct)
                .next()
                .ok_or_else(|| format!("the subschema entry '{dn}' cannot be read"))?;
        let mut s = Schema::default();
        for (k, vs) in &entry.attrs {
            if k.eq_ignore_ascii_case("objectClasses") {
                for v in vs {
                    let d = Description::parse(v);
                    let class = ObjectClass {
                        sup: d.list("SUP"),
                        must: d.list("MUST"),
                        may: d.list("MAY"),
                    };
                    for n in d.list("NAME") {
                        s.classes.insert(n.to_ascii_lowercase(), class.clone());
                    }
                }
            } else if k.eq_ignore_ascii_case("attributeTypes") {
                for v in vs {
                    let names = Description::parse(v).list("NAME");
                    if let Some(first) = names.first() {
                        for n in &names {
                            s.attributes.insert(n.to_ascii_lowercase(), first.clone());
                        }
                    }
                }
            }
        }
        if s.classes.is_empty() {
            return Err(format!(
                "the subschema entry '{dn}' lists no object classes (not readable by the bind DN?)"
            ));
        }
        Ok(s)
    }

    /// The first name of attribute `a` (options like `;lang-en` ignored), if the directory
    /// knows it.
    pub fn attribute(&self, a: &str) -> Option<&str> {
        let base = a.split(';').next().unwrap_or(a);
        self.attributes
            .get(&base.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The attributes `classes` (with their superclasses) require and allow, by first name
    /// lower-cased; `None` when one of them allows any attribute (`extensibleObject`).
    pub fn allowed(&self, classes: &[String]) -> (Vec<(String, String)>, Option<HashSet<String>>) {
        let mut must = Vec::new();
        let mut may = HashSet::new();
        let mut open = false;
        let mut todo: Vec<String> = classes.iter().map(|c| c.to_ascii_lowercase()).collect();
        let mut seen = HashSet::new();
        while let Some(c) = todo.pop() {
            if !seen.insert(c.clone()) {
                continue;
            }
            if c == "extensibleobject" {
                open = true;
            }
            let Some(oc) = self.classes.get(&c) else {
                continue;
            };
            for a in &oc.must {
                let name = self.attribute(a).unwrap_or(a).to_ascii_lowercase();
                if !must.iter().any(|(n, _)| *n == name) {
                    must.push((name.clone(), c.clone()));
                }
                may.insert(name);
            }
            for a in &oc.may {
                may.insert(self.attribute(a).unwrap_or(a).to_ascii_lowercase());
            }
            todo.extend(oc.sup.iter().map(|s| s.to_ascii_lowercase()));
        }
        (must, (!open).then_some(may))
    }
}

/// An RFC 4512 schema description, `( oid NAME 'a' SUP b MUST ( c $ d ) … )`, as keyword
/// → tokens.
struct Description {
    tokens: Vec<String>,
}

impl Description {
    fn parse(text: &str) -> Description {
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    let mut t = String::new();
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                        t.push(c);
                    }
                    tokens.push(format!("'{t}"));
                }
                '(' | ')' | '$' => tokens.push(c.to_string()),
                c if c.is_whitespace() => {}
                c => {
                    let mut t = c.to_string();
                    while let Some(&n) = chars.peek() {
                        if n.is_whitespace() || matches!(n, '(' | ')' | '\'' | '$') {
                            break;
                        }
                        t.push(n);
                        chars.next();
                    }
                    tokens.push(t);
                }
            }
        }
        Description { tokens }
    }

    /// The values after keyword `k`: one, or a parenthesised list.
    fn list(&self, k: &str) -> Vec<String> {
        let Some(i) = self.tokens.iter().position(|t| t == k) else {
            return Vec::new();
        };
        let clean = |t: &String| t.trim_start_matches('\'').to_owned();
        match self.tokens.get(i + 1).map(String::as_str) {
            Some("(") => self.tokens[i + 2..]
                .iter()
                .take_while(|t| *t != ")")
                .filter(|t| *t != "$")
                .map(clean)
                .collect(),
            Some(t) => vec![clean(&t.to_owned())],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names, superclasses and MUST/MAY lists come out of slapd's descriptions.
    #[test]
    fn descriptions() {
        let d = Description::parse(
            "( 2.5.6.6 NAME 'person' DESC 'RFC2256: a person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY ( userPassword $ telephoneNumber ) )",
        );
        assert_eq!(d.list("NAME"), ["person"]);
        assert_eq!(d.list("SUP"), ["top"]);
        assert_eq!(d.list("MUST"), ["sn", "cn"]);
        assert_eq!(d.list("MAY"), ["userPassword", "telephoneNumber"]);
        let a = Description::parse("( 2.5.4.3 NAME ( 'cn' 'commonName' ) DESC 'x' SUP name )");
        assert_eq!(a.list("NAME"), ["cn", "commonName"]);
    }
}
