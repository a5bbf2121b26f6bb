//! TLS client set-up shared by every outgoing connection the sidecar makes: PostgreSQL, JWKS
//! fetches, and next LDAPS and REST stores. One place decides the crypto provider (ring, as
//! the listener), the protocol versions, and how a CA file is read, so every client verifies
//! servers the same way and reports a bad CA file the same way.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A rustls client configuration trusting exactly the certificates of the PEM file `ca`
/// (and verifying the server's name against its certificate). `Err` names the file and what
/// is wrong with it.
pub fn client_config(ca: &Path) -> Result<ClientConfig, String> {
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {} is not PEM: {e}", ca.display()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "CA file {} holds no usable certificate",
            ca.display()
        ));
    }
    with_roots(roots)
}

/// A rustls client configuration trusting nothing: for a driver that needs one even when it
/// connects without TLS.
pub fn no_roots() -> Result<ClientConfig, String> {
    with_roots(RootCertStore::empty())
}

fn with_roots(roots: RootCertStore) -> Result<ClientConfig, String> {
    Ok(ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
