//! What waiting on a database costs, the async way and gotham's blocking
//! way, against a throwaway PostgreSQL started for the run.
//!
//! - `async` is the database lesson (`examples/database/`): tokio-postgres
//!   through a deadpool pool, its handler's future waiting on the socket.
//! - `diesel` is gotham's own answer, `gotham_middleware_diesel`: diesel's
//!   PostgreSQL backend (libpq) over an r2d2 pool, each query run by
//!   `Repo::run` on tokio's blocking pool (`spawn_blocking`), which holds a
//!   thread for the whole wait: for the connection, then for the query. It
//!   is the package `diesel_peer/`, built here (into a target folder of its
//!   own) the first time the comparison runs.
//!
//! N clients ask `/sleep?seconds=1` at once; each server has the same pool
//! of P connections and waits the same time W for one, long enough (N/P
//! seconds and more) that the wait does not decide the result. Each server
//! runs in a process of its own; the run counts the answers by status, the
//! most threads and memory the server had, and when the last answer came.
//! A second, small run asks one `/sleep?seconds=30`, hangs up once
//! PostgreSQL runs it, and looks a second later whether it still runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gotham_examples_handlers_simple_async_handlers::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::database_example::{self, Bounds, Database};
use crate::probe;
use crate::throwaway::Postgres;

/// The lesson's pool size, on both sides.
pub const POOL: usize = database_example::CONNECTIONS;
/// The full run's N.
pub const N: usize = 1_000;

/// The two ways, as the table names them (the first is served by this
/// binary, run with `--serve-database`; the second by the diesel peer).
const WAYS: [&str; 2] = ["async", "diesel"];

/// One server's figures.
struct Measured {
    way: &'static str,
    statuses: BTreeMap<String, usize>,
    last_answer: Duration,
    threads: u64,
    peak_rss_kib: u64,
    after_hang_up: String,
}

/// The comparison's columns in `database.csv`, keyed as `results.csv` is:
/// the way first, then N (and P and the wait, which a row also depends on).
const HEADER: &str = "way,N,P,pool wait s,answers,last answer s,threads at most,\
peak RSS MiB,a hang-up mid-query";

/// Runs the comparison with `n` clients and a pool of `pool`, and returns
/// its table, and its rows for `database.csv`; or why it cannot run here.
///
/// The pool wait is N/P seconds and 20 more unless `wait` gives one: a
/// shorter one shows what each way answers when the wait runs out.
pub async fn compare(
    n: usize,
    pool: usize,
    wait: Option<Duration>,
) -> Result<(String, Vec<String>), String> {
    let Some(postgres) = Postgres::start().await else {
        return Err("PostgreSQL's server binaries are not installed (package `postgresql`)".into());
    };
    let wait = wait.unwrap_or(Duration::from_secs((n / pool.max(1)) as u64 + 20));
    let watcher = postgres.connect().await;
    let mut rows = Vec::new();
    for way in WAYS {
        eprintln!("database, {way}: N = {n}, P = {pool}, pool wait {wait:?} ...");
        let mut server = Server::start(way, &postgres.url(), pool, wait)?;
        // One request first, so that both start with their pool warm.
        let warm = ask(server.addr, "/sleep?seconds=0").await;
        if warm != "200" {
            return Err(format!("{way}: the first request got {warm}"));
        }
        let sampler = probe::PeakSampler::start(server.child.id());
        let started = Instant::now();
        let clients: Vec<_> = (0..n)
            .map(|_| {
                let addr = server.addr;
                tokio::spawn(async move { ask(addr, "/sleep?seconds=1").await })
            })
            .collect();
        let mut statuses = BTreeMap::new();
        for client in clients {
            let status = client.await.unwrap_or_else(|_| "lost".to_string());
            *statuses.entry(status).or_insert(0) += 1;
        }
        let last_answer = started.elapsed();
        let peak = sampler.stop();
        let after_hang_up = hang_up(&server, &watcher).await;
        server.stop();
        rows.push(Measured {
            way,
            statuses,
            last_answer,
            threads: peak.threads,
            peak_rss_kib: peak.peak_rss_kib,
            after_hang_up,
        });
        // The diesel side's query may still run after a hang-up: let it
        // end before the next server, so each starts on an idle database.
        wait_for_no_sleeps(&watcher).await;
    }
    Ok((
        markdown(&rows, n, pool, wait),
        csv_rows(&rows, n, pool, wait),
    ))
}

/// The rows of one comparison as `database.csv` lines (a cell never holds
/// a comma: the answers are joined with `and`).
fn csv_rows(rows: &[Measured], n: usize, pool: usize, wait: Duration) -> Vec<String> {
    rows.iter()
        .map(|row| {
            let answers: Vec<String> = row
                .statuses
                .iter()
                .map(|(status, count)| format!("{count} × {status}"))
                .collect();
            format!(
                "{},{n},{pool},{},{},{:.1},{},{:.1},{}",
                row.way,
                wait.as_secs(),
                answers.join(" and "),
                row.last_answer.as_secs_f64(),
                row.threads,
                row.peak_rss_kib as f64 / 1024.0,
                row.after_hang_up.replace(',', ";")
            )
        })
        .collect()
}

/// `database.csv` with `new` rows in it: a row of the file with the same
/// way, N, P and wait as a new one is replaced, any other kept, so that the
/// main comparison and a shorter wait's live in one file.
pub fn merged_csv(old: &str, new: &[String]) -> String {
    let key = |line: &str| line.splitn(5, ',').take(4).collect::<Vec<_>>().join(",");
    let mut lines = vec![HEADER.to_string()];
    lines.extend(
        old.lines()
            .skip(1)
            .filter(|line| !line.is_empty() && new.iter().all(|row| key(row) != key(line)))
            .map(str::to_string),
    );
    lines.extend(new.iter().cloned());
    lines.join("\n") + "\n"
}

