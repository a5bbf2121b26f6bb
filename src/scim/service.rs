//! The SCIM service: one authenticated request under the base path in, one response out.
//!
//! The router calls [`Service::handle`] with the request's method, the path below the base
//! path, the query, the conditional headers and the (size-limited) body. The service parses
//! and validates the request, calls the [`Provider`] of the resource type, and builds the
//! response: status, SCIM JSON, `Location` and `ETag`. It never sees HTTP connections, and it
//! never sees a store: the mapping layer implements [`Provider`].

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use super::discovery::{self, Features};
use super::error::ScimError;
use super::filter::{AttrPath, Filter};
use super::list::{self, ListParams};
use super::patch::{self, MemberOp};
use super::projection::Projection;
use super::resource::{
    self, BaseUrl, MembersOut, Normalizer, Object, Rendered, Stored, UnknownPolicy,
};
use super::schema::ResourceType;
use super::shape::{JsonPage, Scratch};

/// Changes a resource inside the store's transaction: gets the current state (without
/// members) and the provider's resource type, returns the new attributes and membership
/// changes, or an error that aborts the transaction with nothing written.
pub type Edit = Box<dyn FnOnce(Stored, &ResourceType) -> Result<Update, ScimError> + Send>;

/// Checks a resource inside the store's transaction before it is deleted (`If-Match`).
pub type Check = Box<dyn FnOnce(&Stored) -> Result<(), ScimError> + Send>;

/// What an [`Edit`] produces.
#[derive(Debug, Default)]
pub struct Update {
    /// The complete new attributes (the store writes only those that differ).
    pub attrs: Object,
    /// Membership changes to run.
    pub members: Vec<MemberOp>,
}

/// A list query as handed to a provider: paging already limited.
#[derive(Clone, Debug)]
pub struct Query {
    /// The filter, if any (attribute names as the client wrote them).
    pub filter: Option<Filter>,
    /// The attribute to sort by.
    pub sort_by: Option<AttrPath>,
    /// Descending order.
    pub descending: bool,
    /// 0-based offset.
    pub offset: u64,
    /// Page size (0: only the total).
    pub limit: u64,
    /// Whether to load members of the returned resources.
    pub members: bool,
}

/// One page of results.
#[derive(Debug)]
pub struct Page {
    /// Number of resources matching the filter.
    pub total: u64,
    /// The resources of this page.
    pub resources: Vec<Stored>,
}

/// The store side of one resource type, as the protocol layer needs it. Implemented by the
/// mapping layer; every method runs in one store transaction and either fully happens or
/// returns an error having changed nothing.
pub trait Provider: Send + Sync + 'static {
    /// The resource type served: only stored attributes.
    fn resource_type(&self) -> &ResourceType;

    /// Creates a resource from normalised attributes and initial members. `Ok` is the stored
    /// resource as it reads back; a uniqueness clash is 409, an unreachable store 503.
    fn create(
        &self,
        attrs: Object,
        members: Vec<String>,
        load_members: bool,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send;

    /// Reads one resource; 404 when there is none with this id.
    fn get(
        &self,
        id: &str,
        load_members: bool,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send;

    /// Runs a list query; a filter naming an attribute that is not stored is 400
    /// `invalidFilter`.
    fn list(&self, query: Query) -> impl Future<Output = Result<Page, ScimError>> + Send;

    /// [`Self::get`] without members, for a resource sent with the default projection and
    /// nothing added: its JSON as the response carries it, and its version. This default
    /// renders what `get` returns; a provider that reads rows writes them straight.
    fn get_json(
        &self,
        id: &str,
        base: &BaseUrl,
    ) -> impl Future<Output = Result<(Vec<u8>, String), ScimError>> + Send {
        async move {
            let stored = self.get(id, false).await?;
            let mut out = JsonPage::new(1);
            let rt = self.resource_type();
            let mut scratch = Scratch::default();
            let version = out.push_stored(rt, &stored.id, stored.attrs, base, &mut scratch);
            Ok((out.json, version))
        }
    }

    /// [`Self::list`] for a page sent with the default projection, without members and with
    /// nothing added to its resources: their JSON as the response carries it. This default
    /// renders what `list` returns; a provider that reads rows writes them straight
    /// ([`super::shape`]): a filter by userName costs a quarter fewer instructions.
    fn list_json(
        &self,
        query: Query,
        base: &BaseUrl,
    ) -> impl Future<Output = Result<JsonPage, ScimError>> + Send {
        async move {
            let rt = self.resource_type();
            let page = self.list(query).await?;
            let mut out = JsonPage::new(page.total);
            let mut scratch = Scratch::default();
            for stored in page.resources {
                out.push_stored(rt, &stored.id, stored.attrs, base, &mut scratch);
            }
            Ok(out)
        }
    }

    /// Loads the resource (locked), runs `edit` on it, writes what changed and the membership
    /// changes, and returns the result; 404 when there is none with this id. `named` holds
    /// every member id the edit may add or set (and possibly more), known from the request
    /// before the edit runs: a store checks those ahead of the write instead of every one.
    fn update(
        &self,
        id: &str,
        load_members: bool,
        named: &[String],
        edit: Edit,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send;

    /// Loads the resource (locked), runs `check`, and deletes it (hard or soft, as mapped);
    /// 404 when there is none with this id.
    fn delete(&self, id: &str, check: Check) -> impl Future<Output = Result<(), ScimError>> + Send;
}

/// Settings of the protocol layer.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Page size when a list request gives no `count`.
    pub default_count: u64,
    /// Page size cap (`filter.maxResults`); a larger `count` is reduced to it, as RFC 7644
    /// §3.4.2.4 allows.
    pub max_count: u64,
    /// The most members one response carries (the provider refuses more: 400 `tooMany`).
    pub max_members: u64,
    /// The most members held by responses at once: a response with members reserves
    /// `max_members` before reading, keeps what it read until its body has been sent, and
    /// waits (or answers 503) when others hold the budget.
    pub members_in_flight: u64,
    /// `Retry-After` seconds when the budget stays taken.
    pub retry_after: u32,
    /// What to do with attributes the mapping does not store.
    pub unknown_attributes: UnknownPolicy,
    /// Published in `/ServiceProviderConfig`.
    pub features: Features,
}

/// How long a request with members waits for the members budget before answering 503.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Called with the resource type and the attributes a request carried that are not stored.
pub type IgnoredHook = Arc<dyn Fn(&str, &[String]) + Send + Sync>;

/// The operation a request performed, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// POST to an endpoint.
    Create,
    /// GET one resource.
    Get,
    /// GET an endpoint (list/filter).
    List,
    /// POST `/.search`.
    Search,
    /// PUT.
    Replace,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// A discovery endpoint.
    Discovery,
    /// Anything else (unknown paths, unsupported methods).
    Other,
}

