//! The BER encoder and decoder carried in `vendor/ldap3` (`ldap3::ber`, changes 3, 4, 6 and 9
//! in its `PATCHED.md`) give the same results as upstream lber's, which they replace on every
//! message the sidecar sends to or reads from a directory, except where lber would hang (a
//! child overrunning a complete parent) or overflow the stack (unbounded nesting): there the
//! decoder says the input is malformed. A message written straight from its `Tag` tree
//! (change 9) has the bytes lber wrote for that tree's `StructureTag` copy, odd integers
//! included. The decoder's check of an answer (change 7) lets through exactly what ldap3's
//! readers read without panicking. Checked here because the vendored crate's own tests are
//! not built by `cargo test`.

use bytes::BytesMut;
use ldap3::asn1::{
    ASNTag, Boolean, Enumerated, ExplicitTag, Integer, Null, OctetString, PL, Sequence, Set,
    StructureTag, Tag, TagClass,
};
use ldap3::ber::{MAX_DEPTH, Malformed};
use ldap3::controls::{MatchedValues, PagedResults, RawControl};
use ldap3::{Scope, SearchOptions};

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

pub(super) fn prim(class: TagClass, id: u64, value: &[u8]) -> StructureTag {
    StructureTag {
        class,
        id,
        payload: PL::P(value.to_vec()),
    }
}

pub(super) fn cons(class: TagClass, id: u64, children: Vec<StructureTag>) -> StructureTag {
    StructureTag {
        class,
        id,
        payload: PL::C(children),
    }
}

