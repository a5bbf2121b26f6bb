//! BER for the connection's own messages: encoding in one pass over one buffer, and decoding
//! without nom's bit-level combinators.
//!
//! Not upstream (see `PATCHED.md`, changes 3, 4 and 9). `lber::write::encode_into` encodes
//! every constructed tag into a `Vec` of its own, byte by byte through `dyn Write`, and then
//! copies it into its parent's: a search request went through about ten such buffers before it
//! reached the socket's. Here each tag is written straight into the connection's write buffer.
//! A constructed tag's length is not known until its contents are written, so one byte is
//! kept for it, and when the contents turn out to need the long form (128 bytes or more) they
//! are moved up by the length's extra bytes. [`encode_message`] writes an outgoing message
//! straight from the request's `Tag` tree, where upstream first copied it into a
//! `StructureTag` tree. [`parse_tag`] builds the same tree as lber's parser, reading each
//! header byte directly, and refuses two inputs lber would hang or crash on (change 6).
//!
//! Both give the same results as lber's (definite lengths, minimal long form, base-128 tag
//! numbers above 30 and lber's own integer encoding when encoding; lber's own reading of every
//! other input when decoding): the sidecar's unit tests (`src/backend/ldap/ber_tests.rs`)
//! compare the two, as this crate's own tests do not run in its CI.

use bytes::{BufMut, BytesMut};
use lber::common::{TagClass, TagStructure};
use lber::structure::{PL, StructureTag};
use lber::structures::Tag;
use lber::universal::Types;

use crate::RequestId;
use crate::controls::RawControl;

/// Append the BER encoding of `tag` to `buf`.
pub fn encode_into(buf: &mut BytesMut, tag: &StructureTag) {
    match &tag.payload {
        PL::P(value) => write_primitive(buf, tag.class, tag.id, value),
        PL::C(children) => write_constructed(buf, tag.class, tag.id, |buf| {
            for child in children {
                encode_into(buf, child);
            }
        }),
    }
}

/// Append the BER encoding of `tag` to `buf`: the bytes `encode_into(buf,
/// &tag.clone().into_structure())` writes, for every tag, without building that
/// `StructureTag` copy of the tree (a `Vec` per node and a `Vec<u8>` per primitive, change 9).
/// Each variant's contents are what its `into_structure` in lber 0.5.1 makes of them, under its
/// own class and tag number.
pub fn encode_tag_into(buf: &mut BytesMut, tag: &Tag) {
    match tag {
        Tag::Integer(i) => write_integer(buf, i.class, i.id, i.inner),
        Tag::Enumerated(e) => write_integer(buf, e.class, e.id, e.inner),
        Tag::Sequence(s) => write_constructed(buf, s.class, s.id, |buf| {
            for child in &s.inner {
                encode_tag_into(buf, child);
            }
        }),
        Tag::Set(s) => write_constructed(buf, s.class, s.id, |buf| {
            for child in &s.inner {
                encode_tag_into(buf, child);
            }
        }),
        Tag::OctetString(o) => write_primitive(buf, o.class, o.id, &o.inner),
        // lber writes true as 0xFF (X.690 §11.1, DER's choice), false as 0x00.
        Tag::Boolean(b) => {
            write_primitive(buf, b.class, b.id, &[if b.inner { 0xFF } else { 0x00 }])
        }
        Tag::Null(n) => write_primitive(buf, n.class, n.id, &[]),
        // lber's explicit tag is a constructed element of the tag's own class and number
        // around the whole encoding of the inner tag.
        Tag::ExplicitTag(e) => {
            write_constructed(buf, e.class, e.id, |buf| encode_tag_into(buf, &e.inner))
        }
        Tag::StructureTag(s) => encode_into(buf, s),
    }
}

