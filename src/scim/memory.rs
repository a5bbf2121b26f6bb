//! An in-memory [`Provider`]: the protocol core tested with no store at all, through
//! [`Service::handle`] as the router calls it. It keeps resources as JSON in a map and
//! evaluates list filters on top-level attributes itself (which no real store may do: the
//! mapping layer pushes filters down), so what these tests prove is the protocol: status
//! codes, bodies, headers, PATCH dialects, ETags, paging and discovery.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::filter::eval;
use super::patch::MemberOp;
use super::resource::{Member, Object, Stored};
use super::schema::{self, AttrType, Attribute, ResourceType};
use super::service::{Check, Edit, Page, Provider, Query};
use super::{ScimError, Service, Settings};

/// Resources by id: attributes and member ids.
type Rows = BTreeMap<u64, (Object, Vec<String>)>;

/// Resources of one type, in memory, with the last id handed out.
struct Memory {
    rt: ResourceType,
    rows: Mutex<(u64, Rows)>,
}

impl Memory {
    fn new(urn: &str, name: &str, endpoint: &str, membership: bool) -> Self {
        let core = schema::builtin(urn).cloned().expect("built-in schema");
        Memory {
            rt: ResourceType {
                name: name.into(),
                endpoint: endpoint.into(),
                description: name.into(),
                schema: core.clone(),
                extensions: vec![],
                common: schema::common_attributes(true),
                membership: membership.then(|| "members".to_owned()),
                groups_from: None,
                known: vec![core],
            },
            rows: Mutex::new((0, BTreeMap::new())),
        }
    }

    fn stored(&self, id: u64, attrs: &Object, members: &[String], load: bool) -> Stored {
        Stored {
            id: id.to_string(),
            attrs: attrs.clone(),
            members: (load && self.rt.membership.is_some()).then(|| {
                members
                    .iter()
                    .map(|m| Member {
                        value: m.clone(),
                        resource_type: Some("User".into()),
                        display: None,
                    })
                    .collect()
            }),
        }
    }

    /// Every attribute of the type as sub-attributes of one complex attribute, so the
    /// value-filter evaluator can test a whole resource.
    fn as_complex(&self) -> Attribute {
        let mut a = Attribute::new("resource", AttrType::Complex);
        a.sub_attributes = self
            .rt
            .schema
            .attributes
            .iter()
            .chain(&self.rt.common)
            .cloned()
            .collect();
        a
    }

