//! What a mapping writes and reads when the client says less than the app needs, or the app
//! holds more than SCIM has words for (tests/fixtures/values): a `default` for an absent
//! attribute (a template over the names for a NOT NULL display name), a `fallback` for stored
//! states the value map does not list, `required` enforced and published (child-table values
//! included), `overflow = "truncate"`, attributes computed on read, and `primary` for a
//! multi-valued attribute kept in one column. Every test runs on SQLite and PostgreSQL and
//! reads the app's own rows. See: issue #9.

use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::{Sidecar, Store};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

both!(
    a_minimal_create_gets_its_defaults,
    unlisted_states_read_as_the_fallback,
    required_attributes_are_enforced_and_published,
    overflow_truncates_or_refuses,
    a_single_email_column_is_the_primary_one,
    computed_attributes_are_read_only,
);

fn body(user_name: &str) -> Value {
    json!({"schemas": [USER], "userName": user_name,
           "name": {"givenName": "Barbara", "familyName": "Jensen"},
           "emails": [{"type": "work", "value": format!("{user_name}@example.com")}]})
}

async fn create(s: &Sidecar, body: &Value) -> String {
    let r = s
        .client
        .post("/scim/v2/Users", body)
        .await
        .expect(201)
        .json();
    r["id"].as_str().expect("id").to_owned()
}

async fn row(s: &Sidecar, id: &str) -> Vec<String> {
    s.rows(&format!(
        "SELECT login, display_name, status, coalesce(job_title, '-') FROM accounts WHERE id = {id}"
    ))
    .await
    .into_iter()
    .next()
    .expect("row")
}

async fn count(s: &Sidecar) -> String {
    s.rows("SELECT (SELECT count(*) FROM accounts) || '/' || (SELECT count(*) FROM account_emails)")
        .await[0][0]
        .clone()
}

/// Entra's minimal create (no displayName, no active) fills the app's NOT NULL columns from
/// the mapping's defaults: the display name from the names, the status active. A PUT without
/// them writes the defaults again, from the new names.
async fn a_minimal_create_gets_its_defaults(store: Store) {
    let s = example!("values", store);
    let id = create(&s, &body("bjensen")).await;
    assert_eq!(
        row(&s, &id).await,
        vec!["bjensen", "Barbara Jensen", "1", "-"]
    );
    let u = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(u["displayName"], "Barbara Jensen", "{u}");
    assert_eq!(u["active"], true, "{u}");

    let mut put = body("bjensen");
    put["name"] = json!({"givenName": "Babs", "familyName": "Jensen"});
    s.client
        .put(&format!("/scim/v2/Users/{id}"), &put)
        .await
        .expect(200);
    assert_eq!(row(&s, &id).await, vec!["bjensen", "Babs Jensen", "1", "-"]);

    // A sent value wins over the default.
    let mut given = body("ajensen");
    given["displayName"] = json!("A. Jensen");
    given["active"] = json!(false);
    let id = create(&s, &given).await;
    assert_eq!(row(&s, &id).await, vec!["ajensen", "A. Jensen", "3", "-"]);
}

/// The app's "registered" state (2) and a state added later (7) read as `active: false`
/// instead of no `active` at all; filters find them the same way; writing `false` stores the
/// first listed value (3).
async fn unlisted_states_read_as_the_fallback(store: Store) {
    let s = example!("values", store);
    s.exec(
        "INSERT INTO accounts (login, last_name, display_name, status) VALUES
            ('active', 'A', 'A', 1), ('registered', 'R', 'R', 2),
            ('locked', 'L', 'L', 3), ('archived', 'X', 'X', 7);",
    )
    .await;
    let list = s
        .client
        .get("/scim/v2/Users?sortBy=userName")
        .await
        .expect(200)
        .json();
    let states: Vec<(String, Value)> = list["Resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|u| {
            (
                u["userName"].as_str().unwrap_or("").to_owned(),
                u["active"].clone(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("active".into(), json!(true)),
            ("archived".into(), json!(false)),
            ("locked".into(), json!(false)),
            ("registered".into(), json!(false)),
        ]
    );
    let names = |filter: &'static str| {
        let s = &s;
        async move {
            let r = s
                .client
                .get(&format!(
                    "/scim/v2/Users?sortBy=userName&filter={}",
                    filter.replace(' ', "%20")
                ))
                .await
                .expect(200)
                .json();
            r["Resources"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|u| u["userName"].as_str().unwrap_or("").to_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    assert_eq!(
        names("active eq false").await,
        vec!["archived", "locked", "registered"]
    );
    assert_eq!(names("active eq true").await, vec!["active"]);
    assert_eq!(names("active ne false").await, vec!["active"]);
    assert_eq!(
        names("active ne true").await,
        vec!["archived", "locked", "registered"]
    );

    let id = s
        .rows("SELECT id FROM accounts WHERE login = 'registered'")
        .await[0][0]
        .clone();
    s.client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "active", "value": true}])),
        )
        .await
        .expect(200);
    assert_eq!(row(&s, &id).await[2], "1");
    s.client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await
        .expect(200);
    assert_eq!(row(&s, &id).await[2], "3");
}

