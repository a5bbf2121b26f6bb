//! Store errors to SCIM errors, in one place (RFC 7644 §3.12).
//!
//! | store says | client gets |
//! |---|---|
//! | no such row | 404 |
//! | unique constraint | 409 `uniqueness`, naming the attribute |
//! | a value refused (length, NOT NULL, CHECK, unknown member) | 400 `invalidValue` |
//! | a filter or sort the store cannot evaluate | 400 `invalidFilter`, naming the attribute |
//! | more members than one response may carry | 400 `tooMany`, with how to read it instead |
//! | unreachable, busy, timed out | 503 with `Retry-After`: the identity provider retries |
//! | the request's own edit failed | that error, unchanged |
//! | anything else | 500; the detail goes to the log only |

use crate::backend::BackendError;
use crate::scim::ScimError;

use super::{Inner, Target};

/// Maps a store error for resource type `inner` (and resource `id`, when one is addressed).
pub(crate) fn to_scim(inner: &Inner, e: BackendError, id: Option<&str>) -> ScimError {
    let rt = &inner.rt.name;
    let attr = |field: Option<usize>| {
        field
            .and_then(|f| inner.bindings.get(f))
            .map(|b| {
                b.stands_for
                    .and_then(|k| inner.bindings.get(k))
                    .unwrap_or(b)
            })
            .map(|b| match &b.target {
                Target::Created => "meta.created".to_owned(),
                Target::LastModified => "meta.lastModified".to_owned(),
                _ => b.conv.shown.clone(),
            })
    };
    match e {
        BackendError::NotFound => ScimError::not_found(match id {
            Some(id) => format!("no {rt} with id '{id}'"),
            None => format!("no such {rt}"),
        }),
        BackendError::Conflict { field, .. } => ScimError::uniqueness(match attr(field) {
            Some(a) => format!("another {rt} already has this {a}"),
            None => format!("the {rt} clashes with an existing one (a unique value is taken)"),
        }),
        BackendError::Rejected { field, detail } => ScimError::invalid_value(match attr(field) {
            Some(a) => format!("'{a}': {detail}"),
            None => detail,
        }),
        BackendError::Unsupported { field, detail } => {
            ScimError::invalid_filter(match attr(field) {
                Some(a) => format!("'{a}' cannot be used in this search: {detail}"),
                None => format!("this search cannot be answered by the store: {detail}"),
            })
        }
        // Members beyond [scim].max_members, or a search matching more entries than a store
        // that cannot page by offset reads at once: RFC 7644 §3.12 tooMany either way.
        BackendError::TooLarge {
            detail,
            members: true,
        } => ScimError::bad_request(
            crate::scim::ScimType::TooMany,
            format!(
                "{detail}, more than one response carries ([scim].max_members); read the {rt} with excludedAttributes=members (as Entra ID does) and change members with PATCH"
            ),
        ),
        BackendError::TooLarge {
            detail,
            members: false,
        } => ScimError::bad_request(crate::scim::ScimType::TooMany, detail),
        BackendError::Unavailable(detail) => {
            inner.observer.store_error(&inner.backend, "unavailable");
            tracing::warn!(backend = %inner.backend, resource_type = %rt, error = %detail, "store unavailable");
            ScimError::unavailable(
                format!(
                    "the application's store is unavailable; retry in {} s",
                    inner.retry_after
                ),
                inner.retry_after,
            )
        }
        BackendError::Aborted(inner_error) => match inner_error.downcast::<ScimError>() {
            Ok(e) => *e,
            Err(other) => {
                tracing::error!(resource_type = %rt, error = %other, "edit failed");
                ScimError::internal("internal error")
            }
        },
        BackendError::Internal(detail) => {
            inner.observer.store_error(&inner.backend, "internal");
            tracing::error!(backend = %inner.backend, resource_type = %rt, error = %detail, "store error");
            ScimError::internal("internal error; the sidecar's log has the details")
        }
    }
}
