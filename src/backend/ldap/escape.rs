//! Escaping of values put into LDAP filters (RFC 4515) and distinguished names (RFC 4514).
//!
//! Every value the sidecar puts into a filter or a DN goes through these functions, so a value
//! holding `*()\,=+<>#;"` or NUL is matched and stored literally and never widens a search.
//! Called by [`super::filter`] and by the table's writes.

/// Escapes a value for an RFC 4515 filter assertion: `*`, `(`, `)`, `\` and NUL become `\hh`
/// (RFC 4515 §3); everything else, UTF-8 included, is kept as it is.
pub fn filter_value(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    // Bytes that are not UTF-8 (a binary attribute) are all written as \hh.
    let text = std::str::from_utf8(value).ok();
    match text {
        Some(s) => {
            for c in s.chars() {
                match c {
                    '*' | '(' | ')' | '\\' | '\0' => push_hex(&mut out, c as u8),
                    c => out.push(c),
                }
            }
        }
        None => {
            for b in value {
                push_hex(&mut out, *b);
            }
        }
    }
    out
}

/// Escapes a value for one attribute value of an RFC 4514 DN: the characters RFC 4514 §2.4
/// requires (`"+,;<>\` anywhere, `=` too since some servers want it, a leading `#` or space, a
/// trailing space) get a backslash; NUL becomes `\00`.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// Reverses [`filter_value`] (and any RFC 4515 `\hh` escaping): `None` when `s` holds an
/// unescaped special character or a bad escape. For tests and for reading values back.
pub fn unescape_filter_value(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'*' | b'(' | b')' | 0 => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Reverses [`dn_value`] (and RFC 4514 escaping in general: `\c` and `\hh`). `None` on an
/// unescaped special character or a bad escape.
pub fn unescape_dn_value(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let next = *b.get(i + 1)?;
                if next.is_ascii_hexdigit() {
                    let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                    out.push(u8::from_str_radix(h, 16).ok()?);
                    i += 3;
                } else {
                    out.push(next);
                    i += 2;
                }
            }
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'=' | 0 => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 4515 §4's own examples, and every character that means something in a filter.
    #[test]
    fn filter_values_escape_what_rfc_4515_says() {
        assert_eq!(
            filter_value(b"Parens R Us (for all your parenthetical needs)"),
            "Parens R Us \\28for all your parenthetical needs\\29"
        );
        assert_eq!(filter_value(b"*"), "\\2a");
        assert_eq!(filter_value(b"C:\\MyFile"), "C:\\5cMyFile");
        assert_eq!(filter_value(b"a\0b"), "a\\00b");
        assert_eq!(filter_value("Lučić".as_bytes()), "Lučić");
        // Not UTF-8 (a binary value): every byte escaped.
        assert_eq!(filter_value(&[0xff, 0x02, 0x48]), "\\ff\\02\\48");
        assert_eq!(filter_value(b",=+<>#;\""), ",=+<>#;\"");
    }

    /// RFC 4514 §4's examples, and the position-dependent characters.
    #[test]
    fn dn_values_escape_what_rfc_4514_says() {
        assert_eq!(dn_value("Sue, Grabbit and Runn"), "Sue\\, Grabbit and Runn");
        assert_eq!(dn_value("#x"), "\\#x");
        assert_eq!(dn_value("a#"), "a#");
        assert_eq!(dn_value(" a b "), "\\ a b\\ ");
        assert_eq!(
            dn_value("a=b+c;d<e>f\"g\\"),
            "a\\=b\\+c\\;d\\<e\\>f\\\"g\\\\"
        );
        assert_eq!(dn_value("nul\0"), "nul\\00");
        assert_eq!(dn_value("Lučić"), "Lučić");
    }

    proptest! {
        /// Any text survives a filter round trip, and the escaped form holds no special
        /// character that could change the filter's structure.
        #[test]
        fn filter_round_trip(s in any::<String>()) {
            let e = filter_value(s.as_bytes());
            prop_assert!(!e.contains(['*', '(', ')', '\0']));
            prop_assert_eq!(unescape_filter_value(&e), Some(s.into_bytes()));
        }

        /// Any bytes (a binary attribute) survive a filter round trip.
        #[test]
        fn filter_round_trip_bytes(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(unescape_filter_value(&filter_value(&b)), Some(b));
        }

        /// Any text survives a DN round trip, and the escaped form has no unescaped
        /// separator (`,` `+` `=`) that could end the RDN.
        #[test]
        fn dn_round_trip(s in any::<String>()) {
            let e = dn_value(&s);
            prop_assert_eq!(unescape_dn_value(&e), Some(s));
        }

        /// The special characters in any mix.
        #[test]
        fn dn_round_trip_specials(s in "[ #\",+;<>=\\\\a\u{0}]{0,12}") {
            prop_assert_eq!(unescape_dn_value(&dn_value(&s)), Some(s));
        }
    }
}
