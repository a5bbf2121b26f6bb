//! LDAP search filters (RFC 4515 strings) turned into the tags of RFC 4511's `Filter`.
//!
//! `parse` (exported as `parse_filter`) reads the filter of every search request, the
//! Assertion control's filter included; `parse_matched_values` reads the Matched Values
//! control's list of items (RFC 3876). Both use a hand-written, single-pass reader (change 8
//! in `PATCHED.md`) that returns exactly what upstream's nom grammar, kept in [`reference`],
//! returns for every input, its oddities included: the sidecar's tests compare the two.

#![allow(clippy::blocks_in_conditions)]
#![allow(clippy::result_unit_err)]

use lber::common::TagClass;
use lber::structures::{Boolean, ExplicitTag, OctetString, Sequence, Tag};

use nom::character::is_hex_digit;

/// Reads a filter: one parenthesised filter, or one bare item such as `cn=x` (upstream
/// accepts both). `Err(())` for anything upstream's grammar refuses.
#[doc(hidden)]
pub fn parse(input: impl AsRef<[u8]>) -> Result<Tag, ()> {
    let mut r = Reader::new(input.as_ref());
    let tag = if r.peek() == Some(b'(') {
        r.filter()?
    } else {
        r.item()?
    };
    r.end()?;
    Ok(tag)
}

/// Reads a Matched Values filter (RFC 3876): one or more parenthesised items inside one pair
/// of parentheses, `((cn=a)(sn=b*))`, into a SEQUENCE of them.
pub fn parse_matched_values(input: impl AsRef<[u8]>) -> Result<Tag, ()> {
    let mut r = Reader::new(input.as_ref());
    r.expect(b'(')?;
    let mut items = Vec::new();
    loop {
        r.expect(b'(')?;
        items.push(r.item()?);
        r.expect(b')')?;
        if r.peek() != Some(b'(') {
            break;
        }
    }
    r.expect(b')')?;
    r.end()?;
    Ok(Tag::Sequence(Sequence {
        inner: items,
        ..Default::default()
    }))
}

const AND_FILT: u64 = 0;
const OR_FILT: u64 = 1;
const NOT_FILT: u64 = 2;

const EQ_MATCH: u64 = 3;
const SUBSTR_MATCH: u64 = 4;
const GTE_MATCH: u64 = 5;
const LTE_MATCH: u64 = 6;
const PRES_MATCH: u64 = 7;
const APPROX_MATCH: u64 = 8;
const EXT_MATCH: u64 = 9;

const SUB_INITIAL: u64 = 0;
const SUB_ANY: u64 = 1;
const SUB_FINAL: u64 = 2;

// === The reader ===
//
// Upstream's grammar backtracks only in `item` (equality, then ordering and approximate, then
// the two extensible forms, each from the same position), and only one of them can succeed
// there: every form but `:dn:rule:=` starts with the same attribute description, and the
// byte after it picks the form (`=`; `>=`, `<=`, `~=`; `:`). So the reader reads the
// description once and follows that byte. Anywhere else a failed part fails the whole
// filter (a failed child ends `&`'s list at a `(`, where `)` is required), so the reader
// stops at the first error.