impl Operation {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Get => "get",
            Operation::List => "list",
            Operation::Search => "search",
            Operation::Replace => "replace",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::Discovery => "discovery",
            Operation::Other => "other",
        }
    }
}

/// One SCIM request, as the router hands it over.
#[derive(Debug)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Path below the base path, e.g. `/Users/42` (still percent-encoded).
    pub path: &'a str,
    /// Raw query string.
    pub query: Option<&'a str>,
    /// `If-Match` header.
    pub if_match: Option<&'a str>,
    /// `If-None-Match` header.
    pub if_none_match: Option<&'a str>,
    /// The body (already size-limited).
    pub body: Bytes,
    /// The public base URL, e.g. `https://app.example.com/scim/v2`.
    pub base: BaseUrl,
    /// Record what a write changes ([`Response::change`]), for the audit log.
    pub audit: bool,
}

/// What a write changed, for the audit log: the resource before and after, what was written
/// that is never read back (named only), and the membership changes.
#[derive(Debug, Default)]
pub struct Change {
    /// The resource's id.
    pub id: String,
    /// Its attributes before the write (`None` for a create).
    pub before: Option<Object>,
    /// Its attributes after the write, as stored (`None` for a delete).
    pub after: Option<Object>,
    /// Attributes written that are never returned (`password`): named, never shown.
    pub secrets: Vec<String>,
    /// Membership changes.
    pub members: Vec<MemberOp>,
}

/// A SCIM response, for the router to send.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// JSON body (absent for 204 and 304).
    pub body: Option<Vec<u8>>,
    /// `Location` header (201).
    pub location: Option<String>,
    /// `ETag` header.
    pub etag: Option<String>,
    /// `Allow` header (405).
    pub allow: Option<&'static str>,
    /// `Retry-After` header, in seconds (503).
    pub retry_after: Option<u32>,
    /// Resource type name, for metrics (`-` when none).
    pub resource_type: String,
    /// Operation, for metrics.
    pub operation: Operation,
    /// The error detail, for the access log.
    pub error: Option<String>,
    /// The share of the members budget this response holds: to be dropped once its body has
    /// been sent.
    pub hold: Option<tokio::sync::OwnedSemaphorePermit>,
    /// What the write changed, when [`Request::audit`] asked.
    pub change: Option<Box<Change>>,
}

/// `body` as JSON, into a buffer that starts at the size of a typical resource so that
/// serialising one does not regrow (and copy) it several times.
fn json_bytes(body: &impl serde::Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut out, body) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

impl Response {
    fn json(status: StatusCode, body: &impl serde::Serialize) -> Self {
        Response {
            body: Some(json_bytes(body)),
            ..Self::empty(status)
        }
    }

    fn empty(status: StatusCode) -> Self {
        Response {
            status,
            body: None,
            location: None,
            etag: None,
            allow: None,
            retry_after: None,
            resource_type: "-".into(),
            operation: Operation::Other,
            error: None,
            hold: None,
            change: None,
        }
    }

