//! TLS termination on the main listener: a client that trusts the issuing CA reaches SCIM and
//! the app over TLS 1.3 and 1.2, HTTP/1.1 and HTTP/2 (ALPN), and SCIM's URLs say `https://`;
//! bad TLS files are refused before the sidecar serves anything.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, ServerName};
use scim_sidecar::config::{self, Tls};
use scim_sidecar::proxy::{Body, full};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::version::{TLS12, TLS13};
use tokio_rustls::rustls::{
    ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion,
};

use crate::support::{self, Options, Sidecar, TOKEN};

/// Bound on any single exchange, so that a broken server fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(30);

/// A CA and a leaf certificate for `127.0.0.1` and `localhost`, as PEM files in a tempdir.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
}

impl Pki {
    /// Writes `cert.pem` (leaf then CA), `key.pem` (the leaf's key) and `other-key.pem` (a key
    /// that belongs to no certificate).
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");

        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write PEM");
        };
        write("cert.pem", leaf.pem() + &ca_cert.pem());
        write("key.pem", leaf_key.serialize_pem());
        let other = KeyPair::generate().expect("other key");
        write("other-key.pem", other.serialize_pem());
        Pki {
            ca: ca_cert.der().clone(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The certificate chain and the key, as PEM text (what a TLS Secret holds).
    pub(crate) fn pem(&self) -> (String, String) {
        let read = |name: &str| std::fs::read_to_string(self.path(name)).expect("PEM");
        (read("cert.pem"), read("key.pem"))
    }

    /// The CA, for a client that trusts several.
    pub(crate) fn ca(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    pub(crate) fn tls(&self) -> Tls {
        Tls {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
        }
    }

    /// A client config trusting only this CA, for `versions`, offering `alpn`.
    pub(crate) fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("CA into root store");
        let mut cfg = ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// The quickstart with TLS on its main listener.
pub(crate) async fn tls_sidecar(pki: &Pki) -> Sidecar {
    let tls = pki.tls();
    Sidecar::start(Options {
        tweak: Some(Box::new(move |c| c.listen.tls = Some(tls))),
        ..Options::default()
    })
    .await
}

/// Connects and completes the TLS handshake, verifying the server as `127.0.0.1`.
pub(crate) async fn connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::IpAddress(addr.ip().into());
    tokio::time::timeout(GUARD, TlsConnector::from(cfg).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("TLS handshake")
}

fn version(tls: &TlsStream<TcpStream>) -> Option<ProtocolVersion> {
    tls.get_ref().1.protocol_version()
}

fn alpn(tls: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// HTTP/1.1 over an established TLS stream.
pub(crate) async fn h1(tls: TlsStream<TcpStream>) -> http1::SendRequest<Body> {
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    sender
}

/// HTTP/2 over an established TLS stream.
async fn h2(tls: TlsStream<TcpStream>) -> http2::SendRequest<Body> {
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    sender
}

/// A request as an identity provider sends it: origin-form with `Host` for HTTP/1.1, absolute
/// `https://` URI (`:scheme`, `:authority`) for HTTP/2.
pub(crate) fn request(
    addr: SocketAddr,
    v: Version,
    method: Method,
    path: &str,
    token: bool,
    body: Option<Value>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).version(v);
    b = if v == Version::HTTP_2 {
        b.uri(format!("https://{addr}{path}"))
    } else {
        b.uri(path).header("host", addr.to_string())
    };
    if token {
        b = b.header("authorization", format!("Bearer {TOKEN}"));
    }
    let body = match body {
        Some(j) => {
            b = b.header("content-type", "application/scim+json");
            Bytes::from(j.to_string())
        }
        None => Bytes::new(),
    };
    b.body(full(body)).expect("request")
}

/// The answer, read in full.
pub(crate) async fn read(
    fut: impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
) -> (http::response::Parts, Bytes) {
    tokio::time::timeout(GUARD, async {
        let resp = fut.await.expect("response");
        let (parts, body) = resp.into_parts();
        (parts, body.collect().await.expect("body").to_bytes())
    })
    .await
    .expect("answer in time")
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Over TLS 1.3, a SCIM request with the token gets 200 and a ListResponse, and one without
/// it gets 401, both on the same TLS connection.
#[tokio::test]
async fn scim_over_tls13() {
    let pki = Pki::new();
    let s = tls_sidecar(&pki).await;
    let tls = connect(s.addr, pki.client(&[&TLS13], &[])).await;
    assert_eq!(version(&tls), Some(ProtocolVersion::TLSv1_3));
    let mut c = h1(tls).await;

    let v = Version::HTTP_11;
    let (parts, body) = read(c.send_request(request(
        s.addr,
        v,
        Method::GET,
        "/scim/v2/Users",
        true,
        None,
    )))
    .await;
    assert_eq!(parts.status, StatusCode::OK, "{body:?}");
    assert_eq!(json(&body)["schemas"][0], LIST_RESPONSE);

    let (parts, body) = read(c.send_request(request(
        s.addr,
        v,
        Method::GET,
        "/scim/v2/Users",
        false,
        None,
    )))
    .await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["status"], "401");
}

/// Pass-through traffic over TLS reaches the app as plain HTTP/1.1 with
/// `X-Forwarded-Proto: https`, the client's `Host`, and its path and query unchanged.
#[tokio::test]
async fn pass_through_over_tls_says_https_to_the_app() {
    let pki = Pki::new();
    let s = tls_sidecar(&pki).await;
    let mut c = h1(connect(s.addr, pki.client(&[&TLS13, &TLS12], &[])).await).await;
    let (parts, body) = read(c.send_request(request(
        s.addr,
        Version::HTTP_11,
        Method::GET,
        "/echo/x?q=1",
        false,
        None,
    )))
    .await;
    assert_eq!(parts.status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["path"], "/echo/x?q=1");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    assert_eq!(v["headers"]["host"], s.addr.to_string());
}

/// A client limited to TLS 1.2 negotiates TLS 1.2 and is served: SCIM answers 200 and the
/// app's answer passes through.
#[tokio::test]
async fn tls12_client_is_served() {
    let pki = Pki::new();
    let s = tls_sidecar(&pki).await;
    let tls = connect(s.addr, pki.client(&[&TLS12], &[])).await;
    assert_eq!(version(&tls), Some(ProtocolVersion::TLSv1_2));
    let mut c = h1(tls).await;
    let v = Version::HTTP_11;
    let (parts, body) = read(c.send_request(request(
        s.addr,
        v,
        Method::GET,
        "/scim/v2/Users",
        true,
        None,
    )))
    .await;
    assert_eq!(parts.status, StatusCode::OK, "{body:?}");
    assert_eq!(json(&body)["schemas"][0], LIST_RESPONSE);
    let (parts, body) =
        read(c.send_request(request(s.addr, v, Method::GET, "/echo", false, None))).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(json(&body)["headers"]["x-forwarded-proto"], "https");
}

/// A client offering `h2` and `http/1.1` gets `h2` by ALPN, and HTTP/2 works over it for SCIM
/// (200) and pass-through (the app sees HTTP/1.1 with `X-Forwarded-Proto: https` and the
/// `:authority` as `Host`). A client offering only `http/1.1`, or no ALPN at all, gets
/// HTTP/1.1.
#[tokio::test]
async fn alpn_negotiates_h2_when_offered() {
    let pki = Pki::new();
    let s = tls_sidecar(&pki).await;
    let tls = connect(s.addr, pki.client(&[&TLS13, &TLS12], &[b"h2", b"http/1.1"])).await;
    assert_eq!(alpn(&tls).as_deref(), Some(&b"h2"[..]));
    let mut c = h2(tls).await;
    let v = Version::HTTP_2;
    let (parts, body) = read(c.send_request(request(
        s.addr,
        v,
        Method::GET,
        "/scim/v2/Users",
        true,
        None,
    )))
    .await;
    assert_eq!(parts.status, StatusCode::OK, "{body:?}");
    assert_eq!(parts.version, Version::HTTP_2);
    assert_eq!(json(&body)["schemas"][0], LIST_RESPONSE);

    let (parts, body) =
        read(c.send_request(request(s.addr, v, Method::GET, "/echo?h2=1", false, None))).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.version, Version::HTTP_2);
    let e = json(&body);
    assert_eq!(e["version"], "HTTP/1.1");
    assert_eq!(e["path"], "/echo?h2=1");
    assert_eq!(e["headers"]["x-forwarded-proto"], "https");
    assert_eq!(e["headers"]["host"], s.addr.to_string());

    for offer in [&[&b"http/1.1"[..]][..], &[]] {
        let tls = connect(s.addr, pki.client(&[&TLS13], offer)).await;
        let expected = (!offer.is_empty()).then(|| b"http/1.1".to_vec());
        assert_eq!(alpn(&tls), expected);
        let mut c = h1(tls).await;
        let (parts, _) = read(c.send_request(request(
            s.addr,
            Version::HTTP_11,
            Method::GET,
            "/scim/v2/Users",
            true,
            None,
        )))
        .await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(parts.version, Version::HTTP_11);
    }
}

/// Over TLS, a created resource's `Location` header and `meta.location` are `https://` URLs
/// on the host the client used, over HTTP/1.1 (`Host`) and HTTP/2 (`:authority`) alike, and
/// a GET of that URL returns the same `meta.location`.
#[tokio::test]
async fn locations_use_https() {
    let pki = Pki::new();
    let s = tls_sidecar(&pki).await;
    let prefix = format!("https://{}/scim/v2/Users/", s.addr);

    let mut c1 = h1(connect(s.addr, pki.client(&[&TLS13], &[b"http/1.1"])).await).await;
    let mut c2 = h2(connect(s.addr, pki.client(&[&TLS13], &[b"h2"])).await).await;
    let user = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});

    let (parts, body) = read(c1.send_request(request(
        s.addr,
        Version::HTTP_11,
        Method::POST,
        "/scim/v2/Users",
        true,
        Some(user("tls-h1@example.com")),
    )))
    .await;
    assert_eq!(parts.status, StatusCode::CREATED, "{body:?}");
    let b = json(&body);
    let id = b["id"].as_str().expect("id");
    let location = format!("{prefix}{id}");
    assert_eq!(parts.headers["location"], location.as_str());
    assert_eq!(b["meta"]["location"], location.as_str());

    let (parts, body) = read(c2.send_request(request(
        s.addr,
        Version::HTTP_2,
        Method::POST,
        "/scim/v2/Users",
        true,
        Some(user("tls-h2@example.com")),
    )))
    .await;
    assert_eq!(parts.status, StatusCode::CREATED, "{body:?}");
    let b = json(&body);
    let id2 = b["id"].as_str().expect("id");
    let location2 = format!("{prefix}{id2}");
    assert_eq!(parts.headers["location"], location2.as_str());
    assert_eq!(b["meta"]["location"], location2.as_str());

    let path = format!("/scim/v2/Users/{id}");
    let (parts, body) = read(c2.send_request(request(
        s.addr,
        Version::HTTP_2,
        Method::GET,
        &path,
        true,
        None,
    )))
    .await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(json(&body)["meta"]["location"], location.as_str());
}