/// A position in the filter string.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Reader { input, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.input.get(self.pos + ahead).copied()
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Result<(), ()> {
        if self.eat(byte) { Ok(()) } else { Err(()) }
    }

    /// Consumes `bytes` if they are next.
    fn eat_all(&mut self, bytes: &[u8]) -> bool {
        let found = self.input[self.pos..].starts_with(bytes);
        if found {
            self.pos += bytes.len();
        }
        found
    }

    fn end(&self) -> Result<(), ()> {
        if self.pos == self.input.len() {
            Ok(())
        } else {
            Err(())
        }
    }

    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
    }

    /// `(` then `&` or `|` and any number of filters (none is upstream's "absolute true" and
    /// "absolute false", RFC 4526), `!` and exactly one filter, or an item; then `)`.
    fn filter(&mut self) -> Result<Tag, ()> {
        self.expect(b'(')?;
        let tag = match self.peek() {
            Some(b'&') => {
                self.pos += 1;
                context_sequence(AND_FILT, self.filter_list()?)
            }
            Some(b'|') => {
                self.pos += 1;
                context_sequence(OR_FILT, self.filter_list()?)
            }
            Some(b'!') => {
                self.pos += 1;
                Tag::ExplicitTag(ExplicitTag {
                    class: TagClass::Context,
                    id: NOT_FILT,
                    inner: Box::new(self.filter()?),
                })
            }
            _ => self.item()?,
        };
        self.expect(b')')?;
        Ok(tag)
    }

    fn filter_list(&mut self) -> Result<Vec<Tag>, ()> {
        let mut filters = Vec::new();
        while self.peek() == Some(b'(') {
            filters.push(self.filter()?);
        }
        Ok(filters)
    }

    /// One comparison, without parentheses.
    fn item(&mut self) -> Result<Tag, ()> {
        if self.peek() == Some(b':') {
            return self.extensible(None);
        }
        let attr = self.attribute_description().ok_or(())?;
        match (self.peek(), self.peek_at(1)) {
            (Some(b'='), _) => {
                self.pos += 1;
                self.equality_or_substrings(attr)
            }
            (Some(op @ (b'>' | b'<' | b'~')), Some(b'=')) => {
                self.pos += 2;
                let id = match op {
                    b'>' => GTE_MATCH,
                    b'<' => LTE_MATCH,
                    _ => APPROX_MATCH,
                };
                let value = self.value()?;
                Ok(context_sequence(id, vec![octets(attr), octets(value)]))
            }
            (Some(b':'), _) => self.extensible(Some(attr)),
            _ => Err(()),
        }
    }

    /// The value after `attr=`: an equality without `*`, a presence (`*` alone), or
    /// substrings. Upstream refuses an empty part between two `*` (`a=x**y`, `a=**`), and a
    /// `*` at the end only ends the last part (`a=x*` has an initial part alone).
    fn equality_or_substrings(&mut self, attr: &'a [u8]) -> Result<Tag, ()> {
        let initial = self.value()?;
        if self.peek() != Some(b'*') {
            return Ok(context_sequence(
                EQ_MATCH,
                vec![octets(attr), octets(initial)],
            ));
        }
        let mut parts = Vec::new();
        if !initial.is_empty() {
            parts.push(context_octets(SUB_INITIAL, initial));
        }
        while self.eat(b'*') {
            let part = self.value()?;
            let more = self.peek() == Some(b'*');
            if part.is_empty() {
                if more {
                    return Err(());
                }
                break;
            }
            parts.push(context_octets(if more { SUB_ANY } else { SUB_FINAL }, part));
        }
        if parts.is_empty() {
            // Only `*`: nothing before it and nothing after.
            return Ok(context_octets(PRES_MATCH, attr.to_vec()));
        }
        let parts = Tag::Sequence(Sequence {
            inner: parts,
            ..Default::default()
        });
        Ok(context_sequence(SUBSTR_MATCH, vec![octets(attr), parts]))
    }

    /// From the first `:` of `attr:dn:rule:=value`, where `:dn` and `:rule` are each optional
    /// after an attribute and the rule is required without one. `:dn` is taken whenever those
    /// three bytes come next, as upstream takes it: `cn:dnQualifier:=x` and `:dnrule:=x` are
    /// refused, not read as a rule named `dnQualifier` or `dnrule`.
    fn extensible(&mut self, attr: Option<&'a [u8]>) -> Result<Tag, ()> {
        let dn = self.eat_all(b":dn");
        let rule = if attr.is_some() {
            self.matching_rule()
        } else {
            self.expect(b':')?;
            Some(self.attribute_type().ok_or(())?)
        };
        if !self.eat_all(b":=") {
            return Err(());
        }
        let value = self.value()?;
        let mut inner = Vec::with_capacity(4);
        if let Some(rule) = rule {
            inner.push(context_octets(1, rule.to_vec()));
        }
        if let Some(attr) = attr {
            inner.push(context_octets(2, attr.to_vec()));
        }
        inner.push(context_octets(3, value));
        if dn {
            inner.push(Tag::Boolean(Boolean {
                class: TagClass::Context,
                id: 4,
                inner: true,
            }));
        }
        Ok(context_sequence(EXT_MATCH, inner))
    }

    /// `:rule` if a `:` and an attribute type come next; otherwise nothing is consumed.
    fn matching_rule(&mut self) -> Option<&'a [u8]> {
        if self.peek() != Some(b':') {
            return None;
        }
        self.pos += 1;
        let rule = self.attribute_type();
        if rule.is_none() {
            self.pos -= 1;
        }
        rule
    }

    /// An attribute type and its options (`cn;lang-en`). An option is one or more letters,
    /// digits and hyphens; a `;` not followed by one is left unread (and the item is then
    /// refused).
    fn attribute_description(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        self.attribute_type()?;
        while self.peek() == Some(b';') && self.peek_at(1).is_some_and(is_option_char) {
            self.pos += 1;
            self.skip_while(is_option_char);
        }
        Some(&self.input[start..self.pos])
    }

    /// A numeric OID (`2.5.4.3`) or a name (a letter, then letters, digits and hyphens).
    /// Nothing is consumed when neither starts here.
    fn attribute_type(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        match self.peek()? {
            b'0'..=b'9' => {
                self.number()?;
                // A `.` not followed by a number ends the OID before the `.`.
                while self.peek() == Some(b'.') {
                    self.pos += 1;
                    if self.number().is_none() {
                        self.pos -= 1;
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() => self.skip_while(is_option_char),
            _ => return None,
        }
        Some(&self.input[start..self.pos])
    }

    /// All the digits here, if there are some and they have no leading zero (`0` is a
    /// number, `05` is not). Nothing is consumed otherwise.
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        self.skip_while(|c| c.is_ascii_digit());
        let digits = &self.input[start..self.pos];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            self.pos = start;
            return None;
        }
        Some(())
    }

    /// An assertion value: every byte up to the next NUL, `(`, `)` or `*` (upstream takes any
    /// other byte, not only UTF-8), with `\` and two hex digits standing for one byte. A `\`
    /// without two hex digits after it, within those bytes, refuses the filter.
    fn value(&mut self) -> Result<Vec<u8>, ()> {
        let rest = &self.input[self.pos..];
        let mut escaped = false;
        let len = rest
            .iter()
            .position(|&c| {
                escaped |= c == b'\\';
                !is_value_char(c)
            })
            .unwrap_or(rest.len());
        let raw = &rest[..len];
        self.pos += len;
        if !escaped {
            return Ok(raw.to_vec());
        }
        let mut value = Vec::with_capacity(len);
        let mut bytes = raw.iter();
        while let Some(&c) = bytes.next() {
            if c == b'\\' {
                let high = bytes.next().and_then(|&c| hex(c)).ok_or(())?;
                let low = bytes.next().and_then(|&c| hex(c)).ok_or(())?;
                value.push(high << 4 | low);
            } else {
                value.push(c);
            }
        }
        Ok(value)
    }
}

