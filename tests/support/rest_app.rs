//! The legacy admin API (`examples/legacy-admin-api/`), started in-process on a loopback port
//! for tests of the REST store: the same program a user starts with `cargo run --example
//! legacy-admin-api`, over its own in-memory SQLite database. Tests read that database to see
//! what the app holds, count the requests it got, inject failures, and stop and restart it.
#![allow(dead_code)]

#[path = "../../examples/legacy-admin-api/api.rs"]
mod api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use api::{Api, Faults};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running legacy admin API; stopped when dropped.
pub struct RestApp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    /// The key it accepts in `X-API-Key`.
    pub api_key: String,
    /// Where it listens.
    pub addr: SocketAddr,
    api: Arc<Api>,
    stop: Option<watch::Sender<bool>>,
}

impl RestApp {
    /// Starts the app with a fresh database and a random key.
    pub async fn start() -> RestApp {
        let api_key = format!("key-{:016x}", rand_u64());
        let api = Arc::new(Api::open(None, &api_key).expect("open the app's database"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let mut app = RestApp {
            base_url: format!("http://{addr}"),
            api_key,
            addr,
            api,
            stop: None,
        };
        app.serve(listener);
        app
    }

    fn serve(&mut self, listener: TcpListener) {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(api::serve(listener, self.api.clone(), rx));
        self.stop = Some(tx);
    }

    /// Stops listening and closes every open connection (the app is down; its data stays).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Listens again on the same port, with the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the app's port again");
        self.serve(listener);
    }

    /// Failures to inject: `faults().fail_next(2, 503)`, `faults().delay(…)`.
    pub fn faults(&self) -> &Faults {
        &self.api.faults
    }

    /// Rows of `query` over the app's own tables (`users`, `groups`, `members`, `audit`), as
    /// text.
    pub fn sql(&self, query: &str) -> Vec<Vec<String>> {
        self.api.sql(query)
    }

    /// Requests that matched `route` (`"GET /users.json"`, `"PUT /users/{id}.json"`).
    pub fn hits(&self, route: &str) -> u64 {
        self.api.hits(route)
    }

    /// Forgets the request counts.
    pub fn reset_hits(&self) {
        self.api.reset_hits()
    }
}

impl Drop for RestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
    }
}

/// `examples/rest` as a user runs it: the sidecar in front of a fresh legacy admin API (held
/// in [`super::Sidecar::rest`]), its kept values in an SQLite state database made by `migrate`.
pub async fn example() -> super::Sidecar {
    let app = RestApp::start().await;
    let state = tempfile::Builder::new()
        .prefix("rest-state-")
        .suffix(".db")
        .tempfile()
        .expect("state db");
    let mut s = super::Sidecar::start(super::Options {
        config: Some(super::example_config("rest")),
        env: vec![
            ("REST_BASE_URL", app.base_url.clone()),
            ("REST_API_KEY", app.api_key.clone()),
            ("SCIM_SIDECAR_STATE", state.path().display().to_string()),
        ],
        migrate: true,
        ..Default::default()
    })
    .await;
    s.rest = Some(app);
    s.keep(state);
    s
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random");
    u64::from_le_bytes(b)
}
