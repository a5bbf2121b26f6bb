//! A throwaway Samba Active Directory domain controller for the tests: a domain
//! (`EXAMPLE.TEST`, `DC=example,DC=test`) provisioned once per test binary in a temp dir, serving
//! LDAPS with a certificate signed by a CA of its own; each test gets an OU of its own
//! (`OU=<name>-<n>,DC=example,DC=test` holding `OU=Users` and `OU=Groups`, as
//! `examples/active-directory` expects). [`example`] serves that example on such an OU (for
//! `tests/it/ldap_ad.rs` and the Entra/Okta replays), and [`row`] and [`member_ids`] read
//! what the domain holds by objectGUID, as `ldap.rs`'s do by entryUUID.
//!
//! Samba's ports are fixed (389, 636, 88, …: no setting moves them), so the DC listens on
//! 127.0.0.1 and one runs per test binary. It runs in the foreground as a child that gets
//! SIGTERM when the test process exits (at exit, and from the kernel should the process die).
//! Provisioning takes several seconds, which is why it happens once. When Samba is not
//! installed the tests that need it are skipped with a reason, unless
//! `SCIM_SIDECAR_REQUIRE_SAMBA=1` (set by `scripts/test.sh`, which installs it) makes that a
//! failure.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use tokio::sync::OnceCell;

use super::postgres::{log_file, spawn_kept};

/// The domain's naming context.
pub const SUFFIX: &str = "DC=example,DC=test";
/// The DN the tests and the sidecar bind as.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=example,DC=test";
/// Its password (the provisioning's; meets the domain's complexity policy).
pub const ADMIN_PASSWORD: &str = "Adm1n-Pass-2024!";
/// The address the DC listens on.
pub const IP: &str = "127.0.0.1";

/// The running domain controller.
pub struct Dc {
    /// `ldaps://127.0.0.1:636`.
    pub url: String,
    /// `ldap://127.0.0.1:389` (StartTLS is offered there).
    pub plain_url: String,
    /// The PEM file of the CA that signed the DC's certificate.
    pub ca_file: PathBuf,
    /// Its provisioning, config, database and logs.
    pub dir: PathBuf,
}

/// One test's OU.
pub struct Subtree {
    /// `OU=<name>-<n>,DC=example,DC=test`.
    pub dn: String,
    /// `OU=Users,<dn>`.
    pub users: String,
    /// `OU=Groups,<dn>`.
    pub groups: String,
}

static SHARED: OnceCell<Option<Dc>> = OnceCell::const_new();
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// The samba process to stop at exit.
static PID: AtomicI32 = AtomicI32::new(0);

/// The shared DC, or `None` (the caller skips) when Samba is not installed.
pub async fn server() -> Option<&'static Dc> {
    SHARED
        .get_or_init(|| async {
            match Dc::start().await {
                Ok(s) => Some(s),
                Err(e) => {
                    if std::env::var_os("SCIM_SIDECAR_REQUIRE_SAMBA").is_some() {
                        panic!(
                            "Samba is required (SCIM_SIDECAR_REQUIRE_SAMBA) but could not start: {e}"
                        );
                    }
                    eprintln!("skipping Active Directory tests: {e} (scripts/test.sh installs Samba)");
                    None
                }
            }
        })
        .await
        .as_ref()
}

/// A fresh OU for one test on the shared DC, or `None` when Samba is not available.
pub async fn subtree(name: &str) -> Option<Subtree> {
    Some(server().await?.subtree(name).await)
}

fn samba_bin() -> Option<(PathBuf, PathBuf)> {
    let find = |n: &str| {
        ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
            .iter()
            .map(|d| Path::new(d).join(n))
            .find(|p| p.exists())
    };
    Some((find("samba")?, find("samba-tool")?))
}