    /// The response for an error.
    pub fn error(e: &ScimError) -> Self {
        Response {
            retry_after: e.retry_after,
            error: Some(e.detail.clone()),
            ..Self::json(e.status, &e.body())
        }
    }

    fn labelled(mut self, rt: &str, op: Operation) -> Self {
        self.resource_type = rt.to_owned();
        self.operation = op;
        self
    }
}

/// The SCIM service over a set of providers, one per resource type.
pub struct Service<P> {
    providers: Vec<P>,
    settings: Settings,
    on_ignored: IgnoredHook,
    /// Each resource type's endpoint by name, for members' `$ref`.
    endpoints: Vec<(String, String)>,
    /// The members budget ([`Settings::members_in_flight`]).
    budget: Arc<tokio::sync::Semaphore>,
}

impl<P: Provider> Service<P> {
    /// A service over these providers.
    pub fn new(providers: Vec<P>, settings: Settings, on_ignored: IgnoredHook) -> Self {
        let endpoints = providers
            .iter()
            .map(|p| {
                let rt = p.resource_type();
                (rt.name.clone(), rt.endpoint.clone())
            })
            .collect();
        let budget = Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(settings.members_in_flight)
                .unwrap_or(usize::MAX)
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        Service {
            providers,
            settings,
            on_ignored,
            endpoints,
            budget,
        }
    }

    /// The resource types served.
    pub fn resource_types(&self) -> impl Iterator<Item = &ResourceType> {
        self.providers.iter().map(Provider::resource_type)
    }

