//! Hot reload, as Kubernetes does it to a running `scim-sidecar run`: the config file is a
//! ConfigMap volume updated by swapping its `..data` symlink, TLS files are rotated in place
//! by cert-manager, and an operator sends SIGHUP. Under a steady load of requests: no request
//! fails, the new mapping is live within 2 s, a file that does not load (or that the store
//! refuses) keeps the previous config serving and says so in `/readyz` and the metrics.
//! See: issue #12.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Client, TOKEN};

const BIN: &str = env!("CARGO_BIN_EXE_scim-sidecar");

/// A running `scim-sidecar run`, stopped (SIGTERM) when dropped.
struct Process {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: kill(2) with the pid of a child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts the binary on `config`, and waits for its "ready" line to learn its ports.
    fn start(config: &Path, db: &Path) -> Process {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("SCIM_TOKEN", TOKEN)
            .env("QUICKSTART_DB", db)
            .env("SCIM_SIDECAR_LISTEN", "127.0.0.1:0")
            .env("SCIM_SIDECAR_ADMIN_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start scim-sidecar");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log to its end (so the child never blocks on a full pipe), passing on the
        // ready line.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("scim-sidecar ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the sidecar says it is ready");
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.trim_matches('"').parse().ok())
                .unwrap_or_else(|| panic!("{name}= in {line}"))
        };
        Process {
            addr: field("listen"),
            admin: field("admin"),
            child,
        }
    }

    fn client(&self) -> Client {
        Client::new(self.addr, Some(TOKEN))
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = Client::new(self.admin, None).get("/metrics").await.text();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn readyz(&self) -> (u16, String) {
        let r = Client::new(self.admin, None).get("/readyz").await;
        (r.status.as_u16(), r.text())
    }
}

/// A ConfigMap or Secret volume: each key `dir/NAME` → `..data/NAME`, `..data` → a
/// timestamped directory, swapped atomically by [`Volume::update`] as the kubelet does.
struct Volume {
    dir: PathBuf,
    version: u32,
}

impl Volume {
    fn new(dir: &Path, files: &[(&str, &str)]) -> Volume {
        std::fs::create_dir_all(dir).expect("volume dir");
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
                .expect("key symlink");
        }
        let mut v = Volume {
            dir: dir.to_path_buf(),
            version: 0,
        };
        v.update(files);
        v
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new directory with every key, then `..data` swapped to it by a rename.
    fn update(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let name = format!("..2026_12_02_{}", self.version);
        std::fs::create_dir(self.dir.join(&name)).expect("version dir");
        for (file, text) in files {
            std::fs::write(self.dir.join(&name).join(file), text).expect("write");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).expect("data symlink");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
    }
}

fn quickstart() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    std::fs::read_to_string(root.join("scim-sidecar.toml"))
        .expect("config")
        .replace(
            "create_from = \"schema.sql\"",
            &format!("create_from = \"{}\"", root.join("schema.sql").display()),
        )
}

/// GET /Users in a loop until stopped: the number of requests and of failures.
fn load(client: Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let (sent, failed) = (AtomicU64::new(0), AtomicU64::new(0));
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
            let r = client.get("/scim/v2/Users?count=1").await;
            sent.fetch_add(1, Ordering::SeqCst);
            if r.status.as_u16() != 200 {
                failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        (sent.into_inner(), failed.into_inner())
    })
}

