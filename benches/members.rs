//! Memory of large groups: what the sidecar's RSS does while clients read a group with many
//! members, and after.
//!
//! ```text
//! cargo bench --bench members                      # a 100,000-member group, 16 readers
//! BENCH_MEMBERS=55000 BENCH_READERS=32 cargo bench --bench members
//! BENCH_BINARY=/tmp/old/scim-sidecar cargo bench --bench members   # another build
//! ```
//!
//! It builds the quickstart's SQLite database directly (N users in `accounts`, all members of
//! one role), starts the release binary on it, and prints, each phase in turn:
//!
//! - **idle**: `VmRSS` once ready;
//! - **one GET** of the group with its members: status, bytes, time, RSS after;
//! - **R concurrent GETs** of it: statuses, the peak RSS sampled every 50 ms;
//! - **R concurrent list pages** `GET /Groups` (members included): the same;
//! - **after**: RSS two seconds after the last response;
//! - **excludedAttributes=members**: one GET as Entra ID sends it, for comparison.
//!
//! Statuses other than 200 are counted and shown (a group over `[scim].max_members` is
//! refused with 400 `tooMany`: the figure then shows what the refusal costs).

#[path = "support/mod.rs"]
mod support;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::{RssSampler, Sidecar, TOKEN, proc_status_kib};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// The quickstart's database with `n` users, every one a member of role 2 (`big`).
fn database(path: &Path, n: u64) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/schema.sql");
    let mut c = rusqlite::Connection::open(path).expect("db");
    c.execute_batch(&std::fs::read_to_string(schema).expect("schema"))
        .expect("schema");
    let tx = c.transaction().expect("tx");
    tx.execute("INSERT INTO roles (id, name) VALUES (2, 'big')", [])
        .expect("role");
    {
        let mut user = tx
            .prepare("INSERT INTO accounts (id, login, status) VALUES (?1, ?2, 'A')")
            .expect("prepare");
        let mut member = tx
            .prepare("INSERT INTO account_roles (role_id, account_id) VALUES (2, ?1)")
            .expect("prepare");
        for i in 0..n {
            let id = 1000 + i as i64;
            user.execute(rusqlite::params![id, format!("member-{i:07}@example.com")])
                .expect("user");
            member.execute([id]).expect("member");
        }
    }
    tx.commit().expect("commit");
}

/// One GET with the bench token; the status and the body's length.
fn get(addr: SocketAddr, path: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let status = std::str::from_utf8(out.get(9..12).unwrap_or(b"000"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out.len())
}

/// `readers` concurrent GETs of `path`; their statuses and the peak RSS meanwhile.
fn concurrent(s: &Sidecar, path: &str, readers: u64) -> (Vec<u16>, u64, Duration) {
    let sampler = RssSampler::start(s.proc.pid);
    let t0 = Instant::now();
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (addr, path) = (s.addr, path.to_owned());
            std::thread::spawn(move || get(addr, &path).0)
        })
        .collect();
    let statuses = threads.into_iter().map(|t| t.join().unwrap_or(0)).collect();
    let took = t0.elapsed();
    (statuses, sampler.stop(), took)
}

fn summary(statuses: &[u16]) -> String {
    let mut counts: Vec<(u16, usize)> = Vec::new();
    for s in statuses {
        match counts.iter_mut().find(|(c, _)| c == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((*s, 1)),
        }
    }
    counts
        .iter()
        .map(|(c, n)| format!("{n}×{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() {
    let members = env_num("BENCH_MEMBERS", 100_000);
    let readers = env_num("BENCH_READERS", 16);
    let config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/scim-sidecar.toml");
    support::print_intro("scim-sidecar large-group memory bench", &config);
    println!("  members: {members}, concurrent readers: {readers}");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let t0 = Instant::now();
    database(&db, members);
    println!("  database built in {:.1} s", t0.elapsed().as_secs_f64());
    let (s, _) = Sidecar::start(
        dir,
        &config,
        "http://127.0.0.1:9",
        &[("QUICKSTART_DB", OsStr::new(&db))],
    );
    let pid = s.proc.pid;
    let rss = || proc_status_kib(pid, "VmRSS").unwrap_or(0);
    println!("idle                           RSS {}", mib(rss()));

    let t = Instant::now();
    let (status, bytes) = get(s.addr, "/scim/v2/Groups/2");
    println!(
        "one GET /Groups/2               {status}, {bytes} bytes in {:.0} ms, RSS after {}",
        t.elapsed().as_secs_f64() * 1e3,
        mib(rss())
    );
    let (st, peak, took) = concurrent(&s, "/scim/v2/Groups/2", readers);
    println!(
        "{readers} concurrent GET /Groups/2    {} in {:.1} s, peak RSS {}",
        summary(&st),
        took.as_secs_f64(),
        mib(peak)
    );
    let (st, peak, took) = concurrent(&s, "/scim/v2/Groups", readers);
    println!(
        "{readers} concurrent GET /Groups      {} in {:.1} s, peak RSS {}",
        summary(&st),
        took.as_secs_f64(),
        mib(peak)
    );
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "after (2 s)                    RSS {}, high-water mark {}",
        mib(rss()),
        mib(proc_status_kib(pid, "VmHWM").unwrap_or(0))
    );
    let t = Instant::now();
    let (status, bytes) = get(s.addr, "/scim/v2/Groups/2?excludedAttributes=members");
    println!(
        "GET ?excludedAttributes=members {status}, {bytes} bytes in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    s.print_log();
}