/// A small deterministic generator, so that a failure repeats.
pub(super) struct Lcg(pub(super) u64);
impl Lcg {
    pub(super) fn next(&mut self, below: u64) -> u64 {
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
    let class = any_class(rng);
    let id = any_number(rng).min(max_id);
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

fn any_class(rng: &mut Lcg) -> TagClass {
    match rng.next(4) {
        0 => TagClass::Universal,
        1 => TagClass::Application,
        2 => TagClass::Context,
        _ => TagClass::Private,
    }
}

/// A tag number: short (up to 30), or one to five base-128 groups long.
fn any_number(rng: &mut Lcg) -> u64 {
    match rng.next(4) {
        0 => rng.next(31),
        1 => 31 + rng.next(200),
        2 => rng.next(1 << 21),
        _ => rng.next(u64::MAX >> 1),
    }
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

// === Encoding straight from the `Tag` tree (change 9) ===

/// What upstream wrote for a `Tag`: lber's encoding of its `into_structure()` copy.
fn lber_tag(tag: &Tag) -> BytesMut {
    let mut buf = BytesMut::new();
    ldap3::asn1::write::encode_into(&mut buf, tag.clone().into_structure()).unwrap();
    buf
}

fn ours_tag(tag: &Tag) -> BytesMut {
    let mut buf = BytesMut::from(&b"prefix"[..]);
    ldap3::ber::encode_tag_into(&mut buf, tag);
    assert_eq!(&buf[..6], b"prefix", "bytes already in the buffer are kept");
    buf.split_off(6)
}

fn int(inner: i64) -> Tag {
    Tag::Integer(Integer {
        inner,
        ..Default::default()
    })
}

fn octets(len: usize) -> Tag {
    Tag::OctetString(OctetString {
        inner: vec![b'x'; len],
        ..Default::default()
    })
}

fn seq(inner: Vec<Tag>) -> Tag {
    Tag::Sequence(Sequence {
        inner,
        ..Default::default()
    })
}

/// Gives `tag` another class and tag number, whatever its variant.
fn retag(tag: &mut Tag, class: TagClass, id: u64) {
    match tag {
        Tag::Integer(t) => (t.class, t.id) = (class, id),
        Tag::Enumerated(t) => (t.class, t.id) = (class, id),
        Tag::Sequence(t) => (t.class, t.id) = (class, id),
        Tag::Set(t) => (t.class, t.id) = (class, id),
        Tag::OctetString(t) => (t.class, t.id) = (class, id),
        Tag::Boolean(t) => (t.class, t.id) = (class, id),
        Tag::Null(t) => (t.class, t.id) = (class, id),
        Tag::ExplicitTag(t) => (t.class, t.id) = (class, id),
        Tag::StructureTag(t) => (t.class, t.id) = (class, id),
    }
}

/// The integers at every edge of lber's encoding: 0, ±1, every power of two and one either
/// side of it (so every byte boundary: 127, 128, 255, 256, -128, -129, ...), and i64::MAX and
/// its negation. Not i64::MIN, on which lber panics in this build
/// (`i64_min_is_written_as_lbers_release_build_writes_it`).
fn edge_integers() -> Vec<i64> {
    let mut edges = vec![0, i64::MAX, i64::MAX - 1, i64::MIN + 1, i64::MIN + 2];
    for k in 0..63 {
        let p = 1i64 << k;
        for v in [p - 1, p, p + 1] {
            edges.extend([v, -v]);
        }
    }
    edges
}

/// An integer from anywhere in i64's range but i64::MIN: at an edge, or any number of any
/// magnitude and sign.
fn any_integer(rng: &mut Lcg) -> i64 {
    let v = match rng.next(3) {
        0 => (1i64 << rng.next(63)) + rng.next(3) as i64 - 1,
        1 => [0, 1, i64::MAX][rng.next(3) as usize],
        _ => {
            let bits = rng.next(1 << 31) << 33 | rng.next(1 << 31) << 2 | rng.next(4);
            (bits as i64 >> rng.next(64)).max(i64::MIN + 1)
        }
    };
    if rng.next(2) == 0 { v } else { -v }
}

/// A random `Tag` tree up to `depth` levels deep: every variant, with its default class and
/// tag number or any other (up to ten base-128 groups), integers from the whole range,
/// strings across the long form's boundaries, explicit tags nested in explicit tags, and
/// `StructureTag` leaves of every shape.
fn any_tag(rng: &mut Lcg, depth: u32) -> Tag {
    // Constructed two times in three while depth allows, so that trees grow.
    let kind = if depth > 0 && rng.next(3) > 0 {
        6 + rng.next(3)
    } else {
        rng.next(6)
    };
    let mut tag = match kind {
        0 => int(any_integer(rng)),
        1 => Tag::Enumerated(Enumerated {
            inner: any_integer(rng),
            ..Default::default()
        }),
        2 => octets(match rng.next(5) {
            0 => 0,
            1 => rng.next(0x80) as usize,
            2 => 0x7E + rng.next(4) as usize,
            3 => 0xFE + rng.next(4) as usize,
            _ => {
                let most = if rng.next(20) == 0 { 70_000 } else { 1_000 };
                rng.next(most) as usize
            }
        }),
        3 => Tag::Boolean(Boolean {
            inner: rng.next(2) == 0,
            ..Default::default()
        }),
        4 => Tag::Null(Null::default()),
        5 => Tag::StructureTag(shaped(rng, depth.min(2), u64::MAX >> 1, 300)),
        6 => seq((0..rng.next(6)).map(|_| any_tag(rng, depth - 1)).collect()),
        7 => Tag::Set(Set {
            inner: (0..rng.next(6)).map(|_| any_tag(rng, depth - 1)).collect(),
            ..Default::default()
        }),
        _ => Tag::ExplicitTag(ExplicitTag {
            id: rng.next(31),
            class: TagClass::Context,
            inner: Box::new(if rng.next(3) == 0 {
                // Straight around another explicit tag.
                Tag::ExplicitTag(ExplicitTag {
                    id: rng.next(31),
                    class: TagClass::Context,
                    inner: Box::new(any_tag(rng, depth - 1)),
                })
            } else {
                any_tag(rng, depth - 1)
            }),
        }),
    };
    if rng.next(2) == 0 {
        let id = match rng.next(5) {
            0 => u64::MAX >> rng.next(64),
            _ => any_number(rng),
        };
        retag(&mut tag, any_class(rng), id);
    }
    tag
}

/// How many of each variant `tag` holds, in `Tag`'s order.
fn count_variants(tag: &Tag, seen: &mut [usize; 9]) {
    let (i, children): (usize, &[Tag]) = match tag {
        Tag::Integer(_) => (0, &[]),
        Tag::Enumerated(_) => (1, &[]),
        Tag::Sequence(s) => (2, &s.inner),
        Tag::Set(s) => (3, &s.inner),
        Tag::OctetString(_) => (4, &[]),
        Tag::Boolean(_) => (5, &[]),
        Tag::Null(_) => (6, &[]),
        Tag::ExplicitTag(e) => (7, std::slice::from_ref(&*e.inner)),
        Tag::StructureTag(_) => (8, &[]),
    };
    seen[i] += 1;
    for child in children {
        count_variants(child, seen);
    }
}

/// `ldap3::ber::encode_tag_into` writes, for every `Tag`, the bytes upstream wrote for it (lber's
/// encoding of its `into_structure()` copy), keeping what the buffer held: checked on 2,000
/// generated trees holding each variant over a thousand times, half of them under other
/// classes and tag numbers than their own.
#[test]
fn tags_are_written_as_lber_writes_their_structure() {
    let mut rng = Lcg(13);
    let mut seen = [0; 9];
    for _ in 0..2_000 {
        let tag = any_tag(&mut rng, 5);
        count_variants(&tag, &mut seen);
        assert_eq!(ours_tag(&tag), lber_tag(&tag), "{tag:?}");
    }
    assert!(
        seen.iter().all(|&n| n >= 1_000),
        "every variant, often: {seen:?}"
    );
}

/// Every edge of the integer encoding (each power of two and one either side of it, so every
/// byte boundary; 0, ±1, ±i64::MAX), as an INTEGER and an ENUMERATED under their own tags and
/// others, is written as lber writes it, two's-complement slips included.
#[test]
fn integers_at_every_edge_are_written_as_lber_writes_them() {
    for v in edge_integers() {
        for (class, id) in [
            (TagClass::Universal, 2),
            (TagClass::Context, 7),
            (TagClass::Private, 200),
        ] {
            let mut i = int(v);
            retag(&mut i, class, id);
            let e = Tag::Enumerated(Enumerated {
                id,
                class,
                inner: v,
            });
            assert_eq!(ours_tag(&i), lber_tag(&i), "INTEGER {v}");
            assert_eq!(ours_tag(&e), lber_tag(&e), "ENUMERATED {v}");
        }
    }
    // lber's rule, spelled out: as many bytes as the magnitude needs, and a leading zero for
    // a positive number whose top bit is set; a negative number whose magnitude fills its
    // bytes loses its sign (-129 is written as 127, -255 as 1).
    let values: [(i64, &[u8]); 11] = [
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x00, 0x80]),
        (255, &[0x00, 0xFF]),
        (256, &[0x01, 0x00]),
        (-1, &[0xFF]),
        (-128, &[0x80]),
        (-129, &[0x7F]),
        (-255, &[0x01]),
        (-256, &[0xFF, 0x00]),
        (i64::MAX, &[0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
    ];
    for (v, contents) in values {
        let bytes = ours_tag(&int(v));
        assert_eq!(bytes[..2], [0x02, contents.len() as u8], "{v}");
        assert_eq!(&bytes[2..], contents, "{v}");
    }
}

/// i64::MIN: lber negates a negative number to count its bytes, which panics in a build with
/// overflow checks (this one) and wraps in a release build, which so wrote i64::MIN as one
/// zero byte. `encode_tag_into` writes what the release build wrote, and does not panic.
#[test]
fn i64_min_is_written_as_lbers_release_build_writes_it() {
    let tag = int(i64::MIN);
    assert_eq!(&ours_tag(&tag)[..], &[0x02, 0x01, 0x00]);
    let overflow_checked = panics(|| -std::hint::black_box(i64::MIN));
    assert_eq!(panics(|| lber_tag(&tag)), overflow_checked);
    if !overflow_checked {
        assert_eq!(ours_tag(&tag), lber_tag(&tag));
    }
}

/// Every other variant's contents, spelled out: BOOLEAN true as 0xFF and false as 0x00, NULL
/// empty, an explicit tag as a constructed element of its own class and number around the
/// inner tag's whole encoding, each under the class and number it carries.
#[test]
fn each_variant_is_written_as_lber_writes_it() {
    let cases: [(Tag, &[u8]); 6] = [
        (
            Tag::Boolean(Boolean {
                inner: true,
                ..Default::default()
            }),
            &[0x01, 0x01, 0xFF],
        ),
        (
            Tag::Boolean(Boolean {
                id: 1,
                class: TagClass::Context,
                inner: false,
            }),
            &[0x81, 0x01, 0x00],
        ),
        (Tag::Null(Null::default()), &[0x05, 0x00]),
        (
            Tag::ExplicitTag(ExplicitTag {
                id: 3,
                class: TagClass::Application,
                inner: Box::new(int(5)),
            }),
            &[0x63, 0x03, 0x02, 0x01, 0x05],
        ),
        (
            Tag::Set(Set {
                id: 31,
                class: TagClass::Private,
                inner: vec![Tag::Null(Null::default())],
            }),
            &[0xFF, 0x1F, 0x02, 0x05, 0x00],
        ),
        (
            Tag::OctetString(OctetString {
                id: 200,
                class: TagClass::Context,
                inner: b"ab".to_vec(),
            }),
            &[0x9F, 0x81, 0x48, 0x02, b'a', b'b'],
        ),
    ];
    for (tag, bytes) in cases {
        assert_eq!(&ours_tag(&tag)[..], bytes, "{tag:?}");
        assert_eq!(ours_tag(&tag), lber_tag(&tag), "{tag:?}");
    }
}

/// How long a tag number up to 30 with `n` bytes of contents is, encoded.
fn encoded_len(n: usize) -> usize {
    let long = if n < 0x80 {
        0
    } else {
        (usize::BITS - n.leading_zeros()).div_ceil(8) as usize
    };
    2 + long + n
}

/// Tags whose encodings take exactly `n` bytes in all (`n` is not 1): the longest OCTET
/// STRING that leaves no single byte, then NULLs (two bytes) and a BOOLEAN (three) for the
/// rest.
fn filler(n: usize) -> Vec<Tag> {
    let string = (0..n)
        .rev()
        .find(|&len| matches!(n.checked_sub(encoded_len(len)), Some(rest) if rest != 1));
    let mut tags: Vec<Tag> = string.map(octets).into_iter().collect();
    let mut rest = n - string.map_or(0, encoded_len);
    if rest % 2 == 1 {
        tags.push(Tag::Boolean(Boolean::default()));
        rest -= 3;
    }
    tags.extend((0..rest / 2).map(|_| Tag::Null(Null::default())));
    tags
}

/// A SEQUENCE, a SET and an explicit tag whose contents are 127 or 128, 255 or 256, 65,535 or
/// 65,536 bytes long and one more or less (either side of each change in the length's form,
/// up to three length bytes; `length_boundaries` goes to four), alone and inside another
/// SEQUENCE, are written as lber writes them.
#[test]
fn constructed_tags_at_length_boundaries_are_written_as_lber_writes_them() {
    let boundaries = [
        0, 2, 3, 126, 127, 128, 129, 254, 255, 256, 257, 65_534, 65_535, 65_536, 65_537,
    ];
    for n in boundaries {
        let contents = filler(n);
        let written: usize = contents.iter().map(|t| ours_tag(t).len()).sum();
        assert_eq!(written, n, "the filler for {n} bytes");
        let sequence = seq(contents.clone());
        let set = Tag::Set(Set {
            id: 40,
            class: TagClass::Application,
            inner: contents,
        });
        // The explicit tag's contents are its inner tag, a SEQUENCE of `m` bytes, when one
        // adds up to `n`.
        let explicit = (0..n.saturating_sub(1))
            .find(|&m| m != 1 && encoded_len(m) == n)
            .map(|m| {
                Tag::ExplicitTag(ExplicitTag {
                    id: 2,
                    class: TagClass::Context,
                    inner: Box::new(seq(filler(m))),
                })
            });
        for tag in [Some(sequence), Some(set), explicit].into_iter().flatten() {
            assert_eq!(ours_tag(&tag), lber_tag(&tag), "{n} bytes");
            let nested = seq(vec![int(1), tag, Tag::Null(Null::default())]);
            assert_eq!(ours_tag(&nested), lber_tag(&nested), "{n} bytes, nested");
        }
    }
}

/// A search request as ldap3 builds it (`SearchStream::start_inner`): what the sidecar
/// sends for a SCIM filter.
fn search_request(filter: &str, attrs: &[&str]) -> Tag {
    let options = SearchOptions::new().sizelimit(50);
    Tag::Sequence(Sequence {
        id: 3,
        class: TagClass::Application,
        inner: vec![
            Tag::OctetString(OctetString {
                inner: b"ou=people,dc=example,dc=org".to_vec(),
                ..Default::default()
            }),
            Tag::Enumerated(Enumerated {
                inner: Scope::Subtree as i64,
                ..Default::default()
            }),
            Tag::Enumerated(Enumerated {
                inner: options.deref as i64,
                ..Default::default()
            }),
            Tag::Integer(Integer {
                inner: options.sizelimit as i64,
                ..Default::default()
            }),
            Tag::Integer(Integer {
                inner: options.timelimit as i64,
                ..Default::default()
            }),
            Tag::Boolean(Boolean {
                inner: options.typesonly,
                ..Default::default()
            }),
            ldap3::parse_filter(filter).unwrap(),
            seq(attrs
                .iter()
                .map(|a| {
                    Tag::OctetString(OctetString {
                        inner: a.as_bytes().to_vec(),
                        ..Default::default()
                    })
                })
                .collect()),
        ],
    })
}

/// What upstream's `LdapCodec::encode` wrote for a message.
fn lber_message(id: i32, op: &Tag, controls: Option<&[RawControl]>) -> BytesMut {
    lber(&ldap3::ber::message_reference(
        id,
        op.clone(),
        controls.map(<[RawControl]>::to_vec),
    ))
}

fn our_message(id: i32, op: &Tag, controls: Option<&[RawControl]>) -> BytesMut {
    let mut buf = BytesMut::from(&b"prefix"[..]);
    ldap3::ber::encode_message(&mut buf, id, op, controls);
    assert_eq!(&buf[..6], b"prefix", "bytes already in the buffer are kept");
    buf.split_off(6)
}

/// A search request as ldap3 builds it for a SCIM filter, without controls, with none, and
/// with the Matched Values control the sidecar sends, Paged Results, a critical control and
/// one without a value, under message ids either side of each byte boundary, is written as
/// upstream's `LdapCodec::encode` wrote it.
#[test]
fn a_search_request_is_written_as_upstream_wrote_it() {
    let op = search_request(
        "(&(objectClass=inetOrgPerson)(|(uid=bjensen)(mail=b*@example.org))(!(cn=x\\2a)))",
        &[
            "uid",
            "cn",
            "sn",
            "mail",
            "entryUUID",
            "modifyTimestamp",
            "memberOf",
        ],
    );
    let controls = [
        MatchedValues::new("((member=uid=bjensen,ou=people,dc=example,dc=org))"),
        RawControl::from(PagedResults {
            size: 100,
            cookie: vec![7; 200],
        }),
        RawControl {
            ctype: "1.3.6.1.4.1.4203.666.5.12".to_owned(),
            crit: true,
            val: Some(b"\x30\x00".to_vec()),
        },
        RawControl {
            ctype: "2.16.840.1.113730.3.4.2".to_owned(),
            crit: true,
            val: None,
        },
    ];
    let control_lists: [Option<&[RawControl]>; 4] =
        [None, Some(&[]), Some(&controls[..1]), Some(&controls)];
    for id in [1, 2, 127, 128, 255, 256, 65_536, i32::MAX, 0, -1, i32::MIN] {
        for controls in control_lists {
            assert_eq!(
                our_message(id, &op, controls),
                lber_message(id, &op, controls),
                "message {id} with {controls:?}"
            );
        }
    }
}

/// Generated operations with generated controls (any OID, critical or not, a value of any
/// length or none) are written as upstream's `LdapCodec::encode` wrote them.
#[test]
fn generated_messages_are_written_as_upstream_wrote_them() {
    let mut rng = Lcg(17);
    for _ in 0..300 {
        let op = any_tag(&mut rng, 3);
        let controls: Vec<RawControl> = (0..rng.next(4))
            .map(|_| RawControl {
                ctype: format!("1.2.840.{}", rng.next(1 << 31)),
                crit: rng.next(2) == 0,
                val: (rng.next(3) > 0).then(|| vec![0xA5; rng.next(300) as usize]),
            })
            .collect();
        let controls = (rng.next(3) > 0).then_some(&controls[..]);
        let id = any_integer(&mut rng) as i32;
        assert_eq!(
            our_message(id, &op, controls),
            lber_message(id, &op, controls),
            "{op:?}"
        );
    }
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

type Parsed<'a> = Result<Option<(StructureTag, &'a [u8])>, Malformed>;

/// What the decoder must make of `input`: lber's tree, unless it nests deeper than
/// `MAX_DEPTH`; and where lber says "not all there yet", the same while the outermost
/// element's own bytes have not all arrived, and malformed once they have (lber would wait
/// for bytes that never come).
fn expected(input: &[u8]) -> Parsed<'_> {
    match lber_parse(input) {
        Some((tag, _)) if depth(&tag) > MAX_DEPTH => Err(Malformed),
        Some(whole) => Ok(Some(whole)),
        // lber itself says whether the outermost element's bytes are there: read as a
        // primitive, its contents are not parsed.
        None if lber_parse(&flattened(input)).is_some() => Err(Malformed),
        None => Ok(None),
    }
}

fn flattened(input: &[u8]) -> Vec<u8> {
    let mut flat = input.to_vec();
    if let Some(first) = flat.first_mut() {
        *first &= !0x20;
    }
    flat
}

fn depth(tag: &StructureTag) -> usize {
    match &tag.payload {
        PL::P(_) => 1,
        PL::C(children) => 1 + children.iter().map(depth).max().unwrap_or(0),
    }
}

#[test]
fn parses_what_it_encodes_as_lber_does() {
    let mut rng = Lcg(11);
    for _ in 0..300 {
        let tag = readable(&mut rng, 4);
        let mut bytes = ours(&tag);
        bytes.extend_from_slice(b"next");
        let parsed = ldap3::ber::parse_tag(&bytes)
            .expect("well formed")
            .expect("a whole element");
        assert_eq!(parsed.0, tag);
        assert_eq!(parsed.1, b"next");
        assert_eq!(Some(parsed), lber_parse(&bytes));
    }
}

#[test]
fn parses_cut_and_damaged_input_as_lber_does() {
    let mut rng = Lcg(13);
    let (mut whole, mut incomplete, mut malformed) = (0, 0, 0);
    for _ in 0..300 {
        let tag = readable(&mut rng, 3);
        let bytes = ours(&tag);
        // Every cut: all but the whole are incomplete, as a message arriving in pieces is.
        for cut in 0..=bytes.len() {
            let ours = ldap3::ber::parse_tag(&bytes[..cut]);
            assert_eq!(ours, expected(&bytes[..cut]), "{:?}", &bytes[..cut]);
            match ours {
                Ok(Some(_)) => whole += 1,
                Ok(None) => incomplete += 1,
                Err(Malformed) => panic!("a cut is never malformed: {:?}", &bytes[..cut]),
            }
        }
        // Damaged bytes, lengths and tags included.
        for _ in 0..20 {
            let mut bad = bytes.to_vec();
            let at = rng.next(bad.len() as u64) as usize;
            bad[at] = rng.next(256) as u8;
            let ours = ldap3::ber::parse_tag(&bad);
            assert_eq!(ours, expected(&bad), "{bad:?}");
            malformed += usize::from(ours.is_err());
        }
    }
    assert!(
        whole == 300 && incomplete > 10_000 && malformed > 100,
        "{malformed}"
    );
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
        b"\x1f\x01a", // tag number 31 read as 31, as lber does
        b"\x30\x00rest",
    ] {
        assert_eq!(ldap3::ber::parse_tag(input), expected(input), "{input:?}");
        assert!(ldap3::ber::parse_tag(input).is_ok(), "{input:?}");
    }
}

/// Where lber waits for more bytes inside an element that has all arrived, and a message
/// stays stuck on its connection for good, the decoder says the input is malformed.
#[test]
fn a_child_overrunning_a_whole_parent_is_malformed() {
    for input in [
        &b"\x30\x03\x04\x05abc"[..],       // a child longer than its parent
        b"\x30\x01\x04",                   // a child's length missing
        b"\x30\x03\x04\x82\x01",           // a child's long-form length cut short
        b"\x30\x06\x30\x04\x04\x03ab\xff", // two levels down
    ] {
        assert_eq!(lber_parse(input), None, "lber waits on {input:?}");
        assert_eq!(ldap3::ber::parse_tag(input), Err(Malformed), "{input:?}");
        // Not yet whole (a byte of the outermost element missing): still only incomplete.
        let cut = &input[..1 + usize::from(input[1])];
        assert_eq!(ldap3::ber::parse_tag(cut), Ok(None), "{cut:?}");
    }
}

/// SEQUENCEs nested `levels` deep, every length in the four-byte long form.
fn nested(levels: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(6 * levels);
    for level in 0..levels {
        let inner = 6 * (levels - 1 - level) as u32;
        bytes.extend_from_slice(&[0x30, 0x84]);
        bytes.extend_from_slice(&inner.to_be_bytes());
    }
    bytes
}

/// Nesting up to `MAX_DEPTH` reads as lber reads it; deeper is malformed, however deep, where
/// lber's recursion would overflow the thread's stack and end the process.
#[test]
fn nesting_is_bounded() {
    let deepest = nested(MAX_DEPTH);
    let (tag, rest) = ldap3::ber::parse_tag(&deepest).unwrap().unwrap();
    assert!(rest.is_empty());
    assert_eq!(depth(&tag), MAX_DEPTH);
    assert_eq!(Some((tag, rest)), lber_parse(&deepest));
    for levels in [MAX_DEPTH + 1, 1_000_000] {
        assert_eq!(ldap3::ber::parse_tag(&nested(levels)), Err(Malformed));
    }
    // A deep element still arriving is incomplete until it is whole.
    let deep = nested(1_000_000);
    assert_eq!(ldap3::ber::parse_tag(&deep[..deep.len() / 2]), Ok(None));
}

/// The Paged Results control a directory sends back is read with the bounded parser; one that
/// is not a size and a cookie is `None` (the search fails with an error) instead of a panic.
#[test]
fn paged_results_controls_are_read_or_refused() {
    use ldap3::controls::{PagedResults, RawControl};
    let sent = RawControl::from(PagedResults {
        size: 1500,
        cookie: b"cookie".to_vec(),
    });
    let read = PagedResults::try_parse(sent.val.as_deref().expect("a value")).expect("read");
    assert_eq!((read.size, &read.cookie[..]), (1500, &b"cookie"[..]));
    for bad in [
        &b""[..],
        b"\x30\x00",                 // no size
        b"\x30\x03\x02\x01\x05",     // no cookie
        b"\x04\x03abc",              // not a sequence
        b"\x30\x05\x04\x01\x05\x04", // a size that is not an INTEGER, cut short
        &nested(1_000_000),
    ] {
        assert!(PagedResults::try_parse(bad).is_none(), "{bad:?}");
    }
}

/// A copy of `t` with one random change: a primitive made constructed or the other way round,
/// a child dropped or added, a string made invalid UTF-8, a tag number or class changed.
fn mutated(rng: &mut Lcg, t: &StructureTag) -> StructureTag {
    let mut t = t.clone();
    // The path to a random node: the operation itself (its number kept: a reader is chosen
    // by it) or anything below.
    let mut path = Vec::new();
    let mut at = &t;
    while let PL::C(children) = &at.payload {
        if children.is_empty() || rng.next(3) == 0 {
            break;
        }
        let i = rng.next(children.len() as u64) as usize;
        path.push(i);
        at = &children[i];
    }
    let top = path.is_empty();
    let mut node = &mut t;
    for i in path {
        let PL::C(children) = &mut node.payload else {
            unreachable!("the path goes through constructed tags")
        };
        node = &mut children[i];
    }
    match rng.next(6) {
        0 => {
            node.payload = match &node.payload {
                PL::P(_) => PL::C((0..rng.next(3)).map(|_| readable(rng, 1)).collect()),
                PL::C(_) => PL::P(b"x".to_vec()),
            }
        }
        1 => {
            if let PL::C(children) = &mut node.payload {
                if !children.is_empty() {
                    let i = rng.next(children.len() as u64) as usize;
                    children.remove(i);
                }
            }
        }
        2 => {
            if let PL::C(children) = &mut node.payload {
                children.push(readable(rng, 2));
            }
        }
        3 => node.payload = PL::P(vec![b'a', 0xff]),
        4 if !top => node.id = rng.next(13),
        _ if !top => {
            node.class = [
                TagClass::Universal,
                TagClass::Application,
                TagClass::Context,
            ][rng.next(3) as usize]
        }
        _ => {}
    }
    t
}

/// Whether `read` panics on `t` (the panic's message stays in the test's captured output).
fn panics<T>(read: impl FnOnce() -> T) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).is_err()
}

