//! What a string value may contain before any store sees it.
//!
//! [`super::resource::Normalizer`] passes every string attribute value of a request body (POST,
//! PUT, PATCH) through [`check`], and the filter parser passes every string literal through
//! [`canonical`]. Two levels apply:
//!
//! - **Every string**: no C0 or C1 control character (tab, line feed and carriage return
//!   aside, which multi-line text such as `addresses.formatted` needs), no bidirectional
//!   embedding, override or isolate (`U+202A`–`U+202E`, `U+2066`–`U+2069`: they make text
//!   display in an order other than the one stored), no invisible character that has no use
//!   in any script (zero width space, word joiner, BOM, tag characters, Hangul fillers), no
//!   noncharacter.
//! - **Identifiers** — `userName`, `externalId`, a Group's `displayName`, and any attribute
//!   whose uniqueness is `server` or `global` — additionally: no tab or line break, no
//!   default-ignorable character at all (zero width joiners, direction marks, variation
//!   selectors, soft hyphen), no space other than U+0020, no leading or trailing
//!   whitespace, and not empty.
//!
//! Why refuse rather than strip or trim: the identity provider must keep believing that the
//! value it sent is the value stored. Trimming `" app-admin"` would store `app-admin`, the
//! provider's next `userName eq " app-admin"` would find nothing, it would create again and
//! get 409, for ever; stripping `app-admin\u{200b}` would quietly merge two identities. A 400
//! naming the attribute shows up in the provider's provisioning log, and an administrator
//! fixes the source. Names keep what real scripts need: zero width (non-)joiners for Persian
//! and Indic names and emoji sequences, direction marks for mixed-direction text.
//!
//! Every accepted string is stored in Unicode Normalization Form C (NFC). Stores compare
//! case-insensitively by lower-casing, which is blind to canonical equivalence: `é` sent
//! precomposed and `e` + combining acute look identical and would be two users. NFC makes
//! them one string, so the store's comparison (and its unique index) sees one. Not NFKC: it
//! would rewrite characters users consider distinct (`ﬁ` → `fi`, `²` → `2`, full-width
//! letters) and change what the app shows; the look-alikes it would fold are a display
//! concern, and the invisible ones are refused above.

use std::borrow::Cow;
use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::{IsNormalized, is_nfc_quick};

/// Why a string was refused; shown in the 400 after the attribute's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A character that is not allowed, with its class.
    Char(char, &'static str),
    /// Leading or trailing whitespace in an identifier.
    Padded,
    /// An identifier that is empty or only whitespace.
    Empty,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Char(c, class) => write!(f, "contains {class} U+{:04X}", u32::from(*c)),
            Refusal::Padded => f.write_str("must not begin or end with whitespace"),
            Refusal::Empty => f.write_str("must not be empty"),
        }
    }
}

/// Checks one string value (see the module doc) and returns it in NFC. `identifier` applies
/// the stricter rules; `required` refuses an empty value.
pub fn check(s: &str, identifier: bool, required: bool) -> Result<Cow<'_, str>, Refusal> {
    // Printable ASCII, nearly every value an identity provider sends, holds no refused
    // character and is in NFC already: one pass over the bytes instead of a lookup per char.
    let printable = s.bytes().all(|b| (0x20..0x7F).contains(&b));
    if !printable {
        if let Some(c) = s.chars().find(|c| refused(*c, identifier).is_some()) {
            let class = refused(c, identifier).unwrap_or("a character not allowed here:");
            return Err(Refusal::Char(c, class));
        }
    }
    if identifier {
        if s.trim().is_empty() {
            if required || !s.is_empty() {
                return Err(Refusal::Empty);
            }
        } else if s.trim() != s {
            return Err(Refusal::Padded);
        }
    }
    Ok(if printable {
        Cow::Borrowed(s)
    } else {
        canonical(s)
    })
}

/// `s` in NFC, borrowed when it already is (all ASCII text is).
pub fn canonical(s: &str) -> Cow<'_, str> {
    if is_nfc_quick(s.chars()) == IsNormalized::Yes {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfc().collect())
    }
}