/// A config whose `listen.tls.cert` names a file that does not exist is refused by
/// `config::load`, with an error that names the file and points at the line; the same config
/// with the file present loads, so the missing file is the only problem.
#[tokio::test]
async fn missing_cert_file_is_refused_at_config_load() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let env: HashMap<String, String> = support::quickstart_env(
        &dir.path().join("app.db"),
        "127.0.0.1:9".parse().expect("addr"),
    );
    let write = |name: &str, cert: &std::path::Path| {
        let toml = format!(
            "[listen]\n\
             addr = \"${{SCIM_SIDECAR_LISTEN}}\"\n\
             tls = {{ cert = \"{}\", key = \"{}\" }}\n\
             \n\
             [auth]\n\
             bearer_tokens = [\"${{SCIM_TOKEN}}\"]\n\
             \n\
             [backend.app]\n\
             type = \"sqlite\"\n\
             path = \"${{QUICKSTART_DB}}\"\n\
             \n\
             [resource.User]\n\
             backend = \"app\"\n\
             table = \"accounts\"\n\
             key = \"id\"\n\
             map = {{ userName = \"login\" }}\n",
            cert.display(),
            pki.path("key.pem").display(),
        );
        let path = dir.path().join(name);
        std::fs::write(&path, toml).expect("write config");
        path
    };

    let good = write("good.toml", &pki.path("cert.pem"));
    if let Err(p) = config::load(&good, &env) {
        panic!("the control config must load:\n{}", config::report(&p));
    }

    let missing = pki.path("no-such-cert.pem");
    let bad = write("bad.toml", &missing);
    let problems = match config::load(&bad, &env) {
        Ok(_) => panic!("a missing certificate file must be refused"),
        Err(p) => p,
    };
    let errors: Vec<_> = problems.iter().filter(|p| !p.warning).collect();
    assert_eq!(errors.len(), 1, "{}", config::report(&problems));
    let e = errors[0];
    assert!(
        e.message.contains(&missing.display().to_string()),
        "{}",
        e.message
    );
    assert!(e.message.contains("does not exist"), "{}", e.message);
    assert_eq!(e.origin.line, 3, "{e}");
    let report = config::report(&problems);
    assert!(report.contains(&bad.display().to_string()), "{report}");
}

/// A key that does not belong to the certificate passes config load (both files exist) but
/// is refused when the sidecar starts, with a message naming both files.
#[tokio::test]
async fn mismatched_key_is_refused_at_start() {
    support::init();
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = support::quickstart_env(
        &dir.path().join("app.db"),
        "127.0.0.1:9".parse().expect("addr"),
    );
    let mut cfg = match config::load(&support::quickstart_config(), &env) {
        Ok(c) => c,
        Err(p) => panic!("quickstart does not load:\n{}", config::report(&p)),
    };
    cfg.listen.tls = Some(Tls {
        cert: pki.path("cert.pem"),
        key: pki.path("other-key.pem"),
    });
    let err = match scim_sidecar::server::start(&cfg).await {
        Ok(_) => panic!("a certificate with the wrong key must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("do not match"), "{err}");
    assert!(
        err.contains(&pki.path("cert.pem").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(&pki.path("other-key.pem").display().to_string()),
        "{err}"
    );
}
