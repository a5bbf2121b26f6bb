//! The SCIM 2.0 protocol core (RFC 7643, RFC 7644), usable with any store.
//!
//! It knows schemas, resources as JSON, the filter and PATCH path grammar, PATCH semantics,
//! list paging and projection, errors and discovery. It knows nothing of SQL, LDAP, REST or
//! TOML: a store plugs in by implementing [`Provider`] for each resource type (the mapping
//! layer does), and the router feeds it requests through [`Service::handle`].
//!
//! | module | responsibility |
//! |---|---|
//! | [`schema`] | attribute definitions, resource types, path resolution |
//! | [`filter`] | filter and PATCH path syntax, value-filter evaluation |
//! | [`dialect`] | the one place where Entra ID and Okta request shapes become RFC 7644 |
//! | [`resource`] | normalising request bodies, rendering responses, versions |
//! | [`shape`] | list pages written straight from what the store returned |
//! | [`text`] | what a string value may contain; NFC |
//! | [`patch`] | PatchOp parsing and application |
//! | [`list`], [`projection`] | list parameters, `attributes`/`excludedAttributes` |
//! | [`discovery`] | `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` |
//! | [`service`] | request dispatch over the providers |
//! | [`error`] | the RFC 7644 §3.12 error type |

pub mod dialect;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod list;
#[cfg(test)]
mod memory;
pub mod patch;
pub mod projection;
pub mod resource;
pub mod schema;
pub mod service;
pub mod shape;
pub mod text;

pub use error::{ScimError, ScimType};
pub use resource::{BaseUrl, Member, Object, Stored, UnknownPolicy};
pub use service::{
    Check, Edit, Operation, Page, Provider, Query, Request, Response, Service, Settings, Update,
};
