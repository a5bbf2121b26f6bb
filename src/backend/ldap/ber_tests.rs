//! The BER encoder carried in `vendor/ldap3` (`ldap3::ber`, change 3 in its `PATCHED.md`)
//! writes the same bytes as upstream lber's, which it replaces on every request the sidecar
//! sends to a directory. Checked here because the vendored crate's own tests are not built by
//! `cargo test`.

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

fn tree(rng: &mut Lcg, depth: u32) -> StructureTag {
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
    };
    let payload = if depth == 0 || rng.next(3) == 0 {
        let len = match rng.next(5) {
            0 => 0,
            1 => rng.next(0x80),
            2 => 0x7F + rng.next(3),
            3 => 0xFF + rng.next(3),
            _ => rng.next(70_000),
        };
        PL::P((0..len).map(|i| i as u8).collect())
    } else {
        PL::C((0..rng.next(6)).map(|_| tree(rng, depth - 1)).collect())
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
        let leaf = StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(vec![b'x'; len]),
        };
        let wrapped = StructureTag {
            class: TagClass::Universal,
            id: 16,
            payload: PL::C(vec![leaf.clone()]),
        };
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
    let tag = StructureTag {
        class: TagClass::Universal,
        id: 16,
        payload: PL::C(vec![
            StructureTag {
                class: TagClass::Universal,
                id: 2,
                payload: PL::P(vec![1]),
            },
            StructureTag {
                class: TagClass::Application,
                id: 0,
                payload: PL::C(vec![
                    StructureTag {
                        class: TagClass::Universal,
                        id: 2,
                        payload: PL::P(vec![3]),
                    },
                    StructureTag {
                        class: TagClass::Universal,
                        id: 4,
                        payload: PL::P(b"cn=root,dc=plabs".to_vec()),
                    },
                    StructureTag {
                        class: TagClass::Context,
                        id: 0,
                        payload: PL::P(b"asdf".to_vec()),
                    },
                ]),
            },
        ]),
    };
    let expected = [
        0x30, 0x20, 0x02, 0x01, 0x01, 0x60, 0x1B, 0x02, 0x01, 0x03, 0x04, 0x10, 0x63, 0x6e, 0x3d,
        0x72, 0x6f, 0x6f, 0x74, 0x2c, 0x64, 0x63, 0x3d, 0x70, 0x6c, 0x61, 0x62, 0x73, 0x80, 0x04,
        0x61, 0x73, 0x64, 0x66,
    ];
    assert_eq!(&ours(&tag)[..], &expected[..]);
}
