//! One external token issuer (`[[auth.jwt]]`) and its signing keys.
//!
//! Keys come from a JWK set file (read once at start-up) or a `jwks_url`. A URL is fetched at
//! start-up and cached by `kid`; a token naming a `kid` the cache does not hold — the issuer
//! rotated its keys — triggers one refetch, at most every `jwks_refresh_min`, so a flood of
//! forged `kid`s cannot turn the sidecar into a load generator against the issuer. Cached keys
//! older than [`MAX_AGE`] are refreshed on the next request (under the same limit), so a key
//! the issuer withdrew stops verifying; when a refresh fails the old keys stay in use.
//!
//! The fetch is a single HTTP/1.1 GET through hyper, with TLS by rustls (ring) against the
//! configured CA bundle for `https` URLs; the sidecar ships no root store of its own.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::AuthError;
use super::jwt::{self, Alg, Jwk};
use crate::config::{JwtIssuer, KeySource};

/// Cached keys older than this are refreshed on the next request.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// A JWK set larger than this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Time for one JWKS fetch, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Cache {
    keys: Arc<Vec<Jwk>>,
    /// Last successful fetch.
    fetched: Option<Instant>,
    /// Last attempt, successful or not.
    attempted: Option<Instant>,
}

/// An issuer's settings and key cache.
pub struct Issuer {
    /// The settings.
    pub config: JwtIssuer,
    url: Option<(Uri, Option<TlsConnector>)>,
    cache: RwLock<Cache>,
    fetching: tokio::sync::Mutex<()>,
}

impl Issuer {
    /// Prepares an issuer: reads a `jwks_file`, or builds the TLS client for a `jwks_url`
    /// (the first fetch is [`Issuer::prefetch`]). `Err` says what is wrong, for the config
    /// report.
    pub fn new(config: JwtIssuer) -> Result<Issuer, String> {
        let mut cache = Cache::default();
        let url = match &config.keys {
            KeySource::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read jwks_file {}: {e}", path.display()))?;
                let keys = jwt::parse_jwks(&bytes)
                    .map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
                cache.keys = Arc::new(keys);
                cache.fetched = Some(Instant::now());
                None
            }
            KeySource::Url { url, ca } => {
                let tls = match ca {
                    Some(ca) => Some(tls_connector(ca)?),
                    None => None,
                };
                Some((url.clone(), tls))
            }
        };
        Ok(Issuer {
            config,
            url,
            cache: RwLock::new(cache),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The first fetch of a `jwks_url`, at start-up. A failure is logged, not fatal: the
    /// issuer may be unreachable for a moment, and the next token retries.
    pub async fn prefetch(&self) {
        if self.url.is_some() {
            let _guard = self.fetching.lock().await;
            self.refresh().await;
        }
    }

    /// The keys that may verify a token with `kid` and `alg`: the one with that `kid`, or,
    /// for a token without `kid`, every key that fits `alg`.
    ///
    /// Errors: [`AuthError::UnknownKid`] when no key fits even after a refetch (or a refetch
    /// was not allowed yet); [`AuthError::KeysUnavailable`] when no key set could ever be
    /// fetched.
    pub async fn keys_for(&self, kid: Option<&str>, alg: Alg) -> Result<Vec<Jwk>, AuthError> {
        let pick = |keys: &[Jwk]| -> Vec<Jwk> {
            keys.iter()
                .filter(|k| k.fits(alg) && (kid.is_none() || k.kid.as_deref() == kid))
                .cloned()
                .collect()
        };
        let (found, stale) = {
            let c = self.read();
            (
                pick(&c.keys),
                c.fetched.is_none_or(|t| t.elapsed() > MAX_AGE),
            )
        };
        if (found.is_empty() || stale) && self.url.is_some() && self.may_fetch() {
            let _guard = self.fetching.lock().await;
            // Another request may have refreshed while this one waited.
            if self.may_fetch() {
                self.refresh().await;
            }
            let c = self.read();
            let found = pick(&c.keys);
            if !found.is_empty() {
                return Ok(found);
            }
            return Err(if c.fetched.is_none() {
                AuthError::KeysUnavailable
            } else {
                AuthError::UnknownKid
            });
        }
        if found.is_empty() {
            if self.read().fetched.is_none() {
                return Err(AuthError::KeysUnavailable);
            }
            return Err(AuthError::UnknownKid);
        }
        Ok(found)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        // A poisoned lock only means a panic elsewhere while holding it; the data is a
        // plain snapshot and stays usable.
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn may_fetch(&self) -> bool {
        self.read()
            .attempted
            .is_none_or(|t| t.elapsed() >= self.config.refresh_min)
    }

    /// Fetches the key set and replaces the cache on success. Call with `fetching` held.
    async fn refresh(&self) {
        let Some((url, tls)) = &self.url else { return };
        {
            let mut c = self.cache.write().unwrap_or_else(|p| p.into_inner());
            c.attempted = Some(Instant::now());
        }
        let result = tokio::time::timeout(FETCH_TIMEOUT, fetch(url, tls.as_ref()))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
            .and_then(|b| jwt::parse_jwks(&b));
        match result {
            Ok(keys) => {
                tracing::info!(issuer = %self.config.issuer, jwks_url = %url, keys = keys.len(), "fetched the issuer's signing keys");
                let mut c = self.cache.write().unwrap_or_else(|p| p.into_inner());
                c.keys = Arc::new(keys);
                c.fetched = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, jwks_url = %url, error = %e, "cannot fetch the issuer's signing keys");
            }
        }
    }
}

/// A rustls client trusting the certificates in `ca` (PEM).
fn tls_connector(ca: &Path) -> Result<TlsConnector, String> {
    Ok(TlsConnector::from(Arc::new(crate::tls::client_config(ca)?)))
}

/// GETs `url` and returns the body of a 200 answer.
async fn fetch(url: &Uri, tls: Option<&TlsConnector>) -> Result<Bytes, String> {
    let host = url.host().ok_or("the URL has no host")?;
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let authority = url.authority().map_or(host, |a| a.as_str()).to_owned();
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("scim-sidecar/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if https {
        let tls = tls.ok_or("an https jwks_url needs a CA bundle (`ca`)")?;
        let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(|e| format!("bad host name: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<I>(io: I, req: http::Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = resp.status();
    if status != http::StatusCode::OK {
        driver.abort();
        return Err(format!("answered {status}"));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    driver.abort();
    Ok(body)
}
