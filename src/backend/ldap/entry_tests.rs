//! The vendored ldap3's short path for search entries (`ldap3::entry`, change 10 in its
//! `PATCHED.md`) reads every message exactly as its general decoder does: the same entry, the
//! same other messages, the same errors, the same bytes consumed. Checked here because the
//! vendored crate's own tests are not built by `cargo test`.

use bytes::BytesMut;
use ldap3::asn1::{PL, StructureTag, Tag, TagClass};
use ldap3::entry::{Decoded, decode, decode_tree};
use ldap3::{ResultEntry, SearchEntry};

use super::ber_tests::{Lcg, cons, prim};

/// A random one of `items`.
fn pick<T: Copy>(rng: &mut Lcg, items: &[T]) -> T {
    items[rng.next(items.len() as u64) as usize]
}

fn octets(v: &[u8]) -> StructureTag {
    prim(TagClass::Universal, 4, v)
}

fn seq(children: Vec<StructureTag>) -> StructureTag {
    cons(TagClass::Universal, 16, children)
}

/// BER for `t`, each length in the short form where it fits or in the minimal long form,
/// and, when `odd` is set, now and then in a longer long form than needed (which BER allows
/// and the decoders read).
fn encode(out: &mut Vec<u8>, t: &StructureTag, rng: &mut Lcg, odd: bool) {
    let constructed = matches!(t.payload, PL::C(_));
    out.push((t.class as u8) << 6 | u8::from(constructed) << 5 | t.id as u8);
    let mut contents = Vec::new();
    match &t.payload {
        PL::P(v) => contents.extend_from_slice(v),
        PL::C(children) => {
            for c in children {
                encode(&mut contents, c, rng, odd);
            }
        }
    }
    let len = contents.len();
    let be = (len as u64).to_be_bytes();
    let minimal = be
        .iter()
        .position(|&b| b != 0)
        .map_or(&be[8..], |i| &be[i..]);
    if odd && rng.next(8) == 0 {
        let extra = 1 + rng.next(2) as usize;
        out.push(0x80 | (minimal.len() + extra) as u8);
        out.extend(std::iter::repeat_n(0, extra));
        out.extend_from_slice(minimal);
    } else if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x80 | minimal.len() as u8);
        out.extend_from_slice(minimal);
    }
    out.extend_from_slice(&contents);
}

/// A search entry of the kind directories send, now and then with something unusual: a DN
/// or type that is not UTF-8, values that are not (binary attributes), empty and repeated
/// attributes, long values (every length form), an extra element.
fn entry(rng: &mut Lcg) -> StructureTag {
    let dn = pick::<&[u8]>(
        rng,
        &[
            &b"uid=alice,ou=people,dc=example,dc=org"[..],
            "cn=J\u{fc}rgen M\u{fc}ller,ou=people".as_bytes(),
            b"",
            b"cn=a\\2Cb,ou=x",
            &[b'c', b'n', b'=', 0xff],
        ],
    );
    let kinds: &[&[u8]] = &[
        b"cn",
        b"CN",
        b"uid",
        b"mail",
        b"objectClass",
        b"jpegPhoto",
        b"member;range=0-1499",
        b"entryUUID",
        "caf\u{e9}".as_bytes(),
        b"",
        &[b'x', 0xc3],
    ];
    let mut attrs = Vec::new();
    for _ in 0..rng.next(12) {
        let mut values = Vec::new();
        for _ in 0..rng.next(4) {
            let value = match rng.next(8) {
                0 => Vec::new(),
                1 => vec![0xff, 0xd8, 0xff, 0xe0],
                2 => (0..100 + rng.next(300))
                    .map(|i| b'a' + (i % 26) as u8)
                    .collect(),
                3 if rng.next(20) == 0 => vec![b'z'; 65_530 + rng.next(12) as usize],
                4 => "\u{e9}t\u{e9} \u{1F600}".as_bytes().to_vec(),
                _ => format!("value-{}", rng.next(1000)).into_bytes(),
            };
            values.push(octets(&value));
        }
        let mut attr = vec![
            octets(pick(rng, kinds)),
            cons(TagClass::Universal, 17, values),
        ];
        if rng.next(40) == 0 {
            attr.push(octets(b"extra"));
        }
        attrs.push(seq(attr));
    }
    let mut items = vec![octets(dn), seq(attrs)];
    if rng.next(40) == 0 {
        items.push(octets(b"extra"));
    }
    cons(TagClass::Application, 4, items)
}