/// Append an LDAPMessage (RFC 4511 §4.1.1: messageID, protocolOp, and the controls as
/// `[0]` when there are any) to `buf`: the bytes upstream's `LdapCodec::encode` wrote by
/// wrapping them in a `Tag::Sequence` with `build_tag` for each control and encoding its
/// `into_structure()` (kept as [`message_reference`] for the sidecar's tests), written
/// straight from the request's tag tree.
pub fn encode_message(
    buf: &mut BytesMut,
    id: RequestId,
    op: &Tag,
    controls: Option<&[RawControl]>,
) {
    use TagClass::{Context, Universal};
    const SEQUENCE: u64 = Types::Sequence as u64;
    const STRING: u64 = Types::OctetString as u64;
    write_constructed(buf, Universal, SEQUENCE, |buf| {
        write_integer(buf, Universal, Types::Integer as u64, i64::from(id));
        encode_tag_into(buf, op);
        let Some(controls) = controls else {
            return;
        };
        write_constructed(buf, Context, 0, |buf| {
            for control in controls {
                // As `build_tag` builds it: the criticality only when true, the value only
                // when there is one.
                write_constructed(buf, Universal, SEQUENCE, |buf| {
                    write_primitive(buf, Universal, STRING, control.ctype.as_bytes());
                    if control.crit {
                        write_primitive(buf, Universal, Types::Boolean as u64, &[0xFF]);
                    }
                    if let Some(value) = &control.val {
                        write_primitive(buf, Universal, STRING, value);
                    }
                });
            }
        });
    });
}

/// The tree upstream's `LdapCodec::encode` built for a message and encoded, for the sidecar's
/// tests, which check that [`encode_message`] writes the same bytes.
#[doc(hidden)]
pub fn message_reference(
    id: RequestId,
    op: Tag,
    controls: Option<Vec<RawControl>>,
) -> StructureTag {
    use lber::structures::{ASNTag, Integer, Sequence};
    let mut msg = vec![
        Tag::Integer(Integer {
            inner: id as i64,
            ..Default::default()
        }),
        op,
    ];
    if let Some(controls) = controls {
        msg.push(Tag::StructureTag(StructureTag {
            id: 0,
            class: TagClass::Context,
            payload: PL::C(
                controls
                    .into_iter()
                    .map(crate::controls_impl::build_tag)
                    .collect(),
            ),
        }));
    }
    Tag::Sequence(Sequence {
        inner: msg,
        ..Default::default()
    })
    .into_structure()
}

fn write_primitive(buf: &mut BytesMut, class: TagClass, id: u64, value: &[u8]) {
    write_type(buf, class, TagStructure::Primitive, id);
    let (octets, n) = length_octets(value.len());
    buf.extend_from_slice(&octets[..n]);
    buf.extend_from_slice(value);
}

/// A constructed element whose contents `write_contents` appends. Its length is not known
/// until they are written: one byte is kept for it, and when the contents need the long form
/// they are moved up by its extra bytes.
fn write_constructed(
    buf: &mut BytesMut,
    class: TagClass,
    id: u64,
    write_contents: impl FnOnce(&mut BytesMut),
) {
    write_type(buf, class, TagStructure::Constructed, id);
    let at = buf.len();
    buf.put_u8(0);
    write_contents(buf);
    let (octets, n) = length_octets(buf.len() - at - 1);
    if n > 1 {
        let end = buf.len();
        buf.resize(end + n - 1, 0);
        buf.copy_within(at + 1..end, at + n);
    }
    buf[at..at + n].copy_from_slice(&octets[..n]);
}

/// An INTEGER or ENUMERATED as lber's `i_e_into_structure` writes it: the last bytes of the
/// two's complement, as many as the magnitude needs, plus a zero byte before a positive number
/// whose top bit is set. A negative number gets no such byte, so one from -129 to -255, from
/// -32,769 to -65,535 and so on loses its sign: -129 is written as 0x7F (127), -255 as 0x01.
/// lber's magnitude is `-value`, which for `i64::MIN` wraps to itself in a release build and
/// takes one byte: 0x00 (a build with overflow checks panics there). Kept as lber writes them,
/// so that a directory reads the same numbers as before; the ones ldap3 sends for the sidecar
/// (message ids, scopes, size limits) are not negative anyway.
fn write_integer(buf: &mut BytesMut, class: TagClass, id: u64, value: i64) {
    let magnitude = if value >= 0 {
        value
    } else {
        value.wrapping_neg()
    };
    let mut len = if magnitude > 0 {
        (64 - magnitude.leading_zeros()).div_ceil(8) as usize
    } else {
        1
    };
    if value > 0 && value >> (8 * len - 1) == 1 {
        len += 1;
    }
    // At most 8: a positive i64's top bit is clear, so it never needs the extra byte at 8.
    write_primitive(buf, class, id, &value.to_be_bytes()[8 - len..]);
}