/// `ldap3::ber::readable_response` (change 7) says a message is readable exactly when the
/// crate's own readers read it without panicking: checked on entries and results damaged one
/// to three times, thousands of each.
#[test]
fn readable_responses_are_what_the_readers_read() {
    use ldap3::ber::{read_result, readable_response};
    use ldap3::{ResultEntry, SearchEntry};
    let s = |v: &[u8]| prim(TagClass::Universal, 4, v);
    let entry = cons(
        TagClass::Application,
        4,
        vec![
            s(b"uid=a,ou=people"),
            cons(
                TagClass::Universal,
                16,
                vec![
                    cons(
                        TagClass::Universal,
                        16,
                        vec![s(b"cn"), cons(TagClass::Universal, 17, vec![s(b"A")])],
                    ),
                    cons(
                        TagClass::Universal,
                        16,
                        vec![
                            s(b"jpegPhoto"),
                            cons(TagClass::Universal, 17, vec![s(&[0xff, 0xd8])]),
                        ],
                    ),
                ],
            ),
        ],
    );
    let result = cons(
        TagClass::Application,
        5,
        vec![
            prim(TagClass::Universal, 10, &[0]),
            s(b""),
            s(b"done"),
            cons(TagClass::Context, 3, vec![s(b"ldap://other/")]),
            prim(TagClass::Context, 7, &[1, 2]),
            prim(TagClass::Context, 10, b"1.3.6.1"),
            prim(TagClass::Context, 11, &[0xff]),
        ],
    );
    assert!(readable_response(&entry) && readable_response(&result));
    let entry_read = SearchEntry::construct(ResultEntry::new(entry.clone()));
    assert_eq!(entry_read.attrs["cn"], vec!["A"]);
    assert_eq!(entry_read.bin_attrs["jpegPhoto"], vec![vec![0xff, 0xd8]]);
    assert_eq!(read_result(result.clone()).text, "done");

    let mut rng = Lcg(7);
    let (mut refused, mut read) = (0, 0);
    for _ in 0..4_000 {
        for (template, reader) in [(&entry, 0), (&result, 1)] {
            let mut t = template.clone();
            for _ in 0..=rng.next(3) {
                t = mutated(&mut rng, &t);
            }
            let copy = t.clone();
            let panicked = if reader == 0 {
                panics(move || SearchEntry::construct(ResultEntry::new(copy)))
            } else {
                panics(move || read_result(copy))
            };
            assert_eq!(readable_response(&t), !panicked, "{t:?}");
            if panicked {
                refused += 1;
            } else {
                read += 1;
            }
        }
    }
    // Both sides of the line were reached, many times.
    assert!(
        refused > 1_000 && read > 1_000,
        "refused {refused}, read {read}"
    );
}