impl Dc {
    /// Provisions a domain in a temp dir, gives it a certificate and starts it.
    async fn start() -> Result<Dc, String> {
        let (samba, tool) = samba_bin().ok_or("Samba is not installed (no samba, samba-tool)")?;
        for port in [389, 636] {
            std::net::TcpListener::bind((IP, port)).map_err(|e| {
                format!("{IP}:{port} is taken ({e}); a Samba DC needs its fixed ports")
            })?;
        }
        cleanup_stale();
        let dir = std::env::temp_dir().join(format!("scim-sidecar-samba-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = dir.join("run");
        std::fs::create_dir_all(&run)
            .map_err(|e| format!("cannot create {}: {e}", run.display()))?;
        let d = dir.display();
        // `-s /dev/null`: not seeded from the system's own smb.conf.
        let out = Command::new(&tool)
            .args(["domain", "provision", "-s", "/dev/null"])
            .arg(format!("--targetdir={d}/dc"))
            .args([
                "--realm=EXAMPLE.TEST",
                "--domain=EXAMPLE",
                "--server-role=dc",
                "--host-name=dc1",
                "--dns-backend=NONE",
                "--use-rfc2307",
            ])
            .arg(format!("--adminpass={ADMIN_PASSWORD}"))
            .arg(format!("--option=interfaces={IP}"))
            .arg("--option=bind interfaces only=yes")
            .arg(format!("--option=pid directory={d}/run"))
            .arg(format!("--option=ncalrpc dir={d}/run/ncalrpc"))
            .arg(format!(
                "--option=winbindd socket directory={d}/run/winbindd"
            ))
            .arg(format!(
                "--option=ntp signd socket directory={d}/run/ntp_signd"
            ))
            .arg(format!("--option=usershare path={d}/run/usershares"))
            .arg(format!("--option=log file={d}/samba.log"))
            .output()
            .map_err(|e| format!("samba-tool: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "samba-tool domain provision failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        pki(&dir)?;
        // Only the services LDAP needs, and TLS with the test CA's certificate (Samba's own
        // has no subjectAltName, which rustls refuses). Simple binds are also allowed over
        // plain LDAP (`require strong auth = no`), so a test can show the sidecar itself
        // refusing to send a password unencrypted; AD still refuses `unicodePwd` there.
        let conf = dir.join("dc/etc/smb.conf");
        let text = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
        let mut out = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with("server services") {
                out.push_str(&format!(
                    "\tserver services = ldap, cldap, kdc\n\ttls enabled = yes\n\
                     \ttls keyfile = {d}/key.pem\n\ttls certfile = {d}/cert.pem\n\
                     \ttls cafile = {d}/ca.pem\n\tload printers = no\n\
                     \tldap server require strong auth = no\n"
                ));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(&conf, out).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&samba);
        cmd.arg("-s")
            .arg(&conf)
            .args(["--foreground", "--no-process-group"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&dir.join("samba.out")));
        // SAFETY: only async-signal-safe calls between fork and exec. Samba stops cleanly on
        // SIGTERM, also when the test process dies without running its exit handlers.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = spawn_kept(cmd).map_err(|e| format!("cannot start samba: {e}"))?;
        PID.store(child.id() as i32, Ordering::SeqCst);
        // SAFETY: registers a plain `extern "C" fn` that only signals and waits.
        unsafe { libc::atexit(stop_at_exit) };
        let dc = Dc {
            url: format!("ldaps://{IP}:636"),
            plain_url: format!("ldap://{IP}:389"),
            ca_file: dir.join("ca.pem"),
            dir,
        };
        // Ready when an authenticated LDAPS search answers: poll every 100 ms for up to 60 s
        // (its databases load after the ports open).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            match dc.admin().await {
                Ok(mut l) => match l
                    .search(SUFFIX, Scope::Base, "(objectClass=*)", vec!["1.1"])
                    .await
                {
                    Ok(r) if r.1.rc == 0 => return Ok(dc),
                    Ok(r) => last = format!("rc {} {}", r.1.rc, r.1.text),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "the DC did not answer LDAPS within 60 s ({last}); see {}",
            dc.dir.join("samba.log").display()
        ))
    }

    /// A fresh OU of this DC: `OU=<name>-<n>` with `OU=Users` and `OU=Groups`.
    pub async fn subtree(&self, name: &str) -> Subtree {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dn = format!("OU={name}-{n},{SUFFIX}");
        let t = Subtree {
            users: format!("OU=Users,{dn}"),
            groups: format!("OU=Groups,{dn}"),
            dn,
        };
        for ou in [&t.dn, &t.users, &t.groups] {
            self.add(ou, &[("objectClass", &["organizationalUnit"])])
                .await
                .unwrap_or_else(|e| panic!("creating {ou}: {e}"));
        }
        t
    }

    /// A connection bound as the domain's Administrator, over LDAPS.
    pub async fn admin(&self) -> Result<ldap3::Ldap, String> {
        let tls = scim_sidecar::tls::client_config(&self.ca_file)?;
        let settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(5))
            .set_config(Arc::new(tls));
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
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

    /// Adds an entry as the Administrator.
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

    /// Replaces attribute `attr` of entry `dn` with `values`, as the Administrator (what
    /// another tool managing the domain does).
    pub async fn replace(&self, dn: &str, attr: &str, values: &[&str]) -> Result<(), String> {
        let mut l = self.admin().await?;
        l.modify(
            dn,
            vec![Mod::Replace(
                attr.to_string(),
                values.iter().map(|v| v.to_string()).collect(),
            )],
        )
        .await
        .and_then(|r| r.success())
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// The entries under `base` (whole subtree) matching `filter`, with all user attributes
    /// and the computed ones the tests look at: what the directory really holds.
    pub async fn entries(&self, base: &str, filter: &str) -> Vec<SearchEntry> {
        let mut l = self.admin().await.expect("admin bind");
        let (rs, _) = l
            .search(
                base,
                Scope::Subtree,
                filter,
                vec![
                    "*",
                    "objectGUID",
                    "memberOf",
                    "userAccountControl",
                    "pwdLastSet",
                ],
            )
            .await
            .and_then(|r| r.success())
            .expect("search");
        rs.into_iter().map(SearchEntry::construct).collect()
    }

    /// The first value of `attr` of the one entry under `base` matching `filter`.
    pub async fn value(&self, base: &str, filter: &str, attr: &str) -> Option<String> {
        let es = self.entries(base, filter).await;
        assert!(es.len() <= 1, "{filter} matches {} entries", es.len());
        es.first()?
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .and_then(|(_, v)| v.first().cloned())
    }
}

extern "C" fn stop_at_exit() {
    let pid = PID.swap(0, Ordering::SeqCst);
    if pid <= 0 {
        return;
    }
    // SAFETY: signals and reaps our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        // Samba stops its workers and exits within a second or two; never wait forever.
        for _ in 0..100 {
            let mut status = 0;
            if libc::waitpid(pid, &mut status, libc::WNOHANG) != 0 {
                break;
            }
            libc::usleep(50_000);
        }
    }
    let dir = std::env::temp_dir().join(format!("scim-sidecar-samba-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes directories of earlier test runs whose process is gone.
fn cleanup_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("scim-sidecar-samba-") else {
            continue;
        };
        let pid: i32 = rest.parse().unwrap_or(0);
        // SAFETY: kill with signal 0 only checks whether the process exists.
        if pid > 0 && unsafe { libc::kill(pid, 0) } != 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A CA (`ca.pem`) and the DC's certificate signed by it (`cert.pem`, `key.pem`, mode 600:
/// Samba refuses a key others can read), for dc1.example.test, localhost and the DC's IP.
fn pki(dir: &Path) -> Result<(), String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use std::os::unix::fs::PermissionsExt;
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(e)?;
    let leaf = CertificateParams::new(vec![
        "dc1.example.test".to_string(),
        "localhost".to_string(),
        IP.to_string(),
    ])
    .map_err(e)?
    .signed_by(&key, &issuer)
    .map_err(e)?;
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("cert.pem", leaf.pem()),
        ("key.pem", key.serialize_pem()),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, pem).map_err(|e| format!("{name}: {e}"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// `examples/active-directory` served on a fresh OU (`<name>-<n>`) of the shared DC, with its
/// state database in the DC's own temp dir, and that OU; `None` (the caller skips) when Samba
/// is not installed.
pub async fn example(name: &str) -> Option<(super::Sidecar, Subtree)> {
    super::init();
    let dc = server().await?;
    let tree = dc.subtree(name).await;
    let state = dc
        .dir
        .join(format!("state-{}.db", NEXT.fetch_add(1, Ordering::SeqCst)));
    // What `touch` does before the first `migrate`, as the example says.
    std::fs::write(&state, "").expect("state db");
    let sidecar = super::Sidecar::start(super::Options {
        config: Some(super::example_config("active-directory")),
        env: vec![
            ("LDAP_URL", dc.url.clone()),
            ("LDAP_BIND_DN", ADMIN_DN.to_string()),
            ("LDAP_BIND_PASSWORD", ADMIN_PASSWORD.to_string()),
            ("LDAP_BASE_DN", tree.dn.clone()),
            ("LDAP_CA_FILE", dc.ca_file.display().to_string()),
            ("SCIM_SIDECAR_STATE", state.display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    Some((sidecar, tree))
}

/// The entry whose objectGUID is `id` (a GUID string) anywhere in the domain, as one string
/// per attribute of `attrs` (`"NULL"` where it has none, or for `None`); `active` reads
/// `userAccountControl`'s ACCOUNTDISABLE bit as `true`/`false`. Empty when there is no such
/// entry (or `id` is no GUID).
pub async fn row(id: &str, attrs: &[Option<&str>]) -> Vec<String> {
    let Some(e) = by_guid(id).await else {
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
            Some("active") => match get("userAccountControl").and_then(|f| f.parse::<u32>().ok()) {
                Some(f) => (f & 2 == 0).to_string(),
                None => "NULL".to_owned(),
            },
            Some(a) => get(a).unwrap_or_else(|| "NULL".to_owned()),
            None => "NULL".to_owned(),
        })
        .collect()
}

/// The objectGUIDs of the members the group whose objectGUID is `id` lists, sorted. Empty
/// when there is no such group.
pub async fn member_ids(id: &str) -> Vec<String> {
    let Some(g) = by_guid(id).await else {
        return Vec::new();
    };
    let Some(dc) = server().await else {
        return Vec::new();
    };
    let dns = g
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("member"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut l = dc.admin().await.expect("admin bind");
    let mut out = Vec::new();
    for dn in dns {
        let (rs, _) = l
            .search(&dn, Scope::Base, "(objectClass=*)", vec!["objectGUID"])
            .await
            .and_then(|r| r.success())
            .expect("read a member");
        for e in rs.into_iter().map(SearchEntry::construct) {
            out.extend(guid_of(&e));
        }
    }
    out.sort();
    out
}

/// The one entry of the domain whose objectGUID is `id`.
async fn by_guid(id: &str) -> Option<SearchEntry> {
    let dc = server().await?;
    let bytes = scim_sidecar::backend::ldap::ad::guid_bytes(id)?;
    // RFC 4515 §3: every byte of the binary value escaped.
    let f: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    dc.entries(SUFFIX, &format!("(objectGUID={f})"))
        .await
        .into_iter()
        .next()
}

/// An entry's objectGUID as a GUID string, as the sidecar shows it.
fn guid_of(e: &SearchEntry) -> Option<String> {
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("objectGUID"))
        .and_then(|(_, v)| v.first())
        .and_then(|b| scim_sidecar::backend::ldap::ad::guid_string(b))
}
