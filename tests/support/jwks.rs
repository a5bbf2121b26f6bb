//! A loopback HTTP server publishing a JWK set, as an identity provider's `jwks_uri` does:
//! the set can be changed while it runs (key rotation), and it counts the fetches.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A running JWKS server.
pub struct JwksServer {
    /// Where it listens.
    pub addr: SocketAddr,
    keys: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Serves `{"keys": keys}` at every path.
    pub async fn start(keys: Vec<Value>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let keys = Arc::new(Mutex::new(keys));
        let hits = Arc::new(AtomicUsize::new(0));
        let (k, h) = (keys.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (k, h) = (k.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let body = json!({"keys": *k.lock().expect("lock")}).to_string();
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = StatusCode::OK;
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        JwksServer { addr, keys, hits }
    }

    /// The `jwks_url`.
    pub fn url(&self) -> String {
        format!("http://{}/keys", self.addr)
    }

    /// Replaces the published keys (rotation).
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("lock") = keys;
    }

    /// How many times the set was fetched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
