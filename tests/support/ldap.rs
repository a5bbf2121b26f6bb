//! A throwaway OpenLDAP `slapd` for the tests: a `slapd.conf` and an mdb database in a temp
//! dir, on a free loopback port, started once per test binary; each test gets a subtree of its
//! own (`ou=<name>-<n>,dc=example,dc=test` holding `ou=people` and `ou=groups`).
//!
//! slapd runs in the foreground (`-d 0`) as a child that dies with the test process. When it
//! is not installed the tests that need it are skipped with a reason, unless
//! `SCIM_SIDECAR_REQUIRE_LDAP=1` (set by `scripts/test.sh`, which installs it) makes that a
//! failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ldap3::{LdapConnAsync, Scope, SearchEntry};

use super::postgres::{as_user, free_port, log_file, start_on_port};

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=test";
/// The root DN tests and the sidecar bind as.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "secret";
/// A service account of a server started with a size limit ([`private_limited`]): not the
/// rootdn, so the limit applies to it, and allowed to write everything.
pub const SVC_DN: &str = "cn=svc,dc=example,dc=test";
/// Its password.
pub const SVC_PASSWORD: &str = "svc-secret";

/// A running slapd.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `ldap://127.0.0.1:PORT`.
    pub url: String,
    /// Its config, database and log directory.
    pub dir: PathBuf,
    /// With TLS: `ldaps://127.0.0.1:PORT2` (StartTLS is offered on `url` too).
    pub ldaps_url: Option<String>,
    /// With TLS: the PEM file of the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    child: Mutex<Option<Child>>,
}

/// One test's subtree.
#[derive(Clone)]
pub struct Subtree {
    /// `ou=<name>-<n>,dc=example,dc=test`.
    pub dn: String,
    /// `ou=people,<dn>`.
    pub people: String,
    /// `ou=groups,<dn>`.
    pub groups: String,
    /// The server's URL.
    pub url: String,
}

static SHARED: OnceLock<Option<Server>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);
static SERVERS: AtomicUsize = AtomicUsize::new(0);

