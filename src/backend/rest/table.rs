//! One resource type behind an admin API: the [`Table`] operations as HTTP requests.
//!
//! - **Reads**: one `GET` of the resource (`get`), with the group's member query
//!   (`include=users`) only when members are shown. The `ETag` of that read is sent back as
//!   `If-Match` by the update or soft delete that follows it.
//! - **Searches** ([`RestTable::search`]): a filter's conditions on fields with a `filter`
//!   rule become query parameters; a rule marked `fuzzy` (a substring `search`) is checked
//!   again by the sidecar on what the API returns, so `userName eq "x"` is one request that
//!   keeps only exact matches. Conditions on ids are answered by reading those resources.
//!   What the API cannot answer is refused ([`BackendError::Unsupported`], 400
//!   invalidFilter naming the attribute), unless the resource sets `scan_limit`: then the
//!   sidecar reads every page, up to that many resources, and evaluates the filter itself
//!   (beyond: 400 tooMany). Without such conditions and in the API's order, a SCIM page is
//!   one or two API pages.
//! - **Writes**: create is one `POST` (the created resource read from the answer, or from
//!   its `Location` when the answer has no body); update is a read, the change computed from
//!   it, and one `PUT`/`PATCH` of the changed fields (or all, `update_sends = "all"`); delete
//!   a read, the check, and a `DELETE` (hard) or an update of the soft-delete fields.
//! - **Members**: one request per member (`members.add` / `members.remove`), a few at once.
//!   An API offers no transaction: when a member add fails (a member id the app does not
//!   know), the members this change added are removed again before the error is answered.
//!   Answers declared as `exists` (add) and `absent` (remove) are success.

use std::cmp::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use serde_json::Value as Json;
use tokio::sync::Semaphore;

use super::answer::Doc;
use super::client::{Client, Reply, Req, StatusRules, status_error};
use super::template::{self, BodyT, Part, Vars, text_of};
use super::{FilterRule, MemberOp, Op, RestMembers, RestResource, Style};
use crate::backend::{
    BackendError, CheckFn, CmpOp, ConstValue, DeleteMode, EditFn, FieldInfo, FieldType, Found,
    MemberChange, PageRequest, Paging, Predicate, Row, Search, Table, Value, When,
};

/// Ids one search reads one by one (a filter on ids, or on values the sidecar keeps).
const MAX_KEYS: usize = 200;
/// Resources read to keep exact matches of a fuzzy search, when no `scan_limit` is set.
const DEFAULT_BOUND: u64 = 1000;

/// A mapped field.
#[derive(Clone, Debug)]
pub struct Field {
    /// The map key.
    pub name: String,
    /// The JSON path in the resource object.
    pub path: Vec<String>,
    /// Its type.
    pub ty: FieldType,
    /// Values are unique among the resources (the mapping says so; the app is expected to
    /// refuse a duplicate, answered as `duplicate` says).
    pub unique: bool,
}

/// A value the sidecar writes by itself (`[resource.X.set]`).
#[derive(Clone, Debug)]
pub struct Constant {
    /// The JSON path.
    pub path: Vec<String>,
    /// The value.
    pub value: ConstValue,
    /// When.
    pub on: When,
}

/// One resource type of a REST store.
pub struct RestTable {
    client: Arc<Client>,
    rt: String,
    res: RestResource,
    fields: Vec<Field>,
    constants: Vec<Constant>,
    members: Option<Arc<RestMembers>>,
    /// The memberships of groups listing this resource, left on a soft delete.
    groups: Vec<Arc<RestMembers>>,
    filters: Vec<(usize, FilterRule)>,
    rules: StatusRules,
    create_body: BodyT,
    update_body: BodyT,
}

/// A resource as read, with the `ETag` of the read.
struct Read {
    row: Row,
    etag: Option<HeaderValue>,
}

