//! The serve loop's stderr line about shedding, checked at shutdown.
//!
//! Out of descriptors, the serve loop closes idle connections and says how
//! many on stderr, once a streak of shedding has been quiet for a second,
//! or when the server stops, whichever comes first. These tests read that
//! stderr. A test cannot read what it prints itself (the test harness keeps
//! it), so each runs a scenario in a child process of this same test binary
//! and reads the child's stderr.
//!
//! A test binary of its own, because starting a process copies every open
//! descriptor of the parent until the child replaces itself with the new
//! program. The serve loop's paused-clock tests (`src/serve/tests.rs`)
//! close sockets and expect the other end to see it before tokio's clock
//! moves on; a copy held by a half-started child, even for a moment, made
//! them fail now and then when they shared a process with these.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use gotham::bytes::Bytes;
use gotham::http_body_util::Full;
use gotham::hyper::service::service_fn;
use gotham::hyper::{Request, Response};
use gotham_examples_handlers_simple_async_handlers::serve::{serve_with, Accept, Limits, Stopped};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Set in a child run: the scenario tests below run only there.
const CHILD_RUN: &str = "SHEDDING_REPORT_CHILD_RUN";

/// Runs the test `name` alone in a child process of this same test binary,
/// and returns what it printed on stderr.
fn stderr_of_a_child_run(name: &str) -> String {
    let this_binary = std::env::current_exe().expect("the test binary's path");
    let output = std::process::Command::new(&this_binary)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_RUN, "1")
        .output()
        .expect("the test binary runs again");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{} --exact {name} failed:\n{}\n{stderr}",
        this_binary.display(),
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

const SHED_ONE_LINE: &str =
    "out of descriptors: closed 1 idle connection, longest idle first, to make room for new clients";

#[test]
fn the_last_streak_of_shedding_is_reported_when_the_server_stops() {
    let stderr =
        stderr_of_a_child_run("child_sheds_one_idle_connection_and_stops_within_the_streak");
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("out of descriptors"))
        .collect();
    assert_eq!(reports, [SHED_ONE_LINE], "stderr:\n{stderr}");
}

#[test]
fn a_server_that_shed_nothing_reports_no_shedding_when_it_stops() {
    let stderr = stderr_of_a_child_run("child_starts_and_stops");
    assert!(!stderr.contains("out of descriptors"), "stderr:\n{stderr}");
}

/// A listener that fails the next accept with EMFILE when told to, as a
/// real one does with no descriptor left, keeping the waiting connection
/// for the accept after.
struct OneDescriptorShort {
    listener: TcpListener,
    failures_to_come: Arc<AtomicUsize>,
    kept: Option<(TcpStream, SocketAddr)>,
}

impl Accept for OneDescriptorShort {
    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let next = match self.kept.take() {
            Some(connection) => connection,
            None => self.listener.accept().await?,
        };
        if self.failures_to_come.load(Ordering::SeqCst) > 0 {
            self.failures_to_come.fetch_sub(1, Ordering::SeqCst);
            self.kept = Some(next);
            const EMFILE: i32 = 24;
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        Ok(next)
    }
}

/// Serves a service that answers `ok` at once, on a listener that can be
/// made one descriptor short; returns its address, the failures to come,
/// and the way to stop it.
async fn start() -> (
    SocketAddr,
    Arc<AtomicUsize>,
    mpsc::UnboundedSender<()>,
    tokio::task::JoinHandle<Stopped>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let failures_to_come = Arc::new(AtomicUsize::new(0));
    let listener = OneDescriptorShort {
        listener,
        failures_to_come: Arc::clone(&failures_to_come),
        kept: None,
    };
    let new_service = |_client| {
        service_fn(|_request: Request<_>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    };
    let (stop, stops) = mpsc::unbounded();
    let serving = tokio::spawn(serve_with(listener, new_service, Limits::default(), stops));
    (addr, failures_to_come, stop, serving)
}

/// Sends a request on a new connection and reads until the server closes
/// it (the request asks it to).
async fn ask(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("reads");
    answer
}

/// Run only as a child of the test above; in an ordinary run it returns at
/// once.
#[tokio::test(start_paused = true)]
async fn child_sheds_one_idle_connection_and_stops_within_the_streak() {
    if std::env::var_os(CHILD_RUN).is_none() {
        return;
    }
    let (addr, failures_to_come, stop, serving) = start().await;
    let mut silent = TcpStream::connect(addr).await.expect("connects");
    // Long enough silent to be closed to make room.
    tokio::time::sleep(Limits::default().idle_before_shedding + Duration::from_millis(100)).await;

    failures_to_come.store(1, Ordering::SeqCst);
    let shedding = Instant::now();
    assert!(
        ask(addr).await.ends_with("ok"),
        "the newcomer was not answered"
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_millis(1), silent.read_to_end(&mut rest));
    assert!(closed.await.is_ok(), "nothing was shed");
    // Within the streak: the timed report is not due yet (it comes a second
    // after the last shedding), so only the shutdown can say it.
    assert!(shedding.elapsed() < Duration::from_secs(1));
    stop.unbounded_send(())
        .expect("the server listens for stops");
    assert_eq!(serving.await.expect("serve"), Stopped::Gracefully);
}

#[tokio::test(start_paused = true)]
async fn child_starts_and_stops() {
    if std::env::var_os(CHILD_RUN).is_none() {
        return;
    }
    let (_addr, _failures_to_come, stop, serving) = start().await;
    stop.unbounded_send(())
        .expect("the server listens for stops");
    assert_eq!(serving.await.expect("serve"), Stopped::Gracefully);
}