/// Waits up to `within` for `cond`; whether it came true.
async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn user_attributes(client: &Client) -> Vec<String> {
    let s = client
        .get("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
        .await
        .json();
    s["attributes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A mapping change through a ConfigMap update is live within 2 s with no failed request; a
/// mapping the database refuses (a column that does not exist) and a file that does not parse
/// keep the previous mapping serving, counted as failures and said in /readyz (still 200);
/// SIGHUP reloads the current file.
#[tokio::test]
async fn r012_a_changed_configmap_is_served_without_a_failed_request() {
    let dir = tempfile::tempdir().expect("tmp");
    let v1 = quickstart();
    let mut map = Volume::new(&dir.path().join("config"), &[("scim-sidecar.toml", &v1)]);
    let config = map.path("scim-sidecar.toml");
    let p = Process::start(&config, &dir.path().join("app.db"));
    let client = p.client();
    assert!(user_attributes(&client).await.contains(&"title".to_owned()));

    let stop = Arc::new(AtomicBool::new(false));
    let running = load(p.client(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. The mapping loses `title`: live within 2 s.
    map.update(&[(
        "scim-sidecar.toml",
        &v1.replace("title = \"job_title\"\n", ""),
    )]);
    let changed = Instant::now();
    assert!(
        eventually(Duration::from_secs(2), || async {
            !user_attributes(&client).await.contains(&"title".to_owned())
        })
        .await,
        "the new mapping is not live within 2 s"
    );
    println!("new mapping live after {:?}", changed.elapsed());
    assert_eq!(
        p.metric("scim_sidecar_config_reloads_total{result=\"success\"}")
            .await,
        1.0
    );

    // 2. A column that does not exist: the store refuses it; the previous mapping serves.
    map.update(&[(
        "scim-sidecar.toml",
        &v1.replace("title = \"job_title\"", "title = \"job_titel\""),
    )]);
    assert!(
        eventually(Duration::from_secs(3), || async {
            p.metric("scim_sidecar_config_reloads_total{result=\"failure\"}")
                .await
                == 1.0
        })
        .await
    );
    assert!(!user_attributes(&client).await.contains(&"title".to_owned()));
    let (status, body) = p.readyz().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("reload failed") && body.contains("previous config"),
        "{body}"
    );

    // 3. A file that does not parse: the same.
    map.update(&[("scim-sidecar.toml", "[listen\naddr = ")]);
    assert!(
        eventually(Duration::from_secs(3), || async {
            p.metric("scim_sidecar_config_reloads_total{result=\"failure\"}")
                .await
                == 2.0
        })
        .await
    );
    assert!(!user_attributes(&client).await.contains(&"title".to_owned()));

    // 4. Fixed: served again, and /readyz no longer says it failed.
    map.update(&[("scim-sidecar.toml", &v1)]);
    assert!(
        eventually(Duration::from_secs(3), || async {
            user_attributes(&client).await.contains(&"title".to_owned())
        })
        .await
    );
    let (_, body) = p.readyz().await;
    assert!(!body.contains("reload failed"), "{body}");

    // 5. SIGHUP reloads the file as it is.
    // SAFETY: kill(2) with the pid of the child this test started.
    unsafe {
        libc::kill(p.child.id() as i32, libc::SIGHUP);
    }
    assert!(
        eventually(Duration::from_secs(3), || async {
            p.metric("scim_sidecar_config_reloads_total{result=\"success\"}")
                .await
                == 3.0
        })
        .await
    );

    stop.store(true, Ordering::SeqCst);
    let (sent, failed) = running.await.expect("load");
    assert!(sent > 20, "the load ran: {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the reloads"
    );
}

/// cert-manager renews the certificate: the Secret volume's `..data` swaps to a new chain and
/// key. Within 2 s new connections get the new certificate (a client trusting only the new
/// CA connects; one trusting only the old does not), and TLS requests under load never fail.
#[tokio::test]
async fn r012_a_renewed_certificate_is_served_without_a_failed_request() {
    use crate::tls::{Pki, h1, read, request};
    use tokio_rustls::rustls::version::TLS13;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let dir = tempfile::tempdir().expect("tmp");
    let (old, new) = (Pki::new(), Pki::new());
    let (cert, key) = old.pem();
    let mut secret = Volume::new(
        &dir.path().join("tls"),
        &[("tls.crt", &cert), ("tls.key", &key)],
    );
    let config = dir.path().join("scim-sidecar.toml");
    std::fs::write(
        &config,
        quickstart()
            + &format!(
                "\n[listen.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                secret.path("tls.crt").display(),
                secret.path("tls.key").display()
            ),
    )
    .expect("config");
    let p = Process::start(&config, &dir.path().join("app.db"));
    let trusting = |cas: &[&Pki]| {
        let mut roots = RootCertStore::empty();
        for ca in cas {
            roots.add(ca.ca()).expect("root");
        }
        Arc::new(
            ClientConfig::builder_with_protocol_versions(&[&TLS13])
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let handshake = |cfg: Arc<ClientConfig>| {
        let addr = p.addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
        }
    };
    assert!(handshake(trusting(&[&old])).await.is_ok());
    assert!(handshake(trusting(&[&new])).await.is_err());

    // Load: a new TLS connection per request, trusting both CAs.
    let both = trusting(&[&old, &new]);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = p.addr;
    let running = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut sent, mut failed) = (0u64, 0u64);
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                sent += 1;
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let Ok(tls) = tokio_rustls::TlsConnector::from(both.clone())
                    .connect(name, tcp)
                    .await
                else {
                    failed += 1;
                    continue;
                };
                let mut h = h1(tls).await;
                let req = request(
                    addr,
                    http::Version::HTTP_11,
                    http::Method::GET,
                    "/scim/v2/Users?count=1",
                    true,
                    None,
                );
                let (parts, _) = read(h.send_request(req)).await;
                if parts.status != 200 {
                    failed += 1;
                }
            }
            (sent, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (cert, key) = new.pem();
    secret.update(&[("tls.crt", &cert), ("tls.key", &key)]);
    assert!(
        eventually(Duration::from_secs(2), || {
            let cfg = trusting(&[&new]);
            let h = handshake(cfg);
            async move { h.await.is_ok() }
        })
        .await,
        "the new certificate is not served within 2 s"
    );
    assert!(handshake(trusting(&[&old])).await.is_err());

    stop.store(true, Ordering::SeqCst);
    let (sent, failed) = running.await.expect("load");
    assert!(sent > 20, "the load ran: {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} TLS requests failed during the renewal"
    );
}
