//! The BER encoder and decoder carried in `vendor/ldap3` (`ldap3::ber`, changes 3 and 4 in its
//! `PATCHED.md`) give the same results as upstream lber's, which they replace on every message
//! the sidecar sends to or reads from a directory. Checked here because the vendored crate's
//! own tests are not built by `cargo test`.

use bytes::BytesMut;
use ldap3::asn1::{PL, StructureTag, TagClass};

/// What upstream lber writes for the same tree.
fn lber(tag: &StructureTag) -> BytesMut {
    let mut buf = BytesMut::new();
    ldap3::asn1::write::encode_into(&mut buf, tag.clone()).unwrap();
    buf
}

fn ours(tag: &StructureTag) -> BytesMut {
    let mut buf = BytesMut::from(&b"prefix"[..]);
    ldap3::ber::encode_into(&mut buf, tag);
    assert_eq!(&buf[..6], b"prefix", "bytes already in the buffer are kept");
    buf.split_off(6)
}

fn prim(class: TagClass, id: u64, value: &[u8]) -> StructureTag {
    StructureTag {
        class,
        id,
        payload: PL::P(value.to_vec()),
    }
}

fn cons(class: TagClass, id: u64, children: Vec<StructureTag>) -> StructureTag {
    StructureTag {
        class,
        id,
        payload: PL::C(children),
    }
}

/// A small deterministic generator, so that a failure repeats.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// A random tag tree up to `depth` levels deep, with every kind of tag number and leaves up
/// to 70,000 bytes.
fn tree(rng: &mut Lcg, depth: u32) -> StructureTag {
    shaped(rng, depth, u64::MAX >> 1, 70_000)
}

/// One that lber's parser can read back (tag numbers up to 30), small enough to cut at every
/// byte.
fn readable(rng: &mut Lcg, depth: u32) -> StructureTag {
    shaped(rng, depth, 30, 400)
}

fn shaped(rng: &mut Lcg, depth: u32, max_id: u64, max_len: u64) -> StructureTag {
    let class = match rng.next(4) {
        0 => TagClass::Universal,
        1 => TagClass::Application,
        2 => TagClass::Context,
        _ => TagClass::Private,
    };
    let id = match rng.next(4) {
        0 => rng.next(31),
        1 => 31 + rng.next(200),
        2 => rng.next(1 << 21),
        _ => rng.next(u64::MAX >> 1),
    }
    .min(max_id);
    let payload = if depth == 0 || rng.next(3) == 0 {
        let len = match rng.next(5) {
            0 => 0,
            1 => rng.next(0x80),
            2 => 0x7F + rng.next(3),
            3 => 0xFF + rng.next(3),
            _ => rng.next(70_000),
        }
        .min(max_len);
        PL::P((0..len).map(|i| i as u8).collect())
    } else {
        PL::C(
            (0..rng.next(6))
                .map(|_| shaped(rng, depth - 1, max_id, max_len))
                .collect(),
        )
    };
    StructureTag { class, id, payload }
}

#[test]
fn same_bytes_as_lber_on_generated_trees() {
    let mut rng = Lcg(7);
    for _ in 0..400 {
        let tag = tree(&mut rng, 4);
        assert_eq!(ours(&tag), lber(&tag), "{tag:?}");
    }
}

#[test]
fn length_boundaries() {
    for len in [0, 1, 127, 128, 255, 256, 65_535, 65_536, 16_777_216] {
        let leaf = prim(TagClass::Universal, 4, &vec![b'x'; len]);
        let wrapped = cons(TagClass::Universal, 16, vec![leaf.clone()]);
        assert_eq!(ours(&leaf), lber(&leaf), "primitive of {len} bytes");
        assert_eq!(
            ours(&wrapped),
            lber(&wrapped),
            "sequence around {len} bytes"
        );
    }
}