impl RestTable {
    /// A table; templates are resolved already.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Arc<Client>,
        rt: String,
        res: RestResource,
        fields: Vec<Field>,
        constants: Vec<Constant>,
        members: Option<RestMembers>,
        filters: Vec<(usize, FilterRule)>,
        rules: StatusRules,
    ) -> RestTable {
        let nf = fields.len();
        let default = BodyT::default_for(
            &res.wrap,
            &fields
                .iter()
                .enumerate()
                .map(|(i, f)| (i, f.path.clone()))
                .chain(
                    constants
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (nf + i, c.path.clone())),
                )
                .collect::<Vec<_>>(),
        );
        RestTable {
            create_body: res.create.body.clone().unwrap_or_else(|| default.clone()),
            update_body: res.update.body.clone().unwrap_or(default),
            client,
            rt,
            res,
            fields,
            constants,
            members: members.map(Arc::new),
            groups: Vec::new(),
            filters,
            rules,
        }
    }

    /// Leaves groups of these memberships on a soft delete (`member_of`).
    pub fn leaving(mut self, groups: Vec<RestMembers>) -> RestTable {
        self.groups = groups.into_iter().map(Arc::new).collect();
        self
    }

    /// Removes resource `key` from every group a read of it lists (`member_of`).
    async fn leave_groups(&self, key: &str) -> Result<(), BackendError> {
        let Some(mo) = &self.res.member_of else {
            return Ok(());
        };
        if self.groups.is_empty() {
            return Ok(());
        }
        let vars = Vars {
            fields: &[],
            id: Some(key),
            member: None,
        };
        let extra: Vec<(String, String)> = mo
            .query
            .iter()
            .map(|(k, p)| (k.clone(), render_text(p, &vars)))
            .collect();
        let reply = self
            .send(
                &self.res.get,
                &self.no_vars(None),
                &extra,
                Some(key),
                None,
                "read",
            )
            .await?;
        let doc = Doc::parse(&reply.body).unwrap_or(Doc::Null);
        let gids: Vec<String> = self
            .single(&doc)
            .and_then(|o| o.at(&mo.read))
            .and_then(Doc::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|g| {
                        if g.is_object() {
                            g.at(&mo.id).and_then(id_text)
                        } else {
                            id_text(g)
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        for g in &self.groups {
            for gid in &gids {
                for (_, r) in self.each_member(g, &g.remove, gid, &[key.to_owned()]).await {
                    let reply = r?;
                    let tolerated = [&g.remove.absent, &g.remove.missing]
                        .iter()
                        .any(|t| t.as_ref().is_some_and(|t| t.matches(&reply)));
                    if !reply.status.is_success() && !tolerated && reply.status.as_u16() != 404 {
                        return Err(status_error(
                            &format!("{} leaving group {gid}", self.rt),
                            &reply,
                            &self.rules,
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// What the store says of each field.
    pub fn infos(&self) -> Vec<FieldInfo> {
        self.fields
            .iter()
            .map(|f| FieldInfo {
                unique: f.unique,
                ..super::info(&f.ty)
            })
            .collect()
    }

    /// Lists one resource: the credentials work and the list is where `items` says.
    pub async fn probe(&self) -> Result<(), BackendError> {
        let start = if self.res.paging.style.by_cursor() {
            Pos::Cursor(None)
        } else {
            Pos::Index(0)
        };
        self.list_page(&[], start, 1).await.map(|_| ())
    }

    fn no_vars(&self, _id: Option<&str>) -> Vec<Option<Value>> {
        vec![None; self.fields.len() + self.constants.len()]
    }

    /// Sends `op` rendered from `values` and `id`/`member`, with extra query parameters and
    /// a body. Any answer is `Ok`; non-2xx ones are the caller's to map.
    #[allow(clippy::too_many_arguments)]
    async fn request(
        &self,
        op: &Op,
        values: &[Option<Value>],
        id: Option<&str>,
        member: Option<&str>,
        extra: &[(String, String)],
        body: Option<Json>,
        if_match: Option<&HeaderValue>,
    ) -> Result<Reply, BackendError> {
        let vars = Vars {
            fields: values,
            id,
            member,
        };
        let path = op.path.render(&vars).map_err(|e| {
            BackendError::Internal(format!("{} {}: {e}", op.method, op.path.text()))
        })?;
        let path = with_query(path, op, &vars, extra);
        let mut headers: Vec<(HeaderName, HeaderValue)> = op.headers.clone();
        if let Some(e) = if_match {
            headers.push((http::header::IF_MATCH, e.clone()));
        }
        self.client
            .send(&Req {
                method: op.method.clone(),
                path,
                headers,
                body,
                form: None,
            })
            .await
    }

    /// [`RestTable::request`] without a member, answering non-2xx with the status mapping.
    async fn send(
        &self,
        op: &Op,
        values: &[Option<Value>],
        extra: &[(String, String)],
        id: Option<&str>,
        body: Option<Json>,
        what: &str,
    ) -> Result<Reply, BackendError> {
        let reply = self
            .request(op, values, id, None, extra, body, None)
            .await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(self.blame(status_error(
                &format!("{} {what}", self.rt),
                &reply,
                &self.rules,
            )))
        }
    }

    /// A uniqueness clash the app reported, attributed to the unique field its message names
    /// (`Login has already been taken` → the field at `login`), or to the only unique field.
    fn blame(&self, e: BackendError) -> BackendError {
        let BackendError::Conflict {
            field: None,
            detail,
        } = e
        else {
            return e;
        };
        let text = detail.to_lowercase();
        let unique: Vec<usize> = (0..self.fields.len())
            .filter(|&i| self.fields[i].unique)
            .collect();
        let named = unique.iter().copied().find(|&i| {
            let f = &self.fields[i];
            f.path
                .last()
                .is_some_and(|p| text.contains(&p.to_lowercase()))
        });
        let field = named.or(match unique.as_slice() {
            [only] => Some(*only),
            _ => None,
        });
        BackendError::Conflict { field, detail }
    }

    /// The row of a resource object.
    fn row_of(&self, obj: &Doc<'_>, members: bool) -> Result<Row, BackendError> {
        let key = obj.at(&self.res.id).and_then(id_text).ok_or_else(|| {
            BackendError::Internal(format!(
                "a {} from the API has no id at '{}'",
                self.rt,
                self.res.id.join(".")
            ))
        })?;
        let values = self
            .fields
            .iter()
            .map(|f| obj.at(&f.path).map_or(Value::Null, |j| value_of(j, &f.ty)))
            .collect();
        let members = match (&self.members, members) {
            (Some(m), true) => Some(
                obj.at(&m.read)
                    .and_then(Doc::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|item| {
                                if item.is_object() {
                                    item.at(&m.id).and_then(id_text)
                                } else {
                                    id_text(item)
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        Ok(Row {
            key,
            values,
            members,
        })
    }

    /// The resource in a single answer (under `wrap`).
    fn single<'j, 'a>(&self, doc: &'j Doc<'a>) -> Option<&'j Doc<'a>> {
        doc.at(&self.res.wrap).filter(|j| j.is_object())
    }

    /// Reads one resource; `None` when the app answers 404.
    async fn read(&self, key: &str, members: bool) -> Result<Option<Read>, BackendError> {
        let extra: Vec<(String, String)> = match (&self.members, members) {
            (Some(m), true) => {
                let vars = Vars {
                    fields: &[],
                    id: Some(key),
                    member: None,
                };
                m.query
                    .iter()
                    .map(|(k, p)| (k.clone(), render_text(p, &vars)))
                    .collect()
            }
            _ => Vec::new(),
        };
        let reply = self
            .request(
                &self.res.get,
                &self.no_vars(None),
                Some(key),
                None,
                &extra,
                None,
                None,
            )
            .await?;
        if reply.status.as_u16() == 404 || reply.status.as_u16() == 410 {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(status_error(
                &format!("{} read", self.rt),
                &reply,
                &self.rules,
            ));
        }
        let doc = Doc::parse(&reply.body).unwrap_or(Doc::Null);
        let obj = self.single(&doc).ok_or_else(|| {
            BackendError::Internal(format!(
                "the API's answer for a {} holds no object at '{}' (the resource's wrap)",
                self.rt,
                self.res.wrap.join(".")
            ))
        })?;
        let row = self.row_of(obj, members)?;
        Ok(Some(Read {
            row,
            etag: reply.headers.get(http::header::ETAG).cloned(),
        }))
    }

    /// Values for a template: `given` fields (the rest `None`), and the constants written
    /// `on` these occasions.
    fn vars_with(&self, given: Vec<Option<Value>>, on: &[When]) -> Vec<Option<Value>> {
        let mut out = given;
        out.resize(self.fields.len(), None);
        for c in &self.constants {
            out.push(on.contains(&c.on).then(|| match &c.value {
                ConstValue::Value(v) => v.clone(),
                ConstValue::Now => crate::backend::now(&FieldType::Text { max_len: None }),
            }));
        }
        out
    }

    /// One page of the list starting at row `start` (a multiple of `size` for page
    /// numbers), or at a cursor: its rows, the total if the API says it, and the next
    /// cursor (cursor and next-link styles).
    async fn list_page(
        &self,
        params: &[(String, String)],
        start: Pos<'_>,
        size: u64,
    ) -> Result<(Vec<Row>, Option<u64>, Option<String>), BackendError> {
        let p = &self.res.paging;
        let mut q = params.to_vec();
        let mut follow = None;
        match (&p.style, start) {
            (Style::Page, Pos::Index(i)) => {
                q.push((p.page.clone(), (p.first + i / size.max(1)).to_string()))
            }
            (Style::Offset, Pos::Index(i)) => q.push((p.page.clone(), i.to_string())),
            (Style::Cursor, Pos::Cursor(Some(c))) => q.push((p.page.clone(), c.to_owned())),
            (Style::Next, Pos::Cursor(Some(link))) => follow = Some(self.client.relative(link)),
            _ => {}
        }
        q.push((p.size.clone(), size.to_string()));
        let reply = match follow {
            None => {
                self.send(&self.res.list, &self.no_vars(None), &q, None, None, "list")
                    .await?
            }
            Some(path) => {
                // The app's own link carries its query: sent as it is.
                let r = self
                    .client
                    .send(&Req {
                        method: http::Method::GET,
                        path,
                        headers: self.res.list.headers.clone(),
                        body: None,
                        form: None,
                    })
                    .await?;
                if !r.status.is_success() {
                    return Err(status_error(&format!("{} list", self.rt), &r, &self.rules));
                }
                r
            }
        };
        let doc = Doc::parse(&reply.body).unwrap_or(Doc::Null);
        let items = doc
            .at(&self.res.items)
            .and_then(Doc::as_array)
            .ok_or_else(|| {
                BackendError::Internal(format!(
                    "the list answer holds no array at '{}'",
                    self.res.items.join(".")
                ))
            })?;
        let rows = items
            .iter()
            .map(|o| self.row_of(o, false))
            .collect::<Result<Vec<_>, _>>()?;
        let total = p
            .total
            .as_ref()
            .and_then(|t| doc.at(t))
            .and_then(Doc::as_u64);
        let next = match (&p.style, &p.next) {
            (Style::Cursor | Style::Next, Some(path)) => doc.at(path).and_then(id_text),
            (Style::Next, None) => reply
                .headers
                .get_all(http::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link),
            _ => None,
        }
        .filter(|_| !rows.is_empty());
        Ok((rows, total, next))
    }

    /// Every row the list gives for `params`, reading at most `bound` (more: `TooLarge`).
    async fn list_all(
        &self,
        params: &[(String, String)],
        bound: u64,
    ) -> Result<Vec<Row>, BackendError> {
        let size = self.res.paging.max;
        let by_cursor = self.res.paging.style.by_cursor();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let pos = if by_cursor {
                Pos::Cursor(cursor.as_deref())
            } else {
                Pos::Index(out.len() as u64)
            };
            let (rows, total, next) = self.list_page(params, pos, size).await?;
            let n = rows.len() as u64;
            out.extend(rows);
            if out.len() as u64 > bound || total.is_some_and(|t| t > bound) {
                return Err(BackendError::TooLarge {
                    members: false,
                    detail: format!(
                        "more than {bound} {}s would have to be read to answer this filter; narrow it (the resource's scan_limit)",
                        self.rt
                    ),
                });
            }
            let done = if by_cursor {
                next.is_none()
            } else {
                n < size || total.is_some_and(|t| out.len() as u64 >= t)
            };
            if done || n == 0 {
                break;
            }
            cursor = next;
        }
        Ok(out)
    }

    /// One page of a cursor-paged API in its own order: at most one API page.
    async fn list_after(
        &self,
        params: &[(String, String)],
        after: Option<&str>,
        limit: u64,
    ) -> Result<Found, BackendError> {
        let size = limit.clamp(1, self.res.paging.max);
        let (rows, total, next) = self.list_page(params, Pos::Cursor(after), size).await?;
        Ok(Found { total, rows, next })
    }

    /// Reads one page of the API's own order (no condition the sidecar checks).
    async fn list_range(
        &self,
        params: &[(String, String)],
        offset: u64,
        limit: u64,
    ) -> Result<Found, BackendError> {
        let max = self.res.paging.max;
        let size = if limit > 0 && limit <= max && offset % limit == 0 {
            limit
        } else {
            max
        };
        let mut page = offset / size;
        let mut skip = offset % size;
        let mut rows = Vec::new();
        let mut total = None;
        loop {
            let (got, t, _) = self
                .list_page(
                    params,
                    Pos::Index(page * size),
                    if limit == 0 { 1 } else { size },
                )
                .await?;
            total = total.or(t);
            let n = got.len() as u64;
            if limit == 0 {
                break;
            }
            rows.extend(
                got.into_iter()
                    .skip(usize::try_from(skip).unwrap_or(usize::MAX)),
            );
            skip = 0;
            if rows.len() as u64 >= limit
                || n < size
                || total.is_some_and(|t| (page + 1) * size >= t)
            {
                if total.is_none() && n < size {
                    total = Some(page * size + n);
                }
                break;
            }
            page += 1;
        }
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(Found {
            total,
            rows,
            next: None,
        })
    }

    /// Splits a predicate into query parameters and what the sidecar checks itself.
    fn plan(&self, p: &Predicate) -> Result<Plan, BackendError> {
        let mut plan = Plan::default();
        let mut conj: Vec<&Predicate> = Vec::new();
        flatten(p, &mut conj);
        // A value path (`emails[type eq "work"].value eq "x"`) arrives as "present and
        // equal": the presence is implied by the equality the API answers.
        let compared: Vec<usize> = conj
            .iter()
            .filter_map(|c| match c {
                Predicate::Cmp {
                    field,
                    op: CmpOp::Eq,
                    ..
                } => Some(*field),
                _ => None,
            })
            .collect();
        for c in conj {
            match c {
                Predicate::Present(f) if compared.contains(f) => plan.residual.push(c.clone()),
                Predicate::Cmp {
                    field,
                    op: CmpOp::Eq,
                    value,
                    fold_case,
                } => {
                    let rule = self
                        .filters
                        .iter()
                        .find(|(i, _)| i == field)
                        .map(|(_, r)| r);
                    match rule {
                        Some(r) if !plan.params.iter().any(|(k, _)| *k == r.param) => {
                            plan.params.push((r.param.clone(), text_of(value)));
                            // A fuzzy API (or a case-sensitive text comparison the API may
                            // not make) is checked again on what it returns; numbers and
                            // booleans are taken as the API answers them.
                            if r.fuzzy || (!fold_case && matches!(value, Value::Text(_))) {
                                plan.residual.push(c.clone());
                            }
                        }
                        _ => plan.unsupported(c.clone(), Some(*field)),
                    }
                }
                Predicate::KeyEq(k) => plan.keys(vec![k.clone()]),
                Predicate::KeyIn(ks) => plan.keys(ks.clone()),
                Predicate::Not(inner)
                    if matches!(**inner, Predicate::KeyEq(_) | Predicate::KeyIn(_)) =>
                {
                    plan.residual.push(c.clone())
                }
                Predicate::True => {}
                other => {
                    if has_member(other) {
                        // Answerable only on groups read by id, with their members.
                        plan.members = true;
                    }
                    plan.unsupported(other.clone(), first_field(other));
                }
            }
        }
        if plan.members && plan.keys.is_none() && self.res.scan_limit.is_none() {
            return Err(BackendError::Unsupported {
                field: None,
                detail: "the API cannot be asked which groups have a member: filter by id too, as Entra ID does, or allow a bounded scan with scan_limit".into(),
            });
        }
        if plan.keys.is_some() {
            // Resources read by id: the sidecar checks every condition on them.
            plan.scan.clear();
        }
        if let Some((field, _)) = plan.scan.first() {
            if self.res.scan_limit.is_none() {
                let name = field
                    .and_then(|i| self.fields.get(i))
                    .map(|f| f.name.clone());
                return Err(BackendError::Unsupported {
                    field: *field,
                    detail: match name {
                        Some(n) => format!(
                            "the API has no query parameter for {n} with this operator; map it with filter = {{ {n} = {{ param = \"…\" }} }}, or allow a bounded scan with scan_limit"
                        ),
                        None => "the API cannot answer this filter; allow a bounded scan with scan_limit".into(),
                    },
                });
            }
        }
        Ok(plan)
    }

    /// Members `ids` added to group `key`, a few at once; the added ones are removed again
    /// when one fails. `Ok` holds the ids that were not members before.
    async fn add_members(&self, key: &str, ids: &[String]) -> Result<Vec<String>, BackendError> {
        let Some(m) = self.members.clone() else {
            return Err(BackendError::Internal(format!(
                "{} has no members",
                self.rt
            )));
        };
        let results = self.each_member(&m, &m.add, key, ids).await;
        let mut added = Vec::new();
        let mut missing = Vec::new();
        let mut failure = None;
        for (id, r) in results {
            match r {
                Ok(reply) if reply.status.is_success() => added.push(id),
                Ok(reply) if m.add.exists.as_ref().is_some_and(|t| t.matches(&reply)) => {}
                Ok(reply) if m.add.missing.as_ref().is_some_and(|t| t.matches(&reply)) => {
                    missing.push(id)
                }
                Ok(reply) => {
                    failure.get_or_insert(status_error(
                        &format!("{} member add", self.rt),
                        &reply,
                        &self.rules,
                    ));
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if missing.is_empty() && failure.is_none() {
            return Ok(added);
        }
        // No transaction: undo what this change did.
        if !added.is_empty() {
            if let Err(e) = self.remove_members(key, &added).await {
                tracing::warn!(resource_type = %self.rt, error = %e, "members added before a failed member add could not be removed again");
            }
        }
        if !missing.is_empty() {
            missing.sort();
            return Err(crate::backend::missing_members(&missing));
        }
        Err(failure.unwrap_or_else(|| BackendError::Internal("member add failed".into())))
    }

    /// Members `ids` removed from group `key`, a few at once; the removed ones are added
    /// again when one fails. `Ok` holds the ids that were members before.
    async fn remove_members(&self, key: &str, ids: &[String]) -> Result<Vec<String>, BackendError> {
        let Some(m) = self.members.clone() else {
            return Err(BackendError::Internal(format!(
                "{} has no members",
                self.rt
            )));
        };
        let mut removed = Vec::new();
        let mut failure = None;
        for (id, r) in self.each_member(&m, &m.remove, key, ids).await {
            match r {
                Ok(reply) if reply.status.is_success() => removed.push(id),
                Ok(reply)
                    if [&m.remove.absent, &m.remove.missing]
                        .iter()
                        .any(|t| t.as_ref().is_some_and(|t| t.matches(&reply))) => {}
                Ok(reply) => {
                    failure.get_or_insert(status_error(
                        &format!("{} member remove", self.rt),
                        &reply,
                        &self.rules,
                    ));
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let Some(e) = failure else {
            return Ok(removed);
        };
        // No transaction: undo what this change did.
        if !removed.is_empty() && Box::pin(self.add_members(key, &removed)).await.is_err() {
            tracing::error!(resource_type = %self.rt, group = %key, "members removed before a failed member remove could not be added again");
            crate::metrics::partial_write("rest", "undo_members");
        }
        Err(e)
    }

    /// Sends `op` once per member id, at most `concurrency` at once.
    async fn each_member(
        &self,
        m: &RestMembers,
        op: &MemberOp,
        key: &str,
        ids: &[String],
    ) -> Vec<(String, Result<Reply, BackendError>)> {
        let gate = Arc::new(Semaphore::new(m.concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for id in ids {
            let gate = gate.clone();
            let client = self.client.clone();
            let op = op.op.clone();
            let (key, id) = (key.to_owned(), id.clone());
            let nf = self.fields.len() + self.constants.len();
            set.spawn(async move {
                let _permit = gate.acquire().await;
                let values = vec![None; nf];
                let vars = Vars {
                    fields: &values,
                    id: Some(&key),
                    member: Some(&id),
                };
                let r = async {
                    let path = op.path.render(&vars).map_err(BackendError::Internal)?;
                    client
                        .send(&Req {
                            method: op.method.clone(),
                            path: with_query(path, &op, &vars, &[]),
                            headers: op.headers.clone(),
                            body: op.body.as_ref().map(|b| b.render(&vars)),
                            form: None,
                        })
                        .await
                }
                .await;
                (id, r)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(x) => out.push(x),
                Err(e) => out.push((
                    String::new(),
                    Err(BackendError::Internal(format!("member request task: {e}"))),
                )),
            }
        }
        out
    }

    /// Applies member changes in order, all or none: when one fails, the ones before it are
    /// undone (the API has no transaction), so a refused PATCH leaves the group as it was.
    async fn change_members(
        &self,
        key: &str,
        changes: &[MemberChange],
    ) -> Result<(), BackendError> {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let result = self
            .apply_members(key, changes, &mut added, &mut removed)
            .await;
        if result.is_err() {
            let undone_adds = added.is_empty() || self.remove_members(key, &added).await.is_ok();
            let undone_removes =
                removed.is_empty() || self.add_members(key, &removed).await.is_ok();
            if !(undone_adds && undone_removes) {
                tracing::error!(resource_type = %self.rt, group = %key, "a failed membership change could not be undone; the group holds part of it");
                crate::metrics::partial_write("rest", "undo_members");
            }
        }
        result
    }

    /// [`Self::change_members`]'s steps, noting what each did in `added` and `removed`.
    async fn apply_members(
        &self,
        key: &str,
        changes: &[MemberChange],
        added: &mut Vec<String>,
        removed: &mut Vec<String>,
    ) -> Result<(), BackendError> {
        for c in changes {
            match c {
                MemberChange::Add(ids) => added.extend(self.add_members(key, ids).await?),
                MemberChange::Remove(ids) => removed.extend(self.remove_members(key, ids).await?),
                MemberChange::Clear | MemberChange::Replace(_) => {
                    let now = self
                        .read(key, true)
                        .await?
                        .ok_or(BackendError::NotFound)?
                        .row
                        .members
                        .unwrap_or_default();
                    let want: &[String] = match c {
                        MemberChange::Replace(ids) => ids,
                        _ => &[],
                    };
                    let gone: Vec<String> =
                        now.iter().filter(|m| !want.contains(m)).cloned().collect();
                    let new: Vec<String> =
                        want.iter().filter(|m| !now.contains(m)).cloned().collect();
                    added.extend(self.add_members(key, &new).await?);
                    removed.extend(self.remove_members(key, &gone).await?);
                }
            }
        }
        Ok(())
    }

    /// The resource a create answered with: its body, or what its `Location` points at.
    async fn created(&self, reply: &Reply) -> Result<Row, BackendError> {
        if let Some(doc) = Doc::parse(&reply.body) {
            if let Some(obj) = self.single(&doc) {
                return self.row_of(obj, false);
            }
        }
        let loc = reply
            .headers
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| {
                BackendError::Internal(format!(
                    "the create answer for a {} has neither the resource nor a Location",
                    self.rt
                ))
            })?;
        let path = self.client.relative(loc);
        let again = self
            .client
            .send(&Req {
                method: http::Method::GET,
                path,
                headers: Vec::new(),
                body: None,
                form: None,
            })
            .await?;
        if !again.status.is_success() {
            return Err(status_error(
                &format!("{} read", self.rt),
                &again,
                &self.rules,
            ));
        }
        let doc = Doc::parse(&again.body).unwrap_or(Doc::Null);
        let obj = self.single(&doc).ok_or_else(|| {
            BackendError::Internal(format!("the created {} could not be read back", self.rt))
        })?;
        self.row_of(obj, false)
    }

    /// Writes `set` (and the constants written `on`) to resource `key` read as `current`.
    async fn write(
        &self,
        key: &str,
        current: &Read,
        set: &[(usize, Value)],
        on: &[When],
    ) -> Result<Row, BackendError> {
        let mut given: Vec<Option<Value>> = if self.res.update_all {
            current.row.values.iter().cloned().map(Some).collect()
        } else {
            vec![None; self.fields.len()]
        };
        for (i, v) in set {
            if let Some(slot) = given.get_mut(*i) {
                *slot = Some(v.clone());
            }
        }
        let vars = self.vars_with(given, on);
        let body = self.update_body.render(&Vars {
            fields: &vars,
            id: Some(key),
            member: None,
        });
        let etag = current.etag.as_ref().filter(|_| self.res.etag);
        let reply = self
            .request(
                &self.res.update,
                &vars,
                Some(key),
                None,
                &[],
                Some(body),
                etag,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(self.blame(status_error(
                &format!("{} update", self.rt),
                &reply,
                &self.rules,
            )));
        }
        if let Some(doc) = Doc::parse(&reply.body) {
            if let Some(obj) = self.single(&doc) {
                return self.row_of(obj, false);
            }
        }
        // 204 (Redmine): the row is what was read with the change applied.
        let mut row = current.row.clone();
        for (i, v) in set {
            if let Some(slot) = row.values.get_mut(*i) {
                *slot = v.clone();
            }
        }
        Ok(row)
    }

    /// Reads rows by id (a filter on ids), each once.
    async fn by_keys(&self, keys: &[String], members: bool) -> Result<Vec<Row>, BackendError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            if seen.insert(k) {
                if let Some(r) = self.read(k, members).await? {
                    out.push(r.row);
                }
            }
        }
        Ok(out)
    }
}

/// Where a list page starts.
#[derive(Clone, Copy)]
enum Pos<'a> {
    /// At this row (page and offset styles).
    Index(u64),
    /// After this cursor, or at the start (cursor and next-link styles).
    Cursor(Option<&'a str>),
}

/// The `rel="next"` target of a `Link` header (RFC 8288).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=next" || p == "rel=\"next\""
            })
            .then(|| target.to_owned())
    })
}

/// Query parameters, and what the sidecar checks on what the API returns.
#[derive(Default)]
struct Plan {
    params: Vec<(String, String)>,
    residual: Vec<Predicate>,
    /// Conditions the API cannot answer (and the field of the first): a scan.
    scan: Vec<(Option<usize>, Predicate)>,
    keys: Option<Vec<String>>,
    /// A condition on members: the rows are read with them.
    members: bool,
}

impl Plan {
    fn unsupported(&mut self, p: Predicate, field: Option<usize>) {
        self.scan.push((field, p.clone()));
        self.residual.push(p);
    }

    fn keys(&mut self, ks: Vec<String>) {
        self.keys = Some(match self.keys.take() {
            None => ks,
            Some(prev) => prev.into_iter().filter(|k| ks.contains(k)).collect(),
        });
    }
}

fn flatten<'p>(p: &'p Predicate, out: &mut Vec<&'p Predicate>) {
    match p {
        Predicate::And(ps) => ps.iter().for_each(|q| flatten(q, out)),
        other => out.push(other),
    }
}

fn has_member(p: &Predicate) -> bool {
    match p {
        Predicate::HasMember(_) => true,
        Predicate::And(ps) | Predicate::Or(ps) => ps.iter().any(has_member),
        Predicate::Not(q) => has_member(q),
        _ => false,
    }
}

fn first_field(p: &Predicate) -> Option<usize> {
    match p {
        Predicate::Cmp { field, .. } | Predicate::Present(field) => Some(*field),
        Predicate::And(ps) | Predicate::Or(ps) => ps.iter().find_map(first_field),
        Predicate::Not(q) => first_field(q),
        _ => None,
    }
}

/// `path` with `op`'s query parameters and `extra`, form-encoded.
fn with_query(path: String, op: &Op, vars: &Vars<'_>, extra: &[(String, String)]) -> String {
    if op.query.is_empty() && extra.is_empty() {
        return path;
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, parts) in &op.query {
        q.append_pair(k, &render_text(parts, vars));
    }
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    format!("{path}?{}", q.finish())
}

/// Text with placeholders rendered as text (a query value).
fn render_text(parts: &[Part], vars: &Vars<'_>) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Slot(s) => {
                let v = match s.to {
                    Some(template::Ref::Id) => vars.id.map(str::to_owned),
                    Some(template::Ref::Member) => vars.member.map(str::to_owned),
                    Some(template::Ref::Field(i)) => {
                        vars.fields.get(i).cloned().flatten().map(|v| text_of(&v))
                    }
                    None => None,
                };
                out.push_str(&v.unwrap_or_default());
            }
        }
    }
    out
}

/// An id as text: strings as they are, numbers in decimal.
fn id_text(j: &Doc<'_>) -> Option<String> {
    match j {
        Doc::String(s) if !s.is_empty() => Some(s.to_string()),
        Doc::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON value as a field of type `ty` holds it.
pub fn value_of(j: &Doc<'_>, ty: &FieldType) -> Value {
    match (j, ty) {
        (Doc::Null, _) => Value::Null,
        (Doc::Array(a), _) => Value::List(
            a.iter()
                .map(|x| value_of(x, ty))
                .filter(|v| !v.is_null())
                .collect(),
        ),
        (Doc::Number(n), FieldType::Integer) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Real(n.as_f64().unwrap_or_default())),
        (Doc::Number(n), FieldType::Real) => Value::Real(n.as_f64().unwrap_or_default()),
        (Doc::String(s), FieldType::Integer) => s
            .trim()
            .parse()
            .map_or_else(|_| Value::Text(s.to_string()), Value::Int),
        (Doc::String(s), FieldType::Real) => s
            .trim()
            .parse()
            .map_or_else(|_| Value::Text(s.to_string()), Value::Real),
        (Doc::Bool(b), FieldType::Boolean) => Value::Bool(*b),
        (Doc::String(s), FieldType::Boolean) => match s.as_ref() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => Value::Text(s.to_string()),
        },
        (Doc::Number(n), FieldType::Boolean) => Value::Bool(n.as_i64() != Some(0)),
        (Doc::Bool(b), FieldType::Integer) => Value::Int(i64::from(*b)),
        (Doc::String(s), _) => Value::Text(s.to_string()),
        (Doc::Number(n), _) => Value::Text(n.to_string()),
        (Doc::Bool(b), _) => Value::Text(b.to_string()),
        (Doc::Object(_), _) => Value::Text(j.to_json().to_string()),
    }
}

fn compare(a: &Value, b: &Value, fold: bool) -> Option<Ordering> {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => Some(if fold {
            x.to_lowercase().cmp(&y.to_lowercase())
        } else {
            x.cmp(y)
        }),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Real(y)) => (*x as f64).partial_cmp(y),
        (Value::Real(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Text(y)) => y.trim().parse::<i64>().ok().map(|y| x.cmp(&y)),
        (Value::Text(x), Value::Int(y)) => x.trim().parse::<i64>().ok().map(|x| x.cmp(y)),
        _ => None,
    }
}

fn text_match(v: &Value, op: CmpOp, rhs: &Value, fold: bool) -> bool {
    let (Value::Text(a), Value::Text(b)) = (v, rhs) else {
        return false;
    };
    let (a, b) = if fold {
        (a.to_lowercase(), b.to_lowercase())
    } else {
        (a.clone(), b.clone())
    };
    match op {
        CmpOp::Contains => a.contains(&b),
        CmpOp::StartsWith => a.starts_with(&b),
        CmpOp::EndsWith => a.ends_with(&b),
        _ => false,
    }
}

/// Whether `row` meets `p` (SCIM semantics: a field without a value equals nothing).
pub fn holds(p: &Predicate, row: &Row) -> bool {
    match p {
        Predicate::True => true,
        Predicate::False => false,
        Predicate::And(ps) => ps.iter().all(|q| holds(q, row)),
        Predicate::Or(ps) => ps.iter().any(|q| holds(q, row)),
        Predicate::Not(q) => !holds(q, row),
        Predicate::KeyEq(k) => row.key == *k,
        Predicate::KeyIn(ks) => ks.contains(&row.key),
        Predicate::HasMember(m) => match (&row.members, m) {
            (Some(ms), Some(m)) => ms.contains(m),
            (Some(ms), None) => !ms.is_empty(),
            (None, _) => false,
        },
        Predicate::Present(i) => row.values.get(*i).is_some_and(|v| match v {
            Value::Text(t) => !t.is_empty(),
            other => !other.is_null(),
        }),
        Predicate::Cmp {
            field,
            op,
            value,
            fold_case,
        } => {
            let v = row.values.get(*field).unwrap_or(&Value::Null);
            let one = |x: &Value| -> bool {
                match op {
                    CmpOp::Eq => compare(x, value, *fold_case) == Some(Ordering::Equal),
                    CmpOp::Ne => compare(x, value, *fold_case) != Some(Ordering::Equal),
                    CmpOp::Gt => compare(x, value, *fold_case) == Some(Ordering::Greater),
                    CmpOp::Ge => matches!(
                        compare(x, value, *fold_case),
                        Some(Ordering::Greater | Ordering::Equal)
                    ),
                    CmpOp::Lt => compare(x, value, *fold_case) == Some(Ordering::Less),
                    CmpOp::Le => matches!(
                        compare(x, value, *fold_case),
                        Some(Ordering::Less | Ordering::Equal)
                    ),
                    CmpOp::Contains | CmpOp::StartsWith | CmpOp::EndsWith => {
                        text_match(x, *op, value, *fold_case)
                    }
                }
            };
            match v {
                Value::Null => *op == CmpOp::Ne,
                Value::List(l) if *op == CmpOp::Ne => l.iter().all(one),
                Value::List(l) => l.iter().any(one),
                x => one(x),
            }
        }
    }
}

#[async_trait]
impl Table for RestTable {
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        let given = values
            .into_iter()
            .map(|v| (!v.is_null()).then_some(v))
            .collect();
        let vars = self.vars_with(given, &[When::Insert, When::Always]);
        let body = self.create_body.render(&Vars {
            fields: &vars,
            id: None,
            member: None,
        });
        let reply = self
            .send(&self.res.create, &vars, &[], None, Some(body), "create")
            .await?;
        let mut row = self.created(&reply).await?;
        if !members.is_empty() {
            if let Err(e) = self.add_members(&row.key, &members).await {
                // Atomic or absent: the resource goes again.
                let undo = self
                    .send(
                        &self.res.delete,
                        &self.no_vars(None),
                        &[],
                        Some(&row.key),
                        None,
                        "delete",
                    )
                    .await;
                if let Err(u) = undo {
                    tracing::warn!(resource_type = %self.rt, id = %row.key, error = %u, "a create whose members failed could not be undone");
                }
                return Err(e);
            }
        }
        if load_members && self.members.is_some() {
            row.members = Some(members);
        }
        Ok(row)
    }

    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError> {
        Ok(self.read(key, members).await?.map(|r| r.row))
    }

    async fn present(&self, keys: &[String]) -> Result<Vec<String>, BackendError> {
        // One read each (an API has no "which of these exist" request); soft-deleted
        // resources are still there for the app, so they are present.
        let mut out = Vec::new();
        for k in keys {
            if self.read(k, false).await?.is_some() {
                out.push(k.clone());
            }
        }
        Ok(out)
    }

    fn paging(&self) -> Paging {
        if self.res.paging.style.by_cursor() {
            Paging::Cursor
        } else {
            Paging::Offset
        }
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        if search.predicate == Predicate::False {
            return Ok(Found {
                total: Some(0),
                rows: Vec::new(),
                next: None,
            });
        }
        let plan = self.plan(&search.predicate)?;
        let (offset, limit) = search.page.offset_limit();
        let in_api_order = search.sort.field.is_none() && !search.sort.descending;
        let by_cursor = self.res.paging.style.by_cursor();
        let mut found = if plan.keys.is_none() && plan.residual.is_empty() && in_api_order {
            match &search.page {
                PageRequest::Cursor { after, limit } if by_cursor => {
                    self.list_after(&plan.params, after.as_deref(), *limit)
                        .await?
                }
                _ => self.list_range(&plan.params, offset, limit).await?,
            }
        } else {
            let mut rows = match &plan.keys {
                Some(ks) if ks.len() > MAX_KEYS => {
                    return Err(BackendError::TooLarge {
                        members: false,
                        detail: format!(
                            "the filter selects more than {MAX_KEYS} {}s by id; narrow it",
                            self.rt
                        ),
                    });
                }
                Some(ks) => self.by_keys(ks, plan.members).await?,
                None => {
                    let bound = self.res.scan_limit.unwrap_or(DEFAULT_BOUND);
                    let rows = self.list_all(&plan.params, bound).await?;
                    if plan.members {
                        // A member condition over a bounded scan: each group read with its
                        // members (lists carry none), at most scan_limit of them.
                        let ids: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
                        self.by_keys(&ids, true).await?
                    } else {
                        rows
                    }
                }
            };
            rows.retain(|r| holds(&search.predicate, r));
            if !search.members {
                // Read only to check a member condition: not shown.
                rows.iter_mut().for_each(|r| r.members = None);
            }
            if let Some(i) = search.sort.field {
                let s = &search.sort;
                rows.sort_by(|a, b| {
                    let (x, y) = (
                        a.values.get(i).map(Value::first).unwrap_or(&Value::Null),
                        b.values.get(i).map(Value::first).unwrap_or(&Value::Null),
                    );
                    let rank = |v: &Value| {
                        if s.ranks.is_empty() {
                            0
                        } else {
                            s.ranks.iter().position(|r| r == v).unwrap_or(s.ranks.len())
                        }
                    };
                    let o = rank(x).cmp(&rank(y)).then_with(|| match (x, y) {
                        (Value::Null, Value::Null) => Ordering::Equal,
                        (Value::Null, _) => Ordering::Greater,
                        (_, Value::Null) => Ordering::Less,
                        _ => compare(x, y, s.fold_case).unwrap_or(Ordering::Equal),
                    });
                    if s.descending { o.reverse() } else { o }
                });
            } else if search.sort.descending {
                rows.reverse();
            }
            let total = rows.len() as u64;
            let rows: Vec<Row> = rows
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .collect();
            // A cursor of rows paged by the sidecar is the offset of the next (see
            // `PageRequest::offset_limit`).
            let end = offset + rows.len() as u64;
            Found {
                total: Some(total),
                next: (by_cursor && !rows.is_empty() && end < total).then(|| end.to_string()),
                rows,
            }
        };
        if search.members && self.members.is_some() {
            // Lists do not carry members: each group of the page is read with them.
            for row in &mut found.rows {
                row.members = Some(
                    self.read(&row.key, true)
                        .await?
                        .and_then(|r| r.row.members)
                        .unwrap_or_default(),
                );
            }
        }
        Ok(found)
    }

    async fn update(
        &self,
        key: &str,
        load_members: bool,
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let current = self.read(key, false).await?.ok_or(BackendError::NotFound)?;
        let change = edit(&current.row)?;
        let always = self.constants.iter().any(|c| c.on == When::Always);
        let mut row = if change.set.is_empty() && !always {
            current.row.clone()
        } else {
            self.write(key, &current, &change.set, &[When::Always])
                .await?
        };
        if !change.members.is_empty() {
            self.change_members(key, &change.members).await?;
        }
        if load_members && self.members.is_some() {
            row.members = self.read(key, true).await?.and_then(|r| r.row.members);
        }
        Ok(row)
    }

    async fn delete(
        &self,
        key: &str,
        mode: DeleteMode,
        check: CheckFn,
    ) -> Result<(), BackendError> {
        let current = self.read(key, false).await?.ok_or(BackendError::NotFound)?;
        check(&current.row)?;
        match mode {
            DeleteMode::Hard => {
                self.send(
                    &self.res.delete,
                    &self.no_vars(None),
                    &[],
                    Some(key),
                    None,
                    "delete",
                )
                .await?;
            }
            DeleteMode::Soft(sets) => {
                self.write(key, &current, &sets, &[When::Delete]).await?;
                // Its memberships go, as a hard delete's would (the app keeps the user).
                self.leave_groups(key).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: Vec<Value>) -> Row {
        Row {
            key: "7".into(),
            values,
            members: None,
        }
    }

    fn cmp(field: usize, op: CmpOp, value: Value, fold_case: bool) -> Predicate {
        Predicate::Cmp {
            field,
            op,
            value,
            fold_case,
        }
    }

    /// The sidecar's own evaluation (fuzzy results, scans) follows SCIM semantics.
    #[test]
    fn predicates_hold_as_scim_says() {
        let r = row(vec![
            Value::Text("Alice".into()),
            Value::Int(1),
            Value::Null,
            Value::List(vec![Value::Text("a@x".into()), Value::Text("b@y".into())]),
        ]);
        let t = Value::Text;
        assert!(holds(&cmp(0, CmpOp::Eq, t("alice".into()), true), &r));
        assert!(!holds(&cmp(0, CmpOp::Eq, t("alice".into()), false), &r));
        assert!(!holds(&cmp(0, CmpOp::Eq, t("alic".into()), true), &r));
        assert!(holds(&cmp(0, CmpOp::StartsWith, t("AL".into()), true), &r));
        assert!(holds(&cmp(1, CmpOp::Eq, Value::Int(1), false), &r));
        assert!(holds(&cmp(1, CmpOp::Eq, t("1".into()), false), &r));
        assert!(holds(&cmp(1, CmpOp::Lt, Value::Int(3), false), &r));
        assert!(holds(&cmp(2, CmpOp::Ne, t("x".into()), false), &r));
        assert!(!holds(&cmp(2, CmpOp::Eq, t("x".into()), false), &r));
        assert!(!holds(&Predicate::Present(2), &r));
        assert!(holds(&cmp(3, CmpOp::EndsWith, t("@y".into()), false), &r));
        assert!(holds(
            &Predicate::And(vec![
                Predicate::KeyEq("7".into()),
                Predicate::Not(Box::new(Predicate::KeyIn(vec!["8".into()])))
            ]),
            &r
        ));
    }

    /// Query values are form-encoded: `&`, `=`, `#`, spaces and non-ASCII cannot add
    /// parameters or end the URL; a `Link` header's next target is found among others.
    #[test]
    fn queries_are_encoded_and_next_links_found() {
        let op = Op {
            method: http::Method::GET,
            path: template::PathT::parse("/users.json").expect("path"),
            query: vec![(
                "include".into(),
                template::parse_parts("groups").expect("parts"),
            )],
            headers: Vec::new(),
            body: None,
            origin: crate::mapping::Origin {
                file: "t".into(),
                line: 1,
            },
        };
        let vars = Vars {
            fields: &[],
            id: None,
            member: None,
        };
        assert_eq!(
            with_query(
                "/users.json".into(),
                &op,
                &vars,
                &[("search".into(), "a&admin=1#x é".into())]
            ),
            "/users.json?include=groups&search=a%26admin%3D1%23x+%C3%A9"
        );
        assert_eq!(
            next_link(r#"<https://x/u?p=1>; rel="prev", <https://x/u?p=3>; rel="next""#),
            Some("https://x/u?p=3".into())
        );
        assert_eq!(next_link(r#"<https://x/u?p=1>; rel="prev""#), None);
    }

    #[test]
    fn json_values_take_the_declared_type() {
        let doc = |text: &'static str| Doc::parse(text.as_bytes()).expect(text);
        let text = FieldType::Text { max_len: None };
        assert_eq!(value_of(&doc("7"), &text), Value::Text("7".into()));
        assert_eq!(value_of(&doc("3"), &FieldType::Integer), Value::Int(3));
        assert_eq!(value_of(&doc(r#""3""#), &FieldType::Integer), Value::Int(3));
        assert_eq!(
            value_of(&doc("true"), &FieldType::Boolean),
            Value::Bool(true)
        );
        assert_eq!(value_of(&doc("null"), &text), Value::Null);
        assert_eq!(
            value_of(&doc(r#"["a", null]"#), &text),
            Value::List(vec![Value::Text("a".into())])
        );
        assert_eq!(id_text(&doc("12")), Some("12".into()));
        assert_eq!(id_text(&doc(r#""""#)), None);
        assert_eq!(
            value_of(&doc(r#"{"b": 1, "a": "x"}"#), &text),
            Value::Text(r#"{"b":1,"a":"x"}"#.into())
        );
    }
}