fn is_value_char(c: u8) -> bool {
    c != 0 && c != b'(' && c != b')' && c != b'*'
}

fn is_option_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn octets(value: impl Into<Vec<u8>>) -> Tag {
    Tag::OctetString(OctetString {
        inner: value.into(),
        ..Default::default()
    })
}

fn context_octets(id: u64, value: Vec<u8>) -> Tag {
    Tag::OctetString(OctetString {
        class: TagClass::Context,
        id,
        inner: value,
    })
}

fn context_sequence(id: u64, inner: Vec<Tag>) -> Tag {
    Tag::Sequence(Sequence {
        class: TagClass::Context,
        id,
        inner,
    })
}

/// Upstream's decoder of `\NN` escapes, one byte at a time: `ldap_unescape` (in `util.rs`) and
/// the reference grammar use it.
pub(crate) enum Unescaper {
    WantFirst,
    WantSecond(u8),
    Value(u8),
    Error,
}

impl Unescaper {
    pub(crate) fn feed(&self, c: u8) -> Unescaper {
        match *self {
            Unescaper::Error => Unescaper::Error,
            Unescaper::WantFirst => {
                if is_hex_digit(c) {
                    Unescaper::WantSecond(
                        c - if c <= b'9' {
                            b'0'
                        } else {
                            (c & 0x20) + b'A' - 10
                        },
                    )
                } else {
                    Unescaper::Error
                }
            }
            Unescaper::WantSecond(partial) => {
                if is_hex_digit(c) {
                    Unescaper::Value(
                        (partial << 4)
                            + (c - if c <= b'9' {
                                b'0'
                            } else {
                                (c & 0x20) + b'A' - 10
                            }),
                    )
                } else {
                    Unescaper::Error
                }
            }
            Unescaper::Value(_v) => {
                if c != b'\\' {
                    Unescaper::Value(c)
                } else {
                    Unescaper::WantFirst
                }
            }
        }
    }
}