/// The class of a character that may not appear (in an identifier when `identifier`), or
/// `None` when it may.
fn refused(c: char, identifier: bool) -> Option<&'static str> {
    match c {
        '\t' | '\n' | '\r' if !identifier => None,
        '\u{0}'..='\u{1F}' | '\u{7F}'..='\u{9F}' => Some("the control character"),
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {
            Some("the bidirectional control character")
        }
        '\u{200B}'
        | '\u{2060}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{180E}'
        | '\u{3164}'
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}' => Some("the invisible character"),
        '\u{FDD0}'..='\u{FDEF}' => Some("the noncharacter"),
        c if u32::from(c) & 0xFFFE == 0xFFFE => Some("the noncharacter"),
        _ if !identifier => None,
        '\u{2028}' | '\u{2029}' => Some("the line separator"),
        '\u{200E}' | '\u{200F}' | '\u{061C}' => Some("the bidirectional mark"),
        '\u{00AD}'
        | '\u{034F}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{17B4}'
        | '\u{17B5}'
        | '\u{180B}'..='\u{180D}'
        | '\u{180F}'
        | '\u{200C}'
        | '\u{200D}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0100}'..='\u{E01EF}' => Some("the invisible character"),
        c if c.is_whitespace() && c != ' ' => Some("the space character"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings of issue #14 are refused as identifiers, each with its reason; a plain
    /// identifier passes unchanged (borrowed).
    #[test]
    fn identifiers() {
        for (s, want) in [
            (
                "app-admin\u{0}.evil",
                Refusal::Char('\u{0}', "the control character"),
            ),
            (
                "app-admin\u{200b}",
                Refusal::Char('\u{200b}', "the invisible character"),
            ),
            (
                "\u{202e}nimda",
                Refusal::Char('\u{202e}', "the bidirectional control character"),
            ),
            (
                "admin\u{85}",
                Refusal::Char('\u{85}', "the control character"),
            ),
            (
                "ad\u{200d}min",
                Refusal::Char('\u{200d}', "the invisible character"),
            ),
            (
                "app\u{a0}admin",
                Refusal::Char('\u{a0}', "the space character"),
            ),
            ("a\tb", Refusal::Char('\t', "the control character")),
            ("app-admin ", Refusal::Padded),
            (" app-admin", Refusal::Padded),
            ("", Refusal::Empty),
            ("   ", Refusal::Empty),
        ] {
            assert_eq!(check(s, true, true), Err(want), "{s:?}");
        }
        assert!(matches!(
            check("app-admin", true, true),
            Ok(Cow::Borrowed("app-admin"))
        ));
        // An optional identifier (externalId) may be empty: that clears it.
        assert_eq!(
            check("", true, false).map(Cow::into_owned),
            Ok(String::new())
        );
        assert_eq!(check("  ", true, false), Err(Refusal::Empty));
        assert_eq!(
            Refusal::Char('\u{200b}', "the invisible character").to_string(),
            "contains the invisible character U+200B"
        );
    }

    /// Names keep what scripts need (ZWNJ in Persian, ZWJ in emoji, direction marks, line
    /// breaks in multi-line text, surrounding spaces) but not controls or overrides.
    #[test]
    fn other_strings() {
        for s in [
            "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}",
            "\u{1f469}\u{200d}\u{1f4bb}",
            "abc \u{200f}\u{5e9}\u{5dc}\u{5d5}\u{5dd}",
            "1 Main St\nSpringfield",
            " padded ",
            "",
        ] {
            assert!(check(s, false, false).is_ok(), "{s:?}");
        }
        for s in [
            "a\u{0}b",
            "\u{202e}abc",
            "x\u{feff}",
            "\u{e0041}",
            "bad\u{fffe}",
        ] {
            assert!(check(s, false, false).is_err(), "{s:?}");
        }
    }

    /// Canonically equivalent spellings become one string; NFKC's foldings do not happen.
    #[test]
    fn nfc() {
        assert_eq!(canonical("e\u{301}mile"), "\u{e9}mile");
        assert_eq!(
            check("e\u{301}mile", true, true).map(Cow::into_owned),
            Ok("\u{e9}mile".into())
        );
        assert_eq!(canonical("\u{fb01}"), "\u{fb01}");
        assert!(matches!(canonical("plain"), Cow::Borrowed(_)));
    }
}
