//! Kinds of store, and the one list that registers them.
//!
//! A kind ([`StoreKind`]) owns everything about its addressing: it parses its own
//! `[backend.NAME]` table into a [`StoreConfig`], and its own keys of every `[resource.X]`
//! that uses such a backend (the resource's location, each `[resource.X.map]` entry's, the
//! `members` table's, each `[resource.X.set]` key's) into opaque [`Loc`]s. It reports every
//! problem through [`Cx`] with the file and line, so `check` shows them all at once. Nothing
//! above the backend layer reads a location; the opened [`Backend`] gets them back in a
//! [`super::TableSpec`].
//!
//! Adding a kind of store touches its own module and one line of [`KINDS`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Backend, Loc};
use crate::config::Cx;
use crate::config::raw::{RawValue, S};

/// Every kind of store this build supports: one registration line each.
pub static KINDS: &[&dyn StoreKind] = &[
    #[cfg(feature = "sqlite")]
    &super::sql::sqlite::Sqlite,
    #[cfg(feature = "postgres")]
    &super::sql::postgres::Postgres,
    #[cfg(feature = "mysql")]
    &super::sql::mysql::Mysql,
    #[cfg(feature = "ldap")]
    &super::ldap::Ldap,
    #[cfg(feature = "rest")]
    &super::rest::Rest,
];

/// The kind registered as `name` (`type = "…"` in `[backend.NAME]`).
pub fn find(name: &str) -> Option<&'static dyn StoreKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The names of every registered kind, for messages.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}

/// A kind of store: the parser of its part of the config file.
///
/// Every method reports problems through `cx` (with the line of the value at fault; `what`
/// names the part in messages, e.g. `[resource.User]`) and returns `None` when what it parsed
/// cannot be used; it never stops at the first problem when it can report more.
pub trait StoreKind: Sync {
    /// The `type` value that selects it (`sqlite`).
    fn name(&self) -> &'static str;

    /// Parses `[backend.NAME]` (the whole table, `type` included). Unknown keys are
    /// problems naming the key.
    fn backend(
        &self,
        name: &str,
        raw: &RawValue<'_>,
        cx: &mut Cx<'_>,
    ) -> Option<Arc<dyn StoreConfig>>;

    /// Parses the store's keys of a `[resource.X]` table: every key that is not one of the
    /// keys every resource has (`backend`, `schema`, `endpoint`, `description`, `on_delete`,
    /// `map`, `set`, `members`).
    fn resource(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc>;

    /// Parses where one `[resource.X.map]` entry's value lives: the entry's string form, or
    /// its table without the attribute's own keys (`case_exact`, `values`, `kept`, …).
    fn field(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc>;

    /// Parses `members = { … }` without its `type`.
    fn members(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc>;

    /// Parses a `[resource.X.set]` key: where the value written by the sidecar goes.
    fn set_target(&self, key: &S, cx: &mut Cx<'_>) -> Option<Loc>;
}

/// One configured store (`[backend.NAME]`, parsed).
#[async_trait]
pub trait StoreConfig: fmt::Debug + Send + Sync {
    /// Its kind's name.
    fn kind(&self) -> &'static str;

    /// Whether it can hold the sidecar's own state (attributes mapped with `kept = true`).
    fn holds_state(&self) -> bool {
        false
    }

    /// `Err` with the reason when several sidecar replicas cannot share this store (a local
    /// file): state kept there would differ from replica to replica.
    fn shared(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether a write can be taken back (a transaction rolled back), as `explain` does with
    /// every write it shows. A directory or an API has done what it was sent.
    fn rolls_back(&self) -> bool {
        false
    }

    /// Creates the store, empty, when it does not exist and can be made by the sidecar: a
    /// local file that holds only the sidecar's own state (`migrate` calls it before
    /// opening such a store; never for a store the app's resources are in, where a missing
    /// database is a wrong path). `Some` says what was created.
    fn create_for_state(&self) -> Result<Option<String>, String> {
        Ok(None)
    }

    /// Opens the store (a pool, a connection) and checks that it answers. `Err` is a
    /// start-up message naming the problem and the fix.
    async fn open(&self, name: &str) -> Result<Arc<dyn Backend>, String>;

    /// The concrete settings, for a caller that knows the kind (tests adjusting a loaded
    /// config).
    fn as_any(&self) -> &dyn Any;
}