    /// Handles one request. Never fails: errors become SCIM error responses.
    pub async fn handle(&self, req: Request<'_>) -> Response {
        let path = req.path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let m = req.method;
        match segs.as_slice() {
            ["ServiceProviderConfig"] => self.discovery(m, || {
                Ok(discovery::service_provider_config(
                    &self.settings.features,
                    &req.base,
                ))
            }),
            ["ResourceTypes"] => self.discovery_list(m, &req, |b| {
                self.resource_types()
                    .map(|rt| discovery::resource_type(rt, b))
                    .collect()
            }),
            ["ResourceTypes", name] => self.discovery(m, || {
                let name = decode(name);
                self.resource_types()
                    .find(|rt| rt.name.eq_ignore_ascii_case(&name))
                    .map(|rt| discovery::resource_type(rt, &req.base))
                    .ok_or_else(|| ScimError::not_found(format!("no resource type '{name}'")))
            }),
            ["Schemas"] => self.discovery_list(m, &req, |b| {
                discovery::schemas(self.resource_types())
                    .into_iter()
                    .map(|s| discovery::schema(s, b))
                    .collect()
            }),
            ["Schemas", urn] => self.discovery(m, || {
                let urn = decode(urn);
                discovery::schemas(self.resource_types())
                    .into_iter()
                    .find(|s| s.id.eq_ignore_ascii_case(&urn))
                    .map(|s| discovery::schema(s, &req.base))
                    .ok_or_else(|| ScimError::not_found(format!("no schema '{urn}'")))
            }),
            ["Bulk"] => {
                not_implemented("bulk operations are not supported (see /ServiceProviderConfig)")
            }
            [".search"] => not_implemented(
                "searching across resource types is not supported; POST {endpoint}/.search instead",
            ),
            ["Me"] => not_implemented(
                "/Me is not supported: the caller is an identity provider, not a user",
            ),
            [endpoint, rest @ ..] => {
                let Some(p) = self.provider(endpoint) else {
                    return Response::error(&ScimError::not_found(format!(
                        "no SCIM endpoint '/{endpoint}' (endpoints: {})",
                        self.resource_types()
                            .map(|rt| rt.endpoint.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                };
                let name = p.resource_type().name.clone();
                let (op, res) = match (rest, m) {
                    ([], &Method::GET) => (Operation::List, self.list(p, &req).await),
                    ([], &Method::POST) => (Operation::Create, self.create(p, &req).await),
                    ([".search"], &Method::POST) => (Operation::Search, self.search(p, &req).await),
                    ([id], &Method::GET) => (Operation::Get, self.get(p, &decode(id), &req).await),
                    ([id], &Method::PUT) => {
                        (Operation::Replace, self.replace(p, &decode(id), &req).await)
                    }
                    ([id], &Method::PATCH) => {
                        (Operation::Patch, self.patch(p, &decode(id), &req).await)
                    }
                    ([id], &Method::DELETE) => {
                        (Operation::Delete, self.delete(p, &decode(id), &req).await)
                    }
                    ([], _) => (Operation::Other, Err(method_not_allowed("GET, POST"))),
                    ([".search"], _) => (Operation::Other, Err(method_not_allowed("POST"))),
                    ([_], _) => (
                        Operation::Other,
                        Err(method_not_allowed("GET, PUT, PATCH, DELETE")),
                    ),
                    _ => (
                        Operation::Other,
                        Err(ScimError::not_found(format!(
                            "no SCIM resource at '{path}'"
                        ))),
                    ),
                };
                match res {
                    Ok(r) => r,
                    Err(e) => {
                        let mut r = Response::error(&e);
                        if e.status == StatusCode::METHOD_NOT_ALLOWED {
                            r.allow = Some(match rest {
                                [] => "GET, POST",
                                [".search"] => "POST",
                                _ => "GET, PUT, PATCH, DELETE",
                            });
                        }
                        r
                    }
                }
                .labelled(&name, op)
            }
            [] => Response::error(&ScimError::not_found(
                "this is the SCIM base URL; resources are under /Users, /Groups and the other endpoints in /ResourceTypes",
            )),
        }
    }

    fn provider(&self, endpoint: &str) -> Option<&P> {
        self.providers.iter().find(|p| {
            p.resource_type()
                .endpoint
                .trim_start_matches('/')
                .eq_ignore_ascii_case(endpoint)
        })
    }

    fn endpoint_of(&self, type_name: &str) -> Option<String> {
        self.resource_types()
            .find(|rt| rt.name == type_name)
            .map(|rt| rt.endpoint.clone())
    }

    /// A resource as it is sent: projected, with its members (when sent whole) written
    /// straight from the stored list at serialisation.
    /// [`Self::render`] of a resource sent without members, moving its attributes into the
    /// output instead of copying them (`stored.attrs` is left empty); `None` when members
    /// are to be sent (then [`Self::render`]).
    fn render_taking(
        &self,
        rt: &ResourceType,
        stored: &mut Stored,
        version: String,
        base: &BaseUrl,
        proj: &Projection,
    ) -> Option<Rendered<'static>> {
        if rt.membership.is_some() && stored.members.is_some() {
            return None;
        }
        let attrs = std::mem::take(&mut stored.attrs);
        let mut obj = resource::render_attrs(rt, &stored.id, attrs, version, base);
        proj.apply(rt, &mut obj);
        Some(Rendered { obj, members: None })
    }

    /// A resource as sent: without copying its attributes when it has no members to send.
    fn render_owned<'a>(
        &'a self,
        rt: &'a ResourceType,
        stored: &'a mut Stored,
        version: String,
        base: &'a BaseUrl,
        proj: &Projection,
    ) -> Rendered<'a> {
        if let Some(r) = self.render_taking(rt, stored, version, base, proj) {
            return r;
        }
        let stored: &'a Stored = stored;
        self.render(rt, stored, base, proj)
    }

    fn render<'a>(
        &'a self,
        rt: &'a ResourceType,
        stored: &'a Stored,
        base: &'a BaseUrl,
        proj: &Projection,
    ) -> Rendered<'a> {
        let mut obj = resource::render_without_members(rt, stored, base);
        let (Some(attr), Some(list)) = (rt.membership.as_deref(), stored.members.as_deref()) else {
            proj.apply(rt, &mut obj);
            return Rendered { obj, members: None };
        };
        // Ask the projection about the membership with an empty placeholder.
        Rendered::place_members(&mut obj, attr);
        proj.apply(rt, &mut obj);
        match obj.get(attr) {
            None => Rendered { obj, members: None },
            Some(Value::Array(a)) if a.is_empty() => Rendered {
                obj,
                members: Some(MembersOut {
                    attr,
                    list,
                    base,
                    endpoints: &self.endpoints,
                }),
            },
            // Some of the members' sub-attributes asked for: the general path.
            Some(_) => {
                let mut obj = resource::render(rt, stored, base, &|t| self.endpoint_of(t));
                proj.apply(rt, &mut obj);
                Rendered { obj, members: None }
            }
        }
    }

    fn report_ignored(&self, rt: &ResourceType, ignored: &[String]) {
        if !ignored.is_empty() {
            (self.on_ignored)(&rt.name, ignored);
        }
    }

    fn discovery(&self, m: &Method, doc: impl FnOnce() -> Result<Value, ScimError>) -> Response {
        if m != Method::GET {
            let mut r = Response::error(&method_not_allowed("GET"));
            r.allow = Some("GET");
            return r.labelled("-", Operation::Discovery);
        }
        match doc() {
            Ok(v) => Response::json(StatusCode::OK, &v),
            Err(e) => Response::error(&e),
        }
        .labelled("-", Operation::Discovery)
    }

    fn discovery_list(
        &self,
        m: &Method,
        req: &Request<'_>,
        docs: impl FnOnce(&BaseUrl) -> Vec<Value>,
    ) -> Response {
        // RFC 7644 §4: filtering discovery endpoints is not supported.
        let filtered = form_urlencoded::parse(req.query.unwrap_or("").as_bytes())
            .any(|(k, _)| k.eq_ignore_ascii_case("filter"));
        if filtered && m == Method::GET {
            return Response::error(&ScimError::new(
                StatusCode::FORBIDDEN,
                "discovery endpoints cannot be filtered (RFC 7644 §4)",
            ))
            .labelled("-", Operation::Discovery);
        }
        self.discovery(m, || {
            let docs = docs(&req.base);
            let n = docs.len() as u64;
            Ok(list::list_response(n, 1, docs))
        })
    }

    async fn create(&self, p: &P, req: &Request<'_>) -> Result<Response, ScimError> {
        let rt = p.resource_type();
        let body = json_body(&req.body)?;
        let mut n = Normalizer::new(rt, self.settings.unknown_attributes);
        let input = n.resource(body)?;
        self.report_ignored(rt, &n.ignored);
        resource::check_required(rt, &input.attrs, input.members.is_some())?;
        let (a, e) = list::projection_params(req.query);
        let proj = Projection::new(rt, a.as_deref(), e.as_deref())?;
        let load = self.loads_members(rt, &proj);
        let hold = self.reserve(load).await?;
        let secrets = if req.audit {
            secrets_in(rt, &input.attrs)
        } else {
            Vec::new()
        };
        let added = input.members.clone().filter(|_| req.audit);
        let mut stored = p
            .create(input.attrs, input.members.unwrap_or_default(), load)
            .await?;
        let change = req.audit.then(|| {
            Box::new(Change {
                id: stored.id.clone(),
                before: None,
                after: Some(stored.attrs.clone()),
                secrets,
                members: added.into_iter().map(MemberOp::Add).collect(),
            })
        });
        let hold = keep(hold, members_of(&stored));
        let location = req.base.location(&rt.endpoint, &stored.id);
        let (body, etag) = self.written(rt, &mut stored, &req.base, &proj);
        let mut r = Response::empty(StatusCode::CREATED);
        r.body = Some(body);
        r.location = Some(location);
        r.etag = Some(etag);
        r.hold = hold;
        r.change = change;
        Ok(r)
    }

    async fn get(&self, p: &P, id: &str, req: &Request<'_>) -> Result<Response, ScimError> {
        let rt = p.resource_type();
        let (a, e) = list::projection_params(req.query);
        let proj = Projection::new(rt, a.as_deref(), e.as_deref())?;
        let load = self.loads_members(rt, &proj);
        if straight(rt, &proj, load) {
            let (body, etag) = p.get_json(id, &req.base).await?;
            if req.if_none_match.is_some_and(|h| etag_matches(h, &etag)) {
                let mut r = Response::empty(StatusCode::NOT_MODIFIED);
                r.etag = Some(etag);
                return Ok(r);
            }
            let mut r = Response::empty(StatusCode::OK);
            r.body = Some(body);
            r.etag = Some(etag);
            return Ok(r);
        }
        let hold = self.reserve(load).await?;
        let mut stored = p.get(id, load).await?;
        let hold = keep(hold, members_of(&stored));
        let etag = resource::version(&stored.attrs);
        // RFC 7644 §3.14 / RFC 7232 §3.2: a matching If-None-Match on GET is 304. Not when
        // the answer carries the members: the version leaves them out (`resource::version`),
        // so a 304 would tell the client a changed member list had not changed.
        if !load && req.if_none_match.is_some_and(|h| etag_matches(h, &etag)) {
            let mut r = Response::empty(StatusCode::NOT_MODIFIED);
            r.etag = Some(etag);
            return Ok(r);
        }
        let id = stored.id.clone();
        let mut out = self.render_owned(rt, &mut stored, etag.clone(), &req.base, &proj);
        self.add_groups(rt, &proj, &req.base, &id, &mut out.obj)
            .await?;
        let mut r = Response::json(StatusCode::OK, &out);
        r.etag = Some(etag);
        r.hold = hold;
        Ok(r)
    }

    async fn list(&self, p: &P, req: &Request<'_>) -> Result<Response, ScimError> {
        let params = ListParams::from_query(req.query)?;
        self.run_list(p, params, req).await
    }

    async fn search(&self, p: &P, req: &Request<'_>) -> Result<Response, ScimError> {
        let params = ListParams::from_search(json_body(&req.body)?)?;
        self.run_list(p, params, req).await
    }

    async fn run_list(
        &self,
        p: &P,
        params: ListParams,
        req: &Request<'_>,
    ) -> Result<Response, ScimError> {
        let rt = p.resource_type();
        let proj = Projection::new(rt, params.attributes.as_deref(), params.excluded.as_deref())?;
        let limit = params
            .count
            .unwrap_or(self.settings.default_count)
            .min(self.settings.max_count);
        let query = Query {
            filter: params.filter,
            sort_by: params.sort_by,
            descending: params.descending,
            offset: params.start_index - 1,
            limit,
            members: self.loads_members(rt, &proj),
        };
        if straight(rt, &proj, query.members) {
            let page = p.list_json(query, &req.base).await?;
            return Ok(Response {
                body: Some(page.list_response(params.start_index)),
                ..Response::empty(StatusCode::OK)
            });
        }
        let hold = self.reserve(query.members).await?;
        let mut page = p.list(query).await?;
        let hold = keep(hold, page.resources.iter().map(members_of).sum());
        let ids: Vec<String> = match rt.groups_from {
            Some(_) => page.resources.iter().map(|s| s.id.clone()).collect(),
            None => Vec::new(),
        };
        let mut resources: Vec<Rendered<'_>> = page
            .resources
            .iter_mut()
            .map(|s| {
                let v = resource::version(&s.attrs);
                self.render_owned(rt, s, v, &req.base, &proj)
            })
            .collect();
        for (out, id) in resources.iter_mut().zip(&ids) {
            self.add_groups(rt, &proj, &req.base, id, &mut out.obj)
                .await?;
        }
        let mut r = Response::json(
            StatusCode::OK,
            &list::ListResponse {
                total: page.total,
                start_index: params.start_index,
                resources,
            },
        );
        r.hold = hold;
        Ok(r)
    }

    async fn replace(&self, p: &P, id: &str, req: &Request<'_>) -> Result<Response, ScimError> {
        let rt = p.resource_type();
        let body = json_body(&req.body)?;
        let mut n = Normalizer::new(rt, self.settings.unknown_attributes);
        let input = n.resource(body)?;
        self.report_ignored(rt, &n.ignored);
        resource::check_required(rt, &input.attrs, true)?;
        let (a, e) = list::projection_params(req.query);
        let proj = Projection::new(rt, a.as_deref(), e.as_deref())?;
        let if_match = req.if_match.map(str::to_owned);
        let named = input.members.clone().unwrap_or_default();
        let edit: Edit = Box::new(move |current: Stored, rt: &ResourceType| {
            check_if_match(if_match.as_deref(), &current)?;
            patch::check_immutable(rt, &current.attrs, &input.attrs)?;
            // RFC 7644 §3.5.1 lets a server keep values a PUT omits. Attributes are replaced
            // whole; members are replaced only when the body lists them, so that a PUT of a
            // group's name never empties a 100,000-member group.
            let members = input.members.map(MemberOp::Replace).into_iter().collect();
            Ok(Update {
                attrs: input.attrs,
                members,
            })
        });
        let load = self.loads_members(rt, &proj);
        let hold = self.reserve(load).await?;
        let (edit, seen) = witnessed(edit, req.audit);
        let mut stored = p.update(id, load, &named, edit).await?;
        let change = changed(rt, seen, &stored);
        let hold = keep(hold, members_of(&stored));
        let mut r = self.updated(rt, &mut stored, req, &proj);
        r.hold = hold;
        r.change = change;
        Ok(r)
    }

    async fn patch(&self, p: &P, id: &str, req: &Request<'_>) -> Result<Response, ScimError> {
        let rt = p.resource_type();
        let ops = patch::parse(json_body(&req.body)?)?;
        // Only a resource with members has members to name ahead.
        let named = match rt.membership {
            Some(_) => patch::named_ids(&ops),
            None => Vec::new(),
        };
        let (a, e) = list::projection_params(req.query);
        let proj = Projection::new(rt, a.as_deref(), e.as_deref())?;
        let if_match = req.if_match.map(str::to_owned);
        let policy = self.settings.unknown_attributes;
        let hook = self.on_ignored.clone();
        let edit: Edit = Box::new(move |current: Stored, rt: &ResourceType| {
            check_if_match(if_match.as_deref(), &current)?;
            let mut attrs = current.attrs;
            let applied = patch::apply(rt, &mut attrs, &ops, policy)?;
            if !applied.ignored.is_empty() {
                hook(&rt.name, &applied.ignored);
            }
            Ok(Update {
                attrs,
                members: applied.members,
            })
        });
        // A resource with members (a group) answers PATCH with 204, as RFC 7644 §3.5.2
        // allows and Entra prefers for groups, unless the request names attributes to
        // return: rendering a 100,000-member group after each membership change would read
        // and send megabytes that no identity provider reads.
        let quiet = rt.membership.is_some() && a.is_none() && e.is_none();
        let load = !quiet && self.loads_members(rt, &proj);
        let hold = self.reserve(load).await?;
        let (edit, seen) = witnessed(edit, req.audit);
        let mut stored = p.update(id, load, &named, edit).await?;
        let change = changed(rt, seen, &stored);
        if quiet {
            let mut r = Response::empty(StatusCode::NO_CONTENT);
            r.etag = Some(resource::version(&stored.attrs));
            r.change = change;
            return Ok(r);
        }
        let hold = keep(hold, members_of(&stored));
        let mut r = self.updated(rt, &mut stored, req, &proj);
        r.hold = hold;
        r.change = change;
        Ok(r)
    }

    fn updated(
        &self,
        rt: &ResourceType,
        stored: &mut Stored,
        req: &Request<'_>,
        proj: &Projection,
    ) -> Response {
        let (body, etag) = self.written(rt, stored, &req.base, proj);
        let mut r = Response::empty(StatusCode::OK);
        r.body = Some(body);
        r.etag = Some(etag);
        r
    }

    /// The body and version of a resource a write returns: written straight from its
    /// attributes when it goes out with the default projection and no members (see
    /// [`super::shape`]: one serialisation instead of two and no render), else rendered.
    fn written(
        &self,
        rt: &ResourceType,
        stored: &mut Stored,
        base: &BaseUrl,
        proj: &Projection,
    ) -> (Vec<u8>, String) {
        if stored.members.is_none() && proj.is_default_without(rt.membership.as_deref()) {
            let mut page = JsonPage::new(1);
            let attrs = std::mem::take(&mut stored.attrs);
            let version = page.push_stored(rt, &stored.id, attrs, base, &mut Scratch::default());
            return (page.json, version);
        }
        let etag = resource::version(&stored.attrs);
        let body = json_bytes(&self.render_owned(rt, stored, etag.clone(), base, proj));
        (body, etag)
    }

    async fn delete(&self, p: &P, id: &str, req: &Request<'_>) -> Result<Response, ScimError> {
        let if_match = req.if_match.map(str::to_owned);
        let seen: Seen = Arc::default();
        let witness = req.audit.then(|| seen.clone());
        let check: Check = Box::new(move |current: &Stored| {
            check_if_match(if_match.as_deref(), current)?;
            if let Some(w) = witness {
                if let Ok(mut w) = w.lock() {
                    *w = Some((current.attrs.clone(), Update::default()));
                }
            }
            Ok(())
        });
        p.delete(id, check).await?;
        let mut r = Response::empty(StatusCode::NO_CONTENT);
        if req.audit {
            r.change = Some(Box::new(Change {
                id: id.to_owned(),
                before: take(&seen).map(|(before, _)| before),
                ..Change::default()
            }));
        }
        Ok(r)
    }

    /// Reserves the most members one response may carry, before a read that loads them.
    async fn reserve(
        &self,
        load: bool,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ScimError> {
        if !load {
            return Ok(None);
        }
        let n = self
            .settings
            .max_members
            .min(self.settings.members_in_flight)
            .min(u64::from(u32::MAX)) as u32;
        match tokio::time::timeout(BUDGET_WAIT, self.budget.clone().acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(ScimError::unavailable(
                format!(
                    "other responses hold every member this service sends at once ([scim].members_in_flight); retry in {} s",
                    self.settings.retry_after
                ),
                self.settings.retry_after,
            )),
        }
    }

    /// Adds the read-only `groups` of resource `id` to its output `obj` when its type
    /// computes them ([`ResourceType::groups_from`]) and the projection shows them: the
    /// groups of that type whose members hold `id`, found by the group type's own filter
    /// `members.value eq "id"` (one search, more pages only past `max_count` groups). Not
    /// part of the resource's version: a membership change is the group's, not the user's.
    async fn add_groups(
        &self,
        rt: &ResourceType,
        proj: &Projection,
        base: &BaseUrl,
        id: &str,
        obj: &mut resource::Object,
    ) -> Result<(), ScimError> {
        let Some(group_type) = &rt.groups_from else {
            return Ok(());
        };
        if !proj.wants(rt, "groups") {
            return Ok(());
        }
        let Some(gp) = self
            .providers
            .iter()
            .find(|p| p.resource_type().name == *group_type)
        else {
            return Ok(());
        };
        let endpoint = gp.resource_type().endpoint.clone();
        let filter = super::filter::parse_filter(&format!(
            "members.value eq {}",
            Value::String(id.to_owned())
        ))
        .map_err(|e| ScimError::internal(format!("the groups of '{id}': {e}")))?;
        let mut groups = Vec::new();
        loop {
            let page = gp
                .list(Query {
                    filter: Some(filter.clone()),
                    sort_by: None,
                    descending: false,
                    offset: groups.len() as u64,
                    limit: self.settings.max_count.max(1),
                    members: false,
                })
                .await?;
            let got = page.resources.len();
            for g in page.resources {
                let mut entry = resource::Object::new();
                entry.insert("value".into(), Value::String(g.id.clone()));
                entry.insert(
                    "$ref".into(),
                    Value::String(base.location(&endpoint, &g.id)),
                );
                if let Some(name) = g.attrs.get("displayName").and_then(Value::as_str) {
                    entry.insert("display".into(), Value::String(name.to_owned()));
                }
                entry.insert("type".into(), Value::String("direct".into()));
                groups.push(Value::Object(entry));
            }
            if got == 0 || groups.len() as u64 >= page.total {
                break;
            }
        }
        if !groups.is_empty() {
            obj.insert("groups".into(), Value::Array(groups));
            proj.apply(rt, obj);
        }
        Ok(())
    }

    fn loads_members(&self, rt: &ResourceType, proj: &Projection) -> bool {
        rt.membership.as_deref().is_some_and(|m| proj.wants(rt, m))
    }
}