// === Upstream's parser ===

/// Upstream's nom grammar, unchanged, kept so that the sidecar's tests can check `parse` and
/// `parse_matched_values` against it on every input (change 8 in `PATCHED.md`). Nothing else
/// calls it.
#[doc(hidden)]
pub mod reference {
    use super::{
        AND_FILT, APPROX_MATCH, EQ_MATCH, EXT_MATCH, GTE_MATCH, LTE_MATCH, NOT_FILT, OR_FILT,
        PRES_MATCH, SUB_ANY, SUB_FINAL, SUB_INITIAL, SUBSTR_MATCH, Unescaper,
    };
    use lber::common::TagClass;
    use lber::structures::{Boolean, ExplicitTag, OctetString, Sequence, Tag};

    use nom::IResult;
    use nom::branch::alt;
    use nom::bytes::complete::{tag, take_while, take_while1};
    use nom::character::complete::digit1;
    use nom::character::{is_alphabetic, is_alphanumeric};
    use nom::combinator::{map, map_res, opt, recognize, verify};
    use nom::multi::{fold_many0, many0, many1};
    use nom::number::complete::be_u8;
    use nom::sequence::{delimited, preceded};

    /// Upstream's `parse`.
    pub fn parse(input: impl AsRef<[u8]>) -> Result<Tag, ()> {
        match filtexpr(input.as_ref()) {
            Ok((r, t)) => {
                if r.is_empty() {
                    Ok(t)
                } else {
                    Err(())
                }
            }
            _ => Err(()),
        }
    }

    /// Upstream's `parse_matched_values`.
    pub fn parse_matched_values(input: impl AsRef<[u8]>) -> Result<Tag, ()> {
        match mv_filtexpr(input.as_ref()) {
            Ok((r, t)) => {
                if r.is_empty() {
                    Ok(t)
                } else {
                    Err(())
                }
            }
            _ => Err(()),
        }
    }

    fn filtexpr(i: &[u8]) -> IResult<&[u8], Tag> {
        alt((filter, item))(i)
    }

    fn filter(i: &[u8]) -> IResult<&[u8], Tag> {
        delimited(tag(b"("), filtercomp, tag(b")"))(i)
    }

    fn filtercomp(i: &[u8]) -> IResult<&[u8], Tag> {
        alt((and, or, not, item))(i)
    }

    fn filterlist(i: &[u8]) -> IResult<&[u8], Vec<Tag>> {
        many0(filter)(i)
    }

    fn mv_filtexpr(i: &[u8]) -> IResult<&[u8], Tag> {
        delimited(tag(b"("), mv_filterlist, tag(b")"))(i)
    }

    fn mv_filteritems(i: &[u8]) -> IResult<&[u8], Vec<Tag>> {
        many1(delimited(tag(b"("), item, tag(b")")))(i)
    }

    fn mv_filterlist(i: &[u8]) -> IResult<&[u8], Tag> {
        map(mv_filteritems, |tagv: Vec<Tag>| -> Tag {
            Tag::Sequence(Sequence {
                inner: tagv,
                ..Default::default()
            })
        })(i)
    }

    fn and(i: &[u8]) -> IResult<&[u8], Tag> {
        map(preceded(tag(b"&"), filterlist), |tagv: Vec<Tag>| -> Tag {
            Tag::Sequence(Sequence {
                class: TagClass::Context,
                id: AND_FILT,
                inner: tagv,
            })
        })(i)
    }

