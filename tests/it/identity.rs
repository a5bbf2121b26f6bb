//! Identity strings as an attacker would try them and an identity provider would send them:
//! invisible, control and look-alike characters are refused before any store sees them,
//! identifiers cannot be padded or blank, and canonically equivalent spellings are one
//! identity. See: issue #14 (item 6).

use serde_json::{Value, json};

use crate::support::Sidecar;
use crate::support::client::{patch_body, user};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Percent-encodes a filter for a query string.
fn filter_query(f: &str) -> String {
    let enc: String = f
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/scim/v2/Users?filter={enc}")
}

/// The user names of issue #14 — a NUL that the app shows as `app-admin`, a zero width
/// space, a right-to-left override, a C1 control, a zero width joiner — are each refused
/// with 400 `invalidValue` naming `userName` and the character, and nothing is written next
/// to the app's own `app-admin`; so
/// are control characters in `displayName`, `externalId` and an ordinary attribute
/// (`title`). Before, they were stored next to the real `app-admin`. See: issue #14.
#[tokio::test]
async fn r14_control_and_invisible_characters_are_refused() {
    // The quickstart's app has its own `app-admin`.
    let s = Sidecar::quickstart().await;
    let before = s.snapshot();
    for (name, code) in [
        ("app-admin\u{0}.evil", "U+0000"),
        ("app-admin\u{200b}", "U+200B"),
        ("\u{202e}nimda-ppa", "U+202E"),
        ("app-admin\u{85}", "U+0085"),
        ("app\u{200d}-admin", "U+200D"),
    ] {
        let detail = s
            .client
            .post("/scim/v2/Users", &user(name))
            .await
            .scim_error(400, Some("invalidValue"));
        assert!(
            detail.contains("'userName'") && detail.contains(code),
            "{name:?}: {detail}"
        );
    }
    for (attr, body) in [
        (
            "displayName",
            json!({"schemas": [USER], "userName": "d", "displayName": "Admin\u{202e}"}),
        ),
        (
            "externalId",
            json!({"schemas": [USER], "userName": "e", "externalId": "x\u{0}y"}),
        ),
        (
            "title",
            json!({"schemas": [USER], "userName": "t", "title": "Boss\u{feff}"}),
        ),
    ] {
        let detail = s
            .client
            .post("/scim/v2/Users", &body)
            .await
            .scim_error(400, Some("invalidValue"));
        assert!(detail.contains(&format!("'{attr}'")), "{attr}: {detail}");
    }
    assert_eq!(s.snapshot(), before);
}

/// Leading or trailing whitespace in `userName` is refused (not trimmed: the identity
/// provider must find what it created under the name it sent), by POST and by PATCH;
/// ordinary attributes keep their spaces. See: issue #14.
#[tokio::test]
async fn r14_padded_identifiers_are_refused() {
    let s = Sidecar::quickstart().await;
    let list = s
        .client
        .get(&filter_query("userName eq \"app-admin\""))
        .await
        .expect(200)
        .json();
    let id = list["Resources"][0]["id"]
        .as_str()
        .expect("the app's own app-admin");
    for name in ["app-admin ", " app-admin", "app-admin\u{a0}"] {
        s.client
            .post("/scim/v2/Users", &user(name))
            .await
            .scim_error(400, Some("invalidValue"));
    }
    s.client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "userName", "value": " app-admin"}])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "spaced", "title": " Head of Ops "}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(r["title"], " Head of Ops ");
}

/// An empty or blank `userName` is 400 (before, `""` gave 201 and the user read back with no
/// `userName`), on create and on PATCH; so is an empty Group `displayName`. See: issue #14.
#[tokio::test]
async fn r14_empty_or_blank_identifiers_are_refused() {
    let s = Sidecar::quickstart().await;
    let before = s.snapshot();
    for name in ["", "   "] {
        let detail = s
            .client
            .post("/scim/v2/Users", &user(name))
            .await
            .scim_error(400, Some("invalidValue"));
        assert!(detail.contains("'userName'"), "{detail}");
    }
    for name in ["", " "] {
        s.client
            .post(
                "/scim/v2/Groups",
                &json!({"schemas": [GROUP], "displayName": name}),
            )
            .await
            .scim_error(400, Some("invalidValue"));
    }
    assert_eq!(s.snapshot(), before);
    let created = s
        .client
        .post("/scim/v2/Users", &user("kept"))
        .await
        .expect(201)
        .json();
    let id = created["id"].as_str().expect("id");
    s.client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "userName", "value": ""}])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    let got = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["userName"], "kept");
}

/// Canonically equivalent spellings are one identity: a user created as `e` + combining
/// acute is stored (and returned) precomposed, a second create with the precomposed `é` is
/// 409 `uniqueness`, and a filter with either spelling finds it. Scripts keep what they need:
/// a Persian given name with a zero width non-joiner is accepted as sent.
#[tokio::test]
async fn r14_equivalent_spellings_are_one_identity() {
    let s = Sidecar::quickstart().await;
    let r: Value = s
        .client
        .post("/scim/v2/Users", &user("e\u{301}mile"))
        .await
        .expect(201)
        .json();
    assert_eq!(r["userName"], "\u{e9}mile");
    s.client
        .post("/scim/v2/Users", &user("\u{e9}mile"))
        .await
        .scim_error(409, Some("uniqueness"));
    for spelling in ["e\u{301}mile", "\u{e9}mile"] {
        let list = s
            .client
            .get(&filter_query(&format!("userName eq \"{spelling}\"")))
            .await
            .expect(200)
            .json();
        assert_eq!(list["totalResults"], 1, "{spelling:?}: {list}");
    }
    let persian = "\u{645}\u{6cc}\u{200c}\u{646}\u{627}";
    let r: Value = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "mina", "name": {"givenName": persian}}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(r["name"]["givenName"], persian);
}