fn slapd_bin() -> Option<PathBuf> {
    ["/usr/sbin/slapd", "/usr/local/libexec/slapd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The shared server, or `None` (the caller skips) when slapd is not installed.
pub fn server() -> Option<&'static Server> {
    SHARED
        .get_or_init(|| match Server::start() {
            Ok(s) => Some(s),
            Err(e) => {
                if std::env::var_os("SCIM_SIDECAR_REQUIRE_LDAP").is_some() {
                    panic!(
                        "slapd is required (SCIM_SIDECAR_REQUIRE_LDAP) but could not start: {e}"
                    );
                }
                eprintln!("skipping LDAP tests: {e} (scripts/test.sh installs slapd)");
                None
            }
        })
        .as_ref()
}

/// A server of the caller's own (for a test that stops and restarts it), or `None` (the
/// caller skips) when slapd is not installed.
pub fn private() -> Option<Server> {
    private_with(false)
}

/// [`private`], serving LDAPS and StartTLS with a certificate for 127.0.0.1 signed by a CA
/// of its own ([`Server::ca_file`]).
pub fn private_tls() -> Option<Server> {
    private_with(true)
}

/// [`private`], limiting every unpaged search of [`SVC_DN`] to `n` entries.
pub fn private_limited(n: u32) -> Option<Server> {
    start_private(false, Some(n))
}

fn private_with(tls: bool) -> Option<Server> {
    start_private(tls, None)
}

fn start_private(tls: bool, size_limit: Option<u32>) -> Option<Server> {
    match Server::start_full(tls, size_limit) {
        Ok(s) => Some(s),
        Err(e) => {
            if std::env::var_os("SCIM_SIDECAR_REQUIRE_LDAP").is_some() {
                panic!("slapd is required (SCIM_SIDECAR_REQUIRE_LDAP) but could not start: {e}");
            }
            eprintln!("skipping LDAP test: {e}");
            None
        }
    }
}

/// A fresh subtree for one test on the shared server, or `None` when slapd is not available.
pub async fn subtree(name: &str) -> Option<Subtree> {
    Some(server()?.subtree(name).await)
}

impl Server {
    /// A fresh subtree of this server: `ou=<name>-<n>` with `ou=people` and `ou=groups`.
    pub async fn subtree(&self, name: &str) -> Subtree {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dn = format!("ou={name}-{n},{SUFFIX}");
        let t = Subtree {
            people: format!("ou=people,{dn}"),
            groups: format!("ou=groups,{dn}"),
            dn,
            url: self.url.clone(),
        };
        for ou in [&t.dn, &t.people, &t.groups] {
            let name = ou
                .split(',')
                .next()
                .and_then(|r| r.strip_prefix("ou="))
                .expect("ou");
            self.add(
                ou,
                &[("objectClass", &["organizationalUnit"]), ("ou", &[name])],
            )
            .await
            .unwrap_or_else(|e| panic!("creating {ou}: {e}"));
        }
        t
    }

    /// Writes the config and the suffix entry, and starts slapd.
    pub fn start() -> Result<Server, String> {
        Server::start_with(false)
    }

    /// [`Server::start`], with TLS when `tls`.
    pub fn start_with(tls: bool) -> Result<Server, String> {
        Server::start_full(tls, None)
    }

    /// [`Server::start_with`]; with `size_limit`, every search of a DN other than the rootdn
    /// returns at most that many entries unless it is paged (as Active Directory's
    /// MaxPageSize), and the server has the service account [`SVC_DN`].
    pub fn start_full(tls: bool, size_limit: Option<u32>) -> Result<Server, String> {
        let bin = slapd_bin().ok_or("slapd is not installed (no /usr/sbin/slapd)")?;
        cleanup_stale();
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("scim-sidecar-ldap-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tls_conf = if tls {
            pki(&dir)?;
            format!(
                "TLSCertificateFile {d}/cert.pem\nTLSCertificateKeyFile {d}/key.pem\n",
                d = dir.display()
            )
        } else {
            String::new()
        };
        let (sizelimit, access, svc) = match size_limit {
            None => (
                "sizelimit unlimited".to_owned(),
                String::new(),
                String::new(),
            ),
            Some(n) => (
                format!("sizelimit size.soft={n} size.hard={n} size.prtotal=unlimited"),
                format!(
                    "access to attrs=userPassword by dn.exact=\"{SVC_DN}\" write by anonymous auth by * none\n\
                     access to * by dn.exact=\"{SVC_DN}\" write by * read\n"
                ),
                format!(
                    "\ndn: {SVC_DN}\nobjectClass: person\ncn: svc\nsn: svc\nuserPassword: {SVC_PASSWORD}\n"
                ),
            ),
        };
        let conf = format!(
            "{tls_conf}include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             pidfile {d}/slapd.pid\n\
             argsfile {d}/slapd.args\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             {sizelimit}\n\
             database mdb\n\
             maxsize 104857600\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\n\
             directory {d}/db\n\
             index objectClass eq\n\
             index entryUUID eq\n\
             index uid,cn,mail,displayName eq,sub\n\
             {access}",
            d = dir.display()
        );
        std::fs::write(dir.join("slapd.conf"), conf).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("base.ldif"),
            format!("dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n{svc}"),
        )
        .map_err(|e| e.to_string())?;
        let slapadd = Path::new("/usr/sbin/slapadd");
        let out = Command::new(slapadd)
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .arg("-l")
            .arg(dir.join("base.ldif"))
            .output()
            .map_err(|e| format!("slapadd: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "slapadd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = free_port();
        let s = Server {
            port,
            url: format!("ldap://127.0.0.1:{port}"),
            ldaps_url: tls.then(|| format!("ldaps://127.0.0.1:{}", free_port())),
            ca_file: tls.then(|| dir.join("ca.pem")),
            dir,
            child: Mutex::new(None),
        };
        s.run(&bin)?;
        Ok(s)
    }

    fn run(&self, bin: &Path) -> Result<(), String> {
        let command = || {
            let mut cmd = as_user(Command::new(bin), None);
            cmd.arg("-f")
                .arg(self.dir.join("slapd.conf"))
                .arg("-h")
                .arg(match &self.ldaps_url {
                    Some(s) => format!("ldap://127.0.0.1:{}/ {s}/", self.port),
                    None => format!("ldap://127.0.0.1:{}/", self.port),
                })
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(&self.dir.join("slapd.log")));
            cmd
        };
        // Ready when it accepts connections.
        start_on_port(
            "slapd",
            &self.child,
            command,
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
            &self.dir.join("slapd.log"),
            Duration::from_secs(10),
        )
    }

    /// Stops slapd (SIGTERM, then waits): the directory "goes down".
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().expect("child").take() {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// Starts slapd again on the same port and data.
    pub fn restart(&self) {
        self.stop();
        self.run(&slapd_bin().expect("slapd"))
            .expect("restart slapd");
    }

    async fn admin(&self) -> Result<ldap3::Ldap, String> {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        ldap.simple_bind(ADMIN_DN, ADMIN_PASSWORD)
            .await
            .and_then(|r| r.success())
            .map_err(|e| e.to_string())?;
        Ok(ldap)
    }

    /// Adds an entry as the admin.
    pub async fn add(&self, dn: &str, attrs: &[(&str, &[&str])]) -> Result<(), String> {
        let mut l = self.admin().await?;
        let attrs = attrs
            .iter()
            .map(|(a, vs)| (a.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect();
        l.add(dn, attrs)
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The entries under `base` (whole subtree) matching `filter`, with all user attributes
    /// and `entryUUID`: what the directory really holds, as the tests check it.
    pub async fn entries(&self, base: &str, filter: &str) -> Vec<SearchEntry> {
        let mut l = self.admin().await.expect("admin bind");
        let (rs, _) = l
            .search(base, Scope::Subtree, filter, vec!["*", "entryUUID"])
            .await
            .and_then(|r| r.success())
            .expect("search");
        rs.into_iter().map(SearchEntry::construct).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes directories of earlier test runs whose process is gone.
fn cleanup_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("scim-sidecar-ldap-") else {
            continue;
        };
        let pid: i32 = rest
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        // SAFETY: kill with signal 0 only checks whether the process exists.
        if pid > 0 && unsafe { libc::kill(pid, 0) } != 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 and localhost signed by it (`cert.pem`,
/// `key.pem`) in `dir`: rustls refuses a self-signed certificate used as the server's own.
fn pki(dir: &Path) -> Result<(), String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(e)?;
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(e)?
        .signed_by(&key, &issuer)
        .map_err(e)?;
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("cert.pem", leaf.pem()),
        ("key.pem", key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// `examples/ldap` served on a fresh subtree of the shared slapd (its state database in the
/// server's own temp dir), or `None` when slapd is not installed.
pub async fn example() -> Option<super::Sidecar> {
    let tree = subtree("example").await?;
    let server = server()?;
    let state = server
        .dir
        .join(format!("state-{}.db", NEXT.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&state, "").expect("state db");
    Some(
        super::Sidecar::start(super::Options {
            config: Some(super::example_config("ldap")),
            env: vec![
                ("LDAP_URL", tree.url.clone()),
                ("LDAP_BIND_DN", ADMIN_DN.to_owned()),
                ("LDAP_BIND_PASSWORD", ADMIN_PASSWORD.to_owned()),
                ("LDAP_BASE_DN", tree.dn.clone()),
                ("SCIM_SIDECAR_STATE", state.display().to_string()),
            ],
            migrate: true,
            ..Default::default()
        })
        .await,
    )
}

/// The entry with `entryUUID` `id` anywhere in the directory, as one string per attribute of
/// `attrs` (`"NULL"` where it has none, or for `None`); `active` reads `employeeType` as
/// `true`/`false`. Empty when there is no such entry.
pub async fn row(id: &str, attrs: &[Option<&str>]) -> Vec<String> {
    let Some(s) = server() else {
        return Vec::new();
    };
    let f = format!("(entryUUID={id})");
    let Some(e) = s.entries(SUFFIX, &f).await.into_iter().next() else {
        return Vec::new();
    };
    let get = |a: &str| {
        e.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(a))
            .and_then(|(_, v)| v.first().cloned())
    };
    attrs
        .iter()
        .map(|a| match a {
            Some("active") => match get("employeeType").as_deref() {
                Some("active") => "true".to_owned(),
                Some(_) => "false".to_owned(),
                None => "NULL".to_owned(),
            },
            Some(a) => get(a).unwrap_or_else(|| "NULL".to_owned()),
            None => "NULL".to_owned(),
        })
        .collect()
}

/// The entryUUIDs of the members the group with `entryUUID` `id` lists, sorted (the
/// placeholder, which names no entry, left out).
pub async fn member_ids(id: &str) -> Vec<String> {
    let Some(s) = server() else {
        return Vec::new();
    };
    let Some(g) = s
        .entries(SUFFIX, &format!("(entryUUID={id})"))
        .await
        .into_iter()
        .next()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dn in g.attrs.get("member").cloned().unwrap_or_default() {
        let mut l = s.admin().await.expect("admin bind");
        if let Ok(r) = l
            .search(&dn, Scope::Base, "(objectClass=*)", vec!["entryUUID"])
            .await
            .and_then(|r| r.success())
        {
            for e in r.0.into_iter().map(SearchEntry::construct) {
                out.extend(e.attrs.get("entryUUID").cloned().unwrap_or_default());
            }
        }
    }
    out.sort();
    out
}
