//! BER encoding of an outgoing LDAP message in one pass over one buffer.
//!
//! Not upstream (see `PATCHED.md`, change 3). `lber::write::encode_into` encodes every
//! constructed tag into a `Vec` of its own, byte by byte through `dyn Write`, and then copies
//! it into its parent's: a search request went through about ten such buffers before it
//! reached the socket's. Here each tag is written straight into the connection's write buffer.
//! A constructed tag's length is not known until its contents are written, so one byte is
//! kept for it, and when the contents turn out to need the long form (128 bytes or more) they
//! are moved up by the length's extra bytes. The bytes produced are the same as lber's
//! (definite lengths, minimal long form, base-128 tag numbers above 30): the sidecar's unit
//! tests (`src/backend/ldap/ber_tests.rs`) compare the two, as this crate's own tests do not
//! run in its CI.

use bytes::{BufMut, BytesMut};
use lber::common::{TagClass, TagStructure};
use lber::structure::{PL, StructureTag};

/// Append the BER encoding of `tag` to `buf`.
pub fn encode_into(buf: &mut BytesMut, tag: &StructureTag) {
    match &tag.payload {
        PL::P(value) => {
            write_type(buf, tag.class, TagStructure::Primitive, tag.id);
            write_length(buf, value.len());
            buf.extend_from_slice(value);
        }
        PL::C(children) => {
            write_type(buf, tag.class, TagStructure::Constructed, tag.id);
            let at = buf.len();
            buf.put_u8(0);
            for child in children {
                encode_into(buf, child);
            }
            let len = buf.len() - at - 1;
            if len < 0x80 {
                buf[at] = len as u8;
                return;
            }
            let extra = length_bytes(len);
            let end = buf.len();
            buf.resize(end + extra, 0);
            buf.copy_within(at + 1..end, at + 1 + extra);
            buf[at] = 0x80 | extra as u8;
            buf[at + 1..at + 1 + extra].copy_from_slice(&(len as u64).to_be_bytes()[8 - extra..]);
        }
    }
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

/// The length octets in the short form below 128, else in the minimal long form.
fn write_length(buf: &mut BytesMut, len: usize) {
    if len < 0x80 {
        buf.put_u8(len as u8);
        return;
    }
    let extra = length_bytes(len);
    buf.put_u8(0x80 | extra as u8);
    buf.extend_from_slice(&(len as u64).to_be_bytes()[8 - extra..]);
}

/// How many bytes the long form needs for `len` (which is not zero).
fn length_bytes(len: usize) -> usize {
    (64 - (len as u64).leading_zeros()).div_ceil(8) as usize
}