/// Whether a read is answered with resources written straight from the store's rows
/// ([`Provider::get_json`], [`Provider::list_json`]): the default projection (the membership
/// at most excluded), no members loaded, no `groups` computed.
fn straight(rt: &ResourceType, proj: &Projection, load_members: bool) -> bool {
    !load_members && rt.groups_from.is_none() && proj.is_default_without(rt.membership.as_deref())
}

/// What an edit saw and made, for the audit log: the attributes before, and the update.
type Seen = Arc<std::sync::Mutex<Option<(Object, Update)>>>;

/// `edit`, recording what it saw and made when `audit` is on.
fn witnessed(edit: Edit, audit: bool) -> (Edit, Option<Seen>) {
    if !audit {
        return (edit, None);
    }
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let wrapped: Edit = Box::new(move |current: Stored, rt: &ResourceType| {
        let before = current.attrs.clone();
        let update = edit(current, rt)?;
        if let Ok(mut s) = s.lock() {
            *s = Some((
                before,
                Update {
                    attrs: update.attrs.clone(),
                    members: update.members.clone(),
                },
            ));
        }
        Ok(update)
    });
    (wrapped, Some(seen))
}

fn take(seen: &Seen) -> Option<(Object, Update)> {
    seen.lock().ok().and_then(|mut s| s.take())
}