/// The identifier octets: class, primitive/constructed, and the tag number (base 128, most
/// significant group first, after a 0x1F marker when it does not fit in five bits).
fn write_type(buf: &mut BytesMut, class: TagClass, structure: TagStructure, id: u64) {
    let first = (class as u8) << 6 | (structure as u8) << 5;
    if id <= 30 {
        buf.put_u8(first | id as u8);
        return;
    }
    buf.put_u8(first | 0x1F);
    let groups = (64 - id.leading_zeros()).div_ceil(7);
    for group in (0..groups).rev() {
        let byte = ((id >> (7 * group)) & 0x7F) as u8;
        buf.put_u8(if group > 0 { byte | 0x80 } else { byte });
    }
}

/// The length octets of `len` and how many there are: the short form below 128, else the
/// minimal long form.
fn length_octets(len: usize) -> ([u8; 9], usize) {
    let mut octets = [0u8; 9];
    if len < 0x80 {
        octets[0] = len as u8;
        return (octets, 1);
    }
    let extra = (64 - (len as u64).leading_zeros()).div_ceil(8) as usize;
    octets[0] = 0x80 | extra as u8;
    octets[1..=extra].copy_from_slice(&(len as u64).to_be_bytes()[8 - extra..]);
    (octets, 1 + extra)
}

/// How deeply elements may nest in what [`parse_tag`] reads: the outermost element is at depth
/// 1. An LDAP response nests six deep (message, operation, attribute list, attribute, value
/// set, value); the bound keeps a broken or hostile peer from overflowing the thread's stack
/// through the recursion, which would end the whole process.
pub const MAX_DEPTH: usize = 32;

/// The bytes cannot be an element: an element inside a complete one that overruns it or is
/// cut short, or nesting deeper than [`MAX_DEPTH`].
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Parse the BER element at the start of `input` into a tag tree: the tree and the bytes after
/// it, `Ok(None)` when `input` does not hold all of it yet, or [`Malformed`]. Reads as lber's
/// `Parser::parse` does (which this replaces in the decoder; `ldap3::asn1::parse_tag` is still
/// lber's), without nom's bit-level combinators: the tag number from the low five bits only,
/// a long-form length of any size as an unsigned big-endian number (zero bytes giving zero).
/// Two differences, both where lber would hang or crash: an element whose own bytes have all
/// arrived is never "incomplete" (lber waits for more bytes when a child overruns its parent,
/// and they never come), and nesting is bounded by [`MAX_DEPTH`] (lber recurses without a
/// bound).
pub fn parse_tag(input: &[u8]) -> Result<Option<(StructureTag, &[u8])>, Malformed> {
    let Some((first, contents, after)) = split_element(input) else {
        return Ok(None);
    };
    Ok(Some((element(first, contents, 1)?, after)))
}

/// The first byte, the contents and what follows of the element at the start of `input`, or
/// `None` when `input` does not hold all of it.
pub(crate) fn split_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    let (&len_byte, mut rest) = rest.split_first()?;
    let len = if len_byte < 0x80 {
        usize::from(len_byte)
    } else {
        let count = usize::from(len_byte - 0x80);
        if rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)) as usize
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((first, contents, after))
}

/// How many whole elements `contents` starts with (all of them when it is well-formed).
fn count_elements(mut contents: &[u8]) -> usize {
    let mut n = 0;
    while let Some((_, _, left)) = split_element(contents) {
        n += 1;
        contents = left;
    }
    n
}

