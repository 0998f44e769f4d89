//! The handlers of `beyond_timers.rs`, each served on a runtime with one
//! worker thread, beside `/sleep`: a `/sleep?seconds=0` answered while the
//! handler waits shows that the wait leaves the worker free; one stuck
//! behind it shows the mistake. Real time, real TCP; each test decides when
//! the blocking call or the upstream server may finish.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

// `super::super`, not `crate`: the benchmark compiles `main.rs` as a module.
use super::super::beyond_timers::{
    ask_upstream, blocking_call_on_a_worker, blocking_call_on_the_blocking_pool, cpu_turns,
    cpu_work_in_turns,
};
use super::super::serve::{serve_with, GothamService, Limits};
use super::super::{sleep_handler, QueryStringExtractor};

/// How long a request that should be stuck is watched before saying so.
const STUCK_FOR: Duration = Duration::from_millis(500);
/// Far longer than a free worker needs to answer `/sleep?seconds=0`.
const PATIENCE: Duration = Duration::from_secs(5);

/// A blocking call's end, decided by the test: `wait` blocks its thread
/// until `open`.
struct Gate {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    const fn new() -> Gate {
        Gate {
            state: Mutex::new((false, false)),
            changed: Condvar::new(),
        }
    }

    /// Blocks until the gate is opened (the blocking call of the handlers).
    fn wait(&self) -> String {
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
        "the blocking call is done\n".to_string()
    }

    fn is_entered(&self) -> bool {
        self.state.lock().unwrap().0
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

static WORKER_GATE: Gate = Gate::new();
static POOL_GATE: Gate = Gate::new();
static CPU_GATE: Gate = Gate::new();
/// How many CPU-heavy calls run now, and the most that ever ran at once.
static CPU_CALLS: AtomicUsize = AtomicUsize::new(0);
static MOST_CPU_CALLS: AtomicUsize = AtomicUsize::new(0);

/// A CPU-heavy call as the handler sees it: it holds its thread until the
/// test opens `CPU_GATE`, and counts how many such calls run together.
fn cpu_call() -> String {
    let running = CPU_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_CPU_CALLS.fetch_max(running, Ordering::SeqCst);
    let body = CPU_GATE.wait();
    CPU_CALLS.fetch_sub(1, Ordering::SeqCst);
    body
}

/// Serves `/sleep` beside the handlers under test on a runtime of one
/// worker thread, its own.
fn serve_on_one_worker(upstream: SocketAddr) -> SocketAddr {
    let router = build_simple_router(|route| {
        route
            .get("/sleep")
            .with_query_string_extractor::<QueryStringExtractor>()
            .to(sleep_handler);
        route
            .get("/upstream")
            .to(move |state| ask_upstream(state, upstream));
        route
            .get("/on-a-worker")
            .to(|state| blocking_call_on_a_worker(state, || WORKER_GATE.wait()));
        route
            .get("/on-the-blocking-pool")
            .to(|state| blocking_call_on_the_blocking_pool(state, || POOL_GATE.wait()));
        route
            .get("/cpu")
            .to(|state| cpu_work_in_turns(state, cpu_turns(), cpu_call));
    });
    // Bound here, served there: a runtime cannot be started from inside
    // the test's own.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("an address");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking socket");
    let new_service = move |client| GothamService {
        router: router.clone(),
        client,
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            let never = futures::stream::pending();
            serve_with(listener, new_service, Limits::default(), never).await
        })
    });
    addr
}

/// `GET path` on a connection of its own: the status code and the body.
async fn get_raw(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("reads");
    let status = answer
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    (status, body)
}

/// An address nothing listens on.
async fn nowhere() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    listener.local_addr().expect("an address")
}