/// The change an update made: before as the edit saw it, after as stored; the attributes it
/// wrote that are never read back, named.
fn changed(rt: &ResourceType, seen: Option<Seen>, stored: &Stored) -> Option<Box<Change>> {
    let (before, update) = take(&seen?)?;
    Some(Box::new(Change {
        id: stored.id.clone(),
        before: Some(before),
        after: Some(stored.attrs.clone()),
        secrets: secrets_in(rt, &update.attrs),
        members: update.members,
    }))
}

/// The attributes of `attrs` that are never returned (`returned: never` or `writeOnly`,
/// such as `password`): an audit line names them, never their values.
fn secrets_in(rt: &ResourceType, attrs: &Object) -> Vec<String> {
    rt.attributes_with_home(false)
        .filter(|(_, a)| {
            a.returned == crate::scim::schema::Returned::Never
                || a.mutability == crate::scim::schema::Mutability::WriteOnly
        })
        .filter(|(home, a)| {
            let r = crate::scim::schema::Resolved {
                home: *home,
                attr: a,
                sub: None,
            };
            resource::get(attrs, &r).is_some()
        })
        .map(|(_, a)| a.name.clone())
        .collect()
}

/// Keeps of a reservation only what the response holds (`members`), giving the rest back.
fn keep(
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    members: usize,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let mut p = permit?;
    let spare = p.num_permits().saturating_sub(members.max(1));
    drop(p.split(spare));
    Some(p)
}

