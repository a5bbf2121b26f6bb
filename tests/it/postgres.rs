//! What only PostgreSQL has: statement timeouts, a server that goes away and comes back, TLS,
//! Unix sockets, `migrate` and `check` against a live catalog, very large groups. The mapping
//! shapes shared with SQLite are in `mapping.rs`.