/// The element with header byte `first` and `contents`, at nesting `depth`.
fn element(first: u8, mut contents: &[u8], depth: usize) -> Result<StructureTag, Malformed> {
    let class = TagClass::from_u8(first >> 6).expect("two bits always name a class");
    let id = u64::from(first & 0x1F);
    let payload = if first & 0x20 == 0 {
        PL::P(contents.to_vec())
    } else {
        // Sized once: a header walk costs less than growing the vector (an entry's
        // attribute list has tens of elements).
        let mut children = Vec::with_capacity(count_elements(contents));
        while !contents.is_empty() {
            if depth == MAX_DEPTH {
                return Err(Malformed);
            }
            let (first, inner, left) = split_element(contents).ok_or(Malformed)?;
            children.push(element(first, inner, depth + 1)?);
            contents = left;
        }
        PL::C(children)
    };
    Ok(StructureTag { class, id, payload })
}

/// Whether `op`, the protocolOp of an LDAPMessage read from the server, has the shape this
/// crate's readers take for granted: `SearchEntry::construct` for an entry (4),
/// `LdapResultExt::from` for a result (1, 5, 7, 9, 11, 13, 15, 24) and `parse_refs` for a
/// referral (19), which `expect` every element they read. `decode_inner` refuses any other
/// message as a decoding error (`PATCHED.md`, change 7), so that a directory's malformed answer
/// ends the connection instead of panicking in the request that reads it. Mirrors those readers
/// exactly, class-blind as they are. An intermediate response (25) is refused: the sidecar
/// never asks for one, and nothing here reads it.
pub fn readable_response(op: &StructureTag) -> bool {
    match op.id {
        4 => readable_entry(op),
        19 => readable_refs(op),
        id if is_result_op(id) => readable_result(op),
        _ => false,
    }
}

/// Whether `id` is a protocolOp answering a single operation (a result), as opposed to a
/// search's entries and references.
pub fn is_result_op(id: u64) -> bool {
    matches!(id, 1 | 5 | 7 | 9 | 11 | 13 | 15 | 24)
}

fn children(t: &StructureTag) -> Option<&[StructureTag]> {
    match &t.payload {
        PL::C(c) => Some(c),
        PL::P(_) => None,
    }
}

fn primitive(t: &StructureTag) -> bool {
    matches!(t.payload, PL::P(_))
}

fn utf8(t: &StructureTag) -> bool {
    matches!(&t.payload, PL::P(b) if std::str::from_utf8(b).is_ok())
}

/// `SearchEntry::construct`: `[dn, attributes, ..]`, each attribute `[type, values, ..]`.
fn readable_entry(op: &StructureTag) -> bool {
    let Some(items) = children(op) else {
        return false;
    };
    let (Some(dn), Some(attrs)) = (items.first(), items.get(1)) else {
        return false;
    };
    let Some(attrs) = children(attrs) else {
        return false;
    };
    utf8(dn)
        && attrs.iter().all(|a| match children(a) {
            Some([kind, values, ..]) => {
                utf8(kind) && children(values).is_some_and(|v| v.iter().all(primitive))
            }
            _ => false,
        })
}

/// `parse_refs`: a sequence of UTF-8 strings.
fn readable_refs(t: &StructureTag) -> bool {
    children(t).is_some_and(|c| c.iter().all(utf8))
}

/// `LdapResultExt::from`: `[resultCode, matchedDN, diagnosticMessage, ..]`, then by tag
/// number: referrals (3), SASL credentials (7), an extended response's name (10) and
/// value (11).
fn readable_result(op: &StructureTag) -> bool {
    let Some(items) = children(op) else {
        return false;
    };
    let [code, matched, text, rest @ ..] = items else {
        return false;
    };
    code.class == TagClass::Universal
        && code.id == 10
        && primitive(code)
        && utf8(matched)
        && utf8(text)
        && rest.iter().all(|c| match c.id {
            3 => readable_refs(c),
            7 | 11 => primitive(c),
            10 => utf8(c),
            _ => true,
        })
}

/// What `LdapResultExt::from` reads from a result message (for the sidecar's tests, which
/// compare [`readable_response`] with the readers themselves).
#[doc(hidden)]
pub fn read_result(op: StructureTag) -> crate::result::LdapResult {
    crate::result::LdapResultExt::from(lber::structures::Tag::StructureTag(op)).0
}