    fn or(i: &[u8]) -> IResult<&[u8], Tag> {
        map(preceded(tag(b"|"), filterlist), |tagv: Vec<Tag>| -> Tag {
            Tag::Sequence(Sequence {
                class: TagClass::Context,
                id: OR_FILT,
                inner: tagv,
            })
        })(i)
    }

    fn not(i: &[u8]) -> IResult<&[u8], Tag> {
        map(preceded(tag(b"!"), filter), |tag: Tag| -> Tag {
            Tag::ExplicitTag(ExplicitTag {
                class: TagClass::Context,
                id: NOT_FILT,
                inner: Box::new(tag),
            })
        })(i)
    }

    fn item(i: &[u8]) -> IResult<&[u8], Tag> {
        alt((eq, non_eq, extensible))(i)
    }

    // Any byte in the assertion value may be represented by \NN, where N is a hex digit.
    // Some characters must be represented in this way: parentheses, asterisk and backslash
    // itself.
    fn unescaped(i: &[u8]) -> IResult<&[u8], Vec<u8>> {
        map_res(
            fold_many0(
                verify(be_u8, is_value_char),
                || (Unescaper::Value(0), Vec::new()),
                |(mut u, mut vec): (Unescaper, Vec<_>), c: u8| {
                    u = u.feed(c);
                    if let Unescaper::Value(c) = u {
                        vec.push(c);
                    }
                    (u, vec)
                },
            ),
            |(u, vec): (Unescaper, Vec<_>)| -> Result<Vec<u8>, ()> {
                if let Unescaper::Value(_) = u {
                    Ok(vec)
                } else {
                    Err(())
                }
            },
        )(i)
    }

    fn is_value_char(&c: &u8) -> bool {
        c != 0 && c != b'(' && c != b')' && c != b'*'
    }

    fn non_eq(i: &[u8]) -> IResult<&[u8], Tag> {
        let (i, attr) = attributedescription(i)?;
        let (i, filterop) = alt((tag(b">="), tag(b"<="), tag("~=")))(i)?;
        let (i, value) = unescaped(i)?;
        let tag = Tag::Sequence(Sequence {
            class: TagClass::Context,
            id: filtertag(filterop),
            inner: vec![
                Tag::OctetString(OctetString {
                    inner: attr.to_vec(),
                    ..Default::default()
                }),
                Tag::OctetString(OctetString {
                    inner: value,
                    ..Default::default()
                }),
            ],
        });
        Ok((i, tag))
    }

    fn filtertag(filterop: &[u8]) -> u64 {
        match filterop {
            b">=" => GTE_MATCH,
            b"<=" => LTE_MATCH,
            b"~=" => APPROX_MATCH,
            _ => unimplemented!(),
        }
    }

    fn eq(i: &[u8]) -> IResult<&[u8], Tag> {
        let (i, attr) = attributedescription(i)?;
        let (i, _) = tag(b"=")(i)?;
        let (i, initial) = unescaped(i)?;
        let (i, mid_final) = map_res(
            many0(preceded(tag(b"*"), unescaped)),
            |v: Vec<Vec<u8>>| -> Result<Vec<Vec<u8>>, ()> {
                if v.iter().enumerate().fold(false, |acc, (n, ve)| {
                    acc || ve.is_empty() && n + 1 != v.len()
                }) {
                    Err(())
                } else {
                    Ok(v)
                }
            },
        )(i)?;
        let tag = if mid_final.is_empty() {
            // simple equality, no asterisks in assertion value
            Tag::Sequence(Sequence {
                class: TagClass::Context,
                id: EQ_MATCH,
                inner: vec![
                    Tag::OctetString(OctetString {
                        inner: attr.to_vec(),
                        ..Default::default()
                    }),
                    Tag::OctetString(OctetString {
                        inner: initial,
                        ..Default::default()
                    }),
                ],
            })
        } else if initial.is_empty() && mid_final.len() == 1 && mid_final[0].is_empty() {
            // presence, single asterisk in assertion value
            Tag::OctetString(OctetString {
                class: TagClass::Context,
                id: PRES_MATCH,
                inner: attr.to_vec(),
            })
        } else {
            // substring match
            let mut inner = vec![];
            if !initial.is_empty() {
                inner.push(Tag::OctetString(OctetString {
                    class: TagClass::Context,
                    id: SUB_INITIAL,
                    inner: initial,
                }));
            }
            let n = mid_final.len();
            for (i, sub_elem) in mid_final.into_iter().enumerate() {
                if sub_elem.is_empty() {
                    break;
                }
                inner.push(Tag::OctetString(OctetString {
                    class: TagClass::Context,
                    id: if i + 1 != n { SUB_ANY } else { SUB_FINAL },
                    inner: sub_elem,
                }));
            }
            Tag::Sequence(Sequence {
                class: TagClass::Context,
                id: SUBSTR_MATCH,
                inner: vec![
                    Tag::OctetString(OctetString {
                        inner: attr.to_vec(),
                        ..Default::default()
                    }),
                    Tag::Sequence(Sequence {
                        inner,
                        ..Default::default()
                    }),
                ],
            })
        };
        Ok((i, tag))
    }

