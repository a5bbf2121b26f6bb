//! SCIM filters and paths (RFC 7644 §3.4.2.2, §3.5.2): the syntax tree, its parser and printer,
//! and in-memory evaluation of value filters.
//!
//! List filters are parsed here once and compiled to store queries by the mapping layer;
//! PATCH paths are parsed here and applied by [`crate::scim::patch`].

mod ast;
pub mod eval;
mod parse;

pub use ast::{AttrPath, CompValue, CompareOp, Filter, PatchPath};
pub use parse::{FilterError, MAX_DEPTH, parse_attr_path, parse_filter, parse_patch_path};