/// Another message a search reads: its result, or a referral.
fn other(rng: &mut Lcg) -> StructureTag {
    if rng.next(2) == 0 {
        cons(
            TagClass::Application,
            5,
            vec![
                prim(TagClass::Universal, 10, &[0]),
                octets(b""),
                octets(b""),
            ],
        )
    } else {
        cons(
            TagClass::Application,
            19,
            vec![octets(b"ldap://other.example/ou=x")],
        )
    }
}

/// An LDAPMessage around `op`: the message id's contents (minimal, or odd), and now and then
/// controls after the operation.
fn message(rng: &mut Lcg, op: StructureTag) -> StructureTag {
    let id = pick::<&[u8]>(
        rng,
        &[
            &[1][..],
            &[0],
            &[0x7f],
            &[0, 0x80],
            &[0x7f, 0xff, 0xff, 0xff],
            &[0x01, 0, 0, 0, 5],
            &[],
        ],
    );
    let mut items = vec![prim(TagClass::Universal, 2, id), op];
    if rng.next(10) == 0 {
        items.push(cons(
            TagClass::Context,
            0,
            vec![seq(vec![octets(b"1.2.840.113556.1.4.319")])],
        ));
    }
    seq(items)
}

/// Both decoders on the same bytes, with what each consumed. Panics where they differ;
/// returns whether the short path read the message.
fn same(input: &[u8]) -> bool {
    let (mut a, mut b) = (BytesMut::from(input), BytesMut::from(input));
    let (short, general) = (decode(&mut a), decode_tree(&mut b));
    assert_eq!(a, b, "the same bytes consumed from {input:?}");
    let took_short = is_unread(&short);
    match (short, general) {
        (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string()),
        (Ok(None), Ok(None)) => {}
        (Ok(Some((id_a, (tag_a, ctl_a)))), Ok(Some((id_b, (tag_b, ctl_b))))) => {
            assert_eq!(id_a, id_b);
            assert_eq!(format!("{ctl_a:?}"), format!("{ctl_b:?}"));
            match (tag_a, tag_b) {
                (Tag::StructureTag(a), Tag::StructureTag(b)) if b.id == 4 => {
                    let (a, b) = (read(a), read(b));
                    assert_eq!(
                        (a.dn, a.attrs, a.bin_attrs),
                        (b.dn, b.attrs, b.bin_attrs),
                        "{input:?}"
                    );
                }
                (a, b) => assert_eq!(a, b),
            }
        }
        (x, y) => panic!("{input:?}: the short path gave {x:?}, the general one {y:?}"),
    }
    took_short
}

fn is_unread(d: &Decoded) -> bool {
    matches!(
        d,
        Ok(Some((
            _,
            (
                Tag::StructureTag(StructureTag {
                    id: 4,
                    payload: PL::P(_),
                    ..
                }),
                _
            )
        )))
    )
}

fn read(t: StructureTag) -> SearchEntry {
    SearchEntry::construct(ResultEntry::new(t))
}