/// The members a response carries.
fn members_of(stored: &Stored) -> usize {
    stored.members.as_ref().map_or(0, Vec::len)
}

/// Parses a request body as JSON: malformed JSON is 400 `invalidSyntax` with serde's position.
fn json_body(body: &Bytes) -> Result<Value, ScimError> {
    if body.is_empty() {
        return Err(ScimError::invalid_syntax("the request needs a JSON body"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))
}

/// RFC 7232 §3.1 If-Match against the resource's current version: `*` or a list of tags.
fn check_if_match(if_match: Option<&str>, current: &Stored) -> Result<(), ScimError> {
    let Some(h) = if_match else { return Ok(()) };
    let version = resource::version(&current.attrs);
    if etag_matches(h, &version) {
        Ok(())
    } else {
        Err(ScimError::precondition_failed(format!(
            "the resource has changed: its version is {version}, the request expected {h}"
        )))
    }
}

/// Whether an `If-Match`/`If-None-Match` value matches a (weak) tag. Comparison is weak
/// (RFC 7232 §2.3.2): `W/` prefixes are ignored on both sides.
fn etag_matches(header: &str, tag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let tag = strip(tag);
    header
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == tag)
}

fn method_not_allowed(allow: &str) -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed here; allowed: {allow}"),
    )
}

fn not_implemented(detail: &str) -> Response {
    Response::error(&ScimError::new(StatusCode::NOT_IMPLEMENTED, detail))
        .labelled("-", Operation::Other)
}

/// Percent-decodes a path segment (an id or a URN).
fn decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ETag comparison is weak and handles lists and `*`.
    #[test]
    fn etags() {
        assert!(etag_matches("W/\"abc\"", "W/\"abc\""));
        assert!(etag_matches("\"abc\"", "W/\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "W/\"abc\""));
        assert!(etag_matches("*", "W/\"abc\""));
        assert!(!etag_matches("W/\"abd\"", "W/\"abc\""));
    }

    /// Path segments are percent-decoded; broken escapes are kept literally.
    #[test]
    fn decoding() {
        assert_eq!(decode("a%20b"), "a b");
        assert_eq!(decode("urn%3Aietf"), "urn:ietf");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%C3%BC"), "ü");
    }
}
