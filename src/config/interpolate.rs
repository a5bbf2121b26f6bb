//! `${VAR}` and `${VAR:-default}` in string values, expanded after the TOML is parsed (never by
//! text substitution, so an environment value cannot change the file's structure).
//!
//! Environment access goes through [`Env`] so tests pass a map instead of touching the
//! process environment.

use std::collections::HashMap;

/// Where variables come from.
pub trait Env {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// Expands every `${NAME}` and `${NAME:-default}` in `s`. `$${` is a literal `${`.
///
/// As in the shell, `:-` uses the default when the variable is unset or empty; `${NAME}` of
/// an unset variable is an error naming it.
pub fn expand(s: &str, env: &dyn Env) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        if !after.starts_with("${") {
            out.push('$');
            rest = &after[1..];
            continue;
        }
        let Some(end) = after.find('}') else {
            return Err(format!(
                "unterminated \"${{\" in \"{s}\" (write $${{ for a literal ${{)"
            ));
        };
        let inner = &after[2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "\"${{{inner}}}\" does not name an environment variable"
            ));
        }
        match (env.get(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (set it, or write ${{{name}:-default}})"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        [("TOKEN", "s3cret"), ("EMPTY", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Variables, defaults, empty values, escapes and plain dollars.
    #[test]
    fn expansion() {
        let e = env();
        assert_eq!(expand("${TOKEN}", &e).expect("set"), "s3cret");
        assert_eq!(expand("a-${TOKEN}-b", &e).expect("set"), "a-s3cret-b");
        assert_eq!(
            expand("${NOPE:-127.0.0.1:8080}", &e).expect("default"),
            "127.0.0.1:8080"
        );
        assert_eq!(expand("${EMPTY:-x}", &e).expect("empty"), "x");
        assert_eq!(expand("${EMPTY}", &e).expect("empty"), "");
        assert_eq!(
            expand("$${TOKEN} costs $5", &e).expect("escape"),
            "${TOKEN} costs $5"
        );
        assert_eq!(expand("${NOPE:-}", &e).expect("empty default"), "");
    }

    /// Errors name the variable and the fix.
    #[test]
    fn errors() {
        let e = env();
        let err = expand("${NOPE}", &e).expect_err("unset");
        assert!(
            err.contains("NOPE is not set") && err.contains("${NOPE:-default}"),
            "{err}"
        );
        assert!(
            expand("${TOKEN", &e)
                .expect_err("open")
                .contains("unterminated")
        );
        assert!(
            expand("${1X}", &e)
                .expect_err("name")
                .contains("does not name")
        );
    }
}
