//! `cargo run --example legacy-admin-api`: the legacy admin API that `examples/rest/` provisions
//! through (see `api.rs` for its routes and quirks).
//!
//! Listens on `${LEGACY_API_LISTEN:-127.0.0.1:3001}`, accepts the key in `${REST_API_KEY}` as
//! `X-API-Key`, and keeps its data in the SQLite file `${LEGACY_API_DB}` (in memory when unset).

mod api;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<(), String> {
    let listen = std::env::var("LEGACY_API_LISTEN").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let key = std::env::var("REST_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or("set REST_API_KEY to the API key this app accepts (export REST_API_KEY=$(openssl rand -hex 16))")?;
    let db = std::env::var_os("LEGACY_API_DB").map(PathBuf::from);
    let api = Arc::new(api::Api::open(db.as_deref(), &key)?);
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e} (set LEGACY_API_LISTEN)"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "legacy-admin-api on http://{addr} (X-API-Key from REST_API_KEY; data in {}); Ctrl-C stops it",
        db.as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "memory".into())
    );
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    api::serve(listener, api, stop).await;
    Ok(())
}
