//! The BER encoder and decoder carried in `vendor/ldap3` (`ldap3::ber`, changes 3, 4 and 6 in
//! its `PATCHED.md`) give the same results as upstream lber's, which they replace on every
//! message the sidecar sends to or reads from a directory, except where lber would hang (a
//! child overrunning a complete parent) or overflow the stack (unbounded nesting): there the
//! decoder says the input is malformed. Its check of a decoded answer (change 7) lets through
//! exactly what ldap3's readers read without panicking. Checked here because the vendored
//! crate's own tests are not built by `cargo test`.

use bytes::BytesMut;
use ldap3::asn1::{PL, StructureTag, TagClass};
use ldap3::ber::{MAX_DEPTH, Malformed};

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
