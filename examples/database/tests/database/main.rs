//! The database lesson against a real PostgreSQL, started by the tests
//! (`throwaway.rs`). Its router is served in this process on the shared
//! serve loop, as the relay's tests serve the relay's, so that each test can
//! give it bounds of its own (a pool of three, a one-second deadline).
//!
//! One test crate, so that cargo runs the tests in parallel; each has its
//! own PostgreSQL server (on a socket in a directory of its own, and for
//! the TLS tests on a free TCP port), and serves the lesson on a port of
//! its own.

mod bounds;
mod hang_up;
mod routes;
mod table;
mod throwaway;
mod tls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gotham_examples_handlers_simple_async_handlers::serve;
use tokio::net::TcpListener;

use crate::example::{router, Bounds, Database, CONNECTIONS};

// The lesson itself, compiled in. Its `main` goes unused here.
#[allow(dead_code)]
#[path = "../../main.rs"]
mod example;

/// Far more than any answer here needs; the margin is wide on purpose.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The lesson's own bounds: its pool size, 10 s to wait, 10 s to run.
pub fn lesson_bounds() -> Bounds {
    Bounds {
        connections: CONNECTIONS,
        wait: Duration::from_secs(10),
        deadline: Duration::from_secs(10),
    }
}

/// Serves the lesson's router for the database `url` on a free port, as
/// `main` does; returns its address.
pub async fn serve_lesson(url: &str, bounds: Bounds) -> SocketAddr {
    let database = Database::new(url, bounds).expect("a usable URL");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(serve::serve(
        listener,
        router(database),
        futures::stream::pending(),
    ));
    addr
}

/// `verify-full` over TCP to `postgres` (started with TLS), trusting the
/// tests' authority: the strictest mode, for the tests that run over TLS.
pub fn verify_full_url(postgres: &throwaway::Postgres) -> String {
    format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        postgres.port(),
        postgres.certificates().authority.display()
    )
}

/// A GET's status and body, read in full.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (head, body) = ask(addr, "GET", path).await;
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
    (status, body)
}

/// Sends `method path` on a connection of its own, asks the server to
/// close it after the answer, and reads all it sends: the head (status
/// line and headers) and every byte after the blank line that ends it.
pub async fn ask(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("reads");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no complete head in {answer:?}"));
    (head.to_string(), body.to_string())
}

/// How many `pg_sleep` queries the server is running, not counting the
/// asker's own query.
pub async fn sleeps_running(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND query LIKE '%pg_sleep%' \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

/// Waits until `sleeps_running` is `wanted`; panics after `patience`.
pub async fn wait_for_sleeps(client: &tokio_postgres::Client, wanted: i64, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let running = sleeps_running(client).await;
        if running == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{running} pg_sleep queries still running after {patience:?}, {wanted} expected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
