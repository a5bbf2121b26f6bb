//! SCIM's index-based paging (RFC 7644 §3.4.2.4: `startIndex`, `count`, `totalResults`) over
//! a store that pages by position or by cursor.
//!
//! - A store that pages by position ([`Paging::Offset`], SQL) gets the page asked for.
//! - A store that pages by cursor ([`Paging::Cursor`]: LDAP paged results, REST APIs with a
//!   `next` link) is read page by page from the first, skipping `startIndex - 1` results:
//!   the cost grows with `startIndex`, never with the size of the whole result.
//!
//! `totalResults` is the store's count when it gives one. When it does not, it is the number
//! of results up to the end of this page, plus one while the store says there are more: a
//! client that pages until `startIndex` passes `totalResults` (as Entra ID and Okta do) reads
//! every page, and the last page's figure is exact. `count=0` asks only for the total: the
//! sidecar then reads every page of such a store to count it.

use crate::backend::{BackendError, PageRequest, Paging, Predicate, Row, Search, Sort, Table};

/// Rows read per store call while skipping to `startIndex` or counting on a cursor store.
const WALK_PAGE: u64 = 500;

/// The `limit` results after the first `offset` (0-based), and `totalResults`.
pub async fn page(
    table: &dyn Table,
    predicate: Predicate,
    sort: Sort,
    offset: u64,
    limit: u64,
    members: bool,
) -> Result<(u64, Vec<Row>), BackendError> {
    let search = |page: PageRequest, members: bool| Search {
        predicate: predicate.clone(),
        sort: sort.clone(),
        page,
        members,
    };
    if table.paging() == Paging::Offset {
        let found = table
            .search(search(PageRequest::Offset { offset, limit }, members))
            .await?;
        let known = offset + found.rows.len() as u64;
        return Ok((found.total.unwrap_or(known), found.rows));
    }
    let mut seen = 0u64;
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let want = if seen < offset {
            (offset - seen).min(WALK_PAGE)
        } else if limit == 0 {
            WALK_PAGE
        } else {
            limit - rows.len() as u64
        };
        let found = table
            .search(search(
                PageRequest::Cursor {
                    after: after.take(),
                    limit: want,
                },
                members && seen >= offset,
            ))
            .await?;
        let empty = found.rows.is_empty();
        for r in found.rows {
            if seen >= offset && limit > 0 && (rows.len() as u64) < limit {
                rows.push(r);
            }
            seen += 1;
        }
        let done = limit > 0 && rows.len() as u64 >= limit;
        // A store that hands out a next cursor with an empty page would be followed forever.
        let next = found.next.filter(|_| !empty);
        match (next, found.total) {
            (_, Some(total)) if done || limit == 0 => return Ok((total, rows)),
            (Some(next), _) if !done => after = Some(next),
            (Some(_), None) => return Ok((seen + 1, rows)),
            (None, total) => return Ok((total.unwrap_or(seen), rows)),
            (Some(_), Some(total)) => return Ok((total, rows)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{CheckFn, DeleteMode, EditFn, Found, Value};
    use async_trait::async_trait;

    /// A table of `n` rows that pages only by cursor (the cursor is the next position), and
    /// may or may not report its total: the shape of an LDAP paged search.
    struct CursorOnly {
        n: u64,
        reports_total: bool,
        calls: std::sync::Mutex<Vec<(Option<String>, u64)>>,
    }

    #[async_trait]
    impl Table for CursorOnly {
        async fn insert(
            &self,
            _: Vec<Value>,
            _: Vec<String>,
            _: bool,
        ) -> Result<Row, BackendError> {
            Err(BackendError::Internal("read-only".into()))
        }
        async fn fetch(&self, _: &str, _: bool) -> Result<Option<Row>, BackendError> {
            Ok(None)
        }
        async fn search(&self, s: Search) -> Result<Found, BackendError> {
            let PageRequest::Cursor { after, limit } = s.page else {
                return Err(BackendError::Internal(
                    "offset asked of a cursor store".into(),
                ));
            };
            if let Ok(mut c) = self.calls.lock() {
                c.push((after.clone(), limit));
            }
            let start: u64 = after.as_deref().map_or(0, |a| a.parse().unwrap_or(0));
            let end = (start + limit).min(self.n);
            Ok(Found {
                total: self.reports_total.then_some(self.n),
                rows: (start..end)
                    .map(|i| Row {
                        key: i.to_string(),
                        values: vec![],
                        members: None,
                    })
                    .collect(),
                next: (end < self.n).then(|| end.to_string()),
            })
        }
        async fn update(&self, _: &str, _: bool, _: EditFn) -> Result<Row, BackendError> {
            Err(BackendError::NotFound)
        }
        async fn delete(&self, _: &str, _: DeleteMode, _: CheckFn) -> Result<(), BackendError> {
            Err(BackendError::NotFound)
        }
        fn paging(&self) -> Paging {
            Paging::Cursor
        }
    }

    fn table(n: u64, reports_total: bool) -> CursorOnly {
        CursorOnly {
            n,
            reports_total,
            calls: Default::default(),
        }
    }

    fn sort() -> Sort {
        Sort {
            field: None,
            fold_case: false,
            descending: false,
            ranks: Vec::new(),
        }
    }

    async fn keys(t: &CursorOnly, offset: u64, limit: u64) -> (u64, Vec<String>) {
        let (total, rows) = page(t, Predicate::True, sort(), offset, limit, false)
            .await
            .expect("page");
        (total, rows.into_iter().map(|r| r.key).collect())
    }

    /// SCIM index paging over a cursor-only store returns the same pages as an offset
    /// would, and `totalResults` is the store's total when it reports one.
    #[tokio::test]
    async fn cursor_store_serves_index_pages() {
        let t = table(25, true);
        assert_eq!(
            keys(&t, 0, 10).await,
            (25, (0..10).map(|i| i.to_string()).collect())
        );
        assert_eq!(
            keys(&t, 20, 10).await,
            (25, (20..25).map(|i| i.to_string()).collect())
        );
        assert_eq!(keys(&t, 30, 10).await, (25, vec![]));
        assert_eq!(keys(&t, 0, 0).await, (25, vec![]));
    }

    /// Without a total from the store, `totalResults` runs one past the page while there
    /// are more results, so a client paging until `startIndex > totalResults` reads every
    /// result exactly once; the last page's total is exact.
    #[tokio::test]
    async fn rolling_total_reads_every_result_once() {
        let t = table(23, false);
        let mut start = 0;
        let mut all = Vec::new();
        let mut last_total = 0;
        for _ in 0..100 {
            let (total, page) = keys(&t, start, 5).await;
            last_total = total;
            all.extend(page);
            start += 5;
            if start >= total {
                break;
            }
        }
        assert_eq!(all, (0..23).map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!(last_total, 23);
        assert_eq!(keys(&t, 0, 0).await, (23, vec![]));
    }

    /// Skipping to a late start index reads in bounded store pages, not one call per row
    /// and not the whole store in one call.
    #[tokio::test]
    async fn skipping_is_bounded() {
        let t = table(2_000, true);
        let (_, page) = keys(&t, 1_200, 3).await;
        assert_eq!(page, vec!["1200", "1201", "1202"]);
        let calls = t.calls.lock().expect("calls").clone();
        assert!(calls.iter().all(|(_, limit)| *limit <= WALK_PAGE));
        assert_eq!(calls.len(), 4, "{calls:?}");
    }
}