    fn extensible(i: &[u8]) -> IResult<&[u8], Tag> {
        alt((attr_dn_mrule, dn_mrule))(i)
    }

    fn attr_dn_mrule(i: &[u8]) -> IResult<&[u8], Tag> {
        let (i, attr) = attributedescription(i)?;
        let (i, dn) = opt(tag(b":dn"))(i)?;
        let (i, mrule) = opt(preceded(tag(b":"), attributetype))(i)?;
        let (i, _) = tag(b":=")(i)?;
        let (i, value) = unescaped(i)?;
        Ok((i, extensible_tag(mrule, Some(attr), value, dn.is_some())))
    }

    fn dn_mrule(i: &[u8]) -> IResult<&[u8], Tag> {
        let (i, dn) = opt(tag(b":dn"))(i)?;
        let (i, mrule) = preceded(tag(b":"), attributetype)(i)?;
        let (i, _) = tag(b":=")(i)?;
        let (i, value) = unescaped(i)?;
        Ok((i, extensible_tag(Some(mrule), None, value, dn.is_some())))
    }

    fn extensible_tag(mrule: Option<&[u8]>, attr: Option<&[u8]>, value: Vec<u8>, dn: bool) -> Tag {
        let mut inner = vec![];
        if let Some(mrule) = mrule {
            inner.push(Tag::OctetString(OctetString {
                class: TagClass::Context,
                id: 1,
                inner: mrule.to_vec(),
            }));
        }
        if let Some(attr) = attr {
            inner.push(Tag::OctetString(OctetString {
                class: TagClass::Context,
                id: 2,
                inner: attr.to_vec(),
            }));
        }
        inner.push(Tag::OctetString(OctetString {
            class: TagClass::Context,
            id: 3,
            inner: value,
        }));
        if dn {
            inner.push(Tag::Boolean(Boolean {
                class: TagClass::Context,
                id: 4,
                inner: dn,
            }));
        }
        Tag::Sequence(Sequence {
            class: TagClass::Context,
            id: EXT_MATCH,
            inner,
        })
    }

    fn attributedescription(i: &[u8]) -> IResult<&[u8], &[u8]> {
        recognize(|i| -> IResult<&[u8], ()> {
            let (i, _) = attributetype(i)?;
            let (i, _) = many0(preceded(tag(b";"), take_while1(is_alnum_hyphen)))(i)?;
            Ok((i, ()))
        })(i)
    }

    fn is_alnum_hyphen(c: u8) -> bool {
        is_alphanumeric(c) || c == b'-'
    }

    fn attributetype(i: &[u8]) -> IResult<&[u8], &[u8]> {
        alt((numericoid, descr))(i)
    }

    fn numericoid(i: &[u8]) -> IResult<&[u8], &[u8]> {
        recognize(|i| -> IResult<&[u8], ()> {
            let (i, _) = number(i)?;
            let (i, _) = many0(preceded(tag(b"."), number))(i)?;
            Ok((i, ()))
        })(i)
    }

    // A number may be zero, but must not have superfluous leading zeroes
    fn number(i: &[u8]) -> IResult<&[u8], &[u8]> {
        verify(digit1, |d: &[u8]| d.len() == 1 || d[0] != b'0')(i)
    }