async fn wait_until_entered(gate: &Gate) {
    let patience = std::time::Instant::now() + PATIENCE;
    while !gate.is_entered() {
        assert!(
            std::time::Instant::now() < patience,
            "the blocking call never began"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_blocking_call_on_a_worker_stalls_every_request_on_that_worker() {
    let addr = serve_on_one_worker(nowhere().await);
    let blocking = tokio::spawn(get_raw(addr, "/on-a-worker"));
    wait_until_entered(&WORKER_GATE).await;

    let quick = tokio::spawn(get_raw(addr, "/sleep?seconds=0"));
    tokio::time::sleep(STUCK_FOR).await;
    assert!(
        !quick.is_finished(),
        "a zero-second sleep was answered while the only worker was blocked"
    );

    WORKER_GATE.open();
    assert_eq!(
        blocking.await.expect("the blocking request"),
        (200, "the blocking call is done\n".to_string())
    );
    assert_eq!(
        quick.await.expect("the quick request"),
        (200, "slept for 0 seconds\n".to_string())
    );
}

#[tokio::test]
async fn a_blocking_call_on_the_blocking_pool_leaves_the_worker_free() {
    let addr = serve_on_one_worker(nowhere().await);
    let blocking = tokio::spawn(get_raw(addr, "/on-the-blocking-pool"));
    wait_until_entered(&POOL_GATE).await;

    let quick = tokio::time::timeout(PATIENCE, get_raw(addr, "/sleep?seconds=0")).await;
    assert_eq!(
        quick.ok(),
        Some((200, "slept for 0 seconds\n".to_string())),
        "a zero-second sleep was not answered while the call blocked a pool thread"
    );
    assert!(!blocking.is_finished(), "the blocking call ended early");

    POOL_GATE.open();
    assert_eq!(
        blocking.await.expect("the blocking request"),
        (200, "the blocking call is done\n".to_string())
    );
}

#[tokio::test]
async fn cpu_heavy_calls_run_one_per_core_at_most_and_leave_the_worker_free() {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let addr = serve_on_one_worker(nowhere().await);
    let calls: Vec<_> = (0..cores + 2)
        .map(|_| tokio::spawn(get_raw(addr, "/cpu")))
        .collect();
    let patience = std::time::Instant::now() + PATIENCE;
    while CPU_CALLS.load(Ordering::SeqCst) < cores {
        assert!(
            std::time::Instant::now() < patience,
            "{} of {cores} CPU-heavy calls began",
            CPU_CALLS.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let quick = tokio::time::timeout(PATIENCE, get_raw(addr, "/sleep?seconds=0")).await;
    assert_eq!(
        quick.ok(),
        Some((200, "slept for 0 seconds\n".to_string())),
        "a zero-second sleep was not answered while every core's turn was taken"
    );
    // The two calls past the turns must still be waiting for one.
    tokio::time::sleep(STUCK_FOR).await;
    assert_eq!(
        MOST_CPU_CALLS.load(Ordering::SeqCst),
        cores,
        "calls at once"
    );

    CPU_GATE.open();
    for call in calls {
        assert_eq!(
            call.await.expect("a CPU-heavy request"),
            (200, "the blocking call is done\n".to_string())
        );
    }
    assert_eq!(
        MOST_CPU_CALLS.load(Ordering::SeqCst),
        cores,
        "calls at once"
    );
}

#[tokio::test]
async fn a_handler_waiting_on_a_socket_leaves_the_worker_free() {
    // The upstream server: it reads the question, then answers only when
    // the test lets it.
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let upstream_addr = upstream.local_addr().expect("an address");
    let (asked, was_asked) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (stream, _) = upstream.accept().await.expect("accepts");
        let mut stream = BufReader::new(stream);
        let mut question = String::new();
        stream.read_line(&mut question).await.expect("reads");
        let _ = asked.send(question);
        let _ = released.await;
        stream
            .get_mut()
            .write_all(b"a line from upstream\n")
            .await
            .expect("answers");
    });

    let addr = serve_on_one_worker(upstream_addr);
    let waiting = tokio::spawn(get_raw(addr, "/upstream"));
    assert_eq!(was_asked.await.as_deref(), Ok("hello\n"));

    let quick = tokio::time::timeout(PATIENCE, get_raw(addr, "/sleep?seconds=0")).await;
    assert_eq!(
        quick.ok(),
        Some((200, "slept for 0 seconds\n".to_string())),
        "a zero-second sleep was not answered while a handler waited on its socket"
    );
    assert!(!waiting.is_finished(), "answered before upstream did");

    let _ = release.send(());
    assert_eq!(
        waiting.await.expect("the upstream request"),
        (200, "a line from upstream\n".to_string())
    );
}

#[tokio::test]
async fn an_upstream_that_cannot_be_reached_gets_a_502_that_says_so() {
    let addr = serve_on_one_worker(nowhere().await);
    let (status, body) = get_raw(addr, "/upstream").await;
    assert_eq!(status, 502);
    assert!(body.starts_with("upstream: "), "{body:?}");
}
