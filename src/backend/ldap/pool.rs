//! A few bound LDAP connections, used round-robin. An `ldap3` connection multiplexes
//! requests, so a handle is cloned out rather than checked out exclusively.
//!
//! Each connection's I/O runs in a task on the runtime that opened it, and the server serves
//! on shard threads, each a single-threaded runtime: a request sent on a connection of
//! another thread crosses threads twice (a wake-up and a context switch each way). So each
//! thread has connections of its own, opened when it first needs them: `pool_size` shared
//! out between the shard threads, at least one per thread ([`crate::backend::home_thread`]).
//!
//! A connection that is closed (the directory restarted, a network cut) or that failed an
//! operation is dropped and a new one connected and bound on the next use: the sidecar recovers from a directory
//! restart without restarting itself, and a request that met the broken connection answers
//! 503 so the identity provider retries it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::thread::ThreadId;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope};
use tokio::sync::Mutex;

use super::LdapConfig;
use crate::backend::BackendError;

/// The connections of one backend.
pub struct Pool {
    url: String,
    bind_dn: String,
    bind_password: String,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    starttls: bool,
    connect_timeout: Duration,
    /// How long one operation may take.
    pub op_timeout: Duration,
    /// Each thread's connection slots (`None`: a multi-threaded runtime's).
    homes: std::sync::Mutex<Vec<(Option<ThreadId>, Slots)>>,
    /// `pool_size`: shared out between the shard threads ([`Pool::slots_here`]).
    size: usize,
    next: AtomicUsize,
    /// Entries per page of a search with the Simple Paged Results control (RFC 2696); 0 when
    /// searches are sent without it (`page_size = 0`, or a directory that does not offer it).
    page_size: AtomicI32,
}

/// One thread's connections; a slot is empty until first used, or after its connection broke.
type Slots = Arc<[Mutex<Option<Ldap>>]>;

/// A connection handed out, and the slot to clear if it turns out broken.
pub struct Conn {
    /// The handle.
    pub ldap: Ldap,
    slots: Slots,
    slot: usize,
}

impl Pool {
    /// A pool for `c`; connects lazily. `Err` when the CA file cannot be used.
    pub fn new(c: &LdapConfig) -> Result<Pool, String> {
        let tls = match &c.ca_file {
            Some(ca) => Some(Arc::new(crate::tls::client_config(ca)?)),
            None => None,
        };
        Ok(Pool {
            url: c.url.clone(),
            bind_dn: c.bind_dn.clone(),
            bind_password: c.bind_password.clone(),
            tls,
            starttls: c.starttls,
            connect_timeout: c.connect_timeout,
            op_timeout: c.operation_timeout,
            homes: std::sync::Mutex::new(Vec::new()),
            size: c.pool_size,
            next: AtomicUsize::new(0),
            page_size: AtomicI32::new(0),
        })
    }

    /// Pages of `size` entries for searches from now on (0: no paging).
    pub fn set_page_size(&self, size: i32) {
        self.page_size.store(size, Ordering::Relaxed);
    }

    /// Entries per page of a paged search, or `None` when searches are not paged.
    pub fn page_size(&self) -> Option<i32> {
        Some(self.page_size.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// Whether the directory's root DSE lists `control` in `supportedControl`.
    pub async fn supports_control(&self, control: &str) -> Result<bool, BackendError> {
        let c = self.get().await?;
        let r = c
            .ldap
            .clone()
            .with_timeout(self.op_timeout)
            .search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"])
            .await;
        let entries = match r {
            Ok(r) => r.0,
            Err(e) => {
                self.discard(&c).await;
                return Err(unavailable(e));
            }
        };
        Ok(entries
            .into_iter()
            .map(ldap3::SearchEntry::construct)
            .any(|e| {
                e.attrs
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("supportedControl"))
                    .any(|(_, v)| v.iter().any(|oid| oid == control))
            }))
    }

    /// A connection of the caller's thread, connecting and binding one when its slot is
    /// empty or closed.
    pub async fn get(&self) -> Result<Conn, BackendError> {
        let slots = self.slots_here();
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % slots.len();
        let mut held = slots[slot].lock().await;
        if let Some(l) = held.as_mut() {
            if !l.is_closed() {
                let ldap = l.clone();
                drop(held);
                return Ok(Conn { ldap, slots, slot });
            }
        }
        *held = None;
        let ldap = self.connect().await?;
        *held = Some(ldap.clone());
        drop(held);
        Ok(Conn { ldap, slots, slot })
    }

    /// The caller's thread's slots, made on its first call.
    fn slots_here(&self) -> Slots {
        let home = crate::backend::home_thread();
        let mut homes = self.homes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = homes.iter().find(|(h, _)| *h == home) {
            return s.clone();
        }
        let per_home = self.size.div_ceil(crate::backend::shard_threads());
        let s: Slots = (0..per_home.max(1)).map(|_| Mutex::new(None)).collect();
        homes.push((home, s.clone()));
        s
    }

    /// Forgets a connection that failed, so the next use of its slot reconnects.
    pub async fn discard(&self, c: &Conn) {
        let mut held = c.slots[c.slot].lock().await;
        *held = None;
    }

    async fn connect(&self) -> Result<Ldap, BackendError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.connect_timeout)
            .set_starttls(self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| {
                BackendError::Unavailable(format!("cannot connect to {}: {e}", self.url))
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        if !self.bind_dn.is_empty() {
            let r = ldap
                .with_timeout(self.connect_timeout)
                .simple_bind(&self.bind_dn, &self.bind_password)
                .await
                .map_err(unavailable)?;
            if r.rc != 0 {
                // 49 invalidCredentials: a configuration problem, not an outage, but the
                // request cannot be served either way; never the password in the message.
                return Err(BackendError::Unavailable(format!(
                    "bind as '{}' refused: {} ({})",
                    self.bind_dn,
                    code_name(r.rc),
                    r.text
                )));
            }
        }
        Ok(ldap)
    }

    /// Binds (when needed) and reads the root DSE: the directory answers.
    pub async fn check(&self) -> Result<(), BackendError> {
        let mut c = self.get().await?;
        let r = c
            .ldap
            .with_timeout(self.op_timeout)
            .search("", Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.discard(&c).await;
                Err(unavailable(e))
            }
        }
    }

    /// `Ok` when entry `dn` exists.
    pub async fn base_exists(&self, dn: &str) -> Result<(), String> {
        let mut c = self.get().await.map_err(|e| e.to_string())?;
        let r = c
            .ldap
            .with_timeout(self.op_timeout)
            .search(dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .map_err(|e| e.to_string())?;
        match r.1.rc {
            0 if !r.0.is_empty() => Ok(()),
            0 | 32 => Err("no such entry in the directory".into()),
            rc => Err(format!("{} ({})", code_name(rc), r.1.text)),
        }
    }
}

/// A transport failure (timeout, closed connection) as a 503.
pub fn unavailable(e: LdapError) -> BackendError {
    BackendError::Unavailable(format!("directory: {e}"))
}

/// The name of an LDAP result code (RFC 4511 §A.2), for messages.
pub fn code_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        11 => "adminLimitExceeded",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        _ => "error",
    }
}
