//! Active Directory as a flavour of the LDAP store (`flavour = "active-directory"` on an
//! `[backend.NAME] type = "ldap"`): the same entries, searches and modifies, with what AD does
//! differently from a standard directory. The table ([`super::table`]) calls these at a few
//! marked points; nothing here is a second store.
//!
//! - **Id**: `objectGUID`, 16 bytes in the mixed-endian layout Microsoft GUIDs use (the first
//!   three groups little-endian), shown as the canonical string
//!   `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`; searched by the escaped bytes
//!   (`(objectGUID=\50\b5…)`, RFC 4515 §3), which AD matches exactly. AD has no `entryUUID`, so
//!   a resource that names no `id` uses `objectGUID`.
//! - **`active` ↔ `userAccountControl`**: the account is active when the ACCOUNTDISABLE bit
//!   (2) is clear. A change reads the flags and writes them back with only that bit changed,
//!   never clobbering the others (password-never-expires, smartcard-required, …); filters use
//!   the bitwise matching rule `1.2.840.113556.1.4.803`. The read and the write are one round
//!   trip apart: a flag another writer changes in between is overwritten (LDAP has no
//!   compare-and-set for one bit; Windows AD's delete-value-then-add trick is not honoured by
//!   Samba, so it would not be tested).
//! - **`password` → `unicodePwd`**: the password in double quotes, UTF-16LE (MS-ADTS
//!   §3.1.1.3.1.5), written only over LDAPS or StartTLS (AD refuses it otherwise, and the
//!   sidecar refuses first, at start-up and per request); never read back (AD never returns
//!   it). A password the domain's policy refuses is a 400 naming `password`.
//! - **New accounts**: created with `userAccountControl` 514 (a normal account, disabled) and
//!   enabled in the same add only when a password comes with them: an account without a
//!   password stays disabled (SCIM `active` reads false) until a later request sets one and
//!   enables it. Windows AD refuses to enable an account without a password when the policy
//!   wants one; its error is a 400 naming `active`.
//! - **Groups**: AD keeps `member` (any group may be empty, no placeholder) and computes
//!   `memberOf` on the members itself: the sidecar never writes `memberOf`. Which of some DNs a
//!   group lists is asked through the members' `memberOf` (AD has no Matched Values control),
//!   DNs are searched by `distinguishedName` (AD has no `entryDN`), and a group's members are
//!   read in ranges of 1500 (`member;range=0-1499`, then `member;range=1500-2999`, …, AD's
//!   `MaxValRange`), to the end.

use std::collections::HashSet;

use ldap3::{Scope, SearchEntry};

use super::filter::NOTHING;
use super::pool::{Pool, unavailable};
use super::table::{Field, result_error, values_of};
use crate::backend::{BackendError, CmpOp, FieldInfo, FieldType, Row, Value};

/// Which kind of directory a backend talks to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavour {
    /// A standard directory (OpenLDAP, 389 DS, AD LDS through its standard attributes).
    #[default]
    Standard,
    /// Microsoft Active Directory, or a Samba AD domain controller.
    ActiveDirectory,
}

impl Flavour {
    /// The flavour named in the config (`"ldap"` or `"active-directory"`).
    pub fn parse(s: &str) -> Option<Flavour> {
        match s {
            "ldap" | "standard" => Some(Flavour::Standard),
            "active-directory" => Some(Flavour::ActiveDirectory),
            _ => None,
        }
    }
}

/// The attribute holding an AD entry's GUID.
pub const GUID: &str = "objectGUID";
/// The account's flags.
pub const UAC: &str = "userAccountControl";
/// The password (write-only).
pub const PASSWORD: &str = "unicodePwd";
/// The attribute holding an entry's DN, searchable (AD's counterpart of `entryDN`).
pub const DN_ATTR: &str = "distinguishedName";
/// `userAccountControl` ACCOUNTDISABLE.
const ACCOUNTDISABLE: i64 = 0x2;
/// `userAccountControl` NORMAL_ACCOUNT.
const NORMAL_ACCOUNT: i64 = 0x200;
/// LDAP_MATCHING_RULE_BIT_AND: `(attr:1.2.840.113556.1.4.803:=2)` is "bit 2 is set".
const BIT_AND: &str = "1.2.840.113556.1.4.803";
/// The most values AD returns of one attribute in one read (its `MaxValRange` default).
pub const RANGE_STEP: usize = 1500;