/// The entry a directory sends is read by the short path, into exactly what the tree gave.
#[test]
fn a_usual_entry_is_read_from_its_bytes() {
    let e = cons(
        TagClass::Application,
        4,
        vec![
            octets(b"uid=alice,ou=people,dc=example,dc=org"),
            seq(vec![
                seq(vec![
                    octets(b"cn"),
                    cons(
                        TagClass::Universal,
                        17,
                        vec![octets(b"Alice"), octets(b"Al")],
                    ),
                ]),
                seq(vec![
                    octets(b"jpegPhoto"),
                    cons(TagClass::Universal, 17, vec![octets(&[0xff, 0xd8])]),
                ]),
                seq(vec![
                    octets(b"mixed"),
                    cons(
                        TagClass::Universal,
                        17,
                        vec![octets(b"text"), octets(&[0x80]), octets(b"more")],
                    ),
                ]),
                seq(vec![
                    octets(b"empty"),
                    cons(TagClass::Universal, 17, vec![]),
                ]),
            ]),
        ],
    );
    let msg = seq(vec![prim(TagClass::Universal, 2, &[7]), e]);
    let mut bytes = Vec::new();
    encode(&mut bytes, &msg, &mut Lcg(1), false);
    assert!(same(&bytes), "the short path read it");

    let Ok(Some((7, (Tag::StructureTag(t), controls)))) = decode(&mut BytesMut::from(&bytes[..]))
    else {
        panic!("an entry with message id 7")
    };
    assert!(controls.is_empty());
    let e = read(t);
    assert_eq!(e.dn, "uid=alice,ou=people,dc=example,dc=org");
    assert_eq!(e.attrs["cn"], vec!["Alice", "Al"]);
    assert_eq!(e.attrs["empty"], Vec::<String>::new());
    assert_eq!(e.bin_attrs["jpegPhoto"], vec![vec![0xff, 0xd8]]);
    // An attribute with a value that is not UTF-8 is binary whole: that value first, then
    // the others, as upstream orders them.
    assert_eq!(
        e.bin_attrs["mixed"],
        vec![vec![0x80], b"text".to_vec(), b"more".to_vec()]
    );
    assert!(!e.attrs.contains_key("jpegPhoto") && !e.attrs.contains_key("mixed"));
}

/// Generated messages (entries, unusual ones among them, results, referrals; each alone or
/// followed by the next message) and every one damaged: the two paths agree on all.
#[test]
fn both_paths_read_every_message_alike() {
    let mut rng = Lcg(42);
    let (mut short, mut general) = (0, 0);
    for round in 0..6_000 {
        let op = if rng.next(5) == 0 {
            other(&mut rng)
        } else {
            entry(&mut rng)
        };
        let msg = message(&mut rng, op);
        let mut bytes = Vec::new();
        encode(&mut bytes, &msg, &mut rng, round % 3 == 0);
        if rng.next(4) == 0 {
            let op = other(&mut rng);
            let next = message(&mut rng, op);
            encode(&mut bytes, &next, &mut rng, false);
        }
        if same(&bytes) {
            short += 1;
        } else {
            general += 1;
        }
        // Damaged: a byte changed, dropped or added, or the message cut short.
        for _ in 0..3 {
            let mut bad = bytes.clone();
            let at = rng.next(bad.len() as u64) as usize;
            match rng.next(4) {
                0 => bad[at] = rng.next(256) as u8,
                1 => {
                    bad.remove(at);
                }
                2 => bad.insert(
                    at,
                    pick(&mut rng, &[0x04, 0x30, 0x31, 0x64, 0x80, 0x81, 0xff]),
                ),
                _ => bad.truncate(at),
            }
            same(&bad);
        }
    }
    // Both paths were taken, many times.
    assert!(
        short > 1_500 && general > 1_500,
        "short {short}, general {general}"
    );
}

/// An entry arriving in pieces is incomplete at every cut, on both paths, and read once whole.
#[test]
fn an_entry_cut_anywhere_waits_for_the_rest() {
    let mut rng = Lcg(9);
    for _ in 0..50 {
        let op = entry(&mut rng);
        let msg = message(&mut rng, op);
        let mut bytes = Vec::new();
        encode(&mut bytes, &msg, &mut rng, true);
        for cut in 0..bytes.len().min(3_000) {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert!(matches!(decode(&mut buf), Ok(None)), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
            same(&bytes[..cut]);
        }
        same(&bytes);
    }
}