    fn descr(i: &[u8]) -> IResult<&[u8], &[u8]> {
        recognize(|i| -> IResult<&[u8], ()> {
            let (i, _) = verify(be_u8, |c| is_alphabetic(*c))(i)?;
            let (i, _) = take_while(is_alnum_hyphen)(i)?;
            Ok((i, ()))
        })(i)
    }
}

#[cfg(test)]
mod test {
    use super::parse;

    fn ber_vec_eq(filter: &str, ber: &[u8]) {
        use bytes::BytesMut;
        use lber::structures::ASNTag;
        use lber::write;

        let mut buf = BytesMut::new();
        let tag = parse(filter).unwrap();
        write::encode_into(&mut buf, tag.into_structure()).unwrap();
        assert_eq!(buf, ber);
    }

    #[test]
    fn filt_bare_item() {
        ber_vec_eq("a=v", b"\xa3\x06\x04\x01a\x04\x01v");
    }

    #[test]
    fn filt_simple_eq() {
        ber_vec_eq("(a=v)", b"\xa3\x06\x04\x01a\x04\x01v");
    }

    #[test]
    fn filt_extra_garbage() {
        assert!(parse("(a=v)garbage").is_err());
    }

    #[test]
    fn filt_simple_noneq() {
        ber_vec_eq("(a<=2)", b"\xa6\x06\x04\x01a\x04\x012");
    }

    #[test]
    fn filt_pres() {
        ber_vec_eq("(a=*)", b"\x87\x01a");
    }

    #[test]
    fn filt_ast_ini() {
        ber_vec_eq("(a=*v)", b"\xa4\x08\x04\x01a0\x03\x82\x01v");
    }

    #[test]
    fn filt_ast_fin() {
        ber_vec_eq("(a=v*)", b"\xa4\x08\x04\x01a0\x03\x80\x01v");
    }

    #[test]
    fn filt_ast_multi() {
        ber_vec_eq(
            "(a=v*x*y)",
            b"\xa4\x0e\x04\x01a0\t\x80\x01v\x81\x01x\x82\x01y",
        );
    }

    #[test]
    fn filt_ast_double() {
        assert!(parse("(a=f**)").is_err());
    }

    #[test]
    fn filt_esc_ok() {
        ber_vec_eq("(a=v\\2ax)", b"\xa3\x08\x04\x01a\x04\x03v*x");
    }

    #[test]
    fn filt_esc_runt() {
        assert!(parse("(a=v\\2)").is_err());
    }

    #[test]
    fn filt_esc_invalid() {
        assert!(parse("(a=v\\0x)").is_err());
    }

    #[test]
    fn filt_oid() {
        ber_vec_eq("(2.5.4.3=v)", b"\xa3\x0c\x04\x072.5.4.3\x04\x01v");
    }

    #[test]
    fn filt_oid0() {
        ber_vec_eq("(2.5.4.0=top)", b"\xa3\x0e\x04\x072.5.4.0\x04\x03top");
    }

    #[test]
    fn filt_oidl0() {
        assert!(parse("(2.5.04.0=top)").is_err());
    }

    #[test]
    fn filt_complex() {
        ber_vec_eq("(&(a=v)(b=x)(!(c=y)))", b"\xa0\x1a\xa3\x06\x04\x01a\x04\x01v\xa3\x06\x04\x01b\x04\x01x\xa2\x08\xa3\x06\x04\x01c\x04\x01y");
    }

    #[test]
    fn filt_abs_true() {
        ber_vec_eq("(&)", b"\xa0\0");
    }

    #[test]
    fn filt_abs_false() {
        ber_vec_eq("(|)", b"\xa1\0");
    }

    #[test]
    fn filt_ext_dn() {
        ber_vec_eq(
            "(ou:dn:=People)",
            b"\xa9\x0f\x82\x02ou\x83\x06People\x84\x01\xff",
        );
    }

    #[test]
    fn filt_ext_mrule() {
        ber_vec_eq(
            "(cn:2.5.13.5:=J D)",
            b"\xa9\x13\x81\x082.5.13.5\x82\x02cn\x83\x03J D",
        );
    }

    #[test]
    fn filt_simple_utf8() {
        ber_vec_eq("(a=ć)", b"\xa3\x07\x04\x01a\x04\x02\xc4\x87");
    }
}
