//! The serve loop over real TCP, most of it on tokio's paused clock (the
//! tests of binding, of peeking into a socket, and of a blocking handler
//! run in real time). On the paused clock, when every task waits, the clock
//! jumps to the next timer, so a deadline passes in no real time and its
//! virtual length is exact. Socket events are taken in before the clock
//! moves, so a deadline never fires ahead of bytes already sent.
//!
//! The limits differ from the defaults, to show that the ones passed in are
//! the ones obeyed.

use super::accept_loop::{belongs_to_one_connection, shedding_report};
use super::connection::{has_unread_bytes, serve_connection};
use super::handed_over;
use super::idle::{IdleConnections, IdlePlace, Tracked};
use super::*;
use futures::channel::mpsc;
use futures::future::FutureExt;
use gotham::bytes::Bytes;
use gotham::http_body_util::{BodyExt, Empty};
use gotham::hyper::body::Incoming;
use gotham::hyper::client::conn::http1 as client;
use gotham::hyper::header::HeaderValue;
use gotham::hyper::server::conn::http1;
use gotham::hyper::{Request, Response, Uri};
use gotham::hyper_util::rt::{TokioIo, TokioTimer};
use gotham::router::Router;
use gotham::state::State;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `GET /sleep?seconds=N` as the example answers it: the serve loop's own
/// stand-in for `main.rs`'s router, which belongs to the binary, not to this
/// library.
fn sleep_router() -> Router {
    use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};

    #[derive(
        serde_derive::Deserialize, gotham_derive::StateData, gotham_derive::StaticResponseExtender,
    )]
    struct Seconds {
        seconds: u64,
    }

    fn sleep(mut state: State) -> std::pin::Pin<Box<gotham::handler::HandlerFuture>> {
        use gotham::state::FromState;
        let seconds = Seconds::take_from(&mut state).seconds;
        async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let body = format!("slept for {seconds} seconds\n");
            let response = gotham::helpers::http::response::create_response(
                &state,
                gotham::hyper::StatusCode::OK,
                mime::TEXT_PLAIN,
                body,
            );
            Ok((state, response))
        }
        .boxed()
    }

    build_simple_router(|route| {
        route
            .get("/sleep")
            .with_query_string_extractor::<Seconds>()
            .to(sleep);
    })
}

const DEADLINE: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(3);

struct TestServer {
    addr: SocketAddr,
    stop: mpsc::UnboundedSender<()>,
    serving: JoinHandle<Stopped>,
}

async fn start(limits: Limits) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let (stop, stops) = mpsc::unbounded();
    let router = sleep_router();
    let new_service = move |client| GothamService {
        router: router.clone(),
        client,
    };
    let serving = tokio::spawn(serve_with(listener, new_service, limits, stops));
    TestServer {
        addr,
        stop,
        serving,
    }
}

fn limits() -> Limits {
    Limits {
        header_deadline: DEADLINE,
        grace_period: GRACE,
        ..Limits::default()
    }
}

impl TestServer {
    /// What Ctrl-C or SIGTERM does to the real server.
    fn stop(&self) {
        self.stop
            .unbounded_send(())
            .expect("the server listens for stops");
    }
}

/// Reads until the server closes `stream`; returns how long that took
/// on tokio's clock, or `None` if it was still open after `patience`.
async fn closed_after(stream: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut answer = Vec::new();
    match tokio::time::timeout(patience, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(started.elapsed()),
        Err(_) => None,
    }
}

