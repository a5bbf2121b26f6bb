//! Search result entries read from their bytes in one pass, without a tree of tags.
//!
//! Not upstream (see `PATCHED.md`, change 10). Every message used to be decoded into a tree
//! of `StructureTag`s (a `Vec` per constructed element, a `Vec<u8>` per value) that
//! `SearchEntry::construct` then took apart again and dropped. An entry, the message a search
//! answers with once per result, is two allocations per attribute and a walk over the tree
//! more than its attributes and values need.
//!
//! Here `decode_inner` checks whether the message is an entry in the shape every directory
//! sends (definite lengths, the universal tags of RFC 4511 §4.5.2, no controls, UTF-8 names).
//! If so, it passes the entry on as its contents, unparsed, in an `[APPLICATION 4]` tag
//! marked primitive (a form the general decoder never produces: an entry it reads is
//! constructed, or refused by `readable_response`), and `SearchEntry::construct` reads the
//! attributes straight from those bytes. Any other message, an odd or malformed entry
//! included, takes the general path exactly as before: the same tree, the same checks, the
//! same errors. So the short path changes no result: the sidecar's unit tests
//! (`src/backend/ldap/entry_tests.rs`) compare the two paths on generated, cut and damaged
//! messages.

use std::{io, str};

use bytes::BytesMut;
use lber::common::TagClass;
use lber::structure::{PL, StructureTag};
use lber::structures::Tag;

use crate::RequestId;
use crate::ber::split_element;
use crate::controls::Control;

/// What the connection's decoder makes of the bytes at the start of `buf`.
#[doc(hidden)]
pub type Decoded = io::Result<Option<(RequestId, (Tag, Vec<Control>))>>;

/// The connection's decoder, for the sidecar's tests, which compare it with [`decode_tree`].
#[doc(hidden)]
pub fn decode(buf: &mut BytesMut) -> Decoded {
    crate::protocol::decode_inner(buf)
}

/// The decoder's general path alone: every message as a tree of tags, as before change 10.
#[doc(hidden)]
pub fn decode_tree(buf: &mut BytesMut) -> Decoded {
    crate::protocol::decode_tree(buf)
}

/// The identifier octets the short path takes: a SEQUENCE, an INTEGER, an `[APPLICATION 4]`
/// SearchResultEntry, an OCTET STRING and a SET, all in their single-byte form.
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const ENTRY: u8 = 0x64;
const OCTET_STRING: u8 = 0x04;
const SET: u8 = 0x31;

/// A whole LDAPMessage at the start of `input` that is a search entry in the usual shape: its
/// message id's contents, the entry's contents, and the bytes the message takes. `None`
/// for anything else (another operation, controls, an unusual tag or layout, an incomplete
/// or malformed message): the caller decodes that the general way.
pub(crate) fn usual_entry(input: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let (SEQUENCE, message, after) = split_element(input)? else {
        return None;
    };
    let (INTEGER, id, rest) = split_element(message)? else {
        return None;
    };
    let (ENTRY, entry, rest) = split_element(rest)? else {
        return None;
    };
    if !rest.is_empty() || !readable(entry) {
        return None;
    }
    Some((id, entry, input.len() - after.len()))
}

/// Whether an entry's contents are `[dn, [[type, {value, ..}], ..]]` exactly, with the DN and
/// every type UTF-8 and every element within its parent: what `SearchEntry::construct`
/// reads, and what the general decoder would accept as a tree of the same shape.
fn readable(entry: &[u8]) -> bool {
    let Some((OCTET_STRING, dn, rest)) = split_element(entry) else {
        return false;
    };
    let Some((SEQUENCE, mut attrs, rest)) = split_element(rest) else {
        return false;
    };
    if !rest.is_empty() || str::from_utf8(dn).is_err() {
        return false;
    }
    while !attrs.is_empty() {
        let Some((SEQUENCE, attr, next)) = split_element(attrs) else {
            return false;
        };
        let Some((OCTET_STRING, kind, rest)) = split_element(attr) else {
            return false;
        };
        let Some((SET, mut values, rest)) = split_element(rest) else {
            return false;
        };
        if !rest.is_empty() || str::from_utf8(kind).is_err() {
            return false;
        }
        while !values.is_empty() {
            let Some((OCTET_STRING, _, next)) = split_element(values) else {
                return false;
            };
            values = next;
        }
        attrs = next;
    }
    true
}

/// The tag an entry's contents travel in from the decoder to `SearchEntry::construct`.
pub(crate) fn unread(contents: &[u8]) -> StructureTag {
    StructureTag {
        class: TagClass::Application,
        id: 4,
        payload: PL::P(contents.to_vec()),
    }
}

/// An entry's DN and its attributes, each a type and its values, from contents that
/// [`usual_entry`] accepted.
pub(crate) struct Attributes<'a> {
    rest: &'a [u8],
}

/// Reads contents that [`usual_entry`] accepted: the DN, the number of attributes, and the
/// attributes. Panics on anything else, as `SearchEntry::construct` does on a malformed tree.
pub(crate) fn read(contents: &[u8]) -> (&str, usize, Attributes<'_>) {
    const CHECKED: &str = "an entry's contents are checked when it is decoded";
    let (_, dn, rest) = split_element(contents).expect(CHECKED);
    let (_, attrs, _) = split_element(rest).expect(CHECKED);
    let mut count = 0;
    let mut walk = attrs;
    while let Some((_, _, next)) = split_element(walk) {
        count += 1;
        walk = next;
    }
    let dn = str::from_utf8(dn).expect(CHECKED);
    (dn, count, Attributes { rest: attrs })
}

impl<'a> Iterator for Attributes<'a> {
    /// The type, and the values' SET contents ([`Values`]).
    type Item = (&'a str, Values<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (_, attr, next) = split_element(self.rest)?;
        self.rest = next;
        let (_, kind, rest) = split_element(attr)?;
        let (_, values, _) = split_element(rest)?;
        Some((str::from_utf8(kind).ok()?, Values { rest: values }))
    }
}

/// The values of one attribute, as they were sent.
pub(crate) struct Values<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (_, value, next) = split_element(self.rest)?;
        self.rest = next;
        Some(value)
    }
}