/// The canonical string of a GUID in AD's byte layout; `None` unless 16 bytes.
pub fn guid_string(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// The bytes AD stores for a GUID string (either case, with or without braces); `None` when
/// it is not one.
pub fn guid_bytes(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if groups.len() != 5
        || groups
            .iter()
            .zip(lens)
            .any(|(g, n)| g.len() != n || !g.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    let hex: String = groups.concat();
    let mut v = [0u8; 16];
    for (i, byte) in v.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    // The first three groups are little-endian in AD's layout.
    v[0..4].reverse();
    v[4..6].reverse();
    v[6..8].reverse();
    Some(v)
}

/// The filter for "the id attribute `key` equals `id`" when `key` is `objectGUID`: the GUID's
/// bytes, every one escaped; an id that is no GUID names no entry. `None` for other ids.
pub fn key_filter(key: &str, id: &str) -> Option<String> {
    if !key.eq_ignore_ascii_case(GUID) {
        return None;
    }
    Some(match guid_bytes(id) {
        Some(b) => {
            let mut f = format!("({key}=");
            for byte in b {
                f.push_str(&format!("\\{byte:02x}"));
            }
            f.push(')');
            f
        }
        None => NOTHING.to_owned(),
    })
}

/// The filter comparing `active` when it is `userAccountControl`'s disable bit (a boolean
/// value on that attribute); `None` for every other comparison.
pub fn flag_filter(
    attr: &str,
    field: usize,
    op: CmpOp,
    value: &Value,
) -> Option<Result<String, BackendError>> {
    let Value::Bool(active) = value else {
        return None;
    };
    if !attr.eq_ignore_ascii_case(UAC) {
        return None;
    }
    let disabled = format!("({attr}:{BIT_AND}:={ACCOUNTDISABLE})");
    let enabled = format!("(&({attr}=*)(!{disabled}))");
    Some(match (op, active) {
        (CmpOp::Eq, true) | (CmpOp::Ne, false) => Ok(enabled),
        (CmpOp::Eq, false) | (CmpOp::Ne, true) => Ok(disabled),
        _ => Err(BackendError::Unsupported {
            field: Some(field),
            detail: "a boolean is compared with eq or ne only".into(),
        }),
    })
}

/// A comparison as Active Directory evaluates it, for what differs from a standard directory
/// (`None`: the standard filter does): AD compares strings ignoring case and offers no
/// `caseExactMatch` or ordering rules in extensible matches, so a case-exact `eq`/`ne`/order
/// is refused (never answered ignoring case), and ordering uses `>=`/`<=` (AD orders strings
/// itself). `v` is already escaped.
pub fn cmp_filter(
    a: &str,
    field: usize,
    op: CmpOp,
    v: &str,
    fold_case: bool,
) -> Option<Result<String, BackendError>> {
    let ordering = matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le);
    if !fold_case && (ordering || matches!(op, CmpOp::Eq | CmpOp::Ne)) {
        return Some(Err(BackendError::Unsupported {
            field: Some(field),
            detail: format!(
                "Active Directory compares '{a}' ignoring case, so a case-exact comparison cannot be evaluated (mark the map entry case_exact = false where case does not tell values apart)"
            ),
        }));
    }
    Some(Ok(match op {
        CmpOp::Ge => format!("({a}>={v})"),
        CmpOp::Le => format!("({a}<={v})"),
        CmpOp::Gt => format!("(&({a}>={v})(!({a}={v})))"),
        CmpOp::Lt => format!("(&({a}<={v})(!({a}={v})))"),
        _ => return None,
    }))
}

/// A password as `unicodePwd` takes it: in double quotes, UTF-16LE.
pub fn password_value(pw: &str) -> Vec<u8> {
    format!("\"{pw}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// An entry's id when the id attribute is `objectGUID`; `None` otherwise.
pub fn key_of(e: &SearchEntry, id_attr: &str) -> Option<String> {
    if !id_attr.eq_ignore_ascii_case(GUID) {
        return None;
    }
    match values_of(e, id_attr, true).into_iter().next() {
        Some(Value::Bytes(b)) => guid_string(&b),
        _ => None,
    }
}

/// What the AD flavour changes in one resource type: which of its fields are the account
/// flags and the password, and whether the connection is encrypted.
#[derive(Clone, Debug)]
pub struct Ad {
    /// The field mapped to `userAccountControl` (`active`).
    uac: Option<usize>,
    /// The field mapped to `unicodePwd` (`password`).
    password: Option<usize>,
    /// The connection is LDAPS or StartTLS.
    encrypted: bool,
    /// Each field's directory attribute, to name the one a refusal is about.
    attrs: Vec<String>,
}

impl Ad {
    /// The AD behaviour of a resource type with `fields`.
    pub fn new(fields: &[Field], encrypted: bool) -> Ad {
        let find = |a: &str| {
            fields
                .iter()
                .position(|f| f.loc.attr.eq_ignore_ascii_case(a))
        };
        Ad {
            uac: find(UAC),
            password: find(PASSWORD),
            encrypted,
            attrs: fields.iter().map(|f| f.loc.attr.clone()).collect(),
        }
    }

    /// What the store says of its fields: the account flags read as a boolean.
    pub fn adjust_infos(&self, infos: &mut [FieldInfo]) {
        if let Some(i) = self.uac.and_then(|i| infos.get_mut(i)) {
            i.ty = FieldType::Boolean;
        }
    }

    /// Start-up problems: a password mapped over an unencrypted connection.
    pub fn problems(&self) -> Option<(usize, String)> {
        match self.password {
            Some(i) if !self.encrypted => Some((
                i,
                format!(
                    "{PASSWORD} can only be written over an encrypted connection, and this backend's url is ldap:// without tls.starttls"
                ),
            )),
            _ => None,
        }
    }

    /// A read entry's row as SCIM sees it: `active` from the disable bit; never a password.
    pub fn read_row(&self, e: &SearchEntry, row: &mut Row) {
        if let Some(i) = self.uac {
            let v = flags_of(e).map_or(Value::Null, |f| Value::Bool(f & ACCOUNTDISABLE == 0));
            if let Some(slot) = row.values.get_mut(i) {
                *slot = v;
            }
        }
        if let Some(slot) = self.password.and_then(|i| row.values.get_mut(i)) {
            *slot = Value::Null;
        }
    }

    /// The values of a new entry as AD takes them: the flags of a normal account, disabled
    /// unless it is to be active and comes with a password; the password encoded.
    pub fn prepare_insert(&self, values: &mut [Value]) -> Result<(), BackendError> {
        let has_password = self.encode_password(values)?;
        if let Some(i) = self.uac {
            let active = matches!(values.get(i), Some(Value::Bool(true)));
            let flags = if active && has_password {
                NORMAL_ACCOUNT
            } else {
                NORMAL_ACCOUNT | ACCOUNTDISABLE
            };
            if let Some(slot) = values.get_mut(i) {
                *slot = Value::Int(flags);
            }
        }
        Ok(())
    }

    /// The changed values of an update as AD takes them: the password encoded and written
    /// first (so an account enabled in the same modify has it), the flags read from the entry
    /// `dn` with only the disable bit changed.
    pub async fn prepare_update(
        &self,
        pool: &Pool,
        dn: &str,
        changed: &mut Vec<(usize, Value)>,
    ) -> Result<(), BackendError> {
        if let Some(p) = self.password {
            if let Some(pos) = changed.iter().position(|(i, _)| *i == p) {
                let (i, v) = changed.remove(pos);
                let mut one = vec![Value::Null; p + 1];
                one[p] = v;
                self.encode_password(&mut one)?;
                changed.insert(0, (i, one.swap_remove(p)));
            }
        }
        let Some(u) = self.uac else {
            return Ok(());
        };
        let Some((_, v)) = changed.iter_mut().find(|(i, _)| *i == u) else {
            return Ok(());
        };
        let active = match v {
            Value::Bool(b) => *b,
            Value::Null => return Ok(()),
            _ => {
                return Err(BackendError::Rejected {
                    field: Some(u),
                    detail: "must be true or false".into(),
                });
            }
        };
        let flags = read_flags(pool, dn).await?.unwrap_or(NORMAL_ACCOUNT);
        *v = Value::Int(if active {
            flags & !ACCOUNTDISABLE
        } else {
            flags | ACCOUNTDISABLE
        });
        Ok(())
    }

    /// Names the field a refused write is about: AD reports a password the policy refuses,
    /// and enabling an account that needs a password first, without naming an attribute.
    /// A value AD keeps unique in the whole domain (a `userPrincipalName`, a
    /// `sAMAccountName`) taken by another account, maybe outside this resource's base where
    /// the sidecar's own check does not look, is a conflict on the field holding it; a value
    /// AD will not remove (`sAMAccountName`, `userAccountControl`) is refused on its field.
    pub fn blame(&self, e: BackendError, written: &[usize]) -> BackendError {
        let e = match e {
            BackendError::Rejected { detail, .. } | BackendError::Conflict { detail, .. }
                if taken(&detail) =>
            {
                let named = names(&detail);
                let field = written.iter().copied().find(|i| {
                    self.attrs
                        .get(*i)
                        .is_some_and(|a| named.iter().any(|n| n.eq_ignore_ascii_case(a)))
                });
                return BackendError::Conflict { field, detail };
            }
            // unwillingToPerform naming, in quotes, the attribute of a field written: Samba's
            // answer to a value AD will not let go of ("'samAccountName' can't be
            // deleted/empty!"): the client's request, not the sidecar, is at fault.
            BackendError::Internal(detail) if detail.starts_with("unwillingToPerform") => {
                let quoted: Vec<&str> = detail.split('\'').skip(1).step_by(2).collect();
                let field = written.iter().copied().find(|i| {
                    self.attrs
                        .get(*i)
                        .is_some_and(|a| quoted.iter().any(|q| q.eq_ignore_ascii_case(a)))
                });
                match field {
                    Some(f) => {
                        return BackendError::Rejected {
                            field: Some(f),
                            detail,
                        };
                    }
                    None => BackendError::Internal(detail),
                }
            }
            e => e,
        };
        let field = [self.password, self.uac]
            .into_iter()
            .flatten()
            .find(|f| written.contains(f));
        match (e, field) {
            (
                BackendError::Rejected {
                    field: None,
                    detail,
                },
                Some(f),
            ) => BackendError::Rejected {
                field: Some(f),
                detail,
            },
            // unwillingToPerform: what Windows AD answers to a password it will not take.
            (BackendError::Internal(detail), Some(f))
                if detail.starts_with("unwillingToPerform") =>
            {
                BackendError::Rejected {
                    field: Some(f),
                    detail,
                }
            }
            (e, _) => e,
        }
    }

    /// Encodes the password in `values`, if any; `Ok(true)` when there is one.
    fn encode_password(&self, values: &mut [Value]) -> Result<bool, BackendError> {
        let Some(p) = self.password else {
            return Ok(false);
        };
        let Some(slot) = values.get_mut(p) else {
            return Ok(false);
        };
        let pw = match slot.first() {
            Value::Null => return Ok(false),
            Value::Text(t) => t.clone(),
            other => String::from_utf8_lossy(&super::filter::value_bytes(other)).into_owned(),
        };
        if !self.encrypted {
            return Err(BackendError::Rejected {
                field: Some(p),
                detail: format!(
                    "{PASSWORD} is only written over LDAPS or StartTLS, and this connection is not encrypted"
                ),
            });
        }
        *slot = Value::Bytes(password_value(&pw));
        Ok(true)
    }
}

/// Whether AD's answer says a value it keeps unique in the domain is already another
/// account's: Samba's "… 'x' already in use", Windows AD's
/// ERROR_DS_UPN_VALUE_NOT_UNIQUE_IN_FOREST (`000021C8`) and its SPN counterpart
/// (`000021C7`).
fn taken(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("already in use") || d.contains("000021c8") || d.contains("000021c7")
}

/// The words of an answer outside its quoted values: the attribute names it may mention.
fn names(detail: &str) -> Vec<&str> {
    detail
        .split('\'')
        .step_by(2)
        .flat_map(|part| part.split(|c: char| !c.is_ascii_alphanumeric() && c != '-'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The `userAccountControl` flags of an entry.
fn flags_of(e: &SearchEntry) -> Option<i64> {
    match values_of(e, UAC, false).into_iter().next()? {
        Value::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

/// The flags of entry `dn` as the directory holds them now.
async fn read_flags(pool: &Pool, dn: &str) -> Result<Option<i64>, BackendError> {
    let mut c = pool.get().await?;
    let r = c
        .ldap
        .with_timeout(pool.op_timeout)
        .search(dn, Scope::Base, "(objectClass=*)", vec![UAC])
        .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            pool.discard(&c).await;
            return Err(unavailable(e));
        }
    };
    if r.1.rc != 0 {
        return Err(result_error(r.1.rc, &r.1.text, None));
    }
    Ok(r.0
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .as_ref()
        .and_then(flags_of))
}

/// The first range of `attr`'s values an entry is read with (`member;range=0-1499`): the
/// most AD returns at once anyway, asked for explicitly so that every AD server (Samba pages
/// values only when asked) answers the same way.
pub fn first_range(attr: &str) -> String {
    format!("{attr};range=0-{}", RANGE_STEP - 1)
}

/// The values of `attr` of entry `e`, read to the end when the server returned only a range
/// of them (`member;range=0-1499`): the rest in further base reads of the same entry.
pub async fn all_values(
    pool: &Pool,
    e: &SearchEntry,
    attr: &str,
) -> Result<Vec<String>, BackendError> {
    let mut out: Vec<String> = values_of(e, attr, false)
        .into_iter()
        .filter_map(|v| match v {
            Value::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    let mut next = range_end(e, attr).and_then(|hi| hi.checked_add(1));
    // Each round returns at least one value, or the loop ends: bounded by the values there are.
    let mut seen: HashSet<usize> = HashSet::new();
    while let Some(lo) = next {
        if !seen.insert(lo) {
            break;
        }
        let ranged = format!("{attr};range={lo}-{}", lo + RANGE_STEP - 1);
        let mut c = pool.get().await?;
        let r = c
            .ldap
            .with_timeout(pool.op_timeout)
            .search(&e.dn, Scope::Base, "(objectClass=*)", vec![ranged.as_str()])
            .await;
        let r = match r {
            Ok(r) => r,
            Err(err) => {
                pool.discard(&c).await;
                return Err(unavailable(err));
            }
        };
        if r.1.rc != 0 {
            return Err(result_error(r.1.rc, &r.1.text, None));
        }
        let Some(part) = r.0.into_iter().next().map(SearchEntry::construct) else {
            break;
        };
        let before = out.len();
        out.extend(
            values_of(&part, attr, false)
                .into_iter()
                .filter_map(|v| match v {
                    Value::Text(t) => Some(t),
                    _ => None,
                }),
        );
        next = if out.len() == before {
            None
        } else {
            range_end(&part, attr).and_then(|hi| hi.checked_add(1))
        };
    }
    Ok(out)
}

/// The end of the range an entry holds of `attr` (`member;range=0-1499` → 1499); `None`
/// when it holds all values (no range, or one ending in `*`).
fn range_end(e: &SearchEntry, attr: &str) -> Option<usize> {
    e.attrs.keys().chain(e.bin_attrs.keys()).find_map(|k| {
        let (name, opts) = k.split_once(';')?;
        if !name.eq_ignore_ascii_case(attr) {
            return None;
        }
        let range = opts
            .split(';')
            .find_map(|o| o.strip_prefix("range=").or(o.strip_prefix("Range=")))?;
        let (_, hi) = range.split_once('-')?;
        hi.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samba's and Windows AD's "this value is another account's" answers are told apart
    /// from other constraint violations (a password the policy refuses), and the attribute
    /// they name is found outside the quoted value. See: issue #10
    #[test]
    fn r10_taken_values_are_recognised() {
        let upn = "constraintViolation: 0000202F: samldb: userPrincipalName 'title@okta.local' is already in use ";
        assert!(taken(upn));
        assert_eq!(
            names(upn),
            [
                "constraintViolation",
                "0000202F",
                "samldb",
                "userPrincipalName",
                "is",
                "already",
                "in",
                "use"
            ]
        );
        let sam = "entryAlreadyExists: samldb: Account name (sAMAccountName) 'bob' already in use!";
        assert!(taken(sam));
        assert!(names(sam).contains(&"sAMAccountName"));
        assert!(taken(
            "constraintViolation: 000021C8: AtrErr: DSID-03200BBA, #1: 0: 000021C8: DSID-03200BBA, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, Att 90290 (userPrincipalName)"
        ));
        assert!(!taken(
            "constraintViolation: 0000052D: Constraint violation - check_password_restrictions: the password does not meet the complexity criteria!"
        ));
    }

    /// A GUID's bytes as AD stores them and its canonical string turn into each other; the
    /// first three groups are byte-swapped (the layout `ldapsearch` shows as base64).
    #[test]
    fn guids() {
        // objectGUID:: ULUUCGIF3UGXcgnPb0ffOw== as read from a Samba DC.
        let bytes = [
            0x50, 0xb5, 0x14, 0x08, 0x62, 0x05, 0xdd, 0x41, 0x97, 0x72, 0x09, 0xcf, 0x6f, 0x47,
            0xdf, 0x3b,
        ];
        let s = guid_string(&bytes).expect("16 bytes");
        assert_eq!(s, "0814b550-0562-41dd-9772-09cf6f47df3b");
        assert_eq!(guid_bytes(&s), Some(bytes));
        assert_eq!(
            guid_bytes(&format!("{{{}}}", s.to_uppercase())),
            Some(bytes)
        );
        assert_eq!(guid_string(&bytes[..15]), None);
        for bad in [
            "",
            "0814b550-0562-41dd-9772",
            "0814b550-0562-41dd-9772-09cf6f47df3g",
            "0814b5500562-41dd-9772-09cf-6f47df3b",
        ] {
            assert_eq!(guid_bytes(bad), None, "{bad}");
        }
    }

    /// An id is searched by its escaped bytes; something that is no GUID matches nothing
    /// rather than reaching the directory as text.
    #[test]
    fn key_filters() {
        assert_eq!(
            key_filter("objectGUID", "0814b550-0562-41dd-9772-09cf6f47df3b").as_deref(),
            Some("(objectGUID=\\50\\b5\\14\\08\\62\\05\\dd\\41\\97\\72\\09\\cf\\6f\\47\\df\\3b)")
        );
        assert_eq!(
            key_filter("objectGUID", "*)(cn=*").as_deref(),
            Some(NOTHING)
        );
        assert_eq!(key_filter("entryUUID", "x"), None);
    }

    /// `active` compares the disable bit with the bitwise matching rule.
    #[test]
    fn flag_filters() {
        let f = |op, b| flag_filter("userAccountControl", 0, op, &Value::Bool(b));
        let disabled = "(userAccountControl:1.2.840.113556.1.4.803:=2)";
        assert_eq!(
            f(CmpOp::Eq, false).and_then(Result::ok).as_deref(),
            Some(disabled)
        );
        assert_eq!(
            f(CmpOp::Eq, true).and_then(Result::ok),
            Some(format!("(&(userAccountControl=*)(!{disabled}))"))
        );
        assert!(matches!(f(CmpOp::Gt, true), Some(Err(_))));
        assert!(flag_filter("title", 0, CmpOp::Eq, &Value::Bool(true)).is_none());
    }

    /// Ordering uses AD's own `>=`/`<=`; case-exact comparisons are refused, naming the field.
    #[test]
    fn comparisons() {
        assert_eq!(
            cmp_filter("cn", 0, CmpOp::Gt, "b", true)
                .and_then(Result::ok)
                .as_deref(),
            Some("(&(cn>=b)(!(cn=b)))")
        );
        assert!(matches!(
            cmp_filter("cn", 3, CmpOp::Eq, "b", false),
            Some(Err(BackendError::Unsupported { field: Some(3), .. }))
        ));
        assert!(cmp_filter("cn", 0, CmpOp::Eq, "b", true).is_none());
        assert!(cmp_filter("cn", 0, CmpOp::Contains, "b", false).is_none());
    }

    /// `unicodePwd` is the quoted password in UTF-16LE.
    #[test]
    fn passwords() {
        assert_eq!(
            password_value("Aé1"),
            vec![0x22, 0, 0x41, 0, 0xe9, 0, 0x31, 0, 0x22, 0]
        );
    }
}