/// Asserts that a connection that sent `bytes` is closed exactly at the
/// header deadline.
async fn assert_closed_at_the_deadline(bytes: &[u8]) {
    let server = start(limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    stream.write_all(bytes).await.expect("sends");
    let closed = closed_after(&mut stream, DEADLINE * 4).await;
    assert_eq!(
        closed,
        Some(DEADLINE),
        "after sending {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_closed_at_the_header_deadline() {
    assert_closed_at_the_deadline(b"").await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_a_few_bytes_and_stops_is_closed_at_the_header_deadline() {
    assert_closed_at_the_deadline(b"GE").await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_mid_headers_is_closed_at_the_header_deadline() {
    assert_closed_at_the_deadline(b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\nX-Ha")
        .await;
}

#[tokio::test(start_paused = true)]
async fn the_header_deadline_counts_from_connecting_not_from_the_first_byte() {
    let server = start(limits()).await;
    let connected = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    // Silent for a while: the serve loop has not built hyper's connection,
    // whose own deadline would only start with the first byte.
    tokio::time::sleep(DEADLINE / 2).await;
    stream.write_all(b"GE").await.expect("sends");
    closed_after(&mut stream, DEADLINE * 4).await;
    assert_eq!(connected.elapsed(), DEADLINE);
}

/// Opens a connection and sends one `GET path_and_query` on it.
async fn request(
    addr: SocketAddr,
    path_and_query: &str,
) -> (
    client::SendRequest<Empty<Bytes>>,
    JoinHandle<Result<(), gotham::hyper::Error>>,
    impl Future<Output = Result<String, String>>,
) {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (mut sender, connection) = client::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1 handshake");
    let connection = tokio::spawn(connection);
    let request = Request::get(path_and_query)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = sender.send_request(request);
    let body = async move {
        let response = response.await.map_err(|error| error.to_string())?;
        let body = response.into_body().collect().await;
        let body = body.map_err(|error| error.to_string())?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    (sender, connection, body)
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_is_closed_a_header_deadline_after_its_last_answer() {
    let server = start(limits()).await;
    let (_sender, connection, body) = request(server.addr, "/sleep?seconds=2").await;
    assert_eq!(body.await.as_deref(), Ok("slept for 2 seconds\n"));
    let answered = Instant::now();
    // The client keeps its side open; only the server can end it.
    let ended = tokio::time::timeout(DEADLINE * 4, connection).await;
    assert!(
        ended.is_ok(),
        "still open {:?} after the answer",
        DEADLINE * 4
    );
    assert_eq!(answered.elapsed(), DEADLINE);
}

#[tokio::test(start_paused = true)]
async fn a_request_in_its_handler_is_never_cut_by_the_header_deadline() {
    let server = start(limits()).await;
    let started = Instant::now();
    let (_sender, _connection, body) = request(server.addr, "/sleep?seconds=3600").await;
    assert_eq!(body.await.as_deref(), Ok("slept for 3600 seconds\n"));
    assert_eq!(started.elapsed(), Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_short_requests_closes_idle_connections_and_drops_the_rest() {
    let server = start(limits()).await;
    let (_a, _short_connection, short) = request(server.addr, "/sleep?seconds=2").await;
    let (_b, _long_connection, long) = request(server.addr, "/sleep?seconds=3600").await;
    let short = tokio::spawn(short);
    let long = tokio::spawn(long);
    let (_c, idle, answered) = request(server.addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    // Every request above reaches its handler before the clock moves.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let stopping = Instant::now();
    server.stop();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), idle)
            .await
            .is_ok(),
        "a kept-alive connection was still open a second after shutdown began"
    );
    assert_eq!(
        stopping.elapsed(),
        Duration::ZERO,
        "a kept-alive connection should be closed as soon as shutdown begins"
    );
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "a new connection was accepted after shutdown began"
    );
    assert_eq!(
        short.await.expect("the short request's task").as_deref(),
        Ok("slept for 2 seconds\n")
    );
    let long = long.await.expect("the long request's task");
    assert!(long.is_err(), "the hour-long sleep was answered: {long:?}");
    assert_eq!(stopping.elapsed(), GRACE);
    assert_eq!(server.serving.await.expect("serve"), Stopped::Gracefully);
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_as_soon_as_the_last_request_finishes() {
    let server = start(limits()).await;
    let (_a, _connection, short) = request(server.addr, "/sleep?seconds=2").await;
    let short = tokio::spawn(short);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopping = Instant::now();
    server.stop();
    assert_eq!(server.serving.await.expect("serve"), Stopped::Gracefully);
    // The request had one second left, far less than the grace period.
    assert_eq!(stopping.elapsed(), Duration::from_secs(1));
    assert_eq!(
        short.await.expect("the request's task").as_deref(),
        Ok("slept for 2 seconds\n")
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_stop_during_the_grace_period_ends_at_once() {
    let server = start(limits()).await;
    let (_a, _connection, long) = request(server.addr, "/sleep?seconds=3600").await;
    let long = tokio::spawn(long);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    server.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.stop();
    assert_eq!(server.serving.await.expect("serve"), Stopped::AtOnce);
    assert_eq!(stopping.elapsed(), Duration::from_secs(1));
    assert!(long.await.expect("the request's task").is_err());
}

#[test]
fn only_errors_of_one_connection_are_retried_at_once() {
    use io::ErrorKind::*;
    for kind in [ConnectionAborted, ConnectionReset, ConnectionRefused] {
        assert!(
            belongs_to_one_connection(&io::Error::from(kind)),
            "{kind:?}"
        );
    }
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or system is short.
    for errno in [24, 23, 105, 12] {
        let error = io::Error::from_raw_os_error(errno);
        assert!(!belongs_to_one_connection(&error), "{error}");
    }
}

#[test]
fn a_detached_head_shares_no_bytes_with_the_buffer_it_was_read_from() {
    // hyper's read buffer in small: the URI and a header value are slices
    // of one allocation, as hyper makes them.
    let buffer = Bytes::from(b"/sleep?seconds=5 10.0.0.1".to_vec());
    let request = || {
        let uri = Uri::from_maybe_shared(buffer.slice(0..16)).expect("a URI");
        let value = HeaderValue::from_maybe_shared(buffer.slice(17..)).expect("a value");
        Request::get(uri)
            .header("x-forwarded-for", value)
            .body(())
            .expect("a request")
    };

    let pinning = request();
    assert!(
        !buffer.is_unique(),
        "the request should share the buffer before it is detached"
    );
    drop(pinning);

    let detached = detach_head(request());
    assert!(
        buffer.is_unique(),
        "the detached request still shares the buffer"
    );
    assert_eq!(detached.uri(), "/sleep?seconds=5");
    assert_eq!(detached.headers()["x-forwarded-for"], "10.0.0.1");
}

/// A listener that can be told to fail the next few accepts with `errno`
/// (EMFILE, as a real one does when the process has no descriptor left,
/// unless a test says otherwise). It takes the waiting connection and keeps
/// it until the failures are used up, so to the client it is still waiting
/// in the queue.
struct ScarceListener {
    listener: TcpListener,
    failures_to_come: Arc<AtomicUsize>,
    errno: i32,
    kept: Option<(TcpStream, SocketAddr)>,
}

const EMFILE: i32 = 24;
const ENOBUFS: i32 = 105;

impl Accept for ScarceListener {
    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let next = match self.kept.take() {
            Some(connection) => connection,
            None => self.listener.accept().await?,
        };
        if self.failures_to_come.load(Ordering::SeqCst) > 0 {
            self.failures_to_come.fetch_sub(1, Ordering::SeqCst);
            self.kept = Some(next);
            return Err(io::Error::from_raw_os_error(self.errno));
        }
        Ok(next)
    }
}

/// Lets every task run what it can before the test goes on.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn still_open(stream: &mut TcpStream) -> bool {
    closed_after(stream, Duration::from_millis(1))
        .await
        .is_none()
}

/// A server on a `ScarceListener` failing with `errno`: its address, the
/// number of accepts still to fail, and the server itself.
async fn start_scarce(errno: i32) -> (SocketAddr, Arc<AtomicUsize>, TestServer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let failures_to_come = Arc::new(AtomicUsize::new(0));
    let listener = ScarceListener {
        listener,
        failures_to_come: Arc::clone(&failures_to_come),
        errno,
        kept: None,
    };
    let router = sleep_router();
    let new_service = move |client| GothamService {
        router: router.clone(),
        client,
    };
    let (stop, stops) = mpsc::unbounded::<()>();
    let serving = tokio::spawn(serve_with(listener, new_service, limits(), stops));
    let server = TestServer {
        addr,
        stop,
        serving,
    };
    (addr, failures_to_come, server)
}

#[tokio::test(start_paused = true)]
async fn out_of_descriptors_the_longest_idle_connections_make_room_and_requests_in_flight_stay() {
    let (addr, failures_to_come, _server) = start_scarce(EMFILE).await;

    // Idle the longest: connected first, and silent.
    let mut silent = TcpStream::connect(addr).await.expect("connects");
    settle().await;
    // In flight, and for an hour: never to be shed.
    let (_a, _sleeping_connection, sleeping) = request(addr, "/sleep?seconds=3600").await;
    let sleeping = tokio::spawn(sleeping);
    settle().await;
    // Idle next: part of a request head.
    let mut partial = TcpStream::connect(addr).await.expect("connects");
    partial.write_all(b"GET /sle").await.expect("sends");
    settle().await;
    // Idle since its answer, kept alive.
    let (_b, mut kept_alive, answered) = request(addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    settle().await;
    // Old enough, all of them, to be closed to make room.
    tokio::time::sleep(limits().idle_before_shedding).await;

    // One descriptor short: the silent connection gives way.
    failures_to_come.store(1, Ordering::SeqCst);
    let (_c, mut first_newcomer, answered) = request(addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    assert!(!still_open(&mut silent).await, "the longest idle was kept");
    assert!(
        still_open(&mut partial).await,
        "the second longest idle was closed"
    );
    let ended = tokio::time::timeout(Duration::from_millis(1), &mut kept_alive).await;
    assert!(ended.is_err(), "the kept-alive connection was closed");

    // Two short: the partial head, then the kept-alive connection.
    failures_to_come.store(2, Ordering::SeqCst);
    let (_d, _second_newcomer, answered) = request(addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    assert!(!still_open(&mut partial).await, "the partial head was kept");
    let ended = tokio::time::timeout(Duration::from_millis(1), &mut kept_alive).await;
    assert!(ended.is_ok(), "the kept-alive connection was kept");
    let ended = tokio::time::timeout(Duration::from_millis(1), &mut first_newcomer).await;
    assert!(
        ended.is_err(),
        "the first newcomer, idle the shortest, was closed"
    );

    // Through all of it, the hour-long sleep went on.
    assert_eq!(
        sleeping
            .await
            .expect("the sleeping request's task")
            .as_deref(),
        Ok("slept for 3600 seconds\n")
    );
}

#[tokio::test]
async fn an_address_without_a_usable_port_is_refused_with_an_example() {
    for requested in ["nonsense", "localhost", "127.0.0.1", "127.0.0.1:99999"] {
        let reason = bind(requested)
            .await
            .expect_err("a port is needed, from 0 to 65535");
        assert!(reason.contains("127.0.0.1:7878"), "{requested}: {reason}");
    }
}

#[tokio::test]
async fn a_host_name_is_resolved_and_bound() {
    let listener = bind("localhost:0").await.expect("localhost:0 binds");
    let addr = listener.local_addr().expect("a bound address");
    assert!(addr.ip().is_loopback(), "localhost bound {addr}");
}

#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_refused_as_such() {
    // `.invalid` is reserved: it never resolves (RFC 2606).
    let reason = bind("no-such-host.invalid:7878")
        .await
        .expect_err("an unknown name cannot be bound");
    assert!(reason.contains("cannot resolve"), "{reason}");
}

#[tokio::test]
async fn port_zero_binds_a_free_port() {
    let listener = bind("127.0.0.1:0").await.expect("port 0 binds");
    let port = listener.local_addr().expect("a bound address").port();
    assert_ne!(port, 0);
}

/// The length of `listener`'s queue as the kernel holds it: Linux's
/// `TCP_INFO` on a listening socket reports it in `tcpi_sacked` (and the
/// connections waiting in it in `tcpi_unacked`), as `ss -ltn` shows it in
/// its Send-Q column.
#[cfg(target_os = "linux")]
fn listen_queue_length(listener: &TcpListener) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain integers; all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut size = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `size` bytes into `info`, which we
    // own, on a descriptor the listener keeps open.
    let got = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut size,
        )
    };
    assert_eq!(got, 0, "TCP_INFO: {}", io::Error::last_os_error());
    info.tcpi_sacked
}

/// The system's cap on a listen queue, `net.core.somaxconn`.
#[cfg(target_os = "linux")]
fn somaxconn() -> u32 {
    let text = std::fs::read_to_string("/proc/sys/net/core/somaxconn").expect("somaxconn");
    text.trim().parse().expect("somaxconn is a number")
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_listen_queue_is_as_deep_as_the_system_allows() {
    let cap = somaxconn();
    if cap < 1_100 {
        eprintln!(
            "NOTE: net.core.somaxconn is {cap} here, so no listen queue can be deeper, and \
             this test cannot tell a deep one from the standard library's 128"
        );
    }
    let listener = bind("127.0.0.1:0").await.expect("port 0 binds");
    let wanted = cap.min(4_096);
    let got = listen_queue_length(&listener);
    assert!(
        got >= wanted,
        "the listen queue holds {got} connections; the system allows {cap}"
    );
    // The same address through a name, and the queue asked for is the one
    // the kernel holds: the reading above is the queue's, not a constant.
    let listener = bind("localhost:0").await.expect("localhost:0 binds");
    assert!(listen_queue_length(&listener) >= wanted, "bound by name");
    let listener = bind_with_backlog("127.0.0.1:0", 200)
        .await
        .expect("port 0 binds");
    assert_eq!(listen_queue_length(&listener), 200.min(cap));
}

#[tokio::test(start_paused = true)]
async fn connections_that_have_ended_leave_no_trace_among_the_idle() {
    let (addr, failures_to_come, _server) = start_scarce(EMFILE).await;

    // Every way a connection can end: silent, mid-head, kept alive after
    // an answer, and hung up on during a request.
    for _ in 0..3 {
        drop(TcpStream::connect(addr).await.expect("connects"));
        let mut partial = TcpStream::connect(addr).await.expect("connects");
        partial.write_all(b"GET /sle").await.expect("sends");
        settle().await;
        drop(partial);
        let (sender, connection, answered) = request(addr, "/sleep?seconds=0").await;
        assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
        drop((sender, connection));
        let (sender, connection, hung_up) = request(addr, "/sleep?seconds=3600").await;
        settle().await;
        connection.abort();
        drop((sender, hung_up));
    }
    settle().await;

    // If any of them had left its place behind, that place would be older
    // than this connection's, and shedding would pick it and close nothing.
    let mut live = TcpStream::connect(addr).await.expect("connects");
    tokio::time::sleep(limits().idle_before_shedding).await;
    failures_to_come.store(1, Ordering::SeqCst);
    let (_sender, _connection, answered) = request(addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    assert!(
        !still_open(&mut live).await,
        "the one idle connection was kept: a connection that had ended was shed instead"
    );
}

#[tokio::test(start_paused = true)]
async fn an_accept_error_that_closing_cannot_mend_pauses_without_closing_anyone() {
    let (addr, failures_to_come, _server) = start_scarce(ENOBUFS).await;
    let mut silent = TcpStream::connect(addr).await.expect("connects");
    // Silent long enough that shedding would pick it, if this error were
    // taken for a shortage of descriptors.
    tokio::time::sleep(limits().idle_before_shedding + Duration::from_millis(100)).await;

    failures_to_come.store(1, Ordering::SeqCst);
    let started = Instant::now();
    let (_sender, _connection, answered) = request(addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    assert_eq!(
        started.elapsed(),
        Limits::default().accept_pause,
        "the newcomer should wait out one pause"
    );
    assert!(
        still_open(&mut silent).await,
        "an idle connection was closed for an error that is not about descriptors"
    );
}

/// Serves `socket` as the serve loop would, apart from any loop: the idle
/// connections (only this one), its place among them, and what keeps its
/// shutdown from beginning.
fn serve_one_connection(
    socket: TcpStream,
    client_addr: SocketAddr,
) -> (Arc<IdleConnections>, Arc<IdlePlace>, watch::Sender<bool>) {
    let idle = Arc::new(IdleConnections::default());
    let place = IdlePlace::new(&idle);
    let service = Tracked {
        inner: GothamService {
            router: sleep_router(),
            client: client_addr,
        },
        in_flight: Arc::new(AtomicUsize::new(0)),
        place: Arc::clone(&place),
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(DEADLINE);
    let (shutdown, shutdown_begun) = watch::channel(false);
    tokio::spawn(serve_connection(
        socket,
        http,
        service,
        Arc::clone(&place),
        Instant::now() + DEADLINE,
        Instant::now() + limits().idle_before_shedding,
        shutdown_begun,
    ));
    (idle, place, shutdown)
}

#[tokio::test(start_paused = true)]
async fn a_connection_told_to_close_while_busy_keeps_its_request_and_stays_open() {
    // The race, made to happen: a connection picked for shedding while it
    // was idle, whose task acts on it only after a request has come in.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let connecting = TcpStream::connect(addr);
    let ((socket, client_addr), client_side) =
        tokio::join!(async { listener.accept().await.expect("accepts") }, async {
            connecting.await.expect("connects")
        },);
    let (_idle, place, _shutdown) = serve_one_connection(socket, client_addr);

    let (mut sender, connection) = client::handshake(TokioIo::new(client_side))
        .await
        .expect("an HTTP/1 handshake");
    let connection = tokio::spawn(connection);
    let send = |sender: &mut client::SendRequest<Empty<Bytes>>, path: &str| {
        let request = Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
        let response = sender.send_request(request);
        async move {
            let body = response.await.expect("an answer").into_body();
            let body = body.collect().await.expect("a body").to_bytes();
            String::from_utf8_lossy(&body).into_owned()
        }
    };

    let first = tokio::spawn(send(&mut sender, "/sleep?seconds=2"));
    settle().await;
    assert!(place.is_busy(), "the request should be in its handler");
    place.shed.notify_one();

    assert_eq!(
        first.await.expect("the first request"),
        "slept for 2 seconds\n"
    );
    sender.ready().await.expect("the connection stayed open");
    assert_eq!(
        send(&mut sender, "/sleep?seconds=0").await,
        "slept for 0 seconds\n"
    );
    assert!(!connection.is_finished(), "the connection was closed");
}

#[tokio::test(start_paused = true)]
async fn a_connection_accepted_just_before_the_descriptors_run_out_is_not_the_one_closed() {
    let (addr, failures_to_come, _server) = start_scarce(EMFILE).await;
    // Accepted, and idle for less than `idle_before_shedding`: it may have
    // sent its request already, and the server not read it yet.
    let mut newly_accepted = TcpStream::connect(addr).await.expect("connects");
    settle().await;

    failures_to_come.store(1, Ordering::SeqCst);
    let started = Instant::now();
    let (_a, _connection, answered) = request(addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    assert!(
        still_open(&mut newly_accepted).await,
        "a connection idle for {:?} was closed to make room",
        Duration::from_millis(100)
    );
    assert!(
        started.elapsed() >= Limits::default().accept_pause,
        "with nothing old enough to close, the newcomer should wait out a pause, not {:?}",
        started.elapsed()
    );

    // Once it has been silent that long, it is the one to go.
    tokio::time::sleep(limits().idle_before_shedding).await;
    failures_to_come.store(1, Ordering::SeqCst);
    let started = Instant::now();
    let (_b, _connection, answered) = request(addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    assert!(
        !still_open(&mut newly_accepted).await,
        "a connection silent for over {:?} was kept",
        limits().idle_before_shedding
    );
    assert!(
        started.elapsed() < Limits::default().accept_pause,
        "the newcomer waited {:?} with an idle connection to close",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_request_waiting_unread_in_a_socket_is_seen_without_reading_it() {
    use std::io::Write;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    // A blocking client: its bytes are in the server's socket when `write`
    // returns, and no tokio reactor has been told.
    let mut client = std::net::TcpStream::connect(addr).expect("connects");
    let (server_side, _) = listener.accept().await.expect("accepts");
    assert!(!has_unread_bytes(&server_side), "nothing was sent yet");

    client.write_all(b"GET / HTTP/1.1\r\n").expect("sends");
    assert!(has_unread_bytes(&server_side), "the request was not seen");
    assert!(
        has_unread_bytes(&server_side),
        "looking took the bytes: hyper would miss them"
    );

    drop(client);
    let (silent_then_gone, _) = {
        let client = std::net::TcpStream::connect(addr).expect("connects");
        let accepted = listener.accept().await.expect("accepts");
        drop(client);
        accepted
    };
    assert!(
        !has_unread_bytes(&silent_then_gone),
        "a client that closed without sending counts as a request waiting"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_told_to_close_with_its_request_unread_serves_it_instead() {
    use std::io::{Read, Write};

    // The race, made to happen: a silent connection picked for shedding
    // just as its request arrives, before tokio has seen the socket become
    // readable. A blocking client writes without yielding to the runtime,
    // and the connection is picked in the same breath.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let mut client = std::net::TcpStream::connect(addr).expect("connects");
    let (socket, client_addr) = listener.accept().await.expect("accepts");
    let (idle, _place, _shutdown) = serve_one_connection(socket, client_addr);
    // Its task now waits for a first byte.
    settle().await;

    client
        .write_all(b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("sends");
    assert!(idle.shed_longest_idle(Duration::ZERO), "it was idle");

    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        client.read_to_string(&mut answer).map(|_| answer)
    });
    let answer = answer.await.expect("the reading thread");
    assert!(
        matches!(&answer, Ok(text) if text.ends_with("slept for 0 seconds\n")),
        "the request waiting in the socket was lost: {answer:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_byte_makes_a_long_silent_connection_new_again() {
    let (addr, failures_to_come, _server) = start_scarce(EMFILE).await;
    let mut slow = TcpStream::connect(addr).await.expect("connects");
    tokio::time::sleep(limits().idle_before_shedding * 2).await;
    // Silent long enough to be shed, until it starts its request.
    slow.write_all(b"GET /sle").await.expect("sends");
    settle().await;

    failures_to_come.store(1, Ordering::SeqCst);
    let (_a, _connection, answered) = request(addr, "/sleep?seconds=0").await;
    assert_eq!(answered.await.as_deref(), Ok("slept for 0 seconds\n"));
    assert!(
        still_open(&mut slow).await,
        "a connection was closed {:?} after its first byte",
        Duration::from_millis(100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_call_in_a_handler_holds_even_a_second_stop_until_it_returns() {
    use gotham::http_body_util::Full;
    use gotham::hyper::service::service_fn;
    use std::convert::Infallible;

    const BLOCKED_FOR: Duration = Duration::from_secs(2);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let entered = Arc::new(Notify::new());
    let new_service = {
        let entered = Arc::clone(&entered);
        move |_client| {
            let entered = Arc::clone(&entered);
            service_fn(move |_request: Request<Incoming>| {
                let entered = Arc::clone(&entered);
                async move {
                    entered.notify_one();
                    // The mistake, on purpose: a blocking call in the future,
                    // holding the worker thread that polls it.
                    std::thread::sleep(BLOCKED_FOR);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
                }
            })
        }
    };
    let limits = Limits {
        grace_period: Duration::from_millis(100),
        ..limits()
    };
    let (stop, stops) = mpsc::unbounded();
    let serving = tokio::spawn(serve_with(listener, new_service, limits, stops));

    let mut client = TcpStream::connect(addr).await.expect("connects");
    let request = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    client.write_all(request.as_bytes()).await.expect("sends");
    entered.notified().await;
    let stopping = Instant::now();
    // Ctrl-C twice: the second should end the server at once.
    stop.unbounded_send(())
        .expect("the server listens for stops");
    stop.unbounded_send(())
        .expect("the server listens for stops");

    assert_eq!(serving.await.expect("serve"), Stopped::AtOnce);
    // It could not: dropping the connection's task waits for the poll that
    // is blocked to return, and nothing can make a blocked thread return.
    let waited = stopping.elapsed();
    assert!(
        waited >= BLOCKED_FOR / 2,
        "the server stopped {waited:?} after the second stop, with a call blocked for {BLOCKED_FOR:?}"
    );
}

#[test]
fn the_shedding_line_counts_what_closed_and_nothing_when_nothing_did() {
    let idle = IdleConnections::default();
    // Asked to close, but each found its request arriving: no line.
    assert_eq!(shedding_report(&idle), None);
    idle.closed_to_make_room.store(1, Ordering::SeqCst);
    assert_eq!(
        shedding_report(&idle).as_deref(),
        Some("out of descriptors: closed 1 idle connection, longest idle first, to make room for new clients")
    );
    idle.closed_to_make_room.store(3, Ordering::SeqCst);
    let line = shedding_report(&idle).expect("a line for three");
    assert!(line.contains("closed 3 idle connections,"), "{line}");
    // Counted afresh after each line.
    assert_eq!(shedding_report(&idle), None);
}

#[test]
fn the_listen_variables_are_read_as_systemd_means_them() {
    use handed_over::{read_variables, Variables};
    use std::ffi::OsStr;

    const THIS: u32 = 4242;
    let read = |pid: Option<&str>, fds: Option<&str>| {
        read_variables(pid.map(OsStr::new), fds.map(OsStr::new), THIS)
    };
    assert_eq!(read(None, None), Ok(Variables::Absent));
    // Without LISTEN_FDS, nothing was handed over, whatever LISTEN_PID says.
    assert_eq!(read(Some("4242"), None), Ok(Variables::Absent));
    assert_eq!(read(Some("4242"), Some("1")), Ok(Variables::OneSocket));
    // systemfd --no-pid: no LISTEN_PID, or an empty one.
    assert_eq!(read(None, Some("1")), Ok(Variables::OneSocket));
    assert_eq!(read(Some(""), Some("1")), Ok(Variables::OneSocket));
    // Meant for another process: ignored, even a count that makes no sense.
    let for_another = Ok(Variables::ForAnother {
        named: 4243,
        this: THIS,
    });
    assert_eq!(read(Some("4243"), Some("1")), for_another);
    assert_eq!(read(Some("4243"), Some("many")), for_another);

    for (pid, fds, named) in [
        (Some("4242"), "many", "LISTEN_FDS"),
        (Some("4242"), "", "LISTEN_FDS"),
        (Some("4242"), "-1", "LISTEN_FDS"),
        (None, "1.0", "LISTEN_FDS"),
        (Some("4242"), "0", "LISTEN_FDS"),
        (Some("4242"), "2", "LISTEN_FDS"),
        (Some("me"), "1", "LISTEN_PID"),
        (Some("-4242"), "1", "LISTEN_PID"),
    ] {
        let reason = read(pid, Some(fds)).expect_err("no usable socket");
        assert!(
            reason.starts_with(named) && !reason.contains('\n'),
            "LISTEN_PID={pid:?} LISTEN_FDS={fds:?}: {reason}"
        );
    }
}

#[tokio::test]
async fn only_a_listening_tcp_socket_is_taken_as_the_handed_over_one() {
    use handed_over::check_listening_tcp;
    use std::os::fd::AsRawFd;

    let listening = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    assert_eq!(check_listening_tcp(listening.as_raw_fd()), Ok(()));

    let bound_only =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    bound_only.bind(&any_port.into()).expect("binds");
    let datagrams = std::net::UdpSocket::bind("127.0.0.1:0").expect("binds");
    let path = std::env::temp_dir().join(format!("handed-over-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let local = std::os::unix::net::UnixListener::bind(&path).expect("binds");
    let file = std::fs::File::open("/dev/null").expect("opens");
    for (fd, expected) in [
        (
            bound_only.as_raw_fd(),
            "is a TCP socket that does not listen",
        ),
        (datagrams.as_raw_fd(), "is not a TCP socket"),
        (local.as_raw_fd(), "is not a TCP socket"),
        (file.as_raw_fd(), "is not a socket"),
        // Far above any descriptor this test process opens.
        (1_000_000, "is not open: Bad file descriptor (os error 9)"),
    ] {
        let reason = check_listening_tcp(fd).expect_err("not a listening TCP socket");
        assert!(reason.ends_with(expected), "{reason}");
    }
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_handed_over_descriptor_is_served_and_has_one_owner() {
    use std::os::fd::{AsRawFd, IntoRawFd};

    // The only test that takes a descriptor: taking is once per process.
    let listening = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listening.local_addr().expect("an address");
    let listener = handed_over::take_descriptor(listening.into_raw_fd()).expect("taken");
    assert_eq!(listener.local_addr().expect("an address"), addr);
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    connected.expect("connects");
    accepted.expect("the taken socket accepts");

    let another = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let reason =
        handed_over::take_descriptor(another.as_raw_fd()).expect_err("a second descriptor taken");
    assert!(reason.ends_with("was taken already"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_as_shutdown_begins_on_a_connection_not_yet_read_is_answered() {
    use std::io::{Read, Write};

    let server = start(limits()).await;
    // A blocking client: its request is in the server's socket when
    // `write_all` returns, before tokio has seen the socket become readable.
    let mut client = std::net::TcpStream::connect(server.addr).expect("connects");
    // Accepted, and silent for longer than a silent connection is given
    // at shutdown: only what is already in its socket can save it.
    tokio::time::sleep(limits().idle_before_shedding + Duration::from_millis(100)).await;

    // In the same breath: the request arrives, and the stop.
    client
        .write_all(b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("sends");
    server.stop();

    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        client.read_to_string(&mut answer).map(|_| answer)
    });
    let answer = answer.await.expect("the reading thread");
    assert!(
        matches!(&answer, Ok(text) if text.ends_with("slept for 0 seconds\n")),
        "the request waiting unread at shutdown was lost: {answer:?}"
    );
    assert_eq!(server.serving.await.expect("serve"), Stopped::Gracefully);
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_just_after_shutdown_began_on_a_connection_accepted_before_is_answered() {
    let server = start(limits()).await;
    let mut client = TcpStream::connect(server.addr).await.expect("connects");
    settle().await;
    server.stop();
    settle().await;
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "shutdown should have begun, and the listener be closed"
    );

    let request = "GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    client.write_all(request.as_bytes()).await.expect("sends");
    let mut answer = Vec::new();
    // The server closes the connection after the one answer.
    client.read_to_end(&mut answer).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slept for 0 seconds\n"),
        "{answer:?}"
    );
    assert_eq!(server.serving.await.expect("serve"), Stopped::Gracefully);
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_a_silent_connection_is_closed_a_second_after_its_accepting() {
    let server = start(limits()).await;
    let mut long_silent = TcpStream::connect(server.addr).await.expect("connects");
    tokio::time::sleep(limits().idle_before_shedding).await;
    let accepted = Instant::now();
    let mut just_accepted = TcpStream::connect(server.addr).await.expect("connects");
    settle().await;

    server.stop();
    assert_eq!(
        closed_after(&mut long_silent, Duration::from_secs(1)).await,
        Some(Duration::ZERO),
        "a connection silent for over a second should be closed as soon as shutdown begins"
    );
    closed_after(&mut just_accepted, DEADLINE).await;
    assert_eq!(accepted.elapsed(), limits().idle_before_shedding);
    assert_eq!(server.serving.await.expect("serve"), Stopped::Gracefully);
    assert_eq!(accepted.elapsed(), limits().idle_before_shedding);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_frame_is_larger_than_the_read_buffer_is_allowed_to_grow() {
    use gotham::http_body_util::Full;
    use gotham::hyper::service::service_fn;
    use std::convert::Infallible;

    // A frame is a slice of hyper's read buffer, which grows while reads
    // fill it: a fast upload read slowly shows how large it got.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let largest = Arc::new(AtomicUsize::new(0));
    let new_service = {
        let largest = Arc::clone(&largest);
        move |_client| {
            let largest = Arc::clone(&largest);
            service_fn(move |request: Request<Incoming>| {
                let largest = Arc::clone(&largest);
                async move {
                    let mut body = request.into_body();
                    while let Some(Ok(frame)) = body.frame().await {
                        let size = frame.data_ref().map_or(0, Bytes::len);
                        largest.fetch_max(size, Ordering::SeqCst);
                        // Slower than the client: the buffer fills up.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"read"))))
                }
            })
        }
    };
    let (_stop, stops) = mpsc::unbounded::<()>();
    tokio::spawn(serve_with(listener, new_service, limits(), stops));

    const SIZE: usize = 16 << 20;
    let mut client = TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {SIZE}\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.expect("sends");
    client.write_all(&vec![b'x'; SIZE]).await.expect("sends");
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.expect("reads");
    assert!(
        answer.ends_with(b"read"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let largest = largest.load(Ordering::SeqCst);
    assert!(
        largest > 64 * 1024 && largest <= 128 * 1024,
        "the largest frame was {largest} bytes: the buffer grew past 128 KiB, or never grew"
    );
}