#[test]
fn lbers_own_example() {
    // A bind request: SEQUENCE { messageID 1, [APPLICATION 0] { version 3, name,
    // simple [0] } }, with the bytes lber's own test expects.
    let tag = cons(
        TagClass::Universal,
        16,
        vec![
            prim(TagClass::Universal, 2, b"\x01"),
            cons(
                TagClass::Application,
                0,
                vec![
                    prim(TagClass::Universal, 2, b"\x03"),
                    prim(TagClass::Universal, 4, b"cn=root,dc=plabs"),
                    prim(TagClass::Context, 0, b"asdf"),
                ],
            ),
        ],
    );
    let expected = [
        0x30, 0x20, 0x02, 0x01, 0x01, 0x60, 0x1B, 0x02, 0x01, 0x03, 0x04, 0x10, 0x63, 0x6e, 0x3d,
        0x72, 0x6f, 0x6f, 0x74, 0x2c, 0x64, 0x63, 0x3d, 0x70, 0x6c, 0x61, 0x62, 0x73, 0x80, 0x04,
        0x61, 0x73, 0x64, 0x66,
    ];
    assert_eq!(&ours(&tag)[..], &expected[..]);
}

/// What lber's parser makes of `input`: the tree and what follows it, or `None` for "not all
/// there yet" (its only error: every byte is a valid class, form and short tag number).
fn lber_parse(input: &[u8]) -> Option<(StructureTag, &[u8])> {
    match ldap3::asn1::parse_tag(input) {
        Ok((rest, tag)) => Some((tag, rest)),
        Err(e) if e.is_incomplete() => None,
        Err(e) => panic!("lber failed on {input:?}: {e:?}"),
    }
}

#[test]
fn parses_what_it_encodes_as_lber_does() {
    let mut rng = Lcg(11);
    for _ in 0..300 {
        let tag = readable(&mut rng, 4);
        let mut bytes = ours(&tag);
        bytes.extend_from_slice(b"next");
        let parsed = ldap3::ber::parse_tag(&bytes).expect("a whole element");
        assert_eq!(parsed.0, tag);
        assert_eq!(parsed.1, b"next");
        assert_eq!(Some(parsed), lber_parse(&bytes));
    }
}

#[test]
fn parses_cut_and_damaged_input_as_lber_does() {
    let mut rng = Lcg(13);
    let mut seen_whole = 0;
    let mut seen_incomplete = 0;
    for _ in 0..300 {
        let tag = readable(&mut rng, 3);
        let bytes = ours(&tag);
        // Every cut: all but the whole are incomplete, as a message arriving in pieces is.
        for cut in 0..=bytes.len() {
            let ours = ldap3::ber::parse_tag(&bytes[..cut]);
            assert_eq!(ours, lber_parse(&bytes[..cut]), "{:?}", &bytes[..cut]);
            if ours.is_some() {
                seen_whole += 1;
            } else {
                seen_incomplete += 1;
            }
        }
        // Damaged bytes, lengths and tags included.
        for _ in 0..20 {
            let mut bad = bytes.to_vec();
            let at = rng.next(bad.len() as u64) as usize;
            bad[at] = rng.next(256) as u8;
            assert_eq!(ldap3::ber::parse_tag(&bad), lber_parse(&bad), "{bad:?}");
        }
    }
    assert!(seen_whole == 300 && seen_incomplete > 10_000);
}

#[test]
fn parses_odd_lengths_as_lber_does() {
    for input in [
        &b""[..],
        b"\x04",
        b"\x04\x80", // long form with no length bytes: length 0
        b"\x04\x81", // a length byte missing
        b"\x04\x81\x02ab",
        b"\x04\x82\x00\x01a",
        b"\x30\x03\x04\x05abc", // a child longer than its parent: incomplete
        b"\x1f\x01a",           // tag number 31 read as 31, as lber does
        b"\x30\x00rest",
    ] {
        assert_eq!(ldap3::ber::parse_tag(input), lber_parse(input), "{input:?}");
    }
}
