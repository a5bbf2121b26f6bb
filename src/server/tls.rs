//! TLS termination: builds the rustls server configuration from PEM files.
//!
//! Responsibility: read the certificate chain and private key named in the
//! sidecar's configuration and turn them into a [`ServerConfig`] (ring
//! provider, TLS 1.3 and 1.2, no client auth, ALPN `h2` then `http/1.1`).
//! Every failure is a one-line message that names the file and the fix, fit
//! to print at startup.
//!
//! Caller: the server start-up code, once, before it accepts connections.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::version::{TLS12, TLS13};
use tokio_rustls::rustls::{self, ServerConfig};

/// Loads the certificate chain (`cert_pem`, leaf first) and its private key
/// (`key_pem`, PKCS#8, PKCS#1 or SEC1) into a TLS server configuration.
///
/// Errors are human-readable, e.g.
/// `cannot read TLS certificate /x/cert.pem: No such file or directory` or
/// `TLS certificate and key do not match`.
pub fn load_server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(cert_pem)?;
    let key = read_key(key_pem)?;

    let mut cfg = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|e| format!("cannot set up TLS (protocol versions): {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => format!(
                "TLS certificate and key do not match: the first certificate in {} must be \
                 the one issued for the private key in {}",
                cert_pem.display(),
                key_pem.display()
            ),
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                format!(
                    "{} holds a TLS certificate that cannot be parsed ({e}); \
                     expected a PEM-encoded X.509 certificate chain, leaf first",
                    cert_pem.display()
                )
            }
            other => format!(
                "{} holds a private key that cannot be used ({other}); \
                 expected an RSA, ECDSA (P-256/P-384) or Ed25519 key in PEM",
                key_pem.display()
            ),
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error("cannot read TLS certificate", path, e))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("cannot read TLS certificate", path, e))?;
    if certs.is_empty() {
        let mut msg = format!(
            "{} holds no PEM certificate (expected \"-----BEGIN CERTIFICATE-----\")",
            path.display()
        );
        if PrivateKeyDer::from_pem_file(path).is_ok() {
            msg.push_str(
                "; it holds a private key instead: are the certificate and key paths swapped?",
            );
        }
        return Err(msg);
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "{} holds no private key (expected \"-----BEGIN PRIVATE KEY-----\", \
             \"-----BEGIN RSA PRIVATE KEY-----\" or \"-----BEGIN EC PRIVATE KEY-----\")",
            path.display()
        ),
        other => pem_error("cannot read TLS private key", path, other),
    })
}

fn pem_error(what: &str, path: &Path, e: pem::Error) -> String {
    match e {
        pem::Error::Io(io) => format!("{what} {}: {}", path.display(), io_reason(&io)),
        other => format!("{what} {}: malformed PEM ({other})", path.display()),
    }
}

/// The OS message without the trailing ` (os error N)`.
fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() && s.ends_with(')') => s[..i].to_owned(),
        _ => s,
    }
}
