//! Hand-written recursive-descent parser for SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths
//! (RFC 7644 §3.5.2).
//!
//! Called by the request layer for the `filter` query parameter and `POST /.search` bodies
//! ([`parse_filter`]), by the PATCH handler for each operation's `path` ([`parse_patch_path`]),
//! and for `sortBy` / `attributes` / `excludedAttributes` entries ([`parse_attr_path`]). It builds
//! the [`super::ast`] tree; names are kept as written and resolved against a schema later.
//!
//! Keywords, operators and the literals `true`/`false`/`null` are case-insensitive. Nesting
//! (parentheses, `not`, value paths) is limited to [`MAX_DEPTH`] levels, the expression tree to
//! 256 levels, and the input to 64 KiB, so hostile input is rejected quickly and never exhausts
//! the stack here or in the code that walks the tree.

use std::fmt;

use super::ast::{AttrPath, CompValue, CompareOp, Filter, PatchPath};

/// Maximum nesting of parentheses, `not (...)` and value paths `attr[...]`, combined.
pub const MAX_DEPTH: usize = 64;

/// Maximum depth of the produced expression tree. Long `and`/`or` chains are left-associative,
/// so a chain of n terms is n levels deep; this keeps recursive walkers of the tree safe.
const MAX_TREE_DEPTH: usize = 256;

/// Maximum input length in bytes.
const MAX_INPUT_LEN: usize = 64 * 1024;

/// How much of the remaining input an error message quotes.
const QUOTE_LEN: usize = 32;

const OPERATORS: &str = "eq, ne, co, sw, ew, gt, ge, lt, le, pr";

/// A syntax error in a filter, PATCH path or attribute path.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterError {
    /// Byte offset into the input where the problem was found.
    pub position: usize,
    /// Human-readable description of the problem.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

impl std::error::Error for FilterError {}

/// Parses a SCIM filter expression such as `userName eq "bjensen" and not (emails pr)`.
///
/// # Errors
///
/// A [`FilterError`] with the byte position and a description of the first syntax problem,
/// or of the input being longer than 64 KiB or nested deeper than [`MAX_DEPTH`].
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input)?;
    p.skip_ws();
    if p.at_end() {
        return Err(p.error(p.pos, "empty filter"));
    }
    let (filter, _) = p.parse_or(0, false, "")?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.unexpected_rest());
    }
    Ok(filter)
}

/// Parses a PATCH operation `path`: `attrPath` or `valuePath ["." subAttr]`, e.g.
/// `name.familyName` or `emails[type eq "work"].value`. Surrounding whitespace is ignored.
///
/// # Errors
///
/// A [`FilterError`] as for [`parse_filter`]; also for a malformed `.subAttr` after `]`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut p = Parser::new(input)?;
    p.skip_ws();
    if p.at_end() {
        return Err(p.error(p.pos, "empty path"));
    }
    let start = p.pos;
    let end = p.path_end(start);
    let attr = p.attr_path(start, end, false)?;
    p.pos = end;
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if p.peek_after_ws() == Some(b'[') {
        p.skip_ws();
        let (filter, _) = p.value_filter(&path.attr, 0)?;
        path.filter = Some(filter);
        if p.peek() == Some(b'.') {
            let dot = p.pos;
            let start = dot + 1;
            let end = p.path_end(start);
            let sub = p.slice(start, end);
            if sub.is_empty() {
                return Err(p.error(dot, "missing sub-attribute name after \".\""));
            }
            check_name(sub).map_err(|()| {
                p.error(start, format!("invalid sub-attribute name {}", quote(sub)))
            })?;
            path.sub = Some(sub.to_owned());
            p.pos = end;
        }
    }
    p.skip_ws();
    if !p.at_end() {
        return Err(p.unexpected_rest());
    }
    Ok(path)
}

/// Parses a bare attribute path (`[URI ":"] ATTRNAME ["." subAttr]`), as used by `sortBy` and
/// the entries of `attributes` / `excludedAttributes`. Surrounding whitespace is ignored.
///
/// # Errors
///
/// A [`FilterError`] for an empty or malformed path, or anything after it (such as `[...]`).
pub fn parse_attr_path(input: &str) -> Result<AttrPath, FilterError> {
    let mut p = Parser::new(input)?;
    p.skip_ws();
    if p.at_end() {
        return Err(p.error(p.pos, "empty attribute path"));
    }
    let start = p.pos;
    let end = p.path_end(start);
    let attr = p.attr_path(start, end, false)?;
    p.pos = end;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.unexpected_rest());
    }
    Ok(attr)
}

/// Whitespace between tokens.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes that end an attribute path (and any other bare word).
fn is_delim(b: u8) -> bool {
    is_ws(b) || matches!(b, b'[' | b']' | b'(' | b')')
}

/// `nameChar = "-" / "_" / DIGIT / ALPHA`
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `ATTRNAME = ALPHA *(nameChar)`, also `$` ALPHA *(nameChar) for names such as `$ref`.
fn check_name(name: &str) -> Result<(), ()> {
    let bytes = name.as_bytes();
    let rest = match bytes {
        [b'$', first, rest @ ..] | [first, rest @ ..] if first.is_ascii_alphabetic() => rest,
        _ => return Err(()),
    };
    if rest.iter().all(|&b| is_name_char(b)) {
        Ok(())
    } else {
        Err(())
    }
}

/// Characters allowed in a schema URN (RFC 8141, minus what ends a path token).
fn is_urn_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'*+,;=:@/%?#".contains(&b)
}

/// Checks the JSON number grammar: `-? (0 / [1-9] DIGIT*) ("." DIGIT+)? ([eE] [+-]? DIGIT+)?`.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// Converts a lexeme that passed [`is_json_number`] the way `serde_json` classifies numbers
/// (unsigned, signed, else float), but with a correctly rounded float conversion so that every
/// printed number reads back as the same value.
fn json_number(s: &str) -> Option<serde_json::Number> {
    let integral = !s.contains(['.', 'e', 'E']);
    if integral && s != "-0" {
        if let Ok(u) = s.parse::<u64>() {
            return Some(u.into());
        }
        if let Ok(i) = s.parse::<i64>() {
            return Some(i.into());
        }
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
}

/// Looks up a comparison operator, case-insensitively. `pr` is handled by the caller.
fn compare_op(word: &str) -> Option<CompareOp> {
    const OPS: [(&str, CompareOp); 9] = [
        ("eq", CompareOp::Eq),
        ("ne", CompareOp::Ne),
        ("co", CompareOp::Co),
        ("sw", CompareOp::Sw),
        ("ew", CompareOp::Ew),
        ("gt", CompareOp::Gt),
        ("ge", CompareOp::Ge),
        ("lt", CompareOp::Lt),
        ("le", CompareOp::Le),
    ];
    OPS.iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|&(_, op)| op)
}

