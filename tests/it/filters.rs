//! Filters (RFC 7644 §3.4.2.2) compiled to SQL: every operator, logic, value paths,
//! sub-attributes, extension URNs, value maps, and the errors for filters that cannot run.

use serde_json::{Value, json};

use crate::support::Sidecar;

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The quickstart plus three users with different attributes.
async fn people() -> Sidecar {
    let s = Sidecar::quickstart().await;
    for body in [
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice@example.com", "externalId": "A-1",
               "name": {"givenName": "Alice", "familyName": "Smith"}, "title": "Engineer", "active": true,
               "emails": [{"type": "work", "value": "alice@example.com"}], ENT: {"department": "R&D", "employeeNumber": "100"}}),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob@example.org", "externalId": "b-2",
               "name": {"givenName": "Bob", "familyName": "Jones"}, "active": false,
               "phoneNumbers": [{"type": "mobile", "value": "+1 555 0100"}], ENT: {"department": "Sales"}}),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "carol%_x@example.com",
               "name": {"givenName": "Carol"}, "title": "Engineering Manager", "active": true,
               "emails": [{"type": "work", "value": "carol@corp.example"}]}),
    ] {
        s.client.post("/scim/v2/Users", &body).await.expect(201);
    }
    s
}

/// userNames matching a filter, sorted; the filter is sent percent-encoded with `+` for
/// spaces, as Entra does.
async fn names(s: &Sidecar, filter: &str) -> Vec<String> {
    let encoded: String = form_encode(filter);
    let r = s
        .client
        .get(&format!(
            "/scim/v2/Users?sortBy=userName&count=100&filter={encoded}"
        ))
        .await
        .expect(200)
        .json();
    r["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|u| u["userName"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Every comparison operator, with userName compared case-insensitively (caseExact false).
#[tokio::test]
async fn operators() {
    let s = people().await;
    assert_eq!(
        names(&s, r#"userName eq "ALICE@example.com""#).await,
        vec!["alice@example.com"]
    );
    assert_eq!(
        names(&s, r#"userName ne "alice@example.com""#).await,
        vec!["app-admin", "bob@example.org", "carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"userName co "@EXAMPLE.""#).await,
        vec![
            "alice@example.com",
            "bob@example.org",
            "carol%_x@example.com"
        ]
    );
    assert_eq!(
        names(&s, r#"userName sw "B""#).await,
        vec!["bob@example.org"]
    );
    assert_eq!(
        names(&s, r#"userName ew ".org""#).await,
        vec!["bob@example.org"]
    );
    assert_eq!(
        names(&s, r#"userName gt "bob@example.org""#).await,
        vec!["carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"userName ge "bob@example.org""#).await,
        vec!["bob@example.org", "carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"userName lt "app-admin""#).await,
        vec!["alice@example.com"]
    );
    assert_eq!(
        names(&s, r#"userName le "app-admin""#).await,
        vec!["alice@example.com", "app-admin"]
    );
    // LIKE wildcards in the value are literal characters.
    assert_eq!(
        names(&s, r#"userName co "%_""#).await,
        vec!["carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"title pr"#).await,
        vec!["alice@example.com", "carol%_x@example.com"]
    );
}

/// `and`, `or`, `not`, parentheses and precedence.
#[tokio::test]
async fn logic() {
    let s = people().await;
    assert_eq!(
        names(&s, r#"title pr and userName sw "a""#).await,
        vec!["alice@example.com"]
    );
    assert_eq!(
        names(&s, r#"userName sw "a" or userName sw "b""#).await,
        vec!["alice@example.com", "app-admin", "bob@example.org"]
    );
    assert_eq!(
        names(&s, r#"userName sw "b" or userName sw "c" and title pr"#).await,
        vec!["bob@example.org", "carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"(userName sw "b" or userName sw "c") and title pr"#).await,
        vec!["carol%_x@example.com"]
    );
    // `not` includes users without a title (no SQL NULL surprises).
    assert_eq!(
        names(&s, r#"not (title co "Engineer")"#).await,
        vec!["app-admin", "bob@example.org"]
    );
    assert_eq!(
        names(&s, r#"title ne "Engineer""#).await,
        vec!["app-admin", "bob@example.org", "carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"not (title pr)"#).await,
        vec!["app-admin", "bob@example.org"]
    );
}

/// Sub-attributes, value paths, multi-valued attributes, extension URNs, value maps,
/// externalId (caseExact), id and meta.
#[tokio::test]
async fn attribute_kinds() {
    let s = people().await;
    assert_eq!(
        names(&s, r#"name.givenName eq "bob""#).await,
        vec!["bob@example.org"]
    );
    assert_eq!(
        names(&s, r#"name[givenName sw "C"]"#).await,
        vec!["carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"emails[type eq "work" and value co "@corp"]"#).await,
        vec!["carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"emails[type eq "home"]"#).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(&s, r#"emails.value ew "example.com""#).await,
        vec!["alice@example.com"]
    );
    assert_eq!(
        names(&s, r#"emails co "corp""#).await,
        vec!["carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"emails pr"#).await,
        vec!["alice@example.com", "carol%_x@example.com"]
    );
    assert_eq!(
        names(
            &s,
            r#"phoneNumbers[type eq "mobile"].value pr"#.replace(".value pr", "").as_str()
        )
        .await,
        vec!["bob@example.org"]
    );
    assert_eq!(
        names(&s, r#"emails.type eq "work""#).await,
        vec!["alice@example.com", "carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, &format!(r#"{ENT}:department eq "sales""#)).await,
        vec!["bob@example.org"]
    );
    assert_eq!(
        names(&s, r#"department eq "R&D""#).await,
        vec!["alice@example.com"]
    );
    assert_eq!(
        names(&s, r#"active eq false"#).await,
        vec!["bob@example.org"]
    );
    assert_eq!(
        names(&s, r#"active eq true and title pr"#).await,
        vec!["alice@example.com", "carol%_x@example.com"]
    );
    assert_eq!(
        names(&s, r#"externalId eq "A-1""#).await,
        vec!["alice@example.com"]
    );
    assert_eq!(
        names(&s, r#"externalId eq "a-1""#).await,
        Vec::<String>::new(),
        "externalId is caseExact"
    );
    assert_eq!(names(&s, r#"id eq "1""#).await, vec!["app-admin"]);
    assert_eq!(
        names(&s, r#"meta.resourceType eq "User" and id eq "1""#).await,
        vec!["app-admin"]
    );
    assert_eq!(
        names(&s, r#"meta.lastModified gt "2025-01-01T00:00:00Z""#)
            .await
            .len(),
        3
    );
    assert_eq!(
        names(&s, r#"meta.created lt "2025-01-01T00:00:00Z""#).await,
        vec!["app-admin"]
    );
    assert_eq!(
        names(
            &s,
            r#"USERNAME EQ "bob@example.org" AND NOT (ACTIVE EQ TRUE)"#
        )
        .await,
        vec!["bob@example.org"]
    );
}

/// Entra's Test Connection probe: a random GUID matches nothing and is a 200 empty list.
#[tokio::test]
async fn test_connection_probe() {
    let s = Sidecar::quickstart().await;
    let r = s
        .client
        .get("/scim/v2/Users?filter=userName+eq+%22b1e0b6c6-0a46-4f6c-b3e5-1e3a7e0d9b2f%22")
        .await
        .expect(200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    assert_eq!(
        r.json(),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0, "itemsPerPage": 0, "startIndex": 1, "Resources": []})
    );
}

/// Filters that cannot run are 400 `invalidFilter` naming the problem: unstored and unknown
/// attributes, bad syntax, ordering booleans, substring operators on non-text, nesting too
/// deep; none of them touches the store.
#[tokio::test]
async fn bad_filters() {
    let s = people().await;
    let before = s.snapshot();
    let cases: Vec<(String, &str)> = vec![
        (r#"nickName eq "x""#.into(), "'nickName' is not stored"),
        (r#"shoeSize eq 44"#.into(), "unknown attribute 'shoeSize'"),
        (r#"emails[display eq "x"]"#.into(), "display"),
        (r#"name eq "x""#.into(), "complex"),
        (r#"userName eq"#.into(), "filter"),
        (r#"userName xx "a""#.into(), "operator"),
        (r#"(userName eq "a""#.into(), "filter"),
        (r#"active gt true"#.into(), "cannot be ordered"),
        (r#"active co "t""#.into(), "supports eq"),
        (r#"userName eq 42"#.into(), "quoted string"),
        (r#"meta.lastModified gt "yesterday""#.into(), "dateTime"),
        (
            format!("{}userName eq \"a\"{}", "(".repeat(1000), ")".repeat(1000)),
            "filter",
        ),
        (
            format!("userName eq \"a\"{}", " or userName eq \"b\"".repeat(400)),
            "filter",
        ),
        ("urn:example:nope:foo eq \"x\"".into(), "urn:example:nope"),
    ];
    for (filter, needle) in cases {
        let r = s
            .client
            .get(&format!("/scim/v2/Users?filter={}", form_encode(&filter)))
            .await;
        let d = r.scim_error(400, Some("invalidFilter"));
        assert!(
            d.contains(needle),
            "filter {:.60}… gave {d:?}, expected it to mention {needle:?}",
            filter
        );
    }
    assert_eq!(s.snapshot(), before);
}

/// Injection payloads in filter values are data: they match nothing and the tables stay.
#[tokio::test]
async fn injection_in_filters() {
    let s = people().await;
    let before = s.snapshot();
    for evil in [
        r#"userName eq "x' OR '1'='1""#,
        r#"userName eq "x\"; DROP TABLE accounts; --""#,
        r#"userName co "%' OR 1=1 --""#,
        r#"title sw "'; DELETE FROM accounts; --""#,
        r#"emails[value eq "a' UNION SELECT * FROM accounts --"]"#,
    ] {
        let r = s
            .client
            .get(&format!("/scim/v2/Users?filter={}", form_encode(evil)))
            .await
            .expect(200)
            .json();
        assert_eq!(r["totalResults"], 0, "{evil}");
    }
    assert_eq!(s.snapshot(), before);
    let v: Value = s
        .client
        .get("/scim/v2/Users?count=0")
        .await
        .expect(200)
        .json();
    assert_eq!(v["totalResults"], 4);
}

/// Sorting by an attribute kept through a value map follows the SCIM values, not the stored
/// codes: `active` ascending puts `false` (stored `'D'`) before `true` (stored `'A'`), and
/// descending the reverse. See: issue #14.
#[tokio::test]
async fn r014_sort_by_a_value_mapped_attribute_follows_scim_order() {
    let s = people().await;
    for (order, first) in [("ascending", false), ("descending", true)] {
        let r = s
            .client
            .get(&format!("/scim/v2/Users?sortBy=active&sortOrder={order}"))
            .await
            .expect(200)
            .json();
        let actives: Vec<bool> = r["Resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|u| u["active"].as_bool().expect("active"))
            .collect();
        assert_eq!(actives.first(), Some(&first), "{order}: {actives:?}");
        let mut sorted = actives.clone();
        sorted.sort_unstable();
        if order == "descending" {
            sorted.reverse();
        }
        assert_eq!(actives, sorted, "{order}");
    }
}