    fn unique_clash(
        &self,
        rows: &BTreeMap<u64, (Object, Vec<String>)>,
        attrs: &Object,
        except: Option<u64>,
    ) -> bool {
        let Some(name) = attrs.get("userName").and_then(Value::as_str) else {
            return false;
        };
        rows.iter().any(|(id, (a, _))| {
            Some(*id) != except
                && a.get("userName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
}

impl Provider for Memory {
    fn resource_type(&self) -> &ResourceType {
        &self.rt
    }

    async fn create(
        &self,
        attrs: Object,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Stored, ScimError> {
        let mut g = self.rows.lock().expect("lock");
        if self.unique_clash(&g.1, &attrs, None) {
            return Err(ScimError::uniqueness("userName is taken"));
        }
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, (attrs.clone(), members.clone()));
        Ok(self.stored(id, &attrs, &members, load_members))
    }

    async fn get(&self, id: &str, load_members: bool) -> Result<Stored, ScimError> {
        let g = self.rows.lock().expect("lock");
        let key: u64 = id.parse().map_err(|_| ScimError::not_found("no such id"))?;
        let (a, m) =
            g.1.get(&key)
                .ok_or_else(|| ScimError::not_found("no such id"))?;
        Ok(self.stored(key, a, m, load_members))
    }

    async fn list(&self, q: Query) -> Result<Page, ScimError> {
        let def = self.as_complex();
        let g = self.rows.lock().expect("lock");
        let matching: Vec<Stored> =
            g.1.iter()
                .filter(|(id, (a, _))| match &q.filter {
                    None => true,
                    Some(f) => {
                        let mut whole = a.clone();
                        whole.insert("id".into(), Value::String(id.to_string()));
                        eval::matches(f, &Value::Object(whole), &def)
                    }
                })
                .map(|(id, (a, m))| self.stored(*id, a, m, q.members))
                .collect();
        let total = matching.len() as u64;
        Ok(Page {
            total,
            resources: matching
                .into_iter()
                .skip(q.offset as usize)
                .take(q.limit as usize)
                .collect(),
        })
    }

    async fn update(
        &self,
        id: &str,
        load_members: bool,
        _named: &[String],
        edit: Edit,
    ) -> Result<Stored, ScimError> {
        let mut g = self.rows.lock().expect("lock");
        let key: u64 = id.parse().map_err(|_| ScimError::not_found("no such id"))?;
        let (attrs, members) =
            g.1.get(&key)
                .cloned()
                .ok_or_else(|| ScimError::not_found("no such id"))?;
        let update = edit(self.stored(key, &attrs, &members, false), &self.rt)?;
        if self.unique_clash(&g.1, &update.attrs, Some(key)) {
            return Err(ScimError::uniqueness("userName is taken"));
        }
        let mut members = members;
        for op in update.members {
            match op {
                MemberOp::Add(ids) => {
                    for i in ids {
                        if !members.contains(&i) {
                            members.push(i);
                        }
                    }
                }
                MemberOp::Remove(ids) => members.retain(|m| !ids.contains(m)),
                MemberOp::RemoveAll => members.clear(),
                MemberOp::Replace(ids) => members = ids,
            }
        }
        g.1.insert(key, (update.attrs.clone(), members.clone()));
        Ok(self.stored(key, &update.attrs, &members, load_members))
    }

    async fn delete(&self, id: &str, check: Check) -> Result<(), ScimError> {
        let mut g = self.rows.lock().expect("lock");
        let key: u64 = id.parse().map_err(|_| ScimError::not_found("no such id"))?;
        let (a, m) =
            g.1.get(&key)
                .ok_or_else(|| ScimError::not_found("no such id"))?;
        check(&self.stored(key, a, m, false))?;
        g.1.remove(&key);
        Ok(())
    }
}

/// A provider for either type, so one `Service` serves both.
enum Either {
    Users(Memory),
    Groups(Memory),
}

impl Either {
    fn inner(&self) -> &Memory {
        match self {
            Either::Users(m) | Either::Groups(m) => m,
        }
    }
}

impl Provider for Either {
    fn resource_type(&self) -> &ResourceType {
        self.inner().resource_type()
    }
    async fn create(
        &self,
        attrs: Object,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Stored, ScimError> {
        self.inner().create(attrs, members, load_members).await
    }
    async fn get(&self, id: &str, load_members: bool) -> Result<Stored, ScimError> {
        self.inner().get(id, load_members).await
    }
    async fn list(&self, q: Query) -> Result<Page, ScimError> {
        self.inner().list(q).await
    }
    async fn update(
        &self,
        id: &str,
        load_members: bool,
        named: &[String],
        edit: Edit,
    ) -> Result<Stored, ScimError> {
        self.inner().update(id, load_members, named, edit).await
    }
    async fn delete(&self, id: &str, check: Check) -> Result<(), ScimError> {
        self.inner().delete(id, check).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Method, StatusCode};

    use super::*;
    use crate::scim::discovery::Features;
    use crate::scim::{BaseUrl, Request, Response, UnknownPolicy};

    fn service() -> Service<Either> {
        service_with(1000, 4000)
    }

    fn service_with(max_members: u64, members_in_flight: u64) -> Service<Either> {
        Service::new(
            vec![
                Either::Users(Memory::new(schema::USER_URN, "User", "/Users", false)),
                Either::Groups(Memory::new(schema::GROUP_URN, "Group", "/Groups", true)),
            ],
            Settings {
                default_count: 100,
                max_count: 2,
                max_members,
                members_in_flight,
                retry_after: 1,
                unknown_attributes: UnknownPolicy::Ignore,
                features: Features {
                    max_results: 2,
                    max_payload_bytes: 1 << 20,
                    documentation_uri: None,
                },
            },
            Arc::new(|_: &str, _: &[String]| {}),
        )
    }

    async fn call(
        s: &Service<Either>,
        method: Method,
        path: &str,
        query: Option<&str>,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> (Response, Value) {
        let r = s
            .handle(Request {
                method: &method,
                path,
                query,
                if_match,
                if_none_match: None,
                body: body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
                base: BaseUrl("https://app.example/scim/v2".into()),
                audit: false,
            })
            .await;
        let json = r.body.as_deref().map_or(Value::Null, |b| {
            serde_json::from_slice(b).expect("JSON body")
        });
        (r, json)
    }

    fn barbara() -> Value {
        json!({
            "schemas": [schema::USER_URN],
            "userName": "bjensen",
            "externalId": "e-1",
            "displayName": "Barbara Jensen",
            "active": true
        })
    }

    /// The whole lifecycle Entra ID drives — create, find by userName, deactivate with its
    /// PATCH dialect, replace, delete — answers with RFC 7644's statuses, bodies and headers
    /// when the provider is a map in memory: the protocol core needs no store.
    #[tokio::test]
    async fn lifecycle_without_a_store() {
        let s = service();
        let (r, created) = call(&s, Method::POST, "/Users", None, None, Some(barbara())).await;
        assert_eq!(r.status, StatusCode::CREATED);
        let id = created["id"].as_str().expect("id").to_owned();
        assert_eq!(
            r.location.as_deref(),
            Some(format!("https://app.example/scim/v2/Users/{id}").as_str())
        );
        assert_eq!(created["meta"]["resourceType"], "User");
        let etag = r.etag.clone().expect("ETag");

        let (r, dup) = call(&s, Method::POST, "/Users", None, None, Some(barbara())).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(dup["scimType"], "uniqueness");

        let (r, list) = call(
            &s,
            Method::GET,
            "/Users",
            Some("filter=userName%20eq%20%22bjensen%22"),
            None,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(list["totalResults"], 1);
        assert_eq!(list["Resources"][0]["id"], id.as_str());

        let patch = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        });
        let path = format!("/Users/{id}");
        let (r, patched) = call(
            &s,
            Method::PATCH,
            &path,
            None,
            Some(&etag),
            Some(patch.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(patched["active"], false);
        // The old ETag no longer matches.
        let (r, stale) = call(&s, Method::PATCH, &path, None, Some(&etag), Some(patch)).await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{stale}");

        let mut replacement = barbara();
        replacement["displayName"] = json!("Babs");
        let (r, replaced) = call(&s, Method::PUT, &path, None, None, Some(replacement)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(replaced["displayName"], "Babs");

        let (r, _) = call(&s, Method::DELETE, &path, None, None, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let (r, gone) = call(&s, Method::GET, &path, None, None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(
            gone["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert_eq!(gone["status"], "404");
    }

    /// Members are added and removed by PATCH (Okta's and Entra's shapes) without the
    /// provider seeing anything but membership operations; a group's PATCH answers 204.
    #[tokio::test]
    async fn group_members_without_a_store() {
        let s = service();
        let (_, a) = call(
            &s,
            Method::POST,
            "/Users",
            None,
            None,
            Some(json!({"schemas": [schema::USER_URN], "userName": "a"})),
        )
        .await;
        let (_, b) = call(
            &s,
            Method::POST,
            "/Users",
            None,
            None,
            Some(json!({"schemas": [schema::USER_URN], "userName": "b"})),
        )
        .await;
        let (r, g) = call(
            &s,
            Method::POST,
            "/Groups",
            None,
            None,
            Some(json!({"schemas": [schema::GROUP_URN], "displayName": "team", "members": [{"value": a["id"]}]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        let path = format!("/Groups/{}", g["id"].as_str().expect("id"));
        let add = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": b["id"]}]}]
        });
        let (r, _) = call(&s, Method::PATCH, &path, None, None, Some(add)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let remove = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Remove", "path": format!("members[value eq \"{}\"]", a["id"].as_str().expect("id"))}]
        });
        let (r, _) = call(&s, Method::PATCH, &path, None, None, Some(remove)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let (_, got) = call(&s, Method::GET, &path, None, None, None).await;
        assert_eq!(
            got["members"],
            json!([{"value": b["id"], "$ref": format!("https://app.example/scim/v2/Users/{}", b["id"].as_str().expect("id")), "type": "User"}])
        );
    }

    /// Paging is clamped to the configured maximum and reports the total; bad requests are
    /// RFC 7644 §3.12 errors with the right `scimType`; discovery answers from the provider's
    /// resource types.
    #[tokio::test]
    async fn paging_errors_and_discovery_without_a_store() {
        let s = service();
        for n in ["a", "b", "c"] {
            call(
                &s,
                Method::POST,
                "/Users",
                None,
                None,
                Some(json!({"schemas": [schema::USER_URN], "userName": n})),
            )
            .await;
        }
        let (_, page) = call(
            &s,
            Method::GET,
            "/Users",
            Some("startIndex=2&count=50"),
            None,
            None,
        )
        .await;
        assert_eq!(page["totalResults"], 3);
        assert_eq!(page["itemsPerPage"], 2);
        assert_eq!(page["startIndex"], 2);

        let (r, e) = call(
            &s,
            Method::GET,
            "/Users",
            Some("filter=userName%20zz%20%22a%22"),
            None,
            None,
        )
        .await;
        assert_eq!(
            (r.status, e["scimType"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalidFilter"))
        );
        let r = s
            .handle(Request {
                method: &Method::POST,
                path: "/Users",
                query: None,
                if_match: None,
                if_none_match: None,
                body: Bytes::from_static(b"{not json"),
                base: BaseUrl("https://app.example/scim/v2".into()),
                audit: false,
            })
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        let (r, spc) = call(&s, Method::GET, "/ServiceProviderConfig", None, None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(spc["patch"]["supported"], true);
        let (_, types) = call(&s, Method::GET, "/ResourceTypes", None, None, None).await;
        assert_eq!(types["totalResults"], 2);
    }

    /// A response with members holds its share of the members budget until its body has
    /// been sent (the response dropped): another request that must reserve the whole budget
    /// waits for it instead of building a second large response beside it, and then
    /// completes. See: issue #14.
    #[tokio::test]
    async fn members_budget_is_held_until_the_response_is_sent() {
        let s = service_with(1000, 1000);
        let mut ids = Vec::new();
        for n in ["a", "b", "c"] {
            let (_, u) = call(
                &s,
                Method::POST,
                "/Users",
                None,
                None,
                Some(json!({"schemas": [schema::USER_URN], "userName": n})),
            )
            .await;
            ids.push(json!({"value": u["id"]}));
        }
        let (_, g) = call(
            &s,
            Method::POST,
            "/Groups",
            None,
            None,
            Some(json!({"schemas": [schema::GROUP_URN], "displayName": "team", "members": ids})),
        )
        .await;
        let path = format!("/Groups/{}", g["id"].as_str().expect("id"));
        let (first, body) = call(&s, Method::GET, &path, None, None, None).await;
        assert_eq!(body["members"].as_array().map(Vec::len), Some(3));
        assert_eq!(first.hold.as_ref().map(|h| h.num_permits()), Some(3));

        let second = call(&s, Method::GET, &path, None, None, None);
        let mut second = Box::pin(second);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), &mut second).await;
        assert!(
            waited.is_err(),
            "the second response did not wait for the budget"
        );
        drop(first);
        let (r, body) = second.await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(body["members"].as_array().map(Vec::len), Some(3));
        // Without members, nothing is reserved.
        let (r, _) = call(
            &s,
            Method::GET,
            &path,
            Some("excludedAttributes=members"),
            None,
            None,
        )
        .await;
        assert!(r.hold.is_none());
    }
}