/// Asks `path` on a connection of its own; the status, or why there is none.
async fn ask(addr: std::net::SocketAddr, path: &str) -> String {
    let asking = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.get(9..12)?.to_string();
        let empty = answer.ends_with("\r\n\r\n") || answer.contains("content-length: 0\r\n");
        Some(if empty && status != "200" {
            format!("{status} (empty)")
        } else {
            status
        })
    };
    asking.await.unwrap_or_else(|| "no answer".to_string())
}

/// Asks `/sleep?seconds=30`, hangs up once PostgreSQL runs it, and says
/// what became of the query a second later.
async fn hang_up(server: &Server, watcher: &tokio_postgres::Client) -> String {
    let Ok(mut stream) = tokio::net::TcpStream::connect(server.addr).await else {
        return "cannot connect".to_string();
    };
    let request = b"GET /sleep?seconds=30 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return "cannot send".to_string();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeps_running(watcher).await == 0 {
        if Instant::now() > deadline {
            return "the query never ran".to_string();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stream);
    tokio::time::sleep(Duration::from_secs(1)).await;
    if sleeps_running(watcher).await == 0 {
        "cancelled on the server within 1 s".to_string()
    } else {
        "still running 1 s later, holding a connection and a thread".to_string()
    }
}

fn markdown(rows: &[Measured], n: usize, pool: usize, wait: Duration) -> String {
    let mut table = format!(
        "\nWaiting on PostgreSQL: N = {n} clients at once on `/sleep?seconds=1` (`pg_sleep(1)`), \
         a pool of P = {pool} connections, a pool wait of {} s on both sides\n\n\
         | way | answers | last answer after | threads at most | peak RSS | a hang-up mid-query |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        wait.as_secs()
    );
    for row in rows {
        let answers: Vec<String> = row
            .statuses
            .iter()
            .map(|(status, count)| format!("{count} × {status}"))
            .collect();
        table += &format!(
            "| {} | {} | {:.1} s | {} | {:.1} MiB | {} |\n",
            row.way,
            answers.join(", "),
            row.last_answer.as_secs_f64(),
            row.threads,
            row.peak_rss_kib as f64 / 1024.0,
            row.after_hang_up
        );
    }
    table
}

/// A server of one way, in a process of its own (this benchmark's binary,
/// run with `--serve-database`).
struct Server {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Server {
    fn start(way: &str, url: &str, pool: usize, wait: Duration) -> Result<Server, String> {
        let mut command = if way == "diesel" {
            let mut peer = Command::new(diesel_peer()?);
            peer.args(["127.0.0.1:0", &to_url(url)]);
            peer
        } else {
            let exe = std::env::current_exe().map_err(|error| error.to_string())?;
            let mut this = Command::new(exe);
            this.args(["--serve-database", way, url]);
            this
        };
        let mut child = command
            .arg(pool.to_string())
            .arg(wait.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start the {way} server: {error}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("Listening for requests at http://") {
                        break addr.parse().map_err(|_| format!("a bad address: {line}"))?;
                    }
                }
                _ => return Err(format!("the {way} server ended before listening")),
            }
        };
        // The console lines go on being read, so that the server never
        // blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, addr })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the diesel peer with this binary's optimisation (release under
/// `cargo bench`), into `target/diesel_peer/`, apart from this build's own
/// folder, and returns its path.
fn diesel_peer() -> Result<std::path::PathBuf, String> {
    let target = crate::target_dir().join("diesel_peer");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "building the diesel peer ({profile}) into {} ...",
        target.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    build.args(["build", "--locked", "-p", "diesel_peer", "--target-dir"]);
    build.arg(&target);
    if profile == "release" {
        build.arg("--release");
    }
    let built = build
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !built.success() {
        return Err(format!(
            "the diesel peer did not build ({built}); it needs libpq's development package (libpq-dev)"
        ));
    }
    Ok(target.join(profile).join("diesel_peer"))
}

/// In the child: serves the lesson for the database `url`, with a pool of
/// `pool` and a wait of `wait` seconds, on a free port.
pub fn serve(way: &str, url: &str, pool: &str, wait: &str) -> ! {
    let pool: usize = pool.parse().expect("a pool size");
    let wait = Duration::from_secs(wait.parse().expect("seconds"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::servers::WORKER_THREADS)
        .enable_all()
        .build()
        .expect("a runtime");
    assert_eq!(way, "async", "no database way {way} in this binary");
    let bounds = Bounds {
        connections: pool,
        wait,
        deadline: Duration::from_secs(10),
    };
    let router = database_example::router(Database::new(url, bounds).expect("a usable URL"));
    runtime.block_on(async {
        // The same deep listen queue as every other server here.
        let listener = serve::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        println!("Listening for requests at http://{addr}");
        serve::serve(listener, router, futures::stream::pending()).await;
    });
    std::process::exit(0)
}

/// How many `pg_sleep` queries the server runs, but the asker's own.
async fn sleeps_running(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1)
}

/// Waits, up to a minute, until PostgreSQL runs no `pg_sleep`.
async fn wait_for_no_sleeps(client: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sleeps_running(client).await != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `host=/dir user=u dbname=d` as `postgresql://u@/d?host=/dir`: diesel
/// takes only URLs (libpq reads `host` from the query string too).
fn to_url(key_values: &str) -> String {
    if key_values.contains("://") {
        return key_values.to_string();
    }
    let value = |key: &str| {
        key_values
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_default()
            .to_string()
    };
    format!(
        "postgresql://{}@/{}?host={}",
        value("user"),
        value("dbname"),
        value("host")
    )
}