/// `required = true` is enforced on create and replace, for a sub-attribute and for a value
/// in a child table, naming the attribute, and nothing is written; /Schemas says so, so a
/// client reading it sends them. A default makes a NOT NULL column optional.
async fn required_attributes_are_enforced_and_published(store: Store) {
    let s = example!("values", store);
    let mut no_family = body("a");
    no_family["name"] = json!({"givenName": "A"});
    let d = s
        .client
        .post("/scim/v2/Users", &no_family)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("'name.familyName' is required"), "{d}");
    let mut no_email = body("b");
    no_email.as_object_mut().expect("object").remove("emails");
    let d = s
        .client
        .post("/scim/v2/Users", &no_email)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("emails"), "{d}");
    let mut home_only = body("c");
    home_only["emails"] = json!([{"type": "home", "value": "c@home.example"}]);
    let d = s
        .client
        .post("/scim/v2/Users", &home_only)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("emails[type eq \"work\"].value"), "{d}");
    assert_eq!(count(&s).await, "0/0");

    let id = create(&s, &body("d")).await;
    let before = row(&s, &id).await;
    let path = format!("/scim/v2/Users/{id}");
    s.client.put(&path, &no_family).await.expect(400);
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "remove", "path": "name.familyName"}])),
        )
        .await
        .expect(400);
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])),
        )
        .await
        .expect(400);
    assert_eq!(row(&s, &id).await, before);
    assert_eq!(count(&s).await, "1/1");

    let schema = s
        .client
        .get(&format!("/scim/v2/Schemas/{USER}"))
        .await
        .expect(200)
        .json();
    let attr = |name: &str| -> Value {
        schema["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let sub = |a: &Value, name: &str| -> Value {
        a["subAttributes"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let name = attr("name");
    assert_eq!(name["required"], true, "{name}");
    assert_eq!(sub(&name, "familyName")["required"], true, "{name}");
    assert_eq!(sub(&name, "givenName")["required"], false, "{name}");
    let emails = attr("emails");
    assert_eq!(emails["required"], true, "{schema}");
    // An element must carry its value (a client filling only what is required would
    // otherwise send `emails: [{}]`); its type may be left out (it fills the work slot).
    assert_eq!(sub(&emails, "value")["required"], true, "{emails}");
    assert_eq!(sub(&emails, "type")["required"], false, "{emails}");
    assert_eq!(
        attr("displayName")["required"],
        false,
        "a default makes it optional"
    );
    assert_eq!(
        attr("active")["required"],
        false,
        "a default makes it optional"
    );
    assert_eq!(attr("userName")["required"], true);
}

/// `overflow = "truncate"` cuts a long title to the column (10 characters); an attribute
/// without it is refused, naming it, and nothing is written.
async fn overflow_truncates_or_refuses(store: Store) {
    let s = example!("values", store);
    let mut b = body("vp");
    b["title"] = json!("Vice President of Engineering");
    let id = create(&s, &b).await;
    assert_eq!(row(&s, &id).await[3], "Vice Presi");
    let u = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(u["title"], "Vice Presi");

    let mut long = body("nick");
    long["nickName"] = json!("Babs-the-great");
    let d = s
        .client
        .post("/scim/v2/Users", &long)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("nickName") && d.contains("at most 8"), "{d}");
    assert_eq!(count(&s).await, "1/1");
}

/// The one e-mail the app keeps is the primary one: /Schemas publishes `primary`, reads say
/// `primary: true`, and a client that sends it (strictly, with unknown attributes refused)
/// is accepted.
async fn a_single_email_column_is_the_primary_one(store: Store) {
    let Some(s) = Sidecar::example(
        "values",
        store,
        Some(Box::new(|c| {
            c.scim.unknown_attributes = scim_sidecar::scim::UnknownPolicy::Reject
        })),
    )
    .await
    else {
        return;
    };
    let mut b = body("p");
    b["emails"] = json!([{"type": "work", "value": "p@example.com", "primary": true}]);
    let id = create(&s, &b).await;
    let u = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(
        u["emails"],
        json!([{"type": "work", "value": "p@example.com", "primary": true}])
    );
    let schema = s
        .client
        .get(&format!("/scim/v2/Schemas/{USER}"))
        .await
        .expect(200)
        .json();
    let emails = schema["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "emails"))
        .cloned()
        .expect("emails");
    let subs: Vec<&str> = emails["subAttributes"]
        .as_array()
        .expect("subs")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert!(subs.contains(&"primary"), "{emails}");
}

/// `name.formatted` is computed from the names on every read, published read-only, and
/// refused as a target of a write or a filter with a message saying what to use instead.
async fn computed_attributes_are_read_only(store: Store) {
    let s = example!("values", store);
    let id = create(&s, &body("f")).await;
    let path = format!("/scim/v2/Users/{id}");
    let u = s.client.get(&path).await.expect(200).json();
    assert_eq!(u["name"]["formatted"], "Barbara Jensen", "{u}");
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "name.givenName", "value": "Babs"}])),
        )
        .await
        .expect(200);
    let u = s.client.get(&path).await.expect(200).json();
    assert_eq!(u["name"]["formatted"], "Babs Jensen", "{u}");
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "name.formatted", "value": "X"}])),
        )
        .await
        .scim_error(400, Some("mutability"));
    let d = s
        .client
        .get("/scim/v2/Users?filter=name.formatted%20eq%20%22Babs%20Jensen%22")
        .await
        .scim_error(400, Some("invalidFilter"));
    assert!(
        d.contains("name.formatted") && d.contains("computed"),
        "{d}"
    );
}