/// Quotes a piece of input for an error message, shortened to [`QUOTE_LEN`] characters.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("{:?}...", s.get(..cut).unwrap_or_default()),
        None => format!("{s:?}"),
    }
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, FilterError> {
        if src.len() > MAX_INPUT_LEN {
            return Err(FilterError {
                position: MAX_INPUT_LEN,
                message: format!(
                    "input is too long ({} bytes; the limit is {MAX_INPUT_LEN})",
                    src.len()
                ),
            });
        }
        Ok(Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
        })
    }

    fn error(&self, position: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            position,
            message: message.into(),
        }
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, without consuming anything.
    fn peek_after_ws(&self) -> Option<u8> {
        self.bytes
            .get(self.pos..)
            .and_then(|rest| rest.iter().copied().find(|&b| !is_ws(b)))
    }

    /// End of an attribute path token starting at `from`.
    fn path_end(&self, from: usize) -> usize {
        let mut i = from;
        while self.bytes.get(i).is_some_and(|&b| !is_delim(b)) {
            i += 1;
        }
        i
    }

    /// End of a keyword / operator / literal starting at `from` (also stops at a quote).
    fn word_end(&self, from: usize) -> usize {
        let mut i = from;
        while self
            .bytes
            .get(i)
            .is_some_and(|&b| !is_delim(b) && b != b'"')
        {
            i += 1;
        }
        i
    }

    /// Error for input left over where a logical operator or the end was expected.
    fn unexpected_rest(&self) -> FilterError {
        match self.peek() {
            Some(b')') => self.error(self.pos, "unexpected \")\""),
            Some(b']') => self.error(self.pos, "unexpected \"]\""),
            _ => {
                let rest = self.slice(self.pos, self.bytes.len());
                self.error(self.pos, format!("trailing input {}", quote(rest)))
            }
        }
    }

    /// If the next word (after whitespace) is `keyword`, consumes it and returns its position.
    fn eat_keyword(&mut self, keyword: &str) -> Option<usize> {
        let save = self.pos;
        self.skip_ws();
        let start = self.pos;
        let end = self.word_end(start);
        if self.slice(start, end).eq_ignore_ascii_case(keyword) {
            self.pos = end;
            Some(start)
        } else {
            self.pos = save;
            None
        }
    }

    fn check_nesting(&self, depth: usize, at: usize) -> Result<(), FilterError> {
        if depth > MAX_DEPTH {
            Err(self.error(
                at,
                format!(
                    "filter is nested too deeply (more than {MAX_DEPTH} levels of parentheses, \
                     not and value paths)"
                ),
            ))
        } else {
            Ok(())
        }
    }

    fn check_tree(&self, tree_depth: usize, at: usize) -> Result<(), FilterError> {
        if tree_depth > MAX_TREE_DEPTH {
            Err(self.error(
                at,
                format!(
                    "filter is too complex (its expression tree is more than {MAX_TREE_DEPTH} \
                     levels deep; use fewer and/or terms)"
                ),
            ))
        } else {
            Ok(())
        }
    }

    /// `or`-level expression. Returns the filter and its tree depth. `depth` is the current
    /// nesting, `inner` is true inside `[...]`, and `after` names what precedes the expression
    /// (for the "expected a filter after ..." message; empty at the very start).
    fn parse_or(
        &mut self,
        depth: usize,
        inner: bool,
        after: &str,
    ) -> Result<(Filter, usize), FilterError> {
        let (mut left, mut tree) = self.parse_and(depth, inner, after)?;
        while let Some(at) = self.eat_keyword("or") {
            let (right, right_tree) = self.parse_and(depth, inner, "\"or\"")?;
            tree = 1 + tree.max(right_tree);
            self.check_tree(tree, at)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok((left, tree))
    }

    /// `and`-level expression; see [`Parser::parse_or`].
    fn parse_and(
        &mut self,
        depth: usize,
        inner: bool,
        after: &str,
    ) -> Result<(Filter, usize), FilterError> {
        let (mut left, mut tree) = self.parse_atom(depth, inner, after)?;
        while let Some(at) = self.eat_keyword("and") {
            let (right, right_tree) = self.parse_atom(depth, inner, "\"and\"")?;
            tree = 1 + tree.max(right_tree);
            self.check_tree(tree, at)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok((left, tree))
    }

    /// A group, `not (...)`, attribute expression or value path.
    fn parse_atom(
        &mut self,
        depth: usize,
        inner: bool,
        after: &str,
    ) -> Result<(Filter, usize), FilterError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None if after.is_empty() => Err(self.error(start, "empty filter")),
            None => Err(self.error(start, format!("expected a filter after {after}"))),
            Some(b'(') => {
                self.check_nesting(depth + 1, start)?;
                self.pos += 1;
                self.group(start, depth + 1, inner)
            }
            Some(b')') if after == "\"(\"" => Err(self.error(start, "empty parentheses")),
            Some(b')') => Err(self.error(start, "unexpected \")\"")),
            Some(b']') => Err(self.error(start, "unexpected \"]\"")),
            Some(b'[') => Err(self.error(start, "expected an attribute name before \"[\"")),
            Some(b'"') => Err(self.error(
                start,
                "expected an attribute name, found a string (the attribute comes first, \
                 e.g. userName eq \"bjensen\")",
            )),
            Some(_) => {
                let end = self.path_end(start);
                if self.slice(start, end).eq_ignore_ascii_case("not") {
                    self.pos = end;
                    self.skip_ws();
                    if self.peek() != Some(b'(') {
                        return Err(self.error(self.pos, "expected \"(\" after not"));
                    }
                    self.check_nesting(depth + 1, start)?;
                    let open = self.pos;
                    self.pos += 1;
                    let (filter, tree) = self.group(open, depth + 1, inner)?;
                    return Ok((Filter::Not(Box::new(filter)), tree + 1));
                }
                let path = self.attr_path(start, end, inner)?;
                self.pos = end;
                self.attr_expression(path, start, depth, inner)
            }
        }
    }

    /// The rest of a parenthesised group whose `(` at `open` has been consumed.
    fn group(
        &mut self,
        open: usize,
        depth: usize,
        inner: bool,
    ) -> Result<(Filter, usize), FilterError> {
        let result = self.parse_or(depth, inner, "\"(\"")?;
        self.skip_ws();
        match self.peek() {
            Some(b')') => {
                self.pos += 1;
                Ok(result)
            }
            None => Err(self.error(
                self.pos,
                format!("missing \")\" to close the \"(\" at position {open}"),
            )),
            Some(_) => {
                let end = self.path_end(self.pos).max(self.pos + 1);
                let found = self.slice(self.pos, end);
                Err(self.error(
                    self.pos,
                    format!("expected \"and\", \"or\" or \")\", found {}", quote(found)),
                ))
            }
        }
    }

    /// What follows an attribute path in a filter: `pr`, an operator and value, or `[...]`.
    fn attr_expression(
        &mut self,
        path: AttrPath,
        path_start: usize,
        depth: usize,
        inner: bool,
    ) -> Result<(Filter, usize), FilterError> {
        let path_text = self.slice(path_start, self.pos);
        if self.peek_after_ws() == Some(b'[') {
            self.skip_ws();
            if inner {
                return Err(self.error(
                    self.pos,
                    format!("nested value path {path_text:?}[...] inside \"[...]\" is not allowed"),
                ));
            }
            let (filter, tree) = self.value_filter(&path, depth)?;
            if self.peek() == Some(b'.') {
                // Not RFC 7644 ABNF, but Entra filters on matching attributes written as PATCH
                // paths, `emails[type eq "work"].value eq "…"` (ENTRA-TUT "/Users",
                // idp-behaviour.md §1.3): read as `emails[type eq "work" and value eq "…"]`.
                let at = self.pos;
                self.pos += 1;
                let sub_start = self.pos;
                let sub_end = self.path_end(sub_start);
                let sub = self.attr_path(sub_start, sub_end, true)?;
                self.pos = sub_end;
                let (cond, sub_tree) = self.attr_expression(sub, sub_start, depth, true)?;
                let tree = 2 + tree.max(sub_tree);
                self.check_tree(tree, at)?;
                let both = Filter::And(Box::new(filter), Box::new(cond));
                return Ok((Filter::ValuePath(path, Box::new(both)), tree));
            }
            return Ok((Filter::ValuePath(path, Box::new(filter)), tree + 1));
        }
        self.skip_ws();
        let op_start = self.pos;
        let op_end = self.word_end(op_start);
        let op = self.slice(op_start, op_end);
        if op.is_empty() {
            return Err(self.error(
                op_start,
                format!("expected an operator ({OPERATORS}) after {path_text:?}"),
            ));
        }
        if op.eq_ignore_ascii_case("pr") {
            self.pos = op_end;
            return Ok((Filter::Present(path), 1));
        }
        let Some(compare) = compare_op(op) else {
            return Err(self.error(
                op_start,
                format!(
                    "unknown operator {} after {path_text:?} (expected one of {OPERATORS})",
                    quote(op)
                ),
            ));
        };
        self.pos = op_end;
        let value = self.comp_value(op)?;
        Ok((Filter::Compare(path, compare, value), 1))
    }

    /// `"[" valFilter "]"` with the `[` next; checks that the outer path has no sub-attribute.
    fn value_filter(
        &mut self,
        path: &AttrPath,
        depth: usize,
    ) -> Result<(Filter, usize), FilterError> {
        let open = self.pos;
        if path.sub.is_some() {
            return Err(self.error(
                open,
                format!(
                    "a value filter \"[...]\" cannot follow the sub-attribute path \"{path}\" \
                     (filter the multi-valued attribute instead, e.g. emails[type eq \"work\"])"
                ),
            ));
        }
        self.check_nesting(depth + 1, open)?;
        self.pos += 1;
        let result = self.parse_or(depth + 1, true, "\"[\"")?;
        self.skip_ws();
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(result)
            }
            None => Err(self.error(
                self.pos,
                format!("missing \"]\" to close the \"[\" at position {open}"),
            )),
            Some(_) => {
                let end = self.path_end(self.pos).max(self.pos + 1);
                let found = self.slice(self.pos, end);
                Err(self.error(
                    self.pos,
                    format!("expected \"and\", \"or\" or \"]\", found {}", quote(found)),
                ))
            }
        }
    }

    /// Parses the attribute path token `src[start..end]`. Inside `[...]` (`inner`) only a bare
    /// sub-attribute name is allowed.
    fn attr_path(&self, start: usize, end: usize, inner: bool) -> Result<AttrPath, FilterError> {
        let token = self.slice(start, end);
        let is_urn = token
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        let (urn, rest_start) = if is_urn {
            let colon = token.rfind(':').unwrap_or(0);
            let urn = token.get(..colon).unwrap_or_default();
            if urn.len() <= 4 {
                return Err(self.error(
                    start,
                    format!(
                        "invalid attribute path {}: expected \"urn:<schema>:<attribute>\"",
                        quote(token)
                    ),
                ));
            }
            if let Some(i) = urn.bytes().position(|b| !is_urn_char(b)) {
                let c = urn.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(self.error(
                    start + i,
                    format!("invalid character {c:?} in schema URN {}", quote(urn)),
                ));
            }
            if inner {
                return Err(self.error(
                    start,
                    format!(
                        "inside \"[...]\" use the sub-attribute name alone, not the \
                         schema-qualified path {}",
                        quote(token)
                    ),
                ));
            }
            (Some(urn.to_owned()), colon + 1)
        } else {
            (None, 0)
        };
        let rest = token.get(rest_start..).unwrap_or_default();
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        let name_at = start + rest_start;
        if name.is_empty() {
            return Err(self.error(name_at, "missing attribute name"));
        }
        if check_name(name).is_err() {
            return Err(self.error(name_at, format!("invalid attribute name {}", quote(name))));
        }
        if let Some(sub) = sub {
            let sub_at = name_at + name.len() + 1;
            if sub.is_empty() {
                return Err(self.error(sub_at - 1, "missing sub-attribute name after \".\""));
            }
            if check_name(sub).is_err() {
                return Err(
                    self.error(sub_at, format!("invalid sub-attribute name {}", quote(sub)))
                );
            }
            if inner {
                return Err(self.error(
                    start,
                    format!(
                        "inside \"[...]\" use the sub-attribute name alone, not the path {}",
                        quote(token)
                    ),
                ));
            }
        }
        Ok(AttrPath {
            urn,
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }

    /// `compValue` after the operator `op`.
    fn comp_value(&mut self, op: &str) -> Result<CompValue, FilterError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            // NFC, as stored values are (see `scim::text`): `é` in a filter finds `é` however
            // either was spelt.
            Some(b'"') => self
                .string()
                .map(|s| CompValue::Str(crate::scim::text::canonical(&s).into_owned())),
            None | Some(b'(' | b')' | b'[' | b']') => Err(self.error(
                start,
                format!(
                    "expected a value (a string, number, true, false or null) after {}",
                    quote(op)
                ),
            )),
            Some(first) => {
                let end = self.word_end(start);
                let word = self.slice(start, end);
                let value = if word.eq_ignore_ascii_case("true") {
                    CompValue::Bool(true)
                } else if word.eq_ignore_ascii_case("false") {
                    CompValue::Bool(false)
                } else if word.eq_ignore_ascii_case("null") {
                    CompValue::Null
                } else if first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.') {
                    if !is_json_number(word) {
                        return Err(self.error(start, format!("invalid number {}", quote(word))));
                    }
                    let Some(n) = json_number(word) else {
                        return Err(
                            self.error(start, format!("number {} is out of range", quote(word)))
                        );
                    };
                    CompValue::Number(n)
                } else {
                    return Err(self.error(
                        start,
                        format!(
                            "invalid value {} (strings must be in double quotes; other values \
                             are numbers, true, false or null)",
                            quote(word)
                        ),
                    ));
                };
                self.pos = end;
                Ok(value)
            }
        }
    }

    /// A JSON string starting at the current `"`; returns it with escapes decoded.
    fn string(&mut self) -> Result<String, FilterError> {
        let open = self.pos;
        let mut out = String::new();
        let mut i = open + 1;
        let mut run = i;
        loop {
            match self.bytes.get(i) {
                None => return Err(self.error(open, "unterminated string")),
                Some(b'"') => {
                    out.push_str(self.slice(run, i));
                    self.pos = i + 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(self.slice(run, i));
                    i = self.escape(i, open, &mut out)?;
                    run = i;
                }
                Some(&b) if b < 0x20 => {
                    return Err(self.error(i, "unescaped control character in string"));
                }
                Some(_) => i += 1,
            }
        }
    }

    /// Decodes the escape at `at` (the backslash) into `out`; returns the index after it.
    fn escape(&self, at: usize, open: usize, out: &mut String) -> Result<usize, FilterError> {
        let c = match self.bytes.get(at + 1) {
            None => return Err(self.error(open, "unterminated string")),
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = self.hex4(at)?;
                let (c, next) = match unit {
                    0xD800..=0xDBFF => {
                        let low_at = at + 6;
                        let low = if self.bytes.get(low_at) == Some(&b'\\')
                            && self.bytes.get(low_at + 1) == Some(&b'u')
                        {
                            self.hex4(low_at)?
                        } else {
                            0
                        };
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error(
                                at,
                                "invalid \\u escape: high surrogate not followed by a low surrogate",
                            ));
                        }
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        (char::from_u32(code), at + 12)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.error(
                            at,
                            "invalid \\u escape: low surrogate without a high surrogate",
                        ));
                    }
                    _ => (char::from_u32(unit), at + 6),
                };
                let Some(c) = c else {
                    return Err(self.error(at, "invalid \\u escape"));
                };
                out.push(c);
                return Ok(next);
            }
            Some(_) => {
                let c = self
                    .src
                    .get(at + 1..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or('?');
                return Err(self.error(at, format!("invalid escape \"\\{c}\" in string")));
            }
        };
        out.push(c);
        Ok(at + 2)
    }

    /// The four hex digits of the `\u` escape whose backslash is at `at`.
    fn hex4(&self, at: usize) -> Result<u32, FilterError> {
        let digits = self.bytes.get(at + 2..at + 6).unwrap_or_default();
        if digits.len() == 4 && digits.iter().all(u8::is_ascii_hexdigit) {
            let text = self.slice(at + 2, at + 6);
            u32::from_str_radix(text, 16)
                .map_err(|_| self.error(at, "invalid \\u escape (expected 4 hex digits)"))
        } else {
            Err(self.error(at, "invalid \\u escape (expected 4 hex digits)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Number;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn p(name: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.to_owned(),
            sub: None,
        }
    }

    fn ps(name: &str, sub: &str) -> AttrPath {
        AttrPath {
            sub: Some(sub.to_owned()),
            ..p(name)
        }
    }

    fn pu(urn: &str, name: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: Some(urn.to_owned()),
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        }
    }

    fn s(v: &str) -> CompValue {
        CompValue::Str(v.to_owned())
    }

    fn n(v: i64) -> CompValue {
        CompValue::Number(v.into())
    }

    fn f64v(v: f64) -> CompValue {
        CompValue::Number(Number::from_f64(v).unwrap())
    }

    fn eq(path: AttrPath, v: CompValue) -> Filter {
        Filter::Compare(path, CompareOp::Eq, v)
    }

    fn pr(path: AttrPath) -> Filter {
        Filter::Present(path)
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }

    fn vp(path: AttrPath, inner: Filter) -> Filter {
        Filter::ValuePath(path, Box::new(inner))
    }

    fn ok(input: &str) -> Filter {
        match parse_filter(input) {
            Ok(f) => {
                // Every successful parse must also survive a print/parse round trip.
                assert_eq!(
                    parse_filter(&f.to_string()),
                    Ok(f.clone()),
                    "round trip of {f}"
                );
                f
            }
            Err(e) => panic!("{} failed: {e}", quote(input)),
        }
    }

    /// Asserts that `input` fails with a message containing `needle`; returns the error.
    fn fails(input: &str, needle: &str) -> FilterError {
        match parse_filter(input) {
            Ok(f) => panic!("{} parsed as {f:?}", quote(input)),
            Err(e) => {
                assert!(
                    e.message.contains(needle),
                    "{}: message {:?} does not contain {needle:?}",
                    quote(input),
                    e.message
                );
                e
            }
        }
    }

    fn patch_fails(input: &str, needle: &str) -> FilterError {
        match parse_patch_path(input) {
            Ok(f) => panic!("{} parsed as {f:?}", quote(input)),
            Err(e) => {
                assert!(
                    e.message.contains(needle),
                    "{}: message {:?} does not contain {needle:?}",
                    quote(input),
                    e.message
                );
                e
            }
        }
    }

    // ---- operators and keywords ----

    #[test]
    fn every_operator() {
        let ops = [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("co", CompareOp::Co),
            ("sw", CompareOp::Sw),
            ("ew", CompareOp::Ew),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ];
        for (text, op) in ops {
            let expected = Filter::Compare(p("userName"), op, s("bjensen"));
            assert_eq!(ok(&format!("userName {text} \"bjensen\"")), expected);
            let upper = text.to_ascii_uppercase();
            assert_eq!(ok(&format!("userName {upper} \"bjensen\"")), expected);
        }
        assert_eq!(ok("title pr"), pr(p("title")));
        assert_eq!(ok("title PR"), pr(p("title")));
        assert_eq!(ok("title Pr"), pr(p("title")));
    }

    #[test]
    fn case_insensitive_keywords_and_literals() {
        assert_eq!(
            ok("a EQ TRUE AND NOT (b Eq False) Or c eq NULL aNd d pr"),
            or(
                and(
                    eq(p("a"), CompValue::Bool(true)),
                    not(eq(p("b"), CompValue::Bool(false)))
                ),
                and(eq(p("c"), CompValue::Null), pr(p("d")))
            )
        );
        assert_eq!(ok("a eq true"), eq(p("a"), CompValue::Bool(true)));
        assert_eq!(ok("a eq false"), eq(p("a"), CompValue::Bool(false)));
        assert_eq!(ok("a eq null"), eq(p("a"), CompValue::Null));
    }

    #[test]
    fn precedence_and_associativity() {
        let (a, b, c) = (eq(p("a"), n(1)), eq(p("b"), n(2)), eq(p("c"), n(3)));
        assert_eq!(
            ok("a eq 1 or b eq 2 and c eq 3"),
            or(a.clone(), and(b.clone(), c.clone()))
        );
        assert_eq!(
            ok("a eq 1 and b eq 2 or c eq 3"),
            or(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            ok("a eq 1 and b eq 2 and c eq 3"),
            and(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            ok("a eq 1 or b eq 2 or c eq 3"),
            or(or(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            ok("a eq 1 and b eq 2 or c eq 3 and a eq 1"),
            or(and(a.clone(), b.clone()), and(c.clone(), a.clone()))
        );
    }

    #[test]
    fn grouping() {
        let (a, b, c) = (pr(p("a")), pr(p("b")), pr(p("c")));
        assert_eq!(
            ok("(a pr or b pr) and c pr"),
            and(or(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            ok("a pr and (b pr and c pr)"),
            and(a.clone(), and(b.clone(), c.clone()))
        );
        assert_eq!(ok("((a pr))"), a.clone());
        assert_eq!(ok("( a pr )"), a.clone());
        assert_eq!(ok("a pr and(b pr)"), and(a.clone(), b.clone()));
    }

    #[test]
    fn not_expressions() {
        assert_eq!(ok("not (a pr)"), not(pr(p("a"))));
        assert_eq!(ok("not(a pr)"), not(pr(p("a"))));
        assert_eq!(ok("NOT\t(a pr)"), not(pr(p("a"))));
        assert_eq!(
            ok(
                "userType ne \"Employee\" and not (emails co \"example.com\" or emails.value co \"example.org\")"
            ),
            and(
                Filter::Compare(p("userType"), CompareOp::Ne, s("Employee")),
                not(or(
                    Filter::Compare(p("emails"), CompareOp::Co, s("example.com")),
                    Filter::Compare(ps("emails", "value"), CompareOp::Co, s("example.org")),
                ))
            )
        );
        assert_eq!(ok("not (not (a pr))"), not(not(pr(p("a")))));
    }

    #[test]
    fn whitespace() {
        assert_eq!(
            ok(" \t\n userName \t eq\n\"x\"  and\tb pr \r\n"),
            and(eq(p("userName"), s("x")), pr(p("b")))
        );
        assert_eq!(ok("a eq\"x\""), eq(p("a"), s("x")));
        assert_eq!(
            ok("a eq \"x\"and b pr"),
            and(eq(p("a"), s("x")), pr(p("b")))
        );
    }

    // ---- value paths ----

    #[test]
    fn value_paths() {
        assert_eq!(
            ok("emails[type eq \"work\" and value co \"@x\"]"),
            vp(
                p("emails"),
                and(
                    eq(p("type"), s("work")),
                    Filter::Compare(p("value"), CompareOp::Co, s("@x"))
                )
            )
        );
        assert_eq!(
            ok("members[value eq \"x\"]"),
            vp(p("members"), eq(p("value"), s("x")))
        );
        assert_eq!(
            ok("emails[type eq \"work\" or not (primary eq true)] and userName pr"),
            and(
                vp(
                    p("emails"),
                    or(
                        eq(p("type"), s("work")),
                        not(eq(p("primary"), CompValue::Bool(true)))
                    )
                ),
                pr(p("userName"))
            )
        );
        assert_eq!(
            ok("emails[ (type eq \"a\" or type eq \"b\") and primary pr ]"),
            vp(
                p("emails"),
                and(
                    or(eq(p("type"), s("a")), eq(p("type"), s("b"))),
                    pr(p("primary"))
                )
            )
        );
        assert_eq!(ok("emails [type pr]"), vp(p("emails"), pr(p("type"))));
        assert_eq!(
            ok("not (emails[type pr])"),
            not(vp(p("emails"), pr(p("type"))))
        );
        assert_eq!(
            ok(&format!("{ENTERPRISE}:manager[value eq \"x\"]")),
            vp(pu(ENTERPRISE, "manager", None), eq(p("value"), s("x")))
        );
    }

    #[test]
    fn urn_paths() {
        assert_eq!(
            ok(&format!("{ENTERPRISE}:manager.value eq \"26118915-6090\"")),
            eq(pu(ENTERPRISE, "manager", Some("value")), s("26118915-6090"))
        );
        assert_eq!(
            ok(&format!("{ENTERPRISE}:employeeNumber eq \"701984\"")),
            eq(pu(ENTERPRISE, "employeeNumber", None), s("701984"))
        );
        assert_eq!(
            ok("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName sw \"J\""),
            Filter::Compare(
                pu(
                    "urn:ietf:params:scim:schemas:core:2.0:User",
                    "name",
                    Some("familyName")
                ),
                CompareOp::Sw,
                s("J")
            )
        );
        assert_eq!(
            ok("URN:Example:Thing:x pr"),
            pr(pu("URN:Example:Thing", "x", None))
        );
        assert_eq!(
            parse_attr_path(&format!("{ENTERPRISE}:manager")),
            Ok(pu(ENTERPRISE, "manager", None))
        );
    }

    #[test]
    fn dollar_ref() {
        assert_eq!(
            ok("members[$ref eq \"u\"]"),
            vp(p("members"), eq(p("$ref"), s("u")))
        );
        assert_eq!(ok("manager.$ref pr"), pr(ps("manager", "$ref")));
        assert_eq!(ok("$REF pr"), pr(p("$REF")));
        fails("$ pr", "invalid attribute name \"$\"");
        fails("$1 pr", "invalid attribute name \"$1\"");
    }

    // ---- values ----

    #[test]
    fn strings() {
        assert_eq!(
            ok(r#"a eq "q\"b\\s\/f\bx\fy\nz\rw\t""#),
            eq(p("a"), s("q\"b\\s/f\u{8}x\u{c}y\nz\rw\t"))
        );
        assert_eq!(ok(r#"a eq "\u00e9\u00C9""#), eq(p("a"), s("éÉ")));
        assert_eq!(ok(r#"a eq "\ud83d\ude00!""#), eq(p("a"), s("😀!")));
        assert_eq!(
            ok("a eq \"é😀 ( ) [ ] and\""),
            eq(p("a"), s("é😀 ( ) [ ] and"))
        );
        assert_eq!(ok("a eq \"\""), eq(p("a"), s("")));
        assert_eq!(
            ok(r#"a co "@example.com""#),
            Filter::Compare(p("a"), CompareOp::Co, s("@example.com"))
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(ok("a gt 0"), Filter::Compare(p("a"), CompareOp::Gt, n(0)));
        assert_eq!(ok("a eq -5"), eq(p("a"), n(-5)));
        assert_eq!(ok("a eq 1.5"), eq(p("a"), f64v(1.5)));
        assert_eq!(ok("a eq 1e3"), eq(p("a"), f64v(1000.0)));
        assert_eq!(ok("a eq -2.5E-3"), eq(p("a"), f64v(-0.0025)));
        assert_eq!(ok("a eq 1E+2"), eq(p("a"), f64v(100.0)));
        assert_eq!(
            ok("a eq 18446744073709551615"),
            eq(p("a"), CompValue::Number(u64::MAX.into()))
        );
        assert_eq!(
            ok("a eq -9223372036854775808"),
            eq(p("a"), CompValue::Number(i64::MIN.into()))
        );
        assert_eq!(
            ok("a eq 18446744073709551616"),
            eq(p("a"), f64v(18446744073709551616.0))
        );
        assert_eq!(ok("(a eq 5)"), eq(p("a"), n(5)));
    }

    #[test]
    fn numbers_agree_with_serde_json() {
        for lexeme in [
            "0",
            "-0",
            "7",
            "-7",
            "1.5",
            "-0.0",
            "1e3",
            "1E-3",
            "123456789012",
            "-123456789012",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "0.1",
            "2.5e10",
        ] {
            let ours = json_number(lexeme).unwrap();
            let theirs: Number = serde_json::from_str(lexeme).unwrap();
            assert_eq!(ours, theirs, "{lexeme}");
            assert!(is_json_number(lexeme), "{lexeme}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "--1", "1.2.3", "0x10", "1_000",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    // ---- PATCH paths and attribute paths ----

    #[test]
    fn patch_paths() {
        let parse = |s: &str| {
            let path = parse_patch_path(s).unwrap();
            assert_eq!(parse_patch_path(&path.to_string()), Ok(path.clone()));
            path
        };
        assert_eq!(
            parse("members[value eq \"2819c223\"]"),
            PatchPath {
                attr: p("members"),
                filter: Some(eq(p("value"), s("2819c223"))),
                sub: None
            }
        );
        assert_eq!(
            parse("emails[type eq \"work\"].value"),
            PatchPath {
                attr: p("emails"),
                filter: Some(eq(p("type"), s("work"))),
                sub: Some("value".into())
            }
        );
        assert_eq!(
            parse("name.familyName"),
            PatchPath {
                attr: ps("name", "familyName"),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            parse(&format!("{ENTERPRISE}:employeeNumber")),
            PatchPath {
                attr: pu(ENTERPRISE, "employeeNumber", None),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            parse(&format!("{ENTERPRISE}:manager.value")),
            PatchPath {
                attr: pu(ENTERPRISE, "manager", Some("value")),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            parse("addresses[type eq \"work\"].streetAddress"),
            PatchPath {
                attr: p("addresses"),
                filter: Some(eq(p("type"), s("work"))),
                sub: Some("streetAddress".into())
            }
        );
        assert_eq!(
            parse("members[value eq \"a\" or value eq \"b\"]"),
            PatchPath {
                attr: p("members"),
                filter: Some(or(eq(p("value"), s("a")), eq(p("value"), s("b")))),
                sub: None
            }
        );
        assert_eq!(
            parse("  userName  "),
            PatchPath {
                attr: p("userName"),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            parse("members[$ref eq \"x\"].$ref"),
            PatchPath {
                attr: p("members"),
                filter: Some(eq(p("$ref"), s("x"))),
                sub: Some("$ref".into())
            }
        );
    }

    #[test]
    fn patch_path_errors() {
        patch_fails("", "empty path");
        patch_fails("   ", "empty path");
        patch_fails("emails[type eq \"work\"].", "missing sub-attribute name");
        patch_fails(
            "emails[type eq \"work\"].1x",
            "invalid sub-attribute name \"1x\"",
        );
        patch_fails(
            "emails[type eq \"work\"].value.x",
            "invalid sub-attribute name \"value.x\"",
        );
        patch_fails("emails[type eq \"work\"] x", "trailing input \"x\"");
        patch_fails(
            "emails.value[type eq \"work\"]",
            "cannot follow the sub-attribute path \"emails.value\"",
        );
        patch_fails("emails[type eq \"work\"", "missing \"]\"");
        patch_fails("emails[x[y pr]]", "nested value path");
        patch_fails("name familyName", "trailing input \"familyName\"");
        patch_fails("1name", "invalid attribute name \"1name\"");
    }

    #[test]
    fn attr_paths() {
        assert_eq!(
            parse_attr_path("  name.familyName\t"),
            Ok(ps("name", "familyName"))
        );
        assert_eq!(parse_attr_path("userName"), Ok(p("userName")));
        let e = parse_attr_path("").unwrap_err();
        assert!(e.message.contains("empty attribute path"), "{e}");
        let e = parse_attr_path("emails[type pr]").unwrap_err();
        assert!(e.message.contains("trailing input \"[type pr]\""), "{e}");
        let e = parse_attr_path("a b").unwrap_err();
        assert!(e.message.contains("trailing input \"b\""), "{e}");
        let e = parse_attr_path("name.given.x").unwrap_err();
        assert!(
            e.message.contains("invalid sub-attribute name \"given.x\""),
            "{e}"
        );
    }

    // ---- errors ----

    #[test]
    fn empty_input() {
        let e = fails("", "empty filter");
        assert_eq!(e.position, 0);
        let e = fails("  \t ", "empty filter");
        assert_eq!(e.position, 4);
    }

    #[test]
    fn missing_value() {
        let e = fails("userName eq", "expected a value");
        assert_eq!(e.position, 11);
        fails("userName eq )", "after \"eq\"");
        fails("(userName eq)", "expected a value");
    }

    #[test]
    fn missing_or_unknown_operator() {
        let e = fails(
            "userName",
            "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after \"userName\"",
        );
        assert_eq!(e.position, 8);
        let e = fails(
            "userName foo \"x\"",
            "unknown operator \"foo\" after \"userName\"",
        );
        assert_eq!(e.position, 9);
        fails("userName equals \"x\"", "unknown operator \"equals\"");
        fails("userName(", "expected an operator");
        fails("userName eqnull", "unknown operator \"eqnull\"");
    }

    #[test]
    fn bad_values() {
        fails(
            "userName eq bjensen",
            "invalid value \"bjensen\" (strings must be in double quotes",
        );
        fails("a eq 01", "invalid number \"01\"");
        fails("a eq 1.", "invalid number \"1.\"");
        fails("a eq 1e", "invalid number \"1e\"");
        fails("a eq +1", "invalid number \"+1\"");
        fails("a eq 12abc", "invalid number \"12abc\"");
        fails("a eq 1e400", "out of range");
        fails("a eq truex", "invalid value \"truex\"");
    }

    #[test]
    fn bad_strings() {
        let e = fails("userName eq \"bjensen", "unterminated string");
        assert_eq!(e.position, 12);
        fails("a eq \"abc\\", "unterminated string");
        fails("a eq \"abc\\\"", "unterminated string");
        fails(r#"a eq "\x""#, "invalid escape \"\\x\"");
        fails(r#"a eq "\é""#, "invalid escape \"\\é\"");
        fails(r#"a eq "\u12""#, "expected 4 hex digits");
        fails(r#"a eq "\u12G4""#, "expected 4 hex digits");
        fails(r#"a eq "\ud83d""#, "high surrogate");
        fails(r#"a eq "\ud83dx""#, "high surrogate");
        fails(r#"a eq "\ud83d\u0041""#, "high surrogate");
        fails(r#"a eq "\ude00""#, "low surrogate");
        fails("a eq \"tab\there\"", "unescaped control character");
    }

    #[test]
    fn unbalanced_parens() {
        let e = fails("(a pr", "missing \")\" to close the \"(\" at position 0");
        assert_eq!(e.position, 5);
        let e = fails("a pr)", "unexpected \")\"");
        assert_eq!(e.position, 4);
        fails("(a pr))", "unexpected \")\"");
        fails(")", "unexpected \")\"");
        fails("()", "empty parentheses");
        fails("not ()", "empty parentheses");
        fails(
            "(a pr b pr)",
            "expected \"and\", \"or\" or \")\", found \"b\"",
        );
        fails("a pr]", "unexpected \"]\"");
        fails(
            "emails[type pr",
            "missing \"]\" to close the \"[\" at position 6",
        );
        fails(
            "emails[type pr)",
            "expected \"and\", \"or\" or \"]\", found \")\"",
        );
        fails("[type pr]", "expected an attribute name before \"[\"");
    }

    #[test]
    fn trailing_garbage() {
        let e = fails("userName eq \"x\" xyz", "trailing input \"xyz\"");
        assert_eq!(e.position, 16);
        fails("a pr b pr", "trailing input \"b pr\"");
        let long = format!("a pr {}", "x".repeat(100));
        fails(
            &long,
            "trailing input \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"...",
        );
    }

    #[test]
    fn dangling_logical_operator() {
        fails("a pr and", "expected a filter after \"and\"");
        fails("a pr or ", "expected a filter after \"or\"");
        fails("(", "expected a filter after \"(\"");
        fails("a pr and )", "unexpected \")\"");
        fails("\"x\" eq a", "found a string");
    }

    #[test]
    fn nested_value_path() {
        let e = fails("emails[type[value pr]]", "nested value path \"type\"[...]");
        assert_eq!(e.position, 11);
    }

    #[test]
    fn value_path_after_sub_attribute() {
        fails(
            "emails.value[type eq \"work\"]",
            "cannot follow the sub-attribute path \"emails.value\"",
        );
    }

    #[test]
    fn value_path_sub_attribute_is_read_as_and() {
        // Entra's matching-attribute filter (idp-behaviour.md §1.3).
        assert_eq!(
            parse_filter("emails[type eq \"work\"].value eq \"x\"").expect("parses"),
            parse_filter("emails[type eq \"work\" and value eq \"x\"]").expect("parses")
        );
        assert_eq!(
            parse_filter("emails[type eq \"work\"].value pr and userName eq \"a\"")
                .expect("parses"),
            parse_filter("emails[type eq \"work\" and value pr] and userName eq \"a\"")
                .expect("parses")
        );
        fails(
            "emails[type eq \"work\"]. eq \"x\"",
            "missing attribute name",
        );
        fails("emails[type eq \"work\"].value[a pr]", "nested value path");
        fails(
            "emails[type eq \"work\"].value.x eq \"y\"",
            "inside \"[...]\"",
        );
    }

    #[test]
    fn inner_paths_are_sub_attribute_names() {
        fails(
            "emails[emails.type eq \"work\"]",
            "sub-attribute name alone",
        );
        fails(
            &format!("emails[{ENTERPRISE}:type pr]"),
            "sub-attribute name alone",
        );
    }

    #[test]
    fn not_without_parens() {
        let e = fails("not a pr", "expected \"(\" after not");
        assert_eq!(e.position, 4);
        fails("not", "expected \"(\" after not");
        fails("a pr and NOT b pr", "expected \"(\" after not");
        fails("not[a pr]", "expected \"(\" after not");
    }

    #[test]
    fn deep_nesting() {
        let start = std::time::Instant::now();
        assert!(parse_filter(&"(".repeat(100_000)).is_err());
        fails(&"(".repeat(60_000), "nested too deeply");
        fails(&"not (".repeat(10_000), "nested too deeply");
        let mixed = format!("{}a pr{}", "(not (".repeat(40), "))".repeat(40));
        fails(&mixed, "nested too deeply");
        assert!(start.elapsed() < std::time::Duration::from_secs(2));

        let at_limit = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(ok(&at_limit), pr(p("a")));
        let over = format!(
            "{}a pr{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let e = fails(&over, "more than 64 levels");
        assert_eq!(e.position, MAX_DEPTH);
        let not_limit = format!("{}a pr{}", "not (".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse_filter(&not_limit).is_ok());
        let in_value_path = format!(
            "e[{}a pr{}]",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        assert!(parse_filter(&in_value_path).is_ok());
        let over_in_value_path =
            format!("e[{}a pr{}]", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        fails(&over_in_value_path, "nested too deeply");
    }

    #[test]
    fn long_chains_are_bounded() {
        let ok_chain = vec!["a pr"; MAX_TREE_DEPTH].join(" or ");
        ok(&ok_chain);
        let long_chain = vec!["a pr"; MAX_TREE_DEPTH + 1].join(" and ");
        fails(&long_chain, "too complex");
        let huge = vec!["a pr"; 7_000].join(" or ");
        assert!(huge.len() < MAX_INPUT_LEN);
        fails(&huge, "too complex");
    }

    #[test]
    fn input_too_long() {
        let long = format!("a eq \"{}\"", "x".repeat(MAX_INPUT_LEN));
        fails(&long, "too long");
        let e = parse_patch_path(&long).unwrap_err();
        assert!(e.message.contains("too long"));
        let e = parse_attr_path(&"a".repeat(MAX_INPUT_LEN + 1)).unwrap_err();
        assert!(e.message.contains("too long"));
        let exact = format!("a eq \"{}\"", "x".repeat(MAX_INPUT_LEN - 7));
        assert_eq!(exact.len(), MAX_INPUT_LEN);
        assert!(parse_filter(&exact).is_ok());
    }

    #[test]
    fn invalid_attribute_names() {
        let e = fails("1abc eq 1", "invalid attribute name \"1abc\"");
        assert_eq!(e.position, 0);
        fails("a!b pr", "invalid attribute name \"a!b\"");
        fails("user:name pr", "invalid attribute name \"user:name\"");
        fails("é pr", "invalid attribute name \"é\"");
        fails("a\"b pr", "invalid attribute name \"a\\\"b\"");
        fails(".x pr", "missing attribute name");
        fails("name. pr", "missing sub-attribute name");
        let e = fails("name.1x pr", "invalid sub-attribute name \"1x\"");
        assert_eq!(e.position, 5);
        fails("name.a.b pr", "invalid sub-attribute name \"a.b\"");
        fails("urn:x pr", "expected \"urn:<schema>:<attribute>\"");
        fails("urn::x pr", "expected \"urn:<schema>:<attribute>\"");
        fails("urn:a\"b:x pr", "invalid character '\"' in schema URN");
        let e = fails(
            &format!("{ENTERPRISE}:2x pr"),
            "invalid attribute name \"2x\"",
        );
        assert_eq!(e.position, ENTERPRISE.len() + 1);
        fails(&format!("{ENTERPRISE}: pr"), "missing attribute name");
    }

    #[test]
    fn error_display() {
        let e = parse_filter("a pr)").unwrap_err();
        assert_eq!(e.to_string(), "unexpected \")\" at position 4");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().contains("position 4"));
    }

    // ---- Display ----

    #[test]
    fn display_uses_minimal_parentheses() {
        let (a, b, c) = (pr(p("a")), eq(p("b"), s("x\"y")), pr(ps("c", "d")));
        let cases = [
            (
                or(a.clone(), and(b.clone(), c.clone())),
                "a pr or b eq \"x\\\"y\" and c.d pr",
            ),
            (
                and(or(a.clone(), b.clone()), c.clone()),
                "(a pr or b eq \"x\\\"y\") and c.d pr",
            ),
            (
                and(a.clone(), and(b.clone(), c.clone())),
                "a pr and (b eq \"x\\\"y\" and c.d pr)",
            ),
            (
                and(and(a.clone(), b.clone()), c.clone()),
                "a pr and b eq \"x\\\"y\" and c.d pr",
            ),
            (
                or(a.clone(), or(b.clone(), c.clone())),
                "a pr or (b eq \"x\\\"y\" or c.d pr)",
            ),
            (
                or(or(a.clone(), b.clone()), c.clone()),
                "a pr or b eq \"x\\\"y\" or c.d pr",
            ),
            (
                and(a.clone(), or(b.clone(), c.clone())),
                "a pr and (b eq \"x\\\"y\" or c.d pr)",
            ),
            (not(or(a.clone(), c.clone())), "not (a pr or c.d pr)"),
            (
                vp(p("emails"), and(pr(p("type")), not(pr(p("value"))))),
                "emails[type pr and not (value pr)]",
            ),
            (
                Filter::Compare(
                    pu(ENTERPRISE, "manager", Some("value")),
                    CompareOp::Ge,
                    n(-3),
                ),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value ge -3",
            ),
        ];
        for (tree, text) in cases {
            assert_eq!(tree.to_string(), text);
            assert_eq!(parse_filter(text), Ok(tree));
        }
        let path = PatchPath {
            attr: p("emails"),
            filter: Some(eq(p("type"), s("work"))),
            sub: Some("value".into()),
        };
        assert_eq!(path.to_string(), "emails[type eq \"work\"].value");
    }

    // ---- property tests ----

    fn arb_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "userName", "emails", "value", "type", "$ref", "x-y_z9", "Andy", "NOTE", "a", "Q",
        ])
        .prop_map(str::to_owned)
    }

    fn arb_urn() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            ENTERPRISE,
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "URN:example:x.y:1",
            "urn:a:b",
        ])
        .prop_map(str::to_owned)
    }

    /// Any path a filter may use outside `[...]`.
    fn arb_path() -> impl Strategy<Value = AttrPath> {
        (
            prop::option::of(arb_urn()),
            arb_name(),
            prop::option::of(arb_name()),
        )
            .prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
    }

    /// The path before `[...]`: no sub-attribute.
    fn arb_outer_path() -> impl Strategy<Value = AttrPath> {
        (prop::option::of(arb_urn()), arb_name()).prop_map(|(urn, name)| AttrPath {
            urn,
            name,
            sub: None,
        })
    }

    /// A path inside `[...]`: a bare sub-attribute name.
    fn arb_inner_path() -> impl Strategy<Value = AttrPath> {
        arb_name().prop_map(|name| p(&name))
    }

    /// Strings as the parser hands them out: in NFC.
    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z \"\\\\/é😀\t\n()\\[\\]]{0,12}", any::<String>(),]
            .prop_map(|s| crate::scim::text::canonical(&s).into_owned())
    }

    fn arb_number() -> impl Strategy<Value = Number> {
        prop_oneof![
            any::<u64>().prop_map(Number::from),
            any::<i64>().prop_map(Number::from),
            any::<f64>().prop_filter_map("finite", Number::from_f64),
            (-1000i32..1000).prop_filter_map("finite", |i| Number::from_f64(f64::from(i) / 8.0)),
        ]
    }

    fn arb_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            Just(CompValue::Null),
            any::<bool>().prop_map(CompValue::Bool),
            arb_number().prop_map(CompValue::Number),
            arb_string().prop_map(CompValue::Str),
        ]
    }

    fn arb_op() -> impl Strategy<Value = CompareOp> {
        prop::sample::select(vec![
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ])
    }

    fn arb_leaf(path: BoxedStrategy<AttrPath>) -> BoxedStrategy<Filter> {
        prop_oneof![
            path.clone().prop_map(Filter::Present),
            (path, arb_op(), arb_value()).prop_map(|(p, op, v)| Filter::Compare(p, op, v)),
        ]
        .boxed()
    }

    fn arb_tree(leaf: BoxedStrategy<Filter>, depth: u32) -> BoxedStrategy<Filter> {
        leaf.prop_recursive(depth, 24, 2, |sub| {
            prop_oneof![
                (sub.clone(), sub.clone()).prop_map(|(a, b)| and(a, b)),
                (sub.clone(), sub.clone()).prop_map(|(a, b)| or(a, b)),
                sub.prop_map(not),
            ]
        })
        .boxed()
    }

    /// Filters valid inside `[...]`.
    fn arb_inner_filter() -> BoxedStrategy<Filter> {
        arb_tree(arb_leaf(arb_inner_path().boxed()), 3)
    }

    fn arb_filter() -> BoxedStrategy<Filter> {
        let leaf = prop_oneof![
            3 => arb_leaf(arb_path().boxed()),
            1 => (arb_outer_path(), arb_inner_filter()).prop_map(|(p, f)| vp(p, f)),
        ]
        .boxed();
        arb_tree(leaf, 4)
    }

    fn arb_patch_path() -> impl Strategy<Value = PatchPath> {
        prop_oneof![
            arb_path().prop_map(|attr| PatchPath {
                attr,
                filter: None,
                sub: None
            }),
            (
                arb_outer_path(),
                arb_inner_filter(),
                prop::option::of(arb_name())
            )
                .prop_map(|(attr, filter, sub)| PatchPath {
                    attr,
                    filter: Some(filter),
                    sub
                }),
        ]
    }

    /// Text built from filter-like fragments, to reach deep into the parser.
    fn arb_filterish() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "a",
                "emails",
                "name.given",
                " ",
                "\t",
                "(",
                ")",
                "[",
                "]",
                "\"",
                "\\",
                "\\u",
                "d83d",
                "\\ude00",
                "and",
                "or",
                "not",
                "NOT",
                "pr",
                "eq",
                "Co",
                "1",
                "-",
                ".",
                "e",
                "urn:",
                ":",
                "$ref",
                "true",
                "null",
                "é",
                "😀",
                "0x",
                "\"x\"",
            ]),
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    fn check_no_panic(input: &str) {
        let filter = parse_filter(input);
        let path = parse_patch_path(input);
        let attr = parse_attr_path(input);
        for e in [
            filter.as_ref().err(),
            path.as_ref().err(),
            attr.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(e.position <= input.len(), "{e} for {input:?}");
        }
        if let Ok(f) = filter {
            assert_eq!(parse_filter(&f.to_string()), Ok(f));
        }
        if let Ok(p) = path {
            assert_eq!(parse_patch_path(&p.to_string()), Ok(p));
        }
        if let Ok(a) = attr {
            assert_eq!(parse_attr_path(&a.to_string()), Ok(a));
        }
    }

    proptest! {
        #[test]
        fn filter_round_trips(f in arb_filter()) {
            let text = f.to_string();
            prop_assert_eq!(parse_filter(&text), Ok(f), "printed as {}", text);
        }

        #[test]
        fn patch_path_round_trips(path in arb_patch_path()) {
            let text = path.to_string();
            prop_assert_eq!(parse_patch_path(&text), Ok(path), "printed as {}", text);
        }

        #[test]
        fn attr_path_round_trips(path in arb_path()) {
            prop_assert_eq!(parse_attr_path(&path.to_string()), Ok(path));
        }

        #[test]
        fn never_panics_on_arbitrary_text(input in ".{0,200}") {
            check_no_panic(&input);
        }

        #[test]
        fn never_panics_on_filterish_text(input in arb_filterish()) {
            check_no_panic(&input);
        }
    }
}
